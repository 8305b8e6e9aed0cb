"""Perturbation feature tables: one row of numbers per perturbable entity (gene, drug, ...)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import sparse

from scjepa._constants import NORMALIZATION_TARGET_SUM
from scjepa.data._matrix import dense


def log_normalize(counts, library: np.ndarray | None = None) -> np.ndarray | sparse.csr_matrix:
    """``log1p`` of counts scaled to :data:`NORMALIZATION_TARGET_SUM` per cell.

    Works on dense arrays and scipy sparse matrices without densifying the latter; matches
    ``sc.pp.normalize_total(target_sum=1e4)`` followed by ``sc.pp.log1p``.

    Parameters
    ----------
    counts
        Cells x genes raw counts.
    library
        Total counts per cell; defaults to the row sums of ``counts``. Pass it when ``counts``
        holds only some of the genes.
    """
    if library is None:
        library = np.asarray(counts.sum(axis=1)).ravel()
    scale = (NORMALIZATION_TARGET_SUM / np.maximum(np.asarray(library).ravel(), 1.0)).astype(
        np.float32
    )
    if sparse.issparse(counts):
        counts = sparse.csr_matrix(counts, dtype=np.float32, copy=True)
        counts.data *= np.repeat(scale, np.diff(counts.indptr))
        np.log1p(counts.data, out=counts.data)
        return counts
    return np.log1p(np.asarray(counts, dtype=np.float32) * scale[:, None])


def group_means(
    matrix: np.ndarray | sparse.spmatrix, labels: np.ndarray, names: np.ndarray | list[str]
) -> np.ndarray:
    """Mean row of ``matrix`` per label: ``(len(names), n_columns)``, rows ordered as ``names``.

    One sparse indicator product, so sparse matrices are never densified cell by cell.
    """
    sums, counts = group_sums(matrix, labels, names)
    return sums / np.maximum(counts, 1)[:, None]


def group_sums(
    matrix: np.ndarray | sparse.spmatrix, labels: np.ndarray, names: np.ndarray | list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Sum of the rows of ``matrix`` per label, ordered as ``names``, and the rows per label.

    Rows whose label is not among ``names`` are left out.
    """
    codes = pd.Categorical(np.asarray(labels).astype(str), categories=list(names)).codes
    keep = codes >= 0
    rows = np.flatnonzero(keep)
    indicator = sparse.csr_matrix(
        (np.ones(len(rows)), (codes[keep], rows)), shape=(len(names), len(codes))
    )
    return dense(indicator @ matrix), np.bincount(codes[keep], minlength=len(names))


def sampled_log_expression(counts, max_cells: int = 20_000, seed: int = 0) -> np.ndarray:
    """Dense log-normalised expression of at most ``max_cells`` cells drawn without replacement.

    Bounds the time and memory of fitting principal axes on large data sets.
    """
    rng = np.random.default_rng(seed)
    n_obs = counts.shape[0]
    rows = np.sort(rng.choice(n_obs, size=min(n_obs, max_cells), replace=False))
    return dense(log_normalize(counts[rows]))


