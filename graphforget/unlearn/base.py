"""The Unlearner interface shared by every method."""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import ClassVar, Iterable, cast

import torch
from torch import Tensor
from torch_geometric.data import HeteroData
from torch_geometric.utils import degree, scatter

from ..data.interactions import (EDGE, check_interactions, check_model_fits, check_unique_pairs, num_items,
                                 num_users, pairs_with_data, validate_pairs, without_edges)
from ..clock import Stopwatch
from ..config import (GraphforgetWarning, build_config, check_instances, gradients_on, option_names, recheck,
                      warn_caller)
from ..distributed import agreed
from ..io import tensors_sha256, unchanged, versions
from ..metrics import auc_standard_error, evaluate_auc
from ..models.base import Recommender, check_precision, checked_receptive_field
from ..objectives import BCEObjective, BPRObjective, Objective
from ..train import AN_OBJECTIVE, TrainConfig, check_labels_train, check_optimizer, check_val, warn_if_val_is_trained_on

__all__ = ["Unlearner", "UnlearnResult", "UnlearningFailed", "NoValidationWarning", "UntrustedWarning",
           "NotFittedError", "NoOptions"]


@dataclass(frozen=True)
class NoOptions:
    """The config of a method without options."""


class UnlearningFailed(RuntimeError):
    """A method could not produce a result it trusts, and its policy is to raise (see ``info["reason"]``)."""


class NoValidationWarning(GraphforgetWarning):
    """A method runs without validation pairs, so no acceptance test of its own sees the ranking."""


class UntrustedWarning(GraphforgetWarning):
    """A method's result failed its acceptance test (``info["trusted"]`` is ``False``; ``info["reason"]`` says why)."""


@dataclass
class UnlearnResult:
    """The outcome of :meth:`Unlearner.unlearn`.

    Attributes:
        model: the unlearned model (a new object).
        graph: the training graph without the request: new edge tensors, and the node attributes (``raw_id``,
            features) of the training graph's tensors themselves, as PyG's ``edge_subgraph`` gives them; clone one
            before editing it in place, or the training graph changes too.
        seconds: wall time of the whole call (validation, selection, solve, write-back).
        info: what was done (method-specific: affected nodes/edges, kept rows, solver stats, ...), always with
            ``trusted`` (``True``/``False``: the method's acceptance test passed or failed; ``None``: the method has
            none, as Retrain, FineTune, SISA and RecEraser; ``True`` for an empty request, whose model is the
            input's bit for bit) and ``reason`` (why not trusted, else ``None``).
        method: the name of the method that produced it (:attr:`Unlearner.name`), or ``None``.
    """
    model: torch.nn.Module
    graph: HeteroData
    seconds: float
    info: dict = field(default_factory=dict)
    method: str | None = None

    def __repr__(self) -> str:
        # info holds per-attempt solver histories (thousands of characters): name its keys, print them in full
        # only on request (result.info)
        reason = self.info.get("reason")
        reason = "" if reason is None else f", reason={_cut(str(reason), 80)!r}"
        keys = [key for key in self.info if key not in ("trusted", "reason")]
        shown = ", ".join(keys[:5]) + (f", ... +{len(keys) - 5} more" if len(keys) > 5 else "")
        return (f"UnlearnResult(method={self.method!r}, model={type(self.model).__name__}, seconds={self.seconds:.4f}, "
                f"trusted={self.info.get('trusted')}{reason}, info=[{shown}])")


