"""The contrastive term of SGL / SimGCL-style objectives, as influence methods differentiate it.

Training adds :math:`\\lambda_{ssl}` times InfoNCE between two random views of the graph at every step
(:class:`~graphforget.models.ContrastiveBPRObjective`). Influence methods need a deterministic function of
the parameters whose change under a removal is the removal's alone: one fixed draw of the two views
(:meth:`model.fixed_views <graphforget.models.SGL.fixed_views>`), the same on the training graph and on the
remaining one (SGL: the same kept edges, less the removed ones; SimGCL: the same noise, its signs those of the
trained point, so that the term is smooth). Each training step
weighs its batch's mean loss and the batch's InfoNCE alike, so in the summed objective's units
(:math:`\\sum_e \\ell_e`) the term weighs :math:`|D|\\,\\lambda_{ssl}`, with :math:`|D|` the graph's edges.
A node is contrasted on a graph only while it has an edge there: a user the request leaves without any drops out of
the remaining graph's term, as out of a retraining's. Both contrast the users and items of positive edges alone
(a training batch those of its own): a node whose edges are all disliked is not contrasted.
InfoNCE couples every node it contrasts with every other, so it is one term over the whole graph: its values,
gradients and curvature products propagate the two views over all of it.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.data import HeteroData

from ..config import derived_seed, is_integer
from ..data.interactions import EDGE, num_items, num_users
from .hvp import GaussNewtonOperator, NodeRows, call_with_parameters

__all__ = ["ContrastiveTerm", "has_contrastive_term"]


def has_contrastive_term(model, objective) -> bool:
    """Whether ``objective`` adds a contrastive term (``ssl_weight > 0``) that ``model`` can draw fixed views for."""
    return getattr(objective, "ssl_weight", 0) > 0 and hasattr(model, "fixed_views")


class _Views(nn.Module):
    """Calls a fixed draw of ``model``'s views as ``forward``, so that ``functional_call`` can swap its tables."""

    def __init__(self, model, draw: Callable[[HeteroData], tuple[Tensor, Tensor]]):
        super().__init__()
        self.model, self.draw = model, draw

    def forward(self, graph: HeteroData) -> tuple[Tensor, Tensor]:
        return self.draw(graph)


