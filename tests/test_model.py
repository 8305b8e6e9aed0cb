import numpy as np
import pandas as pd
import pytest
import scvi
import torch
from tests.conftest import controls_of, perturbed_genes, small_perturbseq

import scjepa
from scjepa.data._direct_effect import apply_direct_effect
from scjepa.data._features import log_normalize
from scjepa.data._matrix import dense
from scjepa.module._normalize import log_normalize as torch_log_normalize

DIAGNOSTICS = [
    "masked_prediction_loss_train",
    "perturbation_loss_train",
    "variance_loss_train",
    "covariance_loss_train",
    "embedding_std_mean_train",
    "embedding_std_min_train",
    "effective_rank_train",
    "delta_cosine_between_perturbations_train",
    "neighbour_loss_train",
    "validation_loss",
]


def test_training_history_and_latent(trained):
    model, data = trained
    assert model.is_trained
    for key in DIAGNOSTICS:
        assert key in model.history, key
        assert len(model.history[key]) == 3
    assert np.isfinite(model.history["train_loss"].to_numpy(dtype=float)).all()
    # the leave-one-out weights that embed unseen genes were trained
    encoder = model.module.perturbation_encoder
    assert not torch.allclose(encoder.feature_weights.cpu(), torch.ones(encoder.features.shape[1]))
    z = model.get_latent_representation()
    assert z.shape == (data.n_obs, 16)
    assert np.isfinite(z).all()
    assert z.std(axis=0).min() > 1e-3  # no collapsed dimension
    sub = model.get_latent_representation(indices=np.arange(10), batch_size=4)
    np.testing.assert_allclose(sub, z[:10], rtol=1e-5, atol=1e-5)


def test_predict_perturbation_layout(trained):
    model, data = trained
    controls = controls_of(data)
    singles = [p for p in data.obs.perturbation.cat.categories if p != "control" and "+" not in p]
    pairs = [p for p in data.obs.perturbation.cat.categories if "+" in p]
    names = [singles[0], pairs[0]]
    pred = model.predict_perturbation(names, adata=controls, key_added="X_pred")
    assert pred.shape == (2 * controls.n_obs, data.n_vars)
    assert list(pred.var_names) == list(data.var_names)
    assert list(pred.obs["perturbation"].cat.categories) == names
    assert (pred.obs["perturbation"].value_counts() == controls.n_obs).all()
    assert set(pred.obs["source_cell"]) == set(controls.obs_names)
    assert pred.obsm["X_biojepa"].shape == (pred.n_obs, 16)
    assert pred.uns["scjepa"]["X"] == "log1p_normalized"
    assert (pred.X >= 0).all() and np.isfinite(pred.X).all()
    assert controls.obsm[f"X_pred_{names[0]}"].shape == (controls.n_obs, 16)
    # the predicted change differs between perturbations
    means = pred.to_df().groupby(pred.obs["perturbation"].to_numpy()).mean()
    assert not np.allclose(means.iloc[0], means.iloc[1])


def test_unseen_combination_and_unseen_gene(trained):
    model, data = trained
    controls = controls_of(data)
    singles = [p for p in data.obs.perturbation.cat.categories if p != "control" and "+" not in p]
    seen_pairs = set(data.obs.perturbation.cat.categories)
    new_pair = next(
        f"{a}+{b}" for a in singles for b in singles if a < b and f"{a}+{b}" not in seen_pairs
    )
    never_perturbed = next(g for g in data.var_names if g not in singles)
    pred = model.predict_perturbation(
        [new_pair, never_perturbed, f"{never_perturbed}+{singles[0]}"],
        adata=controls,
        expression="mean",
    )
    assert pred.n_obs == 3 * controls.n_obs
    assert np.isfinite(pred.X).all()
    # the direct effect on the targeted gene is applied to a gene never perturbed in training
    fold, added = model.target_gene_direct_effect_
    assert 0 < fold < 1 and added == 0  # the demo is CRISPR interference
    gene = list(data.var_names).index(never_perturbed)
    observed = pred[pred.obs.perturbation == never_perturbed].X[:, gene].mean()
    reference = model.predict_perturbation(singles[0], adata=controls, expression="mean")
    assert observed < reference.X[:, gene].mean()
    # with "shift" the target column is each source cell's own expression under that effect
    shifted = model.predict_perturbation(never_perturbed, adata=controls)
    own = scjepa.data.log_normalize(controls.layers["counts"]).toarray()[:, gene]
    np.testing.assert_allclose(
        shifted.X[:, gene], apply_direct_effect(own, model.target_gene_direct_effect_), atol=1e-5
    )


