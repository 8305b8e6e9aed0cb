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


def controls_of(adata):
    return adata[adata.obs["perturbation"] == "control"].copy()


@pytest.fixture
def rng():
    return np.random.default_rng(0)
