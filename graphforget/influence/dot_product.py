"""A fast curvature operator for dot-product recommenders over a linear embedding (MF, LightGCN).

When the scores are :math:`z_e = \\langle a_u, b_i \\rangle` with :math:`(a, b) = P\\,\\theta` linear in
the node tables (MF: :math:`P = I`; LightGCN: the layer-averaged propagation), the Hessian of the
summed loss is

.. math::
    H = P^\\top \\Big( J_z^\\top \\nabla^2_z \\ell \\; J_z + \\sum_e \\partial_{z_e} \\ell \\;
        \\nabla^2_{(a,b)} z_e \\Big) P ,

where :math:`J_z` (the pair scores' Jacobian in :math:`(a, b)`) and :math:`\\nabla^2 z_e` (the identity
between :math:`a_u` and :math:`b_i`) are known in closed form. A product then costs one propagation
forward (:math:`P v`), gathers and scatters over the scored pairs, and one propagation backward
(:math:`P^\\top`): several times cheaper than double backward through the whole model. The first term
alone is the Gauss-Newton matrix.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast

import torch
from torch import Tensor, nn
from torch_geometric.data import HeteroData
from torch_geometric.index import index2ptr

from ..data.adjacency import quiet_csr, weight_dtype
from ..data.interactions import EDGE, num_items, num_users, pair_keys, pairs_of_keys, propagation_edges
from ..objectives import Objective
from .hvp import NodeRows, _row_size, call_with_parameters
from .terms import Terms

__all__ = ["DotProductOperator", "LinearEmbedding", "LocalProblem", "dot_product_gradient", "dot_product_objective",
           "has_linear_dot_product", "local_problem"]


def has_linear_dot_product(model) -> bool:
    """Whether ``model`` scores by the dot product of an embedding linear in its tables."""
    return bool(getattr(model, "linear_embedding", False) and getattr(model, "scores_by_dot_product", False))


class _Embed(nn.Module):
    """Calls ``model.embed`` as ``forward`` so that ``functional_call`` can swap the tables."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, graph):
        return self.model.embed(graph)


@dataclass
class LocalProblem:
    """Rows, terms and their scoring graph relabelled to the nodes they touch, with the model's tables at those
    nodes: the closed form's products then cost what the region costs, not what the whole tables do.

    Attributes:
        rows: the rows of :math:`\\phi` in local ids (the same order, so the same :math:`\\phi`).
        terms: the terms, their pairs in local ids.
        graph: the scoring graph's observed edges in local ids, with their (whole-graph) propagation weights.
        tables: ``{parameter name: the model's table at the local nodes}`` (detached).
    """
    rows: NodeRows
    terms: Terms
    graph: HeteroData
    tables: dict[str, Tensor]
    _embedding: "LinearEmbedding | None" = field(default=None, init=False, repr=False)

    def embedding(self, model) -> "LinearEmbedding":
        """``model``'s :class:`LinearEmbedding` over this problem, built once: the values, gradients and curvatures
        of a call share its last embedding and its transpose."""
        if self._embedding is None:
            self._embedding = LinearEmbedding(model, self.rows, self.graph, self.tables)
        return self._embedding

    def __repr__(self) -> str:
        # The tables by shape: their values are the model's rows at every local node.
        tables = ", ".join(f"{name}: {list(t.shape)}" for name, t in self.tables.items())
        return (f"LocalProblem(rows={self.rows}, terms={self.terms}, {_graph_sizes(self.graph)}, "
                f"tables={{{tables}}})")


def _graph_sizes(graph: HeteroData) -> str:
    """``users=U, items=I, edges=E`` of ``graph``, for a repr."""
    return f"users={num_users(graph)}, items={num_items(graph)}, edges={graph[EDGE].edge_index.size(1)}"


