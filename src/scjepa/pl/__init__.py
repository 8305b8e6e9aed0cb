"""Plots of predictions and their evaluation."""

from scjepa.pl._perturbation import metric_bars, perturbation_scatter
from scjepa.pl._time import fate_proportions, time_populations

__all__ = ["fate_proportions", "metric_bars", "perturbation_scatter", "time_populations"]
