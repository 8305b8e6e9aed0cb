"""Checks and layout of multi-modal data (MuData of RNA with surface proteins and/or ATAC)."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from anndata import AnnData
from mudata import MuData
from scipy import sparse

from scjepa.data._validation import get_layer, validate_counts

logger = logging.getLogger(__name__)

DEFAULT_MODALITIES = {
    "rna_layer": "rna",
    "protein_layer": "protein",
    "atac_layer": "atac",
    "batch_key": "rna",
    "labels_key": "rna",
}
"""Which MuData modality holds each registered field, unless ``modalities=`` says otherwise."""

OTHER_MODALITY_FIELDS = {"protein_layer": "proteins", "atac_layer": "chromatin accessibility"}
"""Fields of the modalities that can be registered next to RNA, and what they measure."""


def resolve_modalities(
    mdata: MuData, modalities: dict[str, str | None] | None, layers: dict[str, str | None]
) -> dict[str, str | None]:
    """Which modality holds each field; ``None`` for a modality that is not registered.

    A protein or ATAC modality is registered when the MuData holds a modality of the name given
    for it (``"protein"`` and ``"atac"`` by default). Asking for one the MuData lacks (naming it
    in ``modalities``, or passing its layer in ``layers``) is an error, as is registering none.
    """
    if not isinstance(mdata, MuData):
        raise TypeError(f"`setup_mudata` needs a MuData, got {type(mdata).__name__}.")
    explicit = dict(modalities or {})
    resolved = {**DEFAULT_MODALITIES, **explicit}
    for field, name in resolved.items():
        if name is None or name in mdata.mod:
            continue
        optional = field in OTHER_MODALITY_FIELDS and field not in explicit
        if optional and layers.get(field) is None:
            resolved[field] = None
            continue
        raise ValueError(
            f"Modality {name!r} (for {field}) is not in the MuData; it has "
            f"{sorted(mdata.mod)}. Pass `modalities={{{field!r}: ...}}`."
        )
    if all(resolved[field] is None for field in OTHER_MODALITY_FIELDS):
        raise ValueError(
            "`setup_mudata` models RNA with proteins or chromatin accessibility, but the MuData "
            f"has neither (modalities {sorted(mdata.mod)}); name them with `modalities="
            "{'protein_layer': ..., 'atac_layer': ...}`, or use `setup_anndata` for RNA alone."
        )
    return resolved


def registered_layers(
    modalities: dict[str, str | None], layers: dict[str, str | None]
) -> dict[str, tuple[str, str | None]]:
    """``{field: (modality, layer)}`` of the modalities registered next to RNA."""
    return {
        field: (modalities[field], layers[field])
        for field in OTHER_MODALITY_FIELDS
        if modalities.get(field) is not None
    }


def prepare_mudata(
    mdata: MuData,
    modalities: dict[str, str | None],
    layers: dict[str, str | None],
    pad: bool = True,
) -> None:
    """Refuse a MuData BioJEPA cannot model; add cells missing from the other modalities.

    Every cell must have RNA. Cells absent from a protein or ATAC modality are added to it as
    all-zero rows (``pad=True``), which the model treats as "not measured".

    Parameters
    ----------
    mdata
        The MuData.
    modalities
        Output of :func:`resolve_modalities`.
    layers
        Counts layer per field (``"rna_layer"``, ``"protein_layer"``, ``"atac_layer"``).
    pad
        Whether to add the missing cells.
    """
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
    validate_counts(rna, layers["rna_layer"])
    padded = False
    for field, (name, layer) in registered_layers(modalities, layers).items():
        other = mdata.mod[name]
        what = OTHER_MODALITY_FIELDS[field]
        unknown = other.obs_names.difference(rna.obs_names)
        if len(unknown):
            raise ValueError(
                f"{len(unknown)} cells with {what} have no RNA (e.g. {unknown[:3].tolist()}); "
                "the modalities' obs_names must match."
            )
        validate_counts(other, layer)
        if pad and (
            other.n_obs != rna.n_obs
            or not np.array_equal(np.asarray(other.obs_names), np.asarray(rna.obs_names))
        ):
            logger.info(
                "%d cells have no %s measurement; they are added as all-zero rows and treated "
                "as unmeasured.",
                rna.n_obs - other.n_obs,
                what,
            )
            mdata.mod[name] = _aligned(other, rna.obs_names, layer)
            padded = True
    if padded:
        mdata.update()


def _aligned(other: AnnData, obs_names: pd.Index, layer: str | None) -> AnnData:
    """``other`` reindexed to ``obs_names``, with zero counts for the cells it lacks.

    Sparse counts (ATAC) stay sparse.
    """
    position = obs_names.get_indexer(other.obs_names)
    # places each measured cell's row at its position; the other rows stay zero
    placement = sparse.csr_matrix(
        (np.ones(len(position), dtype=np.float32), (position, np.arange(len(position)))),
        shape=(len(obs_names), other.n_obs),
    )
    full = placement @ get_layer(other, layer)
    full = full.astype(np.float32).tocsr() if sparse.issparse(full) else full.astype(np.float32)
    aligned = AnnData(X=full, obs=pd.DataFrame(index=obs_names.copy()), var=other.var.copy())
    aligned.obs = aligned.obs.join(other.obs)
    if layer is not None:
        aligned.layers[layer] = full.copy()
    return aligned


def rna_of(data: AnnData | MuData, modality: str = "rna") -> AnnData:
    """The RNA AnnData of ``data`` (itself when it is an AnnData)."""
    return data.mod[modality] if isinstance(data, MuData) else data


def as_registered_mudata(
    rna: AnnData, rna_modality: str, others: dict[str, tuple[pd.DataFrame, str | None]]
) -> MuData:
    """Wrap cells measured by RNA alone into the registered layout, other modalities unmeasured.

    Parameters
    ----------
    rna
        The cells' RNA.
    rna_modality
        Name of the RNA modality.
    others
        ``{modality: (var, layer)}`` of every other registered modality.
    """
    mods = {rna_modality: rna}
    for name, (var, layer) in others.items():
        zeros = sparse.csr_matrix((rna.n_obs, len(var)), dtype=np.float32)
        other = AnnData(X=zeros, obs=pd.DataFrame(index=rna.obs_names.copy()), var=var.copy())
        if layer is not None:
            other.layers[layer] = zeros.copy()
        mods[name] = other
    return MuData(mods)
