"""BioJEPA: the user-facing scvi-tools model."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import numpy as np
import pandas as pd
import rich.pretty  # noqa: F401 - scvi-tools' view_anndata_setup uses it without importing it
import torch
from anndata import AnnData
from mudata import MuData
from scipy import sparse
from scvi import REGISTRY_KEYS, settings
from scvi.data import AnnDataManager
from scvi.data.fields import (
    CategoricalObsField,
    LayerField,
    MuDataCategoricalObsField,
    MuDataLayerField,
    NumericalObsField,
)
from scvi.model._utils import parse_device_args
from scvi.model.base import BaseModelClass, UnsupervisedTrainingMixin
from scvi.utils import setup_anndata_dsp

from scjepa._constants import NORMALIZATION_TARGET_SUM, SCJEPA_KEYS
from scjepa.data._direct_effect import target_gene_effects
from scjepa.data._features import (
    gene_features_from_expression,
    log_normalize,
    validate_feature_table,
)
from scjepa.data._multimodal import (
    DEFAULT_MODALITIES,
    as_rna_protein_mudata,
    prepare_mudata,
    rna_of,
)
from scjepa.data._perturbations import members_to_index, parse_perturbation
from scjepa.data._prediction import (
    modality_prediction_anndata,
    prediction_anndata,
    time_prediction_anndata,
)
from scjepa.data._sampling import control_code, registered_times, time_strata_by_batch
from scjepa.data._splitter import PerturbationDataSplitter
from scjepa.data._validation import (
    get_layer,
    validate_counts,
    validate_numeric_obs,
    validate_obs_column,
)
from scjepa.model._serialization import (
    ADATA_FILE,
    MODEL_FILE,
    MUDATA_FILE,
    read_model_file,
    write_model_file,
)
from scjepa.module import BioJEPAModule
from scjepa.module._normalize import library_size, to_dense
from scjepa.train import JEPATrainingPlan

logger = logging.getLogger(__name__)

_EXPRESSION_MODES = ("shift", "sample", "mean")


class BioJEPA(UnsupervisedTrainingMixin, BaseModelClass):
    """Joint Embedding Predictive Architecture for single-cell data.

    BioJEPA learns cell embeddings by predicting, in embedding space, what a cell looks like when
    part of it is hidden (masked genes) and what control cells become under a perturbation. A
    decoder head turns predicted embeddings back into expression, so the model predicts the
    transcriptome of cells under perturbations never measured, including unseen genes and
    combinations.

    Parameters
    ----------
    adata
        AnnData registered with :meth:`setup_anndata`.
    n_latent
        Embedding dimension.
    n_hidden
        Hidden width of the encoder.
    n_layers
        Hidden layers of the encoder.
    dropout
        Encoder dropout.
    perturbation_features
        Optional DataFrame indexed by perturbation member name (gene, drug, ...) with one numeric
        feature vector per row, e.g. gene embeddings or drug fingerprints. Every member of every
        perturbation in the data must have a row. By default each measured gene is described by
        its loadings on the main axes of expression variation (see
        :func:`scjepa.data.gene_features_from_expression`), so any measured gene can be predicted.
    n_perturbation_features
        Number of expression axes in the default features.
    **module_kwargs
        Passed to :class:`~scjepa.module.BioJEPAModule` (``mask_ratio``, loss weights, predictor
        sizes, ...).

    Examples
    --------
    >>> adata = scjepa.datasets.perturbseq_demo()
    >>> scjepa.BioJEPA.setup_anndata(adata, layer="counts", perturbation_key="perturbation",
    ...                              batch_key="batch", labels_key="cell_type")
    >>> model = scjepa.BioJEPA(adata)
    >>> model.train()
    >>> adata.obsm["X_biojepa"] = model.get_latent_representation()
    >>> ctrl = adata[adata.obs.perturbation == "control"]
    >>> pred = model.predict_perturbation(["G0001+G0002"], adata=ctrl)
    """

    _module_cls = BioJEPAModule
    _training_plan_cls = JEPATrainingPlan
    _data_splitter_cls = PerturbationDataSplitter

    def __init__(
        self,
        adata: AnnData,
        n_latent: int = 128,
        n_hidden: int = 512,
        n_layers: int = 2,
        dropout: float = 0.1,
        perturbation_features: pd.DataFrame | None = None,
        n_perturbation_features: int = 32,
        **module_kwargs,
    ):
        super().__init__(adata)
        self._check_var_names_unique(adata)
        self.perturbation_vocabulary_: list[str] | None = None
        self.target_gene_effect_: float | None = None
        self.target_gene_effects_: dict[str, float] = {}
        features, members, ctrl = None, None, None
        if SCJEPA_KEYS.PERTURBATION_KEY in self.adata_manager.data_registry:
            table = self._perturbation_feature_table(perturbation_features, n_perturbation_features)
            self.perturbation_vocabulary_ = [str(name) for name in table.index]
            categories = self.adata_manager.get_state_registry(
                SCJEPA_KEYS.PERTURBATION_KEY
            ).categorical_mapping
            members = torch.as_tensor(self._members(list(categories)))
            features = torch.as_tensor(table.to_numpy(dtype=np.float32))
            ctrl = control_code(self.adata_manager)
        time_kwargs = self._time_course_kwargs()
        self.module = self._module_cls(
            n_input=self.summary_stats.n_vars,
            n_batch=self.summary_stats.n_batch,
            n_labels=self.summary_stats.n_labels,
            n_latent=n_latent,
            n_hidden=n_hidden,
            n_layers=n_layers,
            dropout=dropout,
            perturbation_features=features,
            perturbation_members=members,
            control_code=ctrl,
            use_dose=SCJEPA_KEYS.DOSE_KEY in self.adata_manager.data_registry,
            n_proteins=self._n_proteins(),
            **time_kwargs,
            **module_kwargs,
        )
        n_seen = 0 if members is None else len(members) - 1
        self._model_summary_string = (
            f"BioJEPA with n_latent: {n_latent}, n_hidden: {n_hidden}, n_layers: {n_layers}"
        )
        if features is not None:
            self._model_summary_string += (
                f", perturbation categories: {n_seen}, perturbable entities: {len(features)}"
            )
        if time_kwargs:
            self._model_summary_string += f", time span: {time_kwargs['time_span']:g}"
        if self._n_proteins():
            self._model_summary_string += f", proteins: {self._n_proteins()}"
        self.init_params_ = self._get_init_params(locals())

    def _n_proteins(self) -> int:
        if SCJEPA_KEYS.PROTEIN_KEY not in self.adata_manager.data_registry:
            return 0
        registry = self.registry_["field_registries"][SCJEPA_KEYS.PROTEIN_KEY]
        return len(registry["state_registry"]["column_names"])

    def _counts(self, adata) -> object:
        """The registered RNA counts matrix of ``adata`` (an AnnData or a MuData)."""
        if isinstance(adata, MuData):
            modality = self._setup_args["modalities"]["rna_layer"]
            return get_layer(adata.mod[modality], self._setup_args["rna_layer"])
        return get_layer(adata, self._setup_args["layer"])

    def _time_course_kwargs(self) -> dict:
        """Span of the registered time course and how its cells are paired, for the module."""
        time = registered_times(self.adata_manager)
        if time is None:
            return {}
        batch = np.asarray(self.adata_manager.get_from_registry(REGISTRY_KEYS.BATCH_KEY)).ravel()
        by_batch = time_strata_by_batch(batch, time)
        if not by_batch:
            logger.info(
                "Some batch holds a single time point, so time points are paired across batches."
            )
        return {
            "time_span": float(time.max() - time.min()),
            "time_strata_by_batch": by_batch,
        }

    # ------------------------------------------------------------------------------- set-up
    @classmethod
    @setup_anndata_dsp.dedent
    def setup_anndata(
        cls,
        adata: AnnData,
        layer: str | None = None,
        perturbation_key: str | None = None,
        control_value: str = "control",
        perturbation_delimiter: str = "+",
        dose_key: str | None = None,
        batch_key: str | None = None,
        labels_key: str | None = None,
        time_key: str | None = None,
        **kwargs,
    ) -> None:
        """Register an AnnData of raw counts with BioJEPA.

        Everything is checked before anything is written into ``adata``.

        Parameters
        ----------
        %(param_adata)s
        layer
            Layer holding raw integer counts; ``None`` uses ``adata.X``.
        perturbation_key
            ``obs`` column with the perturbation of each cell, e.g. ``"KLF1"`` or ``"KLF1+MAP2K6"``.
        control_value
            Label of unperturbed cells in that column.
        perturbation_delimiter
            Separator between members of a combination.
        dose_key
            Optional numeric ``obs`` column with the dose (controls: any value, e.g. 0).
        %(param_batch_key)s
        %(param_labels_key)s
        time_key
            Optional numeric ``obs`` column with the sampling time of each cell (hours, days,
            ...); enables the temporal objective and :meth:`predict_time`. It needs at least two
            time points.
        """
        setup_method_args = cls._get_setup_method_args(**locals())
        validate_counts(adata, layer)
        for key, what in [
            (perturbation_key, "Perturbation"),
            (dose_key, "Dose"),
            (batch_key, "Batch"),
            (labels_key, "Labels"),
            (time_key, "Time"),
        ]:
            validate_obs_column(adata, key, what)
        if (dose_key is not None or perturbation_delimiter != "+") and perturbation_key is None:
            raise ValueError("`dose_key` and `perturbation_delimiter` need a `perturbation_key`.")
        if dose_key is not None:
            validate_numeric_obs(adata, dose_key, "Dose")
        if time_key is not None:
            validate_numeric_obs(adata, time_key, "Time")
            training_setup = "source_registry" not in kwargs
            if training_setup and adata.obs[time_key].nunique() < 2:
                raise ValueError(
                    f"Time column {time_key!r} has a single time point; a time course needs at "
                    "least two."
                )
        if perturbation_key is not None:
            labels = adata.obs[perturbation_key]
            if labels.isna().any():
                raise ValueError(
                    f"Perturbation column {perturbation_key!r} has missing values; label "
                    f"unperturbed cells {control_value!r}."
                )
            training_setup = "source_registry" not in kwargs
            if training_setup and not (labels.astype(str) == control_value).any():
                examples = labels.astype(str).value_counts().index[:5].tolist()
                raise ValueError(
                    f"No control cells: no value of {perturbation_key!r} equals "
                    f"control_value={control_value!r} (most common values: {examples}). "
                    "Pass the label of unperturbed cells as `control_value=`."
                )

        fields = [
            LayerField(REGISTRY_KEYS.X_KEY, layer, is_count_data=True),
            CategoricalObsField(REGISTRY_KEYS.BATCH_KEY, batch_key),
            CategoricalObsField(REGISTRY_KEYS.LABELS_KEY, labels_key),
        ]
        if perturbation_key is not None:
            fields.append(CategoricalObsField(SCJEPA_KEYS.PERTURBATION_KEY, perturbation_key))
        if dose_key is not None:
            fields.append(NumericalObsField(SCJEPA_KEYS.DOSE_KEY, dose_key))
        if time_key is not None:
            fields.append(NumericalObsField(SCJEPA_KEYS.TIME_KEY, time_key))
        adata_manager = AnnDataManager(fields=fields, setup_method_args=setup_method_args)
        adata_manager.register_fields(adata, **kwargs)
        cls.register_manager(adata_manager)

    @classmethod
    def setup_mudata(
        cls,
        mdata: MuData,
        rna_layer: str | None = None,
        protein_layer: str | None = None,
        atac_layer: str | None = None,
        batch_key: str | None = None,
        labels_key: str | None = None,
        modalities: dict[str, str] | None = None,
        **kwargs,
    ) -> None:
        """Register a MuData of RNA and surface-protein counts (CITE-seq) with BioJEPA.

        In the style of ``scvi.model.TOTALVI.setup_mudata``. Every cell needs RNA; cells without
        protein measurements (mosaic data) are allowed: cells missing from the protein modality
        are added to it as all-zero rows, and all-zero rows are treated as "not measured", so
        they train the RNA objectives only and get proteins predicted.

        Parameters
        ----------
        mdata
            MuData with an RNA and a protein modality of raw counts.
        rna_layer
            Layer of RNA counts in the RNA modality; ``None`` uses its ``X``.
        protein_layer
            Layer of protein counts in the protein modality; ``None`` uses its ``X``.
        atac_layer
            Not supported yet: chromatin accessibility needs its own likelihood.
        batch_key
            ``obs`` column of batches (in the modality named by ``modalities["batch_key"]``).
        labels_key
            ``obs`` column of cell-type labels (in ``modalities["labels_key"]``).
        modalities
            Which modality holds each of ``rna_layer``, ``protein_layer``, ``batch_key`` and
            ``labels_key``; by default ``"rna"``, ``"protein"``, ``"rna"``, ``"rna"``.
        """
        if atac_layer is not None:
            raise NotImplementedError(
                "ATAC is not supported yet; register RNA and protein (CITE-seq)."
            )
        modalities = {**DEFAULT_MODALITIES, **(modalities or {})}
        training_setup = "source_registry" not in kwargs
        prepare_mudata(mdata, modalities, rna_layer, protein_layer, pad=training_setup)
        setup_method_args = cls._get_setup_method_args(**locals())
        setup_method_args["setup_args"]["modalities"] = modalities
        for key, what in [(batch_key, "batch_key"), (labels_key, "labels_key")]:
            validate_obs_column(mdata.mod[modalities[what]], key, what.split("_")[0].title())
        fields = [
            MuDataLayerField(
                REGISTRY_KEYS.X_KEY,
                rna_layer,
                mod_key=modalities["rna_layer"],
                is_count_data=True,
                mod_required=True,
            ),
            MuDataCategoricalObsField(
                REGISTRY_KEYS.BATCH_KEY, batch_key, mod_key=modalities["batch_key"]
            ),
            MuDataCategoricalObsField(
                REGISTRY_KEYS.LABELS_KEY, labels_key, mod_key=modalities["labels_key"]
            ),
            MuDataLayerField(
                SCJEPA_KEYS.PROTEIN_KEY,
                protein_layer,
                mod_key=modalities["protein_layer"],
                is_count_data=True,
                mod_required=True,
            ),
        ]
        adata_manager = AnnDataManager(fields=fields, setup_method_args=setup_method_args)
        adata_manager.register_fields(mdata, **kwargs)
        cls.register_manager(adata_manager)

    @property
    def _setup_args(self) -> dict:
        return self.adata_manager.registry["setup_args"]

    def _perturbation_feature_table(
        self, features: pd.DataFrame | None, n_components: int
    ) -> pd.DataFrame:
        if features is not None:
            return validate_feature_table(features)
        counts = self._counts(self.adata)
        return gene_features_from_expression(
            counts,
            self.adata.var_names,
            n_components=n_components,
            seed=settings.seed or 0,
            perturbation_labels=self.adata.obs[self._setup_args["perturbation_key"]].to_numpy(),
            delimiter=self._setup_args["perturbation_delimiter"],
        )

    def _members(self, labels: Sequence[str]) -> np.ndarray:
        return members_to_index(
            labels,
            self.perturbation_vocabulary_,
            control_value=self._setup_args["control_value"],
            delimiter=self._setup_args["perturbation_delimiter"],
        )

    # ------------------------------------------------------------------------------ checks
    @staticmethod
    def _check_var_names_unique(adata: AnnData) -> None:
        if not adata.var_names.is_unique:
            raise ValueError(
                "`adata.var_names` must be unique; run `adata.var_names_make_unique()`."
            )

    @property
    def _training_var_names(self) -> np.ndarray:
        return np.asarray(
            self.registry_["field_registries"][REGISTRY_KEYS.X_KEY]["state_registry"][
                "column_names"
            ]
        )

    def _rna_modality(self) -> str | None:
        return self._setup_args.get("modalities", {}).get("rna_layer")

    def _validate_anndata(self, adata: AnnData | None = None, copy_if_view: bool = True) -> AnnData:
        if adata is not None:
            if adata.n_obs == 0:
                raise ValueError("The AnnData has no cells.")
            expected = self._training_var_names
            genes = rna_of(adata, self._rna_modality()).var_names
            if len(genes) != len(expected) or not np.array_equal(np.asarray(genes), expected):
                missing = np.setdiff1d(expected, np.asarray(genes))[:5].tolist()
                raise ValueError(
                    f"The AnnData's genes differ from the model's ({len(genes)} vs "
                    f"{len(expected)} genes; missing e.g. {missing}). Subset and order them as in "
                    "training: `adata = adata[:, model.adata.var_names]` (genes absent from the "
                    "data must be added as zero counts)."
                )
        return super()._validate_anndata(adata, copy_if_view=copy_if_view)

    # ------------------------------------------------------------------------------ training
    def train(
        self,
        max_epochs: int | None = None,
        batch_size: int = 256,
        accelerator: str = "auto",
        devices: int | list[int] | str = "auto",
        train_size: float | None = None,
        validation_size: float | None = None,
        early_stopping: bool = False,
        n_perturbations_per_batch: int = 8,
        n_time_points_per_batch: int = 3,
        plan_kwargs: dict | None = None,
        datasplitter_kwargs: dict | None = None,
        **trainer_kwargs,
    ):
        """Train the model.

        Minibatches hold control and perturbed cells of one stratum (see
        :class:`~scjepa.data.StratifiedPerturbationSampler`), cells of a few consecutive time
        points for time courses (:class:`~scjepa.data.TimeCourseSampler`), or alternately both;
        sparse counts stay sparse.
        ``model.history`` then holds every loss term and the collapse diagnostics per epoch
        (``<name>_train`` / ``<name>_validation``): ``embedding_std_mean``, ``embedding_std_min``,
        ``effective_rank``, ``delta_cosine_between_perturbations`` and more.

        Parameters
        ----------
        max_epochs
            Number of passes over the data; by default about 4,000 optimiser steps, between 20 and
            400 epochs.
        batch_size
            Cells per minibatch.
        accelerator, devices
            Passed to Lightning, as in scvi-tools (``"auto"`` picks a GPU when there is one).
        train_size, validation_size
            Fractions of cells for training and validation (default 0.9 / 0.1).
        early_stopping
            Stop when ``validation_loss`` stops improving (patience via
            ``early_stopping_patience=``).
        n_perturbations_per_batch
            Distinct perturbations per minibatch.
        n_time_points_per_batch
            Consecutive time points per time-course minibatch (with ``time_key``).
        plan_kwargs
            Passed to :class:`~scjepa.train.JEPATrainingPlan` (``lr``, ``ema_momentum_start``, ...).
        datasplitter_kwargs
            Passed to :class:`~scjepa.data.PerturbationDataSplitter`.
        **trainer_kwargs
            Passed to :class:`scvi.train.Trainer`.
        """
        if max_epochs is None:
            steps_per_epoch = max(1, int(np.ceil(self.adata.n_obs * 0.9 / batch_size)))
            max_epochs = int(np.clip(round(4000 / steps_per_epoch), 20, 400))
        datasplitter_kwargs = {
            "n_groups": n_perturbations_per_batch,
            "n_time_points": n_time_points_per_batch,
            "seed": settings.seed or 0,
            **(datasplitter_kwargs or {}),
        }
        trainer_kwargs.setdefault("early_stopping_monitor", "validation_loss")
        trainer_kwargs.setdefault("check_val_every_n_epoch", 1)
        layer = self._counts(self.adata)
        if self.module.perturbation_encoder is not None:
            self.target_gene_effects_ = target_gene_effects(
                self.adata,
                layer,
                self._setup_args["perturbation_key"],
                self._setup_args["control_value"],
                self._setup_args["perturbation_delimiter"],
            )
            effects = list(self.target_gene_effects_.values())
            self.target_gene_effect_ = float(np.median(effects)) if effects else None
        return super().train(
            max_epochs=max_epochs,
            accelerator=accelerator,
            devices=devices,
            train_size=train_size,
            validation_size=validation_size,
            load_sparse_tensor=_is_sparse_matrix(layer),
            batch_size=batch_size,
            early_stopping=early_stopping,
            datasplitter_kwargs=datasplitter_kwargs,
            plan_kwargs=plan_kwargs,
            **trainer_kwargs,
        )

    # ---------------------------------------------------------------------------- embeddings
    def _loader(self, adata: AnnData, indices, batch_size):
        return self._make_data_loader(
            adata=adata,
            indices=indices,
            batch_size=batch_size,
            load_sparse_tensor=_is_sparse_matrix(self._counts(adata)),
        )

    @torch.inference_mode()
    def get_latent_representation(
        self,
        adata: AnnData | MuData | None = None,
        indices: Sequence[int] | None = None,
        batch_size: int | None = None,
        modality: str = "joint",
    ) -> np.ndarray:
        """Embed cells with the target encoders.

        Parameters
        ----------
        adata
            AnnData (or, for a model set up with :meth:`setup_mudata`, MuData) with the training
            genes; ``None`` uses the training data.
        indices
            Cells to embed; ``None`` embeds all.
        batch_size
            Minibatch size for inference.
        modality
            For multi-modal models: ``"rna"`` (the RNA encoder), ``"protein"`` (the protein
            encoder; cells without proteins get the embedding predicted from their RNA) or
            ``"joint"`` (default; the mean of the two). RNA-only models always use RNA.

        Returns
        -------
        Array ``(n_cells, n_latent)``; store it as ``adata.obsm["X_biojepa"]`` for scanpy.
        """
        self._check_if_trained(warn=True)
        if modality not in ("joint", "rna", "protein"):
            raise ValueError(f"`modality` must be 'joint', 'rna' or 'protein', got {modality!r}.")
        multimodal = self.module.protein_branch is not None
        if modality == "protein" and not multimodal:
            raise ValueError("This model was set up with RNA alone; use modality='rna'.")
        adata = self._validate_anndata(adata)
        self.module.eval()
        chunks = []
        for tensors in self._loader(adata, indices, batch_size):
            rna = self.module.embed(tensors[REGISTRY_KEYS.X_KEY])
            if not multimodal or modality == "rna":
                chunks.append(rna.cpu())
                continue
            protein = self._protein_embedding(tensors)
            chunks.append((protein if modality == "protein" else (rna + protein) / 2).cpu())
        return torch.cat(chunks).numpy()

    def _protein_embedding(self, tensors: dict) -> torch.Tensor:
        """Protein embeddings where proteins were measured, predicted from RNA elsewhere."""
        counts = to_dense(tensors[SCJEPA_KEYS.PROTEIN_KEY]).to(self.device)
        predicted = self.module.predict_modality(
            self.module.embed_context(tensors[REGISTRY_KEYS.X_KEY]), target=1
        )
        measured = (counts.sum(dim=1) > 0).unsqueeze(1)
        return torch.where(measured, self.module.embed_protein(counts), predicted)

    @torch.inference_mode()
    def predict_modality(
        self,
        adata: AnnData | MuData | None = None,
        target: str = "protein",
        indices: Sequence[int] | None = None,
        batch_size: int | None = None,
    ) -> AnnData:
        """Predict another modality (surface proteins) for cells from their RNA.

        The RNA embedding of each cell is moved by the cross-modal predictor to a protein
        embedding, which the protein head reads out. Measured proteins, if any, are ignored, so
        held-out cells can be scored against them.

        Parameters
        ----------
        adata
            Cells with RNA: an AnnData of the training genes (raw counts, in the registered
            layer) or a MuData laid out as in training; ``None`` uses the training data.
        target
            The modality to predict; ``"protein"``.
        indices
            Cells to predict for; ``None`` takes all.
        batch_size
            Minibatch size for inference.

        Returns
        -------
        AnnData with the cells' ``obs``, the training protein ``var``, predicted log-normalised
        protein values (``normalize_total`` + ``log1p``) in ``X`` and predicted protein
        embeddings in ``obsm["X_biojepa"]``.
        """
        self._check_if_trained(warn=True)
        if self.module.protein_branch is None:
            raise ValueError(
                "This model was set up with RNA alone; set up a MuData of RNA and proteins with "
                "`BioJEPA.setup_mudata` to predict proteins."
            )
        if target != "protein":
            raise ValueError(f"Only target='protein' is supported, got {target!r}.")
        modalities = self._setup_args["modalities"]
        protein_var = self.adata.mod[modalities["protein_layer"]].var
        source = self.adata if adata is None else adata
        if isinstance(source, AnnData):
            source = as_rna_protein_mudata(
                source, protein_var, modalities, self._setup_args["protein_layer"]
            )
        source = self._validate_anndata(source)
        cells = rna_of(source, modalities["rna_layer"])
        index = np.arange(cells.n_obs) if indices is None else np.asarray(indices)
        self.module.eval()
        embeddings, values = [], []
        for tensors in self._loader(source, index, batch_size):
            context = self.module.embed_context(tensors[REGISTRY_KEYS.X_KEY])
            z = self.module.predict_modality(context, target=1)
            embeddings.append(z.cpu().numpy())
            values.append(self.module.protein_branch.decode(z).clamp(min=0).cpu().numpy())
        return modality_prediction_anndata(
            cells[index],
            protein_var,
            np.concatenate(values),
            embeddings=np.concatenate(embeddings),
            target=target,
        )

    # ---------------------------------------------------------------------------- prediction
    @torch.inference_mode()
    def predict_perturbation(
        self,
        perturbations: str | Sequence[str],
        adata: AnnData | None = None,
        indices: Sequence[int] | None = None,
        batch_size: int | None = None,
        key_added: str | None = None,
        dose: float | None = None,
        expression: str = "shift",
        seed: int = 0,
    ) -> AnnData:
        """Predict the expression of cells under perturbations.

        Each source cell (typically a control cell) is embedded, moved by the predictor under each
        perturbation, and decoded with the source cell's batch and library size.

        Parameters
        ----------
        perturbations
            Perturbation labels, e.g. ``"KLF1"``, ``"KLF1+MAP2K6"``. Combinations of members seen
            alone work; members never perturbed in training work if they have features (by
            default, any measured gene).
        adata
            Source cells; ``None`` uses the training data's control cells.
        indices
            Subset of ``adata`` to use as source cells.
        batch_size
            Minibatch size for inference.
        key_added
            If given, predicted embeddings are also written to ``adata.obsm[key_added]`` (one
            perturbation) or ``adata.obsm[f"{key_added}_{perturbation}"]``; cells outside
            ``indices`` get NaN.
        dose
            Dose of every predicted perturbation; needed when the model was set up with a dose.
        expression
            How ``X`` (always log-normalised, as by ``normalize_total`` + ``log1p``) is made.
            ``"shift"`` (default): the source cell's measured expression plus the decoded change,
            ``log1p(ρ(ẑ_perturbed)) - log1p(ρ(ẑ_unperturbed))``; the decoder's own errors cancel
            and each predicted cell keeps its source cell's individuality, as in latent
            arithmetic (scGen, Lotfollahi et al., Nature Methods 2019). ``"sample"``: counts drawn
            from the decoder's negative binomial at the source cell's library size, also stored
            in ``layers["counts"]``. ``"mean"``: ``log1p`` of the decoder's expected normalised
            expression. In every mode a perturbation's measured target genes change by the
            direct effect measured for it in training (``model.target_gene_effects_``), or for
            genes never perturbed alone the median of those (``model.target_gene_effect_``).
        seed
            Seed of the sampling, so predictions are reproducible.

        Returns
        -------
        AnnData with one row per (source cell, perturbation): ``obs["perturbation"]``,
        ``obs["source_cell"]`` and the source cells' ``obs`` columns; the model's genes as ``var``;
        predicted embeddings in ``obsm["X_biojepa"]``; ``uns["scjepa"]`` says what ``X`` holds.
        """
        self._check_if_trained(warn=True)
        if self.module.perturbation_encoder is None:
            raise ValueError(
                "This model was set up without `perturbation_key`; it cannot predict perturbations."
            )
        if expression not in _EXPRESSION_MODES:
            raise ValueError(
                f"`expression` must be one of {_EXPRESSION_MODES}, got {expression!r}."
            )
        names = [perturbations] if isinstance(perturbations, str) else list(perturbations)
        if not names:
            raise ValueError("`perturbations` is empty.")
        members = torch.as_tensor(self._members(names))
        dose_tensor = self._dose_tensor(dose)
        if adata is None:
            adata = self.adata
            if indices is None:
                perturbation_column = self._setup_args["perturbation_key"]
                indices = np.flatnonzero(
                    adata.obs[perturbation_column].astype(str) == self._setup_args["control_value"]
                )
        adata = self._validate_anndata(adata)
        source_index = np.arange(adata.n_obs) if indices is None else np.asarray(indices)
        if source_index.size == 0:
            raise ValueError("No source cells to predict from.")

        no_perturbation = torch.full((1, members.shape[1]), -1, dtype=torch.long)

        def under(p: int):
            def move(context: torch.Tensor, rows: slice) -> torch.Tensor:
                n = len(context)
                return self.module.predict_under(
                    context,
                    (no_perturbation if p < 0 else members[p : p + 1])
                    .expand(n, -1)
                    .to(context.device),
                    None if dose_tensor is None else dose_tensor.expand(n).to(context.device),
                )

            return move

        z_all, x_all, c_all = self._predict_cells(
            adata,
            source_index,
            batch_size,
            reference=under(-1),
            targets=[under(p) for p in range(len(names))],
            expression=expression,
            seed=seed,
            target_columns=self._target_gene_columns(names),
        )
        predicted = prediction_anndata(
            adata,
            source_index,
            names,
            x_all,
            perturbation_key=self._setup_args["perturbation_key"],
            embeddings=z_all,
            counts=c_all,
            expression=expression,
            dose=dose,
        )
        if key_added is not None:
            self._write_predicted_embeddings(adata, source_index, names, z_all, key_added)
        return predicted

    @torch.inference_mode()
    def predict_time(
        self,
        target_time: float,
        adata: AnnData | None = None,
        indices: Sequence[int] | None = None,
        source_time: float | None = None,
        batch_size: int | None = None,
        key_added: str | None = None,
        expression: str = "shift",
        seed: int = 0,
    ) -> AnnData:
        """Predict the state of cells at another time.

        Each source cell is embedded, moved by the predictor over ``Δt = target_time - t`` (its
        own sampling time ``t``; negative ``Δt`` looks back in time), and decoded with its batch
        and library size. To interpolate between two sampled time points, pass the cells of both:
        the earlier ones move forwards and the later ones backwards, and together they form the
        predicted population, as optimal-transport interpolation uses both neighbours. After the
        last time point it extrapolates (most reliably within about one sampling interval, as
        ``Δt`` beyond the training pairs was never seen).

        Parameters
        ----------
        target_time
            Time to predict, in the units of the registered ``time_key``.
        adata
            Source cells, from one or several time points; ``None`` uses the training data (then
            pass ``indices``, e.g. the cells of the time points around ``target_time``).
        indices
            Subset of ``adata`` to use as source cells.
        source_time
            Sampling time of all source cells, needed when ``adata`` has no ``time_key``
            column; otherwise each cell's own time is used.
        batch_size
            Minibatch size for inference.
        key_added
            If given, predicted embeddings are also written to ``adata.obsm[key_added]``; cells
            outside ``indices`` get NaN.
        expression
            How ``X`` is made, as in :meth:`predict_perturbation`: ``"shift"`` (default; the
            source cell's expression plus the decoded change over ``Δt``), ``"sample"`` or
            ``"mean"``.
        seed
            Seed of the sampling, so predictions are reproducible.

        Returns
        -------
        AnnData with one row per source cell: the source cells' ``obs`` with the time column
        set to ``target_time``, ``obs["source_time"]`` and ``obs["source_cell"]``; predicted
        embeddings in ``obsm["X_biojepa"]``; ``uns["scjepa"]`` says what ``X`` holds.
        """
        self._check_if_trained(warn=True)
        if self.module.time_encoder is None:
            raise ValueError(
                "This model was set up without `time_key`; it cannot predict other times. Pass "
                "`time_key=` to `BioJEPA.setup_anndata`."
            )
        if expression not in _EXPRESSION_MODES:
            raise ValueError(
                f"`expression` must be one of {_EXPRESSION_MODES}, got {expression!r}."
            )
        if not isinstance(target_time, int | float | np.number) or not np.isfinite(target_time):
            raise ValueError(f"`target_time` must be a finite number, got {target_time!r}.")
        time_key = self._setup_args["time_key"]
        adata = self.adata if adata is None else adata
        if time_key not in adata.obs:
            if source_time is None:
                raise ValueError(
                    f"The source cells have no {time_key!r} column; pass their sampling time "
                    "as `source_time=`."
                )
            adata = adata.copy()
            adata.obs[time_key] = float(source_time)
        adata = self._validate_anndata(adata)
        source_index = np.arange(adata.n_obs) if indices is None else np.asarray(indices)
        if source_index.size == 0:
            raise ValueError("No source cells to predict from.")
        if source_time is not None and time_key in adata.obs:
            times = np.full(len(source_index), float(source_time))
        else:
            times = adata.obs[time_key].to_numpy(dtype=float)[source_index]
        elapsed = float(target_time) - times
        elapsed_tensor = torch.as_tensor(elapsed, dtype=torch.float32)

        def move_by(scale: float):
            def move(context: torch.Tensor, rows: slice) -> torch.Tensor:
                predicted, reference = self.module.predict_after(
                    context, elapsed_tensor[rows] * scale
                )
                return predicted if scale else reference

            return move

        z_all, x_all, _ = self._predict_cells(
            adata,
            source_index,
            batch_size,
            reference=move_by(0.0),
            targets=[move_by(1.0)],
            expression=expression,
            seed=seed,
        )
        if key_added is not None:
            self._write_predicted_embeddings(adata, source_index, [key_added], z_all, key_added)
        return time_prediction_anndata(
            adata,
            source_index,
            float(target_time),
            x_all,
            time_key=time_key,
            source_times=times,
            embeddings=z_all,
            expression=expression,
        )

    def _predict_cells(
        self,
        adata: AnnData,
        source_index: np.ndarray,
        batch_size: int | None,
        reference,
        targets: list,
        expression: str,
        seed: int,
        target_columns: list[list[tuple[int, float]]] | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Embeddings, expression and (``"sample"``) counts of source cells moved by predictors.

        ``reference`` and each of ``targets`` map a minibatch's context embeddings and its
        positions among the source cells to predicted embeddings; the reference is the
        prediction under no change, from which ``"shift"`` measures changes. Rows of the results
        are grouped by target, source cells in order within each.
        """
        rng = np.random.default_rng(seed)
        theta = self.module.decoder.log_theta.exp().detach().cpu().numpy()
        target_columns = target_columns or [[] for _ in targets]
        embeddings, values, counts = [], [], []
        start = 0
        self.module.eval()
        for tensors in self._loader(adata, source_index, batch_size):
            x = tensors[REGISTRY_KEYS.X_KEY]
            batch_index = tensors[REGISTRY_KEYS.BATCH_KEY]
            rows = slice(start, start + x.shape[0])
            start += x.shape[0]
            # the context does not depend on the prediction: encode each batch once
            context = self.module.embed_context(x)
            if expression == "sample":
                library = _library(x)[:, None]
            if expression == "shift":
                base_log = self._decoded_log_expression(reference(context, rows), batch_index)[1]
                observed = log_normalize(to_dense(x).cpu().numpy())
            rows_z, rows_x, rows_c = [], [], []
            for target, columns in zip(targets, target_columns, strict=True):
                z, log_mean = self._decoded_log_expression(target(context, rows), batch_index)
                rows_z.append(z)
                if expression == "sample":
                    scale = np.expm1(log_mean) / NORMALIZATION_TARGET_SUM
                    sampled = _sample_negative_binomial(scale * library, theta, rng)
                    rows_c.append(sampled)
                    values_p = log_normalize(sampled)
                elif expression == "shift":
                    values_p = observed + (log_mean - base_log)
                else:
                    values_p = log_mean
                base = observed if expression == "shift" else values_p
                for column, effect in columns:
                    values_p[:, column] = base[:, column] + effect
                rows_x.append(np.maximum(values_p, 0.0))
            embeddings.append(np.stack(rows_z, axis=1))
            values.append(np.stack(rows_x, axis=1))
            if rows_c:
                counts.append(np.stack(rows_c, axis=1))

        n_src, n_targets = len(source_index), len(targets)

        def target_major(blocks: list[np.ndarray]) -> np.ndarray:
            # (cells, targets, dims) -> rows grouped by target, cells in source order
            return np.concatenate(blocks).transpose(1, 0, 2).reshape(n_targets * n_src, -1)

        return (
            target_major(embeddings),
            target_major(values),
            target_major(counts) if counts else None,
        )

    def _decoded_log_expression(
        self, z: torch.Tensor, batch_index: torch.Tensor
    ) -> tuple[np.ndarray, np.ndarray]:
        """Embeddings and ``log1p`` of the expected normalised expression decoded from them."""
        scale = self.module.decode(z, batch_index)
        return z.cpu().numpy(), torch.log1p(scale * NORMALIZATION_TARGET_SUM).cpu().numpy()

    def _target_gene_columns(self, names: list[str]) -> list[list[tuple[int, float]]]:
        """Columns of the measured genes each perturbation targets, with their direct effects.

        A target measured perturbed alone in training keeps its own measured effect; any other
        gets the median over targets (``target_gene_effect_``).
        """
        if self.target_gene_effect_ is None:
            return [[] for _ in names]
        position = {name: i for i, name in enumerate(self._training_var_names)}
        members = [
            parse_perturbation(
                name, self._setup_args["control_value"], self._setup_args["perturbation_delimiter"]
            )
            for name in names
        ]
        return [
            [
                (position[m], self.target_gene_effects_.get(m, self.target_gene_effect_))
                for m in group
                if m in position
            ]
            for group in members
        ]

    def _dose_tensor(self, dose: float | None) -> torch.Tensor | None:
        if not self.module.use_dose:
            if dose is not None:
                raise ValueError("This model was set up without `dose_key`; do not pass `dose`.")
            return None
        if dose is None:
            raise ValueError("This model was set up with doses; pass `dose=` for the prediction.")
        if not np.isfinite(dose) or dose < 0:
            raise ValueError(f"`dose` must be a finite non-negative number, got {dose}.")
        return torch.tensor([float(dose)])

    @staticmethod
    def _write_predicted_embeddings(
        adata: AnnData, source_index: np.ndarray, names: list[str], z_all: np.ndarray, key: str
    ) -> None:
        n_src = len(source_index)
        for p, name in enumerate(names):
            full = np.full((adata.n_obs, z_all.shape[1]), np.nan, dtype=np.float32)
            full[source_index] = z_all[p * n_src : (p + 1) * n_src]
            adata.obsm[key if len(names) == 1 else f"{key}_{name}"] = full

    # ---------------------------------------------------------------------------- save / load
    def save(
        self,
        dir_path: str,
        prefix: str | None = None,
        overwrite: bool = False,
        save_anndata: bool = False,
        **anndata_write_kwargs,
    ) -> None:
        """Save the model to ``dir_path`` in a format that loads without unpickling.

        Parameters
        ----------
        dir_path
            Directory to create (or overwrite with ``overwrite=True``).
        prefix
            Prefix of the file names.
        overwrite
            Overwrite an existing directory.
        save_anndata
            Also write the training data (as ``adata.h5ad``, or ``mdata.h5mu`` for a MuData).
        **anndata_write_kwargs
            Passed to :meth:`anndata.AnnData.write_h5ad`.
        """
        if os.path.exists(dir_path) and not overwrite:
            raise ValueError(f"{dir_path} already exists; pass `overwrite=True` or another path.")
        os.makedirs(dir_path, exist_ok=True)
        prefix = prefix or ""
        if save_anndata:
            if isinstance(self.adata, MuData):
                self.adata.write(os.path.join(dir_path, f"{prefix}{MUDATA_FILE}"))
            else:
                self.adata.write_h5ad(
                    os.path.join(dir_path, f"{prefix}{ADATA_FILE}"), **anndata_write_kwargs
                )
        attributes = {
            name: value for name, value in self._get_user_attributes() if name.endswith("_")
        }
        init_params = attributes["init_params_"]
        # the feature table is restored from the module's weights; no need to keep it twice
        init_params["non_kwargs"] = {**init_params["non_kwargs"], "perturbation_features": None}
        write_model_file(
            os.path.join(dir_path, f"{prefix}{MODEL_FILE}"),
            self.module.state_dict(),
            self._training_var_names,
            attributes,
        )

    @classmethod
    def load(
        cls,
        dir_path: str,
        adata: AnnData | None = None,
        accelerator: str = "auto",
        device: int | str = "auto",
        prefix: str | None = None,
    ) -> BioJEPA:
        """Load a model saved with :meth:`save`.

        Parameters
        ----------
        dir_path
            Directory the model was saved to.
        adata
            AnnData with the same genes as in training; it is set up with the saved arguments.
            ``None`` reads the AnnData saved with the model (``save_anndata=True``).
        accelerator, device
            Where to put the model, as in scvi-tools.
        prefix
            Prefix used when saving.

        Returns
        -------
        The model, in evaluation mode, giving the same embeddings and predictions as when saved.
        """
        prefix = prefix or ""
        state_dict, var_names, attributes = read_model_file(
            os.path.join(dir_path, f"{prefix}{MODEL_FILE}")
        )
        if adata is None:
            adata_path = os.path.join(dir_path, f"{prefix}{ADATA_FILE}")
            mudata_path = os.path.join(dir_path, f"{prefix}{MUDATA_FILE}")
            if os.path.exists(mudata_path):
                import mudata

                adata = mudata.read_h5mu(mudata_path)
            elif os.path.exists(adata_path):
                import anndata

                adata = anndata.read_h5ad(adata_path)
            else:
                raise ValueError(
                    "No AnnData was saved with this model; pass the training data as `adata=`."
                )
        registry = attributes.pop("registry_")
        if registry.get("model_name") not in (None, cls.__name__):
            raise ValueError(
                f"This directory holds a {registry['model_name']} model, not a {cls.__name__}."
            )
        genes = rna_of(
            adata, registry["setup_args"].get("modalities", {}).get("rna_layer")
        ).var_names
        if len(genes) != len(var_names) or not np.array_equal(
            np.asarray(genes, dtype=object), var_names
        ):
            raise ValueError(
                "The AnnData's genes differ from those the model was trained on; subset and order "
                "them as in training: `adata = adata[:, saved_var_names]`."
            )
        setup = getattr(cls, registry.get("setup_method_name", "setup_anndata"))
        setup_args = dict(registry["setup_args"])
        setup(adata, source_registry=registry, **setup_args)
        init_params = attributes.pop("init_params_")
        kwargs = {k: v for group in init_params["kwargs"].values() for k, v in group.items()}
        non_kwargs = dict(init_params["non_kwargs"])
        if "perturbation_encoder.features" in state_dict:
            non_kwargs["perturbation_features"] = pd.DataFrame(
                state_dict["perturbation_encoder.features"].numpy(),
                index=attributes["perturbation_vocabulary_"],
            )
        model = cls(adata, **non_kwargs, **kwargs)
        for name, value in attributes.items():
            setattr(model, name, value)
        model.module.load_state_dict(state_dict)
        _, _, torch_device = parse_device_args(
            accelerator=accelerator,
            devices=device,
            return_device="torch",
            validate_single_device=True,
        )
        model.to_device(torch_device)
        model.module.eval()
        return model


def _is_sparse_matrix(matrix) -> bool:
    return sparse.issparse(matrix) or type(matrix).__name__ in {"CSRDataset", "CSCDataset"}


def _library(x: torch.Tensor) -> np.ndarray:
    return library_size(x).cpu().numpy()


def _sample_negative_binomial(
    mean: np.ndarray, theta: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Gamma–Poisson draws with the given means and inverse dispersions."""
    rate = rng.gamma(shape=theta, scale=np.maximum(mean, 1e-8) / theta)
    return rng.poisson(rate).astype(np.float32)
