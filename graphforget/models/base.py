"""The model contract (:class:`Recommender`), the embedding-table models' base
(:class:`EmbeddingRecommender`), the registry and checkpoints."""
from __future__ import annotations

import copy
import hashlib
import inspect
import os
from abc import ABC, abstractmethod
from importlib.metadata import entry_points
from typing import Any, Callable, TypeVar, cast

import numpy as np
import torch
from torch import Tensor, nn
from torch_geometric.data import HeteroData

from ..config import check_device, is_integer, is_integer_tensor, resolved_device, seeded
from ..data.interactions import check_ids_in_range, check_model_fits, check_pairs_in_range, num_items, num_users
from ..io import atomic_write, load_failure, tensors_sha256

__all__ = ["Recommender", "EmbeddingRecommender", "NODE_TYPES", "check_precision", "running_statistics", "table_mask",
           "table_offset", "save_model", "load_model", "MODELS", "ENTRY_POINT_GROUP", "build_model", "registered_model"]

#: Node types of a per-node parameter table (see :meth:`Recommender.node_parameters`): ``user`` rows are
#: user ids, ``item`` rows item ids, ``node`` rows homogeneous ids (users ``0..U-1``, then items).
NODE_TYPES = ("user", "item", "node")

#: (user, item) pairs per call of :meth:`Recommender.forward` in :meth:`Recommender.score_all` (a model that
#: overrides ``forward``).
SCORE_ALL_PAIRS = 1 << 18

_ModuleT = TypeVar("_ModuleT", bound=nn.Module)


def table_offset(node_type: str, num_users: int) -> int:
    """Homogeneous id of row 0 of a table of ``node_type``."""
    if node_type not in NODE_TYPES:
        raise ValueError(f"unknown node type {node_type!r}; known: {', '.join(NODE_TYPES)}")
    return num_users if node_type == "item" else 0


def table_mask(node_mask: Tensor, node_type: str, num_users: int) -> Tensor:
    """The rows of a table of ``node_type`` in a homogeneous ``[U + I, ...]`` tensor (a node mask, or a row per
    node): a view."""
    table_offset(node_type, num_users)  # checks the node type
    if node_type == "node":
        return node_mask
    return node_mask[num_users:] if node_type == "item" else node_mask[:num_users]


def module_on(model: _ModuleT, device: torch.device | str) -> _ModuleT:
    """``model`` itself when all its tensors are on ``device``, else a copy moved there: ``Module.to`` moves the
    caller's module in place (a loaded run's model, a model being saved)."""
    target = resolved_device(device)
    if all(t.device == target for t in (*model.parameters(), *model.buffers())):
        return model
    return copy.deepcopy(model).to(target)


def check_edge_label_index(edge_label_index: Tensor, num_users: int, num_items: int) -> None:
    """Raises ``ValueError`` unless ``edge_label_index`` is a ``[2, B]`` integer tensor of user ids in
    ``[0, num_users)`` and item ids in ``[0, num_items)``, naming the first id outside and its position: a transposed
    or 1-D index was scored silently (its first rows read as pairs), and an out-of-range id failed inside torch's
    indexing or, offset into homogeneous ids, scored another node."""
    check_pairs_in_range(edge_label_index, num_users, num_items, "edge_label_index", "B")


def checked_receptive_field(model: nn.Module, who: str) -> int:
    """``model.receptive_field``; raises ``ValueError`` (``who`` first) unless it is an integer >= 0 (``None`` or
    ``2.0`` failed deep inside a comparison or torch's slicing)."""
    field: Any = model.receptive_field  # any value: checked here
    if not (is_integer(field) and field >= 0):
        raise ValueError(f"{who}: {type(model).__name__}.receptive_field must be an integer >= 0 (the hops a score "
                         f"reads), got {field!r}")
    return int(field)


