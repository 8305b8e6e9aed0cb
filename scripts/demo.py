"""Train BioJEPA on the Perturb-seq demo, predict held-out perturbations, compare to baselines.

Usage: python scripts/demo.py [--epochs N] [--out DIR]
"""

from __future__ import annotations

import argparse
import os
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import scvi  # noqa: E402

import scjepa  # noqa: E402


def evaluate(predictions: dict, test, control_mean: np.ndarray, top_k: int = 20) -> pd.DataFrame:
    observed = scjepa.metrics.perturbation_means(test, layer="counts")
    rows = []
    for method, pred in predictions.items():
        predicted = scjepa.metrics.perturbation_means(pred)
        for label in predicted.index:
            p, o = predicted.loc[label].to_numpy(), observed.loc[label].to_numpy()
            rows.append(
                {
                    "method": method,
                    "perturbation": label,
                    "split": test.obs.loc[test.obs.perturbation == label, "split"].iloc[0],
                    "pearson_delta": scjepa.metrics.pearson_delta(p, o, control_mean),
                    f"pearson_delta_top{top_k}": scjepa.metrics.pearson_delta(
                        p, o, control_mean, top_k
                    ),
                    f"mse_top{top_k}": scjepa.metrics.mse_delta(p, o, control_mean, top_k),
                }
            )
    return pd.DataFrame(rows)


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

    controls = train[train.obs.perturbation == "control"].copy()
    labels = sorted(test.obs.perturbation.unique())
    predictions = {"BioJEPA": model.predict_perturbation(labels, adata=controls)}
    for baseline in (
        scjepa.baselines.NoChangeBaseline(),
        scjepa.baselines.MeanPerturbationBaseline(),
    ):
        predictions[baseline.name] = baseline.fit(train).predict_perturbation(labels, controls)
    additive = scjepa.baselines.AdditiveBaseline().fit(train)
    combos = held_out["combo_both_seen"]
    predictions["additive"] = additive.predict_perturbation(combos, controls)

    control_mean = (
        scjepa.metrics.perturbation_means(controls, layer="counts").loc["control"].to_numpy()
    )
    scores = evaluate(predictions, test, control_mean)
    summary = scores.groupby(["split", "method"]).mean(numeric_only=True).round(3)
    print(summary.to_string())
    scores.to_csv(os.path.join(args.out, "scores.csv"), index=False)

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    table = summary.reset_index().pivot(
        index="split", columns="method", values="pearson_delta_top20"
    )
    table.plot.bar(ax=axes[0], rot=0)
    axes[0].set_ylabel("Pearson delta, top-20 DE genes")
    axes[0].set_title("Held-out perturbations")
    example = combos[0] if combos else labels[0]
    observed = scjepa.metrics.perturbation_means(test, layer="counts").loc[example] - control_mean
    predicted = (
        scjepa.metrics.perturbation_means(predictions["BioJEPA"]).loc[example] - control_mean
    )
    axes[1].scatter(observed, predicted, s=6)
    lim = np.abs(np.concatenate([observed, predicted])).max()
    axes[1].plot([-lim, lim], [-lim, lim], color="grey", lw=0.8)
    axes[1].set_xlabel("observed change from control")
    axes[1].set_ylabel("predicted change (BioJEPA)")
    axes[1].set_title(example)
    fig.tight_layout()
    path = os.path.join(args.out, "demo_metrics.png")
    fig.savefig(path, dpi=120)
    print(f"figure saved to {path}")


if __name__ == "__main__":
    main()
