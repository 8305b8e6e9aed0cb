import warnings

import numpy as np
import pytest
import scvi
import torch
from anndata import AnnData
from mudata import MuData
from tests.conftest import train_paired_model

import scjepa

SETUP = {"rna_layer": "counts", "protein_layer": "counts", "batch_key": "batch"}


def small_citeseq(seed: int = 0) -> MuData:
    return scjepa.datasets.citeseq_demo(n_cells=500, n_genes=120, n_proteins=10, seed=seed)


@pytest.fixture(scope="module")
def trained_citeseq():
    """A tiny BioJEPA trained for real on RNA + protein, with a quarter of cells held out."""
    scvi.settings.seed = 0
    mdata = small_citeseq()
    held = np.random.default_rng(0).random(mdata.n_obs) < 0.25
    train = mdata[~held].copy()
    model = train_paired_model(train, **SETUP)
    return model, train, mdata[held].copy()


def test_setup_mudata_refuses_bad_input():
    mdata = small_citeseq()
    with pytest.raises(ValueError, match="Modality 'adt'"):
        scjepa.BioJEPA.setup_mudata(mdata, modalities={"protein_layer": "adt"}, **SETUP)
    # asking for ATAC that the MuData lacks, or for no modality next to RNA
    with pytest.raises(ValueError, match="Modality 'atac'"):
        scjepa.BioJEPA.setup_mudata(mdata, atac_layer="counts", **SETUP)
    with pytest.raises(ValueError, match="neither"):
        scjepa.BioJEPA.setup_mudata(mdata, modalities={"protein_layer": None}, **SETUP)
    with pytest.raises(TypeError, match="MuData"):
        scjepa.BioJEPA.setup_mudata(mdata["rna"], **SETUP)
    with pytest.raises(KeyError, match="not_a_column"):
        scjepa.BioJEPA.setup_mudata(mdata, **{**SETUP, "batch_key": "not_a_column"})
    mdata["protein"].layers["counts"] = mdata["protein"].layers["counts"] + 0.5
    with pytest.raises(ValueError, match="non-integer"):
        scjepa.BioJEPA.setup_mudata(mdata, **SETUP)
    # cells without RNA cannot be modelled
    partial = MuData({"rna": small_citeseq()["rna"][:400].copy(), "protein": mdata["protein"]})
    with pytest.raises(ValueError, match="needs RNA"):
        scjepa.BioJEPA.setup_mudata(partial, **SETUP)


