"""Where UnlearnRec loses Recall@20 on a converged SGL or SimGCL: its parts switched off one at a time.

    python benchmarks/unlearnrec_ablation.py [--seeds 0 1 2] [--epochs 150]
    python benchmarks/unlearnrec_ablation.py --model simgcl --ssl-weight 0.02 --epochs 300

The ``adversarial`` protocol's setting (:class:`~graphforget.bench.setting.Setting`) on ML-100K with SGL
(or ``--model``, with ``--ssl-weight``) trained for ``--epochs`` epochs (UnlearnRec's BPR profile otherwise):
a clean model, one fake edge per user (the item it scores lowest), the Original trained on the attacked
graph, and the Retrain without the fake edges. On that one Original per seed, UnlearnRec runs with its paper's configuration and with one change
each (:data:`VARIANTS`): no fine-tuning (the encoder's update alone), no pre-training (the encoder at its
initialisation), no unlearning loss (``l_u = 0`` in pre-training and fine-tuning), and 5 or 10
fine-tuning epochs instead of 2; FineTune (3 and 10 epochs) beside them. The paper's configuration and the
encoder alone run again on a request of as many real training edges drawn at random (the kind of request
the encoder is pre-trained on), against a Retrain without those. For each: Recall@20 and its share
of its Retrain's, the membership attack's AUC on the removed edges (the Retrain's beside it), MI-BF, MI-NG,
the prediction gap to the Retrain, the validation AUC (that of UnlearnRec's validation test, on every row)
and the seconds of the call (UnlearnRec's pre-training apart, as ``fit_seconds``); for UnlearnRec, whether
its acceptance tests passed (``trusted``). Writes ``results/unlearnrec_ablation.json`` (SGL) or
``results/unlearnrec_ablation_<model>.json`` (``--out`` to change; one file per process when seeds are
split across processes, merged with ``--merge``).
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch

from graphforget.bench import DataSource
from graphforget.bench.harness import bench_hparams
from graphforget.bench.protocols import measure
from graphforget.bench.setting import Setting
from graphforget.data import EDGE
from graphforget.io import atomic_write
from graphforget.metrics import evaluate_auc

RESULTS = Path(__file__).parent / "results"
#: name -> (method, options): UnlearnRec's paper configuration, then one change each; FineTune beside.
VARIANTS = {
    "unlearnrec (paper: 10 pre-training, 2 fine-tuning epochs)": ("unlearnrec", {}),
    "encoder only (0 fine-tuning epochs)": ("unlearnrec", {"finetune_epochs": 0}),
    "no pre-training": ("unlearnrec", {"pretrain_epochs": 0}),
    "no unlearning loss (l_u = 0)": ("unlearnrec", {"l_u": 0.0}),
    "5 fine-tuning epochs": ("unlearnrec", {"finetune_epochs": 5}),
    "10 fine-tuning epochs": ("unlearnrec", {"finetune_epochs": 10}),
    "finetune (3 epochs)": ("finetune", {}),
    "finetune (10 epochs)": ("finetune", {"epochs": 10}),
}
#: The variants also run on a random request of real edges (the rows' names end in ``RANDOM``).
ON_RANDOM_EDGES = ("unlearnrec (paper: 10 pre-training, 2 fine-tuning epochs)", "encoder only (0 fine-tuning epochs)")
RANDOM = ", random real edges"
FIGURES = ("recall@20", "mia_auc", "mia_auc_retrain", "mi_bf", "mi_ng", "prediction_gap")


def random_request(setting: Setting, seed: int):
    """As many real training edges as the fake ones, drawn uniformly (seeded) from the others."""
    store, fake = setting.train_graph[EDGE], setting.request
    width = int(store.edge_index[1].max()) + 1
    real = (store.edge_label > 0) & ~torch.isin(store.edge_index[0] * width + store.edge_index[1],
                                                fake[0] * width + fake[1])
    positions = real.nonzero().squeeze(1)
    pick = torch.randperm(positions.numel(), generator=torch.Generator().manual_seed(seed))[:fake.size(1)]
    return store.edge_index[:, positions[pick]]


def variant_row(setting: Setting, method: str, options: dict, request, retrain, seed: int) -> dict:
    """One variant unlearning ``request`` from the Original, measured against ``retrain``."""
    unlearner = setting.unlearner(method, options)
    outcome = unlearner.unlearn(request)
    row = measure(setting, outcome.model, outcome.graph, request, retrain, seed)
    trusted = {"trusted": outcome.info["trusted"]} if "trusted" in outcome.info else {}
    return {**{k: row[k] for k in FIGURES}, "recall@20_retrain": row["recall@20_retrain"],
            "val_auc": evaluate_auc(outcome.model, outcome.graph, setting.val)["auc_0"], **trusted,
            "seconds": outcome.seconds, "fit_seconds": unlearner.fit_seconds if unlearner.needs_fit else None}


def one_seed(seed: int, epochs: int, model: str = "sgl", ssl_weight: float | None = None) -> dict:
    """The Original, the Retrains and every variant of one seed."""
    changes = {"train.epochs": epochs, **({} if ssl_weight is None else {"ssl_weight": ssl_weight})}
    hparams = bench_hparams(model, "ml-100k", "adversarial").replace(changes)
    setting = Setting(DataSource("ml-100k").for_loss("bpr"), hparams, seed, {"kind": "adversarial", "fraction": 1.0})
    requests = {"": setting.request, RANDOM: random_request(setting, seed)}
    rows = {"original": {"recall@20": setting.ranking(setting.original, setting.train_graph)["recall@20"],
                         "val_auc": evaluate_auc(setting.original, setting.train_graph, setting.val)["auc_0"]}}
    for suffix, request in requests.items():
        retrain = setting.reference(request)
        rows["retrain" + suffix] = {"recall@20": setting.ranking(retrain.model, retrain.graph)["recall@20"],
                                    "val_auc": evaluate_auc(retrain.model, retrain.graph, setting.val)["auc_0"],
                                    "seconds": retrain.seconds}
        for name, (method, options) in VARIANTS.items():
            if suffix and name not in ON_RANDOM_EDGES:
                continue
            rows[name + suffix] = variant_row(setting, method, options, request, retrain, seed)
            print(seed, name + suffix, json.dumps(rows[name + suffix]), flush=True)
    for name, row in rows.items():
        retrain = rows["retrain" + (RANDOM if name.endswith(RANDOM) else "")]
        row["share_of_retrain_recall"] = row["recall@20"] / retrain["recall@20"]
    return {"seed": seed, "request_edges": setting.request.size(1), "rows": rows}


def summary(runs: list[dict]) -> dict:
    """Each variant's figures averaged over the seeds (the spread is in the per-seed rows); ``trusted``: the
    share of seeds whose result passed UnlearnRec's acceptance tests."""
    names = list(runs[0]["rows"])
    return {name: {key: statistics.fmean(run["rows"][name][key] for run in runs)
                   for key, value in runs[0]["rows"][name].items() if isinstance(value, (float, bool))}
            for name in names}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=150)
    parser.add_argument("--model", choices=["sgl", "simgcl"], default="sgl")
    parser.add_argument("--ssl-weight", type=float, default=None, help="the contrastive term's weight (the preset's)")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--merge", type=Path, nargs="+", help="per-process files to merge into --out")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.merge:
        parts = [json.loads(path.read_text()) for path in args.merge]
        runs = sorted((run for part in parts for run in part["runs"]), key=lambda run: run["seed"])
        setting = {key: parts[0][key] for key in ("backbone", "ssl_weight", "epochs")}
    else:
        runs = [one_seed(seed, args.epochs, args.model, args.ssl_weight) for seed in args.seeds]
        setting = {"backbone": args.model, "ssl_weight": args.ssl_weight, "epochs": args.epochs}
    payload = {"dataset": "ml-100k", **setting, "threads": 1, "summary": summary(runs), "runs": runs}
    backbone = setting["backbone"]
    out = args.out or RESULTS / ("unlearnrec_ablation.json" if backbone == "sgl"
                                 else f"unlearnrec_ablation_{backbone}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(payload, indent=1)  # the committed files' layout
    atomic_write(out, lambda handle: handle.write(text), binary=False)


if __name__ == "__main__":
    main()
