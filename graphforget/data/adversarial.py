"""The UnlearnRec attack: inject each user's least-preferred item as a fake interaction.

Chen, Xia, Huang, "Pre-training for Recommendation Unlearning", SIGIR 2025, Sec. 4.1: a clean trained
model scores every item for a user; the lowest-scored item the user has not interacted with is added
as a positive edge. Training on these edges degrades the model, so unlearning them should restore it.
"""
from __future__ import annotations

import numbers

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from ..config import eval_mode, is_integer, seeded
from .interactions import (EDGE, check_model_fits, check_pairs_in_range, edge_subgraph, finite_scores, num_items,
                           num_users)

__all__ = ["adversarial_edges"]


@torch.no_grad()
def adversarial_edges(model, graph: HeteroData, fraction: float = 1.0, seed: int = 0,
                      batch_size: int = 1024, held_out: Tensor | None = None) -> tuple[HeteroData, Tensor]:
    r"""Adds, for each selected user :math:`u`, the edge :math:`(u, \arg\min_{i \notin N(u)} \hat y_{ui})`.

    :math:`N(u)` holds every item of an edge of ``u`` in ``graph`` (any label, observed or not), and of a
    ``held_out`` pair of ``u``, so a fake edge never duplicates one, nor trains on a validation or test pair.
    Users whose every item is taken so are skipped.

    Args:
        model: a clean trained :class:`~graphforget.models.Recommender`, scored on ``graph``.
        graph: the clean training interactions (not modified).
        fraction: share of users attacked, in ``(0, 1]``; below 1 a seeded random subset.
        seed: seed of that subset.
        batch_size: users scored at once by ``model.score_all``.
        held_out: ``[2, H]`` (user, item) pairs of the validation and test sets (ids of ``graph``).

    Returns:
        ``(attacked, request)``: a new graph with the fake edges appended (label 1, observed) and the
        ``[2, R]`` fake (user, item) edges, sorted by user: the request to unlearn.

    Raises:
        ValueError: a ``fraction`` or ``batch_size`` out of range, ``held_out`` not a ``[2, H]`` integer tensor of
            ids in range, a model built for other node counts than ``graph``'s, or non-finite scores.
    """
    # a bool had attacked every user, a tensor or a string failed in Python's round or comparison (a QA probe)
    if isinstance(fraction, bool) or not isinstance(fraction, numbers.Real) or not 0 < float(fraction) <= 1:
        raise ValueError(f"fraction must be a number in (0, 1], got {fraction!r}")
    fraction = float(fraction)
    if not (is_integer(batch_size) and batch_size >= 1):  # 2.0 failed inside torch's split
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    check_model_fits(model, graph)  # a larger item table drew fake items the graph does not have
    n_users = num_users(graph)
    if held_out is not None:  # user -1 had marked the last user's item taken, and moved its fake edge
        check_pairs_in_range(held_out, n_users, num_items(graph), "held_out", "H")
    edge_index = graph[EDGE].edge_index
    device = edge_index.device
    taken = edge_index if held_out is None else torch.cat([edge_index, held_out.to(device)], 1)
    users = torch.arange(n_users, device=device)
    if fraction < 1:
        count = max(1, int(round(fraction * n_users)))
        pick = torch.randperm(n_users, generator=seeded(seed))[:count]
        users = pick.sort().values.to(device)
    picked_users, picked_items = [], []
    with eval_mode(model):  # every submodule's own flag restored afterwards
        for batch in users.split(batch_size):
            scores = finite_scores(model.score_all(graph, batch)).clone()
            local = torch.full((n_users,), -1, dtype=torch.long, device=device)
            local[batch] = torch.arange(batch.numel(), device=device)
            mine = local[taken[0]] >= 0
            scores[local[taken[0][mine]], taken[1][mine]] = float("inf")
            best = scores.argmin(dim=1)
            free = torch.isfinite(scores.gather(1, best[:, None]).squeeze(1))
            picked_users.append(batch[free])
            picked_items.append(best[free])
    request = torch.stack([torch.cat(picked_users), torch.cat(picked_items)]) if picked_users else \
        torch.empty(2, 0, dtype=torch.long, device=device)
    return _with_fake_edges(graph, request), request


def _with_fake_edges(graph: HeteroData, request: Tensor) -> HeteroData:
    """A copy of ``graph`` with the ``request`` edges appended (label 1, observed)."""
    edge_index = graph[EDGE].edge_index
    device = edge_index.device
    attacked = edge_subgraph(graph, torch.ones(edge_index.size(1), dtype=torch.bool, device=device))
    store = attacked[EDGE]
    n_new = request.size(1)
    store.edge_index = torch.cat([edge_index, request], 1)
    store.edge_label = torch.cat([graph[EDGE].edge_label, torch.ones(n_new, device=device)])
    if "observed" in store:
        store.observed = torch.cat([graph[EDGE].observed, torch.ones(n_new, dtype=torch.bool, device=device)])
    for key in set(store.keys()) - {"edge_index", "edge_label", "observed"}:
        del store[key]  # per-edge extras (timestamps, weights) have no value for the fake edges
    return attacked

