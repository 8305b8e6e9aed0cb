"""The linear perturbation model of Ahlmann-Eltze, Huber & Anders (Nature Methods 2025)."""

from __future__ import annotations

import numpy as np
from anndata import AnnData

from scjepa.baselines._simple import PerturbationBaseline
from scjepa.data._features import response_gene_embedding
from scjepa.data._perturbations import unknown_perturbation_message


class LinearBaseline(PerturbationBaseline):
    """A bilinear ridge model on a PCA gene embedding; covers genes never perturbed in training.

    With ``Y`` the genes x perturbations matrix of training mean log-normalised expression and
    ``b`` its row means, the model is ``Y ≈ G W Pᵀ + b``: ``G`` (genes x K) are the principal
    component scores of ``Y − b`` (see :func:`scjepa.data.response_gene_embedding`), a
    perturbation's embedding is the sum of the rows of ``G`` of its members, and
    ``W = (GᵀG + λI)⁻¹ Gᵀ (Y − b) P (PᵀP + λI)⁻¹``. Any measured gene can be predicted.
    Defaults follow the paper: ``K = 10``, ``λ = 0.1``.

    Parameters
    ----------
    n_components
        Dimension ``K`` of the gene embedding.
    ridge
        Ridge penalty ``λ`` of both solves.
    **kwargs
        ``perturbation_key``, ``control_value``, ``delimiter`` and ``layer`` as in
        :class:`~scjepa.baselines.PerturbationBaseline`.
    """

    name = "linear"

    def __init__(self, n_components: int = 10, ridge: float = 0.1, **kwargs):
        super().__init__(**kwargs)
        self.n_components = n_components
        self.ridge = ridge

    def fit(self, adata: AnnData) -> LinearBaseline:
        """Fit ``G``, ``W`` and ``b`` on the training perturbations' mean profiles."""
        super().fit(adata)
        if len(self.deltas_) < 2:
            raise ValueError("The linear baseline needs at least two training perturbations.")
        labels = list(self.deltas_)
        deltas = np.stack([self.deltas_[label] for label in labels])  # perturbations x genes
        self.gene_embedding_ = response_gene_embedding(deltas, self.n_components)
        self.gene_position_ = {name: i for i, name in enumerate(self.var_names_)}
        for label in labels:
            self._check_members(self.members_[label])
        perturbation_embedding = np.stack([self._embed(self.members_[name]) for name in labels])
        y = deltas.T  # genes x perturbations; deltas share the control, so b absorbs it
        self.offset_ = y.mean(axis=1)
        g, p = self.gene_embedding_, perturbation_embedding
        eye = np.eye(g.shape[1])
        left = np.linalg.solve(g.T @ g + self.ridge * eye, g.T @ (y - self.offset_[:, None]))
        self.weights_ = np.linalg.solve(p.T @ p + self.ridge * eye, (left @ p).T).T
        return self

    def _check_members(self, members: tuple[str, ...]) -> None:
        missing = [m for m in members if m not in self.gene_position_]
        if missing:
            raise KeyError(
                "The linear baseline embeds perturbed genes by their measured expression; "
                + unknown_perturbation_message(missing, list(self.gene_position_))
            )

    def _embed(self, members: tuple[str, ...]) -> np.ndarray:
        return self.gene_embedding_[[self.gene_position_[m] for m in members]].sum(axis=0)

    def delta(self, perturbation: str) -> np.ndarray:
        """``G W p + b`` minus the control profile."""
        members = self._parse(perturbation)
        self._check_members(members)
        return self.gene_embedding_ @ self.weights_ @ self._embed(members) + self.offset_
