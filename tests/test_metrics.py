import numpy as np
import pandas as pd
import pytest

from scjepa import metrics


def test_delta_errors_and_direction(rng):
    control = rng.normal(size=100)
    observed = control + rng.normal(size=100)
    predicted = control + 0.5 * (observed - control)
    top = metrics.top_changed_genes(observed - control, 10)
    assert len(top) == 10
    size = np.abs(observed - control)
    assert size[top].min() >= np.delete(size, top).max()
    half = 0.5 * (observed - control)
    assert metrics.mse_delta(predicted, observed, control) == pytest.approx(np.mean(half**2))
    assert metrics.mae_delta(predicted, observed, control, 10) == pytest.approx(
        np.mean(np.abs(half[top]))
    )
    assert metrics.mse(predicted, observed) == pytest.approx(np.mean(half**2))
    assert metrics.mae(predicted, observed) == pytest.approx(np.mean(np.abs(half)))
    assert metrics.direction_agreement(predicted, observed, control, 10) == 1.0
    assert metrics.direction_agreement(2 * control - predicted, observed, control, 10) == 0.0
    # measured from its own reference, a prediction that gets the control wrong but the change
    # right has no delta error
    shifted = predicted + 3.0
    assert metrics.mse_delta(
        shifted, predicted, control, predicted_reference=control + 3.0
    ) == pytest.approx(0.0)
    assert metrics.pearson_delta(predicted, observed, control) == pytest.approx(1.0)
    # against the mean of perturbed cells (Systema) the shift all perturbations share is not
    # credited: predicting that centroid correlates well with control as reference, not with it
    common = 2.0 * rng.normal(size=100)
    centroid = control + common
    specific = centroid + 0.3 * rng.normal(size=100)
    assert metrics.pearson_delta(centroid, specific, control) > 0.9
    assert np.isnan(metrics.pearson_delta(centroid, specific, centroid))


def test_discrimination_score(rng):
    observed = rng.normal(size=(6, 40))
    assert np.all(metrics.discrimination_score(observed, observed) == 1.0)
    swapped = observed[[1, 0, 2, 3, 4, 5]]
    scores = metrics.discrimination_score(swapped, observed)
    assert scores[0] < 1.0 and scores[1] < 1.0 and np.all(scores[2:] == 1.0)
    constant = np.repeat(observed.mean(axis=0, keepdims=True), 6, axis=0)
    assert 0.0 <= metrics.discrimination_score(constant, observed).mean() < 1.0
    one = metrics.discrimination_score(observed[[3]], observed, true_index=np.array([3]))
    assert one.tolist() == [1.0]
    with pytest.raises(ValueError, match="true_index"):
        metrics.discrimination_score(observed[:2], observed, true_index=np.array([0]))
    with pytest.raises(ValueError, match="'l1' or 'l2'"):
        metrics.discrimination_score(observed, observed, metric="cosine")


def test_distribution_distances(rng):
    a = rng.normal(size=(300, 5))
    b = rng.normal(size=(300, 5))
    far = rng.normal(loc=2.0, size=(300, 5))
    assert abs(metrics.energy_distance(a, b)) < 0.1
    assert metrics.energy_distance(a, far) > 1.0
    assert metrics.mmd(a, far) > 10 * abs(metrics.mmd(a, b))
    with pytest.raises(ValueError, match="same dimensions"):
        metrics.energy_distance(a, far[:, :3])
    with pytest.raises(ValueError, match="two cells"):
        metrics.mmd(a[:1], b)


def test_de_genes_and_overlap(rng):
    control = rng.poisson(2.0, size=(80, 30)).astype(float)
    perturbed = rng.poisson(2.0, size=(60, 30)).astype(float)
    perturbed[:, 3] += 6
    perturbed[:, 7] = 0
    genes = np.array([f"g{i}" for i in range(30)])
    table = metrics.de_genes(np.log1p(perturbed), np.log1p(control), genes)
    assert list(table.index[:2]) == ["g3", "g7"]
    assert (table["pvals_adj"] < 0.05).all()
    assert table.loc["g3", "mean_difference"] > 0 > table.loc["g7", "mean_difference"]
    assert metrics.de_overlap(table.index, table.index, k=2) == 1.0
    assert metrics.de_overlap(pd.Index(["g3", "g0"]), table.index, k=2) == 0.5
    assert np.isnan(metrics.de_overlap(table.index, table.index[:0]))
