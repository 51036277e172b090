"""Retrain: the ground truth every method is measured against."""
from __future__ import annotations

import copy

from torch_geometric.data import HeteroData

from ..objectives import Objective
from ..train import TrainConfig, train
from .base import Unlearner

__all__ = ["Retrain"]


class Retrain(Unlearner):
    """Trains a fresh copy of the model from scratch on the remaining edges.

    Args:
        model, graph, objective: the trained model, its training graph and objective.
        config: training hyper-parameters (those the original was trained with).
        val: validation pairs for early stopping.
        seed: seed of the fresh initialisation.
        warm_start: start from the trained parameters instead of a fresh initialisation (to compare
            parameters with an influence update).
    """
    name = "retrain"

    def __init__(self, model, graph: HeteroData, objective: Objective, config: TrainConfig | None = None,
                 val: HeteroData | None = None, seed: int = 0, warm_start: bool = False):
        super().__init__(model, graph, objective)
        self.config, self.val, self.seed, self.warm_start = config or TrainConfig(), val, seed, warm_start

    def _unlearn(self, request, positions, remaining):
        model = copy.deepcopy(self.model)
        if not self.warm_start:
            model.reset_parameters(self.seed)
        result = train(model, remaining, self.objective, self.config, self.val)
        info = {"epochs": result.epochs, "best_epoch": result.best_epoch, "train_seconds": result.seconds}
        if "max_gradient" in result.history[-1]:  # L-BFGS: how stationary the retrained model is
            info["max_gradient"] = result.history[-1]["max_gradient"]
        return model, info
