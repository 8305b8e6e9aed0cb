"""Fate proportions of predicted cells: labels transferred from annotated reference cells."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.base import ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier

LABEL_TRANSFER_METHODS = ("knn", "logistic")


def label_classifier(
    reference: np.ndarray, labels: Sequence, n_neighbors: int = 15, method: str = "knn"
) -> ClassifierMixin:
    """A classifier of annotated reference cells, fitted once.

    Parameters
    ----------
    reference
        ``(cells, dimensions)`` annotated cells, e.g. observed cells in a shared PCA.
    labels
        Annotation of each reference cell (cell type, fate, ...).
    n_neighbors
        Neighbours that vote (``method="knn"``).
    method
        ``"knn"``: majority vote of the ``n_neighbors`` nearest reference cells, suited to
        discrete cell types. ``"logistic"``: multinomial logistic regression, whose linear
        boundaries extend to states between the annotated ones, as cells of an unsampled time
        point on a continuous trajectory are. A vote of neighbours labels such cells by
        whichever annotated cells happen to lie closest: on ``timecourse_demo`` with day 2 held
        out, it labelled 67-72% of the real day-2 cells correctly, logistic regression 93%.
    """
    reference = np.asarray(reference)
    labels = np.asarray(labels).astype(str)
    if len(reference) != len(labels):
        raise ValueError("`labels` needs one entry per reference cell.")
    if method == "knn":
        classifier = KNeighborsClassifier(n_neighbors=min(n_neighbors, len(reference)))
    elif method == "logistic":
        classifier = LogisticRegression(max_iter=2000)
    else:
        raise ValueError(
            f"Unknown label transfer method {method!r}; choose one of {LABEL_TRANSFER_METHODS}."
        )
    return classifier.fit(reference, labels)


def transfer_labels(
    reference: np.ndarray,
    labels: Sequence,
    query: np.ndarray,
    n_neighbors: int = 15,
    method: str = "knn",
) -> np.ndarray:
    """Label each query cell with a classifier of the annotated reference cells.

    Parameters
    ----------
    reference
        ``(cells, dimensions)`` annotated cells, e.g. observed cells in a shared PCA.
    labels
        Annotation of each reference cell (cell type, fate, ...).
    query
        ``(cells, dimensions)`` cells to label, in the same space.
    n_neighbors
        Neighbours that vote (``method="knn"``).
    method
        ``"knn"`` or ``"logistic"`` (see :func:`label_classifier`).
    """
    reference, query = np.asarray(reference), np.asarray(query)
    if reference.ndim != 2 or query.ndim != 2 or reference.shape[1] != query.shape[1]:
        raise ValueError("`reference` and `query` must be (cells x dimensions) in one space.")
    return label_classifier(reference, labels, n_neighbors, method).predict(query)


def label_proportions(labels: Sequence, categories: Sequence[str] | None = None) -> pd.Series:
    """Fraction of cells per label (``categories`` fixes the order and keeps absent labels)."""
    counts = pd.Series(np.asarray(labels).astype(str)).value_counts()
    categories = list(counts.index) if categories is None else [str(c) for c in categories]
    return (counts.reindex(categories, fill_value=0) / max(len(labels), 1)).astype(float)


def proportion_error(predicted: Sequence, observed: Sequence) -> float:
    """Largest absolute difference of per-label fractions between two labelled populations.

    With fate labels this is how far predicted fate proportions are from the observed ones, in
    fractions (0.03 = three percentage points), as Waddington-OT and moscot validate the fate
    composition of interpolated time points.
    """
    categories = sorted(
        set(np.asarray(predicted).astype(str)) | set(np.asarray(observed).astype(str))
    )
    difference = label_proportions(predicted, categories) - label_proportions(observed, categories)
    return float(difference.abs().max())