def _cut(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters, an ellipsis marking the cut."""
    return text if len(text) <= width else text[:width - 3] + "..."


#: The ``info`` of an empty request's result (every method): an exact copy of the model.
EMPTY_INFO = {"empty": True, "trusted": True, "reason": None}


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
      ``fit_seconds``, its report ``fit_info``;
    * :meth:`unlearn` validates a request (a ``[2, R]`` tensor of (user, item) training edges), then calls
      the method's ``_unlearn``. The caller's model and graph are never modified. An empty request
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
            ``val`` does not fit the model or lacks a class (:func:`~graphforget.train.check_val`), an option
            the config rejects, or one the method fixes (:meth:`check_fixed`).
        TypeError: ``model``, ``graph`` or ``objective`` is not a :class:`~graphforget.models.Recommender`, a
            ``HeteroData`` or an :class:`~graphforget.objectives.Objective` instance, ``val`` is neither ``None``
            nor a ``HeteroData``, ``config`` is neither an instance of :attr:`Config`, a dict nor ``None``, or
            ``model`` is a fitted ensemble that the method does not take (:attr:`takes_ensemble`).
    """
    #: The method's name in :data:`~graphforget.unlearn.METHODS`.
    name: ClassVar[str] = "base"
    #: The method's config dataclass.
    Config: ClassVar[type] = NoOptions
    #: Whether :meth:`~graphforget.unlearn.Unlearner.unlearn` needs :meth:`~graphforget.unlearn.Unlearner.fit` first.
    needs_fit: ClassVar[bool] = False
    #: Whether the result propagates with the graph's ``edge_weight`` (SISA's shard graphs drop it).
    reads_edge_weight: ClassVar[bool] = True
    #: Whether the method multiplies the rows of the node tables together (IFRU's closed-form products, RecEraser's
    #: clustering, UnlearnRec's encoder), so that they must share one dtype: a model whose tables mix float32 and
    #: float64 is refused.
    needs_one_dtype: ClassVar[bool] = False
    #: Whether the method unlearns a fitted ensemble (:class:`~graphforget.unlearn.ShardedRecommender`): SISA's, which
    #: drop the request from the ensemble's edge assignment; another method would keep the removed pairs stored there.
    takes_ensemble: ClassVar[bool] = False
    #: Config fields the method sets itself (SCIF's ``hops=0``, ...): a config setting one otherwise is refused.
    fixed: ClassVar[dict] = {}
    #: Dotted options of a nested config that the method does not read (FineTune's ``train.epochs``: it runs its
    #: own ``epochs``), each with the advice its refusal gives: :func:`~graphforget.unlearn.method_config` refuses them.
    unread: ClassVar[dict] = {}

    @classmethod
    def unread_advice(cls) -> str:
        """``key (advice), ...`` for every option of :attr:`unread`."""
        return ", ".join(f"{key} ({advice})" for key, advice in cls.unread.items())

    @classmethod
    def check_objective(cls, objective: Objective) -> None:
        """Raises ``ValueError`` when the method cannot run under ``objective`` at all (SCIF relabels, so it needs
        labels): checked at construction, and by the bench before anything is trained."""

    @classmethod
    def check_training(cls, config, objective: Objective) -> None:
        """Raises ``ValueError`` when the config's ``train`` cannot train ``objective`` (L-BFGS with a contrastive
        term): checked at construction, and by the bench and ``run_attack`` before anything is trained (a sharded
        method's L-BFGS under SGL had been refused only after the Original and Retrain had trained)."""
        training = getattr(config, "train", None)
        if isinstance(training, TrainConfig) and "train.optimizer" not in cls.unread:
            check_optimizer(training, objective, cls.__name__)

    @classmethod
    def continues_own_result(cls) -> bool:
        """Whether the method built on its own result is ready without :meth:`~graphforget.unlearn.Unlearner.fit`
        (a stream's next request): every method without fit, and those whose result is what they fit (SISA's
        ensemble), not UnlearnRec."""
        return not cls.needs_fit

    @classmethod
    def check_fixed(cls, config, given: Iterable[str] = ()) -> None:
        """Refuses a config that sets a field of :attr:`fixed` to neither its default nor the fixed value, or a field
        named in ``given`` (the options the caller set, dotted names too) to anything but the fixed value: it was
        silently replaced. Raises ``ValueError`` naming the fields."""
        default, given = cls.Config(), {name.split(".")[0] for name in given}
        overridden = [f"{name}={getattr(config, name)!r}" for name, value in cls.fixed.items()
                      if getattr(config, name) != value and (name in given or getattr(config, name) != getattr(
                          default, name))]
        if overridden:
            fixed = ", ".join(f"{name}={value!r}" for name, value in cls.fixed.items())
            raise ValueError(f"{cls.__name__} fixes {fixed}; got {', '.join(overridden)}")

    @classmethod
    def with_fixed(cls, config):
        """``config`` with the fields of :attr:`fixed` set: the config the method runs (and a run records)."""
        return dataclasses.replace(config, **cls.fixed) if cls.fixed else config

    @classmethod
    def config_of(cls, options: dict | None, base=None, training_known: bool = True):
        """The config the ``options`` (fields, dotted for nested ones) build onto ``base`` (default: the defaults),
        with the fields the method fixes set: the same whether a method is built with a dict of options or through
        :func:`~graphforget.unlearn.method_config` (FineTune's constructor took the ``train.epochs`` it does not
        read, and SISA's started ``aggregator_train.*`` from a default TrainConfig rather than from ``train``).

        ``training_known``: whether the config's ``train`` is the one that will run (not where
        :func:`~graphforget.unlearn.method_config` is given no run's training): only then are options refused that its
        optimizer does not read (:meth:`unread_in`).

        Raises:
            ValueError: an option of :attr:`unread` or one the method fixes, or one its config refuses.
        """
        given = option_names(options or {})  # a nested dict's too: {"train": {"epochs": 50}} is train.epochs
        cls._refuse_unread(cls.unread, given)  # else recorded with the run, and silently not what ran
        config = _config_with_aggregator_from_train(cls.Config, options or {}, base)
        cls.check_fixed(config, given)
        # Retrain with train.tol under Adam had taken it, and trained as without it
        cls._refuse_unread(cls.unread_in(config, training_known), given)
        return cls.with_fixed(config)

    @classmethod
    def _refuse_unread(cls, advice: dict[str, str], given: Iterable[str]) -> None:
        """Raises ``ValueError`` naming the ``given`` options that ``advice`` lists, each with its advice."""
        unread = sorted(key for key in given if key in advice)
        if unread:
            raise ValueError(f"{cls.__name__} does not read " + ", ".join(f"{key} ({advice[key]})" for key in unread))

    @classmethod
    def unread_in(cls, config, training_known: bool = True) -> dict[str, str]:
        """Dotted options that ``config``'s own values leave unread, each with why: the fields of a nested
        :class:`~graphforget.train.TrainConfig` that its optimizer does not read, where that optimizer is known
        (``training_known``). :meth:`config_of` refuses those the caller gave (a value the run's training set is not
        the caller's)."""
        if not (training_known and dataclasses.is_dataclass(config)):
            return {}
        return {f"{f.name}.{key}": why for f in dataclasses.fields(config)
                if isinstance(nested := getattr(config, f.name), TrainConfig)
                for key, why in nested.unread_fields().items()}

    def _check_config(self) -> None:
        """The config's checks again at each :meth:`unlearn` (edited in place since the method was built), the fields
        the method fixes too (an edited SCIF ran an IFRU step and called it SCIF's)."""
        recheck(self.config)
        self.check_fixed(self.config, self.fixed)

    def __init__(self, model: Recommender, graph: HeteroData, objective: Objective, config=None, *,
                 val: HeteroData | None = None):
        _check_types(model, graph, objective, val)
        self.check_objective(objective)
        checked_receptive_field(model, type(self).__name__)  # read as a number by the checks below
        self._check_not_ensemble(model)
        check_precision(model, type(self).__name__, "unlearn", one_dtype=self.needs_one_dtype)
        self.model, self.graph, self.objective, self.val = model, graph, objective, val
        # the class itself: SISA took a RecEraserConfig (a subclass) and ignored its partition, pretrain and iterations
        if not (config is None or isinstance(config, dict) or type(config) is self.Config):
            raise TypeError(f"{type(self).__name__}: config must be an instance of {self.Config.__name__}, a dict of "
                            f"its options or None, got a {type(config).__name__}")
        if type(config) is self.Config:
            recheck(config)  # an instance's fields set after it was built passed no check
            self.check_fixed(config)
            self.config = self.with_fixed(config)
        else:
            self.config = self.config_of(cast("dict | None", config))  # the checks above leave a dict or None
        self.check_training(self.config, objective)  # here, not at unlearn()
        self.fit_info: dict
        self.fitted, self.fit_seconds, self.fit_info = not self.needs_fit, 0.0, {}
        self._checked_edges: list = []  # (object, version): the objective, node counts and edges the checks passed on
        self._fitted_on: tuple | None = None  # (state, digest) of the graph fit() prepared from, see _check_fitted_on
        self._check_graph()
        _warn_of_given_edge_weights(self)
        check_finite(model)  # also here: the sharded methods train from it in fit()
        if val is not None:  # here, not when a method first reads it (after training shards, or fine-tuning)
            check_val(model, val)
            # a validation test on pairs the model trains on rewards remembering them (qa104: only train() said so)
            warn_if_val_is_trained_on(graph, val, type(self).__name__, "its early stopping or validation test follows")

    def _check_not_ensemble(self, model) -> None:
        """Raises ``TypeError`` for an ensemble given to a method that does not take one (:attr:`takes_ensemble`):
        its result kept every removed pair in the ensemble's edge assignment (``pair_keys``), so the deleted edges
        could be read off the unlearned model."""
        from .sharding import ShardedRecommender  # sharding builds on this module
        if isinstance(model, ShardedRecommender) and not self.takes_ensemble:
            raise TypeError(f"{type(self).__name__}: the model is a fitted SISA/RecEraser ensemble "
                            "(ShardedRecommender), which stores its training edges: unlearn it with the method that "
                            "fitted it (it retrains the shards holding the request and drops its pairs), or give "
                            f"{type(self).__name__} a single model")

    def _check_graph(self) -> None:
        """The checks where model, graph and objective meet (see the class docstring). Those that read every
        edge (ids in range, labels, duplicates: a sort of all pairs) run again only when the objective, the node
        counts or the edges changed since they passed."""
        graph = self.graph
        state = self._graph_state()
        if not unchanged(state, self._checked_edges):
            check_interactions(graph)
            self.objective.check_fields()  # a field set after it was built (l2 = -5) passed no check
            self.objective.check(graph)
            self.objective.check_terms(graph)
            check_unique_pairs(graph[EDGE].edge_index, num_items(graph), "the training graph")
            self._checked_edges = state
        check_model_fits(self.model, graph)

    def _graph_state(self) -> list:
        """The objective with its fields (its repr: a seed or an l2 edited in place) and the node counts, and the edge
        tensors with their versions (see :func:`unchanged`)."""
        graph = self.graph
        edges = graph[EDGE] if EDGE in graph.edge_types else {}  # indexing a missing store would create it
        fields = repr(self.objective), graph.collect("num_nodes", allow_empty=True)
        return [(self.objective, fields)] + versions(
            *(edges.get(key) for key in ("edge_index", "edge_label", "observed")))

    def _graph_digest(self) -> str:
        """The sha256 of the graph's edge tensors, node counts and objective: what fit() learns from."""
        edges = self.graph[EDGE]
        tensors = [edges[key] for key in ("edge_index", "edge_label", "observed") if key in edges]
        return tensors_sha256(*tensors) + repr(self.graph.collect("num_nodes", allow_empty=True)) + repr(self.objective)

    def _check_fitted_on(self) -> None:
        """Raises ``ValueError`` when the graph or objective changed since :meth:`fit`: what it prepared (shards,
        an encoder) was learnt from them, and would answer for the old graph. Their content is compared (hashed
        again only after a write), so a write of the same values, or a copy of the same edges, passes."""
        if self._fitted_on is None:
            return
        state, digest = self._fitted_on
        current = self._graph_state()
        if unchanged(current, state):
            return
        if self._graph_digest() != digest:
            raise ValueError(f"{type(self).__name__}: the training graph changed since fit() (its edges, labels, node "
                             "counts or the objective), which prepared the method from it: call fit() again")
        self._fitted_on = current, digest

    def fit(self) -> "Unlearner":
        """Prepares the method before any request (see the class docstring); returns ``self``.

        Raises:
            ValueError: as :meth:`unlearn`, for a config, model or graph edited since construction (a
                ``resample_every`` of 0, a NaN written into the model: the preparation had run on them).
            UnlearningFailed: a preparation that failed (UnlearnRec's pre-training diverged).
        """
        if self._communicates():  # as unlearn(): a rank that failed alone left the others waiting in a collective
            agreed(f"{type(self).__name__}.fit", self._check_edits)
        else:
            self._check_edits()
        with Stopwatch(self.graph[EDGE].edge_index.device) as watch, gradients_on():
            info = self._fit()
        self._record_fitted_on()  # first: a fit that fails here leaves the method unfitted
        seconds = cast(float, watch.seconds)  # set when the block ended
        self.fitted, self.fit_seconds, self.fit_info = True, seconds, {**(info or {}), "seconds": seconds}
        return self

    def _check_edits(self) -> None:
        """The config, the model and the graph as :meth:`unlearn` checks them, for edits since construction."""
        self._check_config()
        check_finite(self.model)
        self._check_graph()

    def _record_fitted_on(self) -> None:
        """Records the graph the method was just prepared from (by :meth:`fit`, or a loaded encoder)."""
        if self.needs_fit:
            self._fitted_on = self._graph_state(), self._graph_digest()

    def _fit(self) -> dict:
        """The method's preparation; returns its report (:attr:`fit_info`)."""
        return {}

    def unlearn(self, request: Tensor) -> UnlearnResult:
        """Forgets the ``[2, R]`` (user, item) edges of ``request``. The result's model is in the modes
        (``training`` flags) of the caller's, submodule by submodule (an ensemble's shards each as the caller's model).
        It differentiates with autograd on, inside the caller's ``torch.no_grad()`` or ``torch.inference_mode()`` too.

        Raises:
            NotFittedError: the method needs :meth:`fit` and it was not called.
            ValueError: for a badly shaped request, one whose dtype is not an integer one (bool, float) or
                that lives on the meta device, unknown ids, duplicates or pairs that are not edges, a model
                with non-finite parameters or buffers, a graph that fails the construction checks, or (for a method that
                needs :meth:`fit`) a graph or objective that changed since it. Edits are found by torch's count of
                in-place writes: one made through a NumPy view (``tensor.numpy()[...] = ...``) or through ``.data``
                (``p.data.add_(1)``) is not counted, and not seen.
        """
        # the unlearner's state, not the request: outside the reported time; checked with the other ranks, as one
        # whose graph alone fails would leave them waiting in the next collective
        communicates = self._communicates()
        if communicates:
            agreed(f"{type(self).__name__}.unlearn", self._check_graph)
        else:
            self._check_graph()
        device = self.graph[EDGE].edge_index.device
        with Stopwatch(device) as watch, gradients_on():  # in the caller's no_grad() too
            if communicates:  # every rank must make this call alike, or those that go on wait forever
                inputs = {"request": request, "model": self.model, "graph": self.graph, "objective": self.objective,
                          "config": self.config, "val": self.val}
                checked = agreed(f"{type(self).__name__}.unlearn", lambda: self._checked(request), **inputs)
            else:
                checked = self._checked(request)
            request, remaining, positions = checked
            model: torch.nn.Module  # a method's own (SISA's ensemble), not self.model's class
            if positions.numel() == 0:  # the model unchanged, bit for bit: nothing to test
                model, info = copy.deepcopy(self.model), dict(EMPTY_INFO)
            else:
                model, info = self._unlearn(request.long(), positions, remaining)
                info = {"trusted": None, "reason": None, **info}  # None: the method has no acceptance test
            if type(model) is type(self.model):  # training leaves it in train mode; an ensemble has modules of its own
                copy_modes(self.model, model)
        return UnlearnResult(model, remaining, cast(float, watch.seconds), info, self.name)  # set when the block ended

    def _checked(self, request) -> tuple[Tensor, HeteroData, Tensor]:
        """The checks of :meth:`unlearn`: the request on the graph's device, the remaining graph, the positions."""
        self._check_config()  # edited since the method was built
        check_finite(self.model)
        request = validate_pairs(self.graph, request).to(self.graph[EDGE].edge_index.device)
        if request.is_inference():  # made in the caller's inference_mode(): autograd could not save it
            request = request.clone()
        remaining, positions = without_edges(self.graph, request)
        if not self.fitted:  # after the request's checks: a bad request is named whatever the state
            raise NotFittedError(f"{type(self).__name__}.unlearn() needs fit() first: "
                                 f"{type(self).__name__}(...).fit().unlearn(request)")
        self._check_fitted_on()
        return request, remaining, positions

    def _communicates(self) -> bool:
        """Whether :meth:`unlearn` works with the other ranks of a process group: data-parallel training or IFRU
        (SISA and RecEraser share their shards whenever there is a group)."""
        train = getattr(self.config, "train", None)
        return bool(getattr(self.config, "data_parallel", False) or getattr(train, "data_parallel", False))

    def _unlearn(self, request: Tensor, positions: Tensor, remaining: HeteroData) -> tuple[torch.nn.Module, dict]:
        """Returns the new model and the info dict; ``positions`` index the request in ``self.graph``."""
        raise NotImplementedError

    def _validation_test(self, model: torch.nn.Module, remaining: HeteroData, limit: float | None,
                         advice: str) -> tuple[dict, str | None] | None:
        """The acceptance test on the validation pairs the caller passed: ``model``'s AUC (on ``remaining``) may
        fall below the trained model's by at most ``limit`` standard errors
        (:func:`~graphforget.metrics.auc_standard_error`; the larger of the two AUCs' errors, since the trained
        model's is 0 at an AUC of 1). Returns its figures and, when it fails, the reason
        (ending with ``advice``); ``None`` when no test applies (no ``val``, ``limit`` ``None``, or a class
        missing from the scored pairs, which a warning says).

        Only the pairs whose user and item keep a training edge are scored
        (:func:`~graphforget.data.pairs_with_data`): a Retrain knows nothing of a user whose every interaction the
        request removes, and the AUC of their pairs falls whoever unlearns. On CURE4Rec's random-user and
        core-user deletion sets (5% of ML-100K, MF, 3 seeds; ``benchmarks/validation_pairs.py``) a Retrain lowers
        the whole validation AUC by 1.9-3.5 standard errors, that of the kept pairs by -0.9 to +0.3.
        """
        if limit is None or self.val is None:
            return None
        val = pairs_with_data(self.val, remaining)
        labels = val[EDGE].edge_label
        positives, negatives = int((labels == 1).sum()), int((labels == 0).sum())
        if positives == 0 or negatives == 0:  # no AUC to compare: said, as the result was trusted without a word
            held = "no pair" if labels.numel() == 0 else f"no pair labelled {int(positives == 0)}"
            warn_caller(f"{type(self).__name__}: the validation test did not run: the validation pairs whose user and "
                        f"item keep a training edge hold {held} after this request")
            return None
        # The trained model's figures are scored again each request (a caller may have edited it or val since), of a
        # copy: a forward may write its model's weights (max_norm), and the caller's model is never changed
        before = evaluate_auc(copy.deepcopy(self.model), self.graph, val, what="val")["auc_0"]
        after = evaluate_auc(model, remaining, val, what="val")["auc_0"]
        error = max(auc_standard_error(auc, positives, negatives) for auc in (before, after))
        reason = None if after >= before - limit * error else (
            f"the validation AUC fell from {before:.4f} to {after:.4f}, more than max_val_auc_drop={limit:g} "
            f"standard errors ({error:.4f}) allow ({advice})")
        return {"val_auc": after, "original_val_auc": before, "val_pairs": positives + negatives}, reason

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={type(self.model).__name__}, config={self.config})"


