"""How much of its own predicted change a gene never perturbed in training should keep.

BioJEPA embeds a gene never perturbed in training from the perturbed genes it resembles, and
``predict_perturbation(new_gene_weight=w)`` keeps a share ``w`` of the change of expression
predicted for a perturbation with a member never perturbed alone, taking the rest from the sum
over its members of the change measured for each alone, or the mean change measured over the
training perturbations for a member never measured alone (partial pooling, see
:mod:`scjepa.model._measured_pooling`). This script takes the models of ``perturbation.py``
(trained once and kept under ``--models``), predicts the held-out perturbations with such a
member (unseen single genes, and combinations with an unseen member) at several ``w``, and
compares each with the mean-of-perturbations baseline: mean ± sd over seeds, and the paired
margin.

Usage: python benchmarks/gene_pooling.py [--datasets demo wide] [--seeds 0 1 2 3 4]
"""

from __future__ import annotations

from perturbation import pooling_diagnostic

import scjepa


def main() -> None:
    pooling_diagnostic(
        "gene_pooling",
        __doc__,
        what="perturbations with a member never perturbed alone",
        keys=["dataset", "split"],
        source_name="seen_cell_types",
        argument="new_gene_weight",
        keep=lambda members, measured: not members <= measured,
        baseline_class=scjepa.baselines.MeanPerturbationBaseline,
    )


if __name__ == "__main__":
    main()
