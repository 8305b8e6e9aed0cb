"""Training and embedding from a disk-backed ``.h5ad`` larger than the memory the process uses.

The writer generates the counts of ``--cells`` cells x ``--genes`` genes (the cell-type data of
``speed.py``) chunk by chunk and appends each chunk to the file's sparse matrix, so the full
matrix never exists in memory. A worker process then opens the file with
``anndata.read_h5ad(path, backed="r")``, sets BioJEPA up on it, trains for ``--epochs`` and embeds
every cell, reading minibatches of rows from disk. With ``--memory-limit-gb`` the worker's
address space is capped (``RLIMIT_AS``) below the file size, so a run that loaded the matrix
would fail. The table gives the file size, the worker's peak resident memory, cells/s for
training and embedding, and kNN label accuracy of the embedding on 10,000 cells.

Usage: python benchmarks/out_of_core.py [--cells 200000] [--genes 20000] [--epochs 1]
       [--memory-limit-gb 2.5]
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
from _configurations import SHORT_SCHEDULE
from _report import peak_memory_gb, report
from speed import cell_type_profiles, sample_cells


def write_counts_h5ad(path: str, n_cells: int, n_genes: int, chunk: int = 10_000, seed: int = 0):
    """Write generated counts to ``path`` one chunk of cells at a time."""
    import anndata
    import h5py
    from anndata.io import sparse_dataset, write_elem

    profiles = cell_type_profiles(n_genes, seed=seed)
    rng = np.random.default_rng(seed + 1)
    cell_type = rng.integers(len(profiles), size=n_cells)
    obs = pd.DataFrame(
        {"cell_type": pd.Categorical([f"type_{t}" for t in cell_type])},
        index=[f"cell_{i}" for i in range(n_cells)],
    )
    var = pd.DataFrame(index=[f"gene_{j}" for j in range(n_genes)])
    anndata.AnnData(obs=obs, var=var).write_h5ad(path)
    with h5py.File(path, "a") as handle:
        for start in range(0, n_cells, chunk):
            counts = sample_cells(profiles, cell_type[start : start + chunk], rng)
            if start == 0:
                write_elem(handle, "X", counts)  # anndata makes it appendable
                matrix = sparse_dataset(handle["X"])
            else:
                matrix.append(counts)


def worker(path: str, epochs: int, memory_limit_gb: float | None) -> dict:
    if memory_limit_gb:
        limit = int(memory_limit_gb * 1024**3)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    import anndata
    import scvi

    import scjepa
    from scjepa.metrics import knn_label_accuracy

    scvi.settings.seed = 0
    adata = anndata.read_h5ad(path, backed="r")
    start = time.time()
    scjepa.BioJEPA.setup_anndata(adata)
    setup_seconds = time.time() - start
    model = scjepa.BioJEPA(adata)
    start = time.time()
    model.train(
        max_epochs=epochs,
        batch_size=256,
        train_size=1.0,
        enable_progress_bar=False,
        plan_kwargs=SHORT_SCHEDULE,
    )
    train_seconds = time.time() - start
    start = time.time()
    latent = model.get_latent_representation(batch_size=1024)
    infer_seconds = time.time() - start
    take = np.random.default_rng(0).choice(
        adata.n_obs, size=min(adata.n_obs, 10_000), replace=False
    )
    labels = adata.obs["cell_type"].to_numpy()
    return {
        "n_cells": adata.n_obs,
        "n_genes": adata.n_vars,
        "epochs": epochs,
        "file_gb": os.path.getsize(path) / 1024**3,
        "memory_limit_gb": memory_limit_gb or float("nan"),
        "peak_rss_gb": peak_memory_gb(),
        "setup_s": setup_seconds,
        "train_cells_per_s": adata.n_obs * epochs / train_seconds,
        "inference_cells_per_s": adata.n_obs / infer_seconds,
        "knn_label_accuracy": knn_label_accuracy(latent[take], labels[take]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cells", type=int, default=200_000)
    parser.add_argument("--genes", type=int, default=20_000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--memory-limit-gb", type=float, default=None)
    parser.add_argument("--file", default="benchmarks/results/out_of_core.h5ad")
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        result = worker(args.file, args.epochs, args.memory_limit_gb)
        print("RESULT " + json.dumps(result), flush=True)
        return
    os.makedirs(args.out, exist_ok=True)
    if not os.path.exists(args.file):
        start = time.time()
        write_counts_h5ad(args.file, args.cells, args.genes)
        print(f"wrote {args.file} in {time.time() - start:.0f} s", flush=True)
    command = [sys.executable, __file__, "--worker", "--file", args.file]
    command += ["--epochs", str(args.epochs)]
    if args.memory_limit_gb:
        command += ["--memory-limit-gb", str(args.memory_limit_gb)]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    result = pd.DataFrame([json.loads(output.split("RESULT ", 1)[1])])
    check = pd.DataFrame(
        [
            {
                "file larger than peak memory": bool(
                    result.file_gb.iloc[0] > result.peak_rss_gb.iloc[0]
                ),
                "peak memory < 3 GB": bool(result.peak_rss_gb.iloc[0] < 3.0),
                "address space capped below file size": bool(
                    result.memory_limit_gb.iloc[0] < result.file_gb.iloc[0]
                ),
            }
        ]
    )
    report(
        "out_of_core",
        result.round(3),
        check,
        result,
        args.out,
        f"backed .h5ad, {args.cells} cells x {args.genes} genes, torch threads "
        f"{os.environ.get('OMP_NUM_THREADS', 'default')}",
    )


if __name__ == "__main__":
    main()
