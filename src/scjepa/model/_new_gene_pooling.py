"""Partial pooling of the predicted response to genes never perturbed in training.

A gene never perturbed in training is embedded from the perturbed genes it resembles
(:meth:`~scjepa.module.PerturbationEncoder.neighbour_embedding`), and what that predicts beyond
the gene's own knock-down is an extrapolation from a few dozen measured responses. The prior
estimate of any perturbation's response is the mean change measured over the training
perturbations (the mean-of-perturbations baseline); a prediction for a perturbation without a
measured member keeps a share of its own change and takes the rest from that mean, the
shrinkage of a group's own estimate towards the grand mean (James & Stein, 1961; partial pooling
in a hierarchical model, Gelman & Hill, 2007).
"""

from __future__ import annotations

import numpy as np
from scvi.data import AnnDataManager

from scjepa.model._measured_changes import measured_changes


def mean_measured_change(adata_manager: AnnDataManager, counts) -> np.ndarray | None:
    """Mean of the training perturbations' measured changes of log-normalised expression.

    Each perturbation (:func:`~scjepa.model._measured_changes.measured_changes`) counts once;
    ``None`` when no perturbation's change can be measured.
    """
    changes = measured_changes(adata_manager, counts)
    if not changes:
        return None
    return np.mean(list(changes.values()), axis=0).astype(np.float32)


def own_change_shares(members: np.ndarray, seen: np.ndarray, weight: float) -> np.ndarray | None:
    """Share of its own predicted change each perturbation keeps.

    ``members`` holds each perturbation's member indices (``-1`` pads), ``seen`` whether each
    entity was perturbed in training. A perturbation with a measured member keeps its whole
    change (1), one without (every member new) keeps ``weight``; ``None`` when all keep theirs.
    """
    present = members >= 0
    measured = (present & seen[np.where(present, members, 0)]).any(axis=1)
    shares = np.where(measured | ~present.any(axis=1), 1.0, float(weight))
    if np.all(shares == 1.0):
        return None
    return shares
