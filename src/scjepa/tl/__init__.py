"""Tools that work on AnnData of predictions: evaluation against observed cells."""

from scjepa.tl._evaluate import evaluate_perturbation
from scjepa.tl._evaluate_time import evaluate_time

__all__ = ["evaluate_perturbation", "evaluate_time"]
