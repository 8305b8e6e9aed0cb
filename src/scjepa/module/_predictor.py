"""Conditional predictor: embedding + context (task, perturbation, ...) → predicted embedding."""

from __future__ import annotations

import torch
from torch import nn


class FiLMBlock(nn.Module):
    """Pre-norm residual MLP block whose normalised input is scaled and shifted by the context.

    Feature-wise linear modulation: Perez et al., "FiLM: Visual Reasoning with a General
    Conditioning Layer", AAAI 2018.
    """

    def __init__(self, n_hidden: int, n_condition: int, dropout: float = 0.0):
        super().__init__()
        self.norm = nn.LayerNorm(n_hidden, elementwise_affine=False)
        self.film = nn.Linear(n_condition, 2 * n_hidden)
        self.mlp = nn.Sequential(
            nn.Linear(n_hidden, 2 * n_hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(2 * n_hidden, n_hidden),
        )
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)

    def forward(self, h: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        """Update ``h`` given ``condition``."""
        scale, shift = self.film(condition).chunk(2, dim=-1)
        return h + self.mlp(self.norm(h) * (1 + scale) + shift)


class ConditionalPredictor(nn.Module):
    """Residual FiLM MLP predicting a target embedding from a context embedding.

    The output is ``z + Δ(z, condition)`` with ``Δ`` initialised to zero, so an untrained predictor
    says "nothing changes", the no-change baseline, and training learns departures from it.

    Parameters
    ----------
    n_latent
        Embedding dimension.
    n_condition
        Dimension of the context vector.
    n_hidden
        Width of the residual stream.
    n_blocks
        Number of FiLM blocks.
    dropout
        Dropout inside the blocks.
    """

    def __init__(
        self,
        n_latent: int,
        n_condition: int,
        n_hidden: int = 256,
        n_blocks: int = 3,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.input = nn.Linear(n_latent, n_hidden)
        self.condition_input = nn.Linear(n_condition, n_hidden)
        self.blocks = nn.ModuleList(
            [FiLMBlock(n_hidden, n_condition, dropout) for _ in range(n_blocks)]
        )
        self.output = nn.Sequential(nn.LayerNorm(n_hidden), nn.Linear(n_hidden, n_latent))
        nn.init.zeros_(self.output[1].weight)
        nn.init.zeros_(self.output[1].bias)

    def forward(self, z: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        """Predict embeddings ``(n, n_latent)`` from ``z`` ``(n, n_latent)`` and ``condition``."""
        h = self.input(z) + self.condition_input(condition)
        for block in self.blocks:
            h = block(h, condition)
        return z + self.output(h)
