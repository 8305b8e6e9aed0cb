"""Generated cells with a continuous state and their RNA counts, shared by the paired demos."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from scjepa.data._features import log_normalize


@dataclass
class GeneratedCells:
    """Hidden state and RNA of generated cells.

    Attributes
    ----------
    cell_type, batch
        Integer cell type and batch per cell.
    state
        ``(n_cells, n_latent)`` continuous state around each cell type's centre.
    log_rate
        ``(n_cells, n_genes)`` log expression rate of each gene, before batch shifts.
    expressed
        Indices of the genes chosen to be well expressed (e.g. those encoding proteins).
    counts
        ``(n_cells, n_genes)`` RNA counts.
    """

    cell_type: np.ndarray
    batch: np.ndarray
    state: np.ndarray
    log_rate: np.ndarray
    expressed: np.ndarray
    counts: np.ndarray

    def obs(self) -> pd.DataFrame:
        """``cell_type`` and ``batch`` columns, indexed by cell names."""
        return pd.DataFrame(
            {
                "cell_type": pd.Categorical([f"type_{t}" for t in self.cell_type]),
                "batch": pd.Categorical([f"batch_{b}" for b in self.batch]),
            },
            index=[f"cell_{i:05d}" for i in range(len(self.cell_type))],
        )

    def rna_anndata(self, var: pd.DataFrame) -> AnnData:
        """RNA counts in ``layers["counts"]`` (sparse) and log-normalised in ``X``."""
        counts = sparse.csr_matrix(self.counts)
        rna = AnnData(X=log_normalize(counts), obs=self.obs(), var=var)
        rna.layers["counts"] = counts
        return rna


def generate_cells(
    rng: np.random.Generator,
    n_cells: int,
    n_genes: int,
    n_cell_types: int,
    n_batches: int,
    n_latent: int,
    median_library_size: float,
    n_expressed: int,
) -> GeneratedCells:
    """Cells with a continuous state around their type's centre, and their RNA counts.

    Genes follow the state through sparse log-linear programs, with per-batch shifts,
    log-normal library sizes and negative binomial noise; ``n_expressed`` genes are chosen to be
    well expressed.
    """
    centres = rng.normal(0.0, 0.6, size=(n_cell_types, n_latent))
    cell_type = rng.integers(n_cell_types, size=n_cells)
    state = centres[cell_type] + rng.normal(0.0, 0.5, size=(n_cells, n_latent))
    batch = rng.integers(n_batches, size=n_cells)
    loadings = rng.normal(0.0, 0.35, size=(n_latent, n_genes)) * (
        rng.random((n_latent, n_genes)) < 0.4
    )
    baseline = rng.normal(0.0, 1.5, size=n_genes)
    expressed = rng.choice(n_genes, size=n_expressed, replace=False)
    baseline[expressed] = rng.normal(1.0, 0.5, size=n_expressed)
    batch_shift = rng.normal(0.0, 0.15, size=(n_batches, n_genes))
    log_rate = baseline + state @ loadings
    log_mean = log_rate + batch_shift[batch]
    proportions = np.exp(log_mean - log_mean.max(axis=1, keepdims=True))
    proportions /= proportions.sum(axis=1, keepdims=True)
    library = rng.lognormal(np.log(median_library_size), 0.3, size=n_cells)
    dispersion = rng.lognormal(np.log(5.0), 0.4, size=n_genes)
    mean = proportions * library[:, None]
    counts = rng.poisson(rng.gamma(dispersion, mean / dispersion)).astype(np.float32)
    return GeneratedCells(cell_type, batch, state, log_rate, expressed, counts)