def test_prediction_modes(trained):
    model, data = trained
    controls = controls_of(data)[:20]
    name = data.obs.perturbation.cat.categories[1]
    sampled = model.predict_perturbation(name, adata=controls, expression="sample", seed=1)
    assert "counts" in sampled.layers
    counts = sampled.layers["counts"]
    assert np.array_equal(counts, np.round(counts))
    again = model.predict_perturbation(name, adata=controls, expression="sample", seed=1)
    np.testing.assert_array_equal(sampled.X, again.X)
    transported = model.predict_perturbation(name, adata=controls, expression="transport", seed=1)
    moved = transported.layers["counts"]
    assert np.array_equal(moved, np.round(moved)) and moved.min() >= 0
    # X holds the moved counts log-normalised, except the targets, which get their direct effect
    others = ~np.isin(data.var_names, name.split("+"))
    np.testing.assert_allclose(
        transported.X[:, others], scjepa.data.log_normalize(moved)[:, others], atol=1e-5
    )
    # counts move where, and the way, the decoded state changes: under the source law they
    # would map to themselves
    source = np.asarray(controls.layers["counts"].toarray())
    assert not np.array_equal(moved[:, others], source[:, others])
    decoded_change = (
        model.predict_perturbation(name, adata=controls).X - scjepa.data.log_normalize(source)
    ).mean(axis=0)[others]
    transported_change = (moved - source).mean(axis=0)[others]
    assert np.corrcoef(decoded_change, transported_change)[0, 1] > 0.3
    with pytest.raises(ValueError, match="expression"):
        model.predict_perturbation(name, adata=controls, expression="median")


def test_negative_binomial_transport_is_the_monotone_map_between_the_two_laws():
    from scjepa.model._negative_binomial import (
        count_quantiles,
        negative_binomial_quantile,
        sample_negative_binomial,
    )

    def transport(counts, mean_from, mean_to, theta, rng):
        return negative_binomial_quantile(
            count_quantiles(counts, mean_from, theta, rng), mean_to, theta
        )

    rng = np.random.default_rng(0)
    theta = np.array([2.0, 8.0])
    mean_from = np.tile([3.0, 10.0], (20000, 1))
    counts = sample_negative_binomial(mean_from, theta, rng)
    # the same law: every count maps to itself
    same = transport(counts, mean_from, mean_from, theta, rng)
    np.testing.assert_array_equal(same, counts)
    # a new mean: the moved counts follow NB(mean_to, θ), variance μ + μ² / θ
    mean_to = np.tile([12.0, 0.5], (20000, 1))
    moved = transport(counts, mean_from, mean_to, theta, rng)
    np.testing.assert_allclose(moved.mean(axis=0), [12.0, 0.5], rtol=0.05)
    np.testing.assert_allclose(moved.var(axis=0), [12.0 + 72.0, 0.5 + 0.25 / 8], rtol=0.1)
    # zeros rise where the mean does, unlike a shift of log-expression clipped at zero
    assert (moved[counts[:, 0] == 0, 0] > 0).mean() > 0.5
    # monotone: a larger count never lands below a smaller one
    for gene in range(2):
        low, high = (
            counts[:, gene] < np.median(counts[:, gene]),
            counts[:, gene] > np.median(counts[:, gene]),
        )
        assert moved[low, gene].max() <= moved[high, gene].min()


def test_negative_binomial_quantile_equals_scipy_inverse_on_skewed_and_wide_laws():
    from scipy import stats

    from scjepa.model._negative_binomial import negative_binomial_cdf, negative_binomial_quantile

    rng = np.random.default_rng(3)
    # means from 1e-4 to ~1e5 and dispersions from very skewed (θ = 0.05) to near Poisson
    mean = np.exp(rng.normal(0.0, 3.0, size=(300, 60)))
    theta = np.exp(rng.normal(0.0, 1.5, size=60))
    quantile = np.clip(rng.random(mean.shape), 1e-9, 1 - 1e-9)
    quantile[:3] = [[1e-9], [0.5], [1 - 1e-9]]
    expected = stats.nbinom.ppf(quantile, theta, theta / (theta + mean))
    np.testing.assert_array_equal(negative_binomial_quantile(quantile, mean, theta), expected)
    counts = expected[:50]
    np.testing.assert_allclose(
        negative_binomial_cdf(counts, mean[:50], theta),
        stats.nbinom.cdf(counts, theta, theta / (theta + mean[:50])),
        rtol=1e-10,
        atol=1e-12,
    )
    assert np.all(negative_binomial_cdf(-np.ones((2, 60)), mean[:2], theta) == 0)


