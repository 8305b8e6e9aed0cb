import numpy as np
import pytest
import scvi

import scjepa
from scjepa.data._sampling import InterleavedSampler, TimeCourseSampler, cell_groups


def small_timecourse(seed: int = 0):
    return scjepa.datasets.timecourse_demo(n_cells_per_time=60, n_genes=120, seed=seed)


@pytest.fixture(scope="module")
def trained_time():
    """A tiny BioJEPA trained for real on a time course with time point 3 held out."""
    scvi.settings.seed = 0
    data = small_timecourse()
    train = data[data.obs.time != 3].copy()
    scjepa.BioJEPA.setup_anndata(train, layer="counts", time_key="time", batch_key="batch")
    model = scjepa.BioJEPA(train, n_latent=16, n_hidden=32, n_predictor_hidden=32)
    model.train(max_epochs=4, batch_size=96, enable_progress_bar=False)
    return model, train


def test_timecourse_demo_bifurcates_over_time():
    adata = scjepa.datasets.timecourse_demo(n_cells_per_time=200, n_genes=150)
    times = np.unique(adata.obs.time)
    assert len(times) >= 6 and adata.obs.batch.nunique() == 2
    counts = adata.layers["counts"].toarray()
    assert np.array_equal(counts, np.round(counts)) and counts.min() >= 0
    progress = adata.obs.groupby("time").progress.mean().to_numpy()
    assert np.all(np.diff(progress) > 0)
    fractions = adata.obs.groupby("time", observed=True).fate.value_counts(normalize=True).unstack()
    assert fractions.loc[0.0, "progenitor"] == 1.0
    late = fractions.loc[times[-1]]
    assert late["progenitor"] < 0.05 and late["fate_A"] > 0.2 and late["fate_B"] > 0.2
    # fate B grows faster, so its share of committed cells rises over the course
    assert fractions.loc[times[-1], "fate_B"] > fractions.loc[times[2], "fate_B"] + 0.05
    again = scjepa.datasets.timecourse_demo(n_cells_per_time=200, n_genes=150)
    assert (again.layers["counts"] != adata.layers["counts"]).nnz == 0
    with pytest.raises(ValueError, match="at least 3"):
        scjepa.datasets.timecourse_demo(n_time_points=2)


def test_timecourse_demo_samples_the_same_course_more_densely():
    daily = scjepa.datasets.timecourse_demo(n_cells_per_time=300, n_genes=120)
    dense = scjepa.datasets.timecourse_demo(
        n_time_points=13, sampling_interval=0.5, n_cells_per_time=300, n_genes=120
    )
    assert np.allclose(np.unique(dense.obs.time), np.arange(13) * 0.5)
    # the course's length sets its dynamics: the days both sample progress alike
    on_days = dense[dense.obs.time.isin(np.unique(daily.obs.time))]
    daily_progress = daily.obs.groupby("time").progress.mean()
    dense_progress = on_days.obs.groupby("time").progress.mean()
    assert np.allclose(daily_progress, dense_progress, atol=0.02)
    # half a day after day 1, cells are half-way through commitment
    committed = dense.obs.fate != "progenitor"
    assert 0.4 < committed[dense.obs.time == 1.5].mean() < 0.8
    for interval in (0.0, -1.0, np.nan):
        with pytest.raises(ValueError, match="positive number of days"):
            scjepa.datasets.timecourse_demo(sampling_interval=interval)


def test_time_setup_refuses_bad_times():
    adata = small_timecourse()
    adata.obs["label"] = adata.obs.time.astype(str)
    with pytest.raises(ValueError, match="must be numeric"):
        scjepa.BioJEPA.setup_anndata(adata, layer="counts", time_key="label")
    adata.obs["day"] = 2.0
    with pytest.raises(ValueError, match="single time point"):
        scjepa.BioJEPA.setup_anndata(adata, layer="counts", time_key="day")
    adata.obs["day"] = np.where(np.arange(adata.n_obs) % 3, adata.obs.time, np.nan)
    with pytest.raises(ValueError, match="NaN"):
        scjepa.BioJEPA.setup_anndata(adata, layer="counts", time_key="day")


