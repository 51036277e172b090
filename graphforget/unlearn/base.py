"""The Unlearner interface shared by every method."""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from ..data.interactions import (EDGE, check_model_fits, check_unique_pairs, edge_positions, edge_subgraph,
                                 num_items, validate_pairs)
from ..objectives import Objective

__all__ = ["Unlearner", "UnlearnResult", "UnlearningFailed"]


class UnlearningFailed(RuntimeError):
    """A method could not produce a result it trusts, and its policy is to raise (see ``info["reason"]``)."""


@dataclass
class UnlearnResult:
    """The outcome of :meth:`Unlearner.unlearn`.

    Attributes:
        model: the unlearned model (a new object).
        graph: the training graph without the request (a new object).
        seconds: wall time of the whole call (validation, selection, solve, write-back).
        info: what was done (method-specific: affected nodes/edges, kept rows, solver stats, ...).
    """
    model: torch.nn.Module
    graph: HeteroData
    seconds: float
    info: dict = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"UnlearnResult(model={type(self.model).__name__}, seconds={self.seconds:.4f}, info={self.info})"


class Unlearner:
    """Base class: built from a trained model, its training graph and its objective.

    :meth:`unlearn` validates the request (a ``[2, R]`` tensor of (user, item) training edges), then
    calls the method's :meth:`_unlearn`. The caller's model and graph are never modified. An empty
    request returns an exact copy of the model (the "harmless" property).

    Raises:
        ValueError: (at construction and at every :meth:`unlearn`) when the model's node counts differ from
            the graph's, the graph's labels do not suit the objective, or a (user, item) pair is stored twice
            (forgetting it would remove one copy only).
    """
    name = "base"

    def __init__(self, model: torch.nn.Module, graph: HeteroData, objective: Objective):
        self.model, self.graph, self.objective = model, graph, objective
        self._check_graph()

    def _check_graph(self) -> None:
        """The checks where model, graph and objective meet (see the class docstring)."""
        check_model_fits(self.model, self.graph)
        self.objective.check(self.graph)
        check_unique_pairs(self.graph[EDGE].edge_index, num_items(self.graph), "the training graph")

    def unlearn(self, request: Tensor) -> UnlearnResult:
        """Forgets the ``[2, R]`` (user, item) edges of ``request``.

        Raises:
            ValueError: for a badly shaped request, one whose dtype is not an integer one (bool, float) or
                that lives on the meta device, unknown ids, duplicates or pairs that are not edges, a model
                with non-finite parameters, or a graph that fails the construction checks.
        """
        self._check_graph()  # the unlearner's state, not the request: outside the reported time
        start = time.perf_counter()
        check_finite(self.model)
        device = self.graph[EDGE].edge_index.device
        request = validate_pairs(self.graph, request).to(device)
        positions = edge_positions(self.graph, request)
        keep = torch.ones(self.graph[EDGE].edge_index.size(1), dtype=torch.bool, device=device)
        keep[positions] = False
        remaining = edge_subgraph(self.graph, keep)
        if positions.numel() == 0:
            return UnlearnResult(copy.deepcopy(self.model), remaining, time.perf_counter() - start, {"empty": True})
        model, info = self._unlearn(request.long(), positions, remaining)
        _sync(device)
        return UnlearnResult(model, remaining, time.perf_counter() - start, info)

    def _unlearn(self, request: Tensor, positions: Tensor, remaining: HeteroData) -> tuple[torch.nn.Module, dict]:
        """Returns the new model and the info dict; ``positions`` index the request in ``self.graph``."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={type(self.model).__name__}, objective={self.objective})"


def check_finite(model: torch.nn.Module) -> None:
    """Raises ``ValueError`` naming the parameters of ``model`` that hold a NaN or an infinity."""
    bad = [name for name, p in model.named_parameters() if not torch.isfinite(p).all()]
    if bad:
        raise ValueError(f"the model has non-finite parameters: {', '.join(bad)}")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