def test_prediction_errors(trained):
    model, data = trained
    controls = controls_of(data)
    columns_before = list(controls.obs.columns)
    with pytest.raises(KeyError, match="did you mean"):
        model.predict_perturbation(["G00001"], adata=controls, key_added="bad")
    with pytest.raises(KeyError, match="perturbation_features"):
        model.predict_perturbation(["DRUG_X"], adata=controls)
    assert "bad" not in controls.obsm and list(controls.obs.columns) == columns_before
    with pytest.raises(ValueError, match="genes differ"):
        model.predict_perturbation(["G0001"], adata=controls[:, :-1].copy())
    with pytest.raises(ValueError, match="genes differ"):
        model.get_latent_representation(controls[:, ::-1].copy())
    with pytest.raises(ValueError, match="no cells"):
        model.predict_perturbation(["G0001"], adata=controls[:0].copy())
    with pytest.raises(ValueError, match="dose"):
        model.predict_perturbation(["G0001"], adata=controls, dose=1.0)


def test_save_load_round_trip(trained, tmp_path):
    model, data = trained
    controls = controls_of(data)
    name = [p for p in data.obs.perturbation.cat.categories if "+" in p][0]
    z = model.get_latent_representation()
    pred = model.predict_perturbation(name, adata=controls)
    perturbed = perturbed_genes(data)
    unseen = next(gene for gene in data.var_names if gene not in perturbed)
    pred_unseen = model.predict_perturbation(unseen, adata=controls)
    model.save(tmp_path / "model", save_anndata=True)
    with pytest.raises(ValueError, match="already exists"):
        model.save(tmp_path / "model")
    # the file holds only tensors and plain text: it loads without unpickling
    saved = torch.load(tmp_path / "model" / "model.pt", weights_only=True)
    assert set(saved) >= {"model_state_dict", "var_names", "attributes_json"}

    loaded = scjepa.BioJEPA.load(tmp_path / "model", adata=data)
    np.testing.assert_allclose(loaded.get_latent_representation(), z, rtol=1e-6, atol=1e-6)
    again = loaded.predict_perturbation(name, adata=controls)
    np.testing.assert_allclose(again.X, pred.X, rtol=1e-6, atol=1e-6)
    # a gene never perturbed is embedded from the perturbed ones with the learned weights
    again = loaded.predict_perturbation(unseen, adata=controls)
    np.testing.assert_allclose(again.X, pred_unseen.X, rtol=1e-6, atol=1e-6)
    assert loaded.is_trained
    assert loaded.target_gene_direct_effect_ == model.target_gene_direct_effect_
    assert loaded.target_gene_direct_effects_ == model.target_gene_direct_effects_ != {}
    np.testing.assert_array_equal(loaded.mean_perturbation_change_, model.mean_perturbation_change_)
    pd.testing.assert_frame_equal(loaded.history["train_loss"], model.history["train_loss"])

    from_disk = scjepa.BioJEPA.load(tmp_path / "model")
    np.testing.assert_allclose(from_disk.get_latent_representation(), z, rtol=1e-6, atol=1e-6)

    with pytest.raises(ValueError, match="genes differ"):
        scjepa.BioJEPA.load(tmp_path / "model", adata=data[:, :-1].copy())


class Payload:
    """Any class instance: unpickling it could run code."""


def test_load_refuses_pickled_objects(tmp_path):
    (tmp_path / "bad").mkdir()
    torch.save({"attributes_json": "{}", "evil": Payload()}, tmp_path / "bad" / "model.pt")
    with pytest.raises(ValueError, match="cannot be loaded safely"):
        scjepa.BioJEPA.load(tmp_path / "bad", adata=small_perturbseq())


