"""Baselines with the same ``fit`` / ``predict_*`` shape as BioJEPA."""

from scjepa.baselines._linear import LinearBaseline
from scjepa.baselines._modality import (
    KNNModalityBaseline,
    ModalityBaseline,
    RidgeModalityBaseline,
)
from scjepa.baselines._multivi import MultiVIModalityBaseline
from scjepa.baselines._simple import (
    AdditiveBaseline,
    AdditiveMeanBaseline,
    MeanPerturbationBaseline,
    NoChangeBaseline,
    PerturbationBaseline,
)
from scjepa.baselines._time import (
    NearestTimeBaseline,
    OTInterpolationBaseline,
    TimeCourseBaseline,
)
from scjepa.baselines._totalvi import TotalVIModalityBaseline

__all__ = [
    "AdditiveBaseline",
    "AdditiveMeanBaseline",
    "KNNModalityBaseline",
    "LinearBaseline",
    "MeanPerturbationBaseline",
    "ModalityBaseline",
    "MultiVIModalityBaseline",
    "NearestTimeBaseline",
    "NoChangeBaseline",
    "OTInterpolationBaseline",
    "PerturbationBaseline",
    "RidgeModalityBaseline",
    "TimeCourseBaseline",
    "TotalVIModalityBaseline",
]