def check_precision(model: nn.Module, who: str, remedy: str, one_dtype: bool = False) -> None:
    """Half precision (about 3 significant digits) carries neither the curvature solves nor Adam's ``eps`` (1e-8
    rounds to 0 in float16: every step is NaN): the caller is told here, with the remedy. Scoring works in it where
    the model's kernels do (graphforget's propagation runs the CPU's sparse products in float32). With ``one_dtype``,
    the node tables (:meth:`Recommender.node_parameters`) must also share one dtype (IFRU's products of user and item
    rows and RecEraser's clustering of them failed inside torch); other parameters may differ.

    Raises:
        ValueError: ``"{who} needs float32 or float64 parameters, got ...: {remedy} a model.float() copy ..."``, or
            ``"{who} needs the node tables in one dtype ..."``.
    """
    low = sorted({str(p.dtype) for p in model.parameters() if p.requires_grad and p.dtype not in
                  (torch.float32, torch.float64)})
    if low:
        raise ValueError(f"{who} needs float32 or float64 parameters, got {', '.join(low)}: {remedy} a model.float() "
                         "copy (and cast the result back if you serve it in half precision)")
    names = cast("Recommender", model).node_parameters() if one_dtype else {}  # a Recommender: checked first
    tables = {name: model.get_parameter(name).dtype for name in names}
    if len(set(tables.values())) > 1:
        held = ", ".join(f"{name} {dtype}" for name, dtype in tables.items())
        raise ValueError(f"{who} needs the node tables in one dtype, got {held}: {remedy} a copy that casts them alike "
                         "(model.float() or model.double())")


def running_statistics(model: torch.nn.Module) -> list[str]:
    """Names of the model's buffers that hold running statistics (a BatchNorm's or InstanceNorm's ``running_mean``
    and ``running_var``): the data's, not parameters, so no influence step can correct them."""
    return [name for name, _ in model.named_buffers() if name.rsplit(".", 1)[-1] in ("running_mean", "running_var")]


