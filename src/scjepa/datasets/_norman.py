"""Norman et al. (2019) CRISPRa Perturb-seq of K562 cells, single and double perturbations."""

from __future__ import annotations

import os

import anndata
import pandas as pd
from anndata import AnnData

from scjepa.data._validation import validate_counts
from scjepa.datasets._download import fetch

NORMAN_2019_URL = "https://zenodo.org/record/7041849/files/NormanWeissman2019_filtered.h5ad"
"""The scPerturb release of the data set (Peidli et al., Nature Methods 2024)."""

_CONTROL_LABELS = {"control", "ctrl", "non-targeting", "nan", ""}


def norman_2019(
    directory: str | os.PathLike | None = None,
    url: str = NORMAN_2019_URL,
    sha256: str | None = None,
) -> AnnData:
    """Load the Norman et al. (2019) Perturb-seq data with harmonised ``obs`` columns.

    About 110,000 K562 cells under CRISPR activation of 105 genes alone and 131 pairs: the field's
    standard test of predicting combinations (Norman et al., "Exploring genetic interaction
    manifolds constructed from rich single-cell phenotypes", Science 2019).

    The file is downloaded once into the cache (see :func:`scjepa.datasets.cache_dir`) and
    verified by SHA-256: against ``sha256`` when given, otherwise against the digest recorded at
    the first download.

    Parameters
    ----------
    directory
        Cache folder.
    url
        Where to download from.
    sha256
        Expected digest of the file.

    Returns
    -------
    AnnData of raw counts in ``X`` and ``layers["counts"]``; ``obs["perturbation"]`` as
    ``"control"``, ``"KLF1"`` or ``"KLF1+MAP2K6"``; ``obs["n_perturbed"]``;
    ``obs["cell_type"] = "K562"``; ``obs["batch"]`` from the sequencing group where present.
    Ready for ``BioJEPA.setup_anndata(adata, layer="counts", perturbation_key="perturbation")``.
    """
    path = fetch(url, "norman_2019.h5ad", sha256=sha256, directory=directory)
    return harmonize_norman(anndata.read_h5ad(path))


def harmonize_norman(adata: AnnData) -> AnnData:
    """Rename the columns of a scPerturb-style Norman AnnData to scjepa's conventions."""
    column = next((c for c in ("perturbation", "guide_ids", "condition") if c in adata.obs), None)
    if column is None:
        raise KeyError("No perturbation column (perturbation, guide_ids or condition) found.")
    adata.obs["perturbation"] = pd.Categorical(
        [_harmonize_label(label) for label in adata.obs[column].astype(str)]
    )
    adata.obs["n_perturbed"] = [
        0 if label == "control" else label.count("+") + 1 for label in adata.obs["perturbation"]
    ]
    adata.obs["cell_type"] = pd.Categorical(["K562"] * adata.n_obs)
    batch_column = next((c for c in ("gemgroup", "gem_group", "batch") if c in adata.obs), None)
    adata.obs["batch"] = pd.Categorical(
        adata.obs[batch_column].astype(str) if batch_column else ["0"] * adata.n_obs
    )
    if "counts" not in adata.layers:
        adata.layers["counts"] = adata.X.copy()
    validate_counts(adata, "counts")
    adata.var_names_make_unique()
    return adata


def _harmonize_label(label: str) -> str:
    members = [m.strip() for m in label.replace(",", "_").replace("+", "_").split("_")]
    members = sorted({m for m in members if m.lower() not in _CONTROL_LABELS})
    return "+".join(members) if members else "control"


__all__ = ["NORMAN_2019_URL", "harmonize_norman", "norman_2019"]
