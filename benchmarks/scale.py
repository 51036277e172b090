"""Scale: seconds and peak memory of training and unlearning as a Gowalla-like graph grows to 50M edges.

    python benchmarks/scale.py [--sizes 1e5,1e6,1e7,5e7] [--models mf,lightgcn] [--merge] [--quick]

For each size ``E`` the graph is :func:`graphforget.data.power_law_interactions` (seed 0: Gowalla's degree
laws and node proportions, ``E`` implicit interactions) with one sampled negative per interaction
(:func:`graphforget.data.add_negatives`, as ``ifru_scale.py`` trains Gowalla), so ``2E`` labelled edges.
For MF and LightGCN-2 (embedding dim 64, :func:`graphforget.presets.default_hparams`, BCE with their L2),
three phases, each on 1 process and on 2 processes (``graphforget.distributed.launch``, gloo), one torch
thread per process:

* ``train_epoch``: one Adam epoch, batch size 2**20 labelled edges (so LightGCN's whole-graph propagation,
  redone for every batch, is amortised over a million loss terms; ``ceil(2E / 2**20)`` batches), timed by
  :func:`graphforget.train.train` (adjacency build included); 2 processes: ``TrainConfig.data_parallel``.
* ``ifru_one_user``: :class:`~graphforget.unlearn.IFRU` (default config) removing every interaction of the
  user of median degree; ``ifru_0.1pct``: removing a uniformly random 0.1% of the interactions. IFRU runs
  on the model the 1-process epoch trained (one epoch: far from stationary, which is what IFRU's defaults
  are built for; an untrained model would time the same code but with a meaningless solve). Its time is
  the whole ``unlearn`` call. 2 processes: ``IFRUConfig(data_parallel=True)`` under a 2-rank group where
  this checkout's ``IFRUConfig`` has that field; otherwise the cell is null with the reason.

Every cell runs in a fresh subprocess that loads the saved graph (and model), so peaks do not mix.
Memory is ``ru_maxrss`` (resource.getrusage, the process's peak resident set, MiB; 2 processes: the sum
of the ranks' peaks, an upper bound of their joint peak), next to ``sampled_peak_mib``, the largest resident
set of the cell's whole process tree sampled every 0.2 s from /proc (which also kills a cell past
``--memory-cap-gib``). Before a cell runs, its peak and seconds are extrapolated from the smaller sizes
(memory linear in ``E`` through the two largest once a training batch is full, a power law before; time
a power law); a 2-process cell's peak is its size's 1-process peak times the 2-process / 1-process ratio
of a smaller size (twice without one). A cell estimated past the memory cap or ``--cell-timeout`` is
skipped with the reason.
``--quick`` (sizes 1e4, 3e4, batch 4096) runs the 1-process cells in this process and all 2-process cells
of a size in one ``launch``: a smoke test whose peaks mix.

Cost model (``slopes`` in the JSON: the exponent ``b`` of ``seconds ~ E**b`` per line; U + I grows like E):

* ``train_epoch``: the loss terms cost O(E d) per epoch, but every batch also does whole-table work:
  MF's embedding gradients are dense, so zeroing them and Adam's update touch all (U + I) d entries per
  batch, and LightGCN adds an L-layer propagation over the whole graph, O(E d L) forward and backward.
  With ``2E / B`` batches an epoch costs O(E d) + O(E**2 d L / B): linear while one batch holds the graph,
  quadratic beyond (3e6 -> 1e7: exponents 1.3 for MF, 1.4 for LightGCN). On N data-parallel workers
  only the O(E d) terms split; each rank still propagates the whole graph and updates every row, and each
  step all-reduces the whole dense gradient, (U + I) d floats (a ring sends about twice that per worker
  whatever N): the time per step tends to the replicated whole-table work plus an all-reduce as large as
  the model, and each rank holds the whole graph and model (memory N-fold). Measured on 2 processes: no speed-up (on a
  shared 2-core machine, load average 4-6 during the runs, so the 2-process cells are pessimistic).
* ``ifru_*``: the request's region. The solve runs on the region relabelled to its own nodes
  (:class:`graphforget.influence.LocalProblem`), so its curvature products never touch the whole tables.
  MF (receptive field 0): only the request's own rows are solved for, so the solve is tiny (0.01-0.05 s at
  1e7), but each call does O(E) whole-graph work (the remaining graph, masks over every edge, scanning the
  terms, copying the tables): time and memory grow linearly with E for any request. LightGCN-2 (default
  config, no pruning): the rows within 2 hops of the request's endpoints are solved for, over the terms that
  reach them; with Gowalla's hubs the region of one median-degree user already holds half the nodes and most
  terms at 1e6 edges, so a one-user request costs as much as a 0.1% request and both scale like a
  whole-graph solve: O(E d L) per curvature product times the CG iterations, and O(E) memory at about 0.4 KB
  per labelled edge at the margin (terms, their scoring subgraphs and local problems, the remaining graph),
  which is what stops the curve. Data-parallel IFRU on N workers splits the terms of each product N ways
  and all-reduces one vector of |phi| floats per product; with phi covering most rows, that is O((U + I)
  d) per product against O(E d L / N) compute, a win only while E L / N >> U + I, and every rank holds
  the whole graph and selection, so it does not reach larger graphs on one machine. Pruning
  (``IFRUConfig.prune``, the paper's Algorithm 1) is what makes the region local; it is not measured here.
  The ``ifru_*`` cells were measured before the early-stopped Newton steps became IFRU's default; with them a
  0.1% request on the one-epoch MF took 0.92 s at 1e6 and 29.7 s at 1e7 against the one step's 0.39 s and
  12.8 s, and the 1e7 one-user request 1.17 s against 0.93 s (one run each, one after the other in one process).

Where it stopped on the 2-core, 24 GB machine (``stops`` in the JSON): a run with a 20 GiB cap measured
every cell to 1e7 edges (about 40 minutes), LightGCN's IFRU included: a one-user request 122.8 s and
9.5 GiB, a 0.1% request 130.3 s and 11.0 GiB (2 processes: 184.7 s / 16.5 GiB and 124.8 s / 19.4 GiB). Its
1e7 peaks extrapolate to about 42 GiB at 5e7, past the machine. At 5e7 (1.8M users, 2.5M items; 8.3 GiB
with the negatives) an earlier run (MF only, 16 GiB cap) measured MF's epoch, 752 s and 9.1 GiB, and a
one-user IFRU request, 35.8 s and 10.4 GiB, with older IFRU code (at 1e7 that code took 10.6 s against that
run's 4.4 s, and 1.95 s in a later MF-only run at 1e6 and 1e7 after the per-request scans were cut); MF's 2-process epoch was killed at 16 GiB (each rank holds the whole graph) and its 0.1%
request is estimated at 18 GiB. LightGCN's epoch at 5e7 is estimated at 22 minutes (10.7 GiB), past the
cell timeout; the 5e7 entry's skip reasons are that earlier run's estimates.

Writes ``benchmarks/results/scale.json`` and ``scale.png``.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import platform
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from graphforget.clock import Stopwatch
from graphforget.data import EDGE, add_negatives, power_law_interactions, random_edges, user_edges
from graphforget.distributed import gather_results, launch, rank_and_size
from graphforget.io import atomic_write, write_json
from graphforget.models import load_model, save_model
from graphforget.presets import default_hparams
from graphforget.train import TrainConfig, train
from graphforget.unlearn import IFRU, IFRUConfig

sys.path.insert(0, str(Path(__file__).parent))
from common import pyplot  # noqa: E402

RESULTS = Path(__file__).parent / "results"
PHASES = ("train_epoch", "ifru_one_user", "ifru_0.1pct")
PROCS = (1, 2)
BATCH_SIZE = 1 << 20


# -- in a cell's process: one phase -------------------------------------------------------------------

def _peak_mib() -> float:
    """This process's peak resident set so far (``ru_maxrss``, MiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _rss_mib(pid: int | str = "self") -> float:
    """Resident set (MiB) of a process now, 0 when it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024
    except (OSError, StopIteration, ValueError):
        return 0.0


def ifru_data_parallel() -> str | None:
    """``None`` when this checkout's IFRU can run data-parallel, else why not."""
    if "data_parallel" not in {f.name for f in dataclasses.fields(IFRUConfig)}:
        return "IFRUConfig has no data_parallel field in this checkout (data-parallel IFRU not there yet)"
    return None


