"""Training plan: scvi-tools' plan plus the target encoder's moving-average update."""

from __future__ import annotations

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
    **kwargs
        Passed to :class:`scvi.train.TrainingPlan` (``lr``, ``weight_decay``, ``optimizer``, ...).
    """

    def __init__(
        self,
        module,
        ema_momentum_start: float = 0.996,
        ema_momentum_end: float = 1.0,
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

    @property
    def ema_momentum(self) -> float:
        """Momentum of the target encoder at the current step."""
        total = int(getattr(self.trainer, "estimated_stepping_batches", 0) or 0)
        return momentum_schedule(
            self.global_step, total, self.ema_momentum_start, self.ema_momentum_end
        )

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        """Update the target encoder after the optimiser step."""
        self.module.update_target_encoder(self.ema_momentum)
