"""k-core filtering, label binarisation, the random split by interaction, sampled negatives."""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import HeteroData
from torch_geometric.utils import degree

from ..config import is_integer, is_real, seeded
from .interactions import (EDGE, check_interactions, check_unique_pairs, edge_subgraph, node_values, num_items,
                           num_users, pair_keys, pairs_of_keys)

log = logging.getLogger(__name__)

__all__ = ["k_core", "binarize", "Split", "random_split", "add_negatives", "relabel"]


def _check_graph(graph: HeteroData, where: str) -> None:
    """What :func:`~graphforget.data.make_interactions` checks, for a graph built by hand: out-of-range or float ids,
    a missing label, NaN labels, a pair stored twice (a repeated id read another pair's key or a random row;
    a repeated pair counted twice toward a k-core)."""
    check_interactions(graph)
    labels = graph[EDGE].edge_label
    if bool(labels.isnan().any()):
        raise ValueError(f"{where}: {int(labels.isnan().sum())} edge_label values are NaN")
    check_unique_pairs(graph[EDGE].edge_index, num_items(graph))


def relabel(graph: HeteroData, keep_users: Tensor, keep_items: Tensor, edge_mask: Tensor) -> HeteroData:
    """Keeps the masked nodes and edges and renumbers nodes contiguously.

    Every node attribute (``raw_id``, ...) is selected with its nodes, every edge attribute with its edges
    (PyG's :meth:`~torch_geometric.data.HeteroData.subgraph`); edge order is kept. A node type without a ``raw_id``
    gets one: its nodes' ids in ``graph`` (a request in those ids had hit other nodes, silently).

    Args:
        graph: the interactions.
        keep_users, keep_items: ``[num_users]`` / ``[num_items]`` bool masks of the nodes to keep.
        edge_mask: ``[E]`` bool mask of the edges to keep; they must join kept nodes only.

    Raises:
        ValueError: a malformed graph (:func:`~graphforget.data.check_interactions`), a mask that is not bool or of
            the wrong length, or a masked edge that touches a node that is not kept (naming how many do).
    """
    check_interactions(graph)
    ei = graph[EDGE].edge_index
    sizes = {"keep_users": num_users(graph), "keep_items": num_items(graph), "edge_mask": ei.size(1)}
    for name, mask in zip(sizes, (keep_users, keep_items, edge_mask)):
        if mask.dtype != torch.bool or tuple(mask.shape) != (sizes[name],):
            raise ValueError(f"{name} must be a bool mask of shape [{sizes[name]}], got {mask.dtype} "
                             f"{list(mask.shape)}")
    orphans = edge_mask & ~(keep_users[ei[0]] & keep_items[ei[1]])
    if bool(orphans.any()):
        raise ValueError(f"edge_mask keeps {int(orphans.sum())} edges of dropped users or items")
    return _relabel(graph, keep_users, keep_items, edge_mask)


def _relabel(graph: HeteroData, keep_users: Tensor, keep_items: Tensor, edge_mask: Tensor) -> HeteroData:
    """:func:`relabel` without its checks: for k_core and random_split, which checked the graph and built the masks."""
    masks = {"user": keep_users, "item": keep_items}
    out = edge_subgraph(graph, edge_mask)
    for node, mask in masks.items():  # the nodes keep their ids in graph as raw ids where it holds none
        if "raw_id" not in out[node]:
            out[node].raw_id = torch.arange(mask.numel(), device=out[EDGE].edge_index.device)  # with the graph
    # numpy node attributes (string raw ids) are selected here: PyG indexes them with the torch mask, which numpy
    # reads as an integer when it has one element (a file of one user failed with an IndexError)
    arrays = {(node, key): out[node][key] for node in masks for key in list(out[node].keys())
              if isinstance(out[node][key], np.ndarray)}
    for node, key in arrays:
        del out[node][key]
    out = out.subgraph(masks)
    for (node, key), values in arrays.items():
        out[node][key] = node_values(values, masks[node])
    return out


def k_core(graph: HeteroData, k: int) -> HeteroData:
    """Iteratively drops users and items with fewer than ``k`` edges (``k = 0`` returns the graph as it is).

    Every edge counts, sampled negatives (``observed == False``) too: the attack protocol's Book-Crossing file holds
    one per interaction, and its 5-core is defined so (counting only interactions would make it another dataset).

    Raises:
        ValueError: ``k`` is not an integer >= 0, or the graph is not one :func:`~graphforget.data.make_interactions`
            would build (an id out of range, a NaN label, a pair stored twice).
    """
    if not (is_integer(k) and k >= 0):
        raise ValueError(f"k must be an integer >= 0, got {k!r}")
    _check_graph(graph, "k_core")
    if k < 1:
        return graph
    ei = graph[EDGE].edge_index
    alive = torch.ones_like(ei[0], dtype=torch.bool)  # on the graph's device
    while True:
        deg_u = degree(ei[0][alive], num_users(graph))
        deg_i = degree(ei[1][alive], num_items(graph))
        still = alive & (deg_u[ei[0]] >= k) & (deg_i[ei[1]] >= k)
        if torch.equal(still, alive):
            break
        alive = still
    return _relabel(graph, deg_u >= k, deg_i >= k, alive)


