"""Plots of cells predicted at a held-out time point."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from anndata import AnnData
from matplotlib.axes import Axes

from scjepa.metrics._expression import log_normalized_matrix
from scjepa.tl._shared import as_prediction_mapping, dense, shared_pca


def time_populations(
    predicted: AnnData | Mapping[str, AnnData],
    real: AnnData,
    reference: AnnData,
    *,
    time_key: str = "time",
    layer: str | None = "counts",
    seed: int = 0,
    axes: Sequence[Axes] | None = None,
) -> list[Axes]:
    """Predicted and observed cells at a held-out time on the main axes of the training cells.

    One panel per method: the training cells (``reference``) in the background coloured by
    time, the observed cells at the held-out time in black, the predicted cells in red, all on
    the first two principal components of the training cells' log-normalised expression (the
    space :func:`scjepa.tl.evaluate_time` scores in).

    Parameters
    ----------
    predicted
        Predictions (``predict_time`` output) or a mapping from method name to them.
    real
        Observed cells at the predicted time, raw counts in ``layer``.
    reference
        Training cells, raw counts in ``layer`` and times in ``obs[time_key]``.
    time_key
        ``obs`` column of times.
    layer
        Counts layer; ``None`` takes ``X`` as log-normalised.
    seed
        Seed of the PCA.
    axes
        Axes to draw on, one per method; new ones otherwise.

    Returns
    -------
    The axes, one per method.
    """
    predictions = as_prediction_mapping(predicted)
    if time_key not in reference.obs:
        raise KeyError(f"Time column {time_key!r} not found in `reference.obs`.")
    reference_matrix = log_normalized_matrix(reference, layer)
    pca = shared_pca([reference_matrix], 2, seed)
    background = pca.transform(dense(reference_matrix))
    observed = pca.transform(dense(log_normalized_matrix(real, layer)))
    if axes is None:
        _, axes = plt.subplots(1, len(predictions), figsize=(3.6 * len(predictions), 3.4))
    axes = list(np.atleast_1d(axes))
    if len(axes) != len(predictions):
        raise ValueError(f"Pass one axis per method ({len(predictions)}), got {len(axes)}.")
    times = reference.obs[time_key].to_numpy(dtype=float)
    for ax, (method, prediction) in zip(axes, predictions.items(), strict=True):
        points = ax.scatter(*background.T, c=times, s=3, cmap="Greys", alpha=0.35, lw=0)
        ax.scatter(*observed.T, s=4, c="black", lw=0, label="observed")
        ax.scatter(
            *pca.transform(dense(prediction.X)).T,
            s=4,
            c="tab:red",
            lw=0,
            alpha=0.6,
            label="predicted",
        )
        target = prediction.obs[time_key].iloc[0] if time_key in prediction.obs else "?"
        ax.set_title(f"{method}, {time_key} {target}", fontsize=9)
        ax.set_xlabel("PC1")
        ax.set_ylabel("PC2")
        ax.set_xticks([])
        ax.set_yticks([])
    axes[-1].legend(fontsize=7, frameon=False, markerscale=3)
    plt.colorbar(points, ax=axes[-1], label=f"training {time_key}", shrink=0.7)
    return axes


def fate_proportions(scores: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """Stacked bars of fate fractions per method, observed cells (and their annotation) first.

    Parameters
    ----------
    scores
        Output of :func:`scjepa.tl.evaluate_time` with ``labels_key`` (columns
        ``fraction_<label>``).
    ax
        Axis to draw on.

    Returns
    -------
    The axis.
    """
    columns = [c for c in scores.columns if str(c).startswith("fraction_")]
    if not columns:
        raise KeyError("`scores` has no fraction columns; evaluate with `labels_key=`.")
    first = [r for r in ("annotated", "observed") if r in scores.index]
    rows = [*first, *[r for r in scores.index if r not in (*first, "observed_halves")]]
    table = scores.loc[rows, columns].fillna(0.0)
    if ax is None:
        _, ax = plt.subplots(figsize=(1.2 + 1.0 * len(rows), 3.4))
    bottom = np.zeros(len(rows))
    for column in columns:
        ax.bar(
            np.arange(len(rows)),
            table[column],
            bottom=bottom,
            label=column.removeprefix("fraction_"),
        )
        bottom += table[column].to_numpy()
    ax.set_xticks(np.arange(len(rows)))
    ax.set_xticklabels([r.replace("_", " ") for r in rows], fontsize=8, rotation=20)
    ax.set_ylabel("fraction of cells")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7, frameon=False, bbox_to_anchor=(1, 1), loc="upper left")
    return ax
