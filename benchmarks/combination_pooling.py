"""How much of its own predicted change a new combination of measured genes should keep.

``predict_perturbation(new_combination_weight=w)`` keeps a share ``w`` of the change of
expression BioJEPA predicts for a combination never measured in training whose members were
each perturbed alone, and takes the rest from the sum of the members' measured changes, what the
additive baseline predicts (partial pooling, see :mod:`scjepa.model._measured_pooling`). This
script takes the models of ``perturbation.py`` (trained once and kept under ``--models``),
predicts the held-out combinations of seen members at several ``w``, and compares each with the
additive baseline: mean ± sd over seeds, and the paired margin.

Usage: python benchmarks/combination_pooling.py [--datasets demo wide] [--seeds 0 1 2 3 4]
"""

from __future__ import annotations

from perturbation import pooling_diagnostic

import scjepa


def main() -> None:
    pooling_diagnostic(
        "combination_pooling",
        __doc__,
        what="combinations of genes measured alone",
        keys=["dataset", "split"],
        source_name="seen_cell_types",
        argument="new_combination_weight",
        keep=lambda members, measured: len(members) > 1 and members <= measured,
        baseline_class=scjepa.baselines.AdditiveBaseline,
    )


if __name__ == "__main__":
    main()
