"""Generated multiome data: RNA counts and chromatin accessibility (ATAC) of the same cells."""

from __future__ import annotations

import numpy as np
import pandas as pd
from anndata import AnnData
from mudata import MuData
from scipy import sparse

from scjepa.datasets._generated_cells import generate_cells

PEAK_KINDS = ("promoter", "primed", "cell_type", "constitutive")
"""How a generated region's accessibility is set (see :func:`multiome_demo`)."""


def multiome_demo(
    n_cells: int = 3000,
    n_genes: int = 600,
    n_peaks: int = 2000,
    n_cell_types: int = 6,
    n_batches: int = 2,
    n_latent: int = 10,
    median_library_size: float = 1500.0,
    median_capture: float = 0.25,
    seed: int = 0,
) -> MuData:
    """Generate a single-cell multiome experiment: RNA and ATAC counts of the same cells.

    Accessibility is not a copy of expression, which is what makes predicting it from RNA a
    task. The relationships follow what joint RNA + ATAC assays show (Ma et al., Cell 2020,
    SHARE-seq; Ashuach et al., Nature Methods 2022, PeakVI):

    * cells and their RNA are generated as in :func:`citeseq_demo`: a continuous state around
      each cell type's centre, genes following it through log-linear programs, batches,
      negative binomial noise;
    * each region is accessible in a cell with a probability whose logit depends on the cell:
      ``"promoter"`` regions (40%) follow the expected expression of a linked gene;
      ``"primed"`` regions (20%) follow it too, plus a direction of the cell state that no gene
      expresses, as chromatin opens before transcription starts ("priming", Ma et al. 2020);
      ``"cell_type"`` regions (25%) open in one cell type, as enhancers do; ``"constitutive"``
      regions (15%) are open in most cells;
    * an accessible region yields a Poisson number of fragments whose mean is the cell's capture
      efficiency (log-normal, shifted per batch) times two copies, so most accessible regions of
      a cell are not seen, as in real ATAC data.

    Parameters
    ----------
    n_cells
        Number of cells.
    n_genes
        Number of genes (at least 100).
    n_peaks
        Number of regions (ATAC peaks; at least 20).
    n_cell_types
        Number of cell types.
    n_batches
        Number of batches.
    n_latent
        Dimension of the hidden cell state.
    median_library_size
        Median RNA counts per cell.
    median_capture
        Median fragments per copy of an accessible region.
    seed
        Random seed; the same seed gives the same data.

    Returns
    -------
    MuData with modalities ``"rna"`` (raw counts in ``layers["counts"]`` and ``X``
    log-normalised) and ``"atac"`` (sparse fragment counts in ``X`` and ``layers["counts"]``;
    ``var["kind"]`` says how each region was generated, ``var["gene"]`` names the linked gene
    of promoter and primed regions; ``layers["accessible"]`` holds the hidden accessibility
    states). ``obs`` of the MuData and of both modalities holds ``cell_type`` and ``batch``.
    """
    if n_genes < 100:
        raise ValueError("`n_genes` must be at least 100.")
    if n_peaks < 20:
        raise ValueError("`n_peaks` must be at least 20.")
    rng = np.random.default_rng(seed)
    gene_names = np.array([f"G{i:04d}" for i in range(n_genes)])
    cells = generate_cells(
        rng,
        n_cells,
        n_genes,
        n_cell_types,
        n_batches,
        n_latent,
        median_library_size,
        n_expressed=n_genes // 5,  # genes with regulated promoters are expressed
    )

    # ---- which region is which
    share = np.array([0.40, 0.20, 0.25, 0.15])
    kind = rng.choice(len(PEAK_KINDS), size=n_peaks, p=share)
    linked = np.where(kind <= 1, rng.choice(cells.expressed, size=n_peaks), -1)
    opening_type = rng.integers(n_cell_types, size=n_peaks)

    # ---- logit of accessibility per cell and region
    expected = cells.log_rate[:, np.maximum(linked, 0)]
    standardised = (expected - expected.mean(axis=0)) / expected.std(axis=0).clip(min=1e-6)
    slope = rng.uniform(1.0, 2.5, size=n_peaks)
    priming = cells.state @ rng.normal(0.0, 0.6, size=(n_latent, n_peaks))
    logit = np.select(
        [kind == 0, kind == 1, kind == 2],
        [
            slope * standardised,
            0.6 * slope * standardised + priming,
            np.where(cells.cell_type[:, None] == opening_type, 2.5, -2.5),
        ],
        default=2.0,
    )
    logit = logit + rng.normal(-1.2, 0.6, size=n_peaks)
    accessible = rng.random(logit.shape) < 1.0 / (1.0 + np.exp(-logit))

    # ---- fragments: two copies, captured with the cell's efficiency
    capture = rng.lognormal(np.log(median_capture), 0.4, size=n_cells)
    capture *= rng.lognormal(0.0, 0.2, size=n_batches)[cells.batch]
    fragments = rng.poisson(2.0 * capture[:, None] * accessible).astype(np.float32)

    obs = cells.obs()
    rna_data = cells.rna_anndata(pd.DataFrame(index=gene_names))
    peak_var = pd.DataFrame(
        {
            "kind": pd.Categorical(np.asarray(PEAK_KINDS)[kind], categories=PEAK_KINDS),
            "gene": np.where(linked >= 0, gene_names[np.maximum(linked, 0)], ""),
        },
        index=[f"chr1:{1000 * i + 1}-{1000 * i + 500}" for i in range(n_peaks)],
    )
    counts = sparse.csr_matrix(fragments)
    atac_data = AnnData(X=counts, obs=obs.copy(), var=peak_var)
    atac_data.layers["counts"] = counts.copy()
    atac_data.layers["accessible"] = sparse.csr_matrix(accessible.astype(np.float32))
    mdata = MuData({"rna": rna_data, "atac": atac_data})
    mdata.obs = obs.loc[mdata.obs_names].copy()
    mdata.uns["multiome_demo"] = {"seed": seed}
    return mdata
