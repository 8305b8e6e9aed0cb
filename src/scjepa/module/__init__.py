"""Torch building blocks of BioJEPA."""

from scjepa.module._decoder import NegativeBinomialDecoder
from scjepa.module._encoder import CellEncoder, SparseLinear
from scjepa.module._jepa import BioJEPAModule, Modality, Task
from scjepa.module._modality import ModalityBranch
from scjepa.module._perturbation import PerturbationEncoder
from scjepa.module._predictor import ConditionalPredictor

__all__ = [
    "BioJEPAModule",
    "CellEncoder",
    "ConditionalPredictor",
    "Modality",
    "ModalityBranch",
    "NegativeBinomialDecoder",
    "PerturbationEncoder",
    "SparseLinear",
    "Task",
]
