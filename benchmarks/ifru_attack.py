"""IFRU on the IFRU paper's attack protocol (real data): Original, Retrain, IFRU, IFRU without spillover.

    python benchmarks/ifru_attack.py --quick          # ML-100K, 2%, MF + LightGCN, 1 seed
    python benchmarks/ifru_attack.py                  # ML-100K + Book-Crossing, 1/2/4/8%, 3 seeds

Writes ``benchmarks/results/ifru_attack.json`` (one row per dataset/backbone/ratio/seed, plus
averages of the completeness coefficients) and ``ifru_attack.png``.
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch
from tqdm import tqdm

from graphforget.pipeline import prepare_attack_data, register_unlearner, run_experiment
from graphforget.unlearn import IFRU, IFRUConfig

RESULTS = Path(__file__).parent / "results"
AUCS = ("auc_0", "auc_1", "auc_2")
METHODS = ("retrain", "ifru", "ifru_no_spillover")


def _no_spillover(model, graph, objective, train_config, val, seed, **options):
    return IFRU(model, graph, objective, IFRUConfig(spillover=False, **options))


def summarise(rows: list[dict]) -> list[dict]:
    """Mean completeness and speed-up over seeds, per dataset/backbone/ratio and method."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["dataset"], row["model"], row["attack_ratio"]), []).append(row)
    out = []
    for (dataset, model, ratio), runs in groups.items():
        entry = {"dataset": dataset, "model": model, "attack_ratio": ratio, "seeds": len(runs),
                 "retrain_gain_auc_0": statistics.mean(r["methods"]["retrain"]["auc_0"] - r["original"]["auc_0"]
                                                       for r in runs)}
        for method in METHODS[1:]:
            # Completeness of the seed-averaged AUCs (a ratio of small differences is noisy per seed).
            for key in AUCS:
                gap = statistics.mean(r["methods"]["retrain"][key] - r["original"][key] for r in runs)
                gain = statistics.mean(r["methods"][method][key] - r["original"][key] for r in runs)
                entry[f"{method}_completeness_{key}"] = gain / gap if gap else float("nan")
            entry[f"{method}_speedup"] = statistics.mean(
                r["methods"]["retrain"]["seconds"] / r["methods"][method]["seconds"] for r in runs)
        out.append(entry)
    return out


def plot(summary: list[dict], path: Path) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    labels = [f"{s['dataset']}\n{s['model']} {s['attack_ratio']:.0%}" for s in summary]
    width = 0.13
    for j, method in enumerate(METHODS[1:]):
        for k, key in enumerate(AUCS):
            values = [100 * s[f"{method}_completeness_{key}"] for s in summary]
            axes[0].bar([i + (3 * j + k - 2.5) * width for i in range(len(summary))], values, width,
                        label=f"{method} {key}")
        axes[1].bar([i + (j - 0.5) * 0.35 for i in range(len(summary))],
                    [s[f"{method}_speedup"] for s in summary], 0.35, label=method)
    axes[0].axhline(100, color="k", lw=0.5)
    axes[0].set_ylabel("completeness (%)")
    axes[1].set_ylabel("retrain seconds / unlearn seconds")
    axes[1].set_yscale("log")
    for ax in axes:
        ax.set_xticks(range(len(summary)), labels, fontsize=7)
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="ML-100K, 2%%, one seed")
    parser.add_argument("--datasets", nargs="+", default=["ml-100k", "bookcrossing"])
    parser.add_argument("--backbones", nargs="+", default=["mf", "lightgcn"])
    parser.add_argument("--ratios", nargs="+", type=float, default=[0.01, 0.02, 0.04, 0.08])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--root", default=None, help="data directory (default: $GRAPHFORGET_DATA or ../shared/data)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--out", type=Path, default=RESULTS / "ifru_attack.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.datasets, args.ratios, args.seeds = ["ml-100k"], [0.02], [0]
    if args.threads:
        torch.set_num_threads(args.threads)
    register_unlearner("ifru_no_spillover", _no_spillover, overwrite=True)
    jobs = [(d, b, r, s) for d in args.datasets for r in args.ratios for s in args.seeds for b in args.backbones]
    rows = []
    for dataset, backbone, ratio, seed in tqdm(jobs, desc="ifru_attack"):
        data = prepare_attack_data(dataset, args.root, ratio, seed, synthetic_fallback=False)
        rows.append(run_experiment(dataset, backbone, list(METHODS), attack_ratio=ratio, seed=seed, data=data))
        tqdm.write(_line(rows[-1]))
    summary = summarise(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"summary": summary, "runs": rows}, indent=1))
    plot(summary, args.out.with_suffix(".png"))
    for entry in summary:
        print({k: round(v, 3) if isinstance(v, float) else v for k, v in entry.items()})


def _line(row: dict) -> str:
    m, o = row["methods"], row["original"]
    parts = [f"{row['dataset']} {row['model']} {row['attack_ratio']:g} seed {row['seed']}:",
             "orig " + "/".join(f"{o[k]:.4f}" for k in AUCS) + f" ({o['train_seconds']:.1f}s)"]
    parts += [f"{name} " + "/".join(f"{m[name][k]:.4f}" for k in AUCS) + f" ({m[name]['seconds']:.3f}s)" for name in METHODS]
    return " | ".join(parts)


if __name__ == "__main__":
    main()
