"""The BioJEPA torch module: encoders, predictor, perturbation encoder and decoder head."""

from __future__ import annotations

import copy
from enum import IntEnum

import torch
import torch.nn.functional as F
from scvi import REGISTRY_KEYS
from scvi.module.base import BaseModuleClass, LossOutput, auto_move_data

from scjepa._constants import NORMALIZATION_TARGET_SUM, SCJEPA_KEYS
from scjepa.module._decoder import NegativeBinomialDecoder
from scjepa.module._encoder import CellEncoder
from scjepa.module._modality import ModalityBranch
from scjepa.module._normalize import library_size, log_normalize, to_dense
from scjepa.module._perturbation import PerturbationEncoder
from scjepa.module._predictor import ConditionalPredictor
from scjepa.module._time import TimeStepEncoder
from scjepa.train._ema import ema_update
from scjepa.train._losses import (
    covariance_loss,
    effective_rank,
    matched_population_loss,
    variance_loss,
)


class Modality(IntEnum):
    """Which modality the cross-modal predictor is asked for; each has a learned token."""

    RNA = 0
    PROTEIN = 1
    ATAC = 2

    @property
    def registry_key(self) -> str:
        """Key of the modality's counts in the data registry and in minibatches."""
        if self is Modality.RNA:
            return REGISTRY_KEYS.X_KEY
        return getattr(SCJEPA_KEYS, f"{self.name}_KEY")


class Task(IntEnum):
    """What the predictor is asked to do; each task has a learned context token."""

    MASKED_GENES = 0
    PERTURBATION = 1
    TIME = 2
    MODALITY = 3


