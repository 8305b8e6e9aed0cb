"""Training plan: scvi-tools' plan plus the target encoder's moving-average update."""

from __future__ import annotations

import math

import torch
from scvi.train import TrainingPlan

from scjepa.train._ema import momentum_schedule


class JEPATrainingPlan(TrainingPlan):
    """:class:`scvi.train.TrainingPlan` that updates the EMA target encoder after every step.

    The target encoder has ``requires_grad=False`` and so stays out of the optimiser.

    Parameters
    ----------
    module
        A :class:`~scjepa.module.BioJEPAModule`.
    ema_momentum_start, ema_momentum_end
        The target encoder's momentum rises linearly between these over training (I-JEPA uses
        0.996 → 1.0).
    cosine_schedule
        Warm the learning rate up linearly over the first 5% of steps, then let it decay along a
        cosine to 1% of ``lr`` at the last step, as I-JEPA (Assran et al., CVPR 2023) does. The
        perturbation objectives fit population means from minibatches of a few cells per group;
        a decaying rate averages that noise out instead of leaving the fit jittering around the
        optimum. Ignored with ``reduce_lr_on_plateau=True``.
    **kwargs
        Passed to :class:`scvi.train.TrainingPlan` (``lr``, ``weight_decay``, ``optimizer``, ...).
    """

    def __init__(
        self,
        module,
        ema_momentum_start: float = 0.996,
        ema_momentum_end: float = 1.0,
        cosine_schedule: bool = True,
        **kwargs,
    ):
        kwargs.setdefault("lr", 1e-3)
        kwargs.setdefault("weight_decay", 1e-5)
        kwargs.setdefault("optimizer", "AdamW")
        # scvi-tools' default eps=0.01 suits ELBOs summed over genes; scjepa's losses are means
        # (and the decoder's likelihood is scaled per gene), whose gradients it would swamp
        kwargs.setdefault("eps", 1e-8)
        super().__init__(module, **kwargs)
        if not 0.0 <= ema_momentum_start <= ema_momentum_end <= 1.0:
            raise ValueError(
                "Need 0 <= ema_momentum_start <= ema_momentum_end <= 1, got "
                f"{ema_momentum_start} and {ema_momentum_end}."
            )
        self.ema_momentum_start = ema_momentum_start
        self.ema_momentum_end = ema_momentum_end
        self.cosine_schedule = cosine_schedule and not self.reduce_lr_on_plateau

    def _total_steps(self) -> int:
        return int(getattr(self.trainer, "estimated_stepping_batches", 0) or 0)

    def configure_optimizers(self):
        """scvi-tools' optimiser, with the warm-up + cosine learning-rate schedule."""
        configured = super().configure_optimizers()
        total = self._total_steps()
        if not self.cosine_schedule or total <= 0 or total == math.inf:
            return configured
        optimizer = configured["optimizer"] if isinstance(configured, dict) else configured
        warmup = max(1, int(0.05 * total))

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            progress = min(1.0, (step - warmup) / max(1, total - warmup))
            return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * progress))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }

    @property
    def ema_momentum(self) -> float:
        """Momentum of the target encoder at the current step."""
        return momentum_schedule(
            self.global_step, self._total_steps(), self.ema_momentum_start, self.ema_momentum_end
        )

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        """Update the target encoder after the optimiser step."""
        self.module.update_target_encoder(self.ema_momentum)
