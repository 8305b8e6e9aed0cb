"""scvi-tools models that impute a modality for query cells they are trained together with."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import scvi
from anndata import AnnData
from scipy import sparse

from scjepa.data._prediction import modality_prediction_anndata
from scjepa.data._validation import get_layer


class ScviImputationBaseline:
    """Shared ``fit`` / ``predict_modality`` of totalVI and MultiVI as baselines.

    These models impute a modality only for cells they were trained with, so ``fit`` keeps the
    training cells and ``predict_modality`` trains on them together with the query cells, whose
    target modality is missing. Subclasses build the model (:meth:`_model`) and read its
    imputation (:meth:`_imputed`).

    After ``predict_modality``, ``train_seconds_`` holds the training time and ``latent_`` the
    model's embedding of the training cells.
    """

    name = "scvi_imputation"
    modality = "target"
    """What the target modality measures, for messages."""
    values = "log1p_normalized"
    """What predictions hold (``uns["scjepa"]["X"]``)."""

    def __init__(
        self,
        batch_key: str | None,
        rna_layer: str | None,
        target_layer: str | None,
        max_epochs: int,
        train_kwargs: dict | None,
        model_kwargs: dict,
    ):
        self.batch_key = batch_key
        self.rna_layer = rna_layer
        self.target_layer = target_layer
        self.max_epochs = max_epochs
        self.train_kwargs = dict(train_kwargs or {})
        self.model_kwargs = model_kwargs
        self.train_seconds_: float | None = None
        self.latent_: np.ndarray | None = None
        self._training_cells: tuple[AnnData, AnnData] | None = None

    def fit(self, rna: AnnData, target: AnnData) -> ScviImputationBaseline:
        """Keep the training cells (RNA and the target modality) to train with the query cells."""
        if not target.obs_names.isin(rna.obs_names).all():
            raise ValueError(f"Every {self.modality} cell must be one of the RNA cells.")
        self._training_cells = (rna[target.obs_names], target)
        return self

    def predict_modality(self, rna: AnnData, seed: int = 0) -> AnnData:
        """Train on training plus query cells; the query cells' imputed target modality."""
        if self._training_cells is None:
            raise RuntimeError(f"Call `fit` before predicting with {type(self).__name__}.")
        train_rna, train_target = self._training_cells
        query_rna = rna.copy()
        query_rna.obs_names = [f"query-{name}" for name in rna.obs_names]
        scvi.settings.seed = seed
        model = self._model(train_rna, train_target, query_rna)
        start = time.time()
        model.train(max_epochs=self.max_epochs, enable_progress_bar=False, **self.train_kwargs)
        self.train_seconds_ = time.time() - start
        n_train = train_rna.n_obs
        self.latent_ = model.get_latent_representation(indices=np.arange(n_train))
        values = self._imputed(model, n_train, np.arange(n_train, n_train + rna.n_obs))
        return modality_prediction_anndata(
            rna, train_target.var, values, method=self.name, X=self.values
        )

    def _model(self, train_rna: AnnData, train_target: AnnData, query_rna: AnnData):
        """The scvi-tools model, set up on training and query cells (training cells first)."""
        raise NotImplementedError

    def _imputed(self, model, n_train: int, query: np.ndarray) -> np.ndarray:
        """Predicted values of the target modality of the ``query`` cells."""
        raise NotImplementedError


def stacked_counts(
    train: AnnData,
    query: AnnData,
    layer: str | None,
    batch_key: str | None,
    query_batches: bool = True,
) -> AnnData:
    """Training and query RNA counts in one AnnData, in ``layers["counts"]`` and ``X``.

    ``obs["_batch"]`` holds the batches; with ``query_batches`` the query cells get batches of
    their own (``"query-<batch>"``), for models that tell a missing modality by its batch.
    """
    counts = sparse.vstack(
        [sparse.csr_matrix(get_layer(train, layer)), sparse.csr_matrix(get_layer(query, layer))]
    ).tocsr()
    train_batch = train.obs[batch_key].astype(str) if batch_key else pd.Series("0", train.obs_names)
    query_batch = query.obs[batch_key].astype(str) if batch_key else pd.Series("0", query.obs_names)
    query_prefix = "query-" if query_batches else ""
    obs = pd.DataFrame(
        {
            "_batch": np.concatenate(
                [train_batch.to_numpy(), (query_prefix + query_batch).to_numpy()]
            )
        },
        index=list(train.obs_names) + list(query.obs_names),
    )
    combined = AnnData(X=counts, obs=obs, var=pd.DataFrame(index=train.var_names.copy()))
    combined.layers["counts"] = counts.copy()
    return combined
