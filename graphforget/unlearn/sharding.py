"""Sharded ensembles: the model SISA and RecEraser build, and the shard-training machinery they share.

A :class:`ShardedRecommender` holds one sub-model per shard and the assignment of every training
(user, item) pair to its shard. It follows the :class:`~graphforget.models.Recommender` contract: it
scores pairs given the graph passed in, deriving each shard's graph from it on every call, so after
unlearning the remaining graph yields the remaining shard graphs.
"""
from __future__ import annotations

import copy
import dataclasses
import logging
import os
import warnings
from typing import TYPE_CHECKING, Iterator, Sequence, cast, overload

import torch
from torch import Tensor, nn
from torch.nn.utils import skip_init
from torch_geometric.data import HeteroData

from ..config import eval_mode, is_integer, is_integer_tensor, seeded, wrapped_seed
from ..distributed import agreed, layout, run_jobs
from ..data.interactions import (EDGE, check_pairs_in_range, check_unique_pairs, edge_subgraph, num_items, num_users,
                                 pair_keys)
from ..models.base import Recommender, check_edge_label_index, init_from
from ..models.sgl import ContrastiveBPRObjective
from ..objectives import BPRObjective, Objective
from ..train import (NoSignalWarning, NotStationaryWarning, TrainConfig, TrainResult, chance_level, train,
                     warn_if_at_chance)
from .base import redraw, warn_caller

__all__ = ["ShardedRecommender", "ShardAttention", "split_graph", "train_shards", "train_aggregator"]

log = logging.getLogger(__name__)


def physical_memory() -> int | None:
    """This machine's memory in bytes, or ``None`` where the system does not say (not POSIX, or -1: indeterminate)."""
    try:
        page, pages = os.sysconf("SC_PAGE_SIZE"), os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None
    return page * pages if page > 0 and pages > 0 else None


def split_graph(graph: HeteroData, shard_of: Tensor, num_shards: int) -> list[HeteroData]:
    """The ``num_shards`` sub-graphs of ``graph`` by the ``[E]`` shard id of each edge.

    Any ``edge_weight`` is dropped: weights computed for the whole graph are wrong for a shard graph.

    Raises:
        ValueError: ``shard_of`` that is not ``[E]`` integer ids in ``[0, num_shards)`` (:func:`check_shard_ids`).
    """
    count = graph[EDGE].edge_index.size(1)
    shard_of = torch.as_tensor(shard_of)
    if shard_of.shape != (count,):
        raise ValueError(f"shard_of must hold one shard id per edge, [{count}], got {list(shard_of.shape)}")
    shard_of = check_shard_ids(shard_of, num_shards).to(graph[EDGE].edge_index.device)
    graphs = []
    for s in range(num_shards):
        sub = edge_subgraph(graph, shard_of == s)
        if "edge_weight" in sub[EDGE]:
            del sub[EDGE].edge_weight
        graphs.append(sub)
    return graphs


def check_shard_ids(shard_of: Tensor, num_shards: int) -> Tensor:
    """``shard_of`` as ``long`` ids, else ``ValueError`` unless they are integers in ``[0, num_shards)``: float ids
    were truncated, a bool mask read as the shards 0 and 1, and an id out of range left its edge in no shard."""
    if not is_integer(num_shards) or num_shards < 1:
        raise ValueError(f"num_shards must be an integer >= 1, got {num_shards!r}")
    if not is_integer_tensor(shard_of):
        raise ValueError(f"shard_of holds integer shard ids, got dtype {shard_of.dtype}")
    shard_of = shard_of.long()
    if shard_of.numel() and (shard_of.min() < 0 or shard_of.max() >= num_shards):
        raise ValueError(f"shard ids must be in [0, {num_shards}), got ids from {int(shard_of.min())} to "
                         f"{int(shard_of.max())}")
    return shard_of


