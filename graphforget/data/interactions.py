"""The interaction graph: one :class:`~torch_geometric.data.HeteroData` for every layer.

Node types ``user`` and ``item`` (``num_nodes`` set), one edge type :data:`EDGE` holding
``edge_index [2, E]`` (local ids) and ``edge_label [E]`` (0/1 float). An optional boolean
``observed [E]`` marks which edges are real interactions: message-passing models propagate over
observed edges only (sampled negatives are supervision, not interactions). Without it every edge
is observed. Everything a method derives from the graph is derived here, in one place (the sparse
adjacency matrix in :mod:`graphforget.data.adjacency`, from :func:`propagation_edges`).
"""
from __future__ import annotations

import copy

import torch
from torch import Tensor
from torch_geometric.data import HeteroData
from torch_geometric.utils import degree

__all__ = [
    "EDGE", "make_interactions", "num_users", "num_items", "message_passing_edges",
    "propagation_edges", "bipartite_to_homogeneous", "symmetric_edge_weight", "edge_positions", "remove_edges",
    "without_edges", "edge_subgraph", "validate_pairs", "pair_keys", "pairs_of_keys", "check_unique_pairs",
    "check_model_fits",
]

EDGE = ("user", "rates", "item")


def make_interactions(edge_index: Tensor, edge_label: Tensor | None = None, num_users: int | None = None,
                      num_items: int | None = None, observed: Tensor | None = None) -> HeteroData:
    """Builds the interaction graph.

    Args:
        edge_index: ``[2, E]`` long tensor of (user, item) local ids, each pair at most once.
        edge_label: ``[E]`` labels in {0, 1}; all ones (implicit feedback) when omitted.
        num_users, num_items: node counts; inferred as ``max id + 1`` when omitted.
        observed: optional ``[E]`` bool mask of real interactions (see module docstring).

    Raises:
        ValueError: on a bad shape, NaN labels, out-of-range ids, or a (user, item) pair stored more than
            once (deleting such a pair would remove one copy only: aggregate repeated ratings first).
    """
    edge_index = torch.as_tensor(edge_index, dtype=torch.long)
    if edge_index.dim() != 2 or edge_index.size(0) != 2:
        raise ValueError(f"edge_index must have shape [2, E], got {list(edge_index.shape)}")
    num_edges = edge_index.size(1)
    if edge_label is None:
        edge_label = torch.ones(num_edges)
    edge_label = torch.as_tensor(edge_label, dtype=torch.float)
    if edge_label.shape != (num_edges,):
        raise ValueError(f"edge_label must have shape [{num_edges}], got {list(edge_label.shape)}")
    if torch.isnan(edge_label).any():
        raise ValueError("edge_label contains NaN")
    if num_edges and edge_index.min() < 0:
        raise ValueError("negative node ids in edge_index")
    num_users = int(edge_index[0].max()) + 1 if num_users is None else int(num_users)
    num_items = int(edge_index[1].max()) + 1 if num_items is None else int(num_items)
    if num_edges and (edge_index[0].max() >= num_users or edge_index[1].max() >= num_items):
        raise ValueError("edge_index holds ids beyond num_users/num_items")
    check_unique_pairs(edge_index, num_items, "edge_index")
    data = HeteroData()
    data["user"].num_nodes = num_users
    data["item"].num_nodes = num_items
    data[EDGE].edge_index = edge_index
    data[EDGE].edge_label = edge_label
    if observed is not None:
        data[EDGE].observed = torch.as_tensor(observed, dtype=torch.bool)
    return data


def num_users(graph: HeteroData) -> int:
    return int(graph["user"].num_nodes)


def num_items(graph: HeteroData) -> int:
    return int(graph["item"].num_nodes)


def check_model_fits(model, graph: HeteroData) -> None:
    """Raises ``ValueError`` when the model's ``num_users``/``num_items`` (where it has them) differ from
    the graph's node counts (indexing its embedding tables would otherwise fail inside torch).
    """
    for node_type, count in (("user", num_users(graph)), ("item", num_items(graph))):
        size = getattr(model, f"num_{node_type}s", None)
        if size is not None and int(size) != count:
            raise ValueError(f"the model has num_{node_type}s={int(size)} but the graph has {count} {node_type}s "
                             f"(graph['{node_type}'].num_nodes): build the model for this graph's node counts")


def message_passing_edges(graph: HeteroData) -> Tensor:
    """The ``[2, E']`` (user, item) edges that carry messages: the observed ones."""
    store = graph[EDGE]
    if "observed" in store:
        return store.edge_index[:, store.observed]
    return store.edge_index


