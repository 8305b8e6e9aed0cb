"""What the learned pairwise interaction does for held-out combinations of perturbed genes.

BioJEPA composes the members of a combination additively in embedding space and adds a learned
interaction embedding (see :class:`scjepa.module.PerturbationEncoder`), its only way to predict
non-additive effects; after training, cross-fitting sets the share ``α`` of it that predictions
keep (:meth:`scjepa.BioJEPA.calibrate_interaction`). This script takes the models of
``perturbation.py`` (trained once and kept under ``--models``) and predicts the held-out
combinations whose members were both perturbed in training three times: with the whole
interaction (``α = 1``), with the cross-fitted share, and without it (``α = 0``). Scores are split
by whether
``perturbseq_demo`` made the pair synergistic (a third programme switched on only by the pair,
drawn at random per pair) or not (its members' effects add up, with buffering on a shared
programme).

Usage: python benchmarks/combination_interaction.py [--datasets demo wide] [--seeds 0 1 2 3 4]
"""

from __future__ import annotations

import pandas as pd
from perturbation import (
    DATASETS,
    HEADLINE,
    diagnostic_scores,
    held_out_groups,
    split_data,
    trained_model,
    write_diagnostic,
)

import scjepa

SPLIT = "combo_both_seen"


def run_one(name: str, seed: int, models: str) -> pd.DataFrame:
    train, test, sources = split_data(name, seed)
    generated = scjepa.datasets.perturbseq_demo(seed=seed, **DATASETS[name])
    synergistic = set(generated.uns["perturbseq_demo"]["synergistic_pairs"])
    model = trained_model(name, seed, train, models)
    share = model.module.perturbation_encoder.interaction_scale
    cross_fitted = float(share)
    source, real, _ = next(iter(held_out_groups(test, sources)))  # the training cell types
    real = real[real.obs.split == SPLIT]
    labels = sorted(real.obs.perturbation.unique())
    frames = []
    variants = {
        "whole interaction": 1.0,
        "cross-fitted share": cross_fitted,
        "no interaction": 0.0,
    }
    for variant, scale in variants.items():
        share.fill_(scale)
        # the model's own prediction, not pooled with the sum of the members' measured changes
        prediction = model.predict_perturbation(labels, adata=source, new_combination_weight=1.0)
        scores, _ = scjepa.tl.evaluate_perturbation(
            {"BioJEPA": prediction}, real, control=source, de=False, seed=seed
        )
        frames.append(scores.assign(variant=variant, interaction_scale=cross_fitted))
    share.fill_(cross_fitted)
    scores = pd.concat(frames, ignore_index=True)
    scores["synergistic"] = scores.perturbation.isin(synergistic)
    return scores.assign(dataset=name, seed=seed)


def main() -> None:
    args, scores = diagnostic_scores(run_one, __doc__)
    keys = ["dataset", "variant"]
    by_kind = scores.groupby([*keys, "synergistic"])[HEADLINE].agg(["mean", "count"]).round(3)
    per_seed = scores.groupby([*keys, "seed"])[HEADLINE].mean().groupby(keys)
    overall = per_seed.mean().round(3).astype(str) + " ± " + per_seed.std().round(3).astype(str)
    text = f"by pair\n{by_kind.to_string()}\n\nmean over pairs, then seeds\n{overall.to_string()}"
    shares = scores.groupby("dataset").interaction_scale.agg(["mean", "min", "max"]).round(2)
    text += f"\n\ncross-fitted share of the interaction over seeds\n{shares.to_string()}"
    columns = ["dataset", "seed", "perturbation", "synergistic", "variant", "interaction_scale"]
    columns += HEADLINE
    header = f"held-out combinations of perturbed genes, seeds {args.seeds}"
    write_diagnostic("combination_interaction", args, header, text, scores[columns])


if __name__ == "__main__":
    main()
