r"""UnlearnRec: a pre-trained Influence Encoder maps an unlearning request to embedding updates.

Chen, Xia, Huang, "Pre-training for Recommendation Unlearning", SIGIR 2025. For a request
:math:`D_r` (user-item edges) and a trained backbone with layer-0 embeddings :math:`\mathbf{E}^{(0)}`
and final embeddings :math:`\mathbf{E}`:

.. math::
    \bar{\mathbf{A}}_r = \mathbf{D}_r^{-1/2} \mathbf{A}_r \mathbf{D}_r^{-1/2}, \qquad
    \Delta\mathbf{E} = \sum_{l=0}^{L} \bar{\mathbf{A}}_r^{\,l} \mathbf{H}^{(0)}
        - \alpha \sum_{l=0}^{L} \bar{\mathbf{A}}_r^{\,l} (\boldsymbol{\eta} \odot \mathbf{E}), \qquad
    \mathbf{E}^{(0)\prime} = \mathbf{E}^{(0)} + \mathrm{MLP}(\Delta\mathbf{E}),

and the backbone then runs with :math:`\mathbf{E}^{(0)\prime}` on the remaining graph
:math:`D \setminus D_r`. :math:`\mathbf{A}_r` is the symmetric adjacency of the request edges alone and
:math:`\mathbf{D}_r` its degrees (rows of nodes outside the request are zero). :math:`\mathbf{H}^{(0)}`
and the per-node withdraw rates :math:`\boldsymbol{\eta}` are pre-trained once per trained model on
simulated requests with the backbone frozen, minimising

.. math::
    \mathcal{L} = \mathcal{L}_{model}(D \setminus D_r) + \lambda_u \mathcal{L}_u + \lambda_p \mathcal{L}_p
                + \lambda_c \mathcal{L}_c , \qquad
    \mathcal{L}_u = -\frac{1}{|D_r^+|}\sum_{(u,i) \in D_r^+} \log\sigma(-\hat y'_{ui}),

    \mathcal{L}_p = \frac{1}{|B|}\sum_{(u,i) \in B} \Big(\log\frac{\exp(\hat y'_{ui}/\tau)}{\sum_{j \in B}\exp(\hat y'_{uj}/\tau)}
                  - \log\frac{\exp(\hat y_{ui}/\tau)}{\sum_{j \in B}\exp(\hat y_{uj}/\tau)}\Big)^2 ,

with :math:`\hat y'` the unlearned and :math:`\hat y` the original model's scores, :math:`D_r^+` the request's
interactions (edges labelled above 0: all of it on implicit data; a removed dislike already scores low, and
:math:`\mathcal{L}_u` on it fitted it further), :math:`B` the interactions of a batch of remaining edges, and
:math:`\mathcal{L}_c` InfoNCE between :math:`\Delta\mathbf{E}` and its value on an edge-dropped
:math:`\bar{\mathbf{A}}_r`. A real request is answered
by applying the encoder, then fine-tuning the MLP and a copy of :math:`\mathbf{E}^{(0)}` for a few epochs on
:math:`\mathcal{L}_{model} + \lambda_u \mathcal{L}_u + \lambda_p \mathcal{L}_p`.
"""
from __future__ import annotations

import copy
import functools
import logging
import math
from dataclasses import asdict, dataclass
from typing import Callable, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import skip_init
from torch.nn.utils import parametrize
from torch_geometric.data import HeteroData
from torch_geometric.utils import to_torch_csr_tensor
from tqdm.auto import tqdm

from ..data.adjacency import quiet_csr
from ..data.interactions import EDGE, bipartite_to_homogeneous, check_ids_in_range, check_pair_tensor, \
    check_pairs_in_range, check_unique_pairs, num_items, num_users, pair_keys, symmetric_edge_weight, without_edges
from ..clock import Stopwatch
from ..config import (check_fields, check_types, gradients_on, is_integer, is_real, lr_rule, uniform,
                      wrapped_seed)
from ..influence.hvp import sparse_embeddings
from ..io import atomic_write, load_failure, tensors_sha256, unchanged, versions
from ..models.base import Recommender, running_statistics, table_mask
from ..models.propagation import layer_sum
from ..models.sgl import info_nce
from ..objectives import Objective
from ..train import seeded_global_rng
from ..verify import _scoring
from .base import (NotFittedError, NoValidationWarning, Unlearner, UnlearningFailed, UntrustedWarning,
                   dot_product_gap, embeddings_of, non_finite, refuse_no_remaining_edge, warn_caller)
from .registry import register

__all__ = ["UnlearnRec", "UnlearnRecConfig", "InfluenceEncoder", "influence_dependency_matrix"]

log = logging.getLogger(__name__)


#: The options of :class:`UnlearnRecConfig` that a loaded encoder need not share with the unlearner: those that only
#: answering a request reads, and the seed (of its batches; pre-training's simulated requests are done). The others
#: shape pre-training.
ENCODER_FREE_OPTIONS = ("finetune_epochs", "finetune_lr", "max_loss_increase", "max_val_auc_drop", "seed", "progress")

#: The options of :class:`UnlearnRecConfig` the encoder is built from, at construction. An edit of one on
#: ``unlearner.config`` afterwards is refused by name (:meth:`UnlearnRec._check_built_from`): the encoder ran the old
#: value while :meth:`UnlearnRec.save_encoder` recorded the new one.
ENCODER_BUILD_OPTIONS = ("alpha", "withdraw_init", "leaky_slope", "restrict_to_request", "encoder_layers")


