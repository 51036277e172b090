"""RecEraser: balanced partition from pre-trained embeddings, shard sub-models, attention aggregation."""
from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass
from typing import cast

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from ..clock import Stopwatch
from ..config import check_fields, derived_seed, is_integer, seeded
from ..data.interactions import EDGE, check_pairs_in_range, num_items, num_users
from ..distributed import layout
from ..models.base import Recommender
from ..objectives import Objective
from ..train import train
from .base import check_finite, embeddings_of, redraw
from .registry import register
from .sharding import ShardedRecommender
from .sisa import SISA, SISAConfig

__all__ = ["RecEraser", "RecEraserConfig", "BalancedPartition", "balanced_assign", "balanced_kmeans", "balanced_partition"]

log = logging.getLogger(__name__)

PARTITIONS = ("interaction", "user", "item")


def balanced_assign(dist: Tensor, capacity: int) -> Tensor:
    r"""Greedy capacity-constrained assignment of ``N`` points to ``S`` anchors, vectorised.

    The greedy rule of RecEraser's balanced partition: visit all (point, anchor) pairs in increasing
    distance and put a point in the anchor's group if the point is still free and the group holds
    fewer than ``capacity`` points. Ties are broken by point index, then by anchor index, i.e. the
    pairs are visited in the strict order of ``(distance, point, anchor)``.

    Computed without a loop over pairs, by deferred acceptance in rounds: every free point proposes
    to its nearest anchor not yet tried; each anchor keeps its ``capacity`` nearest proposers (old and
    new) and rejects the rest, who become free again. Because both sides rank pairs by the same
    strict order, there is exactly one stable assignment, and it is the greedy one (a pair taken by
    the greedy rule is never displaced, and one it skips would block), so the result is identical.

    Args:
        dist: ``[N, S]`` distances.
        capacity: the largest group size; needs ``capacity * S >= N``.

    Returns:
        ``[N]`` anchor id of each point.
    """
    n, num_anchors = dist.shape
    if not is_integer(capacity):  # 2.5 gave a group of 3
        raise ValueError(f"capacity must be an integer, got {capacity!r}")
    if capacity < 1 or capacity * num_anchors < n:
        raise ValueError(f"capacity {capacity} x {num_anchors} anchors cannot hold {n} points")
    if not bool(torch.isfinite(dist).all()):
        raise ValueError("distances must be finite")
    device = dist.device
    preference = torch.sort(dist, dim=1, stable=True).indices  # per point: anchors by (distance, anchor id)
    tried = torch.zeros(n, dtype=torch.long, device=device)
    held = torch.full((n,), -1, dtype=torch.long, device=device)
    free = torch.arange(n, device=device)
    while free.numel():
        held[free] = preference[free, tried[free]]
        cand = (held >= 0).nonzero().flatten()  # ascending point ids: stable sorts break ties by id
        anchor = held[cand]
        order = torch.sort(dist[cand, anchor], stable=True).indices
        order = order[torch.sort(anchor[order], stable=True).indices]  # by anchor, then distance, then id
        grouped = anchor[order]
        counts = torch.bincount(grouped, minlength=num_anchors)
        rank = torch.arange(order.numel(), device=device) - (torch.cumsum(counts, 0) - counts)[grouped]
        free = cand[order[rank >= capacity]]
        held[free] = -1
        tried[free] += 1
    return held


