"""Fate proportions of predicted cells: labels transferred from annotated reference cells."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.neighbors import KNeighborsClassifier


def label_classifier(
    reference: np.ndarray, labels: Sequence, n_neighbors: int = 15
) -> KNeighborsClassifier:
    """A majority vote of the ``n_neighbors`` nearest annotated reference cells, fitted once.

    Parameters
    ----------
    reference
        ``(cells, dimensions)`` annotated cells, e.g. observed cells in a shared PCA.
    labels
        Annotation of each reference cell (cell type, fate, ...).
    n_neighbors
        Neighbours that vote.
    """
    reference = np.asarray(reference)
    labels = np.asarray(labels).astype(str)
    if len(reference) != len(labels):
        raise ValueError("`labels` needs one entry per reference cell.")
    classifier = KNeighborsClassifier(n_neighbors=min(n_neighbors, len(reference)))
    return classifier.fit(reference, labels)


def transfer_labels(
    reference: np.ndarray, labels: Sequence, query: np.ndarray, n_neighbors: int = 15
) -> np.ndarray:
    """Label each query cell by majority vote of its ``n_neighbors`` nearest reference cells.

    Parameters
    ----------
    reference
        ``(cells, dimensions)`` annotated cells, e.g. observed cells in a shared PCA.
    labels
        Annotation of each reference cell (cell type, fate, ...).
    query
        ``(cells, dimensions)`` cells to label, in the same space.
    n_neighbors
        Neighbours that vote.
    """
    reference, query = np.asarray(reference), np.asarray(query)
    if reference.ndim != 2 or query.ndim != 2 or reference.shape[1] != query.shape[1]:
        raise ValueError("`reference` and `query` must be (cells x dimensions) in one space.")
    return label_classifier(reference, labels, n_neighbors).predict(query)


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
