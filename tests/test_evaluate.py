import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from anndata import AnnData  # noqa: E402
from tests.conftest import controls_of  # noqa: E402

import scjepa  # noqa: E402
from scjepa.metrics import log_normalized_matrix  # noqa: E402


def _oracle(real):
    """Predictions that are the observed cells themselves."""
    values = log_normalized_matrix(real, "counts").toarray()
    return AnnData(
        X=values,
        obs=pd.DataFrame({"perturbation": real.obs["perturbation"].astype(str).to_numpy()}),
        var=pd.DataFrame(index=real.var_names),
        uns={"scjepa": {"method": "oracle", "X": "log1p_normalized"}},
    )


@pytest.fixture
def split_data(adata):
    scjepa.data.split_perturbations(adata, single_fraction=0.3, seed=1)
    train = adata[adata.obs.split == "train"].copy()
    test = adata[adata.obs.split != "train"].copy()
    return train, test


def test_evaluate_ranks_the_oracle_above_baselines(split_data):
    train, test = split_data
    controls = controls_of(train)
    labels = sorted(test.obs.perturbation.unique())
    predictions = {"oracle": _oracle(test)}
    for baseline in (
        scjepa.baselines.NoChangeBaseline(),
        scjepa.baselines.MeanPerturbationBaseline(),
        scjepa.baselines.LinearBaseline(n_components=4),
    ):
        predictions[baseline.name] = baseline.fit(train).predict_perturbation(labels, controls)
    scores, summary = scjepa.tl.evaluate_perturbation(predictions, test, control=controls, n_pcs=10)

    assert set(scores.method) == set(predictions)
    assert len(scores) == len(predictions) * len(labels)
    assert set(scores.split) <= {"unseen_single", "combo_both_seen", "combo_one_unseen"}
    for column in (
        "pearson_delta",
        "pearson_delta_top20",
        "pearson_delta_systema",
        "mse",
        "mae",
        "mse_top20",
        "mae_top20",
        "direction_top20",
        "discrimination",
        "de_overlap_top20",
        "energy_distance",
        "mmd",
    ):
        assert column in scores.columns
    oracle = scores[scores.method == "oracle"]
    np.testing.assert_allclose(oracle.pearson_delta, 1.0, atol=1e-6)
    np.testing.assert_allclose(oracle.mse_top20, 0.0, atol=1e-10)
    assert (oracle.discrimination == 1.0).all()
    assert (oracle.direction_top20 == 1.0).all()
    assert oracle.de_overlap_top20.dropna().eq(1.0).all()
    no_change = scores[scores.method == "no_change"].set_index("perturbation")
    oracle_energy = oracle.set_index("perturbation").energy_distance
    assert (oracle_energy < no_change.energy_distance.loc[oracle_energy.index]).all()
    assert no_change.pearson_delta.isna().all()  # a zero change has no correlation
    assert summary.index.names == ["split", "method"]
    assert summary.loc[(slice(None), "oracle"), "pearson_delta"].min() == pytest.approx(1.0)
    per_split = scores[scores.method == "oracle"].groupby("split").size()
    np.testing.assert_array_equal(
        summary.xs("oracle", level="method").n_perturbations, per_split.sort_index()
    )


def test_evaluate_refuses_bad_input(split_data):
    train, test = split_data
    prediction = scjepa.baselines.NoChangeBaseline().fit(train)
    labels = sorted(test.obs.perturbation.unique())
    predicted = prediction.predict_perturbation(labels, controls_of(train))
    with pytest.raises(ValueError, match="control"):
        scjepa.tl.evaluate_perturbation(predicted, test)
    with pytest.raises(ValueError, match="None of the perturbations"):
        other = prediction.predict_perturbation(
            [train.obs.perturbation.iloc[0]], controls_of(train)
        )
        other.obs["perturbation"] = "never_observed"
        scjepa.tl.evaluate_perturbation(other, test, control=controls_of(train))
    with pytest.raises(TypeError, match="mapping"):
        scjepa.tl.evaluate_perturbation([predicted], test, control=controls_of(train))


def test_plots(split_data):
    train, test = split_data
    controls = controls_of(train)
    labels = sorted(test.obs.perturbation.unique())
    predictions = {
        "oracle": _oracle(test),
        "mean": scjepa.baselines.MeanPerturbationBaseline()
        .fit(train)
        .predict_perturbation(labels, controls),
    }
    axes = scjepa.pl.perturbation_scatter(predictions, test, labels[0], control=controls)
    assert len(axes) == 2 and "r = 1.00" in axes[0].get_title()
    scores, _ = scjepa.tl.evaluate_perturbation(
        predictions, test, control=controls, de=False, distribution=False
    )
    ax = scjepa.pl.metric_bars(scores, "pearson_delta")
    assert len(ax.patches) == 2 * scores.split.nunique()
    with pytest.raises(KeyError, match="lacks"):
        scjepa.pl.metric_bars(scores, "not_a_metric")
    with pytest.raises(ValueError, match="no observed cells"):
        scjepa.pl.perturbation_scatter(predictions, test, "nothing", control=controls)
