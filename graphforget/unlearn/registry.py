"""The methods by name: ``METHODS["ifru"] is IFRU``; :func:`build_unlearner` builds one from options."""
from __future__ import annotations

import dataclasses
import re
from typing import TYPE_CHECKING, Any

from torch_geometric.data import HeteroData

from ..config import build_config, recheck
from ..objectives import Objective
from ..train import TrainConfig
from .base import Unlearner

if TYPE_CHECKING:
    from ..models.base import Recommender

__all__ = ["METHODS", "register", "method_config", "build_unlearner"]

#: Unlearning methods by name (:attr:`Unlearner.name`); :func:`register` adds one.
METHODS: dict[str, type[Unlearner]] = {}
#: Names :func:`register` refuses: the benchmark harness's own methods
#: (:data:`graphforget.bench.setting.BENCH_METHODS`), which a registered one would shadow in every bench.
RESERVED = ("retrain_seed",)


def register(cls: type[Unlearner] | None = None, *, overwrite: bool = False):
    """Adds an :class:`~graphforget.unlearn.Unlearner` subclass to :data:`METHODS` under its ``name``.

    Usable as a class decorator::

        @register
        class MyMethod(Unlearner):
            name = "my-method"
            Config = MyMethodConfig

    Raises:
        ValueError: not an Unlearner subclass with its own ``name``; a name that is not a word of ASCII letters,
            digits, ``_``, ``.`` or ``-``, starting with neither of the last two (the command line's ``--methods``
            and ``--option METHOD:KEY=VALUE`` read it); a ``Config`` that is not a dataclass whose fields all have
            defaults (options change defaults); no ``_unlearn``; the name taken by another class and ``overwrite``
            false; a name the benchmark harness keeps for its own (``retrain_seed``).
    """
    def add(method: type[Unlearner]) -> type[Unlearner]:
        if not (isinstance(method, type) and issubclass(method, Unlearner)) or method.name == Unlearner.name:
            raise ValueError(f"register: {method!r} is not an Unlearner subclass with its own `name`")
        _check_method_class(method)
        if METHODS.get(method.name, method) is not method and not overwrite:
            raise ValueError(f"method {method.name!r} is already registered ({METHODS[method.name].__name__})")
        METHODS[method.name] = method
        return method
    return add if cls is None else add(cls)