def local_problem(model, rows: NodeRows, terms: Terms, graph: HeteroData) -> LocalProblem:
    """The :class:`LocalProblem` of ``rows`` and ``terms`` scored on ``graph`` (their computation subgraph, or
    any graph whose propagation gives their scores), for a model of :func:`has_linear_dot_product` with node
    tables only (user and item tables, or one homogeneous ``node`` table, users first)."""
    types = model.node_parameters()
    if rows.dense:
        raise ValueError("local_problem: node tables only, without dense parameters")
    # in the model's dtype, as the model computes them (float32 weights are off by about 6e-8 for a float64 model)
    edge_index, weight = propagation_edges(graph, weight_dtype(next(model.parameters(), None)))
    eli, count_users = terms.edge_label_index, num_users(graph)
    selected: dict[str, list[Tensor]] = {"user": [], "item": []}  # the selected rows' node ids, by side
    for name, ids in rows.rows.items():
        of = types[name]
        if of in ("user", "node"):
            selected["user"].append(ids if of == "user" else ids[ids < count_users])
        if of in ("item", "node"):
            selected["item"].append(ids if of == "item" else ids[ids >= count_users] - count_users)
    nodes, local = {}, {}
    for side, (kind, count) in enumerate((("user", count_users), ("item", num_items(graph)))):
        touched = torch.zeros(count, dtype=torch.bool, device=eli.device)  # marked: no sort of every pair
        for ids in [eli[side], edge_index[side]]:
            touched[ids] = True
        chosen = torch.zeros_like(touched)
        for ids in selected[kind]:
            chosen[ids] = True
        # The rows' nodes first: a table's rows are then 0..n-1 in phi's order, written and read by slicing.
        nodes[kind] = torch.cat([chosen.nonzero().flatten(), (touched & ~chosen).nonzero().flatten()])
        local[kind] = torch.full((count,), -1, dtype=torch.long, device=eli.device)
        local[kind][nodes[kind]] = torch.arange(nodes[kind].numel(), device=eli.device)
    # A node table's rows in homogeneous order: the local users, then the local items.
    nodes["node"] = torch.cat([nodes["user"], nodes["item"] + count_users])
    shifted = torch.where(local["item"] < 0, -1, local["item"] + nodes["user"].numel())
    local["node"] = torch.cat([local["user"], shifted])
    sub = HeteroData()
    sub["user"].num_nodes, sub["item"].num_nodes = nodes["user"].numel(), nodes["item"].numel()
    sub[EDGE].edge_index = torch.stack([local["user"][edge_index[0]], local["item"][edge_index[1]]])
    sub[EDGE].edge_weight = weight
    params = dict(model.named_parameters())
    return LocalProblem(NodeRows({name: local[types[name]][ids] for name, ids in rows.rows.items()}),
                        Terms(torch.stack([local["user"][eli[0]], local["item"][eli[1]]]), terms.target), sub,
                        {name: params[name].detach()[nodes[kind]] for name, kind in types.items()})


class DotProductOperator:
    """``v -> (H + (\\lambda_2 + \\lambda) I) v`` over the selected rows, exact or Gauss-Newton.

    Args:
        model: a model for which :func:`has_linear_dot_product` holds.
        rows: the selected rows.
        phi: their values (the point :math:`\\phi` where the curvature is taken).
        terms: the loss terms of the objective that touch the rows' receptive field.
        graph: the graph to propagate on (a computation subgraph with whole-graph weights, or the graph).
        objective: gives the per-term losses from the logits and the L2 coefficient.
        exact: add the second-order term of the scores (else Gauss-Newton).
        damping: :math:`\\lambda`.
        tables: the tables ``phi`` is written into (default: the model's): a :class:`LocalProblem`'s, with
            ``rows``, ``terms`` and ``graph`` from it too.
        embedding: the :class:`LinearEmbedding` of ``model`` over those rows and graph, built once and shared by the
            values, gradients and products of one problem (:meth:`LocalProblem.embedding`); built here when omitted.
    """

    def __init__(self, model, rows: NodeRows, phi: Tensor, terms: Terms, graph: HeteroData, objective: Objective,
                 exact: bool = False, damping: float = 0.0, tables: dict[str, Tensor] | None = None,
                 embedding: "LinearEmbedding | None" = None):
        self.exact, self.shift = exact, objective.l2 + damping
        self.embedding = embedding or LinearEmbedding(model, rows, graph, tables)
        self.a, self.b = self.embedding(phi)
        self.pairs = _pair_matrix(terms, self.a.size(0), self.b.size(0))
        self.z = self.embedding.scores(phi, self.pairs).detach().requires_grad_(True)
        # dl/dz with a graph, so that products with the loss's Hessian in z are one cheap backward.
        self.dl = torch.autograd.grad(objective.losses(self.z, terms.target).sum(), self.z, create_graph=True)[0]
        self.dl_const = self.dl.detach()

    @property
    def size(self) -> int:
        return self.embedding.size

    def __repr__(self) -> str:
        return (f"DotProductOperator(size={self.size}, pairs={self.z.numel()}, exact={self.exact}, "
                f"shift={self.shift:g})")

    def __call__(self, v: Tensor) -> Tensor:
        pairs = self.pairs
        with torch.no_grad():
            da, db = self.embedding.apply(v)
            dz = pairs.dot(da, self.b) + pairs.dot(self.a, db)
        hz = torch.autograd.grad(self.dl, self.z, dz, retain_graph=True)[0]
        with torch.no_grad():
            out_a, out_b = pairs.weighted_sums(hz, self.b, self.a)
            if self.exact:
                extra_a, extra_b = pairs.weighted_sums(self.dl_const, db, da)
                out_a, out_b = out_a + extra_a, out_b + extra_b
        return self.embedding.transpose(out_a, out_b) + self.shift * v


