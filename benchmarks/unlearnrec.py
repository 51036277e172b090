"""UnlearnRec on its paper's adversarial-edge protocol (Chen, Xia, Huang, SIGIR 2025, Sec. 4).

    python benchmarks/unlearnrec.py --quick    # ML-1M, LightGCN, 1 seed, few epochs (< 10 min on 2 CPU cores)
    python benchmarks/unlearnrec.py            # ML-1M + Gowalla, LightGCN / SGL / SimGCL, 3 seeds

Protocol, per dataset / backbone / seed:

1. train a *clean* model with BPR on the training split (``load_lightgcn``: ``train.txt``);
2. :func:`~graphforget.data.adversarial_edges`: each user's least-scored item under the clean model is
   added as a fake interaction; these edges are the request :math:`D_r`;
3. train the *Original* from scratch on the attacked graph;
4. every method in :data:`METHODS` unlearns :math:`D_r` from the Original (Retrain is the reference).

Reported: Recall@20 / NDCG@20 on ``test.txt`` (all-item ranking, each model's training items masked),
MI-BF (mean :math:`\\sigma(\\hat y)` of :math:`D_r` under the Original / after unlearning) and MI-NG
(mean :math:`\\sigma(\\hat y)` of random negatives of the same users / of :math:`D_r`, after unlearning;
both > 1 is good), and seconds: retraining, UnlearnRec's one-off pre-training, and the unlearning call
(encoder + fine-tuning). Writes ``benchmarks/results/unlearnrec.json`` and ``unlearnrec.png``.

Add a method (e.g. IFRU) by adding an entry to :data:`METHODS`: a callable that takes the
:class:`MethodContext` and returns an :class:`~graphforget.unlearn.Unlearner`; when the unlearner has a
``fit()`` it is called once before ``unlearn`` and timed apart (``prepare_seconds``).
"""
from __future__ import annotations

import argparse
import json
import logging
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from common import pyplot
from graphforget.data import EDGE, adversarial_edges, find_data_root, load_lightgcn, num_items, num_users
from graphforget.metrics import mi_bf, mi_ng, recall_ndcg_at_k
from graphforget.models import SGL, ContrastiveBPRObjective, LightGCN, SimGCL
from graphforget.objectives import BPRObjective, Objective
from graphforget.train import TrainConfig, train
from graphforget.clock import Stopwatch
from graphforget.unlearn import IFRU, IFRUConfig, Retrain, RetrainConfig, Unlearner, UnlearnRec, UnlearnRecConfig

RESULTS = Path(__file__).parent / "results"
log = logging.getLogger("benchmarks.unlearnrec")


@dataclass
class Profile:
    """Hyper-parameters of one benchmark profile (``--quick`` or the full one)."""
    embedding_dim: int = 64
    num_layers: int = 2
    l2: float = 1e-4
    lr: float = 5e-3
    batch_size: int = 8192
    clean_epochs: int = 30
    epochs: int = 50
    unlearnrec: dict = field(default_factory=lambda: dict(pretrain_epochs=10, resample_every=2, finetune_epochs=2,
                                                          batch_size=8192, lr=1e-3, finetune_lr=1e-3))


FULL = Profile()
# Few, large steps: a step's cost is the full-graph propagation, whatever the batch size.
# Pre-training gets 26 steps instead of thousands, hence its 10x learning rate; fine-tuning keeps 1e-3.
QUICK = Profile(lr=0.02, batch_size=65536, clean_epochs=2, epochs=10,
                unlearnrec=dict(pretrain_epochs=2, resample_every=1, finetune_epochs=1, batch_size=65536,
                                lr=1e-2, finetune_lr=1e-3))

#: Backbone name -> (model class, extra model kwargs, objective builder(l2, seed)).
BACKBONES: dict[str, tuple[type, dict, Callable[[float, int], Objective]]] = {
    "lightgcn": (LightGCN, {}, lambda l2, seed: BPRObjective(l2=l2, seed=seed)),
    "sgl": (SGL, {"drop_ratio": 0.1},
            lambda l2, seed: ContrastiveBPRObjective(l2=l2, ssl_weight=0.1, tau=0.2, seed=seed)),
    "simgcl": (SimGCL, {"eps": 0.1},
               lambda l2, seed: ContrastiveBPRObjective(l2=l2, ssl_weight=0.2, tau=0.2, seed=seed)),
}


@dataclass
class MethodContext:
    """What a method builder receives: the Original, its (attacked) training graph and objective."""
    model: torch.nn.Module
    graph: HeteroData
    objective: Objective
    train_config: TrainConfig
    profile: Profile
    seed: int


