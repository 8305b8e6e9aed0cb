"""Decoder head from embeddings to counts, negative binomial as in scVI."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from scvi.distributions import NegativeBinomial
from torch import nn

from scjepa.module._encoder import mlp


class NegativeBinomialDecoder(nn.Module):
    """``p(x | z, batch) = NB(library · softmax(h(z, batch)), θ_gene)``.

    It is trained on detached embeddings: the JEPA objectives alone shape the embedding space and
    the decoder only learns to read it.

    Parameters
    ----------
    n_latent
        Embedding dimension.
    n_output
        Number of genes.
    n_batch
        Number of batches; the decoder is conditioned on the batch, so embeddings need not carry it.
    n_hidden
        Hidden width.
    """

    def __init__(self, n_latent: int, n_output: int, n_batch: int, n_hidden: int = 256):
        super().__init__()
        self.n_batch = n_batch
        self.net = mlp(n_latent + n_batch, n_hidden, n_output, n_layers=2)
        self.log_theta = nn.Parameter(torch.zeros(n_output))

    def forward(self, z: torch.Tensor, batch_index: torch.Tensor) -> torch.Tensor:
        """Expected expression proportions ``(n, n_genes)`` (rows sum to one)."""
        batch = F.one_hot(batch_index.reshape(-1).long(), self.n_batch).float()
        return torch.softmax(self.net(torch.cat([z, batch], dim=-1)), dim=-1)

    def distribution(self, scale: torch.Tensor, library: torch.Tensor) -> NegativeBinomial:
        """The negative binomial of counts at the given proportions and library sizes."""
        return NegativeBinomial(mu=scale * library.reshape(-1, 1), theta=self.log_theta.exp())
