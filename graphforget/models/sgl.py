"""SGL (Wu et al., SIGIR 2021): LightGCN with edge-dropout views and an InfoNCE term.

Also home of the pieces every contrastive backbone shares: :func:`info_nce` and
:class:`ContrastiveBPRObjective`, the objective that adds the model's contrastive term to BPR.
"""
from __future__ import annotations

import math
from typing import Callable, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.data import HeteroData

from ..config import is_real, uniform
from ..data.adjacency import AdjacencyCache, AdjacencyPattern
from ..data.interactions import EDGE, check_ids_in_range, message_passing_edges, num_items, num_users, pair_keys
from ..objectives import BPRObjective
from .base import MODELS
from .lightgcn import LightGCN

__all__ = ["SGL", "info_nce", "views_info_nce", "ContrastiveBPRObjective"]


def info_nce(anchor: Tensor, positive: Tensor, tau: float) -> Tensor:
    r"""InfoNCE between two views of the same ``n`` objects, the other rows acting as negatives.

    .. math::
        \mathcal{L} = \frac{1}{n} \sum_{a=1}^{n} -\log
        \frac{\exp(s(\mathbf{z}'_a, \mathbf{z}''_a)/\tau)}{\sum_{b=1}^{n} \exp(s(\mathbf{z}'_a, \mathbf{z}''_b)/\tau)},

    with :math:`s` the cosine similarity (Wu et al., SIGIR 2021, Eq. 10; Yu et al., SIGIR 2022, Eq. 3).

    Args:
        anchor: ``[n, d]`` first view :math:`\mathbf{z}'`.
        positive: ``[n, d]`` second view :math:`\mathbf{z}''` (row ``a`` is the positive of anchor row ``a``).
        tau: temperature :math:`\tau > 0`: a number, or a 0-dim floating tensor (a learnt one).

    Returns:
        The scalar mean loss (0 for ``n = 0``).
    """
    if anchor.shape != positive.shape or anchor.dim() != 2:
        raise ValueError(f"views must both be [n, d], got {list(anchor.shape)} and {list(positive.shape)}")
    number = is_real(tau) or isinstance(tau, Tensor) and tau.dim() == 0 and tau.is_floating_point()  # learnt
    if not (number and 0 < tau < math.inf):  # rejects NaN too (a NaN loss), and True and "0.2"
        raise ValueError(f"tau must be a finite number > 0, got {tau!r}")
    tau = tau if isinstance(tau, Tensor) else float(tau)  # a Fraction failed in the division
    if anchor.size(0) == 0:
        return anchor.sum() * 0
    logits = F.normalize(anchor, dim=1) @ F.normalize(positive, dim=1).t() / tau
    return F.cross_entropy(logits, torch.arange(anchor.size(0), device=anchor.device))


def _view(graph: HeteroData, edge_index: Tensor) -> HeteroData:
    """``graph``'s nodes with only ``edge_index`` (renormalised by its own degrees)."""
    view = HeteroData()
    view["user"].num_nodes = num_users(graph)
    view["item"].num_nodes = num_items(graph)
    view[EDGE].edge_index = edge_index
    return view


