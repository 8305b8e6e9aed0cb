"""The direct effect of a genetic perturbation on the expression of its own target gene."""

from __future__ import annotations

import numpy as np
from anndata import AnnData

from scjepa.data._features import log_normalize
from scjepa.data._matrix import dense
from scjepa.data._perturbations import parse_perturbation


def target_gene_effects(
    adata: AnnData,
    counts,
    perturbation_key: str,
    control_value: str,
    delimiter: str = "+",
) -> dict[str, float]:
    """Change of each perturbed gene's own log-normalised expression under its single perturbation.

    CRISPR interference lowers and CRISPR activation raises the targeted gene itself; this is
    usually the largest single change a genetic perturbation causes. Measured per target in
    training, it is reused for combinations containing that target; its median is the typical
    direct effect applied to targets never seen perturbed.

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
    Change per targeted gene; empty if no single perturbation targets a measured gene.
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
    control_mean = expression[is_control].mean(axis=0)
    return {
        str(adata.var_names[g]): float(
            expression[labels == label, column[g]].mean() - control_mean[column[g]]
        )
        for label, g in targets.items()
    }
