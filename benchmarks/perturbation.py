"""Held-out perturbation benchmark: BioJEPA against every baseline, several seeds, two data sets.

For each data set and seed: generate data, split it with
:func:`scjepa.data.split_perturbations` (unseen single genes, combinations with both / one
member seen, one cell type whose perturbed cells are all held out), train BioJEPA on the
training cells, fit the baselines on the same cells, predict every held-out perturbation from
control cells of the matching cell types and score with :func:`scjepa.tl.evaluate_perturbation`.
Prints one table (metric x split x method, mean ± sd over seeds) and writes it with the raw
scores to ``--out``.

Usage: python benchmarks/perturbation.py [--seeds 0 1 ... 14] [--datasets demo wide]
                                         [--epochs 150]
       python benchmarks/perturbation.py --scores benchmarks/results/perturbation_scores.csv
       python benchmarks/perturbation.py --models /tmp/scjepa_benchmark_models   # kept models
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from functools import partial

import pandas as pd
import scvi
from _report import report, write_results
from anndata import AnnData

import scjepa

DATASETS = {
    # the bundled demo
    "demo": {},
    # more genes and programs, fewer cells per perturbation, two cell types
    "wide": {
        "n_cells": 5000,
        "n_genes": 1500,
        "n_programs": 20,
        "n_perturbed_genes": 48,
        "n_combinations": 40,
        "n_cell_types": 2,
        "median_library_size": 2500.0,
    },
}
HELD_OUT_CELL_TYPE = "type_0"
HEADLINE = ["pearson_delta_top20", "mse_top20"]
EPOCHS = 150
"""Training epochs per model: about 1,650 optimiser steps on `demo`, 1,200 on `wide`."""
MODELS = os.path.join(tempfile.gettempdir(), "scjepa_benchmark_models")
"""Where the diagnostic scripts keep the models they train, to rerun without retraining."""
LOWER_IS_BETTER = {"mse", "mae", "mse_top20", "mae_top20", "energy_distance", "mmd"}


def split_data(name: str, seed: int) -> tuple[AnnData, AnnData, dict[str, AnnData]]:
    """Generate data set ``name`` with ``seed`` and split it: training cells, held-out cells and
    the control cells each held-out group is predicted from (its cell types)."""
    adata = scjepa.datasets.perturbseq_demo(seed=seed, **DATASETS[name])
    scjepa.data.split_perturbations(
        adata, seed=seed, held_out_cell_type=HELD_OUT_CELL_TYPE, labels_key="cell_type"
    )
    train = adata[adata.obs.split == "train"].copy()
    test = adata[adata.obs.split != "train"].copy()
    controls = train[train.obs.perturbation == "control"]
    sources = {
        "seen_cell_types": controls[controls.obs.cell_type != HELD_OUT_CELL_TYPE].copy(),
        "held_out_cell_type": controls[controls.obs.cell_type == HELD_OUT_CELL_TYPE].copy(),
    }
    scjepa.BioJEPA.setup_anndata(
        train,
        layer="counts",
        perturbation_key="perturbation",
        batch_key="batch",
        labels_key="cell_type",
    )
    return train, test, sources


def train_biojepa(
    train: AnnData, seed: int, epochs: int | None = EPOCHS, model_kwargs: dict | None = None
) -> tuple[scjepa.BioJEPA, float]:
    """BioJEPA trained on ``train`` with training seed ``seed``, and the seconds it took."""
    scvi.settings.seed = seed
    model = scjepa.BioJEPA(train, **(model_kwargs or {}))
    start = time.time()
    model.train(max_epochs=epochs, enable_progress_bar=False)
    return model, time.time() - start


def trained_model(name: str, seed: int, train: AnnData, models: str) -> scjepa.BioJEPA:
    """BioJEPA as :func:`run_one` trains it for this data set and seed, saved under ``models``
    the first time and loaded after."""
    path = os.path.join(models, f"{name}_s{seed}")
    if os.path.exists(path):
        model = scjepa.BioJEPA.load(path, adata=train)
        if not hasattr(model, "interaction_cross_fit_"):
            # saved before training ended by cross-fitting the interaction
            model.calibrate_interaction(seed=seed)
            model.save(path, overwrite=True)
        return model
    model, _ = train_biojepa(train, seed)
    model.save(path, overwrite=True)
    return model


def diagnostic_scores(run, description: str) -> tuple[argparse.Namespace, pd.DataFrame]:
    """Arguments shared by the diagnostic scripts, and ``run(name, seed, models)``'s scores over
    the chosen data sets and seeds, concatenated."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--models", default=MODELS, help="where trained models are kept")
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    os.makedirs(args.models, exist_ok=True)
    scores = pd.concat(
        [run(name, seed, args.models) for name in args.datasets for seed in args.seeds],
        ignore_index=True,
    )
    return args, scores


