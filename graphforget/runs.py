"""Run directories: a trained (or unlearned) model with its data, lineage and audit log, published atomically.

A run is a directory that is written once and never modified:

* ``run.json``: what the run is (``kind`` ``fit`` or ``forget``, library ``version``, ``created`` time, the
  ``data`` source and its options, the ``model`` name and config, ``hparams``, ``seed``, ``metrics``), its
  ``lineage`` (the parent run's path and the sha256 of its ``run.json``, the request's sha256 and size, the
  cumulative removed count), the sha256 of every other file (``files``), and its own seal (``record_sha256``,
  the sha256 of the rest: an edit by hand is refused when the run is read, and so is a run that graphforget wrote
  before 2026-12-05, unsealed);
* ``graph.pt``: the training graph (for a forget run, the remaining graph) as a plain dict of tensors with
  the raw ids (:func:`graph_to_dict`), readable with ``torch.load(..., weights_only=True)``;
* ``heldout.pt``: the validation and test pairs (without the forgotten users' and items' rows);
* ``model.pt``: the model (:func:`~graphforget.models.save_model`);
* ``removed.pt``: every edge removed in the lineage so far, in local ids, with its label;
* ``audit.jsonl``: append-only across the lineage: the parent's lines, then one line for this run's request (a
  ``fit`` run's log is empty). A ``forget`` line is one JSON object: ``time`` (UTC), the library ``version``,
  ``run`` (the path written), ``request`` (as the lineage's: its ``kind``, the number of ``ids`` given, its training
  ``edges``, the ``heldout_pairs`` it dropped, and the ``sha256`` of those pairs), ``removed_edges`` (in the lineage
  so far), ``method`` (``name``, ``config``, the ``options`` given, ``seed``), ``seconds`` (the unlearning call's),
  ``fit_seconds`` (the method's ``fit()``: SISA's, RecEraser's, UnlearnRec's), ``threads``, ``trusted`` (``None``:
  the method has no acceptance test) and ``reason``, ``verification`` (the
  :class:`~graphforget.verify.ForgettingReport`'s figures; ``None`` without one, and ``verification_error`` then
  says why: ``"not requested"``, or what stopped it), ``parent`` (its path and the sha256 of its ``run.json``, model
  and graph) and ``child`` (the sha256 of this run's model and graph). It names no raw id, unless a path you chose does
  (``runs/no-alice``): ``removed.pt`` holds the removed pairs in local ids, which ``graph.pt`` maps to raw ones.

:func:`publish` writes a run into a temporary sibling directory (every file fsync-ed), then renames it to
its final name: a reader sees a complete run or none. An existing run is never overwritten. Concurrent
publishers in one directory are serialised with an advisory lock on that directory (POSIX), so a temporary
directory of the same name found while holding it, marked as a publisher's, is the leftover of a killed attempt and is
removed (so are those of other names whose publisher no longer runs).
"""
from __future__ import annotations

import contextlib
import contextvars
import hashlib
import io
import json
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from .config import is_integer
from .data.interactions import EDGE, check_model_fits, make_interactions, num_items, num_users, pair_keys
from .io import abandoned_by, fsync_directory, load_failure, naming, owner, tensors_sha256, to_jsonable
from .models import Recommender, load_model, registered_model, save_model
from .models.base import module_on
from .presets import Hyperparameters

try:  # advisory locks (POSIX); elsewhere concurrent publishers are not guarded
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]  # mypy types an optional module as always imported

__all__ = ["Run", "FILES", "FORMAT", "RUN_KINDS", "graph_to_dict", "graph_from_dict", "publish", "save_run",
           "load_run", "lineage", "enclosing_run", "sha256_file", "request_sha256", "utc_now", "directory_lock",
           "fsync_directory", "read_run_info"]

log = logging.getLogger(__name__)

#: Version of the run directory layout.
FORMAT = 1
#: Kinds of run: trained on a file, or derived from a parent by a deletion request.
RUN_KINDS = ("fit", "forget")
#: The entries of ``run.json`` that reading a run relies on.
RUN_KEYS = ("kind", "format", "files", "data", "model", "hparams", "seed", "metrics", "lineage")
#: The files of a run besides ``run.json``, whose sha256 ``run.json`` records.
FILES = ("model.pt", "graph.pt", "heldout.pt", "removed.pt", "audit.jsonl")
_TEMP_MARK = ".tmp-"
#: The end of the name of the file beside a temporary directory that marks it as :func:`publish`'s (made before it,
#: removed after its rename): a directory named like one but without it is the user's, and is never removed.
_MARKER = ".publishing"