@dataclass
class UnlearnRecConfig:
    """Hyper-parameters of UnlearnRec (defaults: the paper's).

    Args:
        l_u: weight :math:`\\lambda_u` of the unlearning loss.
        l_p: weight :math:`\\lambda_p` of the preservation loss.
        l_c: weight :math:`\\lambda_c` of the contrastive loss.
        tau: temperature of the preservation loss' in-batch softmax.
        lr: Adam learning rate of pre-training (:math:`\\mathbf{H}^{(0)}`, :math:`\\boldsymbol\\eta`).
        alpha: weight :math:`\\alpha` of the withdraw term.
        withdraw_init: initial withdraw rate of every node.
        leaky_slope: negative slope of the MLP's LeakyReLU.
        encoder_layers: :math:`L`; ``None`` takes the backbone's receptive field.
        request_ratio: ``(low, high)`` share of the positive training edges (those labelled above 0, and observed
            where the graph marks it) in a simulated request, drawn uniformly.
        pretrain_epochs: passes over the remaining edges during pre-training (0: leave the encoder at
            its initialisation).
        resample_every: epochs between two simulated requests.
        finetune_epochs: passes over the remaining edges when answering a request (0: encoder only).
        finetune_lr: Adam learning rate of the fine-tuning (``None``: ``lr``).
        batch_size: remaining edges per step (0: all); requested edges per step are at most as many.
        preserve_pairs: interactions of a batch entering :math:`\\mathcal{L}_p`, its first ones labelled above 0
            (a BCE graph's non-interactions do not enter; its softmax is over these pairs' items; caps the ``[P, P]``
            score matrix).
        contrastive_tau: InfoNCE temperature of :math:`\\mathcal{L}_c`.
        contrastive_drop: edge-dropout probability of the view in :math:`\\mathcal{L}_c`.
        contrastive_nodes: request nodes sampled for :math:`\\mathcal{L}_c` per step.
        restrict_to_request: zero :math:`\\Delta\\mathbf{E}` outside the request's nodes (see
            :class:`InfluenceEncoder`), and the fine-tuned MLP's update there (its biases would move every row).
        max_loss_increase: the acceptance test: the unlearned model's mean loss on the remaining training
            edges (the objective's per-edge losses, the same negatives for both models) may exceed the
            trained model's by at most this share; beyond it the result is returned with
            ``info["trusted"] = False``, the reason and a warning (``None``: no test).
        max_val_auc_drop: the acceptance test on validation data, when the unlearner was given ``val``: the
            unlearned model's validation AUC may fall below the trained model's by at most this many standard
            errors (Hanley and McNeil; the larger of the two AUCs'); beyond it, as for ``max_loss_increase``
            (``None``: no test). Only the validation pairs whose user and item keep a training edge are scored:
            a Retrain knows nothing of a user whose every interaction the request removes.
        seed: seeds simulated requests, batch orders and dropout.
        progress: a bar of pre-training's epochs (set from the run's ``TrainConfig.progress`` by
            :func:`~graphforget.unlearn.method_config`: the command line's, unless ``--quiet``).

    An option that no epoch reads is refused when set to other than its default: ``request_ratio`` and
    ``resample_every`` without pre-training epochs, ``finetune_lr`` without fine-tuning ones, ``lr`` where neither
    reads it, and the losses' options with neither.
    """
    l_u: float = 0.5
    l_p: float = 0.02
    tau: float = 10.0
    l_c: float = 1e-3
    lr: float = 1e-3
    alpha: float = 0.1
    withdraw_init: float = 0.002
    leaky_slope: float = 0.99
    encoder_layers: int | None = None
    request_ratio: tuple[float, float] = (0.03, 0.30)
    pretrain_epochs: int = 10
    resample_every: int = 2
    finetune_epochs: int = 2
    finetune_lr: float | None = None
    batch_size: int = 4096
    preserve_pairs: int = 1024
    contrastive_tau: float = 0.2
    contrastive_drop: float = 0.1
    contrastive_nodes: int = 1024
    restrict_to_request: bool = True
    max_loss_increase: float | None = 0.2
    max_val_auc_drop: float | None = 3.0
    seed: int = 0
    progress: bool = False

    def __post_init__(self):
        check_types(self)
        low, high = self.request_ratio
        rules = {name: (getattr(self, name) >= 0, "must be >= 0")
                 for name in ("l_u", "l_p", "l_c", "alpha", "pretrain_epochs", "finetune_epochs", "batch_size",
                              "leaky_slope", "withdraw_init")}
        rules.update({name: (getattr(self, name) > 0, "must be > 0") for name in ("tau", "contrastive_tau")})
        rules.update({name: (getattr(self, name) >= 1, "must be >= 1")
                      for name in ("resample_every", "preserve_pairs", "contrastive_nodes")})
        rules.update({
            "lr": lr_rule(self.lr),
            "finetune_lr": lr_rule(self.finetune_lr, optional=True),
            "max_loss_increase": (self.max_loss_increase is None or self.max_loss_increase > 0, "None or > 0"),
            "max_val_auc_drop": (self.max_val_auc_drop is None or self.max_val_auc_drop > 0, "None or > 0"),
            "request_ratio": (0 < low <= high < 1, "(low, high) with 0 < low <= high < 1"),
            "contrastive_drop": (0 <= self.contrastive_drop < 1, "must be in [0, 1)"),
            "encoder_layers": (self.encoder_layers is None or self.encoder_layers >= 0, "None or >= 0"),
        })
        check_fields(self, rules)
        check_fields(self, self._unread_rules())  # else recorded with the run, and never read

    def _unread_rules(self) -> dict:
        """The options that no epoch reads when its count is 0, refused when set to other than their default:
        pre-training's own (the simulated requests), fine-tuning's rate, and the losses' (both read them)."""
        default, pretrains, finetunes = UnlearnRecConfig, self.pretrain_epochs > 0, self.finetune_epochs > 0
        rules = {name: (pretrains or getattr(self, name) == getattr(default, name),
                        "read only with pretrain_epochs > 0") for name in ("request_ratio", "resample_every")}
        rules["finetune_lr"] = (finetunes or self.finetune_lr is None, "read only with finetune_epochs > 0")
        rules["lr"] = (pretrains or (finetunes and self.finetune_lr is None) or self.lr == default.lr,
                       "read only with pretrain_epochs > 0, or finetune_epochs > 0 and no finetune_lr")
        rules.update({name: (pretrains or finetunes or getattr(self, name) == getattr(default, name),
                             "read only with pretrain_epochs > 0 or finetune_epochs > 0")
                      for name in ("l_u", "l_p", "l_c", "tau", "batch_size", "preserve_pairs", "contrastive_tau",
                                   "contrastive_drop", "contrastive_nodes")})
        return rules


def influence_dependency_matrix(request: Tensor, num_users: int, num_items: int) -> tuple[Tensor, Tensor]:
    r"""The Influence Dependency Matrix :math:`\mathbf{D}_r^{-1/2}\mathbf{A}_r\mathbf{D}_r^{-1/2}` in COO form.

    :math:`\mathbf{A}_r` is the ``[N, N]`` (``N = U + I``, users first) symmetric adjacency of the request
    edges alone, :math:`\mathbf{D}_r` its degree matrix; nodes without a request edge get zero rows.

    Args:
        request: ``[2, R]`` (user, item) edges, without duplicates.
        num_users, num_items: node counts.

    Returns:
        ``(edge_index [2, 2R], edge_weight [2R])`` over the homogeneous node ids.

    Raises:
        ValueError: ``request`` is not a ``[2, R]`` integer tensor, holds an unknown id or a pair twice (counted twice
            in the degrees and the matrix, it would weigh the request's edges wrong).
    """
    if not isinstance(request, Tensor):  # a nested list or a tuple failed with AttributeError ('list' has no 'dim')
        raise ValueError(f"request must be a [2, R] integer tensor, got a {type(request).__name__}")
    check_pairs_in_range(request, num_users, num_items, "request", "R")
    request = request.long()  # uint8 ids overflowed the pair keys, and torch's scatter takes int64 alone
    check_unique_pairs(request, num_items, "request", "ask for each pair once")
    weight = symmetric_edge_weight(request, num_users, num_items)
    return bipartite_to_homogeneous(request, num_users), torch.cat([weight, weight])


def _identity_linear(dim: int) -> nn.Linear:
    layer = skip_init(nn.Linear, dim, dim)  # no draw from the caller's global random state: set just below
    with torch.no_grad():
        layer.weight.copy_(torch.eye(dim))
        layer.bias.zero_()
    return layer


