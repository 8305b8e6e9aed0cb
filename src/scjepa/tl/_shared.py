"""Helpers shared by the evaluation tools."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from anndata import AnnData
from sklearn.decomposition import PCA

from scjepa.data._matrix import dense

_PCA_CELLS = 5000


def as_prediction_mapping(predicted) -> dict[str, AnnData]:
    """``{method: predictions}`` from one prediction AnnData (named by its method) or a mapping."""
    if isinstance(predicted, AnnData):
        return {predicted.uns.get("scjepa", {}).get("method", "prediction"): predicted}
    if isinstance(predicted, Mapping) and predicted:
        return dict(predicted)
    raise TypeError("`predicted` must be an AnnData of predictions or a non-empty mapping of them.")


def check_prediction(method: str, prediction: AnnData, real: AnnData) -> None:
    kind = prediction.uns.get("scjepa", {}).get("X", "log1p_normalized")
    if kind != "log1p_normalized":
        raise ValueError(f"Predictions of {method!r} must hold log-normalised expression in X.")
    if not np.array_equal(np.asarray(prediction.var_names), np.asarray(real.var_names)):
        raise ValueError(f"Predictions of {method!r} cover other genes than `real`.")


def shared_pca(matrices: list, n_pcs: int, seed: int) -> PCA:
    """PCA of log-normalised observed cells, the space population distances are computed in.

    Each matrix contributes at most an equal share of 5,000 cells (seeded subsample).
    """
    rng = np.random.default_rng(seed)
    parts = []
    for matrix in matrices:
        n = matrix.shape[0]
        take = np.sort(rng.choice(n, size=min(n, _PCA_CELLS // len(matrices)), replace=False))
        parts.append(dense(matrix[take]))
    pooled = np.vstack(parts)
    n_components = int(min(n_pcs, pooled.shape[0] - 1, pooled.shape[1]))
    return PCA(n_components=n_components, random_state=seed).fit(pooled)