def _config_with_aggregator_from_train(cls: type, options: dict, base):
    """``build_config``, where dotted ``aggregator_train.*`` options change the config's ``train`` (what
    ``aggregator_train=None`` means) rather than a default :class:`TrainConfig`: ``aggregator_train.epochs=2`` reset
    the run's learning rate, batch size and seed. A dict given for ``aggregator_train`` is read as those options."""
    if not all(isinstance(key, str) for key in options):
        return build_config(cls, options, base)  # which names the key that is no string
    nested = options.get("aggregator_train")
    if isinstance(nested, dict) and not any(key.startswith("aggregator_train.") for key in options):
        options = {**{key: value for key, value in options.items() if key != "aggregator_train"},
                   **{f"aggregator_train.{key}": value for key, value in nested.items()}}  # a dict as dotted options
    later = {key: value for key, value in options.items() if key.startswith("aggregator_train.")}
    if "aggregator_train" in options or "aggregator_train" not in {f.name for f in dataclasses.fields(cls)}:
        later = {}  # build_config names the clash, or the unknown option
    config = build_config(cls, {key: value for key, value in options.items() if key not in later}, base)
    if later:
        config = build_config(cls, later, dataclasses.replace(config, aggregator_train=config.aggregator_train
                                                              or config.train))
    return config


