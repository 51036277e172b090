"""SISA: sharded, isolated training; unlearning retrains only the shards that held the request."""
from __future__ import annotations

import copy
import dataclasses
import logging
from dataclasses import dataclass, field
from typing import cast

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from ..config import check_fields, check_types, derived_seed, is_integer, seeded, wrapped_seed
from ..data.interactions import EDGE, num_items, pair_keys
from ..distributed import agreed, layout
from ..io import tensors_sha256
from ..models.base import Recommender
from ..objectives import Objective
from ..train import TrainConfig, check_labels_train
from .base import Unlearner, UnlearningFailed, copy_modes, dot_product_gap, refuse_no_remaining_edge
from .registry import register
from .sharding import (ShardAttention, ShardedRecommender, attention_needs_width, split_graph, train_aggregator,
                       train_shards)

__all__ = ["SISA", "SISAConfig", "random_partition"]

log = logging.getLogger(__name__)


def random_partition(num_edges: int, num_shards: int, seed: int = 0) -> Tensor:
    """A seeded random balanced partition: ``[E]`` shard ids, shard sizes differing by at most one.

    Raises:
        ValueError: ``num_edges`` or ``num_shards`` not an integer (``True`` was one shard), or not
            ``1 <= num_shards <= num_edges``.
    """
    for name, value in (("num_edges", num_edges), ("num_shards", num_shards)):
        if not is_integer(value):
            raise ValueError(f"{name} must be an integer, got {value!r}")
    if num_shards < 1 or num_edges < num_shards:
        raise ValueError(f"need 1 <= num_shards <= num_edges, got {num_shards} shards for {num_edges} edges")
    perm = torch.randperm(num_edges, generator=seeded(seed))
    shard_of = torch.empty(num_edges, dtype=torch.long)
    shard_of[perm] = torch.arange(num_edges) % num_shards
    return shard_of


def _match_modes(ensemble: ShardedRecommender, template: torch.nn.Module) -> None:
    """Puts the trained ensemble in the modes of the caller's model (training leaves it in train mode, and a shard's
    dropout would then make every score random): each shard submodule by submodule, the attention as the model."""
    ensemble.train(template.training)
    for shard in ensemble.shards:
        copy_modes(template, shard)


