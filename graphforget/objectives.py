r"""Training objectives: a deterministic empirical risk the influence code can differentiate.

The summed objective over training edges :math:`D` is

.. math::
    L(\theta; D) = \sum_{e \in D} \ell_e(\theta; D) + \frac{\lambda}{2} \lVert \theta \rVert^2 ,

with :math:`\lambda` = ``l2`` fixed in this summed form, so that retraining on :math:`D \setminus D_r`
minimises the same function less the removed terms. Mini-batch training uses the equivalent
per-batch scale :math:`\frac{1}{|B|}\sum_{B} \ell_e + \frac{\lambda}{2|D|}\lVert\theta\rVert^2`.
"""
from __future__ import annotations

import copy
import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.weak import WeakTensorKeyDictionary
from torch_geometric.data import HeteroData

from .config import check_seed, is_real
from .data.interactions import EDGE, num_items, pair_keys

__all__ = ["Objective", "BCEObjective", "BPRObjective", "hashed_negatives"]


class Objective:
    """Base objective. Subclasses implement :meth:`pairs` and :meth:`losses`; their public attributes are their
    fields, which :func:`repr` shows (a method that fits tells an objective edited since by it).

    Args:
        l2: :math:`\\lambda` of the explicit L2 term in summed form (0 disables it).
    """

    def __init__(self, l2: float = 0.0):
        _check_l2(l2)
        self.l2 = float(l2)

    def check_fields(self) -> None:
        """Checks the library's fields as the constructors do, on their values now: one set after construction
        (``objective.l2 = -5``, ``resample = "no"``) passed no check, and trained. Run where the objective is used
        (:func:`~graphforget.train.train`, every unlearner); a subclass's own fields are its own to check (extend
        ``_check_fields``).

        Raises:
            ValueError: ``"{class}: {what is wrong}"``.
            TypeError: a subclass whose ``__init__`` did not call ``super().__init__(l2)``.
        """
        if not hasattr(self, "l2"):  # an __init__ of its own that did not call Objective's: AttributeError 'l2'
            raise TypeError(f"{type(self).__name__} has no l2: its __init__ must call super().__init__(l2)")
        try:
            self._check_fields()
        except ValueError as error:
            raise ValueError(f"{type(self).__name__}: {error}") from None

    def _check_fields(self) -> None:
        """The fields' checks of this class and its bases (a subclass calls ``super()._check_fields()``)."""
        _check_l2(self.l2)

    def check(self, graph: HeteroData) -> None:
        """Checks once, where a graph meets the objective (training, unlearning), that its labels suit it.

        The base objective accepts any graph; subclasses restrict it. Not called in the loss path.

        Raises:
            ValueError: naming what does not fit.
        """

    def check_terms(self, graph: HeteroData) -> None:
        """Checks :meth:`pairs` and :meth:`losses` against their contract on ``graph``'s first edges: ``m`` blocks of
        ``B`` pairs, and one loss per term. A :meth:`losses` of ``reduction="mean"`` trained, and IFRU stepped as if
        the data weighed ``1/B`` against a fixed L2 (a QA probe).

        Raises:
            ValueError: naming the method and the shapes.
        """
        edges = graph[EDGE].edge_index
        edge_label_index, target = self.pairs(graph, torch.arange(min(edges.size(1), 8), device=edges.device))
        name = type(self).__name__
        if not (isinstance(edge_label_index, Tensor) and isinstance(target, Tensor)):
            raise ValueError(f"{name}.pairs must return two tensors, (pairs, target), got "
                             f"({type(edge_label_index).__name__}, {type(target).__name__})")
        terms = target.size(0) if target.dim() else 1
        if edge_label_index.dim() != 2 or edge_label_index.size(0) != 2 or edge_label_index.size(1) % max(terms, 1):
            raise ValueError(f"{name}.pairs must return [2, m * B] pairs for a target of B = {terms} terms, got "
                             f"{list(edge_label_index.shape)}")
        losses = self.losses(torch.zeros(edge_label_index.size(1), device=edges.device), target)
        if not (isinstance(losses, Tensor) and losses.shape == (terms,)):
            got = list(losses.shape) if isinstance(losses, Tensor) else type(losses).__name__
            raise ValueError(f"{name}.losses must return one loss per term, [{terms}] here, got {got} (a reduction "
                             "other than 'none'?)")

    def has_term(self, edge_label: Tensor) -> Tensor:
        """Whether each edge of these labels is a loss term: every edge here; BPR reads those labelled above 0."""
        return torch.ones_like(edge_label, dtype=torch.bool)

    def pairs(self, graph: HeteroData, positions: Tensor | None = None, epoch: int = 0) -> tuple[Tensor, Tensor]:
        """The (user, item) pairs the loss terms of the edges at ``positions`` (all by default) score.

        Returns ``(edge_label_index [2, m * B], target)``: ``m`` blocks of ``B`` pairs, block ``j`` holding
        the ``j``-th pair of every term, and whatever :meth:`losses` needs besides the logits, one row per term
        (``[B]`` labels, or ``[B, k]``: a label and a weight). Computed on the whole graph, the pairs can then be
        scored on a subgraph (the influence code does).
        """
        raise NotImplementedError(f"{type(self).__name__} must implement pairs(graph, positions, epoch) (see "
                                  "graphforget.objectives.Objective)")

    def losses(self, logits: Tensor, target: Tensor) -> Tensor:
        """Per-term losses ``[B]`` from the logits ``[m * B]`` of :meth:`pairs`."""
        raise NotImplementedError(f"{type(self).__name__} must implement losses(logits, target) (see "
                                  "graphforget.objectives.Objective)")

    def edge_losses(self, model: nn.Module, graph: HeteroData, positions: Tensor | None = None,
                    epoch: int = 0) -> Tensor:
        """Per-term losses ``[B]`` of the training edges at ``positions`` (all by default) of ``graph``."""
        edge_label_index, target = self.pairs(graph, positions, epoch)
        return self.losses(model(graph, edge_label_index), target)

    def regularization(self, model: nn.Module) -> Tensor | float:
        r""":math:`\frac{\lambda}{2}\lVert\theta\rVert^2` over every trainable parameter (the number 0 without one)."""
        params = [p for p in model.parameters() if p.requires_grad]
        return 0.5 * self.l2 * sum(p.pow(2).sum() for p in params)

    def without_l2(self) -> "Objective":
        """A copy of this objective with its explicit L2 left out (``l2 = 0``): for a sum that counts it once."""
        share = copy.copy(self)
        share.l2 = 0.0
        return share

    def total(self, model: nn.Module, graph: HeteroData) -> Tensor:
        """The summed objective :math:`L(\\theta; D)` on every edge of ``graph``."""
        return self.edge_losses(model, graph).sum() + self.regularization(model)

    def batch_loss(self, model: nn.Module, graph: HeteroData, positions: Tensor, epoch: int = 0,
                   share: tuple[int, int] = (0, 1)) -> Tensor:
        """Mini-batch estimate of :math:`L / |D|`: the batch's loss terms summed over its ``|B|`` edges.

        Dividing by the number of edges in the batch, not of loss terms, keeps the estimate unbiased when
        some edges carry no term (BPR skips edges labelled 0) and finite for a batch without any term.
        With ``share = (rank, size)``, the part of one of ``size`` ranks: the terms of every ``size``-th
        edge from ``rank`` and ``1/size`` of the regularisation, so that the ranks' parts sum to the whole.
        """
        rank, size = share
        num_edges = graph[EDGE].edge_index.size(1)
        losses = self.edge_losses(model, graph, positions[rank::size], epoch)
        return losses.sum() / max(positions.numel(), 1) + self.regularization(model) / (num_edges * size)

    #: The fields :func:`repr` shows first, in this order; every other public attribute follows.
    shown_first: ClassVar[tuple[str, ...]] = ("l2",)

    def __repr__(self) -> str:
        """Every public field: the methods that fit() tell an objective edited since by its repr (a subclass's own
        field, such as a positive weight, edited after SISA's fit() had been accepted)."""
        names = [*(name for name in self.shown_first if hasattr(self, name)),  # unset: check_fields names it
                 *(name for name in vars(self) if not name.startswith("_") and name not in self.shown_first)]
        return f"{type(self).__name__}({', '.join(f'{name}={getattr(self, name)!r}' for name in names)})"


