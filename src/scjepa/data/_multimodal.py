"""Checks and layout of multi-modal data (MuData of RNA and surface proteins)."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from anndata import AnnData
from mudata import MuData

from scjepa.data._matrix import dense
from scjepa.data._validation import get_layer, validate_counts

logger = logging.getLogger(__name__)

DEFAULT_MODALITIES = {
    "rna_layer": "rna",
    "protein_layer": "protein",
    "batch_key": "rna",
    "labels_key": "rna",
}
"""Which MuData modality holds each registered field, unless ``modalities=`` says otherwise."""


def prepare_mudata(
    mdata: MuData,
    modalities: dict[str, str],
    rna_layer: str | None,
    protein_layer: str | None,
    pad: bool = True,
) -> None:
    """Refuse a MuData BioJEPA cannot model; add cells missing from the protein modality.

    Every cell must have RNA. Cells absent from the protein modality are added to it as
    all-zero rows (``pad=True``), which the model treats as "protein not measured".
    """
    if not isinstance(mdata, MuData):
        raise TypeError(f"`setup_mudata` needs a MuData, got {type(mdata).__name__}.")
    for field, name in modalities.items():
        if name is not None and name not in mdata.mod:
            raise ValueError(
                f"Modality {name!r} (for {field}) is not in the MuData; it has "
                f"{sorted(mdata.mod)}. Pass `modalities={{{field!r}: ...}}`."
            )
    rna = mdata.mod[modalities["rna_layer"]]
    if not rna.obs_names.is_unique:
        raise ValueError("The RNA modality's obs_names must be unique.")
    if not np.array_equal(np.asarray(rna.obs_names), np.asarray(mdata.obs_names)):
        missing = mdata.obs_names.difference(rna.obs_names)[:5].tolist()
        raise ValueError(
            "Every cell needs RNA, in the MuData's order; cells without RNA (e.g. "
            f"{missing}) cannot be modelled. Subset them away, e.g. "
            "`mu.pp.filter_obs(mdata, 'rna:n_genes_by_counts', lambda x: x > 0)`, then "
            "`mdata.update()`."
        )
    validate_counts(rna, rna_layer)
    protein_name = modalities["protein_layer"]
    protein = mdata.mod[protein_name]
    unknown = protein.obs_names.difference(rna.obs_names)
    if len(unknown):
        raise ValueError(
            f"{len(unknown)} protein cells have no RNA (e.g. {unknown[:3].tolist()}); the "
            "modalities' obs_names must match."
        )
    validate_counts(protein, protein_layer)
    if pad and (
        protein.n_obs != rna.n_obs
        or not np.array_equal(np.asarray(protein.obs_names), np.asarray(rna.obs_names))
    ):
        logger.info(
            "%d cells have no protein measurement; they are added as all-zero rows and "
            "treated as unmeasured.",
            rna.n_obs - protein.n_obs,
        )
        mdata.mod[protein_name] = _aligned(protein, rna.obs_names, protein_layer)
        mdata.update()


def _aligned(protein: AnnData, obs_names: pd.Index, layer: str | None) -> AnnData:
    """``protein`` reindexed to ``obs_names``, with zero counts for the cells it lacks."""
    values = get_layer(protein, layer)
    values = dense(values)
    full = np.zeros((len(obs_names), protein.n_vars), dtype=np.float32)
    position = obs_names.get_indexer(protein.obs_names)
    full[position] = values
    aligned = AnnData(X=full, obs=pd.DataFrame(index=obs_names.copy()), var=protein.var.copy())
    aligned.obs = aligned.obs.join(protein.obs)
    if layer is not None:
        aligned.layers[layer] = full.copy()
    return aligned


def rna_of(data: AnnData | MuData, modality: str = "rna") -> AnnData:
    """The RNA AnnData of ``data`` (itself when it is an AnnData)."""
    return data.mod[modality] if isinstance(data, MuData) else data


def as_rna_protein_mudata(
    rna: AnnData, protein_var: pd.DataFrame, modalities: dict[str, str], protein_layer: str | None
) -> MuData:
    """Wrap cells measured by RNA alone into the registered layout, proteins all unmeasured."""
    zeros = np.zeros((rna.n_obs, len(protein_var)), dtype=np.float32)
    protein = AnnData(X=zeros, obs=pd.DataFrame(index=rna.obs_names.copy()), var=protein_var.copy())
    if protein_layer is not None:
        protein.layers[protein_layer] = zeros.copy()
    return MuData({modalities["rna_layer"]: rna, modalities["protein_layer"]: protein})