def write_diagnostic(
    name: str, args: argparse.Namespace, header: str, text: str, scores: pd.DataFrame
) -> None:
    """:func:`write_results` under a name made of ``name``, the data sets and the seeds."""
    stem = os.path.join(
        args.out, f"{name}_{'_'.join(args.datasets)}_seeds_{'_'.join(map(str, args.seeds))}"
    )
    write_results(stem, header, text, scores.round(4))


def held_out_groups(test: AnnData, sources: dict[str, AnnData]):
    """``(source controls, held-out cells, their perturbation labels)`` per source."""
    for source_name, source in sources.items():
        in_source = test.obs.split == "unseen_cell_type"
        if source_name == "seen_cell_types":
            in_source = ~in_source
        real = test[in_source]
        yield source, real, sorted(real.obs.perturbation.unique())


def measured_alone(train: AnnData) -> set[str]:
    """Genes perturbed alone in the training cells."""
    labels = train.obs.perturbation.astype(str).unique()
    return {label for label in labels if label != "control" and "+" not in label}


def partly_measured(labels: list[str], measured: set[str]) -> list[str]:
    """The labels with some members measured alone and some not: where ``additive_mean``
    differs from both the additive and the mean baseline."""
    return [
        label
        for label in labels
        if set(label.split("+")) & measured and not set(label.split("+")) <= measured
    ]


def kept_model_and_group(name: str, seed: int, models: str, source_name: str):
    """Training cells, the model kept by :func:`trained_model` and one held-out group of
    :func:`held_out_groups` (``source_name``: ``"seen_cell_types"`` or ``"held_out_cell_type"``)
    as ``(train, model, source controls, held-out cells, their labels)``."""
    train, test, sources = split_data(name, seed)
    model = trained_model(name, seed, train, models)
    groups = dict(zip(sources, held_out_groups(test, sources), strict=True))
    source, real, labels = groups[source_name]
    return train, model, source, real, labels


def run_one(
    name: str, seed: int, epochs: int, model_kwargs: dict, de: bool, models: str | None = None
) -> pd.DataFrame:
    """Scores of BioJEPA and every baseline on one data set and seed; with ``models``, the
    model kept there by :func:`trained_model` is used and its training time is not recorded."""
    train, test, sources = split_data(name, seed)
    if models is None:
        model, train_seconds = train_biojepa(train, seed, epochs, model_kwargs)
    else:
        model, train_seconds = trained_model(name, seed, train, models), float("nan")
    # changes are measured against controls of the same cell types, as the model matches them
    baselines = [
        scjepa.baselines.NoChangeBaseline(labels_key="cell_type").fit(train),
        scjepa.baselines.MeanPerturbationBaseline(labels_key="cell_type").fit(train),
        scjepa.baselines.LinearBaseline(labels_key="cell_type").fit(train),
    ]
    additive = scjepa.baselines.AdditiveBaseline(labels_key="cell_type").fit(train)
    additive_mean = scjepa.baselines.AdditiveMeanBaseline(labels_key="cell_type").fit(train)
    trained_singles = measured_alone(train)

    frames = []
    for source, real, labels in held_out_groups(test, sources):
        predictions = {"BioJEPA": model.predict_perturbation(labels, adata=source)}
        for baseline in baselines:
            predictions[baseline.name] = baseline.predict_perturbation(labels, source)
        additive_labels = [label for label in labels if set(label.split("+")) <= trained_singles]
        if additive_labels:
            predictions["additive"] = additive.predict_perturbation(additive_labels, source)
        some_measured = partly_measured(labels, trained_singles)
        if some_measured:
            predictions["additive_mean"] = additive_mean.predict_perturbation(some_measured, source)
        scores, _ = scjepa.tl.evaluate_perturbation(
            predictions, real, control=source, de=de, seed=seed
        )
        frames.append(scores)
    scores = pd.concat(frames, ignore_index=True)
    scores["dataset"], scores["seed"], scores["train_seconds"] = name, seed, train_seconds
    print(f"{name} seed {seed}: {train.n_obs} training cells, {train_seconds:.0f} s", flush=True)
    return scores


