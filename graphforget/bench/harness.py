"""The benchmark harness: cells of a protocol over methods and seeds, cached, aggregated and reported."""
from __future__ import annotations

import functools
import json
import logging
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable, Sequence, cast

import torch
from tqdm.auto import tqdm

from ..clock import Stopwatch
from ..config import is_integer, is_seed
from ..distributed import RanksDisagree, agreed, from_rank_zero, rank_and_size
from ..io import to_jsonable
from ..presets import PRESET_DATASETS, Hyperparameters, default_hparams
from ..train import TrainConfig
from ..unlearn import METHODS, NotFittedError, UnlearningFailed, method_config
from ..unlearn.registry import refuse_stray_options
from .cache import Cell, CellCache
from .data import DataSource
from .protocols import PROTOCOLS, ProtocolError
from .setting import BENCH_METHODS, MethodUnsupported, Setting, Workspace, naming_warnings, resolve_method
from .stats import mean_interval

__all__ = ["BenchResult", "run_bench", "bench_hparams", "plan_cells", "aggregate", "parse_params", "DEFAULT_METHODS",
           "ADVERSARIAL_METHODS"]

log = logging.getLogger(__name__)

#: The methods of a run when none are named: the noise floor ``retrain_seed`` (see
#: :data:`~graphforget.bench.setting.BENCH_METHODS`) and every registered method except UnlearnRec, which
#: needs a BPR-trained message-passing backbone (the ``adversarial`` protocol) and cannot continue a stream.
DEFAULT_METHODS = ("retrain", "retrain_seed", "finetune", "ifru", "scif", "sisa", "receraser")
#: The ``adversarial`` protocol's (BPR): UnlearnRec in, SCIF out (it relabels terms, so it needs BCE).
ADVERSARIAL_METHODS = ("retrain", "retrain_seed", "finetune", "ifru", "sisa", "receraser", "unlearnrec")


@dataclass
class BenchResult:
    """What :func:`run_bench` measured.

    Attributes:
        protocol: the run's protocol.
        dataset: the run's dataset.
        model: the run's model.
        params: the protocol's parameters.
        hparams: the model and training every cell used (``run_bench``'s, by default :func:`bench_hparams`).
        cells: one record per cell: ``{"key", "cell", "cached", "result"}`` (the cell's wall time is its
            result's ``wall_seconds``).
        aggregates: per (method, variant): every numeric figure's mean and 95% interval over seeds.
        files: the files written (empty without ``out``).
    """
    protocol: str
    dataset: str
    model: str
    params: dict
    hparams: dict
    cells: list[dict] = field(default_factory=list)
    aggregates: list[dict] = field(default_factory=list)
    files: list[str] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: dict) -> "BenchResult":
        """The result of a ``results.json`` (e.g. to render its tables again with :func:`write_reports`)."""
        return cls(data["protocol"], data["dataset"], data["model"], data["params"], data["hparams"],
                   data["cells"], data["aggregates"])

    def to_dict(self) -> dict:
        return {"protocol": self.protocol, "dataset": self.dataset, "model": self.model, "params": self.params,
                "hparams": self.hparams, "aggregates": self.aggregates, "cells": self.cells}


def bench_hparams(model: str, dataset: str, protocol: str) -> Hyperparameters:
    """The harness's default model and training: :func:`~graphforget.presets.default_hparams` (measured on ML-100K
    where the dataset has no preset of its own); BPR for the ``adversarial`` protocol (UnlearnRec's)."""
    loss = "bpr" if protocol == "adversarial" else None
    return default_hparams(model, dataset if dataset in PRESET_DATASETS else "ml-100k", loss=loss)


#: The most seeds a count may ask for: each trains every method. A count of 2**32 was built as a list before any
#: check, and a larger one failed with an OverflowError.
MAX_SEED_COUNT = 10_000


