"""Metrics for predicted perturbation responses, on log-normalised expression."""

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
from scjepa.metrics._expression import log_normalized_matrix, perturbation_means

__all__ = [
    "de_genes",
    "de_overlap",
    "direction_agreement",
    "discrimination_score",
    "energy_distance",
    "log_normalized_matrix",
    "mae",
    "mae_delta",
    "mmd",
    "mse",
    "mse_delta",
    "pearson_delta",
    "perturbation_means",
    "top_changed_genes",
]