def test_mosaic_cells_without_protein_train_and_get_proteins():
    scvi.settings.seed = 0
    full = small_citeseq()
    protein = full["protein"][: full.n_obs - 100].copy()
    mosaic = MuData({"rna": full["rna"].copy(), "protein": protein})
    scjepa.BioJEPA.setup_mudata(mosaic, **SETUP)
    assert mosaic["protein"].n_obs == full.n_obs  # padded with unmeasured rows
    unmeasured = mosaic["protein"].layers["counts"][-100:]
    assert np.all(unmeasured == 0)
    model = scjepa.BioJEPA(mosaic, n_latent=8, n_hidden=16, n_predictor_hidden=16)
    # the head is standardised by the measured cells only, not the unmeasured (zero) rows
    measured = scjepa.metrics.log_normalized_matrix(protein, "counts")
    branch = model.module.protein_branch
    np.testing.assert_allclose(branch.feature_mean.numpy(), measured.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(branch.feature_scale.numpy(), measured.std(axis=0), rtol=1e-4)
    model.train(max_epochs=2, batch_size=100, enable_progress_bar=False)
    assert np.isfinite(model.history["modality_loss_train"].to_numpy(dtype=float)).all()
    embedding = model.get_latent_representation(modality="protein")
    assert embedding.shape == (full.n_obs, 8) and np.isfinite(embedding).all()


def test_joint_embeddings_and_protein_prediction(trained_citeseq):
    model, train, held_out = trained_citeseq
    assert "proteins: 10" in model._model_summary_string
    for key in ("modality_loss_train", "protein_readout_loss_train"):
        assert np.isfinite(model.history[key].to_numpy(dtype=float)).all()
    rna = model.get_latent_representation(modality="rna")
    protein = model.get_latent_representation(modality="protein")
    joint = model.get_latent_representation()
    assert rna.shape == protein.shape == joint.shape == (train.n_obs, 16)
    np.testing.assert_allclose(joint, (rna + protein) / 2, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="without atac"):
        model.get_latent_representation(modality="atac")
    with pytest.raises(ValueError, match="modality"):
        model.get_latent_representation(modality="chromatin")

    pred = model.predict_modality(held_out["rna"].copy())
    assert pred.shape == (held_out.n_obs, 10)
    assert list(pred.var_names) == list(train["protein"].var_names)
    assert list(pred.obs_names) == list(held_out.obs_names)
    assert pred.obsm["X_biojepa"].shape == (held_out.n_obs, 16)
    assert np.isfinite(pred.X).all() and pred.X.min() >= 0
    # measured proteins of the held-out cells are not used: a MuData gives the same prediction
    from_mudata = model.predict_modality(held_out)
    np.testing.assert_allclose(from_mudata.X, pred.X, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="genes differ"):
        model.predict_modality(held_out["rna"][:, :50].copy())
    with pytest.raises(ValueError, match="without atac"):
        model.predict_modality(held_out["rna"].copy(), target="atac")
    with pytest.raises(ValueError, match="`target` must be"):
        model.predict_modality(held_out["rna"].copy(), target="adt")


def test_predicted_proteins_follow_measured_ones_on_held_out_cells(trained_citeseq):
    model, train, held_out = trained_citeseq
    observed = np.asarray(scjepa.metrics.log_normalized_matrix(held_out["protein"], "counts"))
    predicted = model.predict_modality(held_out["rna"].copy()).X
    pearson = np.nanmean(scjepa.metrics.feature_pearson(predicted, observed))
    training_means = np.asarray(
        scjepa.metrics.log_normalized_matrix(train["protein"], "counts")
    ).mean(axis=0)
    constant_rmse = scjepa.metrics.feature_rmse(
        np.broadcast_to(training_means, observed.shape), observed
    ).mean()
    assert pearson > 0.3
    assert scjepa.metrics.feature_rmse(predicted, observed).mean() < constant_rmse


def test_multimodal_model_survives_save_and_load(trained_citeseq, tmp_path):
    model, train, held_out = trained_citeseq
    before = model.predict_modality(held_out["rna"].copy()).X
    model.save(tmp_path / "model", save_anndata=True)
    assert (tmp_path / "model" / "mdata.h5mu").exists()
    loaded = scjepa.BioJEPA.load(tmp_path / "model")
    np.testing.assert_allclose(
        loaded.predict_modality(held_out["rna"].copy()).X, before, rtol=1e-5, atol=1e-5
    )
    again = scjepa.BioJEPA.load(tmp_path / "model", adata=train)
    np.testing.assert_allclose(
        again.get_latent_representation(), model.get_latent_representation(), rtol=1e-5, atol=1e-5
    )


def test_rna_only_model_cannot_predict_proteins(trained):
    model, data = trained
    with pytest.raises(ValueError, match="setup_mudata"):
        model.predict_modality(AnnData(data.X))
    with pytest.raises(ValueError, match="RNA alone"):
        model.get_latent_representation(modality="protein")


def test_protein_head_is_standardised_and_loads_unstandardised_weights():
    import torch

    mean, scale = torch.linspace(2.0, 5.0, 10), torch.linspace(0.5, 1.5, 10)
    branch = scjepa.module.ModalityBranch(10, 8, feature_mean=mean, feature_scale=scale)
    z = torch.randn(4, 8)
    with torch.no_grad():
        torch.testing.assert_close(branch.decode(z), mean + scale * branch.head(z))
        # weights saved before the head was standardised carry no statistics: read as 0 and 1
        old = {k: v for k, v in branch.state_dict().items() if not k.startswith("feature_")}
        reloaded = scjepa.module.ModalityBranch(10, 8, feature_mean=mean, feature_scale=scale)
        reloaded.load_state_dict(old)
        torch.testing.assert_close(reloaded.decode(z), branch.head(z))
    with pytest.raises(ValueError, match="shape"):
        scjepa.module.ModalityBranch(10, 8, feature_mean=torch.zeros(3))


def test_principal_axes_encoder_on_mudata_loads_without_protein_counts(tmp_path):
    scvi.settings.seed = 0
    mdata = small_citeseq(seed=1)
    scjepa.BioJEPA.setup_mudata(mdata, **SETUP)
    with pytest.raises(ValueError, match="set `n_input_components` too"):
        scjepa.BioJEPA(mdata, n_latent=8, n_hidden=32, protein_linear_path=True)
    no_path = scjepa.BioJEPA(
        mdata, n_latent=8, n_hidden=32, n_input_components=10, protein_linear_path=False
    )
    assert no_path.module.protein_branch.linear_path is None
    model = scjepa.BioJEPA(
        mdata, n_latent=8, n_hidden=32, n_predictor_hidden=32, n_input_components=10
    )
    assert model.module.encoder.reads_axes
    # the protein head reads the axes' coordinates linearly too, starting from zero
    linear = model.module.protein_branch.linear_path
    assert linear.weight.shape == (mdata["protein"].n_vars, 10)
    assert not linear.weight.any()
    model.train(max_epochs=5, batch_size=96, enable_progress_bar=False)
    assert linear.weight.abs().sum() > 0
    rna = mdata["rna"].copy()
    before = model.predict_modality(rna).X
    assert before.shape == (mdata.n_obs, mdata["protein"].n_vars) and np.isfinite(before).all()
    # predictions add the linear read-out of the cells' axis coordinates to the embedding's
    branch = model.module.protein_branch
    embeddings = torch.as_tensor(model.predict_modality(rna).obsm["X_biojepa"])
    counts = torch.as_tensor(rna.layers["counts"].toarray())
    with torch.no_grad():
        normalized = torch.as_tensor(scjepa.data.log_normalize(counts.numpy()))
        embedding_part = branch.head(embeddings)
        linear_part = branch.linear_path(model.module.encoder.axes(normalized))
    expected = branch.feature_mean + branch.feature_scale * (embedding_part + linear_part)
    np.testing.assert_allclose(before, expected.clamp(min=0).numpy(), rtol=1e-4, atol=1e-4)
    assert linear_part.abs().mean() > 1e-2
    model.save(tmp_path / "model")
    # cells measured by RNA alone: the saved axes and protein statistics are used as they are
    unmeasured = mdata.copy()
    unmeasured["protein"].X = np.zeros_like(unmeasured["protein"].X)
    unmeasured["protein"].layers["counts"] = unmeasured["protein"].X.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        loaded = scjepa.BioJEPA.load(tmp_path / "model", adata=unmeasured)
    np.testing.assert_allclose(loaded.predict_modality(rna).X, before, rtol=1e-5, atol=1e-5)