def test_time_course_minibatches_hold_consecutive_time_points():
    adata = small_timecourse()
    scjepa.BioJEPA.setup_anndata(adata, layer="counts", time_key="time", batch_key="batch")
    manager = scjepa.BioJEPA._get_most_recent_anndata_manager(adata)
    groups = cell_groups(manager)
    assert TimeCourseSampler.applies(groups)
    times = np.unique(groups.time)
    sampler = TimeCourseSampler(groups, batch_size=90, n_time_points=3, seed=1)
    batches = list(sampler)
    assert len(batches) == len(sampler)
    for batch in batches:
        assert len(np.unique(groups.time_stratum[batch])) == 1  # one batch, one course
        present = np.searchsorted(times, np.unique(groups.time[batch]))
        assert len(present) == 3 and np.array_equal(present, np.arange(present[0], present[0] + 3))
        assert np.all(np.bincount(np.searchsorted(times, groups.time[batch]))[present] == 30)
    both = InterleavedSampler([sampler, TimeCourseSampler(groups, 90, 2, seed=2, n_batches=2)])
    assert len(list(both)) == len(sampler) + 2

    # one batch per time point: nothing to pair within a batch, so batches are pooled
    adata.obs["batch"] = adata.obs.time.astype(str).astype("category")
    scjepa.BioJEPA.setup_anndata(adata, layer="counts", time_key="time", batch_key="batch")
    pooled = cell_groups(scjepa.BioJEPA._get_most_recent_anndata_manager(adata))
    assert len(np.unique(pooled.time_stratum)) == 1


def test_predict_time_interpolates_and_writes_embeddings(trained_time):
    model, train = trained_time
    assert "time_loss_train" in model.history
    assert np.isfinite(model.history["time_loss_train"].to_numpy(dtype=float)).all()
    source = train[train.obs.time == 2].copy()
    pred = model.predict_time(3.0, adata=source, key_added="X_day3")
    assert pred.shape == (source.n_obs, train.n_vars)
    assert (pred.obs.time == 3.0).all() and (pred.obs.source_time == 2.0).all()
    assert list(pred.obs.source_cell) == list(source.obs_names)
    assert pred.obsm["X_biojepa"].shape == (source.n_obs, 16)
    np.testing.assert_allclose(source.obsm["X_day3"], pred.obsm["X_biojepa"], rtol=1e-5)
    assert np.isfinite(pred.X).all() and pred.X.min() >= 0
    # cells move: the prediction differs from the source cells, and depends on Δt
    later = model.predict_time(5.0, adata=source)
    assert not np.allclose(later.obsm["X_biojepa"], pred.obsm["X_biojepa"])
    # no time passes: the decoded change is zero, so "shift" returns the source expression
    unmoved = model.predict_time(2.0, adata=source)
    observed = scjepa.metrics.log_normalized_matrix(source, "counts").toarray()
    np.testing.assert_allclose(unmoved.X, observed, rtol=1e-5, atol=1e-5)
    # "transport" maps each count through the same distribution: the counts come back unchanged
    transported = model.predict_time(2.0, adata=source, expression="transport", seed=5)
    np.testing.assert_allclose(transported.X, observed, rtol=1e-5, atol=1e-5)
    # moved, the cells change, and the seed makes it reproducible
    moved = model.predict_time(5.0, adata=source, expression="transport", seed=5)
    assert np.isfinite(moved.X).all() and moved.X.min() >= 0
    assert not np.allclose(moved.X, observed)
    again = model.predict_time(5.0, adata=source, expression="transport", seed=5)
    np.testing.assert_array_equal(moved.X, again.X)

    # cells without a time column need `source_time`
    bare = source.copy()
    del bare.obs["time"]
    with pytest.raises(ValueError, match="source_time"):
        model.predict_time(3.0, adata=bare)
    np.testing.assert_allclose(
        model.predict_time(3.0, adata=bare, source_time=2.0).X, pred.X, rtol=1e-5, atol=1e-5
    )
    # backwards in time, and from several time points at once: each cell moves by its own Δt
    earlier = model.predict_time(1.0, adata=source)
    assert (earlier.obs.time == 1.0).all()
    around = train[train.obs.time.isin([2, 4])].copy()
    each = model.predict_time(3.0, adata=around, consensus=False)
    assert sorted(each.obs.source_time.unique()) == [2.0, 4.0]
    assert "partner_cell" not in each.obs and "partner_cell" not in pred.obs
    from_two = each[each.obs.source_time == 2.0]
    np.testing.assert_allclose(from_two.obsm["X_biojepa"], pred.obsm["X_biojepa"], rtol=1e-5)
    with pytest.raises(ValueError, match="finite"):
        model.predict_time(float("nan"), adata=source)