def _check_types(model, graph, objective, val=None) -> None:
    """Raises ``TypeError`` naming the argument that is not what the lifecycle reads (a class passed for an instance
    would otherwise fail deep inside a check)."""
    expected = {"model": (model, Recommender, "a graphforget.models.Recommender (PyG modules: PyGRecommender)"),
                "graph": (graph, HeteroData, "a HeteroData of interactions (graphforget.data.make_interactions)"),
                "objective": (objective, Objective, AN_OBJECTIVE),
                "val": (val, (HeteroData, type(None)), "None or a HeteroData of validation pairs (a split's val)")}
    check_instances(expected)


def copy_modes(source: torch.nn.Module, target: torch.nn.Module) -> None:
    """Sets each submodule of ``target`` (a copy of ``source``) to the training flag of its twin in ``source``."""
    for theirs, ours in zip(source.modules(), target.modules()):
        ours.training = theirs.training


def redraw(model: Recommender, seed: int | None, method: str) -> None:
    """``model.reset_parameters(seed)``, checking that it wrote every trainable parameter, with the frozen ones
    (``requires_grad=False``, e.g. fixed item features) kept as they are, and every running statistic (a
    BatchNorm's mean, variance and count: the training data's, the removed edges included) reset as a fresh
    model's, whether or not ``reset_parameters`` covers them.

    Each trainable parameter is first filled with NaN, so one the reset misses is found whatever its values (a copy
    of a trained model would keep what it learnt from the edges to forget; an untrained one may equal its own
    re-draw, which comparing values would refuse). A frozen one is put back: training never moves it, so re-drawn
    it would stay random (the influence methods and FineTune leave it as it is too).

    Raises:
        ValueError: naming the trainable parameters that ``reset_parameters`` left as they were, or those whose dtype
            or device it changed (a reset that builds new layers makes them float32, on the CPU).
    """
    frozen = {name: p.detach().clone() for name, p in model.named_parameters() if not p.requires_grad}
    trainable = [name for name, p in model.named_parameters() if p.requires_grad and p.numel() > 0]
    placed = {name: (p.dtype, p.device) for name, p in model.named_parameters()}
    with torch.no_grad():
        for name in trainable:
            model.get_parameter(name).fill_(float("nan"))
        model.reset_parameters(seed)
        for name, value in frozen.items():  # the flag too: a reset that builds new layers makes them trainable
            model.get_parameter(name).requires_grad_(False).copy_(value)
        for module in model.modules():
            if callable(getattr(module, "reset_running_stats", None)):
                module.reset_running_stats()  # type: ignore[operator]  # torch: __getattr__ gives Tensor | Module
    # every name, aliases too: a reset that replaces one of two tied parameters leaves the other, NaN, beside it
    missed = [name for name, p in model.named_parameters(remove_duplicate=False)
              if p.requires_grad and torch.isnan(p).any()]
    if missed:
        raise ValueError(f"{method}: reset_parameters() left these trained parameters unchanged: {', '.join(missed)}; "
                         "override reset_parameters to re-initialise them (see docs/custom_model.rst)")
    moved = [f"{name} ({placed[name][0]} on {placed[name][1]}, now {p.dtype} on {p.device})"
             for name, p in model.named_parameters() if name in placed and (p.dtype, p.device) != placed[name]]
    if moved:
        raise ValueError(f"{method}: reset_parameters() changed the dtype or device of {', '.join(moved)}: re-draw the "
                         "parameters in place, or build the new layers with the model's dtype and device")