class Recommender(nn.Module, ABC):
    """The contract every model (ours, a user's, an adapted PyG module) follows.

    * ``forward(graph, edge_label_index)`` scores the ``[2, B]`` (user, item) pairs given the
      interaction graph passed in, returning ``[B]`` logits. Nothing graph-derived is cached across
      calls, so a model can be run on an edited graph or with edited parameters. By default, the dot
      products of :meth:`embed`'s user and item rows; another shape or an id out of range is refused
      (``check_edge_label_index``).
    * :meth:`embed` gives the final user ``[U, d]`` and item ``[I, d]`` representations on a graph.
    * :meth:`node_parameters` names the per-node parameter tables and their node type (one of
      :data:`NODE_TYPES`), so that unlearning methods can select rows; every other trainable parameter
      is dense (shared by all nodes).
    * ``receptive_field`` is the number of hops a prediction depends on (MF: 0; K-layer GNN: K).
    * ``supports_edge_weight``: ``True`` when the model propagates with the weights from
      :func:`~graphforget.data.propagation_edges` (so it can be run exactly on a k-hop subgraph).
    * :attr:`scores_by_dot_product`: ``True`` when :meth:`forward` scores a pair by the dot product of
      :meth:`embed`'s rows (the default forward, not overridden).
    * ``linear_embedding``: ``True`` when :meth:`embed` is linear in the node tables (MF, LightGCN):
      with dot-product scores, curvature products then take a fast closed form
      (:class:`~graphforget.influence.DotProductOperator`).
    * :meth:`reset_parameters` re-draws every trainable parameter (from ``seed`` when given, without
      touching the global random state); :meth:`config` returns the constructor's arguments.

    Args:
        num_users: number of users :math:`U`.
        num_items: number of items :math:`I`.
    """

    receptive_field: int = 0
    supports_edge_weight: bool = False
    linear_embedding: bool = False

    @property
    def scores_by_dot_product(self) -> bool:
        """Whether :meth:`forward` is the dot product of :meth:`embed`'s user and item rows (this class's
        forward, not overridden)."""
        return type(self).forward is Recommender.forward

    def __init__(self, num_users: int, num_items: int):
        super().__init__()
        if not all(is_integer(n) and n >= 1 for n in (num_users, num_items)):
            raise ValueError(f"num_users and num_items must be positive integers, got {num_users!r} and {num_items!r}")
        self.num_users, self.num_items = int(num_users), int(num_items)  # a NumPy count could not be loaded back

    @abstractmethod
    def embed(self, graph: HeteroData) -> tuple[Tensor, Tensor]:
        """Final user ``[U, d]`` and item ``[I, d]`` representations on ``graph``."""

    @abstractmethod
    def node_parameters(self) -> dict[str, str]:
        """Names of per-node parameter tables (rows = node ids) -> node type (see
        :data:`~graphforget.models.NODE_TYPES`)."""

    @abstractmethod
    def reset_parameters(self, seed: int | None = None) -> None:
        """Re-draws every trainable parameter; from private generators when ``seed`` is given."""

    def forward(self, graph: HeteroData, edge_label_index: Tensor) -> Tensor:
        """``[B]`` logits of the ``[2, B]`` (user, item) pairs ``edge_label_index`` on the interaction graph
        ``graph`` (the contract of :class:`~graphforget.models.Recommender`)."""
        user, item = self.embed(graph)
        check_edge_label_index(edge_label_index, user.size(0), item.size(0))
        edge_label_index = edge_label_index.long()  # narrow integer ids are ids too; index_select takes int64
        # index_select, not ``user[idx]``: the backward of advanced indexing (index_put_ with accumulate)
        # adds rows with atomics on multi-threaded CPUs, so training would not be bit-reproducible.
        return (user.index_select(0, edge_label_index[0]) * item.index_select(0, edge_label_index[1])).sum(-1)

    def score_all(self, graph: HeteroData, users: Tensor | None = None) -> Tensor:
        """Scores ``[len(users), I]`` of every item for the given users (all users by default): the dot
        products of :meth:`embed`'s rows (:meth:`dot_product_scores`) where :meth:`forward` is this class's, else
        :meth:`forward`'s scores of every pair, about ``SCORE_ALL_PAIRS`` pairs per call.

        Raises:
            ValueError: ``users`` is not a 1-D tensor of user ids in range (a bool mask was read as a mask on one
                path and as ids 0 and 1 on the other), or the model does not fit the graph's node counts."""
        check_model_fits(self, graph)  # MF's embed ignores the graph: it scored its own 40 users for a graph of 50
        if self.scores_by_dot_product:
            return self.dot_product_scores(graph, users)  # which checks the users
        # A model that overrides forward scores otherwise: ranking it by embed's dot products would be wrong.
        users = _checked_users(users, self.num_users)
        items = torch.arange(self.num_items, device=next(self.parameters()).device)
        users = torch.arange(self.num_users, device=items.device) if users is None else users.to(items.device)
        chunk = max(1, SCORE_ALL_PAIRS // self.num_items)
        rows = [self(graph, torch.stack([part.repeat_interleave(self.num_items), items.repeat(part.numel())]))
                for part in users.split(chunk)]
        return torch.cat(rows).view(users.numel(), self.num_items)

    def dot_product_scores(self, graph: HeteroData, users: Tensor | None = None) -> Tensor:
        """The dot products ``[len(users), I]`` of :meth:`embed`'s user rows (all by default) and item rows."""
        user, item = self.embed(graph)
        users = _checked_users(users, user.size(0))
        return row_products(user if users is None else user[users], item)

    def config(self) -> dict:
        """Constructor arguments, for checkpoints."""
        return {"num_users": self.num_users, "num_items": self.num_items}

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.config().items())


def row_products(user: Tensor, item: Tensor) -> Tensor:
    """``user @ item.t()`` in the dtype the two promote to, as :meth:`Recommender.forward`'s elementwise products do
    (a float32 and a float64 table failed in the matrix product)."""
    dtype = torch.promote_types(user.dtype, item.dtype)
    return user.to(dtype) @ item.to(dtype).t()


