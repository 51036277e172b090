"""Speed-up of 2 processes over 1 (torch.distributed, gloo, one thread each) on this machine.

* SISA: ``fit()`` of 10 MF shards (each rank trains every second shard) on ML-100K's attacked training graph
  (``--dataset gowalla``: Gowalla's training file, one sampled negative each).
* Data-parallel training (``TrainConfig.data_parallel``): MF and LightGCN-2, each rank computing half of
  every mini-batch, ``DistributedDataParallel`` summing the gradients; a fixed number of epochs, no early stopping.
* Gradient all-reduce, dense against sparse (``--only gradients``): the gradient of one MF mini-batch (4,096
  edges, each rank its half) all-reduced as the dense tables, and as the sparse tensors of the rows it
  touches (found, all-reduced, made dense again for Adam), the mean of 20. Without L2, where MF's gradient is
  row-sparse; with L2 or propagation every row has a gradient, so only the dense one applies.
* Data-parallel IFRU (``IFRUConfig.data_parallel``): one request of 1% of the training edges on LightGCN-2
  (trained for the same epochs), each rank computing the curvature products, gradients and objective values
  over half of the loss terms, one all-reduce each; the fastest of three requests, after a one-edge request
  (first-call costs).

The 2-process runs start their processes with :func:`graphforget.distributed.launch`; the time reported
is measured inside the ranks (rank 0's clock around the work), so the seconds to start the processes are
left out and reported apart. Each row records the load average after it (the machine may be shared). Writes
``results/distributed.json``; with ``--only``, only those rows are measured and the file's others are kept.

    python benchmarks/distributed.py [--epochs 5] [--only training|gradients|ifru] [--dataset gowalla]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

import torch
import torch.distributed as dist

from graphforget.bench import DataSource
from graphforget.clock import Stopwatch
from graphforget.data import EDGE, random_edges
from graphforget.distributed import launch
from graphforget.io import write_json
from graphforget.objectives import BCEObjective
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


def touched_rows(grad: torch.Tensor) -> torch.Tensor:
    """The rows of ``grad`` with a non-zero entry, as a sparse tensor (``Tensor.to_sparse`` is 20x slower)."""
    rows = grad.any(1).nonzero().squeeze(1)
    return torch.sparse_coo_tensor(rows[None], grad[rows], grad.shape, is_coalesced=True)


def timed_allreduce(model, graph, objective, batch_size: int = 4096, repeats: int = 20) -> dict:
    """Seconds of one all-reduce of this rank's share of a mini-batch's gradient, dense and sparse."""
    rank, size = dist.get_rank(), dist.get_world_size()
    positions = torch.randperm(graph[EDGE].edge_index.size(1), generator=torch.Generator().manual_seed(0))
    objective.batch_loss(model, graph, positions[:batch_size], 0, (rank, size)).backward()
    grads = [p.grad for p in model.parameters()]
    ways = {"dense": lambda grad: grad.clone(), "sparse": touched_rows}
    row = {"rows": sum(g.size(0) for g in grads), "rows_touched": sum(int(g.any(1).sum()) for g in grads)}
    for kind, prepare in ways.items():
        dist.barrier()
        with Stopwatch() as watch:
            for _ in range(repeats):
                for grad in grads:
                    total = prepare(grad)
                    dist.all_reduce(total)
                    total = total.to_dense()
        row[f"{kind}_seconds"] = watch.seconds / repeats
    return row


def gradient_row(data) -> dict:
    """The all-reduce of an MF mini-batch's gradient without L2, dense against sparse, on two processes."""
    hparams = default_hparams("mf")
    model = hparams.build_model(data.train["user"].num_nodes, data.train["item"].num_nodes, seed=0)
    return {**launch(timed_allreduce, 2, model, data.train, BCEObjective(l2=0.0)), "load_average": os.getloadavg()}


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
    parser.add_argument("--only", choices=("training", "gradients", "ifru"),
                        help="measure only these rows, keep the file's others")
    parser.add_argument("--dataset", choices=("ml-100k", "gowalla"), default="ml-100k",
                        help="gowalla: its training file with one sampled negative each "
                             "(results/distributed_gowalla.json)")
    args = parser.parse_args()
    path = RESULTS / ("distributed.json" if args.dataset == "ml-100k" else f"distributed_{args.dataset}.json")
    kept = json.loads(path.read_text()) if args.only and path.exists() else None  # the other rows and their run
    # a 1-epoch row was filed under the header's 20 epochs (the gradients row reads no epochs)
    if kept is not None and args.only != "gradients" and kept["epochs"] != args.epochs:
        parser.error(f"--epochs {args.epochs}: {path.name}'s rows were measured at {kept['epochs']}; pass "
                     f"--epochs {kept['epochs']}, or measure every row (no --only)")
    data = DataSource(args.dataset).for_loss("bce").prepare(seed=0)
    payload = kept or {"dataset": data.source, "epochs": args.epochs, "cpus": os.cpu_count(),
                       "machine": platform.processor() or platform.machine(), "rows": {}}
    if args.only in (None, "training"):
        payload["rows"].update(training_rows(data, args.epochs))
        payload["load_average"] = os.getloadavg()
    if args.only in (None, "gradients"):
        payload["rows"]["gradient_allreduce_mf"] = gradient_row(data)
        print("gradients", payload["rows"]["gradient_allreduce_mf"])
    if args.only in (None, "ifru"):
        payload["rows"]["ifru_lightgcn"] = ifru_row(data, args.epochs)
        print("ifru", payload["rows"]["ifru_lightgcn"])
    RESULTS.mkdir(exist_ok=True)
    write_json(path, payload)


if __name__ == "__main__":
    main()
