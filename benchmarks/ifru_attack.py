"""IFRU on the IFRU paper's attack protocol (real data): Original, Retrain, IFRU (one influence step, the
paper), IFRU without spillover, IFRU with two Newton steps, and ``ifru_newton_k``: k = 3, 5, 8 inexact
Newton steps on the new objective (``IFRUConfig.newton``, our extension).

    python benchmarks/ifru_attack.py --quick          # ML-100K, 2%, MF + LightGCN, 1 seed
    python benchmarks/ifru_attack.py                  # ML-100K + Book-Crossing, 1/2/4/8%, 3 seeds
    python benchmarks/ifru_attack.py --training stationary   # models trained to a stationary point

Writes ``benchmarks/results/ifru_attack.json`` (``ifru_attack_stationary.json`` with ``--training
stationary``; one row per dataset/backbone/ratio/seed, plus averages of the completeness coefficients)
and a plot beside it.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from tqdm import tqdm

from common import one_line, rounded, pyplot, summarise
from graphforget.presets import TRAININGS, default_hparams
from graphforget.protocols.attack import prepare_attack_data, run_attack
from graphforget.unlearn import IFRU, IFRUConfig, register

RESULTS = Path(__file__).parent / "results"
METHODS = ("retrain", "ifru", "ifru_no_spillover", "ifru_2_newton_steps", "ifru_newton_3", "ifru_newton_5",
           "ifru_newton_8")
#: Options per variant; ``ifru_newton_K`` is :meth:`IFRUConfig.newton` with K steps.
VARIANTS = {"ifru_no_spillover": {"spillover": False}, "ifru_2_newton_steps": {"newton.steps": 2}}
NEWTON_STEPS = (3, 5, 8)


def variant_options(receptive_field: int) -> dict:
    """Every variant's options for a backbone with the given receptive field."""
    presets = {f"ifru_newton_{k}": IFRUConfig.newton(receptive_field, k) for k in NEWTON_STEPS}
    return {**VARIANTS, **presets}


def plot(summary: list[dict], path: Path) -> None:
    """Per dataset: completeness on AUC_0 and speed-up against the request ratio, a line per backbone
    and IFRU variant."""
    plt = pyplot()
    if plt is None:
        return
    datasets = sorted({s["dataset"] for s in summary})
    fig, axes = plt.subplots(len(datasets), 2, figsize=(11, 3.6 * len(datasets)), squeeze=False)
    for row, dataset in zip(axes, datasets):
        for model in sorted({s["model"] for s in summary if s["dataset"] == dataset}):
            entries = sorted((s for s in summary if s["dataset"] == dataset and s["model"] == model),
                             key=lambda s: s["attack_ratio"])
            ratios = [100 * s["attack_ratio"] for s in entries]
            for method, style in zip(METHODS[1:], ("-o", "--s", ":^", "-.d", "-x", "--v")):
                row[0].plot(ratios, [100 * s[f"{method}_completeness_auc_0"] for s in entries], style,
                            label=f"{model} {method}")
                row[1].plot(ratios, [s[f"{method}_speedup"] for s in entries], style, label=f"{model} {method}")
        row[0].axhline(100, color="k", lw=0.5)
        row[0].set_ylim(-100, 150)
        row[0].set_ylabel(f"{dataset}: completeness on AUC_0 (%)")
        row[1].set_ylabel("retrain seconds / unlearn seconds")
        row[1].set_yscale("log")
        for ax in row:
            ax.set_xlabel("flipped training labels (%)")
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
    parser.add_argument("--training", choices=TRAININGS, default="early-stopped",
                        help="how the Original and Retrain are trained (see graphforget.presets.TRAININGS)")
    parser.add_argument("--out", type=Path, default=None,
                        help="default: results/ifru_attack.json, or ifru_attack_stationary.json")
    args = parser.parse_args(argv)
    if args.out is None:
        suffix = "" if args.training == "early-stopped" else "_stationary"
        args.out = RESULTS / f"ifru_attack{suffix}.json"
    if args.quick:
        args.datasets, args.ratios, args.seeds = ["ml-100k"], [0.02], [0]
    if args.threads:
        torch.set_num_threads(args.threads)
    for name in METHODS[2:]:  # each variant is IFRU under its own name, with its own options
        register(type(name, (IFRU,), {"name": name}), overwrite=True)
    jobs = [(d, b, r, s) for d in args.datasets for r in args.ratios for s in args.seeds for b in args.backbones]
    rows = []
    for dataset, backbone, ratio, seed in tqdm(jobs, desc="ifru_attack"):
        data = prepare_attack_data(dataset, args.root, ratio, seed, synthetic_fallback=False)
        hparams = default_hparams(backbone, dataset, args.training)
        receptive_field = 0 if backbone == "mf" else hparams.num_layers
        rows.append(run_attack(data, hparams, list(METHODS), variant_options(receptive_field), seed=seed).to_dict())
        tqdm.write(one_line(rows[-1], METHODS))
    summary = summarise(rows, METHODS)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"summary": summary, "runs": rows}, indent=1))
    plot(summary, args.out.with_suffix(".png"))
    for entry in summary:
        print(rounded(entry))


if __name__ == "__main__":
    main()