def balanced_kmeans(x: Tensor, num_shards: int, iters: int = 10, seed: int = 0,
                    capacity: int | None = None) -> tuple[Tensor, Tensor, int]:
    r"""RecEraser's balanced clustering of the rows of ``x`` into ``num_shards`` groups.

    Anchors start as ``num_shards`` distinct random rows (seeded). Each iteration computes all
    distances :math:`\lVert \mathbf{x}_n - \mathbf{a}_s \rVert` at once (one ``cdist``), assigns with
    :func:`balanced_assign` under ``capacity`` (default :math:`\lceil N/S \rceil`), and moves each anchor
    to the vector mean of its group, :math:`\mathbf{a}_s = \frac{1}{|G_s|}\sum_{n \in G_s} \mathbf{x}_n`
    (an empty group keeps its anchor). It stops after ``iters`` iterations or once the assignment no
    longer changes (the anchors then no longer move either).

    Args:
        x: ``[N, D]`` points.
        num_shards: :math:`S`.
        iters: most iterations (assignment + update steps).
        seed: seed of the anchor choice.
        capacity: the largest group size (default :math:`\lceil N/S \rceil`).

    Returns:
        ``(assignment [N], anchors [S, D], iterations run)``; the anchors are the means of the
        returned groups.
    """
    n = x.size(0)
    for name, value in (("num_shards", num_shards), ("iters", iters)):  # True, 2.5 and "3" failed inside torch
        if not is_integer(value):
            raise ValueError(f"{name} must be an integer, got {value!r}")
    if not 1 <= num_shards <= n:
        raise ValueError(f"need 1 <= num_shards <= {n} (the number of points), got {num_shards}")
    if iters < 1:
        raise ValueError(f"iters must be >= 1, got {iters}")
    capacity = math.ceil(n / num_shards) if capacity is None else capacity
    x = x.detach()
    pick = torch.randperm(n, generator=seeded(seed))[:num_shards].to(x.device)
    anchors, assignment = x[pick].clone(), None
    for it in range(1, iters + 1):
        new = balanced_assign(_distances(x, anchors), capacity)
        counts = torch.bincount(new, minlength=num_shards)
        sums = torch.zeros_like(anchors).index_add_(0, new, x)
        anchors = torch.where(counts[:, None] > 0, sums / counts.clamp(min=1)[:, None].to(x.dtype), anchors)
        if assignment is not None and torch.equal(new, assignment):
            return new, anchors, it
        assignment = new
    return cast(Tensor, assignment), anchors, iters  # iters >= 1: set by the first iteration


def _distances(x: Tensor, anchors: Tensor) -> Tensor:
    """``[N, S]`` distances of the points to the anchors; ``ValueError`` naming the points' size where they are not
    finite (the assignment's own message named neither the points nor a way out)."""
    dist = torch.cdist(x, anchors)
    if not bool(torch.isfinite(dist).all()):
        finite = bool(torch.isfinite(x).all())
        raise ValueError("the balanced clustering's distances between the embeddings are not finite: " + (
            f"their entries reach {float(x.abs().max()):.3g}, beyond what {x.dtype}'s squares hold (the embeddings "
            "are too large)" if finite else "they hold NaN or infinite entries"))
    return dist


@dataclass
class BalancedPartition:
    """The output of :func:`~graphforget.unlearn.balanced_partition`.

    Attributes:
        shard_of: ``[E]`` shard id of each interaction.
        anchors: ``[S, D]`` final anchors (``D = 2d`` for interactions, ``d`` for users/items).
        groups: ``[N]`` shard id of each clustered unit (interaction, user or item).
        iterations: clustering iterations run.
    """
    shard_of: Tensor
    anchors: Tensor
    groups: Tensor
    iterations: int

    def __repr__(self) -> str:
        sizes = torch.bincount(self.shard_of, minlength=self.anchors.size(0)).tolist()
        return (f"BalancedPartition(shard_sizes={sizes}, anchors={list(self.anchors.shape)}, "
                f"iterations={self.iterations})")