def test_predict_time_pools_the_predictions_from_two_time_points(trained_time):
    model, train = trained_time
    # interpolation from both sides, and extrapolation from the last two time points: the
    # source closer in time weighs more
    for days, target, weight_of_first in [
        ((2, 4), 3.0, 0.5),
        ((2, 4), 2.5, 0.75),
        ((5, 6), 7.0, 1 / 3),
    ]:
        sources = train[train.obs.time.isin(days)].copy()
        position = {name: i for i, name in enumerate(sources.obs_names)}
        each = model.predict_time(target, adata=sources, consensus=False)
        pooled = model.predict_time(target, adata=sources, seed=3)
        assert list(pooled.obs.source_cell) == list(sources.obs_names)
        partner = pooled.obs.partner_cell.map(position).to_numpy()
        day = sources.obs.time.to_numpy()
        assert (day[partner] != day).all()  # every partner comes from the other time point
        weight = np.where(day == days[0], weight_of_first, 1 - weight_of_first)[:, None]
        for values, one_sided in [
            (pooled.X, each.X),
            (pooled.obsm["X_biojepa"], each.obsm["X_biojepa"]),
        ]:
            expected = weight * one_sided + (1 - weight) * one_sided[partner]
            np.testing.assert_allclose(values, expected, rtol=1e-5, atol=1e-6)
        assert pooled.uns["scjepa"]["consensus"]
        # the measurement noise of the two cells of a pair averages out
        assert pooled.X.var(axis=0).sum() < each.X.var(axis=0).sum()
    # partners are drawn from the coupling: the seed fixes them
    again = model.predict_time(7.0, adata=sources, seed=3)
    assert list(again.obs.partner_cell) == list(pooled.obs.partner_cell)
    # a source at the target time itself leaves nothing to pool
    assert "partner_cell" not in model.predict_time(6.0, adata=sources).obs


def test_predict_time_survives_save_and_load(trained_time, tmp_path):
    model, train = trained_time
    source = train[train.obs.time == 4].copy()
    before = model.predict_time(6.0, adata=source)
    model.save(tmp_path / "model")
    loaded = scjepa.BioJEPA.load(tmp_path / "model", adata=train)
    after = loaded.predict_time(6.0, adata=source)
    np.testing.assert_allclose(after.X, before.X, rtol=1e-5, atol=1e-5)


def test_predict_time_needs_a_time_course(trained):
    model, data = trained
    with pytest.raises(ValueError, match="time_key"):
        model.predict_time(1.0, adata=data)


def test_time_baselines():
    adata = small_timecourse()
    train = adata[adata.obs.time != 3].copy()
    nearest = scjepa.baselines.NearestTimeBaseline().fit(train)
    pred = nearest.predict_time(3.0)  # tie between 2 and 4 goes to the earlier
    assert (pred.obs.source_time == 2.0).all() and (pred.obs.time == 3.0).all()
    assert pred.n_obs == (train.obs.time == 2).sum()
    assert nearest.predict_time(9.0).obs.source_time.iloc[0] == 6.0

    ot = scjepa.baselines.OTInterpolationBaseline(n_pcs=10).fit(train)
    middle = ot.predict_time(3.0, seed=0)
    assert middle.obs_names.is_unique and (middle.obs.source_time == 2.0).all()
    x = scjepa.metrics.log_normalized_matrix(train, "counts").toarray()
    mean2, mean4 = (x[train.obs.time.to_numpy() == t].mean(0) for t in (2, 4))
    # displacement interpolation halfway moves the mean halfway (up to sampling of pairs)
    covered = (middle.X.mean(0) - mean2) @ (mean4 - mean2) / np.sum((mean4 - mean2) ** 2)
    assert 0.35 < covered < 0.65
    beyond = ot.predict_time(8.0, n_cells=200)  # extrapolates from times 5 and 6
    assert beyond.n_obs == 200 and (beyond.obs.source_time == 5.0).all()
    mean5, mean6 = (x[train.obs.time.to_numpy() == t].mean(0) for t in (5, 6))
    step = mean6 - mean5
    # α = 3: the mean moves past day 6, along the day 5 → 6 direction
    assert (beyond.X.mean(0) - mean5) @ step / np.sum(step**2) > 1.5
    np.testing.assert_allclose(ot.predict_time(4.0).X, nearest.predict_time(4.0).X)
    with pytest.raises(RuntimeError, match="fit"):
        scjepa.baselines.OTInterpolationBaseline().predict_time(1.0)


