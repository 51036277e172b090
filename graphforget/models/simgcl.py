"""SimGCL (Yu et al., SIGIR 2022): LightGCN with noise-perturbed views and an InfoNCE term."""
from __future__ import annotations

import math
from typing import Callable, cast

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import HeteroData

from ..config import is_integer, is_real, uniform
from .base import MODELS
from .lightgcn import LightGCN
from .sgl import check_contrastive_ids, views_info_nce

__all__ = ["SimGCL"]


class SimGCL(LightGCN):
    r"""SimGCL: contrast two views made by adding sign-matched random noise at every layer.

    .. math::
        \mathbf{E}'^{(k)} = \tilde{\mathbf{A}} \mathbf{E}'^{(k-1)} + \Delta'^{(k)}, \qquad
        \Delta'^{(k)} = \epsilon \,\mathrm{sign}(\tilde{\mathbf{A}} \mathbf{E}'^{(k-1)}) \odot
        \frac{\mathbf{R}}{\lVert \mathbf{R} \rVert_{\text{row}}}, \quad \mathbf{R} \sim U(0, 1), \qquad
        \mathbf{Z}' = \frac{1}{K} \sum_{k=1}^{K} \mathbf{E}'^{(k)},

    so each row of :math:`\Delta` has norm :math:`\epsilon` and lies in the embedding's orthant (Yu et
    al., "Are Graph Augmentations Necessary?", SIGIR 2022, Eq. 7). As in SimGCL, layer 0 is left out
    of the layer mean, in the views and at inference alike: :meth:`~graphforget.models.LightGCN.embed` is the noiseless
    :math:`\frac{1}{K}\sum_{k=1}^{K}\tilde{\mathbf{A}}^k\mathbf{E}^{(0)}`, deterministic. The contrastive
    term (see :meth:`contrastive_loss` and :class:`~graphforget.models.ContrastiveBPRObjective`)
    is InfoNCE between two views for the batch's distinct users and items.

    Args:
        num_users, num_items, embedding_dim: as :class:`LightGCN`.
        num_layers: :math:`K \ge 1`.
        eps: noise magnitude :math:`\epsilon \ge 0`.
    """

    linear_embedding = True  # inference is noiseless: embed() is linear in the tables, scores are dot products

    def __init__(self, num_users: int, num_items: int, embedding_dim: int = 64, num_layers: int = 2,
                 eps: float = 0.1):
        if not is_integer(num_layers) or num_layers < 1:  # "2" failed comparing a str with an int
            raise ValueError(f"SimGCL averages layers 1..K: num_layers must be an integer >= 1, got {num_layers!r}")
        _check_eps(eps)
        super().__init__(num_users, num_items, embedding_dim, num_layers)
        self.eps = float(eps)

    def propagate(self, graph: HeteroData, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Mean of layers ``1..K`` of ``x [U + I, d]`` over ``graph``; noisy when a ``generator`` is given.

        With a generator, each layer draws one ``torch.rand`` of ``x``'s shape, in layer order.
        """
        adj = self.adjacency(graph, x)
        return self._layers(x, adj, None if generator is None else (lambda layer, h: self._noise(h, generator)))

    def _noise(self, x: Tensor, generator: torch.Generator) -> Tensor:
        """:math:`\\Delta`: ``eps`` times a sign-matched, row-normalised ``torch.rand`` of ``x``'s shape (drawn in
        float32 in every dtype, as :func:`~graphforget.models.base.init_from` draws: a seed's noise is one)."""
        _check_eps(self.eps)  # set after construction too: -5 flipped the noise, trusted
        noise = uniform(tuple(x.shape), generator, generator.device).to(x.device, x.dtype)
        return self.eps * torch.sign(x) * F.normalize(noise, dim=-1)

    def _drawn_noise(self, x: Tensor, adj, generator: torch.Generator) -> list[Tensor]:
        """Each layer's noise of one view, drawn as :meth:`propagate` draws it."""
        noise = []

        def drawn(layer: int, h: Tensor) -> Tensor:
            noise.append(self._noise(h, generator))
            return noise[-1]
        self._layers(x, adj, drawn)
        return noise

    def _layers(self, x: Tensor, adj, perturb: Callable[[int, Tensor], Tensor] | None) -> Tensor:
        """Mean of layers ``1..K``, each layer plus ``perturb(k, its propagation)`` when given."""
        out = torch.zeros_like(x)
        for layer in range(self.num_layers):
            x = self.conv(x, adj)
            if perturb is not None:
                x = x + perturb(layer, x)
            out = out + x
        return out / self.num_layers

    def views(self, graph: HeteroData, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """Node embeddings ``[U + I, d]`` (users first) of two perturbed views, drawn in that order."""
        x = self.layer0()
        return self.propagate(graph, x, generator), self.propagate(graph, x, generator)

    def contrastive_loss(self, graph: HeteroData, users: Tensor, items: Tensor, generator: torch.Generator,
                         tau: float = 0.2) -> Tensor:
        """InfoNCE of the users ``[Bu]`` plus InfoNCE of the items ``[Bi]`` between two fresh views."""
        check_contrastive_ids(self, users, items)
        return views_info_nce(*self.views(graph, generator), users, items + self.num_users, tau)

    def fixed_views(self, reference: HeteroData, generator: torch.Generator
                    ) -> Callable[[HeteroData], tuple[Tensor, Tensor]]:
        """One draw of the two views as a function of the graph they are taken of and of the tables (for
        influence methods, :class:`~graphforget.influence.ContrastiveTerm`): each layer adds the noise
        :math:`\\Delta` drawn now, on ``reference`` with the current tables, as :meth:`views` draws it, whatever
        the graph and the tables later. So the views are smooth in the tables (the signs of :math:`\\Delta` do not
        follow them: with them, a step flips the signs of the entries it crosses zero at, and the contrastive
        term jumps) and the same noise on every graph. ``generator``: a CPU generator."""
        with torch.no_grad():
            x = self.layer0()
            adj = self.adjacency(reference, x)
            draws = [self._drawn_noise(x, adj, generator) for _ in range(2)]

        def draw(graph: HeteroData) -> tuple[Tensor, Tensor]:
            x = self.layer0()
            adj = self.adjacency(graph, x)
            return cast("tuple[Tensor, Tensor]",  # two views
                        tuple(self._layers(x, adj, lambda layer, h, noise=noise: noise[layer])  # type: ignore[misc]
                              for noise in draws))  # mypy infers no lambda with a default argument
        return draw

    def config(self) -> dict:
        return {**super().config(), "eps": self.eps}


MODELS["simgcl"] = SimGCL


def _check_eps(eps) -> None:
    # rejects NaN too: NaN or infinite noise makes every view non-finite
    if not (is_real(eps) and 0 <= eps < math.inf):
        raise ValueError(f"eps must be a finite number >= 0, got {eps!r}")
