"""What the learned pairwise interaction does for held-out combinations of perturbed genes.

BioJEPA composes the members of a combination additively in embedding space and adds a learned
interaction embedding (see :class:`scjepa.module.PerturbationEncoder`), its only way to predict
non-additive effects. This script takes the models of ``perturbation.py`` (trained once and kept
under ``--models``) and predicts the held-out combinations whose members were both perturbed in
training twice: as trained, and with the interaction set to zero. Scores are split by whether
``perturbseq_demo`` made the pair synergistic (a third programme switched on only by the pair,
drawn at random per pair) or not (its members' effects add up, with buffering on a shared
programme).

Usage: python benchmarks/combination_interaction.py [--datasets demo wide] [--seeds 0 1 2 3 4]
"""

from __future__ import annotations

import pandas as pd
import torch
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
    interaction = model.module.perturbation_encoder.interaction[-1]
    trained = {key: value.clone() for key, value in interaction.state_dict().items()}
    source, real, _ = next(iter(held_out_groups(test, sources)))  # the training cell types
    real = real[real.obs.split == SPLIT]
    labels = sorted(real.obs.perturbation.unique())
    frames = []
    for variant in ["learned interaction", "no interaction"]:
        with torch.no_grad():
            for key, value in interaction.state_dict().items():
                value.copy_(trained[key] if variant == "learned interaction" else 0.0)
        prediction = model.predict_perturbation(labels, adata=source)
        scores, _ = scjepa.tl.evaluate_perturbation(
            {"BioJEPA": prediction}, real, control=source, de=False, seed=seed
        )
        frames.append(scores.assign(variant=variant))
    interaction.load_state_dict(trained)
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
    columns = ["dataset", "seed", "perturbation", "synergistic", "variant", *HEADLINE]
    header = f"held-out combinations of perturbed genes, seeds {args.seeds}"
    write_diagnostic("combination_interaction", args, header, text, scores[columns])


if __name__ == "__main__":
    main()
