"""Smoke benchmark of SISA and RecEraser on ML-100K under the IFRU attack protocol.

ML-100K -> 5-core -> binarise at 4 -> random 6:2:2 split (seed 0) -> flip 2% of the training labels;
MF with BCE (l2 = 5), Adam lr 0.01, batch 4096, early stopping on validation (patience 5, at most 100
epochs). Prints test AUC_0/1/2 of Original, Retrain, SISA and RecEraser before/after unlearning the
flipped edges, with fit and unlearning seconds (one thread).

    python benchmarks/sisa_receraser_smoke.py [--data ../shared/data] [--shards 10]
    torchrun --nproc-per-node 2 benchmarks/sisa_receraser_smoke.py   # shards shared by 2 processes (gloo)
"""
from __future__ import annotations

import argparse

import torch

from graphforget.data import attack_flip, binarize, find_data_root, k_core, load_movielens_100k, random_split
from graphforget.distributed import init_from_env, rank_and_size
from graphforget.metrics import evaluate_auc
from graphforget.models import MF
from graphforget.objectives import BCEObjective
from graphforget.train import TrainConfig, train
from graphforget.unlearn import SISA, RecEraser, RecEraserConfig, Retrain, RetrainConfig, SISAConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="data root holding ml-100k/ (default: ../shared/data)")
    parser.add_argument("--shards", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0, help="seed of the models and partitions")
    parser.add_argument("--partition", default="interaction", choices=["interaction", "user", "item"])
    parser.add_argument("--dim", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(1)
    init_from_env()  # under torchrun: the shards are trained by every rank, a share each
    report = print if rank_and_size()[0] == 0 else (lambda *a, **k: None)

    root = find_data_root(args.data)
    if root is None:
        raise SystemExit("no data root: pass --data or set GRAPHFORGET_DATA")
    split = random_split(binarize(k_core(load_movielens_100k(root), 5), 4), seed=0)
    graph, request = attack_flip(split.train, 0.02, seed=0)
    objective = BCEObjective(l2=5.0)
    config = TrainConfig(lr=0.01, batch_size=4096, patience=5, epochs=100)
    report(f"{split}, request={request.size(1)} flipped edges, threads={torch.get_num_threads()}")

    rows = []

    def auc(model, g):
        return evaluate_auc(model, g, split.test, request)

    model = MF(int(graph["user"].num_nodes), int(graph["item"].num_nodes), args.dim)
    model.reset_parameters(args.seed)
    fit = train(model, graph, objective, config, split.val)
    rows.append(("Original", auc(model, graph), fit.seconds, None, None))
    result = Retrain(model, graph, objective, RetrainConfig(config, seed=args.seed), val=split.val).unlearn(request)
    rows.append(("Retrain", auc(result.model, result.graph), None, result.seconds, None))

    for name, method in (
        ("SISA", SISA(model, graph, objective, SISAConfig(config, num_shards=args.shards, seed=args.seed),
                      val=split.val)),
        ("RecEraser", RecEraser(model, graph, objective, RecEraserConfig(
            config, num_shards=args.shards, partition=args.partition, seed=args.seed, pretrain=True),
            val=split.val)),
    ):
        method.fit()
        ensemble, fit_seconds = method.model, method.fit_seconds
        rows.append((f"{name} before", auc(ensemble, graph), fit_seconds, None, None))
        result = method.unlearn(request)
        rows.append((f"{name} after", auc(result.model, result.graph), None, result.seconds,
                     result.info["num_retrained"]))
        extra = {k: v for k, v in method.fit_info.items()
                 if k.endswith(("seconds", "epochs", "iterations")) and not isinstance(v, list)}
        report(f"{name} fit: shard sizes {method.fit_info['shard_sizes']}, "
              + ", ".join(f"{k}={v:.2f}" for k, v in extra.items())
              + f"; unlearn: {', '.join(f'{k}={v}' for k, v in result.info.items() if 'epochs' in k)}")

    report(f"\n{'model':<18}{'AUC_0':>8}{'AUC_1':>8}{'AUC_2':>8}{'fit s':>9}{'unlearn s':>11}{'retrained':>11}")
    for name, metrics, fit_s, unlearn_s, retrained in rows:
        cells = [f"{metrics[k]:8.4f}" for k in ("auc_0", "auc_1", "auc_2")]
        cells.append(f"{fit_s:9.2f}" if fit_s is not None else f"{'':9}")
        cells.append(f"{unlearn_s:11.2f}" if unlearn_s is not None else f"{'':11}")
        cells.append(f"{retrained:11d}" if retrained is not None else f"{'':11}")
        report(f"{name:<18}" + "".join(cells))


if __name__ == "__main__":
    main()