def _seed_list(seeds: int | Sequence[int]) -> list[int]:
    """``0 .. seeds - 1`` for a count, else the given seeds (e.g. one seed per process of a split run)."""
    refusal = ValueError(f"seeds must be a count in [1, {MAX_SEED_COUNT}] or distinct seeds (integers in [0, 2**32)), "
                         f"got {seeds!r}")
    if is_integer(seeds) and not 1 <= cast(int, seeds) <= MAX_SEED_COUNT:  # a count (is_integer)
        raise refusal
    # True or 2.0, neither a count nor a list, raised a TypeError from list(), as did a 0-d tensor or array
    listed = (list(range(cast(int, seeds))) if is_integer(seeds) else  # a count
              list(seeds) if isinstance(seeds, Iterable) and getattr(seeds, "ndim", 1) != 0 else [])
    # int() made seed 1 of 1.5, "1" or True: it ran under a key saying 1, and no one was told
    if not listed or len(set(listed)) != len(listed) or not all(is_seed(s) for s in listed):
        raise refusal
    return [int(s) for s in listed]


def _methods_to_run(protocol: str, methods: Sequence[str] | None) -> list[str]:
    """``methods`` (the protocol's defaults for ``None``), checked by :func:`_check_run`."""
    if methods is None:
        methods = ADVERSARIAL_METHODS if protocol == "adversarial" else DEFAULT_METHODS
    methods = list(methods)
    if not methods:  # an empty list ran every default method, SISA's and RecEraser's trainings included
        raise ValueError("methods lists none: give at least one, or None for the protocol's defaults")
    twice = sorted({m for m in methods if methods.count(m) > 1})
    if twice:  # one ran, and the run said nothing (run_attack and the demo refuse it)
        raise ValueError(f"methods listed twice: {', '.join(twice)}")
    _check_run(protocol, methods)
    return methods


def _check_run(protocol: str, methods: Sequence[str]) -> None:
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; known: {', '.join(PROTOCOLS)}")
    unknown = [m for m in methods if m not in METHODS and m not in BENCH_METHODS]
    if unknown:
        raise ValueError(f"unknown methods {unknown}; known: {', '.join([*METHODS, *BENCH_METHODS])}")
    shadowed = [m for m in methods if m in METHODS and m in BENCH_METHODS]
    if shadowed:  # the harness's own ran, and the registered method never did
        raise ValueError(f"{', '.join(shadowed)} is the bench's own method and a registered one, which the bench "
                         "would not run: register yours under another name")
    stuck = [m for m in methods
             if protocol == "stream" and not METHODS[resolve_method(m, None, 0)[0]].continues_own_result()]
    if stuck:  # each failed after the first request ("needs fit()")
        raise ValueError(f"{', '.join(stuck)} cannot continue a stream: built on its previous result, it needs fit() "
                         "again (UnlearnRec: its encoder is pre-trained for one model, and each request gives a new "
                         "one); drop it from the stream's methods")


def plan_cells(protocol: str, source: DataSource, hparams: Hyperparameters, methods: Sequence[str], seeds,
               params: dict, options: dict[str, dict], device: str | torch.device = "cpu") -> list[Cell]:
    """The cells of a run, ordered by seed (one :class:`~graphforget.bench.setting.Setting` alive at a time),
    then variant, with Retrain first. The device's type is in every cell's key, as is torch's thread count: a CPU
    cell's seconds are not a GPU's, and the order of a parallel sum is the threads' (IFRU's AUC moved by 2e-5 from 1
    to 2 threads; a run resumed with other threads served the first ones' cells as its own)."""
    spec = PROTOCOLS[protocol]
    variants = spec.variants(params)
    methods = ["retrain"] + [m for m in dict.fromkeys(methods) if m != "retrain"]
    data = source.identity()
    parsed = {method: _parsed_options(method, options.get(method) or {}) for method in methods}
    return [Cell(protocol, source.name, hparams.model, method, seed,
                 {"protocol": variant, "hparams": hparams.as_dict(), "options": parsed[method], "data": data,
                  "device": torch.device(device).type, "threads": torch.get_num_threads()})
            for seed in _seed_list(seeds) for variant in variants for method in methods]


def _parsed_options(method: str, options: dict) -> dict:
    """``options`` by dotted name, each with the value the method's config reads: ``solver.tol="1e-3"`` and
    ``"0.001"`` are one cell, not two (the key held the strings). An option at the config's default is left out:
    ``solver.tol=0.01`` is the default cell (it computed another, named as a change); ``train`` and ``seed`` are the
    run's own (their defaults come from the hyper-parameters and the cell), and stay."""
    name = resolve_method(method, {}, 0)[0]
    config, default = method_config(name, options), method_config(name, {})

    def value(of, key: str):
        return to_jsonable(functools.reduce(getattr, key.split("."), of))
    return {key: value(config, key) for key in _leaves(options)
            if key.split(".")[0] in ("train", "seed") or value(config, key) != value(default, key)}


