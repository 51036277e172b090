"""What the cells of one (dataset, model, seed) share within a run: the data, the Original, the fitted
methods and the Retrain references, each computed once and held in memory.

Nothing here is written to disk: after a crash the Original and a Retrain reference are recomputed when a
missing cell needs them. Training is seeded, so they are the same models, and a resumed run gives the
same figures as an uninterrupted one (timings aside).
"""
from __future__ import annotations

import hashlib
import json
import logging
from typing import Callable

import torch
from torch import Tensor

from ..data import EDGE, num_items, num_users
from ..presets import Hyperparameters
from ..protocols.attack import prepare_attack_data
from ..train import train
from ..unlearn import UnlearnResult, Unlearner, build_unlearner

__all__ = ["Setting", "Workspace"]

log = logging.getLogger(__name__)


def request_digest(request: Tensor) -> str:
    """A short hash of a request's (user, item) pairs, independent of their order."""
    keys = torch.sort(request[0].cpu().long() * (int(request[1].max()) + 1) + request[1].cpu().long()).values
    return hashlib.sha256(keys.numpy().tobytes()).hexdigest()[:16]


class Setting:
    """The data and the models one (dataset, model, seed) shares across methods.

    Args:
        dataset: a name of :data:`~graphforget.protocols.attack.DATASET_NAMES`.
        root: the data directory (``None``: the usual search).
        hparams: the model and its training.
        seed: seeds the split, the attack, the model and the methods.
        attack_ratio: flip this share of training labels (the IFRU attack; the Original is trained on the
            attacked graph), or ``None`` for the clean training split.
        device: where models are trained.
    """

    def __init__(self, dataset: str, root, hparams: Hyperparameters, seed: int, attack_ratio: float | None = None,
                 device: str | torch.device = "cpu"):
        self.hparams, self.seed, self.device = hparams, seed, torch.device(device)
        self.data = prepare_attack_data(dataset, root, attack_ratio or 0.02, seed)
        split = self.data.split
        graph = self.data.train if attack_ratio else split.train
        self.train_graph, self.val, self.test = (g.to(self.device) for g in (graph, split.val, split.test))
        self.source = self.data.source if attack_ratio else self.data.source.split("; ")[0] + "; 6:2:2 split"
        self.objective, self.config = hparams.objective(), hparams.train_config(seed)
        self._original, self.original_fit = None, None
        self.references: dict[str, UnlearnResult] = {}
        self._fitted: dict[str, Unlearner] = {}

    @property
    def original(self) -> torch.nn.Module:
        """The model trained on :attr:`train_graph` (trained on first use)."""
        if self._original is None:
            graph = self.train_graph
            model = self.hparams.build_model(num_users(graph), num_items(graph), self.seed).to(self.device)
            self.original_fit = train(model, graph, self.objective, self.config, self.val)
            self._original = model.eval()
        return self._original

    def reference(self, removed: Tensor) -> UnlearnResult:
        """A Retrain (fresh initialisation, the run's seed) on :attr:`train_graph` without exactly ``removed``;
        one per distinct removed set."""
        key = request_digest(removed)
        if key not in self.references:
            retrain = build_unlearner("retrain", self.original, self.train_graph, self.objective, train=self.config,
                                      seed=self.seed, val=self.val)
            self.references[key] = retrain.unlearn(removed)
            self.references[key].model.eval()
        return self.references[key]

    def unlearner(self, method: str, options: dict | None) -> Unlearner:
        """``method`` built on the Original; a method with a fit step (SISA, RecEraser, UnlearnRec) is fitted
        once per setting and shared by the requests (its ``unlearn`` does not change it)."""
        key = json.dumps([method, options or {}], sort_keys=True, default=str)
        if key in self._fitted:
            return self._fitted[key]
        unlearner = self.continue_from(method, options, self.original, self.train_graph)
        if not unlearner.fitted:
            self._fitted[key] = unlearner.fit()
        return unlearner

    def continue_from(self, method: str, options: dict | None, model: torch.nn.Module, graph) -> Unlearner:
        """``method`` built on ``model`` and its ``graph`` (e.g. a previous result, for the next request)."""
        return build_unlearner(method, model, graph, self.objective, options, train=self.config, seed=self.seed,
                               val=self.val)

    def __repr__(self) -> str:
        return (f"Setting({self.data.dataset!r}, model={self.hparams.model!r}, seed={self.seed}, "
                f"train_edges={self.train_graph[EDGE].edge_index.size(1)})")


class Workspace:
    """Holds the :class:`Setting` of the cells being run: one at a time (cells are ordered by setting), so
    memory stays that of one setting's models."""

    def __init__(self):
        self._key, self._setting = None, None

    def get(self, key: tuple, make: Callable[[], Setting]) -> Setting:
        """The setting of ``key``, made (and the previous one dropped) when it changes."""
        if key != self._key:
            self._key, self._setting = None, None
            self._setting, self._key = make(), key
        return self._setting
