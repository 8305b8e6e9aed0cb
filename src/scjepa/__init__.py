"""scjepa: Joint Embedding Predictive Architectures for single-cell biology."""

from importlib.metadata import PackageNotFoundError, version

from scjepa import baselines, data, datasets, metrics, model, module, pl, tl, train
from scjepa.model import BioJEPA

try:
    __version__ = version("scjepa")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0"

__all__ = [
    "BioJEPA",
    "baselines",
    "data",
    "datasets",
    "metrics",
    "model",
    "module",
    "pl",
    "tl",
    "train",
]
