"""UnlearnRec on its paper's adversarial-edge protocol (Chen, Xia, Huang, SIGIR 2025, Sec. 4): a thin call of
the benchmark harness (``graphforget bench --protocol adversarial``).

    python benchmarks/unlearnrec.py --quick    # ML-1M, LightGCN, 1 seed, few epochs
    python benchmarks/unlearnrec.py            # ML-1M + Gowalla, LightGCN / SGL / SimGCL, 3 seeds

Per dataset, backbone and seed (:mod:`graphforget.bench.protocols`): a clean model is trained with BPR on the
training file; for each user the item it scores lowest becomes a fake interaction (the request); the
Original is trained from scratch on the attacked graph; Retrain, UnlearnRec, IFRU (and any ``--methods``)
unlearn the fake edges. Reported: Recall@20 / NDCG@20 on ``test.txt`` beside the matching Retrain's, MI-BF,
MI-NG, the membership attack, seconds (UnlearnRec's pre-training as ``fit_seconds``). Each (dataset,
backbone) writes ``benchmarks/results/bench/adversarial[_quick]_<dataset>_<backbone>/``.

The quick profile takes few, large steps (a step's cost is the full-graph propagation, whatever the batch
size): 10 epochs of 65,536 edges at lr 0.02, and UnlearnRec pre-trained for 2 epochs. The full profile is
UnlearnRec's: 50 epochs of 8,192 edges at lr 5e-3 (the clean model is trained the same way).

``--cost`` measures what training costs here instead: seconds per Adam step of each backbone on ML-1M at
the two profiles' batch sizes (the mean of a few steps after a warm-up, in CPU seconds of this one-thread
process, so that other work on the machine does not inflate them), and from them the seconds of one epoch
and of the profile's three trainings (clean, Original, Retrain); writes
``benchmarks/results/unlearnrec_cost.json``.
"""
from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch

from graphforget.bench import DataSource, run_bench
from graphforget.data import EDGE, hold_graph, num_items, num_users
from graphforget.io import write_json
from graphforget.presets import default_hparams

BENCH = Path(__file__).parent / "results" / "bench"
#: UnlearnRec's options per profile (the full one: its paper's).
UNLEARNREC = {"full": {"pretrain_epochs": 10, "resample_every": 2, "finetune_epochs": 2, "batch_size": 8192,
                       "lr": 1e-3, "finetune_lr": 1e-3},
              "quick": {"pretrain_epochs": 2, "resample_every": 1, "finetune_epochs": 1, "batch_size": 65536,
                        "lr": 1e-2, "finetune_lr": 1e-3}}


def seconds_per_step(backbone: str, graph, batch_size: int, steps: int = 4) -> float:
    """Mean CPU seconds of an Adam step of ``backbone`` (BPR, its contrastive term for SGL/SimGCL) after a
    warm-up (one thread: the CPU time of the process is the step's time on an idle core)."""
    hparams = default_hparams(backbone, loss="bpr")
    model, objective = hparams.build_model(num_users(graph), num_items(graph)), hparams.objective()
    optimizer = torch.optim.Adam(model.parameters(), lr=hparams.train.lr)
    batches = torch.randperm(graph[EDGE].edge_index.size(1), generator=torch.Generator().manual_seed(0))
    batches = batches.split(batch_size)[:steps + 1]
    with hold_graph(model, graph):
        for k, batch in enumerate(batches):
            if k == 1:
                start = time.process_time()
            optimizer.zero_grad()
            objective.batch_loss(model, graph, batch, 1).backward()
            optimizer.step()
    return (time.process_time() - start) / (len(batches) - 1)


def training_cost(out: Path) -> dict:
    """Seconds per step, per epoch and for the full profile's trainings, per backbone, on ML-1M."""
    graph = DataSource("ml-1m", negatives=0).prepare(seed=0).split.train
    edges = graph[EDGE].edge_index.size(1)
    rows = {}
    for backbone in ("lightgcn", "sgl", "simgcl"):
        for profile, batch, epochs in (("full", 8192, 50), ("quick", 65536, 10)):
            step = seconds_per_step(backbone, graph, batch)
            epoch = step * -(-edges // batch)
            rows[f"{backbone}_{profile}"] = {"batch_size": batch, "seconds_per_step": step, "seconds_per_epoch": epoch,
                                             "epochs": epochs, "three_trainings_seconds": 3 * epochs * epoch}
            print(backbone, profile, {k: round(v, 2) for k, v in rows[f"{backbone}_{profile}"].items()})
    report = {"dataset": "ml-1m", "train_edges": edges, "threads": torch.get_num_threads(), "clock": "process CPU time",
              "machine": platform.processor() or platform.machine(), "rows": rows}
    write_json(out, report)
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="ML-1M, LightGCN, one seed, few epochs")
    parser.add_argument("--datasets", nargs="+", default=None, choices=["ml-1m", "gowalla"])
    parser.add_argument("--backbones", nargs="+", default=None, choices=["lightgcn", "sgl", "simgcl"])
    parser.add_argument("--methods", nargs="+", default=["unlearnrec", "ifru"])
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=None, help="clean/Original/Retrain epochs (profile's otherwise)")
    parser.add_argument("--cost", action="store_true", help="only measure what training costs per step and epoch")
    args = parser.parse_args(argv)
    if args.cost:
        torch.set_num_threads(1)
        training_cost(BENCH.parent / "unlearnrec_cost.json")
        return
    profile = "quick" if args.quick else "full"
    datasets = args.datasets or (["ml-1m"] if args.quick else ["ml-1m", "gowalla"])
    backbones = args.backbones or (["lightgcn"] if args.quick else ["lightgcn", "sgl", "simgcl"])
    for dataset in datasets:
        for backbone in backbones:
            hparams = default_hparams(backbone, loss="bpr")
            if args.quick:
                hparams = hparams.replace({"train.lr": 0.02, "train.batch_size": 65536, "train.epochs": 10})
            if args.epochs:
                hparams = hparams.replace({"train.epochs": args.epochs})
            out = BENCH / f"adversarial{'_quick' if args.quick else ''}_{dataset}_{backbone}"
            result = run_bench("adversarial", dataset, backbone, args.methods, args.seeds or (1 if args.quick else 3),
                               out=out, options={"unlearnrec": UNLEARNREC[profile]}, hparams=hparams, progress=True)
            print("\n".join(result.files))


if __name__ == "__main__":
    main()
