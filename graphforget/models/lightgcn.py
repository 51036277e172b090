"""LightGCN (He et al., SIGIR 2020) with PyG message passing."""
from __future__ import annotations

import weakref
from collections import OrderedDict

import torch
from torch import Tensor
from torch_geometric.data import HeteroData
from torch_geometric.nn import LGConv
from torch_geometric.utils import to_torch_csr_tensor

from ..data.interactions import EDGE, bipartite_to_homogeneous, propagation_edges
from .base import MODELS, Recommender

__all__ = ["LightGCN", "SymmetricLGConv", "symmetric_spmm"]


class _SymmetricSpmm(torch.autograd.Function):
    """``adj @ x`` for a symmetric sparse ``adj``, whose backward is ``adj @ grad`` again.

    torch's own backward of a CSR product transposes the matrix (a sort over every edge) on each call,
    several times the cost of the product itself; a symmetric adjacency needs no transpose. The
    backward goes through this function too, so second derivatives (Hessian-vector products) work.
    """

    @staticmethod
    def forward(ctx, adj: Tensor, x: Tensor) -> Tensor:
        ctx.adj = adj
        return torch.sparse.mm(adj, x)

    @staticmethod
    def backward(ctx, grad: Tensor):
        return None, symmetric_spmm(ctx.adj, grad)


def symmetric_spmm(adj: Tensor, x: Tensor) -> Tensor:
    """``adj @ x`` for a symmetric sparse ``adj`` (see :class:`_SymmetricSpmm`)."""
    return _SymmetricSpmm.apply(adj, x)


class _AdjacencyCache:
    """The last few CSR adjacencies, keyed by the tensors they were built from.

    Building the CSR matrix (a coalesce: a sort over every edge) costs as much as several sparse
    products, and the influence code and full-batch training run the model on the same graph dozens
    of times. An entry matches only the very same tensors (weak references, so a freed tensor never
    matches a new one) at the same version (so an in-place change invalidates it).
    """

    def __init__(self, size: int = 4):
        self.size, self.entries = size, OrderedDict()

    def get(self, tensors, extra, build):
        if any(t.requires_grad for t in tensors):  # a differentiable adjacency is never shared
            return build()
        key = tuple((id(t), t._version) for t in tensors) + extra
        entry = self.entries.get(key)
        if entry is not None and all(ref() is t for ref, t in zip(entry[0], tensors)):
            self.entries.move_to_end(key)
            return entry[1]
        adj = build()
        self.entries[key] = ([weakref.ref(t) for t in tensors], adj)
        while len(self.entries) > self.size:
            self.entries.popitem(last=False)
        return adj


_ADJACENCIES = _AdjacencyCache()


class SymmetricLGConv(LGConv):
    """PyG's :class:`~torch_geometric.nn.conv.LGConv` over a symmetric sparse adjacency, aggregating with
    :func:`symmetric_spmm` (no transpose in the backward)."""

    def message_and_aggregate(self, adj_t, x: Tensor) -> Tensor:
        return symmetric_spmm(adj_t, x)


class LightGCN(Recommender):
    r"""LightGCN: embeddings propagated over the symmetric normalised user-item graph.

    .. math::
        \mathbf{E}^{(k+1)} = \tilde{\mathbf{A}} \mathbf{E}^{(k)}, \qquad
        \mathbf{E} = \frac{1}{K+1} \sum_{k=0}^{K} \mathbf{E}^{(k)}, \qquad
        \hat y_{ui} = \mathbf{e}_u^\top \mathbf{e}_i,

    with :math:`\tilde{\mathbf{A}} = \mathbf{D}^{-1/2} \mathbf{A} \mathbf{D}^{-1/2}` over the observed
    interactions of the graph passed in (recomputed on every call).

    Args:
        num_users, num_items: node counts.
        embedding_dim: size of :math:`\mathbf{E}^{(0)}` rows.
        num_layers: :math:`K` (also the receptive field).
    """
    supports_edge_weight = True
    linear_embedding = True  # embed() is linear in the tables: fast curvature products

    def __init__(self, num_users: int, num_items: int, embedding_dim: int = 64, num_layers: int = 2):
        if num_layers < 0:
            raise ValueError("num_layers must be >= 0")
        self.num_layers = num_layers
        super().__init__(num_users, num_items, embedding_dim)
        self.conv = SymmetricLGConv(normalize=False)

    @property
    def receptive_field(self) -> int:
        return self.num_layers

    def adjacency(self, graph: HeteroData, like: Tensor) -> Tensor:
        """:math:`\\tilde{\\mathbf{A}}` of ``graph`` as a CSR tensor ``[U + I, U + I]`` on ``like``'s device
        and dtype (cached: see :class:`_AdjacencyCache`)."""
        store = graph[EDGE]
        tensors = [store[key] for key in ("edge_index", "observed", "edge_weight") if key in store]
        size = self.num_users + self.num_items

        def build():
            edge_index, edge_weight = propagation_edges(graph)
            edge_index = bipartite_to_homogeneous(edge_index.to(like.device), self.num_users)
            edge_weight = torch.cat([edge_weight, edge_weight]).to(like)
            return to_torch_csr_tensor(edge_index, edge_weight, size=(size, size))
        return _ADJACENCIES.get(tensors, (size, self.num_users, like.device, like.dtype), build)

    def propagate(self, graph: HeteroData, x: Tensor) -> Tensor:
        """Layer-averaged propagation of node features ``x [U + I, d]`` (users first) over ``graph``."""
        # A CSR adjacency makes LGConv aggregate with one sparse matmul (spmm): about 4x faster than
        # gather/scatter over edge_index on the CPU, first and second derivatives included.
        adj = self.adjacency(graph, x)
        out = x
        for _ in range(self.num_layers):
            x = self.conv(x, adj)
            out = out + x
        return out / (self.num_layers + 1)

    def embed(self, graph: HeteroData) -> tuple[Tensor, Tensor]:
        x = torch.cat([self.user_emb.weight, self.item_emb.weight])
        return self.propagate(graph, x).split([self.num_users, self.num_items])

    def config(self) -> dict:
        return {**super().config(), "num_layers": self.num_layers}


MODELS["lightgcn"] = LightGCN
