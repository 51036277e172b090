"""The ``graphforget`` command line: ``train``, ``evaluate``, ``unlearn`` and ``demo`` (the attack protocol);
``fit``, ``forget`` and ``verify`` (the deletion workflow on your own data, :mod:`graphforget.workflow`).

A thin layer over the public API (:mod:`graphforget.protocols`, :mod:`graphforget.unlearn` and below).
A method's ``--option KEY=VALUE`` are the fields of its config (dotted for nested ones, e.g.
``solver.tol=1e-4``), parsed by the field's type; ``graphforget methods NAME`` lists them. Usage errors (unknown
names, missing paths, bad ratios, bad method options, an ``--out`` that is a file, the run itself or inside a run)
exit with status 2 and one line on stderr, before any data is loaded or model trained where they can
be seen then. An unlearning method that cannot produce a result it trusts
(:class:`~graphforget.unlearn.UnlearningFailed`) exits with status 1 and one line; ``bench`` keeps running, lists
the failed cells' errors in ``results.md`` and exits with status 1 (a row counts its untrusted cells). A
command's ``--out`` directory is new (or empty) and published whole (:func:`~graphforget.runs.publish`): it is
never overwritten, and a killed command leaves none; ``bench`` caches its cells under ``--out`` and resumes there,
and ``evaluate --out`` and ``verify --out`` write a new file (atomically, :func:`~graphforget.io.atomic_write`),
outside any run directory.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import functools
import json
import logging
import os
import re
import signal
import sys
import tempfile
import threading
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, cast

import torch

from . import __version__
from .data import EDGE, find_data_root, remove_edges
from .data.loaders import stripped_id
from .config import check_device, config_record, describe, is_seed, wrapped_seed
from .io import atomic_write, tensors_sha256, to_jsonable, write_json
from .metrics import auc_standard_error, evaluate_auc
from .models import ENTRY_POINT_GROUP, MODELS, load_model, registered_model, save_model
from .presets import TRAININGS, Hyperparameters, default_hparams, recorded_objective
from .protocols.attack import (AUC_KEYS, DATASET_NAMES, RAW_FILES, AttackData, prepare_attack_data, raw_data_file,
                               run_attack)
from .runs import Run, load_run, publish, recording_published, refuse_taken
from .train import train
from .unlearn import METHODS, UnlearningFailed, UntrustedWarning, build_unlearner, method_config
from .verify import interval_text, p_value_text

__all__ = ["main", "build_parser"]

log = logging.getLogger("graphforget")

MODEL_NAMES = ("mf", "lightgcn")
_YOUR_MODEL = f"or a model an installed package registers under the entry-point group {ENTRY_POINT_GROUP!r}"


class UsageError(Exception):
    """A user error: reported on one line, exit status 2."""


#: The flags of ``graphforget`` itself, which go before the command.
_GLOBAL_FLAGS = ("--threads", "-v", "--verbose")


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line instead of usage + message
        misplaced = [flag for flag in _GLOBAL_FLAGS
                     if message.startswith("unrecognized arguments") and flag in message.split()]
        hint = f" ({misplaced[0]} goes before the command: graphforget {misplaced[0]} ... COMMAND)" if misplaced else ""
        valued = re.fullmatch(r"argument (?:\S+/)?(--[\w-]+): expected one argument", message)
        if valued:  # '--users -u7' reads '-u7' as a flag (qa149)
            hint = f" (a value that starts with '-' goes after '=': {valued.group(1)}=-...)"
        raise UsageError(f"{self.prog}: error: {message}{hint}")


def _ratio(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"attack ratio must be a number in (0, 1), got {text!r}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"attack ratio must be in (0, 1), got {text}")
    return value


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def _seed(text: str) -> int:
    """A seed, checked as the argument is parsed: else it failed once the data was read (``check_seed``)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer in [0, 2**32), got {text!r}") from None
    if not is_seed(value):
        raise argparse.ArgumentTypeError(f"expected an integer in [0, 2**32), got {text}")
    return value


def _device(text: str) -> str:
    try:
        check_device(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


# --- shared pieces ------------------------------------------------------------------------------

def _fingerprint(data: AttackData) -> str:
    """A hash of the attacked training graph and the request: rebuilt data must match it exactly."""
    return tensors_sha256(data.train[EDGE].edge_index, data.train[EDGE].edge_label, data.request)[:16]


def _heldout_fingerprint(data: AttackData) -> str:
    """A hash of the validation and test pairs: a file edited only where the split held pairs out changed the
    test AUC that evaluate reports, unnoticed by :func:`_fingerprint` (kept apart so older runs still load)."""
    val, test = data.split.val[EDGE], data.split.test[EDGE]
    return tensors_sha256(val.edge_index, val.edge_label, test.edge_index, test.edge_label)[:16]


def _data_root(dataset: str, root) -> str | None:
    """The absolute data directory a run used, so that it can be rebuilt from anywhere."""
    if dataset == "synthetic":
        return None
    found = Path(root).expanduser() if root is not None else find_data_root()
    return None if found is None else str(found.resolve())


def _check_out_dir(out: str, run: str | None = None, into: bool = False) -> Path:
    """``--out`` as an output directory, checked before any work: not a file, creatable, not the run itself.
    ``into``: the command writes into ``out`` (bench: its cells and reports), so an existing ``out`` is probed itself
    (a writable bench folder in a parent that refused new entries was refused, a read-only one accepted, and failed
    after its first cell); a published output is written beside it and renamed into its place.

    Raises:
        UsageError: ``out`` is an existing non-directory, lies under a file, cannot be written (beside, unless
            ``into``), is a mount point (unless ``into``) or the directory of ``run`` (whose model.pt it would
            overwrite).
    """
    _check_named(out)
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise UsageError(f"graphforget: error: --out {out} is an existing file, not a directory")
    if run is not None and path.resolve() == Path(run).resolve():
        raise UsageError(f"graphforget: error: --out {out} is the run directory --run {run}: its model.pt would be "
                         f"overwritten; choose another output directory")
    run_dir = _enclosing_run(path)
    if run_dir is not None:  # a run is never modified: no output nested in one (a child run in its parent)
        raise UsageError(f"graphforget: error: --out {out} is inside the run {run_dir}, and runs are never modified: "
                         "choose a directory outside it")
    if not into and path.is_dir() and os.path.ismount(path):  # the rename into it failed: "Device or resource busy"
        raise UsageError(f"graphforget: error: --out {out} is a mount point: an output is written beside its place and "
                         "renamed into it, which a mount point refuses; give a new folder inside it")
    # where the output is written: beside --out when published (probed in --out itself, a parent that refused it
    # failed at the end), into it for bench
    existing = path if into and path.is_dir() else next((p for p in path.parents if p.exists()), Path("."))
    if not existing.is_dir():
        raise UsageError(f"graphforget: error: cannot create --out {out}: {existing} is not a directory")
    try:  # a real write (os.access says yes to root in /proc or on a read-only disk), and a parent that refused it
        # failed the run at the end; unnamed (O_TMPFILE) where the system allows: a kill leaves nothing
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        raise UsageError(f"graphforget: error: cannot write to --out {out}: {existing} is not writable "
                         f"({error.strerror})") from None
    return path


def _is_run(directory: Path) -> bool:
    """Whether ``directory`` is a run, or another command's output: a fit or forget run's ``run.json``, a train or
    unlearn run's ``model.pt`` beside its ``metrics.json`` (a project's own model.pt made its whole tree a run), an
    unlearn's ``metrics.json`` (an ensemble's unlearn writes it alone, and its directory had taken reports and nested
    outputs), pretrain-encoder's ``encoder.pt`` beside its ``pretrain.json``."""
    def has(name: str) -> bool:
        return (directory / name).is_file()
    return (has("run.json") or (has("model.pt") and has("metrics.json"))
            or _is_unlearn_metrics(directory / "metrics.json") or (has("encoder.pt") and has("pretrain.json")))


def _is_unlearn_metrics(path: Path) -> bool:
    """Whether ``path`` is the metrics.json an unlearn writes (its method, options and config), not one of the
    many files of that name (an evaluate report, a project's own) that had made their directory a run."""
    try:
        record = json.loads(path.read_text()) if path.is_file() and path.stat().st_size < 2 ** 20 else None
    except (OSError, ValueError, RecursionError):  # a JSONDecodeError or UnicodeDecodeError too: no unlearn's
        return False
    return isinstance(record, dict) and {"method", "options", "config"} <= record.keys()


def _check_named(out: str) -> None:
    """An empty ``--out`` names the working directory (``Path("")``): refused, not read as "." exists."""
    if not out.strip():
        raise UsageError("graphforget: error: --out is empty: name a new output")


def _enclosing_run(path: Path) -> Path | None:
    """The run directory ``path`` lies in (any of its parents), or ``None``."""
    return next((parent for parent in path.resolve().parents if _is_run(parent)), None)


def _write_new(out: Path, value) -> None:
    """Writes a report to ``out`` as JSON, never over a file: one that appeared there since
    :func:`_check_out_file` is kept."""
    try:
        write_json(out, value, exclusive=True)
    except FileExistsError:
        raise UsageError(f"graphforget: error: --out {out} appeared while the command ran, and is not overwritten "
                         "(the figures are printed above)") from None


def _check_out_file(out: str) -> Path:
    """``--out`` as a new output file, checked before any work: not there yet, in an existing directory that is
    not a run (a run directory is never modified: ``evaluate --out`` once replaced a run's metrics.json)."""
    _check_named(out)
    path = Path(out)
    if path.is_dir():
        raise UsageError(f"graphforget: error: --out {out} is a directory, not a file")
    if not path.parent.is_dir():
        raise UsageError(f"graphforget: error: --out {out}: directory {path.parent} does not exist")
    run_dir = _enclosing_run(path)  # a sub-folder of one too: deleting the run deleted the report
    if run_dir is not None:
        raise UsageError(f"graphforget: error: --out {out} is inside the run {run_dir}, and runs are never "
                         "modified: write the report elsewhere")
    if path.exists() or path.is_symlink():
        raise UsageError(f"graphforget: error: --out {out} exists: outputs are never overwritten, choose a new file")
    try:  # before the work, not when the report is written (a read-only place failed naming a temporary file)
        with tempfile.TemporaryFile(dir=path.parent):
            pass
    except OSError as error:
        raise UsageError(f"graphforget: error: --out {out}: cannot write in {path.parent} ({error.strerror})") from None
    return path


def parse_options(pairs: list[str]) -> dict[str, str]:
    """``["solver.name=lissa", "prune=0.5,0.5"]`` -> ``{"solver.name": "lissa", "prune": "0.5,0.5"}``.

    The values stay strings: :func:`~graphforget.unlearn.method_config` parses each by its field's type.
    """
    options: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"graphforget: error: options are KEY=VALUE, got {pair!r}")
        if key.strip() in options:  # the last one silently won
            raise UsageError(f"graphforget: error: {key.strip()} is given twice ({options[key.strip()]!r} and "
                             f"{value.strip()!r}): give it once (a list as comma-separated values)")
        options[key.strip()] = value.strip()
    return options


