"""The Unlearner interface shared by every method."""
from __future__ import annotations

import copy
import sys
import warnings
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from ..data.interactions import (EDGE, check_interactions, check_model_fits, check_unique_pairs, num_items,
                                 validate_pairs, without_edges)
from ..clock import Stopwatch
from ..config import build_config
from ..objectives import Objective
from ..train import check_val

__all__ = ["Unlearner", "UnlearnResult", "UnlearningFailed", "NotFittedError", "NoOptions"]


@dataclass(frozen=True)
class NoOptions:
    """The config of a method without options."""


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


class NotFittedError(RuntimeError):
    """:meth:`Unlearner.unlearn` of a method that needs :meth:`Unlearner.fit` first, called before it."""


class Unlearner:
    """Base class of every method: ``Method(model, graph, objective, config).fit().unlearn(request)``.

    The lifecycle:

    * construction checks that the trained ``model``, its training ``graph`` and ``objective`` fit together,
      and builds the method's typed config (:attr:`Config`; a dict of options is accepted too, see
      :func:`~graphforget.config.build_config`);
    * :meth:`fit` prepares what the method needs before any request (SISA and RecEraser train their
      shards, UnlearnRec pre-trains its encoder; a no-op for the others) and returns ``self``; its time is
      :attr:`fit_seconds`, its report :attr:`fit_info`;
    * :meth:`unlearn` validates a request (a ``[2, R]`` tensor of (user, item) training edges), then calls
      the method's :meth:`_unlearn`. The caller's model and graph are never modified. An empty request
      returns an exact copy of the model (the "harmless" property).

    Args:
        model: the trained model.
        graph: its training graph.
        objective: its training objective.
        config: the method's config (an instance of :attr:`Config`, a dict of its options, or ``None``
            for the defaults).
        val: validation pairs, for the methods that train (early stopping); never test data.

    Raises:
        ValueError: (at construction and at every :meth:`unlearn`) when the model's node counts differ from
            the graph's, the model has a NaN or an infinity, the graph's labels do not suit the objective, or a
            (user, item) pair is stored twice (forgetting it would remove one copy only); at construction also when
            ``val`` does not fit the model or lacks a class (:func:`~graphforget.train.check_val`), or an option
            the config rejects.
        TypeError: ``config`` is neither an instance of :attr:`Config`, a dict nor ``None``.
    """
    #: The method's name in :data:`~graphforget.unlearn.METHODS`.
    name: ClassVar[str] = "base"
    #: The method's config dataclass.
    Config: ClassVar[type] = NoOptions
    #: Whether :meth:`unlearn` needs :meth:`fit` first.
    needs_fit: ClassVar[bool] = False

    def __init__(self, model: torch.nn.Module, graph: HeteroData, objective: Objective, config=None, *,
                 val: HeteroData | None = None):
        self.model, self.graph, self.objective, self.val = model, graph, objective, val
        if not (config is None or isinstance(config, (dict, self.Config))):
            raise TypeError(f"{type(self).__name__}: config must be an instance of {self.Config.__name__}, a dict of "
                            f"its options or None, got a {type(config).__name__}")
        self.config = config if isinstance(config, self.Config) else build_config(self.Config, config)
        self.fitted, self.fit_seconds, self.fit_info = not self.needs_fit, 0.0, {}
        self._checked_edges: list = []  # (object, version): the objective, node counts and edges the checks passed on
        self._check_graph()
        check_finite(model)  # also here: the sharded methods train from it in fit()
        if val is not None:  # here, not when a method first reads it (after training shards, or fine-tuning)
            check_val(model, val)

    def _check_graph(self) -> None:
        """The checks where model, graph and objective meet (see the class docstring). Those that read every
        edge (ids in range, labels, duplicates: a sort of all pairs) run again only when the objective, the node
        counts or the edges changed since they passed."""
        graph = self.graph
        edges = graph[EDGE] if EDGE in graph.edge_types else {}  # indexing a missing store would create it
        state = [(self.objective, graph.collect("num_nodes", allow_empty=True))] + versions(
            *(edges.get(key) for key in ("edge_index", "edge_label", "observed")))
        if not unchanged(state, self._checked_edges):
            check_interactions(graph)
            self.objective.check(graph)
            check_unique_pairs(graph[EDGE].edge_index, num_items(graph), "the training graph")
            self._checked_edges = state
        check_model_fits(self.model, graph)

    def fit(self) -> "Unlearner":
        """Prepares the method before any request (see the class docstring); returns ``self``."""
        with Stopwatch(self.graph[EDGE].edge_index.device) as watch:
            info = self._fit()
        self.fitted, self.fit_seconds, self.fit_info = True, watch.seconds, {**(info or {}), "seconds": watch.seconds}
        return self

    def _fit(self) -> dict:
        """The method's preparation; returns its report (:attr:`fit_info`)."""
        return {}

    def unlearn(self, request: Tensor) -> UnlearnResult:
        """Forgets the ``[2, R]`` (user, item) edges of ``request``.

        Raises:
            NotFittedError: the method needs :meth:`fit` and it was not called.
            ValueError: for a badly shaped request, one whose dtype is not an integer one (bool, float) or
                that lives on the meta device, unknown ids, duplicates or pairs that are not edges, a model
                with non-finite parameters, or a graph that fails the construction checks.
        """
        self._check_graph()  # the unlearner's state, not the request: outside the reported time
        device = self.graph[EDGE].edge_index.device
        with Stopwatch(device) as watch:
            check_finite(self.model)
            request = validate_pairs(self.graph, request).to(device)
            remaining, positions = without_edges(self.graph, request)
            if not self.fitted:  # after the request's checks: a bad request is named whatever the state
                raise NotFittedError(f"{type(self).__name__}.unlearn() needs fit() first: "
                                     f"{type(self).__name__}(...).fit().unlearn(request)")
            if positions.numel() == 0:
                model, info = copy.deepcopy(self.model), {"empty": True}
            else:
                model, info = self._unlearn(request.long(), positions, remaining)
        return UnlearnResult(model, remaining, watch.seconds, info)

    def _unlearn(self, request: Tensor, positions: Tensor, remaining: HeteroData) -> tuple[torch.nn.Module, dict]:
        """Returns the new model and the info dict; ``positions`` index the request in ``self.graph``."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={type(self.model).__name__}, config={self.config})"


def versions(*tensors: Tensor | None) -> list:
    """``[(tensor, tensor._version)]`` of the given tensors (``None`` skipped): the state :func:`unchanged` compares."""
    return [(t, t._version) for t in tensors if t is not None]


def unchanged(state: list, checked: list) -> bool:
    """Whether ``state`` holds the very objects of ``checked`` (identity: a replaced tensor or objective differs)
    with equal second entries: a tensor's version (``Tensor._version`` counts in-place writes), or any value
    compared by ``==`` (the node counts kept beside the objective)."""
    return len(state) == len(checked) and all(t is u and v == w for (t, v), (u, w) in zip(state, checked))


def check_finite(model: torch.nn.Module) -> None:
    """Raises ``ValueError`` naming the parameters of ``model`` that hold a NaN or an infinity."""
    # A NaN or an infinity anywhere makes a parameter's sum non-finite: one pass, no mask as large as the table;
    # a sum that overflows is confirmed element by element.
    suspect = [(name, p) for name, p in model.named_parameters() if not torch.isfinite(p.detach().sum())]
    bad = [name for name, p in suspect if not torch.isfinite(p).all()]
    if bad:
        raise ValueError(f"the model has non-finite parameters: {', '.join(bad)}")


def warn_caller(message: str, category: type[Warning] = RuntimeWarning) -> None:
    """A warning attributed to the first caller outside :mod:`graphforget.unlearn` (the user's ``unlearn`` or
    ``fit`` call, however many of the package's frames lie between)."""
    frame, level = sys._getframe(1), 2
    while frame is not None and frame.f_globals.get("__name__", "").startswith(__package__ + "."):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)