def _load(spec: dict, trained: bool):
    """The cell's graph, its hyper-parameters and model (the 1-process epoch's when ``trained``)."""
    workdir = Path(spec["workdir"])
    graph = torch.load(workdir / f"graph-{spec['edges']}.pt", weights_only=False)
    hparams = default_hparams(spec["model"], "synthetic")
    if trained:
        model = load_model(workdir / f"{spec['model']}-{spec['edges']}.pt")[0]
    else:
        model = hparams.build_model(graph["user"].num_nodes, graph["item"].num_nodes, seed=0)
    return graph, hparams, model


def run_train(spec: dict) -> dict:
    """One epoch of Adam (data-parallel across the ranks of a group); the 1-process run saves its model."""
    graph, hparams, model = _load(spec, trained=False)
    loaded = _rss_mib()
    parallel = rank_and_size()[1] > 1
    config = TrainConfig(epochs=1, lr=0.01, batch_size=spec["batch_size"], patience=0, data_parallel=parallel)
    result = train(model, graph, hparams.objective(), config)
    if not parallel:
        save_model(model, Path(spec["workdir"]) / f"{spec['model']}-{spec['edges']}.pt")
    return {"seconds": result.seconds, "loaded_mib": loaded, "loss": result.history[-1]["loss"],
            "batches": math.ceil(graph[EDGE].edge_index.size(1) / spec["batch_size"])}


