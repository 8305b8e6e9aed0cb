"""What the data say about genes never perturbed: BioJEPA against two oracles.

A gene never perturbed in training is known to a model only through its features. For the
held-out perturbations with such a member (unseen single genes, and combinations of a gene
measured alone with one never perturbed) this script scores, next to BioJEPA and the reference
baseline of each split (the mean of the training perturbations for single genes,
``additive_mean`` for combinations):

* ``oracle target``: the reference baseline, with the change of each new member's own gene
  (its knock-down) taken from the held-out cells themselves. No method has this; it is what
  knowing the direct effect exactly adds to the reference.
* ``oracle program``: as ``oracle target``, and the new member's change on the other genes is
  the mean change measured for the training genes of its gene program (``var["program"]`` of
  :func:`scjepa.datasets.perturbseq_demo`, the generator's truth), instead of the mean change
  of all training perturbations. It asks whether knowing which program a new gene regulates
  would predict its effect on the other genes.

Each is compared with the reference baseline: mean ± sd over seeds, and the paired margin
(positive = better), its sd over seeds and the seeds won, the bar's test in
``perturbation.py``. BioJEPA is the default model kept under ``--models`` by ``perturbation.py``
(trained there if missing).

Usage: python benchmarks/new_gene_ceiling.py [--datasets demo wide] [--seeds 0 1 2 3 4]
"""

from __future__ import annotations

import anndata
import numpy as np
import pandas as pd
from perturbation import (
    HEADLINE,
    diagnostic_scores,
    kept_model_and_group,
    measured_alone,
    partly_measured,
    weights_against_baseline,
    write_diagnostic,
)

import scjepa


class HeldOutTargetOracle(scjepa.baselines.AdditiveMeanBaseline):
    """``additive_mean`` (the mean change alone for a single new gene), with each never
    measured member's own gene set to its change in the held-out cells; with ``program``, a
    never measured member contributes the mean change of the training genes of its program.

    Parameters
    ----------
    held_out
        Changes measured on the held-out cells (perturbations x genes).
    program
        Program of every gene, or ``None``.
    """

    def __init__(self, held_out: pd.DataFrame, program: pd.Series | None = None, **kwargs):
        super().__init__(**kwargs)
        self.held_out = held_out
        self.program = program
        self.name = "oracle target" if program is None else "oracle program"

    def delta(self, perturbation: str) -> np.ndarray:
        singles = self._single_labels()
        members = self._parse(perturbation)
        change = np.zeros(len(self.var_names_))
        for member in members:
            if member in singles:
                change += self.deltas_[singles[member]]
            else:
                change += self._new_member_change(member, singles)
        for member in members:
            if member not in singles and member in self.var_names_:
                column = self.var_names_.get_loc(member)
                change[column] = self.held_out.loc[perturbation].iloc[column]
        return change

    def _new_member_change(self, member: str, singles: dict[str, str]) -> np.ndarray:
        if self.program is None:
            return self._mean_delta()
        same = [
            self.deltas_[label]
            for gene, label in singles.items()
            if self.program[gene] == self.program[member]
        ]
        return np.mean(same, axis=0) if same else self._mean_delta()


def run_one(name: str, seed: int, models: str) -> pd.DataFrame:
    train, model, source, real, labels = kept_model_and_group(name, seed, models, "seen_cell_types")
    measured = measured_alone(train)
    new_singles = [label for label in labels if "+" not in label and label not in measured]
    new_combinations = partly_measured(labels, measured)
    chosen = new_singles + new_combinations
    real = real[real.obs.perturbation.isin(chosen)]
    held_out = scjepa.metrics.perturbation_deltas(
        anndata.concat([real, source]), "perturbation", "control", "counts", "cell_type"
    )
    oracles = [
        HeldOutTargetOracle(held_out, program=program, labels_key="cell_type").fit(train)
        for program in (None, train.var["program"])
    ]
    mean = scjepa.baselines.MeanPerturbationBaseline(labels_key="cell_type").fit(train)
    additive_mean = scjepa.baselines.AdditiveMeanBaseline(labels_key="cell_type").fit(train)
    predictions = {
        "BioJEPA": model.predict_perturbation(chosen, adata=source),
        mean.name: mean.predict_perturbation(new_singles, source),
        additive_mean.name: additive_mean.predict_perturbation(new_combinations, source),
    }
    for oracle in oracles:
        predictions[oracle.name] = oracle.predict_perturbation(chosen, source)
    scores, _ = scjepa.tl.evaluate_perturbation(
        predictions, real, control=source, de=False, seed=seed
    )
    return scores.assign(dataset=name, seed=seed)


REFERENCE = {"unseen_single": "mean_perturbation", "combo_one_unseen": "additive_mean"}
"""The baseline each split's methods are compared with."""


def main() -> None:
    args, scores = diagnostic_scores(run_one, __doc__)
    texts = []
    for split, baseline in REFERENCE.items():
        in_split = scores[scores.split == split]
        texts.append(f"## {split}\n\n" + weights_against_baseline(in_split, baseline, ["dataset"]))
    columns = ["dataset", "seed", "split", "perturbation", "method", *HEADLINE]
    header = f"perturbations with a member never perturbed alone, seeds {args.seeds}"
    write_diagnostic("new_gene_ceiling", args, header, "\n\n".join(texts), scores[columns])


if __name__ == "__main__":
    main()
