"""Perturbation encoder: a set of perturbed entities (and a dose) → one context vector."""

from __future__ import annotations

import itertools

import torch
from torch import nn

from scjepa.module._encoder import mlp


class PerturbationEncoder(nn.Module):
    """Embed a perturbation as a set of members described by feature vectors.

    ``e(S) = Σ_{a∈S} φ(x_a) + Σ_{a<b∈S} ψ(φ(x_a) + φ(x_b), φ(x_a) ⊙ φ(x_b))``, scaled by a learned
    function of the dose. The first sum makes combinations additive by default; the pairwise
    term ``ψ`` (zero at initialisation, symmetric in ``a`` and ``b``) learns synergy and buffering
    from the combinations seen in training. Because members are described by features rather than
    looked up by identity, members never seen perturbed still get an embedding (in the spirit
    of GEARS, Roohani et al., Nature Biotechnology 2024, which uses gene-graph features).

    Parameters
    ----------
    features
        ``(n_entities, n_features)`` table; row ``i`` describes entity ``i``.
    n_output
        Dimension of the perturbation embedding.
    n_hidden
        Width of the member and interaction networks.
    """

    def __init__(self, features: torch.Tensor, n_output: int, n_hidden: int = 128):
        super().__init__()
        self.register_buffer("features", features.float().clone())
        self.member = mlp(features.shape[1], n_hidden, n_output, n_layers=2)
        self.interaction = mlp(2 * n_output, n_hidden, n_output, n_layers=2)
        nn.init.zeros_(self.interaction[-1].weight)
        nn.init.zeros_(self.interaction[-1].bias)
        self.dose_gain = mlp(1, 16, 1, n_layers=2)
        nn.init.zeros_(self.dose_gain[-1].weight)
        nn.init.zeros_(self.dose_gain[-1].bias)

    def forward(self, members: torch.Tensor, dose: torch.Tensor | None = None) -> torch.Tensor:
        """Embed perturbations.

        Parameters
        ----------
        members
            ``(n, max_members)`` indices into the feature table, ``-1`` for padding; a control
            row (all ``-1``) embeds to zero.
        dose
            Optional ``(n,)`` or ``(n, 1)`` doses; enter as ``log1p(dose)``.
        """
        present = (members >= 0).unsqueeze(-1).float()
        embedded = self.member(self.features[members.clamp(min=0)]) * present
        total = embedded.sum(dim=1)
        for a, b in itertools.combinations(range(members.shape[1]), 2):
            ea, eb = embedded[:, a], embedded[:, b]
            both = present[:, a] * present[:, b]
            total = total + both * self.interaction(torch.cat([ea + eb, ea * eb], dim=-1))
        if dose is not None:
            total = total * (1 + self.dose_gain(torch.log1p(dose.reshape(-1, 1).clamp(min=0))))
        return total