def test_user_features_dose_and_dense_input(tmp_path):
    scvi.settings.seed = 0
    data = small_perturbseq()
    data.X = data.layers["counts"].toarray()  # dense counts in X
    # drug-like perturbations described by user features, with doses
    drugs = {g: f"drug_{i}" for i, g in enumerate(data.obs.perturbation.cat.categories)}
    drugs["control"] = "control"
    data.obs["compound"] = data.obs.perturbation.map(
        lambda p: "+".join(drugs.get(m, m) for m in p.split("+")) if p != "control" else "control"
    ).astype(str)
    data.obs["dose"] = np.where(data.obs.compound == "control", 0.0, 10.0)
    names = sorted({m for c in data.obs.compound.unique() if c != "control" for m in c.split("+")})
    features = pd.DataFrame(
        np.random.default_rng(0).normal(size=(len(names) + 1, 5)), index=names + ["drug_new"]
    )
    scjepa.BioJEPA.setup_anndata(data, perturbation_key="compound", dose_key="dose")
    model = scjepa.BioJEPA(data, n_latent=8, n_hidden=16, perturbation_features=features)
    model.train(max_epochs=2, batch_size=64, enable_progress_bar=False)
    controls = data[data.obs.compound == "control"].copy()
    low = model.predict_perturbation("drug_new", adata=controls, dose=1.0, expression="mean")
    high = model.predict_perturbation("drug_new", adata=controls, dose=100.0, expression="mean")
    assert low.shape == (controls.n_obs, data.n_vars)
    assert "compound" in low.obs and "perturbation" in low.obs
    assert not np.allclose(low.obsm["X_biojepa"], high.obsm["X_biojepa"])
    with pytest.raises(ValueError, match="pass `dose=`"):
        model.predict_perturbation("drug_new", adata=controls)
    # user features and doses survive saving: the feature table travels with the weights
    model.save(tmp_path / "drugs")
    loaded = scjepa.BioJEPA.load(tmp_path / "drugs", adata=data)
    again = loaded.predict_perturbation("drug_new", adata=controls, dose=1.0, expression="mean")
    np.testing.assert_allclose(again.X, low.X, rtol=1e-5, atol=1e-6)


def test_model_without_perturbations_embeds_but_refuses_prediction():
    data = small_perturbseq()
    scjepa.BioJEPA.setup_anndata(data, layer="counts", batch_key="batch")
    model = scjepa.BioJEPA(data, n_latent=8, n_hidden=16)
    model.train(max_epochs=1, batch_size=64, enable_progress_bar=False)
    assert model.get_latent_representation().shape == (data.n_obs, 8)
    with pytest.raises(ValueError, match="without `perturbation_key`"):
        model.predict_perturbation("G0001", adata=data)


def test_training_without_validation_cells(adata):
    scjepa.BioJEPA.setup_anndata(adata, layer="counts", perturbation_key="perturbation")
    model = scjepa.BioJEPA(adata, n_latent=8, n_hidden=16, n_predictor_hidden=16)
    with pytest.raises(ValueError, match="validation cells"):
        model.train(max_epochs=1, train_size=1.0, early_stopping=True)
    model.train(max_epochs=1, batch_size=128, train_size=1.0, enable_progress_bar=False)
    assert "train_loss" in model.history and "validation_loss" not in model.history


def test_encoder_reading_principal_axes(tmp_path):
    scvi.settings.seed = 0
    data = small_perturbseq()
    scjepa.BioJEPA.setup_anndata(data, layer="counts", batch_key="batch")
    with pytest.raises(ValueError, match="must be positive"):
        scjepa.BioJEPA(data, n_input_components=0)
    with pytest.raises(TypeError, match="must be an integer"):
        scjepa.BioJEPA(data, n_input_components=2.5)
    model = scjepa.BioJEPA(data, n_latent=8, n_hidden=16, n_input_components=6)
    assert "input axes: 6" in model._model_summary_string
    assert model.module.encoder.reads_axes
    assert not scjepa.BioJEPA(data, n_latent=8, n_hidden=16).module.encoder.reads_axes
    axes = model.module.encoder.input[0]
    # the fixed axes are the training cells' principal axes: orthogonal, one common scale
    gram = (axes.axes.T @ axes.axes).numpy()
    np.testing.assert_allclose(gram, gram[0, 0] * np.eye(6), atol=1e-4 * gram[0, 0])
    expression = scjepa.data.log_normalize(data.layers["counts"]).toarray()
    coordinates = axes(torch.as_tensor(expression)).numpy()
    np.testing.assert_allclose(coordinates.mean(axis=0), 0.0, atol=1e-4)
    spread = coordinates.std(axis=0)
    assert np.all(np.diff(spread) <= 1e-5) and np.isclose(np.mean(spread**2), 1.0, rtol=1e-3)
    # sparse and dense batches give the same coordinates
    sparse_batch = torch.as_tensor(expression).to_sparse_csr()
    np.testing.assert_allclose(axes(sparse_batch).numpy(), coordinates, rtol=1e-4, atol=1e-4)
    # the masked view the encoder reads through the axes has its kept genes rescaled
    module = model.module.eval()
    counts = torch.as_tensor(data.layers["counts"][:32].toarray())
    _, rescaled = torch_log_normalize(
        counts, module.mask_ratio, generator=torch.Generator().manual_seed(0), rescale=True
    )
    with torch.no_grad():
        torch.testing.assert_close(module.inference(counts)["z_masked"], module.encoder(rescaled))
    # the axes stay fixed while the layers after them learn
    before = axes.axes.clone()
    model.train(max_epochs=3, batch_size=64, enable_progress_bar=False)
    assert torch.equal(model.module.encoder.input[0].axes, before)
    assert torch.equal(model.module.target_encoder.input[0].axes, before)
    z = model.get_latent_representation()
    assert z.shape == (data.n_obs, 8) and z.std(axis=0).min() > 1e-3
    # loading keeps the saved axes instead of refitting them, even on a few other cells
    model.save(tmp_path / "axes")
    few = data[:5].copy()
    loaded = scjepa.BioJEPA.load(tmp_path / "axes", adata=few)
    assert torch.equal(loaded.module.encoder.input[0].axes, before)
    np.testing.assert_allclose(loaded.get_latent_representation(), z[:5], rtol=1e-5, atol=1e-5)


