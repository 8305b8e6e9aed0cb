"""Tools that work on AnnData of predictions: evaluation against observed cells."""

from scjepa.tl._evaluate import evaluate_perturbation

__all__ = ["evaluate_perturbation"]
