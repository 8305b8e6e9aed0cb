"""How much of its own predicted change a cell type never perturbed in training should keep.

``perturbation.py`` holds out every perturbed cell of one cell type; BioJEPA then predicts the
perturbations there from that type's control cells, a context in which the predictor never saw a
perturbation act. ``predict_perturbation(new_cell_type_weight=w)`` keeps a share ``w`` of each
such cell's own predicted change and takes the rest from the change measured for the same
perturbation in the perturbed cell types (partial pooling, see
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
    kept_model_and_group,
    measured_alone,
    pooling_sweep,
    weights_against_baseline,
    write_diagnostic,
)

import scjepa


def run_one(name: str, seed: int, models: str) -> pd.DataFrame:
    train, model, source, real, labels = kept_model_and_group(
        name, seed, models, "held_out_cell_type"
    )
    measured = measured_alone(train)
    labels = [label for label in labels if set(label.split("+")) <= measured]
    additive = scjepa.baselines.AdditiveBaseline(labels_key="cell_type").fit(train)
    scores = pooling_sweep(model, "new_cell_type_weight", labels, source, real, additive, seed)
    return scores.assign(dataset=name, seed=seed)


def main() -> None:
    args, scores = diagnostic_scores(run_one, __doc__)
    text = weights_against_baseline(scores, "additive", ["dataset"])
    columns = ["dataset", "seed", "perturbation", "method", *HEADLINE]
    header = f"held-out cell type, seeds {args.seeds}"
    write_diagnostic("cell_type_pooling", args, header, text, scores[columns])


if __name__ == "__main__":
    main()