@dataclass
class Run:
    """A run read back by :func:`load_run`.

    Attributes:
        path: the run directory.
        info: the content of ``run.json``.
        model: the model (on the device it was loaded to).
        graph: the training graph (local ids, ``raw_id`` on the user and item nodes).
        val: validation pairs (``edge_index``/``edge_label`` over the same ids).
        test: test pairs (possibly empty).
        removed: ``[2, R]`` every edge removed in this lineage (local ids).
        removed_label: ``[R]`` their labels; ``removed_observed`` ``[R]`` whether they were interactions.
        audit: the lines of ``audit.jsonl``, oldest first.
        pending: the numbers of a stream's requests, accepted and not yet applied, that a refusal names as having
            removed what this data lacks (a :class:`~graphforget.workflow.ForgetStream` names those that refuse the
            request alone, or all of them); empty for a run on disk.
        loaded_sha256: the sha256 of the model's state and the training graph as :func:`load_run` read them
            (:meth:`as_loaded`).
    """
    path: Path
    info: dict
    model: Recommender
    graph: HeteroData
    val: HeteroData
    test: HeteroData
    removed: Tensor
    removed_label: Tensor
    removed_observed: Tensor
    audit: list = field(default_factory=list)
    pending: list = field(default_factory=list)
    loaded_sha256: str = ""

    def _content(self) -> list[Tensor]:
        store = self.graph[EDGE]
        return [*self.model.state_dict(keep_vars=True).values(), store.edge_index, store.edge_label, self.removed,
                self.removed_label, self.removed_observed]

    def content_sha256(self) -> str:
        """The sha256 of the model's state, the training graph's edges, the removed edges and the record (``info``),
        as they are now."""
        return tensors_sha256(*self._content()) + _record_sha256(to_jsonable(self.info))

    def as_loaded(self) -> bool:
        """Whether the model, graph, removed edges and record hold what :func:`load_run` read: their content is
        hashed again (a few milliseconds on ML-100K, 0.05 s for a Gowalla-sized table), since an edit through ``.data``
        or a NumPy view counts in no tensor version (such an edited model was unlearned from and published as the
        parent's child; an edited record or removed set went into the child's, and the lineage verified)."""
        return self.content_sha256() == self.loaded_sha256

    def check_as_loaded(self) -> None:
        """Raises ``ValueError`` when the model, the graph, the removed edges or the record changed in memory since
        :func:`load_run`: a run derived from it would record the files on disk as its parent, and its audit line their
        sha256."""
        if not self.loaded_sha256:
            raise ValueError(f"this Run of {self.path} was not read by load_run: pass the run's directory instead")
        if not self.as_loaded():
            raise ValueError(f"the loaded run {self.path} was changed in memory after load_run (its model, training "
                             "graph, removed edges or record): a run derived from it would name the files on disk as "
                             "its parent; load it again")

    def __repr__(self) -> str:
        return (f"Run({str(self.path)!r}, kind={self.info.get('kind')}, model={self.info['model']['name']}, "
                f"edges={self.graph[EDGE].edge_index.size(1)}, removed={self.removed.size(1)}, "
                f"audit_lines={len(self.audit)})")


# ------------------------------------------------------------------------------------------- small pieces

def utc_now() -> str:
    """The current UTC time, ISO 8601 to the microsecond."""
    return datetime.now(timezone.utc).isoformat()