def embeddings_of(model: Recommender, graph: HeteroData) -> tuple[Tensor, Tensor]:
    """``model.embed(graph)``, detached, of a copy of ``model`` in eval mode: a forward may write the model's own
    weights (an ``nn.Embedding(max_norm=...)`` renormalises the rows it reads), and the caller's model is never
    changed."""
    work = copy.deepcopy(model).eval()
    with torch.no_grad():
        user, item = work.embed(graph)
    return user.detach(), item.detach()


def scores_of(model: torch.nn.Module, graph: HeteroData, pairs: Tensor) -> Tensor:
    """``model(graph, pairs)``, detached, of a copy of ``model`` in eval mode (see :func:`embeddings_of`)."""
    work = copy.deepcopy(model).eval()
    with torch.no_grad():
        return work(graph, pairs).detach()


def dot_product_gap(model: Recommender, graph: HeteroData, per_user: bool = False) -> tuple[float, int]:
    """The largest difference between ``model``'s own scores of the graph's first 1,024 edges and the dot products of
    its ``embed(graph)`` rows (with ``per_user``, less each user's mean difference: a constant per user leaves the
    user's ranking as it is), or 0 where they agree to ``allclose``'s ``rtol=1e-4, atol=1e-5`` (a bias or a layer on
    the pair makes them differ), and the rows' width; of an eval-mode copy (see :func:`embeddings_of`). A PyG
    module's own scoring is known only by running it."""
    work, pairs = copy.deepcopy(model).eval(), graph[EDGE].edge_index[:, :1024]
    with torch.no_grad():
        user, item = work.embed(graph)
        scores, dots = work(graph, pairs), (user[pairs[0]] * item[pairs[1]]).sum(-1)
        if per_user:
            scores = scores - scatter(scores - dots, pairs[0], 0, dim_size=user.size(0), reduce="mean")[pairs[0]]
    gap = 0.0 if torch.allclose(scores, dots, rtol=1e-4, atol=1e-5) else float((scores - dots).abs().max())
    return gap, user.size(1)


