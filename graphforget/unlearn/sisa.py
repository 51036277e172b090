"""SISA: sharded, isolated training; unlearning retrains only the shards that held the request."""
from __future__ import annotations

import copy
import logging
import time

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from ..data.interactions import EDGE
from ..objectives import Objective
from ..train import TrainConfig
from .base import Unlearner, UnlearnResult, _sync
from .sharding import ShardAttention, ShardedRecommender, split_graph, train_aggregator, train_shards

__all__ = ["SISA", "random_partition"]

log = logging.getLogger(__name__)


def random_partition(num_edges: int, num_shards: int, seed: int = 0) -> Tensor:
    """A seeded random balanced partition: ``[E]`` shard ids, shard sizes differing by at most one."""
    if num_shards < 1 or num_edges < num_shards:
        raise ValueError(f"need 1 <= num_shards <= num_edges, got {num_shards} shards for {num_edges} edges")
    perm = torch.randperm(num_edges, generator=torch.Generator().manual_seed(seed))
    shard_of = torch.empty(num_edges, dtype=torch.long)
    shard_of[perm] = torch.arange(num_edges) % num_shards
    return shard_of


class SISA(Unlearner):
    r"""SISA (Bourtoule et al., "Machine Unlearning", IEEE S&P 2021) for recommenders.

    :meth:`fit` splits the training edges :math:`D` at random into :math:`S` disjoint shards
    :math:`D_1, \dots, D_S` and trains one fresh sub-model per shard (``model.reset_parameters(seed + s)``)
    on its shard graph alone, with the objective's summed L2 scaled by :math:`1/S`; the ensemble averages the shard logits,
    :math:`\hat y_{ui} = \frac1S \sum_s f_{\theta_s}(u, i; D_s)` (or aggregates with attention).
    Unlearning :math:`D_r` retrains, from the same initialisation, only the shards
    :math:`\{s : D_s \cap D_r \neq \emptyset\}` on :math:`D_s \setminus D_r`, so the result is the
    ensemble that :meth:`fit` would have produced on :math:`D \setminus D_r` with the same assignment.
    Untouched shards keep their parameters bit for bit. (The slicing of shards into checkpointed
    slices in the SISA paper is not implemented: shards are retrained whole.)

    Usage: ``sisa = SISA(model, graph, objective, config); ensemble, seconds = sisa.fit();
    result = sisa.unlearn(request)``. A fitted :class:`ShardedRecommender` may be passed as ``model``
    instead (e.g. ``result.model`` with ``result.graph``, to serve a further request).

    Args:
        model: the sub-model template (copied, never modified), or a fitted :class:`ShardedRecommender`.
        graph: the training interactions.
        objective: the training loss.
        config: training hyper-parameters of each shard.
        num_shards: :math:`S`.
        seed: seeds the partition, the shard initialisations (``seed + s``) and the attention.
        retrain_all: retrain every shard on each request (as the IFRU authors' benchmark code does).
        aggregation: ``"mean"`` or ``"attention"`` (see :class:`ShardAttention`).
        workers: worker processes training shards in parallel (1: sequentially in this process).
        val: validation pairs for early stopping (of each shard and of the attention).
        aggregator_config: training hyper-parameters of the attention (default: ``config``).
        attention: keyword arguments of :class:`ShardAttention` (``attention_dim``, ``activation``, ``transform``).
    """
    name = "sisa"

    def __init__(self, model, graph: HeteroData, objective: Objective, config: TrainConfig | None = None,
                 num_shards: int = 10, seed: int = 0, retrain_all: bool = False, aggregation: str = "mean",
                 workers: int = 1, val: HeteroData | None = None, aggregator_config: TrainConfig | None = None,
                 attention: dict | None = None):
        if aggregation not in ("mean", "attention"):
            raise ValueError(f"aggregation must be 'mean' or 'attention', got {aggregation!r}")
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        num_edges = graph[EDGE].edge_index.size(1)
        if isinstance(model, ShardedRecommender):
            model.assignment_of(graph[EDGE].edge_index)  # raises unless every edge has a shard
            template, ensemble, num_shards = model.shards[0], model, model.num_shards
            aggregation = model.aggregation
        else:
            template, ensemble = model, None
        if not 1 <= num_shards <= num_edges:
            raise ValueError(f"need 1 <= num_shards <= {num_edges} (the number of edges), got {num_shards}")
        super().__init__(ensemble, graph, objective)
        self.template, self.ensemble = template, ensemble
        self.config, self.num_shards, self.seed = config or TrainConfig(), num_shards, seed
        self.retrain_all, self.aggregation, self.workers, self.val = retrain_all, aggregation, workers, val
        self.aggregator_config = aggregator_config
        self.attention_kwargs = dict(attention or {})
        # The summed L2 is per dataset: a shard holding 1/S of the edges gets 1/S of it, so that each
        # interaction is regularised as in the full model (an unscaled L2 flattens the small shards).
        self.shard_objective = copy.copy(objective)
        self.shard_objective.l2 = objective.l2 / num_shards
        self.fit_info: dict = {}

    # --- partition and fit ----------------------------------------------------------------------

    def partition(self) -> Tensor:
        """``[E]`` shard id of each edge of ``self.graph``: random and balanced (seeded)."""
        return random_partition(self.graph[EDGE].edge_index.size(1), self.num_shards, self.seed)

    def fit(self) -> tuple[ShardedRecommender, float]:
        """Partitions, trains the shards (and the attention); returns the ensemble and the seconds taken."""
        start = time.perf_counter()
        self.fit_info = {}
        shard_of = self.partition().to(self.graph[EDGE].edge_index.device)
        sizes = torch.bincount(shard_of, minlength=self.num_shards)
        if bool((sizes == 0).any()):
            raise ValueError(f"empty shards {(sizes == 0).nonzero().flatten().tolist()}: use fewer shards")
        edge_index = self.graph[EDGE].edge_index
        graphs = split_graph(self.graph, shard_of, self.num_shards)
        trained = train_shards([self.template] * self.num_shards, graphs, self.shard_objective, self.config, self.val,
                               [self.seed + s for s in range(self.num_shards)], self.workers)
        ensemble = ShardedRecommender([model for model, _ in trained], shard_of, edge_index, self._aggregation())
        info = {"shard_sizes": sizes.tolist(), "shard_epochs": [r.epochs for _, r in trained],
                "shard_seconds": [r.seconds for _, r in trained]}
        if ensemble.attention is not None:
            result = train_aggregator(ensemble, self.graph, self.objective, self.aggregator_config or self.config,
                                      self.val, self.seed)
            info["aggregator_epochs"], info["aggregator_seconds"] = result.epochs, result.seconds
        _sync(edge_index.device)
        seconds = time.perf_counter() - start
        self.ensemble = self.model = ensemble
        self.fit_info.update(info, seconds=seconds)
        log.info("%s fit %d shards in %.1fs", self.name, self.num_shards, seconds)
        return ensemble, seconds

    def _aggregation(self) -> str | ShardAttention:
        if self.aggregation == "mean":
            return "mean"
        return ShardAttention(self.num_shards, self.template.embedding_dim, seed=self.seed, **self.attention_kwargs)

    # --- unlearning -----------------------------------------------------------------------------

    def unlearn(self, request: Tensor) -> UnlearnResult:
        """Forgets the ``[2, R]`` (user, item) edges of ``request`` (after :meth:`fit`)."""
        if self.ensemble is None:
            raise RuntimeError(f"{type(self).__name__}.unlearn() needs a fitted ensemble: call fit() first "
                               "(or pass a fitted ShardedRecommender as the model)")
        return super().unlearn(request)

    def _unlearn(self, request, positions, remaining):
        old = self.ensemble
        held = old.assignment_of(request)
        touched = list(range(old.num_shards)) if self.retrain_all else sorted(held.unique().tolist())
        ensemble = copy.deepcopy(old)  # untouched shards stay bit-identical; the old ensemble is not mutated
        ensemble._without_pairs(request)
        graphs = ensemble.shard_graphs(remaining)
        trained = train_shards([old.shards[s] for s in touched], [graphs[s] for s in touched], self.shard_objective,
                               self.config, self.val, [self.seed + s for s in touched], self.workers)
        for s, (model, _) in enumerate(trained):
            ensemble.shards[touched[s]] = model
        info = {"retrained_shards": touched, "num_retrained": len(touched),
                "request_per_shard": torch.bincount(held, minlength=old.num_shards).tolist(),
                "shard_epochs": [r.epochs for _, r in trained], "shard_seconds": [r.seconds for _, r in trained]}
        if ensemble.attention is not None:
            result = train_aggregator(ensemble, remaining, self.objective, self.aggregator_config or self.config,
                                      self.val, self.seed)
            info["aggregator_epochs"], info["aggregator_seconds"] = result.epochs, result.seconds
        return ensemble, info

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(model={type(self.template).__name__}, num_shards={self.num_shards}, "
                f"aggregation={self.aggregation!r}, retrain_all={self.retrain_all}, workers={self.workers}, "
                f"fitted={self.ensemble is not None}, objective={self.objective})")
