"""Graph side of influence unlearning: k-hop regions, the affected set D_c, computation subgraphs.

Nodes are numbered homogeneously: users ``0..U-1``, items ``U..U+I-1``.
"""
from __future__ import annotations

import copy
from typing import NoReturn

import torch
from torch import Tensor, nn
from torch_geometric.data import HeteroData

from ..config import eval_mode, gradients_on, is_integer, is_integer_tensor, random_state_kept
from ..data.interactions import (EDGE, bipartite_to_homogeneous, edge_subgraph, message_passing_edges, num_items,
                                 num_users, propagation_edges)
from ..data.synthetic import path_graph, path_hops
from ..models.base import NotARecommender, Recommender, checked_receptive_field, table_mask
from ..objectives import Objective
from .terms import Terms, training_terms

__all__ = ["homogeneous_graph", "homogeneous_index", "node_ids", "k_hop_mask", "local_terms", "computation_subgraph",
           "check_receptive_field"]


def homogeneous_index(graph: HeteroData) -> Tensor:
    """The ``[2, 2E']`` undirected message-passing index of the observed edges (homogeneous ids)."""
    return bipartite_to_homogeneous(message_passing_edges(graph), num_users(graph))


def homogeneous_graph(graph: HeteroData) -> tuple[Tensor, int]:
    """``(homogeneous_index(graph), num_nodes)``."""
    return homogeneous_index(graph), num_users(graph) + num_items(graph)


def node_ids(pairs: Tensor, num_users: int) -> Tensor:
    """Homogeneous ids of the endpoints of ``[2, R]`` (user, item) pairs (unique, sorted)."""
    return torch.cat([pairs[0], pairs[1] + num_users]).unique()


def k_hop_mask(graph: HeteroData, nodes: Tensor, hops: int, index: Tensor | None = None) -> Tensor:
    """``[U + I]`` bool mask of the nodes within ``hops`` message-passing hops of ``nodes`` (homogeneous ids);
    ``index``: the graph's :func:`homogeneous_index`, when the caller keeps it (a scan of every edge to build).

    Raises:
        ValueError: ``hops`` is not an integer >= 0, or ``nodes`` are not integer ids in ``[0, U + I)``.
    """
    n = num_users(graph) + num_items(graph)
    check_hops(hops)
    _check_nodes(nodes, n)
    mask = torch.zeros(n, dtype=torch.bool, device=graph[EDGE].edge_index.device)
    if nodes.numel() == 0:
        return mask
    mask[nodes] = True
    if hops == 0:  # no need to build the whole graph's index
        return mask
    # A breadth-first search on a node mask: one gather and one fill per hop. (PyG's k_hop_subgraph
    # sorts its node subset at every hop; on ML-100K this is 5-6x faster, which IFRU feels: it takes
    # several regions per call.)
    source, target = homogeneous_index(graph) if index is None else index
    for _ in range(hops):
        grown = mask.index_fill(0, target[mask[source]], True)
        if torch.equal(grown, mask):  # the component is reached: more hops add nothing (hops may be huge)
            break
        mask = grown
    return mask


def check_hops(hops: int) -> None:
    """Raises ``ValueError`` unless ``hops`` is an integer >= 0."""
    if not (is_integer(hops) and hops >= 0):
        raise ValueError(f"hops must be an integer >= 0, got {hops!r}")


def _check_nodes(nodes: Tensor, count: int) -> None:
    if not is_integer_tensor(nodes):
        raise ValueError(f"nodes holds integer node ids, got dtype {nodes.dtype}")
    if nodes.numel() and (nodes.min() < 0 or nodes.max() >= count):
        raise ValueError(f"nodes holds ids outside [0, {count}) (the graph's users then items)")


def local_terms(objective: Objective, graph: HeteroData, region: Tensor) -> Terms:
    """The loss terms on ``graph`` that score a node of ``region`` (a ``[U + I]`` node mask).

    On the remaining graph, with the region within :math:`K` hops (the receptive field) of the
    request's users and items, this is IFRU's affected set :math:`D_c`. The region may be computed on
    the original graph: a path through a removed edge can start at its other endpoint, also a node of
    the request, so the region is the same in both graphs.
    """
    return training_terms(objective, graph).touching(region, num_users(graph))