def _options(method: str, pairs: list[str] | None) -> dict:
    """The ``--option KEY=VALUE`` pairs of ``method``, checked before any data is loaded or model trained."""
    return _checked_options(method, parse_options(pairs or []))


def _bars(args: argparse.Namespace) -> bool:
    """Progress bars: unless ``--quiet``, and only on a terminal (in a log file each redraw was kept)."""
    return not args.quiet and sys.stderr.isatty()


def _is_progress(option: str) -> bool:
    """Whether a (dotted) option is a progress bar's (``progress``, ``train.progress``): the command's (``--quiet``)."""
    return option.split(".")[-1] == "progress"


def _refuse_progress(options: dict) -> None:
    """Progress bars are the command's (``--quiet``): an option of them is refused (``train.progress=true`` had drawn
    bars under ``--quiet``, and in bench had keyed a cell of its own)."""
    bars = sorted(name for name in options if _is_progress(name))
    if bars:
        raise UsageError(f"graphforget: error: --option {bars[0]}: progress bars are the command's: they show unless "
                         "--quiet")


def _without_progress(message: str) -> str:
    """A config's error with the progress bars left out of the options it lists as known: the CLI refuses them."""
    return re.sub(r"(?<=\(known: )[^)]*", lambda known: ", ".join(name for name in known[0].split(", ")
                                                                   if name != "progress"), message)


def _checked_options(method: str, options: dict) -> dict:
    """``options`` parsed by their fields' types (``"3"`` is ``3``, as the records then show them) if ``method``'s
    config accepts them (:func:`~graphforget.unlearn.method_config`), none of a progress bar
    (:func:`_refuse_progress`)."""
    _refuse_progress(options)
    try:
        config = method_config(method, options)
    except ValueError as error:
        raise UsageError(f"graphforget: error: {_without_progress(str(error))}") from error
    return {name: functools.reduce(getattr, name.split("."), config) for name in options}


def _fmt(value, pct: bool = False) -> str:
    if value is None or value != value:  # not measured, or NaN (no attack on a single requested edge)
        return "-"
    return f"{100 * value:.0f}%" if pct else f"{value:.4f}"


