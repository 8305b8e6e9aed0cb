"""The direct effect of a genetic perturbation on the expression of its own target gene."""

from __future__ import annotations

import numpy as np
from anndata import AnnData

from scjepa.data._features import log_normalize
from scjepa.data._matrix import dense
from scjepa.data._perturbations import parse_perturbation


def target_gene_fold_changes(
    adata: AnnData,
    counts,
    perturbation_key: str,
    control_value: str,
    delimiter: str = "+",
) -> dict[str, float]:
    """Fold change of each perturbed gene's own normalised expression under its single perturbation.

    CRISPR interference lowers and CRISPR activation raises the targeted gene itself; this is
    usually the largest single change a genetic perturbation causes. It acts on each cell's
    transcripts as a fraction (interference removes most of them), so it is measured as the ratio
    of mean normalised expression (counts per 10,000, not logged) of the perturbed cells to the
    control cells, and applied by :func:`apply_fold_change`. The change in log expression then
    follows the gene's level in each cell and cell type; a constant log change, as used before,
    over-predicted the change of weakly expressed targets: on ``perturbseq_demo(seed=0)`` the mean
    absolute error of the targets' mean log changes, with one value shared by all targets, was
    0.64 for the median log change and 0.26 for the median fold change. Targets not detected in
    control cells have no fold change.

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
    Fold change per targeted gene; empty if no single perturbation targets a measured gene.
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
    normalised = np.expm1(dense(expression))
    column = {g: i for i, g in enumerate(genes)}
    control_mean = normalised[is_control].mean(axis=0)
    return {
        str(adata.var_names[g]): float(
            normalised[labels == label, column[g]].mean() / control_mean[column[g]]
        )
        for label, g in targets.items()
        if control_mean[column[g]] > 0
    }


def apply_fold_change(log_expression: np.ndarray, fold_change: float) -> np.ndarray:
    """``log1p`` expression of cells whose normalised expression is scaled by ``fold_change``."""
    return np.log1p(fold_change * np.expm1(log_expression))