def test_perturbation_neighbours_say_what_an_unseen_gene_leans_on(trained):
    model, data = trained
    perturbed = perturbed_genes(data)
    unseen = next(gene for gene in data.var_names if gene not in perturbed)
    weights = model.perturbation_neighbours(unseen, top_n=None)
    assert set(weights.index) == perturbed
    np.testing.assert_allclose(weights.sum(), 1.0, rtol=1e-5)
    assert weights.is_monotonic_decreasing
    assert len(model.perturbation_neighbours(unseen, top_n=3)) == 3
    # an unseen gene's embedding is the weighted mean of the perturbed genes' embeddings
    encoder = model.module.perturbation_encoder
    vocabulary = list(model.perturbation_vocabulary_)
    with torch.no_grad():
        rows = torch.tensor([vocabulary.index(name) for name in weights.index])
        expected = torch.as_tensor(weights.to_numpy()) @ encoder.member(encoder.features[rows])
        got = encoder.embed_entities(torch.tensor([vocabulary.index(unseen)]))[0]
    torch.testing.assert_close(got, expected.float(), rtol=1e-4, atol=1e-5)
    seen = sorted(perturbed)[0]
    own_left_out = model.perturbation_neighbours(seen, top_n=None)
    assert seen not in own_left_out.index
    np.testing.assert_allclose(own_left_out.sum(), 1.0, rtol=1e-5)
    with pytest.raises(ValueError, match="one perturbed entity"):
        model.perturbation_neighbours("+".join(sorted(perturbed)[:2]))
    with pytest.raises(KeyError, match="not_a_gene"):
        model.perturbation_neighbours("not_a_gene")


def test_default_training_length_is_about_1500_steps():
    from scjepa.model._biojepa import DEFAULT_TRAINING_STEPS, default_max_epochs

    # demo's training set of the perturbation benchmark: 11 minibatches of 256 per epoch
    epochs = default_max_epochs(3071, 256)
    assert epochs == 136
    assert abs(epochs * 11 - DEFAULT_TRAINING_STEPS) < 11
    assert default_max_epochs(100, 256) == 400  # tiny data: capped
    assert default_max_epochs(1_000_000, 256) == 20  # an atlas: at least 20 passes


def test_training_cross_fits_the_interaction(trained):
    model, data = trained
    encoder = model.module.perturbation_encoder
    result = model.interaction_cross_fit_
    combinations = [p for p in data.obs.perturbation.cat.categories if "+" in p]
    assert result["n_combinations"] == len(combinations) == 4
    assert result["n_folds"] == 4  # one combination per fold
    assert 0.0 <= result["interaction_scale"] <= 1.0
    assert float(encoder.interaction_scale) == pytest.approx(result["interaction_scale"])
    assert np.isfinite(result["out_of_fold_r2"])
    # the same seed gives the same share, and the trained weights are left as they were
    before = {k: v.clone() for k, v in model.module.state_dict().items()}
    trainable = [p.requires_grad for p in model.module.parameters()]
    again = model.calibrate_interaction(seed=0)
    assert again == pytest.approx(result, nan_ok=True)
    for key, value in model.module.state_dict().items():
        torch.testing.assert_close(value, before[key])
    assert [p.requires_grad for p in model.module.parameters()] == trainable


