"""User-facing models."""

from scjepa.model._biojepa import BioJEPA

__all__ = ["BioJEPA"]
