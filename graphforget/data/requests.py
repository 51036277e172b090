"""Request samplers: which training interactions a user asks to forget.

A request is a ``[2, R]`` long tensor of (user, item) pairs that are edges of the training graph.
"""
from __future__ import annotations

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from .interactions import EDGE, edge_subgraph, num_users

__all__ = ["random_edges", "user_edges", "attack_flip", "request_nodes"]


def _count(graph: HeteroData, ratio: float) -> int:
    if not 0 < ratio < 1:
        raise ValueError(f"ratio must be in (0, 1), got {ratio}")
    return max(1, int(round(ratio * graph[EDGE].edge_index.size(1))))


def random_edges(graph: HeteroData, ratio: float, seed: int = 0) -> Tensor:
    """A uniformly random ``ratio`` of the training edges."""
    gen = torch.Generator().manual_seed(seed)
    pick = torch.randperm(graph[EDGE].edge_index.size(1), generator=gen)[:_count(graph, ratio)]
    return graph[EDGE].edge_index[:, pick.sort().values]


def user_edges(graph: HeteroData, users) -> Tensor:
    """All training edges of the given users (a user who leaves the service)."""
    users = torch.as_tensor(users, dtype=torch.long).flatten()
    if users.numel() == 0:
        raise ValueError("no users given")
    if users.min() < 0 or users.max() >= num_users(graph):
        raise ValueError("unknown user ids")
    ei = graph[EDGE].edge_index
    return ei[:, torch.isin(ei[0], users)]


def attack_flip(graph: HeteroData, ratio: float, seed: int = 0) -> tuple[HeteroData, Tensor]:
    """The IFRU attack: flip the labels of a random ``ratio`` of training edges.

    Returns the attacked graph (a copy; the input is not modified) and the flipped edges, which
    form the request to unlearn.
    """
    gen = torch.Generator().manual_seed(seed)
    ei = graph[EDGE].edge_index
    pick = torch.randperm(ei.size(1), generator=gen)[:_count(graph, ratio)].sort().values
    attacked = edge_subgraph(graph, torch.ones(ei.size(1), dtype=torch.bool))
    label = graph[EDGE].edge_label.clone()
    label[pick] = 1 - label[pick]
    attacked[EDGE].edge_label = label
    return attacked, ei[:, pick]


def request_nodes(request: Tensor) -> tuple[Tensor, Tensor]:
    """The users and items of a request, ``V(D_r)``, as two sorted id tensors."""
    return request[0].unique(), request[1].unique()