def computation_subgraph(graph: HeteroData, nodes: Tensor, hops: int, dtype: torch.dtype = torch.float) -> HeteroData:
    """The observed edges a ``hops``-layer model needs to compute the outputs of ``nodes`` exactly.

    The induced subgraph on the ``hops``-hop region of ``nodes``, carrying the whole graph's
    propagation weights (:func:`~graphforget.data.propagation_edges`, in ``dtype``: the model's) as
    ``edge_weight``, so degrees are those of the whole graph; no edges for ``hops = 0``. Node ids and every
    node attribute are kept (:func:`~graphforget.data.edge_subgraph`), so embedding tables need no relabelling.
    """
    store = graph[EDGE]
    if hops == 0:  # outputs that read no edges (MF): an edgeless graph, without the whole graph's weights
        return edge_subgraph(graph, torch.zeros(0, dtype=torch.long, device=store.edge_index.device))
    observed = store.observed if "observed" in store else torch.ones_like(store.edge_label, dtype=torch.bool)
    edge_index, weight = propagation_edges(graph, dtype)  # the observed edges, in storage order
    region = k_hop_mask(graph, nodes, hops)
    inside = region[edge_index[0]] & region[edge_index[1] + num_users(graph)]
    sub = edge_subgraph(graph, observed.nonzero().flatten()[inside])
    sub[EDGE].edge_weight = weight[inside]
    return sub


