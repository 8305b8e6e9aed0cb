"""Exponential moving average of the online encoder, the JEPA target encoder."""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """``θ_target ← m θ_target + (1 - m) θ_online``; buffers are copied."""
    # one multi-tensor call instead of a Python loop over parameters
    torch._foreach_lerp_(
        list(target.parameters()),
        [o.detach() for o in online.parameters()],
        1.0 - momentum,
    )
    for t, o in zip(target.buffers(), online.buffers(), strict=True):
        t.copy_(o)


def momentum_schedule(step: int, total_steps: int, start: float, end: float) -> float:
    """Momentum rising linearly from ``start`` to ``end`` over training (I-JEPA's schedule)."""
    if total_steps <= 1:
        return end
    fraction = min(max(step / (total_steps - 1), 0.0), 1.0)
    return start + (end - start) * fraction
