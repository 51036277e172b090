"""Cells and their on-disk cache: a cell's result is stored under a hash of every parameter it depends on.

A *cell* is one measurement: ``(protocol, dataset, model, method, seed)`` plus every parameter of the
protocol, the model's hyper-parameters, the method's options, the library version, a digest of the library's
code (:func:`code_digest`; of a model or method of your own, its files': :func:`model_code_digest`,
:func:`method_code_digest`), the versions of torch and PyG (an upgrade may change the numbers) and
:data:`BENCH_VERSION`. Its key is the SHA-256 of the canonical JSON of all of them, so changing any of them (a
deletion ratio, a learning rate, the stream's order, an edit of a method) names another file: a stale result is
never read back. Each file is written atomically
(:func:`~graphforget.io.write_json`), so a run killed at any point leaves complete cells only, and rerunning it
computes exactly the missing ones.
"""
from __future__ import annotations

import functools
import hashlib
import inspect
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch_geometric

from .. import __version__
from ..io import to_jsonable, write_json
from ..models import MODELS
from ..unlearn import METHODS

__all__ = ["BENCH_VERSION", "Cell", "cell_key", "code_digest", "method_code_digest", "model_code_digest",
           "CellCache"]

log = logging.getLogger(__name__)

#: Version of the harness's measurement code: bumped when a protocol's figures change meaning, so
#: that cells of an older harness are recomputed rather than mixed with new ones.
# 2: absolute prediction distances; 3: Recall@20, the data's identity (files' sha256); 4: the deletion set "edge" is
# CURE4Rec's, the least active users (it was random interactions, now "interactions")
BENCH_VERSION = 4


@functools.cache
def code_digest(root: Path | None = None) -> str:
    """The first 16 hex digits of the SHA-256 of the library's source files (their paths relative to ``root``,
    the package's folder by default, and their bytes, in order): within one version, code that was edited since
    (a method's step, a metric) computes other cells, whose figures may differ in rounding or more; two copies of
    the same code (a worktree, an install) agree."""
    root = Path(root) if root is not None else Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def model_code_digest(name: str) -> str | None:
    """The first 16 hex digits of the SHA-256 of the source file that defines model ``name``'s class or factory
    when it is registered from outside graphforget (a user's package: :data:`~graphforget.models.MODELS`), whose
    edits :func:`code_digest` does not see; ``None`` for the library's own models and unregistered names."""
    return _own_source_digest(MODELS.get(name))


def method_code_digest(name: str) -> str | None:
    """As :func:`model_code_digest`, for a method of your own (:func:`~graphforget.unlearn.register`): the files
    that define its class, its ``Config`` and their base classes (an edited default was read back from the cache as
    it stood)."""
    method = METHODS.get(name)
    config = getattr(method, "Config", None)
    return _own_source_digest(*(getattr(method, "__mro__", ())), *(getattr(config, "__mro__", ())))


def _own_source_digest(*objects) -> str | None:
    """The digest of the source files (each once, in order) that define those of ``objects`` from outside
    graphforget; ``None`` where there is none (the library's own, a builtin, code typed into a prompt)."""
    files = []
    for obj in objects:
        if obj is None or obj.__module__.partition(".")[0] in ("graphforget", "builtins"):
            continue
        try:
            file = inspect.getsourcefile(obj)
        except (TypeError, OSError):  # defined in no file: a builtin, a prompt's __main__ (python -c, a notebook)
            continue
        if file and Path(file).is_file() and file not in files:
            files.append(file)
    digest = hashlib.sha256()
    for file in files:
        digest.update(Path(file).read_bytes())
    return digest.hexdigest()[:16] if files else None


