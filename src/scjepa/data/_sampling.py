"""Minibatches that put unperturbed cells next to perturbed cells of the same stratum.

Perturb-seq destroys the cells it measures, so no cell is seen both before and after a
perturbation. The perturbation objective therefore compares populations: control cells and
perturbed cells from the same stratum (cell type x batch). A random minibatch rarely holds enough
of both for one perturbation, so batches are built here to do so.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scvi import REGISTRY_KEYS
from scvi.data import AnnDataManager
from torch.utils.data import Sampler

from scjepa._constants import SCJEPA_KEYS


@dataclass(frozen=True)
class CellGroups:
    """Per-cell codes that the perturbation objective groups by."""

    stratum: np.ndarray
    """Integer code of (batch, label) for every cell."""
    perturbation: np.ndarray
    """Integer code of the perturbation label, ``-1`` where no perturbation is registered."""
    is_control: np.ndarray
    """Boolean mask of unperturbed cells."""

    def subset(self, indices: np.ndarray) -> CellGroups:
        """The codes of the cells at ``indices``."""
        return CellGroups(
            self.stratum[indices], self.perturbation[indices], self.is_control[indices]
        )


def _codes(adata_manager: AnnDataManager, key: str) -> np.ndarray | None:
    if key not in adata_manager.data_registry:
        return None
    return np.asarray(adata_manager.get_from_registry(key)).ravel().astype(np.int64)


def control_code(adata_manager: AnnDataManager) -> int | None:
    """Category code of the control label, or ``None`` if no perturbation is registered."""
    if SCJEPA_KEYS.PERTURBATION_KEY not in adata_manager.data_registry:
        return None
    mapping = list(
        adata_manager.get_state_registry(SCJEPA_KEYS.PERTURBATION_KEY).categorical_mapping
    )
    control_value = adata_manager.registry["setup_args"]["control_value"]
    return mapping.index(control_value) if control_value in mapping else None


def cell_groups(adata_manager: AnnDataManager) -> CellGroups:
    """Read strata and perturbation codes of every cell from the registry."""
    n_obs = adata_manager.adata.n_obs
    batch = _codes(adata_manager, REGISTRY_KEYS.BATCH_KEY)
    labels = _codes(adata_manager, REGISTRY_KEYS.LABELS_KEY)
    batch = np.zeros(n_obs, dtype=np.int64) if batch is None else batch
    labels = np.zeros(n_obs, dtype=np.int64) if labels is None else labels
    stratum = batch * (int(labels.max(initial=0)) + 1) + labels
    perturbation = _codes(adata_manager, SCJEPA_KEYS.PERTURBATION_KEY)
    if perturbation is None:
        return CellGroups(stratum, np.full(n_obs, -1, dtype=np.int64), np.ones(n_obs, dtype=bool))
    return CellGroups(stratum, perturbation, perturbation == control_code(adata_manager))


class StratifiedPerturbationSampler(Sampler):
    """Yield minibatches (as index arrays) of matched control and perturbed cells.

    Each minibatch is drawn from one stratum: ``n_groups`` perturbations present there, an equal
    number of cells of each, and as many control cells of the same stratum. Perturbations are
    drawn uniformly, so rare perturbations are seen as often as common ones. Strata are drawn in
    proportion to their perturbed cells. Without perturbations (or without controls next to
    them) it falls back to shuffled minibatches, which serve the masked objective alone.

    Parameters
    ----------
    groups
        Codes of the cells this sampler draws from (positions ``0..n-1``).
    batch_size
        Cells per minibatch.
    n_groups
        Perturbations per minibatch.
    seed
        Seed; with ``fixed=True`` every pass yields the same batches (for validation).
    fixed
        Whether to restart the random stream on every pass.
    """

    def __init__(
        self,
        groups: CellGroups,
        batch_size: int = 256,
        n_groups: int = 8,
        seed: int = 0,
        fixed: bool = False,
    ):
        if batch_size < 4:
            raise ValueError(f"`batch_size` must be at least 4, got {batch_size}.")
        self.groups = groups
        self.batch_size = batch_size
        self.n_obs = len(groups.stratum)
        self.n_batches = max(1, int(np.ceil(self.n_obs / batch_size)))
        self.seed = seed
        self.fixed = fixed
        self._rng = np.random.default_rng(seed)
        self._strata = self._index_strata()
        self.n_groups = max(1, min(n_groups, batch_size // 4))

    def _index_strata(self) -> list[tuple[np.ndarray, dict[int, np.ndarray], int]]:
        strata = []
        for code in np.unique(self.groups.stratum):
            in_stratum = self.groups.stratum == code
            controls = np.flatnonzero(in_stratum & self.groups.is_control)
            perturbed = np.flatnonzero(in_stratum & ~self.groups.is_control)
            if len(controls) == 0 or len(perturbed) == 0:
                continue
            by_perturbation = {
                int(p): perturbed[self.groups.perturbation[perturbed] == p]
                for p in np.unique(self.groups.perturbation[perturbed])
            }
            strata.append((controls, by_perturbation, len(perturbed)))
        return strata

    def __len__(self) -> int:
        return self.n_batches

    def __iter__(self):
        rng = np.random.default_rng(self.seed) if self.fixed else self._rng
        if not self._strata:
            order = rng.permutation(self.n_obs)
            for start in range(0, self.n_obs, self.batch_size):
                yield order[start : start + self.batch_size]
            return
        weights = np.array([n for _, _, n in self._strata], dtype=float)
        weights /= weights.sum()
        for _ in range(self.n_batches):
            controls, by_perturbation, _ = self._strata[rng.choice(len(self._strata), p=weights)]
            names = np.array(list(by_perturbation))
            chosen = rng.choice(names, size=min(self.n_groups, len(names)), replace=False)
            per_group = max(2, self.batch_size // (2 * len(chosen)))
            perturbed = [
                rng.choice(
                    by_perturbation[int(p)],
                    size=per_group,
                    replace=len(by_perturbation[int(p)]) < per_group,
                )
                for p in chosen
            ]
            n_controls = per_group * len(chosen)
            control_cells = rng.choice(
                controls, size=n_controls, replace=len(controls) < n_controls
            )
            yield np.concatenate([control_cells, *perturbed])
