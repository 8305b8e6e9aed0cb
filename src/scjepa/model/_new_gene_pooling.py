"""Partial pooling of the predicted response to perturbations of genes never perturbed alone.

A gene never perturbed in training is embedded from the perturbed genes it resembles
(:meth:`~scjepa.module.PerturbationEncoder.neighbour_embedding`), and what that predicts beyond
the gene's own knock-down is an extrapolation from a few dozen measured responses. The prior
estimate of such a gene's response is the mean change measured over the training perturbations
(the mean-of-perturbations baseline), and that of a perturbation with such a member is the sum
over its members of the change measured for each alone, with the mean change for a member never
measured alone. A prediction keeps a share of its own change and takes the rest from that prior,
the shrinkage of an estimate resting on little data towards the grand mean (James & Stein, 1961;
partial pooling in a hierarchical model, Gelman & Hill, 2007).
"""

from __future__ import annotations

import numpy as np


def new_gene_references(
    members: list[tuple[str, ...]],
    single_changes: dict[str, np.ndarray],
    mean_change: np.ndarray,
    weight: float,
) -> tuple[np.ndarray, np.ndarray] | None:
    """Share of its own predicted change each perturbation keeps, and the change the rest is.

    Parameters
    ----------
    members
        Each perturbation's members.
    single_changes
        Change measured for each gene perturbed alone in training.
    mean_change
        Mean change measured over the training perturbations.
    weight
        Share kept by a perturbation with a member never perturbed alone.

    Returns
    -------
    Per perturbation, the share it keeps (1 when every member was measured alone, and for the
    empty perturbation) and the reference change (rows; zero where the share is 1); ``None``
    when every perturbation keeps its own change.
    """
    shares = np.ones(len(members))
    references = np.zeros((len(members), len(mean_change)), dtype=np.float32)
    for p, group in enumerate(members):
        if all(m in single_changes for m in group):
            continue
        shares[p] = float(weight)
        for m in group:
            references[p] += single_changes.get(m, mean_change)
    if np.all(shares == 1.0):
        return None
    return shares, references