class ShardAttention(nn.Module):
    r"""Attention-based adaptive aggregation of shard embeddings (Chen et al., "Recommendation
    Unlearning", WWW 2022, Sec. 3.4).

    Each shard's embeddings are first mapped into a common space by a per-shard affine transfer
    (shared by the users and the items of that shard, as in the authors' code), then weighted per node:

    .. math::
        \tilde{\mathbf{e}}^s = \mathbf{T}_s \mathbf{e}^s + \mathbf{c}_s, \qquad
        a_s = \operatorname{softmax}_s\big(\mathbf{h}^\top \phi(\mathbf{W}\tilde{\mathbf{e}}^s + \mathbf{b})\big),
        \qquad \mathbf{e} = \sum_{s=1}^{S} a_s \tilde{\mathbf{e}}^s ,

    with separate :math:`(\mathbf{W}, \mathbf{b}, \mathbf{h})` for users and for items, and the score
    :math:`\hat y_{ui} = \mathbf{e}_u^\top \mathbf{e}_i`.

    Choices: :math:`\phi` is ``tanh`` by default (``"relu"`` is what the authors' code uses); the
    transfer starts at the identity (``transform=False`` drops it); :math:`\mathbf{W}` and
    :math:`\mathbf{h}` start Xavier-normal, biases at zero.

    Args:
        num_shards: :math:`S`.
        embedding_dim: :math:`d`, the shards' embedding size.
        attention_dim: :math:`t`, rows of :math:`\mathbf{W}` (default :math:`d/2`, as the authors).
        activation: ``"tanh"`` or ``"relu"``.
        transform: use the per-shard transfer :math:`(\mathbf{T}_s, \mathbf{c}_s)`.
        seed: seed of the initialisation (``None``: torch's default generator).
        dtype: of the parameters (default: torch's default dtype).

    Raises:
        ValueError: for an argument out of range or a size that is not an integer, or parameters whose training
            (with their gradients and Adam's two moments, four times their size) would not fit in this machine's
            memory: where the system overcommits memory, the allocation succeeds and the process is killed when it is
            written.
    """

    def __init__(self, num_shards: int, embedding_dim: int, attention_dim: int | None = None,
                 activation: str = "tanh", transform: bool = True, seed: int | None = 0,
                 dtype: torch.dtype | None = None):
        super().__init__()
        sizes = {"num_shards": num_shards, "embedding_dim": embedding_dim, "attention_dim": attention_dim}
        for name, value in sizes.items():
            if not (is_integer(value) or value is None and name == "attention_dim"):  # a float failed inside torch
                raise ValueError(f"ShardAttention: {name} must be an integer (Python's or NumPy's), got {value!r}")
        # Python ints: NumPy's int32 overflowed in size(), and the memory guard passed a 66 GiB module as 1.6
        num_shards, embedding_dim = int(num_shards), int(embedding_dim)
        attention_dim = max(1, embedding_dim // 2) if attention_dim is None else int(attention_dim)  # 0 is no default
        if min(num_shards, embedding_dim, attention_dim) < 1:
            raise ValueError(f"num_shards, embedding_dim and attention_dim must be positive, got {num_shards}, "
                             f"{embedding_dim} and {attention_dim}")
        if activation not in ("tanh", "relu"):
            raise ValueError(f"activation must be 'tanh' or 'relu', got {activation!r}")
        self.num_shards, self.embedding_dim, self.attention_dim = num_shards, embedding_dim, attention_dim
        self.activation, self.transform = activation, transform
        dtype = torch.get_default_dtype() if dtype is None else dtype
        if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
            raise ValueError(f"dtype must be a real floating torch.dtype, got {dtype!r}")
        need = 4 * self.size(num_shards, embedding_dim, attention_dim, transform) * dtype.itemsize
        have = physical_memory()
        if have is not None and need > have:
            raise ValueError(f"ShardAttention(num_shards={num_shards}, embedding_dim={embedding_dim}, attention_dim="
                             f"{attention_dim}): its training takes {need / 2 ** 30:.4g} GiB ({dtype}), more than this "
                             f"machine's memory ({have / 2 ** 30:.4g} GiB)")
        if transform:
            self.transfer_weight = nn.Parameter(torch.empty(num_shards, embedding_dim, embedding_dim, dtype=dtype))
            self.transfer_bias = nn.Parameter(torch.empty(num_shards, embedding_dim, dtype=dtype))
        # skip_init: no draw from the caller's global random state; reset_parameters draws them below
        self.user_proj = skip_init(nn.Linear, embedding_dim, attention_dim, dtype=dtype)
        self.item_proj = skip_init(nn.Linear, embedding_dim, attention_dim, dtype=dtype)
        self.user_h = nn.Parameter(torch.empty(attention_dim, dtype=dtype))
        self.item_h = nn.Parameter(torch.empty(attention_dim, dtype=dtype))
        self.reset_parameters(seed)

    @staticmethod
    def size(num_shards: int, embedding_dim: int, attention_dim: int, transform: bool = True) -> int:
        """The number of its parameters: per node type a projection (weight and bias) and a vector, and with
        ``transform`` a map and a bias per shard."""
        return 2 * attention_dim * (embedding_dim + 2) + transform * num_shards * embedding_dim * (embedding_dim + 1)

    def reset_parameters(self, seed: int | None = None) -> None:
        """Re-initialises every parameter (from a private generator when ``seed`` is given)."""
        gen = None if seed is None else seeded(seed)  # on the CPU: the same draws on every device
        with torch.no_grad():
            if self.transform:
                self.transfer_weight.copy_(torch.eye(self.embedding_dim).expand_as(self.transfer_weight))
                self.transfer_bias.zero_()
            for proj, h in ((self.user_proj, self.user_h), (self.item_proj, self.item_h)):
                init_from(gen, nn.init.xavier_normal_, proj.weight)
                nn.init.zeros_(proj.bias)
                init_from(gen, nn.init.xavier_normal_, h.view(1, -1))

    def transfer(self, stack: Tensor) -> Tensor:
        """``[S, N, d]`` shard embeddings -> ``[S, N, d]`` embeddings in the common space."""
        if not self.transform:
            return stack
        return torch.einsum("snd,sed->sne", stack, self.transfer_weight) + self.transfer_bias[:, None]

    def weights(self, stack: Tensor, node_type: str) -> Tensor:
        """Attention weights ``[N, S]`` (rows sum to one) of ``[S, N, d]`` shard embeddings of ``node_type``."""
        return self._weights(self.transfer(stack), node_type)

    def _weights(self, transferred: Tensor, node_type: str) -> Tensor:
        if node_type not in ("user", "item"):
            raise ValueError(f"node_type must be 'user' or 'item', got {node_type!r}")
        proj, h = (self.user_proj, self.user_h) if node_type == "user" else (self.item_proj, self.item_h)
        hidden = proj(transferred)
        hidden = torch.tanh(hidden) if self.activation == "tanh" else torch.relu(hidden)
        return torch.softmax(hidden @ h, dim=0).t()

    def aggregate(self, stack: Tensor, node_type: str) -> Tensor:
        """``[S, N, d]`` shard embeddings -> ``[N, d]`` aggregated embeddings :math:`\\sum_s a_s \\tilde e^s`."""
        transferred = self.transfer(stack)
        weights = self._weights(transferred, node_type)
        return torch.einsum("ns,snd->nd", weights, transferred)

    def score(self, user_stack: Tensor, item_stack: Tensor, edge_label_index: Tensor) -> Tensor:
        """Logits ``[B]`` of the ``[2, B]`` pairs from ``[S, U, d]`` / ``[S, I, d]`` shard embeddings."""
        # Aggregate each distinct node once: a batch repeats users and items many times. index_select, not
        # indexing: the latter's backward adds rows in parallel in any order, and on two threads a seeded
        # RecEraser's attention (and a resumed bench's figures) differed from run to run.
        users, user_pos = torch.unique(edge_label_index[0], return_inverse=True)
        items, item_pos = torch.unique(edge_label_index[1], return_inverse=True)
        user = self.aggregate(user_stack.index_select(1, users), "user").index_select(0, user_pos)
        item = self.aggregate(item_stack.index_select(1, items), "item").index_select(0, item_pos)
        return (user * item).sum(-1)

    def extra_repr(self) -> str:
        return (f"num_shards={self.num_shards}, embedding_dim={self.embedding_dim}, "
                f"attention_dim={self.attention_dim}, activation={self.activation!r}, transform={self.transform}")


if TYPE_CHECKING:
    class _Shards(nn.ModuleList):
        """:attr:`ShardedRecommender.shards` as mypy reads it: a ModuleList of recommenders."""

        def __iter__(self) -> Iterator[Recommender]: ...

        @overload
        def __getitem__(self, idx: slice) -> nn.ModuleList: ...

        @overload
        def __getitem__(self, idx: int) -> Recommender: ...

        def __getitem__(self, idx: int | slice) -> Recommender | nn.ModuleList: ...


class ShardedRecommender(Recommender):
    r"""An ensemble of shard sub-models, each run on its own shard of the interaction graph.

    The assignment of training pairs to shards is stored as sorted pair keys
    ``user * num_items + item`` with their shard ids, so the shard of any edge of any graph can be
    looked up. On every call the graph passed in is split into shard graphs with
    :func:`~graphforget.data.edge_subgraph`; an edge without an assignment raises ``ValueError``.

    Aggregation of the :math:`S` shards:

    * ``"mean"`` (SISA, Bourtoule et al., IEEE S&P 2021): :math:`\hat y_{ui} = \frac1S \sum_s \hat y^s_{ui}`.
      :meth:`score_all` averages the shards' score matrices. :meth:`embed` exists only when every shard
      scores by the dot product of its embeddings (:attr:`~graphforget.models.Recommender.scores_by_dot_product`): it
      then returns the concatenations :math:`[\mathbf{e}^1_u, \dots, \mathbf{e}^S_u] / S` and
      :math:`[\mathbf{e}^1_i, \dots, \mathbf{e}^S_i]` (size :math:`Sd`), whose dot product is exactly
      the mean of the shard scores (the mean of the shard embeddings would not be); otherwise it raises
      ``NotImplementedError``.
    * ``"attention"`` (RecEraser): see :class:`ShardAttention`; :meth:`embed` returns the aggregated
      embeddings.

    The ensemble owns no embedding table: its per-node parameters are the shards'
    (:meth:`node_parameters` names them ``shards.<s>.<name>``). Its receptive field is the largest of
    the shards'. It does not support precomputed ``edge_weight`` (weights computed for a whole graph
    are wrong for a shard graph), so shard graphs drop any ``edge_weight`` they inherit.

    Args:
        shards: the :math:`S` sub-models (same node counts).
        shard_of: ``[E]`` shard id of each pair of ``edge_index`` (an integer dtype).
        edge_index: ``[2, E]`` (user, item) training pairs (integer ids within the shards' node counts, no
            duplicates).
        aggregation: ``"mean"``, ``"attention"`` (a fresh :class:`ShardAttention`, seed 0) or a
            :class:`ShardAttention` instance (the ensemble's from then on: moved to the shards' dtype and device).

    Attributes:
        fit_config: the config of the :class:`~graphforget.unlearn.SISA` (or RecEraser) fit that trained it,
            ``fit_objective`` the ``repr`` of its objective, ``fit_labels`` the sha256 of the edge labels its shards
            learnt (updated by each request), ``fit_val`` whether validation pairs were given and ``fit_val_pairs``
            the sha256 of those pairs and their labels; ``None`` for an ensemble built by hand.
    """
    supports_edge_weight = False

    def __init__(self, shards: Sequence[Recommender], shard_of: Tensor, edge_index: Tensor,
                 aggregation: str | ShardAttention = "mean"):
        if len(shards) < 1:
            raise ValueError("at least one shard is needed")
        first = shards[0]
        if any((m.num_users, m.num_items) != (first.num_users, first.num_items) for m in shards):
            raise ValueError("all shards must have the same num_users and num_items")
        super().__init__(first.num_users, first.num_items)  # no embedding tables of its own (see class docstring)
        self.embedding_dim = getattr(first, "embedding_dim", None)  # the attention's input width; mean needs none
        self.shards = cast("_Shards", nn.ModuleList(shards))
        edge_index, shard_of = torch.as_tensor(edge_index), torch.as_tensor(shard_of)
        if edge_index.dim() != 2 or edge_index.size(0) != 2 or shard_of.shape != (edge_index.size(1),):
            raise ValueError(f"edge_index must be [2, E] and shard_of [E], got {list(edge_index.shape)} "
                             f"and {list(shard_of.shape)}")
        shard_of = check_shard_ids(shard_of, len(shards))
        check_pairs_in_range(edge_index, self.num_users, self.num_items, "edge_index", "E")
        edge_index = edge_index.long()
        check_unique_pairs(edge_index, self.num_items, "edge_index")
        keys, order = torch.sort(pair_keys(edge_index, self.num_items))
        self.pair_keys: Tensor  # buffers
        self.pair_shard: Tensor
        self.register_buffer("pair_keys", keys)
        self.register_buffer("pair_shard", shard_of.to(keys.device)[order])
        if aggregation != "mean" and self.embedding_dim is None:
            raise ValueError(attention_needs_width(first))
        widths = sorted({getattr(m, "embedding_dim", None) for m in shards}, key=lambda w: (w is not None, w or 0))
        if aggregation != "mean" and len(widths) > 1:  # the attention stacks the shards' embeddings
            raise ValueError(f"the attention aggregation needs shards of one embedding_dim, got {widths}")
        self.attention: ShardAttention | None
        if isinstance(aggregation, ShardAttention):
            if aggregation.num_shards != len(shards) or aggregation.embedding_dim != self.embedding_dim:
                raise ValueError("the ShardAttention's num_shards/embedding_dim do not match the shards")
            self.attention, self.aggregation = aggregation, "attention"
        elif aggregation == "attention":
            self.attention = ShardAttention(len(shards), cast(int, self.embedding_dim),  # not None: checked above
                                            dtype=next(first.parameters()).dtype)
            self.aggregation = "attention"
        elif aggregation == "mean":
            self.attention, self.aggregation = None, "mean"
        else:
            raise ValueError(f"aggregation must be 'mean', 'attention' or a ShardAttention, got {aggregation!r}")
        if self.attention is not None:  # it computes in the shards' dtype, on their device (float64 models failed)
            like = next(first.parameters())
            self.attention.to(like.device, like.dtype)
        self.fit_config: object | None
        self.fit_objective: str | None
        self.fit_labels: str | None
        self.fit_val: bool | None
        self.fit_val_pairs: str | None
        self.fit_config, self.fit_objective = None, None
        self.fit_labels, self.fit_val, self.fit_val_pairs = None, None, None  # set by a fit: see SISA

    @property
    def num_shards(self) -> int:
        return len(self.shards)

    @property
    def receptive_field(self) -> int:  # type: ignore[override]  # Recommender's class default; never set on one
        return max(m.receptive_field for m in self.shards)

    def reset_parameters(self, seed: int | None = None) -> None:
        """Re-initialises shard ``s`` with ``seed + s`` (and the attention with ``seed``)."""
        for s, model in enumerate(self.shards):
            model.reset_parameters(None if seed is None else wrapped_seed(seed + s))
        if self.attention is not None:
            self.attention.reset_parameters(seed)

    def node_parameters(self) -> dict[str, str]:
        return {f"shards.{s}.{name}": node_type for s, model in enumerate(self.shards)
                for name, node_type in model.node_parameters().items()}

    # --- the assignment -------------------------------------------------------------------------

    def assignment_of(self, pairs: Tensor) -> Tensor:
        """Shard ids ``[R]`` of the ``[2, R]`` (user, item) pairs.

        Raises:
            ValueError: when a pair has no assignment (it is not a training pair of this ensemble), ``pairs`` is not a
                ``[2, R]`` integer tensor, or an id lies outside the node counts.
        """
        pairs = torch.as_tensor(pairs)
        check_pairs_in_range(pairs, self.num_users, self.num_items, "pairs", "R")
        pairs = pairs.long().to(self.pair_keys.device)
        wanted = pair_keys(pairs, self.num_items)
        if self.pair_keys.numel() == 0:
            found = torch.zeros_like(wanted, dtype=torch.bool)
            slot = torch.zeros_like(wanted)
        else:
            slot = torch.searchsorted(self.pair_keys, wanted).clamp(max=self.pair_keys.numel() - 1)
            found = self.pair_keys[slot] == wanted
        if not bool(found.all()):
            missing = pairs[:, ~found][:, :5].t().tolist()
            raise ValueError(f"{int((~found).sum())} edges have no shard assignment (not training pairs of "
                             f"this ensemble, or already unlearned), e.g. {missing}")
        return self.pair_shard[slot]

    def shard_sizes(self) -> Tensor:
        """``[S]`` number of assigned pairs per shard."""
        return torch.bincount(self.pair_shard, minlength=self.num_shards)

    def shard_graphs(self, graph: HeteroData) -> list[HeteroData]:
        """The ``S`` sub-graphs of ``graph`` made of the edges assigned to each shard."""
        return split_graph(graph, self.assignment_of(graph[EDGE].edge_index), self.num_shards)

    def restrict_to(self, graph: HeteroData) -> None:
        """Keeps the assignment of ``graph``'s edges only, in place: the unlearners pass the remaining graph
        (:func:`~graphforget.data.without_edges`) to a fresh copy, so the request's pairs lose theirs."""
        kept = pair_keys(graph[EDGE].edge_index, self.num_items).to(self.pair_keys.device)
        keep = torch.isin(self.pair_keys, kept)
        self.pair_keys, self.pair_shard = self.pair_keys[keep], self.pair_shard[keep]

    # --- scoring --------------------------------------------------------------------------------

    def _check_graph(self, graph: HeteroData) -> None:
        if (num_users(graph), num_items(graph)) != (self.num_users, self.num_items):
            raise ValueError(f"graph has {num_users(graph)} users / {num_items(graph)} items, the ensemble "
                             f"{self.num_users} / {self.num_items}")

    def shard_embeddings(self, graph: HeteroData) -> tuple[Tensor, Tensor]:
        """Stacked shard embeddings ``[S, U, d]`` and ``[S, I, d]``, shard ``s`` run on its shard graph."""
        self._check_graph(graph)
        pairs = [model.embed(g) for model, g in zip(self.shards, self.shard_graphs(graph))]
        return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])

    def shard_logits(self, graph: HeteroData, edge_label_index: Tensor) -> Tensor:
        """``[S, B]`` logits of each shard model on its shard graph."""
        self._check_graph(graph)
        return torch.stack([model(g, edge_label_index) for model, g in zip(self.shards, self.shard_graphs(graph))])

    def forward(self, graph: HeteroData, edge_label_index: Tensor) -> Tensor:
        if self.aggregation == "mean":
            return self.shard_logits(graph, edge_label_index).mean(0)  # each shard checks the pairs
        check_edge_label_index(edge_label_index, self.num_users, self.num_items)
        user_stack, item_stack = self.shard_embeddings(graph)
        return cast(ShardAttention, self.attention).score(user_stack, item_stack, edge_label_index)  # not mean

    def _dot_product_shards(self) -> bool:
        return all(m.scores_by_dot_product for m in self.shards)

    def embed(self, graph: HeteroData) -> tuple[Tensor, Tensor]:
        """Users ``[U, d']`` and items ``[I, d']`` whose dot products are the ensemble's logits.

        Attention: the aggregated embeddings (:math:`d' = d`). Mean: the scaled concatenations of the
        shard embeddings (:math:`d' = Sd`, see the class docstring).

        Raises:
            NotImplementedError: for mean aggregation over shards that do not score by a dot product.
        """
        if self.aggregation == "mean" and not self._dot_product_shards():
            raise NotImplementedError(
                "mean aggregation has no embeddings when a shard overrides forward(): the mean of shard "
                "embeddings is not the mean of shard scores; use score_all() for all-item ranking")
        user_stack, item_stack = self.shard_embeddings(graph)
        if self.aggregation == "attention":
            attention = cast(ShardAttention, self.attention)  # set with the attention aggregation
            return attention.aggregate(user_stack, "user"), attention.aggregate(item_stack, "item")
        num = self.num_shards
        return (user_stack.permute(1, 0, 2).reshape(self.num_users, -1) / num,
                item_stack.permute(1, 0, 2).reshape(self.num_items, -1))

    def score_all(self, graph: HeteroData, users: Tensor | None = None) -> Tensor:
        """Scores ``[len(users), I]``: the mean of the shards' score matrices (mean aggregation)."""
        if self.aggregation == "attention":  # the logits are the aggregated embeddings' dot products
            return self.dot_product_scores(graph, users)
        self._check_graph(graph)
        total: Tensor | None = None
        for model, g in zip(self.shards, self.shard_graphs(graph)):
            scores = model.score_all(g, users)
            total = scores if total is None else total + scores
        return cast(Tensor, total) / self.num_shards  # one shard at least

    def config(self) -> dict:
        return {"num_users": self.num_users, "num_items": self.num_items, "num_shards": self.num_shards,
                "aggregation": self.aggregation, "num_pairs": int(self.pair_keys.numel())}