class SGL(LightGCN):
    r"""SGL-ED: LightGCN trained with BPR plus InfoNCE between two edge-dropout views.

    Inference (:meth:`~graphforget.models.LightGCN.embed`, :meth:`~graphforget.models.Recommender.forward`) is
    plain LightGCN propagation over the graph passed in, deterministic. Training adds, through
    :class:`ContrastiveBPRObjective`, the self-supervised term

    .. math::
        \mathcal{L}_{ssl} = \mathrm{InfoNCE}(\mathbf{Z}'_{\mathcal{U}_B}, \mathbf{Z}''_{\mathcal{U}_B})
                          + \mathrm{InfoNCE}(\mathbf{Z}'_{\mathcal{I}_B}, \mathbf{Z}''_{\mathcal{I}_B}),
        \qquad \mathbf{Z}' = \mathrm{LightGCN}(\mathbf{E}^{(0)}; s'(\mathcal{G})),

    where :math:`s', s''` drop each edge with probability ``drop_ratio`` (renormalised), and
    :math:`\mathcal{U}_B, \mathcal{I}_B` are the distinct users and items of the batch (Wu et al.,
    "Self-supervised Graph Learning for Recommendation", SIGIR 2021). We draw two new views at
    every training step (the paper redraws them every epoch).

    Args:
        num_users, num_items, embedding_dim, num_layers: as :class:`LightGCN`.
        drop_ratio: edge dropout probability :math:`\rho` of each view, in ``[0, 1)``.
    """

    linear_embedding = True  # inference is plain LightGCN: linear in the tables, dot-product scores

    def __init__(self, num_users: int, num_items: int, embedding_dim: int = 64, num_layers: int = 2,
                 drop_ratio: float = 0.1):
        _check_drop_ratio(drop_ratio)
        super().__init__(num_users, num_items, embedding_dim, num_layers)
        self.drop_ratio = float(drop_ratio)
        #: The adjacency patterns of the graphs the views were drawn from, checked as
        #: :attr:`~graphforget.models.LightGCN.adjacencies` are.
        self.patterns = AdjacencyCache(build=AdjacencyPattern.of)

    def views(self, graph: HeteroData, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """Node embeddings ``[U + I, d]`` (users first) of two edge-dropout views, drawn in that order.

        Each view keeps each observed (user, item) edge with probability ``1 - drop_ratio`` (one ``torch.rand``
        draw of ``[E']`` values from ``generator``) and is renormalised by its own degrees, as SGL's edge
        dropout is; its adjacency is read from the graph's :class:`~graphforget.data.AdjacencyPattern`."""
        self.check_node_counts(graph)
        _check_drop_ratio(self.drop_ratio)  # set after construction too: NaN kept every edge, 1 none, trusted
        x = self.layer0()
        pattern = cast(AdjacencyPattern, self.patterns(graph, x))  # what the cache's build makes
        edges = pattern.edge_index
        views = []
        for _ in range(2):
            keep = uniform(edges.size(1), generator, edges.device) >= self.drop_ratio
            views.append(self.layer_average(pattern.subset(keep, x), x))
        return views[0], views[1]

    def contrastive_loss(self, graph: HeteroData, users: Tensor, items: Tensor, generator: torch.Generator,
                         tau: float = 0.2) -> Tensor:
        """InfoNCE of the users ``[Bu]`` plus InfoNCE of the items ``[Bi]`` between two fresh views."""
        check_contrastive_ids(self, users, items)
        return views_info_nce(*self.views(graph, generator), users, items + self.num_users, tau)

    def fixed_views(self, reference: HeteroData, generator: torch.Generator
                    ) -> Callable[[HeteroData], tuple[Tensor, Tensor]]:
        """One draw of the two views as a function of the graph they are taken of (for influence methods,
        :class:`~graphforget.influence.ContrastiveTerm`): each view keeps a fixed set of ``reference``'s edges,
        drawn as :meth:`views` draws them, so that a graph with edges removed from ``reference`` keeps the same
        edges less the removed ones. ``generator``: a CPU generator."""
        _check_drop_ratio(self.drop_ratio)
        edges, items = message_passing_edges(reference), num_items(reference)
        keeps = [uniform(edges.size(1), generator).to(edges.device) >= self.drop_ratio for _ in range(2)]
        kept = [pair_keys(edges[:, keep], items) for keep in keeps]

        def draw(graph: HeteroData) -> tuple[Tensor, Tensor]:
            x = self.layer0()
            present = message_passing_edges(graph)
            keys = pair_keys(present, items)
            return cast("tuple[Tensor, Tensor]",  # two views
                        tuple(self.propagate(_view(graph, present[:, torch.isin(keys, view)]), x) for view in kept))
        return draw

    def config(self) -> dict:
        return {**super().config(), "drop_ratio": self.drop_ratio}


def _check_drop_ratio(drop_ratio) -> None:
    if not (is_real(drop_ratio) and 0 <= drop_ratio < 1):
        raise ValueError(f"drop_ratio must be a number in [0, 1), got {drop_ratio!r}")


def check_contrastive_ids(model, users: Tensor, items: Tensor) -> None:
    """The ids of a ``contrastive_loss`` call in range: user 7 of 5 read an item's row, item -1 the last user's."""
    check_ids_in_range(users, model.num_users, "contrastive_loss: user")
    check_ids_in_range(items, model.num_items, "contrastive_loss: item")


def views_info_nce(first: Tensor, second: Tensor, users: Tensor, nodes_of_items: Tensor, tau: float) -> Tensor:
    """InfoNCE of the users plus InfoNCE of the items (homogeneous ids) between two views ``[U + I, d]``."""
    # index_select, not ``first[users]``: its backward adds rows deterministically on the CPU.
    return (info_nce(first.index_select(0, users), second.index_select(0, users), tau)
            + info_nce(first.index_select(0, nodes_of_items), second.index_select(0, nodes_of_items), tau))


def _check_contrast(ssl_weight, tau) -> None:
    if not (is_real(ssl_weight) and 0 <= ssl_weight < math.inf):  # rejects NaN too
        raise ValueError(f"ssl_weight must be a finite number >= 0, got {ssl_weight!r}")
    if not (is_real(tau) and 0 < tau < math.inf):
        raise ValueError(f"tau must be a finite number > 0, got {tau!r}")


class ContrastiveBPRObjective(BPRObjective):
    r"""BPR plus the model's contrastive term, for SGL / SimGCL-style backbones.

    .. math::
        \mathcal{L}_B = \frac{1}{|B|} \sum_{e \in B} \ell^{BPR}_e + \lambda_{ssl}\,
        \mathcal{L}_{ssl}(B) + \frac{\lambda}{2|D|}\lVert\theta\rVert^2 .

    The contrastive term needs ``model.contrastive_loss(graph, users, items, generator, tau)`` and is
    added in :meth:`batch_loss` only: it is a stochastic regulariser of training, while
    :meth:`~graphforget.objectives.Objective.edge_losses` and :meth:`~graphforget.objectives.Objective.total`
    stay the deterministic BPR risk. Influence methods add the term as one fixed draw of the views
    (``model.fixed_views``; :class:`~graphforget.influence.ContrastiveTerm`).
    Its randomness comes from a ``torch.Generator`` seeded from ``(seed, epoch)`` and the batch (see
    :meth:`generator`), never from the global RNG.

    Args:
        l2: see :class:`~graphforget.objectives.Objective`.
        ssl_weight: :math:`\lambda_{ssl} \ge 0`.
        tau: InfoNCE temperature.
        seed: seed of the BPR negatives and of the views.
        resample: as :class:`~graphforget.objectives.BPRObjective`.
    """

    shown_first = ("l2", "ssl_weight", "tau", "seed", "resample")

    def __init__(self, l2: float = 0.0, ssl_weight: float = 0.1, tau: float = 0.2, seed: int = 0,
                 resample: bool = True):
        _check_contrast(ssl_weight, tau)
        super().__init__(l2, seed, resample)
        self.ssl_weight, self.tau = float(ssl_weight), float(tau)

    def _check_fields(self) -> None:
        super()._check_fields()
        _check_contrast(self.ssl_weight, self.tau)

    def generator(self, positions: Tensor, epoch: int, device: torch.device | str = "cpu") -> torch.Generator:
        """The generator of one step: a pure function of ``(seed, epoch)`` and the batch's positions.

        Seeding from the batch too gives every step of an epoch its own views while keeping
        :meth:`batch_loss` a deterministic function of its arguments.
        """
        key = (self.seed, epoch, positions.numel(),
               int(positions[0]) if positions.numel() else -1, int(positions[-1]) if positions.numel() else -1)
        return torch.Generator(device).manual_seed(hash(key) & ((1 << 63) - 1))

    def batch_loss(self, model: nn.Module, graph: HeteroData, positions: Tensor, epoch: int = 0,
                   share: tuple[int, int] = (0, 1)) -> Tensor:
        loss = super().batch_loss(model, graph, positions, epoch, share)
        if self.ssl_weight == 0:
            return loss
        if not hasattr(model, "contrastive_loss"):
            raise ValueError(f"{type(model).__name__} has no contrastive_loss(graph, users, items, generator, tau)")
        store = graph[EDGE]
        pairs = store.edge_index[:, positions][:, store.edge_label[positions] > 0]
        gen = self.generator(positions, epoch, store.edge_index.device)
        # ignored: torch's stubs type Module.__getattr__ as Tensor | Module; hasattr checked above
        ssl = model.contrastive_loss(  # type: ignore[operator]
            graph, pairs[0].unique(), pairs[1].unique(), gen, tau=self.tau)
        return loss + self.ssl_weight * ssl / share[1]  # every rank's full InfoNCE, 1/size of it each


MODELS["sgl"] = SGL
