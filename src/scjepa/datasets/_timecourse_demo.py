"""Generated snapshot time course of a differentiation with a bifurcation."""

from __future__ import annotations

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from scjepa.data._features import log_normalize

FATES = ("progenitor", "fate_A", "fate_B")
"""Fate labels of the demo: uncommitted cells and the two branches."""


def timecourse_demo(
    n_time_points: int = 7,
    n_cells_per_time: int = 400,
    n_genes: int = 800,
    n_batches: int = 2,
    sampling_interval: float = 1.0,
    branch_point: float = 0.3,
    median_library_size: float = 1500.0,
    seed: int = 0,
) -> AnnData:
    """Generate a snapshot time course of raw counts in which progenitors split into two fates.

    Every cell is measured once, so consecutive time points are unpaired populations, as in
    scRNA-seq time courses of differentiation or reprogramming. The generator:

    * gives each cell a developmental progress ``s`` in [0, 1]; progress advances non-linearly
      in time (fast early, slower later) and varies between cells sampled at the same time, so
      neighbouring time points overlap;
    * commits cells past ``branch_point`` to fate A or fate B; fate B cells divide faster, so
      its share of committed cells grows over the course (as growth does in reprogramming, the
      reason Waddington-OT models proliferation);
    * expresses a progenitor program that fades, a maturation program shared by both fates,
      one program per fate switched on with gene-specific onsets, and a transient program that
      peaks around commitment, so expression is not linear in time;
    * adds a cell-cycle program unrelated to time, per-batch gene shifts, log-normal library
      sizes and negative binomial noise.

    Parameters
    ----------
    n_time_points
        Number of sampled times; at least 3.
    n_cells_per_time
        Cells sampled at each time (each sample varies by up to 15%).
    n_genes
        Number of genes; at least 100.
    n_batches
        Number of batches; each time point is split across all of them.
    sampling_interval
        Days between consecutive samples: times are ``0, sampling_interval, 2 *
        sampling_interval, ...``. The dynamics are set by the course's length, so ``13`` time
        points half a day apart sample the same six days as ``7`` a day apart, twice as densely.
    branch_point
        Progress at which cells commit to a fate.
    median_library_size
        Median total counts per cell.
    seed
        Random seed; the same seed gives the same data.

    Returns
    -------
    AnnData with ``layers["counts"]`` (raw counts, CSR) and ``X`` (log-normalised); ``obs``
    columns ``time`` (float, days), ``batch``, ``fate`` (``"progenitor"``, ``"fate_A"``,
    ``"fate_B"``), ``progress`` (the hidden developmental progress) and ``n_counts``; ``var``
    column ``program``.
    """
    if n_time_points < 3:
        raise ValueError("`n_time_points` must be at least 3.")
    if n_genes < 100:
        raise ValueError("`n_genes` must be at least 100.")
    if not (np.isfinite(sampling_interval) and sampling_interval > 0):
        raise ValueError("`sampling_interval` must be a positive number of days.")
    if not 0.0 < branch_point < 1.0:
        raise ValueError("`branch_point` must lie in (0, 1).")
    rng = np.random.default_rng(seed)
    times = np.arange(n_time_points, dtype=float) * sampling_interval
    t_max = times[-1]

    # ---- cells: time, progress, fate
    sizes = np.round(n_cells_per_time * rng.uniform(0.85, 1.15, size=n_time_points)).astype(int)
    time = np.repeat(times, sizes)
    n_cells = len(time)
    # progress slows down as cells mature
    mean_progress = 0.03 + 0.9 * (1.0 - np.exp(-0.8 * time / t_max)) / (1.0 - np.exp(-0.8))
    progress = np.clip(mean_progress + rng.normal(0.0, 0.07, n_cells), 0.0, 1.0)
    committed = progress > branch_point
    # faster division of fate B raises its share of committed cells over time
    share_b = 0.3 + 0.35 * time / t_max
    fate_code = np.where(committed, np.where(rng.random(n_cells) < share_b, 2, 1), 0)
    commitment = np.clip((progress - branch_point) / (1 - branch_point), 0, 1)

    # ---- gene programs
    names = ["progenitor", "maturation", "fate_A", "fate_B", "transient", "cell_cycle"]
    program_of_gene = np.full(n_genes, -1)
    order = rng.permutation(n_genes)
    per_program = n_genes // 10
    for p in range(len(names)):
        program_of_gene[order[p * per_program : (p + 1) * per_program]] = p
    loading = rng.uniform(0.8, 2.2, size=n_genes)
    onset = rng.uniform(0.0, 0.6, size=n_genes)  # where along a fate each gene switches on
    steepness = rng.uniform(8.0, 16.0, size=n_genes)

    activity = np.zeros((n_cells, n_genes))
    for g in range(n_genes):
        p = program_of_gene[g]
        if p == 0:
            activity[:, g] = 1.0 / (1.0 + np.exp(12.0 * (progress - 0.35 - 0.3 * onset[g])))
        elif p == 1:
            activity[:, g] = progress ** (0.5 + 2.0 * onset[g])
        elif p in (2, 3):
            on_fate = fate_code == p - 1
            switch = 1.0 / (1.0 + np.exp(-steepness[g] * (commitment - onset[g])))
            activity[:, g] = on_fate * switch
        elif p == 4:
            activity[:, g] = np.exp(-(((progress - branch_point - 0.05) / 0.12) ** 2))
    cycling = rng.random(n_cells) < 0.3
    activity[:, program_of_gene == 5] = cycling[:, None] * rng.uniform(0.6, 1.0, size=(n_cells, 1))

    batch = rng.integers(n_batches, size=n_cells)
    baseline = rng.normal(0.0, 1.8, size=n_genes)
    batch_shift = rng.normal(0.0, 0.2, size=(n_batches, n_genes))
    dispersion = rng.lognormal(np.log(5.0), 0.5, size=n_genes)
    log_mean = baseline + activity * loading + batch_shift[batch]
    proportions = np.exp(log_mean - log_mean.max(axis=1, keepdims=True))
    proportions /= proportions.sum(axis=1, keepdims=True)
    library = rng.lognormal(np.log(median_library_size), 0.3, size=n_cells)
    mean = proportions * library[:, None]
    counts = rng.poisson(rng.gamma(dispersion, mean / dispersion)).astype(np.float32)

    obs = pd.DataFrame(
        {
            "time": time,
            "batch": pd.Categorical([f"batch_{b}" for b in batch]),
            "fate": pd.Categorical(np.asarray(FATES)[fate_code], categories=list(FATES)),
            "progress": progress,
            "n_counts": counts.sum(axis=1),
        },
        index=[f"cell_{i:05d}" for i in range(n_cells)],
    )
    var = pd.DataFrame(
        {"program": pd.Categorical(np.array(["none", *names])[program_of_gene + 1])},
        index=[f"G{i:04d}" for i in range(n_genes)],
    )
    count_matrix = sparse.csr_matrix(counts)
    adata = AnnData(X=log_normalize(count_matrix), obs=obs, var=var)
    adata.layers["counts"] = count_matrix
    adata.uns["timecourse_demo"] = {"seed": seed, "branch_point": branch_point}
    return adata