def run_ifru(spec: dict) -> dict:
    """One IFRU request on the trained model (data-parallel across the ranks of a group)."""
    graph, hparams, model = _load(spec, trained=True)
    if spec["phase"] == "ifru_one_user":
        request = user_edges(graph, [spec["median_user"]])
    else:
        request = random_edges(graph, 0.001, seed=0)
    loaded = _rss_mib()
    config = IFRUConfig(data_parallel=True) if rank_and_size()[1] > 1 else IFRUConfig()
    result = IFRU(model, graph, hparams.objective(), config).unlearn(request)
    info = result.info
    solves = info.get("solver") or []
    return {"seconds": result.seconds, "loaded_mib": loaded, "request_edges": request.size(1),
            **{key: info.get(key) for key in ("affected_nodes", "affected_terms", "kept_nodes", "kept_parameters",
                                             "trusted", "reason", "phase_seconds")},
            "solver_iterations": [s.get("iterations") for s in solves]}


def run_spec(spec: dict) -> dict:
    """One phase here (on every rank of a group: the ranks' peaks are gathered)."""
    row = (run_train if spec["phase"] == "train_epoch" else run_ifru)(spec)
    _, size = rank_and_size()
    peaks = gather_results({rank_and_size()[0]: (_peak_mib(), row["loaded_mib"])}, size)
    return {**row, "peak_mib": sum(p for p, _ in peaks), "loaded_mib": sum(m for _, m in peaks),
            "rank_peak_mib": [p for p, _ in peaks]}


def run_specs(specs: list[dict]) -> list[dict]:
    """The phases in order, in this process (1 process) or on every rank (2 processes, one launch)."""
    torch.set_num_threads(1)
    return [run_spec(spec) for spec in specs]


def execute(specs: list[dict], procs: int) -> list[dict]:
    """The phases on ``procs`` processes; each row gets the wall seconds of the whole execution."""
    torch.set_num_threads(1)
    with Stopwatch() as watch:
        rows = run_specs(specs) if procs == 1 else launch(run_specs, procs, specs, threads=1)
    return [{**row, "wall_seconds": watch.seconds} for row in rows]


