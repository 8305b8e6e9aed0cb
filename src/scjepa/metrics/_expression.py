"""Mean log-normalised expression per perturbation, the input of every delta metric."""

from __future__ import annotations

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from scjepa.data._features import group_means, log_normalize


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
    matrix = log_normalized_matrix(adata, layer)
    names = [name for name in dict.fromkeys(labels) if name != control_value]
    sums = np.zeros((len(names), adata.n_vars))
    weights = np.zeros(len(names))
    for stratum in dict.fromkeys(strata):
        in_stratum = strata == stratum
        means = labelled_means(matrix[in_stratum], labels[in_stratum], adata.var_names)
        if control_value not in means.index:
            continue
        counts = pd.Series(labels[in_stratum]).value_counts()
        for i, name in enumerate(names):
            if name in means.index:
                sums[i] += counts[name] * (means.loc[name] - means.loc[control_value]).to_numpy()
                weights[i] += counts[name]
    unmatched = [name for name, weight in zip(names, weights, strict=True) if weight == 0]
    if unmatched:
        raise ValueError(
            f"No control cells share a {labels_key!r} label with the cells of "
            f"{', '.join(map(repr, unmatched[:5]))}; their change cannot be measured."
        )
    return pd.DataFrame(sums / weights[:, None], index=names, columns=adata.var_names)


def labelled_means(matrix, labels: np.ndarray, var_names: pd.Index) -> pd.DataFrame:
    """Mean profile per label of an already log-normalised matrix, labels in order of appearance."""
    names = list(dict.fromkeys(labels))
    return pd.DataFrame(group_means(matrix, labels, names), index=names, columns=var_names)