def _checked_users(users: Tensor | None, count: int) -> Tensor | None:
    """``users`` as int64 ids (torch reads a uint8 index as a mask), or ``ValueError`` unless it is ``None`` or a 1-D
    tensor of integer ids in ``[0, count)`` (a negative id would index from the end)."""
    if users is None:
        return None
    if not (isinstance(users, Tensor) and is_integer_tensor(users) and users.dim() == 1):
        shape = list(users.shape) if isinstance(users, Tensor) else type(users).__name__
        dtype = f" of {users.dtype}" if isinstance(users, Tensor) else ""
        raise ValueError(f"users must be a 1-D tensor of integer user ids, got {shape}{dtype}")
    check_ids_in_range(users, count, "users holds user")
    return users.long()


class EmbeddingRecommender(Recommender):
    """A recommender whose per-node parameters are a user table and an item table of width ``d``.

    ``user_emb`` and ``item_emb`` (:class:`~torch.nn.Embedding`) are drawn from :math:`N(0, 0.1^2)`
    when created (from the global random state, as torch's layers are); :meth:`reset_parameters`
    re-draws them. :meth:`embed` returns them as they are (matrix factorisation); GNNs override it.
    Subclasses with other trainable parameters override :meth:`reset_parameters` and call this one.

    Args:
        num_users: number of users :math:`U`.
        num_items: number of items :math:`I`.
        embedding_dim: width :math:`d` of the tables.
    """

    def __init__(self, num_users: int, num_items: int, embedding_dim: int = 64):
        super().__init__(num_users, num_items)
        if not (is_integer(embedding_dim) and embedding_dim >= 1):
            raise ValueError(f"embedding_dim must be a positive integer, got {embedding_dim!r}")
        self.embedding_dim = int(embedding_dim)  # a NumPy width: config() was no JSON, and not its checkpoint's
        self.user_emb = nn.Embedding(num_users, embedding_dim)
        self.item_emb = nn.Embedding(num_items, embedding_dim)
        self._draw_tables(None)

    def _draw_tables(self, seed: int | None) -> None:
        """N(0, 0.1^2) into both tables, users first; from a private CPU generator when ``seed`` is given."""
        gen = None if seed is None else seeded(seed)
        for table in (self.user_emb.weight, self.item_emb.weight):
            init_from(gen, nn.init.normal_, table, std=0.1)

    def reset_parameters(self, seed: int | None = None) -> None:
        """Re-draws the embedding tables, N(0, 0.1^2); from a private generator when ``seed`` is given."""
        self._draw_tables(seed)

    def node_parameters(self) -> dict[str, str]:
        return {"user_emb.weight": "user", "item_emb.weight": "item"}

    def check_node_counts(self, graph: HeteroData) -> None:
        """Raises ``ValueError`` unless the tables (whatever an influence method has swapped in) have ``graph``'s
        node counts: with the same total, a graph's user past the table's would silently take an item's row."""
        tables = self.user_emb.weight.size(0), self.item_emb.weight.size(0)
        if tables != (num_users(graph), num_items(graph)):
            raise ValueError(f"{type(self).__name__} has tables of {tables[0]} users and {tables[1]} items, but the "
                             f"graph has {num_users(graph)} users and {num_items(graph)} items "
                             "(graph['user'].num_nodes, graph['item'].num_nodes): build the model for its node counts")

    def embed(self, graph: HeteroData) -> tuple[Tensor, Tensor]:
        self.check_node_counts(graph)  # MF reads no edge: a graph of other node counts was scored with its own rows
        return self.user_emb.weight, self.item_emb.weight

    def config(self) -> dict:
        return {**super().config(), "embedding_dim": self.embedding_dim}


def init_from(generator: torch.Generator | None, init: Callable[..., Tensor], tensor: Tensor, **kwargs) -> None:
    """``init(tensor, **kwargs)`` (an ``nn.init`` function); with a CPU ``generator``, drawn on the CPU in float32
    and copied in, so that a seed draws the same values on every device and in every floating dtype (a CUDA generator
    draws others: seeded alike, Retrain's and RecEraser's predictions were up to 0.07 and 0.13 apart on an H200 and
    on the CPU; a float64 draw is another sequence: a float64 MF's tables were up to 0.49 from the float32 ones)."""
    if generator is None:
        init(tensor, **kwargs)
        return
    drawn = torch.empty(tensor.shape, dtype=torch.float32 if tensor.is_floating_point() else tensor.dtype)
    init(drawn, generator=generator, **kwargs)
    with torch.no_grad():
        tensor.copy_(drawn)


