"""What the cells of one (dataset, model, seed) share within a run: the data, the Original, the fitted
methods and the Retrain references, each computed once and held in memory.

Nothing here is written to disk: after a crash the Original and a Retrain reference are recomputed when a
missing cell needs them. Training is seeded, so they are the same models, and a resumed run gives the
same figures as an uninterrupted one (timings aside).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import warnings
from typing import Callable, Hashable, cast

import torch
from torch import Tensor

from ..config import wrapped_seed
from ..data import EDGE, adversarial_edges, num_items, num_users
from ..metrics import recall_ndcg_at_k
from ..models import Recommender
from ..presets import Hyperparameters
from ..train import train
from ..unlearn import UnlearnResult, Unlearner, build_unlearner
from .data import DataSource

__all__ = ["Setting", "Workspace", "MethodUnsupported", "BENCH_METHODS", "resolve_method"]

log = logging.getLogger(__name__)

#: Seeds of the noise floor's Retrain: the cell's seed plus this.
NOISE_SEED_OFFSET = 1000
#: The harness's own methods: name -> (the registered method it runs, its options from the cell's seed).
#: ``retrain_seed`` is the noise floor: Retrain from another seed (initialisation and batch order), so that
#: its distance to the reference Retrain says how much retraining itself varies.
BENCH_METHODS: dict[str, tuple[str, Callable[[int], dict]]] = {
    "retrain_seed": ("retrain", lambda seed: dict.fromkeys(("seed", "train.seed"),
                                                           wrapped_seed(seed + NOISE_SEED_OFFSET))),
}


def resolve_method(method: str, options: dict | None, seed: int) -> tuple[str, dict]:
    """The registered method a cell's ``method`` runs, and its options (a harness method's own, then ``options``)."""
    if method not in BENCH_METHODS:
        return method, dict(options or {})
    name, options_of = BENCH_METHODS[method]
    return name, {**options_of(seed), **(options or {})}


class MethodUnsupported(ValueError):
    """A method refused the setting when built (e.g. SCIF, which relabels terms, under BPR)."""


def request_digest(request: Tensor) -> str:
    """A short hash of a request's (user, item) pairs, independent of their order."""
    users, items = request.cpu().long()
    width = int(items.max()) + 1 if items.numel() else 1
    # The width is hashed too: with it the keys name the pairs (without it, two requests of different widths
    # could give the same keys: (1, 0), (1, 1) at width 2 and (0, 2), (0, 3) at width 4 both give 2, 3).
    keys = torch.cat([torch.tensor([width]), torch.sort(users * width + items).values])
    return hashlib.sha256(keys.numpy().tobytes()).hexdigest()[:16]


def _no_negatives(source: DataSource, flip: bool, loss: str) -> str:
    """Why a training split without a label 0 cannot be benchmarked, and the remedy (the threshold's, where it made
    every label 1: "implicit feedback" named the wrong cause; sampled negatives only for BCE: BPR refuses them)."""
    need = ("the flipped labels would be the Original's only negatives" if flip else
            "BCE training has no negative")
    sample = "sample N non-interactions per interaction (e.g. 1): --negatives N, DataSource(negatives=N)"
    if source.threshold is not None:
        remedy = "raise --threshold" + (f", or {sample}" if loss == "bce" else "")
        return (f"{source.name}: every rating reaches --threshold {source.threshold:g}, so every label is 1 and "
                f"{need}: {remedy}")
    remedy = sample if loss == "bce" else "give a file with labels 0 (BPR's negatives are sampled, not labelled)"
    return f"{source.name} holds implicit feedback only (every label is 1): {need}; {remedy}"


