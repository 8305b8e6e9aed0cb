"""Metrics on the change of mean expression caused by a perturbation.

Every function takes mean log-normalised profiles (``normalize_total`` + ``log1p``) as 1-D arrays
over genes: the predicted mean ``μ̂_p``, the observed mean ``μ_p`` and a reference ``μ_ref``
(the control mean, or for Systema-style scores the mean of all perturbed cells).
"""

from __future__ import annotations

import numpy as np


def top_changed_genes(observed_delta: np.ndarray, top_k: int | None) -> np.ndarray:
    """Positions of the ``top_k`` genes with the largest absolute observed change (all if None)."""
    observed_delta = np.asarray(observed_delta)
    if top_k is None or top_k >= len(observed_delta):
        return np.arange(len(observed_delta))
    return np.argsort(-np.abs(observed_delta), kind="stable")[:top_k]


def _deltas(predicted_mean, observed_mean, reference_mean, predicted_reference=None):
    reference = np.asarray(reference_mean, dtype=np.float64)
    own = reference if predicted_reference is None else np.asarray(predicted_reference)
    return (
        np.asarray(predicted_mean, dtype=np.float64) - own,
        np.asarray(observed_mean, dtype=np.float64) - reference,
    )


def _delta_errors(predicted_mean, observed_mean, reference_mean, top_k, predicted_reference):
    predicted, observed = _deltas(
        predicted_mean, observed_mean, reference_mean, predicted_reference
    )
    genes = top_changed_genes(observed, top_k)
    return predicted[genes] - observed[genes]


def pearson_delta(
    predicted_mean: np.ndarray,
    observed_mean: np.ndarray,
    reference_mean: np.ndarray,
    top_k: int | None = None,
) -> float:
    """Pearson correlation between predicted and observed changes from a reference.

    ``r(μ̂_p − μ_ref, μ_p − μ_ref)`` over genes, the standard perturbation metric of GEARS
    (Roohani et al., Nature Biotechnology 2024) and of Ahlmann-Eltze, Huber & Anders (Nature
    Methods 2025). With the mean of all perturbed cells as the reference it is the Systema score
    (Viñas Torné et al., Nature Biotechnology 2025), which removes the systematic difference
    between perturbed and control cells that any method gets right for free. With ``top_k``, only
    the ``top_k`` genes with the largest observed change are used. NaN when either change is
    constant (standard deviation below 1e-6, the resolution of float32 log-expression).
    """
    predicted, observed = _deltas(predicted_mean, observed_mean, reference_mean)
    genes = top_changed_genes(observed, top_k)
    a, b = predicted[genes], observed[genes]
    # below float32 resolution of log-expression a "change" is rounding noise, not a prediction
    if a.std() < 1e-6 or b.std() < 1e-6:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def mse_delta(
    predicted_mean: np.ndarray,
    observed_mean: np.ndarray,
    reference_mean: np.ndarray,
    top_k: int | None = None,
    predicted_reference: np.ndarray | None = None,
) -> float:
    """Mean squared error of the predicted change, ``mean_g((μ̂_p − μ̂_ref) − (μ_p − μ_ref))²``.

    With ``predicted_reference=None`` the prediction is measured from the observed reference, and
    the score equals the mean squared error of the means themselves on the same genes. With
    ``top_k``, only the genes with the largest observed change are scored (GEARS' "MSE top-20 DE").
    """
    predicted, observed = _deltas(
        predicted_mean, observed_mean, reference_mean, predicted_reference
    )
    genes = top_changed_genes(observed, top_k)
    return float(np.mean((predicted[genes] - observed[genes]) ** 2))


def mae_delta(
    predicted_mean: np.ndarray,
    observed_mean: np.ndarray,
    reference_mean: np.ndarray,
    top_k: int | None = None,
    predicted_reference: np.ndarray | None = None,
) -> float:
    """Mean absolute error of the predicted change; see :func:`mse_delta`."""
    predicted, observed = _deltas(
        predicted_mean, observed_mean, reference_mean, predicted_reference
    )
    genes = top_changed_genes(observed, top_k)
    return float(np.mean(np.abs(predicted[genes] - observed[genes])))


