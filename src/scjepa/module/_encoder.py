"""Cell encoder whose first layer costs in proportion to the non-zeros of a sparse batch."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from scjepa.module._normalize import as_csr, is_sparse


def mlp(
    n_in: int, n_hidden: int, n_out: int, n_layers: int = 2, dropout: float = 0.0
) -> nn.Sequential:
    """``Linear → LayerNorm → GELU → Dropout`` blocks followed by a final ``Linear``."""
    layers: list[nn.Module] = []
    width = n_in
    for _ in range(max(n_layers - 1, 0)):
        layers += [nn.Linear(width, n_hidden), nn.LayerNorm(n_hidden), nn.GELU()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = n_hidden
    layers.append(nn.Linear(width, n_out))
    return nn.Sequential(*layers)


# Above this fraction of non-zeros a dense product is faster than gathering weight rows: on
# 2 CPU cores the two cost the same at about 20% (256 cells, 2,000-20,000 genes).
_SPARSE_DENSITY_LIMIT = 0.2
# Weights of the first layer at most (n_genes x width); see `input_width`.
_INPUT_WEIGHT_BUDGET = 1500 * 512


def input_width(n_input: int, n_hidden: int) -> int:
    """Width of the first (gene) layer: ``n_hidden``, narrowed for wide gene panels.

    The first layer's cost per step (its weight gradient, optimiser update and moving-average
    copy) grows with ``n_genes x width`` whatever the sparsity of the batch, and at 20,000 genes
    it dominates training. Its width is therefore capped so that it holds at most as many
    weights as a 512-wide layer on 1,500 genes (a multiple of 32, at least 64): 384 at 2,000
    genes, 64 at 20,000. A sum of 64-dimensional gene embeddings weighted by expression is
    still ample to tell cell states apart, and the layers after it keep ``n_hidden``.
    """
    budget = max(64, (_INPUT_WEIGHT_BUDGET // max(n_input, 1)) // 32 * 32)
    return min(n_hidden, budget)


class _SparseProjection(torch.autograd.Function):
    """``x @ W`` for CSR ``x``, with both passes as gathers over the stored non-zeros.

    torch's CPU CSR matrix product is slower than a dense one at single-cell sizes; summing the
    weight rows of each cell's detected genes (``embedding_bag``) costs in proportion to the
    non-zeros, and so does the weight gradient, the same gather over genes instead of cells.
    """

    @staticmethod
    def forward(ctx, crow, col, values, weight):
        ctx.save_for_backward(crow, col, values)
        ctx.n_input = weight.shape[0]
        return F.embedding_bag(col, weight, crow[:-1], per_sample_weights=values, mode="sum")

    @staticmethod
    def backward(ctx, grad_output):
        crow, col, values = ctx.saved_tensors
        n_rows = len(crow) - 1
        rows = torch.repeat_interleave(
            torch.arange(n_rows, device=col.device), crow[1:] - crow[:-1], output_size=len(col)
        )
        order = torch.argsort(col, stable=True)
        per_gene = torch.bincount(col, minlength=ctx.n_input)
        offsets = torch.cumsum(per_gene, 0) - per_gene
        grad_weight = F.embedding_bag(
            rows[order],
            grad_output.to(values.dtype).contiguous(),
            offsets,
            per_sample_weights=values[order],
            mode="sum",
        )
        return None, None, None, grad_weight


class SparseLinear(nn.Module):
    """``x @ W + b`` that multiplies sparse ``x`` without densifying it."""

    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_in, n_out))
        self.bias = nn.Parameter(torch.zeros(n_out))
        nn.init.kaiming_uniform_(self.weight.T, a=math.sqrt(5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Project a dense or sparse ``(n_cells, n_in)`` batch."""
        return project(x, self.weight) + self.bias


def project(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``x @ weight`` for dense or sparse ``x``, gathering weight rows when ``x`` is sparse."""
    if is_sparse(x):
        x = as_csr(x)
        if x.values().numel() > _SPARSE_DENSITY_LIMIT * x.numel():
            x = x.to_dense()
    if not is_sparse(x):
        return x @ weight
    return _SparseProjection.apply(
        x.crow_indices().long(), x.col_indices().long(), x.values(), weight
    )


class ExpressionAxes(nn.Module):
    """Coordinates of cells on fixed axes of expression, e.g. the training cells' principal axes.

    Parameters
    ----------
    axes
        ``(n_genes, k)`` axes, scaled so that the coordinates have about unit spread.
    offset
        ``(k,)`` coordinates of the axes' origin (the mean cell), subtracted from every cell's.
    """

    def __init__(self, axes: torch.Tensor, offset: torch.Tensor):
        super().__init__()
        self.register_buffer("axes", torch.as_tensor(axes, dtype=torch.float32).clone())
        self.register_buffer("offset", torch.as_tensor(offset, dtype=torch.float32).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Coordinates ``(n_cells, k)`` of a dense or sparse batch of normalised expression."""
        return project(x, self.axes) - self.offset


class CellEncoder(nn.Module):
    """Map log-normalised expression to a layer-normalised embedding.

    Parameters
    ----------
    n_input
        Number of genes.
    n_latent
        Embedding dimension.
    n_hidden
        Width of the hidden layers (the first, per-gene layer is capped by
        :func:`input_width`).
    n_layers
        Number of hidden layers (at least 1).
    dropout
        Dropout after each hidden layer.
    input_axes
        ``(axes, offset)`` of :class:`ExpressionAxes`: the encoder then reads each cell's
        coordinates on these fixed axes through a learned ``k x n_hidden`` layer instead of
        reading every gene through a learned gene layer. ``None`` reads every gene.
    """

    def __init__(
        self,
        n_input: int,
        n_latent: int,
        n_hidden: int = 512,
        n_layers: int = 2,
        dropout: float = 0.1,
        input_axes: tuple[torch.Tensor, torch.Tensor] | None = None,
    ):
        super().__init__()
        if input_axes is None:
            n_first = input_width(n_input, n_hidden)
            self.input = SparseLinear(n_input, n_first)
        else:
            axes = ExpressionAxes(*input_axes)
            if axes.axes.shape[0] != n_input:
                raise ValueError(
                    f"`input_axes` has {axes.axes.shape[0]} genes; the encoder reads {n_input}."
                )
            n_first = n_hidden
            self.input = nn.Sequential(axes, nn.Linear(axes.axes.shape[1], n_first))
        self.body = nn.Sequential(
            nn.LayerNorm(n_first),
            nn.GELU(),
            nn.Dropout(dropout),
            mlp(n_first, n_hidden, n_latent, n_layers=n_layers, dropout=dropout),
        )
        # I-JEPA normalises targets; normalising the encoder output does so for every view.
        self.output_norm = nn.LayerNorm(n_latent, elementwise_affine=False)

    @property
    def axes(self) -> ExpressionAxes | None:
        """The fixed axes cells are read through, or ``None`` when every gene is read."""
        return self.input[0] if isinstance(self.input, nn.Sequential) else None

    @property
    def reads_axes(self) -> bool:
        """Whether cells are read through fixed axes (:class:`ExpressionAxes`)."""
        return self.axes is not None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Embed a batch of normalised expression."""
        return self.output_norm(self.body(self.input(x)))
