"""All methods side by side on the IFRU paper's attack protocol: a thin call of the benchmark harness.

    python benchmarks/compare.py --quick     # ML-100K, MF (2%) and LightGCN (1%), 1 seed
    python benchmarks/compare.py             # ML-100K + Book-Crossing, 3 seeds, and the request-size sweep

The table part runs ``graphforget bench --protocol attack`` with every default method at the paper's
ratios (2% for MF, 1% for LightGCN); the sweep part runs it at 0.1-8% flipped to show how each method's
seconds grow with the request. Each run writes ``benchmarks/results/bench/attack_<dataset>_<model>_<ratio>/``
(``results.json``, ``results.md``, a plot, the cell cache: a rerun only computes missing cells).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from graphforget.bench import DEFAULT_METHODS, run_bench

BENCH = Path(__file__).parent / "results" / "bench"
PAPER_RATIO = {"mf": 0.02, "lightgcn": 0.01}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="ML-100K, one seed, no sweep")
    parser.add_argument("--datasets", nargs="+", default=["ml-100k", "bookcrossing"])
    parser.add_argument("--models", nargs="+", default=["mf", "lightgcn"])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--sweep", nargs="*", type=float, default=[0.001, 0.01, 0.04, 0.08],
                        help="attack ratios of the request-size sweep (first dataset, one seed)")
    args = parser.parse_args(argv)
    if args.quick:
        args.datasets, args.seeds, args.sweep = ["ml-100k"], 1, []
    runs = [(d, m, PAPER_RATIO[m], args.seeds) for d in args.datasets for m in args.models]
    runs += [(args.datasets[0], m, r, 1) for m in args.models for r in args.sweep if r != PAPER_RATIO[m]]
    for dataset, model, ratio, seeds in runs:
        out = BENCH / f"attack_{dataset}_{model}_{ratio:g}"
        result = run_bench("attack", dataset, model, DEFAULT_METHODS, seeds, out=out, params={"attack_ratio": ratio},
                           progress=True)
        print("\n".join(result.files))


if __name__ == "__main__":
    main()
