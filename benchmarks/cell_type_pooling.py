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

from perturbation import pooling_diagnostic

import scjepa


def main() -> None:
    pooling_diagnostic(
        "cell_type_pooling",
        __doc__,
        what="held-out cell type",
        keys=["dataset"],
        source_name="held_out_cell_type",
        argument="new_cell_type_weight",
        keep=lambda members, measured: members <= measured,
        baseline_class=scjepa.baselines.AdditiveBaseline,
    )


if __name__ == "__main__":
    main()
