"""Generated data sets for tutorials and tests, and loaders for public data."""

from scjepa.datasets._perturbseq_demo import perturbseq_demo

__all__ = ["perturbseq_demo"]
