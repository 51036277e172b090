"""FineTune: warm start from the trained model, a few epochs on the remaining data (the cheap baseline)."""
from __future__ import annotations

import copy
import dataclasses

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from ..data.interactions import num_users
from ..influence import k_hop_mask, node_ids
from ..objectives import Objective
from ..train import TrainConfig, train
from .base import Unlearner

__all__ = ["FineTune"]


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
    parameters away from them.

    With ``local=True`` only the embedding rows of the nodes within ``model.receptive_field`` hops of
    the request's users and items are updated (plus the model's dense parameters that are not per node,
    if it has any): gradient hooks zero the other rows' gradients, and Adam, whose state starts at zero,
    then leaves those rows exactly unchanged.

    Args:
        model: the trained :class:`~graphforget.models.Recommender`.
        graph: its training graph.
        objective: its training objective.
        config: the :class:`~graphforget.train.TrainConfig` the model was trained with; its ``lr``,
            ``batch_size`` and ``seed`` are used. Fine-tuning always runs mini-batch Adam for exactly
            ``epochs`` epochs (``epochs`` replaces the config's, ``patience`` is 0, ``optimizer`` is
            ``"adam"`` even for a model trained with L-BFGS).
        epochs: number of fine-tuning epochs (at least 1).
        local: update only the rows of the request's ``receptive_field``-hop region.

    Raises:
        ValueError: ``epochs < 1``.

    ``info`` of the result: ``epochs``, ``local``, ``updated_rows`` (with ``local`` only: the number of
    nodes of the region, whose rows may change in every node table) and ``train_seconds``.
    """
    name = "finetune"

    def __init__(self, model: torch.nn.Module, graph: HeteroData, objective: Objective,
                 config: TrainConfig | None = None, epochs: int = 3, local: bool = False):
        super().__init__(model, graph, objective)
        if epochs < 1:
            raise ValueError(f"FineTune: epochs must be at least 1, got {epochs}")
        self.config, self.epochs, self.local = config or TrainConfig(), int(epochs), bool(local)

    def _train_config(self) -> TrainConfig:
        """The fine-tuning schedule: ``epochs`` epochs of mini-batch Adam, no early stopping."""
        return dataclasses.replace(self.config, epochs=self.epochs, patience=0, optimizer="adam")

    def _unlearn(self, request: Tensor, positions: Tensor, remaining: HeteroData) -> tuple[torch.nn.Module, dict]:
        model = copy.deepcopy(self.model)
        info: dict = {"epochs": self.epochs, "local": self.local}
        handles = []
        if self.local:
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

    def __repr__(self) -> str:
        return (f"FineTune(model={type(self.model).__name__}, objective={self.objective}, epochs={self.epochs}, "
                f"local={self.local}, lr={self.config.lr}, batch_size={self.config.batch_size})")


def _freeze_rows_outside(model: torch.nn.Module, region: Tensor, num_users: int) -> list:
    """Registers hooks that zero the gradient rows of the node tables outside ``region``.

    Args:
        model: a :class:`~graphforget.models.Recommender` (its :meth:`node_parameters` name the tables).
        region: ``[U + I]`` bool mask over homogeneous node ids (users first, then items).
        num_users: ``U``.

    Returns:
        The hooks' handles (call ``remove()`` on each when done).
    """
    frozen = {"user": ~region[:num_users], "item": ~region[num_users:]}
    params = dict(model.named_parameters())
    handles = []
    for name, node_type in model.node_parameters().items():
        param = params[name]
        if not param.requires_grad:
            continue
        mask = frozen[node_type].to(param.device).view(-1, *([1] * (param.dim() - 1)))
        handles.append(param.register_hook(lambda grad, mask=mask: grad.masked_fill(mask, 0)))
    return handles
