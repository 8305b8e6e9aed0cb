"""Baselines with the same ``fit`` / ``predict_perturbation`` shape as BioJEPA."""

from scjepa.baselines._simple import (
    AdditiveBaseline,
    MeanPerturbationBaseline,
    NoChangeBaseline,
    PerturbationBaseline,
)

__all__ = [
    "AdditiveBaseline",
    "MeanPerturbationBaseline",
    "NoChangeBaseline",
    "PerturbationBaseline",
]