class InfluenceEncoder(nn.Module):
    r"""The Influence Encoder: request -> update of the layer-0 embeddings.

    .. math::
        \Delta\mathbf{E} = \mathbf{M}_r \Big( \sum_{l=0}^{L} \bar{\mathbf{A}}_r^{\,l} \mathbf{H}^{(0)}
            - \alpha \sum_{l=0}^{L} \bar{\mathbf{A}}_r^{\,l} (\boldsymbol{\eta} \odot \mathbf{E}) \Big), \qquad
        \text{update} = \mathbf{W}_2\, \mathrm{LeakyReLU}(\mathbf{W}_1 \Delta\mathbf{E} + \mathbf{b}_1) + \mathbf{b}_2,

    :math:`\mathbf{H}^{(0)}` ``[N, d]`` starts at zero, :math:`\boldsymbol\eta` ``[N, 1]`` at
    ``withdraw_init``, the MLP at the identity weights and zero biases (so ``update`` is
    ``LeakyReLU(dE)``). :math:`\mathbf{M}_r` is the diagonal indicator of the request's nodes when
    ``restrict_to_request`` (our reading: layer 0 of the sum would otherwise shift every node by its
    :math:`\mathbf{H}^{(0)}` row, whatever the request), else the identity; with it, :class:`UnlearnRec` also zeroes
    the update outside the request's nodes once it fine-tunes the MLP, whose biases would move every row.

    Args:
        num_users, num_items, embedding_dim: sizes (nodes ``N = U + I``, users first).
        num_layers: :math:`L`.
        alpha, withdraw_init, leaky_slope, restrict_to_request: see :class:`UnlearnRecConfig`.
    """

    def __init__(self, num_users: int, num_items: int, embedding_dim: int, num_layers: int, alpha: float = 0.1,
                 withdraw_init: float = 0.002, leaky_slope: float = 0.99, restrict_to_request: bool = True):
        super().__init__()
        _check_encoder_arguments(dict(num_users=num_users, num_items=num_items, embedding_dim=embedding_dim,
                                      num_layers=num_layers, alpha=alpha, withdraw_init=withdraw_init,
                                      leaky_slope=leaky_slope, restrict_to_request=restrict_to_request))
        self.num_users, self.num_items, self.num_layers = num_users, num_items, num_layers
        self.alpha, self.restrict_to_request = alpha, restrict_to_request
        num_nodes = num_users + num_items
        self.h0 = nn.Parameter(torch.zeros(num_nodes, embedding_dim))
        self.withdraw = nn.Parameter(torch.full((num_nodes, 1), float(withdraw_init)))
        self.mlp = nn.Sequential(_identity_linear(embedding_dim), nn.LeakyReLU(leaky_slope),
                                 _identity_linear(embedding_dim))

    def influence(self, final: Tensor, edge_index: Tensor, edge_weight: Tensor, node_mask: Tensor | None) -> Tensor:
        r""":math:`\Delta\mathbf{E}` ``[N, d]`` from the backbone's final embeddings ``final [N, d]`` and the
        dependency matrix ``(edge_index, edge_weight)`` (see :func:`influence_dependency_matrix`);
        ``node_mask [N]`` marks the request's nodes."""
        num_nodes = self.num_users + self.num_items
        check_pair_tensor(edge_index, "InfluenceEncoder: edge_index")  # out of range, torch's CSR build crashed
        for row in edge_index:  # named by column
            check_ids_in_range(row, num_nodes, "InfluenceEncoder: edge_index holds node")
        if tuple(edge_weight.shape) != (edge_index.size(1),):
            raise ValueError(f"InfluenceEncoder: edge_weight must have shape [{edge_index.size(1)}] (one per edge of "
                             f"edge_index), got {list(edge_weight.shape)}")
        adjacency = None
        if self.num_layers:
            size = (final.size(0), final.size(0))
            with quiet_csr():
                adjacency = to_torch_csr_tensor(edge_index.to(final.device), edge_weight.to(final), size=size)
        return self.propagate(final, adjacency, node_mask)

    def propagate(self, final: Tensor, adjacency: Tensor | None, node_mask: Tensor | None) -> Tensor:
        """:meth:`influence` over the dependency matrix already built as a CSR tensor ``[N, N]`` (``None`` for
        :math:`L = 0`, where it is not read)."""
        if tuple(final.shape) != tuple(self.h0.shape):  # an [N, 1] input was broadcast
            raise ValueError(f"InfluenceEncoder: final must have shape [N, d] = {list(self.h0.shape)}, got "
                             f"{list(final.shape)}")
        if node_mask is not None and tuple(node_mask.shape) != (self.h0.size(0),):
            raise ValueError(f"InfluenceEncoder: node_mask must have shape [N] = [{self.h0.size(0)}], got "
                             f"{list(node_mask.shape)}")
        x = self.h0 - self.alpha * (self.withdraw * final)
        # The dependency matrix is symmetric: LightGCN's propagation engine (one sparse product a layer).
        delta = layer_sum(cast(Tensor, adjacency), x, self.num_layers)  # None only for L = 0: not read
        if self.restrict_to_request and node_mask is not None:
            delta = delta * node_mask[:, None].to(delta.dtype)
        return delta

    def forward(self, final: Tensor, edge_index: Tensor, edge_weight: Tensor, node_mask: Tensor | None) -> Tensor:
        """The update ``[N, d]`` of the layer-0 embeddings: ``mlp(influence(...))``."""
        return self.mlp(self.influence(final, edge_index, edge_weight, node_mask))

    def extra_repr(self) -> str:
        return (f"num_users={self.num_users}, num_items={self.num_items}, num_layers={self.num_layers}, "
                f"alpha={self.alpha}, restrict_to_request={self.restrict_to_request}")


def _check_encoder_arguments(arguments: dict) -> None:
    """Raises naming the argument of :class:`InfluenceEncoder`: sizes that are not integers of at least 1
    (``num_layers``: 0), numbers that are not finite, a ``restrict_to_request`` that is not a bool (-1 layers had run
    as 0, ``alpha=nan`` was taken)."""
    for name, value in arguments.items():
        if name == "restrict_to_request":
            valid, requirement = isinstance(value, bool), "a bool"
        elif name in ("alpha", "withdraw_init", "leaky_slope"):
            valid, requirement = is_real(value) and math.isfinite(value), "a finite number"
        else:
            low = 0 if name == "num_layers" else 1
            valid, requirement = is_integer(value) and value >= low, f"an integer >= {low}"
        if not valid:
            raise ValueError(f"InfluenceEncoder: {name} must be {requirement}, got {value!r}")


class _Shift(nn.Module):
    """Parametrisation ``W -> W + delta``: lets any backbone run on updated layer-0 tables unchanged."""

    def __init__(self):
        super().__init__()
        self.delta: Tensor | None = None

    def forward(self, weight: Tensor) -> Tensor:
        return weight if self.delta is None else weight + self.delta


class _SharedEmbedding(nn.Module):
    """The working backbone during one training step, its embedding on ``graph`` computed once.

    A step's backbone loss, unlearning loss and preservation loss all score pairs on the same graph with
    the same parameters: one propagation serves them all (it halves a step's cost). Pass this module
    where the backbone would go. On ``graph`` it returns that embedding from :meth:`embed` and scores
    pairs by its dot products (when the backbone scores so:
    :attr:`~graphforget.models.Recommender.scores_by_dot_product`; otherwise by the backbone's own
    ``forward``); its parameters (the objective's L2) and
    :meth:`contrastive_loss` are the backbone's. Lifetime: one step, as the backbone's parameters change
    after it.

    Args:
        backbone: the working copy of the model.
        graph: the graph of the step.
    """

    def __init__(self, backbone: Recommender, graph: HeteroData):
        super().__init__()
        self.backbone, self.graph = backbone, graph
        self.user, self.item = backbone.embed(graph)
        self.dot_product = bool(getattr(backbone, "scores_by_dot_product", False))

    def embed(self, graph: HeteroData) -> tuple[Tensor, Tensor]:
        return (self.user, self.item) if graph is self.graph else self.backbone.embed(graph)

    def forward(self, graph: HeteroData, edge_label_index: Tensor) -> Tensor:
        if graph is not self.graph or not self.dot_product:
            return self.backbone(graph, edge_label_index)
        # Recommender.forward's dot products, on the kept embedding.
        return (self.user.index_select(0, edge_label_index[0]) * self.item.index_select(0, edge_label_index[1])).sum(-1)

    def contrastive_loss(self, *args, **kwargs) -> Tensor:
        """The backbone's (the self-supervised term that SGL's and SimGCL's objective adds), on its own views."""
        # ignored: torch's stubs type Module.__getattr__ as Tensor | Module (SGL's and SimGCL's method)
        return self.backbone.contrastive_loss(*args, **kwargs)  # type: ignore[operator]


class _DependencyMatrix:
    """A request's dependency matrix (:func:`influence_dependency_matrix`) as CSR tensors, its sorted structure
    built once: pre-training propagates over it and over an edge-dropped view of it at every step, and sorting
    the request's edges anew for each was most of a step's time on ML-1M.

    Args:
        pairs: ``[2, R]`` the request's (user, item) edges, without duplicates.
        num_users, num_items: node counts.
        dtype: of the weights.
    """

    def __init__(self, pairs: Tensor, num_users: int, num_items: int, dtype: torch.dtype):
        self.pairs, self.num_users, self.num_items, self.dtype = pairs, num_users, num_items, dtype
        index = bipartite_to_homogeneous(pairs, num_users)
        self.size = num_users + num_items
        self.order = (index[0] * self.size + index[1]).argsort()  # row-major, as a CSR tensor stores it
        counts = torch.bincount(index[0], minlength=self.size)
        self.crow = torch.cat([counts.new_zeros(1), counts.cumsum(0)])
        self.col = index[1, self.order]
        self.full = self.kept(None)

    def kept(self, keep: Tensor | None) -> Tensor:
        """The matrix of the request's edges where ``keep [R]`` (all for ``None``), each weighted by the kept
        degrees; a dropped edge stays in the structure with weight 0, which adds nothing to a product."""
        weight = torch.zeros(self.pairs.size(1), dtype=self.dtype, device=self.pairs.device)
        edges = slice(None) if keep is None else keep
        weight[edges] = symmetric_edge_weight(self.pairs[:, edges], self.num_users, self.num_items, self.dtype)
        with quiet_csr():
            return torch.sparse_csr_tensor(self.crow, self.col, torch.cat([weight, weight])[self.order],
                                           size=(self.size, self.size))


