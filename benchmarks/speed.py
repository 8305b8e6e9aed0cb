"""Training and inference speed of BioJEPA against scVI on the same generated data.

Each (model, number of genes) runs in its own process, so peak memory is per run: the worker
generates the same sparse counts from the seed (cell types with their own expression profiles,
log-normal library sizes, about 90-95% zeros like droplet data), trains for ``--epochs`` with the
same batch size and threads, times training and embedding of every cell, and scores the embedding
by kNN label accuracy on the cell types (so that speed is not bought with quality). The table
gives cells/s, peak resident memory and the BioJEPA/scVI ratio per setting.

Usage: python benchmarks/speed.py [--cells 50000] [--genes 2000 20000] [--epochs 2]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np
import pandas as pd
from _report import report


def sparse_counts(n_cells: int, n_genes: int, n_types: int = 10, seed: int = 0):
    """Cells x genes CSR counts of ``n_types`` cell types, generated without a dense matrix."""
    from scipy import sparse

    rng = np.random.default_rng(seed)
    base = rng.normal(-1.0, 1.6, size=n_genes)
    profiles = np.exp(
        base + rng.normal(0, 0.8, size=(n_types, n_genes)) * (rng.random((n_types, n_genes)) < 0.2)
    )
    profiles /= profiles.sum(axis=1, keepdims=True)
    cell_type = rng.integers(n_types, size=n_cells)
    library = rng.lognormal(np.log(2500), 0.4, size=n_cells).astype(int)
    rows, cols, vals = [], [], []
    for start in range(0, n_cells, 2000):
        stop = min(start + 2000, n_cells)
        block = np.stack(
            [rng.multinomial(library[i], profiles[cell_type[i]]) for i in range(start, stop)]
        )
        r, c = np.nonzero(block)
        rows.append(r + start)
        cols.append(c)
        vals.append(block[r, c])
    counts = sparse.csr_matrix(
        (np.concatenate(vals).astype(np.float32), (np.concatenate(rows), np.concatenate(cols))),
        shape=(n_cells, n_genes),
    )
    return counts, np.array([f"type_{t}" for t in cell_type])


def worker(model_name: str, n_cells: int, n_genes: int, epochs: int, batch_size: int) -> dict:
    import anndata
    import scvi

    import scjepa
    from scjepa.metrics import knn_label_accuracy

    counts, labels = sparse_counts(n_cells, n_genes)
    adata = anndata.AnnData(X=counts)
    adata.obs["cell_type"] = labels
    scvi.settings.seed = 0
    if model_name == "BioJEPA":
        scjepa.BioJEPA.setup_anndata(adata)
        model = scjepa.BioJEPA(adata)
    else:
        scvi.model.SCVI.setup_anndata(adata)
        model = scvi.model.SCVI(adata)
    start = time.time()
    model.train(max_epochs=epochs, batch_size=batch_size, train_size=1.0, enable_progress_bar=False)
    train_seconds = time.time() - start
    start = time.time()
    latent = model.get_latent_representation(batch_size=1024)
    infer_seconds = time.time() - start
    take = np.random.default_rng(0).choice(n_cells, size=min(n_cells, 5000), replace=False)
    return {
        "model": model_name,
        "n_genes": n_genes,
        "n_cells": n_cells,
        "epochs": epochs,
        "train_cells_per_s": n_cells * epochs / train_seconds,
        "inference_cells_per_s": n_cells / infer_seconds,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2,
        "knn_label_accuracy": knn_label_accuracy(latent[take], labels[take]),
        "density": counts.nnz / (n_cells * n_genes),
    }


def bar_check(scores: pd.DataFrame) -> pd.DataFrame:
    """BioJEPA/scVI ratios per number of genes."""
    rows = []
    for n_genes, block in scores.groupby("n_genes"):
        ours = block.set_index("model").loc["BioJEPA"]
        theirs = block.set_index("model").loc["scVI"]
        target = 10 if n_genes >= 20000 else 3
        ratio = ours.train_cells_per_s / theirs.train_cells_per_s
        rows.append(
            {
                "n_genes": n_genes,
                "training speed ratio": round(ratio, 2),
                "target": f">= {target}",
                "inference speed ratio": round(
                    ours.inference_cells_per_s / theirs.inference_cells_per_s, 2
                ),
                "kNN accuracy BioJEPA": round(ours.knn_label_accuracy, 3),
                "kNN accuracy scVI": round(theirs.knn_label_accuracy, 3),
                "meets bar": bool(
                    ratio >= target and ours.knn_label_accuracy >= theirs.knn_label_accuracy
                ),
            }
        )
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cells", type=int, default=50_000)
    parser.add_argument("--genes", type=int, nargs="+", default=[2000, 20000])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--worker", nargs=2, metavar=("MODEL", "GENES"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        result = worker(
            args.worker[0], args.cells, int(args.worker[1]), args.epochs, args.batch_size
        )
        print("RESULT " + json.dumps(result), flush=True)
        return
    os.makedirs(args.out, exist_ok=True)
    rows = []
    for n_genes in args.genes:
        for model_name in ("BioJEPA", "scVI"):
            command = [
                sys.executable,
                __file__,
                "--worker",
                model_name,
                str(n_genes),
                "--cells",
                str(args.cells),
                "--epochs",
                str(args.epochs),
                "--batch-size",
                str(args.batch_size),
            ]
            output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
            result = json.loads(output.split("RESULT ", 1)[1])
            print(result, flush=True)
            rows.append(result)
    scores = pd.DataFrame(rows)
    table = scores.set_index(["n_genes", "model"]).round(3)
    report(
        "speed",
        table,
        bar_check(scores),
        scores,
        args.out,
        f"{args.cells} cells, {args.epochs} epochs, batch size {args.batch_size}, "
        f"torch threads {os.environ.get('OMP_NUM_THREADS', 'default')}",
    )


if __name__ == "__main__":
    main()
