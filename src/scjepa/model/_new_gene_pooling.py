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
from scvi import REGISTRY_KEYS
from scvi.data import AnnDataManager

from scjepa._constants import SCJEPA_KEYS
from scjepa.data._features import group_sums, log_normalize
from scjepa.data._sampling import control_code
from scjepa.metrics._expression import stratified_deltas, stratum_groups

CHUNK_CELLS = 10_000
"""Cells normalised at a time when measuring the mean change."""


def mean_measured_change(adata_manager: AnnDataManager, counts) -> np.ndarray | None:
    """Mean over the training perturbations of their change of log-normalised expression.

    Each perturbation's change is measured against the control cells of the same cell type (the
    registered labels), as :func:`scjepa.metrics.perturbation_deltas` does for the baselines, and
    every perturbation counts once. ``None`` when no perturbation's change can be measured.
    """
    control = control_code(adata_manager)
    if control is None:
        return None
    perturbation = np.asarray(adata_manager.get_from_registry(SCJEPA_KEYS.PERTURBATION_KEY))
    labels = np.asarray(adata_manager.get_from_registry(REGISTRY_KEYS.LABELS_KEY))
    groups = stratum_groups(labels.ravel().astype(str), perturbation.ravel().astype(str))
    sums = np.zeros((len(groups.names), counts.shape[1]))
    sizes = np.zeros(len(groups.names))
    # in chunks of cells, so that counts read from disk are never loaded whole
    for start in range(0, counts.shape[0], CHUNK_CELLS):
        rows = slice(start, start + CHUNK_CELLS)
        chunk_sums, chunk_sizes = group_sums(
            log_normalize(counts[rows]), groups.key[rows], groups.names
        )
        sums += chunk_sums
        sizes += chunk_sizes
    _, deltas, n_cells = stratified_deltas(sums, sizes, groups, str(control))
    measured = n_cells > 0
    if not measured.any():
        return None
    return deltas[measured].mean(axis=0).astype(np.float32)


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
