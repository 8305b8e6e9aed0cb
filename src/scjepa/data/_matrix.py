"""Small helpers for expression matrices that may be dense or scipy-sparse."""

from __future__ import annotations

import numpy as np
from scipy import sparse


def dense(matrix) -> np.ndarray:
    """``matrix`` as a dense numpy array (scipy-sparse matrices are densified)."""
    return matrix.toarray() if sparse.issparse(matrix) else np.asarray(matrix)