def _table(rows: list[dict], columns: list[tuple[str, str]]) -> str:
    """A plain text table of ``rows`` with ``(key, header)`` columns (values already strings)."""
    widths = [max(len(head), *(len(r[key]) for r in rows)) for key, head in columns]
    lines = ["  ".join(head.ljust(w) for (_, head), w in zip(columns, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(r[key].ljust(w) for (key, _), w in zip(columns, widths)) for r in rows]
    return "\n".join(lines)


def _count(number: int, noun: str, plural: str | None = None) -> str:
    """``1 edge``, ``2 edges``: ``number`` and the noun in the form it takes."""
    return f"{number} {noun if number == 1 else plural or noun + 's'}"


def _forgotten(request) -> str:
    """``149 edges of 1 user``, ``2 of 5 listed edges``: what a request removed, of what it named ("(users: 1)" read as
    a user id)."""
    forgot, asked = request.edges.size(1), request.ids.size(-1)
    if request.kind == "edges":
        return f"{forgot} of {_count(asked, 'listed edge')}"
    return f"{_count(forgot, 'edge')} of {_count(asked, request.kind[:-1])}"


def _auc_line(metrics: dict) -> str:
    return "  ".join(f"{k}={_fmt(metrics.get(k))}" for k in AUC_KEYS)


def _load_run(run: str, device: str, root: str | None = None):
    """Reads ``RUN/model.pt`` and rebuilds the data it was trained on (checked by fingerprint) from ``root``, else the
    run's recorded directory, else where the library finds data (the recorded one may have moved: the fingerprint
    tells the same data wherever it lies)."""
    path = _model_path(run)
    try:
        model, checkpoint = load_model(path, map_location=device)
    except Exception as error:  # a truncated or foreign file: say so on one line
        raise UsageError(f"graphforget: error: cannot read {path}: {type(error).__name__}: {error}") from error
    info = checkpoint.get("run")
    if not isinstance(info, dict):
        hint = (": it is a run of your own data (`fit`/`forget`), which `graphforget forget --run` unlearns from"
                if (path.parent / "run.json").is_file() else " (no run information)")
        raise UsageError(f"graphforget: error: {path} was not written by `graphforget train`{hint}")
    _check_train_record(path, info)
    recorded = info["root"] if _holds_data(info["root"], info["dataset"]) else None
    data = prepare_attack_data(info["dataset"], recorded if root is None else root, info["attack_ratio"],
                               wrapped_seed(info["seed"]), synthetic_fallback=False)
    heldout = info.get("heldout_fingerprint")  # absent from runs written before it was recorded
    if _fingerprint(data) != info["fingerprint"] or heldout not in (None, _heldout_fingerprint(data)):
        raise UsageError(f"graphforget: error: the data rebuilt for {run} differs from the data it was trained on "
                         f"({data.source})")
    return model.to(device), checkpoint, data


def _holds_data(root: str | None, dataset: str) -> bool:
    """Whether the run's recorded data directory still holds its dataset's file: a folder whose dataset was moved out
    of it had stopped the search there, before ``$GRAPHFORGET_DATA`` (which held the same file)."""
    if root is None or not Path(root).is_dir():
        return False
    return dataset not in RAW_FILES or raw_data_file(dataset, root) is not None


#: What a ``train`` checkpoint's run record holds, by kind (``root`` may be ``None``; the rest are checked on use).
_TRAIN_RECORD: dict[str, type | tuple[type, ...]] = {
    "dataset": str, "root": (str, type(None)), "seed": int, "attack_ratio": (int, float), "hparams": dict,
    "fingerprint": str}


def _check_train_record(path: Path, info: dict) -> None:
    """Refuses a ``train`` checkpoint whose run record this version cannot read (a field missing, of another kind, or
    hparams it does not know: another version's file), naming the field. Each had failed with a traceback (a
    KeyError, a TypeError) where a run.json of the same record gets one line."""
    wrong = [key for key, kind in _TRAIN_RECORD.items()
             if not isinstance(info.get(key, ...), kind) or isinstance(info.get(key), bool)]
    if not wrong:
        try:
            Hyperparameters(**info["hparams"])
        except (TypeError, ValueError) as error:
            wrong.append(f"hparams ({error})")
    if wrong:
        raise UsageError(f"graphforget: error: {path}: {wrong[0]} is not what `graphforget train` records (another "
                         "version's file, or edited)")


def _model_path(run: str) -> Path:
    """``RUN/model.pt``, which must exist."""
    path = Path(run) / "model.pt"
    if Path(run).exists() and not Path(run).is_dir():  # a file: `train --out FILE`, the advice below, fails too
        raise UsageError(f"graphforget: error: --run {run} is not a run directory: give the directory a `train` or "
                         "`fit` run wrote (it holds model.pt)")
    if not path.is_file() and (Path(run) / "metrics.json").is_file():  # unlearn's output of an ensemble (SISA)
        raise UsageError(f"graphforget: error: no model.pt in {run}: the method's result is not one model of the run's "
                         f"class, so only its metrics were kept ({Path(run) / 'metrics.json'})")
    if not path.is_file() and (Path(run) / "results.json").is_file():
        raise UsageError(f"graphforget: error: no model.pt in {run}: it holds a `graphforget bench` or `demo` output "
                         "(results.json), not a run: give the directory a `train` run wrote")
    if not path.is_file():
        raise UsageError(f"graphforget: error: no model.pt in {run} (make one with `graphforget train --out {run}`)")
    return path


def _check_method(method: str, also: tuple[str, ...] = ()) -> None:
    """Raises :class:`UsageError` for a method that is neither registered nor one of ``also``."""
    if method not in METHODS and method not in also:
        raise UsageError(f"graphforget: error: unknown method {method!r} (choose from {', '.join([*METHODS, *also])})")


_TRAINING_HELP = ("early-stopped: mini-batch Adam, early stopping on validation AUC (default); stationary: "
                  "full-batch L-BFGS until the gradient vanishes (where influence functions are exact to first order)")


# --- sub-commands -------------------------------------------------------------------------------

def cmd_train(args) -> int:
    out = _new_run_dir(args.out)
    preset = default_hparams(args.model, args.dataset, args.training)
    hparams = preset.replace(_hparam_changes(args, preset))
    data = prepare_attack_data(args.dataset, args.root, args.attack_ratio, args.seed, synthetic_fallback=False)
    print(f"data: {data.source}")
    device = torch.device(args.device)
    graph, val, test = data.train.to(device), data.split.val.to(device), data.split.test.to(device)
    counts = graph["user"].num_nodes, graph["item"].num_nodes
    model = hparams.build_model(*counts, args.seed).to(device)
    config = hparams.train_config(args.seed, progress=_bars(args))
    objective = hparams.objective(args.seed)
    fit = train(model, graph, objective, config, val)
    metrics = {**evaluate_auc(model, graph, test, data.request.to(device)), "train_seconds": fit.seconds,
               "epochs": fit.epochs, "best_epoch": fit.best_epoch, "best_val_auc": fit.best_val_auc,
               "dataset": args.dataset, "source": data.source, "model": hparams.model,
               "train_edges": graph[EDGE].edge_index.size(1), "request_edges": data.request.size(1),
               "threads": torch.get_num_threads()}
    run = {"dataset": args.dataset, "root": _data_root(args.dataset, args.root), "seed": args.seed,
           "attack_ratio": args.attack_ratio, "hparams": hparams.as_dict(),
           "objective": {"name": type(objective).__name__, **vars(objective)},
           "train_config": {**asdict(config), "progress": False},
           "source": data.source, "fingerprint": _fingerprint(data), "heldout_fingerprint": _heldout_fingerprint(data)}
    # rebuilds a model of your own too
    spec: dict[str, Any] = {"name": hparams.model, "config": hparams.model_config(*counts)}
    _publish(out, {"model.pt": lambda path: save_model(model.cpu(), path, **spec, run=run),
                   "metrics.json": lambda path: write_json(path, metrics)})
    steps = _count(fit.epochs, "L-BFGS iteration" if config.optimizer == "lbfgs" else "epoch")
    print(f"{hparams.model}: {_auc_line(metrics)}  train {fit.seconds:.1f}s ({steps})")
    print(f"wrote {out / 'model.pt'} and {out / 'metrics.json'}")
    return 0


def cmd_evaluate(args) -> int:
    out = _check_out_file(args.out) if args.out is not None else None
    metrics = _evaluate_own_run(args) if (Path(args.run) / "run.json").is_file() else _evaluate_attack_run(args)
    print(json.dumps(to_jsonable(metrics), indent=2))
    if out is not None:
        _write_new(out, metrics)
    return 0


def _evaluate_attack_run(args) -> dict:
    """AUC_0/1/2 of a ``train``/``unlearn`` run on its rebuilt attack-protocol data."""
    model, checkpoint, data = _load_run(args.run, args.device, args.root)
    device = torch.device(args.device)
    graph = data.train
    unlearned = checkpoint.get("unlearned")
    if unlearned:  # an unlearned model runs on the graph without the request
        graph = remove_edges(graph, data.request)
    metrics = evaluate_auc(model, graph.to(device), data.split.test.to(device), data.request.to(device))
    return {**metrics, "dataset": checkpoint["run"]["dataset"], "model": checkpoint["model"],
            "method": (unlearned or {}).get("method", "original")}


def _evaluate_own_run(args) -> dict:
    """The test AUC of a ``fit``/``forget`` run on its own held-out pairs (``None`` where they lack a class)."""
    from .workflow import heldout_auc
    if args.root is not None:  # it was accepted and not read, a missing directory too
        raise UsageError(f"graphforget: error: --root is for a `train` run, whose data is rebuilt: {args.run} is a "
                         "`fit`/`forget` run, which holds its own held-out pairs")
    run = load_run(args.run)
    device = torch.device(args.device)
    out = {"test_auc": heldout_auc(run.model.to(device), run.graph.to(device), run.test.to(device)),
           "kind": run.info["kind"], "model": run.info["model"]["name"],
           "method": run.info["method"]["name"] if run.info["kind"] == "forget" else "original"}
    if out["test_auc"] is None:  # a bare null read as a failure
        labels = run.test[EDGE].edge_label
        positive = int((labels == 1).sum())
        out["note"] = (f"no test AUC: the run's test pairs hold {positive} labelled 1 and {labels.numel() - positive} "
                       "labelled 0, and an AUC needs both")
    return out


def _run_unlearner(args, method: str, options: dict):
    """Rebuilds a run (model and data, on ``args.device``) and the unlearner ``method`` for it."""
    model, checkpoint, data = _load_run(args.run, args.device, args.root)
    unlearned = checkpoint.get("unlearned")
    if unlearned:  # the rebuilt data still holds the request its model forgot: nothing to unlearn, nothing to train on
        raise UsageError(f"graphforget: error: {args.run} holds a model that already unlearned the attack's request "
                         f"({unlearned.get('method')}): unlearn and pretrain-encoder start from a `graphforget train` "
                         "run")
    run = checkpoint["run"]
    device = torch.device(args.device)
    hparams = Hyperparameters(**run["hparams"])
    seed = wrapped_seed(run["seed"])  # a run may predate the range of seeds
    config = hparams.train_config(seed, progress=_bars(args))
    unlearner = build_unlearner(method, model, data.train.to(device), recorded_objective(run), options, train=config,
                                seed=seed, val=data.split.val.to(device))
    return unlearner, model, checkpoint, data


def cmd_unlearn(args) -> int:
    _check_method(args.method)
    options = _options(args.method, args.option)
    _model_path(args.run)
    out = _new_run_dir(args.out, run=args.run)
    if args.encoder and not hasattr(METHODS[args.method], "load_encoder"):  # seen before the data is rebuilt
        raise UsageError(f"graphforget: error: --encoder is for unlearnrec, not {args.method}")
    if args.encoder and Path(args.encoder).is_dir():  # the folder pretrain-encoder wrote
        args.encoder = str(Path(args.encoder) / "encoder.pt")
    if args.encoder and not Path(args.encoder).is_file():
        raise UsageError(f"graphforget: error: no encoder file {args.encoder} "
                         f"(make one with `graphforget pretrain-encoder`)")
    unlearner, model, checkpoint, data = _run_unlearner(args, args.method, options)
    if args.encoder:
        _load_encoder(unlearner, args.encoder)
    run = checkpoint["run"]
    graph, test, request = unlearner.graph, data.split.test.to(args.device), data.request.to(args.device)
    print(f"{args.method}{'' if not options else ' ' + json.dumps(to_jsonable(options))}: "
          f"unlearning {_count(request.size(1), 'edge')} ({data.source})")
    metrics = {"method": args.method, "options": options, "config": config_record(unlearner.config)}
    if not args.encoder and unlearner.needs_fit:  # sharded methods train their ensemble first, and report it
        metrics["fit_seconds"] = unlearner.fit().fit_seconds
        metrics["fit"] = unlearner.fit_info
    if args.encoder:  # pre-trained by another command: which file, and what its pre-training was
        metrics["encoder"] = {"path": str(Path(args.encoder).resolve()), **unlearner.fit_info}
    with warnings.catch_warnings():  # the line below says why, where the warning had said it first
        warnings.simplefilter("ignore", UntrustedWarning)
        result = unlearner.unlearn(request)
    metrics.update(evaluate_auc(result.model, result.graph, test, request))
    metrics["unlearn_seconds"] = result.seconds
    metrics["original"] = evaluate_auc(model, graph, test, request)
    metrics["info"] = result.info
    metrics["threads"] = torch.get_num_threads()
    files: dict[str, Callable[[Path], object]] = {"metrics.json": lambda path: write_json(path, metrics)}
    if type(result.model) is type(model):  # can be evaluated again with `graphforget evaluate --run OUT`
        spec = {"name": checkpoint["model"], "config": checkpoint["config"]}
        files["model.pt"] = lambda path: save_model(result.model.cpu(), path, **spec, run=run, unlearned={
            "method": args.method, "options": to_jsonable(options)})
    else:  # e.g. SISA's ensemble
        log.info("%s is not the run's model class: model.pt not written", type(result.model).__name__)
    written = _publish(out, files)
    print(f"original: {_auc_line(metrics['original'])}")
    info = result.info
    trusted = info.get("trusted")  # None: the method has no acceptance test
    trust = {True: "  (trusted)", None: ""}.get(trusted, f"  NOT TRUSTED: {info.get('reason')}")
    checked = f", validation AUC {info['original_val_auc']:.4f} -> {info['val_auc']:.4f}" if "val_auc" in info else ""
    print(f"{args.method}: {_auc_line(metrics)}  unlearn {result.seconds:.2f}s{checked}{trust}")
    print("wrote " + " and ".join(str(p) for p in written))
    return 0


def _load_encoder(unlearner, path: str) -> None:
    try:
        unlearner.load_encoder(path)
    except ValueError as error:
        raise UsageError(f"graphforget: error: {error}") from error


def cmd_pretrain_encoder(args) -> int:
    options = _options("unlearnrec", args.option)
    out = _new_run_dir(args.out)
    unlearner, _, _, _ = _run_unlearner(args, "unlearnrec", options)
    info = unlearner.fit().fit_info
    report = {"pretrain_seconds": info["seconds"], "epochs": info["epochs"], "steps": info["steps"],
              "seed": info["seed"], "run": str(Path(args.run).resolve())}  # absolute, as every record's paths
    _publish(out, {"encoder.pt": unlearner.save_encoder, "pretrain.json": lambda path: write_json(path, report)})
    print(f"pre-trained the influence encoder in {info['seconds']:.1f}s ({_count(info['epochs'], 'epoch')}); "
          f"wrote {out / 'encoder.pt'}")
    return 0


def _add_option(options: dict[str, dict], method: str, text: str, where: str) -> None:
    """Adds ``KEY=VALUE`` to ``method``'s options, refusing a key it already has (demo let the last one win)."""
    mine, given = options.setdefault(method, {}), parse_options([text])
    if set(given) & set(mine):
        raise UsageError(f"graphforget {where} gives {method}'s {next(iter(given))} twice")
    mine.update(given)


def cmd_demo(args) -> int:
    methods = args.methods or list(METHODS)
    for flag, given in (("--methods", methods), ("--model", args.model)):
        if len(set(given)) < len(given):  # a model named twice was trained and printed twice
            twice = sorted({name for name in given if given.count(name) > 1})
            raise UsageError(f"graphforget demo: error: {flag} names {twice} more than once")
    for method in methods:
        _check_method(method)
    options: dict[str, dict] = {m: {} for m in methods}
    for pair in args.option or []:
        method, sep, rest = pair.partition(":")
        if not sep or method not in options:
            raise UsageError(f"graphforget demo: error: --option takes METHOD:KEY=VALUE with METHOD in "
                             f"{', '.join(methods)}, got {pair!r}")
        _add_option(options, method, rest, f"demo: error: --option {pair}")
    for method in methods:  # before any data is loaded or model trained; parsed, as results.json records them
        options[method] = _checked_options(method, options[method])
    for model_name in args.model:  # likewise the training's flags
        _demo_hparams(model_name, "synthetic", args)
    if args.out:
        _new_run_dir(args.out)
    dataset = args.dataset or "ml-100k"  # ML-100K where it can be found, else the synthetic stand-in
    data = prepare_attack_data(dataset, args.root, args.attack_ratio, args.seed, synthetic_fallback=args.dataset is None)
    if data.source.startswith("synthetic") and dataset != "synthetic":
        print(f"data: ML-100K not found, using SYNTHETIC data: {data.source}")
    else:
        print(f"data: {data.source}")
    results, rows = [], []
    for model_name in args.model:
        hparams = _demo_hparams(model_name, data.dataset, args)
        print(f"{model_name}: training the original, then {', '.join(['retrain'] + [m for m in methods if m != 'retrain'])}"
              f" ({torch.get_num_threads()} CPU thread{'s' if torch.get_num_threads() > 1 else ''})", flush=True)
        result = run_attack(data, hparams, methods, options, seed=args.seed, device=args.device,
                            progress=_bars(args)).to_dict()
        results.append(result)
        rows.append(_row(model_name, "original", result["original"], None, result["original"]["train_seconds"]))
        for method, row in result["methods"].items():
            rows.append(_row(model_name, method, row, row["completeness"], row["seconds"], row.get("fit_seconds")))
    print()
    print(_table(rows, [("model", "model"), ("method", "method"), ("auc_0", "auc_0"), ("auc_1", "auc_1"),
                        ("auc_2", "auc_2"), ("completeness", "completeness (0/1/2)"), ("trusted", "trusted"),
                        ("seconds", "seconds")]))
    print("\nseconds: training for the original, the unlearning call for the methods; completeness = "
          "(method - original) / (retrain - original) per AUC; trusted: the method's own acceptance test (-: none).")
    for model_name, result in zip(args.model, results):
        note = _noise_note(model_name, result, data.split.test)
        if note:
            print(note)
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="graphforget-demo-"))  # empty: replaced
    figure = _plot(results)
    files = {"results.json": lambda path: write_json(path, {"options": options, "runs": results})}
    if figure is not None:
        files["demo.png"] = lambda path: atomic_write(path, lambda f: figure.savefig(f, format="png", dpi=120))
    written = _publish(out, files)
    print("wrote " + " and ".join(map(str, written)) + ("" if figure else " (install matplotlib for a plot)"))
    return 0


