"""Deletion requests through the command line on real data: ``graphforget fit``, then ``graphforget forget``
of one user and of a random 0.1% of the training interactions with IFRU, SCIF and Retrain.

Every step is the command a user types (run in a subprocess); the figures are read back from the runs'
``run.json`` and ``audit.jsonl``: the seconds of the unlearning call (``seconds``) and of the whole command
(``wall_seconds``: process start, reading the run, unlearning, verification, writing the new run), the
``trusted`` flag, the test AUC, and the verification of :func:`graphforget.verify.verify_forgetting` (mean
predicted probability of the removed edges vs matched non-members, MI-BF, MI-NG, membership-inference attack
AUC before and after).

Usage::

    python benchmarks/deletion_cli.py                                 # ML-1M, MF, preset training
    python benchmarks/deletion_cli.py --datasets ml-1m gowalla --epochs 20

Writes ``benchmarks/results/deletion_cli.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from graphforget.io import write_json

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ROOT = REPO.parent / "shared" / "data"
VERIFICATION = ("request_edges", "matched", "request_probability", "non_member_probability", "mi_bf", "mi_ng",
                "mia_auc", "before_mia_auc")


def cli(argv: list[str], threads: int) -> tuple[float, str]:
    """Runs ``python -m graphforget --threads T ARGV``; returns its wall seconds and stdout."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "graphforget", "--threads", str(threads), *argv], cwd=REPO,
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"graphforget {' '.join(argv)} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return seconds, proc.stdout


def pick_requests(run: Path, ratio: float, seed: int, workdir: Path) -> dict:
    """A random user (raw id) and a file of a random ``ratio`` of the observed training edges (raw ids)."""
    graph = torch.load(run / "graph.pt", weights_only=True)
    edges = graph["edge_index"][:, graph["observed"]]
    gen = torch.Generator().manual_seed(seed)
    users = edges[0].unique()
    user = int(users[torch.randint(users.numel(), (1,), generator=gen)])
    count = max(1, round(ratio * edges.size(1)))
    pick = edges[:, torch.randperm(edges.size(1), generator=gen)[:count]]
    raw_user, raw_item = (_plain(graph[f"{node}_raw_id"]) for node in ("user", "item"))
    path = workdir / "edges.txt"
    path.write_text("".join(f"{raw_user[u]}\t{raw_item[i]}\n" for u, i in pick.t().tolist()))
    degree = int((graph["edge_index"][0] == user).sum())
    return {"user": {"argv": ["--users", str(raw_user[user])], "raw_id": raw_user[user],
                     "training_edges": degree, "interactions": int((edges[0] == user).sum())},
            f"edges_{ratio:.1%}": {"argv": ["--edges", str(path)], "edges": count, "seed": seed}}


def _plain(raw_ids) -> list:
    """Raw ids as plain Python values (a long tensor or a list of strings in ``graph.pt``)."""
    return raw_ids.tolist() if isinstance(raw_ids, torch.Tensor) else list(raw_ids)


def summarise(run: Path, wall: float) -> dict:
    """The figures of a forget run, from its ``run.json`` and its last audit line."""
    info = json.loads((run / "run.json").read_text())
    line = json.loads((run / "audit.jsonl").read_text().splitlines()[-1])
    verification = line["verification"] or {}
    return {"seconds": line["seconds"], "wall_seconds": wall, "trusted": line["trusted"],
            "request_edges": line["request"]["edges"], "test_auc": info["metrics"]["test_auc"],
            **{key: verification.get(key) for key in VERIFICATION}}


def run_dataset(name: str, args, workdir: Path) -> dict:
    """Fit, then every request with every method, each from the fit run."""
    base = workdir / name / "base"
    base.parent.mkdir(parents=True)
    fit_argv = ["fit", "--data", str(args.root / name), "--format", "lightgcn", "--negatives", "1", "--model",
                args.model, "--seed", str(args.seed), "--quiet", "--out", str(base)]
    if args.epochs:
        fit_argv += ["--epochs", str(args.epochs)]
    wall, _ = cli(fit_argv, args.threads)
    fit = json.loads((base / "run.json").read_text())
    result = {"fit": {**fit["metrics"], "wall_seconds": wall, "hparams": fit["hparams"], "argv": fit_argv},
              "requests": {}}
    print(f"{name}: fit in {wall:.0f}s, test AUC {fit['metrics']['test_auc']:.4f}", flush=True)
    for request, spec in pick_requests(base, args.ratio, args.seed, workdir / name).items():
        rows = {}
        for method in args.methods:
            out = workdir / name / f"{request}-{method}"
            wall, _ = cli(["forget", "--run", str(base), *spec["argv"], "--method", method, "--quiet",
                           "--out", str(out)], args.threads)
            rows[method] = summarise(out, wall)
            print(f"  {request} {method}: {rows[method]}", flush=True)
        result["requests"][request] = {**{k: v for k, v in spec.items() if k != "argv"}, "methods": rows}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["ml-1m"], help="folders of --root in the LightGCN format")
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="data directory (default: ../shared/data)")
    parser.add_argument("--model", default="mf", help="mf or lightgcn (default: mf)")
    parser.add_argument("--methods", nargs="+", default=["ifru", "scif", "retrain"])
    parser.add_argument("--epochs", type=int, help="maximum training epochs (default: the preset's 100, "
                                                   "early-stopped with patience 5)")
    parser.add_argument("--ratio", type=float, default=0.001, help="share of edges in the edge request (0.1%%)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of every command (default: 1)")
    parser.add_argument("--workdir", type=Path, help="where the runs go (default: a temporary directory)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "deletion_cli.json")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="deletion-cli-"))
    report = {"script": "benchmarks/deletion_cli.py", "argv": sys.argv[1:], "model": args.model,
              "threads": args.threads, "cpu": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
              "torch": torch.__version__, "workdir": str(workdir), "datasets": {}}
    for name in args.datasets:
        report["datasets"][name] = run_dataset(name, args, workdir)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        write_json(args.out, report)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