def check_receptive_field(model: Recommender, graph: HeteroData, method: str, subgraph: bool = True) -> None:
    """Raises ``ValueError`` when a pair's score reads node rows beyond ``model.receptive_field`` hops of the pair.
    An influence method takes from that bound the rows it updates and the subgraphs it computes on: under a field too
    small, its step left rows the request moved as trained and scored pairs otherwise than the whole graph does (a
    3-layer module declared with 1: scores up to 0.28 apart), and was trusted.

    The model scores the pair ``(u0, i0)`` at the end of two paths over its nodes (:func:`~graphforget.data.path_graph`:
    one grows from the item's side, one from the user's), where a node's hops from the pair are its place less one (a
    real graph's shortcuts hide a depth). A row is read where the score has a finite nonzero gradient in it: the node
    tables' rows, and those of fixed node features (frozen ``[n, f]`` parameters and buffers of ``n`` users, items or
    both, and the graph's floating node attributes). A read that no gradient shows (a ``detach`` or ``torch.no_grad``
    in the forward: a 2-layer module declared with 0 passed, and IFRU left out its spillover) is caught by a second
    forward, the node tables' rows beyond the field changed, whose score must be the same (both forwards from one
    random state: a module may draw in eval mode). The forwards run in eval mode, on a copy (a forward may write its
    weights), the caller's random state kept. A gradient that happens to vanish, and a change that happens to cancel,
    let a wrong field pass: the check refuses only what it sees. ``subgraph``: ``method`` computes on the subgraph the
    field spans (IFRU, SCIF), as its error says (FineTune's local rows train on the whole graph).

    Raises:
        NotARecommender: ``model`` is not a :class:`~graphforget.models.Recommender` (its node tables are read by
            name: a plain module failed with an ``AttributeError``; wrap a PyG module in ``PyGRecommender``).
    """
    if not isinstance(model, Recommender):
        raise NotARecommender(f"{method}: check_receptive_field needs a graphforget Recommender, got a "
                              f"{type(model).__name__} (a PyG module: wrap it in graphforget.models.PyGRecommender)")
    field, name = checked_receptive_field(model, method), type(model).__name__
    reach = field + 16  # a depth up to it is told as it is; one at it is read as a mean over every node
    depth, probes = 0, []
    for start in ("user", "item"):
        hops = min(reach, path_hops(num_users(graph), num_items(graph), start))
        probes.append((hops, start))
        reads = _rows_read(model, graph, hops, start, method)
        if reads is None:  # nothing to select
            return
        other = "item" if start == "user" else "user"
        if bool((reads[start] > (hops + 1) // 2).any() or (reads[other] > hops // 2).any()):  # ids off the path
            _refuse_unbounded(method, name, "the rows of nodes that no path of the graph joins to the scored pair")
        read = torch.cat([reads["user"], reads["item"] + num_users(graph)])
        depth = max(depth, int(_pair_hops(graph, start)[read].max()) if read.numel() else 0)
        if depth >= reach:  # a mean over every node (PairNorm) reads the rows at the path's end
            _refuse_unbounded(method, name, f"rows as far as the probe's path reaches, {hops} hops from the scored pair")
    if depth <= field and any(_reads_beyond(model, graph, field, hops, start) for hops, start in probes):
        beyond = (f"nodes more than {field} hops away from the scored pair, though no gradient reaches them (a detach "
                  "or torch.no_grad in its forward?)")
        _refuse_field(f"{method}: {name}.receptive_field is {field}, but its scores read the rows of {beyond}: set it "
                      "to the module's number of message-passing layers", method, subgraph)
    if depth > field:
        _refuse_field(f"{method}: {name}.receptive_field is {field}, but its scores read the rows of nodes {depth} "
                      f"hops away from the scored pair: set it to the module's number of message-passing layers "
                      f"({depth} or more)", method, subgraph)


def _refuse_field(said: str, method: str, subgraph: bool) -> NoReturn:
    """``said``, and what a field too small does to ``method``."""
    spans = (" and computes on the subgraph it spans, so a smaller one leaves rows the request moved as trained, and "
             "scores pairs otherwise than the whole graph does") if subgraph else \
        ", so a smaller one leaves rows the request moved as trained"
    raise ValueError(f"{said}. {method} updates only the rows within it{spans}")


def _reads_beyond(model: Recommender, graph: HeteroData, field: int, hops: int, start: str) -> bool:
    """Whether the score of ``(u0, i0)`` on :func:`_probe_graph` changes when the node tables' rows of the nodes more
    than ``field`` hops from it change (:func:`_pair_hops`; by noise larger than any of them). Fixed features are
    left as they are: noise made category codes stored as floats indices out of range."""
    users, device = num_users(graph), graph[EDGE].edge_index.device
    far, pair = _pair_hops(graph, start) > field, torch.zeros(2, 1, dtype=torch.long, device=device)
    path, probe = _probe_graph(graph, hops, start), copy.deepcopy(model)
    with torch.no_grad(), eval_mode(probe):
        with random_state_kept(probe):  # each forward from the caller's state, which each leaves as it was
            before = probe(path, pair)
        for name, kind in probe.node_parameters().items():
            table, mask = probe.get_parameter(name), table_mask(far, kind, users)
            if table.size(0) == mask.numel():  # a table of another size: the contract's to refuse
                noise = torch.randn(table.shape, generator=torch.Generator(device).manual_seed(0), device=device)
                table[mask] += noise.to(table.dtype)[mask] * (1 + float(table.detach().abs().max()))
        with random_state_kept(probe):
            after = probe(path, pair)
    return bool(((after - before).abs() > 1e-5 * (1 + before.abs())).any())


def _pair_hops(graph: HeteroData, start: str) -> Tensor:
    """``[U + I]``: each node's hops from the scored pair ``(u0, i0)`` on :func:`_probe_graph`'s path from ``start``
    (the path's node at place ``p`` is ``p - 1`` hops away: the start side's node ``k`` at ``2k``, the other's at
    ``2k + 1``)."""
    device = graph[EDGE].edge_index.device
    user_hops = torch.arange(num_users(graph), device=device) * 2 - int(start == "user")
    item_hops = torch.arange(num_items(graph), device=device) * 2 - int(start == "item")
    return torch.cat([user_hops, item_hops])


def _refuse_unbounded(method: str, name: str, where: str) -> NoReturn:
    raise ValueError(f"{method}: {name}'s scores read {where}: the model mixes every node (a normalisation, attention "
                     "or pooling over all of them), which no receptive field bounds, and the method's local step does "
                     "not hold for it: unlearn it with Retrain, or FineTune(local=False) (or, if its scores read a "
                     "fixed number of hops beyond that, set receptive_field to it)")


def _why_not_finite(model: torch.nn.Module) -> str:
    """The causes of a score that is not finite, with the size of the largest parameter (finite: the unlearners refuse
    others first): a row of 1e20 in float32 had been said to be a degree normalisation unguarded at degree 0."""
    largest = max((float(p.detach().abs().max()) for p in model.parameters() if p.numel()), default=0.0)
    return (f"do its parameters, up to {largest:.3g} in size, overflow their dtype's products (then retrain, or "
            "unlearn a model.double() copy), or is a degree normalisation unguarded at degree 0? A request that "
            "removes a node's every edge meets the latter too: set deg.pow(-0.5)'s infinities to 0")


def _rows_read(model: Recommender, graph: HeteroData, hops: int, start: str,
               method: str) -> dict[str, Tensor] | None:
    """``{"user": ids, "item": ids}`` whose rows the score of ``(u0, i0)`` on :func:`_probe_graph` reads; ``None``
    where the model has no rows to read. Raises ``ValueError`` for a score that is not finite there."""
    users = num_users(graph)
    with gradients_on(), random_state_kept(model):  # in the caller's inference_mode() no tensor could be saved
        path, probe = _probe_graph(graph, hops, start), copy.deepcopy(model)
        rows = _row_inputs(probe, path)
        if not rows:
            return None
        with eval_mode(probe):
            score = probe(path, torch.zeros(2, 1, dtype=torch.long, device=graph[EDGE].edge_index.device))
        if not bool(score.isfinite().all()):
            raise ValueError(f"{method}: {type(model).__name__} scores a pair {float(score.sum())} on a path of its "
                             "nodes, most of them without edges, so its receptive_field cannot be checked: "
                             + _why_not_finite(model))
        grads = torch.autograd.grad(score.sum(), [tensor for _, tensor in rows], allow_unused=True)
    read = torch.zeros(users + num_items(graph), dtype=torch.bool, device=graph[EDGE].edge_index.device)
    for (kind, _), grad in zip(rows, grads):
        rows_read = table_mask(read, kind, users)
        if grad is not None and grad.size(0) == rows_read.numel():  # a table of another size: the contract's to refuse
            grad = grad.to_dense().reshape(grad.size(0), -1)  # nn.Embedding(sparse=True)'s is sparse
            rows_read[(grad.ne(0) & grad.isfinite()).any(1)] = True  # 0 * inf at an isolated node is NaN: no read
    return {"user": read[:users].nonzero().flatten(), "item": read[users:].nonzero().flatten()}


def _probe_graph(graph: HeteroData, hops: int, start: str) -> HeteroData:
    """:func:`~graphforget.data.path_graph` with ``graph``'s node attributes (shared) and every per-edge attribute
    it lacks as ones (a model may weigh its edges by a stored rating or timestamp)."""
    path = path_graph(num_users(graph), num_items(graph), hops, start, graph[EDGE].edge_index.device)
    for node_type in graph.node_types:
        for key, value in graph[node_type].items():
            path[node_type][key] = value
    edges, count = path[EDGE], graph[EDGE].edge_index.size(1)
    for key, value in graph[EDGE].items():
        if key not in edges:
            per_edge = isinstance(value, Tensor) and value.dim() > 0 and value.size(0) == count
            edges[key] = value.new_ones((edges.edge_index.size(1), *value.shape[1:])) if per_edge else value
    return path


def _row_inputs(probe: Recommender, path: HeteroData) -> list[tuple[str, Tensor]]:
    """``(node type, tensor)`` of what a score may read by node, set to require gradients (``probe`` is a copy, the
    path's features are swapped for leaf copies): ``probe``'s node tables, its fixed node features (:func:`_kind`) and
    the path's floating user and item attributes."""
    users, items, tables = num_users(path), num_items(path), probe.node_parameters()
    rows = [(kind, probe.get_parameter(name).requires_grad_()) for name, kind in tables.items()]
    linear = {f"{owner}.weight".lstrip(".") for owner, layer in probe.named_modules() if isinstance(layer, nn.Linear)}
    fixed = [(name, p) for name, p in probe.named_parameters() if not p.requires_grad] + list(probe.named_buffers())
    for name, tensor in fixed:
        kind = _kind(tensor, users, items)
        if kind and name not in tables and name not in linear:
            rows.append((kind, tensor.requires_grad_()))
    for kind, count in (("user", users), ("item", items)):
        for key, value in list(path[kind].items()):
            if isinstance(value, Tensor) and value.is_floating_point() and value.dim() > 0 and value.size(0) == count:
                path[kind][key] = value.detach().clone().requires_grad_()
                rows.append((kind, path[kind][key]))
    return rows


def _kind(tensor, users: int, items: int) -> str | None:
    """The node type of a floating ``[n, f]`` tensor by its rows: ``node`` (``users + items``), ``user`` or ``item``
    (where the counts differ); ``None`` otherwise."""
    if not (isinstance(tensor, Tensor) and tensor.is_floating_point() and tensor.dim() == 2):
        return None
    sizes = {users + items: "node", users: "user", items: "item"} if users != items else {users + items: "node"}
    return sizes.get(tensor.size(0))