def balanced_partition(user_emb: Tensor, item_emb: Tensor, edge_index: Tensor, num_shards: int,
                       partition: str = "interaction", iters: int = 10, seed: int = 0) -> BalancedPartition:
    r"""RecEraser's three balanced partitions (Chen et al., WWW 2022, Sec. 3.2).

    * ``"interaction"`` (InBP): interaction :math:`(u, i)` is the point :math:`[\mathbf{p}_u; \mathbf{q}_i]`;
      ``balanced_kmeans`` over the :math:`E` interactions, capacity :math:`\lceil E/S \rceil`.
    * ``"user"`` (UBP): users clustered by :math:`\mathbf{p}_u`, capacity :math:`\lceil U/S \rceil`;
      each interaction goes to its user's shard.
    * ``"item"`` (IBP): the same with items and :math:`\mathbf{q}_i`.

    Args:
        user_emb: ``[U, d]`` pre-trained user embeddings.
        item_emb: ``[I, d]`` pre-trained item embeddings.
        edge_index: ``[2, E]`` (user, item) interactions.
        num_shards: :math:`S`.
        partition: ``"interaction"``, ``"user"`` or ``"item"``.
        iters: clustering iterations (see ``balanced_kmeans``).
        seed: seed of the anchor choice.

    Raises:
        ValueError: an unknown ``partition``, tables that are not matrices of one width, ``edge_index`` that is not
            ``[2, E]`` integer ids of the tables' rows (a transposed one was partitioned as 2 interactions, user -1
            took the last user's row), or ``num_shards``/``iters`` out of range.
    """
    if partition not in PARTITIONS:
        raise ValueError(f"partition must be one of {PARTITIONS}, got {partition!r}")
    if user_emb.dim() != 2 or item_emb.dim() != 2 or user_emb.size(1) != item_emb.size(1):
        raise ValueError("user_emb [U, d] and item_emb [I, d] must be matrices of the same width")
    _check_floating(user_emb, item_emb, "user_emb and item_emb")
    check_pairs_in_range(edge_index, user_emb.size(0), item_emb.size(0), "edge_index", "E")
    dtype = torch.promote_types(user_emb.dtype, item_emb.dtype)  # a float64 model's, not float32's range
    user_emb, item_emb = user_emb.detach().to(dtype), item_emb.detach().to(dtype)
    edge_index = edge_index.to(user_emb.device).long()  # a uint8 index reads as a mask
    if partition == "interaction":
        points, owner = torch.cat([user_emb[edge_index[0]], item_emb[edge_index[1]]], 1), None
    elif partition == "user":
        points, owner = user_emb, edge_index[0]
    else:
        points, owner = item_emb, edge_index[1]
    groups, anchors, iterations = balanced_kmeans(points, num_shards, iters, seed)
    shard_of = groups if owner is None else groups[owner]
    return BalancedPartition(shard_of, anchors, groups, iterations)


@dataclass
class RecEraserConfig(SISAConfig):
    """Options of :class:`RecEraser`: those of :class:`~graphforget.unlearn.SISAConfig` (with attention
    aggregation by default) and

    Args:
        partition: ``"interaction"`` (InBP), ``"user"`` (UBP) or ``"item"`` (IBP).
        partition_iters: most iterations of the balanced clustering.
        pretrain: pre-train a fresh copy of the model for the partition's embeddings, instead of using
            the given trained model's.
    """
    aggregation: str = "attention"
    partition: str = "interaction"
    partition_iters: int = 10
    pretrain: bool = False

    def __post_init__(self):
        super().__post_init__()
        check_fields(self, {"partition": (self.partition in PARTITIONS, f"one of {', '.join(PARTITIONS)}"),
                            "partition_iters": (self.partition_iters >= 1, "must be >= 1")})