def summarise(scores: pd.DataFrame) -> pd.DataFrame:
    """Mean over perturbations per seed, then mean ± sd over seeds."""
    metrics = [
        c
        for c in scores.columns
        if c
        not in {"method", "perturbation", "split", "dataset", "seed", "n_cells", "train_seconds"}
    ]
    per_seed = scores.groupby(["dataset", "split", "method", "seed"])[metrics].mean()
    grouped = per_seed.groupby(["dataset", "split", "method"])
    return grouped.mean().round(3).astype(str) + " ± " + grouped.std().round(3).astype(str)


def paired_margin(ours: pd.Series, theirs: pd.Series, metric: str) -> tuple[float, float, str]:
    """How much better ``ours`` is than ``theirs`` (per-seed means of ``metric``, aligned by
    seed; positive: ours is better): the mean margin, its sd over seeds (0 for one seed) and
    the seeds won, as ``"won/seeds"``."""
    sign = 1 if metric in LOWER_IS_BETTER else -1
    difference = (theirs - ours) * sign
    sd = difference.std()
    won = f"{int((difference > 0).sum())}/{len(difference)}"
    return difference.mean(), 0.0 if pd.isna(sd) else sd, won


POOLING_WEIGHTS = [1.0, 0.75, 0.5, 0.25, 0.0]
"""Shares of its own change a prediction keeps, swept by the pooling diagnostics."""


def pooling_sweep(
    model: scjepa.BioJEPA,
    argument: str,
    labels: list[str],
    source: AnnData,
    real: AnnData,
    baseline,
    seed: int,
) -> pd.DataFrame:
    """Scores of ``baseline`` (fitted) and of BioJEPA's predictions of ``labels`` from
    ``source`` at every :data:`POOLING_WEIGHTS` of ``predict_perturbation``'s ``argument``."""
    predictions = {baseline.name: baseline.predict_perturbation(labels, source)}
    for weight in POOLING_WEIGHTS:
        predictions[f"BioJEPA, w = {weight:g}"] = model.predict_perturbation(
            labels, adata=source, **{argument: weight}
        )
    scores, _ = scjepa.tl.evaluate_perturbation(
        predictions, real[real.obs.perturbation.isin(labels)], control=source, de=False, seed=seed
    )
    return scores


def kept_model_sweep(
    name: str,
    seed: int,
    models: str,
    source_name: str,
    argument: str,
    keep,
    baseline_class,
) -> pd.DataFrame:
    """:func:`pooling_sweep` of ``argument`` on the model kept for ``name`` and ``seed``.

    The held-out group ``source_name`` (see :func:`kept_model_and_group`) is narrowed to the
    labels for which ``keep(members, genes measured alone)`` holds, and ``baseline_class`` is
    fitted on the training cells within cell types.
    """
    train, model, source, real, labels = kept_model_and_group(name, seed, models, source_name)
    measured = measured_alone(train)
    labels = [label for label in labels if keep(set(label.split("+")), measured)]
    baseline = baseline_class(labels_key="cell_type").fit(train)
    scores = pooling_sweep(model, argument, labels, source, real, baseline, seed)
    return scores.assign(dataset=name, seed=seed)


def pooling_diagnostic(
    script: str,
    description: str,
    what: str,
    keys: list[str],
    source_name: str,
    argument: str,
    keep,
    baseline_class,
) -> None:
    """Command line of a pooling sweep: :func:`kept_model_sweep` over the chosen data sets and
    seeds, each weight against ``baseline_class`` per ``keys``, written under ``script``'s name
    with a header saying ``what`` was predicted."""
    run = partial(
        kept_model_sweep,
        source_name=source_name,
        argument=argument,
        keep=keep,
        baseline_class=baseline_class,
    )
    args, scores = diagnostic_scores(run, description)
    text = weights_against_baseline(scores, baseline_class.name, keys)
    columns = ["dataset", "seed", *keys[1:], "perturbation", "method", *HEADLINE]
    write_diagnostic(script, args, f"{what}, seeds {args.seeds}", text, scores[columns])