def binarize(graph: HeteroData, threshold: float) -> HeteroData:
    """A copy whose ``edge_label`` is ``1`` where the raw label is ``>= threshold`` (ML-100K: 4), else 0.

    Raises:
        ValueError: a threshold that is not a finite number, or one that no label reaches (every interaction
            would be labelled 0: nothing to learn a preference from), or a graph that is not one
            :func:`~graphforget.data.make_interactions` would build (a NaN label, which would be labelled 0 without
            a word, an id out of range, a pair stored twice).
    """
    if not is_real(threshold) or not math.isfinite(threshold):  # True binarised at 1
        raise ValueError(f"threshold must be a finite number, got {threshold!r}")
    _check_graph(graph, "binarize")
    raw = graph[EDGE].edge_label
    # in float64: a float32 comparison rounds the threshold (3.50000001 to 3.5, which a rating of 3.5 then reaches)
    positive = raw.double() >= threshold
    if raw.numel() and not bool(positive.any()):
        raise ValueError(f"no label reaches the threshold {threshold} (the labels run from {raw.min().item():g} to "
                         f"{raw.max().item():g}): every interaction would be labelled 0")
    out = edge_subgraph(graph, torch.ones(graph[EDGE].edge_index.size(1), dtype=torch.bool))
    out[EDGE].edge_label = positive.float()
    return out


@dataclass
class Split:
    """Train/validation/test graphs over the same (training) node ids."""
    train: HeteroData
    val: HeteroData
    test: HeteroData

    def __repr__(self) -> str:
        sizes = ", ".join(f"{k}={getattr(self, k)[EDGE].edge_index.size(1)}" for k in ("train", "val", "test"))
        return f"Split({sizes}, users={num_users(self.train)}, items={num_items(self.train)})"


def random_split(graph: HeteroData, ratios=(0.6, 0.2, 0.2), seed: int = 0) -> Split:
    """Random split by interaction (the IFRU protocol: 6:2:2).

    The training part holds ``round(ratios[0] * E)`` edges, the validation part ``round(ratios[1] * E)`` and
    the test part the rest; a part of ratio 0 holds none (the last part of positive ratio takes the rest), and the
    training part at least one edge of a graph that has one. Users and items are remapped to the ids of the training
    part, their ids in ``graph`` kept as ``raw_id`` (:func:`relabel`); validation and test rows whose user or item has
    no training interaction are dropped.

    Raises:
        ValueError: ``ratios`` that are not a tuple or list of three numbers >= 0 summing to 1 with a train part,
            or a graph that is not one :func:`~graphforget.data.make_interactions` would build.
    """
    # Written to fail on NaN, which every comparison answers False (int(round(nan)) then named no argument).
    if not (isinstance(ratios, (tuple, list)) and len(ratios) == 3 and all(is_real(r) and r >= 0 for r in ratios)
            and abs(sum(ratios) - 1) <= 1e-6 and ratios[0] != 0):
        raise ValueError(f"ratios must be three non-negative numbers summing to 1 with a train part, got {ratios!r}")
    _check_graph(graph, "random_split")
    ei = graph[EDGE].edge_index
    num_edges, device = ei.size(1), ei.device
    perm = torch.randperm(num_edges, generator=seeded(seed)).to(device)  # the same split on every device
    n_train, n_val = int(round(ratios[0] * num_edges)), int(round(ratios[1] * num_edges))
    # round(0.4 * 1) = 0: a tiny graph's training part came back empty, and with it every node of every part.
    n_train = max(n_train, min(num_edges, 1))
    # The last part of positive ratio takes the rest: rounded separately, (0.9, 0.1, 0) on 25 edges gave 22 + 2
    # and left an edge to a test part of ratio 0 (which a split with the file's own test set throws away).
    if ratios[2] == 0:
        n_train, n_val = (n_train, num_edges - n_train) if ratios[1] else (num_edges, 0)
    parts = perm[:n_train], perm[n_train:n_train + n_val], perm[n_train + n_val:]
    masks = []
    for part in parts:
        mask = torch.zeros(num_edges, dtype=torch.bool, device=device)
        mask[part] = True
        masks.append(mask)
    seen_users = torch.zeros(num_users(graph), dtype=torch.bool, device=device)
    seen_items = torch.zeros(num_items(graph), dtype=torch.bool, device=device)
    seen_users[ei[0][masks[0]]] = True
    seen_items[ei[1][masks[0]]] = True
    known = seen_users[ei[0]] & seen_items[ei[1]]
    dropped = [int((m & ~known).sum()) for m in masks[1:]]
    if any(dropped):  # by design (the model has no row for them), but said
        log.info("random_split: dropped %d validation and %d test pairs whose user or item has no training edge",
                 *dropped)
    train, val, test = (_relabel(graph, seen_users, seen_items, m & known) for m in masks)
    return Split(train, val, test)