#: Registered models by name (for checkpoints, runs and the CLI): a :class:`Recommender` subclass, or a
#: factory that returns one, called with the keyword arguments a checkpoint stores as ``config``. An
#: installed package registers its own under the entry-point group :data:`ENTRY_POINT_GROUP`, loaded the
#: first time a name is not found here.
MODELS: dict[str, Callable[..., Recommender]] = {}

#: The entry-point group of models that installed packages register (``name = "package.module:factory"``).
ENTRY_POINT_GROUP = "graphforget.models"


def registered_model(name: str) -> Callable[..., Recommender]:
    """The class or factory registered as ``name``: in :data:`MODELS`, else an installed package's entry point
    of :data:`ENTRY_POINT_GROUP` (then added to :data:`MODELS`).

    Raises:
        ValueError: no model of that name is registered, installed packages register it differently, or its
            entry point does not load.
    """
    if name not in MODELS:
        installed = entry_points(group=ENTRY_POINT_GROUP)
        points = {point.value: point for point in installed if point.name == name}
        if not points:  # the installed names too: a plugin's model left out read as a plugin not installed
            raise ValueError(f"unknown model {name!r}; known: {sorted(MODELS.keys() | {p.name for p in installed})}. "
                             f"Register a Recommender class or a factory in graphforget.models.MODELS (for this "
                             f"process), or, for the command line too, from an installed package under the "
                             f"entry-point group {ENTRY_POINT_GROUP!r}")
        if len(points) > 1:
            raise ValueError(f"installed packages register model {name!r} as {sorted(points)}: uninstall all but one")
        (point,) = points.values()
        try:
            MODELS[name] = point.load()
        except Exception as error:  # a plugin's import runs its code: any error, not only ImportError, is its own
            raise ValueError(f"model {name!r}: the entry point {point.value!r} does not load: {error} "
                             f"({type(error).__name__})") from error
    return MODELS[name]


class NotARecommender(TypeError, ValueError):
    """A registered model's factory returned something other than a :class:`Recommender`: a ``TypeError``, and a
    ``ValueError`` of the input where the name is one (the command line reports it in one line, as it does a factory
    that takes other arguments)."""


def build_model(name: str, **kwargs) -> Recommender:
    """A new model built by the class or factory registered as ``name`` (:func:`registered_model`).

    Raises:
        ValueError: an unknown name, or arguments the class or factory does not take.
        NotARecommender: (a ``TypeError`` and a ``ValueError``) a factory that returns something other than a
            :class:`Recommender`.
    """
    factory = registered_model(name)
    try:
        inspect.signature(factory).bind(**kwargs)
    except TypeError as error:
        raise ValueError(f"model {name!r} cannot be built from the arguments {sorted(kwargs)}: {error}") from None
    model = factory(**kwargs)
    if not isinstance(model, Recommender):
        raise NotARecommender(f"model {name!r} built a {type(model).__name__}, not a graphforget Recommender "
                              f"(wrap a PyG module in graphforget.models.PyGRecommender)")
    return model


def _binds(name: str, config: dict) -> None:
    """Raises ``ValueError`` unless the factory registered as ``name`` can be called with ``config``."""
    factory = MODELS[name]
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):  # a builtin inspect cannot read: left to the load
        return
    try:
        signature.bind(**config)
    except TypeError as error:
        raise ValueError(f"save_model: the model registered as {name!r} cannot be built from its config() {config} "
                         f"({error}), so load_model could not read the file back: register a factory that builds it "
                         f"from plain values and pass its name and config (a PyGRecommender, whose module no config "
                         f"holds: docs/custom_model.rst, 'Run directories and the command line')") from None


