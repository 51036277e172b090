"""Deletion requests as they arrive in production: one user's check-ins, or one check-in, on Gowalla.

    python benchmarks/ifru_requests.py [--quick] [--backbones mf lightgcn] [--requests user check-in]
    python benchmarks/ifru_requests.py --training stationary --backbones mf \
                                       --out benchmarks/results/ifru_requests_stationary.json

Gowalla's 810k training check-ins, 10% held out for early stopping (729k to train on), one sampled
negative each; MF and LightGCN-2, trained with the library's default recipe (:func:`default_hparams`:
mini-batch Adam, early stopping on validation AUC). On one thread here a training takes about 4 min
(MF) and 25 min (LightGCN), and each request retrains once. Each request is unlearned by IFRU's paper step
(and, for LightGCN, with pruning ratios (1, .01, .01)) and by retraining from scratch with the same
recipe, in one run, so the speed-up is a ratio of two times measured here. Where the attack protocol
of ``ifru_attack.py`` removes 1-8% of a small graph, these requests touch a few hundred embedding rows
of a large one: the case the k-hop locality of IFRU is for.

Reports per backbone and request: seconds, speed-up over retraining, test AUC (the test check-ins
with one sampled negative each), and the mean predicted probability of the requested check-ins
(Original, IFRU, Retrain: forgetting lowers it). Writes ``benchmarks/results/ifru_requests.json``.
``--training stationary`` trains (and retrains) with full-batch L-BFGS to a stationary point instead
and adds :meth:`IFRUConfig.newton` (too slow for LightGCN on this CPU: seconds per iteration).
``--quick``: MF, the user request, at most 3 epochs. ``--device cuda``: the models and graphs on the GPU
(every time synchronises it).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from graphforget.data import EDGE, add_negatives, edge_subgraph, find_data_root, load_lightgcn, user_edges
from graphforget.io import write_json
from graphforget.metrics import evaluate_auc, mean_probability
from graphforget.presets import TRAININGS, default_hparams
from graphforget.train import train
from graphforget.unlearn import IFRU, IFRUConfig, Retrain, RetrainConfig

RESULTS = Path(__file__).parent / "results"
REQUESTS = ("user", "check-in")


def prepare(root: Path, val_ratio: float = 0.1, seed: int = 0):
    """``(train graph, validation pairs, test pairs)``: labelled with one sampled negative per check-in.

    The negatives are drawn once for all training check-ins, so those of the validation pairs are
    never training positives."""
    positives, test = load_lightgcn(root / "gowalla")
    labelled = add_negatives(positives, 1, seed=seed)  # positives first, then one negative each, in order
    count = positives[EDGE].edge_index.size(1)
    held_out = torch.randperm(count, generator=torch.Generator().manual_seed(seed))[:round(val_ratio * count)]
    is_val = torch.zeros(count, dtype=torch.bool)
    is_val[held_out] = True
    is_val = is_val.repeat(2)
    return (edge_subgraph(labelled, ~is_val), edge_subgraph(labelled, is_val),
            add_negatives(test, 1, seed=seed + 1))


def make_request(observed, kind: str, seed: int) -> torch.Tensor:
    """``user``: every check-in of a random user (a user who leaves); ``check-in``: one random check-in."""
    gen = torch.Generator().manual_seed(seed)
    if kind == "user":
        return user_edges(observed, torch.randint(observed["user"].num_nodes, (1,), generator=gen))
    pick = torch.randint(observed[EDGE].edge_index.size(1), (1,), generator=gen)
    return observed[EDGE].edge_index[:, pick]


def run_backbone(name: str, graph, val, test, requests, max_epochs: int | None, seed: int,
                 training: str = "early-stopped", device: str = "cpu") -> list[dict]:
    # ML-100K's values: none were tuned on Gowalla (they differ only in the stationary MF's L2, 8).
    hparams = default_hparams(name, "ml-100k", training).replace({"train.epochs": max_epochs})
    objective, config = hparams.objective(), hparams.train_config(progress=True)
    observed = edge_subgraph(graph, graph[EDGE].observed)  # requests are check-ins, not sampled negatives
    graph, val, test = (data.clone().to(device) for data in (graph, val, test))  # PyG's .to() moves in place
    model = hparams.build_model(graph["user"].num_nodes, graph["item"].num_nodes, seed=0).to(device)
    fit = train(model, graph, objective, config, val)
    print(f"{name}: trained in {fit.seconds:.0f} s, {fit.epochs} epochs (best {fit.best_epoch})", flush=True)
    methods = {"ifru": IFRUConfig(hops=model.receptive_field)}
    if model.receptive_field:
        methods["ifru_pruned"] = IFRUConfig(hops=model.receptive_field, prune=(1.0,) + (0.01,) * model.receptive_field)
    if training == "stationary":
        methods["ifru_newton"] = IFRUConfig.newton(model.receptive_field)
    rows = []
    for kind in requests:
        request = make_request(observed, kind, seed).to(device)
        row = {"backbone": name, "training": training, "device": device, "request": kind,
               "request_edges": request.size(1),
               "hparams": hparams.as_dict(), "train_seconds": fit.seconds, "train_epochs": fit.epochs,
               "threads": torch.get_num_threads(),
               "original": {"test_auc": evaluate_auc(model, graph, test)["auc_0"],
                            "request_probability": mean_probability(model, graph, request)}}
        results = {method: IFRU(model, graph, objective, cfg).unlearn(request) for method, cfg in methods.items()}
        results["retrain"] = Retrain(model, graph, objective, RetrainConfig(config, seed=0), val=val).unlearn(request)
        for method, result in results.items():
            row[method] = {"seconds": result.seconds,
                           "test_auc": evaluate_auc(result.model, result.graph, test)["auc_0"],
                           "request_probability": mean_probability(result.model, result.graph, request),
                           "info": {k: v for k, v in result.info.items() if k != "phase_seconds"}}
            if method != "retrain":
                row[method]["speedup"] = results["retrain"].seconds / result.seconds
        rows.append(row)
        shown = ("seconds", "speedup", "test_auc", "request_probability")
        print(json.dumps({k: row[k] for k in ("backbone", "request", "request_edges")}
                         | {m: {k: round(row[m][k], 4) for k in shown if k in row[m]} for m in ["original", *results]}),
              flush=True)
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=None)
    parser.add_argument("--backbones", nargs="+", choices=["mf", "lightgcn"], default=["mf", "lightgcn"])
    parser.add_argument("--requests", nargs="+", choices=REQUESTS, default=list(REQUESTS))
    parser.add_argument("--epochs", type=int, default=None, help="at most this many epochs (default: the recipe's)")
    parser.add_argument("--training", choices=TRAININGS, default="early-stopped")
    parser.add_argument("--seed", type=int, default=0, help="seeds the choice of the requests")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu", help="torch device of the models and graphs, e.g. cuda")
    parser.add_argument("--quick", action="store_true", help="MF, the user request, at most 3 epochs")
    parser.add_argument("--out", type=Path, default=RESULTS / "ifru_requests.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.quick:
        args.backbones, args.requests, args.epochs = ["mf"], ["user"], 3
    root = find_data_root(args.root)
    if root is None or not (root / "gowalla" / "train.txt").is_file():
        sys.exit("Gowalla not found: pass --root or set $GRAPHFORGET_DATA")
    graph, val, test = prepare(root)
    rows = [row for name in args.backbones for row in run_backbone(name, graph, val, test, args.requests,
                                                                    args.epochs, args.seed, args.training,
                                                                    args.device)]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json(args.out, {"train_edges": int(graph[EDGE].observed.sum()),
                          "labelled_edges": graph[EDGE].edge_index.size(1), "rows": rows})


if __name__ == "__main__":
    main()
