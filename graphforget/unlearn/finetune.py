"""FineTune: warm start from the trained model, a few epochs on the remaining data (the cheap baseline)."""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import cast

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from ..config import check_fields, check_types
from ..data.interactions import num_users
from ..influence import check_receptive_field, k_hop_mask, node_ids
from ..models.base import Recommender, table_mask
from ..train import TrainConfig, train
from .base import Unlearner, non_finite_at, orphan_nodes, refuse_no_remaining_edge, warn_caller
from .registry import register

__all__ = ["FineTune", "FineTuneConfig"]

#: An orphan's rows left holding more than this share of their trained selves (projected on them) are warned of: a
#: dot product scales with it, so under half the deleted data's scores are mostly gone (a QA probe's custom GNN on
#: ML-100K: a user's rows left at 14% scored its removed edges 0.506, at 93% 0.227; a Retrain without L2, 0.494).
KEPT_SHARE = 0.5


@dataclass
class FineTuneConfig:
    """Options of :class:`FineTune`.

    Args:
        train: how the model was trained; its ``lr``, ``batch_size`` and ``seed`` are used. Fine-tuning
            always runs mini-batch Adam for exactly ``epochs`` epochs (``epochs`` replaces the config's,
            ``patience`` is 0, ``optimizer`` is ``"adam"`` even for a model trained with L-BFGS, whose ``tol`` is not
            read); as options (:func:`~graphforget.unlearn.method_config`, ``--option``) those four are refused.
        epochs: number of fine-tuning epochs (at least 1).
        local: update only the rows of the request's ``receptive_field``-hop region.
        zero_orphans: zero the rows of the nodes the request leaves with no stored pair that is a loss term (a
            user who asked for every interaction to be forgotten) in the trainable node tables (a frozen one, fixed
            features, is left as it is), as :class:`~graphforget.unlearn.IFRU` does. Without it those rows keep what
            they learned wherever no loss term moves them (no L2), and a warning says so; so do the rows whose zeros
            would make the model's outputs non-finite (a model that divides by a row's norm).
    """
    train: TrainConfig = field(default_factory=TrainConfig)
    epochs: int = 3
    local: bool = False
    zero_orphans: bool = False

    def __post_init__(self):
        check_types(self)
        check_fields(self, {"epochs": (self.epochs >= 1, "must be >= 1")})


