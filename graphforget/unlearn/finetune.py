"""FineTune: warm start from the trained model, a few epochs on the remaining data (the cheap baseline)."""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field

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
    :doc:`/methods` for what that leaves on a stream). FineTune then warns, unless ``zero_orphans``.

    With ``local=True`` only the embedding rows of the nodes within ``model.receptive_field`` hops of
    the request's users and items are updated (plus the model's dense parameters that are not per node,
    if it has any): gradient hooks zero the other rows' gradients, and Adam, whose state starts at zero,
    then leaves those rows exactly unchanged (but for what the forward itself writes: an
    ``nn.Embedding(max_norm=...)`` renormalises every row it reads).

    ``info`` of the result: ``epochs``, ``local``, ``updated_rows`` (with ``local`` only: the number of
    nodes of the region, whose rows may change in every node table), ``train_seconds``, ``orphans`` (the
    request's nodes left with no pair the objective has a term for: BPR's are labelled above 0) and
    ``orphans_kept`` (those of them whose rows are as trained).

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
        """Zeroes the orphans' rows (``zero_orphans``), or warns about those that fine-tuning left as trained."""
        users = num_users(self.graph)
        orphans = orphan_nodes(request, remaining, self.objective)
        if self.config.zero_orphans:
            kept = _zero_finite_rows(model, orphans, users, remaining)
        else:
            kept = int(_unmoved(self.model, model, orphans, users).sum())
        if kept and self.config.zero_orphans:
            warn_caller(f"FineTune: zeroing {kept} of the request's users and items that lost every pair the loss "
                        "reads made the model's outputs there non-finite (does it divide by a row's norm?): their "
                        "rows are left as fine-tuned")
        elif kept:
            warn_caller(f"FineTune: {kept} of the request's users and items lost every pair the loss reads and their "
                        "embedding rows are left as trained (no remaining loss term moves them); zero_orphans=True "
                        "zeroes them, as IFRU does")
        return {"orphans": int(orphans.sum()), "orphans_kept": kept}


def _unmoved(before: torch.nn.Module, after: Recommender, nodes: Tensor, users: int) -> Tensor:
    """The nodes of the ``[U + I]`` mask ``nodes`` with a row in a trainable table whose trainable rows are the same
    in ``after`` as in ``before`` (a frozen table, fixed features, learnt nothing to keep)."""
    old, new = dict(before.named_parameters()), dict(after.named_parameters())
    moved, trained = torch.zeros_like(nodes), torch.zeros_like(nodes)
    for name, node_type in _trainable_tables(after):
        table_mask(trained, node_type, users).fill_(True)  # views of ``trained`` and ``moved``
        rows = table_mask(moved, node_type, users)
        rows |= (new[name] != old[name]).reshape(len(rows), -1).any(1).to(rows.device)
    return nodes & trained & ~moved


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
