"""Score cells predicted at a held-out time point against the cells observed there."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from anndata import AnnData

from scjepa.metrics._distribution import energy_distance, subsample
from scjepa.metrics._expression import log_normalized_matrix
from scjepa.metrics._fate import label_classifier, label_proportions, proportion_error
from scjepa.metrics._transport import wasserstein_distance
from scjepa.tl._shared import as_prediction_mapping, check_prediction, dense, shared_pca

NOISE_FLOOR = "observed_halves"
"""Row of :func:`evaluate_time` scoring one random half of the observed cells against the other."""


def evaluate_time(
    predicted: AnnData | Mapping[str, AnnData],
    real: AnnData,
    reference: AnnData,
    *,
    labels_key: str | None = None,
    layer: str | None = "counts",
    n_pcs: int = 30,
    label_method: str = "logistic",
    n_neighbors: int = 15,
    max_cells: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """Score cells predicted at a time point against the cells observed at that time.

    Predicted and observed cells are compared as populations in a PCA of log-normalised
    expression fitted on the training cells (``reference``), never in a model's own latent
    space, so every method is scored in the same space:

    * ``wasserstein``: Wasserstein-1 distance (:func:`scjepa.metrics.wasserstein_distance`);
    * ``energy_distance``: :func:`scjepa.metrics.energy_distance`;
    * with ``labels_key``: each cell gets a label (fate, cell type) from a classifier of the
      annotated training cells in the PCA (:func:`scjepa.metrics.label_classifier`);
      ``fate_error`` is the largest difference in label fractions between predicted and
      observed cells (:func:`scjepa.metrics.proportion_error`), and ``fraction_<label>``
      columns give the fractions. Observed cells are labelled by the same classifier, so the
      errors it makes on both alike cancel. When ``real`` carries the annotation too,
      ``fate_error_annotated`` compares with the observed cells' own labels instead (the truth,
      in generated data), and the ``observed`` row gives ``label_transfer_accuracy``;
      ``annotated`` holds the annotated fractions.

    The row ``observed_halves`` scores one random half of the observed cells against the other:
    the noise floor, the score a perfect predictor would get from sampling alone. Both distances
    shrink as the populations grow, so predictions are scored at the same size: a seeded
    subsample as large as a half, against each half of the observed cells, averaged.

    Parameters
    ----------
    predicted
        Predictions of one method (an AnnData from ``predict_time``) or ``{method: AnnData}``.
    real
        Observed cells at the predicted time, with raw counts in ``layer``.
    reference
        Training cells (raw counts in ``layer``), for the PCA and the label transfer.
    labels_key
        ``obs`` column of ``reference`` (and, if present, ``real``) with fate labels.
    layer
        Counts layer of ``real`` and ``reference``; ``None`` takes their ``X`` as log-normalised.
    n_pcs
        Dimension of the shared PCA.
    label_method
        Classifier of the label transfer: ``"logistic"`` (the default: its linear boundaries
        extend to the states between sampled time points) or ``"knn"``.
    n_neighbors
        Neighbours voting in the label transfer (``label_method="knn"``).
    max_cells
        Most cells per population in the distances (seeded subsample).
    seed
        Seed of the PCA, the subsampling and the random halves.

    Returns
    -------
    DataFrame with one row per method plus ``observed`` (fractions only), ``annotated`` (with
    annotated ``real`` cells) and ``observed_halves``, and one column per score.
    """
    predictions = as_prediction_mapping(predicted)
    for method, prediction in predictions.items():
        check_prediction(method, prediction, real)
    if real.n_obs < 4:
        raise ValueError("`real` needs at least four observed cells.")
    if labels_key is not None and labels_key not in reference.obs:
        raise KeyError(f"Labels column {labels_key!r} not found in `reference.obs`.")
    reference_matrix = log_normalized_matrix(reference, layer)
    pca = shared_pca([reference_matrix], n_pcs, seed)
    real_pcs = pca.transform(dense(log_normalized_matrix(real, layer)))
    classifier = None
    if labels_key:
        reference_pcs = pca.transform(dense(reference_matrix))
        classifier = label_classifier(
            reference_pcs, reference.obs[labels_key], n_neighbors, label_method
        )

    def labels_of(pcs: np.ndarray) -> np.ndarray:
        return classifier.predict(pcs)

    real_labels = labels_of(real_pcs) if labels_key else None
    annotation = None
    if labels_key and labels_key in real.obs:
        annotation = real.obs[labels_key].astype(str).to_numpy()
    categories = sorted(set(reference.obs[labels_key].astype(str))) if labels_key else []

    # scored against halves, never all observed cells, so that predictions and the noise floor
    # compare populations of the same sizes
    first, second = np.array_split(np.random.default_rng(seed).permutation(real.n_obs), 2)

    def distances(pcs: np.ndarray, halves: list[np.ndarray]) -> dict:
        rng = np.random.default_rng(seed)
        scored = []
        for half in halves:
            drawn = subsample(pcs, rng, len(half))
            scored.append(
                (
                    wasserstein_distance(drawn, real_pcs[half], max_cells, seed),
                    energy_distance(drawn, real_pcs[half], seed),
                )
            )
        wasserstein, energy = np.mean(scored, axis=0)
        return {"wasserstein": float(wasserstein), "energy_distance": float(energy)}

    def fate_scores(pcs: np.ndarray, against: np.ndarray) -> dict:
        """Fate error against the classified observed cells ``against`` and their annotation."""
        if not labels_key:
            return {}
        labels = labels_of(pcs)
        scores = {"fate_error": proportion_error(labels, real_labels[against])}
        if annotation is not None:
            scores["fate_error_annotated"] = proportion_error(labels, annotation[against])
        return {**scores, **_fractions(labels, categories)}

    every_cell = np.arange(real.n_obs)
    rows = {}
    for method, prediction in predictions.items():
        pcs = pca.transform(dense(prediction.X))
        rows[method] = {**distances(pcs, [first, second]), **fate_scores(pcs, every_cell)}
    if labels_key:
        rows["observed"] = _fractions(real_labels, categories)
        if annotation is not None:
            rows["observed"]["label_transfer_accuracy"] = float(np.mean(annotation == real_labels))
            rows["annotated"] = _fractions(annotation, categories)
    rows[NOISE_FLOOR] = {
        **distances(real_pcs[first], [second]),
        **fate_scores(real_pcs[first], second),
    }
    return pd.DataFrame.from_dict(rows, orient="index")


def _fractions(labels: np.ndarray, categories: list[str]) -> dict:
    return {f"fraction_{k}": v for k, v in label_proportions(labels, categories).items()}
