"""totalVI (scvi-tools) as a protein-from-RNA baseline, on the same split as BioJEPA."""

from __future__ import annotations

import numpy as np
import pandas as pd
import scvi
from anndata import AnnData

from scjepa.baselines._scvi_imputation import ScviImputationBaseline, stacked_counts
from scjepa.data._features import log_normalize
from scjepa.data._matrix import dense
from scjepa.data._validation import get_layer


class TotalVIModalityBaseline(ScviImputationBaseline):
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
    train_kwargs
        Passed to ``TOTALVI.train``.
    **model_kwargs
        Passed to :class:`scvi.model.TOTALVI`.

    After ``predict_modality``, ``train_seconds_`` holds totalVI's training time and ``latent_``
    its embedding of the training cells.
    """

    name = "totalVI"
    modality = "protein"

    def __init__(
        self,
        batch_key: str | None = None,
        rna_layer: str | None = "counts",
        protein_layer: str | None = "counts",
        max_epochs: int = 100,
        train_kwargs: dict | None = None,
        **model_kwargs,
    ):
        super().__init__(
            batch_key, rna_layer, protein_layer, max_epochs, train_kwargs, model_kwargs
        )

    def _model(self, train_rna: AnnData, train_protein: AnnData, query_rna: AnnData):
        combined = stacked_counts(train_rna, query_rna, self.rna_layer, self.batch_key)
        proteins = dense(get_layer(train_protein, self.target_layer))
        missing = np.zeros((query_rna.n_obs, proteins.shape[1]), dtype=np.float32)
        combined.obsm["protein_expression"] = pd.DataFrame(
            np.vstack([proteins, missing]),
            index=combined.obs_names,
            columns=train_protein.var_names,
        )
        scvi.model.TOTALVI.setup_anndata(
            combined,
            protein_expression_obsm_key="protein_expression",
            layer="counts",
            batch_key="_batch",
        )
        return scvi.model.TOTALVI(combined, **self.model_kwargs)

    def _imputed(self, model, n_train: int, query: np.ndarray) -> np.ndarray:
        training_batches = list(model.adata.obs["_batch"].iloc[:n_train].unique())
        _, protein = model.get_normalized_expression(
            indices=query, transform_batch=training_batches, return_numpy=True
        )
        return np.asarray(log_normalize(np.asarray(protein, dtype=np.float64)))