def _select(graph: HeteroData, positions: Tensor | None) -> tuple[Tensor, Tensor]:
    store = graph[EDGE]
    if positions is None:
        return store.edge_index, store.edge_label
    return store.edge_index[:, positions], store.edge_label[positions]


def _check_l2(l2) -> None:
    if not (is_real(l2) and 0 <= l2 < math.inf):  # rejects NaN too
        raise ValueError(f"l2 must be a finite number >= 0, got {l2!r}")


def _check_negatives(seed, resample) -> None:
    """BPR's negatives: a seed they hash as an integer, and whether to draw them anew each epoch."""
    check_seed(seed)
    if not isinstance(resample, bool):  # "no" (a string from a command line) is truthy: it would resample
        raise ValueError(f"resample must be a bool, got {resample!r}")


class BCEObjective(Objective):
    r"""Binary cross-entropy on labelled edges: :math:`\ell_e = -y\log\sigma(\hat y) - (1-y)\log(1-\sigma(\hat y))`.

    Labels must be 0 or 1 (see :meth:`check`).
    """

    def check(self, graph: HeteroData) -> None:
        """Raises ``ValueError`` when an ``edge_label`` is not 0 or 1 (raw ratings, play counts)."""
        label = graph[EDGE].edge_label
        bad = (label != 0) & (label != 1)
        if bool(bad.any()):
            values = label[bad].unique()[:5].tolist()
            raise ValueError(f"BCEObjective needs edge_label in {{0, 1}}, got {int(bad.sum())} other labels, e.g. "
                             f"{values} (raw ratings or counts?): binarise first with "
                             f"graphforget.data.binarize(graph, threshold)")

    def pairs(self, graph, positions=None, epoch=0):
        return _select(graph, positions)

    def losses(self, logits, target):
        return F.binary_cross_entropy_with_logits(logits, target.to(logits.dtype), reduction="none")