@register
class FineTune(Unlearner):
    r"""Fine-tunes a copy of the trained model on the remaining edges for a few epochs.

    The method practitioners reach for first, and the baseline every unlearning method must beat: start
    from the trained parameters :math:`\hat\theta` and run ``epochs`` epochs of the same mini-batch Adam
    training (:func:`~graphforget.train.train`, with the learning rate, batch size and batch-order seed
    of ``config``, a fresh optimizer state and no early stopping) on :math:`D \setminus D_r`:

    .. math::

        \theta' = \mathrm{Adam}^{T}\big(\hat\theta;\, L(\theta; D \setminus D_r)\big),
        \qquad T = \text{epochs} \cdot \lceil |D \setminus D_r| / \text{batch\_size} \rceil \text{ steps}.

    Nothing removes the request's influence explicitly: its loss terms are simply gone from the
    objective, so the removed edges are forgotten only as far as ``epochs`` epochs of training move the
    parameters away from them. A node whose every pair is removed (*orphan*) has no loss term left, so
    without L2 its rows do not move at all: the model keeps what it learned from the deleted data (see
    :doc:`/methods` for what that leaves on a stream). A small L2 shrinks them only a little: Adam steps by about its
    learning rate whatever the gradient's size, so a heavy ML-100K user's row kept 93% after 3 epochs at an L2 of 1e-4
    (a custom GNN of a QA probe), its removed edges' mean probability 0.23 against a Retrain's 0.49. FineTune warns
    when rows keep more than ``KEPT_SHARE`` (half) of their trained selves, naming what is left, unless
    ``zero_orphans``.

    With ``local=True`` only the embedding rows of the nodes within ``model.receptive_field`` hops of
    the request's users and items are updated (plus the model's dense parameters that are not per node,
    if it has any): gradient hooks zero the other rows' gradients, and Adam, whose state starts at zero,
    then leaves those rows exactly unchanged (but for what the forward itself writes: an
    ``nn.Embedding(max_norm=...)`` renormalises every row it reads).

    ``info`` of the result: ``epochs``, ``local``, ``updated_rows`` (with ``local`` only: the number of
    nodes of the region, whose rows may change in every node table), ``train_seconds``, ``orphans`` (the
    request's nodes left with no pair the objective has a term for: BPR's are labelled above 0) and
    ``orphans_kept`` (those of them whose rows keep more than ``KEPT_SHARE`` of their trained selves, or of their
    reverse: without L2 all of it; an L2 shrinks them, and Adam's steps of about its learning rate can take them past
    0) and ``orphan_kept_share`` (the share of largest size among them, :math:`\langle r', r\rangle / \lVert
    r\rVert^2` over a node's rows: 1 as trained, 0 zeroed or turned square to them, above 1 grown, as BPR's negatives
    can push an orphan item; ``None`` with ``zero_orphans`` or without orphans).

    A request that removes every training edge is refused (a ``ValueError``): there is nothing to fine-tune on.
    """
    name = "finetune"
    Config = FineTuneConfig
    _field_checked = False  # whether check_receptive_field passed on this unlearner's model (local=True)
    unread = {"train.epochs": "set epochs instead", "train.patience": "its epochs run whole: set epochs instead",
              "train.optimizer": "it always runs Adam", "train.tol": "L-BFGS's tolerance: it runs Adam"}

    def _train_config(self) -> TrainConfig:
        """The fine-tuning schedule: ``epochs`` epochs of mini-batch Adam, no early stopping."""
        return dataclasses.replace(self.config.train, epochs=self.config.epochs, patience=0, optimizer="adam")

    def _unlearn(self, request: Tensor, positions: Tensor, remaining: HeteroData) -> tuple[torch.nn.Module, dict]:
        # here: train() would name the training graph, which has the edges the request removed
        refuse_no_remaining_edge(self, remaining, "to fine-tune on")
        model = copy.deepcopy(self.model)
        info: dict = {"epochs": self.config.epochs, "local": self.config.local}
        handles = []
        if self.config.local:
            if not self._field_checked:  # structural: once per unlearner (about 4% of a quick stream's request)
                check_receptive_field(model, self.graph, "FineTune(local=True)", subgraph=False)
                self._field_checked = True
            region = k_hop_mask(self.graph, node_ids(request, num_users(self.graph)), model.receptive_field)
            handles = _freeze_rows_outside(model, region, num_users(self.graph))
            info["updated_rows"] = int(region.sum())
        try:
            result = train(model, remaining, self.objective, self._train_config(), val=None)
        finally:
            for handle in handles:
                handle.remove()
        info["train_seconds"] = result.seconds
        info.update(self._settle_orphans(model, request, remaining))
        return model, info

    def _settle_orphans(self, model: Recommender, request: Tensor, remaining: HeteroData) -> dict:
        """Zeroes the orphans' rows (``zero_orphans``), or warns about those that fine-tuning left mostly as trained."""
        users = num_users(self.graph)
        orphans = orphan_nodes(request, remaining, self.objective)
        share = None
        if self.config.zero_orphans:
            kept = _zero_finite_rows(model, orphans, users, remaining)
        else:
            shares = _kept_shares(self.model, model, orphans, users)  # a row past 0 holds the data reversed
            kept = int((shares.abs() > KEPT_SHARE).sum())
            share = float(shares[shares.abs().argmax()]) if shares.numel() else None
        if kept and self.config.zero_orphans:
            warn_caller(f"FineTune: zeroing {kept} of the request's users and items that lost every pair the loss "
                        "reads made the model's outputs there non-finite (does it divide by a row's norm?): their "
                        "rows are left as fine-tuned")
        elif kept:
            left = f"{100 * cast(float, share):.0f}%"
            warn_caller(f"FineTune: {kept} of the request's users and items lost every pair the loss reads and their "
                        f"embedding rows still hold over half, up to {left}, of their trained rows, projected on them "
                        "(no term of their data is left to move them; an L2 only shrinks them); zero_orphans=True "
                        "zeroes them, as IFRU does")
        return {"orphans": int(orphans.sum()), "orphans_kept": kept, "orphan_kept_share": share}


