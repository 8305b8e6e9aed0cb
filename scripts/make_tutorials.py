"""Write the tutorial notebooks in tutorials/ (run them with nbmake or Jupyter for outputs).

Usage: python scripts/make_tutorials.py
"""

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

TIMECOURSE = [
    new_markdown_cell(
        """# Predicting unobserved time points with BioJEPA

Time courses of differentiation, reprogramming or drug response are snapshots: every cell is
sequenced once, so the cells of two time points are different cells. This tutorial trains
`scjepa.BioJEPA` on such a time course with one time point held out, predicts the cells at that
time from the cells of the time point before, and checks the prediction against the two standard
baselines of the Waddington-OT and moscot validation protocol: the nearest observed time point and
optimal-transport interpolation between the neighbouring time points. It then extrapolates past the
last sampled time.

It runs on generated data so that it works anywhere; with your own data, start from an AnnData of
raw counts with a numeric time column."""
    ),
    new_code_cell(
        """import matplotlib.pyplot as plt
import scanpy as sc
import scvi

import scjepa

scvi.settings.seed = 0
sc.settings.set_figure_params(dpi=80, frameon=False)"""
    ),
    new_markdown_cell(
        """## Data

`timecourse_demo` generates a differentiation sampled on days 0 to 6: progenitors commit to fate A
or fate B, fate B expands faster, and each day is split across two batches. `obs["fate"]` is the
annotation a biologist would make; `obs["progress"]` is the generator's hidden developmental time,
which no model sees."""
    ),
    new_code_cell(
        """adata = scjepa.datasets.timecourse_demo(n_cells_per_time=250, n_genes=400, seed=0)
adata.obs.groupby("time").fate.value_counts(normalize=True).unstack().round(2)"""
    ),
    new_markdown_cell(
        """## Hold out a time point and train

Day 3 is held out. `time_key` registers the sampling times; the temporal objective then learns to
move the embedding of a cell at time *t* to where cells are at *t + Δt*, matching the unpaired
populations of two time points by optimal transport within each batch."""
    ),
    new_code_cell(
        """held_out = 3.0
train = adata[adata.obs.time != held_out].copy()
real = adata[adata.obs.time == held_out].copy()

scjepa.BioJEPA.setup_anndata(train, layer="counts", time_key="time", batch_key="batch")
model = scjepa.BioJEPA(train, n_latent=64, n_hidden=256)
model"""
    ),
    new_code_cell("model.train(max_epochs=60)"),
    new_code_cell(
        """fig, axes = plt.subplots(1, 2, figsize=(9, 3))
model.history["time_loss_train"].plot(ax=axes[0], title="temporal prediction loss")
model.history["effective_rank_train"].plot(ax=axes[1], title="effective rank of the embedding")
plt.tight_layout()"""
    ),
    new_markdown_cell("## Embed cells with scanpy"),
    new_code_cell(
        """train.obsm["X_biojepa"] = model.get_latent_representation()
sc.pp.neighbors(train, use_rep="X_biojepa")
sc.tl.umap(train)
sc.pl.umap(train, color=["time", "fate", "batch"], ncols=3)"""
    ),
    new_markdown_cell(
        """## Predict the held-out day

`predict_time` moves each source cell by `Δt` = target time minus its own sampling time: here the
day-2 cells forwards by one day and the day-4 cells backwards by one day, so the held-out day is
approached from both sides, as optimal-transport interpolation does. It returns an AnnData of
predicted cells: log-normalised expression in `X`, predicted embeddings in `obsm["X_biojepa"]`
(with `key_added` also in the source AnnData). The baselines return the same layout."""
    ),
    new_code_cell(
        """source = train[train.obs.time.isin([2.0, 4.0])].copy()
predictions = {
    "BioJEPA": model.predict_time(held_out, adata=source, key_added="X_biojepa_day3"),
    "nearest_time": scjepa.baselines.NearestTimeBaseline().fit(train).predict_time(held_out),
}
ot = scjepa.baselines.OTInterpolationBaseline().fit(train)
predictions["ot_interpolation"] = ot.predict_time(held_out)
predictions["BioJEPA"]"""
    ),
    new_markdown_cell(
        """## Evaluate against the baselines

`evaluate_time` compares predicted and observed cells as populations in a PCA of the training
cells (never in a model's own latent space): Wasserstein-1 and energy distance (lower is better),
and the fate fractions after transferring fate labels from the training cells. The row
`observed_halves` scores one half of the real cells against the other: the noise floor."""
    ),
    new_code_cell(
        """scores = scjepa.tl.evaluate_time(predictions, real, train, labels_key="fate")
scores.round(3)"""
    ),
    new_code_cell(
        """scjepa.pl.time_populations(predictions, real, train)
plt.tight_layout()"""
    ),
    new_code_cell("scjepa.pl.fate_proportions(scores);"),
    new_markdown_cell(
        """## Extrapolate past the last day

Predicting a time nobody sampled works the same way; here day 7 from the day-6 cells. Beyond about
one sampling interval past the last time point the model is asked about elapsed times it never
trained on, so treat such predictions with care."""
    ),
    new_code_cell(
        """last = train[train.obs.time == 6.0].copy()
day7 = model.predict_time(7.0, adata=last)
# fates of the predicted cells: labels of their nearest training cells in the embedding
day7.obs["predicted_fate"] = scjepa.metrics.transfer_labels(
    train.obsm["X_biojepa"], train.obs["fate"], day7.obsm["X_biojepa"]
)
fractions = scjepa.metrics.label_proportions
{
    "day 6, observed": fractions(last.obs["fate"]).round(2).to_dict(),
    "day 7, predicted": fractions(day7.obs["predicted_fate"]).round(2).to_dict(),
}"""
    ),
]

