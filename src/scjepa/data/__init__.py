"""Registration helpers, validation, perturbation parsing and minibatch sampling."""

from scjepa.data._features import gene_features_from_expression, log_normalize
from scjepa.data._perturbations import parse_perturbation
from scjepa.data._sampling import (
    InterleavedSampler,
    StratifiedPerturbationSampler,
    TimeCourseSampler,
    cell_groups,
)
from scjepa.data._split import split_perturbations
from scjepa.data._splitter import PerturbationDataSplitter

__all__ = [
    "InterleavedSampler",
    "PerturbationDataSplitter",
    "StratifiedPerturbationSampler",
    "TimeCourseSampler",
    "cell_groups",
    "gene_features_from_expression",
    "log_normalize",
    "parse_perturbation",
    "split_perturbations",
]