def _leaves(options: dict, prefix: str = "") -> list[str]:
    """The dotted names of ``options``' values that are no dict (``{"train": {"lr": 1}}``: ``train.lr``)."""
    return [name for key, value in options.items()
            for name in (_leaves(value, f"{prefix}{key}.") if isinstance(value, dict) else [f"{prefix}{key}"])]


def _setting_of(cell: Cell, hparams: Hyperparameters, source: DataSource, device,
                progress: bool = False) -> tuple[str, Callable[[], Setting]]:
    attack = PROTOCOLS[cell.protocol].attack(cell.params["protocol"])
    key = json.dumps([cell.params["data"], cell.seed, attack, cell.params["hparams"]], sort_keys=True)

    def make() -> Setting:
        setting = Setting(source, hparams, cell.seed, attack, device, progress)
        _check_files_unchanged(source, cell.params["data"]["files"])  # after the read: a change before it shows
        return setting
    return key, make


def _check_files_unchanged(source: DataSource, planned: dict) -> None:
    """Raises ``ValueError`` when the data files' sha256 are no longer those the run's cells are keyed by: a file
    replaced during a run was read for the later seeds, and their cells cached under the old file's key (put back, it
    served them as its own)."""
    now = source.identity()["files"]
    if now != planned:
        changed = sorted(name for name in planned.keys() | now.keys() if planned.get(name) != now.get(name))
        raise ValueError(f"{source.name}: the data files changed during the run ({', '.join(changed)}): the cells "
                         "are keyed by their content when the run began; run again on the files as they are now")


def _compute(cell: Cell, workspace: Workspace, hparams, source: DataSource, device, progress: bool) -> dict:
    """Runs one cell; a method that refuses a request (:class:`~graphforget.unlearn.UnlearningFailed`, or a
    ``ValueError`` such as the direct solver's refusal of a large system), or cannot continue from its result, gives
    ``{"error": ...}`` instead of stopping the run (which then never finished); a
    :class:`~graphforget.bench.protocols.ProtocolError` (parameters the data cannot serve) stops it."""
    key, make = _setting_of(cell, hparams, source, device, progress)
    setting = workspace.get(key, make)
    try:  # its warnings name the cell: six alike, of six cells, had named none
        with naming_warnings(cell.label()):
            return PROTOCOLS[cell.protocol].run(setting, cell.method, cell.params["options"], cell.params["protocol"],
                                                progress)
    except (ProtocolError, RanksDisagree):  # the run's, not the cell's: cached, a corrected launch read it back
        raise
    except (UnlearningFailed, NotFittedError, MethodUnsupported, ValueError) as error:
        log.warning("%s failed: %s", cell.label(), error)
        return {"error": f"{type(error).__name__}: {error}"}


