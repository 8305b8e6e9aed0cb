"""Optimal transport between cell populations: couplings and Wasserstein distances."""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist
from scipy.special import logsumexp

from scjepa.metrics._distribution import check_populations, subsample


def wasserstein_distance(a: np.ndarray, b: np.ndarray, max_cells: int = 2000, seed: int = 0):
    """Wasserstein-1 distance between two cell populations, with Euclidean ground cost.

    ``W₁ = min_π Σ π_ij ‖a_i − b_j‖`` over couplings with uniform marginals, the distance
    Waddington-OT (Schiebinger et al., Cell 2019) and moscot (Klein et al., Nature 2025) use to
    score interpolated time points. It is solved exactly: both populations are subsampled
    (seeded) to the size of the smaller one, at most ``max_cells``, where the optimal coupling is
    a permutation found by the Hungarian algorithm. Compute it in a shared, low-dimensional space
    such as a PCA fitted on observed cells.

    Parameters
    ----------
    a, b
        ``(cells, dimensions)`` populations.
    max_cells
        Largest number of cells per population used.
    seed
        Seed of the subsampling.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    check_populations(a, b)
    rng = np.random.default_rng(seed)
    n = min(len(a), len(b), max_cells)
    a, b = subsample(a, rng, n), subsample(b, rng, n)
    cost = cdist(a, b)
    rows, cols = linear_sum_assignment(cost)
    return float(cost[rows, cols].mean())


def sinkhorn_coupling(
    a: np.ndarray, b: np.ndarray, epsilon: float = 0.05, n_iterations: int = 500, tol: float = 1e-6
) -> np.ndarray:
    """Entropy-regularised optimal transport coupling between two populations.

    Log-domain Sinkhorn iterations (Cuturi, NeurIPS 2013) with uniform marginals and squared
    Euclidean cost divided by its median, so ``epsilon`` does not depend on the scale of the
    space; Waddington-OT couples consecutive time points this way.

    Parameters
    ----------
    a, b
        ``(cells, dimensions)`` populations.
    epsilon
        Entropic regularisation relative to the median cost; smaller is closer to exact OT.
    n_iterations
        Most Sinkhorn iterations.
    tol
        Stop when the row marginals are this close (L1) to uniform.

    Returns
    -------
    ``(len(a), len(b))`` coupling whose rows sum to ``1/len(a)`` and columns to ``1/len(b)``.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    check_populations(a, b)
    cost = cdist(a, b, "sqeuclidean")
    cost /= max(np.median(cost), 1e-12)
    log_kernel = -cost / epsilon
    log_a = np.full(len(a), -np.log(len(a)))
    log_b = np.full(len(b), -np.log(len(b)))
    f, g = np.zeros(len(a)), np.zeros(len(b))
    for iteration in range(n_iterations):
        # one pass gives both the row marginals of the current plan and the next f update
        row = logsumexp(log_kernel + g[None, :], axis=1)
        if iteration and np.abs(np.exp(f + row) - np.exp(log_a)).sum() < tol:
            break
        f = log_a - row
        g = log_b - logsumexp(log_kernel + f[:, None], axis=0)
    return np.exp(log_kernel + f[:, None] + g[None, :])