def _rebuilds(model: Recommender, name: str, config: dict) -> None:
    """Raises ``ValueError`` unless ``build_model(name, **config)`` is a model of ``model``'s class, its ``config()``
    and its structure (its repr: a PyG module's layers) with ``model``'s state-dict entries (names, shapes, dtypes;
    any floating dtype for a floating entry, as :func:`load_model` gives the rebuilt model the checkpoint's): a
    checkpoint that cannot be loaded, or loads as another model (a LightGCN saved with ``num_layers=0``, an MF under
    the name ``lightgcn``), is refused when written, not when read. The rebuilt model draws its initial values from
    a fork of the global random state: saving leaves that state as it was."""
    def entries(module):
        return {key: (tuple(value.shape), "floating" if value.is_floating_point() else value.dtype)
                for key, value in module.state_dict().items()}
    with torch.random.fork_rng(devices=[]):
        built = build_model(name, **config)
    rebuilt, expected = entries(built), entries(model)
    if expected != rebuilt:
        differ = sorted(key for key in expected.keys() | rebuilt.keys() if expected.get(key) != rebuilt.get(key))
        raise ValueError(f"model {name!r} built from config {config} does not match the model to save: "
                         f"state-dict entries {differ[:5]} differ (names, shapes or dtypes)")
    for what, mine, theirs in (("class", type(model).__name__, type(built).__name__),
                               ("config()", model.config(), built.config()), ("structure", repr(model), repr(built))):
        if mine != theirs:
            raise ValueError(f"model {name!r} built from config {config} does not match the model to save: its "
                             f"{what} is {theirs!r}, the model's {mine!r}")


def save_model(model: Recommender, path: str | os.PathLike, name: str | None = None, config: dict | None = None,
               **extra) -> None:
    """Writes the state dict, the model's registered name and the arguments that rebuild it (plus ``extra``
    plain values).

    Args:
        model: the model.
        path: the file; the write is atomic (:func:`~graphforget.io.atomic_write`): an interrupted save leaves
            the previous file at ``path`` intact.
        name, config: the name of the model's factory in :data:`MODELS` and its keyword arguments. By default
            the name its class is registered under and :meth:`Recommender.config`; when given, the model they
            build is checked against ``model`` first.
        extra: plain values stored beside (not named ``state_dict``, ``state_sha256``, ``layout_sha256`` or
            ``meta_sha256``: the checkpoint's own, the sha256 of its tensors' bytes, of their keys, dtypes and shapes,
            and of the rest, which :func:`load_model` checks).

    Raises:
        ValueError: an unregistered model, ``name``/``config`` that do not rebuild it, an extra value under a
            reserved name, or one that a checkpoint read with ``weights_only=True`` cannot hold.
    """
    reserved = sorted(_CHECKPOINT_KEYS & extra.keys())
    if reserved:  # an extra state_dict replaced the model's weights, and the file then failed its own sha256
        raise ValueError(f"save_model: an extra value named {', '.join(reserved)} would replace the checkpoint's own "
                         "field: name it otherwise")
    given = name is not None or config is not None
    name = name or next((k for k, v in MODELS.items() if v is type(model)), None)
    if name is None:
        from ..unlearn.sharding import ShardedRecommender  # both build on this module
        from .pyg import PyGRecommender
        if isinstance(model, ShardedRecommender):
            raise ValueError("save_model writes one model's tables; a fitted SISA or RecEraser ensemble "
                             "(ShardedRecommender: its shards, edge assignment and aggregator) is saved whole with "
                             "torch.save(model, path) and read with torch.load(path, weights_only=False)")
        where = (" (a PyGRecommender: docs/custom_model.rst, 'Run directories and the command line')"
                 if isinstance(model, PyGRecommender) else "")
        raise ValueError(f"{type(model).__name__} is not registered in graphforget.models.MODELS: register it, "
                         f"or pass the name and config of a registered factory that builds it{where}")
    config = model.config() if config is None else config
    if given:
        _rebuilds(model, name, config)
    else:  # a class whose config() misses an argument (PyGRecommender's module) saved a file no load could read
        _binds(name, config)
    state = {key: value.detach().cpu() for key, value in model.state_dict().items()}  # loads on a CPU-only machine
    checkpoint = _plain({"model": name, "config": config, "state_dict": state, **extra}, "the checkpoint")
    checkpoint.update(state_sha256=_state_sha256(state), layout_sha256=_layout_sha256(state),
                      meta_sha256=_meta_sha256(checkpoint))
    atomic_write(path, lambda handle: torch.save(checkpoint, handle))


