"""Chromatin accessibility (ATAC) next to RNA: data, metric, baselines, model."""

import numpy as np
import pytest
import scvi
import torch
from anndata import AnnData
from mudata import MuData
from scipy import sparse
from tests.conftest import train_paired_model

import scjepa
from scjepa.metrics import feature_auroc, feature_pearson, log_normalized_matrix

SETUP = {"rna_layer": "counts", "atac_layer": "counts", "batch_key": "batch"}


def small_multiome(seed: int = 0) -> MuData:
    return scjepa.datasets.multiome_demo(n_cells=600, n_genes=120, n_peaks=300, seed=seed)


@pytest.fixture(scope="module")
def trained_multiome():
    """A tiny BioJEPA trained for real on RNA + ATAC, with a fifth of the cells held out."""
    scvi.settings.seed = 0
    mdata = small_multiome()
    held = np.random.default_rng(0).random(mdata.n_obs) < 0.2
    train = mdata[~held].copy()
    model = train_paired_model(train, **SETUP)
    return model, train, mdata[held].copy()


def test_multiome_demo_accessibility_follows_cell_state():
    mdata = scjepa.datasets.multiome_demo(n_cells=1500, n_genes=200, n_peaks=400, seed=1)
    rna, atac = mdata["rna"], mdata["atac"]
    assert set(mdata.mod) == {"rna", "atac"} and atac.n_vars == 400
    assert list(rna.obs_names) == list(atac.obs_names) == list(mdata.obs_names)
    assert sparse.issparse(atac.X) and atac.X.min() >= 0
    assert np.array_equal(atac.X.data, np.round(atac.X.data))
    # sparse, as ATAC is: most accessible regions of a cell yield no fragment
    detected = (atac.X > 0).mean()
    accessible = atac.layers["accessible"].mean()
    assert 0.03 < detected < 0.3 and detected < 0.6 * accessible
    assert not ((atac.X > 0).toarray() & (atac.layers["accessible"].toarray() == 0)).any()
    # promoters open with their gene's expression, cell-type regions in their cell type
    promoters = np.flatnonzero(atac.var["kind"] == "promoter")
    genes = [rna.var_names.get_loc(g) for g in atac.var["gene"].iloc[promoters]]
    gene_values = rna.X.toarray()[:, genes]
    state = atac.layers["accessible"].toarray()
    assert np.nanmedian(feature_pearson(gene_values, state[:, promoters])) > 0.1
    typed = np.flatnonzero(atac.var["kind"] == "cell_type")
    by_type = mdata.obs.groupby("cell_type", observed=True).indices
    fraction = np.stack([state[rows][:, typed].mean(axis=0) for rows in by_type.values()])
    assert np.median(fraction.max(axis=0) - np.median(fraction, axis=0)) > 0.3
    again = scjepa.datasets.multiome_demo(n_cells=1500, n_genes=200, n_peaks=400, seed=1)
    assert (again["atac"].X != atac.X).nnz == 0
    with pytest.raises(ValueError, match="n_peaks"):
        scjepa.datasets.multiome_demo(n_peaks=5)


def test_setup_refuses_a_layer_of_a_missing_modality():
    with pytest.raises(ValueError, match="Modality 'protein'"):
        scjepa.BioJEPA.setup_mudata(small_multiome(), protein_layer="counts", **SETUP)


def test_feature_auroc_matches_pairwise_definition(rng):
    predicted = rng.random((40, 3))
    observed = (rng.random((40, 3)) < predicted).astype(float)
    predicted[:5, 0] = predicted[5, 0]  # ties count half
    for j in range(3):
        pos, neg = predicted[observed[:, j] > 0, j], predicted[observed[:, j] == 0, j]
        pairs = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
        np.testing.assert_allclose(feature_auroc(predicted, observed)[j], pairs.mean())
    np.testing.assert_allclose(feature_auroc(np.ones_like(predicted), observed), 0.5)
    observed[:, 2] = 0
    assert np.isnan(feature_auroc(predicted, observed)[2])
    with pytest.raises(ValueError, match="one shape"):
        feature_auroc(predicted[:, :2], observed)


