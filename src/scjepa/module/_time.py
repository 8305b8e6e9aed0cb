"""Time-step encoder: an elapsed time Δt → a context vector for the predictor."""

from __future__ import annotations

import torch
from torch import nn

from scjepa.module._encoder import mlp


class TimeStepEncoder(nn.Module):
    """Embed elapsed times, measured in units of the training time course's span.

    ``Δt`` (negative: backwards in time) enters as ``τ = Δt / span`` and ``sign(τ) √|τ|`` through
    a small network whose output starts at zero, so an untrained temporal predictor, like the
    perturbation predictor, says "nothing changes". The
    embedding is added to the predictor's time-task token, as V-JEPA conditions its predictor on
    the positions of the frames it predicts (Bardes et al., 2024).

    Parameters
    ----------
    n_output
        Dimension of the embedding.
    span
        Length of the training time course (last minus first time point).
    n_hidden
        Width of the network.
    """

    def __init__(self, n_output: int, span: float = 1.0, n_hidden: int = 64):
        super().__init__()
        if not span > 0:
            raise ValueError(f"The time course must span a positive time, got {span}.")
        # a buffer, so that a loaded model keeps the span it was trained with
        self.register_buffer("span", torch.tensor(float(span)))
        self.network = mlp(2, n_hidden, n_output, n_layers=2)
        nn.init.zeros_(self.network[-1].weight)
        nn.init.zeros_(self.network[-1].bias)

    def forward(self, elapsed: torch.Tensor) -> torch.Tensor:
        """``(n, n_output)`` embeddings of ``(n,)`` elapsed times."""
        tau = elapsed.reshape(-1, 1).float() / self.span
        return self.network(torch.cat([tau, tau.sign() * tau.abs().sqrt()], dim=-1))
