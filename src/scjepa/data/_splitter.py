"""scvi-tools' data splitter, with minibatches built for scjepa's objectives."""

from __future__ import annotations

import numpy as np
from scvi.dataloaders import DataSplitter
from torch.utils.data import DataLoader

from scjepa.data._sampling import (
    InterleavedSampler,
    StratifiedPerturbationSampler,
    TimeCourseSampler,
    cell_groups,
)


class PerturbationDataSplitter(DataSplitter):
    """Split cells into training and validation sets like :class:`scvi.dataloaders.DataSplitter`.

    Training and validation minibatches come from :class:`StratifiedPerturbationSampler`, so they
    hold control and perturbed cells of one stratum, from :class:`TimeCourseSampler` for time
    courses, or alternately from both when the data has perturbations and times. Validation
    batches are the same every epoch, which keeps ``validation_loss`` comparable for early
    stopping.

    Parameters
    ----------
    adata_manager
        Manager of the registered AnnData.
    n_groups
        Perturbations per minibatch.
    n_time_points
        Consecutive time points per time-course minibatch.
    seed
        Seed of the samplers.
    **kwargs
        Passed to :class:`scvi.dataloaders.DataSplitter` (``train_size``, ``batch_size``, ...).
    """

    def __init__(
        self, adata_manager, n_groups: int = 8, n_time_points: int = 3, seed: int = 0, **kwargs
    ):
        self.n_groups = n_groups
        self.n_time_points = n_time_points
        self.seed = seed
        super().__init__(adata_manager, **kwargs)
        self._groups = cell_groups(adata_manager)

    def _loader(self, indices: np.ndarray, fixed: bool) -> DataLoader:
        indices = np.asarray(indices)
        groups = self._groups.subset(indices)
        batch_size = self.data_loader_kwargs.get("batch_size", 256)
        seed = self.seed + (1 if fixed else 0)
        with_perturbations = StratifiedPerturbationSampler.applies(groups)
        with_times = TimeCourseSampler.applies(groups)
        n_batches = max(1, int(np.ceil(len(indices) / batch_size)))
        if with_perturbations and with_times:
            # both objectives share one pass over the data
            n_batches = max(1, n_batches // 2)
        samplers = []
        if with_perturbations or not with_times:
            samplers.append(
                StratifiedPerturbationSampler(
                    groups, batch_size, self.n_groups, seed, fixed, n_batches=n_batches
                )
            )
        if with_times:
            samplers.append(
                TimeCourseSampler(
                    groups, batch_size, self.n_time_points, seed, fixed, n_batches=n_batches
                )
            )
        sampler = samplers[0] if len(samplers) == 1 else InterleavedSampler(samplers)
        dataset = self.adata_manager.create_torch_dataset(
            indices=indices, load_sparse_tensor=self.load_sparse_tensor
        )
        # batch_size=None: the sampler yields whole minibatches, fetched with one __getitem__
        return DataLoader(
            dataset, sampler=sampler, batch_size=None, pin_memory=self.pin_memory, num_workers=0
        )

    def on_after_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        """Keep sparse minibatches sparse.

        scvi-tools densifies them here; scjepa's encoders read sparse counts directly, at a cost
        that follows the detected genes rather than all genes.
        """
        return batch

    def train_dataloader(self) -> DataLoader:
        """Minibatches of training cells, resampled every epoch."""
        return self._loader(self.train_idx, fixed=False)

    def val_dataloader(self) -> DataLoader | None:
        """The same minibatches of validation cells every epoch, or ``None`` without them."""
        if len(self.val_idx) == 0:
            return None
        return self._loader(self.val_idx, fixed=True)