@dataclass
class _Request:
    """A request prepared for the encoder: pairs, remaining graph, dependency matrix (``None`` when the encoder
    has no layer to propagate over), node mask."""
    pairs: Tensor
    remaining: HeteroData
    dependency: _DependencyMatrix | None
    node_mask: Tensor


@register
class UnlearnRec(Unlearner):
    r"""UnlearnRec (Chen, Xia, Huang, SIGIR 2025): pre-train an Influence Encoder once, then answer
    each request with one encoder pass and a brief fine-tuning.

    Works with any :class:`~graphforget.models.Recommender` that has one layer-0 embedding table per
    node type (named by :meth:`~graphforget.models.Recommender.node_parameters`; or one ``node`` table, users
    first, as a PyG module through :class:`~graphforget.models.PyGRecommender` has) and computes its final
    representations with ``embed(graph)`` and dot-product scores (LightGCN, SGL, SimGCL; for MF,
    :math:`L = 0`). The backbone's own objective (e.g. BPR, or BPR + InfoNCE for SGL/SimGCL) is
    :math:`\mathcal{L}_{model}`; in pre-training, where the backbone's parameters are frozen, without the
    objective's L2 (a sum over trainable parameters: there are none, and the encoder's update is not
    regularised), in fine-tuning with it, on the tables being fine-tuned.

    Usage::

        unlearner = UnlearnRec(model, graph, objective, UnlearnRecConfig(pretrain_epochs=10))
        unlearner.fit()                      # once per trained model
        result = unlearner.unlearn(request)  # result.model(result.graph, pairs)
        unlearner.save_encoder("encoder.pt")  # later: UnlearnRec(model, graph, ...).load_encoder("encoder.pt")

    One encoder answers any number of requests on the model it was pre-trained for, each from that model.
    :meth:`save_encoder` records that model (the sha256 of its parameters and of the training graph, its class and
    constructor arguments) and the options pre-training read (all but ``ENCODER_FREE_OPTIONS``); :meth:`load_encoder`
    refuses a file whose record differs (the command line: ``graphforget pretrain-encoder``, then ``graphforget
    unlearn --encoder``), and :meth:`~graphforget.unlearn.Unlearner.unlearn` refuses when the model, graph or those
    options were changed in place after :meth:`~graphforget.unlearn.Unlearner.fit` or :meth:`load_encoder`. An unlearned
    model (``result.model``) is another model: its requests need an encoder of its own.

    What it costs in utility (SGL trained to convergence on ML-100K, ``benchmarks/unlearnrec_ablation.py``):
    the paper's configuration keeps 78% of a Retrain's Recall@20 after removing fake edges and 46% after
    removing as many real ones. The unlearning loss asks every removed edge to score like a non-member,
    which a Retrain does not do for an edge the rest of the data predicts. More ``finetune_epochs`` repair
    the first (10: at or above the Retrain's), not the second (seed 0: 51%). The acceptance test
    (``max_loss_increase``) flags the second: it raises the mean loss on the remaining edges by 47%. Given
    validation pairs, ``max_val_auc_drop`` flags the first (``graphforget bench --protocol adversarial``, 3
    seeds): the validation AUC falls by 0.019-0.020, 5 standard errors, and stays there with 10 fine-tuning
    epochs, where Recall@20 passes the Retrain's: the unlearning loss lowers it, and the fine-tuning keeps that
    loss (``benchmarks/unlearnrec_ablation.py``; on SimGCL too).

    No checkpoint selection is made: the last fine-tuning epoch is returned, so neither the request
    nor any test data influences which parameters are kept.

    A request that removes every training edge is refused when ``finetune_epochs > 0`` (a
    ``ValueError``): the fine-tuning losses are means over the remaining edges, and with none left there
    is nothing to fine-tune on (nor to retrain on: Retrain refuses it too); set ``finetune_epochs=0`` to apply
    the encoder's update alone. :meth:`~graphforget.unlearn.Unlearner.unlearn` never returns a model with NaN or
    infinite parameters: it raises :class:`~graphforget.unlearn.UnlearningFailed` instead.

    As in the paper, only the layer-0 tables are updated: a model's other trainable parameters (a custom GNN's dense
    weights) and running statistics keep what they learnt from the requests. A warning says so at construction, and
    every result's ``info`` names them (``untouched_parameters``, ``untouched_buffers``).

    Args:
        model: the trained backbone (not modified).
        graph: its training graph.
        objective: its training objective.
        config: hyper-parameters.
        val: validation pairs, for the acceptance test's ``max_val_auc_drop``; never test data.
    """
    name = "unlearnrec"
    Config = UnlearnRecConfig
    needs_fit = True
    needs_one_dtype = True  # its encoder and contrastive loss multiply user and item rows together

    def __init__(self, model: Recommender, graph: HeteroData, objective: Objective, config=None, *,
                 val: HeteroData | None = None):
        super().__init__(model, graph, objective, config, val=val)
        self.tables = _node_tables(model, graph)
        gap = 0.0 if getattr(model, "scores_by_dot_product", False) else dot_product_gap(model, graph, True)[0]
        if gap:  # its preservation loss kept a ranking the model does not score by (a user's constant cancels there)
            raise ValueError(f"UnlearnRec's preservation loss ranks a user's items by the dot product of embed()'s "
                             f"rows (the paper's LightGCN, SGL and SimGCL score so), but {type(model).__name__}'s own "
                             f"scores differ from it by up to {gap:.3g} beyond a constant per user (an item's bias, "
                             "or a layer on the pair): unlearn it with IFRU, FineTune or Retrain")
        if not self._updated_tables():
            raise ValueError(f"UnlearnRec updates the layer-0 tables, but every one is frozen (requires_grad=False): "
                             f"{', '.join(self.tables.values())}")
        # torch's parametrizations, which carry the update, keep a ModuleDict keyed by the table's attribute name
        clash = [name for name in self.tables.values() if hasattr(nn.ModuleDict(), name.rpartition(".")[2])]
        if clash:
            raise ValueError(f"UnlearnRec cannot update the table {clash[0]}: torch's parametrizations, which carry "
                             "the update, keep a ModuleDict keyed by the table's name, and that name is one of its "
                             "methods (items, keys, values, ...); rename the parameter (e.g. item_table)")
        num_layers = self.config.encoder_layers
        if num_layers is None:
            num_layers = int(getattr(model, "receptive_field", 0))
        table = dict(model.named_parameters())[next(iter(self.tables.values()))]
        cfg = self.config
        with gradients_on():  # trainable even when built in the caller's inference_mode()
            self.encoder = InfluenceEncoder(num_users(graph), num_items(graph), table.size(1), num_layers, cfg.alpha,
                                            cfg.withdraw_init, cfg.leaky_slope, cfg.restrict_to_request
                                            ).to(graph[EDGE].edge_index.device, table.dtype)
        self._built_from = {name: getattr(cfg, name) for name in ENCODER_BUILD_OPTIONS}  # see _check_built_from
        self._encoder_for: dict | None
        self._encoder_versions: list
        self._encoder_for, self._encoder_versions, self._record_known = None, [], True  # set by fit(), load_encoder()
        self.untouched = self._untouched()
        if self.val is None or self.config.max_val_auc_drop is None:
            judge = ("no acceptance test judges a result" if self.config.max_loss_increase is None else
                     "only the loss test (max_loss_increase) judges a result, and it does not see the ranking")
            warn_caller(f"UnlearnRec: without its validation test (val, max_val_auc_drop) {judge} (docs/methods.rst): "
                        "compare the result with a Retrain (graphforget verify --retrain)", NoValidationWarning)

    def _untouched(self) -> dict[str, list[str]]:
        """What the update leaves as trained: the trainable parameters beside the layer-0 tables (a custom GNN's
        dense weights) and the running statistics; said once here, named in each result's ``info``."""
        tables = set(self._updated_tables().values())
        untouched = {"untouched_parameters": [name for name, p in self.model.named_parameters()
                                              if p.requires_grad and name not in tables],
                     "untouched_buffers": running_statistics(self.model)}
        untouched = {key: names for key, names in untouched.items() if names}
        if untouched:
            warn_caller(f"UnlearnRec updates the layer-0 tables alone (the paper's method): "
                        f"{'; '.join(', '.join(names) for names in untouched.values())} of {type(self.model).__name__} "
                        f"keep what they learnt from the requests (info: {', '.join(untouched)}); IFRU "
                        "includes dense weights in its step, Retrain re-draws them")
        return untouched

    # ----------------------------------------------------------------------------------------- helpers
    def _prepare(self, pairs: Tensor, remaining: HeteroData) -> _Request:
        n_users, n_items = num_users(self.graph), num_items(self.graph)
        node_mask = torch.zeros(n_users + n_items, dtype=torch.bool, device=pairs.device)
        node_mask[pairs[0]] = True
        node_mask[n_users + pairs[1]] = True
        dependency = None
        if self.encoder.num_layers:  # without a layer to propagate over, the matrix is never read
            dependency = _DependencyMatrix(pairs, n_users, n_items, self.encoder.h0.dtype)
        return _Request(pairs, remaining, dependency, node_mask)

    def _influence(self, final: Tensor, request: _Request, keep: Tensor | None = None) -> Tensor:
        r""":math:`\Delta\mathbf{E}` of ``request`` (its edges where ``keep [R]``: all for ``None``)."""
        adjacency = None
        if request.dependency is not None:
            adjacency = request.dependency.full if keep is None else request.dependency.kept(keep)
        return self.encoder.propagate(final, adjacency, request.node_mask)

    @torch.no_grad()
    def _reference(self) -> Tensor:
        r"""The original model's final node embeddings ``[N, d]`` (users first) on the original graph.

        They are both :math:`\mathbf{E}` of the withdraw term and the reference of :math:`\mathcal{L}_p`.
        """
        user, item = embeddings_of(self.model, self.graph)
        width = self.encoder.h0.size(1)
        if user.size(-1) != width or item.size(-1) != width:  # the update is added to the tables row for row
            raise ValueError(f"UnlearnRec computes the update of the layer-0 tables from the final embeddings, but "
                             f"{type(self.model).__name__}.embed(graph) returns rows of width {user.size(-1)} (users) "
                             f"and {item.size(-1)} (items), its layer-0 tables {width}: it needs final rows as wide "
                             f"as the tables")
        return torch.cat([user, item]).detach()

    def _updated_tables(self) -> dict[str, str]:
        """The layer-0 tables UnlearnRec updates, by node type: the trainable ones (training leaves a frozen table
        as it is, so the update must too)."""
        params = dict(self.model.named_parameters())
        return {node_type: name for node_type, name in self.tables.items() if params[name].requires_grad}

    def _working_copy(self, trainable_tables: bool) -> tuple[Recommender, dict[str, _Shift]]:
        """A frozen private copy of the backbone whose updated layer-0 tables read ``table + shift.delta``."""
        work = copy.deepcopy(self.model)
        for p in work.parameters():
            p.requires_grad_(False)
        for layer in sparse_embeddings(work):  # a private copy: dense gradients for good
            layer.sparse = False
        shifts = {}
        for node_type, name in self._updated_tables().items():
            module_name, _, attr = name.rpartition(".")
            module = work.get_submodule(module_name)
            shifts[node_type] = _Shift()
            parametrize.register_parametrization(module, attr, shifts[node_type])
            getattr(module.parametrizations, attr).original.requires_grad_(trainable_tables)
        return work, shifts

    def _set_update(self, shifts: dict[str, _Shift], update: Tensor | None) -> None:
        for node_type, shift in shifts.items():
            shift.delta = None if update is None else table_mask(update, node_type, self.encoder.num_users)

    def _step_loss(self, work: Recommender, remaining: HeteroData, batch: Tensor, request_batch: Tensor,
                   reference: Tensor, epoch: int) -> tuple[Tensor, dict[str, Tensor]]:
        """Backbone loss + l_u L_u + l_p L_p of one step (the layer-0 update already set on ``work``)."""
        cfg = self.config
        step = _SharedEmbedding(work, remaining)
        backbone = self.objective.batch_loss(step, remaining, batch, epoch)
        removed = step(remaining, request_batch)
        unlearn = -F.logsigmoid(-removed).mean() if removed.numel() else removed.sum()  # no interaction: no term
        user, item = step.user, step.item
        store = remaining[EDGE]
        pairs = store.edge_index[:, batch][:, store.edge_label[batch] > 0][:, :cfg.preserve_pairs]
        # index_select rather than ``user[pairs[0]]``: a deterministic backward on the CPU.
        preserve = _preservation_loss(user.index_select(0, pairs[0]), item.index_select(0, pairs[1]),
                                      reference.index_select(0, pairs[0]),
                                      reference.index_select(0, self.encoder.num_users + pairs[1]), cfg.tau)
        loss = backbone + cfg.l_u * unlearn + cfg.l_p * preserve
        parts = {"backbone": backbone.detach(), "unlearn": unlearn.detach(), "preserve": preserve.detach()}
        return loss, parts

    def _contrastive(self, full: Tensor, final: Tensor, request: _Request, gen: torch.Generator) -> Tensor:
        """L_c: InfoNCE between ``full`` (dE) and dE on an edge-dropped dependency matrix, for sampled request nodes."""
        cfg = self.config
        device = request.pairs.device
        keep = uniform(request.pairs.size(1), gen).to(device) >= cfg.contrastive_drop
        nodes = request.node_mask.nonzero().squeeze(1)
        nodes = nodes[torch.randperm(nodes.numel(), generator=gen)[:cfg.contrastive_nodes].to(device)]
        dropped = self._influence(final, request, keep)
        return info_nce(full.index_select(0, nodes), dropped.index_select(0, nodes), cfg.contrastive_tau)

    def _batches(self, num_edges: int, gen: torch.Generator, device) -> list[Tensor]:
        size = self.config.batch_size or num_edges
        return list(torch.randperm(num_edges, generator=gen).to(device).split(size))

    def _request_batch(self, pairs: Tensor, gen: torch.Generator) -> Tensor:
        size = min(pairs.size(1), self.config.batch_size or pairs.size(1))
        if size == pairs.size(1):
            return pairs
        return pairs[:, torch.randperm(pairs.size(1), generator=gen)[:size].to(pairs.device)]

    # ------------------------------------------------------------------------------------ pre-training
    def save_encoder(self, path) -> None:
        """Writes the pre-trained encoder's state (loadable with :meth:`load_encoder`, ``weights_only``), with
        what it was pre-trained for (``_pretrained_for``, as it was at :meth:`~graphforget.unlearn.Unlearner.fit` or
        :meth:`load_encoder`).

        The write is atomic (:func:`~graphforget.io.atomic_write`): an interrupted save leaves a previous
        file at ``path`` intact.

        Raises:
            NotFittedError: before :meth:`~graphforget.unlearn.Unlearner.fit` or :meth:`load_encoder` (the encoder is
                not pre-trained).
        """
        if not self.fitted:
            raise NotFittedError("UnlearnRec.save_encoder() needs fit() first: the encoder is not pre-trained")
        encoder = self.encoder.state_dict()
        state = {"encoder": encoder, "encoder_sha256": tensors_sha256(*encoder.values()),
                 "pretrained_for": self._encoder_for if self._record_known else None,
                 "fit_info": {k: v for k, v in self.fit_info.items() if k != "history"}}
        atomic_write(path, lambda handle: torch.save(state, handle))

    def _pretrained_for(self, hashes: dict | None = None) -> dict:
        """The backbone's parameters and the training graph (their sha256; ``hashes`` when already known), the
        backbone's class and constructor arguments (a LightGCN's ``num_layers`` is in no parameter) and the options
        that pre-training reads, with the objective (its loss is pre-training's), and the node types whose tables it
        updates (the trainable ones: an encoder pre-trained with the item table frozen had loaded for a model that
        trains it): an encoder learns the influence of requests on this model, and means nothing for another."""
        if hashes is None:
            hashes = {"model_sha256": tensors_sha256(*self.model.state_dict().values()),
                      "graph_sha256": tensors_sha256(*self._graph_tensors())}
        options = {k: v for k, v in asdict(self.config).items() if k not in ENCODER_FREE_OPTIONS}
        options["encoder_layers"] = self.encoder.num_layers  # the L it has: None and the backbone's field are one
        arguments = self.model.config() if hasattr(self.model, "config") else {}  # a duck-typed backbone has none
        config = ", ".join(f"{k}={v!r}" for k, v in arguments.items())
        return {"model_sha256": hashes["model_sha256"], "graph_sha256": hashes["graph_sha256"],
                "backbone": f"{type(self.model).__name__}({config})", "objective": repr(self.objective),
                "updated_tables": sorted(self._updated_tables()), "options": options}

    def _remember_pretrained_for(self, record: dict, known: bool = True) -> None:
        """Keeps what the encoder is now pre-trained for, and the versions of the tensors hashed in it: :meth:`_unlearn`
        hashes them again only after an in-place write. ``known``: whether that is known (a file that did not say
        is checked against later edits from here on, and saved again it still does not say: it had been saved as
        pre-trained for this model, and loaded for it without a warning)."""
        self._encoder_for, self._encoder_versions, self._record_known = record, self._hashed_versions(), known

    def _graph_tensors(self) -> list[Tensor]:
        """The training graph's tensors an encoder is pre-trained for: the edges, their labels and, when the graph has
        one, the ``observed`` mask (the edges the backbone propagates over, and the simulated requests' candidates), as
        the base class' graph digest. A file written before the mask was hashed, for a graph with one, is refused as
        for another graph: pre-train it again."""
        store = self.graph[EDGE]
        return [store[key] for key in ("edge_index", "edge_label", "observed") if key in store]

    def _hashed_versions(self) -> list:
        return versions(*self.model.state_dict(keep_vars=True).values(), *self._graph_tensors())

    def _check_built_from(self) -> None:
        """Raises ``ValueError`` naming the options the encoder is built from (``ENCODER_BUILD_OPTIONS``) that were
        edited on ``self.config`` since construction: the encoder ran the old values while :meth:`save_encoder` and
        :meth:`load_encoder` read the new ones. Refused rather than applied: :meth:`fit` continues from the current
        encoder, which the old values shaped, and a refusal leaves no encoder that differs from its record."""
        edited = [f"{name}={getattr(self.config, name)!r}, built with {value!r}"
                  for name, value in self._built_from.items() if getattr(self.config, name) != value]
        if edited:
            raise ValueError(f"UnlearnRec's encoder is built from its options at construction, and config was edited "
                             f"since ({'; '.join(edited)}): build a new UnlearnRec with these options")

    def _check_still_pretrained_for(self) -> None:
        """Raises ``ValueError`` when the model, graph or pre-training options changed since :meth:`fit` or
        :meth:`load_encoder`: the encoder would silently answer for the model it was pre-trained on."""
        current = self._hashed_versions()
        same_tensors = unchanged(current, self._encoder_versions)
        stored = cast(dict, self._encoder_for)  # set by fit() and load_encoder(): unlearn() runs fitted
        mismatch = _mismatch(stored, self._pretrained_for(self._encoder_for if same_tensors else None))
        if mismatch:
            raise ValueError(f"UnlearnRec's encoder was pre-trained {mismatch[0]}: the model, graph or options changed "
                             "since fit() or load_encoder(); build a new UnlearnRec and fit() it (fit() again "
                             "continues from this encoder), or load an encoder for this one")
        self._check_built_from()  # encoder_layers is recorded as the encoder's L: an edit of it passed the record
        self._encoder_versions = current  # written back as they were: no need to hash them again

    def load_encoder(self, path) -> "UnlearnRec":
        """Loads an encoder written by :meth:`save_encoder` for this model, graph and pre-training options; marks it
        fitted. A file that is refused leaves the current encoder as it was. Inside the caller's
        ``torch.inference_mode()`` too: the encoder stays trainable by a later
        :meth:`~graphforget.unlearn.Unlearner.fit`.

        Returns:
            ``self`` (as :meth:`~graphforget.unlearn.Unlearner.fit`):
            ``UnlearnRec(model, graph, ...).load_encoder(path).unlearn(request)``.

        Raises:
            FileNotFoundError: no file at ``path``.
            ValueError: ``path`` is not a readable torch file (truncated, foreign), holds no encoder for this
                model and graph or a non-finite one, or was pre-trained for another model, backbone, objective, graph
                or options, or an option the encoder is built from was edited on ``config`` since construction.
        """
        self._check_built_from()
        state = _read_encoder_file(path, self.graph[EDGE].edge_index.device)
        expected = self._pretrained_for()
        self._check_pretrained_for(path, state.get("pretrained_for"), expected)
        # as in the constructor: a copy made in the caller's inference_mode() holds inference tensors, and fit() failed
        with gradients_on():
            encoder = copy.deepcopy(self.encoder)  # load_state_dict writes the keys it finds before raising
            try:
                encoder.load_state_dict(state["encoder"])
            except (RuntimeError, KeyError) as error:
                raise ValueError(f"{path} does not hold an encoder for this model and graph: {error}") from error
        _check_finite(encoder, "read an encoder with", f"{path} holds a diverged pre-training", ValueError)
        self._record_fitted_on()  # checked against this graph: the one it now answers for (first: it may raise)
        self.encoder, self.fitted, self.fit_info = encoder, True, dict(state.get("fit_info", {}))
        self._remember_pretrained_for(expected, known=state.get("pretrained_for") is not None)
        return self

    def _check_pretrained_for(self, path, stored: dict | None, expected: dict) -> None:
        """Refuses an encoder pre-trained for another model, graph or options; warns for a file from before
        encoders recorded it."""
        if stored is None:
            warn_caller(f"UnlearnRec: {path} does not say what it was pre-trained for (an older file): it cannot be "
                        "checked against this model and graph")
            return
        options = stored.get("options", {})
        if "encoder_layers" in options and options["encoder_layers"] is None:  # a file from before L was resolved
            field = int(getattr(self.model, "receptive_field", 0))
            stored = {**stored, "options": {**options, "encoder_layers": field}}
        mismatch = _mismatch(stored, expected)
        if mismatch:
            raise ValueError(f"{path} was pre-trained {mismatch[0]}: {mismatch[1]}")

    def _fit(self) -> dict:
        """:meth:`_pretrain` with torch's global random state seeded by ``seed`` (a backbone's dropout or noise draws
        from it), the caller's restored afterwards; interrupted, it leaves the encoder as it was. A fit that
        continues a pre-trained encoder says so: ``continued_from`` lists the earlier pre-trainings, oldest first."""
        self._check_built_from()
        with gradients_on():  # as the constructor's: a copy made in the caller's inference_mode() is not trainable
            before = copy.deepcopy(self.encoder)
        earlier = self._pretraining_so_far() if self.fitted else []
        try:
            with seeded_global_rng(self.config.seed, self.graph[EDGE].edge_index.device):
                info = self._pretrain()
        except BaseException:  # a Ctrl-C left a half-trained encoder in use, saved under the loaded file's record
            self.encoder = before
            raise
        # the record had said N epochs for this model, whatever the encoder had been pre-trained on before
        return {**info, "continued_from": earlier} if earlier else info

    def _pretraining_so_far(self) -> list[dict]:
        """The pre-trainings the current encoder holds, oldest first: each one's epochs, steps, seed and backbone
        parameters (sha256), as :attr:`fit_info` and the encoder's record hold them."""
        last = {key: self.fit_info.get(key) for key in ("epochs", "steps", "seed")}
        last["model_sha256"] = (self._encoder_for or {}).get("model_sha256") if self._record_known else None
        return [*self.fit_info.get("continued_from", []), last]

    def _pretrain(self) -> dict:
        """Pre-trains :math:`\\mathbf{H}^{(0)}` and :math:`\\boldsymbol\\eta` on simulated requests (backbone
        and MLP frozen). Calling again continues from the current encoder (:meth:`_fit` records it).

        Returns:
            ``{"epochs", "steps", "seed", "history"}`` (:attr:`fit_info`, with ``seconds``).
        """
        cfg = self.config
        store = self.graph[EDGE]
        device = store.edge_index.device
        candidates = (store.edge_label > 0).nonzero().squeeze(1)
        if "observed" in store:
            candidates = candidates[store.observed[candidates]]
        if candidates.numel() < 2:
            raise ValueError("UnlearnRec pre-training needs at least two positive training edges")
        gen = torch.Generator().manual_seed(cfg.seed)
        final = reference = self._reference()
        work, shifts = self._working_copy(trainable_tables=False)
        self.encoder.mlp.requires_grad_(False)
        params = [self.encoder.h0, self.encoder.withdraw]
        optimizer = torch.optim.Adam(params, lr=cfg.lr)
        history, steps, request = [], 0, None
        work.train()
        for epoch in tqdm(range(1, cfg.pretrain_epochs + 1), disable=not cfg.progress, desc="pre-train encoder",
                          leave=False):
            if request is None or (epoch - 1) % cfg.resample_every == 0:
                request, ratio = self._simulated_request(candidates, gen)
            sums = _zero_sums(("loss", "backbone", "unlearn", "preserve", "contrast"), device)
            batches = self._batches(request.remaining[EDGE].edge_index.size(1), gen, device)
            for batch in batches:
                optimizer.zero_grad()
                delta = self._influence(final, request)
                self._set_update(shifts, self.encoder.mlp(delta))
                loss, parts = self._step_loss(work, request.remaining, batch,
                                              self._request_batch(request.pairs, gen), reference, epoch)
                contrast = self._contrastive(delta, final, request, gen) if cfg.l_c > 0 else loss.new_zeros(())
                loss = loss + cfg.l_c * contrast
                loss.backward()
                optimizer.step()
                steps += 1
                parts.update(loss=loss.detach(), contrast=contrast.detach())
                _add_parts(sums, parts, len(batches))
            means = {key: value.item() for key, value in sums.items()}
            history.append({"epoch": epoch, "request_ratio": ratio, **means})
            log.info("UnlearnRec pre-training epoch %d: %s", epoch, means)
        self._set_update(shifts, None)
        self.encoder.mlp.requires_grad_(True)
        # before the record: _fit puts the encoder back, and the record must stay the one it was pre-trained for
        _check_finite(self.encoder, "pre-training left", "it diverged (try a smaller lr, or a larger tau)")
        self._remember_pretrained_for(self._pretrained_for())
        # the seed of the simulated requests, kept with the encoder: an answer's own seed may differ (its batches)
        return {"epochs": cfg.pretrain_epochs, "steps": steps, "seed": cfg.seed, "history": history}

    def _simulated_request(self, candidates: Tensor, gen: torch.Generator) -> tuple[_Request, float]:
        low, high = self.config.request_ratio
        ratio = low + (high - low) * float(torch.rand((), generator=gen))
        count = min(candidates.numel() - 1, max(1, int(round(ratio * candidates.numel()))))
        pick = candidates[torch.randperm(candidates.numel(), generator=gen)[:count].to(candidates.device)]
        pairs = self.graph[EDGE].edge_index[:, pick]
        return self._prepare(pairs, without_edges(self.graph, pairs)[0]), ratio

    # ------------------------------------------------------------------------------------- unlearning
    def _unlearn(self, request: Tensor, positions: Tensor, remaining: HeteroData) -> tuple[nn.Module, dict]:
        cfg = self.config
        if cfg.finetune_epochs > 0:  # every fine-tuning term but L_u is a mean over remaining edges: over none, NaN
            refuse_no_remaining_edge(self, remaining, "to fine-tune on (set finetune_epochs=0 to apply the encoder's "
                                     "update alone)")
        self._check_still_pretrained_for()
        # a set of pairs: its fine-tuning batches pick request edges by position, and another order of the same 20
        # pairs moved the result by 0.01
        order = pair_keys(request, num_items(self.graph)).argsort()
        request, positions = request[:, order], positions[order]
        # L_u asks removed interactions to score as non-members; a removed dislike (label 0) scores low already, and
        # pushing it lower fitted it further (qa144: a user's 490 dislikes went from 0.36 to 0.04, a Retrain's 0.5)
        interactions = request[:, self.graph[EDGE].edge_label[positions] > 0]
        device = request.device
        with Stopwatch(device) as encoding:
            prepared = self._prepare(request, remaining)
            final = reference = self._reference()
            with torch.no_grad():
                delta = self._influence(final, prepared)
        with Stopwatch(device) as tuning:
            work, shifts = self._working_copy(trainable_tables=True)
            mlp = copy.deepcopy(self.encoder.mlp).requires_grad_(True)
            update = functools.partial(self._update, mlp, delta, prepared)
            with seeded_global_rng(wrapped_seed(cfg.seed + 1), device):  # as in _fit
                history = self._finetune(work, shifts, mlp, update, interactions, remaining, reference)
            model = self._fold(work, update)
        _check_finite(model, "produced", "the encoder or the fine-tuning diverged (try a smaller finetune_lr, or "
                      "pre-train the encoder again)")
        info = {"encoder_seconds": encoding.seconds, "finetune_seconds": tuning.seconds,
                "request_users": int(request[0].unique().numel()), "request_items": int(request[1].unique().numel()),
                "finetune_epochs": cfg.finetune_epochs, "history": history, **self.untouched,
                **self._acceptance(model, remaining)}
        if info.get("trusted") is False:
            warn_caller(f"UnlearnRec's result is not trusted: {info['reason']}", UntrustedWarning)
        return model, info

    def _acceptance(self, model: nn.Module, remaining: HeteroData) -> dict:
        """The acceptance tests that apply (:meth:`_loss_test`, :meth:`_validation_test`): their figures, whether
        every one passed (``trusted``) and, when one did not, why (``reason``); ``{}`` when none applies."""
        tests = [self._loss_test(model, remaining),
                 self._validation_test(model, remaining, self.config.max_val_auc_drop,
                                       "more finetune_epochs need not lift it: retrain")]
        ran = [test for test in tests if test is not None]
        if not ran:
            return {}
        reasons = [reason for _, reason in ran if reason is not None]
        info = {key: value for figures, _ in ran for key, value in figures.items()}
        return {**info, "trusted": not reasons, **({"reason": "; ".join(reasons)} if reasons else {})}

    def _loss_test(self, model: nn.Module, remaining: HeteroData) -> tuple[dict, str | None] | None:
        """``max_loss_increase``: the remaining edges' mean loss, unlearned against trained.

        A Retrain keeps what the remaining data predicts; an update that raises the loss on that data by more
        than the allowed share has damaged it (measured: the encoder's update alone raises it by 29-32% on a
        converged SGL, where Recall@20 falls by a third; a Retrain changes it by -0.3% to +8%).
        """
        limit = self.config.max_loss_increase
        if limit is None or not bool(self.objective.has_term(remaining[EDGE].edge_label).any()):
            return None  # no remaining term: no mean loss (it was NaN against NaN)
        before = _remaining_loss(copy.deepcopy(self.model), remaining, self.objective)  # see embeddings_of
        after = _remaining_loss(model, remaining, self.objective)
        reason = None if after <= before * (1 + limit) else (
            f"the mean loss on the remaining edges rose from {before:.4g} to {after:.4g}, more than "
            f"max_loss_increase={limit:g} allows (try more finetune_epochs, or retrain)")
        return {"remaining_loss": after, "original_remaining_loss": before}, reason

    def _update(self, mlp: nn.Module, delta: Tensor, request: _Request) -> Tensor:
        """The layer-0 update ``mlp(delta)``, zero outside the request's nodes with ``restrict_to_request``: the
        fine-tuned MLP's biases shift every row it reads, and a request of one edge had moved every user by a common
        vector (norm 0.24 against rows of 0.91; ML-100K LightGCN, test AUC 0.732 to 0.697, trusted without val)."""
        update = mlp(delta)
        if self.encoder.restrict_to_request:
            update = update * request.node_mask[:, None].to(update.dtype)
        return update

    def _finetune(self, work: Recommender, shifts: dict[str, _Shift], mlp: nn.Module, update: Callable[[], Tensor],
                  request: Tensor, remaining: HeteroData, reference: Tensor) -> list[dict]:
        """Fine-tunes the working copy's layer-0 tables and ``mlp`` (which ``update`` reads) in place; returns the
        per-epoch losses. ``request``: the pairs of L_u, the request's interactions."""
        cfg = self.config
        tables = [p for p in work.parameters() if p.requires_grad]
        optimizer = torch.optim.Adam(tables + list(mlp.parameters()), lr=cfg.finetune_lr or cfg.lr)
        gen = torch.Generator().manual_seed(wrapped_seed(cfg.seed + 1))
        history = []
        work.train()
        for epoch in range(1, cfg.finetune_epochs + 1):
            sums = _zero_sums(("loss", "backbone", "unlearn", "preserve"), request.device)
            batches = self._batches(remaining[EDGE].edge_index.size(1), gen, request.device)
            for batch in batches:
                optimizer.zero_grad()
                self._set_update(shifts, update())
                loss, parts = self._step_loss(work, remaining, batch, self._request_batch(request, gen),
                                              reference, epoch)
                loss.backward()
                optimizer.step()
                parts["loss"] = loss.detach()
                _add_parts(sums, parts, len(batches))
            history.append({"epoch": epoch, **{key: value.item() for key, value in sums.items()}})
        return history

    @torch.no_grad()
    def _fold(self, work: nn.Module, update: Callable[[], Tensor]) -> nn.Module:
        """A new model of the caller's class with layer-0 tables ``E0 (fine-tuned copy) + MLP(dE)`` (``update()``)."""
        delta = update()  # [U + I, d], users first
        model = copy.deepcopy(self.model)
        params = dict(model.named_parameters())
        for node_type, name in self._updated_tables().items():
            module_name, _, attr = name.rpartition(".")
            original = getattr(work.get_submodule(module_name).parametrizations, attr).original
            params[name].copy_(original + table_mask(delta, node_type, self.encoder.num_users))
        return model

    def __repr__(self) -> str:
        return (f"UnlearnRec(model={type(self.model).__name__}, objective={self.objective}, "
                f"fitted={self.fitted}, config={self.config})")


