"""Loss terms of an objective as tensors: the pairs they score and their targets."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from ..objectives import Objective

__all__ = ["Terms", "training_terms"]


@dataclass
class Terms:
    """``B`` loss terms scoring ``m`` pairs each (see :meth:`graphforget.objectives.Objective.pairs`).

    Attributes:
        edge_label_index: ``[2, m * B]`` (user, item) pairs, block-major.
        target: ``[B, ...]`` per-term targets (a label, or a row of what the objective's losses read: a label and a
            weight).
        cache: what is derived from the pairs once and reused (the closed form's pair pattern); the
            tensors are not to be changed in place after construction.
    """
    edge_label_index: Tensor
    target: Tensor
    cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __len__(self) -> int:  # the terms, not the target's entries: a [B, 2] target of (label, weight) is B terms
        return self.target.size(0) if self.target.dim() else 1

    @property
    def blocks(self) -> int:
        return self.edge_label_index.size(1) // max(len(self), 1)

    def touches(self, node_mask: Tensor, num_users: int) -> Tensor:
        """``[B]`` whether any pair of a term has an endpoint in the homogeneous ``node_mask``."""
        user, item = self.edge_label_index
        # index_select: 4x faster than a boolean gather over every pair (a scan per request on large graphs)
        hit = node_mask[:num_users].index_select(0, user) | node_mask[num_users:].index_select(0, item)
        return hit.view(self.blocks, len(self)).any(0) if len(self) else hit

    def touching(self, node_mask: Tensor, num_users: int) -> "Terms":
        """The terms with a pair that has an endpoint in the homogeneous ``node_mask``."""
        return self.select(self.touches(node_mask, num_users))

    def select(self, mask: Tensor) -> "Terms":
        """The terms where the ``[B]`` bool ``mask`` holds."""
        index = mask.nonzero().flatten()
        eli = self.edge_label_index.view(2, self.blocks, len(self)).index_select(2, index).reshape(2, -1)
        return Terms(eli, self.target.index_select(0, index))

    def part(self, index: int, count: int) -> "Terms":
        """The ``index``-th of ``count`` contiguous parts of the terms (their sizes differ by one at most;
        ``self`` when ``count == 1``). Contiguous, so that a part scores few nodes: the terms come in edge order."""
        if count == 1:
            return self
        start, stop = index * len(self) // count, (index + 1) * len(self) // count
        eli = self.edge_label_index.view(2, self.blocks, len(self))[:, :, start:stop].reshape(2, -1)
        return Terms(eli, self.target[start:stop])

    def nodes(self, num_users: int, num_nodes: int) -> Tensor:
        """Homogeneous ids of every endpoint the terms score (sorted, by a mask: no sort of all pairs)."""
        mask = torch.zeros(num_nodes, dtype=torch.bool, device=self.target.device)
        mask[self.edge_label_index[0]] = True
        mask[self.edge_label_index[1] + num_users] = True
        return mask.nonzero().flatten()

    def cat(self, other: "Terms") -> "Terms":
        """These terms followed by ``other``'s (same number of blocks)."""
        if len(other) == 0:
            return self
        if len(self) and other.blocks != self.blocks:
            raise ValueError("cannot concatenate terms with different numbers of pairs")
        blocks = other.blocks
        eli = torch.cat([self.edge_label_index.view(2, blocks, -1), other.edge_label_index.view(2, blocks, -1)], 2)
        return Terms(eli.reshape(2, -1), torch.cat([self.target, other.target]))

    def __repr__(self) -> str:
        return f"Terms(terms={len(self)}, blocks={self.blocks})"


def training_terms(objective: Objective, graph: HeteroData, positions: Tensor | None = None, epoch: int = 0
                   ) -> Terms:
    """The terms of ``objective`` for the edges at ``positions`` (all by default), ``epoch``'s negatives."""
    return Terms(*objective.pairs(graph, positions, epoch))
