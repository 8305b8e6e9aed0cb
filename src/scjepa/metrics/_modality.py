"""Scores of a predicted modality (e.g. protein from RNA) and of a joint embedding."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.stats import rankdata
from sklearn.neighbors import NearestNeighbors


def _paired(predicted: np.ndarray, observed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    predicted = np.asarray(predicted, dtype=np.float64)
    observed = np.asarray(observed, dtype=np.float64)
    if predicted.shape != observed.shape or predicted.ndim != 2:
        raise ValueError(
            f"Predicted and observed values must be (cells x features) of one shape, got "
            f"{predicted.shape} and {observed.shape}."
        )
    return predicted, observed


def feature_pearson(predicted: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """Pearson correlation over cells of each feature (e.g. protein), NaN for a constant one.

    The per-protein correlation of the NeurIPS 2021 multimodal benchmark's "predict modality"
    task (Lance et al., NeurIPS Datasets and Benchmarks 2022).
    """
    predicted, observed = _paired(predicted, observed)
    p = predicted - predicted.mean(axis=0)
    o = observed - observed.mean(axis=0)
    denominator = np.sqrt((p**2).sum(axis=0) * (o**2).sum(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (p * o).sum(axis=0) / denominator
    return np.where(denominator > 1e-12, r, np.nan)


def feature_rmse(predicted: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """Root mean squared error over cells of each feature."""
    predicted, observed = _paired(predicted, observed)
    return np.sqrt(((predicted - observed) ** 2).mean(axis=0))


def feature_auroc(predicted: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """Area under the ROC curve over cells of each feature, NaN where it is all 0 or all 1.

    How well predicted scores (e.g. the probability that a region is accessible) rank the cells
    in which the feature was observed (``observed > 0``, e.g. an ATAC fragment in the region)
    above those in which it was not: the chance that a random observed cell scores higher than a
    random unobserved one, ties counting half, computed from ranks (Mann-Whitney U). The score
    the ATAC predictions of joint RNA + ATAC models are judged by (e.g. PeakVI, Ashuach et al.,
    Nature Methods 2022). Constant predictions score 0.5.
    """
    predicted, observed = _paired(predicted, observed)
    positive = observed > 0
    n_positive = positive.sum(axis=0)
    n_negative = len(observed) - n_positive
    ranks = rankdata(predicted, axis=0)
    u = (ranks * positive).sum(axis=0) - n_positive * (n_positive + 1) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        auroc = u / (n_positive * n_negative)
    return np.where((n_positive > 0) & (n_negative > 0), auroc, np.nan)


def knn_label_accuracy(embedding: np.ndarray, labels: Sequence, n_neighbors: int = 15) -> float:
    """Fraction of cells whose label wins the vote of their nearest neighbours (self excluded).

    How well an embedding keeps cell identities apart, as scIB's label-conservation scores ask
    (Luecken et al., Nature Methods 2022), without a train/test split: every cell is classified
    by the others.
    """
    embedding = np.asarray(embedding, dtype=np.float64)
    labels = np.asarray(labels).astype(str)
    if len(embedding) != len(labels):
        raise ValueError("`labels` needs one entry per cell of `embedding`.")
    if len(embedding) <= n_neighbors:
        raise ValueError(f"Need more than {n_neighbors} cells, got {len(embedding)}.")
    # kneighbors() without a query leaves each cell out of its own neighbours
    _, neighbours = NearestNeighbors(n_neighbors=n_neighbors).fit(embedding).kneighbors()
    votes = labels[neighbours]
    categories, codes = np.unique(votes, return_inverse=True)
    counts = np.zeros((len(labels), len(categories)), dtype=int)
    np.add.at(counts, (np.repeat(np.arange(len(labels)), n_neighbors), codes.ravel()), 1)
    return float(np.mean(categories[counts.argmax(axis=1)] == labels))
