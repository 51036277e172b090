"""IFRU robustness grid: does the robust default IFRU hold up where the paper's step breaks?

Grid: {MF, LightGCN-2} x L2 {0, weak = 0.1 x default, default} x training {early-stopped Adam,
stationary L-BFGS} x {ML-100K, Book-Crossing} x attack {2%, 5%} x seeds, plus one-user deletion
requests on clean ML-100K (early-stopped, L2 0 and default). Stationary x L2 0 is skipped (MF has no
stationary point without L2). Methods: Retrain (seed s), Retrain2 (seed s + 100, the noise floor),
FineTune 1 and 3 epochs, IFRU default, IFRU paper, SCIF, IFRU newton, IFRU one step (the default with
``newton.early_stopped=False``: no Newton steps away from stationarity), and on request (``--methods``) IFRU
given the validation pairs (``ifru_val``: its validation test, ``trust.max_val_auc_drop``, as the CLI and the
harness run it).

    python benchmarks/ifru_robustness.py --quick     # ML-100K, 5%, 1 seed, early-stopped, L2 {0, default}
    python benchmarks/ifru_robustness.py --seeds 3   # the whole grid (hours)
    python benchmarks/ifru_robustness.py --seeds 3 --trainings stationary --merge \
        --out benchmarks/results/ifru_robustness_grid.json   # re-measure only the stationary cells
    python benchmarks/ifru_robustness.py --seeds 3 --methods ifru ifru_val \
        --out benchmarks/results/ifru_robustness_val.json    # where the validation test fires
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
import warnings
from pathlib import Path

import torch

from common import AUCS, pyplot
from graphforget.data import EDGE, num_items, num_users, user_edges
from graphforget.metrics import completeness, evaluate_auc, mean_probability, prediction_distance, prediction_gap
from graphforget.clock import Stopwatch
from graphforget.io import atomic_write, to_jsonable
from graphforget.presets import default_hparams
from graphforget.protocols.attack import prepare_attack_data
from graphforget.train import train
from graphforget.unlearn import (IFRU, SCIF, FineTune, FineTuneConfig, IFRUConfig, Retrain, RetrainConfig,
                                 UnlearningFailed)

RESULTS = Path(__file__).parent / "results"
METHODS = ("retrain", "retrain2", "finetune_1", "finetune_3", "ifru", "ifru_paper", "scif", "ifru_newton",
           "ifru_one_step")
#: Measured only when asked for (``--methods``).
EXTRA_METHODS = ("ifru_val",)


def unlearners(model, graph, objective, hp, val, seed) -> dict:
    """Name -> zero-argument factory of each method's Unlearner."""
    config = hp.train_config(seed)
    return {
        "retrain": lambda: Retrain(model, graph, objective, RetrainConfig(config, seed=seed), val=val),
        "retrain2": lambda: Retrain(model, graph, objective,
                                    RetrainConfig(hp.train_config(seed + 100), seed=seed + 100), val=val),
        "finetune_1": lambda: FineTune(model, graph, objective, FineTuneConfig(config, epochs=1)),
        "finetune_3": lambda: FineTune(model, graph, objective, FineTuneConfig(config, epochs=3)),
        "ifru": lambda: IFRU(model, graph, objective, IFRUConfig()),
        "ifru_paper": lambda: IFRU(model, graph, objective, IFRUConfig.paper()),
        "scif": lambda: SCIF(model, graph, objective),
        "ifru_newton": lambda: IFRU(model, graph, objective, IFRUConfig.newton(model.receptive_field)),
        "ifru_one_step": lambda: IFRU(model, graph, objective, IFRUConfig(newton={"early_stopped": False})),
        "ifru_val": lambda: IFRU(model, graph, objective, IFRUConfig(), val=val),
    }


def train_original(hp, data_graph, val, seed):
    model = hp.build_model(num_users(data_graph), num_items(data_graph), seed)
    fit = train(model, data_graph, hp.objective(seed), hp.train_config(seed), val)
    model.eval()
    return model, fit


def run_methods(model, graph, hp, val, seed, request, methods) -> dict:
    """Name -> UnlearnResult, or the error message when the method refused (UnlearningFailed)."""
    outcomes = {}
    for name, make in unlearners(model, graph, hp.objective(seed), hp, val, seed).items():
        if name not in methods:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                outcomes[name] = make().unlearn(request)
                outcomes[name].model.eval()
            except UnlearningFailed as error:
                outcomes[name] = str(error)
    return outcomes