def _demo_hparams(model_name: str, dataset: str, args) -> Hyperparameters:
    """The preset of the model on the dataset, with the demo's training flags."""
    hparams = default_hparams(model_name, dataset, args.training)
    return _with_flags(hparams, {"--epochs": ("train.epochs", args.epochs),
                                 "--embedding-dim": ("embedding_dim", args.embedding_dim), "--l2": ("l2", args.l2)})


def _with_flags(hparams: Hyperparameters, flags: dict[str, tuple[str, Any]]) -> Hyperparameters:
    """``hparams`` with the fields of the flags given (``{flag: (field, value)}``, ``None``: not given).

    Raises:
        UsageError: naming the flag whose value the checks refuse, as ``train`` does.
    """
    for flag, (field, value) in flags.items():
        try:
            hparams = hparams.replace({field: value})
        except ValueError as error:
            raise UsageError(f"graphforget: error: {flag} {value}: {error}") from error
    return hparams


def cmd_bench(args) -> int:
    """The benchmark harness (:func:`graphforget.bench.run_bench`): cells cached under ``--out``, tables printed."""
    from .bench import BENCH_METHODS, bench_hparams, markdown, parse_params, run_bench  # loaded only for this command
    from .bench.harness import MAX_SEED_COUNT
    methods = args.methods or None
    for method in methods or []:
        _check_method(method, tuple(BENCH_METHODS))
    options: dict[str, dict] = {}
    for pair in args.option or []:
        method, sep, rest = pair.partition(":")
        if not sep:
            raise UsageError(f"graphforget bench: error: --option takes METHOD:KEY=VALUE, got {pair!r}")
        _check_method(method, tuple(BENCH_METHODS))  # retrain_seed takes options too (its seed)
        _add_option(options, method, rest, f"bench: error: --option {pair}")
    for method, given in options.items():  # the harness checks the rest, before anything is trained
        _checked_options(BENCH_METHODS[method][0] if method in BENCH_METHODS else method, given)
    if not 1 <= args.seeds <= MAX_SEED_COUNT:
        raise UsageError(f"graphforget bench: error: --seeds must be in [1, {MAX_SEED_COUNT}], got {args.seeds}")
    out = _check_out_dir(args.out, into=True)
    if _is_run(out):  # _check_out_dir refuses a run above OUT; OUT itself was written into (a train output too)
        raise UsageError(f"graphforget bench: error: --out {args.out} is a run directory, and runs are never "
                         "modified: choose a directory outside it")
    params = parse_params(args.protocol, parse_options(args.param or []), args.quick)
    source = _bench_source(args)
    hparams = bench_hparams(args.model, source.name, args.protocol)
    hparams = _with_flags(hparams, {"--epochs": ("train.epochs", args.epochs),
                                    "--ssl-weight": ("ssl_weight", args.ssl_weight), "--l2": ("l2", args.l2)})
    result = run_bench(args.protocol, source, args.model, methods, args.seeds, args.quick, out, params=params,
                       options=options, hparams=hparams, device=args.device, progress=_bars(args))
    cached = sum(record["cached"] for record in result.cells)
    print(markdown(result))
    print(f"{len(result.cells)} cells ({cached} read from the cache); wrote {', '.join(result.files)}")
    failed = sum("error" in record["result"] for record in result.cells)
    if failed:  # a script or CI job reading only the status took a table with holes for a whole one
        print(f"graphforget bench: {failed} of {len(result.cells)} cells failed: their errors are under "
              "'Failed cells' in results.md", file=sys.stderr)
    return 1 if failed else 0


def _bench_source(args):
    """The bench's :class:`~graphforget.bench.DataSource`: ``--data``/``--format`` or ``--dataset``."""
    from .bench.data import CSV_DEFAULTS, DataSource
    if bool(args.data) != bool(args.format):
        raise UsageError("graphforget bench: error: --data and --format go together")
    if args.data:
        if args.dataset is not None or args.root is not None:  # each was ignored, the file benchmarked
            raise UsageError("graphforget bench: error: --dataset and --root name a dataset, --data a file of your "
                             "own: give one of them")
        if not Path(args.data).exists():
            raise UsageError(f"graphforget bench: error: --data {args.data} does not exist")
        return DataSource("file", path=str(Path(args.data).resolve()), format=args.format,
                          threshold=args.threshold, negatives=args.negatives, user_col=args.user_col,
                          item_col=args.item_col, label_col=args.label_col, duplicates=args.duplicates,
                          delimiter=args.delimiter, encoding=args.encoding)
    if (args.user_col or args.item_col or args.label_col or args.threshold is not None
            or any(getattr(args, name) != default for name, default in CSV_DEFAULTS.items())):
        raise UsageError("graphforget bench: error: --user-col/--item-col/--label-col/--threshold/--duplicates/"
                         "--delimiter/--encoding need --data")
    dataset = args.dataset or "ml-100k"
    if args.negatives is not None and dataset in DATASET_NAMES:
        raise UsageError(f"graphforget bench: error: --negatives is for implicit data; {dataset} brings its "
                         "own 0/1 labels")
    return DataSource(dataset, args.root, negatives=args.negatives)


def cmd_methods(args) -> int:
    """Lists the methods, or one method's options (its config's fields) with their types and defaults."""
    if args.name is None:
        for name, cls in METHODS.items():
            summary = " ".join((cls.__doc__ or "").strip().split("\n\n")[0].split())  # the first paragraph
            print(f"{name:<12} {_plain(summary)}")
        print("\n`graphforget methods NAME` lists a method's options (--option KEY=VALUE).")
        return 0
    _check_method(args.name)
    cls = METHODS[args.name]
    print(f"{args.name}: {cls.__name__} with {cls.Config.__name__}{' (needs fit)' if cls.needs_fit else ''}")
    fixed = cls.fixed  # fields the method sets itself (SCIF's), refused when given
    for row in describe(cls.Config):
        if row.name not in fixed and row.name not in cls.unread and not _is_progress(row.name):
            print(f"  {row.name} ({row.type}, default {row.default!r})" + (f": {_plain(row.help)}" if row.help else ""))
    if fixed:
        print("Fixed by the method: " + ", ".join(f"{name}={value!r}" for name, value in fixed.items()) + ".")
    if cls.unread:
        print(f"Not read by the method: {cls.unread_advice()}.")
    names = [row.name for row in describe(cls.Config)]
    inherited = {(True, True): "train.* and seed start from the run's own training and seed",
                 (True, False): "train.* start from the run's own training", (False, True): "seed starts from the "
                 "run's seed"}.get((any(name.startswith("train.") for name in names), "seed" in names))
    if inherited:
        print(f"On a run (`unlearn --run`), {inherited}.")
    return 0


def _plain(text: str) -> str:
    """Docstring markup as plain text: ``x`` -> x, :math:`x` -> x in Unicode (:data:`_TEX`), :class:`~a.B` -> B,
    :doc:`/a` -> docs/a.rst."""
    text = re.sub(r":doc:`/?([^`]+)`", r"docs/\1.rst", text)
    text = re.sub(r":math:`([^`]+)`", lambda match: _plain_math(match.group(1)), text)
    text = re.sub(r":\w+:`~?(?:[\w.]*\.)?([^`]+)`", r"\1", text)
    return text.replace("``", "")


#: TeX commands of the methods' docstrings and what ``graphforget methods`` prints for them (it printed the TeX).
_TEX = {"lambda": "λ", "theta": "θ", "phi": "φ", "alpha": "α", "eta": "η", "ell": "ℓ", "Delta": "Δ", "nabla": "∇",
        "langle": "⟨", "rangle": "⟩", "lVert": "‖", "rVert": "‖", "le": "≤", "setminus": "∖", "top": "ᵀ",
        "max": "max", ",": ""}


def _plain_math(tex: str) -> str:
    """A :math: formula in Unicode: ``\\hat\\theta`` -> θ̂, ``\\mathbf{H}^{(0)}`` -> H^(0), ``^2`` -> ²."""
    tex = re.sub(r"\\(?:mathbf|mathcal|boldsymbol)\s*", "", tex)
    tex = re.sub(r"\\hat\s*(\\[A-Za-z]+|\w)", lambda match: match.group(1) + "\u0302", tex)
    # a delimiter hugs what it encloses, as TeX reads no space after a control word: "\lVert g\rVert" is ‖g‖
    tex = re.sub(r"\\(langle|lVert)\s*", lambda match: _TEX[match.group(1)], tex)
    tex = re.sub(r"\s*\\(rangle|rVert)", lambda match: _TEX[match.group(1)], tex)
    tex = re.sub(r"\\([A-Za-z]+|,)", lambda match: _TEX.get(match.group(1), match.group(1)), tex)
    return tex.replace("^ᵀ", "ᵀ").replace("^2", "²").replace("{", "").replace("}", "")


def _row(model: str, method: str, metrics: dict, complete: dict | None, seconds: float,
         fit_seconds: float | None = None) -> dict:
    fit = "" if fit_seconds is None else f" (+{fit_seconds:.2f} fit)"
    row = {"model": model, "method": method, "seconds": f"{seconds:.2f}{fit}"}
    row.update({k: _fmt(metrics.get(k)) for k in AUC_KEYS})
    row["completeness"] = "-" if complete is None else " / ".join(_fmt(complete[k], pct=True) for k in AUC_KEYS)
    # The method's own acceptance test (IFRU, SCIF, UnlearnRec); "-" where it has none.
    trusted = cast("dict[bool | None, str]", {True: "yes", False: "NO"})  # typeshed: get() takes the key type only
    row["trusted"] = trusted.get((metrics.get("info") or {}).get("trusted"), "-")
    return row