def generate(edges: int, workdir: Path) -> dict:
    """Draws the graph, adds the negatives, saves it; its sizes and the user of median degree."""
    with Stopwatch() as draw:
        graph = power_law_interactions(edges, seed=0)
    with Stopwatch() as negatives:
        labelled = add_negatives(graph, 1, seed=0)
    degree = torch.bincount(graph[EDGE].edge_index[0], minlength=graph["user"].num_nodes)
    median = int(degree.median())
    torch.save(labelled, workdir / f"graph-{edges}.pt")
    return {"users": graph["user"].num_nodes, "items": graph["item"].num_nodes, "edges": edges,
            "labelled_edges": labelled[EDGE].edge_index.size(1), "median_user": int((degree == median).nonzero()[0]),
            "median_degree": median, "max_user_degree": int(degree.max()),
            "max_item_degree": int(torch.bincount(graph[EDGE].edge_index[1]).max()),
            "generate": {"seconds": draw.seconds, "negatives_seconds": negatives.seconds, "peak_mib": _peak_mib()}}


def child(args) -> None:
    """A cell's subprocess: ``--child JSON`` (a spec, or ``{"generate": E, "workdir": ...}``)."""
    spec = json.loads(args.child)
    if "generate" in spec:
        row = generate(spec["generate"], Path(spec["workdir"]))
    else:
        row = execute([spec], spec["procs"])[0]
    print(json.dumps(row))


# -- the orchestrator ---------------------------------------------------------------------------------

