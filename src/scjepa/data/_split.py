"""Seeded splits of perturbations into training and held-out sets."""

from __future__ import annotations

import numpy as np
from anndata import AnnData

from scjepa.data._perturbations import parse_perturbation

TRAIN = "train"
UNSEEN_SINGLE = "unseen_single"
COMBO_SEEN = "combo_both_seen"
COMBO_ONE_UNSEEN = "combo_one_unseen"
UNSEEN_CELL_TYPE = "unseen_cell_type"


def split_perturbations(
    adata: AnnData,
    perturbation_key: str = "perturbation",
    control_value: str = "control",
    delimiter: str = "+",
    single_fraction: float = 0.2,
    combination_fraction: float = 0.3,
    held_out_cell_type: str | None = None,
    labels_key: str | None = None,
    seed: int = 0,
    key_added: str = "split",
) -> dict[str, list[str]]:
    """Hold out perturbations for evaluation and write each cell's set to ``adata.obs[key_added]``.

    A fraction of single perturbations is held out with their combinations partly following:
    a held-out combination whose members were both trained on is ``"combo_both_seen"``; one with a
    held-out member is ``"combo_one_unseen"``; held-out singles are ``"unseen_single"``. Control
    cells are ``"train"`` (they are the source of every prediction). With ``held_out_cell_type``,
    every perturbed cell of that type is ``"unseen_cell_type"``; its controls stay in training.

    Parameters
    ----------
    adata
        Annotated data with a perturbation column.
    perturbation_key
        ``obs`` column of perturbation labels.
    control_value
        Label of control cells.
    delimiter
        Separator of combination members.
    single_fraction
        Fraction of single perturbations held out.
    combination_fraction
        Fraction of combinations with both members trained that is held out.
    held_out_cell_type
        Optional cell type whose perturbed cells are all held out.
    labels_key
        ``obs`` column of cell types; needed with ``held_out_cell_type``.
    seed
        Seed of the split.
    key_added
        ``obs`` column to write.

    Returns
    -------
    Held-out perturbation labels per split.
    """
    if perturbation_key not in adata.obs:
        raise KeyError(f"Perturbation column {perturbation_key!r} not found in `adata.obs`.")
    labels = adata.obs[perturbation_key].astype(str).to_numpy()
    rng = np.random.default_rng(seed)
    members = {
        label: parse_perturbation(label, control_value, delimiter) for label in np.unique(labels)
    }
    singles = sorted(label for label, m in members.items() if len(m) == 1)
    combos = sorted(label for label, m in members.items() if len(m) > 1)
    n_single = int(round(single_fraction * len(singles)))
    held_singles = (
        set(rng.choice(singles, size=n_single, replace=False).tolist()) if n_single else set()
    )
    unseen_members = {members[s][0] for s in held_singles}
    one_unseen = [c for c in combos if any(m in unseen_members for m in members[c])]
    both_seen = [c for c in combos if c not in one_unseen]
    n_combo = int(round(combination_fraction * len(both_seen)))
    held_combos = (
        set(rng.choice(both_seen, size=n_combo, replace=False).tolist()) if n_combo else set()
    )

    split = np.full(len(labels), TRAIN, dtype=object)
    split[np.isin(labels, sorted(held_singles))] = UNSEEN_SINGLE
    split[np.isin(labels, sorted(held_combos))] = COMBO_SEEN
    split[np.isin(labels, one_unseen)] = COMBO_ONE_UNSEEN
    if held_out_cell_type is not None:
        if labels_key is None or labels_key not in adata.obs:
            raise KeyError("`held_out_cell_type` needs `labels_key`, an existing `obs` column.")
        cell_types = adata.obs[labels_key].astype(str).to_numpy()
        if held_out_cell_type not in set(cell_types):
            raise ValueError(f"Cell type {held_out_cell_type!r} not found in {labels_key!r}.")
        split[(cell_types == held_out_cell_type) & (labels != control_value)] = UNSEEN_CELL_TYPE
    adata.obs[key_added] = split
    return {
        UNSEEN_SINGLE: sorted(held_singles),
        COMBO_SEEN: sorted(held_combos),
        COMBO_ONE_UNSEEN: sorted(one_unseen),
    }
