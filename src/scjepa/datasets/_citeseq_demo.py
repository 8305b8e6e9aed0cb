"""Generated CITE-seq data: RNA counts and surface-protein counts of the same cells."""

from __future__ import annotations

import numpy as np
import pandas as pd
from anndata import AnnData
from mudata import MuData

from scjepa.datasets._generated_cells import generate_cells


def citeseq_demo(
    n_cells: int = 4000,
    n_genes: int = 600,
    n_proteins: int = 40,
    n_cell_types: int = 6,
    n_batches: int = 2,
    n_latent: int = 10,
    median_library_size: float = 1500.0,
    median_protein_counts: float = 3000.0,
    seed: int = 0,
) -> MuData:
    """Generate a CITE-seq experiment: RNA and surface-protein counts of the same cells.

    Proteins are not a copy of their genes' RNA, which is what makes predicting them from RNA a
    task (Stoeckius et al., Nature Methods 2017 describe CITE-seq; the relationships below are
    the ones totalVI, Gayoso et al., Nature Methods 2021, models):

    * cells have a continuous state around their cell type's centre; genes follow the state
      through log-linear programs, with per-batch shifts, log-normal library sizes and negative
      binomial noise;
    * each protein is encoded by one of the genes; its abundance saturates in the gene's
      expected expression (a Hill function with protein-specific half-saturation), so the
      relationship is non-linear and the single-cell RNA count of the gene is a noisy readout;
    * a quarter of the proteins are also regulated after transcription by cell state, so the
      rest of the transcriptome carries information the coding gene alone does not;
    * protein counts add an ambient background per batch and protein (unbound antibody), and
      are overdispersed.

    Parameters
    ----------
    n_cells
        Number of cells.
    n_genes
        Number of genes (at least ``n_proteins + 50``).
    n_proteins
        Number of surface proteins in the antibody panel.
    n_cell_types
        Number of cell types.
    n_batches
        Number of batches.
    n_latent
        Dimension of the hidden cell state.
    median_library_size
        Median RNA counts per cell.
    median_protein_counts
        Median protein (antibody-derived tag) counts per cell.
    seed
        Random seed; the same seed gives the same data.

    Returns
    -------
    MuData with modalities ``"rna"`` (raw counts in ``layers["counts"]`` and ``X``
    log-normalised; ``var["encodes_protein"]``) and ``"protein"`` (raw counts in ``X`` and
    ``layers["counts"]``; ``var["gene"]`` names the coding gene). ``obs`` of the MuData and of
    both modalities holds ``cell_type`` and ``batch``.
    """
    if n_genes < n_proteins + 50:
        raise ValueError("`n_genes` must be at least `n_proteins + 50`.")
    rng = np.random.default_rng(seed)
    gene_names = np.array([f"G{i:04d}" for i in range(n_genes)])
    protein_names = np.array([f"P{i:02d}" for i in range(n_proteins)])
    cells = generate_cells(
        rng,
        n_cells,
        n_genes,
        n_cell_types,
        n_batches,
        n_latent,
        median_library_size,
        n_expressed=n_proteins,  # panel genes are expressed
    )
    coding, log_rate, state, batch = cells.expressed, cells.log_rate, cells.state, cells.batch

    # ---- proteins: saturating in the coding gene's expected expression
    expected = np.exp(log_rate[:, coding])
    half_saturation = np.quantile(expected, rng.uniform(0.3, 0.7, size=n_proteins), axis=0)
    half_saturation = np.diagonal(half_saturation)
    hill = rng.uniform(1.5, 3.0, size=n_proteins)
    abundance = expected**hill / (half_saturation**hill + expected**hill)
    post = rng.random(n_proteins) < 0.25
    regulation = state @ rng.normal(0.0, 0.4, size=(n_latent, n_proteins))
    abundance = abundance * np.exp(np.where(post, regulation, 0.0))
    abundance *= rng.lognormal(np.log(20.0), 0.8, size=n_proteins)  # antibody brightness
    background = rng.lognormal(np.log(1.0), 0.5, size=(n_batches, n_proteins))
    protein_share = abundance + background[batch]
    protein_share /= protein_share.sum(axis=1, keepdims=True)
    depth = rng.lognormal(np.log(median_protein_counts), 0.35, size=n_cells)
    protein_mean = protein_share * depth[:, None]
    protein = rng.poisson(rng.gamma(3.0, protein_mean / 3.0)).astype(np.float32)

    obs = cells.obs()
    rna_data = cells.rna_anndata(
        pd.DataFrame({"encodes_protein": np.isin(np.arange(n_genes), coding)}, index=gene_names)
    )
    protein_data = AnnData(
        X=protein.copy(),
        obs=obs.copy(),
        var=pd.DataFrame(
            {"gene": gene_names[coding], "post_transcriptional": post}, index=protein_names
        ),
    )
    protein_data.layers["counts"] = protein
    mdata = MuData({"rna": rna_data, "protein": protein_data})
    mdata.obs = obs.loc[mdata.obs_names].copy()
    mdata.uns["citeseq_demo"] = {"seed": seed}
    return mdata