def _tree_rss_mib(root: int) -> float:
    """Resident set (MiB) of ``root`` and all its descendants, read from /proc."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(entry))
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        total += _rss_mib(pid)
        todo.extend(parents.get(pid, []))
    return total


def run_cell(spec: dict, cap_mib: float, timeout: float) -> dict:
    """Runs ``spec`` in a fresh subprocess watched every 0.2 s; killed past ``cap_mib`` or ``timeout``."""
    command = [sys.executable, __file__, "--child", json.dumps(spec)]
    sampled, started, killed = 0.0, time.perf_counter(), None
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(command, stdout=out, stderr=err, text=True, start_new_session=True)
        while proc.poll() is None:
            sampled = max(sampled, _tree_rss_mib(proc.pid))
            elapsed = time.perf_counter() - started
            if sampled > cap_mib or elapsed > timeout:
                killed = (f"killed at {sampled:.0f} MiB (cap {cap_mib:.0f} MiB)" if sampled > cap_mib
                          else f"killed after {elapsed:.0f} s (--cell-timeout)")
                os.killpg(proc.pid, signal.SIGKILL)  # the cell's own process group (its ranks too)
                proc.wait()
                break
            time.sleep(0.2)
        out.seek(0)
        err.seek(0)
        lines = out.read().strip().splitlines()
        if killed or proc.returncode != 0 or not lines:
            reason = killed or f"failed (exit {proc.returncode}): {err.read().strip().splitlines()[-1:]}"
            return {"seconds": None, "peak_mib": None, "skipped": reason, "sampled_peak_mib": sampled}
        return {**json.loads(lines[-1]), "sampled_peak_mib": sampled, "load_average": os.getloadavg()[0]}


def estimate(history: list[tuple[int, dict]], edges: int, saturated: int) -> tuple[float, float] | None:
    """``(peak_mib, seconds)`` at ``edges`` from the measured cells ``[(edges, cell)]`` of smaller sizes.

    Memory is linear in the edges (graph, tables, whole-graph terms) plus a per-batch part that stops
    growing once a batch is full: through the last two points linearly where both have at least
    ``saturated`` edges, else as a power law through them. Seconds: a power law through the last two.
    One point: proportional to the edges.
    """
    points = [(e, c) for e, c in history if c.get("seconds") is not None and e < edges]
    if not points:
        return None
    (e2, c2) = points[-1]
    if len(points) == 1:
        return c2["peak_mib"] * edges / e2, c2["seconds"] * edges / e2
    (e1, c1) = points[-2]
    power = lambda what: c2[what] * (edges / e2) ** (math.log(c2[what] / c1[what]) / math.log(e2 / e1))
    if e1 >= saturated:
        peak = c2["peak_mib"] + (c2["peak_mib"] - c1["peak_mib"]) / (e2 - e1) * (edges - e2)
    else:
        peak = power("peak_mib")
    return peak, power("seconds") if c1["seconds"] > 0 else c2["seconds"] * edges / e2


def skip_reason(results: dict, key: tuple, edges: int, args, one_process: dict | None) -> str | None:
    """Why a cell is not run: estimated past the memory cap or the time limit, or no data-parallel IFRU.

    A 2-process cell is estimated from the 1-process peak of its size times the 2-process / 1-process ratio
    measured at the largest smaller size (twice, each rank holding the whole graph and model, without
    one), other cells from the smaller sizes (:func:`estimate`); the watchdog of :func:`run_cell` still
    kills a cell that outgrows the cap.
    """
    model, phase, procs = key
    if phase != "train_epoch" and procs > 1 and ifru_data_parallel():
        return ifru_data_parallel()
    history = sorted((size["edges"], size["models"][model][phase]) for size in results.values()
                     if model in size.get("models", {}) and size["edges"] < edges)
    if procs > 1 and one_process and one_process.get("peak_mib"):
        ratio, source = procs, f"{procs}x the 1-process peak"
        for _, cells in history:  # the 2-process / 1-process ratio of the largest smaller size measured
            if cells.get(str(procs), {}).get("peak_mib") and cells.get("1", {}).get("peak_mib"):
                ratio = cells[str(procs)]["peak_mib"] / cells["1"]["peak_mib"]
                source = f"the 1-process peak x {ratio:.2f}, the ratio measured at a smaller size"
        guess = (ratio * one_process["peak_mib"], one_process["seconds"])
    else:
        history = [(e, cells[str(procs)]) for e, cells in history if str(procs) in cells]
        # training: a batch is full from batch_size / 2 interactions (two labelled edges each)
        guess = estimate(history, edges, args.batch_size // 2 if phase == "train_epoch" else 0)
        source = "extrapolated from the smaller sizes"
    if guess is None:
        return None
    peak, seconds = guess
    if peak > args.memory_cap_gib * 1024:
        return f"estimated peak {peak:.0f} MiB > cap {args.memory_cap_gib * 1024:.0f} MiB ({source})"
    if seconds > args.cell_timeout:
        return f"estimated {seconds:.0f} s > --cell-timeout {args.cell_timeout:.0f} s ({source})"
    return None


def _spec(model: str, phase: str, procs: int, size: dict, args, workdir: Path) -> dict:
    """A cell's description, as its subprocess receives it (JSON)."""
    return {"model": model, "phase": phase, "procs": procs, "edges": size["edges"], "workdir": str(workdir),
            "batch_size": args.batch_size, "median_user": size["median_user"]}


def measure_size(edges: int, results: dict, args, workdir: Path, before: dict | None = None) -> dict:
    """Every cell of one size, each in a fresh subprocess (``--quick``: in this process / one launch).

    ``before``: this size's entry of an earlier run whose graph and trained models are in ``workdir``
    (``--only-missing``): only its cells without a measurement run again.
    """
    size = before or generate_size(edges, args, workdir)
    if "skipped" in size:
        return size
    size.setdefault("models", {})
    for model in args.models:
        size["models"].setdefault(model, {phase: {} for phase in PHASES})
    if args.quick:
        quick_cells(size, args, workdir)
        return size
    for model in args.models:
        cells = size["models"][model]
        for phase in PHASES:
            for procs in PROCS:
                if cells[phase].get(str(procs), {}).get("seconds") is not None:
                    continue  # measured by the earlier run
                reason = skip_reason(results, (model, phase, procs), edges, args, cells[phase].get("1"))
                if not reason and phase != "train_epoch" and cells["train_epoch"]["1"].get("seconds") is None:
                    reason = "no trained model (the 1-process epoch did not run)"
                spec = _spec(model, phase, procs, size, args, workdir)
                cells[phase][str(procs)] = ({"seconds": None, "peak_mib": None, "skipped": reason} if reason else
                                            run_cell(spec, args.memory_cap_gib * 1024, args.cell_timeout))
                print(edges, model, phase, procs, _brief(cells[phase][str(procs)]), flush=True)
    return size


