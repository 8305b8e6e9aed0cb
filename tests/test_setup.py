import numpy as np
import pytest

import scjepa

SETUP = dict(
    layer="counts", perturbation_key="perturbation", batch_key="batch", labels_key="cell_type"
)


def _untouched(adata):
    return list(adata.obs.columns), set(adata.uns.keys())


def test_setup_registers_fields_and_view_works(adata, capsys):
    scjepa.BioJEPA.setup_anndata(adata, **SETUP)
    model = scjepa.BioJEPA(adata, n_latent=8, n_hidden=16)
    model.view_anndata_setup()
    printed = capsys.readouterr().out
    assert "perturbation" in printed and "batch" in printed
    assert model.summary_stats.n_batch == 2
    assert model.summary_stats.n_labels == 3


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(perturbation_key="guide"), KeyError, "Perturbation column 'guide'"),
        (dict(batch_key="lane"), KeyError, "Batch column 'lane'"),
        (dict(layer="raw"), KeyError, "Layer 'raw' not found"),
        (dict(control_value="NT"), ValueError, "No control cells"),
        (dict(dose_key="cell_type"), ValueError, "must be numeric"),
    ],
)
def test_setup_errors_leave_adata_untouched(adata, kwargs, error, message):
    before = _untouched(adata)
    with pytest.raises(error, match=message):
        scjepa.BioJEPA.setup_anndata(adata, **{**SETUP, **kwargs})
    assert _untouched(adata) == before


def test_non_integer_counts_refused(adata):
    before = _untouched(adata)
    with pytest.raises(ValueError, match="non-integer values"):
        scjepa.BioJEPA.setup_anndata(adata, perturbation_key="perturbation")
    assert _untouched(adata) == before


def test_nan_and_inf_refused(adata):
    adata.layers["counts"] = adata.layers["counts"].copy()
    adata.layers["counts"].data[3] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        scjepa.BioJEPA.setup_anndata(adata, **SETUP)
    adata.layers["counts"].data[3] = np.inf
    with pytest.raises(ValueError, match="NaN or infinite"):
        scjepa.BioJEPA.setup_anndata(adata, **SETUP)


def test_empty_anndata_refused(adata):
    with pytest.raises(ValueError, match="empty"):
        scjepa.BioJEPA.setup_anndata(adata[:0].copy(), **SETUP)


def test_time_key_validated(adata):
    adata.obs["time"] = 1.0
    with pytest.raises(ValueError, match="single time point"):
        scjepa.BioJEPA.setup_anndata(adata, **SETUP, time_key="time")
    adata.obs["time"] = np.where(np.arange(adata.n_obs) % 2, 1.0, np.nan)
    with pytest.raises(ValueError, match="NaN"):
        scjepa.BioJEPA.setup_anndata(adata, **SETUP, time_key="time")


def test_perturbed_gene_without_features_refused(adata):
    scjepa.BioJEPA.setup_anndata(adata, **SETUP)
    import pandas as pd

    features = pd.DataFrame(np.ones((2, 3)), index=["G0000", "G0001"])
    with pytest.raises(KeyError, match="No perturbation features"):
        scjepa.BioJEPA(adata, perturbation_features=features)