def test_predictions_keep_the_cross_fitted_share_of_the_interaction(trained):
    model, data = trained
    module, encoder = model.module, model.module.perturbation_encoder
    kept = float(encoder.interaction_scale)
    name = [p for p in data.obs.perturbation.cat.categories if "+" in p][0]
    members = torch.as_tensor(model._members([name])).expand(20, -1)
    x = torch.as_tensor(controls_of(data).layers["counts"][:20].toarray())
    module.eval()
    with torch.no_grad():
        context = module.embed_context(x)
        unperturbed = module.predict_unperturbed(context)
        additive = module.predict_additive(context, members, None, unperturbed)
        shift = module.predict_interaction_shift(context, members, None, unperturbed)
        predicted = {}
        for scale in (0.0, 0.5, 1.0):
            encoder.interaction_scale.fill_(scale)
            predicted[scale] = module.predict_under(context, members)
    encoder.interaction_scale.fill_(kept)
    assert shift.abs().max() > 0  # the trained interaction moves this combination
    torch.testing.assert_close(predicted[0.0], additive)
    torch.testing.assert_close(predicted[1.0], additive + shift)
    torch.testing.assert_close(predicted[0.5], (predicted[0.0] + predicted[1.0]) / 2)
    # training fits the whole interaction, whatever share predictions keep
    module.train()
    with torch.no_grad():
        torch.testing.assert_close(module.predict_under(context, members), additive + shift)
    module.eval()


def test_interaction_share_survives_saving(trained, tmp_path):
    model, data = trained
    share = model.module.perturbation_encoder.interaction_scale
    kept = float(share)
    # a value no fresh model starts with, so a share lost on saving cannot pass unnoticed
    share.fill_(0.375)
    model.save(tmp_path / "model")
    share.fill_(kept)
    loaded = scjepa.BioJEPA.load(tmp_path / "model", adata=data)
    assert float(loaded.module.perturbation_encoder.interaction_scale) == 0.375
    assert loaded.interaction_cross_fit_ == pytest.approx(model.interaction_cross_fit_)


def test_too_few_combinations_keep_the_interaction_whole():
    scvi.settings.seed = 0
    data = small_perturbseq()
    combinations = [p for p in data.obs.perturbation.cat.categories if "+" in p]
    data = data[~data.obs.perturbation.isin(combinations[2:])].copy()
    scjepa.BioJEPA.setup_anndata(data, layer="counts", perturbation_key="perturbation")
    model = scjepa.BioJEPA(data, n_latent=8, n_hidden=16, n_predictor_hidden=16)
    model.train(max_epochs=1, batch_size=128, enable_progress_bar=False)
    result = model.interaction_cross_fit_
    assert result["n_combinations"] == 2
    assert result["interaction_scale"] == 1.0 and result["n_folds"] == 0
    assert float(model.module.perturbation_encoder.interaction_scale) == 1.0
    with pytest.raises(ValueError, match="without `perturbation_key`"):
        scjepa.model.cross_fit_interaction(_model_without_perturbations())


def _model_without_perturbations() -> scjepa.BioJEPA:
    data = small_perturbseq()
    scjepa.BioJEPA.setup_anndata(data, layer="counts")
    return scjepa.BioJEPA(data, n_latent=8, n_hidden=16)


def test_training_can_leave_the_interaction_whole(adata):
    scvi.settings.seed = 0
    scjepa.BioJEPA.setup_anndata(adata, layer="counts", perturbation_key="perturbation")
    model = scjepa.BioJEPA(adata, n_latent=8, n_hidden=16, n_predictor_hidden=16)
    share = model.module.perturbation_encoder.interaction_scale
    quick = {"max_epochs": 1, "batch_size": 128, "enable_progress_bar": False}
    model.train(**quick, calibrate_interaction=False)
    assert float(share) == 1.0 and not hasattr(model, "interaction_cross_fit_")
    result = model.calibrate_interaction(n_steps=20)
    assert result["n_combinations"] == 4 and float(share) == result["interaction_scale"]
    # retraining without cross-fitting forgets the share fitted to the earlier weights
    share.fill_(0.375)
    model.train(**quick, calibrate_interaction=False)
    assert float(share) == 1.0 and not hasattr(model, "interaction_cross_fit_")


