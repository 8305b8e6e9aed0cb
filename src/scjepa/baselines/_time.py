"""Time-course baselines: the nearest observed time point and optimal-transport interpolation.

Both follow the validation protocol of Waddington-OT (Schiebinger et al., Cell 2019) and moscot
(Klein et al., Nature 2025): hold out a time point, predict its cells from the others, and
compare populations. Predictions share the layout of ``BioJEPA.predict_time``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse
from sklearn.decomposition import PCA

from scjepa.data._matrix import dense
from scjepa.data._prediction import time_prediction_anndata
from scjepa.data._validation import validate_numeric_obs, validate_obs_column
from scjepa.metrics._expression import log_normalized_matrix
from scjepa.metrics._transport import sinkhorn_coupling


class TimeCourseBaseline:
    """Shared ``fit`` of the time-course baselines: the observed cells of every time point.

    Parameters
    ----------
    time_key
        Numeric ``obs`` column of sampling times.
    layer
        Layer of raw counts (normalised with ``normalize_total`` + ``log1p``); ``None`` takes
        ``X`` as log-normalised already.
    """

    name = "time_baseline"

    def __init__(self, time_key: str = "time", layer: str | None = "counts"):
        self.time_key = time_key
        self.layer = layer
        self.times_: np.ndarray | None = None

    def fit(self, adata: AnnData) -> TimeCourseBaseline:
        """Keep the log-normalised cells of each training time point."""
        validate_obs_column(adata, self.time_key, "Time")
        validate_numeric_obs(adata, self.time_key, "Time")
        time = adata.obs[self.time_key].to_numpy(dtype=float)
        self.times_ = np.unique(time)
        if len(self.times_) < 2:
            raise ValueError(f"Time column {self.time_key!r} has a single time point.")
        matrix = log_normalized_matrix(adata, self.layer)
        self.expression_ = sparse.csr_matrix(matrix) if sparse.issparse(matrix) else matrix
        self.cell_time_ = time
        self.cells_ = AnnData(obs=adata.obs.copy(), var=pd.DataFrame(index=adata.var_names))
        return self

    def _check_fitted(self) -> None:
        if self.times_ is None:
            raise RuntimeError(f"Call `fit` before predicting with {type(self).__name__}.")

    def _cells_at(self, time: float) -> np.ndarray:
        return np.flatnonzero(self.cell_time_ == time)

    def _dense_rows(self, rows: np.ndarray) -> np.ndarray:
        return dense(self.expression_[rows])

    def _observed(self, time: float, target_time: float) -> AnnData:
        """The observed cells of training time ``time``, relabelled ``target_time``."""
        rows = self._cells_at(time)
        return self._prediction(rows, target_time, self._dense_rows(rows), self.cell_time_[rows])

    def _prediction(self, rows, target_time, values, source_times) -> AnnData:
        return time_prediction_anndata(
            self.cells_,
            rows,
            target_time,
            values,
            time_key=self.time_key,
            source_times=source_times,
            method=self.name,
        )


class NearestTimeBaseline(TimeCourseBaseline):
    """Predicts the cells of the observed time point nearest to the target (ties: the earlier)."""

    name = "nearest_time"

    def predict_time(self, target_time: float) -> AnnData:
        """The observed cells of the nearest training time point, relabelled ``target_time``."""
        self._check_fitted()
        nearest = self.times_[np.argmin(np.abs(self.times_ - target_time))]
        return self._observed(nearest, target_time)


class OTInterpolationBaseline(TimeCourseBaseline):
    """Displacement interpolation along the optimal transport coupling of neighbouring time points.

    The cells of the observed time points ``t0 < target < t1`` around the target are coupled by
    entropic optimal transport in a PCA of the training cells; pairs ``(i, j)`` are drawn from
    the coupling and each predicted cell is ``(1 − α) x_i + α x_j`` in log-normalised
    expression, ``α = (target − t0) / (t1 − t0)`` (McCann's displacement interpolation, the
    baseline of Waddington-OT and moscot). After the last time point the last two are coupled
    and ``α > 1`` extrapolates along the same pairs; before the first, the first two with
    ``α < 0``.

    Parameters
    ----------
    time_key, layer
        As in :class:`TimeCourseBaseline`.
    n_pcs
        Dimension of the PCA the coupling is computed in.
    epsilon
        Entropic regularisation (see :func:`scjepa.metrics.sinkhorn_coupling`).
    max_cells
        Most cells per time point entering the coupling (subsampled, seeded).
    """

    name = "ot_interpolation"

    def __init__(
        self,
        time_key: str = "time",
        layer: str | None = "counts",
        n_pcs: int = 30,
        epsilon: float = 0.05,
        max_cells: int = 3000,
    ):
        super().__init__(time_key, layer)
        self.n_pcs = n_pcs
        self.epsilon = epsilon
        self.max_cells = max_cells

    def fit(self, adata: AnnData, seed: int = 0) -> OTInterpolationBaseline:
        """Keep the training cells and fit the PCA the coupling is computed in."""
        super().fit(adata)
        matrix = self.expression_
        n_components = int(min(self.n_pcs, matrix.shape[0] - 1, matrix.shape[1]))
        self.pca_ = PCA(n_components=n_components, random_state=seed).fit(dense(matrix))
        return self

    def predict_time(
        self, target_time: float, n_cells: int | None = None, seed: int = 0
    ) -> AnnData:
        """Cells interpolated (or extrapolated) to ``target_time``.

        Parameters
        ----------
        target_time
            Time to predict.
        n_cells
            Cells to draw; by default the mean size of the two coupled time points.
        seed
            Seed of the subsampling and of the pairs drawn.
        """
        self._check_fitted()
        rng = np.random.default_rng(seed)
        if np.isin(target_time, self.times_):
            return self._observed(target_time, target_time)
        later = np.searchsorted(self.times_, target_time)
        later = int(np.clip(later, 1, len(self.times_) - 1))
        t0, t1 = self.times_[later - 1], self.times_[later]
        alpha = (target_time - t0) / (t1 - t0)
        rows0, rows1 = (self._subsample(self._cells_at(t), rng) for t in (t0, t1))
        x0, x1 = self._dense_rows(rows0), self._dense_rows(rows1)
        coupling = sinkhorn_coupling(
            self.pca_.transform(x0), self.pca_.transform(x1), epsilon=self.epsilon
        )
        n_cells = n_cells or int(round((len(rows0) + len(rows1)) / 2))
        flat = rng.choice(coupling.size, size=n_cells, p=coupling.ravel() / coupling.sum())
        i, j = np.unravel_index(flat, coupling.shape)
        values = np.maximum((1 - alpha) * x0[i] + alpha * x1[j], 0.0)
        return self._prediction(rows0[i], target_time, values, np.full(n_cells, t0))

    def _subsample(self, rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if len(rows) <= self.max_cells:
            return rows
        return np.sort(rng.choice(rows, self.max_cells, replace=False))