def _noise_note(model: str, result: dict, test) -> str | None:
    """A note when Retrain moved AUC_0 by less than the standard error of an AUC on the test pairs: the attack
    barely hurt the model, and completeness, a ratio to that change, is noise."""
    labels = test[EDGE].edge_label
    positive = int((labels > 0.5).sum())
    original, retrain = result["original"]["auc_0"], result["methods"]["retrain"]["auc_0"]
    error = auc_standard_error(original, positive, labels.numel() - positive)
    if abs(retrain - original) >= error:
        return None
    return (f"note ({model}): Retrain moves AUC_0 by {retrain - original:+.4f}, less than the standard error of an "
            f"AUC on these {labels.numel()} test pairs ({error:.4f}): the attack barely hurt this model, so its "
            f"completeness figures are noise.")


def _plot(results: list[dict]):
    """AUC_0/1/2 of every model and method as grouped bars (a matplotlib ``Figure``); ``None`` without matplotlib.

    The axis is zoomed on the Original-Retrain gap (the interesting range); bars beyond it are cut and labelled
    with their value: one above it reaches the top, one below it has no height (a stub a third of the way up stood
    above in-range bars of higher values).
    """
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return None
    fig = Figure(figsize=(6.5 * len(results), 3.8), layout="constrained")
    axes = fig.subplots(1, len(results), squeeze=False)[0]
    for ax, result in zip(axes, results):
        entries = [("original", result["original"])] + list(result["methods"].items())
        anchors = [m[k] for m in (result["original"], result["methods"]["retrain"]) for k in AUC_KEYS
                   if m.get(k) is not None]
        gap = max(max(anchors) - min(anchors), 0.002) if anchors else 0.5
        low, high = (min(anchors) - 2 * gap, max(anchors) + 2 * gap) if anchors else (0.0, 1.0)
        width = 0.8 / len(entries)
        for j, (name, metrics) in enumerate(entries):
            xs = [i + (j - (len(entries) - 1) / 2) * width for i in range(len(AUC_KEYS))]
            values = [metrics.get(k) if metrics.get(k) is not None else float("nan") for k in AUC_KEYS]
            shown = [v if low <= v <= high or v != v else min(max(v, low), high) for v in values]
            bars = ax.bar(xs, [v - low for v in shown], width, bottom=low, label=name)
            for bar, value, x in zip(bars, values, xs):
                if not low <= value <= high:  # cut by the zoom: hatched, labelled with the value
                    bar.set_hatch("///")
                    ax.text(x, bar.get_y() + bar.get_height() + 0.01 * (high - low), f"{value:.3f}", rotation=90,
                            ha="center", va="bottom", fontsize="x-small")
        ax.set_ylim(low, high)
        ax.set_xticks(range(len(AUC_KEYS)), [f"AUC$_{k[-1]}$" for k in AUC_KEYS])
        ax.set_title(f"{result['model']} on {result['dataset']}, {result['request_edges']} flipped edges")
        ax.set_ylabel("test AUC")
        ax.legend(fontsize="small", loc="center left", bbox_to_anchor=(1.0, 0.5))
    return fig


# --- the deletion workflow: fit, forget, verify (graphforget.workflow, graphforget.runs) ---------

def _new_run_dir(out: str, run: str | None = None) -> Path:
    """A command's ``--out``: a directory that does not exist yet or is empty (outputs are never overwritten),
    checked as :func:`_check_out_dir` does."""
    path = _check_out_dir(out, run)
    try:
        refuse_taken(path, f"--out {out}")
    except FileExistsError as error:
        raise UsageError(f"graphforget: error: {error}") from None
    return path


def _publish(out: Path, files: dict) -> list[Path]:
    """Publishes ``out`` whole (:func:`~graphforget.runs.publish`): ``files`` maps each file's name to a function
    that writes it (atomically, so fsync-ed) at the path it is given. Returns the final paths."""
    def write_all(tmp: Path) -> None:
        for name, write in files.items():
            write(tmp / name)
    with _exists_is_usage_error():
        final = publish(out, write_all)
    return [final / name for name in files]


@contextlib.contextmanager
def _exists_is_usage_error():
    """A run directory that appeared while the command worked (another process) is a usage error too."""
    try:
        yield
    except FileExistsError as error:
        raise UsageError(f"graphforget: error: {error}") from error


@contextlib.contextmanager
def _comma_hint(args):
    """An unknown id of ``--users`` or ``--items`` given with a comma says that the list splits there: the run's user
    'Smith, J', given as --users 'Smith, J', was read as 'Smith' and 'J', and the error printed them joined again."""
    flag, text = ("--users", args.users) if args.users is not None else ("--items", args.items)
    try:
        yield
    except ValueError as error:
        if text is None or ", " not in text or not str(error).startswith("unknown "):  # "1,99999" is a plain list
            raise
        raise ValueError(f"{error}; {flag} splits at commas: quote an id that holds one ({flag} '\"Smith, J\"')") \
            from error


def _run_dir(run: str) -> Path:
    """``--run``: a directory holding ``run.json`` (checked before any work)."""
    path = Path(run)
    if (path / "run.json").is_file():
        return path
    held = ("a `graphforget bench` or `demo` output (results.json)" if (path / "results.json").is_file() else
            "a `graphforget train` or `unlearn` output (metrics.json), on a protocol's data"
            if (path / "metrics.json").is_file() else None)
    raise UsageError(f"graphforget: error: --run {run} is not a run directory (no run.json; make one with "
                     f"`graphforget fit`)" + (f": it holds {held}" if held else ""))


def _id_list(text: str, flag: str) -> list[str]:
    """``"4711, 42"`` -> ``["4711", "42"]``, each line read as a CSV line (``'"Smith, J",u2'`` holds the id
    ``Smith, J``, as ``fit`` read it from a CSV file; lines, as ``$(cut -f1 ids.txt)`` gives them, are separators too:
    they had failed in csv's reader with a traceback); an empty entry is an error."""
    # lines end at \n, \r\n or \r alone, as fit's CSV reader has them: str.splitlines also breaks at U+0085 and
    # U+2028, which ids may hold ('Dan\x85Smith' forgot the users 'Dan' and 'Smith')
    lines = re.split(r"\r\n|\r|\n", text)
    try:  # ASCII blanks only, as fit read the ids: 'a' + U+00A0 had matched user 'a'
        ids = [stripped_id(part) for row in csv.reader(lines, skipinitialspace=True) for part in row]
    except ValueError as error:
        raise UsageError(f"graphforget: error: {flag}: {error}") from None
    if not ids or not all(ids):
        raise UsageError(f"graphforget: error: {flag} takes ids separated by commas or lines, got {text!r}: an empty "
                         "id (a comma or a line too many?)")
    return ids


#: The hyper-parameter flags of ``train`` and ``fit`` (their ``args`` names), by the preset's field each changes.
_HPARAM_FLAGS = {"embedding_dim": "embedding_dim", "num_layers": "layers", "l2": "l2", "train.lr": "lr",
                 "train.epochs": "epochs", "train.batch_size": "batch_size", "train.patience": "patience"}


def _hparam_changes(args, preset: Hyperparameters) -> dict:
    """The hyper-parameter flags given, as changes to ``preset``, each checked before any data is read.

    Raises:
        UsageError: naming the flag whose value the preset's checks refuse.
    """
    changes = {field: getattr(args, name) for field, name in _HPARAM_FLAGS.items() if getattr(args, name) is not None}
    # flags nothing reads, else recorded with the run and nothing of them in the model
    unread = {"num_layers": "MF has no layers"} if preset.model == "mf" else {}
    if preset.train.optimizer == "lbfgs":  # full batch, to stationarity
        unread.update(dict.fromkeys((f"train.{name}" for name in preset.train.unread_fields()),
                                    "--training stationary trains by full-batch L-BFGS"))
    for field in (field for field in unread if field in changes):
        raise UsageError(f"graphforget: error: --{_HPARAM_FLAGS[field].replace('_', '-')} is not read: {unread[field]}")
    _with_flags(preset, {"--" + _HPARAM_FLAGS[field].replace("_", "-"): (field, value)
                         for field, value in changes.items()})
    return changes


def cmd_fit(args) -> int:
    """Trains a model on a data file and writes a fit run."""
    from .workflow import fit_on_file
    out = _new_run_dir(args.out)
    if not Path(args.data).exists():
        raise UsageError(f"graphforget: error: --data {args.data} does not exist")
    if args.format == "csv" and not (args.user_col and args.item_col):
        raise UsageError("graphforget: error: --format csv needs --user-col and --item-col")
    changes = _hparam_changes(args, default_hparams(args.model, "synthetic"))
    with _exists_is_usage_error():
        result = fit_on_file(args.data, args.format, out=out, user_col=args.user_col, item_col=args.item_col,
                             label_col=args.label_col, duplicates=args.duplicates, delimiter=args.delimiter,
                             encoding=args.encoding,
                             threshold=args.threshold, negatives=args.negatives, model=args.model, hparams=changes,
                             seed=args.seed, device=args.device, progress=_bars(args))
    m = result.metrics
    print(f"{args.model}: {_count(m['train_interactions'], 'interaction')} of {_count(m['users'], 'user')} and "
          f"{_count(m['items'], 'item')} ({_count(m['train_edges'], 'training pair')}); "
          f"{_count(m['epochs'], 'epoch')} in {m['train_seconds']:.1f}s; "
          f"val AUC {_fmt(m['val_auc'])}, test AUC {_fmt(m['test_auc'])}")
    if m["users_left_out"] or m["items_left_out"]:
        print(f"left out: {_count(m['users_left_out'], 'user')} and {_count(m['items_left_out'], 'item')} of the file, "
              "every pair of theirs had gone to validation or test, and is left out with them: the model has no row "
              "for them, and no held-out pair scores one")
    print(f"wrote run {result.path}")
    return 0


def _request_args(args, run) -> dict:
    """``users``/``items``/``edges`` of ``forget`` from its flags (an ``--edges`` file is read here, a header line
    told from a pair by the raw ids of ``run``, a loaded run)."""
    from .workflow import read_edges_file
    if args.encoding != "utf-8" and args.edges is None:
        raise UsageError("graphforget: error: --encoding is the --edges file's: ids on the command line are text")
    if args.users is not None:
        return {"users": _id_list(args.users, "--users")}
    if args.items is not None:
        return {"items": _id_list(args.items, "--items")}
    return {"edges": read_edges_file(args.edges, run, args.encoding)}


