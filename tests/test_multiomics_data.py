import anndata
import numpy as np
import pandas as pd
import pytest
from scipy import sparse

import scjepa
from scjepa.metrics import feature_pearson, feature_rmse, knn_label_accuracy, log_normalized_matrix


def test_citeseq_demo_proteins_follow_rna_nonlinearly():
    mdata = scjepa.datasets.citeseq_demo(n_cells=1500, n_genes=200, n_proteins=20, seed=1)
    rna, protein = mdata["rna"], mdata["protein"]
    assert set(mdata.mod) == {"rna", "protein"} and protein.n_vars == 20
    assert list(rna.obs_names) == list(protein.obs_names) == list(mdata.obs_names)
    assert np.array_equal(protein.X, np.round(protein.X)) and protein.X.min() >= 0
    assert mdata.obs["cell_type"].nunique() == 6 and mdata.obs["batch"].nunique() == 2
    assert rna.var["encodes_protein"].sum() == 20
    assert set(protein.var["gene"]) <= set(rna.var_names)
    # each protein relates to its own gene, but far from perfectly (saturation, noise, regulation)
    rna_values = rna.X.toarray()
    protein_values = np.asarray(log_normalized_matrix(protein, "counts"))
    own_gene = rna_values[:, [rna.var_names.get_loc(g) for g in protein.var["gene"]]]
    r = feature_pearson(own_gene, protein_values)
    assert 0.1 < np.nanmedian(r) < 0.8
    again = scjepa.datasets.citeseq_demo(n_cells=1500, n_genes=200, n_proteins=20, seed=1)
    assert np.array_equal(again["protein"].X, protein.X)


def test_modality_baselines_predict_held_out_proteins():
    mdata = scjepa.datasets.citeseq_demo(n_cells=1500, n_genes=200, n_proteins=20, seed=0)
    rna, protein = mdata["rna"], mdata["protein"]
    held_out = np.random.default_rng(0).random(rna.n_obs) < 0.25
    observed = np.asarray(log_normalized_matrix(protein[held_out], "counts"))
    constant = np.tile(observed.mean(axis=0), (held_out.sum(), 1))
    for baseline in (
        scjepa.baselines.RidgeModalityBaseline(n_pcs=20),
        scjepa.baselines.KNNModalityBaseline(n_pcs=20),
    ):
        baseline.fit(rna[~held_out], protein[~held_out])
        pred = baseline.predict_modality(rna[held_out])
        assert pred.shape == (held_out.sum(), protein.n_vars)
        assert list(pred.var_names) == list(protein.var_names)
        assert list(pred.obs_names) == list(rna.obs_names[held_out])
        assert pred.uns["scjepa"]["method"] == baseline.name
        assert np.nanmean(feature_pearson(pred.X, observed)) > 0.3
        assert feature_rmse(pred.X, observed).mean() < feature_rmse(constant, observed).mean()
    with pytest.raises(RuntimeError, match="fit"):
        scjepa.baselines.RidgeModalityBaseline().predict_modality(rna)
    with pytest.raises(ValueError, match="genes differ"):
        baseline.predict_modality(rna[:, :50])


def test_modality_metrics(rng):
    observed = rng.normal(size=(50, 3))
    np.testing.assert_allclose(feature_pearson(2 * observed + 1, observed), 1.0)
    np.testing.assert_allclose(feature_rmse(observed + 0.5, observed), 0.5)
    flat = observed.copy()
    flat[:, 1] = 3.0
    assert np.isnan(feature_pearson(flat, observed)[1])
    with pytest.raises(ValueError, match="one shape"):
        feature_rmse(observed[:, :2], observed)
    separated = np.concatenate([rng.normal(-5, 1, (40, 2)), rng.normal(5, 1, (40, 2))])
    labels = ["a"] * 40 + ["b"] * 40
    assert knn_label_accuracy(separated, labels) == 1.0
    assert knn_label_accuracy(rng.normal(size=(80, 2)), labels) < 0.8


def _citeseq_like(path):
    rng = np.random.default_rng(0)
    obs = pd.DataFrame(index=[f"c{i}" for i in range(40)])
    adata = anndata.AnnData(
        X=sparse.csr_matrix(rng.poisson(1.0, size=(40, 15)).astype(np.float32)),
        obs=obs,
        var=pd.DataFrame(index=[f"g{i}" for i in range(15)]),
    )
    adata.obsm["protein_expression"] = rng.poisson(20.0, size=(40, 4))
    adata.uns["protein_names"] = np.array(["CD3", "CD4", "CD8", "CD19"])
    adata.write_h5ad(path)


def test_citeseq_loader_downloads_verifies_and_splits_modalities(http_server, tmp_path):
    served, base = http_server
    _citeseq_like(served / "pbmc.h5ad")
    digest = scjepa.datasets.sha256sum(served / "pbmc.h5ad")
    cache = tmp_path / "cache"
    mdata = scjepa.datasets.pbmc_10k_citeseq(
        directory=cache, url=f"{base}/pbmc.h5ad", sha256=digest
    )
    assert mdata["rna"].shape == (40, 15) and mdata["protein"].shape == (40, 4)
    assert list(mdata["protein"].var_names) == ["CD3", "CD4", "CD8", "CD19"]
    assert "counts" in mdata["rna"].layers and "counts" in mdata["protein"].layers
    (served / "pbmc.h5ad").unlink()
    again = scjepa.datasets.pbmc_10k_citeseq(directory=cache, url=f"{base}/pbmc.h5ad")
    assert again.n_obs == 40
    (cache / "pbmc_10k_citeseq.h5ad").write_bytes(b"corrupted")
    with pytest.raises(ValueError, match="Checksum mismatch"):
        scjepa.datasets.pbmc_10k_citeseq(directory=cache, url=f"{base}/pbmc.h5ad")


def test_totalvi_baseline_imputes_proteins_of_rna_only_cells():
    mdata = scjepa.datasets.citeseq_demo(n_cells=400, n_genes=120, n_proteins=8, seed=0)
    rna, protein = mdata["rna"], mdata["protein"]
    held_out = np.random.default_rng(0).random(rna.n_obs) < 0.25
    baseline = scjepa.baselines.TotalVIModalityBaseline(batch_key="batch", max_epochs=2)
    with pytest.raises(RuntimeError, match="fit"):
        baseline.predict_modality(rna[held_out])
    pred = baseline.fit(rna[~held_out], protein[~held_out]).predict_modality(rna[held_out].copy())
    assert pred.shape == (held_out.sum(), protein.n_vars)
    assert list(pred.obs_names) == list(rna.obs_names[held_out])
    assert list(pred.var_names) == list(protein.var_names)
    assert np.isfinite(pred.X).all() and pred.X.min() >= 0
    assert baseline.train_seconds_ > 0