def method_rows(original, graph, test, request, outcomes) -> dict:
    """Per method: AUCs, completeness (vs Original and seed-s Retrain), prediction gap, drop share."""
    base = evaluate_auc(original, graph, test, request)
    ref = outcomes["retrain"]
    pairs = test[EDGE].edge_index
    p_orig = mean_probability(original, graph, request)
    p_ret = mean_probability(ref.model, ref.graph, request)
    retrain_auc = evaluate_auc(ref.model, ref.graph, test, request)
    scale = prediction_distance(original, graph, ref.model, ref.graph, pairs)
    rows = {"original": {**base, "request_probability": p_orig}}
    for name, out in outcomes.items():
        if isinstance(out, str):
            rows[name] = {"error": out, "trusted": False}
            continue
        row = evaluate_auc(out.model, out.graph, test, request)
        row["completeness"] = {k: completeness(row[k], base[k], retrain_auc[k]) for k in AUCS}
        row["mean_completeness"] = sum(row["completeness"].values()) / len(AUCS)
        gap = prediction_distance(out.model, out.graph, ref.model, ref.graph, pairs)
        row["prediction_gap"] = prediction_gap(gap, scale, pairs.size(1))
        row["request_probability"] = mean_probability(out.model, out.graph, request)
        row["drop_share"] = (p_orig - row["request_probability"]) / (p_orig - p_ret) if p_orig != p_ret else None
        # trusted: None for a method without an acceptance test (Retrain, FineTune)
        row.update(seconds=out.seconds, trusted=out.info.get("trusted"),
                   reason=out.info.get("reason"))
        rows[name] = row
    return rows


def attack_cell(cell, data, hp, methods) -> dict:
    graph, val, test, request = data.train, data.split.val, data.split.test, data.request
    original, fit = train_original(hp, graph, val, cell["seed"])
    outcomes = run_methods(original, graph, hp, val, cell["seed"], request, methods)
    with torch.no_grad():
        rows = method_rows(original, graph, test, request, outcomes)
    rows["original"].update(train_seconds=fit.seconds, epochs=fit.epochs)
    return {**cell, "hparams": hp.as_dict(), "request_edges": request.size(1), "methods": rows}


def user_cells(cell, data, hp, methods, n_users) -> list[dict]:
    """One-user deletions on the clean split: one Original, then each of ``n_users`` users' edges."""
    graph, val, test = data.split.train, data.split.val, data.split.test
    original, fit = train_original(hp, graph, val, cell["seed"])
    users = torch.randperm(num_users(graph), generator=torch.Generator().manual_seed(cell["seed"]))[:n_users]
    out = []
    for user in users.tolist():
        request = user_edges(graph, [user])
        outcomes = run_methods(original, graph, hp, val, cell["seed"], request, methods)
        with torch.no_grad():
            rows = method_rows(original, graph, test, request, outcomes)
        keep = ("auc_0", "request_probability", "drop_share", "seconds", "trusted", "reason", "error")
        rows = {m: {k: v for k, v in r.items() if k in keep} for m, r in rows.items()}
        out.append({**cell, "user": user, "request_edges": request.size(1), "hparams": hp.as_dict(),
                    "train_seconds": fit.seconds, "methods": rows})
    return out


def summary(cell) -> dict:
    m = cell["methods"]
    entry = {k: cell[k] for k in ("kind", "dataset", "model", "l2_name", "training", "attack", "seed", "user")
             if k in cell}
    ifru = m.get("ifru", {})
    entry.update(ifru_trusted=ifru.get("trusted"), ifru_seconds=ifru.get("seconds"),
                 retrain_seconds=m["retrain"]["seconds"], finetune_3_seconds=m.get("finetune_3", {}).get("seconds"))
    if cell["kind"] == "user":
        entry["ifru_drop_share"] = ifru.get("drop_share")
        return entry
    entry["ifru_mean_completeness"] = ifru.get("mean_completeness")
    if "retrain2" in m and "auc_0" in ifru:
        floor = abs(m["retrain"]["auc_0"] - m["retrain2"]["auc_0"])
        entry["noise_floor"] = floor
        entry["ifru_auc0_within_floor"] = ifru["auc_0"] >= m["original"]["auc_0"] - floor
    ft = m.get("finetune_3", {}).get("mean_completeness")
    if ft is not None and ifru.get("mean_completeness") is not None:
        entry["ifru_beats_finetune_3"] = ifru["mean_completeness"] > ft
    return entry