MULTIOMICS = [
    new_markdown_cell(
        """# Multi-omics with BioJEPA: one embedding for RNA and protein, proteins from RNA

CITE-seq measures RNA and surface proteins in the same cells. This tutorial sets up a MuData of both
with `BioJEPA.setup_mudata` (as for scvi-tools' totalVI), trains one model whose RNA and protein
encoders share an embedding space, embeds the cells with scanpy, and predicts the proteins of cells
measured by RNA alone, scored against ridge and kNN regression on the RNA PCA.

It runs on generated data so that it works anywhere; `scjepa.datasets.pbmc_10k_citeseq()` loads a
public 10x Genomics CITE-seq data set in the same layout."""
    ),
    new_code_cell(
        """import matplotlib.pyplot as plt
import numpy as np
import scanpy as sc
import scvi

import scjepa
from scjepa.metrics import feature_pearson, feature_rmse, log_normalized_matrix

scvi.settings.seed = 0
sc.settings.set_figure_params(dpi=80, frameon=False)"""
    ),
    new_markdown_cell(
        """## Data

`citeseq_demo` returns a MuData with an `rna` and a `protein` modality of raw counts. Each protein
is encoded by one gene, saturates in its expression, and some are also regulated after
transcription, so a protein is not simply its gene's RNA."""
    ),
    new_code_cell(
        """mdata = scjepa.datasets.citeseq_demo(n_cells=2000, n_genes=300, n_proteins=20, seed=0)
mdata"""
    ),
    new_markdown_cell(
        """## Hold out proteins, set up and train

A fifth of the cells keep only their RNA: their proteins are what we predict. The training cells
are registered with `setup_mudata`; cells without protein counts would be allowed too (mosaic
data), as all-zero protein rows."""
    ),
    new_code_cell(
        """held_out = np.random.default_rng(0).random(mdata.n_obs) < 0.2
train = mdata[~held_out].copy()
query = mdata["rna"][held_out].copy()

scjepa.BioJEPA.setup_mudata(
    train, rna_layer="counts", protein_layer="counts", batch_key="batch", labels_key="cell_type"
)
model = scjepa.BioJEPA(train, n_latent=64, n_hidden=256)
model.train(max_epochs=40)"""
    ),
    new_code_cell(
        """fig, axes = plt.subplots(1, 2, figsize=(9, 3))
model.history["modality_loss_train"].plot(ax=axes[0], title="cross-modal prediction loss")
model.history["protein_readout_loss_train"].plot(ax=axes[1], title="protein head loss")
plt.tight_layout()"""
    ),
    new_markdown_cell(
        """## One embedding for both modalities

`get_latent_representation(modality=...)` returns the RNA, protein or joint (their mean)
embedding."""
    ),
    new_code_cell(
        """rna_cells = train["rna"]
rna_cells.obsm["X_biojepa"] = model.get_latent_representation(modality="joint")
sc.pp.neighbors(rna_cells, use_rep="X_biojepa")
sc.tl.umap(rna_cells)
sc.pl.umap(rna_cells, color=["cell_type", "batch"], ncols=2)"""
    ),
    new_markdown_cell(
        """## Predict proteins from RNA

`predict_modality` takes cells measured by RNA alone (an AnnData of the training genes) and returns
an AnnData of predicted log-normalised protein values with the protein panel as `var`. Ridge and kNN
regression on the RNA PCA return the same layout."""
    ),
    new_code_cell(
        """predictions = {"BioJEPA": model.predict_modality(query)}
for baseline in (
    scjepa.baselines.RidgeModalityBaseline(),
    scjepa.baselines.KNNModalityBaseline(),
):
    predictions[baseline.name] = baseline.fit(train["rna"], train["protein"]).predict_modality(
        query
    )
observed = np.asarray(log_normalized_matrix(mdata["protein"][held_out], "counts"))
{
    name: {
        "mean per-protein Pearson": round(float(np.nanmean(feature_pearson(p.X, observed))), 3),
        "mean per-protein RMSE": round(float(feature_rmse(p.X, observed).mean()), 3),
    }
    for name, p in predictions.items()
}"""
    ),
    new_code_cell(
        """protein = predictions["BioJEPA"].var_names[0]
fig, axes = plt.subplots(1, len(predictions), figsize=(3.4 * len(predictions), 3.2))
for ax, (name, p) in zip(axes, predictions.items()):
    ax.scatter(observed[:, 0], p.X[:, 0], s=4, alpha=0.5)
    ax.set_title(f"{name}: {protein}")
    ax.set_xlabel("measured")
    ax.set_ylabel("predicted")
plt.tight_layout()"""
    ),
]


def write(cells: list, path: str) -> None:
    notebook = new_notebook(cells=cells)
    notebook.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(notebook, path)


if __name__ == "__main__":
    write(TIMECOURSE, "tutorials/timecourse.ipynb")
    write(MULTIOMICS, "tutorials/multiomics.ipynb")