def test_modality_baselines_predict_accessibility():
    mdata = small_multiome()
    rna, atac = mdata["rna"], mdata["atac"]
    held = np.random.default_rng(0).random(rna.n_obs) < 0.25
    observed = atac[held].layers["counts"].toarray()
    for baseline in (
        scjepa.baselines.RidgeModalityBaseline(n_pcs=20, target_values="binary"),
        scjepa.baselines.KNNModalityBaseline(n_pcs=20, target_values="binary"),
    ):
        pred = baseline.fit(rna[~held], atac[~held]).predict_modality(rna[held])
        assert pred.shape == (held.sum(), atac.n_vars)
        assert pred.X.min() >= 0 and pred.X.max() <= 1
        assert pred.uns["scjepa"]["X"] == "accessibility_probability"
        assert np.nanmean(feature_auroc(pred.X, observed)) > 0.6
    with pytest.raises(ValueError, match="target_values"):
        scjepa.baselines.RidgeModalityBaseline(target_values="tfidf")


def test_accessibility_branch_reads_binarised_counts_and_scores_them():
    mean = torch.linspace(-2.0, 1.0, 6)
    branch = scjepa.module.ModalityBranch(6, 4, feature_mean=mean, likelihood="bernoulli")
    counts = torch.tensor([[0.0, 1.0, 3.0, 0.0, 2.0, 1.0], [1.0, 0.0, 0.0, 4.0, 0.0, 0.0]])
    binary = (counts > 0).float()
    # fragment counts only say "accessible": 3 fragments read as 1
    torch.testing.assert_close(branch.encoder_input(counts), branch.encoder_input(binary))
    torch.testing.assert_close(
        branch.encoder_input(counts.to_sparse_csr()).to_dense(), branch.encoder_input(counts)
    )
    torch.testing.assert_close(branch.observed(branch.encoder_input(counts)), binary)
    z = torch.randn(2, 4)
    with torch.no_grad():
        logits = branch.decode(z)
        torch.testing.assert_close(logits, mean + branch.head(z))
        torch.testing.assert_close(branch.values(logits), torch.sigmoid(logits))
        expected = -(binary * torch.log(torch.sigmoid(logits)))
        expected -= (1 - binary) * torch.log(1 - torch.sigmoid(logits))
        torch.testing.assert_close(branch.readout_loss(logits, binary), expected.mean())
    with pytest.raises(ValueError, match="likelihood"):
        scjepa.module.ModalityBranch(6, 4, likelihood="poisson")


def test_accessibility_predicted_from_rna_on_held_out_cells(trained_multiome):
    model, train, held_out = trained_multiome
    assert "peaks: 300" in model._model_summary_string
    assert model.module.protein_branch is None and model.module.atac_branch is not None
    readout = model.history["atac_readout_loss_train"].to_numpy(dtype=float).ravel()
    assert np.isfinite(readout).all() and readout[-1] < readout[0]
    # the head starts from each region's accessible fraction in the training cells
    fraction = np.clip((train["atac"].layers["counts"] > 0).mean(axis=0).A1, 1e-4, 1 - 1e-4)
    np.testing.assert_allclose(
        model.module.atac_branch.feature_mean.numpy(), np.log(fraction / (1 - fraction)), rtol=1e-4
    )
    pred = model.predict_modality(held_out["rna"].copy(), target="atac")
    assert pred.shape == (held_out.n_obs, 300)
    assert list(pred.var_names) == list(train["atac"].var_names)
    assert list(pred.var["kind"]) == list(train["atac"].var["kind"])
    assert pred.obsm["X_biojepa"].shape == (held_out.n_obs, 16)
    assert pred.X.min() > 0 and pred.X.max() < 1
    assert pred.uns["scjepa"]["X"] == "accessibility_probability"
    observed = held_out["atac"].layers["counts"].toarray()
    auroc = np.nanmean(feature_auroc(pred.X, observed))
    assert auroc > 0.6  # a region's training frequency alone scores 0.5
    # measured accessibility of the held-out cells is not used
    from_mudata = model.predict_modality(held_out, target="atac")
    np.testing.assert_allclose(from_mudata.X, pred.X, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="without protein"):
        model.predict_modality(held_out["rna"].copy())