#: The fields :func:`save_model` writes itself that an extra value could take (``model`` and ``config`` are its
#: arguments' names).
_CHECKPOINT_KEYS = {"state_dict", "state_sha256", "layout_sha256", "meta_sha256"}


def _state_sha256(state: dict) -> str:
    """The sha256 of a state dict's tensors, in key order: :func:`load_model` checks it (a flipped bit loaded)."""
    return tensors_sha256(*(state[key] for key in sorted(state) if isinstance(state[key], Tensor)))


def _layout_sha256(state: dict) -> str:
    """The sha256 of a state dict's keys with its tensors' dtypes and shapes: the same bytes stored again as int32
    loaded, off by 1e9, past :func:`_state_sha256`."""
    layout = [(key, str(value.dtype), tuple(value.shape)) for key, value in sorted(state.items())
              if isinstance(value, Tensor)]
    return hashlib.sha256(repr(layout).encode()).hexdigest()


def _meta_sha256(checkpoint: dict) -> str:
    """The sha256 of everything but the tensors and the digests: the name, the config and the extra values, by their
    repr (a file keeps its dicts' order; a flipped bit in a config's ``num_layers`` loaded another model, and torch
    does not check its zip's CRC), an extra tensor by its dtype, shape and bytes (its repr follows torch's print
    options and elides long ones: an untouched file was refused, an edited one loaded)."""
    meta = {key: value for key, value in checkpoint.items() if key not in _CHECKPOINT_KEYS}
    return hashlib.sha256(repr(_fingerprinted(meta)).encode()).hexdigest()


def _fingerprinted(value):
    """``value`` with every tensor in it as ``(dtype, shape, sha256 of its bytes)``."""
    if isinstance(value, Tensor):
        return str(value.dtype), tuple(value.shape), tensors_sha256(value)
    if isinstance(value, dict):
        return {key: _fingerprinted(item) for key, item in value.items()}
    if type(value) in (list, tuple):
        return type(value)(_fingerprinted(item) for item in value)
    return value


def _plain(value, where: str):
    """``value`` with NumPy scalars as Python ones; ``ValueError`` naming ``where`` for a value that a checkpoint read
    with ``weights_only=True`` refuses (a ``Path``, a ``datetime``): it was written, and could never be loaded."""
    if isinstance(value, dict):
        return {key: _plain(item, f"{where}[{key!r}]") for key, item in value.items()}
    if type(value) in (list, tuple):  # a namedtuple is refused below: weights_only cannot load it
        return type(value)(_plain(item, f"{where}[{i}]") for i, item in enumerate(value))
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (str, int, float, bool, Tensor, torch.dtype, torch.device)):
        return value
    raise ValueError(f"save_model: {where} is a {type(value).__name__}, which a checkpoint loaded with "
                     "weights_only=True cannot hold: pass str, int, float, bool, None, lists, dicts or tensors")