#: Method name -> builder of the unlearner. The hook for more methods (IFRU, ...): add an entry.
METHODS: dict[str, Callable[[MethodContext], Unlearner]] = {
    "retrain": lambda ctx: Retrain(ctx.model, ctx.graph, ctx.objective,
                                   RetrainConfig(ctx.train_config, seed=ctx.seed + 1000)),
    "unlearnrec": lambda ctx: UnlearnRec(ctx.model, ctx.graph, ctx.objective,
                                         UnlearnRecConfig(seed=ctx.seed, **ctx.profile.unlearnrec)),
    # IFRU's curvature and gradients use the objective's pairs and losses (BPR); the contrastive
    # term of SGL/SimGCL lives only in their batch loss, so IFRU treats it as absent. The profiles'
    # L2 is tiny and the models are far from converged: the default damps by the implicit ridge.
    "ifru": lambda ctx: IFRU(ctx.model, ctx.graph, ctx.objective),
    "ifru_paper": lambda ctx: IFRU(ctx.model, ctx.graph, ctx.objective, IFRUConfig.paper()),
}


def random_negatives(graph: HeteroData, users: Tensor, seed: int) -> Tensor:
    """One uniformly random item per user in ``users`` that is not an edge of that user in ``graph``."""
    gen = torch.Generator().manual_seed(seed)
    n_items = num_items(graph)
    known = graph[EDGE].edge_index[0] * n_items + graph[EDGE].edge_index[1]
    items = torch.randint(n_items, (users.numel(),), generator=gen)
    while True:
        bad = torch.isin(users * n_items + items, known)
        if not bad.any():
            return torch.stack([users, items])
        items[bad] = torch.randint(n_items, (int(bad.sum()),), generator=gen)


def evaluate(model, graph: HeteroData, test: HeteroData) -> dict:
    model.eval()
    return recall_ndcg_at_k(model, graph, test, k=20)


def run_one(dataset: str, train_graph: HeteroData, test: HeteroData, backbone: str, seed: int, profile: Profile,
            methods: list[str]) -> dict:
    cls, extra, make_objective = BACKBONES[backbone]
    n_users, n_items = num_users(train_graph), num_items(train_graph)
    objective = make_objective(profile.l2, seed)
    make = lambda init: _fresh(cls, n_users, n_items, profile, extra, init)
    row = {"dataset": dataset, "backbone": backbone, "seed": seed, "threads": torch.get_num_threads(),
           "users": n_users, "items": n_items, "train_edges": train_graph[EDGE].edge_index.size(1)}

    clean = make(seed)
    fit = train(clean, train_graph, objective, _train_config(profile, profile.clean_epochs, seed))
    row["clean"] = {**evaluate(clean, train_graph, test), "train_seconds": fit.seconds}
    attacked, request = adversarial_edges(clean, train_graph)
    row["request_edges"] = request.size(1)
    negatives = random_negatives(attacked, request[0], seed)

    original = make(seed + 1)
    config = _train_config(profile, profile.epochs, seed)
    fit = train(original, attacked, objective, config)
    row["original"] = {**evaluate(original, attacked, test), "train_seconds": fit.seconds,
                       "mi_ng": mi_ng(original, attacked, request, negatives)}
    log.info("%s/%s seed %d: clean %s, original %s", dataset, backbone, seed, row["clean"], row["original"])

    context = MethodContext(original, attacked, objective, config, profile, seed)
    row["methods"] = {}
    for name in methods:
        unlearner = METHODS[name](context)
        entry = {}
        if hasattr(unlearner, "fit"):
            entry["prepare_seconds"] = unlearner.fit().fit_seconds
        result = unlearner.unlearn(request)
        entry.update(evaluate(result.model, result.graph, test))
        entry["unlearn_seconds"] = result.seconds
        entry["mi_bf"] = mi_bf(original, attacked, result.model, result.graph, request)
        entry["mi_ng"] = mi_ng(result.model, result.graph, request, negatives)
        entry["info"] = {k: v for k, v in result.info.items() if isinstance(v, (int, float, str, bool))}
        row["methods"][name] = entry
        log.info("%s/%s seed %d: %s %s", dataset, backbone, seed, name, entry)
    return row


def _fresh(cls, n_users, n_items, profile: Profile, extra: dict, seed: int):
    model = cls(n_users, n_items, profile.embedding_dim, profile.num_layers, **extra)
    model.reset_parameters(seed)
    return model


def _train_config(profile: Profile, epochs: int, seed: int) -> TrainConfig:
    return TrainConfig(epochs=epochs, lr=profile.lr, batch_size=profile.batch_size, patience=0, seed=seed)


