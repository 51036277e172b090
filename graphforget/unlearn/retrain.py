"""Retrain: the ground truth every method is measured against."""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

from ..config import check_types
from ..train import TrainConfig, train
from .base import Unlearner, redraw, refuse_no_remaining_edge
from .registry import register

__all__ = ["Retrain", "RetrainConfig"]


@dataclass
class RetrainConfig:
    """Options of :class:`Retrain`.

    Args:
        train: how to train (those the original was trained with).
        seed: seed of the fresh initialisation.
        warm_start: start from the trained parameters instead of a fresh initialisation (to compare
            parameters with an influence update; a ``seed`` option given beside it, in ``options`` or
            ``--option``, is refused: nothing reads it, and a run's seed that fills the field is left unread).
    """
    train: TrainConfig = field(default_factory=TrainConfig)
    seed: int = 0
    warm_start: bool = False

    def __post_init__(self):
        check_types(self)


@register
class Retrain(Unlearner):
    """Trains a fresh copy of the model from scratch on the remaining edges (early-stopping on ``val``).

    Without ``warm_start``, :meth:`~graphforget.unlearn.Unlearner.unlearn` checks that ``reset_parameters(seed)``
    re-drew every trainable parameter (``redraw``): a parameter left as trained would keep what
    it learnt from the removed edges. A frozen
    parameter (``requires_grad=False``) is kept as it is, as training leaves it; running statistics (a
    BatchNorm's) start as a fresh model's.

    Raises:
        ValueError: from :meth:`~graphforget.unlearn.Unlearner.unlearn`, when ``reset_parameters`` left trained
            parameters unchanged, or the request removes every training edge.
    """
    name = "retrain"
    Config = RetrainConfig

    @classmethod
    def unread_in(cls, config, training_known: bool = True) -> dict[str, str]:
        """:meth:`Unlearner.unread_in`, and ``seed`` with ``warm_start`` (no initialisation to seed)."""
        unread = super().unread_in(config, training_known)
        if config.warm_start:
            unread["seed"] = "warm_start starts from the trained model: there is no initialisation to seed"
        return unread

    def _unlearn(self, request, positions, remaining):
        refuse_no_remaining_edge(self, remaining, "to train on")  # train() named the wrong graph
        model = copy.deepcopy(self.model)
        if not self.config.warm_start:
            redraw(model, self.config.seed, "Retrain")
        result = train(model, remaining, self.objective, self.config.train, self.val)
        info = {"epochs": result.epochs, "best_epoch": result.best_epoch, "train_seconds": result.seconds}
        if "max_gradient" in result.history[-1]:  # L-BFGS: how stationary the retrained model is
            info["max_gradient"] = result.history[-1]["max_gradient"]
        return model, info

