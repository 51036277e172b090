"""What UnlearnRec's backbones reach on ML-100K when trained past their best epoch, with and without their
contrastive term.

    python benchmarks/contrastive_backbones.py [--epochs 150] [--seed 0]

For LightGCN, SGL and SimGCL (``default_hparams(model, loss="bpr")``: UnlearnRec's profile, lr 5e-3, batches
of 8,192), for SGL and SimGCL again with ``ssl_weight=0``, and for SimGCL with noiseless views (``eps=0``)
and with a tenth of its contrastive weight (0.02): BPR training for ``--epochs`` epochs on
ML-100K's training split, the best validation-AUC epoch kept (as the ``adversarial`` protocol's models are);
its test AUC and Recall@20, the validation AUC every 10 epochs, seconds. At the initialisation, on one batch:
the norm of the BPR gradient and of the contrastive term's (weighted) on the user table, and the mean row
norm of the propagated embeddings (SimGCL's views add noise of norm ``eps`` per layer to them), and the share
of the users and of the items that one batch holds (the contrastive term spreads apart every node of the batch).
Writes ``results/contrastive_backbones.json``.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from graphforget.bench import DataSource
from graphforget.data import EDGE, num_items, num_users
from graphforget.io import write_json
from graphforget.metrics import evaluate_auc, recall_ndcg_at_k
from graphforget.presets import default_hparams
from graphforget.train import train

RESULTS = Path(__file__).parent / "results"
#: (model, contrastive weight, SimGCL's eps); None: the preset's.
RUNS = (("lightgcn", None, None), ("sgl", None, None), ("sgl", 0.0, None), ("simgcl", None, None),
        ("simgcl", 0.0, None), ("simgcl", None, 0.0), ("simgcl", 0.02, None))


def gradients_at_init(model, graph, objective, batch_size: int, seed: int) -> dict:
    """Norms, on the user table, of one batch's BPR gradient and of its weighted contrastive term's."""
    generator = torch.Generator().manual_seed(seed)
    positions = torch.randperm(graph[EDGE].edge_index.size(1), generator=generator)[:batch_size]
    weight, grads = getattr(objective, "ssl_weight", 0.0), []
    for ssl in (0.0, weight):
        if hasattr(objective, "ssl_weight"):
            objective.ssl_weight = ssl
        model.zero_grad()
        objective.batch_loss(model, graph, positions, 1).backward()
        grads.append(model.user_emb.weight.grad.clone())
    with torch.no_grad():
        rows = torch.cat(model.embed(graph)).norm(dim=1).mean()
    model.zero_grad()
    users, items = graph[EDGE].edge_index[:, positions]
    return {"bpr_gradient": float(grads[0].norm()), "contrastive_gradient": float((grads[1] - grads[0]).norm()),
            "propagated_row_norm": float(rows), "batch_user_share": users.unique().numel() / num_users(graph),
            "batch_item_share": items.unique().numel() / num_items(graph)}


def one_run(data, name: str, ssl: float | None, eps: float | None, epochs: int, seed: int) -> dict:
    """Trains one backbone (``ssl``: its contrastive weight, ``eps``: SimGCL's noise; ``None``: the preset's)
    and measures it."""
    hparams = default_hparams(name, loss="bpr").replace({"train.epochs": epochs})
    graph, split = data.split.train, data.split
    model = hparams.build_model(num_users(graph), num_items(graph), seed)
    if eps is not None:
        model.eps = eps
    objective = hparams.objective(seed)
    if ssl is not None:
        objective.ssl_weight = ssl
    at_init = gradients_at_init(model, graph, objective, hparams.train.batch_size, seed)
    fit = train(model, graph, objective, hparams.train_config(seed), split.val)
    model.eval()
    return {"model": name, "ssl_weight": getattr(objective, "ssl_weight", None), "eps": getattr(model, "eps", None),
            "at_init": at_init,
            "best_epoch": fit.best_epoch, "seconds": fit.seconds,
            "val_auc_every_10": [round(row["val_auc"], 4) for row in fit.history[::10]],
            "test_auc": evaluate_auc(model, graph, split.test)["auc_0"],
            **recall_ndcg_at_k(model, graph, split.test, k=20)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=150)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = DataSource("ml-100k").for_loss("bpr").prepare(args.seed)
    rows = []
    for name, ssl, eps in RUNS:
        rows.append(one_run(data, name, ssl, eps, args.epochs, args.seed))
        print(json.dumps(rows[-1]), flush=True)
    payload = {"dataset": data.source, "epochs": args.epochs, "seed": args.seed, "threads": 1, "rows": rows}
    RESULTS.mkdir(exist_ok=True)
    write_json(RESULTS / "contrastive_backbones.json", payload)


if __name__ == "__main__":
    main()
