"""Cell encoder whose first layer costs in proportion to the non-zeros of a sparse batch."""

from __future__ import annotations

import math

import torch
from torch import nn

from scjepa.module._normalize import is_sparse


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


class SparseLinear(nn.Module):
    """``x @ W + b`` that multiplies sparse ``x`` without densifying it."""

    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_in, n_out))
        self.bias = nn.Parameter(torch.zeros(n_out))
        nn.init.kaiming_uniform_(self.weight.T, a=math.sqrt(5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Project a dense or sparse ``(n_cells, n_in)`` batch."""
        out = torch.sparse.mm(x, self.weight) if is_sparse(x) else x @ self.weight
        return out + self.bias


class CellEncoder(nn.Module):
    """Map log-normalised expression to a layer-normalised embedding.

    Parameters
    ----------
    n_input
        Number of genes.
    n_latent
        Embedding dimension.
    n_hidden
        Width of the hidden layers.
    n_layers
        Number of hidden layers (at least 1).
    dropout
        Dropout after each hidden layer.
    """

    def __init__(
        self,
        n_input: int,
        n_latent: int,
        n_hidden: int = 512,
        n_layers: int = 2,
        dropout: float = 0.1,
    ):
        super().__init__()
        self.input = SparseLinear(n_input, n_hidden)
        self.body = nn.Sequential(
            nn.LayerNorm(n_hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            mlp(n_hidden, n_hidden, n_latent, n_layers=n_layers, dropout=dropout),
        )
        # I-JEPA normalises targets; normalising the encoder output does so for every view.
        self.output_norm = nn.LayerNorm(n_latent, elementwise_affine=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Embed a batch of normalised expression."""
        return self.output_norm(self.body(self.input(x)))
