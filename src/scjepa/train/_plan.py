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
        # a JEPA has no ELBO: plateaus are judged on the validation loss
        kwargs.setdefault("lr_scheduler_metric", "validation_loss")
        super().__init__(module, **kwargs)
        if not 0.0 <= ema_momentum_start <= ema_momentum_end <= 1.0:
            raise ValueError(
                "Need 0 <= ema_momentum_start <= ema_momentum_end <= 1, got "
                f"{ema_momentum_start} and {ema_momentum_end}."
            )
        self.ema_momentum_start = ema_momentum_start
        self.ema_momentum_end = ema_momentum_end
        self.cosine_schedule = cosine_schedule and not self.reduce_lr_on_plateau
        # per mode ("train" / "validation"): metric name -> (batch-size-weighted sum, cells)
        self._metric_sums: dict[str, dict[str, tuple[torch.Tensor, int]]] = {}

    def _optimizer_creator_fn(self, optimizer_cls):
        """scvi-tools' Adam / AdamW, fused into one kernel per step where torch supports it.

        The unfused update loops over parameters with several passes each; at 20,000 genes the
        first layer's update alone then costs more than the forward pass.
        """

        def create(params):
            params = list(params)
            fused = all(
                p.dtype == torch.float32 and p.device.type in ("cpu", "cuda") for p in params
            )
            return optimizer_cls(
                params,
                lr=self.lr,
                eps=self.eps,
                weight_decay=self.weight_decay,
                fused=fused or None,
            )

        return create

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

    def training_step(self, batch, batch_idx):
        """One optimiser step's loss; its metrics are summed for the epoch's log."""
        _, _, loss_output = self.forward(batch, loss_kwargs=self.loss_kwargs)
        self.compute_and_log_metrics(loss_output, self.train_metrics, "train")
        return loss_output.loss

    def validation_step(self, batch, batch_idx) -> None:
        """Sum a validation minibatch's loss and metrics for the epoch's log."""
        _, _, loss_output = self.forward(batch, loss_kwargs=self.loss_kwargs)
        self.compute_and_log_metrics(loss_output, self.val_metrics, "validation")

    def compute_and_log_metrics(self, loss_output, metrics, mode: str) -> None:
        """Sum the minibatch's loss and metrics; they are logged once per epoch.

        The history holds per-epoch means weighted by minibatch size, as with scvi-tools'
        per-epoch logging, under the same names (``train_loss``, ``validation_loss``,
        ``reconstruction_loss_train``, ...; a JEPA has no KL terms, so there is no ELBO).
        Lightning's ``log`` costs about a millisecond a call on CPU, so logging a dozen
        diagnostics every step took a quarter of the training time.
        """
        n_cells = int(loss_output.n_obs_minibatch)
        values = {
            "loss": loss_output.loss,
            "reconstruction_loss": loss_output.reconstruction_loss_sum / max(n_cells, 1),
        }
        values.update(loss_output.extra_metrics)
        sums = self._metric_sums.setdefault(mode, {})
        for key, value in values.items():
            value = torch.as_tensor(value).detach().float()
            if value.dim() == 0:
                total, count = sums.get(key, (0.0, 0))
                sums[key] = (total + value * n_cells, count + n_cells)

    def _log_epoch_metrics(self, mode: str) -> None:
        for key, (total, count) in self._metric_sums.pop(mode, {}).items():
            # scvi-tools' names: train_loss / validation_loss, <metric>_train / _validation
            name = f"{mode}_loss" if key == "loss" else f"{key}_{mode}"
            self.log(
                name,
                total / max(count, 1),
                on_step=False,
                on_epoch=True,
                prog_bar=key == "loss",
                sync_dist=self.use_sync_dist,
            )

    def on_train_epoch_end(self) -> None:
        """Log the epoch's training diagnostics."""
        super().on_train_epoch_end()
        self._log_epoch_metrics("train")

    def on_validation_epoch_end(self) -> None:
        """Log the epoch's validation diagnostics."""
        super().on_validation_epoch_end()
        self._log_epoch_metrics("validation")

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        """Update the target encoder after the optimiser step."""
        self.module.update_target_encoder(self.ema_momentum)
