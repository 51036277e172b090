"""The interaction graph: one :class:`~torch_geometric.data.HeteroData` for every layer.

Node types ``user`` and ``item`` (``num_nodes`` set), one edge type :data:`EDGE` holding
``edge_index [2, E]`` (local ids) and ``edge_label [E]`` (0/1 float). An optional boolean
``observed [E]`` marks which edges are real interactions: message-passing models propagate over
observed edges only (sampled negatives are supervision, not interactions). Without it every edge
is observed. Everything a method derives from the graph is derived here, in one place.
"""
from __future__ import annotations

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

__all__ = [
    "EDGE", "make_interactions", "num_users", "num_items", "message_passing_edges",
    "propagation_edges", "bipartite_to_homogeneous", "symmetric_edge_weight", "edge_positions", "remove_edges",
    "edge_subgraph", "validate_pairs",
]

EDGE = ("user", "rates", "item")


def make_interactions(edge_index: Tensor, edge_label: Tensor | None = None, num_users: int | None = None,
                      num_items: int | None = None, observed: Tensor | None = None) -> HeteroData:
    """Builds the interaction graph.

    Args:
        edge_index: ``[2, E]`` long tensor of (user, item) local ids.
        edge_label: ``[E]`` labels in {0, 1}; all ones (implicit feedback) when omitted.
        num_users, num_items: node counts; inferred as ``max id + 1`` when omitted.
        observed: optional ``[E]`` bool mask of real interactions (see module docstring).
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
    deg_u = torch.bincount(edge_index[0], minlength=num_users).to(dtype)
    deg_i = torch.bincount(edge_index[1], minlength=num_items).to(dtype)
    return (deg_u[edge_index[0]] * deg_i[edge_index[1]]).clamp(min=1).rsqrt()


def _pair_keys(edge_index: Tensor, num_items: int) -> Tensor:
    return edge_index[0] * num_items + edge_index[1]


def validate_pairs(graph: HeteroData, pairs: Tensor) -> Tensor:
    """Checks a ``[2, R]`` (user, item) request against the graph's node ranges; returns it as long."""
    pairs = torch.as_tensor(pairs)
    if pairs.dim() != 2 or pairs.size(0) != 2:
        raise ValueError(f"a request must have shape [2, R], got {list(pairs.shape)}")
    if pairs.is_floating_point():
        raise ValueError("a request holds integer (user, item) ids, got floats")
    pairs = pairs.long()
    if pairs.numel():
        if pairs.min() < 0 or pairs[0].max() >= num_users(graph) or pairs[1].max() >= num_items(graph):
            raise ValueError("request holds unknown user or item ids")
        keys = _pair_keys(pairs, num_items(graph))
        if keys.unique().numel() != keys.numel():
            raise ValueError("request holds duplicate (user, item) pairs")
    return pairs


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
    sorted_keys, order = _pair_keys(edge_index[:, candidates], num_items(graph)).sort()
    wanted = _pair_keys(pairs, num_items(graph)).to(sorted_keys.device)
    slot = torch.searchsorted(sorted_keys, wanted).clamp(max=max(len(sorted_keys) - 1, 0))
    found = sorted_keys[slot] == wanted if len(sorted_keys) else torch.zeros_like(wanted, dtype=torch.bool)
    if not bool(found.all()):
        missing = pairs[:, ~found.cpu()][:, :5].t().tolist()
        raise ValueError(f"{int((~found).sum())} requested pairs are not edges of the graph, e.g. {missing}")
    return candidates[order[slot]]


def edge_subgraph(graph: HeteroData, keep: Tensor) -> HeteroData:
    """A new graph with the same nodes and the edges selected by ``keep`` (mask or positions)."""
    out = HeteroData()
    out["user"].num_nodes = num_users(graph)
    out["item"].num_nodes = num_items(graph)
    for key, value in graph[EDGE].items():
        out[EDGE][key] = value[:, keep] if key == "edge_index" else value[keep]
    return out


def remove_edges(graph: HeteroData, pairs: Tensor) -> HeteroData:
    """A new graph without the ``[2, R]`` (user, item) pairs; the input graph is not modified."""
    keep = torch.ones(graph[EDGE].edge_index.size(1), dtype=torch.bool, device=graph[EDGE].edge_index.device)
    keep[edge_positions(graph, pairs)] = False
    return edge_subgraph(graph, keep)
