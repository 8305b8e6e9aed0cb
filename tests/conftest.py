import functools
import http.server
import threading

import numpy as np
import pytest
import scvi

import scjepa


def small_perturbseq(seed: int = 0):
    return scjepa.datasets.perturbseq_demo(
        n_cells=600, n_genes=60, n_programs=6, n_perturbed_genes=8, n_combinations=4, seed=seed
    )


@pytest.fixture
def adata():
    return small_perturbseq()


@pytest.fixture(scope="module")
def trained():
    """A tiny BioJEPA trained for real on generated data, with its AnnData."""
    scvi.settings.seed = 0
    data = small_perturbseq()
    scjepa.BioJEPA.setup_anndata(
        data,
        layer="counts",
        perturbation_key="perturbation",
        batch_key="batch",
        labels_key="cell_type",
    )
    model = scjepa.BioJEPA(data, n_latent=16, n_hidden=32, n_predictor_hidden=32)
    model.train(max_epochs=3, batch_size=64, enable_progress_bar=False)
    return model, data


SHORT_SCHEDULE = {"lr": 3e-3, "ema_momentum_start": 0.99, "ema_momentum_end": 0.995}
"""Training-plan settings that let a tiny paired multi-modal model learn within 30 epochs."""


def train_paired_model(mdata, n_latent: int = 16, max_epochs: int = 30, **setup):
    """A tiny BioJEPA set up on ``mdata`` with ``setup`` and trained for real."""
    scjepa.BioJEPA.setup_mudata(mdata, labels_key="cell_type", **setup)
    model = scjepa.BioJEPA(
        mdata, n_latent=n_latent, n_hidden=64, n_predictor_hidden=64, n_predictor_blocks=2
    )
    model.train(
        max_epochs=max_epochs,
        batch_size=96,
        enable_progress_bar=False,
        plan_kwargs=SHORT_SCHEDULE,
    )
    return model


def controls_of(adata):
    return adata[adata.obs["perturbation"] == "control"].copy()


def perturbed_genes(adata) -> set[str]:
    """Every gene perturbed, alone or in a combination, in ``adata``."""
    labels = adata.obs["perturbation"].cat.categories
    return {m for label in labels if label != "control" for m in label.split("+")}


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def http_server(tmp_path):
    """Serve files from a folder on the loopback interface."""
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