def generate_size(edges: int, args, workdir: Path) -> dict:
    """The size's graph, drawn and saved (in a subprocess; ``--quick``: here): its entry of the JSON."""
    if args.quick:
        with Stopwatch() as watch:
            size = generate(edges, workdir)
        size["generate"]["wall_seconds"] = watch.seconds
        return size
    size = run_cell({"generate": edges, "workdir": str(workdir)}, args.memory_cap_gib * 1024, args.cell_timeout)
    return {"edges": edges, "skipped": size["skipped"]} if "skipped" in size else size


def quick_cells(size: dict, args, workdir: Path) -> None:
    """``--quick``: the 1-process phases here, all 2-process ones of the size in one launch (peaks mix)."""
    cells = size["models"]
    one = [_spec(model, phase, 1, size, args, workdir) for model in args.models for phase in PHASES]
    for spec, row in zip(one, execute(one, 1)):
        cells[spec["model"]][spec["phase"]]["1"] = row
    two = [_spec(model, phase, 2, size, args, workdir) for model in args.models for phase in PHASES
           if phase == "train_epoch" or not ifru_data_parallel()]
    for spec, row in zip(two, execute(two, 2)):
        cells[spec["model"]][spec["phase"]]["2"] = row
    for model in args.models:
        for phase in PHASES:
            cells[model][phase].setdefault("2", {"seconds": None, "peak_mib": None, "skipped": ifru_data_parallel()})
            print(size["edges"], model, phase, {p: _brief(c) for p, c in cells[model][phase].items()}, flush=True)


def _brief(cell: dict) -> dict:
    """A cell's seconds, peak and skip reason, for the progress lines."""
    return {k: cell.get(k) for k in ("seconds", "peak_mib", "skipped") if cell.get(k) is not None}


# -- the report ---------------------------------------------------------------------------------------

def lines(results: dict):
    """``(model, phase, procs) -> [(edges, cell)]`` over the sizes, measured cells only."""
    out: dict[tuple, list] = {}
    for size in sorted(results.values(), key=lambda s: s["edges"]):
        for model, phases in size.get("models", {}).items():
            for phase, by_procs in phases.items():
                for procs, cell in by_procs.items():
                    if cell.get("seconds") is not None:
                        out.setdefault((model, phase, int(procs)), []).append((size["edges"], cell))
    return out


def slopes(results: dict) -> dict:
    """Least-squares exponents ``b`` of ``seconds ~ E**b`` and ``peak_mib ~ E**b`` per line (>= 2 sizes),
    over all sizes and over the two largest."""
    out = {}
    for (model, phase, procs), points in lines(results).items():
        if len(points) < 2:
            continue
        x = [math.log(e) for e, _ in points]
        row = {}
        for what in ("seconds", "peak_mib"):
            y = [math.log(c[what]) for _, c in points]
            row[what] = _slope(x, y)
            row[f"{what}_last_two"] = (y[-1] - y[-2]) / (x[-1] - x[-2])
        out[f"{model}/{phase}/{procs}p"] = {k: round(v, 3) for k, v in row.items()}
    return out


def _slope(x: list[float], y: list[float]) -> float:
    """Least-squares slope of ``y`` on ``x``."""
    mx, my = sum(x) / len(x), sum(y) / len(y)
    return sum((a - mx) * (b - my) for a, b in zip(x, y)) / sum((a - mx) ** 2 for a in x)


