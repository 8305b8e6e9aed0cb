"""Checks that refuse input scjepa cannot model, with messages that say what to do."""

from __future__ import annotations

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse


def get_layer(adata: AnnData, layer: str | None):
    """Return ``adata.layers[layer]`` or ``adata.X``, with a clear error for a missing layer."""
    if layer is None:
        if adata.X is None:
            raise ValueError("`adata.X` is empty; pass `layer=` naming the raw counts layer.")
        return adata.X
    if layer not in adata.layers:
        raise KeyError(
            f"Layer {layer!r} not found in `adata.layers` (available: {list(adata.layers)})."
        )
    return adata.layers[layer]


def _stored_values(matrix) -> np.ndarray:
    if sparse.issparse(matrix):
        return np.asarray(matrix.data)
    if hasattr(matrix, "compute"):  # dask
        matrix = matrix.compute()
    return np.asarray(matrix).ravel()


def validate_counts(adata: AnnData, layer: str | None, chunk_size: int = 10_000) -> None:
    """Refuse an empty AnnData, or a counts matrix with NaN, inf, negative or non-integer values.

    scvi-tools only warns about non-integer counts; scjepa's decoder is a negative binomial on
    counts, so log-normalised input would silently train a wrong model.

    Parameters
    ----------
    adata
        The AnnData to check.
    layer
        Counts layer, or ``None`` for ``adata.X``.
    chunk_size
        Rows checked at a time, to bound memory on large or backed data.
    """
    if adata.n_obs == 0 or adata.n_vars == 0:
        raise ValueError(
            f"AnnData is empty ({adata.n_obs} cells x {adata.n_vars} genes); nothing to model."
        )
    matrix = get_layer(adata, layer)
    where = f"adata.layers[{layer!r}]" if layer is not None else "adata.X"
    for start in range(0, adata.n_obs, chunk_size):
        values = _stored_values(matrix[start : start + chunk_size])
        if values.size == 0:
            continue
        if not np.all(np.isfinite(values)):
            raise ValueError(
                f"{where} contains NaN or infinite values. Remove or fix those cells "
                "(e.g. `adata = adata[np.isfinite(...)]`) before setting up the model."
            )
        if values.min() < 0:
            raise ValueError(f"{where} contains negative values; raw counts are expected.")
        if not np.array_equal(values, np.round(values)):
            raise ValueError(
                f"{where} contains non-integer values, but BioJEPA expects raw counts "
                "(it normalises inside the model). Pass the counts layer with `layer=`, e.g. "
                "`layer='counts'`, keeping a copy made before `sc.pp.normalize_total`/`log1p`."
            )


def validate_obs_column(adata: AnnData, key: str | None, what: str) -> None:
    """Raise ``KeyError`` if ``key`` is given but absent from ``adata.obs``."""
    if key is not None and key not in adata.obs:
        raise KeyError(
            f"{what} column {key!r} not found in `adata.obs` (columns: {list(adata.obs.columns)})."
        )


def validate_numeric_obs(adata: AnnData, key: str, what: str) -> None:
    """Refuse a non-numeric or non-finite numeric obs column."""
    column = adata.obs[key]
    if not pd.api.types.is_numeric_dtype(column):
        raise ValueError(f"{what} column {key!r} must be numeric, got dtype {column.dtype}.")
    if not np.all(np.isfinite(column.to_numpy(dtype=float))):
        raise ValueError(f"{what} column {key!r} contains NaN or infinite values.")
