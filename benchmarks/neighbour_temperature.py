"""How sharp should the neighbour weights of genes never perturbed in training be?

A gene never perturbed in training is embedded as a softmax-weighted mean of the perturbed genes'
embeddings, with a temperature ``τ`` learned by leave-one-out on the perturbed genes (see
:class:`scjepa.module.PerturbationEncoder`). This script trains BioJEPA on the split of
``perturbation.py`` and, with the trained model fixed, sets ``τ`` to each value of a grid (plus the
learned one) and scores:

* the held-out splits that contain unseen genes (unseen single genes, combinations with one
  unseen member, the held-out cell type), as in ``perturbation.py``;
* a leave-one-out in expression: each perturbed single gene in turn is treated as unseen and its
  training perturbations (alone and in combinations) are predicted from the training controls and
  compared with their measured mean change (top-20 genes by measured change, the targets left
  out, whose change the direct effects set).

A large ``τ`` gives every perturbed gene the same weight, the mean-of-perturbations baseline in
embedding space. Models are saved to and loaded from ``--models`` so the grid can be rerun.

Usage: python benchmarks/neighbour_temperature.py [--datasets demo wide] [--seeds 0 1 2 3 4]
[--models DIR]
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
from perturbation import (
    EPOCHS,
    HEADLINE,
    HELD_OUT_CELL_TYPE,
    diagnostic_scores,
    held_out_groups,
    split_data,
    trained_model,
    write_diagnostic,
)

import scjepa
from scjepa.data._matrix import dense

TEMPERATURES = [0.03, 0.06, 0.1, 0.2, 0.3, 0.5, 1.0, 3.0, 100.0]
LEARNED = "learned"
SPLITS = ["unseen_single", "combo_one_unseen", "unseen_cell_type"]


def top_change_scores(predicted: np.ndarray, measured: np.ndarray, targets: np.ndarray) -> dict:
    """Top-20 MSE and Pearson of mean changes on the 20 genes that change most, targets left out."""
    top = np.argsort(-np.abs(np.where(targets, 0.0, measured)))[:20]
    return {
        "mse_top20": float(np.mean((predicted[top] - measured[top]) ** 2)),
        "pearson_delta_top20": float(np.corrcoef(predicted[top], measured[top])[0, 1]),
    }


def leave_one_out(model: scjepa.BioJEPA, train, seed: int) -> pd.DataFrame:
    """Each perturbed single gene predicted as if unseen, at the temperature currently set."""
    encoder = model.module.perturbation_encoder
    labels = train.obs.perturbation.astype(str).to_numpy()
    expression = dense(train.X)
    in_seen_types = train.obs.cell_type.astype(str).to_numpy() != HELD_OUT_CELL_TYPE
    controls = np.flatnonzero((labels == "control") & in_seen_types)
    rng = np.random.default_rng(seed)
    source = train[np.sort(rng.choice(controls, size=min(400, len(controls)), replace=False))]
    source_mean = dense(source.X).mean(axis=0)
    control_mean = expression[controls].mean(axis=0)
    genes = np.asarray(train.var_names)
    singles = sorted({label for label in labels if label != "control" and "+" not in label})
    rows = []
    for gene in singles:
        entity = int(model._members([gene])[0][0])
        these = [gene] + sorted({label for label in labels if gene in label.split("+")} - {gene})
        encoder.seen[entity] = False
        try:
            prediction = model.predict_perturbation(these, adata=source)
        finally:
            encoder.seen[entity] = True
        predicted = dense(prediction.X)
        predicted_labels = prediction.obs.perturbation.astype(str).to_numpy()
        for label in these:
            scores = top_change_scores(
                predicted[predicted_labels == label].mean(axis=0) - source_mean,
                expression[labels == label].mean(axis=0) - control_mean,
                np.isin(genes, label.split("+")),
            )
            kind = "loo_single" if label == gene else "loo_combination"
            rows.append({"split": kind, "perturbation": label, **scores})
    return pd.DataFrame(rows)


def run_one(name: str, seed: int, models: str) -> pd.DataFrame:
    train, test, sources = split_data(name, seed)
    model = trained_model(name, seed, train, models)
    encoder = model.module.perturbation_encoder
    learned = encoder.log_temperature.detach().clone()
    print(f"{name} seed {seed}: learned temperature {float(learned.exp()):.3f}", flush=True)
    frames = []
    for temperature in [LEARNED, *TEMPERATURES]:
        with torch.no_grad():
            encoder.log_temperature.copy_(
                learned if temperature == LEARNED else torch.tensor(math.log(temperature))
            )
        for source, real, labels in held_out_groups(test, sources):
            prediction = model.predict_perturbation(labels, adata=source)
            scores, _ = scjepa.tl.evaluate_perturbation(
                {"BioJEPA": prediction}, real, control=source, de=False, seed=seed
            )
            frames.append(scores[scores.split.isin(SPLITS)].assign(temperature=str(temperature)))
        frames.append(leave_one_out(model, train, seed).assign(temperature=str(temperature)))
    with torch.no_grad():
        encoder.log_temperature.copy_(learned)
    return pd.concat(frames, ignore_index=True).assign(dataset=name, seed=seed)


def main() -> None:
    args, scores = diagnostic_scores(run_one, __doc__)
    per_seed = scores.groupby(["dataset", "split", "temperature", "seed"])[HEADLINE].mean()
    means = per_seed.groupby(["dataset", "split", "temperature"]).mean().round(3)
    order = [LEARNED, *map(str, TEMPERATURES)]
    tables = {
        metric: means[metric].unstack(["dataset", "split"]).reindex(order) for metric in HEADLINE
    }
    text = "\n\n".join(f"{metric}\n{table.to_string()}" for metric, table in tables.items())
    columns = ["dataset", "seed", "split", "perturbation", "temperature", *HEADLINE]
    header = f"seeds {args.seeds}, {EPOCHS} epochs; mean over perturbations, then seeds"
    write_diagnostic("neighbour_temperature", args, header, text, scores[columns])


if __name__ == "__main__":
    main()