def _mix(x: Tensor) -> Tensor:
    """A splitmix64-style integer hash on int64 tensors (wrapping arithmetic), non-negative output."""
    x = x * -7046029254386353131  # 0x9E3779B97F4A7C15 as signed int64
    x = x ^ (x >> 31)
    x = x * -4658895280553007687  # 0xBF58476D1CE4E5B9
    x = x ^ (x >> 29)
    return x & ((1 << 62) - 1)


def _wrap64(value: int) -> int:
    """``value`` modulo 2**64 as a signed int64, as int64 arithmetic wraps it: a large epoch times a constant does
    not fit an int64 tensor scalar."""
    value &= (1 << 64) - 1
    return value - (1 << 64) if value >= 1 << 63 else value


#: Each edge tensor's sorted pair keys while it lives: a training run draws the negatives of every batch against
#: the same graph, and sorting its keys took a third of a BPR step on ML-1M.
_SORTED_KEYS = WeakTensorKeyDictionary()


def _sorted_pair_keys(edge_index: Tensor, n_items: int) -> Tensor:
    """The sorted keys of ``edge_index``'s pairs, then a -1 (the keys are >= 0): where ``searchsorted`` sends a
    key larger than all of them. Kept per tensor with a copy of its pairs, which answers only while the tensor
    still holds them (an edit in place is noticed; comparing costs a fraction of sorting)."""
    kept = _SORTED_KEYS.get(edge_index)
    if kept is not None and kept[0] == n_items and torch.equal(kept[1], edge_index):
        return kept[2]
    keys = pair_keys(edge_index, n_items).sort().values
    keys = torch.cat([keys, keys.new_full((1,), -1)])
    _SORTED_KEYS[edge_index] = (n_items, edge_index.clone(), keys)
    return keys