def load_model(path: str | os.PathLike, map_location=None) -> tuple[Recommender, dict]:
    """Reads a checkpoint with ``weights_only=True``; returns the model and the whole checkpoint dict.

    The model is rebuilt from the checkpoint's name and config (its initial draw from a fork of the global random
    state, which loading leaves as it was) and gets the saved tensors with their dtypes (a float64 model loads as
    float64, bit for bit). With ``map_location`` a device (``"cuda:0"``), the model is moved there too.

    Raises:
        ValueError: ``map_location`` names a device this machine lacks (CUDA, MPS, a GPU's index); the file cannot be
            read (truncated, corrupt), is not a checkpoint written by :func:`save_model`, its tensors, name, config or
            extra values differ from the sha256 saved with them (or one of those is missing), or its state dict does
            not fit the model its name and config build.
    """
    device = _map_device(map_location)
    # torch.load maps to "cpu" but not to "cpu:0", nor to a GPU's index (it blamed the file); the model goes to the
    # device after
    checkpoint = _read_checkpoint(path, map_location if device is None else "cpu" if device.type == "cpu" else device)
    name, config, state = checkpoint["model"], checkpoint["config"], checkpoint["state_dict"]
    for key, digest, what in (("state_sha256", _state_sha256(state), "its tensors"),
                              ("layout_sha256", _layout_sha256(state), "its tensors"),
                              ("meta_sha256", _meta_sha256(checkpoint), "its model name, config or extra values")):
        saved = checkpoint.get(key)  # save_model writes each: one deleted with an edit had let the edit load
        if saved != digest:
            found = "do not match the sha256 saved with them" if saved is not None else f"lack their sha256 ({key})"
            raise ValueError(f"{path}: {what} {found}: the file was changed or damaged after save_model wrote it")
    with torch.random.fork_rng(devices=[]):
        model = build_model(name, **config)
    _take_dtypes(model, state)
    try:
        model.load_state_dict(state)
    except RuntimeError as error:  # missing, unexpected or mis-shaped entries: a tampered checkpoint
        raise ValueError(f"{path}: its state dict does not fit model {name!r} built from its config {config}: "
                         f"{error}") from None
    return (model if device is None else model.to(device)), checkpoint


def _map_device(map_location) -> torch.device | None:
    """The device ``map_location`` names (a str, a device or a GPU's index), where the model goes: the tensors went
    there and were copied into a model built on the CPU. ``ValueError`` for a device this machine cannot compute on
    (:func:`~graphforget.config.check_device`: torch's error for CUDA or MPS was reported as a corrupt file)."""
    if isinstance(map_location, bool) or not isinstance(map_location, (str, torch.device, int)):
        return None  # a dict or a function maps storages, not the model
    try:
        check_device(map_location)
    except ValueError as error:
        raise ValueError(f"load_model: map_location={map_location!r}, but {error}") from None
    return torch.device(map_location)


def _read_checkpoint(path: str | os.PathLike, map_location) -> dict:
    """The dict at ``path`` with a str ``model``, a dict ``config`` and a dict ``state_dict``, else ``ValueError``."""
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except OSError:  # a missing file, a directory: as it is
        raise
    except Exception as error:  # torch's words for an unreadable file: a flipped bit raised an IndexError too
        raise ValueError(f"{path} cannot be read as a checkpoint (truncated, corrupt or not written by "
                         f"save_model): {load_failure(error)}") from None
    keys = checkpoint if isinstance(checkpoint, dict) else {}
    missing = [key for key in ("model", "config", "state_dict") if key not in keys]
    if missing:
        raise ValueError(f"{path} is not a graphforget checkpoint (written by save_model): it lacks {missing}")
    for key, kind in (("model", str), ("config", dict), ("state_dict", dict)):
        if not isinstance(checkpoint[key], kind):
            raise ValueError(f"{path} is not a graphforget checkpoint (written by save_model): {key} must be a "
                             f"{kind.__name__}, got {type(checkpoint[key]).__name__}")
    return checkpoint


def _take_dtypes(model: nn.Module, state: dict) -> None:
    """Gives ``model``'s floating parameters and buffers the floating dtypes of their entries in ``state``:
    ``load_state_dict`` copies into the tensors' own dtypes, so a float64 model came back float32, rounded."""
    tensors = {**dict(model.named_parameters()), **dict(model.named_buffers())}
    for key, value in state.items():
        tensor = tensors.get(key)
        if (isinstance(value, Tensor) and tensor is not None and value.is_floating_point()
                and tensor.is_floating_point() and tensor.dtype != value.dtype):
            tensor.data = tensor.data.to(value.dtype)