def non_finite_at(model, graph: HeteroData, nodes: Tensor, remaining: HeteroData) -> Tensor:
    """Those of ``nodes`` (homogeneous ids) where ``model``'s outputs on ``graph`` hold a NaN or an infinity: its
    embeddings where it scores by their dot products, else (a forward of its own, a PyG module without
    ``get_embedding``) its scores on the ``remaining`` graph of each node with a node of the other side that has
    data (the ends of its first edge: a cosine forward scored a zero row NaN, its embedding finite); both read off
    an eval-mode copy (a forward may write the model's weights or running statistics)."""
    if getattr(model, "scores_by_dot_product", True):
        try:
            user, item = embeddings_of(model, graph)
            finite = torch.cat([user.reshape(user.size(0), -1).isfinite().all(1),
                                item.reshape(item.size(0), -1).isfinite().all(1)])
            return nodes[~finite[nodes]]
        except NotImplementedError:
            pass
    users = num_users(remaining)
    partner = remaining[EDGE].edge_index[:, :1]
    pairs = torch.where(nodes < users, torch.stack([nodes, partner[1].expand_as(nodes)]),
                        torch.stack([partner[0].expand_as(nodes), nodes - users]))
    return nodes[~scores_of(model, remaining, pairs).isfinite()]

def check_finite(model: torch.nn.Module) -> None:
    """Raises ``ValueError`` naming the parameters and buffers of ``model`` that hold a NaN or an infinity."""
    bad = non_finite(model)
    if bad:
        raise ValueError(f"the model has non-finite {bad}")