def test_transport_and_fate_metrics(rng):
    a = rng.normal(size=(80, 3))
    assert scjepa.metrics.wasserstein_distance(a, a) == pytest.approx(0.0, abs=1e-12)
    shift = np.array([3.0, 4.0, 0.0])
    # far apart, the optimal coupling pairs each cell with its own translate: W1 = |shift|
    assert scjepa.metrics.wasserstein_distance(a, a + 10 * shift) == pytest.approx(50.0, rel=1e-6)
    coupling = scjepa.metrics.sinkhorn_coupling(a[:50], a[:30] + 0.1)
    np.testing.assert_allclose(coupling.sum(axis=1), 1 / 50, rtol=1e-4)
    np.testing.assert_allclose(coupling.sum(axis=0), 1 / 30, rtol=1e-4)

    labels = np.array(["A"] * 40 + ["B"] * 40)
    reference = np.concatenate([rng.normal(-5, 1, (40, 2)), rng.normal(5, 1, (40, 2))])
    query = np.array([[-5.0, -5.0], [5.0, 5.0], [4.0, 6.0]])
    assert list(scjepa.metrics.transfer_labels(reference, labels, query)) == ["A", "B", "B"]
    # between the two annotated groups, nearer to B: the linear boundary says B as well
    between = np.array([[1.0, 1.0]])
    assert scjepa.metrics.transfer_labels(reference, labels, between, method="logistic") == ["B"]
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier

    logistic = scjepa.metrics.label_classifier(reference, labels, method="logistic")
    assert isinstance(logistic, LogisticRegression)
    assert isinstance(scjepa.metrics.label_classifier(reference, labels), KNeighborsClassifier)
    with pytest.raises(ValueError, match="Unknown label transfer method 'svm'"):
        scjepa.metrics.transfer_labels(reference, labels, query, method="svm")
    assert scjepa.metrics.proportion_error(["A", "B", "B", "B"], ["A", "A", "B", "B"]) == 0.25
    with pytest.raises(ValueError, match="one entry per reference"):
        scjepa.metrics.transfer_labels(reference, labels[:5], query)


def test_evaluate_time_ranks_real_cells_above_stale_ones(monkeypatch):
    adata = small_timecourse()
    train = adata[adata.obs.time != 3].copy()
    real = adata[adata.obs.time == 3].copy()
    perfect = scjepa.baselines.NearestTimeBaseline().fit(adata).predict_time(3.0)
    stale = scjepa.baselines.NearestTimeBaseline().fit(train).predict_time(3.0)
    scores = scjepa.tl.evaluate_time(
        {"perfect": perfect, "stale": stale}, real, train, labels_key="fate", n_pcs=10
    )
    assert {"perfect", "stale", "observed", "annotated", "observed_halves"} <= set(scores.index)
    # the observed cells themselves, scored at the size of the halves, are no farther than the
    # noise floor (each half shares cells with them)
    floor = scores.loc["observed_halves"]
    # scored against a half, not against all observed cells (which would give exactly 0)
    assert scores.loc["perfect", "wasserstein"] > 0
    assert scores.loc["perfect", "energy_distance"] <= floor["energy_distance"]
    assert scores.loc["perfect", "wasserstein"] <= floor["wasserstein"]
    assert scores.loc["perfect", "fate_error"] == 0.0
    # against the annotation, a perfect prediction is off by the classifier's own errors only:
    # the labelled observed fractions against the annotated ones (not zero on these cells)
    fraction_columns = [c for c in scores.columns if c.startswith("fraction_")]
    classifier_error = (
        (scores.loc["observed", fraction_columns] - scores.loc["annotated", fraction_columns])
        .abs()
        .max()
    )
    assert classifier_error > 0
    assert scores.loc["perfect", "fate_error_annotated"] == pytest.approx(classifier_error)
    annotated = scores.loc["annotated", fraction_columns]
    expected = real.obs["fate"].value_counts(normalize=True)
    for fate, fraction in expected.items():
        assert annotated[f"fraction_{fate}"] == pytest.approx(fraction)
    assert scores.loc["stale", "wasserstein"] > scores.loc["perfect", "wasserstein"]
    assert scores.loc["stale", "energy_distance"] > scores.loc["observed_halves", "energy_distance"]
    fractions = scores.loc["observed", [c for c in scores.columns if c.startswith("fraction_")]]
    assert fractions.sum() == pytest.approx(1.0)
    assert scores.loc["observed", "label_transfer_accuracy"] > 0.8
    methods = []

    def recording(*args):
        methods.append(args[-1])
        return scjepa.metrics.label_classifier(*args)

    monkeypatch.setattr(scjepa.tl._evaluate_time, "label_classifier", recording)
    by_vote = scjepa.tl.evaluate_time(
        {"perfect": perfect}, real, train, labels_key="fate", n_pcs=10, label_method="knn"
    )
    assert methods == ["knn"]
    assert by_vote.loc["perfect", "fate_error"] == 0.0
    assert by_vote.loc["observed", "label_transfer_accuracy"] > 0.5


