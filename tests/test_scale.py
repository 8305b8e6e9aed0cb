"""Training at scale: from a disk-backed .h5ad, and data-parallel over two processes."""

import inspect
import json
import os
import subprocess
import sys

import anndata
import numpy as np
import pytest
import scvi
from scipy import sparse

import scjepa
from scjepa.metrics import knn_label_accuracy
from scjepa.model._biojepa import _is_sparse_matrix


def two_cell_types(n_cells=600, n_genes=200, seed=0):
    """Sparse counts of two cell types, one with 40 genes up 8-fold."""
    rng = np.random.default_rng(seed)
    profiles = rng.gamma(0.5, 1.0, size=(2, n_genes))
    profiles[1, : n_genes // 5] *= 8
    profiles /= profiles.sum(axis=1, keepdims=True)
    cell_type = rng.integers(2, size=n_cells)
    counts = rng.poisson(profiles[cell_type] * 800).astype(np.float32)
    adata = anndata.AnnData(X=sparse.csr_matrix(counts))
    adata.obs["cell_type"] = np.array(["a", "b"])[cell_type]
    adata.obs_names = [f"cell_{i}" for i in range(n_cells)]
    return adata


# Lightning's DDP starts the second process by running the script again, so the training
# runs from a script file that defines its own data.
DDP_SCRIPT = """
import json, os, sys
import anndata, numpy as np, scvi
from scipy import sparse
import scjepa
from scjepa.metrics import knn_label_accuracy

{generator}

devices = int(sys.argv[1])
scvi.settings.seed = 0
adata = two_cell_types()
scjepa.BioJEPA.setup_anndata(adata)
model = scjepa.BioJEPA(adata, n_hidden=64, n_latent=16, n_predictor_hidden=32)
kwargs = {{"devices": devices, "strategy": "ddp"}} if devices > 1 else {{}}
model.train(
    max_epochs=8, batch_size=100, accelerator="cpu", train_size=1.0,
    enable_progress_bar=False, **kwargs
)
if int(os.environ.get("LOCAL_RANK", 0)) == 0:
    latent = model.get_latent_representation()
    labels = adata.obs["cell_type"].to_numpy()
    with open(sys.argv[2], "w") as handle:
        json.dump({{
            "accuracy": knn_label_accuracy(latent, labels),
            "world_size": model.trainer.world_size,
            "optimizer_steps": model.trainer.global_step,
            "steps": int(model.history["effective_rank_train"].shape[0]),
            "loss": float(model.history["train_loss"].iloc[-1, 0]),
        }}, handle)
"""


def test_trains_and_embeds_from_a_backed_h5ad(tmp_path):
    path = tmp_path / "counts.h5ad"
    two_cell_types().write_h5ad(path)
    backed = anndata.read_h5ad(path, backed="r")
    assert backed.isbacked and _is_sparse_matrix(backed.X)

    scvi.settings.seed = 0
    scjepa.BioJEPA.setup_anndata(backed)
    model = scjepa.BioJEPA(backed, n_hidden=64, n_latent=16, n_predictor_hidden=32)
    model.train(max_epochs=4, batch_size=100, enable_progress_bar=False)
    latent = model.get_latent_representation()

    assert latent.shape == (backed.n_obs, 16)
    assert np.isfinite(latent).all()
    # nothing was loaded into memory behind the user's back: X is still the on-disk dataset
    assert backed.isbacked and isinstance(backed.X, anndata.abc.CSRDataset)
    labels = backed.obs["cell_type"].to_numpy()
    assert knn_label_accuracy(latent, labels) > 0.9
    # the same cells in memory give the same embedding from the backed model
    in_memory = anndata.read_h5ad(path)
    np.testing.assert_allclose(
        model.get_latent_representation(in_memory), latent, rtol=1e-4, atol=1e-5
    )


@pytest.mark.slow
def test_data_parallel_training_matches_one_device(tmp_path):
    """Two CPU processes under Lightning DDP learn an embedding as good as one process."""
    script = tmp_path / "train_ddp.py"
    result = tmp_path / "result.json"
    script.write_text(DDP_SCRIPT.format(generator=inspect.getsource(two_cell_types)))
    scores = {}
    for devices in (1, 2):
        subprocess.run(
            [sys.executable, str(script), str(devices), str(result)],
            check=True,
            cwd=tmp_path,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
        scores[devices] = json.loads(result.read_text())
    assert scores[2]["steps"] == scores[1]["steps"] == 8  # one history row per epoch
    assert (scores[1]["world_size"], scores[2]["world_size"]) == (1, 2)
    # each process takes half of every epoch's minibatches
    assert scores[2]["optimizer_steps"] == scores[1]["optimizer_steps"] // 2
    assert scores[1]["accuracy"] > 0.9
    assert scores[2]["accuracy"] >= scores[1]["accuracy"] - 0.03
    assert np.isfinite(scores[2]["loss"])


def test_sparse_detection_covers_backed_and_in_memory_matrices(tmp_path):
    path = tmp_path / "small.h5ad"
    anndata.AnnData(X=sparse.random(5, 4, density=0.5, format="csc")).write_h5ad(path)
    assert _is_sparse_matrix(anndata.read_h5ad(path, backed="r").X)
    assert _is_sparse_matrix(sparse.csr_matrix(np.eye(3)))
    assert not _is_sparse_matrix(np.eye(3))


def test_embedding_models_save_and_load_with_or_without_a_decoder(tmp_path):
    adata = two_cell_types(n_cells=200, n_genes=50)
    scjepa.BioJEPA.setup_anndata(adata)
    for with_decoder in (False, True):
        model = scjepa.BioJEPA(adata, n_hidden=32, n_latent=8, expression_decoder=with_decoder)
        model.train(max_epochs=1, batch_size=100, enable_progress_bar=False)
        # models saved before the decoder became optional carry no `expression_decoder`
        for group in model.init_params_["kwargs"].values():
            group.pop("expression_decoder", None)
        path = tmp_path / f"decoder_{with_decoder}"
        model.save(path)
        loaded = scjepa.BioJEPA.load(path, adata=adata)
        assert (loaded.module.decoder is not None) == with_decoder
        np.testing.assert_allclose(
            loaded.get_latent_representation(), model.get_latent_representation(), atol=1e-6
        )