class LinearEmbedding:
    """A model's embedding as the linear map of its tables that it is (:func:`has_linear_dot_product`), over
    ``rows`` on ``graph``: the embedding at :math:`\\phi` (the last one kept, so that a value, a gradient and a
    curvature taken at the same :math:`\\phi` propagate once, and score each pattern of pairs once), the map applied
    to a direction, and its transpose by a vector-Jacobian product on a graph built once (a linear map's does not
    depend on where it is taken).
    ``tables``: the tables :math:`\\phi` is written into (default: the model's), a :class:`LocalProblem`'s."""

    def __init__(self, model, rows: NodeRows, graph: HeteroData, tables: dict[str, Tensor] | None = None):
        self.model, self.rows, self.graph, self.base = model, rows, graph, tables
        self.embed = _Embed(model)
        self.names = list(model.node_parameters())
        self._last: tuple[Tensor, Tensor, Tensor] | None = None  # (phi, a, b)
        self._scored: list[tuple[_PairMatrix, Tensor]] = []  # at the last phi: (pairs, their scores)
        self._zeros: dict[str, Tensor] | None = None  # tables of zeros to write a direction into
        self._leaves: dict[str, Tensor] | None = None  # the transpose's inputs, and its graph's outputs
        self._embedded: tuple[Tensor, Tensor] | None = None

    def _forward(self, tables: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        return call_with_parameters(self.embed, {f"model.{k}": t for k, t in tables.items()}, (self.graph,))

    def _tables(self) -> dict[str, Tensor]:
        return {name: self.model.get_parameter(name).detach() for name in self.names} if self.base is None \
            else self.base

    @property
    def size(self) -> int:
        return sum(ids.numel() * _row_size(self._tables()[name]) for name, ids in self.rows.rows.items())

    def __repr__(self) -> str:
        return f"LinearEmbedding(model={type(self.model).__name__}, rows={self.rows}, {_graph_sizes(self.graph)})"

    @torch.no_grad()
    def __call__(self, phi: Tensor) -> tuple[Tensor, Tensor]:
        """The embedding ``(a, b)`` at ``phi``."""
        last = self._last
        if last is None or last[0].shape != phi.shape or not torch.equal(last[0], phi):
            a, b = self._forward({**self._tables(), **self.rows.tables(self.model, phi.detach(), self.base)})
            self._last = last = (phi.detach().clone(), a, b)
            self._scored = []
        return last[1], last[2]

    @torch.no_grad()
    def scores(self, phi: Tensor, pairs: "_PairMatrix") -> Tensor:
        """``[P]``: the pairs' scores at ``phi`` (no autograd graph)."""
        a, b = self(phi)
        for scored, z in self._scored:
            if scored is pairs:
                return z
        z = pairs.dot(a, b)
        self._scored.append((pairs, z))
        return z

    @torch.no_grad()
    def apply(self, v: Tensor) -> tuple[Tensor, Tensor]:
        """The map applied to a direction ``v`` of :math:`\\phi` (the other rows 0)."""
        if self._zeros is None:  # written into out of place (NodeRows.put), so kept
            self._zeros = {name: torch.zeros_like(t) for name, t in self._tables().items()}
        # a table without rows in phi stays 0 in a direction (the model's own table ran: a user table's embedding)
        return self._forward({**self._zeros, **self.rows.tables(self.model, v, self._zeros)})

    def transpose(self, out_a: Tensor, out_b: Tensor) -> Tensor:
        """The transpose applied to ``(out_a, out_b)``, read on :math:`\\phi`'s rows."""
        if self._leaves is None:
            with torch.enable_grad():  # built once, whatever the mode of its first caller (Adam's solve: no_grad)
                self._leaves = {name: torch.zeros_like(t, requires_grad=True) for name, t in self._tables().items()}
                self._embedded = self._forward(self._leaves)
        back: tuple[Tensor, ...] | dict[str, Tensor]  # the gradients, then by table name
        back = torch.autograd.grad(cast("tuple[Tensor, Tensor]", self._embedded),  # built with the leaves
                                   list(self._leaves.values()), (out_a, out_b), retain_graph=True)
        back = dict(zip(self._leaves, back))  # read in phi's order, the rows' (item table first, or alone)
        return torch.cat([self.rows.take(name, back[name]).flatten() for name in self.rows.rows])


def dot_product_gradient(model, rows: NodeRows, phi: Tensor, terms: Terms, graph: HeteroData,
                         objective: Objective, tables: dict[str, Tensor] | None = None,
                         embedding: LinearEmbedding | None = None) -> Tensor:
    """Gradient in :math:`\\phi` of the terms' summed loss (no L2), by the same closed form as
    :class:`DotProductOperator`: per-pair loss derivatives, per-node weighted sums, one propagation back.
    ``tables``, ``embedding``: as the operator's."""
    embedding = embedding or LinearEmbedding(model, rows, graph, tables)
    a, b = embedding(phi)
    pairs = _pair_matrix(terms, a.size(0), b.size(0))
    z = embedding.scores(phi, pairs).detach().requires_grad_(True)
    dl = torch.autograd.grad(objective.losses(z, terms.target).sum(), z)[0]
    return embedding.transpose(*pairs.weighted_sums(dl, b, a))


def dot_product_objective(model, rows: NodeRows, terms: Terms, graph: HeteroData, objective: Objective,
                          regularize: bool = True, tables: dict[str, Tensor] | None = None,
                          embedding: LinearEmbedding | None = None):
    """``phi -> sum of the terms' losses (+ l2/2 ||phi||^2)`` in float64, as
    :func:`~graphforget.influence.objective_function` but by the closed form's per-pair dot products: for
    the values that line searches and acceptance tests compare (no autograd graph). ``tables``,
    ``embedding``: as the operator's."""
    embedding, l2 = embedding or LinearEmbedding(model, rows, graph, tables), objective.l2 if regularize else 0.0

    @torch.no_grad()
    def value(phi: Tensor) -> Tensor:
        a, b = embedding(phi)
        z = embedding.scores(phi, _pair_matrix(terms, a.size(0), b.size(0)))
        loss = objective.losses(z.double(), terms.target).sum()  # per term too: objective_function's comment
        return loss + 0.5 * l2 * phi.pow(2).sum(dtype=torch.float64)
    return value


def _pair_matrix(terms: Terms, num_users: int, num_items: int) -> "_PairMatrix":
    """The terms' pair pattern, built once per terms and shape: a request's products, gradients and values
    all score the same terms (building it sorts every pair)."""
    key = (num_users, num_items, terms.edge_label_index.device)
    if key not in terms.cache:
        terms.cache[key] = _PairMatrix(terms.edge_label_index, num_users, num_items)
    return terms.cache[key]


class _PairMatrix:
    """The scored (user, item) pairs as a sparse user x item pattern, for products without ``[P, d]``
    intermediates: per-pair dot products are a sampled dense-dense product (SDDMM), per-node weighted
    sums a sparse-dense product; both several times faster than gathering rows per pair.

    Repeated pairs share one entry of the pattern (their weights are summed).
    """

    def __init__(self, edge_label_index: Tensor, num_users: int, num_items: int):
        keys, self.slot = torch.unique(pair_keys(edge_label_index, num_items), return_inverse=True)  # row-major
        rows, cols = pairs_of_keys(keys, num_items)
        self.shape = (num_users, num_items)
        self.crow = index2ptr(rows, num_users)
        self.cols = cols
        # The transposed pattern (items x users): the same entries in column-major order.
        self.order_t = torch.argsort(pair_keys(torch.stack([cols, rows]), num_users))
        self.crow_t = index2ptr(cols[self.order_t], num_items)
        self.cols_t = rows[self.order_t]
        self.ones = torch.ones(keys.numel(), dtype=torch.float, device=keys.device)

    def dot(self, a: Tensor, b: Tensor) -> Tensor:
        """``[P]``: :math:`\\langle a_u, b_i \\rangle` for every pair."""
        with quiet_csr():
            pattern = torch.sparse_csr_tensor(self.crow, self.cols, self.ones.to(a.dtype), self.shape)
        return torch.sparse.sampled_addmm(pattern, a, b.t(), beta=0.0).values()[self.slot]

    def weighted_sums(self, weight: Tensor, b: Tensor, a: Tensor) -> tuple[Tensor, Tensor]:
        """``(sum_i w_ui b_i per user, sum_u w_ui a_u per item)`` for per-pair weights ``[P]``."""
        values = torch.zeros(self.cols.numel(), dtype=weight.dtype, device=weight.device).index_add_(
            0, self.slot, weight)
        with quiet_csr():
            by_user = torch.sparse_csr_tensor(self.crow, self.cols, values, self.shape)
            by_item = torch.sparse_csr_tensor(self.crow_t, self.cols_t, values[self.order_t], self.shape[::-1])
        return by_user @ b, by_item @ a