def test_stacking_share_is_the_clipped_least_squares_coefficient():
    from scjepa.model._interaction import stacking_share

    predicted = torch.tensor([[1.0, -2.0], [0.5, 1.0], [3.0, 0.0]])
    weight = torch.tensor([1.0, 2.0, 0.5])
    assert stacking_share(0.4 * predicted, predicted, weight) == pytest.approx(0.4)
    # a weighted fit: the heavier row counts more
    observed = predicted.clone()
    observed[1] = 0.0
    expected = float((weight[:, None] * observed * predicted).sum()) / float(
        (weight[:, None] * predicted**2).sum()
    )
    assert stacking_share(observed, predicted, weight) == pytest.approx(expected)
    assert 0.0 < expected < 1.0
    assert stacking_share(-predicted, predicted, weight) == 0.0  # clipped below
    assert stacking_share(3 * predicted, predicted, weight) == 1.0  # and above
    assert stacking_share(predicted, torch.zeros_like(predicted), weight) == 0.0


def test_perturbations_never_measured_pool_their_change_with_the_measured_changes(
    trained, tmp_path
):
    model, data = trained
    controls = controls_of(data)
    # the mean change is the mean-of-perturbations baseline's, measured within cell types
    deltas = scjepa.metrics.perturbation_deltas(
        data, "perturbation", "control", "counts", "cell_type"
    )
    np.testing.assert_allclose(
        model.mean_perturbation_change_, deltas.mean().to_numpy(), rtol=1e-5, atol=1e-6
    )
    unseen = next(gene for gene in data.var_names if gene not in perturbed_genes(data))
    singles = [label for label in deltas.index if "+" not in label]
    measured_pairs = {frozenset(label.split("+")) for label in deltas.index if "+" in label}
    measured_pair = next(
        label for label in deltas.index if "+" in label and set(label.split("+")) <= set(singles)
    )
    seen, partner = next(
        (a, b)
        for a in singles
        for b in singles
        if a != b and frozenset((a, b)) not in measured_pairs
    )
    names = [unseen, seen, f"{unseen}+{seen}", f"{seen}+{partner}", measured_pair]
    genes = list(data.var_names)
    targeted = [unseen, seen, partner, *measured_pair.split("+")]
    others = np.delete(np.arange(data.n_vars), [genes.index(g) for g in targeted])
    observed = dense(log_normalize(controls.layers["counts"]))
    # a new gene is pooled towards the mean change, a combination with a measured member towards
    # that member's measured change plus the mean change, a new combination of measured genes
    # towards the sum of their measured changes
    references = {
        0: model.mean_perturbation_change_,
        2: deltas.loc[seen].to_numpy() + model.mean_perturbation_change_,
        3: deltas.loc[seen].to_numpy() + deltas.loc[partner].to_numpy(),
    }

    def predicted(weight, expression="shift", combination_weight=None):
        # several minibatches, as the pooled change is applied per minibatch
        pred = model.predict_perturbation(
            names,
            adata=controls,
            new_gene_weight=weight,
            new_combination_weight=weight if combination_weight is None else combination_weight,
            expression=expression,
            batch_size=32,
        )
        return [np.asarray(pred[pred.obs.perturbation == n].X) for n in names]

    own, pooled, half = predicted(1.0), predicted(0.0), predicted(0.5)
    # a measured single gene or combination keeps its own prediction
    for k in (1, 4):
        np.testing.assert_allclose(pooled[k], own[k], atol=1e-6)
    for k, reference in references.items():
        # the targeted genes keep their direct effect
        for gene in names[k].split("+"):
            np.testing.assert_allclose(
                pooled[k][:, genes.index(gene)], own[k][:, genes.index(gene)], atol=1e-6
            )
        # fully pooled, every cell changes by the reference where not clipped at zero
        change = (pooled[k] - observed)[:, others]
        unclipped = pooled[k][:, others] > 0
        expected = np.broadcast_to(reference[others], change.shape)
        np.testing.assert_allclose(change[unclipped], expected[unclipped], atol=1e-4)
        assert np.abs(own[k][:, others] - pooled[k][:, others]).max() > 1e-2
        # half-way is the mean of the two
        both = (pooled[k] > 0) & (own[k] > 0)
        np.testing.assert_allclose(half[k][both], 0.5 * (own[k] + pooled[k])[both], atol=1e-4)
    # each share acts on its own perturbations
    combination_only = predicted(1.0, combination_weight=0.0)
    np.testing.assert_allclose(combination_only[0], own[0], atol=1e-6)
    np.testing.assert_allclose(combination_only[3], pooled[3], atol=1e-6)
    # the decoded state is pooled too
    own_mean, pooled_mean = predicted(1.0, "mean")[0], predicted(0.0, "mean")[0]
    assert np.abs(own_mean[:, others] - pooled_mean[:, others]).max() > 1e-2
    with pytest.raises(ValueError, match="new_gene_weight"):
        model.predict_perturbation(unseen, adata=controls, new_gene_weight=-0.1)
    with pytest.raises(ValueError, match="new_combination_weight"):
        model.predict_perturbation(unseen, adata=controls, new_combination_weight=1.5)
    # a model saved before the mean change was kept measures it again when loaded
    kept = model.mean_perturbation_change_
    del model.mean_perturbation_change_
    try:
        model.save(tmp_path / "legacy")
    finally:
        model.mean_perturbation_change_ = kept
    legacy = scjepa.BioJEPA.load(tmp_path / "legacy", adata=data)
    np.testing.assert_allclose(legacy.mean_perturbation_change_, kept, rtol=1e-6)


