import numpy as np
import pytest
from tests.conftest import controls_of

import scjepa
from scjepa.metrics import mse_delta, pearson_delta, perturbation_deltas, perturbation_means


def test_baselines_share_the_prediction_layout(adata):
    controls = controls_of(adata)
    means = perturbation_means(adata, layer="counts")
    singles = [p for p in means.index if p != "control" and "+" not in p]
    pair = next(p for p in means.index if "+" in p)
    for baseline in (
        scjepa.baselines.NoChangeBaseline(),
        scjepa.baselines.MeanPerturbationBaseline(),
        scjepa.baselines.AdditiveBaseline(),
    ):
        pred = baseline.fit(adata).predict_perturbation([pair], controls)
        assert pred.shape == (controls.n_obs, adata.n_vars)
        assert list(pred.obs["perturbation"].unique()) == [pair]
        assert pred.uns["scjepa"]["method"] == baseline.name

    additive = scjepa.baselines.AdditiveBaseline().fit(adata)
    x, y = pair.split("+")
    control = means.loc["control"].to_numpy()
    expected = means.loc[x].to_numpy() + means.loc[y].to_numpy() - 2 * control
    np.testing.assert_allclose(additive.delta(pair), expected, rtol=1e-5, atol=1e-6)
    mean_baseline = scjepa.baselines.MeanPerturbationBaseline().fit(adata)
    perturbed = [p for p in means.index if p != "control"]
    np.testing.assert_allclose(
        mean_baseline.delta("anything"),
        (means.loc[perturbed] - control).mean().to_numpy(),
        rtol=1e-5,
        atol=1e-6,
    )
    with pytest.raises(KeyError, match="measured alone"):
        additive.delta(f"{singles[0]}+NOT_A_GENE")
    # with the mean change standing in for a member never measured alone
    imputed = scjepa.baselines.AdditiveMeanBaseline().fit(adata)
    np.testing.assert_allclose(imputed.delta(pair), additive.delta(pair))
    np.testing.assert_allclose(
        imputed.delta(f"{singles[0]}+NOT_A_GENE"),
        additive.delta(singles[0]) + mean_baseline.delta("anything"),
        rtol=1e-6,
    )
    np.testing.assert_allclose(imputed.delta("NOT_A_GENE"), mean_baseline.delta("anything"))
    np.testing.assert_array_equal(imputed.delta("control"), np.zeros(adata.n_vars))
    pred = imputed.predict_perturbation([f"{singles[0]}+NOT_A_GENE"], controls)
    assert pred.uns["scjepa"]["method"] == "additive_mean" and np.isfinite(pred.X).all()
    with pytest.raises(RuntimeError, match="fit"):
        scjepa.baselines.AdditiveBaseline().predict_perturbation([pair], controls)


def test_delta_metrics():
    control = np.zeros(50)
    observed = np.random.default_rng(0).normal(size=50)
    assert pearson_delta(observed, observed, control) == pytest.approx(1.0)
    assert pearson_delta(-observed, observed, control) == pytest.approx(-1.0)
    assert pearson_delta(2 * observed, observed, control, top_k=5) == pytest.approx(1.0)
    assert mse_delta(observed, observed, control, top_k=5) == 0.0
    top = np.argsort(-np.abs(observed))[:5]
    assert mse_delta(control, observed, control, top_k=5) == pytest.approx(
        np.mean(observed[top] ** 2)
    )
    assert np.isnan(pearson_delta(control, observed, control))


def test_linear_baseline_covers_unseen_genes_and_fits_its_training_data(adata):
    means = perturbation_means(adata, layer="counts")
    singles = [p for p in means.index if p != "control" and "+" not in p]
    train = adata[adata.obs.perturbation != singles[0]].copy()
    linear = scjepa.baselines.LinearBaseline(n_components=6, ridge=1e-6).fit(train)
    assert linear.gene_embedding_.shape == (adata.n_vars, 6)
    # a never-perturbed but measured gene is predicted
    unseen = linear.predict_perturbation([singles[0]], controls_of(adata))
    assert np.isfinite(unseen.X).all()
    # with a tiny ridge, K components reproduce the training profiles as well as rank K allows
    control = means.loc["control"].to_numpy()
    trained = [p for p in means.index if p not in ("control", singles[0])]
    fitted = np.stack([linear.delta(p) for p in trained])
    observed = means.loc[trained].to_numpy() - control
    assert np.corrcoef(fitted.ravel(), observed.ravel())[0, 1] > 0.8
    mean_error = np.mean((observed - observed.mean(axis=0)) ** 2)
    assert np.mean((fitted - observed) ** 2) < mean_error
    with pytest.raises(KeyError, match="NOT_A_GENE"):
        linear.delta("NOT_A_GENE")
    with pytest.raises(ValueError, match="two training perturbations"):
        scjepa.baselines.LinearBaseline().fit(
            adata[adata.obs.perturbation.isin(["control", singles[1]])].copy()
        )


def test_changes_within_cell_types_are_free_of_composition(adata):
    # one cell type keeps its controls but loses its perturbed cells, as in a held-out cell type
    held_out = (adata.obs.cell_type == "type_0") & (adata.obs.perturbation != "control")
    train = adata[~held_out].copy()
    pooled = perturbation_deltas(train, layer="counts")
    within = perturbation_deltas(train, layer="counts", labels_key="cell_type")
    assert list(within.index) == list(pooled.index)
    assert "control" not in within.index

    expected = {}
    for cell_type in ("type_1", "type_2"):
        means = perturbation_means(train[train.obs.cell_type == cell_type], layer="counts")
        expected[cell_type] = means.drop(index="control") - means.loc["control"]
    counts = train.obs.groupby(["perturbation", "cell_type"], observed=True).size()
    pert = next(p for p in within.index if "+" not in p)
    weights = {t: counts.get((pert, t), 0) for t in expected}
    manual = sum(weights[t] * expected[t].loc[pert] for t in expected) / sum(weights.values())
    np.testing.assert_allclose(within.loc[pert], manual, rtol=1e-5, atol=1e-6)

    # pooled changes carry type_0's difference from the other types; stratified ones do not
    truth = perturbation_deltas(adata[adata.obs.cell_type != "type_0"], layer="counts")
    truth = truth.loc[within.index]
    error = {
        k: np.abs(v - truth).to_numpy().mean() for k, v in [("within", within), ("pooled", pooled)]
    }
    assert error["within"] < 0.5 * error["pooled"]

    baseline = scjepa.baselines.AdditiveBaseline(labels_key="cell_type").fit(train)
    np.testing.assert_allclose(baseline.delta(pert), within.loc[pert], rtol=1e-6)
    with pytest.raises(KeyError, match="Labels column 'tissue'"):
        scjepa.baselines.NoChangeBaseline(labels_key="tissue").fit(train)
    only_type_0_controls = train[
        (train.obs.cell_type == "type_0") | (train.obs.perturbation != "control")
    ].copy()
    with pytest.raises(ValueError, match="No control cells share a 'cell_type' label"):
        perturbation_deltas(only_type_0_controls, layer="counts", labels_key="cell_type")