def _zero_sums(keys: tuple[str, ...], device) -> dict[str, Tensor]:
    """An epoch's sums of the step losses, on the device and read once the epoch ends: no wait on a GPU per step."""
    return {key: torch.zeros((), dtype=torch.float64, device=device) for key in keys}


def _add_parts(sums: dict[str, Tensor], parts: dict[str, Tensor], batches: int) -> None:
    for key, value in parts.items():
        sums[key] += value.double() / batches


def _remaining_loss(model: nn.Module, graph: HeteroData, objective: Objective) -> float:
    """The mean per-edge loss of ``model`` on ``graph``'s training edges, in eval mode (negatives fixed by the
    objective's seed, so that two models are compared on the same terms)."""
    with _scoring(model):
        return float(objective.edge_losses(model, graph).mean())


def _read_encoder_file(path, device) -> dict:
    """The state :meth:`UnlearnRec.save_encoder` wrote at ``path``, its parts checked for their kind (``ValueError``
    naming the file otherwise)."""
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as error:  # torch.load of a foreign file raises anything (EOFError, IndexError, ...)
        raise ValueError(f"cannot read encoder file {path} (truncated, or not written by save_encoder): "
                         f"{load_failure(error)}") from error
    if not isinstance(state, dict) or not isinstance(state.get("encoder"), dict):
        raise ValueError(f"{path} was not written by UnlearnRec.save_encoder (no encoder state)")
    stored = state.get("encoder_sha256")  # torch.load reads damaged tensor bytes as they are; older files have none
    if stored is not None and stored != tensors_sha256(*state["encoder"].values()):
        raise ValueError(f"{path}: the encoder's parameters do not match their sha256 (damaged or edited)")
    record = state.get("pretrained_for")
    options = record.get("options", {}) if isinstance(record, dict) else {}
    if not (record is None or isinstance(record, dict)) or not isinstance(options, dict) or not isinstance(
            state.get("fit_info", {}), dict):
        raise ValueError(f"{path} was not written by UnlearnRec.save_encoder (malformed pretrained_for or fit_info)")
    return state