def principal_axes(
    expression: np.ndarray, n_components: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Principal axes of cells x genes ``expression``.

    Parameters
    ----------
    expression
        Dense cells x genes matrix (e.g. from :func:`sampled_log_expression`).
    n_components
        Number of axes; capped by the matrix's rank (cells and genes minus one).

    Returns
    -------
    The gene means ``(n_genes,)``, the axes as orthonormal columns ``(n_genes, k)``, and the
    standard deviation of the cells' coordinates along each axis ``(k,)``, largest first.
    """
    mean = expression.mean(axis=0)
    centred = expression - mean
    k = int(min(n_components, min(centred.shape) - 1))
    if k < 1:
        raise ValueError("Need at least two cells and two genes to find axes of variation.")
    _, singular, components = np.linalg.svd(centred, full_matrices=False)
    return mean, components[:k].T, singular[:k] / np.sqrt(len(expression))


def gene_features_from_expression(
    counts,
    gene_names: pd.Index,
    n_components: int = 32,
    max_cells: int = 20_000,
    seed: int = 0,
    perturbation_labels: np.ndarray | None = None,
    n_response_components: int = 10,
    delimiter: str = "+",
) -> pd.DataFrame:
    """Describe every measured gene by its loadings on the main axes of expression variation.

    A gene that was never perturbed in training but is measured still gets a feature vector, so a
    knock-down of it can be placed among the programs it co-varies with. The loadings are taken
    across single cells, with the gene's mean and spread added as two columns so that lowly and
    highly expressed genes differ. With ``perturbation_labels``, the gene's embedding in the
    space of perturbation responses is appended (:func:`response_gene_embedding`, the gene
    embedding of the linear model of Ahlmann-Eltze, Huber & Anders, Nature Methods 2025): genes
    that move together across perturbations, as members of one regulated program do, get close
    features even when they barely co-vary in unperturbed cells. A perturbed gene's own
    expression under its own perturbation is left out of that embedding (replaced by its median
    over perturbations): it carries the knock-down itself, which genes never perturbed in
    training cannot show, and would set seen and unseen genes apart.

    Parameters
    ----------
    counts
        Cells x genes raw counts (dense or scipy sparse).
    gene_names
        Names of the columns of ``counts``.
    n_components
        Number of principal axes; capped by the data's rank.
    max_cells
        Cells sampled (without replacement) to fit the axes, which bounds time and memory.
    seed
        Seed of that sample.
    perturbation_labels
        Optional perturbation label of every cell (controls included); adds
        ``n_response_components`` columns ``response1, ...`` when there are at least three labels.
    n_response_components
        Dimension of the response embedding.
    delimiter
        Separator of combination members in ``perturbation_labels``.

    Returns
    -------
    DataFrame indexed by gene name, columns standardised.
    """
    expression = sampled_log_expression(counts, max_cells, seed)
    mean, axes, spread = principal_axes(expression, n_components)
    k = axes.shape[1]
    blocks = [axes * spread, mean, expression.std(axis=0)]
    columns = [f"pc{i + 1}" for i in range(k)] + ["mean", "std"]
    if perturbation_labels is not None:
        labels = np.asarray(perturbation_labels).astype(str)
        names = np.unique(labels)
        if len(names) >= 3:
            means = group_means(log_normalize(counts), labels, names)
            _mask_own_targets(means, names, gene_names, delimiter)
            response = response_gene_embedding(means, n_response_components)
            blocks.append(response)
            columns += [f"response{i + 1}" for i in range(response.shape[1])]
    table = np.column_stack(blocks).astype(np.float32)
    table = (table - table.mean(axis=0)) / np.maximum(table.std(axis=0), 1e-6)
    return pd.DataFrame(table, index=pd.Index(gene_names, dtype=str), columns=columns)


def _mask_own_targets(
    means: np.ndarray, labels: np.ndarray, gene_names: pd.Index, delimiter: str
) -> None:
    """Replace each perturbed gene's mean under its own perturbation by its median over labels."""
    position = {str(name): i for i, name in enumerate(gene_names)}
    median = np.median(means, axis=0)
    for row, label in enumerate(labels):
        for member in str(label).split(delimiter):
            column = position.get(member)
            if column is not None:
                means[row, column] = median[column]


def validate_feature_table(features: pd.DataFrame) -> pd.DataFrame:
    """Check a user-supplied perturbation feature table and return it as float32."""
    if not isinstance(features, pd.DataFrame):
        raise TypeError(
            "`perturbation_features` must be a pandas DataFrame indexed by perturbation name, "
            f"got {type(features).__name__}."
        )
    if features.shape[0] == 0 or features.shape[1] == 0:
        raise ValueError("`perturbation_features` is empty.")
    if not features.index.is_unique:
        duplicated = features.index[features.index.duplicated()].unique()[:5].tolist()
        raise ValueError(f"`perturbation_features` has duplicated names, e.g. {duplicated}.")
    values = features.to_numpy(dtype=np.float32)
    if not np.all(np.isfinite(values)):
        raise ValueError("`perturbation_features` contains NaN or infinite values.")
    return pd.DataFrame(values, index=features.index.astype(str), columns=features.columns)


def response_gene_embedding(perturbation_means: np.ndarray, n_components: int = 10) -> np.ndarray:
    """Embed genes by how they vary across the mean profiles of training perturbations.

    The gene embedding of the linear model of Ahlmann-Eltze, Huber & Anders (Nature Methods
    2025): the principal-component scores of the genes x perturbations matrix of mean
    log-normalised expression, centred per gene. Genes that respond together get close
    embeddings, and a perturbed gene is placed by its own response profile, so a gene never
    perturbed in training still gets one as long as it is measured.

    Parameters
    ----------
    perturbation_means
        ``(n_perturbations, n_genes)`` mean log-normalised expression per training perturbation.
    n_components
        Embedding dimension ``K``; capped by the number of perturbations minus one.

    Returns
    -------
    ``(n_genes, K)`` gene scores ``U_K S_K``.
    """
    matrix = np.asarray(perturbation_means, dtype=np.float64).T
    centred = matrix - matrix.mean(axis=1, keepdims=True)
    k = int(min(n_components, min(centred.shape) - 1))
    if k < 1:
        raise ValueError("Need at least two training perturbations to embed genes.")
    left, singular, _ = np.linalg.svd(centred, full_matrices=False)
    return left[:, :k] * singular[:k]
