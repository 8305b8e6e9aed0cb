"""Partial pooling of the predicted response to perturbations never measured in training.

A prediction for a perturbation never measured rests on what the model extrapolates, and what was
measured gives a prior estimate of the same response:

* a gene never perturbed in training is embedded from the perturbed genes it resembles
  (:meth:`~scjepa.module.PerturbationEncoder.neighbour_embedding`), and what that predicts beyond
  the gene's own knock-down is an extrapolation from a few dozen measured responses. Its prior is
  the mean change measured over the training perturbations (the mean-of-perturbations baseline),
  and that of a perturbation with such a member is the sum over its members of the change
  measured for each alone, with the mean change for a member never measured alone;
* a combination never measured whose members were each perturbed alone is predicted from the
  model's own reproduction of each member's effect plus a learned interaction fitted to a few
  dozen combinations. Its prior is the sum of its members' measured changes (the additive
  baseline).

A prediction keeps a share of its own change and takes the rest from that prior: the shrinkage
of an estimate resting on little data towards what was measured (James & Stein, 1961; partial
pooling in a hierarchical model, Gelman & Hill, 2007). Two estimates whose errors are partly
independent average to one better than either, which is also why a combination of measured
members is pooled although its prior is a baseline in its own right.
"""

from __future__ import annotations

import numpy as np


def measured_references(
    members: list[tuple[str, ...]],
    measured: dict[tuple[str, ...], np.ndarray],
    mean_change: np.ndarray,
    new_gene_weight: float,
    new_combination_weight: float,
) -> tuple[np.ndarray, np.ndarray] | None:
    """Share of its own predicted change each perturbation keeps, and the change the rest is.

    Parameters
    ----------
    members
        Each perturbation's members.
    measured
        Change measured for every training perturbation, keyed by its members. A single gene
        among them is a measured member; a combination among them keeps its own prediction,
        which was fitted to it.
    mean_change
        Mean change measured over the training perturbations.
    new_gene_weight
        Share kept by a perturbation with a member never perturbed alone.
    new_combination_weight
        Share kept by a combination never measured whose members were all perturbed alone.

    Returns
    -------
    Per perturbation, the share it keeps (1 for measured perturbations and for the empty
    perturbation) and the reference change (rows; zero where the share is 1); ``None`` when
    every perturbation keeps its own change.
    """
    single_changes = {group[0]: change for group, change in measured.items() if len(group) == 1}
    shares = np.ones(len(members))
    references = np.zeros((len(members), len(mean_change)), dtype=np.float32)
    for p, group in enumerate(members):
        if all(m in single_changes for m in group):
            if len(group) < 2 or group in measured:
                continue
            shares[p] = float(new_combination_weight)
        else:
            shares[p] = float(new_gene_weight)
        for m in group:
            references[p] += single_changes.get(m, mean_change)
    if np.all(shares == 1.0):
        return None
    return shares, references
