"""Perturbation encoder: a set of perturbed entities (and a dose) → one context vector."""

from __future__ import annotations

import itertools

import torch
from torch import nn

from scjepa.module._encoder import mlp


class PerturbationEncoder(nn.Module):
    """Embed a perturbation as a set of members described by feature vectors.

    Member ``a`` gets ``e_a = g(dose) φ(x_a)``; a set ``S`` also gets an interaction embedding
    ``e_S = g(dose) Σ_{a<b∈S} ψ(φ(x_a) + φ(x_b), φ(x_a) ⊙ φ(x_b))``, symmetric in its members and
    zero at initialisation, which learns synergy and buffering from the combinations seen in
    training. ``g`` is a learned function of the dose (1 without doses). How the predictor
    composes members and interaction is up to :class:`~scjepa.module.BioJEPAModule`. Because
    members are described by features rather than looked up by identity, members never seen
    perturbed still get an embedding (in the spirit of GEARS, Roohani et al., Nature
    Biotechnology 2024, which uses gene-graph features).

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

    def forward(
        self, members: torch.Tensor, dose: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Embed the members of perturbations and their interaction.

        Parameters
        ----------
        members
            ``(n, max_members)`` indices into the feature table, ``-1`` for padding; a control
            row (all ``-1``) has no members and a zero interaction.
        dose
            Optional ``(n,)`` or ``(n, 1)`` doses; enter as ``log1p(dose)``.

        Returns
        -------
        ``(n, max_members, n_output)`` member embeddings (zero where padded) and the
        ``(n, n_output)`` interaction embeddings.
        """
        present = (members >= 0).unsqueeze(-1).float()
        embedded = self.member(self.features[members.clamp(min=0)]) * present
        interaction = embedded.new_zeros(embedded.shape[0], embedded.shape[2])
        for a, b in itertools.combinations(range(members.shape[1]), 2):
            ea, eb = embedded[:, a], embedded[:, b]
            both = present[:, a] * present[:, b]
            interaction = interaction + both * self.interaction(torch.cat([ea + eb, ea * eb], -1))
        if dose is not None:
            gain = 1 + self.dose_gain(torch.log1p(dose.reshape(-1, 1).float().clamp(min=0)))
            embedded = embedded * gain.unsqueeze(1)
            interaction = interaction * gain
        return embedded, interaction