@register
class RecEraser(SISA):
    r"""RecEraser (Chen et al., "Recommendation Unlearning", WWW 2022).

    :meth:`~graphforget.unlearn.Unlearner.fit`: (1) pre-train the model on the whole training graph (or take
    ``pretrained``); (2) partition the interactions into :math:`S` balanced shards of similar interactions / users /
    items from the pre-trained embeddings (:func:`balanced_partition`); (3) train one fresh
    sub-model per shard on its shard graph; (4) train the attention aggregator
    (:class:`~graphforget.unlearn.sharding.ShardAttention`) on the full training graph with the shard
    models frozen. :meth:`~graphforget.unlearn.Unlearner.unlearn` retrains the shards holding requested edges on their
    remaining edges, then retrains the aggregator on the remaining graph.

    Choices (where the paper leaves room):

    * Pre-trained embeddings are the pre-trained model's final ``embed(graph)`` on the whole
      training graph (for LightGCN the propagated ones), trained with ``config`` and ``val``.
    * Distances are Euclidean on the concatenation :math:`[\mathbf{p}_u; \mathbf{q}_i]` (InBP);
      anchors are updated to the vector mean of their group; ``partition_iters`` (default 10)
      iterations at most, stopping early once the assignment is stable; ties broken by index
      (see ``balanced_assign``).
    * The attention uses ``tanh`` and a per-shard transfer starting at the identity (see
      :class:`ShardAttention`); it is trained with the same ``objective`` (and its L2) for
      ``aggregator_train`` (default ``train``) epochs, early-stopping on ``val``.
    * As in the paper, the partition itself is computed from embeddings trained on all the data,
      requested edges included, and is not recomputed on unlearning: only the shard models and the
      aggregator are retrained.

    ``model`` is the sub-model template (copied, never modified), or a fitted
    :class:`~graphforget.unlearn.sharding.ShardedRecommender`. The partition's embeddings are, in order of
    precedence: the keyword argument ``pretrained`` (a ``(user [U, d], item [I, d])`` pair or a trained
    :class:`~graphforget.models.Recommender`); a copy of ``model`` pre-trained here when
    ``config.pretrain``; else ``model`` itself, which in the lifecycle is the model trained on all the data (a fitted
    ensemble given as ``model``: its own aggregated embeddings).
    ``pretrained`` of other node counts than the graph's, of another type (integer tables too), or holding a NaN or an
    infinity is refused at construction, and so is a user (item) partition into more shards than there are users
    (items); embeddings that turn out non-finite in :meth:`~graphforget.unlearn.Unlearner.fit` are refused there, naming
    where they came from. ``fit_info`` adds to SISA's the seconds of the pre-training (``pretrain_seconds``, with
    ``config.pretrain``), of the partition's embeddings without it (``embedding_seconds``) and of the clustering
    (``partition_seconds``).
    """
    name = "receraser"
    needs_one_dtype = True
    Config = RecEraserConfig

    def __init__(self, model, graph: HeteroData, objective: Objective, config=None, *, val: HeteroData | None = None,
                 pretrained: Recommender | tuple[Tensor, Tensor] | None = None):
        super().__init__(model, graph, objective, config, val=val)
        if self.ensemble is None:  # a fitted ensemble keeps its partition
            self._check_partition_units()
        self._check_pretrained(pretrained)
        self.pretrained = pretrained
        self.given_model = model  # "model itself" for the partition: a fitted ensemble, not its first shard
        self.pretrained_model: Recommender | None = None
        self.balanced: BalancedPartition | None = None

    def _fit_inputs(self) -> dict:
        """SISA's, with the model whole where its embeddings give the partition, and ``pretrained``."""
        from_model = self.pretrained is None and not self.config.pretrain
        return {**super()._fit_inputs(), "model": self.given_model if from_model else layout(self.template),
                "pretrained": self.pretrained}

    def _check_partition_units(self) -> None:
        """Raises ``ValueError`` when a user (item) partition asks for more shards than there are users (items) to
        cluster: here, not in fit() after any pre-training (the edge count is checked by SISA)."""
        partition = self.config.partition
        if partition == "interaction":
            return
        units = num_users(self.graph) if partition == "user" else num_items(self.graph)
        if self.num_shards > units:
            raise ValueError(f"{type(self.config).__name__}.num_shards: the {partition} partition clusters the "
                             f"{units} {partition}s: need num_shards <= {units}, got {self.num_shards}")

    def _check_pretrained(self, pretrained) -> None:
        """Raises ``ValueError`` (``TypeError``) for ``pretrained`` embeddings or a model that do not fit the graph
        (that are of another type), or hold a NaN or an infinity: a model with a user more would be clustered with a
        phantom user, a NaN failed only in fit(), inside the clustering."""
        graph, method = self.graph, type(self).__name__
        users, items = num_users(graph), num_items(graph)
        if pretrained is None:
            return
        if isinstance(pretrained, Recommender):
            if (pretrained.num_users, pretrained.num_items) != (users, items):
                raise ValueError(f"{method}: pretrained has {pretrained.num_users} users and {pretrained.num_items} "
                                 f"items, the graph {users} and {items}")
            try:
                check_finite(pretrained)
            except ValueError as error:
                raise ValueError(f"{method}: pretrained: {error}") from None
        elif isinstance(pretrained, (tuple, list)) and len(pretrained) == 2:
            user, item = (torch.as_tensor(t) for t in pretrained)
            shapes_ok = user.dim() == 2 and item.dim() == 2 and user.size(1) == item.size(1)
            if not shapes_ok or user.size(0) != users or item.size(0) != items:
                raise ValueError(f"{method}: pretrained embeddings must be [{users}, d] and [{items}, d], got "
                                 f"{list(user.shape)} and {list(item.shape)}")
            _check_floating(user, item, f"{method}: pretrained embeddings")
            _check_finite_embeddings(user, item, f"{method}: pretrained embeddings")
        else:
            raise TypeError(f"{method}: pretrained must be a trained Recommender, a (user, item) pair of embeddings "
                            f"or None, got a {type(pretrained).__name__}")

    def pretrained_embeddings(self) -> tuple[Tensor, Tensor]:
        """User ``[U, d]`` and item ``[I, d]`` embeddings the partition is computed from (pre-trains if needed)."""
        graph = self.graph
        device = graph[EDGE].edge_index.device
        if isinstance(self.pretrained, (tuple, list)):
            self._check_pretrained(self.pretrained)  # again: the attribute may have been set since construction
            return cast("tuple[Tensor, Tensor]",  # checked: a user and an item table
                        tuple(torch.as_tensor(t).detach().to(device) for t in self.pretrained))
        model = self.pretrained if self.pretrained is not None else self.given_model
        if self.pretrained is None and self.config.pretrain:
            model = copy.deepcopy(self.template)
            redraw(model, self.config.seed, "RecEraser's pre-training")
            result = train(model, graph, self.objective, self.config.train, self.val)
            self.pretrained_model = model
            self.fit_info.update(pretrain_seconds=result.seconds, pretrain_epochs=result.epochs)
        user, item = _partition_embeddings(model, graph)
        source = ("pretrained" if self.pretrained is not None else
                  "the pre-trained copy (config.pretrain)" if self.config.pretrain else "the model")
        _check_finite_embeddings(user, item, f"{type(self).__name__}: the embeddings of {source}")
        return user, item

    def partition(self) -> Tensor:
        """``[E]`` shard id of each edge of ``self.graph`` by the balanced partition; its anchors are drawn with
        ``derived_seed(config.seed, "partition")`` (drawn with the seed itself, they were the first edges of a
        request drawn with that seed)."""
        device = self.graph[EDGE].edge_index.device
        with Stopwatch(device) as embedding:
            user, item = self.pretrained_embeddings()
        with Stopwatch(device) as clustering:
            self.balanced = balanced_partition(user, item, self.graph[EDGE].edge_index, self.num_shards,
                                               self.config.partition, self.config.partition_iters,
                                               derived_seed(self.config.seed, "partition"))
        # the pre-training has its own entry: counted here too, the parts added up to more than the whole
        embedding_seconds = max(0.0, embedding.seconds - self.fit_info.get("pretrain_seconds", 0.0))
        self.fit_info.update(partition_seconds=clustering.seconds, embedding_seconds=embedding_seconds,
                             partition_iterations=self.balanced.iterations)
        log.info("%s partition in %d iterations: %s", self.config.partition, self.balanced.iterations, self.balanced)
        return self.balanced.shard_of