def _check_assignment(ensemble: ShardedRecommender, graph: HeteroData, method: str) -> None:
    """Raises ``ValueError`` unless the pairs ``ensemble`` assigns to shards are exactly the edges of ``graph``.

    An edge without a shard cannot be unlearned; a pair the graph lacks was learnt by its shard, and no request
    can name it (it is not an edge), so it would stay in the model for good.
    """
    edge_index = graph[EDGE].edge_index
    ensemble.assignment_of(edge_index)  # raises unless every edge has a shard
    keys = ensemble.pair_keys
    stale = keys[~torch.isin(keys, pair_keys(edge_index, ensemble.num_items).to(keys.device))]
    if stale.numel():
        example = torch.stack([stale[:5] // ensemble.num_items, stale[:5] % ensemble.num_items]).t().tolist()
        raise ValueError(f"{method}: the ensemble's shards learnt from {stale.numel()} pairs that are not edges of the "
                         f"graph, e.g. {example}: no request could remove them; pass the graph the ensemble was "
                         "fitted on (or the result.graph that came with it) and unlearn those pairs")


def _labels_digest(ensemble: ShardedRecommender, graph: HeteroData) -> str:
    """The sha256 of ``graph``'s edge labels (``edge_label`` as float64, ``observed``, all true where absent) in the
    order of the ensemble's pairs (the graph's edges, :func:`_check_assignment`): what the shards learnt besides the
    pairs, whatever the tensors' dtypes."""
    edges = graph[EDGE]
    order = torch.argsort(pair_keys(edges.edge_index, ensemble.num_items))
    everywhere = torch.ones(order.numel(), dtype=torch.bool, device=order.device)
    label = edges.edge_label[order] if "edge_label" in edges else everywhere
    return tensors_sha256(label.double(), edges.get("observed", everywhere)[order].bool())


def _check_fitted_data(ensemble: ShardedRecommender, graph: HeteroData, val: HeteroData | None, config,
                       method: str) -> None:
    """Raises ``ValueError`` when ``graph``'s labels differ from those the ensemble's shards learnt, or validation pairs
    are given where its Adam fit had none, none where it had some, or others (Adam keeps each shard's best epoch by
    them, and an attention's, trained by Adam even beside L-BFGS shards): a shard or an attention retrained so would
    not be one that :meth:`SISA.fit` would have produced. Recorded on the ensemble by the fit; an ensemble pickled
    before they were recorded has none of them."""
    labels = getattr(ensemble, "fit_labels", None)
    if labels is not None and _labels_digest(ensemble, graph) != labels:
        raise ValueError(f"{method}: the graph's edge labels (edge_label, observed) are not those the ensemble's "
                         "shards learnt for the same pairs: pass the graph the ensemble was fitted on (or the "
                         "result.graph that came with it), or fit() again")
    with_val = getattr(ensemble, "fit_val", None)
    attention = (config.aggregator_train or config.train) if ensemble.attention is not None else None
    by_adam = config.train.optimizer == "adam" or (attention is not None and attention.optimizer == "adam")
    if with_val is None or not by_adam:
        return
    why = "val: Adam keeps each shard's best epoch by them, and the attention's"
    if with_val != (val is not None):
        given, advice = ("none", "pass them") if with_val else ("some", "pass val=None")
        raise ValueError(f"{method}: the ensemble was fitted {'with' if with_val else 'without'} validation pairs "
                         f"({why}), got {given}: {advice}, or fit() again")
    pairs = getattr(ensemble, "fit_val_pairs", None)  # an ensemble pickled before it was recorded has none
    if pairs is not None and _val_digest(val) != pairs:
        raise ValueError(f"{method}: the validation pairs are not those the ensemble was fitted with ({why}): pass "
                         "the fit's, or fit() again")


def _val_digest(val: HeteroData | None) -> str | None:
    """The sha256 of ``val``'s pairs and labels in the order of their keys (the AUC that picks the best epoch reads
    none), ``None`` without ``val``."""
    if val is None:
        return None
    edges = val[EDGE]
    keys = pair_keys(edges.edge_index, num_items(val))
    order = torch.argsort(keys)
    return tensors_sha256(keys[order], edges.edge_label[order].double())


def _continued_config(ensemble: ShardedRecommender, given, objective: Objective, method: str):
    """The config that serves a further request with a fitted ensemble: its fit's, with ``given``'s ``retrain_all``
    (a choice per request).

    Raises:
        ValueError: naming a field ``given`` sets to neither its default nor the fit's value, or an objective other
            than the fit's: the untouched shards were trained with the fit's, a retrained shard would not be; or an
            ensemble fitted by the other method (SISA's continued by RecEraser, or the other way round).
    """
    fitted = getattr(ensemble, "fit_config", None)  # an ensemble pickled before it was recorded has none
    if fitted is None:  # built by hand: its shard count and aggregation are all it says
        return dataclasses.replace(given, num_shards=ensemble.num_shards, aggregation=ensemble.aggregation)
    if type(fitted) is not type(given):  # RecEraser's config extends SISA's: either took the other's ensemble
        raise ValueError(f"{method}: the ensemble was fitted with a {type(fitted).__name__}, not a "
                         f"{type(given).__name__}: continue it with the method that fitted it")
    if repr(objective) != ensemble.fit_objective:
        raise ValueError(f"{method}: the ensemble was fitted with {ensemble.fit_objective}, got {objective!r}")
    default = type(given)()
    shared = [f.name for f in dataclasses.fields(given) if f.name != "retrain_all" and hasattr(fitted, f.name)]
    for name in shared:
        value = _quiet(getattr(given, name))
        if value not in (_quiet(getattr(default, name)), _quiet(getattr(fitted, name))):
            raise ValueError(f"{method}: the ensemble was fitted with {type(fitted).__name__}.{name}="
                             f"{getattr(fitted, name)!r}, got {getattr(given, name)!r}: leave it at its default (the "
                             "fit's is used), or fit() again")
    return dataclasses.replace(given, **{name: _with_progress(getattr(fitted, name), getattr(given, name))
                                         for name in shared})


def _quiet(value):
    """``value`` with a TrainConfig's ``progress`` set aside: a bar changes no shard."""
    return dataclasses.replace(value, progress=False) if isinstance(value, TrainConfig) else value


def _with_progress(fitted, given):
    """The fit's ``fitted`` value, with the ``progress`` of the ``given`` TrainConfig."""
    if isinstance(fitted, TrainConfig) and isinstance(given, TrainConfig):
        return dataclasses.replace(fitted, progress=given.progress)
    return fitted


class UntrainableShard(UnlearningFailed, ValueError):
    """A request leaves a shard that its model cannot be trained on (no edge, or no label its objective needs): SISA
    and RecEraser cannot serve it. An :class:`~graphforget.unlearn.UnlearningFailed`, so that a benchmark records the
    cell's error (it stopped the run, for good) and the command line exits 1 as for a method's failure; a
    ``ValueError`` as before."""


#: The attention's fields of :class:`SISAConfig`.
_ATTENTION_FIELDS = ("aggregator_train", "attention_dim", "activation", "transform")


@dataclass
class SISAConfig:
    """Options of :class:`SISA`.

    Args:
        train: how each shard is trained.
        num_shards: :math:`S`.
        seed: seeds the partition (through :func:`~graphforget.config.derived_seed`, so that it is independent of a
            request drawn with the same seed), the shard initialisations (``seed + s``) and the attention.
        retrain_all: retrain every shard on each request (as the IFRU authors' benchmark code does).
        aggregation: ``"mean"`` or ``"attention"`` (see :class:`~graphforget.unlearn.ShardAttention`). The
            four options below are the attention's: with ``"mean"``, one set to other than its default is refused.
        aggregator_train: how the attention is trained (``None``: as ``train``). Its fields are options too
            (``aggregator_train.epochs=2``), which change ``train``'s.
        attention_dim: rows of the attention's projection (``None``: half the embedding size).
        activation: the attention's ``"tanh"`` or ``"relu"``.
        transform: the attention's per-shard transfer.
    """
    train: TrainConfig = field(default_factory=TrainConfig)
    num_shards: int = 10
    seed: int = 0
    retrain_all: bool = False
    aggregation: str = "mean"
    aggregator_train: TrainConfig | None = None
    attention_dim: int | None = None
    activation: str = "tanh"
    transform: bool = True

    def __post_init__(self):
        check_types(self)  # a subclass's fields too (RecEraserConfig)
        check_fields(self, {"aggregation": (self.aggregation in ("mean", "attention"), "'mean' or 'attention'"),
                            "num_shards": (self.num_shards >= 1, "must be >= 1"),
                            "attention_dim": (self.attention_dim is None or self.attention_dim >= 1, "None or >= 1"),
                            "activation": (self.activation in ("tanh", "relu"), "'tanh' or 'relu'")})
        if self.aggregation == "mean":  # else accepted, recorded with the run, and never read
            check_fields(self, {f.name: (getattr(self, f.name) == f.default, "the attention's: read only with "
                                         "aggregation='attention'")
                                for f in dataclasses.fields(self) if f.name in _ATTENTION_FIELDS})


@register
class SISA(Unlearner):
    r"""SISA (Bourtoule et al., "Machine Unlearning", IEEE S&P 2021) for recommenders.

    :meth:`~graphforget.unlearn.Unlearner.fit` splits the training edges :math:`D` at random into :math:`S` disjoint
    shards :math:`D_1, \dots, D_S` and trains one fresh sub-model per shard (``model.reset_parameters(seed + s)``)
    on its shard graph alone, with the objective's summed L2 scaled by :math:`1/S`; the ensemble averages the shard
    logits, :math:`\hat y_{ui} = \frac1S \sum_s f_{\theta_s}(u, i; D_s)` (or aggregates with attention).
    Unlearning :math:`D_r` retrains, from the same initialisation, only the shards
    :math:`\{s : D_s \cap D_r \neq \emptyset\}` on :math:`D_s \setminus D_r`, so the result is the
    ensemble that :meth:`~graphforget.unlearn.Unlearner.fit` would have produced on :math:`D \setminus D_r` with the
    same assignment. Untouched shards keep their parameters bit for bit. Shards train in parallel across the ranks of a
    ``torch.distributed`` process group when there is one (``torchrun``; see
    :mod:`graphforget.distributed`), and all in this process otherwise. (The slicing of shards into checkpointed
    slices in the SISA paper is not implemented: shards are retrained whole.)

    Usage: ``sisa = SISA(model, graph, objective, SISAConfig(num_shards=10)).fit()`` (then ``sisa.model``
    is the ensemble); ``result = sisa.unlearn(request)``. A fitted :class:`ShardedRecommender` may be
    passed as ``model`` instead (e.g. ``result.model`` with ``result.graph``, to serve a further request):
    it needs no fit, and the pairs it assigns to shards must be exactly the graph's edges (``ValueError`` otherwise: a
    pair missing from the graph could never be unlearned). The config and objective of its fit are used: a config
    field set to other than its default and the fit's (``retrain_all`` aside), another objective, other labels for its
    pairs, or validation pairs where the fit had none (or none where it had some) is refused, as a shard retrained so
    would not be the one :meth:`~graphforget.unlearn.Unlearner.fit` would have produced. (An ensemble built by hand
    gives its shard count and aggregation.) The graph is then checked on each request as after
    :meth:`~graphforget.unlearn.Unlearner.fit`.

    ``model`` is the sub-model template (copied, never modified), or a fitted :class:`ShardedRecommender`.
    A template whose ``reset_parameters`` leaves a trainable parameter as it was is refused (``ValueError`` naming
    it, from :meth:`~graphforget.unlearn.Unlearner.fit` and :meth:`~graphforget.unlearn.Unlearner.unlearn`): its shards
    would start from the trained model's values. So is a shard left without data to train on (no edge, for BPR no edge
    labelled > 0, for BCE no label 0 or no label 1), naming it: by :meth:`~graphforget.unlearn.Unlearner.unlearn` as an
    :class:`UntrainableShard`. An ensemble fitted by the other method (RecEraser's
    by SISA, SISA's by RecEraser) is refused, naming its config.
    """
    name = "sisa"
    reads_edge_weight = False  # the shard graphs drop it (split_graph)
    Config = SISAConfig
    needs_fit = True
    takes_ensemble = True

    @classmethod
    def continues_own_result(cls) -> bool:
        return True  # built on its ensemble, it is fitted

    def __init__(self, model, graph: HeteroData, objective: Objective, config=None, *, val: HeteroData | None = None):
        super().__init__(model, graph, objective, config, val=val)
        num_edges = graph[EDGE].edge_index.size(1)
        self.ensemble: ShardedRecommender | None
        if isinstance(model, ShardedRecommender):
            _check_assignment(model, graph, type(self).__name__)
            self.template, self.ensemble, self.fitted = model.shards[0], model, True
            self.config = _continued_config(model, self.config, objective, type(self).__name__)
            self._record_fitted_on()  # a later edit of the graph is refused, as after fit()
        else:
            self.template, self.ensemble = model, None
        if self.config.aggregation == "attention" and getattr(self.template, "embedding_dim", None) is None:
            raise ValueError(f"{type(self).__name__}: {attention_needs_width(self.template)}")  # before any training
        if not 1 <= self.num_shards <= num_edges:
            raise ValueError(f"{type(self.config).__name__}.num_shards: need 1 <= num_shards <= {num_edges} "
                             f"(the number of edges), got {self.num_shards}")

    @property
    def num_shards(self) -> int:
        """:math:`S`, the config's at each use (read once, an edit after construction went unused by fit())."""
        return self.config.num_shards

    @property
    def shard_objective(self) -> Objective:
        """The objective with :math:`1/S` of its summed L2, which is per dataset: each interaction is then regularised
        as in the full model (an unscaled L2 flattens the small shards). Made on each use: an ``l2`` edited in place
        after construction is the fit's (``fit_objective``) and its shards' alike."""
        shard = copy.copy(self.objective)
        shard.l2 = self.objective.l2 / self.num_shards
        return shard

    # --- partition and fit ----------------------------------------------------------------------

    def partition(self) -> Tensor:
        """``[E]`` shard id of each edge of ``self.graph``: random and balanced, seeded by
        ``derived_seed(config.seed, "partition")``."""
        return random_partition(self.graph[EDGE].edge_index.size(1), self.num_shards,
                                derived_seed(self.config.seed, "partition"))

    def _fit(self) -> dict:
        """Partitions, trains the shards (and the attention); ``self.model`` becomes the ensemble."""
        cfg, self.fit_info = self.config, {}
        # Every rank of a process group checks here, before the partition and the shards' collectives: a rank that
        # stopped alone would leave the others waiting in theirs. The same inputs then partition the same way.
        agreed(f"{type(self).__name__}.fit", self._check_attention_fits, **self._fit_inputs())
        shard_of = self.partition().to(self.graph[EDGE].edge_index.device)
        sizes = torch.bincount(shard_of, minlength=self.num_shards)
        if bool((sizes == 0).any()):
            empty = (sizes == 0).nonzero().flatten().tolist()
            raise ValueError(f"{type(self).__name__}: the partition leaves shards {empty} without an edge: use fewer "
                             f"shards ({type(cfg).__name__}.num_shards, now {self.num_shards})")
        edge_index = self.graph[EDGE].edge_index
        graphs = split_graph(self.graph, shard_of, self.num_shards)
        self._check_trainable(dict(enumerate(graphs)),
                              f"use fewer shards ({type(cfg).__name__}.num_shards, now {self.num_shards})")
        aggregation = self._aggregation()  # before the shards train: one too large to build failed after them
        trained = train_shards([self.template] * self.num_shards, graphs, self.shard_objective, cfg.train, self.val,
                               [wrapped_seed(cfg.seed + s) for s in range(self.num_shards)], type(self).__name__)
        self._check_attention_fits(trained[0][0])  # what the shards learnt: a bias the template held at 0
        ensemble = ShardedRecommender([model for model, _ in trained], shard_of, edge_index, aggregation)
        info = {**self.fit_info, "shard_sizes": sizes.tolist(), "shard_epochs": [r.epochs for _, r in trained],
                "shard_seconds": [r.seconds for _, r in trained]}
        if ensemble.attention is not None:
            result = train_aggregator(ensemble, self.graph, self.objective, cfg.aggregator_train or cfg.train,
                                      self.val, cfg.seed)
            info["aggregator_epochs"], info["aggregator_seconds"] = result.epochs, result.seconds
        _match_modes(ensemble, self.template)
        # a copy: the unlearner's config edited after fit() had edited the record with it, and passed its check
        ensemble.fit_config, ensemble.fit_objective = copy.deepcopy(cfg), repr(self.objective)
        self._record_data(ensemble, self.graph)
        self.ensemble = self.model = ensemble
        log.info("%s fit %d shards", self.name, self.num_shards)
        return info

    def _record_data(self, ensemble: ShardedRecommender, graph: HeteroData) -> None:
        """Records on ``ensemble`` the labels its shards learnt from ``graph`` and the validation pairs given, if any:
        a further request must match them (:func:`_check_fitted_data`)."""
        ensemble.fit_labels, ensemble.fit_val = _labels_digest(ensemble, graph), self.val is not None
        ensemble.fit_val_pairs = _val_digest(self.val)

    def _check_trainable(self, graphs: dict[int, HeteroData], advice: str) -> None:
        """Raises ``ValueError`` naming the first shard of ``{shard: graph}`` that the objective cannot train on
        (BPR: no edge labelled > 0; BCE: none labelled 0, or none labelled 1), ending with ``advice``: the
        objective's own error counts the shard's edges and names neither the shard nor the option to change."""
        for s, graph in graphs.items():
            try:
                check_labels_train(graph, self.shard_objective, f"shard {s}", part=True)
            except ValueError as error:
                raise ValueError(f"{type(self).__name__}: shard {s} cannot be trained on its edges ({error}): "
                                 f"{advice}") from None

    def _fit_inputs(self) -> dict:
        """What every rank must pass to :meth:`fit` alike (the template's values do not matter: re-initialised)."""
        return {"model": layout(self.template), "graph": self.graph, "objective": self.objective,
                "config": self.config, "val": self.val}

    def _check_attention_fits(self, model: Recommender | None = None) -> None:
        """With attention aggregation, raises ``ValueError`` unless ``model`` (the template before any shard trains,
        then a trained shard) scores a pair by the dot product of ``embed``'s rows, ``embedding_dim`` wide: the
        attention weighs those rows and scores by their dot product, so another width fails, and a bias or a layer on
        the pair would be dropped silently (a PyG module's own scoring is known only by running it)."""
        if self.config.aggregation != "attention":
            return
        model = self.template if model is None else model
        gap, width = dot_product_gap(model, self.graph)
        name = type(model).__name__
        if width != model.embedding_dim:
            raise ValueError(f"{type(self).__name__}: attention aggregation weighs the rows of embed(), which are "
                             f"{width} wide, but {name}.embedding_dim is {model.embedding_dim}: "
                             f"set model.embedding_dim = {width}, or aggregate by 'mean'")
        if gap:
            raise ValueError(f"{type(self).__name__}: attention aggregation scores a pair by the dot product of the "
                             f"shards' embed() rows, but {name}'s own scores differ from it by up to {gap:.3g} (a "
                             "bias, or a layer on the pair): aggregate by 'mean'")

    def _aggregation(self) -> str | ShardAttention:
        """``"mean"``, or the attention, built (its memory allocated) before any shard trains."""
        cfg = self.config
        if cfg.aggregation == "mean":
            return "mean"
        try:  # in the shards' dtype, which the ensemble moves it to
            width = cast(int, self.template.embedding_dim)  # an int: checked at construction for the attention
            return ShardAttention(self.num_shards, width, cfg.attention_dim, cfg.activation,
                                  cfg.transform, seed=cfg.seed, dtype=next(self.template.parameters()).dtype)
        except (RuntimeError, ValueError) as error:  # ours, or torch's words for memory it cannot allocate
            raise ValueError(f"{type(self).__name__}: the attention cannot be built ({type(cfg).__name__}."
                             f"attention_dim={cfg.attention_dim}, embedding_dim={self.template.embedding_dim}): "
                             f"{error}") from None

    # --- unlearning -----------------------------------------------------------------------------

    def _communicates(self) -> bool:
        return True  # the retrained shards are shared by the ranks of a process group, if any

    def _unlearn(self, request, positions, remaining):
        old = self.ensemble
        # the fit's config, an edit since refused by name: retrained shards took edited training, the others the fit's
        self.config = _continued_config(old, self.config, self.objective, type(self).__name__)
        # here, not when built: fit() may be called first (a fit's own record passes)
        _check_fitted_data(old, self.graph, self.val, self.config, type(self).__name__)
        # what no shard can train on, nor a Retrain: fewer shards, the advice below, would not help
        refuse_no_remaining_edge(self, remaining, "to retrain the shards on")
        held = old.assignment_of(request)
        cfg = self.config
        touched = list(range(old.num_shards)) if cfg.retrain_all else sorted(held.unique().tolist())
        ensemble = copy.deepcopy(old)  # untouched shards stay bit-identical; the old ensemble is not mutated
        ensemble.restrict_to(remaining)
        graphs = ensemble.shard_graphs(remaining)
        emptied = [s for s in touched if graphs[s][EDGE].edge_index.size(1) == 0]
        if emptied:
            raise UntrainableShard(f"{type(self).__name__}: the request removes every edge of shard(s) {emptied}, "
                                   "whose model cannot be trained without data: fit() again with fewer shards "
                                   "(num_shards), or Retrain")
        try:
            self._check_trainable({s: graphs[s] for s in touched}, "fit() again with fewer shards (num_shards), or "
                                  "Retrain")
        except ValueError as error:
            raise UntrainableShard(str(error)) from None
        trained = train_shards([old.shards[s] for s in touched], [graphs[s] for s in touched], self.shard_objective,
                               cfg.train, self.val, [wrapped_seed(cfg.seed + s) for s in touched], type(self).__name__,
                               old.num_shards)
        for s, (model, _) in enumerate(trained):
            ensemble.shards[touched[s]] = model
        self._record_data(ensemble, remaining)
        info = {"retrained_shards": touched, "num_retrained": len(touched),
                "request_per_shard": torch.bincount(held, minlength=old.num_shards).tolist(),
                "shard_epochs": [r.epochs for _, r in trained], "shard_seconds": [r.seconds for _, r in trained]}
        if ensemble.attention is not None:
            result = train_aggregator(ensemble, remaining, self.objective, cfg.aggregator_train or cfg.train,
                                      self.val, cfg.seed)
            info["aggregator_epochs"], info["aggregator_seconds"] = result.epochs, result.seconds
        return ensemble, info

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(model={type(self.template).__name__}, fitted={self.fitted}, "
                f"config={self.config})")
