"""User-facing models."""

from scjepa.model._biojepa import BioJEPA
from scjepa.model._interaction import cross_fit_interaction

__all__ = ["BioJEPA", "cross_fit_interaction"]