@dataclass(frozen=True)
class Cell:
    """One measurement of the benchmark.

    Attributes:
        protocol: ``attack``, ``deletion`` or ``stream``.
        dataset: the dataset's name.
        model: the recommender's name.
        method: the unlearning method's name.
        seed: seeds the split, the request, the model and the method.
        params: every other parameter the result depends on (protocol parameters, hyper-parameters, the
            method's options, the data's source), as plain JSON values.
    """
    protocol: str
    dataset: str
    model: str
    method: str
    seed: int
    params: dict = field(default_factory=dict)

    def identity(self) -> dict:
        """Everything the key is a hash of: the fields, the library version, its code's digest, torch's and PyG's
        versions, :data:`~graphforget.bench.BENCH_VERSION` and, for a model of your own, its source file's digest
        (``model_code_digest``), and for a method of your own, its (``method_code_digest``)."""
        own = {"model_code": model_code_digest(self.model), "method_code": method_code_digest(self.method)}
        return to_jsonable({"protocol": self.protocol, "dataset": self.dataset, "model": self.model,
                            "method": self.method, "seed": self.seed, "params": self.params,
                            "graphforget": __version__, "code": code_digest(), "bench": BENCH_VERSION,
                            "torch": torch.__version__, "torch_geometric": torch_geometric.__version__,
                            **{key: digest for key, digest in own.items() if digest}})

    @property
    def key(self) -> str:
        return cell_key(self.identity())

    def label(self) -> str:
        """A short readable name (progress bars, logs)."""
        extra = ",".join(f"{k}={v}" for k, v in sorted(self.params.get("protocol", {}).items())
                         if not isinstance(v, (dict, list)))
        return f"{self.protocol}/{self.dataset}/{self.model}/{self.method}/seed{self.seed}" + (
            f" [{extra}]" if extra else "")


def cell_key(identity: dict[str, Any]) -> str:
    """SHA-256 (hex) of the canonical JSON of ``identity`` (sorted keys, no spaces): a stable key."""
    text = json.dumps(to_jsonable(identity), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class CellCache:
    """Results of cells as JSON files ``DIR/<key>.json``, holding ``{"key", "cell", "result", "result_sha256"}``.

    A file whose stored identity differs from the cell's (a hash collision, a hand-edited file), that
    cannot be parsed, that holds no ``{"cell", "result"}`` object, or whose result does not match its sha256 (a
    figure edited or damaged: it was read as it stood, or crashed the report) is treated as missing, with a logged
    warning, and is recomputed. The sha256 is a checksum against damage and slips, not a signature: an edit that
    recomputes it is read as it stands.

    Args:
        directory: where the files live (created when the first cell is stored).
    """

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)

    def path(self, cell: Cell) -> Path:
        return self.directory / f"{cell.key}.json"

    def load(self, cell: Cell) -> dict | None:
        """The cached result of ``cell``, or ``None`` when it was never stored (or is unreadable)."""
        path = self.path(cell)
        if not path.is_file():
            return None
        try:
            stored = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            log.warning("unreadable cached cell %s (%s): recomputing it", path, error)
            return None
        # valid JSON of another shape (a list, a file without its result) is no cell either: it crashed here
        if not isinstance(stored, dict) or not isinstance(stored.get("result"), dict):
            log.warning("cached cell %s holds no cell result: recomputing it", path)
            return None
        if stored.get("cell") != cell.identity():
            log.warning("cached cell %s does not hold %s: recomputing it", path, cell.label())
            return None
        if stored.get("result_sha256") != _result_sha256(stored["result"]):
            log.warning("cached cell %s does not match its sha256 (edited or damaged): recomputing it", path)
            return None
        return stored["result"]

    def store(self, cell: Cell, result: dict) -> Path:
        """Writes ``result`` atomically, with its sha256; returns the file."""
        self.directory.mkdir(parents=True, exist_ok=True)
        result = to_jsonable(result)
        return write_json(self.path(cell), {"key": cell.key, "cell": cell.identity(), "result": result,
                                            "result_sha256": _result_sha256(result)})

    def __repr__(self) -> str:
        return f"CellCache({str(self.directory)!r})"


def _result_sha256(result: dict) -> str:
    """The sha256 of a cell's result as JSON (keys sorted): the form it is stored and read back in."""
    return hashlib.sha256(json.dumps(result, sort_keys=True).encode()).hexdigest()