def mse(predicted_mean: np.ndarray, observed_mean: np.ndarray) -> float:
    """Mean squared error between predicted and observed mean profiles over all genes."""
    diff = np.asarray(predicted_mean, dtype=np.float64) - np.asarray(observed_mean)
    return float(np.mean(diff**2))


def mae(predicted_mean: np.ndarray, observed_mean: np.ndarray) -> float:
    """Mean absolute error between predicted and observed mean profiles over all genes."""
    diff = np.asarray(predicted_mean, dtype=np.float64) - np.asarray(observed_mean)
    return float(np.mean(np.abs(diff)))


def direction_agreement(
    predicted_mean: np.ndarray,
    observed_mean: np.ndarray,
    reference_mean: np.ndarray,
    top_k: int | None = 20,
) -> float:
    """Fraction of the ``top_k`` most changed genes whose predicted change has the right sign."""
    predicted, observed = _deltas(predicted_mean, observed_mean, reference_mean)
    genes = top_changed_genes(observed, top_k)
    return float(np.mean(np.sign(predicted[genes]) == np.sign(observed[genes])))


def discrimination_score(
    predicted_deltas: np.ndarray,
    observed_deltas: np.ndarray,
    true_index: np.ndarray | None = None,
    metric: str = "l1",
) -> np.ndarray:
    """How well each predicted change singles out its own perturbation among all observed ones.

    For prediction ``i``, the distances from its predicted change to the observed changes of
    every candidate perturbation are ranked; the score is ``1 − rank_i / (n − 1)`` where
    ``rank_i`` counts observed changes strictly closer than the true one and ``n`` is the number
    of candidates: 1 when the true perturbation is the closest, about 0.5 for a prediction that
    ignores the perturbation. This follows the discrimination score of the Virtual Cell
    Challenge's cell-eval (Arc Institute 2025), rescaled so that higher is better.

    Parameters
    ----------
    predicted_deltas
        ``(n_predictions, n_genes)`` predicted changes from control.
    observed_deltas
        ``(n_candidates, n_genes)`` observed changes of every candidate perturbation.
    true_index
        Row of ``observed_deltas`` that is the truth for each prediction; by default row ``i``
        for prediction ``i``.
    metric
        ``"l1"`` (mean absolute difference) or ``"l2"`` (Euclidean).

    Returns
    -------
    Array of ``n_predictions`` scores in [0, 1]; NaN when there are fewer than two candidates.
    """
    predicted = np.atleast_2d(np.asarray(predicted_deltas, dtype=np.float64))
    observed = np.atleast_2d(np.asarray(observed_deltas, dtype=np.float64))
    if predicted.shape[1] != observed.shape[1]:
        raise ValueError(
            f"Predicted ({predicted.shape[1]}) and observed ({observed.shape[1]}) changes "
            "cover different numbers of genes."
        )
    truth = np.arange(len(predicted)) if true_index is None else np.asarray(true_index)
    if len(truth) != len(predicted) or (len(truth) and truth.max() >= len(observed)):
        raise ValueError(
            "`true_index` must give one valid row of `observed_deltas` per prediction."
        )
    n = len(observed)
    if n < 2:
        return np.full(len(predicted), np.nan)
    difference = predicted[:, None, :] - observed[None, :, :]
    if metric == "l1":
        distance = np.abs(difference).mean(axis=-1)
    elif metric == "l2":
        distance = np.sqrt((difference**2).sum(axis=-1))
    else:
        raise ValueError(f"`metric` must be 'l1' or 'l2', got {metric!r}.")
    own = distance[np.arange(len(predicted)), truth]
    closer = (distance < own[:, None]).sum(axis=1)
    return 1.0 - closer / (n - 1)