def _kept_shares(before: torch.nn.Module, after: Recommender, nodes: Tensor, users: int) -> Tensor:
    r"""For each node of the ``[U + I]`` mask ``nodes`` that has trained rows, the share of them that ``after`` keeps:
    :math:`\langle r'_v, r_v \rangle / \lVert r_v \rVert^2` over its rows :math:`r_v` in the trainable node tables
    of ``before`` (1: as trained, under 1 shrunk, under 0 past 0; a frozen table, fixed features, learnt nothing to
    keep)."""
    old, new = dict(before.named_parameters()), dict(after.named_parameters())
    kept, trained = torch.zeros(nodes.numel(), dtype=torch.float64), torch.zeros(nodes.numel(), dtype=torch.float64)
    for name, node_type in _trainable_tables(after):
        rows = old[name].size(0)
        was, now = (table[name].detach().double().reshape(rows, -1).cpu() for table in (old, new))
        table_mask(kept, node_type, users).add_((was * now).sum(1))  # views of ``kept`` and ``trained``
        table_mask(trained, node_type, users).add_(was.pow(2).sum(1))
    has_rows = nodes.cpu() & (trained > 0)
    return kept[has_rows] / trained[has_rows]


def _trainable_tables(model: Recommender) -> list[tuple[str, str]]:
    """``(name, node_type)`` of the node tables of ``model`` that training moves: a frozen one
    (``requires_grad=False``) is left as it is, as Retrain and IFRU leave it."""
    params = dict(model.named_parameters())
    return [(name, node_type) for name, node_type in model.node_parameters().items() if params[name].requires_grad]


@torch.no_grad()
def _zero_rows(model: Recommender, nodes: Tensor, users: int) -> None:
    """Sets the rows of the ``[U + I]`` mask ``nodes`` to 0 in every trainable node table of ``model``."""
    params = dict(model.named_parameters())
    for name, node_type in _trainable_tables(model):
        params[name][table_mask(nodes, node_type, users).to(params[name].device)] = 0


@torch.no_grad()
def _zero_finite_rows(model: Recommender, nodes: Tensor, users: int, remaining: HeteroData) -> int:
    """:func:`_zero_rows`, but for the nodes where zeros make the outputs non-finite (a model that divides by a row's
    norm scored NaN there, returned without a word): those keep their rows; returns their count."""
    params = dict(model.named_parameters())
    saved = {name: params[name].detach().clone() for name, _ in _trainable_tables(model)}
    _zero_rows(model, nodes, users)
    bad = non_finite_at(model, remaining, nodes.nonzero().flatten(), remaining)
    if bad.numel():
        restore = torch.zeros_like(nodes)
        restore[bad] = True
        for name, node_type in _trainable_tables(model):
            rows = table_mask(restore, node_type, users).to(params[name].device)
            params[name][rows] = saved[name][rows]
    return bad.numel()


def _freeze_rows_outside(model: Recommender, region: Tensor, num_users: int) -> list:
    """Registers hooks that zero the gradient rows of the node tables outside ``region``.

    Args:
        model: a :class:`~graphforget.models.Recommender` (its :meth:`node_parameters` name the tables).
        region: ``[U + I]`` bool mask over homogeneous node ids (users first, then items).
        num_users: ``U``.

    Returns:
        The hooks' handles (call ``remove()`` on each when done).
    """
    params = dict(model.named_parameters())
    handles = []
    for name, node_type in model.node_parameters().items():
        param = params[name]
        if not param.requires_grad:
            continue
        mask = ~table_mask(region, node_type, num_users).to(param.device).view(-1, *([1] * (param.dim() - 1)))
        handles.append(param.register_hook(lambda grad, mask=mask: grad.masked_fill(mask, 0)))
    return handles