def cmd_forget(args) -> int:
    """Forgets users, items or edges of a run; writes the new run with its lineage and audit line."""
    from .workflow import check_method, forget
    out = _new_run_dir(args.out)
    run: Path | Run  # loaded below for an edges file
    run = _run_dir(args.run)
    try:
        check_method(args.method)
    except ValueError as error:
        raise UsageError(f"graphforget: error: {error}") from error
    options = _options(args.method, args.option)
    if args.edges is not None:  # loaded once: its raw ids tell an edges file's header line from a pair
        run = load_run(run)
    request = _request_args(args, run)
    with _exists_is_usage_error(), _comma_hint(args):
        done = forget(run, out=out, **request, local_ids=args.local_ids, method=args.method, options=options,
                      seed=args.seed, allow_untrusted=args.allow_untrusted, device=args.device,
                      progress=_bars(args))
    line, report = done.audit, done.report
    trust = {True: "trusted", False: "NOT TRUSTED", None: "no acceptance test"}[line["trusted"]]
    if done.request.edges.size(1) == 0:  # held-out pairs only: no method ran
        trust = "no training edge: the model is kept"
    heldout = line["request"]["heldout_pairs"]
    dropped = f"; dropped {_count(heldout, 'validation or test pair', 'validation and test pairs')}" if heldout else ""
    # UnlearnRec pre-trains its encoder for every request here: the unlearning call's seconds alone hid most of it
    fitted = f" after {line['fit_seconds']:.2f}s of fit()" if line.get("fit_seconds") else ""
    print(f"{args.method}: forgot {_forgotten(done.request)} in {line['seconds']:.2f}s{fitted} ({trust}){dropped}")
    metrics = json.loads((done.path / "run.json").read_text())["metrics"]  # a trusted step may still cost utility
    print(f"test AUC {_fmt(metrics['test_auc'])} (before {_fmt(metrics['parent_test_auc'])})")
    if report is not None:
        print(f"verification: P(requested) {_fmt(report.request_probability)} vs P(non-members) "
              f"{_fmt(report.non_member_probability)}, MI-BF {_fmt(report.mi_bf)}, MIA AUC {_fmt(report.mia_auc)}"
              f"{'' if report.mia_auc_interval is None else ' ' + interval_text(report.mia_auc_interval)} (before "
              f"{_fmt(report.before_mia_auc)})")
        _warn_flagged(report.to_dict(), f"graphforget verify --run {done.path} --retrain")
    else:
        print(f"verification: none ({line['verification_error']})")
    _say_untrusted(done.untrusted_before)
    lines = done.path.joinpath("audit.jsonl").read_text().count("\n")
    print(f"wrote run {done.path} (lineage removed {_count(line['removed_edges'], 'edge')}; audit.jsonl has "
          f"{_count(lines, 'line')})")
    return 0


def _say_untrusted(runs: list[str]) -> None:
    """One line for each run of a lineage whose request was published untrusted."""
    for untrusted in runs:
        print(f"NOT TRUSTED: the request of {untrusted} was published untrusted (--allow-untrusted): its edges are "
              "gone from the data, but its model may still hold them; forget them again from the run before it, or "
              "forget the next request with --method retrain")


def cmd_verify(args) -> int:
    """The forgetting report of a run's lineage; JSON to ``--out`` (a run is never modified)."""
    from .workflow import verify_run
    run = _run_dir(args.run)
    out = _check_out_file(args.out) if args.out is not None else None
    if args.retrains != 1 and not args.retrain:
        raise UsageError("graphforget verify: error: --retrains is read with --retrain only")
    report = verify_run(run, retrain=args.retrain, seed=args.seed, device=args.device, progress=_bars(args),
                        retrains=args.retrains)
    print(f"{_count(report['removed_edges'], 'edge')} removed by {_count(report['requests'], 'request')} in "
          f"{_count(len(report['lineage']), 'run')}")
    _say_untrusted(report["untrusted_requests"])
    for line in report["parents_elsewhere"]:
        print(f"READ ELSEWHERE: {line}")
    print(report["table"])
    _warn_flagged(report["report"], None if args.retrain else f"graphforget verify --run {run} --retrain")
    if report["retrain_seconds"] is not None:
        print(f"reference: {_count(report['retrains'], 'Retrain')} from the lineage's root in "
              f"{report['retrain_seconds']:.1f}s")
    if out is not None:
        _write_new(out, {key: value for key, value in report.items() if key != "table"})
        print(f"wrote {out}")
    figures = report["report"]
    failed = bool(report["untrusted_requests"] or report["parents_elsewhere"] or figures["over_forgotten"]
                  or figures["unchanged"] or figures["under_forgotten"] or figures["below_reference"])
    return 1 if args.strict and failed else 0


def _warn_flagged(figures: dict, retrain_command: str | None) -> None:
    """A line when the verification finds the request over-forgotten (``ForgettingReport.over_forgotten``), the
    model scoring it exactly as before (``unchanged``: a method that changed nothing, with no test to say so), or,
    beside a Retrain, less or more forgotten than by it (``under_forgotten``, ``below_reference``)."""
    if figures.get("under_forgotten"):
        print(f"UNDER-FORGOTTEN: the attack tells the removed edges from their matched non-members better than an "
              f"exact deletion would (MIA AUC {figures['mia_auc']:.3f} {interval_text(figures['mia_auc_interval'])}, "
              f"above {figures['reference_auc_ceiling']:.3f}, the most a Retrain reaches at 95%; the Retrain here: "
              f"{figures['reference']['mia_auc']:.3f}): its scores still set them apart, where a retrained model's "
              "would not; forget the next request with --method retrain (a new model of what the lineage kept), or "
              "the requests again from the lineage's root with another method")
    if figures.get("below_reference"):
        print(f"OVER-FORGOTTEN beside the Retrain: the removed edges score below their matched non-members more "
              f"than an exact deletion's would (MIA AUC {figures['mia_auc']:.3f} "
              f"{interval_text(figures['mia_auc_interval'])}, below {figures['reference_auc_floor']:.3f}, the least a "
              f"Retrain reaches at 95%; the Retrain here: "
              f"{figures['reference']['mia_auc']:.3f}): reading the scores the other way, an attacker can tell which "
              "were removed; forget the next request with --method retrain, or the requests again from the lineage's "
              "root with another method")
    if figures["unchanged"]:
        print("NOTHING FORGOTTEN: the model scores the removed edges and their matched non-members exactly as the "
              "model before the deletion does: the edges are gone from the data, not from the model; forget them again "
              "from the run before it with another method or options (--method retrain always forgets)")
    if not figures["over_forgotten"]:
        return
    hint = f"; `{retrain_command}` shows an exact deletion's figures" if retrain_command else ""
    # a share of votes: a user or item withdrawn whole is one, its interactions many (one stripped of them, none)
    print(f"OVER-FORGOTTEN: {figures['below_match']:.0%} of the request's votes score below their matched "
          f"non-members (sign test p = {p_value_text(figures['over_forgetting_p'])}): comparing a user's items, an "
          f"attacker can tell which were removed (an exact deletion scores poisoned or mislabelled edges so too){hint}")


def _add_workflow_commands(sub) -> None:
    """The parsers of ``fit``, ``forget`` and ``verify``."""
    from .workflow import FIT_MODELS
    p = sub.add_parser("fit", help="train a model on your own data file (writes a run)",
                       description="Train on a data file: binarise ratings, sample negatives for implicit "
                                   "feedback, split off validation (and test) pairs, write a run directory.")
    _data_file_flags(p, required=True)
    p.add_argument("--negatives", type=_non_negative, default=0,
                   help="sampled non-interactions per positive pair (label 1; every pair of implicit feedback, which "
                        "needs them; default: 0)")
    p.add_argument("--model", type=_registered_model, default="mf",
                   help=f"recommender: {', '.join(FIT_MODELS)}, {_YOUR_MODEL} (default: mf)")
    _hyperparameters(p, training=False)
    p.add_argument("--seed", type=_seed, default=0, help="seed of negatives, split, model and batches (default: 0)")
    p.add_argument("--out", type=_path, required=True, help="the new run directory (new, or an empty directory)")
    _common(p, data=False)
    p.set_defaults(func=cmd_fit)

    p = sub.add_parser("forget", help="forget users, items or edges of a run (writes a new run)",
                       description="Forget users, items or edges of a run with one method into a new run (model, "
                                   "remaining graph, lineage, audit log, and a record of what it forgot for verify: "
                                   "serve model.pt, delete a lineage whole once verified); the run is not modified.")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--users", metavar="ID[,ID...]", help="users whose every training edge is forgotten (CSV lines: "
                      "'\"Smith, J\",u2'; an id that starts with '-' after '=': --users=-u7)")
    what.add_argument("--items", metavar="ID[,ID...]", help="items whose every training edge is forgotten (as --users)")
    what.add_argument("--edges", type=_path, metavar="FILE", help="a file of 'user item' lines (observed interactions: "
                      "training edges are unlearned, validation and test pairs dropped); a first line of column "
                      "names such as 'user,item' or 'userId movieId' is skipped unless they are ids of the run, and "
                      "'#' starts a comment at a line's start or after a space (quote an id that starts with it)")
    p.add_argument("--encoding", default="utf-8", help="the --edges file's text encoding (default utf-8; e.g. latin-1)")
    p.add_argument("--local-ids", action="store_true", help="ids are the run's local ids, not the data file's")
    p.add_argument("--run", type=_path, required=True, help="the latest run of a lineage (of fit or forget; two "
                   "forgets from one run are two branches, each keeping the other's data: share a ForgetStream)")
    p.add_argument("--method", required=True, help="ifru, scif, retrain, finetune or unlearnrec")
    p.add_argument("--option", action="append", metavar="KEY=VALUE",
                   help="a field of the method's config, repeatable (`graphforget methods NAME` lists them)")
    p.add_argument("--seed", type=_seed, help="seed of the method, its training and the verification (default: an "
                   "--option seed, else the run's)")
    p.add_argument("--allow-untrusted", action="store_true",
                   help="write the run even when the method does not trust its result (recorded in the audit)")
    p.add_argument("--out", type=_path, required=True, help="the new run directory (new, or an empty directory)")
    _common(p, data=False)
    p.set_defaults(func=cmd_forget)
    _add_verify_command(sub)


