"""Typed configs from plain options: one parser for the API, the command line and stored runs.

A method's options are the fields of its config dataclass; nested configs are reached by dotted names
(``solver.tol``, ``train.lr``). :func:`build_config` turns ``{"solver.tol": "1e-4"}`` (strings from a
command line, or typed values) into the config, parsing each value by its field's type and naming the
field in every error; :func:`describe` lists the fields with their types, defaults and help. A config built
directly gets the same type checks from :func:`check_types`, which its ``__post_init__`` calls.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import hashlib
import math
import numbers
import re
import sys
import types
import typing
import warnings
from typing import Any, Callable, NamedTuple

import torch

__all__ = ["GraphforgetWarning", "build_config", "describe", "check_fields", "check_types", "FieldHelp", "is_integer",
           "is_integer_tensor", "check_seed", "seeded", "uniform", "wrapped_seed", "derived_seed", "eval_mode",
           "DEVICE_TYPES", "check_device"]

_NONE = {"none", "null"}
_BOOLS = {"true": True, "false": False, "yes": True, "no": False, "1": True, "0": False}


class GraphforgetWarning(RuntimeWarning):
    """The base of every warning graphforget issues (:class:`~graphforget.unlearn.UntrustedWarning`,
    :class:`~graphforget.train.NoSignalWarning`, ...; the others are of this class itself), so that one filter
    catches them all: ``warnings.filterwarnings("error", category=graphforget.GraphforgetWarning)``."""


def warn_caller(message: str, category: type[Warning] = GraphforgetWarning) -> None:
    """A warning attributed to the first caller outside graphforget (the user's ``unlearn``, ``fit``, ``train`` or
    ``forget`` call, however many of the package's frames lie between: a fixed ``stacklevel`` named graphforget's own
    line wherever a method or the workflow called the function that warned)."""
    frame: types.FrameType | None = sys._getframe(1)
    level = 2
    while frame is not None and _between(frame.f_globals.get("__name__", "")):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)


def _between(module: str) -> bool:
    """Whether a frame of ``module`` lies between the user and graphforget: the package's own, or torch's wrapper of
    a function it decorates with ``no_grad`` (evaluate_auc's warning named torch/utils/_contextlib.py)."""
    return module.startswith("graphforget.") or module == "torch.utils._contextlib"


class FieldHelp(NamedTuple):
    """One option of a config: its dotted ``name``, ``type`` (as written), ``default`` and ``help``."""
    name: str
    type: str
    default: Any
    help: str


def is_integer(value: Any) -> bool:
    """Whether ``value`` is an integer (NumPy's too) and not a bool: what counts, sizes and seeds must be."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value: Any) -> bool:
    """Whether ``value`` is a real number (NumPy's too) and not a bool: a strength of ``True`` would be 1."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def is_integer_tensor(tensor: torch.Tensor) -> bool:
    """Whether ``tensor`` holds integers (not floats, which ids would be truncated from, nor a bool mask)."""
    return not (tensor.is_floating_point() or tensor.is_complex() or tensor.dtype == torch.bool)


#: Seeds lie in ``[0, SEED_LIMIT)``: torch's CPU generator (a Mersenne Twister) reads 32 bits of its seed, so that
#: seeds 1 and 2**32 + 1 drew the same model, batches and request.
SEED_LIMIT = 2 ** 32


#: Integers of a config lie in ``(-INT_LIMIT, INT_LIMIT)``: what torch and tqdm take as a C ``long`` (an epoch count
#: of 10**20 crashed the progress bar with an OverflowError).
INT_LIMIT = 2 ** 62

#: Floats of a config are finite in float32: torch converts a learning rate or a damping to the parameters' dtype
#: (Adam's lr of 1e300 failed with "value cannot be converted to type float without overflow").
FLOAT_LIMIT = float(torch.finfo(torch.float32).max)

#: Learning rates lie in ``(0, LR_LIMIT]``: Adam's first step divides the rate by ``1 - beta1 = 0.1``, and a rate of
#: 1e38, finite in float32, overflowed there with torch's message, naming no field (0.09, not 0.1: ``1 - 0.9`` is
#: a little under 0.1 in floating point, and 0.1 times the maximum overflowed too).
LR_LIMIT = 0.09 * FLOAT_LIMIT


def lr_rule(lr: float, optional: bool = False) -> tuple[bool, str]:
    """The :func:`check_fields` rule of a learning rate (``optional``: ``None`` is one too)."""
    low = "None or > 0" if optional else "must be > 0"
    if optional and lr is None:
        return True, low
    too_large = f"must be at most {LR_LIMIT:.4g} (Adam's first step divides it by 0.1)"
    return 0 < lr <= LR_LIMIT, low if lr <= 0 else too_large


def is_seed(value: Any) -> bool:
    """Whether ``value`` is an integer in ``[0, SEED_LIMIT)``."""
    return is_integer(value) and 0 <= value < SEED_LIMIT


def check_seed(seed: Any) -> None:
    """Raises ``ValueError`` unless ``seed`` is an integer in ``[0, 2**32)`` (torch's own message names no
    argument; above, torch's CPU generator would give the draws of a smaller seed)."""
    if not is_seed(seed):
        raise ValueError(f"seed must be an integer in [0, 2**32), got {seed!r}")


#: Device types the library runs on (``meta`` and the like hold no data: training on them cannot work).
DEVICE_TYPES = ("cpu", "cuda", "mps")


def check_device(device: torch.device | str | int) -> None:
    """Raises ``ValueError`` for a device this machine cannot compute on, naming why (torch failed at the first
    tensor moved there, after the data was read: "Expected one of cpu, cuda, ...", "Torch not compiled with CUDA")."""
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {device!r}") from None
    if parsed.type not in DEVICE_TYPES:
        raise ValueError(f"unsupported device {device!r} (use one of: {', '.join(DEVICE_TYPES)})")
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("CUDA is not available on this machine")
    if parsed.type == "cuda" and (parsed.index or 0) >= torch.cuda.device_count():
        raise ValueError(f"no device {str(device)!r}: this machine has {torch.cuda.device_count()} GPU(s)")
    if parsed.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError("MPS is not available on this machine")


def resolved_device(device: torch.device | str) -> torch.device:
    """``device`` as a tensor moved there would report it (``"cuda"`` with the current index)."""
    return torch.empty(0, device=device).device


def seeded(seed: Any, device: torch.device | str | None = None) -> torch.Generator:
    """A private :class:`torch.Generator` (on ``device``, default the CPU) seeded with ``seed``
    (:func:`check_seed`)."""
    check_seed(seed)
    return (torch.Generator() if device is None else torch.Generator(device)).manual_seed(int(seed))


def uniform(size: int | tuple[int, ...], generator: torch.Generator, device: torch.device | str | None = None
            ) -> torch.Tensor:
    """``torch.rand`` in float32 whatever torch's default dtype: under ``torch.set_default_dtype(torch.float64)`` a
    seed drew other numbers (other SGL views and SimGCL noise, other matched non-members)."""
    return torch.rand(size, generator=generator, device=device, dtype=torch.float32)


def wrapped_seed(value: int) -> int:
    """``value`` modulo 2**32, as torch's CPU generator reads a seed: for a seed offset from another (a shard's
    ``seed + s`` overflowed the range for a seed near its top) and for a seed a run recorded before the range."""
    return int(value) % SEED_LIMIT


def derived_seed(seed: Any, purpose: str) -> int:
    """A seed in ``[0, 2**32)`` for one ``purpose``, derived from ``seed`` by a hash: draws made for different
    purposes under one seed are independent. (SISA's partition drawn from ``seed`` itself would be the request's
    permutation again, when the request was drawn with that seed: it dealt the request out evenly over the shards.)"""
    check_seed(seed)
    digest = hashlib.sha256(f"{purpose}:{int(seed)}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def recheck(config: Any, path: str | None = None) -> None:
    """Runs the checks of the config dataclass ``config``, and of every config nested in it, again (their
    ``__post_init__``): a field set after it was built (``config.trust.on_failure = "Raise"``, a typo that then
    acted as the default) passed none. A nested config's error names its path (``SISAConfig.aggregator_train.lr``,
    where it read ``TrainConfig.lr`` for both of SISA's)."""
    path = path or type(config).__name__
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            recheck(value, f"{path}.{f.name}")
    if not hasattr(config, "__post_init__"):
        return
    try:
        config.__post_init__()
    except ValueError as error:
        own = f"{type(config).__name__}."
        if path == type(config).__name__ or not str(error).startswith(own):
            raise
        raise ValueError(f"{path}.{str(error)[len(own):]}") from None


@contextlib.contextmanager
def gradients_on():
    """Autograd on inside, whatever the caller's mode: training and unlearning differentiate, and inside the caller's
    ``torch.no_grad()`` or ``torch.inference_mode()`` (serving code) they failed with torch's "does not require
    grad" or "inference tensors"."""
    with torch.inference_mode(False), torch.enable_grad():
        yield


@contextlib.contextmanager
def random_state_kept(model: torch.nn.Module):
    """torch's global random state as it was, afterwards: that of the CPU and of every GPU holding a parameter of
    ``model`` (a probe's forward that draws, a dropout left on in eval mode, moves no draw of the caller's)."""
    with torch.random.fork_rng(devices=sorted({p.device.index for p in model.parameters() if p.is_cuda})):
        yield


@contextlib.contextmanager
def modes_kept(model: torch.nn.Module):
    """Every submodule's own training flag afterwards, as the caller set it, whatever the block sets
    (``model.train(was_training)`` would set them all to the model's, e.g. turn a frozen dropout back on)."""
    modes = [(module, module.training) for module in model.modules()]
    try:
        yield model
    finally:
        for module, mode in modes:
            module.training = mode


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module):
    """``model`` in eval mode inside; afterwards every submodule's own training flag (``modes_kept``)."""
    with modes_kept(model):
        model.eval()
        yield model


def check_instances(expected: dict[str, tuple[Any, type | tuple[type, ...], str]], where: str = "") -> None:
    """Raises ``TypeError`` naming the first argument ``name`` whose value is not an instance of its kind:
    ``expected`` maps ``name -> (value, kind, what it must be)`` (a class passed for an instance, or a dict for a
    config, would otherwise fail deep inside, naming no argument)."""
    for name, (value, kind, hint) in expected.items():
        if not isinstance(value, kind):
            got = f"the class {value.__name__}" if isinstance(value, type) else f"a {type(value).__name__}"
            raise TypeError(f"{where}{name} must be {hint}, got {got}")


def check_fields(config: Any, rules: dict[str, tuple[bool, str]], path: str | None = None) -> None:
    """Raises ``ValueError("Cls.field: <requirement> (got <value>)")`` for the first rule that fails.

    Args:
        config: the config (its class names the error).
        rules: ``{field: (holds, "what the value must be")}``; a dotted field names a nested value.
        path: names the error instead of the class, for a config nested in another
            (``IFRUConfig.solver.tol: ...``).
    """
    for name, (holds, requirement) in rules.items():
        if not holds:
            value = config
            for part in name.split("."):
                value = getattr(value, part, None)
            raise ValueError(f"{path or type(config).__name__}.{name}: {requirement} (got {value!r})")


def check_types(config: Any, check: Callable[[Any, dict[str, tuple[bool, str]]], None] = check_fields) -> None:
    """Checks the value of every field of the config dataclass ``config`` against the field's type hint.

    A config built directly must hold what :func:`build_config` would parse from strings: an ``int`` (a bool
    is not one), a ``float`` (an int will do; finite in float32: no config needs NaN or an infinity), a
    ``bool``, a ``str``, one of a ``Literal``'s values, ``None`` where the hint allows it, a tuple of such
    items or a nested config; a field named ``seed`` holds an integer in ``[0, 2**32)``. Values are converted
    as :func:`build_config` converts them, in place: an int to a float, a list to a tuple and a dict of a nested
    config's fields to that config (as JSON gives a stored config back). Call it first in ``__post_init__``,
    before the range checks compare the values.

    Args:
        config: the config dataclass instance.
        check: raises for the first rule of ``{field: (holds, requirement)}`` that fails; the default,
            :func:`check_fields`, writes ``Cls.field: must be an int (got 2.5)``.

    Raises:
        ValueError: ``Cls.field: must be <type> (got <value>)``, ``must be finite`` or ``must be finite in
            float32``;
            for a dict given for a nested config, its unknown fields or the nested config's own error,
            prefixed with ``Cls.field``.
    """
    hints, rules = _hints(typing.cast(type, type(config))), {}  # cast: mypy takes type[Any] for not Hashable
    for f in dataclasses.fields(config):
        if not f.init:
            continue
        value = getattr(config, f.name)
        typed, rules[f.name] = _typed(value, hints[f.name], f"{type(config).__name__}.{f.name}", f)
        if f.name == "seed" and is_integer(typed) and not is_seed(typed):
            rules[f.name] = (False, "must be in [0, 2**32)")
        if typed is not value:
            setattr(config, f.name, typed)
    check(config, rules)


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    """The resolved type hints of ``cls``, cached: a config checks its fields at every construction."""
    return typing.get_type_hints(cls)


def _typed(value: Any, kind, where: str, field: dataclasses.Field) -> tuple[Any, tuple[bool, str]]:
    """``value`` as a ``kind`` (unchanged when it is not one), and the rule it passes or fails."""
    nested = _dataclass_in(kind)
    if nested is not None and isinstance(value, dict):
        value = _nested(nested, value, where, _field_default(field))
    typed = _fit(value, kind, parse=False)
    if typed is _MISS:
        return value, (False, f"must be {_described(kind)}")
    items = typed if isinstance(typed, tuple) else (typed,)
    floats = [item for item in items if isinstance(item, float)]
    if not all(math.isfinite(item) for item in floats):
        return typed, (False, "must be finite")
    if not all(abs(item) <= FLOAT_LIMIT for item in floats):
        return typed, (False, f"must be finite in float32: an absolute value at most {FLOAT_LIMIT:.4g}")
    if not all(abs(item) < INT_LIMIT for item in items if isinstance(item, int) and not isinstance(item, bool)):
        return typed, (False, f"must have an absolute value below 2**{INT_LIMIT.bit_length() - 1}")
    return typed, (True, "")


def _nested(cls: type[Any], fields: dict, where: str, default: Any = None) -> Any:
    """The nested config ``cls`` built from a dict of its fields, onto the field's ``default`` where it is a ``cls``
    (Hyperparameters' train stops early after 5 epochs, TrainConfig's after 10); errors name the field ``where``."""
    known = [f.name for f in dataclasses.fields(cls) if f.init]
    unknown = sorted(str(name) for name in set(fields) - set(known))
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {', '.join(unknown)} (known: {', '.join(known)})")
    if isinstance(default, cls):
        return _named(lambda: dataclasses.replace(default, **fields), where)
    return _named(lambda: cls(**fields), where)


def option_names(options: dict, prefix: str = "") -> set[str]:
    """The names ``options`` sets, those in a nested dict as dotted names too (``{"train": {"epochs": 3}}``:
    ``train`` and ``train.epochs``)."""
    names = set()
    for key, value in options.items():
        names.add(f"{prefix}{key}")
        if isinstance(value, dict):
            names |= option_names(value, f"{prefix}{key}.")
    return names


def _field_default(field: dataclasses.Field) -> Any:
    """A dataclass field's default value (its factory's), or ``None``."""
    if field.default is not dataclasses.MISSING:
        return field.default
    return None if field.default_factory is dataclasses.MISSING else field.default_factory()


def _named(make: Callable[[], Any], path: str) -> Any:
    """``make()``; its ``TypeError`` or ``ValueError`` is raised again as a ``ValueError`` naming ``path``."""
    try:
        return make()
    except (TypeError, ValueError) as error:
        message = str(error)
        raise ValueError(message if message.startswith(path) else f"{path}: {message}") from error


def config_record(config) -> dict:
    """``dataclasses.asdict(config)`` as a run records it: every ``progress`` field reads False, as ``train`` and the
    bench record it (the bars are the command's display: a run with them and one with ``--quiet`` had other records,
    audit hashes included)."""
    def without_bars(value):
        if isinstance(value, dict):
            return {key: False if key == "progress" else without_bars(item) for key, item in value.items()}
        return value
    return without_bars(dataclasses.asdict(config))


def build_config(cls: type, options: dict[str, Any] | None = None, base: Any = None):
    """``cls`` built from ``options`` (keys are field names, dotted for nested configs).

    Args:
        cls: a config dataclass.
        options: the values to set; a string is parsed by the field's type (``"none"`` is ``None`` where
            the field allows it; tuples are comma-separated); a dict sets a nested config's fields.
        base: a ``cls`` instance whose values the options change (default: ``cls()``).

    Raises:
        ValueError: ``Cls.field: ...`` for an unknown field, a value of the wrong type, a value the
            config's own checks reject, or a nested config given both whole and by its dotted fields.
        TypeError: ``options`` is no dict (a config of another class, a string), or ``base`` is no ``cls``.
    """
    if not isinstance(options, (dict, type(None))):
        raise TypeError(f"{cls.__name__}: options must be a dict of its fields, got a {type(options).__name__}")
    if base is not None and not isinstance(base, cls):  # without options it was returned as it was, another class
        raise TypeError(f"{cls.__name__}: base must be a {cls.__name__}, got a {type(base).__name__}")
    _check_option_names(options or {}, cls.__name__)
    grouped: dict[str, Any] = {}
    first: dict[str, str] = {}  # the first key that named each field, for the error below
    for key, value in (options or {}).items():
        head, _, rest = key.partition(".")
        value = {rest: value} if rest else value
        if head not in grouped:  # a copy: later dotted keys of the group go into it, never into the caller's dict
            grouped[head], first[head] = dict(value) if isinstance(value, dict) else value, key
        elif isinstance(grouped[head], dict) and isinstance(value, dict):
            grouped[head].update(value)
        else:  # a value and fields of it: which one was meant is not ours to guess
            raise ValueError(f"{cls.__name__}.{head}: given as a whole and by its fields ({first[head]!r}, {key!r})")
    return _build(cls, grouped, base, cls.__name__)


def _check_option_names(options: dict, path: str) -> None:
    """Raises ``ValueError`` for an option name that is no string: a number failed in str.partition, in sorted and in
    str.join, at any depth ({"train": {1: 2}}), without naming the config."""
    named = [key for key in options if not isinstance(key, str)]
    if named:
        raise ValueError(f"{path}: option names are strings, got {named[0]!r}")


def _build(cls: type, options: dict[str, Any], base: Any, path: str):
    _check_option_names(options, path)
    hints, known = typing.get_type_hints(cls), {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(options) - set(known))
    if unknown:
        named = ", ".join(name or "'' (an empty name)" for name in unknown)  # ".tol" names no field before its dot
        raise ValueError(f"{path}: unknown option{'s' if len(unknown) > 1 else ''} {named} "
                         f"(known: {', '.join(known)})")
    values = {}
    for name, value in options.items():
        kind, where = hints[name], f"{path}.{name}"
        nested = _dataclass_in(kind)
        if nested is not None and isinstance(value, dict):
            current = getattr(base, name) if base is not None else _field_default(known[name])
            value = _build(nested, value, current if isinstance(current, nested) else None, where)
        values[name] = _coerce(value, kind, where)
    # a copy of base's nested configs too: one shared with base (a replace()'s TrainConfig) took edits of either
    return _named(lambda: dataclasses.replace(copy.deepcopy(base), **values) if base is not None else cls(**values),
                  path)


def _dataclass_in(kind) -> type | None:
    """The dataclass a field of type ``kind`` holds (``X`` or ``X | None``), else ``None``."""
    for option in _union(kind):
        if dataclasses.is_dataclass(option):
            return typing.cast(type, option)  # a type hint: a dataclass, never an instance of one
    return None


def _union(kind) -> tuple:
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        return typing.get_args(kind)
    return (kind,)


def _coerce(value: Any, kind, where: str) -> Any:
    """``value`` as a ``kind``: strings are parsed, typed values checked; the first option that fits wins."""
    converted = _fit(value, kind)
    if converted is _MISS:
        raise ValueError(f"{where}: expected {_name(kind)}, got {value!r}")
    return converted


_MISS = object()


def _fit(value: Any, kind, parse: bool = True) -> Any:
    """``value`` as the first option of ``kind`` it fits, or ``_MISS``; strings are parsed with ``parse``."""
    for option in _union(kind):
        converted = _as(value, option, parse)
        if converted is not _MISS:
            return converted
    return _MISS


def _as(value: Any, kind, parse: bool = True) -> Any:
    """``value`` converted to ``kind``, or ``_MISS`` when it cannot be one (a string is parsed with ``parse``)."""
    text = value.strip() if parse and isinstance(value, str) else None
    if kind is type(None):
        return None if value is None or (text is not None and text.lower() in _NONE) else _MISS
    if kind is typing.Any:
        return value
    origin = typing.get_origin(kind)
    if origin is typing.Literal:  # " auto" read as "auto", as a number's spaces are
        return value if value in typing.get_args(kind) else text if text in typing.get_args(kind) else _MISS
    if origin is tuple:
        return _as_tuple(value, typing.get_args(kind), parse)
    if kind is bool:
        if isinstance(value, bool):
            return value
        return _BOOLS.get(text.lower(), _MISS) if text is not None else _MISS
    if kind in (int, float):
        return _as_number(value, text, kind)
    if kind is str:
        return value if isinstance(value, str) else _MISS
    return value if isinstance(value, kind) else _MISS


def _as_number(value: Any, text: str | None, kind: type) -> Any:
    if isinstance(value, bool):
        return _MISS
    if text is not None:
        try:
            value = int(text) if kind is int else float(text)
        except ValueError:
            return _MISS
    # NumPy's scalars count as the Python numbers they stand for (a sweep over np.arange), stored as those.
    if kind is int:
        return int(value) if is_integer(value) else _MISS
    if not is_real(value):
        return _MISS
    try:
        return float(value)
    except OverflowError:  # an int past float's range (10**400): refused as not finite, by the field's name
        return math.inf if value > 0 else -math.inf


def _as_tuple(value: Any, args: tuple, parse: bool) -> Any:
    if isinstance(value, str) and parse:
        value = _tuple_items(value)
    if not isinstance(value, (list, tuple)):
        return _MISS
    kinds = [args[0]] * len(value) if len(args) == 2 and args[1] is Ellipsis else list(args)
    if len(kinds) != len(value):
        return _MISS
    items = [_as(item, kind, parse) for item, kind in zip(value, kinds)]
    return _MISS if any(item is _MISS for item in items) else tuple(items)


def _tuple_items(text: str) -> list[str] | None:
    """The items of ``"1, 0.5"``, ``"(1, 0.5)"`` or ``"[1, 0.5]"`` (a trailing comma allowed); ``None`` for an
    unbalanced bracket or an empty item (``"(1, 0.5"`` and ``"1,,0.5"`` were read as ``(1.0, 0.5)``)."""
    text = text.strip()
    if text[:1] in ("(", "[") or text[-1:] in (")", "]"):
        if text[:1] + text[-1:] not in ("()", "[]") or len(text) < 2:
            return None
        text = text[1:-1].strip()
    if not text:
        return []
    parts = [part.strip() for part in text.split(",")]
    if len(parts) > 1 and not parts[-1]:
        parts.pop()
    return None if not all(parts) else parts


def _name(kind) -> str:
    """``float | 'auto'``, ``tuple[float, ...] | None``, ``TrainConfig``: a type as one writes it."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_name(arg) for arg in args)
    if origin is typing.Literal:
        return " | ".join(repr(arg) for arg in args)
    if origin is tuple:
        return f"tuple[{', '.join('...' if arg is Ellipsis else _name(arg) for arg in args)}]"
    return "None" if kind is type(None) else getattr(kind, "__name__", str(kind))


def _described(kind) -> str:
    """A type in words for an error: ``an int``, ``a float or 'auto'``, ``a TrainConfig or a dict of its fields``."""
    options = _union(kind)
    if len(options) > 1:
        return " or ".join(_described(option) for option in options)
    if typing.get_origin(kind) is typing.Literal:
        return " or ".join(repr(arg) for arg in typing.get_args(kind))
    if kind is type(None):
        return "None"
    if dataclasses.is_dataclass(kind):
        return f"a {typing.cast(type, kind).__name__} or a dict of its fields"
    name = _name(kind)
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name}"


def describe(cls: type, prefix: str = "") -> list[FieldHelp]:
    """Every option of the config ``cls`` (nested configs expanded, dotted), in declaration order.

    The help of a field is its entry in the ``Args:`` section of the class docstring.
    """
    return _described_fields(cls, prefix, None)


def _described_fields(cls: type, prefix: str, defaults: Any) -> list[FieldHelp]:
    """:func:`describe`'s rows, the defaults read from ``defaults`` (the parent's default of this nested config:
    its factory may set fields, as ``Hyperparameters.train`` sets ``patience=5``) or, when ``None``, the fields'."""
    hints, notes, rows = typing.get_type_hints(cls), _arg_notes(cls), []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        if defaults is not None:
            default = getattr(defaults, f.name)
        else:
            default = f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
        nested = _dataclass_in(hints[f.name])
        if nested is not None and default is not None:
            rows += _described_fields(nested, f"{prefix}{f.name}.", default if isinstance(default, nested) else None)
            continue
        rows.append(FieldHelp(prefix + f.name, _name(hints[f.name]), default, notes.get(f.name, "")))
    return rows


def _arg_notes(cls: type) -> dict[str, str]:
    """``{field: help}`` from the ``Args:`` sections of the docstrings of ``cls`` and its bases."""
    notes: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        notes.update(_own_arg_notes(klass))
    return notes


def _own_arg_notes(cls: type) -> dict[str, str]:
    doc = (cls.__dict__.get("__doc__") or "").split("Args:", 1)
    if len(doc) < 2:
        return {}
    notes, current, indent = {}, None, 0  # indent: the fields' own, read at the first
    for line in doc[1].splitlines():
        depth = len(line) - len(line.lstrip())
        # at any indentation: a class nested in a function or class has its docstring indented deeper
        match = re.match(r"^\s*(\w+(?:,\s*\w+)*):\s*(.*)$", line)
        if not line.strip():
            continue
        if match and (current is None or depth == indent):
            current, indent = [name.strip() for name in match.group(1).split(",")], depth
            for name in current:
                notes[name] = match.group(2).strip()
        elif current and depth > indent:
            for name in current:
                notes[name] += " " + line.strip()
        else:  # back at the docstring's own indentation: a paragraph after the section (it had joined the last field)
            break
    return {name: re.sub(r"\s+", " ", text).strip() for name, text in notes.items()}
