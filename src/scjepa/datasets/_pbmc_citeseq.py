"""10x Genomics PBMC CITE-seq (RNA + 14 surface proteins), as a MuData."""

from __future__ import annotations

import os

import anndata
import numpy as np
import pandas as pd
from anndata import AnnData
from mudata import MuData

from scjepa.data._validation import validate_counts
from scjepa.datasets._download import fetch

PBMC_10K_CITESEQ_URL = (
    "https://github.com/YosefLab/scVI-data/raw/master/pbmc_10k_protein_v3.h5ad?raw=true"
)
"""10k PBMCs stained with TotalSeq-B antibodies (10x Genomics), filtered as for totalVI."""


def pbmc_10k_citeseq(
    directory: str | os.PathLike | None = None,
    url: str = PBMC_10K_CITESEQ_URL,
    sha256: str | None = None,
) -> MuData:
    """Load the 10x Genomics 10k PBMC CITE-seq data set as a MuData of raw counts.

    About 7,000 peripheral blood mononuclear cells after doublet and outlier filtering, with
    RNA and 14 surface proteins: the data set totalVI was demonstrated on (Gayoso et al.,
    "Joint probabilistic modeling of single-cell multi-omic data with totalVI", Nature Methods
    2021).

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
    MuData with ``"rna"`` (raw counts in ``X`` and ``layers["counts"]``) and ``"protein"`` (raw
    counts in ``X`` and ``layers["counts"]``), ready for ``BioJEPA.setup_mudata``.
    """
    path = fetch(url, "pbmc_10k_citeseq.h5ad", sha256=sha256, directory=directory)
    return citeseq_anndata_to_mudata(anndata.read_h5ad(path))


def citeseq_anndata_to_mudata(adata: AnnData, protein_key: str = "protein_expression") -> MuData:
    """Split an AnnData with protein counts in ``obsm[protein_key]`` into RNA and protein.

    The protein matrix may be a DataFrame (columns are the protein names) or an array with names
    in ``uns["protein_names"]``.
    """
    if protein_key not in adata.obsm:
        raise KeyError(f"No protein counts in `adata.obsm[{protein_key!r}]`.")
    proteins = adata.obsm[protein_key]
    if isinstance(proteins, pd.DataFrame):
        names, values = list(proteins.columns), proteins.to_numpy()
    else:
        values = np.asarray(proteins)
        names = list(
            adata.uns.get("protein_names", [f"protein_{i}" for i in range(values.shape[1])])
        )
    values = values.astype(np.float32)
    rna = AnnData(X=adata.X.copy(), obs=adata.obs.copy(), var=adata.var.copy())
    rna.layers["counts"] = rna.X.copy()
    rna.var_names_make_unique()
    validate_counts(rna, "counts")
    protein = AnnData(
        X=values, obs=adata.obs.copy(), var=pd.DataFrame(index=[str(n) for n in names])
    )
    protein.layers["counts"] = values.copy()
    validate_counts(protein, "counts")
    mdata = MuData({"rna": rna, "protein": protein})
    mdata.obs = adata.obs.loc[mdata.obs_names].copy()
    return mdata


__all__ = ["PBMC_10K_CITESEQ_URL", "citeseq_anndata_to_mudata", "pbmc_10k_citeseq"]
