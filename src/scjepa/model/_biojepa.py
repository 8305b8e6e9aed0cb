"""BioJEPA: the user-facing scvi-tools model."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence

import numpy as np
import pandas as pd
import rich.pretty  # noqa: F401 - scvi-tools' view_anndata_setup uses it without importing it
import torch
from anndata import AnnData
from anndata.abc import CSCDataset, CSRDataset
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

from scjepa._constants import SCJEPA_KEYS
from scjepa.data._direct_effect import target_gene_direct_effects, typical_direct_effect
from scjepa.data._features import (
    gene_features_from_expression,
    log_normalize,
    principal_axes,
    sampled_log_expression,
    validate_feature_table,
)
from scjepa.data._matrix import dense
from scjepa.data._multimodal import (
    prepare_mudata,
    registered_layers,
    resolve_modalities,
    rna_of,
)
from scjepa.data._perturbations import members_to_index
from scjepa.data._sampling import control_code, registered_times, time_strata_by_batch
from scjepa.data._splitter import PerturbationDataSplitter
from scjepa.data._validation import (
    get_layer,
    validate_counts,
    validate_numeric_obs,
    validate_obs_column,
)
from scjepa.model._interaction import cross_fit_interaction
from scjepa.model._measured_changes import mean_change
from scjepa.model._prediction import PredictionMixin
from scjepa.model._serialization import (
    ADATA_FILE,
    MODEL_FILE,
    MUDATA_FILE,
    read_model_file,
    write_model_file,
)
from scjepa.module import BioJEPAModule, Modality
from scjepa.module._normalize import library_size
from scjepa.train import JEPATrainingPlan

logger = logging.getLogger(__name__)


DEFAULT_TRAINING_STEPS = 1500
"""Optimiser steps of ``BioJEPA.train()`` without ``max_epochs``: the schedule the benchmarks
measure (1,200-1,650 steps); 4,000 fitted held-out perturbations worse."""


def default_max_epochs(n_cells: int, batch_size: int) -> int:
    """Epochs giving about :data:`DEFAULT_TRAINING_STEPS` optimiser steps, between 20 and 400.

    An epoch is one pass over the training share (90%) of ``n_cells`` in minibatches of
    ``batch_size``.
    """
    steps_per_epoch = max(1, int(np.ceil(n_cells * 0.9 / batch_size)))
    return int(np.clip(round(DEFAULT_TRAINING_STEPS / steps_per_epoch), 20, 400))


class BioJEPA(PredictionMixin, UnsupervisedTrainingMixin, BaseModelClass):
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
    n_input_components
        Read each cell through the first ``n_input_components`` principal axes of the training
        cells' log-normalised expression (fixed, saved with the model) instead of through a
        learned layer over every gene. The axes are the least noisy linear summary of a cell
        that the data offer, and fitting ``k`` input weights per hidden unit instead of one per
        gene lowers the encoder's variance on small data sets; see the multi-omics and
        time-course pages of the documentation for what it changed. With proteins registered,
        the protein head then also reads these coordinates linearly (``protein_linear_path``
        of :class:`~scjepa.module.BioJEPAModule`). ``None`` reads every gene.
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
        n_input_components: int | None = None,
        **module_kwargs,
    ):
        super().__init__(adata)
        self._check_var_names_unique(adata)
        # `load` passes the saved axes and feature statistics, so that loading does not
        # recompute them from other cells
        input_axes = module_kwargs.pop("input_axes", None)
        feature_statistics = self._feature_statistics(
            {
                key: module_kwargs.pop(key)
                for key in ("protein_mean", "protein_scale", "atac_mean")
                if key in module_kwargs
            }
        )
        if n_input_components is not None and input_axes is None:
            input_axes = self._expression_axes(n_input_components)
        self.perturbation_vocabulary_: list[str] | None = None
        self.target_gene_direct_effect_: list[float] | None = None
        self.target_gene_direct_effects_: dict[str, list[float]] = {}
        self.mean_perturbation_change_: np.ndarray | None = None
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
            n_proteins=self._n_features(SCJEPA_KEYS.PROTEIN_KEY),
            n_peaks=self._n_features(SCJEPA_KEYS.ATAC_KEY),
            **feature_statistics,
            **time_kwargs,
            input_axes=input_axes,
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
        for key, what in [(SCJEPA_KEYS.PROTEIN_KEY, "proteins"), (SCJEPA_KEYS.ATAC_KEY, "peaks")]:
            if self._n_features(key):
                self._model_summary_string += f", {what}: {self._n_features(key)}"
        if input_axes is not None:
            self._model_summary_string += f", input axes: {input_axes[0].shape[1]}"
        self.init_params_ = self._get_init_params(locals())

    def _n_features(self, registry_key: str) -> int:
        """Number of features of a registered modality (0 when it is not registered)."""
        if registry_key not in self.adata_manager.data_registry:
            return 0
        registry = self.registry_["field_registries"][registry_key]
        return len(registry["state_registry"]["column_names"])

    def _feature_statistics(self, saved: dict) -> dict:
        """Where the protein and accessibility heads start from: ``saved``, else the data's.

        Proteins: per-protein mean and sd of log-normalised values; regions: the logit of the
        fraction of cells in which each region is accessible. Both over the cells in which the
        modality was measured.
        """
        statistics = dict(saved)
        if self._n_features(SCJEPA_KEYS.PROTEIN_KEY) and "protein_mean" not in saved:
            # an antibody panel has tens of proteins: dense is small
            counts = dense(self.adata_manager.get_from_registry(SCJEPA_KEYS.PROTEIN_KEY))
            values = log_normalize(counts[counts.sum(axis=1) > 0])
            statistics["protein_mean"] = torch.as_tensor(values.mean(axis=0), dtype=torch.float32)
            statistics["protein_scale"] = torch.as_tensor(values.std(axis=0), dtype=torch.float32)
        if self._n_features(SCJEPA_KEYS.ATAC_KEY) and "atac_mean" not in saved:
            counts = sparse.csr_matrix(self.adata_manager.get_from_registry(SCJEPA_KEYS.ATAC_KEY))
            measured = np.asarray(counts.sum(axis=1)).ravel() > 0
            accessible = np.asarray((counts[measured] > 0).mean(axis=0)).ravel()
            accessible = np.clip(accessible, 1e-4, 1 - 1e-4)
            statistics["atac_mean"] = torch.as_tensor(
                np.log(accessible / (1 - accessible)), dtype=torch.float32
            )
        return statistics

    def _expression_axes(self, n_components: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Principal axes of the training cells for :class:`~scjepa.module.CellEncoder`.

        The axes are scaled by one common factor so that the cells' coordinates have unit
        spread on average: the first axes keep their larger spread, so the encoder starts
        from the cells' principal-component geometry rather than a whitened one, which would
        amplify the noise on the last axes.
        """
        if isinstance(n_components, bool) or not isinstance(n_components, int | np.integer):
            raise TypeError(f"`n_input_components` must be an integer, got {n_components!r}.")
        if n_components < 1:
            raise ValueError(f"`n_input_components` must be positive, got {n_components}.")
        expression = sampled_log_expression(self._counts(self.adata), seed=settings.seed or 0)
        mean, axes, spread = principal_axes(expression, n_components)
        axes = axes / np.sqrt(np.mean(spread**2))
        return (
            torch.as_tensor(axes, dtype=torch.float32),
            torch.as_tensor(mean @ axes, dtype=torch.float32),
        )

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
        """Register a MuData of RNA with surface-protein and/or ATAC counts with BioJEPA.

        In the style of ``scvi.model.TOTALVI.setup_mudata`` and ``scvi.model.MULTIVI.setup_mudata``:
        CITE-seq (RNA + proteins), multiome (RNA + ATAC) or both (e.g. TEA-seq). Every cell
        needs RNA; cells without protein or ATAC measurements (mosaic data) are allowed: cells
        missing from such a modality are added to it as all-zero rows, and all-zero rows are
        treated as "not measured", so they train the RNA objectives only and get that modality
        predicted.

        Parameters
        ----------
        mdata
            MuData with an RNA modality and a protein and/or an ATAC modality, of raw counts
            (ATAC as fragment or binary counts per region; the model binarises them).
        rna_layer
            Layer of RNA counts in the RNA modality; ``None`` uses its ``X``.
        protein_layer
            Layer of protein counts in the protein modality; ``None`` uses its ``X``.
        atac_layer
            Layer of ATAC counts in the ATAC modality; ``None`` uses its ``X``.
        batch_key
            ``obs`` column of batches (in the modality named by ``modalities["batch_key"]``).
        labels_key
            ``obs`` column of cell-type labels (in ``modalities["labels_key"]``).
        modalities
            Which modality holds each of ``rna_layer``, ``protein_layer``, ``atac_layer``,
            ``batch_key`` and ``labels_key``; by default ``"rna"``, ``"protein"``, ``"atac"``,
            ``"rna"``, ``"rna"``. Proteins and ATAC are registered when the MuData holds their
            modality; ``{"protein_layer": None}`` leaves proteins out.
        """
        layers = {"rna_layer": rna_layer, "protein_layer": protein_layer, "atac_layer": atac_layer}
        modalities = resolve_modalities(mdata, modalities, layers)
        training_setup = "source_registry" not in kwargs
        prepare_mudata(mdata, modalities, layers, pad=training_setup)
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
        ]
        for field, (name, layer) in registered_layers(modalities, layers).items():
            registry_key = Modality[field.removesuffix("_layer").upper()].registry_key
            fields.append(
                MuDataLayerField(
                    registry_key, layer, mod_key=name, is_count_data=True, mod_required=True
                )
            )
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

    @torch.inference_mode()
    def perturbation_neighbours(self, member: str, top_n: int | None = 10) -> pd.Series:
        """The perturbed entities whose embeddings ``member``'s embedding is built from.

        A gene (or other entity) never perturbed in training is embedded as an attention-weighted
        mean of the embeddings of the entities that were, by resemblance of their features (see
        :class:`~scjepa.module.PerturbationEncoder`), so its predicted effect leans on theirs: these
        weights say on which measured perturbations a prediction for an unseen gene rests. An
        entity perturbed in training is embedded from its own features; for it the weights are
        those it would get if it had not been (its own left out), the leave-one-out that trains
        them.

        Parameters
        ----------
        member
            Name of one entity, e.g. a gene.
        top_n
            Number of largest weights to return; ``None`` returns all.

        Returns
        -------
        Weights indexed by entity name, largest first; over all perturbed entities they sum to 1.
        """
        encoder = self.module.perturbation_encoder
        if encoder is None:
            raise ValueError(
                "This model was set up without `perturbation_key`; it has no perturbed entities."
            )
        index = self._members([member])[0]
        present = index[index >= 0]
        if len(present) != 1:
            raise ValueError(f"Pass the name of one perturbed entity, got {member!r}.")
        seen = encoder.seen_index.cpu().numpy()
        if len(seen) < 2 and encoder.seen[int(present[0])]:
            raise ValueError("Only one entity was perturbed in training; it has no neighbours.")
        entity = torch.as_tensor(present, device=encoder.features.device)
        weights = encoder.neighbour_weights(entity)[0].cpu().numpy()
        names = np.asarray(self.perturbation_vocabulary_)[seen]
        ranked = pd.Series(weights, index=pd.Index(names, name="perturbed")).sort_values(
            ascending=False
        )
        ranked = ranked[ranked.index != member]
        return ranked if top_n is None else ranked.head(top_n)

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
        calibrate_interaction: bool = True,
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
            Number of passes over the data; by default about 1,500 optimiser steps, between 20 and
            400 epochs: the schedule every benchmark measures. On the held-out perturbations of
            ``benchmarks/training_spread.py`` 4,000 steps fitted the measured perturbations
            worse and generalised worse to unseen genes than 1,200-1,650.
        batch_size
            Cells per minibatch.
        accelerator, devices
            Passed to Lightning, as in scvi-tools (``"auto"`` picks a GPU when there is one).
            Data-parallel training on several devices or nodes: ``devices=2, strategy="ddp"``
            (CPU processes or GPUs; ``num_nodes=`` for several machines). Each process trains
            on its share of every epoch's minibatches and gradients are averaged, so an epoch
            takes ``1 / devices`` of the optimiser steps. Run it from a script: Lightning starts
            the other processes by running the script again (in notebooks, use
            ``strategy="ddp_notebook"``).
        train_size, validation_size
            Fractions of cells for training and validation (default 0.9 / 0.1).
        early_stopping
            Stop when ``validation_loss`` stops improving (patience via
            ``early_stopping_patience=``).
        n_perturbations_per_batch
            Distinct perturbations per minibatch.
        n_time_points_per_batch
            Consecutive time points per time-course minibatch (with ``time_key``).
        calibrate_interaction
            After training, set how much of the learned interaction of combined perturbations
            predictions keep, by cross-fitting it on the measured combinations
            (:meth:`calibrate_interaction`); with ``False`` predictions keep the whole learned
            interaction. Models with a perturbation key only.
        plan_kwargs
            Passed to :class:`~scjepa.train.JEPATrainingPlan` (``lr``, ``ema_momentum_start``, ...).
        datasplitter_kwargs
            Passed to :class:`~scjepa.data.PerturbationDataSplitter`.
        **trainer_kwargs
            Passed to :class:`scvi.train.Trainer`.
        """
        if max_epochs is None:
            max_epochs = default_max_epochs(self.adata.n_obs, batch_size)
        datasplitter_kwargs = {
            "n_groups": n_perturbations_per_batch,
            "n_time_points": n_time_points_per_batch,
            "seed": settings.seed or 0,
            **(datasplitter_kwargs or {}),
        }
        trainer_kwargs.setdefault("early_stopping_monitor", "validation_loss")
        if train_size is not None and train_size >= 1.0 and not validation_size:
            if early_stopping:
                raise ValueError("`early_stopping` needs validation cells; use `train_size` < 1.")
        else:
            trainer_kwargs.setdefault("check_val_every_n_epoch", 1)
        if trainer_kwargs.get("strategy") in ("ddp", "ddp_spawn", "ddp_notebook"):
            # objectives without cells in a minibatch leave their parameters without gradients
            trainer_kwargs["strategy"] = f"{trainer_kwargs['strategy']}_find_unused_parameters_true"
        layer = self._counts(self.adata)
        if self.module.perturbation_encoder is not None:
            self.target_gene_direct_effects_ = target_gene_direct_effects(
                self.adata,
                layer,
                self._setup_args["perturbation_key"],
                self._setup_args["control_value"],
                self._setup_args["perturbation_delimiter"],
            )
            self.target_gene_direct_effect_ = typical_direct_effect(
                self.target_gene_direct_effects_
            )
            self._measured_changes_cache = None
            self.mean_perturbation_change_ = mean_change(self._measured_changes())
            # a retrained model is judged afresh
            self.module.perturbation_encoder.interaction_scale.fill_(1.0)
            if hasattr(self, "interaction_cross_fit_"):
                del self.interaction_cross_fit_
        super().train(
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
        if calibrate_interaction and self.module.perturbation_encoder is not None:
            self.calibrate_interaction(seed=settings.seed or 0)

    def calibrate_interaction(
        self,
        n_folds: int = 5,
        n_contexts: int = 16,
        n_steps: int = 300,
        seed: int = 0,
        batch_size: int | None = None,
    ) -> dict:
        """Set how much of the learned interaction of combined perturbations predictions keep.

        :meth:`train` calls it. The interaction network is fitted afresh on all but one fold of
        the measured combinations (members all perturbed alone in training) and predicts the
        left-out fold; the share of the interaction that predictions keep is the least-squares
        coefficient of the observed departures from additivity on these out-of-fold predictions,
        in [0, 1] (see :func:`scjepa.model.cross_fit_interaction`). Combinations never measured
        are then predicted as
        ``ẑ_∅ + Σ_a (P(z, t + e_a) − ẑ_∅) + α (P(z, t + e_S) − ẑ_∅)``. With fewer than three
        measured combinations the interaction is kept whole.

        Parameters
        ----------
        n_folds
            Folds of measured combinations.
        n_contexts
            Control cells drawn per combination and stratum.
        n_steps
            Optimiser steps of each fold's fit.
        seed
            Seed of the folds, contexts and fresh networks.
        batch_size
            Minibatch size for embedding cells.

        Returns
        -------
        ``interaction_scale`` (``α``), ``n_combinations``, ``n_folds`` and ``out_of_fold_r2``;
        also kept as ``model.interaction_cross_fit_``.
        """
        self._check_if_trained(warn=True)
        self.interaction_cross_fit_ = cross_fit_interaction(
            self,
            n_folds=n_folds,
            n_contexts=n_contexts,
            n_steps=n_steps,
            seed=seed,
            batch_size=batch_size,
        )
        return self.interaction_cross_fit_

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
            For multi-modal models: ``"rna"`` (the RNA encoder), ``"protein"`` or ``"atac"``
            (that modality's encoder; cells in which it was not measured get the embedding
            predicted from their RNA) or ``"joint"`` (default; the mean of the RNA embedding
            and those of the other registered modalities). RNA-only models always use RNA.

        Returns
        -------
        Array ``(n_cells, n_latent)``; store it as ``adata.obsm["X_biojepa"]`` for scanpy.
        """
        self._check_if_trained(warn=True)
        choices = ("joint", "rna", "protein", "atac")
        if modality not in choices:
            raise ValueError(f"`modality` must be one of {choices}, got {modality!r}.")
        others = list(self.module.branches)
        if modality not in ("joint", "rna"):
            others = [self._registered_modality(modality)]
        adata = self._validate_anndata(adata)
        self.module.eval()
        chunks = []
        for tensors in self._loader(adata, indices, batch_size):
            if modality == "rna" or not others:
                chunks.append(self.module.embed(tensors[REGISTRY_KEYS.X_KEY]).cpu())
                continue
            rna, context = self.module.embed_target_and_context(tensors[REGISTRY_KEYS.X_KEY])
            embeddings = [self._modality_embedding(tensors, other, context) for other in others]
            if modality == "joint":
                embeddings.append(rna)
            chunks.append(torch.stack(embeddings).mean(dim=0).cpu())
        return torch.cat(chunks).numpy()

    def _registered_modality(self, name: str) -> Modality:
        """The :class:`~scjepa.module.Modality` called ``name``, if the model has it."""
        modality = Modality[name.upper()]
        if modality not in self.module.branches:
            if not self.module.branches:
                raise ValueError(
                    "This model was set up with RNA alone; use modality='rna', or set up a "
                    f"MuData with {name} counts with `BioJEPA.setup_mudata`."
                )
            raise ValueError(f"This model was set up without {name} counts.")
        return modality

    def _modality_embedding(
        self, tensors: dict, modality: Modality, context: torch.Tensor
    ) -> torch.Tensor:
        """Embeddings of ``modality`` where it was measured, predicted from RNA elsewhere.

        ``context`` holds the cells' online RNA embeddings, which the prediction starts from.
        """
        counts = tensors[modality.registry_key].to(self.device)
        predicted = self.module.predict_modality(context, target=modality)
        measured = (library_size(counts) > 0).unsqueeze(1)
        return torch.where(measured, self.module.embed_modality(counts, modality), predicted)

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
        if "protein_branch.feature_mean" in state_dict:
            kwargs["protein_mean"] = state_dict["protein_branch.feature_mean"]
            kwargs["protein_scale"] = state_dict["protein_branch.feature_scale"]
        if "atac_branch.feature_mean" in state_dict:
            kwargs["atac_mean"] = state_dict["atac_branch.feature_mean"]
        if "encoder.input.0.axes" in state_dict:
            kwargs["input_axes"] = (
                state_dict["encoder.input.0.axes"],
                state_dict["encoder.input.0.offset"],
            )
        # the saved weights say whether the model had an expression decoder (embedding models
        # saved before it became optional have one)
        kwargs.setdefault("expression_decoder", any(k.startswith("decoder.") for k in state_dict))
        model = cls(adata, **non_kwargs, **kwargs)
        for name, value in _legacy_direct_effects(attributes).items():
            setattr(model, name, value)
        if model.module.perturbation_encoder is not None and (
            "mean_perturbation_change_" not in attributes
        ):
            # saved before predictions were pooled towards it: measure it on the training data
            model.mean_perturbation_change_ = mean_change(model._measured_changes())
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


def _legacy_direct_effects(attributes: dict) -> dict:
    """Attributes of models saved with direct effects as log changes, as ``[fold, added]``.

    A log change ``e`` is a fold ``exp(e)`` for well-expressed genes when it lowers them, and
    adds ``expm1(e)`` to silent genes when it raises them.
    """
    attributes = dict(attributes)
    effects = attributes.pop("target_gene_effects_", None)
    effect = attributes.pop("target_gene_effect_", None)

    def as_pair(change: float) -> list[float]:
        return [math.exp(change), 0.0] if change < 0 else [1.0, math.expm1(change)]

    if effects is not None and "target_gene_direct_effects_" not in attributes:
        attributes["target_gene_direct_effects_"] = {g: as_pair(e) for g, e in effects.items()}
        attributes["target_gene_direct_effect_"] = None if effect is None else as_pair(effect)
    return attributes


def _is_sparse_matrix(matrix) -> bool:
    """Whether counts are sparse, in memory or in a backed ``.h5ad``."""
    return sparse.issparse(matrix) or isinstance(matrix, CSRDataset | CSCDataset)
