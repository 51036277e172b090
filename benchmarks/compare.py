"""All methods side by side on the IFRU paper's protocol (its Tables 2 and 3, and its timing figure).

    python benchmarks/compare.py --quick     # ML-100K, MF (2%) and LightGCN (1%), 1 seed; timing on 0.1/1%
    python benchmarks/compare.py             # ML-100K + Book-Crossing, 3 seeds; timing on 0.1/1/2/4/8%

Table part: attack 2% for MF and 1% for LightGCN (as the paper), AUC_0/1/2 of Original, Retrain, SISA,
RecEraser, SCIF and IFRU and each method's completeness; for SISA and RecEraser also the AUCs of the
fitted ensemble before unlearning (their gap to the Original even for an empty request, the paper's
"harmless" check: Retrain, IFRU and SCIF return the Original bit for bit on an empty request, a test
checks that). Timing part: unlearning seconds of each
method across request ratios. Writes ``benchmarks/results/compare.json`` and ``compare.png``.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from tqdm import tqdm

from common import one_line, rounded, pyplot, summarise
from graphforget.presets import default_hparams
from graphforget.protocols.attack import prepare_attack_data, run_attack

RESULTS = Path(__file__).parent / "results"
METHODS = ("retrain", "sisa", "receraser", "scif", "ifru")
PAPER_RATIO = {"mf": 0.02, "lightgcn": 0.01}


def run(datasets, backbones, ratios_of, seeds, root, methods=METHODS) -> list[dict]:
    jobs = [(d, b, r, s) for d in datasets for b in backbones for r in ratios_of(b) for s in seeds]
    rows = []
    for dataset, backbone, ratio, seed in tqdm(jobs, desc="compare"):
        data = prepare_attack_data(dataset, root, ratio, seed, synthetic_fallback=False)
        rows.append(run_attack(data, default_hparams(backbone, dataset), list(methods), seed=seed).to_dict())
        tqdm.write(one_line(rows[-1], methods))
    return rows


def plot(table: list[dict], timing: list[dict], path: Path) -> None:
    plt = pyplot()
    if plt is None:
        return
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    labels = [f"{s['dataset']}\n{s['model']} {s['attack_ratio']:.0%}" for s in table]
    bars = {"original": [s["original_auc_0"] for s in table],
            "retrain": [s["original_auc_0"] + s["retrain_gain_auc_0"] for s in table],
            **{m: [s[f"{m}_auc_0"] for s in table] for m in METHODS[1:]}}
    width = 0.8 / len(bars)
    for j, (name, values) in enumerate(bars.items()):
        axes[0].bar([i + (j - (len(bars) - 1) / 2) * width for i in range(len(table))], values, width, label=name)
    low = min(min(v) for v in bars.values())
    axes[0].set_ylim(max(0.0, low - 0.02), max(max(v) for v in bars.values()) + 0.01)
    axes[0].set_ylabel("test AUC_0")
    axes[0].set_xticks(range(len(table)), labels, fontsize=7)
    for method in METHODS:
        for model in sorted({s["model"] for s in timing}):
            points = sorted((s["attack_ratio"], s[f"{method}_seconds"] if method != "retrain" else s["retrain_seconds"])
                            for s in timing if s["model"] == model)
            axes[1].plot([100 * p[0] for p in points], [p[1] for p in points], marker="o", label=f"{method} {model}")
    axes[1].set_xscale("log")
    axes[1].set_yscale("log")
    axes[1].set_xlabel("request (% of training edges)")
    axes[1].set_ylabel("unlearning seconds")
    for ax in axes:
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--datasets", nargs="+", default=["ml-100k", "bookcrossing"])
    parser.add_argument("--backbones", nargs="+", default=["mf", "lightgcn"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--timing-ratios", nargs="+", type=float, default=[0.001, 0.01, 0.02, 0.04, 0.08])
    parser.add_argument("--root", default=None)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=RESULTS / "compare.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.datasets, args.seeds, args.timing_ratios = ["ml-100k"], [0], [0.001, 0.01]
    if args.threads:
        torch.set_num_threads(args.threads)
    table_rows = run(args.datasets, args.backbones, lambda b: [PAPER_RATIO[b]], args.seeds, args.root)
    table = summarise(table_rows, METHODS)
    timing_rows = run(args.datasets[:1], args.backbones, lambda b: args.timing_ratios, args.seeds[:1], args.root)
    timing = summarise(timing_rows, METHODS)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"table": table, "timing": timing, "table_runs": table_rows,
                                    "timing_runs": timing_rows}, indent=1))
    plot(table, timing, args.out.with_suffix(".png"))
    for entry in table:
        print(rounded({k: v for k, v in entry.items()
                       if "completeness" in k or "before_auc_0" in k or k in ("dataset", "model", "attack_ratio")}))
    for entry in timing:
        print(rounded({k: v for k, v in entry.items() if k.endswith("seconds") or k in ("model", "attack_ratio")}))


if __name__ == "__main__":
    main()
