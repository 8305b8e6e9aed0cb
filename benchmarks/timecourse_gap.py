"""What the training time points say about the cells of a held-out time point (no model).

For each seed of :func:`scjepa.datasets.timecourse_demo`, sampled daily and half-daily, and for
each held-out time: the committed share (cells past the branch point) of the held-out cells and
of its two neighbouring time points, which any pace of development that rises through the
sampled times leaves open between them; the share that interpolating the neighbours' shares
gives; the share that a constant pace in the generator's hidden progress gives (the neighbours'
mean progress interpolated, the held-out day's spread of progress kept); and how many training
cells lie where the held-out cells are, within their inter-quartile range of hidden progress,
against the number of held-out cells there. Hidden progress is the generator's truth: this
measures the data, and is not a method.

Prints one table (mean over seeds) and writes it with the per-seed rows to ``--out``.

Usage: python benchmarks/timecourse_gap.py [--seeds 0 1 2 3 4 5 6] [--held-out 1 2]
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import pandas as pd
from _report import write_results
from scipy.stats import norm

import scjepa

SAMPLINGS = {
    "daily": {},
    "half-daily": {"n_time_points": 13, "sampling_interval": 0.5, "n_cells_per_time": 200},
}


def gap_row(seed: int, sampling: str, held_out: float) -> dict:
    adata = scjepa.datasets.timecourse_demo(seed=seed, **SAMPLINGS[sampling])
    obs = adata.obs
    branch_point = adata.uns["timecourse_demo"]["branch_point"]
    times = np.unique(obs.time)
    before, after = times[times < held_out].max(), times[times > held_out].min()
    committed = (obs.fate != "progenitor").groupby(obs.time, observed=True).mean()
    progress = obs.progress.groupby(obs.time, observed=True)

    def interpolated(per_time: pd.Series) -> float:
        return np.interp(held_out, [before, after], [per_time[before], per_time[after]])

    # a constant pace in hidden progress across the gap, with the held-out day's own spread
    paced = 1 - norm.cdf(branch_point, interpolated(progress.mean()), progress.std()[held_out])
    low, high = np.quantile(obs.progress[obs.time == held_out], [0.25, 0.75])
    inside = obs.progress.between(low, high)
    return {
        "sampling": sampling,
        "seed": seed,
        "held_out": held_out,
        "truth": committed[held_out],
        "earlier": committed[before],
        "later": committed[after],
        "shares_interpolated": interpolated(committed),
        "constant_pace": paced,
        "held_out_cells_in_iqr": int((inside & (obs.time == held_out)).sum()),
        "training_cells_in_iqr": int((inside & (obs.time != held_out)).sum()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4, 5, 6])
    parser.add_argument("--held-out", type=float, nargs="+", default=[1, 2])
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    rows = pd.DataFrame(
        [
            gap_row(seed, sampling, held_out)
            for sampling in SAMPLINGS
            for held_out in args.held_out
            for seed in args.seeds
        ]
    )
    table = rows.drop(columns="seed").groupby(["sampling", "held_out"], sort=False).mean()
    write_results(
        os.path.join(args.out, "timecourse_gap"),
        f"seeds {args.seeds}; committed shares and cell counts, mean over seeds",
        table.round(3).to_string(),
        rows,
    )


if __name__ == "__main__":
    main()
