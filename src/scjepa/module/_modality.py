"""Another modality's encoders and decoder head (surface proteins or chromatin next to RNA)."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from scjepa.module._encoder import CellEncoder, mlp
from scjepa.module._normalize import binarize, log_normalize, to_dense

LIKELIHOODS = ("gaussian", "bernoulli")
"""Observation models of :class:`ModalityBranch`."""


class ModalityBranch(nn.Module):
    """Online and target (EMA) encoders of another modality, and a head that reads it back.

    The encoders map the modality's normalised counts into the same embedding space as the RNA
    encoders (the cross-modal objective of :class:`~scjepa.module.BioJEPAModule` aligns them);
    the head maps an embedding back to the modality under one of two observation models:

    * ``"gaussian"`` (surface proteins): the head gives log-normalised values, a Gaussian mean,
      as totalVI models normalised protein (Gayoso et al., Nature Methods 2021) up to its
      background mixture. The encoders read log-normalised counts.
    * ``"bernoulli"`` (chromatin accessibility): the head gives the logit of each region being
      accessible, scored against binarised counts, as PeakVI models ATAC (Ashuach et al.,
      Nature Methods 2022). The encoders read binarised counts scaled by the number of
      accessible regions of the cell and log-transformed, a term frequency without the inverse
      document frequency of TF-IDF, so deeply sequenced cells do not look more open.

    Parameters
    ----------
    n_input
        Number of features of the modality (proteins, regions).
    n_latent
        Embedding dimension.
    n_hidden
        Hidden width of encoder and head.
    dropout
        Encoder dropout.
    feature_mean, feature_scale
        What the head's standardised output is shifted and scaled by, per feature: for
        ``"gaussian"`` the training cells' mean and standard deviation of log-normalised values,
        for ``"bernoulli"`` the logit of each region's accessible fraction (and scale 1), so the
        head starts from each feature's training average. ``None`` gives 0 and 1.
    n_linear_input
        Width of an input the head also reads linearly (``0``: none), starting at zero so the
        head begins as the embedding read-out alone.
    likelihood
        ``"gaussian"`` or ``"bernoulli"``.
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
        likelihood: str = "gaussian",
    ):
        super().__init__()
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"`likelihood` must be one of {LIKELIHOODS}, got {likelihood!r}.")
        self.likelihood = likelihood
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

    def encoder_input(self, counts: torch.Tensor) -> torch.Tensor:
        """What the encoders read of raw counts (dense or sparse)."""
        if self.likelihood == "bernoulli":
            counts = binarize(counts)
        return log_normalize(counts)[0]

    def observed(self, inputs: torch.Tensor) -> torch.Tensor:
        """Dense values the head is scored against, from :meth:`encoder_input`'s output.

        Log-normalised values, or binarised counts: a region the encoders read as non-zero is
        one with counts.
        """
        inputs = to_dense(inputs)
        if self.likelihood == "bernoulli":
            return (inputs > 0).to(inputs.dtype)
        return inputs

    def decode(self, z: torch.Tensor, linear_input: torch.Tensor | None = None) -> torch.Tensor:
        """The head's output for embeddings: log-normalised values, or accessibility logits."""
        standardised = self.head(z)
        if self.linear_path is not None:
            standardised = standardised + self.linear_path(linear_input)
        return self.feature_mean + self.feature_scale * standardised

    def readout_loss(self, decoded: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
        """Mean per-value loss of :meth:`decode`'s output against :meth:`observed` values."""
        if self.likelihood == "bernoulli":
            return F.binary_cross_entropy_with_logits(decoded, observed)
        return F.mse_loss(decoded, observed)

    def values(self, decoded: torch.Tensor) -> torch.Tensor:
        """Predicted values from :meth:`decode`'s output.

        Non-negative log-normalised values, or probabilities that regions are accessible.
        """
        if self.likelihood == "bernoulli":
            return torch.sigmoid(decoded)
        return decoded.clamp(min=0)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # models saved before the head was standardised read values unstandardised
        state_dict.setdefault(prefix + "feature_mean", torch.zeros_like(self.feature_mean))
        state_dict.setdefault(prefix + "feature_scale", torch.ones_like(self.feature_scale))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
