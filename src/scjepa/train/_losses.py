"""JEPA losses: VICReg regularisers, optimal-transport matching, collapse diagnostics."""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment


def variance_loss(z: torch.Tensor, gamma: float = 1.0, eps: float = 1e-4) -> torch.Tensor:
    """VICReg variance term: mean hinge ``max(0, γ - sqrt(Var(z_d) + ε))`` over dimensions.

    Bardes, Ponce & LeCun, "VICReg", ICLR 2022.
    """
    if z.shape[0] < 2:
        return z.new_zeros(())
    std = torch.sqrt(z.var(dim=0) + eps)
    return torch.relu(gamma - std).mean()


def covariance_loss(z: torch.Tensor) -> torch.Tensor:
    """VICReg covariance term: squared off-diagonal covariances summed, divided by the dimension."""
    n, d = z.shape
    if n < 2:
        return z.new_zeros(())
    centred = z - z.mean(dim=0)
    cov = centred.T @ centred / (n - 1)
    off_diagonal = cov - torch.diag(torch.diag(cov))
    return off_diagonal.pow(2).sum() / d


def effective_rank(z: torch.Tensor) -> torch.Tensor:
    """RankMe: ``exp`` of the entropy of the normalised singular values of ``z``.

    Garrido et al., "RankMe: Assessing the downstream performance of pretrained self-supervised
    representations by their rank", ICML 2023. Near 1 means collapse; the maximum is ``min(n, d)``.
    """
    z = z.float()
    # the singular values of z are the square roots of the eigenvalues of its (smaller) Gram
    # matrix, which is much cheaper to decompose for a minibatch of many cells
    gram = z.T @ z if z.shape[0] >= z.shape[1] else z @ z.T
    singular = torch.linalg.eigvalsh(gram).clamp(min=0).sqrt()
    p = singular / singular.sum().clamp(min=1e-12) + 1e-12
    return torch.exp(-(p * p.log()).sum())


def optimal_matching(
    predicted: torch.Tensor, target: torch.Tensor
) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of rows minimising the summed squared distance (exact minibatch optimal transport).

    With equal sizes and uniform weights the optimal transport plan is a permutation, found by
    the Hungarian algorithm. When sizes differ, the smaller set is fully matched.

    Returns
    -------
    Row indices into ``predicted`` and into ``target``.
    """
    cost = torch.cdist(predicted.detach().float(), target.detach().float()).pow(2)
    rows, cols = linear_sum_assignment(cost.cpu().numpy())
    return rows, cols


def matched_population_loss(
    predicted: torch.Tensor, target: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Distance between two unpaired populations of embeddings.

    Returns the mean squared error between optimally matched cells (which keeps the spread of the
    population, not only its centre) and the mean squared difference of the two means; both are
    averaged over dimensions, like VICReg's invariance term.
    """
    rows, cols = optimal_matching(predicted, target)
    rows_t = torch.as_tensor(rows, device=predicted.device)
    cols_t = torch.as_tensor(cols, device=predicted.device)
    matched = (predicted[rows_t] - target[cols_t]).pow(2).mean()
    mean_gap = (predicted.mean(dim=0) - target.mean(dim=0)).pow(2).mean()
    return matched, mean_gap
