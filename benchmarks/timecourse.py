"""Held-out time point benchmark: BioJEPA against nearest time point and OT interpolation.

For each seed, generate :func:`scjepa.datasets.timecourse_demo`; for each interior time point
(interpolation) and the last one (extrapolation), hold its cells out, train BioJEPA on the other
time points, predict the held-out time with ``predict_time`` from the cells of the two training
time points OT interpolation couples (the two neighbours; the last two when extrapolating), whose
predictions ``predict_time`` pools; for reference also without pooling and from one time point
(the earlier neighbour; the last time point), and pooled with ``expression="transport"``. Fit
the baselines on the same cells, and score with :func:`scjepa.tl.evaluate_time` (Wasserstein-1
and energy distance in a PCA of the training cells, fate proportions by label transfer, and the
noise floor of two halves of the real cells).
Prints one table (held-out time x method, mean ± sd over seeds), a bar check, and writes both
with the raw scores to ``--out``.

Usage: python benchmarks/timecourse.py [--seeds 0 1 2 3 4 5 6] [--epochs 150] [--held-out 3 6]
       python benchmarks/timecourse.py --held-out 1 2 --name timecourse_half_day \
           --data-kwargs '{"n_time_points": 13, "sampling_interval": 0.5, "n_cells_per_time": 200}'
       python benchmarks/timecourse.py --merge a/timecourse_scores.csv b/timecourse_scores.csv
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import pandas as pd
import scvi
from _report import report, verdict

import scjepa

METRICS = ["wasserstein", "energy_distance", "fate_error", "fate_error_annotated"]
# rows of evaluate_time with fractions only
FRACTION_ROWS = ("observed", "annotated")


def run_one(
    seed: int, held_out: float, epochs: int, model_kwargs: dict, data_kwargs: dict | None = None
) -> pd.DataFrame:
    scvi.settings.seed = seed
    adata = scjepa.datasets.timecourse_demo(seed=seed, **(data_kwargs or {}))
    train = adata[adata.obs.time != held_out].copy()
    real = adata[adata.obs.time == held_out].copy()
    times = np.unique(train.obs.time)
    kind = "extrapolation" if held_out > times.max() else "interpolation"
    # the two time points OT interpolation also couples: the neighbours, or the last two
    if kind == "interpolation":
        neighbours = [times[times < held_out].max(), times[times > held_out].min()]
    else:
        neighbours = list(times[-2:])

    scjepa.BioJEPA.setup_anndata(train, layer="counts", time_key="time", batch_key="batch")
    model = scjepa.BioJEPA(train, **model_kwargs)
    start = time.time()
    model.train(max_epochs=epochs, enable_progress_bar=False)
    train_seconds = time.time() - start
    source = train[train.obs.time.isin(neighbours)].copy()
    single = train[train.obs.time == neighbours[0 if kind == "interpolation" else -1]].copy()
    predictions = {
        "BioJEPA": model.predict_time(held_out, adata=source),
        # without pooling, and from one time point only (the earlier neighbour, or the last)
        "BioJEPA unpooled": model.predict_time(held_out, adata=source, consensus=False),
        "BioJEPA one time point": model.predict_time(held_out, adata=single),
        # counts moved by per-gene transport instead of a shift of log-expression
        "BioJEPA transport": model.predict_time(
            held_out, adata=source, expression="transport", seed=seed
        ),
        "nearest_time": scjepa.baselines.NearestTimeBaseline().fit(train).predict_time(held_out),
        "ot_interpolation": scjepa.baselines.OTInterpolationBaseline()
        .fit(train, seed=seed)
        .predict_time(held_out, seed=seed),
    }
    scores = scjepa.tl.evaluate_time(predictions, real, train, labels_key="fate", seed=seed)
    scores = scores.rename_axis("method").reset_index()
    scores["seed"], scores["held_out"], scores["kind"] = seed, held_out, kind
    scores["train_seconds"] = train_seconds
    print(
        f"seed {seed}, held-out time {held_out:g} ({kind}): trained in {train_seconds:.0f} s; "
        + ", ".join(
            f"{r.method} W1 {r.wasserstein:.3f}"
            for r in scores.itertuples()
            if r.method not in FRACTION_ROWS
        ),
        flush=True,
    )
    return scores


def summarise(scores: pd.DataFrame) -> pd.DataFrame:
    """Mean ± sd over seeds per held-out time and method."""
    scored = scores[~scores.method.isin(FRACTION_ROWS)]
    grouped = scored.groupby(["held_out", "kind", "method"])[METRICS]
    return grouped.mean().round(3).astype(str) + " ± " + grouped.std().round(3).astype(str)


def bar_check(scores: pd.DataFrame) -> pd.DataFrame:
    """BioJEPA against each baseline per held-out time, on the distances and fate errors.

    Two verdicts per baseline: against the larger seed-to-seed sd of the two methods' scores,
    and paired (``_paired``): against the sd over seeds of BioJEPA's score minus the
    baseline's, which removes what both share from the generated data set of each seed.
    """
    rows = []
    for (held_out, kind), block in scores.groupby(["held_out", "kind"]):
        by_seed = block.pivot_table(index="seed", columns="method", values=METRICS)
        means, sds = by_seed.mean(), by_seed.std().fillna(0.0)
        for metric in ["wasserstein", "energy_distance"]:
            ours = means[metric, "BioJEPA"]
            row = {"held_out": held_out, "kind": kind, "metric": metric, "BioJEPA": round(ours, 3)}
            for baseline in ["nearest_time", "ot_interpolation"]:
                theirs = means[metric, baseline]
                row[baseline] = round(theirs, 3)
                spread = max(sds[metric, "BioJEPA"], sds[metric, baseline])
                # lower is better
                row[f"vs_{baseline}"] = verdict(theirs - ours, spread)
                difference = by_seed[metric, "BioJEPA"] - by_seed[metric, baseline]
                row[f"vs_{baseline}_paired"] = verdict(theirs - ours, difference.std())
            row["noise_floor"] = round(means[metric, "observed_halves"], 3)
            rows.append(row)
        for metric in ["fate_error", "fate_error_annotated"]:
            row = {"held_out": held_out, "kind": kind, "metric": metric}
            for method in ["BioJEPA", "nearest_time", "ot_interpolation"]:
                row[method] = round(means[metric, method], 3)
            row["noise_floor"] = round(means[metric, "observed_halves"], 3)
            rows.append(row)
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4, 5, 6])
    parser.add_argument("--held-out", type=float, nargs="+", default=[1, 2, 3, 4, 5, 6])
    parser.add_argument("--epochs", type=int, default=150)
    parser.add_argument("--model-kwargs", default="{}", help="JSON of BioJEPA arguments")
    parser.add_argument(
        "--data-kwargs", default="{}", help="JSON of timecourse_demo arguments (not the seed)"
    )
    parser.add_argument("--name", default="timecourse", help="stem of the files written")
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument(
        "--merge", nargs="+", help="summarise score files of earlier runs instead of running"
    )
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)

    if args.merge:
        scores = pd.concat([pd.read_csv(path) for path in args.merge], ignore_index=True)
    else:
        scores = pd.concat(
            [
                run_one(
                    seed,
                    held_out,
                    args.epochs,
                    json.loads(args.model_kwargs),
                    json.loads(args.data_kwargs),
                )
                for seed in args.seeds
                for held_out in args.held_out
            ],
            ignore_index=True,
        )
    table = summarise(scores)
    check = bar_check(scores)
    report(
        args.name,
        table,
        check,
        scores,
        args.out,
        # the seeds scored, also when merged from earlier runs
        f"seeds {sorted(int(s) for s in scores['seed'].unique())}, {args.epochs} epochs, "
        f"model {args.model_kwargs}, data {args.data_kwargs}",
    )


if __name__ == "__main__":
    main()
