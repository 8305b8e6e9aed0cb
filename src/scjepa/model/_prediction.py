"""Prediction methods of BioJEPA: perturbations, other times, other modalities."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from anndata import AnnData
from mudata import MuData
from scvi import REGISTRY_KEYS

from scjepa._constants import NORMALIZATION_TARGET_SUM
from scjepa.data._direct_effect import apply_direct_effect
from scjepa.data._features import log_normalize
from scjepa.data._multimodal import (
    OTHER_MODALITY_FIELDS,
    as_registered_mudata,
    registered_layers,
    rna_of,
)
from scjepa.data._perturbations import parse_perturbation
from scjepa.data._prediction import (
    modality_prediction_anndata,
    prediction_anndata,
    time_prediction_anndata,
)
from scjepa.model._cell_type_pooling import (
    label_codes,
    own_change_weights,
    perturbed_label_codes,
    pool_change,
    reference_cells,
)
from scjepa.model._consensus import pooling_partners, pooling_weights
from scjepa.model._measured_changes import measured_changes
from scjepa.model._measured_pooling import measured_references
from scjepa.model._negative_binomial import (
    count_quantiles,
    negative_binomial_quantile,
    sample_negative_binomial,
)
from scjepa.module._normalize import library_size, to_dense

EXPRESSION_MODES = ("shift", "transport", "sample", "mean")
"""How predicted expression is made (see ``BioJEPA.predict_perturbation``)."""


class PredictionMixin:
    """``predict_perturbation``, ``predict_time`` and ``predict_modality`` for :class:`BioJEPA`.

    Every prediction embeds source cells once, moves the embeddings with the module's predictor
    and reads them out with a decoder head, in the AnnData layouts of
    :mod:`scjepa.data._prediction` that the baselines share.
    """

    @torch.inference_mode()
    def predict_modality(
        self,
        adata: AnnData | MuData | None = None,
        target: str = "protein",
        indices: Sequence[int] | None = None,
        batch_size: int | None = None,
    ) -> AnnData:
        """Predict another modality (surface proteins or chromatin) for cells from their RNA.

        The RNA embedding of each cell is moved by the cross-modal predictor to an embedding of
        the target modality, which that modality's head reads out. Measured values of the
        target, if any, are ignored, so held-out cells can be scored against them.

        Parameters
        ----------
        adata
            Cells with RNA: an AnnData of the training genes (raw counts, in the registered
            layer) or a MuData laid out as in training; ``None`` uses the training data.
        target
            The modality to predict: ``"protein"`` or ``"atac"``.
        indices
            Cells to predict for; ``None`` takes all.
        batch_size
            Minibatch size for inference.

        Returns
        -------
        AnnData with the cells' ``obs``, the training ``var`` of the target modality and
        its predicted embeddings in ``obsm["X_biojepa"]``. ``X`` holds predicted
        log-normalised protein values (``normalize_total`` + ``log1p``), or, for ``"atac"``,
        the probability that each region is accessible; ``uns["scjepa"]["X"]`` says which.
        """
        self._check_if_trained(warn=True)
        targets = ("protein", "atac")
        if target not in targets:
            raise ValueError(f"`target` must be one of {targets}, got {target!r}.")
        modality = self._registered_modality(target)
        modalities = self._setup_args["modalities"]
        layers = {field: self._setup_args.get(field) for field in OTHER_MODALITY_FIELDS}
        others = {
            name: (self.adata.mod[name].var, layer)
            for name, layer in registered_layers(modalities, layers).values()
        }
        target_var = others[modalities[f"{target}_layer"]][0]
        source = self.adata if adata is None else adata
        if isinstance(source, AnnData):
            source = as_registered_mudata(source, modalities["rna_layer"], others)
        source = self._validate_anndata(source)
        cells = rna_of(source, modalities["rna_layer"])
        index = np.arange(cells.n_obs) if indices is None else np.asarray(indices)
        self.module.eval()
        embeddings, values = [], []
        for tensors in self._loader(source, index, batch_size):
            z, predicted = self.module.predict_features(tensors[REGISTRY_KEYS.X_KEY], modality)
            embeddings.append(z.cpu().numpy())
            values.append(predicted.cpu().numpy())
        return modality_prediction_anndata(
            cells[index],
            target_var,
            np.concatenate(values),
            embeddings=np.concatenate(embeddings),
            target=target,
            X="accessibility_probability" if target == "atac" else "log1p_normalized",
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
        new_cell_type_weight: float = 0.5,
        new_gene_weight: float = 0.5,
        new_combination_weight: float = 0.5,
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
            expression. ``"transport"``: each source cell's counts moved gene by gene from the
            decoder's negative binomial of its unperturbed state to that of its predicted state,
            through their quantiles (a randomised probability integral transform, then the
            inverse distribution function: the one-dimensional optimal transport map between
            the two distributions); counts are stored in ``layers["counts"]``. Unlike
            ``"shift"``, genes at zero can rise and the noise of the counts follows the new
            mean; it is slower (a quantile per gene and cell). In every mode a perturbation's
            measured target genes change in each
            cell by the direct effect measured for them in training, a fold change for lowered
            and added transcripts for raised targets (``model.target_gene_direct_effects_``), or
            for genes never perturbed alone by the typical one
            (``model.target_gene_direct_effect_``).
        new_cell_type_weight
            For source cells of a cell type (the registered ``labels_key``) none of whose cells
            was perturbed in training: the share of each cell's own predicted change it keeps.
            The rest is, in decoded expression, the change measured for that perturbation in
            the cell types where it was perturbed in training (for a perturbation never
            measured, or a model with doses: the mean change the model predicts for up to 1,024
            training control cells of the perturbed cell types), and in embedding space always
            the latter. The predictor never saw a perturbation act in such a cell type, so its
            own prediction there extrapolates; pooling it with the response where perturbations
            were measured is the partial pooling of a hierarchical model (Gelman & Hill, 2007;
            ``docs/perturbation_model.md``). On the held-out cell type of
            ``benchmarks/perturbation.py`` (five seeds) it moved the top-20 Pearson delta / MSE
            from 0.504 / 0.681 to 0.536 / 0.632 (``demo``) and from 0.409 / 0.807 to 0.438 /
            0.755 (``wide``; additive baseline 0.496 / 0.804 and 0.408 / 0.837). ``1`` keeps
            every cell's own prediction; cells of perturbed cell types, and models set up
            without ``labels_key``, always keep theirs.
        new_gene_weight
            For a perturbation with a member never perturbed alone in training (a new gene, or
            a combination with one): the share of its own predicted change of expression it
            keeps. The rest is the sum over its members of the change measured for each alone
            in training, with the mean change measured over the training perturbations
            (``model.mean_perturbation_change_``, what the mean-of-perturbations baseline
            predicts) for a member never measured alone. A new gene's response is extrapolated
            from the perturbed genes it resembles (``model.perturbation_neighbours``), and
            shrinking it towards what was measured is the partial pooling of a hierarchical
            model (James & Stein, 1961; ``docs/perturbation_model.md``). The targeted genes keep
            their direct effect and the embeddings in ``obsm`` stay the model's own; models with
            doses keep their own prediction. On ``benchmarks/perturbation.py`` (five seeds) it
            moved the top-20 Pearson delta / MSE of unseen single genes from 0.444 / 0.420 to
            0.475 / 0.373 (``demo``) and from 0.430 / 0.666 to 0.466 / 0.641 (``wide``; mean
            baseline 0.239 / 0.434 and 0.421 / 0.722), and of combinations with an unseen
            member from 0.592 / 1.225 to 0.632 / 1.113 and from 0.489 / 1.864 to 0.525 / 1.794.
            ``1`` keeps every prediction whole. Perturbations whose members were all measured
            alone are not pooled by this share: measured ones keep their own prediction, new
            combinations of them follow ``new_combination_weight``.
        new_combination_weight
            For a combination never measured in training whose members were each perturbed
            alone: the share of its own predicted change of expression it keeps. The rest is the
            sum of its members' measured changes (what the additive baseline predicts). The
            model reproduces each member's effect with errors of its own and adds an
            interaction fitted to a few dozen combinations (see
            :meth:`calibrate_interaction`); the measured sum carries the sampling noise of each
            member's cells and no interaction. Their errors are partly independent, so the
            pooled change beats both (partial pooling, ``docs/perturbation_model.md``). The
            targeted genes keep their direct effect, the embeddings in ``obsm`` stay the
            model's own, and combinations measured in training and models with doses keep their
            own prediction. On held-out combinations of ``benchmarks/perturbation.py`` (ten
            seeds) it moved the top-20 Pearson delta / MSE from 0.788 / 0.608 to 0.793 / 0.605
            (``demo``) and from 0.752 / 0.773 to 0.749 / 0.765 (``wide``; additive baseline
            0.761 / 0.643 and 0.705 / 0.800) and halved the seed-to-seed spread of the margins
            over the additive baseline; on five fresh seeds, from 0.748 / 0.897 to 0.783 / 0.878
            (``demo``, additive 0.786 / 0.906). ``1`` keeps every prediction whole.
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
        _check_expression(expression)
        for argument, weight in (
            ("new_cell_type_weight", new_cell_type_weight),
            ("new_gene_weight", new_gene_weight),
            ("new_combination_weight", new_combination_weight),
        ):
            if not 0.0 <= weight <= 1.0:
                raise ValueError(f"`{argument}` must lie in [0, 1], got {weight!r}.")
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

        def unperturbed(context: torch.Tensor, rows: slice) -> torch.Tensor:
            return self.module.predict_unperturbed(context)

        def under(p: int):
            def move(context: torch.Tensor, rows: slice, reference: torch.Tensor) -> torch.Tensor:
                n = len(context)
                return self.module.predict_under(
                    context,
                    members[p : p + 1].expand(n, -1).to(context.device),
                    None if dose_tensor is None else dose_tensor.expand(n).to(context.device),
                    unperturbed=reference,
                )

            return move

        targets = [under(p) for p in range(len(names))]
        z_all, x_all, c_all = self._predict_cells(
            adata,
            source_index,
            batch_size,
            reference=unperturbed,
            targets=targets,
            expression=expression,
            seed=seed,
            target_columns=self._target_gene_columns(names),
            pooling=self._cell_type_pooling(
                adata,
                source_index,
                new_cell_type_weight,
                names,
                unperturbed,
                targets,
                batch_size,
                seed,
            ),
            measured_pooling=self._measured_pooling(names, new_gene_weight, new_combination_weight),
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
        consensus: bool = True,
        seed: int = 0,
    ) -> AnnData:
        """Predict the state of cells at another time.

        Each source cell is embedded, moved by the predictor over ``Δt = target_time - t`` (its
        own sampling time ``t``; negative ``Δt`` looks back in time), and decoded with its batch
        and library size. To interpolate between two sampled time points, pass the cells of both:
        the earlier ones move forwards and the later ones backwards, and together they form the
        predicted population, as optimal-transport interpolation uses both neighbours. After the
        last time point it extrapolates (most reliably within about one sampling interval, as
        ``Δt`` beyond the training pairs was never seen). Where the target time falls where
        most cells commit to a fate, the side that has to cross the branch point does not move
        its cells far enough, and the pooled fate fractions land between the two sides' (on
        ``timecourse_demo``, 0.13-0.24 off; elsewhere within a few points). This happens
        where the sampled times leave a gap the training cells hardly reach into: sampled every
        half day, the same course's days 1 and 2 come within 0.064 and 0.055.

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
            source cell's expression plus the decoded change over ``Δt``), ``"transport"``,
            ``"sample"`` or ``"mean"``. On ``timecourse_demo`` (three seeds), ``"transport"``
            lowered the pooled prediction's energy distance where cells commit to a fate (day 1:
            0.333 against 0.377; day 2: 0.791 against 0.918).
        consensus
            When the source cells come from exactly two time points (around ``target_time``
            when interpolating, the last two when extrapolating), pool the two predictions:
            each cell is paired with a partner from the other time point, drawn from an
            entropic optimal-transport coupling of the two predicted populations in embedding
            space, and each pair is averaged (expression and embeddings), the source closer in
            time weighing more. Both predictions estimate the same population; this
            displacement interpolation between them (a Wasserstein barycenter, Agueh & Carlier
            2011) pools them as OT interpolation pools two observed time points, and like it
            halves each cell's measurement noise. ``False`` keeps every cell's own prediction.
        seed
            Seed of the sampling and of the partners drawn, so predictions are reproducible.

        Returns
        -------
        AnnData with one row per source cell: the source cells' ``obs`` with the time column
        set to ``target_time``, ``obs["source_time"]``, ``obs["source_cell"]`` and, where pairs
        were averaged, ``obs["partner_cell"]``; predicted embeddings in ``obsm["X_biojepa"]``;
        ``uns["scjepa"]`` says what ``X`` holds.
        """
        self._check_if_trained(warn=True)
        if self.module.time_encoder is None:
            raise ValueError(
                "This model was set up without `time_key`; it cannot predict other times. Pass "
                "`time_key=` to `BioJEPA.setup_anndata`."
            )
        _check_expression(expression)
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
        if source_time is not None:
            times = np.full(len(source_index), float(source_time))
        else:
            times = adata.obs[time_key].to_numpy(dtype=float)[source_index]
        elapsed = float(target_time) - times
        elapsed = torch.as_tensor(elapsed, dtype=torch.float32)

        def at(elapsed: torch.Tensor):
            def move(context: torch.Tensor, rows: slice, *_) -> torch.Tensor:
                return self.module.predict_after(context, elapsed[rows])

            return move

        z_all, x_all, _ = self._predict_cells(
            adata,
            source_index,
            batch_size,
            reference=at(torch.zeros_like(elapsed)),
            targets=[at(elapsed)],
            expression=expression,
            seed=seed,
        )
        partners = None
        if consensus:
            partners = pooling_partners(z_all, times, float(target_time), seed)
        if partners is not None:
            weight = pooling_weights(times, float(target_time))[:, None]
            x_all = weight * x_all + (1 - weight) * x_all[partners]
            z_all = weight * z_all + (1 - weight) * z_all[partners]
        if key_added is not None:
            self._write_predicted_embeddings(adata, source_index, [key_added], z_all, key_added)
        prediction = time_prediction_anndata(
            adata,
            source_index,
            float(target_time),
            x_all,
            time_key=time_key,
            source_times=times,
            embeddings=z_all,
            expression=expression,
            consensus=partners is not None,
        )
        if partners is not None:
            prediction.obs["partner_cell"] = prediction.obs["source_cell"].to_numpy()[partners]
        return prediction

    def _predict_cells(
        self,
        adata: AnnData,
        source_index: np.ndarray,
        batch_size: int | None,
        reference,
        targets: list,
        expression: str,
        seed: int,
        target_columns: list[list[tuple[int, list[float]]]] | None = None,
        pooling: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
        measured_pooling: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Embeddings, expression and counts (``"sample"``, ``"transport"``) of moved cells.

        ``reference`` maps a minibatch's context embeddings and its positions among the source
        cells to the prediction under no change, from which ``"shift"`` measures changes; each
        of ``targets`` maps them and that reference (computed once per minibatch) to predicted
        embeddings. Rows of the results are grouped by target, source cells in order within
        each. ``pooling`` (:meth:`_cell_type_pooling`) pools each cell's change with a shared
        one, ``measured_pooling`` (:meth:`_measured_pooling`) each target's with a measured one.
        """
        rng = np.random.default_rng(seed)
        theta = self.module.require_decoder().log_theta.exp().detach().cpu().numpy()
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
            unchanged = reference(context, rows)
            if expression in ("sample", "transport"):
                library = _library(x)[:, None]
            pools = pooling is not None or measured_pooling is not None
            if expression in ("shift", "transport") or pools:
                base_z, base_log = self._decoded_log_expression(unchanged, batch_index)
            if expression in ("shift", "transport"):
                source_counts = to_dense(x).cpu().numpy()
                observed = log_normalize(source_counts)
            if expression == "transport":
                # where each count sits in its reference law: the same for every target
                quantile = count_quantiles(
                    source_counts, _expected_counts(base_log, library), theta, rng
                )
            rows_z, rows_x, rows_c = [], [], []
            for t, (target, columns) in enumerate(zip(targets, target_columns, strict=True)):
                z, log_mean = self._decoded_log_expression(
                    target(context, rows, unchanged), batch_index
                )
                if pooling is not None:
                    weights, pooled_log, pooled_z = pooling
                    z = pool_change(z, base_z, weights[rows], pooled_z[t])
                    log_mean = pool_change(log_mean, base_log, weights[rows], pooled_log[t])
                if measured_pooling is not None and measured_pooling[0][t] < 1.0:
                    shares, references = measured_pooling
                    log_mean = pool_change(
                        log_mean, base_log, np.full(len(log_mean), shares[t]), references[t]
                    )
                rows_z.append(z)
                if expression == "sample":
                    sampled = sample_negative_binomial(
                        _expected_counts(log_mean, library), theta, rng
                    )
                    rows_c.append(sampled)
                    values_p = log_normalize(sampled)
                elif expression == "transport":
                    moved = negative_binomial_quantile(
                        quantile, _expected_counts(log_mean, library), theta
                    )
                    rows_c.append(moved)
                    values_p = log_normalize(moved)
                elif expression == "shift":
                    values_p = observed + (log_mean - base_log)
                else:
                    values_p = log_mean
                base = observed if expression in ("shift", "transport") else values_p
                for column, effect in columns:
                    values_p[:, column] = apply_direct_effect(base[:, column], effect)
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

    def _cell_type_pooling(
        self,
        adata: AnnData,
        source_index: np.ndarray,
        weight: float,
        names: list[str],
        reference,
        targets: list,
        batch_size: int | None,
        seed: int,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """What :func:`~scjepa.model._cell_type_pooling.pool_change` needs, or ``None``.

        The share of its own change each source cell keeps and, per target (``names``), the
        change that the rest comes from: in decoded ``log1p`` expression the change measured for
        that perturbation in training, where it was measured (and the model has no doses), else
        the mean change the model predicts for training control cells of the perturbed cell
        types; in embedding space always the latter. ``None`` when every cell keeps its own.
        """
        perturbed = perturbed_label_codes(self.adata_manager)
        source_labels = label_codes(self.get_anndata_manager(adata, required=True))
        weights = own_change_weights(source_labels[source_index], perturbed, weight)
        if weights is None:
            return None
        cells = reference_cells(self.adata_manager, perturbed, seed)
        z, log_mean, _ = self._predict_cells(
            self.adata,
            cells,
            batch_size,
            reference=reference,
            targets=[lambda context, rows, unchanged: unchanged, *targets],
            expression="mean",
            seed=seed,
        )
        z = z.reshape(len(targets) + 1, len(cells), -1)
        log_mean = log_mean.reshape(len(targets) + 1, len(cells), -1)
        pooled_log = (log_mean[1:] - log_mean[:1]).mean(axis=1)
        if not self.module.use_dose:
            measured = self._measured_changes_by_members()
            for t, name in enumerate(names):
                change = measured.get(self._canonical(name))
                if change is not None:
                    pooled_log[t] = change
        return weights, pooled_log, (z[1:] - z[:1]).mean(axis=1)

    def _canonical(self, name: str) -> tuple[str, ...]:
        """A perturbation's members, sorted: the same for ``"A+B"`` and ``"B+A"``."""
        return parse_perturbation(
            name, self._setup_args["control_value"], self._setup_args["perturbation_delimiter"]
        )

    def _measured_changes(self) -> dict[str, np.ndarray]:
        """Measured change of every training perturbation, by label (computed once)."""
        if getattr(self, "_measured_changes_cache", None) is None:
            self._measured_changes_cache = measured_changes(
                self.adata_manager, self._counts(self.adata)
            )
        return self._measured_changes_cache

    def _measured_changes_by_members(self) -> dict[tuple[str, ...], np.ndarray]:
        """:meth:`_measured_changes` keyed by members (the first of labels with equal ones)."""
        by_members: dict[tuple[str, ...], np.ndarray] = {}
        for label, change in self._measured_changes().items():
            by_members.setdefault(self._canonical(label), change)
        return by_members

    def _measured_pooling(
        self, names: list[str], new_gene_weight: float, new_combination_weight: float
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """Share of its own change each target keeps, and the reference change of the rest.

        ``None`` when every target keeps its own, and for models with doses, whose measured
        changes mix doses (see :func:`~scjepa.model._measured_pooling.measured_references`).
        """
        if self.mean_perturbation_change_ is None or self.module.use_dose:
            return None
        return measured_references(
            [self._canonical(name) for name in names],
            self._measured_changes_by_members(),
            self.mean_perturbation_change_,
            new_gene_weight,
            new_combination_weight,
        )

    def _decoded_log_expression(
        self, z: torch.Tensor, batch_index: torch.Tensor
    ) -> tuple[np.ndarray, np.ndarray]:
        """Embeddings and ``log1p`` of the expected normalised expression decoded from them."""
        scale = self.module.decode(z, batch_index)
        return z.cpu().numpy(), torch.log1p(scale * NORMALIZATION_TARGET_SUM).cpu().numpy()

    def _target_gene_columns(self, names: list[str]) -> list[list[tuple[int, list[float]]]]:
        """Columns of the measured genes each perturbation targets, with their direct effects.

        A target measured perturbed alone in training keeps its own effect; any other gets the
        typical one (``target_gene_direct_effect_``).
        """
        if self.target_gene_direct_effect_ is None:
            return [[] for _ in names]
        position = {name: i for i, name in enumerate(self._training_var_names)}
        members = [self._canonical(name) for name in names]
        return [
            [
                (
                    position[m],
                    self.target_gene_direct_effects_.get(m, self.target_gene_direct_effect_),
                )
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


def _check_expression(expression: str) -> None:
    if expression not in EXPRESSION_MODES:
        raise ValueError(f"`expression` must be one of {EXPRESSION_MODES}, got {expression!r}.")


def _library(x: torch.Tensor) -> np.ndarray:
    return library_size(x).cpu().numpy()


def _expected_counts(log_mean: np.ndarray, library: np.ndarray) -> np.ndarray:
    """Expected counts at each cell's library size from ``log1p`` of normalised expression."""
    return np.expm1(log_mean) / NORMALIZATION_TARGET_SUM * library