def test_cell_type_never_perturbed_pools_its_change_with_the_perturbed_types():
    scvi.settings.seed = 0
    data = small_perturbseq()
    # every perturbed cell of type_0 is left out: type_0 reaches training as controls only
    data = data[(data.obs.cell_type != "type_0") | (data.obs.perturbation == "control")].copy()
    scjepa.BioJEPA.setup_anndata(
        data, layer="counts", perturbation_key="perturbation", labels_key="cell_type"
    )
    model = scjepa.BioJEPA(data, n_latent=8, n_hidden=32, n_predictor_hidden=32)
    model.train(max_epochs=8, batch_size=64, enable_progress_bar=False, calibrate_interaction=False)
    controls = controls_of(data)
    new_type = (controls.obs.cell_type == "type_0").to_numpy()
    name = next(p for p in data.obs.perturbation.cat.categories if p != "control")
    # the targeted gene follows each cell's own level (its direct effect), not the pooling
    others = np.delete(np.arange(data.n_vars), list(data.var_names).index(name.split("+")[0]))
    observed = dense(log_normalize(controls.layers["counts"]))[:, others]

    def predicted(weight):
        pred = model.predict_perturbation(name, adata=controls, new_cell_type_weight=weight)
        return np.asarray(pred.X)[:, others], pred.obsm["X_biojepa"]

    own, own_z = predicted(1.0)
    pooled, pooled_z = predicted(0.0)
    half, half_z = predicted(0.5)
    # cells of the perturbed cell types keep their own prediction whatever the weight
    np.testing.assert_allclose(pooled[~new_type], own[~new_type], atol=1e-5)
    np.testing.assert_allclose(pooled_z[~new_type], own_z[~new_type], atol=1e-6)
    # fully pooled, every new-type cell gets the same change where expression is not clipped
    change = np.where(pooled[new_type] > 0, (pooled - observed)[new_type], np.nan)
    genes = ~np.isnan(change).all(axis=0)
    shared = np.nanmedian(change[:, genes], axis=0)
    assert np.abs(shared).max() > 1e-2
    assert np.nanmax(np.abs(change[:, genes] - shared)) < 1e-3 * np.abs(shared).max()
    # and that change is the one measured for this perturbation in the perturbed cell types
    measured = scjepa.metrics.perturbation_deltas(
        data, "perturbation", "control", "counts", "cell_type"
    ).loc[name]
    np.testing.assert_allclose(shared, measured.to_numpy()[others][genes], atol=1e-4)
    # whereas each cell's own prediction changes it in its own way
    own_change = np.where(own[new_type] > 0, (own - observed)[new_type], np.nan)
    assert np.nanmax(np.nanstd(own_change[:, genes], axis=0)) > 1e-2
    # half-way is the mean of the two, in expression and in embedding space
    both = (pooled[new_type] > 0) & (own[new_type] > 0)
    np.testing.assert_allclose(
        half[new_type][both], 0.5 * (own + pooled)[new_type][both], atol=1e-4
    )
    np.testing.assert_allclose(half_z[new_type], 0.5 * (own_z + pooled_z)[new_type], atol=1e-5)
    # the decoded state and the counts moved to it are pooled too (transport draws the same
    # uniforms whatever the weight, so only the new cell type's values move)
    for mode in ("mean", "transport"):
        own_x, pooled_x = (
            np.asarray(
                model.predict_perturbation(
                    name, adata=controls, expression=mode, new_cell_type_weight=weight
                ).X
            )
            for weight in (1.0, 0.0)
        )
        np.testing.assert_allclose(pooled_x[~new_type], own_x[~new_type], atol=1e-5)
        assert np.abs(pooled_x[new_type] - own_x[new_type]).max() > 1e-2
    with pytest.raises(ValueError, match="new_cell_type_weight"):
        model.predict_perturbation(name, adata=controls, new_cell_type_weight=1.5)