def _numeric(result: dict) -> dict[str, float]:
    """The top-level numeric figures of a cell's result (bools and nested values left out)."""
    return {k: v for k, v in result.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def aggregate(records: list[dict], confidence: float = 0.95) -> list[dict]:
    """Per (method, variant): every numeric figure's mean and Student-t interval over the seeds.

    Args:
        records: cell records (``{"cell": identity, "result": ...}``).
        confidence: of the intervals.

    Returns:
        One dict per group, in first-seen order: ``protocol``, ``dataset``, ``model``, ``method``,
        ``variant``, ``seeds``, ``metrics`` (name -> :func:`~graphforget.bench.mean_interval`),
        ``errors`` (cells that failed), ``failures`` (each failed cell's ``{"seed", "error"}``), ``tested`` (cells
        whose method ran its acceptance test) and ``untrusted`` (cells whose result failed it: ``info["trusted"]`` is
        False).
    """
    groups: dict[str, dict] = {}
    for record in records:
        cell = record["cell"]
        variant = cell["params"]["protocol"]
        name = json.dumps([cell["method"], variant], sort_keys=True)
        group = groups.setdefault(name, {key: cell[key] for key in ("protocol", "dataset", "model", "method")}
                                  | {"variant": variant, "seeds": [], "results": []})
        group["seeds"].append(cell["seed"])
        group["results"].append(record["result"])
    out = []
    for group in groups.values():
        results = group.pop("results")
        figures = [_numeric(result) for result in results]
        names = list(dict.fromkeys(k for result in figures for k in result))
        group["metrics"] = {k: mean_interval([r.get(k) for r in figures], confidence) for k in names}
        trusted = [(result.get("info") or {}).get("trusted") for result in results]
        group.update(errors=sum("error" in result for result in results),
                     failures=[{"seed": seed, "error": result["error"]} for seed, result in zip(group["seeds"], results)
                               if "error" in result],
                     tested=sum(flag is not None for flag in trusted), untrusted=sum(flag is False for flag in trusted))
        out.append(group)
    return out


def _options(methods: Sequence[str], options: dict | None, hparams: Hyperparameters, seeds: list[int]) -> dict:
    """Each method's options, checked (with the run's training and seed) before anything is trained."""
    given = {m: o for m, o in (options or {}).items() if o}
    if "retrain" in given:  # its options reached the retrain row, never the reference the others are measured by
        raise ValueError("retrain is every cell's reference, trained as the hyper-parameters say: it takes no "
                         "options; change the training with hparams (the command line's --epochs, --l2)")
    refuse_stray_options(given, methods)
    ready = sorted(m for m in given if not isinstance(given[m], dict))
    if ready:  # a ready config failed as "'IFRUConfig' object is not iterable"
        raise ValueError(f"options for {', '.join(ready)}: the bench takes each method's options as a dict (dotted "
                         "names for nested fields), which key its cells, not a ready config: give the fields you "
                         "change (dataclasses.asdict(config) gives them all)")
    options = {m: dict(given.get(m) or {}) for m in methods}
    for method in ["retrain", *methods]:
        for seed in seeds:
            name, resolved = resolve_method(method, options.get(method), seed)
            config = method_config(name, resolved, train=hparams.train_config(seed), seed=seed)
            METHODS[name].check_objective(hparams.objective(seed))  # SCIF under BPR: every cell failed, after training
            METHODS[name].check_training(config, hparams.objective(seed))
    return options


def run_bench(protocol: str, dataset: str | DataSource = "ml-100k", model: str | None = None,
              methods: Sequence[str] | None = None, seeds: int | Sequence[int] = 3, quick: bool = False,
              out: str | os.PathLike | None = None, *, root=None, params: dict | None = None,
              options: dict[str, dict] | None = None,
              hparams: Hyperparameters | None = None, device: str | torch.device = "cpu", progress: bool = False,
              after_cell: Callable[[Cell, dict], None] | None = None) -> BenchResult:
    """Runs a protocol's cells (cached under ``out/cells``), aggregates them over seeds, writes the reports.

    Args:
        protocol: a name of :data:`~graphforget.bench.PROTOCOLS`.
        dataset: a name of :data:`~graphforget.bench.BENCH_DATASETS`, or a
            :class:`~graphforget.bench.data.DataSource` (e.g. a file).
        model: a name of :data:`graphforget.models.MODELS` (the model of
            :func:`~graphforget.presets.default_hparams`; ``sgl`` and ``simgcl`` train with BPR); default:
            ``hparams``' model, else ``mf``.
        methods: method names (default: :data:`DEFAULT_METHODS`, :data:`ADVERSARIAL_METHODS` for ``adversarial``);
            Retrain is always run, as the reference. A method that cannot run under the protocol's objective (SCIF
            under BPR) is refused before anything is trained; one that refuses the trained model or graph gives its
            cells ``{"error": ...}``.
        seeds: seeds ``0 .. seeds - 1``, or a list of seeds (runs over disjoint seeds can share ``out``'s
            cache, e.g. in parallel processes; a final run over all of them then reads every cell back).
        quick: the quick profile's protocol parameters (a 20-request stream, one deletion ratio; refused for the
            protocols without one).
        out: the output directory: ``results.json``, ``results.md``, ``<protocol>.png`` and the cell cache
            ``cells/``; ``None``: nothing is written and nothing is cached. Under torchrun rank 0 alone writes it.
        root: the data directory of a named ``dataset`` (a :class:`~graphforget.bench.data.DataSource` carries its
            own).
        params: protocol parameters overriding the profile's (e.g. ``{"length": 100}``).
        options: per method, its options (:func:`~graphforget.unlearn.method_config`).
        hparams: the model and training (default: :func:`~graphforget.presets.default_hparams`), its
            ``train.seed`` and ``train.progress`` left at their defaults (the run sets them).
        device: where models are trained.
        progress: a tqdm bar over the cells, over a stream's requests and over each training (under torchrun, give
            it on rank 0 only: every rank given it draws its own bars).
        after_cell: called with each cell and its record once it is done (computed or read back).

    Raises:
        ValueError: an unknown protocol, dataset, method, parameter or option, a parameter of the wrong type, a
            ``root`` that is not read, or an ``out`` that holds files of something else than a bench (its
            ``results.md`` would be overwritten), before anything is trained;
            :class:`~graphforget.bench.protocols.ProtocolError` at the first cell whose data cannot serve the
            parameters (a stream longer than its users).
    """
    methods = _methods_to_run(protocol, methods)
    _check_bench_out(out)
    source, seeds = _data_source(dataset, root), _seed_list(seeds)
    params = _protocol_params(protocol, quick, params)
    hparams = _run_hparams(hparams, model, source.name, protocol)
    source = source.for_loss(hparams.loss)
    options = _options(methods, options, hparams, seeds)
    cells = plan_cells(protocol, source, hparams, methods, seeds, params, options, device)
    result = BenchResult(protocol, source.name, hparams.model, params, hparams.as_dict())
    result.cells = _run_cells(cells, out, hparams, source, device, progress, after_cell)
    result.aggregates = aggregate(result.cells)
    if out is not None and rank_and_size()[0] == 0:
        from .report import write_reports
        result.files = [str(p) for p in write_reports(result, Path(out))]
    return result


def _run_cells(cells: list[Cell], out, hparams: Hyperparameters, source: DataSource, device, progress: bool,
               after_cell: Callable[[Cell, dict], None] | None) -> list[dict]:
    """Each cell's record, read from ``out``'s cache or computed, in order; one :class:`Workspace` for them all."""
    # The whole plan, before any cell: a rank that planned a prefix of rank 0's cells returned after them, and rank 0
    # waited in the next cell's collectives (qa142); one that planned another cell took rank 0's record as its own.
    agreed("run_bench", lambda: None, cells=[cell.key for cell in cells])
    cache, workspace, records = (CellCache(Path(out) / "cells") if out is not None else None), Workspace(), []
    for cell in tqdm(cells, desc=cells[0].protocol if cells else None, disable=not progress):
        records.append(_record(cell, cache, workspace, hparams, source, device, progress))
        if after_cell is not None:
            after_cell(cell, records[-1])
    return records


def _run_hparams(hparams: Hyperparameters | None, model: str | None, dataset: str, protocol: str) -> Hyperparameters:
    """``hparams``, or the bench's for ``model`` (MF by default). Refused: another type, a ``model`` other than
    ``hparams.model`` (the model was ignored), and ``train.seed`` or ``train.progress`` set: the run sets both for
    each cell (``seeds``, ``progress``), so they changed the cells' keys and records and nothing else."""
    if hparams is None:
        return bench_hparams("mf" if model is None else model, dataset, protocol)
    if not isinstance(hparams, Hyperparameters):
        raise ValueError(f"hparams must be a Hyperparameters (graphforget.presets), got {type(hparams).__name__}")
    if model is not None and model != hparams.model:
        raise ValueError(f"model {model!r} and hparams.model {hparams.model!r} differ: give one of them")
    for name in ("seed", "progress"):
        default = getattr(TrainConfig(), name)
        if getattr(hparams.train, name) != default:
            raise ValueError(f"hparams.train.{name} must be left at {default}: the bench sets it for each cell (its "
                             f"seeds and progress arguments), got {getattr(hparams.train, name)!r}")
    return hparams


def _protocol_params(protocol: str, quick: bool, params: dict | None) -> dict:
    """The profile's protocol parameters with ``params`` over them; ``ValueError`` for a parameter the protocol lacks,
    or ``quick`` for a protocol without a quick profile (it was accepted, changed nothing and keyed no cell)."""
    defaults = PROTOCOLS[protocol].defaults(quick)
    if quick and defaults == PROTOCOLS[protocol].defaults(False):
        raise ValueError(f"quick: the {protocol} protocol has no quick profile (it shortens the stream and the "
                         "deletion ratios)")
    unknown = set(params or {}) - set(defaults)
    if unknown:
        raise ValueError(f"unknown {protocol} parameters {sorted(unknown)}; known: {sorted(defaults)}")
    return {**defaults, **(params or {})}


def _data_source(dataset: str | DataSource, root) -> DataSource:
    """``dataset`` as a :class:`~graphforget.bench.data.DataSource`: a name read from ``root``, or a source as given
    (refused with a ``root``, which it ignored)."""
    if isinstance(dataset, DataSource) and root is not None:
        raise ValueError("root is for a named dataset: a DataSource carries its own (DataSource.root)")
    return dataset if isinstance(dataset, DataSource) else DataSource(dataset, None if root is None else str(root))


def _check_bench_out(out) -> None:
    """Raises ``ValueError`` when ``out`` is not a folder, or holds files but neither ``cells/`` nor a bench's
    ``results.json``: not a bench's output (new, empty, or one to resume or, its ``cells/`` deleted, to recompute),
    whose ``results.json`` and ``results.md`` would be overwritten (a folder of one's own notes was)."""
    if out is not None and Path(out).exists() and not Path(out).is_dir():  # else found after the first cell trained
        raise ValueError(f"out {out} is a file, not a folder: give a new or empty directory, or a bench's out to "
                         "resume")
    if out is None or not Path(out).is_dir() or (Path(out) / "cells").is_dir() or _holds_bench_results(Path(out)):
        return
    held = sorted(path.name for path in Path(out).iterdir())
    if held:
        shown = ", ".join(held[:3]) + (", ..." if len(held) > 3 else "")
        raise ValueError(f"out {out} holds {shown} and neither cells/ nor a bench's results.json: it is no bench's "
                         "output, whose reports would overwrite them; give a new or empty directory, or a bench's out "
                         "to resume")


def _holds_bench_results(out: Path) -> bool:
    """Whether ``out/results.json`` is a bench's (:meth:`BenchResult.to_dict`): a bench's output whose ``cells/`` was
    deleted to recompute every cell had been refused as no bench's output."""
    try:
        record = json.loads((out / "results.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(record, dict) and {"protocol", "aggregates", "cells"} <= record.keys()


def _record(cell: Cell, cache: CellCache | None, workspace: Workspace, hparams, source, device, progress) -> dict:
    """A cell's record: read from the cache, else computed (timed) and stored."""
    # Under torchrun, rank 0's cache decides for every rank (the others may have none): a rank computing a cell that
    # the others read back would wait forever in the shard training's collectives.
    found = from_rank_zero(cache.load(cell) if cache is not None else None)
    if found is not None:
        log.info("%s: read from the cache", cell.label())
        return {"key": cell.key, "cell": cell.identity(), "cached": True, "result": found}
    with Stopwatch(device) as watch:
        value = _compute(cell, workspace, hparams, source, device, progress)
    # what a cached read gives back; the day tells a table's reader which code measured it (report._provenance)
    value = to_jsonable({**value, "wall_seconds": watch.seconds, "measured_on": datetime.now(timezone.utc).date()
                         .isoformat()})
    if cache is not None and rank_and_size()[0] == 0:  # every rank had written every cell, and the reports
        cache.store(cell, value)
    return {"key": cell.key, "cell": cell.identity(), "cached": False, "result": value}


def parse_params(protocol: str, given: dict[str, str], quick: bool = False) -> dict:
    """Protocol parameters from strings (a command line's ``KEY=VALUE``), each parsed by the type of its
    default: lists comma-separated (``ratios=0.01,0.05``), numbers as numbers.

    Raises:
        ValueError: an unknown protocol or parameter, or a value of the wrong type.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; known: {', '.join(PROTOCOLS)}")
    defaults, out = PROTOCOLS[protocol].defaults(quick), {}
    for key, text in given.items():
        if key not in defaults:
            raise ValueError(f"unknown {protocol} parameter {key!r}; known: {', '.join(defaults)}")
        default = defaults[key]
        kind = type(default[0]) if isinstance(default, list) and default else type(default)
        try:
            values = [kind(part.strip()) for part in text.split(",") if part.strip()]
        except ValueError:
            raise ValueError(f"{protocol} parameter {key}: cannot read {text!r} as {kind.__name__}") from None
        if not isinstance(default, list) and len(values) != 1:
            raise ValueError(f"{protocol} parameter {key}: expected one {kind.__name__}, got {text!r}")
        out[key] = values if isinstance(default, list) else values[0]
    return out