def propagation_edges(graph: HeteroData) -> tuple[Tensor, Tensor]:
    r"""The message-passing edges and their weights in the symmetric normalised adjacency.

    Returns ``(edge_index [2, E'], edge_weight [E'])`` over the observed (user, item) edges. The weight
    is :math:`1/\sqrt{|N_u| |N_i|}`, or the edge store's ``edge_weight`` where one is set: the influence
    code sets it to the whole graph's weights when it runs a model on a subgraph (k-hop locality).
    """
    store = graph[EDGE]
    mask = store.observed if "observed" in store else None
    edge_index = store.edge_index if mask is None else store.edge_index[:, mask]
    if "edge_weight" in store:
        return edge_index, (store.edge_weight if mask is None else store.edge_weight[mask])
    return edge_index, symmetric_edge_weight(edge_index, num_users(graph), num_items(graph))


def bipartite_to_homogeneous(edge_index: Tensor, num_users: int) -> Tensor:
    """``[2, E]`` (user, item) pairs -> ``[2, 2E]`` undirected index with items offset by ``num_users``."""
    user, item = edge_index[0], edge_index[1] + num_users
    return torch.stack([torch.cat([user, item]), torch.cat([item, user])])


def symmetric_edge_weight(edge_index: Tensor, num_users: int, num_items: int, dtype=torch.float) -> Tensor:
    r"""Weights :math:`1/\sqrt{|N_u| |N_i|}` of the symmetric normalised adjacency, one per (user, item) edge."""
    deg_u = degree(edge_index[0], num_users, dtype)
    deg_i = degree(edge_index[1], num_items, dtype)
    return (deg_u[edge_index[0]] * deg_i[edge_index[1]]).clamp(min=1).rsqrt()


def pair_keys(edge_index: Tensor, num_items: int) -> Tensor:
    """One int64 key ``user * num_items + item`` per (user, item) column of ``edge_index [2, E]``.

    The one place pairs become keys: sorting keys sorts pairs by user, then item (row-major order), and
    set operations on pairs (``torch.isin``, ``torch.unique``, ``searchsorted``) become ones on keys.
    Works on a ``[2, E]`` numpy array too.
    """
    return edge_index[0] * num_items + edge_index[1]


