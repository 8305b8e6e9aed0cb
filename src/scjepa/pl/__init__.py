"""Plots of predictions and their evaluation."""

from scjepa.pl._perturbation import metric_bars, perturbation_scatter

__all__ = ["metric_bars", "perturbation_scatter"]
