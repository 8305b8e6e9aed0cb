"""Score predicted perturbation responses against observed cells, for any number of methods."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from anndata import AnnData

from scjepa.metrics._de import de_genes, de_overlap
from scjepa.metrics._delta import (
    direction_agreement,
    discrimination_score,
    mae,
    mae_delta,
    mse,
    mse_delta,
    pearson_delta,
)
from scjepa.metrics._distribution import energy_distance, mmd
from scjepa.metrics._expression import (
    labelled_means,
    log_normalized_matrix,
    mean_profile,
    perturbation_means,
)
from scjepa.tl._shared import as_prediction_mapping, check_prediction, dense, shared_pca


def evaluate_perturbation(
    predicted: AnnData | Mapping[str, AnnData],
    real: AnnData,
    control: AnnData | None = None,
    *,
    perturbation_key: str = "perturbation",
    control_value: str = "control",
    layer: str | None = "counts",
    split_key: str | None = "split",
    top_k: int = 20,
    de: bool = True,
    distribution: bool = True,
    n_pcs: int = 30,
    fdr: float = 0.05,
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Score predicted perturbations against the observed cells, per perturbation and per split.

    Every score is computed on log-normalised expression (observed counts go through
    ``normalize_total`` + ``log1p``; predictions of scjepa models and baselines already are).
    Per perturbation and method:

    * ``pearson_delta``, ``pearson_delta_top{k}``: correlation of predicted and observed mean
      change from control on all genes / the ``k`` most changed genes
      (:func:`scjepa.metrics.pearson_delta`);
    * ``pearson_delta_systema``: the same against the mean of all observed perturbed cells;
    * ``mse``, ``mae``: error of the mean profile over all genes; ``mse_top{k}``, ``mae_top{k}``
      on the ``k`` most changed genes;
    * ``direction_top{k}``: fraction of those genes changed in the right direction;
    * ``discrimination``: how closely the prediction points to its own perturbation among all
      observed ones (1 best, 0.5 chance);
    * ``de_overlap_top{k}`` (with ``de``): overlap of predicted and observed Wilcoxon DE genes;
    * ``energy_distance``, ``mmd`` (with ``distribution``): distance between predicted and observed
      cells in a PCA fitted on the observed and control cells (never a model's own space).

    Parameters
    ----------
    predicted
        Predictions (AnnData as returned by ``predict_perturbation`` of a model or baseline), or a
        mapping from method name to predictions.
    real
        Observed cells of the evaluated perturbations, with raw counts in ``layer``.
    control
        Control cells (the reference of every change); by default the control cells in ``real``.
    perturbation_key
        ``obs`` column of perturbation labels in ``real`` (and in the predictions, which also
        always carry ``"perturbation"``).
    control_value
        Label of control cells.
    layer
        Layer of raw counts in ``real`` and ``control``; ``None`` if their ``X`` is log-normalised.
    split_key
        Optional ``obs`` column of ``real`` naming each perturbation's split (as written by
        :func:`scjepa.data.split_perturbations`); the summary is per split.
    top_k
        Number of most changed genes for the top-k scores.
    de
        Whether to compute the DE overlap (a Wilcoxon test per perturbation and method).
    distribution
        Whether to compute energy distance and MMD.
    n_pcs
        Dimension of the shared PCA of the distribution scores.
    fdr
        Adjusted p-value threshold of DE genes.
    seed
        Seed of the subsampling in the PCA fit and the distribution scores.

    Returns
    -------
    ``scores``: one row per (method, perturbation) with ``split``, ``n_cells`` and every score;
    ``summary``: the mean of every score per (split, method), and ``n_perturbations``, the
    number of perturbations each mean is over; compare methods on the same perturbations.
    """
    predictions = as_prediction_mapping(predicted)
    if perturbation_key not in real.obs:
        raise KeyError(f"Perturbation column {perturbation_key!r} not found in `real.obs`.")
    real_labels = real.obs[perturbation_key].astype(str).to_numpy()
    if control is None:
        if not (real_labels == control_value).any():
            raise ValueError(
                f"No control cells labelled {control_value!r} in `real`; pass `control=`."
            )
        control = real[real_labels == control_value]
    if control.n_obs == 0:
        raise ValueError("`control` holds no cells.")
    if not np.array_equal(np.asarray(control.var_names), np.asarray(real.var_names)):
        raise ValueError("`control` and `real` must have the same genes.")
    perturbed = real[real_labels != control_value]
    perturbed_labels = real_labels[real_labels != control_value]
    if perturbed.n_obs == 0:
        raise ValueError("`real` holds no perturbed cells to evaluate against.")

    control_matrix = log_normalized_matrix(control, layer)
    control_mean = mean_profile(control_matrix)
    observed_matrix = log_normalized_matrix(perturbed, layer)
    observed = labelled_means(observed_matrix, perturbed_labels, real.var_names)
    observed_deltas = observed.to_numpy() - control_mean
    perturbed_centroid = observed.to_numpy().mean(axis=0)
    split_of = _split_of(perturbed, perturbation_key, split_key)
    rows_of = {label: np.flatnonzero(perturbed_labels == label) for label in observed.index}

    pca = shared_pca([control_matrix, observed_matrix], n_pcs, seed) if distribution else None
    observed_de = (
        {
            label: de_genes(observed_matrix[rows], control_matrix, real.var_names, fdr).index
            for label, rows in rows_of.items()
        }
        if de
        else {}
    )

    records = []
    for method, prediction in predictions.items():
        check_prediction(method, prediction, real)
        column = perturbation_key if perturbation_key in prediction.obs else "perturbation"
        predicted_means = perturbation_means(prediction, column, None)
        labels = [label for label in predicted_means.index if label in observed.index]
        if not labels:
            raise ValueError(
                f"None of the perturbations predicted by {method!r} were observed in `real`."
            )
        predicted_labels = prediction.obs[column].astype(str).to_numpy()
        predicted_deltas = predicted_means.loc[labels].to_numpy() - control_mean
        discrimination = discrimination_score(
            predicted_deltas, observed_deltas, observed.index.get_indexer(labels)
        )
        for i, label in enumerate(labels):
            mean_hat = predicted_means.loc[label].to_numpy()
            mean_obs = observed.loc[label].to_numpy()
            record = {
                "method": method,
                "perturbation": label,
                "split": split_of.get(label, "all"),
                "n_cells": len(rows_of[label]),
                "pearson_delta": pearson_delta(mean_hat, mean_obs, control_mean),
                f"pearson_delta_top{top_k}": pearson_delta(mean_hat, mean_obs, control_mean, top_k),
                "pearson_delta_systema": pearson_delta(mean_hat, mean_obs, perturbed_centroid),
                "mse": mse(mean_hat, mean_obs),
                "mae": mae(mean_hat, mean_obs),
                f"mse_top{top_k}": mse_delta(mean_hat, mean_obs, control_mean, top_k),
                f"mae_top{top_k}": mae_delta(mean_hat, mean_obs, control_mean, top_k),
                f"direction_top{top_k}": direction_agreement(
                    mean_hat, mean_obs, control_mean, top_k
                ),
                "discrimination": float(discrimination[i]),
            }
            cells = prediction.X[predicted_labels == label]
            if de:
                predicted_de = de_genes(cells, control_matrix, real.var_names, fdr).index
                record[f"de_overlap_top{top_k}"] = de_overlap(
                    predicted_de, observed_de[label], top_k
                )
            if pca is not None:
                ours = pca.transform(dense(cells))
                theirs = pca.transform(dense(observed_matrix[rows_of[label]]))
                if len(theirs) >= 2 and len(ours) >= 2:
                    record["energy_distance"] = energy_distance(ours, theirs, seed)
                    record["mmd"] = mmd(ours, theirs, seed=seed)
            records.append(record)
    scores = pd.DataFrame.from_records(records)
    groups = scores.drop(columns="perturbation").groupby(["split", "method"], sort=True)
    # methods may cover different perturbations (the additive one needs measured members)
    summary = groups.mean().assign(n_perturbations=groups.size())
    return scores, summary


def _split_of(perturbed: AnnData, perturbation_key: str, split_key: str | None) -> dict:
    if split_key is None or split_key not in perturbed.obs:
        return {}
    table = perturbed.obs[[perturbation_key, split_key]].astype(str)
    return table.groupby(perturbation_key, sort=False)[split_key].first().to_dict()
