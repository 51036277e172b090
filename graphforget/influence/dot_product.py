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

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.func import functional_call
from torch_geometric.data import HeteroData
from torch_geometric.index import index2ptr

from ..data.adjacency import quiet_csr
from ..data.interactions import EDGE, num_items, num_users, pair_keys, pairs_of_keys, propagation_edges
from ..objectives import Objective
from .hvp import NodeRows
from .terms import Terms

__all__ = ["DotProductOperator", "LocalProblem", "dot_product_gradient", "dot_product_objective",
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


def local_problem(model, rows: NodeRows, terms: Terms, graph: HeteroData) -> LocalProblem:
    """The :class:`LocalProblem` of ``rows`` and ``terms`` scored on ``graph`` (their computation subgraph, or
    any graph whose propagation gives their scores), for a model of :func:`has_linear_dot_product` with node
    tables only (user and item tables, or one homogeneous ``node`` table, users first)."""
    types = model.node_parameters()
    if rows.dense:
        raise ValueError("local_problem: node tables only, without dense parameters")
    edge_index, weight = propagation_edges(graph)
    eli, count_users = terms.edge_label_index, num_users(graph)
    selected = {"user": [], "item": []}  # the selected rows' node ids, by side
    for name, ids in rows.rows.items():
        of = types[name]
        if of in ("user", "node"):
            selected["user"].append(ids if of == "user" else ids[ids < count_users])
        if of in ("item", "node"):
            selected["item"].append(ids if of == "item" else ids[ids >= count_users] - count_users)
    nodes, local = {}, {}
    for side, (kind, count) in enumerate((("user", count_users), ("item", num_items(graph)))):
        touched = torch.zeros(count, dtype=torch.bool, device=eli.device)  # marked: no sort of every pair
        for ids in [eli[side], edge_index[side]] + selected[kind]:
            touched[ids] = True
        nodes[kind] = touched.nonzero().flatten()
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
    """

    def __init__(self, model, rows: NodeRows, phi: Tensor, terms: Terms, graph: HeteroData, objective: Objective,
                 exact: bool = False, damping: float = 0.0, tables: dict[str, Tensor] | None = None):
        self.rows, self.exact, self.shift = rows, exact, objective.l2 + damping
        self.embed = _Embed(model)
        self.graph = graph
        self.names = list(model.node_parameters())
        self.tables = {name: t.detach() for name, t in rows.tables(model, phi.detach(), tables).items()}
        with torch.no_grad():
            self.a, self.b = self._embed(self.tables)
        self.pairs = _pair_matrix(terms, self.a.size(0), self.b.size(0))
        self.z = self.pairs.dot(self.a, self.b).requires_grad_(True)
        # dl/dz with a graph, so that products with the loss's Hessian in z are one cheap backward.
        self.dl = torch.autograd.grad(objective.losses(self.z, terms.target).sum(), self.z, create_graph=True)[0]
        self.dl_const = self.dl.detach()
        # The propagation as a linear map of the tables, kept for its transpose (vector-Jacobian product).
        self.leaves = {name: torch.zeros_like(t, requires_grad=True) for name, t in self.tables.items()}
        self.embedded = self._embed(self.leaves)

    def _embed(self, tables: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        return functional_call(self.embed, {f"model.{k}": t for k, t in tables.items()}, (self.graph,), strict=False)

    @property
    def size(self) -> int:
        return sum(rows.numel() * self.tables[name].size(1) for name, rows in self.rows.rows.items())

    def _scatter(self, v: Tensor) -> dict[str, Tensor]:
        out, start = {}, 0
        for name in self.names:
            table, rows = self.tables[name], self.rows.rows[name]
            size = rows.numel() * table.size(1)
            out[name] = torch.zeros_like(table).index_put_((rows,), v[start:start + size].view(-1, table.size(1)))
            start += size
        return out

    def __call__(self, v: Tensor) -> Tensor:
        pairs = self.pairs
        with torch.no_grad():
            da, db = self._embed(self._scatter(v))
            dz = pairs.dot(da, self.b) + pairs.dot(self.a, db)
        hz = torch.autograd.grad(self.dl, self.z, dz, retain_graph=True)[0]
        with torch.no_grad():
            out_a, out_b = pairs.weighted_sums(hz, self.b, self.a)
            if self.exact:
                extra_a, extra_b = pairs.weighted_sums(self.dl_const, db, da)
                out_a, out_b = out_a + extra_a, out_b + extra_b
        back = torch.autograd.grad(self.embedded, list(self.leaves.values()), (out_a, out_b), retain_graph=True)
        hv = torch.cat([g[self.rows.rows[name]].flatten() for name, g in zip(self.names, back)])
        return hv + self.shift * v


def dot_product_gradient(model, rows: NodeRows, phi: Tensor, terms: Terms, graph: HeteroData,
                         objective: Objective, tables: dict[str, Tensor] | None = None) -> Tensor:
    """Gradient in :math:`\\phi` of the terms' summed loss (no L2), by the same closed form as
    :class:`DotProductOperator`: per-pair loss derivatives, per-node weighted sums, one propagation back.
    ``tables``: as the operator's."""
    embed = _Embed(model)
    leaves = {name: t.detach().requires_grad_(True) for name, t in rows.tables(model, phi.detach(), tables).items()}
    a, b = functional_call(embed, {f"model.{k}": t for k, t in leaves.items()}, (graph,), strict=False)
    pairs = _pair_matrix(terms, a.size(0), b.size(0))
    z = pairs.dot(a.detach(), b.detach()).requires_grad_(True)
    dl = torch.autograd.grad(objective.losses(z, terms.target).sum(), z)[0]
    grad_a, grad_b = pairs.weighted_sums(dl, b.detach(), a.detach())
    back = torch.autograd.grad((a, b), list(leaves.values()), (grad_a, grad_b))
    return torch.cat([g[rows.rows[name]].flatten() for name, g in zip(leaves, back)])


def dot_product_objective(model, rows: NodeRows, terms: Terms, graph: HeteroData, objective: Objective,
                          regularize: bool = True, tables: dict[str, Tensor] | None = None):
    """``phi -> sum of the terms' losses (+ l2/2 ||phi||^2)`` in float64, as
    :func:`~graphforget.influence.objective_function` but by the closed form's per-pair dot products: for
    the values that line searches and acceptance tests compare (no autograd graph). ``tables``: as the
    operator's."""
    embed, l2 = _Embed(model), objective.l2 if regularize else 0.0

    @torch.no_grad()
    def value(phi: Tensor) -> Tensor:
        full = rows.tables(model, phi, tables)
        a, b = functional_call(embed, {f"model.{k}": t for k, t in full.items()}, (graph,), strict=False)
        z = _pair_matrix(terms, a.size(0), b.size(0)).dot(a, b)
        loss = objective.losses(z, terms.target).sum(dtype=torch.float64)
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