def _check_method_class(method: type[Unlearner]) -> None:
    """What :func:`register` refuses beyond the class itself: each had been accepted and failed later, elsewhere (a
    name of 5 broke every command line's parser; a config field without a default, every build of the method)."""
    where = f"register: {method.__name__}"
    # ASCII, no leading "-" (the command line read "-mine" as a flag) nor "." (a hidden file where names are paths)
    if not (isinstance(method.name, str) and re.fullmatch(r"\w[\w.-]*", method.name, flags=re.ASCII)):
        raise ValueError(f"{where}.name must be a word of letters, digits, _, . or - (the command line reads it), "
                         f"not starting with - or ., got {method.name!r}")
    if method.name in RESERVED:  # accepted, then refused by every bench that named it
        raise ValueError(f"{where}.name {method.name!r} is the benchmark harness's own method: choose another name")
    if not (isinstance(method.Config, type) and dataclasses.is_dataclass(method.Config)):
        raise ValueError(f"{where}.Config must be a dataclass, got {method.Config!r}")
    required = [f.name for f in dataclasses.fields(method.Config)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if required:
        raise ValueError(f"{where}.Config's fields {required} have no default: give each one (the options a caller "
                         "gives change the defaults)")
    if method._unlearn is Unlearner._unlearn:
        raise ValueError(f"{where} implements no _unlearn(request, positions, remaining)")


def _method(name: str) -> type[Unlearner]:
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; known: {', '.join(METHODS)}")
    return METHODS[name]


def method_config(name: str, options: dict[str, Any] | Any = None, *, train: TrainConfig | None = None,
                  seed: int | None = None):
    """The config of method ``name`` built from ``options`` (dotted keys for nested fields), or ``options``
    itself when it is already an instance of the method's config.

    ``train`` and ``seed`` are the run's own settings: they set the config's ``train`` and ``seed``
    fields where it has them (and ``progress``, from ``train``'s), and ``options`` then change what they name
    (``train.lr=0.001`` changes only the learning rate of ``train``). Settings the config has no field for are
    ignored. A ready config keeps its own, and is refused where they differ from the run's (``progress`` and the
    fields the method does not read aside). The config returned has the fields the method fixes set
    (:meth:`~graphforget.unlearn.Unlearner.with_fixed`): the one it runs, and the one a run records.

    Raises:
        ValueError: an unknown method, ``Config.field: ...`` naming an option the config rejects, an option
            the method fixes (:attr:`~graphforget.unlearn.Unlearner.fixed`), or a ready config whose ``train`` or
            ``seed`` is not the run's.
        TypeError: ``options`` is neither a dict nor the method's config (another method's, a string).
    """
    method = _method(name)
    cls = method.Config
    if type(options) is cls:  # a ready config: not rebuilt, but checked again and against what the method fixes
        recheck(options)  # edited in place: run_attack trained the original before the method refused it
        method.check_fixed(options)
        _check_run_settings(method, options, train, seed)
        return method.with_fixed(options)
    if not isinstance(options, (dict, type(None))):
        raise TypeError(f"options for {name!r} must be a {cls.__name__}, a dict of its options or None, got a "
                        f"{type(options).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    settings = (("train", train), ("seed", seed), ("progress", train.progress if train is not None else None))
    context = {key: value for key, value in settings if value is not None and key in names}
    base = build_config(cls, context) if context else None
    try:
        return method.config_of(options, base, training_known=train is not None)
    except ValueError as error:
        raise ValueError(f"bad options for {name!r}: {error}") from error


def refuse_stray_options(options: dict, methods) -> None:
    """Raises ``ValueError`` for options given to a method that is not among ``methods`` (they were dropped without
    a word, even invalid ones); an empty dict loses nothing and passes (options built for every method, a subset
    run), as the attack protocol and the bench harness agree."""
    stray = sorted(str(name) for name, given in options.items() if given and name not in methods)
    if stray:
        raise ValueError(f"options for methods that are not run: {', '.join(stray)} (methods: {', '.join(methods)})")


def _check_run_settings(method: type[Unlearner], config, train: TrainConfig | None, seed: int | None) -> None:
    """Refuses a ready ``config`` whose ``train`` or ``seed`` differs from the run's: they were dropped without a
    word (a SISAConfig(num_shards=5) trained its shards with a default TrainConfig, and every seed of a run with
    the partition of seed 0). ``progress`` and the fields the method does not read (:attr:`Unlearner.unread`) aside."""
    mine = getattr(config, "train", None)
    differ = []
    if isinstance(train, TrainConfig) and isinstance(mine, TrainConfig):
        differ += [f"train.{f.name}={getattr(mine, f.name)!r} (the run's: {getattr(train, f.name)!r})"
                   for f in dataclasses.fields(TrainConfig) if f.name != "progress"
                   and f"train.{f.name}" not in method.unread and getattr(mine, f.name) != getattr(train, f.name)]
    if seed is not None and hasattr(config, "seed") and config.seed != seed:
        differ.append(f"seed={config.seed!r} (the run's: {seed!r})")
    if differ:
        raise ValueError(f"a ready {type(config).__name__} keeps its own {', '.join(differ)}: pass its options as a "
                         "dict to build on the run's training and seed, or set them to the run's")


def build_unlearner(name: str, model: Recommender, graph: HeteroData, objective: Objective,
                    options: dict[str, Any] | Any = None, *, train: TrainConfig | None = None,
                    seed: int | None = None, val: HeteroData | None = None) -> Unlearner:
    """``METHODS[name](model, graph, objective, method_config(name, options, train=train, seed=seed), val=val)``.

    Args:
        name: a key of :data:`METHODS`.
        model, graph, objective: the trained model, its training graph and objective.
        options: the method's options (see :func:`method_config`).
        train: how the model was trained (the methods that train: Retrain, FineTune, SISA, RecEraser).
        seed: the run's seed (for the methods whose config has one).
        val: validation pairs for early stopping.
    """
    config = method_config(name, options, train=train, seed=seed)
    return METHODS[name](model, graph, objective, config, val=val)
