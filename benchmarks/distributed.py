"""Speed-up of 2 processes over 1 (torch.distributed, gloo, one thread each) on this machine.

* SISA: ``fit()`` of 10 MF shards (each rank trains every second shard) on ML-100K's attacked training graph
  (``--dataset gowalla``: Gowalla's training file, one sampled negative each).
* Data-parallel training (``TrainConfig.data_parallel``): MF and LightGCN-2, each rank computing half of
  every mini-batch, gradients summed across the ranks; a fixed number of epochs, no early stopping.
* Data-parallel IFRU (``IFRUConfig.data_parallel``): one request of 1% of the training edges on LightGCN-2
  (trained for the same epochs), each rank computing the curvature products, gradients and objective values
  over half of the loss terms, one all-reduce each; the fastest of three requests, after a one-edge request
  (first-call costs).

The 2-process runs start their processes with :func:`graphforget.distributed.launch`; the time reported
is measured inside the ranks (rank 0's clock around the work), so the seconds to start the processes are
left out and reported apart. Each row records the load average after it (the machine may be shared). Writes
``results/distributed.json``; with ``--only``, only those rows are measured and the file's others are kept.

    python benchmarks/distributed.py [--epochs 5] [--only training|ifru] [--dataset gowalla]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

import torch

from graphforget.bench import DataSource
from graphforget.clock import Stopwatch
from graphforget.data import random_edges
from graphforget.distributed import launch
from graphforget.presets import default_hparams
from graphforget.train import TrainConfig, train
from graphforget.unlearn import IFRU, SISA, IFRUConfig, SISAConfig

RESULTS = Path(__file__).parent / "results"


def timed_sisa(model, graph, objective, config) -> float:
    with Stopwatch() as watch:
        SISA(model, graph, objective, SISAConfig(config, num_shards=10)).fit()
    return watch.seconds


def timed_training(model, graph, objective, config) -> float:
    return train(model, graph, objective, config).seconds


def timed_ifru(model, graph, objective, request, repeats: int = 3) -> float:
    ifru = IFRU(model, graph, objective, IFRUConfig(data_parallel=True))
    ifru.unlearn(request[:, :1])
    seconds = []
    for _ in range(repeats):
        with Stopwatch() as watch:
            ifru.unlearn(request)
        seconds.append(watch.seconds)
    return min(seconds)


def ifru_row(data, epochs: int) -> dict:
    """IFRU on LightGCN-2 with one process and with two, and what the request touched."""
    hparams = default_hparams("lightgcn")
    model = hparams.build_model(data.train["user"].num_nodes, data.train["item"].num_nodes, seed=0)
    objective = hparams.objective()
    torch.set_num_threads(1)
    train(model, data.train, objective, TrainConfig(epochs=epochs, patience=0))
    request = random_edges(data.train, 0.01, seed=0)
    info = IFRU(model, data.train, objective).unlearn(request).info
    touched = {key: info[key] for key in ("request_edges", "kept_parameters", "affected_terms", "trusted")}
    iterations = [solve["iterations"] for solve in info["attempts"] + info["solver"]]
    return {**compare(timed_ifru, model, data.train, objective, request), **touched, "solver_iterations": iterations}


def compare(fn, *args) -> dict:
    torch.set_num_threads(1)
    one = fn(*args)
    with Stopwatch() as total:
        two = launch(fn, 2, *args)
    return {"one_process_seconds": one, "two_process_seconds": two, "speedup": one / two,
            "two_process_wall_seconds": total.seconds, "load_average": os.getloadavg()}


def training_rows(data, epochs: int) -> dict:
    """Data-parallel training of MF and LightGCN, and SISA's fit of MF shards."""
    rows = {}
    for name in ("mf", "lightgcn"):
        hparams = default_hparams(name)
        model = hparams.build_model(data.train["user"].num_nodes, data.train["item"].num_nodes, seed=0)
        config = TrainConfig(epochs=epochs, patience=0, data_parallel=True)
        rows[f"train_{name}"] = compare(timed_training, model, data.train, hparams.objective(), config)
        if name == "mf":
            shard_config = TrainConfig(epochs=epochs, patience=0)
            rows["sisa_fit_mf"] = compare(timed_sisa, model, data.train, hparams.objective(), shard_config)
        print(name, rows)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--only", choices=("training", "ifru"), help="measure only these rows, keep the file's others")
    parser.add_argument("--dataset", choices=("ml-100k", "gowalla"), default="ml-100k",
                        help="gowalla: its training file with one sampled negative each (results/distributed_gowalla.json)")
    args = parser.parse_args()
    data = DataSource(args.dataset).for_loss("bce").prepare(seed=0)
    path = RESULTS / ("distributed.json" if args.dataset == "ml-100k" else f"distributed_{args.dataset}.json")
    payload = {"dataset": data.source, "epochs": args.epochs, "cpus": os.cpu_count(),
               "machine": platform.processor() or platform.machine(), "rows": {}}
    if args.only and path.exists():  # the other rows and the run they came from are kept
        payload = json.loads(path.read_text())
    if args.only != "ifru":
        payload["rows"].update(training_rows(data, args.epochs))
        payload["load_average"] = os.getloadavg()
    if args.only != "training":
        payload["rows"]["ifru_lightgcn"] = ifru_row(data, args.epochs)
        print("ifru", payload["rows"]["ifru_lightgcn"])
    RESULTS.mkdir(exist_ok=True)
    path.write_text(json.dumps(payload, indent=1))


if __name__ == "__main__":
    main()
