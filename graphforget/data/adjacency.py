r"""The symmetric normalised adjacency :math:`\tilde{\mathbf{A}}` of the interaction graph (and its 0/1
adjacency) as a sparse CSR matrix over homogeneous node ids (users ``0..U-1``, items ``U..U+I-1``), and a
cache of them."""
from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import torch
from torch import Tensor, nn
from torch_geometric.data import HeteroData
from torch_geometric.index import index2ptr, ptr2index
from torch_geometric.utils import to_torch_csr_tensor

from ..config import is_integer
from .interactions import (EDGE, bipartite_to_homogeneous, check_pairs_in_range, check_unique_pairs,
                           message_passing_edges, num_items, num_users, propagation_edges, symmetric_edge_weight)

__all__ = ["PROPAGATION_KEYS", "bipartite_adjacency", "normalized_adjacency", "observed_adjacency", "AdjacencyPattern",
           "AdjacencyCache", "hold_graph", "quiet_csr"]

#: The per-edge attributes of :data:`~graphforget.data.EDGE` that :func:`normalized_adjacency` and
#: :func:`observed_adjacency` read (through :func:`~graphforget.data.propagation_edges`).
PROPAGATION_KEYS = ("edge_index", "observed", "edge_weight")


@contextlib.contextmanager
def quiet_csr() -> Iterator[None]:
    """Builds sparse CSR tensors without torch's notices (its CSR support is in beta; invariant checks are
    off unless asked for), which address torch's users, not ours: our indices are built, not given."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse (CSR tensor support|invariant checks)")
        yield


def bipartite_adjacency(edge_index: Tensor, edge_weight: Tensor, num_users: int, num_items: int,
                        like: Tensor | None = None) -> Tensor:
    """The ``[U + I, U + I]`` symmetric CSR matrix with ``edge_weight[e]`` at ``(u, U + i)`` and ``(U + i, u)``
    for each (user, item) column ``e`` of ``edge_index [2, E]`` (PyG's
    :func:`~torch_geometric.utils.to_torch_csr_tensor`); on ``like``'s device and dtype when given.

    Raises:
        ValueError: ``edge_index`` is not ``[2, E]`` integer ids in range (a user id past the users is an item's
            node: the matrix would join two items), or holds a pair twice (the matrix would sum its two entries:
            a graph built by hand was propagated so by every model's scoring); ``edge_weight`` is not ``[E]``
            (7 weights for 4 edges had built an asymmetric matrix, ``[E, 1]`` ones a hybrid one).
    """
    check_pairs_in_range(edge_index, num_users, num_items, "edge_index", "E")
    if not isinstance(edge_weight, Tensor) or tuple(edge_weight.shape) != (edge_index.size(1),):
        got = list(edge_weight.shape) if isinstance(edge_weight, Tensor) else f"a {type(edge_weight).__name__}"
        raise ValueError(f"edge_weight must be a [{edge_index.size(1)}] tensor, one weight per edge, got {got}")
    if like is not None:
        edge_index, edge_weight = edge_index.to(like.device), edge_weight.to(like)
    size = num_users + num_items
    with quiet_csr():
        adjacency = to_torch_csr_tensor(bipartite_to_homogeneous(edge_index, num_users),
                                        torch.cat([edge_weight, edge_weight]), size=(size, size))
    if adjacency.values().numel() < 2 * edge_index.size(1):  # entries merged: free to see, named only then
        check_unique_pairs(edge_index, num_items, "edge_index")
    return adjacency


def normalized_adjacency(graph: HeteroData, like: Tensor | None = None) -> Tensor:
    r""":math:`\tilde{\mathbf{A}} = \mathbf{D}^{-1/2}\mathbf{A}\mathbf{D}^{-1/2}` of the graph's observed edges
    as a CSR matrix ``[U + I, U + I]`` (the graph's ``edge_weight`` in place of the normalisation where
    one is set: see :func:`~graphforget.data.propagation_edges`); on ``like``'s device and dtype when given.

    Building it sorts every edge: several times the cost of one product with it on ML-100K.
    :class:`AdjacencyCache` keeps it for callers that propagate over one graph many times.
    """
    store = graph[EDGE]  # checked here: the degrees of the weights read the ids first
    check_pairs_in_range(store.edge_index, num_users(graph), num_items(graph), "edge_index", "E")
    edge_index, edge_weight = propagation_edges(graph, weight_dtype(like))
    return bipartite_adjacency(edge_index, edge_weight, num_users(graph), num_items(graph), like)


def weight_dtype(like: Tensor | None) -> torch.dtype:
    """The dtype to compute propagation weights in: float64 for a float64 ``like``, else float32 (half precision
    would overflow the degree products)."""
    return torch.float64 if like is not None and like.dtype == torch.float64 else torch.float


def observed_adjacency(graph: HeteroData, like: Tensor | None = None) -> Tensor:
    """The 0/1 adjacency ``[U + I, U + I]`` (CSR) of the graph's observed edges, both directions, unnormalised:
    for a module that normalises by itself; on ``like``'s device and dtype when given."""
    edge_index = message_passing_edges(graph)
    ones = torch.ones(edge_index.size(1), device=edge_index.device)
    return bipartite_adjacency(edge_index, ones, num_users(graph), num_items(graph), like)


@dataclass
class AdjacencyPattern:
    """The symmetric CSR pattern of a graph's observed edges, sorted once: the normalised adjacency of any subset
    of those edges is then read from it without sorting again (SGL draws two edge-dropout views a step; building
    each by :func:`normalized_adjacency` sorted every edge, a third of a step on ML-1M).

    Attributes:
        edge_index: ``[2, E']`` the observed (user, item) edges (:func:`~graphforget.data.message_passing_edges`).
        row: ``[2E']`` the row of each entry of the adjacency, in CSR order.
        col: ``[2E']`` the column of each entry of the adjacency.
        edge: ``[2E']`` the observed edge (its column in ``edge_index``) of each entry.
        num_users: the graph's number of users.
        num_items: the graph's number of items.
    """
    edge_index: Tensor
    row: Tensor
    col: Tensor
    edge: Tensor
    num_users: int
    num_items: int

    @classmethod
    def of(cls, graph: HeteroData, like: Tensor | None = None) -> "AdjacencyPattern":
        """The pattern of ``graph``'s observed edges (``like`` is not read: the signature of
        :class:`AdjacencyCache`'s ``build``).

        Raises:
            ValueError: a pair stored twice: its entry's value would be the sum of two edges' positions.
        """
        edge_index = message_passing_edges(graph)
        check_unique_pairs(edge_index, num_items(graph), "the graph's observed edges")
        users, items = num_users(graph), num_items(graph)
        ids = torch.arange(edge_index.size(1), device=edge_index.device)
        csr = bipartite_adjacency(edge_index, ids, users, items)  # each entry's value: its edge
        return cls(edge_index, ptr2index(csr.crow_indices()), csr.col_indices(), csr.values(), users, items)

    def subset(self, keep: Tensor, like: Tensor | None = None) -> Tensor:
        """:func:`normalized_adjacency` of the graph holding only the observed edges where ``keep`` (``[E']``
        bool) is set, renormalised by their own degrees; on ``like``'s device and dtype when given. The same
        matrix, entry for entry, without a sort.

        Raises:
            ValueError: ``keep`` is not a bool mask of shape ``[E']`` (an integer 0/1 mask would index positions).
        """
        if keep.dtype != torch.bool or tuple(keep.shape) != (self.edge_index.size(1),):
            raise ValueError(f"keep must be a bool mask of shape [{self.edge_index.size(1)}], one entry per observed "
                             f"edge, got {keep.dtype} {list(keep.shape)}")
        dtype = weight_dtype(like)
        weight = torch.zeros(keep.numel(), device=keep.device, dtype=dtype)
        weight[keep] = symmetric_edge_weight(self.edge_index[:, keep], self.num_users, self.num_items, dtype)
        entries = keep[self.edge]
        values = weight[self.edge[entries]]
        values = values if like is None else values.to(like)
        size = self.num_users + self.num_items
        with quiet_csr():  # the kept entries' rows stay sorted
            return torch.sparse_csr_tensor(index2ptr(self.row[entries], size), self.col[entries], values, (size, size))

    def __repr__(self) -> str:
        return (f"AdjacencyPattern(users={self.num_users}, items={self.num_items}, edges={self.edge_index.size(1)}, "
                f"entries={self.row.numel()})")


@dataclass
class _Entry:
    """One cached adjacency with copies of the inputs it was built from."""
    meta: tuple
    inputs: dict[str, Tensor]
    adjacency: Tensor

    def answers(self, meta: tuple, inputs: dict[str, Tensor]) -> bool:
        if meta != self.meta or inputs.keys() != self.inputs.keys():
            return False
        for key, value in inputs.items():
            kept = self.inputs[key]
            if (value.shape, value.dtype, value.device) != (kept.shape, kept.dtype, kept.device):
                return False
        return all(torch.equal(value, self.inputs[key]) for key, value in inputs.items())


@dataclass
class _Hold:
    """A graph held by :meth:`AdjacencyCache.holding`: its entry per (node counts, device, dtype), with the
    tensor objects it was matched for."""
    graph: HeteroData
    found: dict = field(default_factory=dict)  # meta -> (input tensors, entry)


class AdjacencyCache:
    """The normalised adjacencies (:func:`normalized_adjacency`, or what ``build`` makes) of the last few graphs
    its holder ran on.

    A model calls it where it needs :math:`\\tilde{\\mathbf{A}}`: training and influence solves run a model
    on the same graph hundreds of times, and a build costs several propagations.

    Lifetime: that of its holder (each :class:`~graphforget.models.LightGCN` holds one); a copy or a pickle
    of the holder starts with an empty cache, and :meth:`clear` empties it.

    Validity: an entry answers a graph only when the graph's ``PROPAGATION_KEYS`` tensors, its node
    counts, and the requested device and dtype equal those it was built from, value for value. The entry
    keeps copies of those tensors and compares them on every lookup (a fraction of a millisecond on
    ML-100K, against milliseconds for a build). So a graph edited in place, or a new graph with other edges, is
    never served a stale matrix, and a new graph with the same edges (an unlearner's remaining graph, a
    shard graph rebuilt on every call) is served the kept one. Inputs that require gradients are never
    cached: the adjacency must stay differentiable in them.

    A caller that runs the holder many times on a graph it does not edit (a training run: the check is
    about 5% of a LightGCN step on ML-100K on a CPU) holds the graph for that time with :meth:`holding`
    (or :func:`hold_graph`), and the check is skipped for it meanwhile.

    Args:
        size: how many adjacencies are kept (the least recently used is dropped first).
        build: ``(graph, like) -> adjacency``, a function of the graph's ``PROPAGATION_KEYS`` tensors and
            node counts only (:func:`normalized_adjacency`, :func:`observed_adjacency`).
    """

    def __init__(self, size: int = 4, build: Callable[[HeteroData, Tensor], Any] = normalized_adjacency):
        if not (is_integer(size) and size >= 1):
            raise ValueError(f"AdjacencyCache.size: must be an integer >= 1, got {size!r}")
        self.size, self.build = size, build
        self._entries: list[_Entry] = []  # least recently used first
        self._holds: list[_Hold] = []

    def __call__(self, graph: HeteroData, like: Tensor) -> Tensor:
        """The adjacency of ``graph`` on ``like``'s device and dtype, kept or built."""
        store = graph[EDGE]
        inputs = {key: store[key] for key in PROPAGATION_KEYS if key in store}
        if any(value.requires_grad for value in inputs.values()):
            return self.build(graph, like)
        meta = (num_users(graph), num_items(graph), like.device, like.dtype)
        hold = next((hold for hold in self._holds if hold.graph is graph), None)
        if hold is not None and meta in hold.found:
            tensors, entry = hold.found[meta]
            if tensors.keys() == inputs.keys() and all(inputs[key] is value for key, value in tensors.items()):
                return entry.adjacency  # the same tensors, not edited in place: the holder's word
        entry = self._lookup(meta, inputs, graph, like)
        if hold is not None:
            hold.found[meta] = (inputs, entry)
        return entry.adjacency

    def _lookup(self, meta: tuple, inputs: dict[str, Tensor], graph: HeteroData, like: Tensor) -> _Entry:
        """The entry that answers ``inputs`` (most recently used now), or a new one."""
        for position, entry in enumerate(self._entries):
            if entry.answers(meta, inputs):
                self._entries.append(self._entries.pop(position))
                return entry
        entry = _Entry(meta, {key: value.clone() for key, value in inputs.items()}, self.build(graph, like))
        self._entries.append(entry)
        del self._entries[:-self.size]
        return entry

    @contextlib.contextmanager
    def holding(self, graph: HeteroData) -> Iterator["AdjacencyCache"]:
        """For the block, lookups of ``graph`` skip the content check while its edge tensors are the same
        objects: the caller states that it does not edit them in place meanwhile (assigning new ones is
        noticed). Holds nest; each ends with its block."""
        hold = _Hold(graph)
        self._holds.append(hold)
        try:
            yield self
        finally:
            self._holds = [other for other in self._holds if other is not hold]

    def clear(self) -> None:
        """Drops every kept adjacency (held graphs' too)."""
        self._entries.clear()
        for hold in self._holds:
            hold.found.clear()

    def __len__(self) -> int:
        return len(self._entries)

    def __deepcopy__(self, memo) -> "AdjacencyCache":
        return AdjacencyCache(self.size, self.build)

    def __getstate__(self) -> dict:
        return {"size": self.size, "build": self.build}

    def __setstate__(self, state: dict) -> None:
        self.size, self._entries, self._holds = state["size"], [], []
        self.build = state.get("build", normalized_adjacency)  # pickles from before build was an argument

    def __repr__(self) -> str:
        return f"AdjacencyCache(size={self.size}, build={self.build.__qualname__}, kept={len(self)})"


@contextlib.contextmanager
def hold_graph(model: nn.Module, graph: HeteroData) -> Iterator[None]:
    """Holds ``graph`` (:meth:`AdjacencyCache.holding`) in every :class:`AdjacencyCache` of ``model`` and its
    submodules for the block: the caller states that it does not edit the graph in place meanwhile (a
    training run). A model without such a cache is unaffected."""
    caches = [value for module in model.modules() for value in vars(module).values()
              if isinstance(value, AdjacencyCache)]
    with contextlib.ExitStack() as stack:
        for cache in caches:
            stack.enter_context(cache.holding(graph))
        yield