def sha256_file(path: str | os.PathLike) -> str:
    """The hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def request_sha256(request: Tensor, num_items: int) -> str:
    """The sha256 of a ``[2, R]`` request as its sorted int64 pair keys: the same set of pairs, in any
    order, has the same hash."""
    keys = pair_keys(request.long().cpu(), num_items).sort().values
    return hashlib.sha256(keys.numpy().astype("<i8").tobytes()).hexdigest()


def _raw_ids_out(raw) -> Tensor | list:
    """Raw ids as stored in ``graph.pt``: a long tensor for integer ids, a list of strings otherwise."""
    if isinstance(raw, Tensor):
        return raw.long().cpu()
    return [str(value) for value in np.asarray(raw).tolist()]


def _raw_ids_in(raw):
    """The inverse of :func:`_raw_ids_out`: a long tensor, or a numpy string array (as the loaders give)."""
    return raw if isinstance(raw, Tensor) else np.asarray(raw, dtype=str)


def graph_to_dict(graph: HeteroData, raw_ids: bool = True) -> dict:
    """An interaction graph as a plain dict of tensors (and lists of strings for string raw ids).

    Keys: ``num_users``, ``num_items``, ``edge_index [2, E]``, ``edge_label [E]``, ``observed [E]`` (all
    true when the graph has no mask) and, with ``raw_ids``, ``user_raw_id`` / ``item_raw_id`` (local id ->
    raw id; the local ids themselves where the graph has none).
    """
    store = graph[EDGE]
    edges = store.edge_index.cpu()
    observed = store.observed.cpu() if "observed" in store else torch.ones(edges.size(1), dtype=torch.bool)
    out = {"num_users": num_users(graph), "num_items": num_items(graph), "edge_index": edges.long(),
           "edge_label": store.edge_label.cpu().float(), "observed": observed.bool()}
    if raw_ids:
        for node in ("user", "item"):
            raw = getattr(graph[node], "raw_id", None)
            out[f"{node}_raw_id"] = _raw_ids_out(torch.arange(out[f"num_{node}s"]) if raw is None else raw)
    return out


def graph_from_dict(value: dict, what: str = "graph") -> HeteroData:
    """The graph of :func:`graph_to_dict` (an ``observed`` mask only where some edge is not observed).

    Raises:
        ValueError: when a key is missing or the raw ids do not cover the nodes.
    """
    missing = {"num_users", "num_items", "edge_index", "edge_label", "observed"} - set(value)
    if missing:
        raise ValueError(f"{what} lacks {sorted(missing)}: not written by graphforget.runs")
    observed = value["observed"]
    graph = make_interactions(value["edge_index"], value["edge_label"], value["num_users"], value["num_items"],
                              None if bool(observed.all()) else observed)
    for node in ("user", "item"):
        if f"{node}_raw_id" in value:
            raw = _raw_ids_in(value[f"{node}_raw_id"])
            if len(raw) != value[f"num_{node}s"]:
                raise ValueError(f"{what}: {len(raw)} {node} raw ids for {value[f'num_{node}s']} {node}s")
            graph[node].raw_id = raw
    return graph


def _torch_bytes(value) -> bytes:
    buffer = io.BytesIO()
    torch.save(value, buffer)
    return buffer.getvalue()


def _write_file(path: Path, data: bytes) -> None:
    """Writes ``data`` to a new file and fsyncs it (inside a temporary run directory: no rename needed)."""
    with open(path, "xb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


# --------------------------------------------------------------------------------------------- publishing

@contextlib.contextmanager
def directory_lock(directory: str | os.PathLike):
    """A context manager holding an exclusive advisory lock on ``directory`` (or on an existing file: a stream's
    journal) (``flock``; the kernel releases it when the process dies, so a killed holder never blocks the next
    one)."""
    if fcntl is None:  # pragma: no cover
        yield
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # a holder stopped mid-publish (SIGSTOP, a hung disk) blocked the others unsaid (qa151)
            log.info("waiting for the lock on %s: another process holds it (a stream's process() or a publish)",
                     directory)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _remove_stale(final: Path) -> None:
    """Removes the temporary directories, and their markers, that earlier attempts left behind (called under the
    lock): those of ``final``, and any other of the directory whose publisher is gone (a killed attempt retried under
    another name had left its own for good; the lock alone cannot tell, where a file system does not honour it).
    Only marked ones: a run the user named ``.NAME.tmp-x`` was removed."""
    # the name escaped (``a[1]`` as a pattern had matched ``.a1.tmp-*``), and mkstemp's 8 characters after it
    # (".a.tmp-*" had also matched the markers of "a.tmp-x": "a.tmp-x.tmp-XXXXXXXX")
    mine = re.compile(re.escape(_temporary_prefix(final.name)) + r"[a-z0-9_]{8}" + re.escape(_MARKER))
    for marker in final.parent.glob(f".*{_TEMP_MARK}*{_MARKER}"):  # one listing of the folder for both kinds
        if mine.fullmatch(marker.name) or _abandoned(marker):
            shutil.rmtree(_marked(marker), ignore_errors=True)
            marker.unlink(missing_ok=True)


def _marked(marker: Path) -> Path:
    """The temporary directory that ``marker`` marks."""
    return marker.with_name(marker.name[:-len(_MARKER)])


def _reserve(parent: Path, name: str) -> tuple[Path, Path]:
    """A new temporary directory of ``name`` in ``parent`` and its marker, made first: a kill at any point leaves
    nothing unmarked (a kill before the marker was written leaves it empty, which the next publish of ``name``
    removes)."""
    fd, path = tempfile.mkstemp(prefix=_temporary_prefix(name), suffix=_MARKER, dir=parent)
    marker = Path(path)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(json.dumps({"writer": owner()}))
        _marked(marker).mkdir()
    except BaseException:
        marker.unlink(missing_ok=True)
        raise
    return marker, _marked(marker)


def _temporary_prefix(name: str) -> str:
    """The start of the name of a temporary directory for ``name`` (and of its marker)."""
    return f".{name}{_TEMP_MARK}"


def _abandoned(marker: Path) -> bool:
    """Whether the publisher that wrote ``marker`` is gone (:func:`~graphforget.io.abandoned_by`; when unsure,
    ``False``)."""
    try:
        return abandoned_by(str(json.loads(marker.read_text())["writer"]))
    except (OSError, ValueError, KeyError, TypeError):
        return False


def occupied(path: Path) -> bool:
    """Whether ``path`` exists as anything but an empty directory (which :func:`publish` may replace)."""
    return path.exists() and not (path.is_dir() and not path.is_symlink() and next(path.iterdir(), None) is None)


def refuse_taken(path: Path, shown: str) -> None:
    """Raises ``FileExistsError`` (naming ``path`` as ``shown``) unless :func:`publish` can create ``path``: it is
    :func:`occupied` or a link (to an empty directory or to nothing: the final rename fails on it, after the
    work; a dangling link was reported as existing, and a link to an empty directory still is not one)."""
    if path.is_symlink():
        missing = "" if path.exists() else ", which does not exist"
        raise FileExistsError(f"{shown} is a symbolic link to {os.readlink(path)}{missing}: a run is created as a new "
                              "directory, not through a link; choose a new directory")
    if occupied(path):
        raise FileExistsError(f"{shown} exists: runs are never overwritten, choose a new directory")
    if path.exists() and path.resolve() == Path.cwd().resolve():  # empty, renamed over: the shell left in a deleted one
        raise FileExistsError(f"{shown} is the working directory, which the new run would replace (leaving this "
                              "shell in a deleted directory): choose a new directory")


def enclosing_run(path: str | os.PathLike) -> Path | None:
    """The run directory (holding ``run.json``) that ``path`` would lie inside (``..`` and links resolved), or
    ``None``."""
    return next((p for p in Path(path).expanduser().resolve().parents if (p / "run.json").is_file()), None)


def absolute_run_path(out: str | os.PathLike) -> Path:
    """``out`` made absolute with its folder resolved (links and ``..`` followed), as a child's lineage records its
    parent: an audit line kept ``base/../ap1`` as given, which no child's record of the run matched. The last part is
    kept as given (a link there to an empty folder is published over), unless it is ``.`` or ``..``."""
    path = Path(out).expanduser().absolute()
    return path.resolve() if path.name in ("", ".", "..") else path.parent.resolve() / path.name


#: Where :func:`publish` records what it published, while :func:`recording_published` is active.
_PUBLISHED: contextvars.ContextVar[list[Path] | None] = contextvars.ContextVar("published", default=None)


def _record_published(final: Path) -> None:
    record = _PUBLISHED.get()
    if record is not None and final not in record:
        record.append(final)


@contextlib.contextmanager
def recording_published() -> Iterator[list[Path]]:
    """Collects into the list it yields the directories that :func:`publish` publishes meanwhile: an interrupted
    command names those that were published whole before the interruption (it said only "interrupted", and a run
    had been published)."""
    published: list[Path] = []
    token = _PUBLISHED.set(published)
    try:
        yield published
    finally:
        _PUBLISHED.reset(token)


def publish(out: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Creates the directory ``out`` atomically: ``write(tmp)`` fills a temporary sibling, which is renamed
    (over ``out`` when it is an empty directory).

    The temporary directory is ``.NAME.tmp-XXXX`` next to ``out``, marked by the file ``.NAME.tmp-XXXX.publishing``
    beside it from before it is made to after its rename; every file ``write`` creates must be flushed and fsync-ed
    by it (:func:`save_run` does). After ``write`` returns, the temporary directory and its parent are fsync-ed
    around the rename. Publishers in one directory hold an advisory lock on it, so marked temporary directories of
    ``out`` found under the lock are leftovers of a killed attempt, and so are others whose marker names a publisher
    process of this host that no longer runs: they are removed first. On an error (or ``KeyboardInterrupt``) the
    temporary directory is removed.

    Args:
        out: the final directory; its parent is created if missing.
        write: fills the temporary directory it is given.

    Returns:
        The final path.

    Raises:
        FileExistsError: when ``out`` exists and is not an empty directory (which the rename replaces
            atomically): a run is never overwritten. Checked before and after ``write``.
        ValueError: when ``out`` lies inside a run directory (:func:`enclosing_run`), which is never modified.
    """
    final = absolute_run_path(out)
    _check_outside_runs(final)
    refuse_taken(final, str(out))
    final.parent.mkdir(parents=True, exist_ok=True)
    with directory_lock(final.parent):
        refuse_taken(final, str(out))
        _remove_stale(final)
        marker: Path | None = None
        try:
            marker, tmp = _reserve(final.parent, final.name)
            write(tmp)
            fsync_directory(tmp)
            os.rename(tmp, final)
            _record_published(final)
        except BaseException as error:
            if marker is not None:
                if not tmp.exists() and final.is_dir():  # renamed, then the signal
                    _record_published(final)
                shutil.rmtree(tmp, ignore_errors=True)
                marker.unlink(missing_ok=True)
            raise naming(error, out, temporary=_temporary_prefix(final.name))
        marker.unlink()  # a kill before it leaves the marker alone, which the next publish in the folder removes
        fsync_directory(final.parent)
    return final


