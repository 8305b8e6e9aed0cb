"""Generated Perturb-seq data: gene programs, cell-type-specific and non-additive effects."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from scjepa.data._features import log_normalize


def perturbseq_demo(
    n_cells: int = 6000,
    n_genes: int = 500,
    n_programs: int = 12,
    n_perturbed_genes: int = 36,
    n_combinations: int = 30,
    n_cell_types: int = 3,
    n_batches: int = 2,
    control_fraction: float = 0.15,
    median_library_size: float = 1200.0,
    seed: int = 0,
) -> AnnData:
    """Generate a CRISPR-interference Perturb-seq experiment of raw counts.

    The generator is mechanistic so that the prediction task has structure to learn and a
    mean-shift model visibly fails:

    * genes belong to regulatory programs; each cell type runs its own mix of programs, and
      cells vary around it;
    * perturbed genes are regulators of one program (activators, or a few repressors) and are
      themselves knocked down (expression reduced about 85%, as with CRISPRi);
    * a perturbation changes its program in proportion to how active the program is in the cell,
      so effects differ between cell types, and changes spread to downstream programs through a
      sparse program network;
    * combinations are not additive: effects on one program saturate (buffering), and some pairs
      switch on a third program only together (synergy);
    * counts are negative binomial with log-normal library sizes and gene-specific dispersions,
      with per-batch gene shifts.

    Parameters
    ----------
    n_cells
        Number of cells.
    n_genes
        Number of genes (at least ``n_perturbed_genes + n_programs``).
    n_programs
        Number of gene programs.
    n_perturbed_genes
        Number of genes perturbed alone.
    n_combinations
        Number of double perturbations, drawn among the perturbed genes.
    n_cell_types
        Number of cell types (2 or 3 for the demo; any positive number works).
    n_batches
        Number of batches.
    control_fraction
        Fraction of control cells.
    median_library_size
        Median total counts per cell.
    seed
        Random seed; the same seed gives the same data.

    Returns
    -------
    AnnData with ``layers["counts"]`` (raw counts, CSR) and ``X`` (log-normalised), ``obs`` columns
    ``perturbation`` (``"control"``, ``"G0003"``, ``"G0003+G0017"``), ``cell_type``, ``batch``,
    ``n_perturbed``, and ``var`` columns ``program`` (main program, -1 for none) and
    ``is_regulator``.
    """
    if n_genes < n_perturbed_genes + n_programs:
        raise ValueError("`n_genes` must be at least `n_perturbed_genes + n_programs`.")
    if not 0.0 < control_fraction < 1.0:
        raise ValueError("`control_fraction` must lie in (0, 1).")
    rng = np.random.default_rng(seed)
    gene_names = np.array([f"G{i:04d}" for i in range(n_genes)])

    # ---- genes and programs
    program_of_gene = np.full(n_genes, -1)
    loadings = np.zeros((n_genes, n_programs))
    members = rng.permutation(n_genes)[: int(0.7 * n_genes)]
    for g in members:
        p = rng.integers(n_programs)
        program_of_gene[g] = p
        loadings[g, p] = rng.uniform(0.6, 1.4) * rng.choice([1, 1, 1, -1])
        if rng.random() < 0.25:  # some genes respond to a second program
            loadings[g, rng.integers(n_programs)] += rng.uniform(0.2, 0.6)
    regulators = _choose_regulators(rng, program_of_gene, n_programs, n_perturbed_genes)
    regulator_program = program_of_gene[regulators]
    regulator_strength = rng.uniform(0.6, 1.6, size=len(regulators))
    regulator_sign = np.where(rng.random(len(regulators)) < 0.2, 1.0, -1.0)  # knock-down direction
    for g in regulators:  # regulators are expressed and load on their own program
        loadings[g, program_of_gene[g]] = abs(loadings[g, program_of_gene[g]]) + 0.3

    network = np.zeros((n_programs, n_programs))
    for p in range(n_programs):
        for q in rng.choice(np.delete(np.arange(n_programs), p), size=2, replace=False):
            network[p, q] = rng.uniform(0.3, 0.8) * rng.choice([1, -1])

    baseline = rng.normal(0.0, 2.0, size=n_genes)
    dispersion = rng.lognormal(np.log(4.0), 0.5, size=n_genes)
    batch_shift = rng.normal(0.0, 0.2, size=(n_batches, n_genes))
    type_activity = rng.uniform(0.0, 0.4, size=(n_cell_types, n_programs))
    for t in range(n_cell_types):
        on = rng.choice(n_programs, size=max(2, n_programs // 2), replace=False)
        type_activity[t, on] = rng.uniform(1.0, 2.0, size=len(on))

    # ---- perturbation conditions
    singles = [(i,) for i in range(len(regulators))]
    all_pairs = list(itertools.combinations(range(len(regulators)), 2))
    chosen = rng.choice(len(all_pairs), size=min(n_combinations, len(all_pairs)), replace=False)
    doubles = [all_pairs[i] for i in sorted(chosen)]
    synergy_program = {
        pair: int(rng.integers(n_programs)) for pair in doubles if rng.random() < 0.4
    }
    conditions = [()] + singles + doubles

    # ---- cells
    n_control = int(round(control_fraction * n_cells))
    condition_of_cell = np.concatenate(
        [np.zeros(n_control, dtype=int), rng.integers(1, len(conditions), size=n_cells - n_control)]
    )
    rng.shuffle(condition_of_cell)
    cell_type = rng.integers(n_cell_types, size=n_cells)
    batch = rng.integers(n_batches, size=n_cells)
    activity = type_activity[cell_type] * rng.lognormal(0.0, 0.25, size=(n_cells, n_programs))

    log_fold = np.zeros((n_cells, n_programs))
    knocked_down = np.zeros((n_cells, n_genes), dtype=bool)
    for c, condition in enumerate(conditions):
        cells = np.flatnonzero(condition_of_cell == c)
        if not condition or len(cells) == 0:
            continue
        direct = np.zeros(n_programs)
        for r in condition:
            direct[regulator_program[r]] += regulator_sign[r] * regulator_strength[r]
            knocked_down[cells, regulators[r]] = True
        direct = 1.5 * np.tanh(direct / 1.5)  # buffering: effects on one program saturate
        if condition in synergy_program:
            direct[synergy_program[condition]] += 1.2
        # a program responds in proportion to how active it is in the cell (cell-type specific)
        sensitivity = activity[cells] / (activity[cells] + 0.5)
        change = direct * sensitivity
        log_fold[cells] = change + np.tanh(change) @ network
    activity = activity * np.exp(log_fold)

    log_mean = baseline + activity @ loadings.T + batch_shift[batch]
    log_mean[knocked_down] -= 1.9
    proportions = np.exp(log_mean - log_mean.max(axis=1, keepdims=True))
    proportions /= proportions.sum(axis=1, keepdims=True)
    library = rng.lognormal(np.log(median_library_size), 0.35, size=n_cells)
    mean = proportions * library[:, None]
    counts = rng.poisson(rng.gamma(dispersion, mean / dispersion)).astype(np.float32)

    labels = np.array(
        ["control"] + ["+".join(gene_names[regulators[list(c)]]) for c in conditions[1:]]
    )
    obs = pd.DataFrame(
        {
            "perturbation": pd.Categorical(labels[condition_of_cell]),
            "cell_type": pd.Categorical([f"type_{t}" for t in cell_type]),
            "batch": pd.Categorical([f"batch_{b}" for b in batch]),
            "n_perturbed": np.array([len(c) for c in conditions])[condition_of_cell],
        },
        index=[f"cell_{i:05d}" for i in range(n_cells)],
    )
    obs["n_counts"] = counts.sum(axis=1)
    var = pd.DataFrame(
        {"program": program_of_gene, "is_regulator": np.isin(np.arange(n_genes), regulators)},
        index=gene_names,
    )
    count_matrix = sparse.csr_matrix(counts)
    adata = AnnData(X=log_normalize(count_matrix), obs=obs, var=var)
    adata.layers["counts"] = count_matrix
    adata.uns["perturbseq_demo"] = {
        "seed": seed,
        "synergistic_pairs": [
            "+".join(gene_names[regulators[list(pair)]]) for pair in synergy_program
        ],
    }
    return adata


def _choose_regulators(
    rng: np.random.Generator, program_of_gene: np.ndarray, n_programs: int, n_regulators: int
) -> np.ndarray:
    """Spread regulators over programs, round-robin, so every program can be perturbed."""
    pools = [
        rng.permutation(np.flatnonzero(program_of_gene == p)).tolist() for p in range(n_programs)
    ]
    chosen: list[int] = []
    while len(chosen) < n_regulators:
        progressed = False
        for pool in pools:
            if pool and len(chosen) < n_regulators:
                chosen.append(pool.pop())
                progressed = True
        if not progressed:
            raise ValueError("Not enough program genes to choose regulators from; add genes.")
    return np.array(chosen)
