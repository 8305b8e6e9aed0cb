"""totalVI (scvi-tools) as a protein-from-RNA baseline, on the same split as BioJEPA."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import scvi
from anndata import AnnData

from scjepa.baselines._stacked import stacked_counts
from scjepa.data._features import log_normalize
from scjepa.data._matrix import dense
from scjepa.data._prediction import modality_prediction_anndata
from scjepa.data._validation import get_layer


class TotalVIModalityBaseline:
    """Proteins imputed by totalVI for cells measured by RNA alone.

    totalVI (Gayoso et al., Nature Methods 2021) is trained on the training cells (RNA and
    protein) together with the cells to predict, whose proteins are missing: they form batches
    of their own with all-zero protein counts, which totalVI treats as unmeasured. Their
    denoised protein foreground, averaged over the training batches, is returned as
    log-normalised values (``normalize_total`` + ``log1p``) like every scjepa prediction.
    Because totalVI must see the cells to predict while training, ``fit`` only stores the
    training data and ``predict_modality`` trains.

    Parameters
    ----------
    batch_key
        ``obs`` column of batches in the RNA AnnData; ``None`` treats all cells as one batch.
    rna_layer, protein_layer
        Layers of raw counts; ``None`` uses ``X``.
    max_epochs
        totalVI training epochs.

    After ``predict_modality``, ``train_seconds_`` holds totalVI's training time and ``latent_``
    its embedding of the training cells.
    model_kwargs
        Passed to :class:`scvi.model.TOTALVI`.
    """

    name = "totalVI"

    def __init__(
        self,
        batch_key: str | None = None,
        rna_layer: str | None = "counts",
        protein_layer: str | None = "counts",
        max_epochs: int = 100,
        **model_kwargs,
    ):
        self.batch_key = batch_key
        self.rna_layer = rna_layer
        self.protein_layer = protein_layer
        self.max_epochs = max_epochs
        self.model_kwargs = model_kwargs
        self.train_seconds_: float | None = None
        self.latent_: np.ndarray | None = None
        self._train = None

    def fit(self, rna: AnnData, protein: AnnData) -> TotalVIModalityBaseline:
        """Keep the training cells (RNA and protein) for training with the cells to predict."""
        if not protein.obs_names.isin(rna.obs_names).all():
            raise ValueError("Every protein cell must be one of the RNA cells.")
        self._train = (rna[protein.obs_names], protein)
        return self

    def predict_modality(self, rna: AnnData, seed: int = 0) -> AnnData:
        """Train totalVI on training plus query cells and impute the query cells' proteins."""
        if self._train is None:
            raise RuntimeError("Call `fit` before predicting with TotalVIModalityBaseline.")
        train_rna, train_protein = self._train
        query_rna = rna.copy()
        query_rna.obs_names = [f"query-{name}" for name in rna.obs_names]
        combined = stacked_counts(train_rna, query_rna, self.rna_layer, self.batch_key)
        proteins = dense(get_layer(train_protein, self.protein_layer))
        combined.obsm["protein_expression"] = pd.DataFrame(
            np.vstack([proteins, np.zeros((rna.n_obs, proteins.shape[1]), dtype=np.float32)]),
            index=combined.obs_names,
            columns=train_protein.var_names,
        )
        scvi.settings.seed = seed
        scvi.model.TOTALVI.setup_anndata(
            combined,
            protein_expression_obsm_key="protein_expression",
            layer="counts",
            batch_key="_batch",
        )
        model = scvi.model.TOTALVI(combined, **self.model_kwargs)
        start = time.time()
        model.train(max_epochs=self.max_epochs, enable_progress_bar=False)
        self.train_seconds_ = time.time() - start
        query = np.arange(train_rna.n_obs, combined.n_obs)
        self.latent_ = model.get_latent_representation(indices=np.arange(train_rna.n_obs))
        training_batches = list(combined.obs["_batch"].iloc[: train_rna.n_obs].unique())
        _, protein = model.get_normalized_expression(
            indices=query, transform_batch=training_batches, return_numpy=True
        )
        values = np.asarray(log_normalize(np.asarray(protein, dtype=np.float64)))
        return modality_prediction_anndata(rna, train_protein.var, values, method=self.name)
