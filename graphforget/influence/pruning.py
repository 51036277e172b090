"""Importance-based pruning of the parameters to update (IFRU, Zhang et al., TORS 2024, Algorithm 1)."""
from __future__ import annotations

import math
from typing import cast
from fractions import Fraction

import torch
from torch import Tensor
from torch_geometric.data import HeteroData
from torch_geometric.utils import degree

from ..data.interactions import check_pair_ids, check_pair_tensor, message_passing_edges, num_items, num_users
from .graph import check_hops, homogeneous_graph

__all__ = ["importance_scores", "select_nodes", "message_passing_degrees"]


def message_passing_degrees(graph: HeteroData) -> Tensor:
    """``[U + I]`` degrees of the users then the items in the message-passing (observed) edges."""
    user, item = message_passing_edges(graph)
    return torch.cat([degree(user, num_users(graph)), degree(item, num_items(graph))])


def importance_scores(graph: HeteroData, request: Tensor, hops: int, degrees: Tensor | None = None) -> Tensor:
    r"""Importance of every node at orders :math:`0..K` for a request, as ``[K + 1, U + I]`` (float64).

    .. math::
        s^0_v = \sum_{(v, \cdot) \in D_r} \frac{1}{|N_v|}, \qquad
        s^k_{v'} = \sum_{v \in N_{v'}} \frac{s^{k-1}_v}{|N_{v'}|} \quad (k = 1..K),

    i.e. :math:`s^k = D^{-1} A s^{k-1}`: one sparse matrix-vector product per order, on the graph's
    device. :math:`|N_v|` are degrees in the (original) message-passing graph: ``degrees``
    (:func:`message_passing_degrees`) when the caller keeps them, else counted here (a scan of every edge).

    Raises:
        ValueError: ``hops`` is not an integer >= 0, ``request`` is not ``[2, R]`` (user, item) ids of the graph, or
            ``degrees`` is not ``[U + I]``.
    """
    check_hops(hops)
    check_pair_tensor(request, "request", "R")
    check_pair_ids(request, graph, "request")
    users = num_users(graph)
    if degrees is not None and tuple(degrees.shape) != (users + num_items(graph),):  # torch's IndexError named none
        raise ValueError(f"degrees must be [U + I] = [{users + num_items(graph)}], one per node, got "
                         f"{list(degrees.shape)}")
    # float64: equal scores reached by other sums must stay equal for select_nodes' tie-break by id (in float32
    # 13/54 came out as 0.24074073 and 0.24074076, and the node of the larger id was kept)
    deg = (message_passing_degrees(graph) if degrees is None else degrees).double().clamp(min=1)
    s = torch.zeros(deg.numel(), dtype=torch.float64, device=deg.device)
    s.index_add_(0, torch.cat([request[0], request[1] + users]), s.new_ones(2 * request.size(1)))
    scores = [s / deg]
    edge_index = homogeneous_graph(graph)[0] if hops else None  # built only to propagate
    for _ in range(hops):
        prev = scores[-1]
        edges = cast(Tensor, edge_index)  # built where hops > 0
        nxt = torch.zeros_like(prev).index_add_(0, edges[1], prev[edges[0]]) / deg
        scores.append(nxt)
    return torch.stack(scores)


def select_nodes(scores: Tensor, ratios: tuple[float, ...] | None, always: Tensor | None = None) -> Tensor:
    """Kept nodes: at each order k, the top ``ratios[k]`` fraction of the nodes with a positive score.

    Ties are broken by the smaller node id (deterministic). ``ratios=None`` keeps every node with a
    positive score at some order. ``always`` (the request's endpoints, by default in IFRU) are kept
    whatever their rank. Returns a ``[U + I]`` bool mask.

    Raises:
        ValueError: ``scores`` is not ``[K + 1, U + I]`` (:func:`importance_scores`'), or ``ratios`` is not one ratio
            in ``[0, 1]`` per order.
    """
    if not (isinstance(scores, Tensor) and scores.dim() == 2):  # a [U + I] one failed inside torch
        raise ValueError(f"scores must be [K + 1, U + I] (importance_scores'), got "
                         f"{list(scores.shape) if isinstance(scores, Tensor) else type(scores).__name__}")
    keep = torch.zeros(scores.size(1), dtype=torch.bool, device=scores.device)
    if ratios is not None and len(ratios) != scores.size(0):
        raise ValueError(f"need {scores.size(0)} pruning ratios (orders 0..{scores.size(0) - 1}), got {len(ratios)}")
    if ratios is not None and not all(0 <= ratio <= 1 for ratio in ratios):
        raise ValueError(f"pruning ratios must be in [0, 1], got {tuple(ratios)}")
    for k, s in enumerate(scores):
        candidates = (s > 0).nonzero().flatten()
        ratio = 1.0 if ratios is None else ratios[k]
        count = _top_count(ratio, candidates.numel())
        if count == 0:
            continue
        # Stable sort on descending score keeps equal scores in ascending id order. Scores equal in exact arithmetic
        # can differ in their last bits (0.1 + 0.2 and 0.3): ranked on their 32 leading bits (relative to each
        # score: on 32 bits of the ratio to the largest, 1e-11 and 3e-11 of it were both 0, and tied).
        mantissa, exponent = torch.frexp(s[candidates].double())
        level = torch.ldexp(torch.round(mantissa * 2.0 ** 32), exponent - 32)  # exact: a power of two
        order = torch.sort(-level, stable=True).indices[:count]
        keep[candidates[order]] = True
    if always is not None:
        keep[always] = True
    return keep


def _top_count(ratio: float, count: int) -> int:
    """``ceil(ratio * count)`` for the ratio as written (``repr``: the shortest decimal that reads back as it), so
    0.07 of 100 candidates is 7, where float arithmetic gives ceil(7.000000000000001) = 8."""
    return math.ceil(Fraction(repr(float(ratio))) * count)
