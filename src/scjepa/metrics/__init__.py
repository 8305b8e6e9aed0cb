"""Metrics for predicted perturbation responses."""

from scjepa.metrics._delta import mse_delta, pearson_delta
from scjepa.metrics._expression import log_normalized_matrix, perturbation_means

__all__ = ["log_normalized_matrix", "mse_delta", "pearson_delta", "perturbation_means"]
