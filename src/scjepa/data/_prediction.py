"""The AnnData layouts shared by every predictor (model and baselines)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from anndata import AnnData

from scjepa._constants import LATENT_OBSM_KEY, NORMALIZATION_TARGET_SUM


def prediction_anndata(
    source: AnnData,
    source_index: np.ndarray,
    perturbations: list[str],
    values: np.ndarray,
    perturbation_key: str = "perturbation",
    embeddings: np.ndarray | None = None,
    counts: np.ndarray | None = None,
    method: str = "BioJEPA",
    **uns,
) -> AnnData:
    """Assemble predicted cells: one row per (perturbation, source cell), perturbation-major.

    Parameters
    ----------
    source
        AnnData of the source cells.
    source_index
        Positions of the source cells in ``source``.
    perturbations
        Predicted perturbation labels.
    values
        ``(n_perturbations * n_sources, n_genes)`` log-normalised expression.
    perturbation_key
        Name of the perturbation column in the source data; ``"perturbation"`` is always written.
    embeddings
        Optional predicted embeddings, stored in ``obsm["X_biojepa"]``.
    counts
        Optional predicted counts, stored in ``layers["counts"]``.
    method
        Name of the predictor, stored in ``uns["scjepa"]["method"]``.
    **uns
        More entries for ``uns["scjepa"]``.
    """
    n_src = len(source_index)
    source_obs = source.obs.iloc[source_index]
    obs = _user_columns(pd.concat([source_obs] * len(perturbations), ignore_index=True))
    obs["source_cell"] = np.tile(np.asarray(source_obs.index, dtype=str), len(perturbations))
    labels = pd.Categorical(
        np.repeat(perturbations, n_src), categories=list(dict.fromkeys(perturbations))
    )
    obs["perturbation"] = labels
    if perturbation_key != "perturbation":
        obs[perturbation_key] = labels
    obs.index = [
        f"{cell}-{p}" for p, cell in zip(obs["perturbation"], obs["source_cell"], strict=True)
    ]
    return _predicted_cells(
        obs,
        source.var_names,
        values,
        embeddings,
        counts,
        method=method,
        perturbations=list(perturbations),
        **uns,
    )


def time_prediction_anndata(
    source: AnnData,
    source_index: np.ndarray | None,
    target_time: float,
    values: np.ndarray,
    time_key: str = "time",
    source_times: np.ndarray | None = None,
    embeddings: np.ndarray | None = None,
    method: str = "BioJEPA",
    **uns,
) -> AnnData:
    """Assemble cells predicted at ``target_time``: one row per source cell.

    Parameters
    ----------
    source
        AnnData of the source cells (for a baseline, the observed cells it returns or moves).
    source_index
        Positions of the source cells in ``source``; ``None`` takes all.
    target_time
        The predicted time, written to ``obs[time_key]``.
    values
        ``(n_sources, n_genes)`` log-normalised expression.
    time_key
        Name of the time column.
    source_times
        Sampling time of each source cell, written to ``obs["source_time"]``.
    embeddings
        Optional predicted embeddings, stored in ``obsm["X_biojepa"]``.
    method
        Name of the predictor, stored in ``uns["scjepa"]["method"]``.
    **uns
        More entries for ``uns["scjepa"]``.
    """
    source_index = np.arange(source.n_obs) if source_index is None else source_index
    obs = _user_columns(source.obs.iloc[source_index])
    obs["source_cell"] = np.asarray(obs.index, dtype=str)
    if source_times is not None:
        obs["source_time"] = np.asarray(source_times, dtype=float)
    obs[time_key] = float(target_time)
    names = pd.Index([f"{cell}-t{target_time:g}" for cell in obs["source_cell"]])
    if not names.is_unique:  # a baseline may draw a source cell more than once
        names = names + "-" + pd.Index(obs.groupby("source_cell").cumcount().astype(str))
    obs.index = names
    return _predicted_cells(
        obs, source.var_names, values, embeddings, None, method=method, time=target_time, **uns
    )


def modality_prediction_anndata(
    source: AnnData,
    target_var: pd.DataFrame,
    values: np.ndarray,
    embeddings: np.ndarray | None = None,
    method: str = "BioJEPA",
    **uns,
) -> AnnData:
    """Assemble predicted values of another modality for the cells of ``source``.

    Parameters
    ----------
    source
        AnnData of the cells the prediction starts from (e.g. RNA only); its ``obs`` is kept.
    target_var
        ``var`` of the predicted modality (e.g. the training protein AnnData's).
    values
        ``(n_cells, n_features)`` predicted log-normalised values.
    embeddings
        Optional predicted embeddings, stored in ``obsm["X_biojepa"]``.
    method
        Name of the predictor, stored in ``uns["scjepa"]["method"]``.
    **uns
        More entries for ``uns["scjepa"]``.
    """
    predicted = _predicted_cells(
        _user_columns(source.obs),
        pd.Index(target_var.index),
        values,
        embeddings,
        None,
        method=method,
        **uns,
    )
    predicted.var = target_var.copy()
    return predicted


def _user_columns(obs: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``obs`` without the columns scvi-tools adds when registering data."""
    return obs.loc[:, [c for c in obs.columns if not str(c).startswith("_scvi")]].copy()


def _predicted_cells(
    obs: pd.DataFrame,
    var_names: pd.Index,
    values: np.ndarray,
    embeddings: np.ndarray | None,
    counts: np.ndarray | None,
    method: str,
    **uns,
) -> AnnData:
    predicted = AnnData(
        X=np.asarray(values, dtype=np.float32),
        obs=obs,
        var=pd.DataFrame(index=var_names.copy()),
    )
    if embeddings is not None:
        predicted.obsm[LATENT_OBSM_KEY] = np.asarray(embeddings, dtype=np.float32)
    if counts is not None:
        predicted.layers["counts"] = np.asarray(counts, dtype=np.float32)
    predicted.uns["scjepa"] = {
        "method": method,
        "X": "log1p_normalized",
        "normalization_target_sum": NORMALIZATION_TARGET_SUM,
        "counts_layer": "counts" if counts is not None else None,
        **uns,
    }
    return predicted