class BioJEPAModule(BaseModuleClass):
    """Joint-embedding predictive architecture for cells.

    An online encoder embeds a cell; an exponential moving average of it (the target encoder,
    never back-propagated) embeds the cells to be predicted; a predictor conditioned on a task
    token and, for perturbations, a perturbation embedding maps context embeddings to target
    embeddings. Objectives:

    * masked genes: a view of each cell with a fraction of its detected genes removed predicts the
      target embedding of the whole cell (I-JEPA, Assran et al., CVPR 2023);
    * perturbation: control cells of a stratum plus the perturbation predict the embeddings of the
      perturbed cells of that stratum. Cells are unpaired, so the predicted and observed
      populations are compared by exact minibatch optimal transport plus a mean-matching term;
    * time: cells sampled at time ``t`` plus an encoding of ``Δt`` predict the embeddings of the
      cells sampled at ``t + Δt`` in the same time stratum, forwards and backwards in time, the
      populations again matched by minibatch optimal transport (as V-JEPA predicts other frames
      of a video, Bardes et al. 2024; matching unpaired snapshots by optimal transport follows
      Waddington-OT, Schiebinger et al., Cell 2019). ``Δt = 0`` pairs anchor the reference "no
      time passes";
    * modality (CITE-seq, multiome): the RNA embedding of a cell plus the target modality's
      token predicts the target embedding of its proteins (or chromatin), and that embedding
      predicts the RNA target embedding; the cells are paired, so this is a plain prediction
      error. It puts the modalities in one space, and a head per modality trained on the
      predicted embeddings reads protein values (or accessibility) for cells measured by RNA
      alone. Cells without counts of a modality (an all-zero row) are left out of its part.

    VICReg variance and covariance terms (Bardes et al., ICLR 2022) on the context embeddings and
    on predictions keep the embedding from collapsing. A negative binomial decoder reads
    expression from detached target embeddings; it is built only when a prediction needs
    expression (perturbations or time), so embedding models train without reconstructing any
    gene, the source of JEPA's training-speed advantage over generative models.

    Parameters
    ----------
    n_input
        Number of genes.
    n_batch
        Number of batches.
    n_labels
        Number of cell-type labels (strata are batch x label).
    n_latent
        Embedding dimension.
    n_hidden
        Hidden width of the encoder.
    n_layers
        Hidden layers of the encoder.
    dropout
        Encoder dropout.
    perturbation_features
        ``(n_entities, n_features)`` description of every perturbable entity, or ``None`` when
        no perturbation is registered.
    perturbation_members
        ``(n_categories, max_members)`` members (rows of ``perturbation_features``) of each
        registered perturbation category, ``-1`` padded.
    control_code
        Category code of control cells.
    use_dose
        Whether doses are registered and modulate the perturbation embedding.
    n_perturbation_embedding
        Dimension of task and perturbation context vectors.
    n_predictor_hidden
        Width of the predictor.
    n_predictor_blocks
        Depth of the predictor.
    n_decoder_hidden
        Hidden width of the decoder head.
    expression_decoder
        Whether to build the expression decoder. ``None`` builds it when perturbations or time are
        registered, the predictions that return expression.
    mask_ratio
        Fraction of detected genes removed from the masked view.
    invariance_weight, variance_weight, covariance_weight
        VICReg weights of the prediction error, the variance hinge and the covariance penalty.
    perturbation_weight
        Weight of the perturbation objective relative to the masked-gene objective.
    mean_match_weight
        Weight of the mean-matching term inside the perturbation objective. The population mean
        is what perturbation metrics score, and matched cell pairs alone leave it underweighted:
        on the demo data, raising this weight from 1 to 10 lifted the top-20 Pearson delta of
        held-out single genes from about 0.0 to 0.27 (40 epochs, seed 0).
    readout_weight
        Weight of the population readout: the change of mean log-normalised expression decoded
        from the predicted embeddings (perturbed minus unperturbed prediction from the same
        control cells) is matched to the observed change of the stratum's perturbed cells. It
        calibrates the path that ``predict_perturbation`` uses, so predicted changes have the
        observed size rather than the shrunken size a decoder fitted only to single cells gives.
        The temporal objective has the same readout, on changes between time points.
    time_span
        Length of the training time course, or ``None`` when no time is registered (no temporal
        objective).
    time_strata_by_batch
        Whether time points are paired within batches only (see
        :func:`scjepa.data.cell_groups`).
    time_weight
        Weight of the temporal objective relative to the masked-gene objective.
    n_proteins
        Number of surface proteins; 0 without proteins.
    modality_weight
        Weight of the cross-modal objective relative to the masked-gene objective.
    modality_readout_weight
        Weight of the squared error of the protein head and of the cross-entropy of the
        accessibility head. On ``citeseq_demo`` (80 epochs, seed 0), raising it from 10 to 100
        lifted the held-out mean per-protein Pearson from 0.41 to 0.48.
    protein_mean, protein_scale
        Per-protein mean and standard deviation of the training cells' log-normalised protein
        values, which the protein head's output is standardised by (see
        :class:`~scjepa.module.ModalityBranch`); ``None`` leaves it unstandardised.
    input_axes
        ``(axes, offset)``: fixed axes of expression the RNA encoders read cells through (see
        :class:`~scjepa.module.CellEncoder`); ``None`` reads every gene.
    protein_linear_path
        Whether the protein head adds a linear read-out of the cell's coordinates on
        ``input_axes`` to its non-linear read-out of the predicted protein embedding, a wide
        and deep head (Cheng et al., DLRS 2016): the linear part carries what is linear in
        the cell's leading axes of variation, the embedding what is not. ``None`` adds it
        whenever ``input_axes`` is given.
    n_peaks
        Number of chromatin regions (ATAC peaks); 0 without ATAC.
    atac_mean
        Logit of each region's accessible fraction in the training cells, where the
        accessibility head starts from (see :class:`~scjepa.module.ModalityBranch`).
    atac_linear_path
        As ``protein_linear_path``, for the accessibility head.
    """

    def __init__(
        self,
        n_input: int,
        n_batch: int = 1,
        n_labels: int = 1,
        n_latent: int = 128,
        n_hidden: int = 512,
        n_layers: int = 2,
        dropout: float = 0.1,
        perturbation_features: torch.Tensor | None = None,
        perturbation_members: torch.Tensor | None = None,
        control_code: int | None = None,
        use_dose: bool = False,
        n_perturbation_embedding: int = 64,
        n_predictor_hidden: int = 256,
        n_predictor_blocks: int = 3,
        n_decoder_hidden: int = 256,
        expression_decoder: bool | None = None,
        mask_ratio: float = 0.4,
        invariance_weight: float = 25.0,
        variance_weight: float = 25.0,
        covariance_weight: float = 1.0,
        perturbation_weight: float = 1.0,
        mean_match_weight: float = 10.0,
        readout_weight: float = 100.0,
        time_span: float | None = None,
        time_strata_by_batch: bool = True,
        time_weight: float = 1.0,
        n_proteins: int = 0,
        modality_weight: float = 1.0,
        modality_readout_weight: float = 100.0,
        protein_mean: torch.Tensor | None = None,
        protein_scale: torch.Tensor | None = None,
        input_axes: tuple[torch.Tensor, torch.Tensor] | None = None,
        protein_linear_path: bool | None = None,
        n_peaks: int = 0,
        atac_mean: torch.Tensor | None = None,
        atac_linear_path: bool | None = None,
    ):
        super().__init__()
        n_axes = 0 if input_axes is None else input_axes[0].shape[1]
        linear_inputs = {}
        for name, flag in [("protein", protein_linear_path), ("atac", atac_linear_path)]:
            if flag and input_axes is None:
                raise ValueError(
                    f"`{name}_linear_path` reads the cells' principal-axis coordinates; set "
                    "`n_input_components` too."
                )
            linear_inputs[name] = n_axes if flag or flag is None else 0
        if not 0.0 < mask_ratio < 1.0:
            raise ValueError(f"`mask_ratio` must lie in (0, 1), got {mask_ratio}.")
        self.n_input = n_input
        self.n_batch = n_batch
        self.n_labels = n_labels
        self.n_latent = n_latent
        self.mask_ratio = mask_ratio
        self.control_code = control_code
        self.use_dose = use_dose
        self.weights = {
            "invariance": invariance_weight,
            "variance": variance_weight,
            "covariance": covariance_weight,
            "perturbation": perturbation_weight,
            "mean_match": mean_match_weight,
            "readout": readout_weight,
            "time": time_weight,
            "modality": modality_weight,
            "modality_readout": modality_readout_weight,
        }
        self.time_strata_by_batch = time_strata_by_batch

        self.encoder = CellEncoder(n_input, n_latent, n_hidden, n_layers, dropout, input_axes)
        self.target_encoder = copy.deepcopy(self.encoder)
        self.target_encoder.requires_grad_(False)
        self.task_embedding = torch.nn.Embedding(len(Task), n_perturbation_embedding)
        self.predictor = ConditionalPredictor(
            n_latent, n_perturbation_embedding, n_predictor_hidden, n_predictor_blocks
        )
        self.perturbation_encoder = None
        if perturbation_features is not None:
            seen = torch.zeros(len(perturbation_features), dtype=torch.bool)
            seen[perturbation_members[perturbation_members >= 0].long()] = True
            self.perturbation_encoder = PerturbationEncoder(
                perturbation_features,
                n_perturbation_embedding,
                seen=seen,
            )
            self.register_buffer(
                "perturbation_members", perturbation_members.long().clone(), persistent=False
            )
        self.time_encoder = None
        if time_span is not None:
            self.time_encoder = TimeStepEncoder(n_perturbation_embedding, time_span)
        self.protein_branch = None
        if n_proteins > 0:
            self.protein_branch = ModalityBranch(
                n_proteins,
                n_latent,
                dropout=dropout,
                feature_mean=protein_mean,
                feature_scale=protein_scale,
                n_linear_input=linear_inputs["protein"],
            )
        self.atac_branch = None
        if n_peaks > 0:
            self.atac_branch = ModalityBranch(
                n_peaks,
                n_latent,
                dropout=dropout,
                feature_mean=atac_mean,
                n_linear_input=linear_inputs["atac"],
                likelihood="bernoulli",
            )
        if self.branches:
            # models without ATAC keep the two tokens they were saved with
            n_tokens = len(Modality) if self.atac_branch is not None else int(Modality.ATAC)
            self.modality_embedding = torch.nn.Embedding(n_tokens, n_perturbation_embedding)
        if expression_decoder is None:
            expression_decoder = perturbation_features is not None or time_span is not None
        self.decoder = None
        if expression_decoder:
            self.decoder = NegativeBinomialDecoder(n_latent, n_input, n_batch, n_decoder_hidden)
        self._validation_generator = torch.Generator().manual_seed(0)

    def train(self, mode: bool = True):
        """Set training mode; the target encoders always stay in evaluation mode (no dropout)."""
        super().train(mode)
        self.target_encoder.eval()
        for branch in self.branches.values():
            branch.target_encoder.eval()
        return self

    @property
    def branches(self) -> dict[Modality, ModalityBranch]:
        """The branches of the modalities registered next to RNA."""
        branches = {Modality.PROTEIN: self.protein_branch, Modality.ATAC: self.atac_branch}
        return {modality: branch for modality, branch in branches.items() if branch is not None}

    def branch(self, modality: Modality) -> ModalityBranch:
        """The branch of ``modality``, or a clear error for a model built without it."""
        if modality not in self.branches:
            raise ValueError(f"This model was set up without {modality.name.lower()} counts.")
        return self.branches[modality]

    @torch.no_grad()
    def update_target_encoder(self, momentum: float) -> None:
        """Move the target encoders towards the online encoders by ``1 - momentum``."""
        ema_update(self.target_encoder, self.encoder, momentum)
        for branch in self.branches.values():
            ema_update(branch.target_encoder, branch.encoder, momentum)

    # ----------------------------------------------------------------------------- inference API
    @auto_move_data
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Target-encoder embeddings of raw counts ``x`` (the model's cell representation)."""
        normalized, _ = log_normalize(x)
        return self.target_encoder(normalized)

    @auto_move_data
    def embed_target_and_context(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`embed` and :meth:`embed_context` of raw counts ``x``, normalised once."""
        normalized, _ = log_normalize(x)
        return self.target_encoder(normalized), self.encoder(normalized)

    def condition(self, task: Task, n: int) -> torch.Tensor:
        """Context vectors ``(n, n_perturbation_embedding)`` of ``task``."""
        return self.task_embedding.weight[int(task)].expand(n, -1)

    def predict_unperturbed(self, context: torch.Tensor) -> torch.Tensor:
        """``ẑ_∅``: the prediction for cells with embeddings ``context`` under no perturbation."""
        return self.predictor(context, self.condition(Task.PERTURBATION, len(context)))

    def predict_under(
        self,
        context: torch.Tensor,
        members: torch.Tensor,
        dose: torch.Tensor | None = None,
        unperturbed: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predicted embeddings of cells with embeddings ``context`` under perturbations.

        Members act additively on the predicted embedding, and a learned interaction adds the
        departure from additivity:
        ``ẑ_S = ẑ_∅ + Σ_{a∈S} (P(z, t + e_a) − ẑ_∅) + α (P(z, t + e_S) − ẑ_∅)``, with
        ``ẑ_∅ = P(z, t)`` the prediction without perturbation, ``P`` the predictor, ``t`` the
        perturbation task token, ``e_a`` member and ``e_S`` interaction embeddings. Each
        member's shift still depends on the cell it acts on. Latent additivity of perturbation
        effects follows CPA (Lotfollahi et al., Molecular Systems Biology 2023); the interaction
        starts at zero, so combinations are additive until combinations in training say
        otherwise. ``α`` (``perturbation_encoder.interaction_scale``) is 1 in training; after
        it, :meth:`~scjepa.model.BioJEPA.calibrate_interaction` sets it to how much of the
        interaction carries over to combinations left out of its fit. Pass ``unperturbed``
        (:meth:`predict_unperturbed` of the same ``context``) to reuse it across perturbations.
        """
        return self._predict_with_reference(context, members, dose, unperturbed)[0]

    def _predict_with_reference(
        self,
        context: torch.Tensor,
        members: torch.Tensor,
        dose: torch.Tensor | None = None,
        unperturbed: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`predict_under` and the unperturbed prediction ``ẑ_∅`` it builds on."""
        if unperturbed is None:
            unperturbed = self.predict_unperturbed(context)
        token, dose = self._perturbation_inputs(context, dose)
        embedded, interaction = self.perturbation_encoder(members, dose)
        additive = self._add_members(context, token, members, embedded, unperturbed)
        shift = self._interaction_shift(context, token, members, interaction, unperturbed)
        # training fits the whole interaction; predictions keep the cross-fitted share of it
        scale = 1.0 if self.training else self.perturbation_encoder.interaction_scale
        return additive + scale * shift, unperturbed

    def _perturbation_inputs(
        self, context: torch.Tensor, dose: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The perturbation task token per context row, and the dose if the model uses one."""
        if self.perturbation_encoder is None:
            raise ValueError("This model was set up without a perturbation key.")
        return self.condition(Task.PERTURBATION, len(context)), dose if self.use_dose else None

    def predict_additive(
        self,
        context: torch.Tensor,
        members: torch.Tensor,
        dose: torch.Tensor | None,
        unperturbed: torch.Tensor,
    ) -> torch.Tensor:
        """``ẑ_∅ + Σ_{a∈S} (P(z, t + e_a) − ẑ_∅)``: :meth:`predict_under` without interaction."""
        token, dose = self._perturbation_inputs(context, dose)
        embedded, _ = self.perturbation_encoder(members, dose)
        return self._add_members(context, token, members, embedded, unperturbed)

    def predict_interaction_shift(
        self,
        context: torch.Tensor,
        members: torch.Tensor,
        dose: torch.Tensor | None,
        unperturbed: torch.Tensor,
        interaction_network: torch.nn.Module | None = None,
    ) -> torch.Tensor:
        """``P(z, t + e_S) − ẑ_∅`` for rows with several members, zero for the others.

        ``interaction_network`` replaces the learned interaction network ``ψ``.
        """
        token, dose = self._perturbation_inputs(context, dose)
        _, interaction = self.perturbation_encoder(members, dose, interaction_network)
        return self._interaction_shift(context, token, members, interaction, unperturbed)

    def _add_members(
        self,
        context: torch.Tensor,
        token: torch.Tensor,
        members: torch.Tensor,
        embedded: torch.Tensor,
        unperturbed: torch.Tensor,
    ) -> torch.Tensor:
        predicted = unperturbed
        for slot in range(members.shape[1]):
            rows = torch.nonzero(members[:, slot] >= 0).reshape(-1)
            if len(rows):
                shift = self.predictor(context[rows], token[rows] + embedded[rows, slot])
                predicted = predicted.index_add(0, rows, shift - unperturbed[rows])
        return predicted

    def _interaction_shift(
        self,
        context: torch.Tensor,
        token: torch.Tensor,
        members: torch.Tensor,
        interaction: torch.Tensor,
        unperturbed: torch.Tensor,
    ) -> torch.Tensor:
        shift = torch.zeros_like(unperturbed)
        combined = torch.nonzero((members >= 0).sum(dim=1) > 1).reshape(-1)
        if len(combined):
            moved = self.predictor(context[combined], token[combined] + interaction[combined])
            shift = shift.index_add(0, combined, moved - unperturbed[combined])
        return shift

    def predict_after(self, context: torch.Tensor, elapsed: torch.Tensor) -> torch.Tensor:
        """Predicted embeddings of cells with embeddings ``context`` after ``elapsed`` time.

        ``elapsed`` of zero gives the reference that changes over time are measured from, as
        the unperturbed prediction is for perturbations.
        """
        if self.time_encoder is None:
            raise ValueError("This model was set up without a time key.")
        token = self.condition(Task.TIME, len(context))
        elapsed = elapsed.to(context.device).reshape(-1).float()
        return self.predictor(context, token + self.time_encoder(elapsed))

    def predict_modality(
        self, context: torch.Tensor, target: int | torch.Tensor = Modality.PROTEIN
    ) -> torch.Tensor:
        """Embeddings of modality ``target`` (a :class:`Modality`) predicted from ``context``.

        ``target`` is one modality for every row, or a tensor of one per row.
        """
        if not self.branches:
            raise ValueError("This model was set up with RNA alone.")
        target = torch.as_tensor(target, device=context.device).expand(len(context))
        token = self.condition(Task.MODALITY, len(context))
        return self.predictor(context, token + self.modality_embedding(target))

    @auto_move_data
    def embed_modality(self, counts: torch.Tensor, modality: Modality) -> torch.Tensor:
        """Target-encoder embeddings of counts of ``modality`` (proteins or regions)."""
        branch = self.branch(modality)
        return branch.target_encoder(branch.encoder_input(counts))

    @auto_move_data
    def predict_features(
        self, x: torch.Tensor, modality: Modality
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Predicted embeddings and values of ``modality`` for cells with RNA counts ``x``.

        Values are log-normalised protein values, or probabilities that regions are accessible
        (see :meth:`ModalityBranch.values`).
        """
        branch = self.branch(modality)
        normalized = log_normalize(x)[0]
        z = self.predict_modality(self.encoder(normalized), target=modality)
        linear_input = None if branch.linear_path is None else self.encoder.axes(normalized)
        return z, branch.values(branch.decode(z, linear_input))

    @auto_move_data
    def embed_context(self, x: torch.Tensor) -> torch.Tensor:
        """Online-encoder embeddings of raw counts ``x``, the context the predictor starts from."""
        return self.encoder(log_normalize(x)[0])

    def require_decoder(self) -> NegativeBinomialDecoder:
        """The expression decoder, or a clear error for a model built without one."""
        if self.decoder is None:
            raise ValueError(
                "This model has no expression decoder, so it cannot return predicted expression; "
                "build it with `expression_decoder=True`."
            )
        return self.decoder

    @auto_move_data
    def decode(self, z: torch.Tensor, batch_index: torch.Tensor) -> torch.Tensor:
        """Expression proportions decoded from embeddings."""
        return self.require_decoder()(z, batch_index)

    # ------------------------------------------------------------------------ scvi-tools protocol
    def _get_inference_input(self, tensors: dict) -> dict:
        return {"x": tensors[REGISTRY_KEYS.X_KEY]}

    def _get_generative_input(self, tensors: dict, inference_outputs: dict) -> dict:
        return {
            "z": inference_outputs["z_target"],
            "batch_index": tensors[REGISTRY_KEYS.BATCH_KEY],
        }

    @auto_move_data
    def inference(self, x: torch.Tensor) -> dict:
        """Embed the views used by the training objectives."""
        generator = None if self.training else self._validation_generator.manual_seed(0)
        library = library_size(x)
        # an encoder reading fixed axes sees the masked view where the full cell would be, on
        # average, only if the kept genes are rescaled; unscaled, the cross-modal head carried a
        # mean offset of 0.055 per protein into unmasked cells (citeseq_demo, seed 0; 0.026 with
        # the rescaling, ridge 0.024)
        normalized, masked = log_normalize(
            x,
            self.mask_ratio,
            generator=generator,
            library=library,
            rescale=self.encoder.reads_axes,
        )
        with torch.no_grad():
            z_target = self.target_encoder(normalized)
        outputs = {
            "z_target": z_target,
            "z_masked": self.encoder(masked),
            "library": library,
            "normalized": normalized,
        }
        if any(part is not None for part in (self.perturbation_encoder, self.time_encoder)):
            outputs["z_online"] = self.encoder(normalized)
        return outputs

    @auto_move_data
    def generative(self, z: torch.Tensor, batch_index: torch.Tensor) -> dict:
        """Decode expression from the detached target embeddings (nothing without a decoder)."""
        if self.decoder is None:
            return {}
        return {"scale": self.decoder(z.detach(), batch_index)}

    def loss(self, tensors: dict, inference_outputs: dict, generative_outputs: dict) -> LossOutput:
        """Sum the JEPA objectives, the VICReg terms and the decoder's likelihood."""
        w = self.weights
        z_target = inference_outputs["z_target"]
        z_masked = inference_outputs["z_masked"]
        n_cells = z_target.shape[0]

        predicted = self.predictor(z_masked, self.condition(Task.MASKED_GENES, n_cells))
        mask_loss = F.mse_loss(predicted, z_target)
        var_loss = variance_loss(z_masked) + variance_loss(predicted)
        cov_loss = covariance_loss(z_masked) + covariance_loss(predicted)

        pert = self._perturbation_objective(tensors, inference_outputs)
        if pert is not None:
            var_loss = var_loss + variance_loss(pert["predicted"])
            cov_loss = cov_loss + covariance_loss(pert["predicted"])
            pert_loss = pert["matched"] + w["mean_match"] * pert["mean_gap"]
            readout_loss = pert["readout"]
            neighbour_loss = self.perturbation_encoder.neighbour_loss()
        else:
            pert_loss = z_target.new_zeros(())
            readout_loss = z_target.new_zeros(())
            neighbour_loss = z_target.new_zeros(())
        temporal = self._time_objective(tensors, inference_outputs)
        if temporal is not None:
            var_loss = var_loss + variance_loss(temporal["predicted"])
            cov_loss = cov_loss + covariance_loss(temporal["predicted"])
            time_loss = temporal["matched"] + w["mean_match"] * temporal["mean_gap"]
            readout_loss = readout_loss + temporal["readout"]
        else:
            time_loss = z_target.new_zeros(())
        cross = self._modality_objective(tensors, inference_outputs)
        modality_loss = z_target.new_zeros(())
        readouts = {modality: z_target.new_zeros(()) for modality in Modality if modality}
        for modality, parts in cross.items():
            for embedding in (parts["online"], parts["predicted"]):
                var_loss = var_loss + variance_loss(embedding)
                cov_loss = cov_loss + covariance_loss(embedding)
            modality_loss = modality_loss + parts["aligned"]
            readouts[modality] = parts["readout"]

        nll = self._expression_nll(tensors, inference_outputs, generative_outputs)

        jepa_loss = (
            w["invariance"]
            * (
                mask_loss
                + w["perturbation"] * pert_loss
                + w["time"] * time_loss
                + w["modality"] * modality_loss
            )
            + w["variance"] * var_loss
            + w["covariance"] * cov_loss
        )
        # the decoder sees detached inputs, so its scale only matters for the reported total
        total = (
            jepa_loss
            + nll.mean() / self.n_input
            + w["readout"] * readout_loss
            + w["modality_readout"] * sum(readouts.values())
            # trains only how members never perturbed in training are embedded
            + neighbour_loss
        )

        with torch.no_grad():
            std = z_target.std(dim=0)
            metrics = {
                "jepa_loss": jepa_loss.detach(),
                "masked_prediction_loss": mask_loss.detach(),
                "perturbation_loss": pert_loss.detach(),
                "time_loss": time_loss.detach(),
                "modality_loss": modality_loss.detach(),
                "protein_readout_loss": readouts[Modality.PROTEIN].detach(),
                "atac_readout_loss": readouts[Modality.ATAC].detach(),
                "readout_loss": readout_loss.detach(),
                "neighbour_loss": neighbour_loss.detach(),
                "variance_loss": var_loss.detach(),
                "covariance_loss": covariance_loss(z_target).detach(),
                "embedding_std_mean": std.mean(),
                "embedding_std_min": std.min(),
                "effective_rank": effective_rank(z_target),
            }
            if pert is not None:
                metrics.update(pert["diagnostics"])
        return LossOutput(loss=total, reconstruction_loss=nll, extra_metrics=metrics)

    def _expression_nll(
        self, tensors: dict, inference_outputs: dict, generative_outputs: dict
    ) -> torch.Tensor:
        """The decoder's negative log-likelihood of each cell's counts (zeros without one)."""
        if self.decoder is None:
            return inference_outputs["library"].new_zeros(inference_outputs["library"].shape)
        counts = to_dense(tensors[REGISTRY_KEYS.X_KEY])
        distribution = self.decoder.distribution(
            generative_outputs["scale"], inference_outputs["library"]
        )
        return -distribution.log_prob(counts).sum(dim=-1)

    def _perturbation_objective(self, tensors: dict, inference_outputs: dict) -> dict | None:
        """Predict perturbed populations from control cells of the same stratum."""
        if self.perturbation_encoder is None or self.control_code is None:
            return None
        codes = tensors[SCJEPA_KEYS.PERTURBATION_KEY].long().reshape(-1)
        is_control = codes == self.control_code
        if not is_control.any():
            return None
        stratum = tensors[REGISTRY_KEYS.BATCH_KEY].long().reshape(-1) * self.n_labels + tensors[
            REGISTRY_KEYS.LABELS_KEY
        ].long().reshape(-1)
        if SCJEPA_KEYS.TIME_KEY in tensors:
            # controls are compared with perturbed cells sampled at the same time
            time = tensors[SCJEPA_KEYS.TIME_KEY].reshape(-1).float()
            stratum = torch.unique(
                torch.stack([stratum.float(), time], dim=1), dim=0, return_inverse=True
            )[1]
        dose = tensors.get(SCJEPA_KEYS.DOSE_KEY) if self.use_dose else None
        dose_column = (
            dose.reshape(-1).float() if dose is not None else torch.zeros_like(codes).float()
        )
        group_keys = torch.stack([stratum.float(), codes.float(), dose_column], dim=1)
        # controls form a group too: with an empty perturbation the predictor must say
        # "no change", which anchors the reference of every predicted change
        keys, group_of = torch.unique(group_keys, dim=0, return_inverse=True)

        z_online = inference_outputs["z_online"]
        z_target = inference_outputs["z_target"]
        expression = to_dense(inference_outputs["normalized"])
        batch_index = tensors[REGISTRY_KEYS.BATCH_KEY].long().reshape(-1)
        contexts, targets, members, doses, sizes, control_means, is_effect = (
            [],
            [],
            [],
            [],
            [],
            [],
            [],
        )
        observed_changes, context_batches = [], []
        for g in range(len(keys)):
            target_rows = torch.nonzero(group_of == g).reshape(-1)
            control_rows = torch.nonzero(is_control & (stratum == keys[g, 0].long())).reshape(-1)
            if len(control_rows) == 0:
                continue
            m = len(target_rows)
            if len(control_rows) >= m:
                pick = control_rows[torch.randperm(len(control_rows), device=codes.device)[:m]]
            else:
                pick = control_rows[torch.randint(len(control_rows), (m,), device=codes.device)]
            contexts.append(z_online[pick])
            targets.append(z_target[target_rows])
            members.append(self.perturbation_members[codes[target_rows]])
            doses.append(dose_column[target_rows])
            sizes.append(m)
            control_means.append(z_target[control_rows].mean(dim=0))
            is_effect.append(int(keys[g, 1]) != self.control_code)
            context_batches.append(batch_index[pick])
            observed_changes.append(
                expression[target_rows].mean(dim=0) - expression[control_rows].mean(dim=0)
            )
        if not contexts:
            return None
        context = torch.cat(contexts)
        predicted, unperturbed = self._predict_with_reference(
            context, torch.cat(members), torch.cat(doses)
        )
        readout = self._readout_loss(
            predicted,
            unperturbed,
            torch.cat(context_batches),
            sizes,
            observed_changes,
            is_effect,
        )
        matched, mean_gap = [], []
        predicted_deltas, observed_deltas = [], []
        for pred_g, target_g, control_mean, effect in zip(
            predicted.split(sizes), targets, control_means, is_effect, strict=True
        ):
            a, b = matched_population_loss(pred_g, target_g)
            matched.append(a)
            mean_gap.append(b)
            if effect:
                predicted_deltas.append(pred_g.mean(dim=0).detach() - control_mean)
                observed_deltas.append(target_g.mean(dim=0) - control_mean)
        outputs = {
            "predicted": predicted,
            "matched": torch.stack(matched).mean(),
            "mean_gap": torch.stack(mean_gap).mean(),
            "readout": readout,
            "diagnostics": {},
        }
        if predicted_deltas:
            outputs["diagnostics"] = _delta_diagnostics(
                torch.stack(predicted_deltas), torch.stack(observed_deltas)
            )
        return outputs

    def _time_objective(self, tensors: dict, inference_outputs: dict) -> dict | None:
        """Predict the cells of each time point from those of the others in the same time stratum.

        Every ordered pair of time points in the minibatch is used, backwards as well as
        forwards: predicting where cells came from is the same kind of task, and it lets
        :meth:`~scjepa.model.BioJEPA.predict_time` approach an unsampled time from both sides.
        """
        if self.time_encoder is None or SCJEPA_KEYS.TIME_KEY not in tensors:
            return None
        time = tensors[SCJEPA_KEYS.TIME_KEY].reshape(-1).float()
        if len(torch.unique(time)) < 2:
            return None
        batch_index = tensors[REGISTRY_KEYS.BATCH_KEY].long().reshape(-1)
        lineage = batch_index if self.time_strata_by_batch else torch.zeros_like(batch_index)
        codes = tensors.get(SCJEPA_KEYS.PERTURBATION_KEY)
        codes = torch.zeros_like(lineage) if codes is None else codes.long().reshape(-1)
        keys, group_of = torch.unique(
            torch.stack([lineage.float(), codes.float(), time], dim=1), dim=0, return_inverse=True
        )
        z_online = inference_outputs["z_online"]
        z_target = inference_outputs["z_target"]
        expression = to_dense(inference_outputs["normalized"])
        rows = [torch.nonzero(group_of == g).reshape(-1) for g in range(len(keys))]
        means = [expression[r].mean(dim=0) for r in rows]
        contexts, targets, elapsed, batches, sizes, changes, is_change = [], [], [], [], [], [], []
        for s in range(len(keys)):
            for t in range(len(keys)):
                same_course = bool((keys[s, :2] == keys[t, :2]).all())
                dt = float(keys[t, 2] - keys[s, 2])
                if not same_course:
                    continue
                contexts.append(z_online[rows[s]])
                targets.append(z_target[rows[t]])
                elapsed.append(time.new_full((len(rows[s]),), dt))
                batches.append(batch_index[rows[s]])
                sizes.append(len(rows[s]))
                changes.append(means[t] - means[s])
                is_change.append(dt != 0)
        if not any(is_change):
            return None
        context, elapsed = torch.cat(contexts), torch.cat(elapsed)
        predicted = self.predict_after(context, elapsed)
        reference = self.predict_after(context, torch.zeros_like(elapsed))
        matched, mean_gap = zip(
            *(
                matched_population_loss(pred_g, target_g)
                for pred_g, target_g in zip(predicted.split(sizes), targets, strict=True)
            ),
            strict=True,
        )
        return {
            "predicted": predicted,
            "matched": torch.stack(matched).mean(),
            "mean_gap": torch.stack(mean_gap).mean(),
            "readout": self._readout_loss(
                predicted, reference, torch.cat(batches), sizes, changes, is_change
            ),
        }

    def _modality_objective(self, tensors: dict, inference_outputs: dict) -> dict:
        """Predict each measured modality's target embedding from RNA and back, per cell.

        Returns, per modality with at least two measured cells in the minibatch, its online and
        predicted embeddings (for the VICReg terms), the alignment error and the head's loss.
        """
        outputs = {}
        # every head with a linear path reads the same coordinates of the cell's RNA
        coordinates = None
        if self.encoder.reads_axes:
            coordinates = self.encoder.axes(inference_outputs["normalized"])
        for modality, branch in self.branches.items():
            if modality.registry_key not in tensors:
                continue
            counts = tensors[modality.registry_key]
            measured = torch.nonzero(library_size(counts) > 0).reshape(-1)
            if len(measured) < 2:
                continue
            counts = to_dense(counts)[measured]
            inputs = branch.encoder_input(counts)
            online = branch.encoder(inputs)
            with torch.no_grad():
                target = branch.target_encoder(inputs)
            # The RNA side starts from the masked view: predicting proteins from a cell with 40%
            # of its detected genes hidden keeps the RNA encoder and the head from fitting each
            # cell's noise. On citeseq_demo (seed 0, 100 epochs) the held-out mean per-protein
            # Pearson rose from 0.478 to 0.510 and the RMSE fell from 0.775 to 0.747.
            context = inference_outputs["z_masked"][measured]
            # one predictor call for both directions: modality -> RNA, RNA -> modality
            n = len(measured)
            target_modality = torch.full((2 * n,), int(modality), device=online.device)
            target_modality[:n] = Modality.RNA
            to_rna, to_modality = self.predict_modality(
                torch.cat([online, context]), target=target_modality
            ).split(n)
            aligned = F.mse_loss(to_modality, target) + F.mse_loss(
                to_rna, inference_outputs["z_target"][measured]
            )
            # the head learns from measured embeddings and from predicted ones, which are what
            # predict_features decodes; the latter also teaches the predictor what the head needs
            linear_input = None
            if branch.linear_path is not None:
                linear_input = coordinates[measured]
            observed = branch.observed(inputs)
            readout = branch.readout_loss(
                branch.decode(to_modality, linear_input), observed
            ) + branch.readout_loss(branch.decode(target, linear_input), observed)
            outputs[modality] = {
                "online": online,
                "predicted": to_modality,
                "aligned": aligned,
                "readout": readout,
            }
        return outputs

    def _readout_loss(
        self,
        predicted: torch.Tensor,
        unperturbed: torch.Tensor,
        batch_index: torch.Tensor,
        sizes: list[int],
        observed_changes: list[torch.Tensor],
        is_effect: list[bool],
    ) -> torch.Tensor:
        """Squared error of decoded population changes against observed ones, per gene."""
        if not any(is_effect) or self.decoder is None:
            return predicted.new_zeros(())
        scale = NORMALIZATION_TARGET_SUM
        decoded = torch.log1p(self.decoder(predicted, batch_index) * scale)
        reference = torch.log1p(self.decoder(unperturbed, batch_index) * scale)
        errors = []
        for pred_g, ref_g, observed, effect in zip(
            decoded.split(sizes), reference.split(sizes), observed_changes, is_effect, strict=True
        ):
            if effect:
                change = pred_g.mean(dim=0) - ref_g.mean(dim=0)
                errors.append((change - observed).pow(2).mean())
        return torch.stack(errors).mean()


def _delta_diagnostics(predicted: torch.Tensor, observed: torch.Tensor) -> dict:
    """How well, and how distinctly, perturbation effects are predicted in embedding space.

    ``delta_cosine_to_observed`` is the mean cosine between predicted and observed mean shifts;
    ``delta_cosine_between_perturbations`` the mean cosine between the predicted shifts of
    different perturbations, which approaches 1 when every perturbation gets the same
    (mean) prediction, the failure mode common in this field; ``delta_norm_ratio`` the size of
    predicted shifts relative to observed ones, which approaches 0 when predictions shrink
    towards "no change".
    """
    to_observed = F.cosine_similarity(predicted, observed, dim=-1).mean()
    n = len(predicted)
    if n > 1:
        unit = F.normalize(predicted, dim=-1)
        similarity = unit @ unit.T
        between = (similarity.sum() - similarity.diagonal().sum()) / (n * (n - 1))
    else:
        between = predicted.new_zeros(())
    ratio = predicted.norm(dim=-1).mean() / observed.norm(dim=-1).mean().clamp(min=1e-8)
    return {
        "delta_cosine_to_observed": to_observed,
        "delta_cosine_between_perturbations": between,
        "delta_norm_ratio": ratio,
    }
