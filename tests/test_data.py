import numpy as np
import pandas as pd
import pytest
import scanpy as sc
import torch
from anndata import AnnData

from scjepa.data import (
    StratifiedPerturbationSampler,
    cell_groups,
    gene_features_from_expression,
    log_normalize,
    parse_perturbation,
    split_perturbations,
)
from scjepa.data._direct_effect import (
    apply_direct_effect,
    target_gene_direct_effects,
    typical_direct_effect,
)
from scjepa.data._perturbations import members_to_index
from scjepa.model._biojepa import _legacy_direct_effects
from scjepa.module._normalize import log_normalize as torch_log_normalize


def test_parse_perturbation_sets():
    assert parse_perturbation("control", "control") == ()
    assert parse_perturbation("B+A", "control") == ("A", "B")
    assert parse_perturbation("A+ctrl", "ctrl") == ("A",)
    assert parse_perturbation("A_B", "control", delimiter="_") == ("A", "B")
    assert parse_perturbation("A+A", "control") == ("A",)


def test_members_to_index_pads_and_suggests():
    index = members_to_index(["control", "KLF1", "KLF1+MAP2K6"], ["KLF1", "MAP2K6"], "control")
    np.testing.assert_array_equal(index, [[-1, -1], [0, -1], [0, 1]])
    with pytest.raises(KeyError, match="did you mean 'KLF1'"):
        members_to_index(["KLF2"], ["KLF1", "MAP2K6"], "control")


def test_log_normalize_matches_scanpy(adata):
    reference = adata.copy()
    reference.X = reference.layers["counts"].copy()
    sc.pp.normalize_total(reference, target_sum=1e4)
    sc.pp.log1p(reference)
    ours = log_normalize(adata.layers["counts"])
    np.testing.assert_allclose(ours.toarray(), reference.X.toarray(), rtol=1e-5, atol=1e-5)


def test_torch_normalisation_sparse_equals_dense(adata):
    counts = adata.layers["counts"][:50]
    dense = torch.tensor(counts.toarray())
    sparse_t = torch.sparse_csr_tensor(
        torch.tensor(counts.indptr),
        torch.tensor(counts.indices),
        torch.tensor(counts.data),
        size=counts.shape,
    )
    d, _ = torch_log_normalize(dense)
    s, masked = torch_log_normalize(sparse_t, mask_ratio=0.5)
    np.testing.assert_allclose(s.to_dense().numpy(), d.numpy(), rtol=1e-5)
    # masking removes about half of the detected genes and nothing else
    kept = (masked.to_dense() > 0).sum() / (s.to_dense() > 0).sum()
    assert 0.4 < float(kept) < 0.6
    assert torch.all((masked.to_dense() == 0) | (masked.to_dense() == s.to_dense()))
    # rescaled, the kept genes grow by 1 / (1 - ratio), so the view's sum is kept on average
    for x in (dense, sparse_t):
        full, scaled = torch_log_normalize(
            x, mask_ratio=0.25, generator=torch.Generator().manual_seed(1), rescale=True
        )
        full, scaled = full.to_dense(), scaled.to_dense()
        kept = scaled > 0
        torch.testing.assert_close(scaled[kept], full[kept] / 0.75)
        assert abs(float(scaled.sum() / full.sum()) - 1.0) < 0.03


def test_gene_features_cover_every_gene(adata):
    features = gene_features_from_expression(
        adata.layers["counts"], adata.var_names, n_components=8
    )
    assert features.shape == (adata.n_vars, 10)
    assert list(features.index) == list(adata.var_names)
    np.testing.assert_allclose(features.to_numpy().std(axis=0), 1.0, atol=1e-3)


