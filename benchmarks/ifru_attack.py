"""IFRU's variants on the IFRU paper's attack protocol (real data): Retrain, IFRU (the default step), the
paper's step (``ifru_paper``), without spillover, with two Newton steps, and ``ifru_newton_k``: k = 3, 5, 8
inexact Newton steps on the new objective (``IFRUConfig.newton``, our extension).

    python benchmarks/ifru_attack.py --quick          # ML-100K, 2%, MF + LightGCN, 1 seed
    python benchmarks/ifru_attack.py                  # ML-100K + Book-Crossing, 1/2/4/8%, 3 seeds
    python benchmarks/ifru_attack.py --training stationary   # models trained to a stationary point

A thin call of the benchmark harness (``graphforget bench --protocol attack``): each variant is IFRU
registered under its own name with its options. Each (dataset, backbone, ratio) writes
``benchmarks/results/bench/ifru_attack[_stationary]_<dataset>_<backbone>_<ratio>/`` (``results.json``,
``results.md``, a plot and the cell cache).
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from graphforget.bench import run_bench
from graphforget.presets import TRAININGS, default_hparams
from graphforget.unlearn import IFRU, IFRUConfig, register

BENCH = Path(__file__).parent / "results" / "bench"
#: Options per variant; ``ifru_newton_K`` is :meth:`IFRUConfig.newton` with K steps.
VARIANTS = {"ifru_paper": lambda rf: IFRUConfig.paper(), "ifru_no_spillover": lambda rf: IFRUConfig(spillover=False),
            "ifru_2_newton_steps": lambda rf: IFRUConfig(newton={"steps": 2}),
            **{f"ifru_newton_{k}": (lambda rf, k=k: IFRUConfig.newton(rf, k)) for k in (3, 5, 8)}}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="ML-100K, 2%%, one seed")
    parser.add_argument("--datasets", nargs="+", default=["ml-100k", "bookcrossing"])
    parser.add_argument("--backbones", nargs="+", default=["mf", "lightgcn"])
    parser.add_argument("--ratios", nargs="+", type=float, default=[0.01, 0.02, 0.04, 0.08])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--training", choices=TRAININGS, default="early-stopped",
                        help="how the Original and Retrain are trained (see graphforget.presets.TRAININGS)")
    args = parser.parse_args(argv)
    if args.quick:
        args.datasets, args.ratios, args.seeds = ["ml-100k"], [0.02], 1
    for name in VARIANTS:  # each variant is IFRU under its own name, with its own options
        register(type(name, (IFRU,), {"name": name}), overwrite=True)
    suffix = "" if args.training == "early-stopped" else "_stationary"
    for dataset in args.datasets:
        for backbone in args.backbones:
            hparams = default_hparams(backbone, dataset, args.training)
            receptive_field = 0 if backbone == "mf" else hparams.num_layers
            options = {name: dataclasses.asdict(make(receptive_field)) for name, make in VARIANTS.items()}
            for ratio in args.ratios:
                out = BENCH / f"ifru_attack{suffix}_{dataset}_{backbone}_{ratio:g}"
                result = run_bench("attack", dataset, backbone, ["ifru", *VARIANTS], args.seeds, out=out,
                                   params={"attack_ratio": ratio}, options=options, hparams=hparams, progress=True)
                print("\n".join(result.files))


if __name__ == "__main__":
    main()