def non_finite(model: torch.nn.Module) -> str:
    """``"parameters: NAME, ...; buffers: NAME, ..."`` for those of ``model`` that hold a NaN or an infinity (floating
    buffers only: a BatchNorm's running variance scales every score), ``""`` when none does."""
    # A NaN or an infinity anywhere makes a tensor's sum non-finite: one pass, no mask as large as the table;
    # a sum that overflows is confirmed element by element.
    kinds = {"parameters": model.named_parameters(),
             "buffers": ((name, b) for name, b in model.named_buffers() if b.is_floating_point())}
    parts = []
    for kind, tensors in kinds.items():
        suspect = [(name, t) for name, t in tensors if not torch.isfinite(t.detach().sum())]
        bad = [name for name, t in suspect if not torch.isfinite(t).all()]
        if bad:
            parts.append(f"{kind}: {', '.join(bad)}")
    return "; ".join(parts)


def orphan_nodes(request: Tensor, remaining: HeteroData, objective: Objective) -> Tensor:
    """``[U + I]`` mask of the request's nodes with no pair in ``remaining`` that is a term of ``objective`` (any
    label under BCE; BPR's are labelled above 0, and a user left with pairs labelled 0 has none)."""
    store, users = remaining[EDGE], num_users(remaining)
    edge_index = store.edge_index[:, objective.has_term(store.edge_label)]
    paired = torch.cat([degree(edge_index[0], users), degree(edge_index[1], num_items(remaining))]) > 0
    orphans = torch.zeros_like(paired)
    orphans[request[0]] = orphans[users + request[1]] = True
    return orphans & ~paired