class Setting:
    """The data and the models one (data, model, seed, attack) shares across methods.

    Args:
        source: the data (:class:`~graphforget.bench.data.DataSource`).
        hparams: the model and its training.
        seed: seeds the split, the attack, the model and the methods.
        attack: how the Original's training graph is attacked, the request of the attack protocols:
            ``{"kind": "flip", "ratio": r}`` flips the labels of a share ``r`` of the training edges (IFRU);
            ``{"kind": "adversarial", "fraction": f}`` adds, for a share ``f`` of the users, the item a
            model trained on the clean graph scores lowest (UnlearnRec); ``None``: the clean training split.
        device: where models are trained.
        progress: a tqdm bar over each training (the Original's, the Retrains', the shards'): on ML-1M the first cell
            trains for hours.
    """

    def __init__(self, source: DataSource, hparams: Hyperparameters, seed: int, attack: dict | None = None,
                 device: str | torch.device = "cpu", progress: bool = False):
        self.hparams, self.seed, self.device = hparams, seed, torch.device(device)
        self.objective, self.config = hparams.objective(seed), hparams.train_config(seed, progress)
        flip = attack is not None and attack["kind"] == "flip"
        self.data = source.prepare(seed, cast(dict, attack)["ratio"] if flip else 0.02)  # flip: an attack given
        split = self.data.split
        # else found at training, misnamed, with Python's advice
        if (flip or hparams.loss == "bce") and not bool((split.train[EDGE].edge_label == 0).any()):
            raise ValueError(_no_negatives(source, flip, hparams.loss))
        self.val = split.val.to(self.device) if split.val[EDGE].edge_index.size(1) else None  # BPR: no validation
        self.test = split.test.to(self.device)
        # never drawn as non-members by the membership attack: interactions too, and the test's
        self.held_out = torch.cat([part[EDGE].edge_index.cpu() for part in (split.val, split.test)], 1)
        self.request: Tensor | None  # the attack's edges
        self.train_graph, self.request = (self.data.train, self.data.request) if flip else (split.train, None)
        self.train_graph = self.train_graph.to(self.device)
        self.source = self.data.source if flip else self.data.source.split("; ")[0]
        self.clean = None  # (model, graph) before the adversarial attack
        if attack is not None and attack["kind"] == "adversarial":
            self.clean = self._train(self.train_graph, "the clean model")[0], self.train_graph
            self.train_graph, self.request = adversarial_edges(self.clean[0], self.train_graph, attack["fraction"],
                                                               seed, held_out=self.held_out)
            self.source += f"; {self.request.size(1)} adversarial edges (fraction {attack['fraction']:g} of the users)"
        self._original: Recommender | None
        self._original, self.original_fit = None, None
        self.references: dict[str, UnlearnResult] = {}
        self._ranking: dict[str, dict] = {}
        self._fitted: dict[str, Unlearner] = {}

    def _train(self, graph, what: str):
        """A model trained on ``graph`` from the run's seeded initialisation, and its training's result; its warnings
        name ``what`` it is."""
        model = self.hparams.build_model(num_users(graph), num_items(graph), self.seed).to(self.device)
        with naming_warnings(f"{what} of seed {self.seed}"):
            fit = train(model, graph, self.objective, self.config, self.val)
        return model.eval(), fit

    def ranking(self, model, graph, key: str | None = None) -> dict:
        """Recall@20 and NDCG@20 on the test set (all-item ranking; kept under ``key`` when given)."""
        if key is not None and key in self._ranking:
            return self._ranking[key]
        figures = recall_ndcg_at_k(model, graph, self.test, k=20)
        if key is not None:
            self._ranking[key] = figures
        return figures

    @property
    def original(self) -> Recommender:
        """The model trained on ``train_graph`` (trained on first use)."""
        if self._original is None:
            self._original, self.original_fit = self._train(self.train_graph, "the Original")
        return self._original

    def reference(self, removed: Tensor) -> UnlearnResult:
        """A Retrain (fresh initialisation, the run's seed) on ``train_graph`` without exactly ``removed``;
        one per distinct removed set."""
        key = request_digest(removed)
        if key not in self.references:
            retrain = build_unlearner("retrain", self.original, self.train_graph, self.objective, train=self.config,
                                      seed=self.seed, val=self.val)
            with naming_warnings(f"the Retrain of seed {self.seed} without {removed.size(1)} removed edges"):
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

    def continue_from(self, method: str, options: dict | None, model: Recommender, graph) -> Unlearner:
        """``method`` built on ``model`` and its ``graph`` (e.g. a previous result, for the next request).

        Raises:
            MethodUnsupported: the method refused the model, the graph or the objective.
        """
        name, options = resolve_method(method, options, self.seed)
        try:
            return build_unlearner(name, model, graph, self.objective, options, train=self.config, seed=self.seed,
                                   val=self.val)
        except ValueError as error:
            raise MethodUnsupported(f"{method}: {error}") from error

    def __repr__(self) -> str:
        return (f"Setting({self.data.dataset!r}, model={self.hparams.model!r}, seed={self.seed}, "
                f"train_edges={self.train_graph[EDGE].edge_index.size(1)})")


@contextlib.contextmanager
def naming_warnings(what: str):
    """The block's warnings, each again with ``what`` it speaks of: in a bench run, where a setting trains its models
    for the first cell that needs them, a training's warning named neither the model nor the seed."""
    with warnings.catch_warnings(record=True) as caught:
        yield
    for warning in caught:
        warnings.warn(f"{what}: {warning.message}", warning.category, stacklevel=3)


class Workspace:
    """Holds the :class:`Setting` of the cells being run: one at a time (cells are ordered by setting), so
    memory stays that of one setting's models."""

    def __init__(self):
        self._key, self._setting = None, None

    def get(self, key: Hashable, make: Callable[[], Setting]) -> Setting:
        """The setting of ``key``, made (and the previous one dropped) when it changes."""
        if key != self._key:
            self._key, self._setting = None, None
            self._setting, self._key = make(), key
        return self._setting

    def __repr__(self) -> str:
        return f"Workspace(setting={self._setting})"