def stops(results: dict) -> dict:
    """Per line (model/phase/process count): the largest size measured and why the next one was not."""
    out = {}
    for size in sorted(results.values(), key=lambda s: s["edges"]):
        for model, phases in size.get("models", {}).items():
            for phase, by_procs in phases.items():
                for procs, cell in by_procs.items():
                    entry = out.setdefault(f"{model}/{phase}/{procs}p", {"last_measured_edges": None})
                    if cell.get("seconds") is not None and "reason" not in entry:
                        entry["last_measured_edges"] = size["edges"]
                    elif cell.get("seconds") is None and "reason" not in entry:
                        entry.update(stopped_at_edges=size["edges"], reason=cell.get("skipped"))
    return out


def cost_model(results: dict, fitted: dict) -> str:
    """The module docstring's cost model with the measured exponents of this run."""
    text = __doc__.split("Cost model", 1)[1].split("Writes ``", 1)[0]
    measured = "; ".join(f"{k}: seconds ~ E^{v['seconds']} (last two sizes E^{v['seconds_last_two']}), "
                         f"peak ~ E^{v['peak_mib']}" for k, v in fitted.items())
    return "Cost model " + " ".join(text.split()) + " Measured: " + (measured or "fewer than two sizes")


def plot(results: dict, path: Path, cap_mib: float) -> None:
    """Seconds and peak MiB against edges (log-log), one line per model/phase/process count; the memory
    cap, and the sizes where no cell ran (dotted)."""
    plt = pyplot()
    if plt is None:
        return
    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    colors = {"train_epoch": "tab:blue", "ifru_one_user": "tab:green", "ifru_0.1pct": "tab:red"}
    for (model, phase, procs), points in sorted(lines(results).items()):
        style = {"color": colors[phase], "linestyle": "-" if model == "lightgcn" else "--",
                 "marker": "o" if procs == 1 else "s", "label": f"{model} {phase} {procs}p"}
        for axis, what in zip(axes, ("seconds", "peak_mib")):
            axis.plot([e for e, _ in points], [c[what] for _, c in points], alpha=1.0 if procs == 1 else 0.6, **style)
    for axis, label in zip(axes, ("seconds", "peak resident memory (MiB)")):
        axis.set(xscale="log", yscale="log", xlabel="interactions E (plus E sampled negatives)", ylabel=label)
        axis.grid(True, which="both", alpha=0.3)
    cap = axes[1].axhline(cap_mib, color="gray", linestyle=":", label=f"memory cap {cap_mib / 1024:.0f} GiB")
    measured = {e for points in lines(results).values() for e, _ in points}
    for size in results.values():
        if size["edges"] not in measured:
            for axis in axes:
                axis.axvline(size["edges"], color="gray", linestyle=":")
            axes[0].annotate(f"{size['edges']:.0e}: no cell fit\n(see stops)", (size["edges"], 0.5),
                             xycoords=("data", "axes fraction"), ha="right", fontsize=7)
    axes[0].legend(fontsize=7, ncol=2)
    axes[1].legend(handles=[cap], fontsize=7, loc="lower right")
    fig.suptitle("Power-law (Gowalla-like) graphs: MF and LightGCN-2, d=64, 1 thread per process")
    fig.tight_layout()
    atomic_write(path, lambda handle: fig.savefig(handle, format="png", dpi=120))


def machine() -> dict:
    """Cores, memory and versions of this machine."""
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 30
    return {"cpus": os.cpu_count(), "memory_gib": round(memory, 1), "torch": torch.__version__,
            "python": platform.python_version(), "platform": platform.platform(),
            "threads_per_process": 1}