def _mismatch(stored: dict, expected: dict) -> tuple[str, str] | None:
    """How an encoder's record (:meth:`UnlearnRec._pretrained_for`) differs from ``expected``: ``(what, advice)``,
    or ``None``. A file from before the backbone, the objective or the updated tables were recorded is compared
    without them."""
    other = [name for name in ("model", "graph") if stored.get(f"{name}_sha256") != expected[f"{name}_sha256"]]
    again = "pre-train an encoder for this one (graphforget pretrain-encoder)"
    if other:
        return f"for another {' and '.join(other)} (its sha256 differs)", again
    for name in ("backbone", "objective"):
        if stored.get(name, expected[name]) != expected[name]:
            return f"for another {name} ({stored[name]}, here {expected[name]})", again
    if stored.get("updated_tables", expected["updated_tables"]) != expected["updated_tables"]:  # a frozen one is kept
        return (f"updating the tables of {stored['updated_tables']}, where the trainable ones are "
                f"{expected['updated_tables']}", again)
    options = stored.get("options", {})
    changed = [f"{k}={options.get(k)!r}, here {v!r}" for k, v in expected["options"].items() if options.get(k) != v]
    if changed:
        return f"with other options ({'; '.join(changed)})", "use its options, or pre-train again with these"
    return None