def pairs_of_keys(keys: Tensor, num_items: int) -> Tensor:
    """The ``[2, K]`` (user, item) pairs of :func:`pair_keys`' keys ``[K]`` (its inverse)."""
    return torch.stack([keys // num_items, keys % num_items])


def check_unique_pairs(edge_index: Tensor, num_items: int, what: str = "the graph") -> None:
    """Raises ``ValueError`` when a (user, item) pair occurs more than once in ``edge_index [2, E]``.

    The message names the number of duplicated pairs and the first one in storage order.

    Args:
        edge_index: ``[2, E]`` (user, item) local ids.
        num_items: the item count (for the pair key).
        what: how the message names ``edge_index``.
    """
    if edge_index.size(1) < 2:
        return
    _, inverse, counts = torch.unique(pair_keys(edge_index, num_items), return_inverse=True, return_counts=True)
    repeated = counts > 1
    if not bool(repeated.any()):
        return
    first = int(repeated[inverse].nonzero()[0])
    user, item = edge_index[:, first].tolist()
    copies = (inverse == inverse[first]).nonzero().flatten()[:2].tolist()
    raise ValueError(f"{what} holds {int(repeated.sum())} duplicated (user, item) pairs, the first ({user}, {item}) "
                     f"at positions {copies[0]} and {copies[1]}; each pair must be stored once (deleting it would "
                     f"leave the other copy): aggregate them first, e.g. keep the last rating")


def validate_pairs(graph: HeteroData, pairs: Tensor) -> Tensor:
    """Checks a ``[2, R]`` (user, item) request against the graph's node ranges; returns it as long.

    Raises:
        ValueError: for a bad shape, a dtype other than an integer one (a bool mask would be read as ids
            0/1, floats would be truncated), a tensor on the ``meta`` device (no values), unknown ids or
            duplicated pairs.
    """
    pairs = torch.as_tensor(pairs)
    if pairs.dim() != 2 or pairs.size(0) != 2:
        raise ValueError(f"a request must have shape [2, R], got {list(pairs.shape)}")
    if pairs.dtype == torch.bool or pairs.is_floating_point() or pairs.is_complex():
        raise ValueError(f"a request holds integer (user, item) ids, got dtype {pairs.dtype}")
    if pairs.is_meta:
        raise ValueError("a request on the meta device holds no ids: build it on the CPU or the graph's device")
    pairs = pairs.long()
    if pairs.numel():
        if pairs.min() < 0 or pairs[0].max() >= num_users(graph) or pairs[1].max() >= num_items(graph):
            raise ValueError("request holds unknown user or item ids")
        keys = pair_keys(pairs, num_items(graph))
        if keys.unique().numel() != keys.numel():
            raise ValueError("request holds duplicate (user, item) pairs")
    return pairs


#: :func:`without_edges` copies the remaining edges as the runs between at most this many removed ones, beyond
#: which it gathers: each run is one more slice to concatenate (1000 runs measured faster than the gather on 2e6
#: and 2e7 pairs: 0.045 s against 0.076 s, 0.33 s against 0.88 s).
MAX_RUNS = 1024


def edge_positions(graph: HeteroData, pairs: Tensor) -> Tensor:
    """Positions in ``graph[EDGE].edge_index`` of the ``[2, R]`` (user, item) pairs.

    Raises:
        ValueError: on unknown ids, duplicates, or pairs that are not edges of the graph.
    """
    pairs = validate_pairs(graph, pairs)
    edge_index = graph[EDGE].edge_index
    # Only the edges of the requested users can match: sort those, not the whole graph (a request
    # is usually small, the graph large).
    requested_user = torch.zeros(num_users(graph), dtype=torch.bool, device=edge_index.device)
    requested_user[pairs[0].to(edge_index.device)] = True
    candidates = requested_user[edge_index[0]].nonzero().flatten()
    sorted_keys, order = pair_keys(edge_index[:, candidates], num_items(graph)).sort()
    wanted = pair_keys(pairs, num_items(graph)).to(sorted_keys.device)
    slot = torch.searchsorted(sorted_keys, wanted).clamp(max=max(len(sorted_keys) - 1, 0))
    found = sorted_keys[slot] == wanted if len(sorted_keys) else torch.zeros_like(wanted, dtype=torch.bool)
    if not bool(found.all()):
        missing = pairs[:, ~found.cpu()][:, :5].t().tolist()
        raise ValueError(f"{int((~found).sum())} requested pairs are not edges of the graph, e.g. {missing}")
    return candidates[order[slot]]


def edge_subgraph(graph: HeteroData, keep: Tensor) -> HeteroData:
    """A new graph with the same nodes and the edges selected by ``keep`` (mask or positions).

    Every node attribute (``num_nodes``, ``raw_id``, ...) is kept as it is, and every per-edge attribute
    of :data:`EDGE` is selected with the edges (PyG's :meth:`~torch_geometric.data.HeteroData.edge_subgraph`).
    The stores are new objects: assigning to the result's attributes leaves ``graph`` untouched.
    """
    return graph.edge_subgraph({EDGE: torch.as_tensor(keep)})


def without_edges(graph: HeteroData, pairs: Tensor) -> tuple[HeteroData, Tensor]:
    """The graph minus a request: every unlearning method's remaining graph comes from here.

    Args:
        graph: the interactions.
        pairs: ``[2, R]`` (user, item) edges of ``graph`` to remove, each at most once.

    Returns:
        ``(remaining, positions)``: ``remaining`` holds the same nodes with every node attribute
        (``num_nodes``, ``raw_id``, ...) and every other edge, in its order, with its per-edge attributes
        (:func:`edge_subgraph`); ``positions [R]`` index the pairs in ``graph[EDGE].edge_index``, in request
        order. ``graph`` is not modified.

    Raises:
        ValueError: on a badly shaped or typed request, unknown ids, duplicates, or pairs that are not
            edges of ``graph`` (see :func:`edge_positions`).
    """
    positions = edge_positions(graph, pairs)
    if positions.numel() <= MAX_RUNS:
        return _kept_runs(graph, positions), positions
    edge_index = graph[EDGE].edge_index
    keep = torch.ones(edge_index.size(1), dtype=torch.bool, device=edge_index.device)
    keep[positions] = False
    # Positions rather than the mask: PyG then gathers with index_select, faster on every edge of a large graph.
    return edge_subgraph(graph, keep.nonzero().flatten()), positions


def _kept_runs(graph: HeteroData, positions: Tensor) -> HeteroData:
    """:func:`edge_subgraph` of every edge but ``positions``, each per-edge attribute copied as the runs of
    edges between them: contiguous copies instead of a gather over every edge."""
    cuts = positions.sort().values.tolist()
    starts, ends = [0] + [c + 1 for c in cuts], cuts + [graph[EDGE].edge_index.size(1)]
    runs = [(start, end - start) for start, end in zip(starts, ends) if end > start]
    data = copy.copy(graph)  # as PyG's edge_subgraph: new stores, the same node attributes
    store, new_store = graph[EDGE], data[EDGE]
    for key, value in store.items():
        if store.is_edge_attr(key):
            dim = graph.__cat_dim__(key, value, store)
            new_store[key] = (torch.cat([value.narrow(dim, start, size) for start, size in runs], dim) if runs
                              else value.narrow(dim, 0, 0).clone())
    return data


def remove_edges(graph: HeteroData, pairs: Tensor) -> HeteroData:
    """A new graph without the ``[2, R]`` (user, item) pairs: :func:`without_edges`' remaining graph."""
    return without_edges(graph, pairs)[0]