def _add_verify_command(sub) -> None:
    """The parser of ``verify``."""
    p = sub.add_parser("verify", help="forgetting report of a run's lineage",
                       description="Compare the removed edges with matched non-members: probabilities, MI-BF, "
                                   "MI-NG and a membership-inference attack AUC, optionally beside a Retrain.")
    p.add_argument("--run", type=_path, required=True, help="a run made by forget")
    p.add_argument("--retrain", action="store_true", help="also retrain from the lineage's root as a reference")
    p.add_argument("--retrains", type=_positive, default=1,
                   help="with --retrain, this many Retrains from seeds SEED, SEED+1, ...: the exact deletion's range "
                        "spans them all, for a model whose generalisation moves with the training seed (default: 1)")
    p.add_argument("--seed", type=_seed,
                   help="seed of the matching, the attack and the Retrain (default: the one the run's forget used)")
    p.add_argument("--out", type=_path, help="write the report as JSON to this file (outside the run)")
    p.add_argument("--strict", action="store_true",
                   help="exit 1 when a request of the lineage was published untrusted, a parent run was read at "
                        "its recorded path, not beside its child (a copy gone or damaged), the deletion is over-"
                        "forgotten, nothing was forgotten (scored as before), or with --retrain less or more than "
                        "the Retrain forgot (attack AUCs); a test that cannot tell (few votes or edges) does not fail")
    _common(p, data=False)
    p.set_defaults(func=cmd_verify)


def _registered_model(name: str) -> str:
    """``--model``: a registered model's name (:func:`~graphforget.models.registered_model`)."""
    try:
        registered_model(name)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error
    return name


def _one_character(text: str) -> str:
    """``--delimiter``: one character; ``\\t`` (as a shell passes it) or ``tab`` is a tab."""
    text = {"\\t": "\t", "tab": "\t"}.get(text, text)
    if len(text) != 1:
        raise argparse.ArgumentTypeError(f"expected one character (or \\t for a tab), got {text!r}")
    return text


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text}")
    return value


def _path(text: str) -> str:
    """A path flag's value with ``~`` expanded, as a shell would have, once for every command: Python's subprocess
    and config files pass it as written, and only some commands expanded it (``evaluate --run "~/r"`` found no run
    that ``train`` wrote)."""
    return os.path.expanduser(text)


def _directory(text: str) -> str:
    """A ``--root``: an empty one read the data from $GRAPHFORGET_DATA but recorded the working directory."""
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a directory, got an empty path")
    return text


# --- the parser ---------------------------------------------------------------------------------

def _train_run_flags(parser) -> None:
    """The flags of the commands that rebuild a ``train`` run's data: ``--root`` for data that moved, and the common."""
    parser.add_argument("--root", type=_directory, help="the data directory of a `train` run whose recorded one moved "
                        "(default: the run's, then $GRAPHFORGET_DATA, then ../shared/data; the run's fingerprint "
                        "checks the data)")
    _common(parser, data=False)


def _common(parser, data: bool = True) -> None:
    if data:
        parser.add_argument("--dataset", choices=DATASET_NAMES, default="ml-100k", help="dataset (default: ml-100k)")
        parser.add_argument("--root", type=_directory,
                            help="data directory (default: $GRAPHFORGET_DATA, then ../shared/data)")
        parser.add_argument("--attack-ratio", type=_ratio, default=0.02,
                            help="fraction of training labels flipped, the request to unlearn (default: 0.02)")
        parser.add_argument("--seed", type=_seed, default=0,
                            help="seed of the split, the attack and the model (default: 0)")
    parser.add_argument("--device", type=_device, default="cpu", help="torch device, e.g. cuda (default: cpu)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars (they show on a terminal only)")


def _hyperparameters(parser, training: bool) -> None:
    """The model's and training's flags of ``train`` and ``fit`` (unset: the preset's value); ``training``: whether
    the command is ``train``, which has ``--training`` (whose stationary preset has other defaults) and trains SGL and
    SimGCL (``fit`` refuses them: it trains with BCE)."""
    notes = ({"lr": "; sgl/simgcl 0.005", "l2": "; sgl/simgcl 1e-4; stationary: per dataset",
              "epochs": "; sgl/simgcl 50; stationary: 500 L-BFGS iterations", "batch_size": "; sgl/simgcl 8192",
              "patience": "; sgl/simgcl 0"} if training else {})
    parser.add_argument("--embedding-dim", type=_positive, help="embedding size (default: 64)")
    parser.add_argument("--layers", type=int, help="LightGCN layers (default: 2)")
    parser.add_argument("--lr", type=float,
                        help=f"Adam learning rate (default: the preset's, 0.01{notes.get('lr', '')})")
    parser.add_argument("--l2", type=float, help="L2 strength of the summed objective (default: the preset's, MF 5.0, "
                        f"LightGCN 1.0{notes.get('l2', '')})")
    parser.add_argument("--epochs", type=_positive, help="maximum epochs (default: the preset's, 100"
                        f"{notes.get('epochs', '')})")
    parser.add_argument("--batch-size", type=int, help="training pairs per batch, 0 = full batch (default: the "
                        f"preset's, 4096{notes.get('batch_size', '')})")
    parser.add_argument("--patience", type=int, help="early-stopping patience in epochs (default: the preset's, 5"
                        f"{notes.get('patience', '')})")