def test_split_perturbations_categories(adata):
    held = split_perturbations(adata, seed=1)
    splits = set(adata.obs["split"])
    assert "train" in splits and "unseen_single" in splits
    assert (adata.obs.loc[adata.obs.perturbation == "control", "split"] == "train").all()
    unseen_genes = {s for s in held["unseen_single"]}
    for combo in held["combo_one_unseen"]:
        assert unseen_genes & set(combo.split("+"))
    for combo in held["combo_both_seen"]:
        assert not unseen_genes & set(combo.split("+"))
    # seeded: the same seed gives the same split
    again = adata.copy()
    split_perturbations(again, seed=1)
    assert (again.obs["split"] == adata.obs["split"]).all()


def test_sampler_pairs_controls_with_perturbed_cells_of_one_stratum(trained):
    model, data = trained
    groups = cell_groups(model.adata_manager)
    sampler = StratifiedPerturbationSampler(groups, batch_size=64, n_groups=4, seed=0)
    batches = list(sampler)
    assert len(batches) == len(sampler)
    for batch in batches:
        assert len(np.unique(groups.stratum[batch])) == 1
        n_control = groups.is_control[batch].sum()
        assert n_control == len(batch) // 2
        assert len(np.unique(groups.perturbation[batch][~groups.is_control[batch]])) <= 4
    fixed = StratifiedPerturbationSampler(groups, batch_size=64, seed=3, fixed=True)
    assert all(np.array_equal(a, b) for a, b in zip(list(fixed), list(fixed), strict=True))


def test_target_gene_direct_effects_reproduce_the_measured_log_change():
    # every cell has 100 counts, so normalised expression is 100x the counts
    labels = ["control"] * 4 + ["A"] * 2 + ["B"] * 2 + ["C"] * 2 + ["A+B"] * 2
    counts = np.zeros((12, 4))
    counts[:4, 0] = [10, 10, 20, 0]
    counts[4:6, 0] = [3, 0]  # A knocked down
    counts[6:8, 1] = [5, 9]  # B, silent in control cells, activated
    counts[:, 3] = 100 - counts[:, :3].sum(axis=1)
    adata = AnnData(
        np.zeros((12, 4)),
        obs=pd.DataFrame({"perturbation": labels}, index=[f"c{i}" for i in range(12)]),
        var=pd.DataFrame(index=["A", "B", "C", "D"]),
    )
    effects = target_gene_direct_effects(adata, counts, "perturbation", "control")
    # C is never detected, so it cannot be lowered; combinations do not count
    assert effects.keys() == {"A", "B"}
    log = np.log1p(100 * counts)
    fold, added = effects["A"]
    assert 0 < fold < 1 and added == 0
    fold, added = effects["B"]
    assert fold == 1 and added > 0
    for gene, column in [("A", 0), ("B", 1)]:
        control, perturbed = log[:4, column], log[labels.index(gene) :][:2, column]
        moved = apply_direct_effect(control, effects[gene]).mean() - control.mean()
        assert moved == pytest.approx(perturbed.mean() - control.mean(), abs=1e-5)
    # knock-down removes a fraction of the transcripts, whatever the level: log1p(0.5 * 4)
    np.testing.assert_allclose(
        apply_direct_effect(np.log1p([4.0, 0.0]), [0.5, 0.0]), np.log1p([2.0, 0])
    )
    # targets never perturbed alone get the median of the more common direction
    assert typical_direct_effect({"A": [0.2, 0.0], "B": [0.4, 0.0], "E": [1.0, 3.0]}) == [
        pytest.approx(0.3),
        0.0,
    ]
    assert typical_direct_effect({"B": [1.0, 3.0]}) == [1.0, 3.0]
    assert typical_direct_effect({}) is None


def test_models_saved_with_log_direct_effects_load_them_as_pairs():
    attributes = _legacy_direct_effects(
        {"target_gene_effects_": {"A": -1.0, "B": 0.5}, "target_gene_effect_": -1.0, "other_": 1}
    )
    assert attributes == {
        "target_gene_direct_effects_": {
            "A": [pytest.approx(np.exp(-1.0)), 0.0],
            "B": [1.0, pytest.approx(np.expm1(0.5))],
        },
        "target_gene_direct_effect_": [pytest.approx(np.exp(-1.0)), 0.0],
        "other_": 1,
    }
