"""How much of the learned interaction of combined perturbations predictions should keep."""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator

import numpy as np
import torch
from scvi import REGISTRY_KEYS

from scjepa._constants import SCJEPA_KEYS

logger = logging.getLogger(__name__)

MIN_COMBINATIONS = 3
"""Fewer measured combinations than this leave nothing to cross-fit on."""


def cross_fit_interaction(
    model,
    n_folds: int = 5,
    n_contexts: int = 16,
    n_steps: int = 300,
    lr: float = 3e-3,
    seed: int = 0,
    batch_size: int | None = None,
) -> dict:
    """Cross-fit the pairwise interaction and set the share of it that predictions keep.

    The interaction network ``ψ`` of :class:`~scjepa.module.PerturbationEncoder` is the model's
    only way to predict a combination that is not the sum of its members; it is fitted to the
    few dozen combinations measured in training, and can memorise their departures from
    additivity rather than learn what predicts them. To measure what carries over to new
    combinations, the measured combinations whose members were all perturbed in training are
    split into folds; for each fold a fresh ``ψ`` is fitted, with the rest of the trained model
    fixed, to the other folds' residuals (the observed mean target embedding minus the model's
    additive prediction from control cells of the same stratum), and predicts the left-out
    fold's. The share kept is the least-squares coefficient of the residuals on these
    out-of-fold predictions, clipped to [0, 1]: ``α = Σ w ⟨r, ŝ⟩ / Σ w ‖ŝ‖²``, weighted by cells.
    This is stacking (Wolpert, Neural Networks 1992; Breiman, Machine Learning 1996): ``α`` near
    0 when the departures of unseen combinations cannot be predicted from their members, near 1
    when they can.

    Parameters
    ----------
    model
        A trained :class:`~scjepa.model.BioJEPA` with a perturbation key.
    n_folds
        Folds of measured combinations (at most one per combination).
    n_contexts
        Control cells drawn per combination and stratum as contexts.
    n_steps, lr
        Adam steps and learning rate of each fold's fit (full batch).
    seed
        Seed of the folds, the contexts and the fresh networks.
    batch_size
        Minibatch size for embedding cells.

    Returns
    -------
    ``interaction_scale`` (the ``α`` set on the model), ``n_combinations`` (those
    cross-fitted), ``n_folds``, ``out_of_fold_r2`` (of the residuals by the out-of-fold
    predictions, before scaling; ``nan`` when nothing was cross-fitted).
    """
    module = model.module
    encoder = module.perturbation_encoder
    if encoder is None:
        raise ValueError("This model was set up without `perturbation_key`; it has no interaction.")
    groups = _combination_groups(model, n_contexts, np.random.default_rng(seed))
    n_combinations = 0 if groups is None else int(groups["combination"].max()) + 1
    if n_combinations < MIN_COMBINATIONS:
        encoder.interaction_scale.fill_(1.0)
        logger.info(
            "%d combination(s) of perturbations seen in training with all members perturbed "
            "alone; the learned interaction is kept whole (cross-fitting needs %d).",
            n_combinations,
            MIN_COMBINATIONS,
        )
        return {
            "interaction_scale": 1.0,
            "n_combinations": n_combinations,
            "n_folds": 0,
            "out_of_fold_r2": math.nan,
        }
    module.eval()
    device = model.device
    context, target_mean, weight, members, dose, group_of = _embedded_groups(
        model, groups, batch_size, device
    )
    n_groups = len(target_mean)
    with torch.no_grad():
        unperturbed = module.predict_unperturbed(context)
        additive = module.predict_additive(context, members, dose, unperturbed)
        residual = target_mean - _group_means(additive, group_of, n_groups)

    def interaction_means(network: torch.nn.Module) -> torch.Tensor:
        shift = module.predict_interaction_shift(context, members, dose, unperturbed, network)
        return _group_means(shift, group_of, n_groups)

    combination = torch.as_tensor(groups["combination"], device=device)
    n_folds = min(n_folds, n_combinations)
    fold_of = torch.as_tensor(
        np.random.default_rng(seed).permutation(n_combinations) % n_folds, device=device
    )[combination]
    out_of_fold = torch.zeros_like(residual)
    with _frozen(module):
        for fold in range(n_folds):
            fitted = fold_of != fold
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed + fold)
                network = encoder.new_interaction_network().to(device)
            optimizer = torch.optim.Adam(network.parameters(), lr=lr)
            for _ in range(n_steps):
                optimizer.zero_grad()
                error = (interaction_means(network) - residual).pow(2).mean(dim=1)
                loss = (weight * error)[fitted].sum() / weight[fitted].sum()
                loss.backward()
                optimizer.step()
            with torch.no_grad():
                out_of_fold[~fitted] = interaction_means(network)[~fitted]
    scale = stacking_share(residual, out_of_fold, weight)
    w = weight.unsqueeze(1)
    r2 = 1.0 - float((w * (residual - out_of_fold).pow(2)).sum() / (w * residual.pow(2)).sum())
    encoder.interaction_scale.fill_(scale)
    logger.info(
        "Cross-fitted the interaction on %d combinations (%d folds): out-of-fold R² %.3f; "
        "predictions keep %.2f of it.",
        n_combinations,
        n_folds,
        r2,
        scale,
    )
    return {
        "interaction_scale": scale,
        "n_combinations": n_combinations,
        "n_folds": n_folds,
        "out_of_fold_r2": r2,
    }


