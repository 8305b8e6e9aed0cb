"""scvi-tools' data splitter, with minibatches from :class:`StratifiedPerturbationSampler`."""

from __future__ import annotations

import numpy as np
from scvi.dataloaders import DataSplitter
from torch.utils.data import DataLoader

from scjepa.data._sampling import StratifiedPerturbationSampler, cell_groups


class PerturbationDataSplitter(DataSplitter):
    """Split cells into training and validation sets like :class:`scvi.dataloaders.DataSplitter`.

    Training and validation minibatches come from :class:`StratifiedPerturbationSampler`, so both
    hold control and perturbed cells of one stratum. Validation batches are the same every epoch,
    which keeps ``validation_loss`` comparable for early stopping.

    Parameters
    ----------
    adata_manager
        Manager of the registered AnnData.
    n_groups
        Perturbations per minibatch.
    seed
        Seed of the samplers.
    **kwargs
        Passed to :class:`scvi.dataloaders.DataSplitter` (``train_size``, ``batch_size``, ...).
    """

    def __init__(self, adata_manager, n_groups: int = 8, seed: int = 0, **kwargs):
        self.n_groups = n_groups
        self.seed = seed
        super().__init__(adata_manager, **kwargs)
        self._groups = cell_groups(adata_manager)

    def _loader(self, indices: np.ndarray, fixed: bool) -> DataLoader:
        indices = np.asarray(indices)
        sampler = StratifiedPerturbationSampler(
            self._groups.subset(indices),
            batch_size=self.data_loader_kwargs.get("batch_size", 256),
            n_groups=self.n_groups,
            seed=self.seed + (1 if fixed else 0),
            fixed=fixed,
        )
        dataset = self.adata_manager.create_torch_dataset(
            indices=indices, load_sparse_tensor=self.load_sparse_tensor
        )
        # batch_size=None: the sampler yields whole minibatches, fetched with one __getitem__
        return DataLoader(
            dataset, sampler=sampler, batch_size=None, pin_memory=self.pin_memory, num_workers=0
        )

    def train_dataloader(self) -> DataLoader:
        """Minibatches of training cells, resampled every epoch."""
        return self._loader(self.train_idx, fixed=False)

    def val_dataloader(self) -> DataLoader | None:
        """The same minibatches of validation cells every epoch, or ``None`` without them."""
        if len(self.val_idx) == 0:
            return None
        return self._loader(self.val_idx, fixed=True)