def weights_against_baseline(scores: pd.DataFrame, baseline: str, keys: list[str]) -> str:
    """Text of a pooling-weight sweep: mean ± sd over seeds of every method's headline scores
    per ``keys`` (``dataset`` first), then each method's paired margin over ``baseline``
    (positive = better than it), its sd over seeds and the seeds won."""
    per_seed = scores.groupby([*keys, "method", "seed"])[HEADLINE].mean()
    grouped = per_seed.groupby([*keys, "method"])
    table = grouped.mean().round(3).astype(str) + " ± " + grouped.std().round(3).astype(str)
    rows = []
    for group, block in per_seed.groupby([*keys, "method"]):
        *where, method = group
        if method == baseline:
            continue
        reference = per_seed.loc[(*where, baseline)]
        for metric in HEADLINE:
            margin, paired_sd, won = paired_margin(
                block.loc[group][metric], reference[metric], metric
            )
            rows.append(
                {
                    **dict(zip(keys, where, strict=True)),
                    "method": method,
                    "metric": metric,
                    "margin": round(margin, 3),
                    "paired sd": round(paired_sd, 3),
                    "seeds won": won,
                }
            )
    return (
        f"mean ± sd over seeds\n{table.to_string()}\n\nagainst the {baseline} baseline\n"
        + pd.DataFrame(rows).to_string(index=False)
    )


def bar_check(scores: pd.DataFrame) -> pd.DataFrame:
    """For each data set, split and headline metric: BioJEPA against the best baseline.

    Each comparison is on the perturbations both methods predict (the additive baseline covers
    only combinations of singles measured in training), ``n`` of them over all seeds.
    ``seed sd`` is the larger of the two methods' standard deviations over seeds, the bar's
    test. Each seed generates its own data set and split, so much of that spread is shared by
    both methods; ``paired sd`` is the standard deviation over seeds of the margin itself, the
    spread of a paired comparison, reported next to it, as is ``seeds won``: in how many seeds
    BioJEPA's mean is better.
    """
    keys = ["dataset", "split", "seed", "perturbation"]
    model = scores[scores.method == "BioJEPA"].set_index(keys)[HEADLINE]
    rows = []
    for (dataset, split), block in scores.groupby(["dataset", "split"]):
        for metric in HEADLINE:
            lower = metric in LOWER_IS_BETTER
            paired = {}
            for method, own in block[block.method != "BioJEPA"].groupby("method"):
                both = own.set_index(keys)[[metric]].join(
                    model[[metric]], rsuffix="_model", how="inner"
                )
                if both[metric].notna().any():
                    paired[method] = both.groupby("seed").mean()
            means = {method: frame[metric].mean() for method, frame in paired.items()}
            best = (min if lower else max)(means, key=means.get)
            by_seed = paired[best]
            ours, theirs = by_seed[f"{metric}_model"], by_seed[metric]
            margin, paired_sd, won = paired_margin(ours, theirs, metric)
            spread = max(ours.std(), theirs.std())
            rows.append(
                {
                    "dataset": dataset,
                    "split": split,
                    "metric": metric,
                    "BioJEPA": round(ours.mean(), 3),
                    "best baseline": best,
                    "baseline value": round(theirs.mean(), 3),
                    "n": int(len(block[(block.method == best) & block[metric].notna()])),
                    "margin": round(margin, 3),
                    "seed sd": round(spread, 3),
                    "wins": bool(margin > spread),
                    "paired sd": round(paired_sd, 3),
                    "wins (paired)": bool(margin > paired_sd),
                    "seeds won": won,
                }
            )
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(15)))
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--model-kwargs", default="{}", help="JSON of BioJEPA arguments")
    parser.add_argument("--no-de", action="store_true", help="skip the Wilcoxon DE overlap")
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument(
        "--scores",
        help="a stored _scores.csv: rebuild its table and bar check instead of training",
    )
    parser.add_argument(
        "--models",
        help="score the default models kept in this folder (see trained_model), training only "
        "those missing; for changes to prediction alone",
    )
    args = parser.parse_args()
    if args.models and (args.epochs != EPOCHS or json.loads(args.model_kwargs)):
        parser.error(
            "--models holds default models; it does not go with --epochs or --model-kwargs"
        )
    os.makedirs(args.out, exist_ok=True)

    if args.scores:
        # read back exactly, so the scores file it rewrites is unchanged
        scores = pd.read_csv(args.scores, float_precision="round_trip")
        scores = scores[scores.dataset.isin(args.datasets) & scores.seed.isin(args.seeds)]
    else:
        scores = pd.concat(
            [
                run_one(
                    name,
                    seed,
                    args.epochs,
                    json.loads(args.model_kwargs),
                    not args.no_de,
                    args.models,
                )
                for name in args.datasets
                for seed in args.seeds
            ],
            ignore_index=True,
        )
    table = summarise(scores)
    check = bar_check(scores)
    report(
        "perturbation",
        table,
        check,
        scores,
        args.out,
        f"seeds {args.seeds}, {args.epochs} epochs, model {args.model_kwargs}"
        + (
            ", models kept from an earlier run (training times not recorded)" if args.models else ""
        ),
    )


if __name__ == "__main__":
    main()