def _add_train_run_commands(sub) -> None:
    """The parsers of the commands that start from a ``train`` run: ``evaluate``, ``unlearn``, ``pretrain-encoder``."""
    p = sub.add_parser("evaluate", help="the test AUC of a run", description="Print a run's test AUC: AUC_0/1/2 "
                       "of a `train`/`unlearn` run (its data rebuilt), that of a `fit`/`forget` run's held-out pairs.")
    p.add_argument("--run", type=_path, required=True, help="a run of `train`/`unlearn` or of `fit`/`forget`")
    p.add_argument("--out", type=_path, help="also write the metrics to this JSON file")
    _train_run_flags(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("unlearn", help="unlearn the attack request from a trained run",
                       description="Rebuild a run's data and unlearn its flipped edges with one method.")
    p.add_argument("--run", type=_path, required=True, help="a directory holding model.pt (from `graphforget train`)")
    p.add_argument("--method", required=True, help=f"one of: {', '.join(METHODS)}")
    p.add_argument("--option", action="append", metavar="KEY=VALUE",
                   help="a field of the method's config, repeatable (e.g. solver.damping=0.1; "
                        "`graphforget methods NAME` lists them)")
    p.add_argument("--encoder", type=_path, help="unlearnrec: a pre-trained encoder (from `graphforget "
                   "pretrain-encoder` on this run, with the same --option values)")
    p.add_argument("--out", type=_path, required=True,
                   help="output directory: metrics.json, and model.pt where the result is one model of the run's "
                        "class (not SISA's or RecEraser's ensembles)")
    _train_run_flags(p)
    p.set_defaults(func=cmd_unlearn)

    p = sub.add_parser("pretrain-encoder", help="pre-train UnlearnRec's influence encoder for a trained run",
                       description="Pre-train UnlearnRec's influence encoder once for a trained run; "
                                   "`unlearn --method unlearnrec --encoder OUT/encoder.pt` then reuses it.")
    p.add_argument("--run", type=_path, required=True, help="a directory holding model.pt (from `graphforget train`)")
    p.add_argument("--option", action="append", metavar="KEY=VALUE",
                   help="an UnlearnRecConfig field, repeatable (e.g. pretrain_epochs=5)")
    p.add_argument("--out", type=_path, required=True, help="output directory: encoder.pt and pretrain.json")
    _train_run_flags(p)
    p.set_defaults(func=cmd_pretrain_encoder)


def build_parser() -> argparse.ArgumentParser:
    """The ``graphforget`` argument parser."""
    parser = _Parser(prog="graphforget", description="Unlearn training interactions from graph recommenders.")
    parser.add_argument("--version", action="version", version=f"graphforget {__version__}")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads, at most the CPUs (default: 1, measured fastest for these small models "
                             "on a busy 2-core machine; 0: torch's choice)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress messages")
    parser.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    p = sub.add_parser("train", help="train a model on attacked data (the Original)",
                       description="Train a model on data with a fraction of flipped training labels.")
    _common(p)
    p.add_argument("--model", type=_registered_model, default="mf",
                   help=f"recommender: {', '.join(sorted(MODELS))}, {_YOUR_MODEL} (default: mf)")
    _hyperparameters(p, training=True)
    p.add_argument("--training", choices=TRAININGS, default="early-stopped", help=_TRAINING_HELP)
    p.add_argument("--out", type=_path, required=True,
                   help="run directory: model.pt and metrics.json are written there")
    p.set_defaults(func=cmd_train)

    _add_train_run_commands(sub)

    p = sub.add_parser("methods", help="list the unlearning methods, or one method's options",
                       description="List the unlearning methods; with NAME, the method's options (--option KEY=VALUE).")
    p.add_argument("name", nargs="?", help="a method name")
    p.set_defaults(func=cmd_methods)

    _add_demo_parser(sub)
    _add_bench_parser(sub)
    _add_workflow_commands(sub)
    return parser


def _add_demo_parser(sub) -> None:
    """``graphforget demo``."""
    p = sub.add_parser("demo", help="train, unlearn with every method, print a table and save a plot",
                       description="Train on ML-100K (or synthetic data when ML-100K is not found), flip 2% of "
                                   "the training labels, unlearn them with every method and compare.")
    p.add_argument("--dataset", choices=DATASET_NAMES, default=None,
                   help="dataset (default: ml-100k if found, else synthetic)")
    p.add_argument("--root", type=_directory, help="data directory (default: $GRAPHFORGET_DATA, then ../shared/data)")
    p.add_argument("--model", nargs="+", choices=MODEL_NAMES, default=["mf"],
                   help="models to run (default: mf; `--model mf lightgcn` adds LightGCN, about 2 more minutes)")
    p.add_argument("--methods", nargs="+", metavar="METHOD", help=f"methods (default: all: {', '.join(METHODS)})")
    p.add_argument("--attack-ratio", type=_ratio, default=0.02, help="fraction of flipped labels (default: 0.02)")
    p.add_argument("--seed", type=_seed, default=0, help="seed (default: 0)")
    p.add_argument("--out", type=_path, help="output directory (default: a new temporary directory)")
    advanced = p.add_argument_group("advanced")
    advanced.add_argument("--option", action="append", metavar="METHOD:KEY=VALUE",
                          help="a method option, repeatable (e.g. ifru:solver.name=lissa)")
    advanced.add_argument("--epochs", type=_positive, help="maximum training epochs (default: 100; stationary: 500 "
                          "L-BFGS iterations)")
    advanced.add_argument("--training", choices=TRAININGS, default="early-stopped", help=_TRAINING_HELP)
    advanced.add_argument("--embedding-dim", type=_positive, help="embedding size (default: 64)")
    advanced.add_argument("--l2", type=float, help="L2 strength of the objective (default: MF 5.0, LightGCN 1.0, "
                          "stationary: per dataset; "
                          "0 for a model trained the ordinary way)")
    advanced.add_argument("--device", type=_device, default="cpu", help="torch device, e.g. cuda (default: cpu)")
    advanced.add_argument("--quiet", action="store_true", help="no progress bars (they show on a terminal only)")
    p.set_defaults(func=cmd_demo)


def _data_file_flags(p, required: bool) -> None:
    """``--data``, ``--format`` and the file's options, shared by ``fit`` and ``bench``."""
    from .workflow import FORMATS
    p.add_argument("--data", type=_path, required=required, help="the data file (or its folder for movielens/lightgcn)")
    p.add_argument("--format", required=required, choices=FORMATS, help="movielens: u.data; triples: user item "
                   "label; lightgcn: train.txt (+ test.txt as the test set); csv: with a header row")
    p.add_argument("--user-col", help="csv: the user column")
    p.add_argument("--item-col", help="csv: the item column")
    p.add_argument("--label-col", help="csv: the label or rating column (default: every row is an interaction)")
    p.add_argument("--threshold", type=float, help="binarise ratings: label 1 where rating >= T")
    p.add_argument("--duplicates", choices=("raise", "last"), default="raise",
                   help="csv: a (user, item) pair on several rows is an error (raise, default) or its last row is kept "
                        "(last: the latest rating of a file in time order)")
    p.add_argument("--delimiter", type=_one_character, default=",",
                   help="csv: the field separator (default ','; a spreadsheet's export may use ';')")
    p.add_argument("--encoding", default="utf-8",
                   help="csv: the text encoding (default utf-8; e.g. latin-1, cp1252)")


def _add_bench_parser(sub) -> None:
    """``graphforget bench``."""
    p = sub.add_parser("bench", help="benchmark methods under a protocol over seeds (cached, resumable)",
                       description="Run a benchmark protocol: every method and seed is a cell cached under "
                                   "--out/cells by a hash of all its parameters, so a killed run resumes; writes "
                                   "results.json, results.md (mean and 95% interval over seeds) and a plot. "
                                   "Exits 1 when a cell failed (its error is in results.md).")
    from .bench import BENCH_DATASETS, PROTOCOLS
    p.add_argument("--protocol", required=True, choices=tuple(PROTOCOLS),
                   help="attack (IFRU: flipped labels), adversarial (UnlearnRec: adversarial edges, BPR), deletion "
                        "(CURE4Rec: random, core or edge users; or random interactions) or stream (single-user requests)")
    p.add_argument("--dataset", choices=BENCH_DATASETS, help="dataset (default: ml-100k; not with --data)")
    p.add_argument("--root", type=_directory, help="data directory (default: $GRAPHFORGET_DATA, then ../shared/data)")
    _data_file_flags(p, required=False)
    p.add_argument("--negatives", type=_non_negative, help="sampled non-interactions per positive pair (default: 1 "
                   "under BCE on implicit data; 0 for a file with labels, as fit reads it, and under BPR)")
    p.add_argument("--model", type=_registered_model, default="mf", help=f"recommender: {', '.join(sorted(MODELS))}, "
                   f"{_YOUR_MODEL} (default: mf; sgl and simgcl train with BPR)")
    p.add_argument("--methods", nargs="+", metavar="METHOD",
                   help="methods (default: retrain retrain_seed finetune ifru scif sisa receraser; for adversarial: "
                        "unlearnrec instead of scif); retrain always runs; retrain_seed is the noise floor, a Retrain "
                        "from another seed")
    p.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 (default: 3)")
    p.add_argument("--quick", action="store_true", help="the quick profile: a 20-request stream, one deletion ratio")
    p.add_argument("--param", action="append", metavar="KEY=VALUE",
                   help="a protocol parameter, repeatable (e.g. length=100, order=most, ratios=0.01,0.05, "
                        "kinds=random,core, attack_ratio=0.01)")
    p.add_argument("--option", action="append", metavar="METHOD:KEY=VALUE",
                   help="a method option, repeatable (e.g. sisa:num_shards=5)")
    p.add_argument("--epochs", type=_positive, help="maximum training epochs (default: the preset's)")
    p.add_argument("--ssl-weight", type=float, help="the contrastive weight of sgl and simgcl (default: the preset's, "
                   "0.1 and 0.2)")
    p.add_argument("--l2", type=float, help="L2 strength of the objective (default: the preset's; 0 for a model "
                   "trained the ordinary way)")
    p.add_argument("--out", type=_path, required=True, help="output directory (the cell cache lives in OUT/cells)")
    p.add_argument("--device", type=_device, default="cpu", help="torch device, e.g. cuda (default: cpu)")
    p.add_argument("--quiet", action="store_true", help="no progress bars (they show on a terminal only)")
    p.set_defaults(func=cmd_bench)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``graphforget`` and ``python -m graphforget``; returns the exit status."""
    debug, published = "--debug" in (sys.argv[1:] if argv is None else argv), []
    try:
        with _terminated_as_interrupted(), recording_published() as published:
            parser = build_parser()  # inside the try: a Ctrl-C while it is built is one line too
            with _replacing_unencodable(), contextlib.nullcontext() if debug else _one_line_warnings():
                return _run(parser, argv, debug)
    except KeyboardInterrupt as stop:  # Ctrl-C: outputs are published whole (bench keeps its finished cells)
        if debug:
            raise
        terminated = isinstance(stop, Terminated)
        before = f"; {', '.join(map(str, published))} had been published whole before it" if published else ""
        print(f"graphforget: {'terminated' if terminated else 'interrupted'}{before}; no output was left half-written",
              file=sys.stderr)
        return 143 if terminated else 130  # 128 + the signal, as a shell reports it
    except BrokenPipeError:  # `graphforget evaluate ... | head` stopped reading: not an error of ours, no traceback
        with contextlib.suppress(OSError, ValueError):  # else Python's flush at exit fails on the closed pipe again
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, as a shell reports a reader that left


class Terminated(KeyboardInterrupt):
    """SIGTERM, which cron, queues and systemd stop a command with, raised where it lands as Ctrl-C is: the temporary
    outputs are removed on the way out (Python's default ended the process at once, and they stayed for good)."""


@contextlib.contextmanager
def _terminated_as_interrupted():
    """SIGTERM raises :class:`Terminated` while the command runs; afterwards the handler is as it was (a script that
    calls main). Only the main thread can set a handler."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        raise Terminated
    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _replacing_unencodable():
    """stdout and stderr write "?" for what their encoding lacks (a cp1252 console, Windows or redirected, has no λ
    nor a user's ids in Greek: not a failed command); afterwards as they were, for a script that calls main."""
    saved = []
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, ValueError):
            errors = stream.errors
            stream.reconfigure(errors="replace")
            saved.append((stream, errors))
    try:
        yield
    finally:
        for stream, errors in saved:
            with contextlib.suppress(ValueError, OSError):  # a closed stream, a reader that left
                stream.reconfigure(errors=errors)


def _refuse_ranks() -> None:
    """The command line is one process: under ``torchrun`` every rank ran the whole command, and all but the first
    found ``--out`` taken."""
    ranks = os.environ.get("WORLD_SIZE", "1")
    if ranks.strip() not in ("", "1"):
        raise UsageError(f"graphforget: error: the command line runs in one process, and WORLD_SIZE={ranks} "
                         "(torchrun?) would run the whole command once per rank: run it without torchrun, or call the "
                         "Python API from a script under torchrun (graphforget.distributed.init_from_env; see the "
                         "methods page)")


@contextlib.contextmanager
def _log_to_stderr(verbose: bool):
    """The package's log lines on stderr for one command (from INFO with ``-v``); the root logger and the other
    libraries' stay as they were (``logging.basicConfig`` had configured a calling notebook's logging for good, and
    ``-v`` raised every library's to INFO)."""
    logger = logging.getLogger("graphforget")
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    saved = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO if verbose else logging.WARNING)
    logger.propagate = False  # a root handler of the caller's would print each line twice
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]


def _run(parser: argparse.ArgumentParser, argv: list[str] | None, debug: bool) -> int:
    """Parses ``argv`` and runs its command; errors of the input become one line and an exit status. Torch's thread
    count is set for the command (``--threads``) and given back after it, for a script that calls main."""
    threads = torch.get_num_threads()
    try:
        args = parser.parse_args(argv)
        with _log_to_stderr(args.verbose):
            _check_threads(args.threads)
            _refuse_ranks()
            if args.threads:
                torch.set_num_threads(args.threads)
            return args.func(args)
    except UsageError as error:
        if debug:
            raise
        print(_one_line(str(error)), file=sys.stderr)
        return 2
    except BrokenPipeError:  # a reader that left: main's own status, not an error of the input
        raise
    # before ValueError: SISA's UntrainableShard is one too
    except UnlearningFailed as error:  # valid input, but the method could not produce a result it trusts
        if debug:
            raise
        print(f"graphforget: unlearning failed: {_one_line(str(error))}", file=sys.stderr)
        return 1
    except (ValueError, OSError) as error:  # OSError: a missing or forbidden path, a full or read-only disk
        if debug:
            raise
        print(f"graphforget: error: {_one_line(str(error))}", file=sys.stderr)
        return 2
    except (MemoryError, RuntimeError) as error:
        if debug or not _out_of_memory(error):  # another RuntimeError is a defect: its traceback is wanted
            raise
        print(f"graphforget: out of memory: {_one_line(str(error) or 'MemoryError')}: use smaller sizes "
              "(--embedding-dim, --batch-size) or a larger machine", file=sys.stderr)
        return 1
    finally:
        torch.set_num_threads(threads)


def _out_of_memory(error: Exception) -> bool:
    """Whether ``error`` says that memory ran out (torch's allocators raise a RuntimeError, CUDA's a subclass)."""
    text = str(error).lower()
    return isinstance(error, MemoryError) or "out of memory" in text or "can't allocate memory" in text


def _check_threads(threads: int) -> None:
    """``--threads``: 0 (torch's choice) up to the machine's CPUs; more cannot run at once, and far more crashed
    (100000: a segmentation fault in the first large product; 99999999999: 'Overflow when unpacking long')."""
    if threads < 0:
        raise UsageError(f"graphforget: error: --threads must be >= 0, got {threads}")
    cpus = os.cpu_count()
    if cpus is not None and threads > cpus:
        raise UsageError(f"graphforget: error: --threads {threads} is more than this machine's {cpus} CPUs")


def _one_line(text: str) -> str:
    return " ".join(text.split())


@contextlib.contextmanager
def _one_line_warnings():
    """Warnings as one line each (``graphforget: warning: ...``), not Python's source path and line; restored after."""
    saved = warnings.formatwarning
    warnings.formatwarning = lambda message, *_, **__: f"graphforget: warning: {_one_line(str(message))}\n"
    try:
        yield
    finally:
        warnings.formatwarning = saved


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
