"""Library-size normalisation and gene masking of count minibatches, sparse or dense.

On sparse batches everything here touches only the stored non-zeros, so its cost follows the
number of detected genes per cell rather than the number of genes.
"""

from __future__ import annotations

import warnings

import torch

from scjepa._constants import NORMALIZATION_TARGET_SUM

# CSR tensors are stable for what is used here (construction, row sums, sparse @ dense).
warnings.filterwarnings(
    "ignore", message="Sparse CSR tensor support is in beta", category=UserWarning
)


def is_sparse(x: torch.Tensor) -> bool:
    """Whether ``x`` has a sparse layout (COO, CSR or CSC)."""
    return x.layout != torch.strided


def as_csr(x: torch.Tensor) -> torch.Tensor:
    """``x`` in CSR layout (no copy if it already is)."""
    return x if x.layout == torch.sparse_csr else x.to_sparse_csr()


def library_size(x: torch.Tensor) -> torch.Tensor:
    """Total counts per cell, shape ``(n_cells,)``."""
    if not is_sparse(x):
        return x.sum(dim=1)
    x = as_csr(x)
    rows = _row_ids(x)
    return torch.zeros(x.shape[0], dtype=x.dtype, device=x.device).index_add_(0, rows, x.values())


def _row_ids(x: torch.Tensor) -> torch.Tensor:
    crow = x.crow_indices()
    return torch.repeat_interleave(torch.arange(x.shape[0], device=x.device), crow[1:] - crow[:-1])


def log_normalize(
    x: torch.Tensor,
    mask_ratio: float = 0.0,
    generator: torch.Generator | None = None,
    library: torch.Tensor | None = None,
    rescale: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``log1p(counts / library * 1e4)``, and optionally a view with genes masked out.

    Parameters
    ----------
    x
        Raw counts, ``(n_cells, n_genes)``, dense or sparse.
    mask_ratio
        Fraction of each cell's detected genes set to zero in the masked view (the context of the
        masked-gene objective). ``0`` returns no masked view.
    generator
        Random generator for the mask.
    library
        :func:`library_size` of ``x`` when already computed.
    rescale
        Scale the masked view's kept values by ``1 / (1 - mask_ratio)``, as inverted dropout
        does (Srivastava et al., JMLR 2014), so that any linear summary of the masked view
        equals, on average, that of the full cell.

    Returns
    -------
    The normalised batch (same layout as the input, CSR if sparse) and the masked view or ``None``.
    Both keep the full cell's library size, so masking removes genes without rescaling the
    others, unless ``rescale`` is set.
    """
    kept_scale = 1.0 / (1.0 - mask_ratio) if rescale and mask_ratio > 0 else 1.0
    if library is None:
        library = library_size(x)
    if not is_sparse(x):
        normalized = torch.log1p(
            x / library.reshape(-1, 1).clamp(min=1.0) * NORMALIZATION_TARGET_SUM
        )
        if mask_ratio <= 0:
            return normalized, None
        keep = _uniform(x.shape, generator, x.device) >= mask_ratio
        return normalized, normalized * (keep * kept_scale)
    x = as_csr(x)
    rows = _row_ids(x)
    values = x.values()
    normalized_values = torch.log1p(
        values / library.clamp(min=1.0)[rows] * NORMALIZATION_TARGET_SUM
    )

    def build(v: torch.Tensor) -> torch.Tensor:
        return torch.sparse_csr_tensor(x.crow_indices(), x.col_indices(), v, size=x.shape)

    if mask_ratio <= 0:
        return build(normalized_values), None
    keep = _uniform(values.shape, generator, x.device) >= mask_ratio
    return build(normalized_values), build(normalized_values * (keep * kept_scale))


def _uniform(shape, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    if generator is None:
        return torch.rand(shape, device=device)
    return torch.rand(shape, generator=generator, device=generator.device).to(device)


def binarize(x: torch.Tensor) -> torch.Tensor:
    """``1`` where counts are positive, ``0`` elsewhere, in the layout of ``x``."""
    if not is_sparse(x):
        return (x > 0).to(x.dtype)
    x = as_csr(x)
    return torch.sparse_csr_tensor(
        x.crow_indices(), x.col_indices(), (x.values() > 0).to(x.dtype), size=x.shape
    )


def to_dense(x: torch.Tensor) -> torch.Tensor:
    """A dense copy of ``x`` (no copy if it already is dense)."""
    return x.to_dense() if is_sparse(x) else x