def _check_outside_runs(final: Path) -> None:
    """A directory published inside a run modified it, e.g. a child run in its parent, whose deletion once
    verified (the workflow's advice) deleted the child too."""
    run = enclosing_run(final)
    if run is not None:
        raise ValueError(f"{final} is inside the run {run}, and runs are never modified: choose a directory outside it")


# ------------------------------------------------------------------------------------------ save and load

def save_run(out: str | os.PathLike, info: dict, model: Recommender, graph: HeteroData, val: HeteroData,
             test: HeteroData, removed: dict, parent_audit: list[dict] | None = None,
             audit_line: Callable[[dict], dict] | None = None) -> Path:
    """Publishes a run (see the module docstring) with :func:`publish`.

    Args:
        out: the new run directory (not there yet, or empty: see :func:`publish`).
        info: the content of ``run.json`` without ``files``, ``format`` and ``created``, added here; its
            ``model`` (``{"name": ..., "config": ...}``) names the registered class or factory that rebuilds the model.
        model: the model (:func:`~graphforget.models.save_model`).
        graph: the training graph: its edges, labels, ``observed`` mask and raw ids are kept (:func:`graph_to_dict`);
            an ``edge_weight``, which the models propagate with, is refused (ValueError): the loaded run would
            score without it.
        val, test: held-out pairs.
        removed: ``{"edge_index": [2, R], "edge_label": [R], "observed": [R]}`` removed in the lineage.
        parent_audit: the parent's audit lines as JSON reads them, copied first.
        audit_line: builds this run's audit line from the sha256 of the files written so far
            (``{"model.pt": ..., "graph.pt": ...}``); ``None`` for a run without a request.

    Returns:
        The final path.
    """
    if "edge_weight" in graph[EDGE]:  # dropped, it changed the loaded run's scores by up to 2.9 without a word
        raise ValueError("save_run keeps a graph's edges, labels, observed mask and raw ids, not its edge_weight, "
                         "which the models propagate with: the loaded run would score otherwise; save a graph "
                         "without it (docs/data.rst: leave it unset on a graph of your own)")
    blobs = {"graph.pt": _torch_bytes(graph_to_dict(graph)),
             "heldout.pt": _torch_bytes({"val": graph_to_dict(val, False), "test": graph_to_dict(test, False)}),
             "removed.pt": _torch_bytes({key: removed[key].cpu() for key in ("edge_index", "edge_label", "observed")})}
    model = module_on(model, "cpu")  # the caller's model stays where it is

    def write(tmp: Path) -> None:
        save_model(model, tmp / "model.pt", **info["model"])  # atomic and fsync-ed within the temporary directory
        sums = {"model.pt": sha256_file(tmp / "model.pt")}
        for name, data in blobs.items():
            _write_file(tmp / name, data)
            sums[name] = hashlib.sha256(data).hexdigest()
        # the parent's lines as JSON read them (nothing to convert: 0.04 s a run after 400 requests, qa174), then ours
        lines = list(parent_audit or []) + ([to_jsonable(audit_line(sums))] if audit_line is not None else [])
        audit = "".join(json.dumps(line, sort_keys=True) + "\n" for line in lines).encode()
        _write_file(tmp / "audit.jsonl", audit)
        sums["audit.jsonl"] = hashlib.sha256(audit).hexdigest()
        record = to_jsonable({"format": FORMAT, **info, "created": utc_now(), "files": sums})
        record["record_sha256"] = _record_sha256(record)
        _write_file(tmp / "run.json", (json.dumps(record, indent=2) + "\n").encode())
    return publish(out, write)


