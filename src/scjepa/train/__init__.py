"""Training plan, losses and the moving-average target encoder."""

from scjepa.train._ema import ema_update, momentum_schedule
from scjepa.train._losses import (
    covariance_loss,
    effective_rank,
    matched_population_loss,
    variance_loss,
)
from scjepa.train._plan import JEPATrainingPlan

__all__ = [
    "JEPATrainingPlan",
    "covariance_loss",
    "effective_rank",
    "ema_update",
    "matched_population_loss",
    "momentum_schedule",
    "variance_loss",
]
