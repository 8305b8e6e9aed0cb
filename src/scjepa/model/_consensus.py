"""Pooling the predictions of one time point made from cells of two different time points."""

from __future__ import annotations

import numpy as np
from sklearn.neighbors import NearestNeighbors

from scjepa.metrics._transport import sinkhorn_coupling

MAX_COUPLED_CELLS = 3000
"""Most cells on either side of one coupling, which holds a dense cells x cells matrix."""


def pooling_partners(
    embeddings: np.ndarray,
    source_times: np.ndarray,
    target_time: float,
    seed: int = 0,
    epsilon: float = 0.05,
) -> np.ndarray | None:
    """A partner from the other source time for every cell predicted at ``target_time``.

    Applies when the source cells were sampled at exactly two times, neither of them
    ``target_time``. The predicted embeddings of the two sides are coupled by
    entropic optimal transport (:func:`~scjepa.metrics.sinkhorn_coupling`) and each cell's
    partner is drawn from its row of the coupling. Above ``MAX_COUPLED_CELLS`` cells per side,
    seeded subsamples are coupled and every other cell draws from the row of its nearest
    subsampled cell.

    Parameters
    ----------
    embeddings
        ``(cells, dimensions)`` predicted embeddings at ``target_time``.
    source_times
        Sampling time of each source cell.
    target_time
        The predicted time.
    seed
        Seed of the subsampling and of the partners drawn.
    epsilon
        Entropic regularisation of the coupling.

    Returns
    -------
    Position of each cell's partner, or ``None`` when there are not two source times.
    """
    sides = np.unique(source_times)
    if len(sides) != 2 or np.isin(target_time, sides):
        return None
    rng = np.random.default_rng(seed)
    before = np.flatnonzero(source_times == sides[0])
    after = np.flatnonzero(source_times == sides[1])
    partners = np.empty(len(source_times), dtype=int)
    partners[before] = _draw_partners(embeddings, before, after, rng, epsilon)
    partners[after] = _draw_partners(embeddings, after, before, rng, epsilon)
    return partners


def pooling_weights(source_times: np.ndarray, target_time: float) -> np.ndarray:
    """Weight of each cell's own prediction when averaged with its partner's.

    Inverse to the time the prediction spans, so the closer source counts more: sources ``d₁``
    and ``d₂`` away weigh ``d₂ / (d₁ + d₂)`` and ``d₁ / (d₁ + d₂)``. Between the two source times
    these are displacement interpolation's weights.
    """
    source_times = np.asarray(source_times, dtype=float)
    sides = np.unique(source_times)
    inverse_distance = 1.0 / np.abs(source_times - target_time)
    return inverse_distance / (1.0 / np.abs(sides - target_time)).sum()


def _draw_partners(
    embeddings: np.ndarray,
    rows: np.ndarray,
    candidates: np.ndarray,
    rng: np.random.Generator,
    epsilon: float,
) -> np.ndarray:
    coupled_rows = _at_most(rows, rng)
    candidates = _at_most(candidates, rng)
    coupling = sinkhorn_coupling(embeddings[coupled_rows], embeddings[candidates], epsilon=epsilon)
    cumulative = np.cumsum(coupling, axis=1)
    # a cell left out of the coupling draws from the row of its nearest coupled cell
    nearest = np.arange(len(rows))
    if len(coupled_rows) < len(rows):
        index = NearestNeighbors(n_neighbors=1).fit(embeddings[coupled_rows])
        nearest = index.kneighbors(embeddings[rows], return_distance=False)[:, 0]
    drawn = np.empty(len(rows), dtype=int)
    for chunk in np.array_split(np.arange(len(rows)), -(-len(rows) // MAX_COUPLED_CELLS)):
        row_cumulative = cumulative[nearest[chunk]]
        threshold = rng.random(len(chunk))[:, None] * row_cumulative[:, -1:]
        column = np.minimum((row_cumulative < threshold).sum(axis=1), len(candidates) - 1)
        drawn[chunk] = candidates[column]
    return drawn


def _at_most(cells: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if len(cells) <= MAX_COUPLED_CELLS:
        return cells
    return np.sort(rng.choice(cells, MAX_COUPLED_CELLS, replace=False))