# --- training shards, split across the ranks of a process group -----------------------------------

def train_shards(models: Sequence[Recommender], graphs: Sequence[HeteroData], objective: Objective,
                 config: TrainConfig | None = None, val: HeteroData | None = None,
                 seeds: Sequence[int] | None = None, who: str = "train_shards", num_shards: int | None = None
                 ) -> list[tuple[Recommender, TrainResult]]:
    """Trains a fresh copy of ``models[j]`` (re-initialised with ``seeds[j]``) on ``graphs[j]``, for each j;
    ``who`` (the method) starts the warning about shard models that learnt nothing, whose advice follows
    ``num_shards``, the ensemble's shard count (default: one per model).

    In a ``torch.distributed`` process group the jobs are shared round robin between the ranks
    (:func:`~graphforget.distributed.run_jobs`) and every rank receives every trained model (the ranks must pass
    the same arguments, :func:`~graphforget.distributed.agreed`, and a shard that fails on one rank raises on
    all); without one, this process trains them all. The result is the same either way under the seeds, bit for bit
    when every process runs with one thread (multi-threaded reductions may sum in another order). The
    given models are not modified.

    Returns:
        ``[(trained model, TrainResult)]`` in the order of the jobs.
    """
    config = dataclasses.replace(config or TrainConfig(), data_parallel=False)
    seeds = agreed("train_shards", lambda: _check_jobs(models, graphs, seeds), models=[layout(m) for m in models],
                   graphs=graphs, objective=objective, config=config, val=val, seeds=seeds)  # models: re-initialised
    # Each rank trains whole shards of its own: no batch is split across the ranks.
    copies = [copy.deepcopy(m) for m in models]

    def job(j: int) -> tuple[dict, TrainResult]:
        # a shard left with trained values would remember the edges to forget: refused, by name
        redraw(copies[j], seeds[j], "shard models (SISA, RecEraser)")
        result = train(copies[j], graphs[j], objective, config, val)
        return copies[j].state_dict(), result

    with warnings.catch_warnings():  # one warning for the shards below, not one per shard; no influence reads them
        warnings.simplefilter("ignore", NoSignalWarning)
        warnings.simplefilter("ignore", NotStationaryWarning)
        states = run_jobs(job, len(copies))  # a shard that fails on one rank raises on every rank
    out = []
    for model, (state, result) in zip(copies, states):
        model.load_state_dict(state)
        out.append((model, result))
    _warn_of_shards_at_chance([result for _, result in out], val, who, num_shards or len(models))
    return out


