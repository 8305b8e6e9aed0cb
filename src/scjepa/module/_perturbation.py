"""Perturbation encoder: a set of perturbed entities (and a dose) → one context vector."""

from __future__ import annotations

import itertools
import math

import torch
from torch import nn
from torch.nn import functional as F

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

    A member never perturbed in training is embedded from the members that were: the
    attention-weighted mean ``Σ_b w_ab φ(x_b)`` over seen members ``b``, with
    ``w_ab = softmax_b(cos(v ⊙ (x_a − x̄), v ⊙ (x_b − x̄)) / τ)``, a learned weight per feature
    ``v``, ``x̄`` the seen members' mean features and a learned temperature ``τ``. A network
    fitted to a few dozen perturbed genes extrapolates freely to a gene outside them; the
    weighted mean stays among measured effects, leans on the perturbations whose genes
    resemble the new one and falls back on their average when none does (the
    mean-of-perturbations baseline, which is hard to beat on unseen genes). The weights and
    temperature are chosen by leave-one-out on the seen members, as the bandwidth of a kernel
    regression is (Nadaraya 1964; Watson 1964) and as matching networks learn their metric
    (Vinyals et al., NeurIPS 2016): :meth:`neighbour_loss`, the error of each seen member's
    embedding predicted from the other seen members, trains them and nothing else, so the
    training of seen members is unchanged.

    Parameters
    ----------
    features
        ``(n_entities, n_features)`` table; row ``i`` describes entity ``i``.
    n_output
        Dimension of the perturbation embedding.
    n_hidden
        Width of the member and interaction networks.
    seen
        ``(n_entities,)`` booleans: the entities perturbed in training. ``None`` treats every
        entity as seen (each is embedded from its own features).
    """

    def __init__(
        self,
        features: torch.Tensor,
        n_output: int,
        n_hidden: int = 128,
        seen: torch.Tensor | None = None,
    ):
        super().__init__()
        n_entities, n_features = features.shape
        self.n_output, self.n_hidden = n_output, n_hidden
        features = features.float().clone()
        if seen is None:
            seen = torch.ones(n_entities, dtype=torch.bool)
        seen = seen.bool().clone()
        self.register_buffer("features", features)
        # derived from the registered perturbations each time the model is built
        self.register_buffer("seen", seen, persistent=False)
        centre = features[seen].mean(dim=0) if seen.any() else features.mean(dim=0)
        self.register_buffer("centre", centre, persistent=False)
        self.member = mlp(n_features, n_hidden, n_output, n_layers=2)
        self.interaction = self.new_interaction_network()
        # how much of the learned interaction predictions keep; set after training by
        # cross-fitting (scjepa.model.BioJEPA.calibrate_interaction), 1 until then
        self.register_buffer("interaction_scale", torch.ones(()))
        self.dose_gain = mlp(1, 16, 1, n_layers=2)
        nn.init.zeros_(self.dose_gain[-1].weight)
        nn.init.zeros_(self.dose_gain[-1].bias)
        # made without drawing random numbers, so the rest of the model starts as it would
        # without them
        self.feature_weights = nn.Parameter(torch.ones(n_features))
        self.log_temperature = nn.Parameter(torch.tensor(math.log(0.1)))

    def new_interaction_network(self) -> nn.Module:
        """A fresh interaction network ``ψ`` with a zero output, so a set starts additive."""
        network = mlp(2 * self.n_output, self.n_hidden, self.n_output, n_layers=2)
        nn.init.zeros_(network[-1].weight)
        nn.init.zeros_(network[-1].bias)
        return network

    def forward(
        self,
        members: torch.Tensor,
        dose: torch.Tensor | None = None,
        interaction_network: nn.Module | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Embed the members of perturbations and their interaction.

        Parameters
        ----------
        members
            ``(n, max_members)`` indices into the feature table, ``-1`` for padding; a control
            row (all ``-1``) has no members and a zero interaction.
        dose
            Optional ``(n,)`` or ``(n, 1)`` doses; enter as ``log1p(dose)``.
        interaction_network
            A network used in place of the learned ``ψ`` (as cross-fitting does).

        Returns
        -------
        ``(n, max_members, n_output)`` member embeddings (zero where padded) and the
        ``(n, n_output)`` interaction embeddings.
        """
        present = (members >= 0).unsqueeze(-1).float()
        embedded = self.embed_entities(members.clamp(min=0)) * present
        network = self.interaction if interaction_network is None else interaction_network
        interaction = embedded.new_zeros(embedded.shape[0], embedded.shape[2])
        for a, b in itertools.combinations(range(members.shape[1]), 2):
            ea, eb = embedded[:, a], embedded[:, b]
            both = present[:, a] * present[:, b]
            interaction = interaction + both * network(torch.cat([ea + eb, ea * eb], -1))
        if dose is not None:
            gain = 1 + self.dose_gain(torch.log1p(dose.reshape(-1, 1).float().clamp(min=0)))
            embedded = embedded * gain.unsqueeze(1)
            interaction = interaction * gain
        return embedded, interaction

    def embed_entities(self, index: torch.Tensor) -> torch.Tensor:
        """Embeddings ``(*index.shape, n_output)`` of entities: own features or seen neighbours."""
        entities, inverse = torch.unique(index, return_inverse=True)
        own = self.member(self.features[entities])
        from_neighbours = ~self.seen[entities]
        if from_neighbours.any() and self.seen.any():
            rows = torch.nonzero(from_neighbours).reshape(-1)
            own = own.index_copy(0, rows, self.neighbour_embedding(entities[rows]))
        return own[inverse]

    @property
    def seen_index(self) -> torch.Tensor:
        """Indices of the seen entities, in the order of every ``n_seen`` axis."""
        return torch.nonzero(self.seen).reshape(-1)

    def neighbour_weights(self, entities: torch.Tensor) -> torch.Tensor:
        """``(len(entities), n_seen)`` attention weights over the seen entities, own left out."""
        seen = self.seen_index
        keys = F.normalize((self.features[seen] - self.centre) * self.feature_weights, dim=-1)
        queries = F.normalize(
            (self.features[entities] - self.centre) * self.feature_weights, dim=-1
        )
        logits = queries @ keys.T / self.log_temperature.exp()
        logits = logits.masked_fill(entities.unsqueeze(1) == seen.unsqueeze(0), float("-inf"))
        return torch.softmax(logits, dim=-1)

    def neighbour_embedding(
        self, entities: torch.Tensor, values: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Attention-weighted mean of the seen entities' embeddings, each entity's own left out.

        ``values`` replaces the seen entities' embeddings (rows in the order of
        :attr:`seen_index`).
        """
        if values is None:
            values = self.member(self.features[self.seen_index])
        return self.neighbour_weights(entities) @ values

    def neighbour_loss(self) -> torch.Tensor:
        """How well seen entities are embedded from the other seen ones: ``1 - R²``.

        The squared error of each seen entity's neighbour embedding against its own embedding,
        relative to that of the mean embedding (1: no better than the mean). The embeddings are
        detached, so this trains only the feature weights and the temperature.
        """
        seen = self.seen_index
        if len(seen) < 3:
            return self.features.new_zeros(())
        own = self.member(self.features[seen]).detach()
        error = (self.neighbour_embedding(seen, own) - own).pow(2).sum(-1).mean()
        spread = (own - own.mean(dim=0)).pow(2).sum(-1).mean().clamp(min=1e-8)
        return error / spread

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # models saved before the neighbour weights existed load with their starting values
        # and models saved before cross-fitting keep their whole interaction
        for name, value in [
            ("feature_weights", self.feature_weights),
            ("log_temperature", self.log_temperature),
            ("interaction_scale", self.interaction_scale),
        ]:
            state_dict.setdefault(prefix + name, value.detach().clone())
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
