"""How much of its own predicted change a gene never perturbed in training should keep.

BioJEPA embeds a gene never perturbed in training from the perturbed genes it resembles, and
``predict_perturbation(new_gene_weight=w)`` keeps a share ``w`` of the change of expression
predicted for a perturbation with a member never perturbed alone, taking the rest from the sum
over its members of the change measured for each alone, or the mean change measured over the
training perturbations for a member never measured alone (partial pooling, see
:mod:`scjepa.model._new_gene_pooling`). This script takes the models of ``perturbation.py``
(trained once and kept under ``--models``), predicts the held-out perturbations with such a
member (unseen single genes, and combinations with an unseen member) at several ``w``, and
compares each with the mean-of-perturbations baseline: mean ± sd over seeds, and the paired
margin.

Usage: python benchmarks/gene_pooling.py [--datasets demo wide] [--seeds 0 1 2 3 4]
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
    train, model, source, real, labels = kept_model_and_group(name, seed, models, "seen_cell_types")
    measured = measured_alone(train)
    labels = [label for label in labels if not set(label.split("+")) <= measured]
    mean = scjepa.baselines.MeanPerturbationBaseline(labels_key="cell_type").fit(train)
    scores = pooling_sweep(model, "new_gene_weight", labels, source, real, mean, seed)
    return scores.assign(dataset=name, seed=seed)


def main() -> None:
    args, scores = diagnostic_scores(run_one, __doc__)
    text = weights_against_baseline(scores, "mean_perturbation", ["dataset", "split"])
    columns = ["dataset", "seed", "split", "perturbation", "method", *HEADLINE]
    header = f"perturbations with a member never perturbed alone, seeds {args.seeds}"
    write_diagnostic("gene_pooling", args, header, text, scores[columns])


if __name__ == "__main__":
    main()
