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
from ..influence import k_hop_mask, node_ids
from ..models.base import table_mask
from ..train import TrainConfig, train
from .base import Unlearner
from .registry import register

__all__ = ["FineTune", "FineTuneConfig"]


@dataclass
class FineTuneConfig:
    """Options of :class:`FineTune`.

    Args:
        train: how the model was trained; its ``lr``, ``batch_size`` and ``seed`` are used. Fine-tuning
            always runs mini-batch Adam for exactly ``epochs`` epochs (``epochs`` replaces the config's,
            ``patience`` is 0, ``optimizer`` is ``"adam"`` even for a model trained with L-BFGS).
        epochs: number of fine-tuning epochs (at least 1).
        local: update only the rows of the request's ``receptive_field``-hop region.
    """
    train: TrainConfig = field(default_factory=TrainConfig)
    epochs: int = 3
    local: bool = False

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
    parameters away from them. A user whose every interaction is removed has no loss term left, so
    without L2 their rows do not move at all (see :doc:`/methods` for what that leaves on a stream).

    With ``local=True`` only the embedding rows of the nodes within ``model.receptive_field`` hops of
    the request's users and items are updated (plus the model's dense parameters that are not per node,
    if it has any): gradient hooks zero the other rows' gradients, and Adam, whose state starts at zero,
    then leaves those rows exactly unchanged.

    ``info`` of the result: ``epochs``, ``local``, ``updated_rows`` (with ``local`` only: the number of
    nodes of the region, whose rows may change in every node table) and ``train_seconds``.
    """
    name = "finetune"
    Config = FineTuneConfig

    def _train_config(self) -> TrainConfig:
        """The fine-tuning schedule: ``epochs`` epochs of mini-batch Adam, no early stopping."""
        return dataclasses.replace(self.config.train, epochs=self.config.epochs, patience=0, optimizer="adam")

    def _unlearn(self, request: Tensor, positions: Tensor, remaining: HeteroData) -> tuple[torch.nn.Module, dict]:
        model = copy.deepcopy(self.model)
        info: dict = {"epochs": self.config.epochs, "local": self.config.local}
        handles = []
        if self.config.local:
            region = k_hop_mask(self.graph, node_ids(request, num_users(self.graph)), model.receptive_field)
            handles = _freeze_rows_outside(model, region, num_users(self.graph))
            info["updated_rows"] = int(region.sum())
        try:
            result = train(model, remaining, self.objective, self._train_config(), val=None)
        finally:
            for handle in handles:
                handle.remove()
        info["train_seconds"] = result.seconds
        return model, info


def _freeze_rows_outside(model: torch.nn.Module, region: Tensor, num_users: int) -> list:
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
