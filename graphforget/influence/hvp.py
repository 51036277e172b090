r"""Hessian-vector products of the summed objective, restricted to chosen embedding rows.

The functional layer: a model and a set of rows become a function of one flat vector
:math:`\phi` (the selected rows of the model's node tables, optionally followed by whole dense
parameters; every other parameter fixed), and
curvature operators ``v -> (H + \lambda I) v`` over it, never forming :math:`H`.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Callable, Iterator

import torch
from torch import Tensor
from torch.func import functional_call
from torch_geometric.data import HeteroData

from ..data.adjacency import weight_dtype
from ..data.interactions import num_items, num_users
from ..models.base import table_mask, table_offset
from ..objectives import Objective
from .graph import computation_subgraph
from .terms import Terms

__all__ = ["NodeRows", "call_with_parameters", "rows_function", "objective_function", "HessianOperator",
           "GaussNewtonOperator"]


@dataclass
class NodeRows:
    """Selected rows of a model's node tables, ``{parameter name: row ids}``, plus whole dense parameters.

    The flat vector :math:`\\phi` concatenates the selected rows of each table (in the order of
    ``rows``, each ``[n, d]`` block flattened row-major), then each parameter named in ``dense`` (in
    that order, flattened). Dense parameters are those shared by all nodes (convolution and linear
    weights, attention logits): with them in :math:`\\phi` an influence step also updates what they
    learned from the removed data.
    """
    rows: dict[str, Tensor]
    dense: tuple[str, ...] = ()
    _prefix: dict[str, bool] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self):
        self.dense = tuple(self.dense)
        both = set(self.rows) & set(self.dense)
        if both:
            raise ValueError(f"parameters both as rows and dense: {sorted(both)}")
        if len(set(self.dense)) != len(self.dense):
            raise ValueError(f"repeated dense parameters: {self.dense}")

    @classmethod
    def from_node_mask(cls, model, mask: Tensor, num_users: int, dense: bool = True) -> "NodeRows":
        """Rows of every node table for the nodes of a homogeneous ``[U + I]`` mask (a ``node`` table, whose
        rows are homogeneous ids, gets the mask's ids themselves).

        ``dense``: also include, whole, every trainable (``requires_grad``) parameter that is not a node
        table, in the order of ``model.named_parameters()``. Models whose only parameters are node tables
        (MF, LightGCN) get ``dense == ()`` either way. A frozen node table (``requires_grad=False``) gets no rows.
        """
        nodes, params = model.node_parameters(), dict(model.named_parameters())
        extra = tuple(name for name, p in params.items() if p.requires_grad and name not in nodes) if dense else ()
        return cls({name: _trainable_rows(table_mask(mask, node_type, num_users), params[name])
                    for name, node_type in nodes.items()}, extra)

    @property
    def has_dense(self) -> bool:
        """Whether :math:`\\phi` holds dense (non-node) parameters."""
        return bool(self.dense)

    def gather(self, model) -> Tensor:
        """:math:`\\phi` of ``model``: the selected rows then the dense parameters, flattened (detached copy)."""
        params = dict(model.named_parameters())
        parts = [params[name].detach()[rows].flatten() for name, rows in self.rows.items()]
        parts += [params[name].detach().flatten() for name in self.dense]
        return torch.cat(parts)

    def tables(self, model, phi: Tensor, base: dict[str, Tensor] | None = None) -> dict[str, Tensor]:
        """Full tables with the selected rows replaced by ``phi``, and the dense parameters as views of
        ``phi`` in their shapes (all differentiable in ``phi``, each in its parameter's dtype: :math:`\\phi` takes the
        widest): ``{parameter name: tensor}``. ``base``: the tables to write into instead of the model's (a
        :class:`~graphforget.influence.LocalProblem`'s)."""
        out = {}
        for name, rows, values in self._pieces(model, phi):
            table = model.get_parameter(name).detach() if base is None else base[name]
            out[name] = values.to(table.dtype) if rows is None else self.put(name, table, values)
        return out

    def is_prefix(self, name: str) -> bool:
        """Whether table ``name``'s rows are ``0, 1, ..., n-1`` (a :class:`~graphforget.influence.LocalProblem`
        numbers them first): then they are written and read by slicing, not by indexing every row."""
        if name not in self._prefix:
            rows = self.rows[name]
            self._prefix[name] = torch.equal(rows, torch.arange(rows.numel(), device=rows.device))
        return self._prefix[name]

    def put(self, name: str, table: Tensor, values: Tensor) -> Tensor:
        """``table`` with table ``name``'s rows replaced by ``values`` (a new tensor, differentiable in both, in the
        table's dtype: :math:`\\phi` takes the widest of its parameters' dtypes)."""
        values = values.to(table.dtype)
        if self.is_prefix(name):
            return torch.cat([values, table[values.size(0):]])
        return table.index_put((self.rows[name],), values)

    def take(self, name: str, table: Tensor) -> Tensor:
        """Table ``name``'s rows of ``table``."""
        return table[:self.rows[name].numel()] if self.is_prefix(name) else table[self.rows[name]]

    def write(self, model, phi: Tensor) -> None:
        """Writes ``phi`` into the model's rows and dense parameters in place (use on a copy): only the
        selected rows are touched, no table is copied."""
        with torch.no_grad():
            for name, rows, values in self._pieces(model, phi):
                parameter = model.get_parameter(name)
                if rows is None:
                    parameter.copy_(values)
                else:  # in the table's dtype: phi takes the widest of its parameters' (a float64 layer)
                    parameter.index_put_((rows,), values.to(parameter.dtype))

    def _pieces(self, model, phi: Tensor):
        """``(parameter name, its selected rows (None for a dense one), the entries of phi for them in their
        shape)``, in the order of phi."""
        if phi.numel() != self.numel(model):
            raise ValueError(f"phi has {phi.numel()} entries, the rows and dense parameters {self.numel(model)}")
        params, start = dict(model.named_parameters()), 0
        for name, rows in self.rows.items():
            size = rows.numel() * _row_size(params[name])
            yield name, rows, phi[start:start + size].view(rows.numel(), *params[name].shape[1:])
            start += size
        for name in self.dense:
            size = params[name].numel()
            yield name, None, phi[start:start + size].view(params[name].shape)
            start += size

    def expand(self, model, node_mask: Tensor, num_users: int) -> Tensor:
        """``[len(phi)]`` bool: for each entry of :math:`\\phi`, ``node_mask`` (homogeneous ``[U + I]``) of its
        node; ``False`` on dense parameters."""
        params, node_types = dict(model.named_parameters()), model.node_parameters()
        parts = [node_mask[ids + table_offset(node_types[name], num_users)].repeat_interleave(_row_size(params[name]))
                 for name, ids in self.rows.items()]
        parts += [torch.zeros(params[name].numel(), dtype=torch.bool, device=node_mask.device) for name in self.dense]
        return torch.cat(parts)

    def row_sums(self, model, values: Tensor) -> Tensor:
        """``[len(phi)]``: on each entry of a node row, the sum of ``values`` (laid out as :math:`\\phi`) over that row;
        0 on dense parameters."""
        params, out, start = dict(model.named_parameters()), torch.zeros_like(values), 0
        for name, ids in self.rows.items():
            width = _row_size(params[name])
            stop = start + ids.numel() * width
            out[start:stop] = values[start:stop].view(ids.numel(), width).sum(1).repeat_interleave(width)
            start = stop
        return out

    def count(self, model, entries: Tensor) -> int:
        """How many node rows ``entries`` (a bool mask laid out as :math:`\\phi`, whole rows) marks."""
        widths = self.row_sums(model, torch.ones_like(entries, dtype=torch.float64))
        return round(float((entries / widths.clamp_min(1)).sum()))  # a row's entries sum to 1

    def longest_rows(self, model) -> Tensor:
        """``[len(phi)]``: on each entry of a node row, the norm of the longest row of its table (every row, not only
        the selected ones); 0 on dense parameters."""
        params, parts = dict(model.named_parameters()), []
        for name, ids in self.rows.items():
            table = params[name].detach()
            longest = table.reshape(len(table), -1).norm(dim=1).max() if len(table) else table.new_zeros(())
            parts.append(longest.expand(ids.numel() * _row_size(table)))
        parts += [params[name].new_zeros(params[name].numel()) for name in self.dense]
        return torch.cat(parts)

    def numel(self, model) -> int:
        """Size of :math:`\\phi`."""
        params = dict(model.named_parameters())
        return (sum(rows.numel() * _row_size(params[name]) for name, rows in self.rows.items())
                + sum(params[name].numel() for name in self.dense))

    def __repr__(self) -> str:
        text = ", ".join(f"{k}: {v.numel()}" for k, v in self.rows.items())
        if self.dense:
            text += "; dense: " + ", ".join(self.dense)
        return "NodeRows(" + text + ")"


def _trainable_rows(mask: Tensor, table: Tensor) -> Tensor:
    """The row ids of ``mask``, none for a frozen table: training never moves it (nor FineTune), so an influence
    step must not either, as it leaves a frozen dense parameter out."""
    rows = mask.nonzero().flatten()
    return rows if table.requires_grad else rows[:0]


def call_with_parameters(module: torch.nn.Module, tensors: dict[str, Tensor], args: tuple):
    """``module(*args)`` with the parameters named in ``tensors`` replaced, statelessly.

    Every slot holding a replaced parameter is swapped once: a tied parameter (``b.weight = a.weight``) in
    each module that holds it, a module registered under two names (``self.lin_i = self.lin_u``) once. torch's
    ``tie_weights`` swapped such a module twice and restored it to the replacement, a non-leaf tensor left in
    the caller's model in place of its parameter.
    """
    replaced = {id(module.get_parameter(name)): value for name, value in tensors.items()}
    slots = {f"{prefix}.{attr}" if prefix else attr: replaced[id(p)]
             for prefix, sub in module.named_modules() for attr, p in sub._parameters.items()
             if p is not None and id(p) in replaced}
    with dense_gradients(module):
        return functional_call(module, slots, args, strict=False, tie_weights=False)


def sparse_embeddings(module: torch.nn.Module) -> list[torch.nn.Embedding]:
    """``module``'s ``nn.Embedding(sparse=True)`` layers: their gradient can be neither indexed into node rows nor
    differentiated again, nor passed through a parametrisation (UnlearnRec's); the forward is the dense one's."""
    return [sub for sub in module.modules() if isinstance(sub, torch.nn.Embedding) and sub.sparse]


@contextlib.contextmanager
def dense_gradients(module: torch.nn.Module):
    """``module``'s :func:`sparse_embeddings` give dense gradients inside (the same forward), as the curvature
    products need."""
    layers = sparse_embeddings(module)
    for layer in layers:
        layer.sparse = False
    try:
        yield
    finally:
        for layer in layers:
            layer.sparse = True


def _row_size(table: Tensor) -> int:
    """Entries per row of a node table: ``[n]`` (a bias), ``[n, d]``, ``[n, d, k]``."""
    return math.prod(table.shape[1:])


def rows_function(model, rows: NodeRows, forward: Callable) -> Callable[[Tensor], Tensor]:
    """``phi -> forward(model_phi)`` where ``model_phi`` is ``model`` with ``rows`` (and its dense
    parameters) replaced by ``phi``.

    ``forward`` receives a callable ``score(graph, edge_label_index)`` running the model statelessly.
    """
    def fn(phi: Tensor) -> Tensor:
        tables = rows.tables(model, phi)
        return forward(lambda graph, eli: call_with_parameters(model, tables, (graph, eli)))
    return fn


def scoring_graph(model, graph: HeteroData, terms: Terms, locality: bool = True) -> HeteroData:
    """Where ``terms`` can be scored exactly: their k-hop computation subgraph when the model supports
    it (``model.supports_edge_weight``) and ``locality`` is on, else the whole graph."""
    n = num_users(graph)
    return nodes_graph(model, graph, terms.nodes(n, n + num_items(graph)), locality)


def nodes_graph(model, graph: HeteroData, nodes: Tensor, locality: bool = True) -> HeteroData:
    """Where the outputs of ``nodes`` (homogeneous ids) are computed exactly: as :func:`scoring_graph`."""
    if not (locality and getattr(model, "supports_edge_weight", False)):
        return graph
    return computation_subgraph(graph, nodes, model.receptive_field, weight_dtype(next(model.parameters(), None)))


def objective_function(model, objective: Objective, terms: Terms, graph: HeteroData, rows: NodeRows,
                       regularize: bool = True, locality: bool = True,
                       sub: HeteroData | None = None) -> Callable[[Tensor], Tensor]:
    r"""``phi -> sum of the terms' losses (+ l2/2 ||phi||^2)`` with ``rows`` of ``model`` set to ``phi``.

    The terms are scored on their computation subgraph (see :func:`scoring_graph`), so the cost is
    that of the region that can reach them, not of the whole graph. With every term that touches the
    ``receptive_field``-hop region of the rows, this is the summed objective :math:`L` restricted to
    :math:`\phi` up to a constant. ``sub``: the terms' scoring graph, when already built.
    """
    sub = scoring_graph(model, graph, terms, locality) if sub is None else sub
    l2 = objective.l2 if regularize else 0.0
    # In float64, each term's loss and their sum: with tens of thousands of float32 terms, the rounding of a float32
    # sum is as large as the decrease a late Newton step makes, and the line search compares such values; a term
    # near log 2 (small logits) loses a change under float32's 6e-8 of it (a model scaled by 1e-4 was refused).
    loss = rows_function(model, rows, lambda score: objective.losses(score(sub, terms.edge_label_index).double(),
                                                                       terms.target).sum())
    return lambda phi: loss(phi) + 0.5 * l2 * phi.pow(2).sum(dtype=torch.float64)


class HessianOperator:
    """``v -> (\\nabla^2 f(x) + \\lambda I) v`` by double backward.

    The first backward (with ``create_graph``) is done once; each product is one more backward
    through it, so a solver's iterations cost one reverse pass each.

    Args:
        fn: scalar function of the flat parameter vector.
        x: the point (``[n]``).
        damping: :math:`\\lambda \\geq 0`.
    """

    def __init__(self, fn: Callable[[Tensor], Tensor], x: Tensor, damping: float = 0.0):
        self.x = x.detach().requires_grad_(True)
        self.value = fn(self.x)
        self.grad = torch.autograd.grad(self.value, self.x, create_graph=True)[0]
        self.damping = damping

    def __call__(self, v: Tensor) -> Tensor:
        with _second_derivatives():
            hv = torch.autograd.grad(self.grad, self.x, v, retain_graph=True, allow_unused=True)[0]
        hv = torch.zeros_like(v) if hv is None else hv
        return hv + self.damping * v if self.damping else hv

    @property
    def size(self) -> int:
        return self.x.numel()

    def __repr__(self) -> str:
        return f"HessianOperator(size={self.size}, damping={self.damping:g})"


class GaussNewtonOperator:
    """``v -> (J^T \\nabla^2_z \\ell J + \\lambda I) v``: the Gauss-Newton curvature, positive semi-definite where the
    loss is convex in the logits (BCE, BPR; an objective's own loss may not be).

    Args:
        logits_fn: ``x -> z``, the logits of every scored pair.
        loss_fn: ``z -> scalar``, the summed losses from the logits (convex in ``z`` for BCE/BPR).
        x: the point.
        l2: curvature of the explicit L2 term (added exactly).
        damping: :math:`\\lambda`.
        output_curvature: ``z -> (w -> H w)``, the loss's positive semi-definite curvature in ``z`` at ``z``, as
            a product, where one that knows the loss's structure is cheaper than double backward (InfoNCE's,
            :class:`~graphforget.influence.ContrastiveTerm`); ``None``: the Hessian of ``loss_fn``.
    """

    def __init__(self, logits_fn, loss_fn, x: Tensor, l2: float = 0.0, damping: float = 0.0,
                 output_curvature: Callable[[Tensor], Callable[[Tensor], Tensor]] | None = None):
        if loss_fn is None and output_curvature is None:
            raise ValueError("GaussNewtonOperator needs loss_fn or output_curvature (the loss's curvature in z)")
        self.x = x.detach().requires_grad_(True)
        self.z = logits_fn(self.x)
        self.shift = l2 + damping
        if self.z.numel() == 0:  # no logit (a contrastive term with no node left): no curvature but the shift
            return
        self.curvature = (output_curvature or _hessian_product(loss_fn))(self.z.detach())
        self.u = torch.zeros_like(self.z, requires_grad=True)
        # J^T u with a graph in u: differentiating it in u gives J v (the double-vjp trick).
        self.jt_u = torch.autograd.grad(self.z, self.x, self.u, create_graph=True)[0]

    def __call__(self, v: Tensor) -> Tensor:
        if self.z.numel() == 0:
            return self.shift * v
        with _second_derivatives():
            jv = torch.autograd.grad(self.jt_u, self.u, v, retain_graph=True)[0]
        return torch.autograd.grad(self.z, self.x, self.curvature(jv), retain_graph=True)[0] + self.shift * v

    @property
    def size(self) -> int:
        return self.x.numel()

    def __repr__(self) -> str:
        return f"GaussNewtonOperator(size={self.size}, logits={self.z.numel()}, shift={self.shift:g})"


@contextlib.contextmanager
def _second_derivatives() -> Iterator[None]:
    """Names what a model that torch cannot differentiate twice lacks, where torch says only which derivative."""
    try:
        yield
    except RuntimeError as error:
        if "derivative for" not in str(error) or "not implemented" not in str(error):
            raise
        raise NotImplementedError(
            f"the curvature products need the model's second derivatives, and torch has none for an operation of its "
            f"forward ({error}). A PyG module given a sparse adjacency (PyGRecommender(sparse=True)) whose layers "
            f"aggregate by mean or max (SAGEConv) or take a softmax over each node's neighbours (GATConv, "
            f"TransformerConv) is one such model: pass sparse=False") from error


def _hessian_product(loss_fn) -> Callable[[Tensor], Callable[[Tensor], Tensor]]:
    """``z -> (w -> \\nabla^2 loss_fn(z) w)`` by double backward."""
    def at(z: Tensor) -> Callable[[Tensor], Tensor]:
        z = z.requires_grad_(True)
        grad = torch.autograd.grad(loss_fn(z), z, create_graph=True)[0]
        return lambda w: torch.autograd.grad(grad, z, w, retain_graph=True)[0]
    return at
