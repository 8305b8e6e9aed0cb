"""Metrics on the change of mean expression caused by a perturbation."""

from __future__ import annotations

import numpy as np


def _top_genes(observed_delta: np.ndarray, top_k: int | None) -> np.ndarray:
    if top_k is None or top_k >= len(observed_delta):
        return np.arange(len(observed_delta))
    return np.argsort(-np.abs(observed_delta))[:top_k]


def pearson_delta(
    predicted_mean: np.ndarray,
    observed_mean: np.ndarray,
    reference_mean: np.ndarray,
    top_k: int | None = None,
) -> float:
    """Pearson correlation between predicted and observed changes from a reference.

    ``r(μ̂_p − μ_ref, μ_p − μ_ref)`` over genes, the standard perturbation metric of GEARS
    (Roohani et al., Nature Biotechnology 2024) and of Ahlmann-Eltze, Huber & Anders (Nature
    Methods 2025). The reference is the control mean (or, Systema-style, the mean of perturbed
    cells). With ``top_k``, only the ``top_k`` genes with the largest observed change are used.
    """
    observed = np.asarray(observed_mean) - np.asarray(reference_mean)
    predicted = np.asarray(predicted_mean) - np.asarray(reference_mean)
    genes = _top_genes(observed, top_k)
    a, b = predicted[genes], observed[genes]
    if a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def mse_delta(
    predicted_mean: np.ndarray,
    observed_mean: np.ndarray,
    reference_mean: np.ndarray,
    top_k: int | None = None,
) -> float:
    """Mean squared error of the predicted mean on the genes the perturbation changes most.

    Equivalent on those genes to the error of the predicted change, since the reference cancels.
    """
    observed = np.asarray(observed_mean) - np.asarray(reference_mean)
    genes = _top_genes(observed, top_k)
    return float(
        np.mean((np.asarray(predicted_mean)[genes] - np.asarray(observed_mean)[genes]) ** 2)
    )
