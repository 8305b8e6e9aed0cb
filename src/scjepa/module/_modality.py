"""A second modality's encoders and decoder head (e.g. surface proteins next to RNA)."""

from __future__ import annotations

import copy

import torch
from torch import nn

from scjepa.module._encoder import CellEncoder, mlp


class ModalityBranch(nn.Module):
    """Online and target (EMA) encoders of a second modality, and a head that reads it back.

    The encoders map the modality's log-normalised counts into the same embedding space as the
    RNA encoders (the cross-modal objective of :class:`~scjepa.module.BioJEPAModule` aligns
    them); the head maps an embedding to the modality's log-normalised values, a Gaussian mean,
    as totalVI models normalised protein (Gayoso et al., Nature Methods 2021) up to its
    background mixture.

    Parameters
    ----------
    n_input
        Number of features of the modality (e.g. proteins).
    n_latent
        Embedding dimension.
    n_hidden
        Hidden width of encoder and head.
    dropout
        Encoder dropout.
    feature_mean, feature_scale
        Per-feature mean and standard deviation of the training cells' log-normalised values;
        ``None`` gives 0 and 1 (an unstandardised head).
    n_linear_input
        Width of an input the head also reads linearly (``0``: none), starting at zero so the
        head begins as the embedding read-out alone.
    """

    def __init__(
        self,
        n_input: int,
        n_latent: int,
        n_hidden: int = 128,
        dropout: float = 0.1,
        feature_mean: torch.Tensor | None = None,
        feature_scale: torch.Tensor | None = None,
        n_linear_input: int = 0,
    ):
        super().__init__()
        mean = torch.zeros(n_input) if feature_mean is None else feature_mean
        scale = torch.ones(n_input) if feature_scale is None else feature_scale
        if mean.shape != (n_input,) or scale.shape != (n_input,):
            raise ValueError(f"`feature_mean` and `feature_scale` need shape ({n_input},).")
        self.register_buffer("feature_mean", mean.float().clone())
        self.register_buffer("feature_scale", scale.float().clamp(min=1e-3).clone())
        self.encoder = CellEncoder(n_input, n_latent, n_hidden, n_layers=2, dropout=dropout)
        self.target_encoder = copy.deepcopy(self.encoder)
        self.target_encoder.requires_grad_(False)
        self.head = mlp(n_latent, n_hidden, n_input, n_layers=2)
        self.linear_path = None
        if n_linear_input:
            self.linear_path = nn.Linear(n_linear_input, n_input)
            nn.init.zeros_(self.linear_path.weight)
            nn.init.zeros_(self.linear_path.bias)

    def train(self, mode: bool = True):
        """Set training mode; the target encoder always stays in evaluation mode."""
        super().train(mode)
        self.target_encoder.eval()
        return self

    def decode(self, z: torch.Tensor, linear_input: torch.Tensor | None = None) -> torch.Tensor:
        """Log-normalised values of the modality read from embeddings."""
        standardised = self.head(z)
        if self.linear_path is not None:
            standardised = standardised + self.linear_path(linear_input)
        return self.feature_mean + self.feature_scale * standardised

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # models saved before the head was standardised read values unstandardised
        state_dict.setdefault(prefix + "feature_mean", torch.zeros_like(self.feature_mean))
        state_dict.setdefault(prefix + "feature_scale", torch.ones_like(self.feature_scale))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
