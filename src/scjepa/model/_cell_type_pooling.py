"""Partial pooling of predicted perturbation responses across cell types.

A cell type whose cells were never perturbed in training reaches the predictor only as control
cells: how a perturbation acts there is an extrapolation of the predictor beyond the contexts it
was trained on. The response measured in the cell types that were perturbed (or, for a
perturbation never measured, the response the model predicts there), transferred, is the pooled
estimate; a prediction for the new cell type keeps a share of its own change and takes the rest
from that pooled change, the compromise of a hierarchical model between a group's own estimate
and the estimate shared by all groups (partial pooling; Gelman & Hill, *Data Analysis Using
Regression and Multilevel/Hierarchical Models*, 2007).
"""

from __future__ import annotations

import numpy as np
from scvi import REGISTRY_KEYS
from scvi.data import AnnDataManager

from scjepa._constants import SCJEPA_KEYS
from scjepa.data._sampling import control_code

MAX_REFERENCE_CELLS = 1024
"""Most training control cells the pooled change is averaged over."""


def label_codes(adata_manager: AnnDataManager) -> np.ndarray:
    """Registered label (cell type) code of every cell of the manager's AnnData."""
    return np.asarray(adata_manager.get_from_registry(REGISTRY_KEYS.LABELS_KEY)).ravel()


def perturbed_label_codes(adata_manager: AnnDataManager) -> np.ndarray:
    """Label codes of the training cell types in which some cells were perturbed."""
    perturbation = np.asarray(adata_manager.get_from_registry(SCJEPA_KEYS.PERTURBATION_KEY)).ravel()
    return np.unique(label_codes(adata_manager)[perturbation != control_code(adata_manager)])


def own_change_weights(
    source_labels: np.ndarray, perturbed_labels: np.ndarray, weight: float
) -> np.ndarray | None:
    """Share of its own predicted change each source cell keeps.

    1 for cells of a cell type perturbed in training, ``weight`` for the others; ``None`` when
    every source cell keeps its own change (no pooling to do).
    """
    weights = np.where(np.isin(source_labels, perturbed_labels), 1.0, float(weight))
    if len(perturbed_labels) == 0 or np.all(weights == 1.0):
        return None
    return weights


def reference_cells(
    adata_manager: AnnDataManager, perturbed_labels: np.ndarray, seed: int = 0
) -> np.ndarray:
    """Training control cells of the perturbed cell types, in order.

    At most :data:`MAX_REFERENCE_CELLS` of them, a seeded draw without replacement.
    """
    perturbation = np.asarray(adata_manager.get_from_registry(SCJEPA_KEYS.PERTURBATION_KEY)).ravel()
    cells = np.flatnonzero(
        (perturbation == control_code(adata_manager))
        & np.isin(label_codes(adata_manager), perturbed_labels)
    )
    if len(cells) > MAX_REFERENCE_CELLS:
        rng = np.random.default_rng(seed)
        cells = np.sort(rng.choice(cells, MAX_REFERENCE_CELLS, replace=False))
    return cells


def pool_change(
    own: np.ndarray, unchanged: np.ndarray, weights: np.ndarray, pooled_change: np.ndarray
) -> np.ndarray:
    """Each cell's own prediction pooled with a change shared by all cells.

    Rows are cells. Where ``weights`` is 1 the row of ``own`` is kept as it is; elsewhere it is
    ``unchanged + w (own - unchanged) + (1 - w) pooled_change``.
    """
    pooled = own.copy()
    rows = weights < 1.0
    if rows.any():
        w = weights[rows, None]
        pooled[rows] = (
            unchanged[rows] + w * (own[rows] - unchanged[rows]) + (1.0 - w) * pooled_change
        )
    return pooled