def read_run_info(path: str | os.PathLike) -> dict:
    """The record (``run.json``) of the run directory ``path``, checked as :func:`load_run` checks it (its kind,
    format, fields and seal), without reading the run's other files.

    Raises:
        FileNotFoundError: when ``path`` is not a run directory.
        ValueError: when ``run.json`` is not a graphforget run record, or was edited by hand.
    """
    return _read_info(Path(path))


def _read_info(path: Path) -> dict:
    """``run.json`` of a run directory.

    Raises:
        FileNotFoundError: when ``path`` is not a run directory.
        ValueError: when ``run.json`` is not a graphforget run record.
    """
    if not path.is_dir():
        raise FileNotFoundError(f"run directory not found: {path}")
    record = path / "run.json"
    if not record.is_file():
        raise FileNotFoundError(f"{path} is not a run directory (no run.json): make one with `graphforget fit`")
    try:
        info = json.loads(record.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{record} is not valid JSON: {error}") from None
    if not isinstance(info, dict) or info.get("kind") not in RUN_KINDS or "files" not in info:
        raise ValueError(f"{record} is not a graphforget run record")
    if info.get("format") != FORMAT:
        raise ValueError(f"{record} has run format {info.get('format')!r}; this version reads format {FORMAT}")
    missing = [key for key in RUN_KEYS if key not in info]
    if missing:
        raise ValueError(f"{record} lacks {missing}: it was edited by hand or is not a graphforget run record")
    _check_record_types(record, info)
    # every run is written sealed: a record whose seal was deleted with the edit had been read as it stood
    if "record_sha256" not in info:  # graphforget wrote no seal before 2026-12-05: not told from an edit (qa158)
        raise ValueError(f"{record} lacks its seal record_sha256: it was edited by hand, or written by a graphforget "
                         "of before 2026-12-05, which sealed no run; unsealed runs are not read (fit the data file "
                         "again and forget the requests in the lineage's audit.jsonl again, or finish with that "
                         "version)")
    if info["record_sha256"] != _record_sha256(info):
        raise ValueError(f"{record} does not match its record_sha256: it was edited by hand (a run is never modified: "
                         "make a new one)")
    return info


def _record_sha256(record: dict) -> str:
    """The sha256 of a run record without its own ``record_sha256``, its keys sorted: the run's seal, as a train
    checkpoint's record has its own (a run's files are sealed by ``files``, but an edit of its record itself, its
    loss from BCE to BPR, had unlearned with an objective the model never trained with, and verified). Like the files'
    sha256, it tells an edit by hand, not a forgery: it is no signature. Every run is written with it, so a record
    without it is refused too."""
    rest = {key: value for key, value in record.items() if key != "record_sha256"}
    return hashlib.sha256(json.dumps(rest, sort_keys=True).encode()).hexdigest()


def _check_record_types(record: Path, info: dict) -> None:
    """Raises ``ValueError`` naming the first field of ``run.json`` of the wrong kind (a ``files`` list, a ``null``
    lineage, a parent given as a string): each failed later as an AttributeError, or was copied into a child."""
    kinds = {"files": dict, "data": dict, "model": dict, "hparams": dict, "metrics": dict, "lineage": dict, "seed": int,
             "objective": dict, "method": dict}  # the last two optional: a fit run has no method
    wrong = [key for key, kind in kinds.items()
             if key in info and (not isinstance(info[key], kind) or isinstance(info[key], bool))]
    depth = info["lineage"].get("depth", 0) if not wrong else 0
    if not isinstance(depth, int) or isinstance(depth, bool):  # a child adds 1 to it
        wrong = ["lineage.depth"]
    parent = info["lineage"].get("parent") if not wrong else None
    if parent is not None and not (isinstance(parent, dict) and all(
            isinstance(parent.get(key), str) for key in ("path", "run_sha256"))
            and isinstance(parent.get("relative_path"), (str, type(None)))):
        wrong = ["lineage.parent"]
    if not wrong and isinstance(info["model"].get("name"), str):  # first: hparams name it too, read as damage
        _check_model_registered(record, info["model"]["name"])
    wrong = wrong or _unrecorded_fields(info)
    if wrong:
        raise ValueError(f"{record}: {wrong[0]} is not what a run records (edited by hand, or not a graphforget run "
                         "record)")


def _check_model_registered(record: Path, name: str) -> None:
    """Raises ``ValueError`` when the run's model is registered in no way this process knows (a plugin's model read
    without the plugin installed): the run was reported as edited by hand, or not a graphforget run."""
    try:
        registered_model(name)
    except ValueError as error:
        raise ValueError(f"{record}: the run's model cannot be built in this process: {error}") from None


def _unrecorded_fields(info: dict) -> list[str]:
    """The fields of a well-typed record that no run writes: each failed later as a bare KeyError or TypeError (a model
    without its name, hparams of an unknown key, a forget run without its method or parent)."""
    wrong = [] if isinstance(info["model"].get("name"), str) else ["model.name"]
    wrong += [] if isinstance(info["model"].get("config"), dict) else ["model.config"]
    if info["kind"] == "fit" and info["lineage"].get("parent"):  # evaluate named its model the original
        wrong.append("kind")
    try:
        Hyperparameters(**info["hparams"])
    except (TypeError, ValueError) as error:
        wrong.append(f"hparams ({error})")
    if info["kind"] == "forget":
        method = info.get("method", {})  # name None: held-out pairs only, no method ran (the one asked for kept)
        wrong += [] if isinstance(method.get("name") or method.get("requested"), str) else ["method.name"]
        wrong += [] if is_integer(method.get("seed", 0)) else ["method.seed"]  # verify read 1.5 and true as 1
        wrong += [] if info["lineage"].get("parent") else ["lineage.parent"]
    return wrong


def _check_files(path: Path, info: dict) -> None:
    """Raises ``ValueError`` naming a file of the run that is missing or differs from its recorded sha256."""
    for name in FILES:
        file = path / name
        if not file.is_file():
            raise ValueError(f"{file} is missing: the run is incomplete")
        if sha256_file(file) != info["files"].get(name):
            raise ValueError(f"{file} does not match the sha256 recorded in run.json: the run was modified or "
                             f"is corrupt")


def load_run(path: str | os.PathLike, map_location="cpu") -> Run:
    """Reads a run directory, checking every file against the sha256 in ``run.json``.

    Raises:
        FileNotFoundError: when ``path`` is not a directory holding ``run.json``.
        ValueError: for a record of another format, a missing or modified file, a model that does not
            fit the graph, a model this process has not registered (a plugin's, not installed here), or a last audit
            line that names another model or graph than the run's (its files replaced and their sha256 in
            ``run.json`` with them).
    """
    path = Path(path).expanduser()
    info = _read_info(path)
    _check_files(path, info)
    graph = graph_from_dict(_read_part(path, "graph.pt"), f"{path}/graph.pt")
    heldout = _read_part(path, "heldout.pt", ("val", "test"))
    removed = _read_part(path, "removed.pt", ("edge_index", "edge_label", "observed"))
    if removed["edge_index"].size(-1) != info["lineage"].get("removed_edges", 0):  # replaced, its sha256 with it
        raise ValueError(f"{path}/removed.pt holds {removed['edge_index'].size(-1)} removed edges, and run.json's "
                         f"lineage records {info['lineage'].get('removed_edges', 0)}: a file of the run was replaced")
    model, _ = load_model(path / "model.pt", map_location=map_location)
    check_model_fits(model, graph)
    audit = _audit_lines(path)
    _check_last_audit_line(path, info, audit)
    run = Run(path, info, model, graph, graph_from_dict(heldout["val"], "val"),
              graph_from_dict(heldout["test"], "test"), removed["edge_index"], removed["edge_label"],
              removed["observed"], audit)
    run.loaded_sha256 = run.content_sha256()
    return run


def recorded_run(relative: Path | None, recorded: str | os.PathLike, sha256: str | None, gone: str,
                 changed: str) -> Path:
    """A run's directory found from a record: at ``relative`` first (a moved tree of runs still resolves), then at the
    ``recorded`` path; the first whose ``run.json`` has ``sha256`` (``None``: any), since another run or folder of
    the same name may sit at the relative path (a run copied on its own into a folder of other runs).

    Raises:
        FileNotFoundError: ``gone``, when neither place holds a ``run.json``.
        ValueError: ``changed`` with ``{path}`` filled in, when those found hold another one.
    """
    candidates = [relative.resolve()] if relative is not None else []
    found = [path for path in dict.fromkeys([*candidates, Path(recorded)]) if (path / "run.json").is_file()]
    if not found:
        raise FileNotFoundError(gone)
    same = [path for path in found if sha256 is None or sha256_file(path / "run.json") == sha256]
    if not same:
        raise ValueError(changed.format(path=" or ".join(map(str, found))))
    return same[0]


def lineage(run: str | os.PathLike | Run) -> list[Path]:
    """The runs of a lineage, root (the ``fit`` run) first, ``run`` last, as resolved paths.

    Each parent is found from the child's ``run.json`` (relative path first, so a moved tree of runs still
    resolves) and checked against the sha256 of its ``run.json`` the child recorded, its files against their
    sha256 in it, and its audit log against the child's, which holds it and one line more; the last line of
    each run's own log must name its model and graph (a parent's too: a child records the sha256 of the
    parent's ``run.json`` as it found it, re-hashed after a swap or not).

    Raises:
        FileNotFoundError: when a parent run is gone.
        ValueError: when a parent's ``run.json``, files or audit log changed after the child was derived from
            it, or a run's last audit line names another model or graph than its own.
    """
    path = (run.path if isinstance(run, Run) else Path(run).expanduser()).resolve()
    chain = [path]
    info = _read_info(path)
    _check_files(path, info)  # before its audit log is read: a damaged log is named, not a JSON error of its line
    text = (path / "audit.jsonl").read_text()
    lines = _audit_lines(path, text)  # the leaf's log holds every line of its ancestors'
    _check_last_audit_line(path, info, lines)
    while info["lineage"].get("parent"):
        parent = info["lineage"]["parent"]
        relative = chain[-1].parent / parent["relative_path"] if parent.get("relative_path") else None
        parent_path = recorded_run(relative, parent["path"], parent["run_sha256"],
                                   f"the parent run {parent['path']} of {chain[-1]} is gone (a lineage is verified "
                                   "from every run back to its fit run: delete a lineage whole, once verified)",
                                   f"the parent run {{path}} changed after {chain[-1]} was derived from it")
        info = _read_info(parent_path)
        _check_files(parent_path, info)  # every run the report counts, not the root and the leaf alone
        child_text, text = text, (parent_path / "audit.jsonl").read_text()
        # the text first (linear in the depth); the parsed lines where it differs (a version that wrote them otherwise)
        if not _continues(child_text, text) and lines[:-1] != _audit_lines(parent_path, text):
            raise ValueError(f"the audit log of {chain[-1]} does not continue its parent's ({parent_path}): the "
                             "lines of the earlier requests were edited")
        lines = lines[:-1]
        _check_last_audit_line(parent_path, info, lines)
        chain.append(parent_path)
    return chain[::-1]


def parents_elsewhere(chain: list[Path]) -> list[str]:
    """One line for each parent of a :func:`lineage` read at its recorded path rather than beside its child: a child
    copied on its own, or a copied tree whose copy of the parent is gone or damaged (its ``run.json`` gone or
    edited); the files checked were then the recorded parent's, not that copy's."""
    lines = []
    for parent, child in zip(chain, chain[1:]):
        relative = _read_info(child)["lineage"]["parent"].get("relative_path")
        beside = (child.parent / relative).resolve() if relative else None
        if beside is not None and beside != parent:
            held = "holds no copy of it" if beside.exists() else "is not there"
            lines.append(f"the parent of {child} was read at its recorded path {parent}: {beside}, beside it, {held}")
    return lines


def _read_part(path: Path, name: str, keys: tuple[str, ...] = ()) -> dict:
    """The dict a run's tensor file holds, with ``keys``.

    Raises:
        ValueError: naming the file, when torch cannot read it or it lacks a key (one whose sha256 in ``run.json``
            was rewritten with it: torch's or Python's own error had come through).
    """
    try:
        value = torch.load(path / name, weights_only=True)
    except Exception as error:  # torch raises a kind per way a file is damaged (zip, pickle, EOF, storage size)
        raise ValueError(f"{path / name} cannot be read ({load_failure(error)}): the run is corrupt") from None
    missing = [key for key in keys if key not in value] if isinstance(value, dict) else ["a dict"]
    if missing:
        raise ValueError(f"{path / name} lacks {missing}: not written by graphforget.runs")
    return value


def _continues(child: str, parent: str) -> bool:
    """Whether the audit log ``child`` is ``parent`` and one line more, as text. :func:`save_run` writes every line in
    one canonical form, so a child's copy of its parent's lines is the same text; comparing the text first keeps
    :func:`lineage` linear in the depth (parsing every run's log had made it quadratic)."""
    rest = child[len(parent):]
    return child.startswith(parent) and rest.endswith("\n") and rest.count("\n") == 1 and bool(rest.strip())


def _audit_lines(path: Path, text: str | None = None) -> list[dict]:
    """The lines of the audit log of the run at ``path`` (its ``text`` when read already), each a JSON object.

    Raises:
        ValueError: naming the file and line of one that is not (JSON's own message named neither).
    """
    lines = []
    text = (path / "audit.jsonl").read_text() if text is None else text
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                lines.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}/audit.jsonl, line {number}: not JSON ({error})") from None
            if not isinstance(lines[-1], dict):
                raise ValueError(f"{path}/audit.jsonl, line {number}: not an audit line (a JSON object)")
    return lines


def _check_last_audit_line(path: Path, info: dict, lines: list[dict]) -> None:
    """Raises ``ValueError`` when a forget run's last audit line (of ``lines``) names another model or graph than
    the run's."""
    if not info["lineage"].get("parent"):
        return
    child = lines[-1].get("child", {}) if lines else {}
    if (child.get("model_sha256"), child.get("graph_sha256")) != (info["files"].get("model.pt"),
                                                                     info["files"].get("graph.pt")):
        raise ValueError(f"{path}/audit.jsonl's last line names another model or graph than the run's own: a file "
                         "of the run was replaced")
