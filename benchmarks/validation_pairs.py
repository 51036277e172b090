"""Which validation pairs can judge an unlearned model: a Retrain's validation AUC after a deletion.

    python benchmarks/validation_pairs.py [--seeds 0 1 2] [--ratio 0.05] [--l2 L2]

Deletion sets (``graphforget bench --protocol deletion``'s setting: ML-100K, MF, BCE, the preset's
L2 or ``--l2``; 5% of the training edges or ``--ratio``: every interaction of random users, of the most active
users, or random interactions). For each, the change of the validation AUC from the Original to a Retrain and to
IFRU, in standard errors of the Original's (Hanley and McNeil), on every validation pair and on the pairs
whose user and item keep a training edge (those UnlearnRec's validation test scores). Writes
``results/validation_pairs.json``.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from graphforget.bench import DataSource, deletion_request
from graphforget.bench.harness import bench_hparams
from graphforget.bench.setting import Setting
from graphforget.data import EDGE, pairs_with_data
from graphforget.io import write_json
from graphforget.metrics import auc_standard_error, evaluate_auc

RESULTS = Path(__file__).parent / "results"


def in_errors(setting: Setting, val):
    """``(model, graph) -> (AUC - AUC(Original)) / SE(Original)`` on ``val`` (the Original scored once)."""
    labels = val[EDGE].edge_label
    before = evaluate_auc(setting.original, setting.train_graph, val)["auc_0"]
    error = auc_standard_error(before, int((labels == 1).sum()), int((labels == 0).sum()))
    return lambda model, graph: (evaluate_auc(model, graph, val)["auc_0"] - before) / error


def one_seed(seed: int, ratio: float, l2: float | None) -> list[dict]:
    hparams = bench_hparams("mf", "ml-100k", "deletion")
    hparams = hparams if l2 is None else hparams.replace(l2=l2)
    setting = Setting(DataSource("ml-100k").for_loss("bce"), hparams, seed)
    on_all, rows = in_errors(setting, setting.val), []
    for kind in ("random", "core", "interactions"):
        request = deletion_request(setting.train_graph, kind, ratio, seed)
        results = {"retrain": setting.reference(request), "ifru": setting.unlearner("ifru", {}).unlearn(request)}
        kept = pairs_with_data(setting.val, results["retrain"].graph)
        on_kept = in_errors(setting, kept)
        share = kept[EDGE].edge_index.size(1) / setting.val[EDGE].edge_index.size(1)
        row = {"seed": seed, "kind": kind, "kept_share": share}
        for name, result in results.items():
            row[f"{name}_all"] = on_all(result.model, result.graph)
            row[f"{name}_kept"] = on_kept(result.model, result.graph)
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--ratio", type=float, default=0.05, help="share of the training edges deleted")
    parser.add_argument("--l2", type=float, default=None, help="the model's L2 (default: the preset's)")
    parser.add_argument("--out", type=Path, default=RESULTS / "validation_pairs.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = [row for seed in args.seeds for row in one_seed(seed, args.ratio, args.l2)]
    write_json(args.out, {"dataset": "ml-100k", "model": "mf", "ratio": args.ratio, "l2": args.l2, "rows": rows})


if __name__ == "__main__":
    main()