def _check_finite(module: nn.Module, what: str, why: str, error: type = UnlearningFailed) -> None:
    """Raises ``error`` when ``module`` (the encoder, the result) holds a NaN or an infinity: "UnlearnRec {what}
    non-finite ...: {why}", ``what`` saying where it came from, ``why`` what diverged and what to do (a diverged
    pre-training had been reported fitted and saved, and failed only at the first request, blaming the fine-tuning)."""
    bad = non_finite(module)
    if bad:
        raise error(f"UnlearnRec {what} non-finite {bad}: {why}")


def _preservation_loss(user: Tensor, item: Tensor, ref_user: Tensor, ref_item: Tensor, tau: float) -> Tensor:
    r"""Mean squared difference of the positives' in-batch log-softmax scores (``[P, d]`` inputs).

    Row ``b`` scores user ``b`` against the ``P`` items of the batch; the positive is item ``b``.
    """
    if user.size(0) == 0:
        return user.sum() * 0
    new = torch.diagonal(torch.log_softmax(user @ item.t() / tau, dim=1))
    old = torch.diagonal(torch.log_softmax(ref_user @ ref_item.t() / tau, dim=1))
    return (new - old).pow(2).mean()


def _node_tables(model: Recommender, graph: HeteroData) -> dict[str, str]:
    """The layer-0 table of each node type (a user and an item table, or one ``node`` table in homogeneous
    order, users first: a PyG module through :class:`~graphforget.models.PyGRecommender`), checked against the
    graph's node counts."""
    if not hasattr(model, "node_parameters") or not hasattr(model, "embed"):
        raise ValueError(f"{type(model).__name__} needs node_parameters() and embed(graph) for UnlearnRec")
    named = dict(model.named_parameters())
    tables: dict[str, str] = {}
    for name, node_type in model.node_parameters().items():
        if node_type in tables:
            raise ValueError(f"UnlearnRec needs one layer-0 table per node type, {node_type!r} has several")
        tables[node_type] = name
    if set(tables) not in ({"user", "item"}, {"node"}):
        raise ValueError(f"UnlearnRec needs a 'user' and an 'item' table, or one 'node' table, got {sorted(tables)}")
    rows = {"user": num_users(graph), "item": num_items(graph), "node": num_users(graph) + num_items(graph)}
    dims = {named[name].size(-1) for name in tables.values()}
    for node_type, name in tables.items():
        shape = list(named[name].shape)
        if len(shape) != 2 or shape[0] != rows[node_type] or len(dims) > 1:
            raise ValueError(f"UnlearnRec: the {node_type} table {name} {shape} must be [{rows[node_type]}, d] for "
                             f"this graph, with the same d as the other table")
    return tables
