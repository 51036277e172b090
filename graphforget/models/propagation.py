r"""Propagation over a symmetric sparse adjacency: the one engine of LightGCN (and the models built on
it) and of UnlearnRec's Influence Encoder.

The adjacency is a CSR matrix over homogeneous node ids (users first), e.g.
:func:`~graphforget.data.normalized_adjacency`.
"""
from __future__ import annotations

import torch
from torch import Tensor
from torch_geometric.nn import LGConv

__all__ = ["symmetric_spmm", "layer_sum", "SymmetricLGConv"]


class _SymmetricSpmm(torch.autograd.Function):
    """``adj @ x`` for a symmetric sparse ``adj``, whose backward is ``adj @ grad`` again.

    torch's own backward of a CSR product transposes the matrix (a sort over every edge) on each call,
    several times the cost of the product itself; a symmetric adjacency needs no transpose. The
    backward goes through this function too, so second derivatives (Hessian-vector products) work.
    """

    @staticmethod
    def forward(ctx, adj: Tensor, x: Tensor) -> Tensor:
        ctx.adj = adj
        return _sparse_mm(adj, x)

    @staticmethod
    def backward(ctx, grad: Tensor):
        return None, symmetric_spmm(ctx.adj, grad)


def symmetric_spmm(adj: Tensor, x: Tensor) -> Tensor:
    """``adj @ x`` for a symmetric sparse ``adj`` (see :class:`_SymmetricSpmm`); torch's own product when ``adj``
    requires a gradient (edge weights being learnt), whose backward reaches it (ours returns none for it): first
    derivatives in the weights only (torch's CSR backward has no second)."""
    return _sparse_mm(adj, x) if adj.requires_grad else _SymmetricSpmm.apply(adj, x)


def _sparse_mm(adj: Tensor, x: Tensor) -> Tensor:
    """``torch.sparse.mm``, in float32 for half precision on the CPU, where torch's sparse kernels have none (a
    float16 or bfloat16 LightGCN failed there to score, "not implemented for 'Half'")."""
    if x.device.type == "cpu" and x.dtype in (torch.float16, torch.bfloat16):
        return torch.sparse.mm(adj.to(torch.float32), x.to(torch.float32)).to(x.dtype)
    return torch.sparse.mm(adj, x)


def layer_sum(adjacency: Tensor, x: Tensor, num_layers: int) -> Tensor:
    r""":math:`\sum_{l=0}^{L} \tilde{\mathbf{A}}^l \mathbf{x}` for a symmetric sparse :math:`\tilde{\mathbf{A}}`.

    LightGCN's embedding is this sum over :math:`L + 1`; UnlearnRec's encoder propagates with it.

    Args:
        adjacency: ``[N, N]`` symmetric sparse matrix (CSR: one sparse product per layer, about 4x
            faster than gather/scatter over an edge index on the CPU, derivatives included).
        x: ``[N, d]`` node features.
        num_layers: :math:`L \ge 0`.
    """
    out = x
    for _ in range(num_layers):
        x = symmetric_spmm(adjacency, x)
        out = out + x
    return out


class SymmetricLGConv(LGConv):
    """PyG's :class:`~torch_geometric.nn.conv.LGConv` over a symmetric sparse adjacency, aggregating with
    :func:`symmetric_spmm` (no transpose in the backward)."""

    def message_and_aggregate(self, adj_t, x: Tensor) -> Tensor:
        return symmetric_spmm(adj_t, x)
