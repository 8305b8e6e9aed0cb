"""Training and inference speed of BioJEPA against scVI on the same generated data.

Each (model, number of genes) runs in its own process, so peak memory is per run. The data set
is generated once per number of genes and cached as ``.h5ad`` next to the results (cell types
with their own expression profiles, log-normal library sizes, about 91% zeros like droplet
data; 2,000 genes are the most variable of the 20,000). Every worker reads it, trains for
``--epochs`` with the same batch size and threads, times training and embedding of every cell,
and scores the embedding by kNN label accuracy over all cells (so that speed is not bought with
quality) and by the cell-type silhouette (scIB's label ASW, on 10,000 cells). The table gives
cells/s, peak resident memory and the BioJEPA/scVI ratio per setting.

Two BioJEPA configurations run: the default architecture, and a compact one for embedding large
data sets (two 128-wide hidden layers after the gene layer, a 16-dimensional embedding, a smaller
predictor, 60% of detected genes masked). Both train without an expression decoder (nothing in
an embedding-only model needs one) and with the short-schedule settings in
``_configurations.SHORT_SCHEDULE``. scVI runs with its defaults.

Usage: python benchmarks/speed.py [--cells 50000] [--genes 2000 20000] [--epochs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np
import pandas as pd
from _configurations import COMPACT, SHORT_SCHEDULE
from _report import peak_memory_gb, report


def cell_type_profiles(n_genes: int, n_types: int = 10, seed: int = 0) -> np.ndarray:
    """Expression proportions ``(n_types, n_genes)``: shared base, 20% of genes changed per type."""
    rng = np.random.default_rng(seed)
    base = rng.normal(-1.0, 1.6, size=n_genes)
    profiles = np.exp(
        base + rng.normal(0, 0.8, size=(n_types, n_genes)) * (rng.random((n_types, n_genes)) < 0.2)
    )
    return profiles / profiles.sum(axis=1, keepdims=True)


def sample_cells(profiles: np.ndarray, cell_type: np.ndarray, rng: np.random.Generator):
    """CSR counts of cells of the given types, log-normal library sizes, without a dense matrix."""
    from scipy import sparse

    library = rng.lognormal(np.log(2500), 0.4, size=len(cell_type)).astype(int)
    blocks = []
    for start in range(0, len(cell_type), 2000):
        stop = min(start + 2000, len(cell_type))
        block = np.stack(
            [rng.multinomial(library[i], profiles[cell_type[i]]) for i in range(start, stop)]
        )
        blocks.append(sparse.csr_matrix(block.astype(np.float32)))
    return sparse.vstack(blocks, format="csr")


def sparse_counts(n_cells: int, n_genes: int, n_types: int = 10, seed: int = 0):
    """Cells x genes CSR counts of ``n_types`` cell types, and the cell-type labels."""
    profiles = cell_type_profiles(n_genes, n_types, seed)
    rng = np.random.default_rng(seed + 1)
    cell_type = rng.integers(n_types, size=n_cells)
    return sample_cells(profiles, cell_type, rng), np.array([f"type_{t}" for t in cell_type])


def benchmark_anndata(n_cells: int, n_genes: int, all_genes: int = 20_000):
    """Counts of ``n_cells`` cells: all ``all_genes`` genes, or the ``n_genes`` most variable.

    Smaller gene sets are selected the way an analysis would select them, with
    :func:`scanpy.pp.highly_variable_genes` on log-normalised counts, so their sparsity is that
    of real highly-variable-gene matrices rather than of a small transcriptome.
    """
    import anndata
    import scanpy as sc

    counts, labels = sparse_counts(n_cells, all_genes)
    adata = anndata.AnnData(X=counts)
    adata.obs["cell_type"] = labels
    if n_genes < all_genes:
        log_expression = adata.copy()
        sc.pp.normalize_total(log_expression, target_sum=1e4)
        sc.pp.log1p(log_expression)
        sc.pp.highly_variable_genes(log_expression, n_top_genes=n_genes, flavor="seurat")
        adata = adata[:, log_expression.var["highly_variable"].to_numpy()].copy()
    return adata


BIOJEPA_CONFIGURATIONS = {
    "BioJEPA": {},
    # masking 60% of the detected genes: context views as sparse as shallow cells keep those
    # cells with their type (at 20,000 genes, 0 and 1 of 50,000 cells misplaced by kNN vote on
    # two seeds, against 5 and 9 with 40%)
    "BioJEPA compact": {**COMPACT, "n_latent": 16, "mask_ratio": 0.6},
}


def cached_anndata(out: str, n_cells: int, n_genes: int) -> str:
    """Path of the benchmark data set, generated and written once for every worker to read."""
    path = os.path.join(out, f"speed_{n_cells}x{n_genes}.h5ad")
    if not os.path.exists(path):
        benchmark_anndata(n_cells, n_genes).write_h5ad(path)
    return path


def worker(model_name: str, path: str, epochs: int, batch_size: int) -> dict:
    import anndata
    import scvi
    from sklearn.metrics import silhouette_score

    import scjepa
    from scjepa.metrics import knn_label_accuracy

    adata = anndata.read_h5ad(path)
    counts, labels = adata.X, adata.obs["cell_type"].to_numpy()
    n_cells, n_genes = adata.shape
    scvi.settings.seed = 0
    train_kwargs = {}
    if model_name in BIOJEPA_CONFIGURATIONS:
        scjepa.BioJEPA.setup_anndata(adata)
        model = scjepa.BioJEPA(adata, **BIOJEPA_CONFIGURATIONS[model_name])
        train_kwargs["plan_kwargs"] = SHORT_SCHEDULE
    else:
        scvi.model.SCVI.setup_anndata(adata)
        model = scvi.model.SCVI(adata)
    start = time.time()
    model.train(
        max_epochs=epochs,
        batch_size=batch_size,
        train_size=1.0,
        enable_progress_bar=False,
        **train_kwargs,
    )
    train_seconds = time.time() - start
    start = time.time()
    latent = model.get_latent_representation(batch_size=1024)
    infer_seconds = time.time() - start
    # before scoring: the silhouette's distance matrix is not the model's memory
    peak_memory = peak_memory_gb()
    take = np.random.default_rng(0).choice(n_cells, size=min(n_cells, 10_000), replace=False)
    # scIB's cell-type ASW, rescaled to [0, 1]: unlike kNN accuracy it does not saturate
    label_asw = (silhouette_score(latent[take], labels[take]) + 1) / 2
    return {
        "model": model_name,
        "n_genes": n_genes,
        "n_cells": n_cells,
        "epochs": epochs,
        "train_cells_per_s": n_cells * epochs / train_seconds,
        "inference_cells_per_s": n_cells / infer_seconds,
        "peak_rss_gb": peak_memory,
        "knn_label_accuracy": knn_label_accuracy(latent, labels),
        "label_asw": label_asw,
        "density": counts.nnz / (n_cells * n_genes),
    }


def bar_check(scores: pd.DataFrame) -> pd.DataFrame:
    """BioJEPA/scVI ratios per number of genes and BioJEPA configuration."""
    rows = []
    for (n_genes, name), ours in scores.set_index(["n_genes", "model"]).iterrows():
        if name not in BIOJEPA_CONFIGURATIONS:
            continue
        theirs = scores.set_index(["n_genes", "model"]).loc[(n_genes, "scVI")]
        target = 10 if n_genes >= 20000 else 3
        ratio = ours.train_cells_per_s / theirs.train_cells_per_s
        rows.append(
            {
                "n_genes": n_genes,
                "configuration": name,
                "training speed ratio": round(ratio, 2),
                "target": f">= {target}",
                "inference speed ratio": round(
                    ours.inference_cells_per_s / theirs.inference_cells_per_s, 2
                ),
                # five decimals: one cell in 50,000 is 0.00002
                "kNN accuracy BioJEPA": round(ours.knn_label_accuracy, 5),
                "kNN accuracy scVI": round(theirs.knn_label_accuracy, 5),
                "label ASW BioJEPA": round(ours.label_asw, 3),
                "label ASW scVI": round(theirs.label_asw, 3),
                "meets bar": bool(
                    ratio >= target
                    and ours.knn_label_accuracy >= theirs.knn_label_accuracy
                    and ours.label_asw >= theirs.label_asw
                ),
            }
        )
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cells", type=int, default=50_000)
    parser.add_argument("--genes", type=int, nargs="+", default=[2000, 20000])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--worker", nargs=2, metavar=("MODEL", "FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        result = worker(args.worker[0], args.worker[1], args.epochs, args.batch_size)
        print("RESULT " + json.dumps(result), flush=True)
        return
    os.makedirs(args.out, exist_ok=True)
    rows = []
    for n_genes in args.genes:
        path = cached_anndata(args.out, args.cells, n_genes)
        for model_name in (*BIOJEPA_CONFIGURATIONS, "scVI"):
            command = [
                sys.executable,
                __file__,
                "--worker",
                model_name,
                path,
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