def test_multiome_embeddings_and_save_load(trained_multiome, tmp_path):
    model, train, held_out = trained_multiome
    rna = model.get_latent_representation(modality="rna")
    atac = model.get_latent_representation(modality="atac")
    joint = model.get_latent_representation()
    assert rna.shape == atac.shape == joint.shape == (train.n_obs, 16)
    np.testing.assert_allclose(joint, (rna + atac) / 2, rtol=1e-5, atol=1e-6)
    labels = train.obs["cell_type"].to_numpy()
    assert scjepa.metrics.knn_label_accuracy(joint, labels) > 0.6
    with pytest.raises(ValueError, match="without protein"):
        model.get_latent_representation(modality="protein")
    before = model.predict_modality(held_out["rna"].copy(), target="atac").X
    model.save(tmp_path / "model", save_anndata=True)
    loaded = scjepa.BioJEPA.load(tmp_path / "model")
    after = loaded.predict_modality(held_out["rna"].copy(), target="atac").X
    np.testing.assert_allclose(after, before, rtol=1e-5, atol=1e-6)
    # loading onto cells measured by RNA alone keeps the saved region statistics
    again = scjepa.BioJEPA.load(tmp_path / "model", adata=held_out)
    torch.testing.assert_close(
        again.module.atac_branch.feature_mean, model.module.atac_branch.feature_mean
    )


def test_mosaic_cells_without_atac_are_padded_sparse_and_train():
    scvi.settings.seed = 0
    full = small_multiome()
    atac = full["atac"][100:].copy()
    mosaic = MuData({"rna": full["rna"].copy(), "atac": atac})
    scjepa.BioJEPA.setup_mudata(mosaic, **SETUP)
    padded = mosaic["atac"].layers["counts"]
    assert sparse.issparse(padded) and padded.shape == (full.n_obs, atac.n_vars)
    assert padded[:100].nnz == 0
    assert (padded[100:] != atac.layers["counts"]).nnz == 0
    model = scjepa.BioJEPA(mosaic, n_latent=8, n_hidden=16, n_predictor_hidden=16)
    # the head starts from the accessible fractions of the measured cells only
    fraction = np.clip((atac.layers["counts"] > 0).mean(axis=0).A1, 1e-4, 1 - 1e-4)
    np.testing.assert_allclose(
        model.module.atac_branch.feature_mean.numpy(), np.log(fraction / (1 - fraction)), rtol=1e-4
    )
    model.train(max_epochs=2, batch_size=100, enable_progress_bar=False)
    assert np.isfinite(model.history["atac_readout_loss_train"].to_numpy(dtype=float)).all()
    embedding = model.get_latent_representation(modality="atac")
    assert embedding.shape == (full.n_obs, 8) and np.isfinite(embedding).all()


