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

import pandas as pd
from _report import write_results
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
    stratum = pd.Series(OTHER, index=scores.index).where(~synergistic, SYNERGISTIC)
    return scores.assign(split=scores.split.astype(str) + ": " + stratum)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scores", default="benchmarks/results/perturbation_scores.csv")
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    scores = pd.read_csv(args.scores)
    pairs = synergistic_pairs(scores)
    stratified = by_stratum(scores, pairs)
    check = bar_check(stratified)
    pd.set_option("display.width", 250)
    pd.set_option("display.max_columns", 30)
    seeds = sorted(int(seed) for seed in scores.seed.unique())
    header = f"bar check by stratum, from {os.path.basename(args.scores)}, seeds {seeds}"
    counts = (
        stratified[stratified.method == "BioJEPA"]
        .groupby(["dataset", "split", "seed"])
        .size()
        .groupby(["dataset", "split"])
        .mean()
        .round(1)
        .rename("perturbations per seed")
    )
    text = f"{counts.to_frame().to_string()}\n\n{check.to_string(index=False)}"
    # the scores are already stored; what this adds is which pairs are synergistic
    source = os.path.basename(args.scores).removesuffix(".csv").removesuffix("_scores")
    write_results(os.path.join(args.out, f"synergy_strata_{source}"), header, text, pairs)


if __name__ == "__main__":
    main()
