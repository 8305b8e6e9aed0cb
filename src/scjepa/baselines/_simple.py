"""Simple perturbation baselines that deep models must beat.

Each baseline predicts a perturbed cell as a source (control) cell's log-normalised expression
plus a change ``δ_p``; they differ in ``δ_p``. Ahlmann-Eltze, Huber & Anders (Nature Methods
2025) show that such baselines match or beat published deep models on standard benchmarks.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from anndata import AnnData

from scjepa.data._matrix import dense
from scjepa.data._perturbations import parse_perturbation, unknown_perturbation_message
from scjepa.data._prediction import prediction_anndata
from scjepa.metrics._expression import log_normalized_matrix, perturbation_deltas


class PerturbationBaseline:
    """Shared ``fit`` / ``predict_perturbation`` of the delta baselines.

    Parameters
    ----------
    perturbation_key
        ``obs`` column of perturbation labels.
    control_value
        Label of control cells.
    delimiter
        Separator of combination members.
    layer
        Layer of raw counts (normalised with ``normalize_total`` + ``log1p``); ``None`` takes
        ``X`` as log-normalised already.
    labels_key
        ``obs`` column of cell types. Each training perturbation's change is then measured
        against the controls of the same cell types (:func:`scjepa.metrics.perturbation_deltas`),
        as BioJEPA matches control and perturbed cells within cell types; ``None`` compares with
        all controls.
    """

    name = "baseline"

    def __init__(
        self,
        perturbation_key: str = "perturbation",
        control_value: str = "control",
        delimiter: str = "+",
        layer: str | None = "counts",
        labels_key: str | None = None,
    ):
        self.perturbation_key = perturbation_key
        self.control_value = control_value
        self.delimiter = delimiter
        self.layer = layer
        self.labels_key = labels_key
        self.deltas_: dict[str, np.ndarray] | None = None

    def fit(self, adata: AnnData) -> PerturbationBaseline:
        """Learn the mean change of every training perturbation from control."""
        deltas = perturbation_deltas(
            adata, self.perturbation_key, self.control_value, self.layer, self.labels_key
        )
        self.var_names_ = adata.var_names.copy()
        self.deltas_ = {label: row.to_numpy() for label, row in deltas.iterrows()}
        self.members_ = {label: self._parse(label) for label in self.deltas_}
        return self

    def _parse(self, label: str) -> tuple[str, ...]:
        return parse_perturbation(label, self.control_value, self.delimiter)

    def delta(self, perturbation: str) -> np.ndarray:
        """Predicted change of mean log-normalised expression under ``perturbation``."""
        raise NotImplementedError

    def _mean_delta(self) -> np.ndarray:
        """The mean of the training perturbations' changes, each perturbation counted once."""
        if not self.deltas_:
            raise ValueError("No perturbed cells in the training data.")
        return np.mean(np.stack(list(self.deltas_.values())), axis=0)

    def predict_perturbation(
        self,
        perturbations: str | Sequence[str],
        adata: AnnData,
        indices: Sequence[int] | None = None,
    ) -> AnnData:
        """Predict cells under perturbations, in the layout of ``BioJEPA.predict_perturbation``."""
        if self.deltas_ is None:
            raise RuntimeError(f"Call `fit` before predicting with {type(self).__name__}.")
        names = [perturbations] if isinstance(perturbations, str) else list(perturbations)
        if not np.array_equal(np.asarray(adata.var_names), np.asarray(self.var_names_)):
            raise ValueError("The source cells' genes differ from the training genes.")
        deltas = np.stack([self.delta(name) for name in names])
        source_index = np.arange(adata.n_obs) if indices is None else np.asarray(indices)
        source = dense(log_normalized_matrix(adata[source_index], self.layer))
        expression = (deltas[:, None, :] + source[None, :, :]).reshape(-1, adata.n_vars)
        return prediction_anndata(
            adata,
            source_index,
            names,
            np.maximum(expression, 0.0),
            perturbation_key=self.perturbation_key,
            method=self.name,
        )


class NoChangeBaseline(PerturbationBaseline):
    """Predicts that a perturbation changes nothing: perturbed cells look like controls."""

    name = "no_change"

    def delta(self, perturbation: str) -> np.ndarray:
        """Zero change."""
        return np.zeros(len(self.var_names_))


class MeanPerturbationBaseline(PerturbationBaseline):
    """Predicts for any perturbation the average change of all training perturbations."""

    name = "mean_perturbation"

    def delta(self, perturbation: str) -> np.ndarray:
        """The mean of the training perturbations' changes."""
        return self._mean_delta()


class AdditiveBaseline(PerturbationBaseline):
    """Predicts a combination as the sum of the changes of its members measured alone."""

    name = "additive"

    def delta(self, perturbation: str) -> np.ndarray:
        """Sum of the single-member changes."""
        singles = self._single_labels()
        members = self._parse(perturbation)
        missing = [m for m in members if m not in singles]
        if missing:
            raise KeyError(
                "The additive baseline needs every member measured alone in training. "
                + unknown_perturbation_message(missing, list(singles))
            )
        return np.sum([self.deltas_[singles[m]] for m in members], axis=0)

    def _single_labels(self) -> dict[str, str]:
        """The training label of each member measured alone."""
        return {m[0]: label for label, m in self.members_.items() if len(m) == 1}


class AdditiveMeanBaseline(AdditiveBaseline):
    """Additive, with the mean change of the training perturbations for unmeasured members.

    A combination of a gene measured alone and one never measured is predicted as the measured
    member's change plus the mean-of-perturbations change for the other; every member measured
    gives the additive prediction, none the mean one (times the number of members). A natural
    reference for combinations with an unseen member, where the additive baseline has nothing
    to say.
    """

    name = "additive_mean"

    def delta(self, perturbation: str) -> np.ndarray:
        """Sum over members of the change measured alone, or the mean change."""
        singles = self._single_labels()
        mean = self._mean_delta()
        changes = [
            self.deltas_[singles[m]] if m in singles else mean for m in self._parse(perturbation)
        ]
        return sum(changes, np.zeros_like(mean))
