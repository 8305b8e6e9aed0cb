"""The change of expression measured for each training perturbation.

Predictions that extrapolate (to a cell type never perturbed, or to a gene never perturbed) are
pooled towards what was measured; these are the measurements.
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
"""Cells normalised at a time when measuring changes."""


def measured_changes(adata_manager: AnnDataManager, counts) -> dict[str, np.ndarray]:
    """Change of mean log-normalised expression of every training perturbation from control.

    Each is measured against the control cells of the same cell type (the registered labels)
    and averaged over cell types weighted by the perturbation's cells in each, as
    :func:`scjepa.metrics.perturbation_deltas` does for the baselines. Keys are the registered
    perturbation labels; perturbations without controls of their cell types are left out.
    ``counts`` is the registered counts matrix, read in chunks of :data:`CHUNK_CELLS` cells so
    that counts on disk are never loaded whole.
    """
    control = control_code(adata_manager)
    if control is None:
        return {}
    perturbation = np.asarray(adata_manager.get_from_registry(SCJEPA_KEYS.PERTURBATION_KEY))
    labels = np.asarray(adata_manager.get_from_registry(REGISTRY_KEYS.LABELS_KEY))
    groups = stratum_groups(labels.ravel().astype(str), perturbation.ravel().astype(str))
    sums = np.zeros((len(groups.names), counts.shape[1]))
    sizes = np.zeros(len(groups.names))
    for start in range(0, counts.shape[0], CHUNK_CELLS):
        rows = slice(start, start + CHUNK_CELLS)
        chunk_sums, chunk_sizes = group_sums(
            log_normalize(counts[rows]), groups.key[rows], groups.names
        )
        sums += chunk_sums
        sizes += chunk_sizes
    codes, deltas, n_cells = stratified_deltas(sums, sizes, groups, str(control))
    mapping = adata_manager.get_state_registry(SCJEPA_KEYS.PERTURBATION_KEY).categorical_mapping
    return {
        str(mapping[int(code)]): delta.astype(np.float32)
        for code, delta, n in zip(codes, deltas, n_cells, strict=True)
        if n > 0
    }


def mean_change(changes: dict[str, np.ndarray]) -> np.ndarray | None:
    """Mean of measured changes, each perturbation counted once.

    What the mean-of-perturbations baseline predicts; ``None`` when there are no changes.
    """
    if not changes:
        return None
    return np.mean(list(changes.values()), axis=0).astype(np.float32)