def summarise(rows: list[dict], methods: list[str]) -> list[dict]:
    """Means over seeds per dataset / backbone, plus UnlearnRec's speed-up and Recall gap to Retrain."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["dataset"], row["backbone"]), []).append(row)
    mean = statistics.mean
    out = []
    for (dataset, backbone), runs in groups.items():
        entry = {"dataset": dataset, "backbone": backbone, "seeds": len(runs),
                 "request_edges": mean(r["request_edges"] for r in runs)}
        for part in ("clean", "original"):
            for key in ("recall@20", "ndcg@20", "train_seconds"):
                entry[f"{part}_{key}"] = mean(r[part][key] for r in runs)
        entry["original_mi_ng"] = mean(r["original"]["mi_ng"] for r in runs)
        for name in methods:
            for key in ("recall@20", "ndcg@20", "mi_bf", "mi_ng", "unlearn_seconds", "prepare_seconds"):
                values = [r["methods"][name][key] for r in runs if key in r["methods"][name]]
                if values:
                    entry[f"{name}_{key}"] = mean(values)
        if "retrain" in methods:
            for name in methods:
                if name != "retrain":
                    entry[f"{name}_speedup_vs_retrain"] = mean(
                        r["methods"]["retrain"]["unlearn_seconds"] / r["methods"][name]["unlearn_seconds"] for r in runs)
                    entry[f"{name}_recall_vs_retrain"] = mean(
                        r["methods"][name]["recall@20"] / r["methods"]["retrain"]["recall@20"] for r in runs)
        out.append(entry)
    return out


def plot(summary: list[dict], methods: list[str], path: Path) -> None:
    plt = pyplot()
    if plt is None:
        return
    labels = [f"{s['dataset']}\n{s['backbone']}" for s in summary]
    names = ["original"] + methods
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    width = 0.8 / len(names)
    for j, name in enumerate(names):
        xs = [i + (j - (len(names) - 1) / 2) * width for i in range(len(summary))]
        axes[0].bar(xs, [s[f"{name}_recall@20"] for s in summary], width, label=name)
        axes[2].bar(xs, [s[f"{name}_mi_ng"] for s in summary], width, label=name)
    timing = [("retrain", "unlearn_seconds", "retrain")] + \
        [(m, key, f"{m} {key.split('_')[0]}") for m in methods if m != "retrain"
         for key in ("unlearn_seconds", "prepare_seconds")]
    timing = [t for t in timing if all(f"{t[0]}_{t[1]}" in s for s in summary)]
    width_t = 0.8 / max(len(timing), 1)
    for j, (name, key, label) in enumerate(timing):
        xs = [i + (j - (len(timing) - 1) / 2) * width_t for i in range(len(summary))]
        axes[1].bar(xs, [s[f"{name}_{key}"] for s in summary], width_t, label=label)
    axes[0].set_ylabel("Recall@20")
    axes[1].set_ylabel("seconds")
    axes[1].set_yscale("log")
    axes[1].set_ylim(bottom=min([1.0] + [s[f"{n}_{k}"] for s in summary for n, k, _ in timing]) / 2)
    axes[2].set_ylabel("MI-NG (> 1: forgotten)")
    axes[2].axhline(1, color="k", lw=0.5)
    for ax in axes:
        ax.set_xticks(range(len(summary)), labels, fontsize=8)
        ax.legend(fontsize=7)
    fig.suptitle("UnlearnRec, adversarial edges (one per user)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="ML-1M, LightGCN, one seed, few epochs")
    parser.add_argument("--datasets", nargs="+", default=None, choices=["ml-1m", "gowalla"])
    parser.add_argument("--backbones", nargs="+", default=None, choices=sorted(BACKBONES))
    parser.add_argument("--methods", nargs="+", default=None, help=f"known: {sorted(METHODS)}")
    parser.add_argument("--seeds", nargs="+", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=None, help="Original/Retrain epochs (profile's otherwise)")
    parser.add_argument("--root", default=None, help="data directory (default: $GRAPHFORGET_DATA or ../shared/data)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: the CPU is shared)")
    parser.add_argument("--out", type=Path, default=RESULTS / "unlearnrec.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)

    profile = QUICK if args.quick else FULL
    if args.epochs:
        profile = Profile(**{**asdict(profile), "epochs": args.epochs})
    datasets = args.datasets or (["ml-1m"] if args.quick else ["ml-1m", "gowalla"])
    backbones = args.backbones or (["lightgcn"] if args.quick else ["lightgcn", "sgl", "simgcl"])
    seeds = args.seeds or ([0] if args.quick else [0, 1, 2])
    methods = args.methods or list(METHODS)
    unknown = set(methods) - set(METHODS)
    if unknown:
        parser.error(f"unknown methods {sorted(unknown)}; known: {sorted(METHODS)}")
    root = find_data_root(args.root)
    if root is None:
        parser.error("no data directory: pass --root or set $GRAPHFORGET_DATA (needs ml-1m/ and gowalla/)")

    clock, rows = Stopwatch().start(), []
    for dataset in datasets:
        train_graph, test = load_lightgcn(root / dataset)
        for backbone in backbones:
            for seed in seeds:
                rows.append(run_one(dataset, train_graph, test, backbone, seed, profile, methods))
    summary = summarise(rows, methods)
    report = {"profile": "quick" if args.quick else "full", "hyperparameters": asdict(profile),
              "threads": torch.get_num_threads(), "total_seconds": clock.elapsed(),
              "summary": summary, "runs": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    plot(summary, methods, args.out.with_suffix(".png"))
    for entry in summary:
        print(json.dumps(entry))
    print(f"total {report['total_seconds']:.0f}s -> {args.out}")
    return report


if __name__ == "__main__":
    main()
