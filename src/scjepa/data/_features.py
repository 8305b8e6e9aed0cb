"""Perturbation feature tables: one row of numbers per perturbable entity (gene, drug, ...)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import sparse

from scjepa._constants import NORMALIZATION_TARGET_SUM


def log_normalize(counts, library: np.ndarray | None = None) -> np.ndarray | sparse.csr_matrix:
    """``log1p`` of counts scaled to :data:`NORMALIZATION_TARGET_SUM` per cell.

    Works on dense arrays and scipy sparse matrices without densifying the latter; matches
    ``sc.pp.normalize_total(target_sum=1e4)`` followed by ``sc.pp.log1p``.

    Parameters
    ----------
    counts
        Cells x genes raw counts.
    library
        Total counts per cell; defaults to the row sums of ``counts``. Pass it when ``counts``
        holds only some of the genes.
    """
    if library is None:
        library = np.asarray(counts.sum(axis=1)).ravel()
    scale = (NORMALIZATION_TARGET_SUM / np.maximum(np.asarray(library).ravel(), 1.0)).astype(
        np.float32
    )
    if sparse.issparse(counts):
        counts = sparse.csr_matrix(counts, dtype=np.float32, copy=True)
        counts.data *= np.repeat(scale, np.diff(counts.indptr))
        np.log1p(counts.data, out=counts.data)
        return counts
    return np.log1p(np.asarray(counts, dtype=np.float32) * scale[:, None])


def gene_features_from_expression(
    counts,
    gene_names: pd.Index,
    n_components: int = 32,
    max_cells: int = 20_000,
    seed: int = 0,
) -> pd.DataFrame:
    """Describe every measured gene by its loadings on the main axes of expression variation.

    A gene that was never perturbed in training but is measured still gets a feature vector, so a
    knock-down of it can be placed among the programs it co-varies with. This is the gene embedding
    of the linear baseline of Ahlmann-Eltze, Huber & Anders (Nature Methods 2025), with the gene's
    mean and spread added as two columns so that lowly and highly expressed genes differ.

    Parameters
    ----------
    counts
        Cells x genes raw counts (dense or scipy sparse).
    gene_names
        Names of the columns of ``counts``.
    n_components
        Number of principal axes; capped by the data's rank.
    max_cells
        Cells sampled (without replacement) to fit the axes, which bounds time and memory.
    seed
        Seed of that sample.

    Returns
    -------
    DataFrame ``(n_genes, n_components + 2)`` indexed by gene name, columns standardised.
    """
    rng = np.random.default_rng(seed)
    n_obs = counts.shape[0]
    rows = np.sort(rng.choice(n_obs, size=min(n_obs, max_cells), replace=False))
    expression = log_normalize(counts[rows])
    if sparse.issparse(expression):
        expression = expression.toarray()
    mean = expression.mean(axis=0)
    std = expression.std(axis=0)
    centred = expression - mean
    k = int(min(n_components, min(centred.shape) - 1))
    if k < 1:
        raise ValueError("Need at least two cells and two genes to derive perturbation features.")
    _, singular, components = np.linalg.svd(centred, full_matrices=False)
    loadings = components[:k].T * (singular[:k] / np.sqrt(len(rows)))
    table = np.column_stack([loadings, mean, std]).astype(np.float32)
    table = (table - table.mean(axis=0)) / np.maximum(table.std(axis=0), 1e-6)
    columns = [f"pc{i + 1}" for i in range(k)] + ["mean", "std"]
    return pd.DataFrame(table, index=pd.Index(gene_names, dtype=str), columns=columns)


def validate_feature_table(features: pd.DataFrame) -> pd.DataFrame:
    """Check a user-supplied perturbation feature table and return it as float32."""
    if not isinstance(features, pd.DataFrame):
        raise TypeError(
            "`perturbation_features` must be a pandas DataFrame indexed by perturbation name, "
            f"got {type(features).__name__}."
        )
    if features.shape[0] == 0 or features.shape[1] == 0:
        raise ValueError("`perturbation_features` is empty.")
    if not features.index.is_unique:
        duplicated = features.index[features.index.duplicated()].unique()[:5].tolist()
        raise ValueError(f"`perturbation_features` has duplicated names, e.g. {duplicated}.")
    values = features.to_numpy(dtype=np.float32)
    if not np.all(np.isfinite(values)):
        raise ValueError("`perturbation_features` contains NaN or infinite values.")
    return pd.DataFrame(values, index=features.index.astype(str), columns=features.columns)