def stacking_share(observed: torch.Tensor, predicted: torch.Tensor, weight: torch.Tensor) -> float:
    """How much of out-of-fold predictions to keep: ``Σ w ⟨r, ŝ⟩ / Σ w ‖ŝ‖²`` in [0, 1].

    ``observed`` rows are ``r``, ``predicted`` rows ``ŝ``, ``weight`` one ``w`` per row; the
    least-squares coefficient of ``r`` on ``ŝ``, clipped, and 0 when every ``ŝ`` is zero.
    """
    w = weight.unsqueeze(1)
    spread = float((w * predicted.pow(2)).sum())
    if spread <= 0:
        return 0.0
    return min(max(float((w * observed * predicted).sum()) / spread, 0.0), 1.0)


def _combination_groups(model, n_contexts: int, rng: np.random.Generator) -> dict | None:
    """Cells of each cross-fittable combination per stratum, with control cells as contexts.

    A stratum is a batch and label (and time and dose where registered), as in training.
    """
    setup = model._setup_args
    manager = model.adata_manager
    labels = model.adata.obs[setup["perturbation_key"]].astype(str).to_numpy()
    is_control = labels == setup["control_value"]
    candidates = list(np.unique(labels[~is_control]))
    members = model._members(candidates)
    n_members = (members >= 0).sum(axis=1)
    seen = model.module.perturbation_encoder.seen.cpu().numpy()
    all_seen = np.array([seen[row[row >= 0]].all() for row in members])
    keep = (n_members > 1) & all_seen
    combinations = [name for name, k in zip(candidates, keep, strict=True) if k]
    members = members[keep]
    if not combinations:
        return None
    columns = [
        np.asarray(manager.get_from_registry(key)).ravel()
        for key in (REGISTRY_KEYS.BATCH_KEY, REGISTRY_KEYS.LABELS_KEY, SCJEPA_KEYS.TIME_KEY)
        if key in manager.data_registry
    ]
    _, stratum = np.unique(np.stack(columns, axis=1), axis=0, return_inverse=True)
    stratum = stratum.ravel()
    dose = None
    if model.module.use_dose:
        dose = np.asarray(manager.get_from_registry(SCJEPA_KEYS.DOSE_KEY), dtype=float).ravel()
    rows = {"combination": [], "cells": [], "contexts": [], "members": [], "dose": []}
    for c, name in enumerate(combinations):
        cells_c = np.flatnonzero(labels == name)
        doses = [None] if dose is None else np.unique(dose[cells_c])
        for s in np.unique(stratum[cells_c]):
            controls = np.flatnonzero(is_control & (stratum == s))
            if len(controls) == 0:
                continue
            for d in doses:
                cells = cells_c[stratum[cells_c] == s]
                if d is not None:
                    cells = cells[dose[cells] == d]
                if len(cells) == 0:
                    continue
                rows["combination"].append(c)
                rows["cells"].append(cells)
                rows["contexts"].append(
                    rng.choice(controls, size=min(n_contexts, len(controls)), replace=False)
                )
                rows["members"].append(members[c])
                rows["dose"].append(d)
    if not rows["combination"]:
        return None
    # combinations without a stratum that has controls drop out; renumber the rest
    _, rows["combination"] = np.unique(rows["combination"], return_inverse=True)
    return rows


def _embedded_groups(model, groups: dict, batch_size: int | None, device) -> tuple:
    """Contexts, mean target embeddings and weights of the groups, per-context members and doses."""
    cells = np.unique(np.concatenate([*groups["cells"], *groups["contexts"]]))
    contexts, targets = [], []
    with torch.no_grad():
        for tensors in model._loader(model.adata, cells, batch_size):
            x = tensors[REGISTRY_KEYS.X_KEY].to(device)
            target, context = model.module.embed_target_and_context(x)
            contexts.append(context)
            targets.append(target)
    context_all, target_all = torch.cat(contexts), torch.cat(targets)

    def rows_of(indices: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.searchsorted(cells, indices), device=device)

    target_mean = torch.stack([target_all[rows_of(c)].mean(dim=0) for c in groups["cells"]])
    weight = torch.as_tensor([len(c) for c in groups["cells"]], dtype=torch.float, device=device)
    sizes = [len(c) for c in groups["contexts"]]
    context = context_all[rows_of(np.concatenate(groups["contexts"]))]
    group_of = torch.repeat_interleave(
        torch.arange(len(sizes), device=device), torch.tensor(sizes, device=device)
    )
    members = torch.as_tensor(np.stack(groups["members"]), device=device)[group_of]
    dose = None
    if groups["dose"][0] is not None:
        dose = torch.as_tensor(groups["dose"], dtype=torch.float, device=device)[group_of]
    return context, target_mean, weight, members, dose, group_of


def _group_means(values: torch.Tensor, group_of: torch.Tensor, n_groups: int) -> torch.Tensor:
    sums = values.new_zeros(n_groups, values.shape[1]).index_add(0, group_of, values)
    counts = torch.bincount(group_of, minlength=n_groups).clamp(min=1).unsqueeze(1)
    return sums / counts


@contextlib.contextmanager
def _frozen(module: torch.nn.Module) -> Iterator[None]:
    """Keep gradients out of ``module``'s parameters while a separate network is fitted."""
    flags = [p.requires_grad for p in module.parameters()]
    for p in module.parameters():
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(module.parameters(), flags, strict=True):
            p.requires_grad_(flag)