def test_time_plots():
    import matplotlib

    matplotlib.use("Agg")
    adata = small_timecourse()
    train = adata[adata.obs.time != 3].copy()
    real = adata[adata.obs.time == 3].copy()
    predictions = {
        "nearest_time": scjepa.baselines.NearestTimeBaseline().fit(train).predict_time(3.0),
        "ot_interpolation": scjepa.baselines.OTInterpolationBaseline(n_pcs=10)
        .fit(train)
        .predict_time(3.0),
    }
    axes = scjepa.pl.time_populations(predictions, real, train)
    assert [ax.get_title() for ax in axes] == [
        "nearest_time, time 3.0",
        "ot_interpolation, time 3.0",
    ]
    assert len(axes[0].collections) == 3  # training cells, observed, predicted
    scores = scjepa.tl.evaluate_time(predictions, real, train, labels_key="fate", n_pcs=10)
    ax = scjepa.pl.fate_proportions(scores)
    assert len(ax.patches) == 4 * 3  # annotated, observed and two methods; three fates
    with pytest.raises(KeyError, match="labels_key"):
        scjepa.pl.fate_proportions(scores.drop(columns=[c for c in scores if "fraction" in c]))


def test_perturbation_and_time_objectives_train_together():
    from tests.conftest import small_perturbseq

    scvi.settings.seed = 0
    adata = small_perturbseq()
    adata.obs["hours"] = np.random.default_rng(0).choice([0.0, 6.0, 24.0], size=adata.n_obs)
    scjepa.BioJEPA.setup_anndata(
        adata,
        layer="counts",
        perturbation_key="perturbation",
        batch_key="batch",
        labels_key="cell_type",
        time_key="hours",
    )
    manager = scjepa.BioJEPA._get_most_recent_anndata_manager(adata)
    groups = cell_groups(manager)
    # controls are compared with perturbed cells of the same time point
    for stratum in np.unique(groups.stratum):
        assert len(np.unique(groups.time[groups.stratum == stratum])) == 1
    model = scjepa.BioJEPA(adata, n_latent=8, n_hidden=16, n_predictor_hidden=16)
    model.train(max_epochs=2, batch_size=64, enable_progress_bar=False)
    for key in ("perturbation_loss_train", "time_loss_train"):
        assert model.history[key].to_numpy(dtype=float).max() > 0
    pred = model.predict_time(24.0, adata=adata[adata.obs.hours == 6.0].copy())
    assert (pred.obs.hours == 24.0).all()
    single = next(p for p in adata.obs.perturbation.unique() if p != "control")
    assert model.predict_perturbation(single).n_obs > 0


@pytest.mark.parametrize("max_coupled", [3000, 12])
def test_pooling_partners_pair_like_with_like(monkeypatch, max_coupled):
    from scjepa.model import _consensus

    monkeypatch.setattr(_consensus, "MAX_COUPLED_CELLS", max_coupled)
    rng = np.random.default_rng(0)
    # two states, far apart, predicted from day 1 (30 cells) and from day 3 (20 cells)
    state = np.r_[np.repeat([0, 1], 15), np.repeat([0, 1], 10)]
    embeddings = rng.normal(size=(50, 4)) * 0.1 + 10.0 * state[:, None]
    times = np.r_[np.full(30, 1.0), np.full(20, 3.0)]
    partners = _consensus.pooling_partners(embeddings, times, 2.0, seed=0)
    assert (times[partners] != times).all()
    if max_coupled > 50:
        assert (state[partners] == state).all()
    else:
        # subsamples of 12 of each side are coupled, and their proportions of the two states
        # differ by chance; cells outside them draw like their nearest subsampled cell
        assert (state[partners] == state).mean() >= 0.8
    # the closer source weighs more, between or beyond the two source times
    np.testing.assert_allclose(_consensus.pooling_weights(times, 2.0), 0.5)
    weights = _consensus.pooling_weights(times, 2.5)
    np.testing.assert_allclose(weights[[0, -1]], [0.25, 0.75])
    np.testing.assert_allclose(
        _consensus.pooling_weights(times, 5.0)[[0, -1]], [0.333333, 0.666667], rtol=1e-5
    )
    assert _consensus.pooling_partners(embeddings, times, 3.0) is None
    assert _consensus.pooling_partners(embeddings, np.full(50, 1.0), 2.0) is None