def hashed_negatives(graph: HeteroData, edge_label_index: Tensor, seed: int, epoch: int, rounds: int = 8) -> Tensor:
    """One negative item per (user, item) edge, a function of (user, item, seed, epoch) and the user's items.

    Negatives that hit an item of the same user in ``graph`` are redrawn (up to ``rounds`` times), then moved
    to the next item the user has no edge with (so dense users get valid negatives too). For the densest users the
    draw is then not uniform over their free items: the item after a run of theirs takes the run's leftovers (a user
    with 45 consecutive items of 50: the next one drew 51% of the negatives, 20% would be uniform). An edge keeps its
    negative when other edges are removed, except where a draw had been moved off an item of the user that
    the removal takes away: the draw then falls back to that item, as a model trained on the remaining edges
    draws it. The influence methods take the remaining edges' terms on the remaining graph, so such a term
    counts among the changed ones (measured on a 4-edge MF: IFRU's step equals the Newton step on the exact
    remaining objective, redrawn term included).

    Raises:
        ValueError: when a user has an edge with every item (no negative exists).
    """
    n_items = num_items(graph)
    known = _sorted_pair_keys(graph[EDGE].edge_index, n_items)
    user = edge_label_index[0]
    key = pair_keys(edge_label_index, n_items) * 1000003 + _wrap64(seed * 7919 + epoch * 104729)
    neg = _mix(key) % n_items

    def clashing(ids: Tensor) -> Tensor:  # those of ids whose negative is an item of their user
        keys = pair_keys(torch.stack([user[ids], neg[ids]]), n_items)
        return ids[known[torch.searchsorted(known[:-1], keys)] == keys]
    # A negative that misses the user's items stays, so each round checks only the last round's clashes.
    bad = clashing(torch.arange(user.numel(), device=user.device))
    for r in range(1, rounds + 1):
        if bad.numel() == 0:
            return neg
        neg[bad] = _mix(key[bad] + r * 15485863) % n_items
        bad = clashing(bad)
    for _ in range(n_items):  # linear probing for the few left
        if bad.numel() == 0:
            return neg
        neg[bad] = (neg[bad] + 1) % n_items
        bad = clashing(bad)
    raise ValueError("a user has an edge with every item: no negative can be drawn")


class BPRObjective(Objective):
    r"""BPR with one fixed negative per positive edge and epoch:
    :math:`\ell_e = -\log\sigma(\hat y_{ui} - \hat y_{uj})`.

    Only edges labelled above 0 are terms of the risk (any positive label, a raw rating of 1 included; binarise
    ratings first to choose the threshold), and a negative label is not one. The negative :math:`j` is
    :func:`hashed_negatives` of the edge, the seed and the epoch; the influence code uses epoch 0.

    Args:
        l2: see :class:`Objective`.
        seed: seed of the negatives.
        resample: draw new negatives every epoch during training (else epoch 0's throughout).
    """

    shown_first: ClassVar[tuple[str, ...]] = ("l2", "seed", "resample")

    def __init__(self, l2: float = 0.0, seed: int = 0, resample: bool = True):
        super().__init__(l2)
        _check_negatives(seed, resample)
        self.seed, self.resample = int(seed), resample

    def _check_fields(self) -> None:
        super()._check_fields()
        _check_negatives(self.seed, self.resample)

    def check(self, graph: HeteroData) -> None:
        """Raises ``ValueError`` when no ``edge_label`` is positive (BPR has no term then) or one is NaN."""
        label = graph[EDGE].edge_label
        if bool(label.isnan().any()):
            raise ValueError(f"BPRObjective needs finite edge_label values, got {int(label.isnan().sum())} NaN")
        if not bool(self.has_term(label).any()):
            raise ValueError(f"BPRObjective needs edges labelled > 0 (its terms), got none of {label.numel()}")

    def has_term(self, edge_label):
        return edge_label > 0

    def pairs(self, graph, positions=None, epoch=0):
        edge_label_index, label = _select(graph, positions)
        terms = self.has_term(label)
        edge_label_index = edge_label_index[:, terms]
        neg = hashed_negatives(graph, edge_label_index, self.seed, epoch if self.resample else 0)
        return torch.cat([edge_label_index, torch.stack([edge_label_index[0], neg])], 1), label[terms]

    def losses(self, logits, target):
        pos_logit, neg_logit = logits.chunk(2)
        return -F.logsigmoid(pos_logit - neg_logit)