def print_cell(cell) -> None:
    head = " ".join(str(cell.get(k, "")) for k in ("kind", "dataset", "model", "l2_name", "training",
                                                   "attack", "seed", "user"))
    key = "drop_share" if cell["kind"] == "user" else "mean_completeness"
    parts = [f"o auc0 {cell['methods']['original']['auc_0']:.4f}"]
    for name, r in cell["methods"].items():
        if name == "original":
            continue
        if "error" in r:
            parts.append(f"{name} FAILED")
            continue
        flag = "!" if r["trusted"] is False else ""
        parts.append(f"{name}{flag} {r['auc_0']:.4f} c={r.get(key, float('nan')):.2f} {r['seconds']:.2f}s")
    print(f"{head} | " + " | ".join(parts), flush=True)


def _seed_means(cells) -> dict:
    """(dataset, training) -> {(attack, model, l2 name): {method: mean completeness over seeds}}."""
    panels: dict = {}
    for c in cells:
        key = (c["attack"], c["model"], c["l2_name"])
        group = panels.setdefault((c["dataset"], c["training"]), {}).setdefault(key, {})
        for name, row in c["methods"].items():
            if row.get("mean_completeness") is not None:
                group.setdefault(name, []).append(row["mean_completeness"])
    return {panel: {k: {m: sum(v) / len(v) for m, v in g.items()} for k, g in groups.items()}
            for panel, groups in panels.items()}


def plot(cells, path: Path, methods=METHODS) -> None:
    """Seed-averaged mean completeness per method, one panel per (dataset, training), bars clipped to
    [-1, 1.5] (clipped bars carry their value)."""
    plt = pyplot()
    panels = _seed_means([c for c in cells if c.get("kind") == "attack"])
    if plt is None or not panels:
        return
    names = [m for m in methods if m != "retrain"]
    fig, axes = plt.subplots(len(panels), 1, figsize=(14, 3.2 * len(panels)), squeeze=False)
    width = 0.8 / len(names)
    for ax, ((dataset, training), groups) in zip(axes[:, 0], sorted(panels.items())):
        for i, (key, means) in enumerate(groups.items()):
            for j, name in enumerate(names):
                value = means.get(name)
                if value is None or value != value:
                    continue
                shown, x = min(max(value, -1.0), 1.5), i + (j - len(names) / 2 + 0.5) * width
                ax.bar(x, shown, width, color=f"C{j}", label=name if i == 0 else None)
                if shown != value:
                    ax.text(x, shown, f"{value:.1f}", ha="center", va="top" if value > 0 else "bottom", fontsize=6)
        ax.set_xticks(range(len(groups)))
        ax.set_xticklabels([f"{a:.0%} {m} L2={l2}" for a, m, l2 in groups], fontsize=7)
        ax.set_ylim(-1, 1.5)
        for level in (0, 1):
            ax.axhline(level, color="k", lw=0.5)
        ax.set_title(f"{dataset}, {training}", fontsize=9)
        ax.set_ylabel("completeness")
    axes[0, 0].legend(fontsize=7, ncol=len(names))
    fig.tight_layout()
    atomic_write(path, lambda handle: fig.savefig(handle, format="png", dpi=110))