def _check_jobs(models, graphs, seeds) -> list[int]:
    """The seeds of the shard jobs (``0 .. S-1`` by default); ValueError for a count that differs or an empty graph."""
    if len(models) != len(graphs):
        raise ValueError("one model per graph is needed")
    seeds = list(range(len(models))) if seeds is None else list(seeds)
    if len(seeds) != len(models):
        raise ValueError("one seed per model is needed")
    for j, graph in enumerate(graphs):
        if graph[EDGE].edge_index.size(1) == 0:
            raise ValueError(f"shard graph {j} has no training edges (left): use fewer shards")
    return seeds


def _warn_of_shards_at_chance(results: list[TrainResult], val: HeteroData | None, who: str, num_shards: int) -> None:
    """One warning for the shard models whose best validation AUC is under :func:`~graphforget.train.chance_level`;
    its advice, fewer shards, only where there are several (one holds all the data: its training is at fault)."""
    level = None if val is None else chance_level(val)
    flat = sorted(r.best_val_auc for r in results if level is not None and r.best_val_auc < level)
    if not flat:
        return
    cause = ("each shard holds too little data to learn from; fewer shards (num_shards) give each more"
             if num_shards > 1 else "the one shard holds all the data: train it longer or faster (train.epochs, "
             "train.lr)")
    warn_caller(f"{who}: {len(flat)} of {len(results)} shard models show no preference on validation (best AUC "
                f"{flat[0]:.3f}-{flat[-1]:.3f}, under {level:.3f}): {cause}", NoSignalWarning)


