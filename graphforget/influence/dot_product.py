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

import torch
from torch import Tensor, nn
from torch.func import functional_call
from torch_geometric.data import HeteroData

from ..objectives import Objective
from .hvp import NodeRows
from .terms import Terms

__all__ = ["DotProductOperator", "has_linear_dot_product"]


def has_linear_dot_product(model) -> bool:
    """Whether ``model`` scores by the base class's dot product of an embedding linear in its tables."""
    from ..models.base import Recommender
    return bool(getattr(model, "linear_embedding", False)) and type(model).forward is Recommender.forward


class _Embed(nn.Module):
    """Calls ``model.embed`` as ``forward`` so that ``functional_call`` can swap the tables."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, graph):
        return self.model.embed(graph)


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
    """

    def __init__(self, model, rows: NodeRows, phi: Tensor, terms: Terms, graph: HeteroData, objective: Objective,
                 exact: bool = False, damping: float = 0.0):
        self.rows, self.exact, self.shift = rows, exact, objective.l2 + damping
        self.embed = _Embed(model)
        self.graph = graph
        self.names = list(model.node_parameters())
        self.tables = {name: t.detach() for name, t in rows.tables(model, phi.detach()).items()}
        self.user, self.item = terms.edge_label_index
        with torch.no_grad():
            a, b = self._embed(self.tables)
        self.a_u, self.b_i = a[self.user], b[self.item]
        self.z = (self.a_u * self.b_i).sum(-1).requires_grad_(True)
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
        with torch.no_grad():
            tables = self._scatter(v)
            da, db = self._embed(tables)
            da_u, db_i = da[self.user], db[self.item]
            dz = (da_u * self.b_i).sum(-1) + (self.a_u * db_i).sum(-1)
        hz = torch.autograd.grad(self.dl, self.z, dz, retain_graph=True)[0]
        with torch.no_grad():
            grad_a = hz[:, None] * self.b_i
            grad_b = hz[:, None] * self.a_u
            if self.exact:
                grad_a += self.dl_const[:, None] * db_i
                grad_b += self.dl_const[:, None] * da_u
            out_a = torch.zeros_like(da).index_add_(0, self.user, grad_a)
            out_b = torch.zeros_like(db).index_add_(0, self.item, grad_b)
        back = torch.autograd.grad(self.embedded, list(self.leaves.values()), (out_a, out_b), retain_graph=True)
        hv = torch.cat([g[self.rows.rows[name]].flatten() for name, g in zip(self.names, back)])
        return hv + self.shift * v
