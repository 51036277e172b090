"""PyG modules through PyGRecommender, given the graph as ``edge_index`` or as a sparse adjacency (``sparse=True``).

On ML-100K's attack protocol (5% of the training labels flipped, seed 0; LightGCN's preset, L2 times ``--l2``),
for PyG's LightGCN (64 wide, 2 layers), which the adapter runs by graphforget's propagation whatever the form, the
same class under another name (``pyg_lightgcn_own_code``: run through PyG's own code, as any module) and the
``LinearGCN`` of ``custom_gnn.py`` (LGConv layers, a shared Linear): both forms start from the same weights,
train ``--epochs`` epochs (no early stopping) and unlearn the flipped labels with IFRU (defaults). Reported per
module and form: seconds per epoch, IFRU's seconds, CG iterations and whether its step was trusted; and the
largest difference between the two forms' scores of the test pairs after training (summation order only) and
after IFRU (there also CG's: it stops at a relative residual of 0.01, and the forms' float32 products round
differently). One process, one thread.

    python benchmarks/pyg_adapter.py --out benchmarks/results/pyg_adapter.json
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import torch
from torch_geometric.nn.models import LightGCN

from custom_gnn import LinearGCN
from graphforget.data import EDGE, num_items, num_users
from graphforget.io import write_json
from graphforget.models import PyGRecommender
from graphforget.presets import default_hparams
from graphforget.protocols.attack import prepare_attack_data
from graphforget.train import train
from graphforget.unlearn import IFRU

class OwnCode(LightGCN):
    """PyG's LightGCN under another class: the adapter calls its own code."""


MODULES = {"pyg_lightgcn": lambda nodes: LightGCN(nodes, 64, num_layers=2),
           "pyg_lightgcn_own_code": lambda nodes: OwnCode(nodes, 64, num_layers=2), "linear_gcn": LinearGCN}
FORMS = ("edge_index", "sparse")


def run_form(module: str, sparse: bool, data, hp, epochs: int) -> tuple[dict, torch.Tensor, torch.Tensor]:
    """One form: train, unlearn; its figures and its test scores after each."""
    graph, test = data.train, data.split.test[EDGE].edge_index
    users, items = num_users(graph), num_items(graph)
    model = PyGRecommender(MODULES[module](users + items), users, items, receptive_field=2, sparse=sparse)
    model.reset_parameters(0)
    config = dataclasses.replace(hp.train_config(0), epochs=epochs, patience=0)
    start = time.perf_counter()
    train(model, graph, hp.objective(), config)
    per_epoch = (time.perf_counter() - start) / epochs
    model.eval()
    result = IFRU(model, graph, hp.objective()).unlearn(data.request)
    with torch.no_grad():
        trained, unlearned = model(graph, test), result.model(result.graph, test)
    row = {"seconds_per_epoch": per_epoch, "ifru_seconds": result.seconds, "trusted": result.info["trusted"],
           "cg_iterations": sum(attempt["iterations"] for attempt in result.info["attempts"])}
    return row, trained, unlearned


def run_module(module: str, epochs: int, l2_factor: float) -> dict:
    data = prepare_attack_data("ml-100k", None, 0.05, 0, synthetic_fallback=False)
    hp = default_hparams("lightgcn", "ml-100k", "early-stopped")
    hp = hp.replace(l2=hp.l2 * l2_factor)
    rows, scores = {}, {}
    for form in FORMS:
        rows[form], *scores[form] = run_form(module, form == "sparse", data, hp, epochs)
    differences = [float((a - b).abs().max()) for a, b in zip(scores["edge_index"], scores["sparse"])]
    base, fast = rows["edge_index"], rows["sparse"]
    return {"forms": rows, "max_score_difference": dict(zip(("trained", "unlearned"), differences)),
            "speedup": {"epoch": base["seconds_per_epoch"] / fast["seconds_per_epoch"],
                        "ifru": base["ifru_seconds"] / fast["ifru_seconds"]}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--l2", type=float, default=1.0, help="the preset's L2 times this (default 1)")
    parser.add_argument("--modules", nargs="+", choices=sorted(MODULES), default=sorted(MODULES))
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = {}
    for module in args.modules:
        results[module] = run_module(module, args.epochs, args.l2)
        print(json.dumps({module: results[module]}), file=sys.stderr, flush=True)
    write_json(args.out, {"epochs": args.epochs, "l2_factor": args.l2, "modules": results})


if __name__ == "__main__":
    main()
