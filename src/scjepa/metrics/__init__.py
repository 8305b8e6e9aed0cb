"""Metrics for predicted cells on log-normalised expression: perturbation responses, populations."""

from scjepa.metrics._de import de_genes, de_overlap
from scjepa.metrics._delta import (
    direction_agreement,
    discrimination_score,
    mae,
    mae_delta,
    mse,
    mse_delta,
    pearson_delta,
    top_changed_genes,
)
from scjepa.metrics._distribution import energy_distance, mmd
from scjepa.metrics._expression import (
    log_normalized_matrix,
    perturbation_deltas,
    perturbation_means,
)
from scjepa.metrics._fate import (
    label_classifier,
    label_proportions,
    proportion_error,
    transfer_labels,
)
from scjepa.metrics._modality import (
    feature_auroc,
    feature_pearson,
    feature_rmse,
    knn_label_accuracy,
)
from scjepa.metrics._transport import sinkhorn_coupling, wasserstein_distance

__all__ = [
    "de_genes",
    "de_overlap",
    "direction_agreement",
    "discrimination_score",
    "energy_distance",
    "feature_auroc",
    "feature_pearson",
    "feature_rmse",
    "knn_label_accuracy",
    "label_classifier",
    "label_proportions",
    "log_normalized_matrix",
    "mae",
    "mae_delta",
    "mmd",
    "mse",
    "mse_delta",
    "pearson_delta",
    "perturbation_deltas",
    "perturbation_means",
    "proportion_error",
    "sinkhorn_coupling",
    "top_changed_genes",
    "transfer_labels",
    "wasserstein_distance",
]
