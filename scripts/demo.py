"""Train BioJEPA on the Perturb-seq demo, predict held-out perturbations, compare to baselines.

Usage: python scripts/demo.py [--epochs N] [--out DIR] [--seed S]
"""

from __future__ import annotations

import argparse
import os
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import scvi  # noqa: E402

import scjepa  # noqa: E402

HEADLINE = [
    "pearson_delta_top20",
    "mse_top20",
    "discrimination",
    "de_overlap_top20",
    "n_perturbations",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--out", default="demo_output")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    scvi.settings.seed = args.seed

    adata = scjepa.datasets.perturbseq_demo(seed=args.seed)
    held_out = scjepa.data.split_perturbations(adata, seed=args.seed)
    train = adata[adata.obs.split == "train"].copy()
    test = adata[adata.obs.split != "train"].copy()
    controls = train[train.obs.perturbation == "control"].copy()
    print(
        f"{train.n_obs} training cells, {test.n_obs} held-out cells;",
        {k: len(v) for k, v in held_out.items()},
    )

    scjepa.BioJEPA.setup_anndata(
        train,
        layer="counts",
        perturbation_key="perturbation",
        batch_key="batch",
        labels_key="cell_type",
    )
    model = scjepa.BioJEPA(train)
    start = time.time()
    model.train(max_epochs=args.epochs)
    print(f"trained in {time.time() - start:.0f} s")

    labels = sorted(test.obs.perturbation.unique())
    predictions = {"BioJEPA": model.predict_perturbation(labels, adata=controls)}
    # changes are measured against controls of the same cell type, as the model matches them
    for baseline in (
        scjepa.baselines.NoChangeBaseline(labels_key="cell_type"),
        scjepa.baselines.MeanPerturbationBaseline(labels_key="cell_type"),
        scjepa.baselines.LinearBaseline(labels_key="cell_type"),
    ):
        predictions[baseline.name] = baseline.fit(train).predict_perturbation(labels, controls)
    combos = held_out["combo_both_seen"]
    additive = scjepa.baselines.AdditiveBaseline(labels_key="cell_type").fit(train)
    predictions["additive"] = additive.predict_perturbation(combos, controls)
    # with the mean change for the member never measured alone
    additive_mean = scjepa.baselines.AdditiveMeanBaseline(labels_key="cell_type").fit(train)
    one_unseen = held_out.get("combo_one_unseen", [])
    if one_unseen:
        predictions["additive_mean"] = additive_mean.predict_perturbation(one_unseen, controls)

    scores, summary = scjepa.tl.evaluate_perturbation(
        predictions, test, control=controls, seed=args.seed
    )
    pd.set_option("display.width", 200)
    print(summary[HEADLINE].round(3).to_string())
    scores.to_csv(os.path.join(args.out, "scores.csv"), index=False)

    fig = plt.figure(figsize=(14, 8))
    grid = fig.add_gridspec(2, 3)
    scjepa.pl.metric_bars(scores, "pearson_delta_top20", ax=fig.add_subplot(grid[0, :2]))
    scjepa.pl.metric_bars(scores, "mse_top20", ax=fig.add_subplot(grid[0, 2]))
    example = combos[0] if combos else labels[0]
    scjepa.pl.perturbation_scatter(
        {name: predictions[name] for name in ("BioJEPA", "additive", "linear")},
        test,
        example,
        control=controls,
        axes=[fig.add_subplot(grid[1, i]) for i in range(3)],
    )
    fig.tight_layout()
    path = os.path.join(args.out, "demo_metrics.png")
    fig.savefig(path, dpi=110)
    print(f"figure saved to {path}")


if __name__ == "__main__":
    main()
