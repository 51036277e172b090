"""IFRU and SCIF on a user's own GNN with dense weights, trained the users' way (the attack protocol).

The model (``--model``) is the ``LinearGCN`` of docs/custom_model.rst (LGConv layers each followed by one shared
Linear) or a GraphSAGE recommender (SAGEConv layers, mean aggregation, ReLU between them) behind
``PyGRecommender``: each normalises by itself, so every method runs it on the whole graph, and its dense weights
are in IFRU's solve. Trained with Adam and early stopping (LightGCN's preset on ML-100K, L2 times ``--l2``); the
request is the flipped training labels. Per seed: Original, Retrain, a second Retrain (the noise floor),
FineTune-3, IFRU and SCIF (defaults): AUC_0/1/2, completeness, prediction gap to Retrain, seconds, and IFRU's
damping.

    python benchmarks/custom_gnn.py --seeds 3 --l2 0 --out benchmarks/results/custom_gnn_ml-100k_l2-0.json
    python benchmarks/custom_gnn.py --model sage --seeds 3 --l2 0 \
        --out benchmarks/results/custom_gnn_sage_ml-100k_l2-0.json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from torch_geometric.nn import LGConv, SAGEConv

from ifru_robustness import method_rows, run_methods
from graphforget.data import num_items, num_users
from graphforget.io import write_json
from graphforget.models import PyGRecommender
from graphforget.presets import default_hparams
from graphforget.protocols.attack import prepare_attack_data
from graphforget.train import train


#: The robustness grid's methods measured here (``ifru_robustness.unlearners``).
METHODS = ("retrain", "retrain2", "finetune_3", "ifru", "scif")


class LinearGCN(torch.nn.Module):
    """Node embeddings, K LGConv layers each followed by a shared linear map, dot-product scores."""

    def __init__(self, num_nodes, embedding_dim=32, num_layers=2):
        super().__init__()
        self.embedding = torch.nn.Embedding(num_nodes, embedding_dim)
        self.convs = torch.nn.ModuleList(LGConv() for _ in range(num_layers))
        self.lin = torch.nn.Linear(embedding_dim, embedding_dim)
        self.reset_parameters()

    def reset_parameters(self):
        torch.nn.init.normal_(self.embedding.weight, std=0.1)
        self.lin.reset_parameters()

    def get_embedding(self, edge_index, edge_weight=None):
        x = out = self.embedding.weight
        for conv in self.convs:
            x = self.lin(conv(x, edge_index, edge_weight))
            out = out + x
        return out / (len(self.convs) + 1)

    def forward(self, edge_index, edge_label_index, edge_weight=None):
        x = self.get_embedding(edge_index, edge_weight)
        return (x[edge_label_index[0]] * x[edge_label_index[1]]).sum(-1)


class GraphSAGE(torch.nn.Module):
    """Node embeddings, K SAGEConv layers (mean of the neighbours, ReLU between the layers), dot-product scores."""

    def __init__(self, num_nodes, embedding_dim=32, num_layers=2):
        super().__init__()
        self.embedding = torch.nn.Embedding(num_nodes, embedding_dim)
        self.convs = torch.nn.ModuleList(SAGEConv(embedding_dim, embedding_dim) for _ in range(num_layers))
        self.reset_parameters()

    def reset_parameters(self):
        torch.nn.init.normal_(self.embedding.weight, std=0.1)
        for conv in self.convs:
            conv.reset_parameters()

    def get_embedding(self, edge_index, edge_weight=None):
        x = self.embedding.weight
        for layer, conv in enumerate(self.convs):
            x = conv(x, edge_index)
            x = x.relu() if layer < len(self.convs) - 1 else x
        return x

    def forward(self, edge_index, edge_label_index, edge_weight=None):
        x = self.get_embedding(edge_index)
        return (x[edge_label_index[0]] * x[edge_label_index[1]]).sum(-1)


MODULES = {"linear_gcn": LinearGCN, "sage": GraphSAGE}


def run_seed(seed: int, l2_factor: float, attack: float, module: str = "linear_gcn", methods=METHODS) -> dict:
    data = prepare_attack_data("ml-100k", None, attack, seed, synthetic_fallback=False)
    hp = default_hparams("lightgcn", "ml-100k", "early-stopped")
    hp = hp.replace(l2=hp.l2 * l2_factor)
    graph, val, test, request = data.train, data.split.val, data.split.test, data.request
    users, items = num_users(graph), num_items(graph)
    model = PyGRecommender(MODULES[module](users + items), users, items, receptive_field=2)
    model.reset_parameters(seed)
    fit = train(model, graph, hp.objective(), hp.train_config(seed), val)
    model.eval()
    outcomes = run_methods(model, graph, hp, val, seed, request, methods)
    with torch.no_grad():
        rows = method_rows(model, graph, test, request, outcomes)
    for name in {"ifru", "scif"} & set(outcomes):
        info = outcomes[name].info
        keys = ("damping", "implicit_ridge", "dense_damping", "gradient_ratio")
        rows[name]["solve"] = {key: info.get(key) for key in keys}
        rows[name]["solve"]["attempts"] = [{key: a.get(key) for key in ("damping", "iterations", "ratio")}
                                           for a in info["attempts"]]
    return {"seed": seed, "l2": hp.l2, "best_epoch": fit.best_epoch, "request_edges": int(request.size(1)),
            "methods": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(MODULES), default="linear_gcn")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--l2", type=float, default=0.0, help="the preset's L2 times this (default 0)")
    parser.add_argument("--attack", type=float, default=0.05, help="share of flipped labels (default 0.05)")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=METHODS,
                        help="default: all; retrain always runs (the reference)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    methods = ("retrain",) + tuple(m for m in args.methods if m != "retrain")
    torch.set_num_threads(1)
    cells = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        cells.append(run_seed(seed, args.l2, args.attack, args.model, methods))
        keys = ("mean_completeness", "prediction_gap", "seconds")
        summary = {name: {key: row.get(key) for key in keys} for name, row in cells[-1]["methods"].items()
                   if name != "original"}
        print(json.dumps({"seed": seed, **summary}), file=sys.stderr, flush=True)
    payload = {"model": args.model, "l2_factor": args.l2, "attack": args.attack, "methods": methods, "cells": cells}
    write_json(args.out, payload)


if __name__ == "__main__":
    main()
