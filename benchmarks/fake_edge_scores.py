"""How much of the adversarial protocol's fake edges a backbone learns, and where Retrain and UnlearnRec
take their scores.

    python benchmarks/fake_edge_scores.py [--models sgl:150 lightgcn:50] [--seed 0]

The ``adversarial`` protocol's setting (:class:`~graphforget.bench.setting.Setting`) on ML-100K, each model
trained for the given epochs (UnlearnRec's BPR profile otherwise): one fake edge per user (the item a clean
model scores lowest), the Original trained with them, the Retrain without them and UnlearnRec's result
(the paper's configuration). For each of the three: the mean sigmoid of the scores of the fake edges, of
20,000 training edges and of 20,000 uniformly drawn (user, item) pairs, their score quantiles (10/50/90%) and
Recall@20. Writes ``results/fake_edge_scores.json`` (``--out`` to change).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from graphforget.bench import DataSource, bench_hparams
from graphforget.bench.setting import Setting
from graphforget.data import EDGE, num_items, num_users
from graphforget.io import write_json

RESULTS = Path(__file__).parent / "results"
SAMPLE = 20_000


@torch.no_grad()
def score_summary(model, graph, pairs: dict[str, torch.Tensor]) -> dict:
    """Per named ``[2, P]`` pairs: the mean sigmoid of the model's scores on ``graph`` and their quantiles."""
    model.eval()
    out = {}
    for name, edge_label_index in pairs.items():
        scores = model(graph, edge_label_index)
        quantiles = torch.quantile(scores, torch.tensor([0.1, 0.5, 0.9]))
        out[name] = {"mean_sigmoid": float(torch.sigmoid(scores).mean()), "quantiles": quantiles.tolist()}
    return out


def run(model_name: str, epochs: int, seed: int) -> dict:
    hparams = bench_hparams(model_name, "ml-100k", "adversarial").replace({"train.epochs": epochs})
    source = DataSource("ml-100k", None).for_loss(hparams.loss)
    setting = Setting(source, hparams, seed, {"kind": "adversarial", "fraction": 1.0})
    graph, fake = setting.train_graph, setting.request
    gen = torch.Generator().manual_seed(seed)
    edges = graph[EDGE].edge_index
    pairs = {"fake": fake,
             "training": edges[:, torch.randperm(edges.size(1), generator=gen)[:SAMPLE]],
             "random": torch.stack([torch.randint(num_users(graph), (SAMPLE,), generator=gen),
                                    torch.randint(num_items(graph), (SAMPLE,), generator=gen)])}
    retrain = setting.reference(fake)
    unlearned = setting.unlearner("unlearnrec", {}).unlearn(fake)
    models = {"original": (setting.original, graph), "retrain": (retrain.model, retrain.graph),
              "unlearnrec": (unlearned.model, unlearned.graph)}
    rows = {name: {**score_summary(model, g, pairs), "recall@20": setting.ranking(model, g)["recall@20"]}
            for name, (model, g) in models.items()}
    return {"model": model_name, "epochs": epochs, "seed": seed, "best_epoch": setting.original_fit.best_epoch,
            "fake_edges": fake.size(1), "models": rows}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["sgl:150", "lightgcn:50"], help="MODEL:EPOCHS")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS / "fake_edge_scores.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    runs = []
    for spec in args.models:
        name, _, epochs = spec.partition(":")
        runs.append(run(name, int(epochs or 50), args.seed))
        for model, row in runs[-1]["models"].items():
            sigmoids = " ".join(f"{kind} {row[kind]['mean_sigmoid']:.3f}" for kind in ("fake", "random", "training"))
            print(f"{name} {model:10s} {sigmoids} recall@20 {row['recall@20']:.4f}", flush=True)
    print(f"-> {write_json(args.out, {'runs': runs})}")


if __name__ == "__main__":
    main()
