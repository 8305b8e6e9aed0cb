"""Mean log-normalised expression per perturbation, the input of every delta metric."""

from __future__ import annotations

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from scjepa.data._features import group_means, log_normalize


def log_normalized_matrix(adata: AnnData, layer: str | None = None) -> np.ndarray | sparse.spmatrix:
    """Log-normalised expression of ``adata``.

    With ``layer`` (raw counts) the counts are normalised (``normalize_total`` to 1e4 + ``log1p``);
    with ``layer=None``, ``adata.X`` is taken as already log-normalised, which holds for the
    predictions of scjepa models and baselines (``uns["scjepa"]["X"] == "log1p_normalized"``).
    """
    if layer is None:
        return adata.X
    if layer not in adata.layers:
        raise KeyError(f"Layer {layer!r} not found in `adata.layers`.")
    return log_normalize(adata.layers[layer])


def mean_profile(matrix: np.ndarray | sparse.spmatrix) -> np.ndarray:
    """Mean over cells (rows) in float64, so that equal inputs give equal means to the last bit."""
    if sparse.issparse(matrix):
        matrix = matrix.astype(np.float64)
    return np.asarray(matrix.mean(axis=0, dtype=np.float64)).ravel()


def perturbation_means(
    adata: AnnData, perturbation_key: str = "perturbation", layer: str | None = None
) -> pd.DataFrame:
    """Mean log-normalised expression of each perturbation (rows) over genes (columns)."""
    if perturbation_key not in adata.obs:
        raise KeyError(f"Perturbation column {perturbation_key!r} not found in `adata.obs`.")
    return labelled_means(
        log_normalized_matrix(adata, layer),
        adata.obs[perturbation_key].astype(str).to_numpy(),
        adata.var_names,
    )


def labelled_means(matrix, labels: np.ndarray, var_names: pd.Index) -> pd.DataFrame:
    """Mean profile per label of an already log-normalised matrix, labels in order of appearance."""
    names = list(dict.fromkeys(labels))
    return pd.DataFrame(group_means(matrix, labels, names), index=names, columns=var_names)