def test_rna_protein_and_atac_in_one_model():
    scvi.settings.seed = 0
    multiome = small_multiome()
    rng = np.random.default_rng(0)
    # proteins following the first genes' counts, so that they carry signal
    counts = multiome["rna"].layers["counts"][:, :8].toarray()
    protein = AnnData(
        X=rng.poisson(5 * counts + 2).astype(np.float32), obs=multiome["rna"].obs.copy()
    )
    protein.var_names = [f"P{i}" for i in range(8)]
    mdata = MuData({"rna": multiome["rna"], "atac": multiome["atac"], "protein": protein})
    scjepa.BioJEPA.setup_mudata(mdata, rna_layer="counts", atac_layer="counts", batch_key="batch")
    model = scjepa.BioJEPA(mdata, n_latent=8, n_hidden=32, n_predictor_hidden=32)
    assert model.module.modality_embedding.num_embeddings == 3
    assert "proteins: 8" in model._model_summary_string
    model.train(max_epochs=2, batch_size=100, enable_progress_bar=False)
    for key in ("protein_readout_loss_train", "atac_readout_loss_train"):
        losses = model.history[key].to_numpy(dtype=float)
        assert np.isfinite(losses).all() and (losses > 0).all()
    rna = multiome["rna"].copy()
    assert model.predict_modality(rna, target="protein").shape == (mdata.n_obs, 8)
    assert model.predict_modality(rna, target="atac").shape == (mdata.n_obs, 300)
    parts = [model.get_latent_representation(modality=m) for m in ("rna", "protein", "atac")]
    np.testing.assert_allclose(
        model.get_latent_representation(), np.mean(parts, axis=0), rtol=1e-5, atol=1e-6
    )
    # proteins can be left out explicitly
    scjepa.BioJEPA.setup_mudata(mdata, modalities={"protein_layer": None}, **SETUP)
    assert scjepa.BioJEPA(mdata, n_latent=8, n_hidden=16).module.protein_branch is None


def test_accessibility_head_reads_rna_axes_linearly():
    mdata = small_multiome()
    scjepa.BioJEPA.setup_mudata(mdata, **SETUP)
    with pytest.raises(ValueError, match="atac_linear_path"):
        scjepa.BioJEPA(mdata, n_latent=8, n_hidden=16, atac_linear_path=True)
    model = scjepa.BioJEPA(mdata, n_latent=8, n_hidden=16, n_input_components=10)
    linear = model.module.atac_branch.linear_path
    assert linear.weight.shape == (mdata["atac"].n_vars, 10) and not linear.weight.any()
    model.train(max_epochs=2, batch_size=100, enable_progress_bar=False)
    assert linear.weight.abs().sum() > 0
    off = scjepa.BioJEPA(
        mdata, n_latent=8, n_hidden=16, n_input_components=10, atac_linear_path=False
    )
    assert off.module.atac_branch.linear_path is None


def test_rna_counts_of_protein_baseline_unchanged_by_atac_support():
    # log-normalised protein targets of the regression baselines stay as they were
    mdata = scjepa.datasets.citeseq_demo(n_cells=300, n_genes=120, n_proteins=10, seed=0)
    baseline = scjepa.baselines.RidgeModalityBaseline(n_pcs=10)
    pred = baseline.fit(mdata["rna"], mdata["protein"]).predict_modality(mdata["rna"])
    assert pred.uns["scjepa"]["X"] == "log1p_normalized"
    target = np.asarray(log_normalized_matrix(mdata["protein"], "counts"))
    assert np.nanmean(feature_pearson(pred.X, target)) > 0.3


def test_multivi_baseline_imputes_accessibility_of_rna_only_cells():
    mdata = small_multiome()
    rna, atac = mdata["rna"], mdata["atac"]
    held = np.random.default_rng(0).random(rna.n_obs) < 0.25
    baseline = scjepa.baselines.MultiVIModalityBaseline(
        batch_key="batch", max_epochs=60, train_kwargs={"lr": 1e-3}
    )
    with pytest.raises(RuntimeError, match="fit"):
        baseline.predict_modality(rna[held])
    with pytest.raises(ValueError, match="RNA cells"):
        baseline.fit(rna[held], atac)
    pred = baseline.fit(rna[~held], atac[~held]).predict_modality(rna[held], seed=0)
    assert pred.shape == (held.sum(), atac.n_vars)
    assert list(pred.obs_names) == list(rna.obs_names[held])
    assert list(pred.var_names) == list(atac.var_names)
    assert pred.uns["scjepa"]["method"] == "MultiVI"
    assert pred.X.min() >= 0 and pred.X.max() <= 1
    assert baseline.train_seconds_ > 0 and baseline.latent_.shape[0] == (~held).sum()
    observed = atac[held].layers["counts"].toarray()
    assert np.nanmean(feature_auroc(pred.X, observed)) > 0.55
