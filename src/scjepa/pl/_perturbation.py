"""Plots of predicted perturbation responses."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from anndata import AnnData
from matplotlib.axes import Axes

from scjepa.metrics._delta import pearson_delta, top_changed_genes
from scjepa.metrics._expression import log_normalized_matrix, mean_profile, perturbation_means
from scjepa.tl._shared import as_prediction_mapping


def perturbation_scatter(
    predicted: AnnData | Mapping[str, AnnData],
    real: AnnData,
    perturbation: str,
    control: AnnData | None = None,
    *,
    perturbation_key: str = "perturbation",
    control_value: str = "control",
    layer: str | None = "counts",
    top_k: int = 20,
    n_labels: int = 8,
    axes: Sequence[Axes] | None = None,
) -> list[Axes]:
    """Predicted against observed change of every gene under one perturbation.

    One panel per method: each point is a gene, at its observed (x) and predicted (y) change of
    mean log-normalised expression from control; the ``top_k`` most changed genes are highlighted
    and the ``n_labels`` largest named. The title gives the Pearson delta on all genes and on the
    top genes.

    Parameters
    ----------
    predicted
        Predictions (``predict_perturbation`` output) or a mapping from method name to them.
    real
        Observed cells, raw counts in ``layer``.
    perturbation
        The perturbation to show.
    control
        Control cells; by default those in ``real``.
    perturbation_key, control_value, layer
        As in :func:`scjepa.tl.evaluate_perturbation`.
    top_k
        Number of most changed genes to highlight.
    n_labels
        Number of genes to name.
    axes
        Axes to draw on, one per method; new ones otherwise.

    Returns
    -------
    The axes, one per method.
    """
    predictions = as_prediction_mapping(predicted)
    labels = real.obs[perturbation_key].astype(str)
    if perturbation not in set(labels):
        raise ValueError(f"Perturbation {perturbation!r} has no observed cells in `real`.")
    if control is None:
        control = real[labels == control_value]
    if control.n_obs == 0:
        raise ValueError(f"No control cells labelled {control_value!r}; pass `control=`.")
    control_mean = mean_profile(log_normalized_matrix(control, layer))
    observed = perturbation_means(real[labels == perturbation], perturbation_key, layer)
    observed_delta = observed.iloc[0].to_numpy() - control_mean
    top = top_changed_genes(observed_delta, top_k)
    named = top[:n_labels]

    if axes is None:
        fig, axes = plt.subplots(
            1, len(predictions), figsize=(4.2 * len(predictions), 4), squeeze=False
        )
        axes = list(axes[0])
    if len(axes) != len(predictions):
        raise ValueError(f"Pass one axis per method ({len(predictions)}), got {len(axes)}.")
    for ax, (method, prediction) in zip(axes, predictions.items(), strict=True):
        column = perturbation_key if perturbation_key in prediction.obs else "perturbation"
        means = perturbation_means(prediction, column, None)
        if perturbation not in means.index:
            raise ValueError(f"{method!r} did not predict {perturbation!r}.")
        predicted_delta = means.loc[perturbation].to_numpy() - control_mean
        ax.scatter(observed_delta, predicted_delta, s=5, color="0.65", label="all genes")
        ax.scatter(
            observed_delta[top], predicted_delta[top], s=14, color="C3", label=f"top {top_k}"
        )
        for gene in named:
            ax.annotate(
                str(real.var_names[gene]),
                (observed_delta[gene], predicted_delta[gene]),
                fontsize=7,
                xytext=(2, 2),
                textcoords="offset points",
            )
        limit = float(np.abs(np.concatenate([observed_delta, predicted_delta])).max()) * 1.05
        ax.plot([-limit, limit], [-limit, limit], color="0.3", lw=0.7, ls="--")
        ax.axhline(0, color="0.85", lw=0.6)
        ax.axvline(0, color="0.85", lw=0.6)
        r_all = pearson_delta(means.loc[perturbation], observed.iloc[0], control_mean)
        r_top = pearson_delta(means.loc[perturbation], observed.iloc[0], control_mean, top_k)
        ax.set_title(f"{method}: {perturbation}\nr = {r_all:.2f} (top {top_k}: {r_top:.2f})")
        ax.set_xlabel("observed change from control")
        ax.set_ylabel("predicted change from control")
        ax.legend(loc="upper left", fontsize=7, frameon=False)
    return list(axes)


def metric_bars(
    scores: pd.DataFrame,
    metric: str = "pearson_delta_top20",
    *,
    methods: Sequence[str] | None = None,
    ax: Axes | None = None,
) -> Axes:
    """Bars of one metric per split, the model next to every baseline.

    Parameters
    ----------
    scores
        Per-perturbation scores from :func:`scjepa.tl.evaluate_perturbation` (columns ``split``,
        ``method`` and the metric). Bars show the mean per split and method, error bars the
        standard error over perturbations.
    metric
        Column to show.
    methods
        Methods in drawing order; by default ``BioJEPA`` first, then the others alphabetically.
    ax
        Axis to draw on.

    Returns
    -------
    The axis.
    """
    missing = {"split", "method", metric} - set(scores.columns)
    if missing:
        raise KeyError(f"`scores` lacks the columns {sorted(missing)}.")
    grouped = scores.groupby(["split", "method"])[metric]
    mean = grouped.mean().unstack("method")
    error = (grouped.std() / np.sqrt(grouped.count())).unstack("method")
    if methods is None:
        present = list(mean.columns)
        methods = [m for m in present if m == "BioJEPA"] + sorted(
            m for m in present if m != "BioJEPA"
        )
    if ax is None:
        _, ax = plt.subplots(figsize=(1.2 + 1.6 * len(mean.index), 3.6))
    width = 0.8 / len(methods)
    positions = np.arange(len(mean.index))
    for i, method in enumerate(methods):
        ax.bar(
            positions + (i - (len(methods) - 1) / 2) * width,
            mean[method].to_numpy(),
            width,
            yerr=error[method].to_numpy(),
            label=method,
            capsize=2,
        )
    ax.set_xticks(positions)
    ax.set_xticklabels([str(s).replace("_", " ") for s in mean.index], fontsize=8)
    ax.set_ylabel(metric.replace("_", " "))
    ax.axhline(0, color="0.3", lw=0.6)
    ax.legend(fontsize=7, frameon=False, ncols=min(len(methods), 3))
    return ax
