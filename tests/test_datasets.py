import anndata
import numpy as np
import pandas as pd
import pytest
from scipy import sparse

import scjepa
from scjepa.metrics import pearson_delta, perturbation_means


def test_demo_is_raw_counts_with_expected_design():
    adata = scjepa.datasets.perturbseq_demo(n_cells=3000, seed=1)
    counts = adata.layers["counts"]
    assert sparse.issparse(counts)
    assert np.array_equal(counts.data, np.round(counts.data))
    sparsity = 1 - counts.nnz / np.prod(counts.shape)
    assert 0.5 < sparsity < 0.95
    library = np.asarray(counts.sum(axis=1)).ravel()
    assert library.std() / library.mean() > 0.2  # library sizes vary like real cells
    assert adata.obs["cell_type"].nunique() == 3 and adata.obs["batch"].nunique() == 2
    assert set(adata.obs["n_perturbed"]) == {0, 1, 2}
    again = scjepa.datasets.perturbseq_demo(n_cells=3000, seed=1)
    assert (again.layers["counts"] != counts).nnz == 0


def test_demo_task_needs_more_than_the_mean_shift():
    adata = scjepa.datasets.perturbseq_demo(n_cells=8000, seed=0)
    rng = np.random.default_rng(0)
    half = rng.random(adata.n_obs) < 0.5
    a, b = (perturbation_means(adata[m], layer="counts") for m in (half, ~half))
    control = a.loc["control"].to_numpy()
    perturbations = [p for p in a.index if p != "control"]
    mean_shift = a.loc[perturbations].mean().to_numpy()
    knows_biology = np.mean([pearson_delta(a.loc[p], b.loc[p], control, 20) for p in perturbations])
    mean_only = np.mean([pearson_delta(mean_shift, b.loc[p], control, 20) for p in perturbations])
    assert knows_biology > mean_only + 0.3

    # effects differ between cell types
    by_type = {
        t: perturbation_means(adata[adata.obs.cell_type == t], layer="counts")
        for t in adata.obs.cell_type.cat.categories
    }
    types = list(by_type)
    similarity = [
        pearson_delta(
            by_type[types[0]].loc[p], by_type[types[1]].loc[p], by_type[types[1]].loc["control"]
        )
        for p in perturbations[:10]
    ]
    assert np.mean(similarity) < 0.8

    # synergistic pairs depart from additivity more than the others
    means = perturbation_means(adata, layer="counts")
    control = means.loc["control"].to_numpy()

    def residual(pair):
        x, y = pair.split("+")
        additive = means.loc[x] - control + means.loc[y] - control
        return np.abs((means.loc[pair] - control) - additive).mean()

    synergistic = adata.uns["perturbseq_demo"]["synergistic_pairs"]
    others = [p for p in perturbations if "+" in p and p not in synergistic]
    assert np.mean([residual(p) for p in synergistic]) > np.mean([residual(p) for p in others])


def _norman_like(path):
    rng = np.random.default_rng(0)
    labels = np.array(["control", "KLF1", "KLF1_MAP2K6", "CEBPA_ctrl", "ctrl"])[
        rng.integers(5, size=60)
    ]
    obs = pd.DataFrame(
        {"perturbation": labels, "gemgroup": rng.integers(1, 3, size=60)},
        index=[f"c{i}" for i in range(60)],
    )
    adata = anndata.AnnData(
        X=sparse.csr_matrix(rng.poisson(1.0, size=(60, 12)).astype(np.float32)),
        obs=obs,
        var=pd.DataFrame(index=[f"g{i}" for i in range(12)]),
    )
    adata.write_h5ad(path)


def test_norman_loader_downloads_verifies_and_caches(http_server, tmp_path):
    served, base = http_server
    _norman_like(served / "norman.h5ad")
    digest = scjepa.datasets.sha256sum(served / "norman.h5ad")
    cache = tmp_path / "cache"
    adata = scjepa.datasets.norman_2019(directory=cache, url=f"{base}/norman.h5ad", sha256=digest)
    assert set(adata.obs["perturbation"]) <= {"control", "KLF1", "KLF1+MAP2K6", "CEBPA"}
    assert "KLF1+MAP2K6" in set(adata.obs["perturbation"])
    assert set(adata.obs["n_perturbed"]) <= {0, 1, 2}
    assert (adata.obs["cell_type"] == "K562").all()
    assert set(adata.obs["batch"]) == {"1", "2"}
    assert "counts" in adata.layers
    scjepa.BioJEPA.setup_anndata(
        adata, layer="counts", perturbation_key="perturbation", batch_key="batch"
    )

    # cached: served file gone, the loader still works and checks the recorded digest
    (served / "norman.h5ad").unlink()
    again = scjepa.datasets.norman_2019(directory=cache, url=f"{base}/norman.h5ad")
    assert again.n_obs == adata.n_obs
    (cache / "norman_2019.h5ad").write_bytes(b"corrupted")
    with pytest.raises(ValueError, match="Checksum mismatch"):
        scjepa.datasets.norman_2019(directory=cache, url=f"{base}/norman.h5ad")


def test_download_with_wrong_checksum_leaves_no_file(http_server, tmp_path):
    served, base = http_server
    (served / "file.bin").write_bytes(b"payload")
    with pytest.raises(ValueError, match="Checksum mismatch"):
        scjepa.datasets.fetch(f"{base}/file.bin", "file.bin", sha256="0" * 64, directory=tmp_path)
    assert not (tmp_path / "file.bin").exists()
    assert not list(tmp_path.glob("*.part"))
    path = scjepa.datasets.fetch(f"{base}/file.bin", "file.bin", directory=tmp_path)
    assert path.read_bytes() == b"payload"
