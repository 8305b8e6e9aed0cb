"""Minibatches that put the populations an objective compares side by side.

Sequencing destroys the cells it measures, so no cell is seen both before and after a
perturbation, or at two times. The perturbation objective therefore compares control and
perturbed cells of the same stratum (cell type x batch, and time point when times are
registered), and the temporal objective compares cells of neighbouring time points of the same
time stratum. A random minibatch rarely holds enough of each, so batches are built here to do so.
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
    time: np.ndarray | None = None
    """Sampling time of every cell, ``None`` where no time is registered."""
    time_stratum: np.ndarray | None = None
    """Integer code of the population a cell's time course belongs to (see :func:`cell_groups`)."""

    def subset(self, indices: np.ndarray) -> CellGroups:
        """The codes of the cells at ``indices``."""
        return CellGroups(
            self.stratum[indices],
            self.perturbation[indices],
            self.is_control[indices],
            None if self.time is None else self.time[indices],
            None if self.time_stratum is None else self.time_stratum[indices],
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


def time_strata_by_batch(batch: np.ndarray, time: np.ndarray) -> bool:
    """Whether every batch holds at least two time points.

    Then a time course is followed within each batch, so batch effects cannot pass for change
    over time; when batches and times are confounded (one batch per time point, common in time
    courses) there is nothing to pair within a batch and all batches are pooled.
    """
    return all(len(np.unique(time[batch == b])) >= 2 for b in np.unique(batch))


def registered_times(adata_manager: AnnDataManager) -> np.ndarray | None:
    """Sampling time of every registered cell, or ``None`` without ``time_key``."""
    if SCJEPA_KEYS.TIME_KEY not in adata_manager.data_registry:
        return None
    return np.asarray(adata_manager.get_from_registry(SCJEPA_KEYS.TIME_KEY), dtype=float).ravel()


def cell_groups(adata_manager: AnnDataManager) -> CellGroups:
    """Read strata, perturbation codes and times of every cell from the registry.

    With times registered, the perturbation stratum also splits by time point (controls are
    compared with perturbed cells of the same time), and the time stratum of a cell is its
    perturbation, within its batch when :func:`time_strata_by_batch` holds.
    """
    n_obs = adata_manager.adata.n_obs
    batch = _codes(adata_manager, REGISTRY_KEYS.BATCH_KEY)
    labels = _codes(adata_manager, REGISTRY_KEYS.LABELS_KEY)
    batch = np.zeros(n_obs, dtype=np.int64) if batch is None else batch
    labels = np.zeros(n_obs, dtype=np.int64) if labels is None else labels
    stratum = batch * (int(labels.max(initial=0)) + 1) + labels
    perturbation = _codes(adata_manager, SCJEPA_KEYS.PERTURBATION_KEY)
    if perturbation is None:
        perturbation = np.full(n_obs, -1, dtype=np.int64)
        is_control = np.ones(n_obs, dtype=bool)
    else:
        is_control = perturbation == control_code(adata_manager)
    time = registered_times(adata_manager)
    if time is None:
        return CellGroups(stratum, perturbation, is_control)
    time_code = np.unique(time, return_inverse=True)[1].ravel()
    stratum = stratum * (int(time_code.max()) + 1) + time_code
    lineage = batch if time_strata_by_batch(batch, time) else np.zeros_like(batch)
    time_stratum = np.unique(np.stack([lineage, perturbation]), axis=1, return_inverse=True)[1]
    return CellGroups(stratum, perturbation, is_control, time, time_stratum.ravel())


class _MinibatchSampler(Sampler):
    """Seeded yielder of whole minibatches (index arrays), ``n_batches`` per pass."""

    def __init__(self, n_obs: int, batch_size: int, seed: int, fixed: bool, n_batches: int | None):
        if batch_size < 4:
            raise ValueError(f"`batch_size` must be at least 4, got {batch_size}.")
        self.n_obs = n_obs
        self.batch_size = batch_size
        self.n_batches = n_batches or max(1, int(np.ceil(n_obs / batch_size)))
        self.seed = seed
        self.fixed = fixed
        self._rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return self.n_batches

    def _stream(self) -> np.random.Generator:
        """The random stream of a pass: the same every pass when ``fixed``."""
        return np.random.default_rng(self.seed) if self.fixed else self._rng


class StratifiedPerturbationSampler(_MinibatchSampler):
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
    n_batches
        Minibatches per pass; by default as many as cover the cells once.
    """

    @staticmethod
    def applies(groups: CellGroups) -> bool:
        """Whether some stratum holds both control and perturbed cells."""
        return any(
            groups.is_control[groups.stratum == s].any()
            and not groups.is_control[groups.stratum == s].all()
            for s in np.unique(groups.stratum)
        )

    def __init__(
        self,
        groups: CellGroups,
        batch_size: int = 256,
        n_groups: int = 8,
        seed: int = 0,
        fixed: bool = False,
        n_batches: int | None = None,
    ):
        super().__init__(len(groups.stratum), batch_size, seed, fixed, n_batches)
        self.groups = groups
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

    def __iter__(self):
        rng = self._stream()
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


class TimeCourseSampler(_MinibatchSampler):
    """Yield minibatches (as index arrays) of cells from a few consecutive time points.

    Each minibatch comes from one time stratum (see :func:`cell_groups`): a window of
    ``n_time_points`` consecutive time points at a random position, and an equal number of cells
    from each, so the temporal objective can pair every earlier time point with every later one
    in the window. Time strata are drawn in proportion to their cells.

    Parameters
    ----------
    groups
        Codes and times of the cells this sampler draws from (positions ``0..n-1``).
    batch_size
        Cells per minibatch.
    n_time_points
        Consecutive time points per minibatch (at least 2).
    seed
        Seed; with ``fixed=True`` every pass yields the same batches (for validation).
    fixed
        Whether to restart the random stream on every pass.
    n_batches
        Minibatches per pass; by default as many as cover the cells once.
    """

    @staticmethod
    def applies(groups: CellGroups) -> bool:
        """Whether some time stratum spans at least two time points."""
        if groups.time is None:
            return False
        return any(
            len(np.unique(groups.time[groups.time_stratum == s])) >= 2
            for s in np.unique(groups.time_stratum)
        )

    def __init__(
        self,
        groups: CellGroups,
        batch_size: int = 256,
        n_time_points: int = 3,
        seed: int = 0,
        fixed: bool = False,
        n_batches: int | None = None,
    ):
        if groups.time is None:
            raise ValueError("These cells have no registered times.")
        if n_time_points < 2:
            raise ValueError(f"`n_time_points` must be at least 2, got {n_time_points}.")
        super().__init__(len(groups.time), batch_size, seed, fixed, n_batches)
        self.n_time_points = n_time_points
        self._strata = []
        for code in np.unique(groups.time_stratum):
            cells = np.flatnonzero(groups.time_stratum == code)
            times = np.unique(groups.time[cells])
            if len(times) >= 2:
                by_time = [cells[groups.time[cells] == t] for t in times]
                self._strata.append((by_time, len(cells)))

    def __iter__(self):
        rng = self._stream()
        if not self._strata:
            return
        weights = np.array([n for _, n in self._strata], dtype=float)
        weights /= weights.sum()
        for _ in range(self.n_batches):
            by_time, _ = self._strata[rng.choice(len(self._strata), p=weights)]
            width = min(self.n_time_points, len(by_time))
            start = rng.integers(len(by_time) - width + 1)
            per_time = max(2, self.batch_size // width)
            yield np.concatenate(
                [
                    rng.choice(cells, size=per_time, replace=len(cells) < per_time)
                    for cells in by_time[start : start + width]
                ]
            )


class InterleavedSampler(Sampler):
    """Alternate the minibatches of several samplers, one objective's batch after another's."""

    def __init__(self, samplers: list[Sampler]):
        self.samplers = samplers

    def __len__(self) -> int:
        return sum(len(s) for s in self.samplers)

    def __iter__(self):
        iterators = [iter(s) for s in self.samplers]
        while iterators:
            for iterator in list(iterators):
                try:
                    yield next(iterator)
                except StopIteration:
                    iterators.remove(iterator)
