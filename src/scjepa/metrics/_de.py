"""Differential-expression overlap between predicted and observed perturbation responses."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import scanpy as sc
from anndata import AnnData
from scipy import sparse

from scjepa.metrics._expression import mean_profile


def de_genes(
    perturbed: np.ndarray | sparse.spmatrix,
    control: np.ndarray | sparse.spmatrix,
    var_names: pd.Index,
    fdr: float = 0.05,
) -> pd.DataFrame:
    """Genes differentially expressed between perturbed and control cells.

    Wilcoxon rank-sum test of scanpy's ``rank_genes_groups`` on log-normalised expression, with
    Benjamini-Hochberg correction. Genes with adjusted p-value below ``fdr`` are kept and ordered
    by the absolute difference of mean log-normalised expression, not by the test statistic: for
    predicted cells made by shifting the very control cells they are compared with, every shifted
    gene reaches the largest possible statistic, so only the size of the change separates them.

    Returns
    -------
    DataFrame indexed by gene with ``mean_difference``, ``score`` and ``pvals_adj``.
    """
    if sparse.issparse(perturbed) or sparse.issparse(control):
        matrix = sparse.vstack([sparse.csr_matrix(perturbed), sparse.csr_matrix(control)]).tocsr()
    else:
        matrix = np.vstack([perturbed, control])
    data = AnnData(
        X=matrix,
        obs=pd.DataFrame(
            {
                "group": pd.Categorical(
                    ["perturbed"] * perturbed.shape[0] + ["control"] * control.shape[0]
                )
            }
        ),
        var=pd.DataFrame(index=pd.Index(var_names, dtype=str)),
    )
    data.uns["log1p"] = {"base": None}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sc.tl.rank_genes_groups(
            data,
            "group",
            groups=["perturbed"],
            reference="control",
            method="wilcoxon",
            corr_method="benjamini-hochberg",
            tie_correct=True,
        )
    table = sc.get.rank_genes_groups_df(data, group="perturbed").set_index("names")
    table = table[table["pvals_adj"] < fdr]
    difference = mean_profile(perturbed) - mean_profile(control)
    table["mean_difference"] = pd.Series(difference, index=data.var_names).loc[table.index]
    order = table["mean_difference"].abs().sort_values(ascending=False, kind="stable").index
    return table.loc[order, ["mean_difference", "scores", "pvals_adj"]].rename(
        columns={"scores": "score"}
    )


def de_overlap(predicted_genes: pd.Index, observed_genes: pd.Index, k: int = 20) -> float:
    """Share of the top-``k`` observed DE genes that are also among the top-``k`` predicted ones.

    ``|top_k(predicted) ∩ top_k(observed)| / min(k, |observed DE|)``, as in cell-eval's DE
    overlap; NaN when the observed cells have no significant DE gene.
    """
    observed = list(observed_genes[:k])
    if not observed:
        return float("nan")
    return len(set(predicted_genes[:k]) & set(observed)) / len(observed)