def _partition_embeddings(model: Recommender, graph: HeteroData) -> tuple[Tensor, Tensor]:
    """:func:`~graphforget.unlearn.base.embeddings_of` ``model``; a ``ValueError`` for a fitted ensemble that has none
    (mean aggregation over shards that do not score by a dot product)."""
    try:
        return embeddings_of(model, graph)
    except NotImplementedError as error:
        if not isinstance(model, ShardedRecommender):
            raise
        raise ValueError(f"RecEraser: the fitted ensemble has no embeddings to partition by ({error}): pass "
                         "pretrained= (the model trained on all the data) or set pretrain=True") from None


def _check_floating(user: Tensor, item: Tensor, what: str) -> None:
    """Raises ``ValueError`` (``what`` starts the message) for embeddings that are not floating point: integer ones
    failed inside the clustering's ``cdist``, naming neither."""
    if not (user.is_floating_point() and item.is_floating_point()):
        raise ValueError(f"{what} must be floating-point tables, got {user.dtype} and {item.dtype}")


def _check_finite_embeddings(user: Tensor, item: Tensor, what: str) -> None:
    """Raises ``ValueError`` (``what`` starts the message) when the partition's embeddings hold a NaN or an infinity:
    their distances, and so the clustering, would be undefined."""
    if not (bool(torch.isfinite(user).all()) and bool(torch.isfinite(item).all())):
        raise ValueError(f"{what} hold a NaN or an infinity: the partition's distances would be undefined")
