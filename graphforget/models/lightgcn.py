"""LightGCN (He et al., SIGIR 2020) with PyG message passing."""
from __future__ import annotations

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from ..config import is_integer
from ..data.adjacency import AdjacencyCache
from .base import MODELS, EmbeddingRecommender
from .propagation import SymmetricLGConv, layer_sum, symmetric_spmm

__all__ = ["LightGCN", "SymmetricLGConv", "symmetric_spmm"]


class LightGCN(EmbeddingRecommender):
    r"""LightGCN: embeddings propagated over the symmetric normalised user-item graph.

    .. math::
        \mathbf{E}^{(k+1)} = \tilde{\mathbf{A}} \mathbf{E}^{(k)}, \qquad
        \mathbf{E} = \frac{1}{K+1} \sum_{k=0}^{K} \mathbf{E}^{(k)}, \qquad
        \hat y_{ui} = \mathbf{e}_u^\top \mathbf{e}_i,

    with :math:`\tilde{\mathbf{A}} = \mathbf{D}^{-1/2} \mathbf{A} \mathbf{D}^{-1/2}` over the observed
    interactions of the graph passed in (kept by :attr:`adjacencies` while that graph's edges stay the same).

    Args:
        num_users, num_items: node counts.
        embedding_dim: size of :math:`\mathbf{E}^{(0)}` rows.
        num_layers: :math:`K` (also the receptive field).
    """
    supports_edge_weight = True
    linear_embedding = True  # embed() is linear in the tables: fast curvature products

    def __init__(self, num_users: int, num_items: int, embedding_dim: int = 64, num_layers: int = 2):
        if not is_integer(num_layers) or num_layers < 0:
            raise ValueError(f"num_layers must be an integer >= 0, got {num_layers!r}")
        super().__init__(num_users, num_items, embedding_dim)
        self.num_layers = int(num_layers)  # as embedding_dim
        self.conv = SymmetricLGConv(normalize=False)
        #: The normalised adjacencies of the graphs this model ran on, checked against the graph on
        #: every call (see :class:`~graphforget.data.AdjacencyCache`); a copy of the model starts empty.
        self.adjacencies = AdjacencyCache()

    @property
    def receptive_field(self) -> int:  # type: ignore[override]  # Recommender's class default; never set on one
        return self.num_layers

    def adjacency(self, graph: HeteroData, like: Tensor) -> Tensor:
        """:math:`\\tilde{\\mathbf{A}}` of ``graph`` as a CSR tensor ``[U + I, U + I]`` on ``like``'s device
        and dtype (:func:`~graphforget.data.normalized_adjacency`, kept by :attr:`adjacencies`)."""
        self.check_node_counts(graph)
        return self.adjacencies(graph, like)

    def propagate(self, graph: HeteroData, x: Tensor) -> Tensor:
        """Layer-averaged propagation of node features ``x [U + I, d]`` (users first) over ``graph``."""
        return self.layer_average(self.adjacency(graph, x), x)

    def layer_average(self, adjacency: Tensor, x: Tensor) -> Tensor:
        """The mean of ``x`` propagated over ``adjacency`` (a normalised adjacency already built, SGL's views)
        0 to ``num_layers`` times."""
        return layer_sum(adjacency, x, self.num_layers) / (self.num_layers + 1)

    def layer0(self) -> Tensor:
        """The layer-0 embeddings ``[U + I, d]``: the user table, then the item table (whatever tables an
        influence method has swapped in)."""
        return torch.cat([self.user_emb.weight, self.item_emb.weight])

    def embed(self, graph: HeteroData) -> tuple[Tensor, Tensor]:
        # Split at the tables' sizes: the influence code runs it on a relabelled subgraph with tables of its nodes.
        return self.propagate(graph, self.layer0()).split([self.user_emb.weight.size(0), self.item_emb.weight.size(0)])

    def config(self) -> dict:
        return {**super().config(), "num_layers": self.num_layers}


MODELS["lightgcn"] = LightGCN
