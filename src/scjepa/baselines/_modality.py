"""Baselines predicting one modality (surface protein, chromatin) from RNA of the same cells.

Both regress the target modality's log-normalised values (or, for ATAC, its binarised
accessibility) on a PCA of the cells' log-normalised RNA, the standard simple models of the
NeurIPS 2021 multimodal benchmark's "predict modality" task (Lance et al., NeurIPS Datasets
and Benchmarks 2022). Predictions share the layout of ``BioJEPA.predict_modality``.
"""

from __future__ import annotations

import numpy as np
from anndata import AnnData
from sklearn.decomposition import PCA
from sklearn.linear_model import Ridge
from sklearn.neighbors import KNeighborsRegressor

from scjepa.data._matrix import dense
from scjepa.data._prediction import modality_prediction_anndata
from scjepa.data._validation import get_layer
from scjepa.metrics._expression import log_normalized_matrix


class ModalityBaseline:
    """Shared ``fit`` / ``predict_modality`` of the regression baselines.

    Parameters
    ----------
    rna_layer
        Layer of raw RNA counts; ``None`` takes ``X`` as log-normalised.
    target_layer
        Layer of raw counts of the target modality; ``None`` takes ``X`` as log-normalised.
    n_pcs
        Dimension of the RNA PCA the regression works on.
    target_values
        ``"log_normalized"`` (proteins) regresses log-normalised values of ``target_layer``;
        ``"binary"`` (ATAC) regresses whether counts are positive and predicts probabilities,
        clipped to [0, 1], as ``BioJEPA.predict_modality(target="atac")`` does.
    """

    name = "modality_baseline"

    def __init__(
        self,
        rna_layer: str | None = "counts",
        target_layer: str | None = "counts",
        n_pcs: int = 50,
        target_values: str = "log_normalized",
    ):
        if target_values not in ("log_normalized", "binary"):
            raise ValueError(
                f"`target_values` must be 'log_normalized' or 'binary', got {target_values!r}."
            )
        self.rna_layer = rna_layer
        self.target_layer = target_layer
        self.n_pcs = n_pcs
        self.target_values = target_values
        self.regressor_ = None

    def _regressor(self):
        raise NotImplementedError

    def _rna_matrix(self, rna: AnnData) -> np.ndarray:
        return dense(log_normalized_matrix(rna, self.rna_layer))

    def fit(self, rna: AnnData, target: AnnData, seed: int = 0) -> ModalityBaseline:
        """Fit on cells measured in both modalities (the same ``obs_names``, in any order)."""
        if not rna.obs_names.is_unique or not target.obs_names.isin(rna.obs_names).all():
            raise ValueError("Every target cell must be one of the RNA cells (unique obs_names).")
        rna = rna[target.obs_names]
        x = self._rna_matrix(rna)
        n_components = int(min(self.n_pcs, x.shape[0] - 1, x.shape[1]))
        self.pca_ = PCA(n_components=n_components, random_state=seed).fit(x)
        if self.target_values == "binary":
            y = (dense(get_layer(target, self.target_layer)) > 0).astype(np.float32)
        else:
            y = dense(log_normalized_matrix(target, self.target_layer))
        self.regressor_ = self._regressor().fit(self.pca_.transform(x), y)
        self.rna_var_names_ = rna.var_names.copy()
        self.target_var_ = target.var.copy()
        return self

    def predict_modality(self, rna: AnnData) -> AnnData:
        """Predicted values of the target modality for cells with RNA only."""
        if self.regressor_ is None:
            raise RuntimeError(f"Call `fit` before predicting with {type(self).__name__}.")
        if not np.array_equal(np.asarray(rna.var_names), np.asarray(self.rna_var_names_)):
            raise ValueError("The cells' genes differ from the training genes.")
        values = self.regressor_.predict(self.pca_.transform(self._rna_matrix(rna)))
        if self.target_values == "binary":
            return modality_prediction_anndata(
                rna,
                self.target_var_,
                np.clip(values, 0.0, 1.0),
                method=self.name,
                X="accessibility_probability",
            )
        return modality_prediction_anndata(rna, self.target_var_, values, method=self.name)


class RidgeModalityBaseline(ModalityBaseline):
    """Ridge regression (``alpha``) of the target modality on the RNA PCA."""

    name = "ridge"

    def __init__(self, alpha: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.alpha = alpha

    def _regressor(self):
        return Ridge(alpha=self.alpha)


class KNNModalityBaseline(ModalityBaseline):
    """Mean target values of the ``n_neighbors`` nearest training cells in the RNA PCA."""

    name = "knn"

    def __init__(self, n_neighbors: int = 15, **kwargs):
        super().__init__(**kwargs)
        self.n_neighbors = n_neighbors

    def _regressor(self):
        return KNeighborsRegressor(n_neighbors=self.n_neighbors)
