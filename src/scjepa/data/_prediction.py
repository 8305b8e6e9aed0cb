"""The AnnData layout shared by every perturbation predictor (model and baselines)."""

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
    obs = pd.concat([source_obs] * len(perturbations), ignore_index=True)
    obs = obs.loc[:, [c for c in obs.columns if not str(c).startswith("_scvi")]]
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
    predicted = AnnData(
        X=np.asarray(values, dtype=np.float32),
        obs=obs,
        var=pd.DataFrame(index=source.var_names.copy()),
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
        "perturbations": list(perturbations),
        **uns,
    }
    return predicted
