"""IFRU at scale: Gowalla (810k training edges), LightGCN 2 layers, BCE with one sampled negative.

    python benchmarks/ifru_scale.py [--quick] [--epochs 2] [--ratios 0.001 0.01]
                                    [--configs gauss_newton:1.0 mf_surrogate:1.0 mf_surrogate:0.1 newton:1.0]
    python benchmarks/ifru_scale.py --training stationary --epochs 300 --retrain --ratios 0.01 \
                                    --out benchmarks/results/ifru_scale_stationary.json

Trains once (the quality of the model is not the point here), then runs each unlearning request in
a fresh subprocess so that its peak memory (``ru_maxrss`` growth over the loaded baseline) is its own.
Reports unlearn seconds and peak memory against the request size and the pruning ratio, as JSON
(``benchmarks/results/ifru_scale.json``). ``newton`` is :meth:`IFRUConfig.newton`.

``--training stationary`` trains with full-batch L-BFGS (``--epochs`` iterations at most) instead of
mini-batch Adam epochs; ``--retrain`` also retrains from scratch on the remaining data the same way (in
its own subprocess, once per ratio), for the speed-up and the prediction gap (distance of the test
predictions to Retrain's over the Original's distance to Retrain's) of each configuration.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from dataclasses import asdict, replace
from pathlib import Path

import torch

from graphforget import BCEObjective, TrainConfig, train
from graphforget.data import EDGE, add_negatives, edge_subgraph, find_data_root, load_lightgcn, random_edges
from graphforget.io import write_json
from graphforget.metrics import prediction_distance, prediction_gap
from graphforget.models import LightGCN, load_model, save_model
from graphforget.presets import TRAININGS
from graphforget.unlearn import IFRU, IFRUConfig, Retrain, RetrainConfig

RESULTS = Path(__file__).parent / "results"


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(workdir: Path, ratio: float, curvature: str, prune: float | None, seed: int) -> dict:
    """One unlearning call in this process (``curvature`` ``retrain``: retraining, whose model is saved
    for the other calls' prediction gap); returns seconds and peak memory growth."""
    model, _ = load_model(workdir / "model.pt")
    graph = torch.load(workdir / "graph.pt", weights_only=False)
    observed = edge_subgraph(graph, graph[EDGE].observed)  # requests are real check-ins, not negatives
    request = random_edges(observed, ratio, seed)
    ratios = None
    if curvature == "retrain":
        unlearner = Retrain(model, graph, BCEObjective(l2=1.0), RetrainConfig(TrainConfig(**json.loads(
            (workdir / "train_config.json").read_text())), seed=0))
    else:
        config = (IFRUConfig.newton(model.receptive_field) if curvature == "newton"
                  else IFRUConfig(curvature=curvature, hops=model.receptive_field))
        if prune is not None:  # one ratio per order of importance propagation: a_0 = 1, then ``prune``
            ratios = (1.0,) + (prune,) * config.hops
            config = replace(config, prune=ratios)
        unlearner = IFRU(model, graph, BCEObjective(l2=1.0), config)
    baseline = _rss_mb()
    result = unlearner.unlearn(request)
    row = {"ratio": ratio, "curvature": curvature, "prune": ratios, "request_edges": request.size(1),
           "seconds": result.seconds, "peak_mb_over_baseline": _rss_mb() - baseline, "baseline_mb": baseline,
           "threads": torch.get_num_threads(), "info": {k: v for k, v in result.info.items() if k != "phase_seconds"},
           "phase_seconds": result.info.get("phase_seconds")}
    retrained = workdir / f"retrain-{ratio}.pt"
    if curvature == "retrain":
        save_model(result.model, retrained)
    elif retrained.is_file():
        reference, test = load_model(retrained)[0], torch.load(workdir / "test.pt", weights_only=False)
        with torch.no_grad():
            scale = prediction_distance(model, graph, reference, result.graph, test)
            gap = prediction_distance(result.model, result.graph, reference, result.graph, test)
            row["prediction_gap"] = prediction_gap(gap, scale, test.size(1))
    return row


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=None)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--ratios", nargs="+", type=float, default=[0.001, 0.01])
    parser.add_argument("--configs", nargs="+", default=["gauss_newton:1.0", "mf_surrogate:1.0", "mf_surrogate:0.1"],
                        help="CURVATURE:a, the pruning ratios being (1, a, ..., a); a = 1.0: no pruning")
    parser.add_argument("--quick", action="store_true", help="one epoch, 0.1%% only")
    parser.add_argument("--training", choices=TRAININGS, default="early-stopped",
                        help="early-stopped: --epochs Adam epochs (no early stopping here); stationary: "
                             "full-batch L-BFGS, at most --epochs iterations")
    parser.add_argument("--retrain", action="store_true", help="also retrain on the remaining data, per ratio")
    parser.add_argument("--out", type=Path, default=RESULTS / "ifru_scale.json")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        workdir, ratio, curvature, prune, seed = args.child
        prune = None if float(prune) == 1.0 else float(prune)
        print(json.dumps(child(Path(workdir), float(ratio), curvature, prune, int(seed))))
        return
    if args.quick:
        args.epochs, args.ratios = 1, [0.001]
    root = find_data_root(args.root)
    if root is None or not (root / "gowalla" / "train.txt").is_file():
        sys.exit("Gowalla not found: pass --root or set $GRAPHFORGET_DATA")
    train_graph, test = load_lightgcn(root / "gowalla")
    graph = add_negatives(train_graph, 1, seed=0)
    model = LightGCN(train_graph["user"].num_nodes, train_graph["item"].num_nodes, 64, num_layers=2)
    model.reset_parameters(0)
    config = (TrainConfig(epochs=args.epochs, optimizer="lbfgs") if args.training == "stationary" else
              TrainConfig(epochs=args.epochs, lr=0.01, batch_size=65536, patience=0))
    fit = train(model, graph, BCEObjective(l2=1.0), TrainConfig(**{**asdict(config), "progress": True}))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        save_model(model, Path(tmp) / "model.pt")
        torch.save(graph, Path(tmp) / "graph.pt")
        torch.save(test[EDGE].edge_index, Path(tmp) / "test.pt")
        (Path(tmp) / "train_config.json").write_text(json.dumps(asdict(config)))
        for ratio in args.ratios:
            for config in ["retrain:1.0"] * args.retrain + args.configs:
                curvature, prune = config.split(":")
                out = subprocess.run([sys.executable, __file__, "--child", tmp, str(ratio), curvature, prune, "0",
                                      "--threads", str(torch.get_num_threads())],
                                     capture_output=True, text=True, check=True)
                rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
                retrain = next((r for r in rows if r["ratio"] == ratio and r["curvature"] == "retrain"), None)
                if retrain is not None and rows[-1] is not retrain:
                    rows[-1]["speedup"] = retrain["seconds"] / rows[-1]["seconds"]
                print({k: rows[-1].get(k) for k in ("ratio", "curvature", "prune", "request_edges", "seconds",
                                                     "peak_mb_over_baseline", "speedup", "prediction_gap")}, flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json(args.out, {"train_edges": train_graph[EDGE].edge_index.size(1),
                          "labelled_edges": graph[EDGE].edge_index.size(1), "training": args.training,
                          "train_seconds": fit.seconds, "epochs": fit.epochs,
                          "final_train_row": fit.history[-1], "rows": rows})


if __name__ == "__main__":
    main()