def settings(args) -> dict:
    """What was measured, and how."""
    return {"generator": "power_law_interactions(E, seed=0) (Gowalla's degree laws and node proportions)",
            "objective": "BCE, one sampled negative per interaction (add_negatives, seed 0): 2E labelled edges",
            "models": {m: {k: v for k, v in dataclasses.asdict(default_hparams(m, "synthetic")).items()
                           if k != "train"} for m in args.models},  # trained as below, not as the preset
            "batch_size": args.batch_size, "epochs": 1, "lr": 0.01,
            "ifru": "IFRUConfig() defaults on the model trained one epoch by the 1-process cell; 2 processes: "
                    "IFRUConfig(data_parallel=True) under launch(fn, 2)",
            "ifru_data_parallel": ifru_data_parallel() or "available",
            "requests": {"ifru_one_user": "user_edges of the user of median degree",
                         "ifru_0.1pct": "random_edges(graph, 0.001, seed=0) over the interactions"},
            "memory": "peak_mib: ru_maxrss of the cell's process (2 processes: sum over the ranks); "
                      "sampled_peak_mib: the cell's process tree, /proc every 0.2 s",
            "quick": args.quick}


def parse(argv=None):
    """The command line (``--quick`` sets its sizes and batch size)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1e5,1e6,1e7,5e7", help="comma-separated edge counts")
    parser.add_argument("--models", default="mf,lightgcn")
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    parser.add_argument("--memory-cap-gib", type=float, default=12.0)
    parser.add_argument("--cell-timeout", type=float, default=900.0, help="seconds per cell")
    parser.add_argument("--merge", action="store_true",
                        help="keep the other sizes of an existing --out (and, of a size measured again, the "
                             "models that --models leaves out)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where graphs and trained models are kept (default: a temporary folder)")
    parser.add_argument("--only-missing", action="store_true",
                        help="with --merge and --workdir: rerun only the unmeasured cells of the given sizes")
    parser.add_argument("--quick", action="store_true", help="sizes 1e4,3e4, batch 4096, cells in-process")
    parser.add_argument("--out", type=Path, default=RESULTS / "scale.json")
    parser.add_argument("--report", action="store_true", help="only rewrite the JSON and plot of --out")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.batch_size = "1e4,3e4", 4096
    args.sizes = [int(float(s)) for s in args.sizes.split(",")]
    args.started, args.load_average = time.strftime("%Y-%m-%dT%H:%M:%S"), os.getloadavg()
    args.models = args.models.split(",")
    return args


def main(argv=None) -> None:
    """Measures the sizes in order (each size's estimates use the smaller ones), writing after each."""
    args = parse(argv)
    if args.child:
        return child(args)
    previous = json.loads(args.out.read_text()) if (args.merge or args.report) and args.out.is_file() else {}
    results = dict(previous.get("sizes", {}))
    if args.report:
        return write(results, args, previous)
    with contextlib.ExitStack() as stack:
        workdir = args.workdir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="graphforget-scale-")))
        for edges in args.sizes:
            before = results.pop(str(edges), None)
            keep = args.only_missing and before and (workdir / f"graph-{edges}.pt").is_file()
            size = measure_size(edges, results, args, workdir, before if keep else None)
            if "models" in size:  # keep the models that --models left out
                size["models"] = {**(before or {}).get("models", {}), **size["models"]}
            results[str(edges)] = size
            write(results, args, previous)
    print(json.dumps(slopes(results), indent=1))


def write(results: dict, args, previous: dict) -> None:
    """The JSON (every size so far, the runs that measured them) and the plot."""
    fitted = slopes(results)
    run = {"sizes": args.sizes, "started": args.started, "load_average_start": args.load_average,
           "load_average_end": os.getloadavg(), "memory_cap_mib": args.memory_cap_gib * 1024,
           "cell_timeout_s": args.cell_timeout, "only_missing": args.only_missing, "quick": args.quick}
    payload = {"machine": machine(), "settings": settings(args),
               "runs": previous.get("runs", []) + ([] if args.report else [run]),
               "sizes": dict(sorted(results.items(), key=lambda kv: int(kv[0]))),
               "slopes": fitted, "stops": stops(results), "cost_model": cost_model(results, fitted)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json(args.out, payload)
    plot(results, args.out.with_suffix(".png"), args.memory_cap_gib * 1024)


if __name__ == "__main__":
    main()