class ContrastiveTerm:
    """:math:`|D|\\,\\lambda_{ssl}\\,(\\mathrm{InfoNCE}_{users} + \\mathrm{InfoNCE}_{items})` between one fixed draw
    of the model's two views, as a function of the rows :math:`\\phi`.

    Args:
        model: a model with ``fixed_views(reference, generator)`` (SGL, SimGCL).
        objective: the training objective (its ``ssl_weight``, ``tau`` and ``seed``).
        reference: the training graph; the views of any graph derived from it by removing edges are the
            reference's views less those edges.
        max_nodes: at most this many users, and as many items, are contrasted (a fixed random sample of
            each side when it has more, of which each graph contrasts the nodes with an edge): InfoNCE's
            logits are ``[n, n]``, as a training batch's are.
        draw: which draw of the views (and of the sample): 0, the default, is the objective's ``seed``'s; another
            is independent of it (IFRU's trust test scores a step on draw 1, which it was not fit on).

    Raises:
        ValueError: ``max_nodes`` is not an integer >= 1.
    """

    def __init__(self, model, objective, reference: HeteroData, max_nodes: int = 8192, draw: int = 0):
        if not (is_integer(max_nodes) and max_nodes >= 1):  # 0 contrasted nobody (a NaN term), -1 all but one
            raise ValueError(f"ContrastiveTerm: max_nodes must be an integer >= 1, got {max_nodes!r}")
        if not (is_integer(draw) and draw >= 0):
            raise ValueError(f"ContrastiveTerm: draw must be an integer >= 0, got {draw!r}")
        seed = int(objective.seed) if draw == 0 else derived_seed(objective.seed, f"contrastive views {draw}")
        generator = torch.Generator().manual_seed(seed)
        device = reference[EDGE].edge_index.device
        users, items = num_users(reference), num_items(reference)
        self.users = _sample(users, max_nodes, generator).to(device)
        self.items = (_sample(items, max_nodes, generator) + users).to(device)
        self.views = _Views(model, model.fixed_views(reference, generator))
        self.model, self.weight, self.tau = model, float(objective.ssl_weight), float(objective.tau)

    def contrasted(self, graph: HeteroData) -> tuple[Tensor, Tensor]:
        """The users and the items (homogeneous ids) of the sample that ``graph`` contrasts: those with an edge
        labelled above 0 there, as training contrasts a batch's (a BPR term's pair). Every node of the sample had been
        contrasted: a forgotten user's row, zeroed after the acceptance test as a row without data, raised the term
        that test had passed; so did a user left with unobserved negatives alone (5.1% on the fresh draw; QA probe)."""
        store, users = graph[EDGE], num_users(graph)
        edges = store.edge_index[:, store.edge_label > 0]
        has = torch.zeros(users + num_items(graph), dtype=torch.bool, device=edges.device)
        has[edges[0]], has[edges[1] + users] = True, True
        return self.users[has[self.users]], self.items[has[self.items]]

    def _factors(self, rows: NodeRows, graph: HeteroData, phi: Tensor, sides) -> list[tuple[Tensor, Tensor]]:
        """Each side's ``(first, second)`` ``[n, d]``: the unit rows of its nodes (``sides``: :meth:`contrasted`)
        in the two views (the users' then the items'), whose logits are ``first @ second.T / tau``."""
        tables = {f"model.{name}": t for name, t in rows.tables(self.model, phi).items()}
        first, second = call_with_parameters(self.views, tables, (graph,))
        first, second = F.normalize(first, dim=1), F.normalize(second, dim=1)
        return [(first[ids], second[ids]) for ids in sides]

    def _logits(self, rows: NodeRows, graph: HeteroData, phi: Tensor, sides) -> Tensor:
        """The users' and then the items' InfoNCE logits (cosine similarities over ``tau``), flattened."""
        factors = self._factors(rows, graph, phi, sides)
        return torch.cat([(first @ second.t()).flatten() / self.tau for first, second in factors])

    def _loss(self, graph: HeteroData, sides) -> Callable[[Tensor], Tensor]:
        """``logits -> the term`` on ``graph``: convex in the logits (a softmax cross-entropy per row; a side
        with no node to contrast adds nothing)."""
        scale, counts = self.scale(graph), [ids.numel() for ids in sides]

        def loss(logits: Tensor) -> Tensor:  # a 0 still tied to phi where no side has a node (autograd needs one)
            blocks = logits.split([n * n for n in counts])
            return scale * sum((F.cross_entropy(block.view(n, n), torch.arange(n, device=block.device))
                                for block, n in zip(blocks, counts) if n > 0), logits.sum() * 0)
        return loss

    def __repr__(self) -> str:
        return (f"ContrastiveTerm(model={type(self.model).__name__}, users={self.users.numel()}, "
                f"items={self.items.numel()}, ssl_weight={self.weight:g}, tau={self.tau:g})")

    def scale(self, graph: HeteroData) -> float:
        """:math:`|D|\\,\\lambda_{ssl}` on ``graph``."""
        return self.weight * graph[EDGE].edge_index.size(1)

    def function(self, rows: NodeRows, graph: HeteroData) -> Callable[[Tensor], Tensor]:
        """``phi -> the term`` on ``graph`` (differentiable)."""
        sides = self.contrasted(graph)
        loss = self._loss(graph, sides)
        return lambda phi: loss(self._logits(rows, graph, phi, sides))

    def gauss_newton(self, rows: NodeRows, graph: HeteroData, phi: Tensor) -> GaussNewtonOperator:
        """Its Gauss-Newton curvature at ``phi``, positive semi-definite: the logits' Jacobian around the Hessian
        of the loss in them. The exact Hessian adds the cosines' own curvature and is indefinite at a trained
        point (measured: SGL on ML-100K, CG met negative curvature at the implicit ridge).

        The products go through the logits' two factors (``_factors``) and never differentiate the
        ``[n, n]`` logits themselves: on ML-1M's SGL (6,040 users, 3,706 items) a product takes 0.65 s against
        2.3 s by double backward through the flattened logits, the same to 1e-7."""
        sides = self.contrasted(graph)

        def flat_factors(x: Tensor) -> Tensor:
            return torch.cat([t.flatten() for pair in self._factors(rows, graph, x, sides) for t in pair])
        return GaussNewtonOperator(flat_factors, None, phi,
                                   output_curvature=lambda z: self._info_nce_curvature(z, graph, sides))

    def _info_nce_curvature(self, flat: Tensor, graph: HeteroData, sides) -> Callable[[Tensor], Tensor]:
        r"""At the factors ``flat``, ``w -> K^T H K w``: a change of the factors through the logits
        :math:`Z = AB^\top/\tau` (:math:`K`) and the Hessian :math:`H` of the term in them, per row
        :math:`(\mathrm{diag}(p) - pp^\top)\,|D|\lambda_{ssl}/n` with :math:`p` the row's softmax."""
        sizes = [n for ids in sides for n in (ids.numel(), ids.numel())]
        dim, scale = flat.numel() // max(sum(sizes), 1), self.scale(graph)
        factors = [t.view(-1, dim) for t in flat.split([n * dim for n in sizes])]
        pairs = list(zip(factors[::2], factors[1::2]))
        probs = [torch.softmax(a @ b.t() / self.tau, dim=1) for a, b in pairs]

        def product(w: Tensor) -> Tensor:
            moves, out = [t.view(-1, dim) for t in w.split([n * dim for n in sizes])], []
            for (a, b), (da, db), p in zip(pairs, zip(moves[::2], moves[1::2]), probs):
                if a.size(0) == 0:  # a side with no node to contrast
                    out += [da.flatten(), db.flatten()]  # empty
                    continue
                r = torch.cat([da, a], 1) @ torch.cat([b, db], 1).t()  # tau * the logits' change
                r.mul_(p)
                r.addcmul_(p, r.sum(1, keepdim=True), value=-1).mul_(scale / (a.size(0) * self.tau ** 2))
                out += [(r @ b).flatten(), (r.t() @ a).flatten()]
            return torch.cat(out)
        return product


def _sample(count: int, limit: int, generator: torch.Generator) -> Tensor:
    return torch.arange(count) if count <= limit else torch.randperm(count, generator=generator)[:limit].sort().values