def write_json(payload, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(to_jsonable(payload), indent=1)  # the committed files' layout
    atomic_write(path, lambda handle: handle.write(text), binary=False)


#: What names a cell: a merged run replaces the previous cells with the same key.
CELL_KEYS = ("kind", "dataset", "model", "l2_name", "training", "attack", "seed", "user")


def _key(cell: dict) -> tuple:
    return tuple(cell.get(k) for k in CELL_KEYS)


def merged(previous: list[dict], cells: list[dict]) -> list[dict]:
    """The previous cells this run did not measure, then this run's."""
    measured = {_key(c) for c in cells}
    return [c for c in previous if _key(c) not in measured] + cells


def _earlier_runs(previous: dict) -> list[dict]:
    """The runs recorded in a merged --out (a file from before runs were recorded: its one wall time)."""
    if "runs" in previous:
        return previous["runs"]
    return [{"wall_seconds": previous["wall_seconds"]}] if "wall_seconds" in previous else []


def trainings(args) -> list[str]:
    return args.trainings or (["early-stopped"] if args.quick else ["early-stopped", "stationary"])


def grid(args):
    """Yields (cell settings, hparams) for every attack cell, and the skipped cells as (cell, None)."""
    datasets = args.datasets or (["ml-100k"] if args.quick else ["ml-100k", "bookcrossing"])
    attacks = args.attacks or ([0.05] if args.quick else [0.02, 0.05])
    for dataset, attack, seed, training, model in itertools.product(datasets, attacks, range(args.seeds),
                                                                    trainings(args), ("mf", "lightgcn")):
        hp = default_hparams(model, dataset, training)
        l2s = {"0": 0.0, "default": hp.l2} if args.quick else {"0": 0.0, "weak": 0.1 * hp.l2, "default": hp.l2}
        for l2_name, l2 in l2s.items():
            cell = {"kind": "attack", "dataset": dataset, "model": model, "l2_name": l2_name, "l2": l2,
                    "training": training, "attack": attack, "seed": seed}
            yield cell, None if training == "stationary" and l2 == 0 else hp.replace(l2=l2)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seeds", type=int, default=None, help="seeds 0..N-1 (default 3, quick 1)")
    parser.add_argument("--datasets", nargs="+", choices=["ml-100k", "bookcrossing"],
                        help="default: both (quick: ml-100k)")
    parser.add_argument("--attacks", nargs="+", type=float, help="attack ratios (default: 0.02 0.05; quick: 0.05)")
    parser.add_argument("--trainings", nargs="+", choices=["early-stopped", "stationary"],
                        help="default: both (quick: early-stopped)")
    parser.add_argument("--methods", nargs="+", choices=METHODS + EXTRA_METHODS,
                        help=f"default: {' '.join(METHODS)}; retrain always runs (the reference)")
    parser.add_argument("--out", type=Path, default=RESULTS / "ifru_robustness.json")
    parser.add_argument("--merge", action="store_true",
                        help="keep the cells of an existing --out that this run does not measure (e.g. re-measure "
                             "--trainings stationary after a change that affects only them)")
    args = parser.parse_args(argv)
    args.seeds = args.seeds or (1 if args.quick else 3)
    methods = ("retrain",) + tuple(m for m in args.methods or METHODS if m != "retrain")
    torch.set_num_threads(1)
    clock, cells, skipped, data_cache = Stopwatch().start(), [], [], {}
    previous = json.loads(args.out.read_text()) if args.merge and args.out.is_file() else {"cells": []}
    payload = {"quick": args.quick, "methods": methods, "skipped": skipped, "cells": cells}

    def save():
        payload["cells"] = merged(previous["cells"], cells)
        payload["summary"] = [summary(c) for c in payload["cells"]]
        write_json(payload, args.out)
    for cell, hp in grid(args):
        if hp is None:
            skipped.append({**cell, "reason": "stationary x L2 0: no stationary point without L2 (MF)"})
            continue
        key = (cell["dataset"], cell["attack"], cell["seed"])
        if key not in data_cache:
            data_cache = {key: prepare_attack_data(key[0], None, key[1], key[2], synthetic_fallback=False)}
        cells.append(attack_cell(cell, data_cache[key], hp, methods))
        print_cell(cells[-1])
        save()
    if args.merge:
        skipped[:0] = [c for c in previous.get("skipped", []) if _key(c) not in {_key(k) for k in skipped}]
    for seed in range(args.seeds if "early-stopped" in trainings(args) else 0):  # one-user requests: early-stopped
        data = prepare_attack_data("ml-100k", None, 0.05, seed, synthetic_fallback=False)
        for model in ("mf", "lightgcn"):
            hp0 = default_hparams(model, "ml-100k", "early-stopped")
            for l2_name, l2 in {"0": 0.0, "default": hp0.l2}.items():
                cell = {"kind": "user", "dataset": "ml-100k", "model": model, "l2_name": l2_name, "l2": l2,
                        "training": "early-stopped", "seed": seed}
                for row in user_cells(cell, data, hp0.replace(l2=l2), methods, 1 if args.quick else 3):
                    cells.append(row)
                    print_cell(row)
        save()
    payload["wall_seconds"] = clock.elapsed()
    payload["runs"] = _earlier_runs(previous) + [{"argv": sys.argv[1:] if argv is None else argv,
                                                  "wall_seconds": payload["wall_seconds"]}]
    save()
    plot(payload["cells"], args.out.with_suffix(".png"), methods)
    print(f"wall {payload['wall_seconds']:.0f}s -> {args.out}", flush=True)


if __name__ == "__main__":
    main()