def attention_needs_width(model) -> str:
    """The error of an attention aggregation over shards of ``model``, which has no ``embedding_dim``."""
    return (f"attention aggregation weighs the shards' embeddings, so the model needs embedding_dim (the width of the "
            f"rows embed() returns); {type(model).__name__} has none: set it, or aggregate by 'mean'")


class _FrozenShards(nn.Module):
    """The attention over fixed shard embeddings, as a model :func:`~graphforget.train.train` can fit."""

    def __init__(self, attention: ShardAttention, user_stack: Tensor, item_stack: Tensor):
        super().__init__()
        self.attention = attention
        self.user_stack, self.item_stack = user_stack, item_stack  # plain attributes: not in state_dict

    def forward(self, graph: HeteroData, edge_label_index: Tensor) -> Tensor:
        return self.attention.score(self.user_stack, self.item_stack, edge_label_index)


def train_aggregator(ensemble: ShardedRecommender, graph: HeteroData, objective: Objective,
                     config: TrainConfig | None = None, val: HeteroData | None = None,
                     seed: int | None = 0) -> TrainResult:
    """(Re-)trains ``ensemble.attention`` in place on ``graph`` with the shard models frozen.

    The shard embeddings are computed once on ``graph``, in eval mode as the ensemble serves them (the shards
    are frozen, so they do not change during this training), and the attention is fitted with ``objective`` on
    all edges of ``graph``, early-stopping on ``val``. Only the attention's parameters are trained and
    regularised. A contrastive objective (SGL, SimGCL) trains it with its BPR part: the contrastive term
    regularises the shard encoders, which are frozen here.
    """
    if ensemble.attention is None:
        raise ValueError("the ensemble has mean aggregation: there is no aggregator to train")
    ensemble.attention.reset_parameters(seed)
    # The embeddings the ensemble serves (eval mode): the shards leave training in train mode, where a dropout
    # would draw from the caller's random state and fit the attention to rows that are never served.
    with torch.no_grad(), eval_mode(ensemble):
        user_stack, item_stack = ensemble.shard_embeddings(graph)
    frozen = _FrozenShards(ensemble.attention, user_stack.detach(), item_stack.detach())
    if isinstance(objective, ContrastiveBPRObjective):
        objective = BPRObjective(objective.l2, objective.seed, objective.resample)
    with warnings.catch_warnings():  # no influence function reads the aggregator
        warnings.simplefilter("ignore", NotStationaryWarning)
        warnings.simplefilter("ignore", NoSignalWarning)  # said below, naming the aggregator ("train:" named nothing)
        result = train(frozen, graph, objective, config or TrainConfig(), val)
    if val is not None:
        warn_if_at_chance(result, val, "the ensemble's attention aggregator")
    log.info("trained the aggregator in %.1fs", result.seconds)
    return result
