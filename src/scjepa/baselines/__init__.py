"""Baselines with the same ``fit`` / ``predict_perturbation`` shape as BioJEPA."""

from scjepa.baselines._linear import LinearBaseline
from scjepa.baselines._simple import (
    AdditiveBaseline,
    MeanPerturbationBaseline,
    NoChangeBaseline,
    PerturbationBaseline,
)

__all__ = [
    "AdditiveBaseline",
    "LinearBaseline",
    "MeanPerturbationBaseline",
    "NoChangeBaseline",
    "PerturbationBaseline",
]