def refuse_no_remaining_edge(unlearner: Unlearner, remaining: HeteroData, why: str) -> None:
    """Raises ``ValueError`` when the request removed every training edge: nothing is left for the unlearner ``why``;
    also every edge its objective trains on (BCE's negatives or positives, BPR's positives): ``train()`` named the
    training graph, which has them, and advised sampling negatives where the request had removed them."""
    method = type(unlearner).__name__
    if remaining[EDGE].edge_index.size(1) == 0:
        raise ValueError(f"{method}: the request removes every training edge: there are no remaining edges {why}")
    try:
        check_labels_train(remaining, unlearner.objective, "the remaining edges")
    except ValueError as error:
        try:  # the training graph lacking them too is not the request's doing (BCE on implicit data was blamed on it)
            check_labels_train(unlearner.graph, unlearner.objective)
        except ValueError as own:
            raise ValueError(f"{method}: {own}") from None
        raise ValueError(f"{method}: the request leaves nothing {why}: {_lost_labels(unlearner, remaining, error)} "
                         "(keep some out of the request: no model learns without them, retrained or not)") from None


def _lost_labels(unlearner: Unlearner, remaining: HeteroData, error: ValueError) -> str:
    """Which labels the request took that the objective trains on: BCE's class, BPR's terms (every label above 0;
    "labelled 1" named only the first of a graph's ratings), else the objective's own ``error``."""
    objective, label = unlearner.objective, remaining[EDGE].edge_label
    if isinstance(objective, BPRObjective):
        return "it removes every edge labelled above 0, which BPRObjective needs (its terms)"
    lost = sorted(set(unlearner.graph[EDGE].edge_label.unique().tolist()) - set(label.unique().tolist()))
    if isinstance(objective, BCEObjective) and lost:
        return f"it removes every edge labelled {lost[0]:g}, which BCEObjective needs"
    return str(error)


def _warn_of_given_edge_weights(unlearner: Unlearner) -> None:
    """Warns when the training graph carries ``edge_weight`` for a model that propagates with it: the remaining graph
    keeps each remaining edge's weight as given, and weights normalised over the whole graph go stale with a deletion
    (SISA's shard graphs drop them for that reason; a learnt weight per edge stays right)."""
    model = unlearner.model
    propagates = getattr(model, "supports_edge_weight", False) and getattr(model, "receptive_field", 0) > 0
    if propagates and unlearner.reads_edge_weight and "edge_weight" in unlearner.graph[EDGE]:
        warn_caller(f"{type(unlearner).__name__}: the training graph carries edge_weight, which "
                    f"{type(model).__name__} propagates with as given: the remaining graph keeps each "
                    "remaining edge's weight, so weights normalised over the whole graph go stale with the deletion; "
                    "without edge_weight the model normalises the remaining edges itself")

