"""The perturbation benchmark's bar check with synergistic pairs apart from the rest.

``perturbseq_demo`` switches on a third program for about two in five of its double
perturbations, drawn at random per pair (``uns["perturbseq_demo"]["synergistic_pairs"]``).
Nothing in the training cells says which held-out pair is synergistic or which program it
switches on, so no method that learns from them can predict that part; the genetic-interaction
analyses of Norman et al. (*Science* 2019) likewise score interaction types apart. This script
reads stored benchmark scores, regenerates each seed's data set to learn which of its pairs are
synergistic, and runs :func:`perturbation.bar_check` with every split cut in two: the
synergistic pairs and everything else. No model is trained.

Writes ``synergy_strata_{scores file}.md`` and, as its ``_scores.csv``, the synergistic pairs.

Usage: python benchmarks/synergy_strata.py [--scores benchmarks/results/perturbation_scores.csv]
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import pandas as pd
from _report import report
from perturbation import DATASETS, bar_check

import scjepa

SYNERGISTIC, OTHER = "synergistic pairs", "other perturbations"


def synergistic_pairs(scores: pd.DataFrame) -> pd.DataFrame:
    """``dataset``, ``seed`` and ``perturbation`` of every pair the generator made synergistic,
    for the data sets and seeds in ``scores``."""
    rows = []
    for dataset, seed in scores[["dataset", "seed"]].drop_duplicates().itertuples(index=False):
        adata = scjepa.datasets.perturbseq_demo(seed=int(seed), **DATASETS[dataset])
        pairs = adata.uns["perturbseq_demo"]["synergistic_pairs"]
        rows += [(dataset, int(seed), pair) for pair in pairs]
    return pd.DataFrame(rows, columns=["dataset", "seed", "perturbation"])


def by_stratum(scores: pd.DataFrame, pairs: pd.DataFrame) -> pd.DataFrame:
    """``scores`` with each split renamed ``"{split}: {stratum}"``, ``pairs`` being the
    synergistic ones."""
    keys = ["dataset", "seed", "perturbation"]
    synergistic = pd.MultiIndex.from_frame(scores[keys]).isin(pd.MultiIndex.from_frame(pairs))
    return scores.assign(
        split=scores.split.astype(str) + ": " + np.where(synergistic, SYNERGISTIC, OTHER)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scores", default="benchmarks/results/perturbation_scores.csv")
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    scores = pd.read_csv(args.scores)
    pairs = synergistic_pairs(scores)
    stratified = by_stratum(scores, pairs)
    seeds = sorted(int(seed) for seed in scores.seed.unique())
    counts = (
        stratified[stratified.method == "BioJEPA"]
        .groupby(["dataset", "split", "seed"])
        .size()
        .groupby(["dataset", "split"])
        .mean()
        .round(1)
        .rename("perturbations per seed")
    )
    # the scores are already stored; what this adds is which pairs are synergistic
    source = os.path.basename(args.scores).removesuffix(".csv").removesuffix("_scores")
    report(
        f"synergy_strata_{source}",
        counts.to_frame(),
        bar_check(stratified),
        pairs,
        args.out,
        f"bar check by stratum, from {os.path.basename(args.scores)}, seeds {seeds}",
    )


if __name__ == "__main__":
    main()
