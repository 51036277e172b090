"""SISA and RecEraser on ML-100K under the IFRU attack protocol: a thin call of the benchmark harness.

    python benchmarks/sisa_receraser_smoke.py [--shards 10] [--partition interaction]
    torchrun --nproc-per-node 2 benchmarks/sisa_receraser_smoke.py   # shards shared by 2 processes (gloo)

``graphforget bench --protocol attack --methods sisa receraser --seeds 1`` with the shard options: MF with
BCE (l2 = 5), 2% of the training labels flipped, one seed. Under ``torchrun`` every rank runs the same
cells and trains its share of the shards (:mod:`graphforget.distributed`); rank 0 writes
``benchmarks/results/bench/sisa_receraser_smoke/`` and prints the table.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from graphforget.bench import markdown, run_bench
from graphforget.distributed import init_from_env, rank_and_size

OUT = Path(__file__).parent / "results" / "bench" / "sisa_receraser_smoke"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", type=int, default=10)
    parser.add_argument("--partition", default="interaction", choices=["interaction", "user", "item"])
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    init_from_env()  # under torchrun: the shards are trained by every rank, a share each
    rank, size = rank_and_size()
    options = {"sisa": {"num_shards": args.shards},
               "receraser": {"num_shards": args.shards, "partition": args.partition, "pretrain": True}}
    result = run_bench("attack", "ml-100k", "mf", ["sisa", "receraser"], seeds=1, options=options,
                       out=OUT if rank == 0 else None)
    if rank == 0:
        print(markdown(result) + f"\n{size} process(es); wrote {', '.join(result.files)}")


if __name__ == "__main__":
    main()