def _free_items(users: Tensor, n_items: int, known: Tensor, gen: torch.Generator) -> Tensor:
    """``[N]`` items, one per entry of ``users``: uniform draws, those that are a ``known`` pair key (sorted) or repeat
    an earlier entry's pair drawn again, in position order, until none is left.

    Each round checks only the entries of the users that drew again (a repeat is within one user), against ``known``
    by binary search: a user left few items needs thousands of rounds (ML-1M's user 4168, 1,851 of 1,855), and each
    had checked every pair of the graph."""
    # none to draw: torch cannot draw from 0 items (k_core of a graph that keeps nothing has none)
    items = torch.randint(max(n_items, 1), (users.numel(),), generator=gen)
    index = torch.arange(users.numel())
    while index.numel():
        keys = pair_keys(torch.stack([users[index], items[index]]), n_items)
        slot = torch.searchsorted(known, keys).clamp(max=max(known.numel() - 1, 0))
        taken = known[slot] == keys if known.numel() else torch.zeros_like(keys, dtype=torch.bool)
        _, inverse, counts = torch.unique(keys, return_inverse=True, return_counts=True)
        first = torch.zeros_like(taken)
        first[torch.sort(inverse, stable=True).indices[torch.cumsum(counts, 0) - counts]] = True
        again = index[taken | ~first]  # keep the first copy of a repeated negative
        items[again] = torch.randint(max(n_items, 1), (again.numel(),), generator=gen)
        index = index[torch.isin(users[index], users[again])]  # all their entries: those of users checked now
    return items


def add_negatives(graph: HeteroData, ratio: int = 1, seed: int = 0) -> HeteroData:
    """Implicit feedback -> labelled edges: ``ratio`` sampled negatives (label 0) per positive (an edge labelled
    above 0: binarise raw ratings first; negatives the graph already holds get none).

    Negatives are items the user has no edge with, drawn uniformly (seeded); they are stored with
    ``observed = False`` so that message passing ignores them. Per-edge attributes other than the label and
    ``observed`` (a timestamp) are dropped: a negative has none.

    Raises:
        ValueError: when ``ratio < 1``, a user has fewer than ``ratio`` x its positives items to draw from, or the
            graph is not one :func:`~graphforget.data.make_interactions` would build.
    """
    if not is_integer(ratio) or ratio < 1:
        raise ValueError(f"ratio must be a positive integer, got {ratio!r}")
    _check_graph(graph, "add_negatives")
    ei = graph[EDGE].edge_index
    n_items = num_items(graph)
    gen = seeded(seed)
    known = pair_keys(ei, n_items).unique()  # sorted
    # Per positive: a file's own negatives (Book-Crossing's) drew more, 3 pairs per interaction at ratio 1.
    positive_users = ei[0][graph[EDGE].edge_label > 0]
    # A user needs ``ratio`` distinct non-edges per positive; without enough the resampling would never end.
    need = ratio * torch.bincount(positive_users, minlength=num_users(graph))
    free = n_items - torch.bincount(pairs_of_keys(known, n_items)[0], minlength=num_users(graph))
    short = (need > free).nonzero().flatten()
    if short.numel():
        raise ValueError(f"{short.numel()} users have fewer than ratio={ratio} x their positives items left to "
                         f"sample negatives from, e.g. user {int(short[0])} (needs {int(need[short[0]])}, "
                         f"has {int(free[short[0]])})")
    users = positive_users.repeat(ratio)
    # drawn on the CPU, as the seeded generator is: the same negatives on every device
    items = _free_items(users.cpu(), n_items, known.cpu(), gen).to(ei.device)
    every = torch.ones(ei.size(1), dtype=torch.bool, device=ei.device)
    observed = graph[EDGE].observed if "observed" in graph[EDGE] else every
    out = edge_subgraph(graph, every)
    out[EDGE].edge_index = torch.cat([ei, torch.stack([users, items])], 1)
    out[EDGE].edge_label = torch.cat([graph[EDGE].edge_label, graph[EDGE].edge_label.new_zeros(users.numel())])
    out[EDGE].observed = torch.cat([observed, torch.zeros_like(users, dtype=torch.bool)])
    for key in set(out[EDGE].keys()) - {"edge_index", "edge_label", "observed"}:
        del out[EDGE][key]
    return out
