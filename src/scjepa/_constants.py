"""Registry keys and defaults shared across scjepa.

``scvi.REGISTRY_KEYS`` is a ``NamedTuple`` and cannot be extended, so scjepa keeps its own
keys here.
"""

from typing import NamedTuple


class _ScJEPARegistryKeys(NamedTuple):
    PERTURBATION_KEY: str = "perturbation"
    DOSE_KEY: str = "dose"
    TIME_KEY: str = "time"
    PROTEIN_KEY: str = "protein"
    ATAC_KEY: str = "atac"


SCJEPA_KEYS = _ScJEPARegistryKeys()

LATENT_OBSM_KEY = "X_biojepa"
"""Default ``obsm`` key for embeddings, observed or predicted."""

NORMALIZATION_TARGET_SUM = 1e4
"""Library size counts are scaled to before ``log1p`` (scanpy's ``normalize_total`` default)."""
