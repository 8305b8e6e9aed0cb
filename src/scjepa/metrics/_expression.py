"""Mean log-normalised expression per perturbation, the input of every delta metric."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from scjepa.data._features import group_means, group_sums, log_normalize


def log_normalized_matrix(adata: AnnData, layer: str | None = None) -> np.ndarray | sparse.spmatrix:
    """Log-normalised expression of ``adata``.

    With ``layer`` (raw counts) the counts are normalised (``normalize_total`` to 1e4 + ``log1p``);
    with ``layer=None``, ``adata.X`` is taken as already log-normalised, which holds for the
    predictions of scjepa models and baselines (``uns["scjepa"]["X"] == "log1p_normalized"``).
    """
    if layer is None:
        return adata.X
    if layer not in adata.layers:
        raise KeyError(f"Layer {layer!r} not found in `adata.layers`.")
    return log_normalize(adata.layers[layer])


def mean_profile(matrix: np.ndarray | sparse.spmatrix) -> np.ndarray:
    """Mean over cells (rows) in float64, so that equal inputs give equal means to the last bit."""
    if sparse.issparse(matrix):
        matrix = matrix.astype(np.float64)
    return np.asarray(matrix.mean(axis=0, dtype=np.float64)).ravel()


def perturbation_means(
    adata: AnnData, perturbation_key: str = "perturbation", layer: str | None = None
) -> pd.DataFrame:
    """Mean log-normalised expression of each perturbation (rows) over genes (columns)."""
    if perturbation_key not in adata.obs:
        raise KeyError(f"Perturbation column {perturbation_key!r} not found in `adata.obs`.")
    return labelled_means(
        log_normalized_matrix(adata, layer),
        adata.obs[perturbation_key].astype(str).to_numpy(),
        adata.var_names,
    )


def perturbation_deltas(
    adata: AnnData,
    perturbation_key: str = "perturbation",
    control_value: str = "control",
    layer: str | None = None,
    labels_key: str | None = None,
) -> pd.DataFrame:
    """Mean change of log-normalised expression of each perturbation from control.

    Without ``labels_key`` a change is the mean of the perturbed cells minus the mean of all
    control cells. With ``labels_key`` (cell types, or any ``obs`` column of cell strata) it is
    measured within each label, against that label's controls, and averaged over the labels
    weighted by the perturbation's cells in each. The change is then free of differences in
    composition: when one cell type's perturbed cells are held out but its controls are not,
    the pooled controls differ from the perturbed cells by cell type as well as by perturbation.

    Parameters
    ----------
    adata
        Cells with perturbation labels, controls included.
    perturbation_key
        ``obs`` column of perturbation labels.
    control_value
        Label of control cells.
    layer
        Layer of raw counts, or ``None`` for a log-normalised ``X``.
    labels_key
        ``obs`` column of cell strata, or ``None`` to pool all cells.

    Returns
    -------
    Perturbations (rows, in order of appearance) x genes; the controls are not a row.
    """
    if perturbation_key not in adata.obs:
        raise KeyError(f"Perturbation column {perturbation_key!r} not found in `adata.obs`.")
    if labels_key is not None and labels_key not in adata.obs:
        raise KeyError(f"Labels column {labels_key!r} not found in `adata.obs`.")
    labels = adata.obs[perturbation_key].astype(str).to_numpy()
    if not (labels == control_value).any():
        raise ValueError(f"No control cells labelled {control_value!r} in the training data.")
    strata = (
        np.zeros(adata.n_obs, dtype=int).astype(str)
        if labels_key is None
        else adata.obs[labels_key].astype(str).to_numpy()
    )
    groups = stratum_groups(strata, labels)
    sums, sizes = group_sums(log_normalized_matrix(adata, layer), groups.key, groups.names)
    names, deltas, n_cells = stratified_deltas(sums, sizes, groups, control_value)
    unmatched = [name for name, n in zip(names, n_cells, strict=True) if n == 0]
    if unmatched:
        raise ValueError(
            f"No control cells share a {labels_key!r} label with the cells of "
            f"{', '.join(map(repr, unmatched[:5]))}; their change cannot be measured."
        )
    return pd.DataFrame(deltas, index=names, columns=adata.var_names)


class StratumGroups(NamedTuple):
    """The (stratum, perturbation) group of every cell, for :func:`stratified_deltas`."""

    key: np.ndarray
    """Each cell's group name."""
    names: list[str]
    """Group names, in order of appearance."""
    strata: np.ndarray
    """Each group's stratum."""
    labels: np.ndarray
    """Each group's perturbation label."""


def stratum_groups(strata: np.ndarray, labels: np.ndarray) -> StratumGroups:
    """Cells grouped by stratum and perturbation label (both string arrays)."""
    key = np.char.add(np.char.add(strata.astype(str), "\x1f"), labels.astype(str))
    names, first = np.unique(key, return_index=True)
    order = np.argsort(first)
    return StratumGroups(
        key, [str(n) for n in names[order]], strata[first[order]], labels[first[order]]
    )


def stratified_deltas(
    sums: np.ndarray, sizes: np.ndarray, groups: StratumGroups, control_value: str
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Change of each perturbation's mean from the controls of its strata.

    As in :func:`perturbation_deltas`, averaged over strata weighted by the perturbation's cells
    in each. ``sums`` and ``sizes`` are the summed log-normalised expression and the number of
    cells of every group of ``groups``. Returns the perturbation labels (in order of
    appearance), their changes (rows; NaN for a perturbation no stratum holds controls for) and
    the number of its cells that were matched with controls.
    """
    names = [name for name in dict.fromkeys(groups.labels) if name != control_value]
    row = {name: i for i, name in enumerate(names)}
    totals = np.zeros((len(names), sums.shape[1]))
    n_cells = np.zeros(len(names))
    means = sums / np.maximum(sizes, 1)[:, None]
    control_of = {
        stratum: g
        for g, (stratum, label) in enumerate(zip(groups.strata, groups.labels, strict=True))
        if label == control_value
    }
    for g, (stratum, label) in enumerate(zip(groups.strata, groups.labels, strict=True)):
        if label == control_value or stratum not in control_of:
            continue
        totals[row[label]] += sizes[g] * (means[g] - means[control_of[stratum]])
        n_cells[row[label]] += sizes[g]
    with np.errstate(invalid="ignore"):
        return names, totals / n_cells[:, None], n_cells


def labelled_means(matrix, labels: np.ndarray, var_names: pd.Index) -> pd.DataFrame:
    """Mean profile per label of an already log-normalised matrix, labels in order of appearance."""
    names = list(dict.fromkeys(labels))
    return pd.DataFrame(group_means(matrix, labels, names), index=names, columns=var_names)
