"""Speed-up of 2 processes over 1 (torch.distributed, gloo, one thread each) on this machine.

* SISA: ``fit()`` of 10 MF shards (each rank trains every second shard) on ML-100K's attacked training graph.
* Data-parallel training (``TrainConfig.data_parallel``): MF and LightGCN-2, each rank computing half of
  every mini-batch, gradients summed across the ranks; a fixed number of epochs, no early stopping.

The 2-process runs start their processes with :func:`graphforget.distributed.launch`; the time reported
is measured inside the ranks (rank 0's clock around the work), so the seconds to start the processes are
left out and reported apart. Writes ``results/distributed.json``.

    python benchmarks/distributed.py [--epochs 5]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

import torch

from graphforget.clock import Stopwatch
from graphforget.distributed import launch
from graphforget.presets import default_hparams
from graphforget.protocols.attack import prepare_attack_data
from graphforget.train import TrainConfig, train
from graphforget.unlearn import SISA, SISAConfig

RESULTS = Path(__file__).parent / "results"


def timed_sisa(model, graph, objective, config) -> float:
    with Stopwatch() as watch:
        SISA(model, graph, objective, SISAConfig(config, num_shards=10)).fit()
    return watch.seconds


def timed_training(model, graph, objective, config) -> float:
    return train(model, graph, objective, config).seconds


def compare(fn, *args) -> dict:
    torch.set_num_threads(1)
    one = fn(*args)
    with Stopwatch() as total:
        two = launch(fn, 2, *args)
    return {"one_process_seconds": one, "two_process_seconds": two, "speedup": one / two,
            "two_process_wall_seconds": total.seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    data = prepare_attack_data("ml-100k", attack_ratio=0.02, seed=0)
    rows = {}
    for name in ("mf", "lightgcn"):
        hparams = default_hparams(name, "ml-100k")
        model = hparams.build_model(data.train["user"].num_nodes, data.train["item"].num_nodes, seed=0)
        config = TrainConfig(epochs=args.epochs, patience=0, data_parallel=True)
        rows[f"train_{name}"] = compare(timed_training, model, data.train, hparams.objective(), config)
        if name == "mf":
            shard_config = TrainConfig(epochs=args.epochs, patience=0)
            rows["sisa_fit_mf"] = compare(timed_sisa, model, data.train, hparams.objective(), shard_config)
        print(name, rows)
    payload = {"dataset": data.source, "epochs": args.epochs, "cpus": os.cpu_count(), "load_average": os.getloadavg(),
               "machine": platform.processor() or platform.machine(), "rows": rows}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "distributed.json").write_text(json.dumps(payload, indent=1))


if __name__ == "__main__":
    main()
