"""Request samplers: which training interactions a user asks to forget.

A request is a ``[2, R]`` long tensor of (user, item) pairs that are edges of the training graph.
"""
from __future__ import annotations

import numbers

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from ..config import is_integer_tensor, seeded
from .interactions import (EDGE, check_interactions, check_pair_tensor, check_unique_pairs, edge_subgraph, num_items,
                           num_users)

__all__ = ["random_edges", "user_edges", "attack_flip", "request_nodes"]


def check_ratio(ratio: float, what: str = "ratio") -> float:
    """``ratio`` as a float in ``(0, 1)``, else ``ValueError`` naming ``what``: a string or a tensor had failed
    with Python's or torch's own TypeError, and a bool had been read as 0 or 1."""
    if isinstance(ratio, bool) or not isinstance(ratio, numbers.Real):
        raise ValueError(f"{what} must be a number in (0, 1), got {ratio!r}")
    ratio = float(ratio)
    if not 0 < ratio < 1:
        raise ValueError(f"{what} must be in (0, 1), got {ratio}")
    return ratio


def _count(graph: HeteroData, ratio: float) -> int:
    return max(1, int(round(check_ratio(ratio) * graph[EDGE].edge_index.size(1))))


def _candidates(graph: HeteroData, observed_only: bool) -> Tensor:
    """Positions of the edges a request may hold: the observed ones, or every edge."""
    store = graph[EDGE]
    if observed_only and "observed" in store:
        return store.observed.nonzero().flatten()
    return torch.arange(store.edge_index.size(1), device=store.edge_index.device)


def _check_graph(graph: HeteroData) -> None:
    """The checks of a graph a request is drawn from: a hand-built one may hold ids out of range or a pair twice."""
    check_interactions(graph)
    check_unique_pairs(graph[EDGE].edge_index, num_items(graph), "the graph")


def random_edges(graph: HeteroData, ratio: float, seed: int = 0, observed_only: bool = True) -> Tensor:
    """A uniformly random ``ratio`` of the training edges, in storage order.

    Args:
        graph: the training interactions.
        ratio: share of the candidate edges, in ``(0, 1)`` (at least one edge is drawn).
        seed: seed of the draw.
        observed_only: draw from the observed edges only (sampled negatives, ``observed == False``, are
            supervision rather than interactions a user could ask to forget); ``ratio`` is then a share
            of the observed edges. Without an ``observed`` mask every edge is observed.

    Raises:
        ValueError: when ``ratio`` is outside ``(0, 1)``, the graph fails :func:`check_interactions` (an id out of
            range had been drawn into the request) or :func:`check_unique_pairs` (a pair stored twice had been drawn
            twice, which :func:`remove_edges` refuses), or there is no candidate edge.
    """
    ratio = check_ratio(ratio)
    _check_graph(graph)
    candidates = _candidates(graph, observed_only)
    if candidates.numel() == 0:
        raise ValueError("the graph has no observed edges to draw a request from")
    gen = seeded(seed)
    count = max(1, int(round(ratio * candidates.numel())))
    pick = torch.randperm(candidates.numel(), generator=gen)[:count].to(candidates.device)
    return graph[EDGE].edge_index[:, candidates[pick].sort().values]


def user_edges(graph: HeteroData, users, observed_only: bool = True) -> Tensor:
    """All training edges of the given users (a user who leaves the service), in storage order.

    Args:
        graph: the training interactions.
        users: user ids (any shape).
        observed_only: keep the observed edges only (not the sampled negatives, ``observed == False``).

    Raises:
        ValueError: when no user is given, an id is not an integer or is outside ``[0, num_users)``, or the graph
            fails :func:`check_interactions` (a short or integer ``observed`` mask failed inside torch) or
            :func:`check_unique_pairs`.
    """
    try:
        users = torch.as_tensor(users).flatten()
    except (TypeError, ValueError, RuntimeError):  # a string, None, ragged lists
        raise ValueError(f"user ids are a tensor, array or list of integers, got a {type(users).__name__}") from None
    if users.numel() == 0:  # first: [] has torch's default float dtype
        raise ValueError("no users given")
    if not is_integer_tensor(users):
        raise ValueError(f"user ids must be integers, got dtype {users.dtype}")
    users = users.long()
    _check_graph(graph)
    if users.min() < 0 or users.max() >= num_users(graph):
        raise ValueError(f"unknown user ids: expected ids in [0, {num_users(graph)}), got {users.tolist()[:10]}")
    ei = graph[EDGE].edge_index
    keep = torch.isin(ei[0], users.to(ei.device))
    if observed_only and "observed" in graph[EDGE]:
        keep &= graph[EDGE].observed
    return ei[:, keep]


def attack_flip(graph: HeteroData, ratio: float, seed: int = 0) -> tuple[HeteroData, Tensor]:
    """The IFRU attack: flip the labels of a random ``ratio`` of training edges.

    Returns the attacked graph (a copy; the input is not modified) and the flipped edges, which
    form the request to unlearn.

    Raises:
        ValueError: a ``ratio`` that is not a number in ``(0, 1)``, an ``edge_label`` other than 0 or 1 (raw ratings:
            binarise first), or a graph without edges.
    """
    check_ratio(ratio)
    check_interactions(graph)  # before graph[EDGE], which PyG adds to a graph without it (a PyG dataset's layout)
    label = graph[EDGE].edge_label
    if graph[EDGE].edge_index.size(1) == 0:  # the count promises at least one: an empty request came back silently
        raise ValueError("attack_flip: the graph has no edges to flip")
    if not bool(((label == 0) | (label == 1)).all()):
        raise ValueError("attack_flip flips 0/1 labels, but edge_label holds other values (raw ratings?): binarise "
                         "first with graphforget.data.binarize(graph, threshold)")
    gen = seeded(seed)
    ei = graph[EDGE].edge_index
    pick = torch.randperm(ei.size(1), generator=gen)[:_count(graph, ratio)].sort().values
    attacked = edge_subgraph(graph, torch.ones(ei.size(1), dtype=torch.bool))
    label = graph[EDGE].edge_label.clone()
    label[pick] = (label[pick] == 0).to(label.dtype)  # 1 - label failed on bool labels, which train takes
    attacked[EDGE].edge_label = label
    return attacked, ei[:, pick]


def request_nodes(request: Tensor) -> tuple[Tensor, Tensor]:
    """The users and items of a request, ``V(D_r)``, as two sorted id tensors.

    Raises:
        ValueError: ``request`` is not a ``[2, R]`` integer tensor (float ids had come back as ids, a third row
            had been ignored).
    """
    check_pair_tensor(request, "request", "R")
    return request[0].unique(), request[1].unique()
