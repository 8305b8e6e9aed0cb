"""The direct effect of a genetic perturbation on the expression of its own target gene."""

from __future__ import annotations

import numpy as np
from anndata import AnnData
from scipy.optimize import brentq

from scjepa.data._features import log_normalize
from scjepa.data._matrix import dense
from scjepa.data._perturbations import parse_perturbation


def target_gene_direct_effects(
    adata: AnnData,
    counts,
    perturbation_key: str,
    control_value: str,
    delimiter: str = "+",
) -> dict[str, list[float]]:
    """Direct effect of each perturbed gene's single perturbation on the gene's own expression.

    CRISPR interference lowers and CRISPR activation raises the targeted gene itself; this is
    usually the largest single change a genetic perturbation causes. An effect is a pair
    ``[fold, added]`` acting on each cell's normalised expression (counts per 10,000, not
    logged) as ``fold * x + added`` (:func:`apply_direct_effect`):

    * a lowered target keeps a fraction of its transcripts (``[fold, 0]``), as interference
      removes most of them in every cell, so the change in log expression follows the gene's
      level in each cell and cell type;
    * a raised target gains transcripts (``[1, added]``), as an activated promoter adds them
      whether or not the gene was expressed, so silent genes are switched on too.

    Each target's parameter is the one that, applied to the control cells, reproduces its
    measured mean log change, so the training cells are reproduced exactly as by a constant log
    change. Predicting each target of ``perturbseq_demo(seed=0)`` (interference) from the
    others' median, the mean absolute error of its mean log change was 0.65 with the median log
    change and 0.24 with the median fold change. A target whose mean did not change, or a
    lowered one never detected in control cells, gets no effect of its own.

    Parameters
    ----------
    adata
        Training data.
    counts
        Its raw counts (cells x genes).
    perturbation_key
        ``obs`` column of perturbation labels.
    control_value
        Label of control cells.
    delimiter
        Separator of combination members.

    Returns
    -------
    ``[fold, added]`` per targeted gene; empty if no single perturbation targets a measured gene.
    """
    labels = adata.obs[perturbation_key].astype(str).to_numpy()
    is_control = labels == control_value
    gene_position = {name: i for i, name in enumerate(adata.var_names)}
    targets = {}
    for label in np.unique(labels[~is_control]):
        members = parse_perturbation(label, control_value, delimiter)
        if len(members) == 1 and members[0] in gene_position:
            targets[label] = gene_position[members[0]]
    if not targets or not is_control.any():
        return {}
    genes = sorted(set(targets.values()))
    expression = log_normalize(counts[:, genes], library=np.asarray(counts.sum(axis=1)).ravel())
    expression = dense(expression)
    column = {g: i for i, g in enumerate(genes)}
    effects = {}
    for label, g in targets.items():
        control = expression[is_control, column[g]]
        change = float(expression[labels == label, column[g]].mean() - control.mean())
        if change > 0:
            effects[str(adata.var_names[g])] = _matching_effect(
                control, change, lambda added: [1.0, added]
            )
        elif change < 0 and control.max() > 0:
            effects[str(adata.var_names[g])] = _matching_effect(
                control, change, lambda fold: [fold, 0.0], largest=1.0
            )
    return effects


def typical_direct_effect(effects: dict[str, list[float]]) -> list[float] | None:
    """The effect for targets never perturbed alone: the median of the more common direction.

    A screen is usually interference or activation throughout; the few targets measured the
    other way are mostly noise or feedback.
    """
    # lowered targets keep a fraction (fold < 1), raised ones keep all (fold 1) and gain more
    lowered = [fold for fold, _ in effects.values() if fold < 1]
    raised = [added for fold, added in effects.values() if fold >= 1]
    if not lowered and not raised:
        return None
    if len(lowered) >= len(raised):
        return [float(np.median(lowered)), 0.0]
    return [1.0, float(np.median(raised))]


def _matching_effect(control: np.ndarray, change: float, effect_of, largest: float = 1e4) -> list:
    """``effect_of(v)``, ``v`` in ``[0, largest]``, that moves ``control``'s mean by ``change``.

    The mean log expression must rise with ``v``; the ends of the range stand in beyond it.
    """

    def gap(value: float) -> float:
        moved = apply_direct_effect(control, effect_of(value))
        return float(moved.mean() - control.mean() - change)

    if gap(0.0) >= 0:
        return effect_of(0.0)
    if gap(largest) <= 0:
        return effect_of(largest)
    return effect_of(float(brentq(gap, 0.0, largest, xtol=1e-6)))


def apply_direct_effect(log_expression: np.ndarray, effect) -> np.ndarray:
    """``log1p`` expression of cells whose normalised expression ``x`` becomes ``fold x + added``.

    ``effect`` is the pair ``[fold, added]`` of :func:`target_gene_direct_effects`.
    """
    fold, added = effect
    return np.log1p(fold * np.expm1(log_expression) + added)
