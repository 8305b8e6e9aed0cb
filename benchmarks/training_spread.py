"""How much of BioJEPA's perturbation scores is training noise: several training seeds, one split.

The bar of ``perturbation.py`` compares margins with the spread over seeds, and each of its seeds
generates a new data set and split. This script holds the data set and split fixed
(``--data-seed``) and trains BioJEPA with several training seeds, so the spread it prints is the
model's own. It also scores the ensemble that averages the models' predicted expression, the
most that averaging training noise away could give.

Usage: python benchmarks/training_spread.py [--dataset demo] [--data-seed 0]
[--training-seeds 0 1 2] [--epochs 150 | default]
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np
import pandas as pd
import scvi
from _report import write_results
from perturbation import (
    DATASETS,
    EPOCHS,
    HEADLINE,
    held_out_groups,
    split_data,
    train_biojepa,
)

import scjepa
from scjepa.data._matrix import dense


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", default="demo", choices=list(DATASETS))
    parser.add_argument("--data-seed", type=int, default=0)
    parser.add_argument("--training-seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--epochs",
        type=lambda value: None if value == "default" else int(value),
        default=EPOCHS,
        help="epochs per model, or 'default' for BioJEPA.train()'s own choice",
    )
    parser.add_argument("--model-kwargs", default="{}", help="JSON of BioJEPA arguments")
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)

    scvi.settings.seed = args.data_seed
    train, test, sources = split_data(args.dataset, args.data_seed)
    groups = list(held_out_groups(test, sources))
    predictions: list[list] = [[] for _ in groups]
    frames = []

    def score(group: int, prediction, training_seed: str) -> None:
        source, real, _ = groups[group]
        scores, _ = scjepa.tl.evaluate_perturbation(
            {"BioJEPA": prediction}, real, control=source, de=False, seed=args.data_seed
        )
        scores["training_seed"] = training_seed
        frames.append(scores)

    for training_seed in args.training_seeds:
        model, seconds = train_biojepa(
            train, training_seed, args.epochs, json.loads(args.model_kwargs)
        )
        print(f"training seed {training_seed}: {seconds:.0f} s", flush=True)
        for group, (source, _, labels) in enumerate(groups):
            prediction = model.predict_perturbation(labels, adata=source)
            predictions[group].append(prediction)
            score(group, prediction, str(training_seed))
    for group, members in enumerate(predictions):
        # same source cells and perturbations in the same order: average cell by cell
        ensemble = members[0].copy()
        ensemble.X = np.mean([dense(member.X) for member in members], axis=0)
        score(group, ensemble, "ensemble")

    scores = pd.concat(frames, ignore_index=True)
    per_model = scores.groupby(["split", "training_seed"])[HEADLINE].mean()
    single = per_model.drop(index="ensemble", level="training_seed").groupby("split")
    table = single.mean().round(3).astype(str) + " ± " + single.std().round(3).astype(str)
    ensemble = per_model.xs("ensemble", level="training_seed").round(3)
    table = table.join(ensemble, rsuffix=" (ensemble)")
    header = (
        f"{args.dataset}, data seed {args.data_seed}, training seeds {args.training_seeds}, "
        f"{args.epochs or 'default'} epochs, model {args.model_kwargs}"
    )
    stem = f"{args.out}/training_spread_{args.dataset}_{args.epochs or 'default'}"
    write_results(stem, header, table.to_string(), scores)


if __name__ == "__main__":
    main()
