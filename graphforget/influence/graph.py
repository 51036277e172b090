"""Graph side of influence unlearning: k-hop regions, the affected set D_c, computation subgraphs.

Nodes are numbered homogeneously: users ``0..U-1``, items ``U..U+I-1``.
"""
from __future__ import annotations

import copy

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from ..config import eval_mode, gradients_on, is_integer, is_integer_tensor
from ..data.interactions import (EDGE, bipartite_to_homogeneous, edge_subgraph, message_passing_edges, num_items,
                                 num_users, propagation_edges)
from ..data.synthetic import path_graph
from ..models.base import table_mask
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


def check_receptive_field(model: torch.nn.Module, graph: HeteroData, method: str) -> None:
    """Raises ``ValueError`` when a pair's score reads node rows beyond ``model.receptive_field`` hops of the pair.
    An influence method takes from that bound the rows it updates and the subgraphs it computes on: under a field too
    small, its step left rows the request moved as trained and scored pairs otherwise than the whole graph does (a
    3-layer module declared with 1: scores up to 0.28 apart), and was trusted.

    The model scores the pair ``(u0, i0)`` at the end of the path ``u0 - i0 - u1 - i1 - ...`` over its nodes
    (:func:`~graphforget.data.path_graph`, with ``graph``'s node attributes), where a node's hops from the pair are
    its place on the path less one (a real graph's shortcuts hide a depth). The rows read are those with a nonzero
    gradient of the score, in eval mode, on a copy (a forward may write its weights); frozen tables are not read. A
    gradient that happens to vanish lets a wrong field pass: the check refuses only what it sees.
    """
    tables = {name: kind for name, kind in model.node_parameters().items() if model.get_parameter(name).requires_grad}
    if not tables:  # no rows to select
        return
    users, field = num_users(graph), model.receptive_field
    nodes = min(field + 18, 2 * min(users, num_items(graph)))  # a depth up to field + 16 is told as it is
    with gradients_on():  # in the caller's inference_mode() the path's and the copy's tensors could not be saved
        path, probe = path_graph(users, num_items(graph), nodes, graph[EDGE].edge_index.device), copy.deepcopy(model)
        for node_type in graph.node_types:  # a model may read node features: shared, not copied
            for key, value in graph[node_type].items():
                path[node_type][key] = value
        with eval_mode(probe):
            score = probe(path, path[EDGE].edge_index[:, :1])
        grads = torch.autograd.grad(score.sum(), [probe.get_parameter(name) for name in tables], allow_unused=True)
    read = torch.zeros(users + num_items(graph), dtype=torch.bool, device=graph[EDGE].edge_index.device)
    for kind, grad in zip(tables.values(), grads):
        rows = table_mask(read, kind, users)
        if grad is not None and grad.size(0) == rows.numel():  # a table of another size is the contract's to refuse
            rows[grad.to_dense().reshape(grad.size(0), -1).ne(0).any(1)] = True  # nn.Embedding(sparse=True): sparse
    read_users, read_items = read[:users].nonzero().flatten(), read[users:].nonzero().flatten()
    if bool((read_users >= (nodes + 1) // 2).any() or (read_items >= nodes // 2).any()):
        raise ValueError(f"{method}: {type(model).__name__}'s scores read the rows of nodes that no path of the graph "
                         "joins to the scored pair: the model mixes every node (a normalisation, attention or pooling "
                         "over all of them), which no receptive field bounds, and the method's local step does not "
                         "hold for it: unlearn it with Retrain, or FineTune(local=False)")
    places = torch.cat([read_users * 2, read_items * 2 + 1])  # u_k is the path's node 2k, i_k its node 2k + 1
    depth = int(places.max()) - 1 if places.numel() else 0
    if depth > field:
        raise ValueError(f"{method}: {type(model).__name__}.receptive_field is {field}, but its scores read the rows "
                         f"of nodes {depth} hops away from the scored pair: set it to the module's number of "
                         f"message-passing layers ({depth} or more). {method} updates only the rows within it and "
                         "computes on the subgraph it spans, so a smaller one leaves rows the request moved as "
                         "trained, and scores pairs otherwise than the whole graph does")

