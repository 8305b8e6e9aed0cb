"""How much of its own predicted change a cell type never perturbed in training should keep.

``perturbation.py`` holds out every perturbed cell of one cell type; BioJEPA then predicts the
perturbations there from that type's control cells, a context in which the predictor never saw a
perturbation act. ``predict_perturbation(new_cell_type_weight=w)`` keeps a share ``w`` of each
such cell's own predicted change and takes the rest from the mean change the model predicts for
the training controls of the perturbed cell types (partial pooling, see
:mod:`scjepa.model._cell_type_pooling`). This script takes the models of ``perturbation.py``
(trained once and kept under ``--models``), predicts the held-out cell type at several ``w``, and
compares each with the additive baseline (the perturbation's measured change in the other cell
types) on the perturbations both predict: mean ± sd over seeds, and the paired margin.

Usage: python benchmarks/cell_type_pooling.py [--datasets demo wide] [--seeds 0 1 2 3 4]
"""

from __future__ import annotations

import pandas as pd
from perturbation import (
    HEADLINE,
    diagnostic_scores,
    held_out_groups,
    paired_margin,
    split_data,
    trained_model,
    write_diagnostic,
)

import scjepa

WEIGHTS = [1.0, 0.75, 0.5, 0.25, 0.0]


def run_one(name: str, seed: int, models: str) -> pd.DataFrame:
    train, test, sources = split_data(name, seed)
    model = trained_model(name, seed, train, models)
    source, real, labels = list(held_out_groups(test, sources))[1]  # the held-out cell type
    additive = scjepa.baselines.AdditiveBaseline(labels_key="cell_type").fit(train)
    singles = {m[0] for m in additive.members_.values() if len(m) == 1}
    labels = [label for label in labels if set(label.split("+")) <= singles]
    real = real[real.obs.perturbation.isin(labels)]
    predictions = {"additive": additive.predict_perturbation(labels, source)}
    for weight in WEIGHTS:
        predictions[f"BioJEPA, w = {weight:g}"] = model.predict_perturbation(
            labels, adata=source, new_cell_type_weight=weight
        )
    scores, _ = scjepa.tl.evaluate_perturbation(
        predictions, real, control=source, de=False, seed=seed
    )
    return scores.assign(dataset=name, seed=seed)


def against_additive(per_seed: pd.DataFrame) -> pd.DataFrame:
    """Per data set, weight and headline metric: margin over the additive baseline (positive =
    BioJEPA better), its sd over seeds and the seeds won."""
    rows = []
    for (dataset, method), block in per_seed.groupby(["dataset", "method"]):
        if method == "additive":
            continue
        additive = per_seed.loc[(dataset, "additive")]
        for metric in HEADLINE:
            margin, paired_sd, won = paired_margin(
                block.loc[(dataset, method)][metric], additive[metric], metric
            )
            rows.append(
                {
                    "dataset": dataset,
                    "method": method,
                    "metric": metric,
                    "margin": round(margin, 3),
                    "paired sd": round(paired_sd, 3),
                    "seeds won": won,
                }
            )
    return pd.DataFrame(rows)


def main() -> None:
    args, scores = diagnostic_scores(run_one, __doc__)
    per_seed = scores.groupby(["dataset", "method", "seed"])[HEADLINE].mean()
    grouped = per_seed.groupby(["dataset", "method"])
    table = grouped.mean().round(3).astype(str) + " ± " + grouped.std().round(3).astype(str)
    text = f"mean ± sd over seeds\n{table.to_string()}\n\nagainst the additive baseline\n"
    text += against_additive(per_seed).to_string(index=False)
    columns = ["dataset", "seed", "perturbation", "method", *HEADLINE]
    header = f"held-out cell type, seeds {args.seeds}"
    write_diagnostic("cell_type_pooling", args, header, text, scores[columns])


if __name__ == "__main__":
    main()
