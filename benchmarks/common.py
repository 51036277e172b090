"""Shared helpers of the benchmark scripts: seed-averaged completeness and speed-ups, one-line reports."""
from __future__ import annotations

import logging
import statistics

AUCS = ("auc_0", "auc_1", "auc_2")


def summarise(rows: list[dict], methods) -> list[dict]:
    """Per dataset/backbone/ratio: the retrain gain and, for each method, the completeness of the
    seed-averaged AUCs (a ratio of small differences is too noisy per seed) and the mean speed-up."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["dataset"], row["model"], row["attack_ratio"]), []).append(row)
    out = []
    for (dataset, model, ratio), runs in groups.items():
        entry = {"dataset": dataset, "model": model, "attack_ratio": ratio, "seeds": len(runs)}
        gaps = {k: statistics.mean(r["methods"]["retrain"][k] - r["original"][k] for r in runs) for k in AUCS}
        entry.update({f"retrain_gain_{k}": v for k, v in gaps.items()})
        entry.update({f"original_{k}": statistics.mean(r["original"][k] for r in runs) for k in AUCS})
        entry["retrain_seconds"] = statistics.mean(r["methods"]["retrain"]["seconds"] for r in runs)
        for method in methods:
            if method == "retrain":
                continue
            for k in AUCS:
                gain = statistics.mean(r["methods"][method][k] - r["original"][k] for r in runs)
                entry[f"{method}_{k}"] = statistics.mean(r["methods"][method][k] for r in runs)
                entry[f"{method}_completeness_{k}"] = gain / gaps[k] if gaps[k] else float("nan")
            entry[f"{method}_seconds"] = statistics.mean(r["methods"][method]["seconds"] for r in runs)
            prediction_gaps = [r["methods"][method].get("prediction_gap") for r in runs]
            if all(g is not None for g in prediction_gaps):
                entry[f"{method}_prediction_gap"] = statistics.mean(prediction_gaps)
            if "before" in runs[0]["methods"][method]:  # fitted models (SISA, RecEraser): the harmless gap
                for k in AUCS:
                    entry[f"{method}_before_{k}"] = statistics.mean(r["methods"][method]["before"][k] for r in runs)
            entry[f"{method}_speedup"] = statistics.mean(
                r["methods"]["retrain"]["seconds"] / r["methods"][method]["seconds"] for r in runs)
        out.append(entry)
    return out


def one_line(row: dict, methods) -> str:
    """A run as one line: AUC_0/1/2 and seconds of the Original and of each method."""
    m, o = row["methods"], row["original"]
    parts = [f"{row['dataset']} {row['model']} {row['attack_ratio']:g} seed {row['seed']}:",
             "orig " + "/".join(f"{o[k]:.4f}" for k in AUCS) + f" ({o['train_seconds']:.1f}s)"]
    parts += [f"{name} " + "/".join(f"{m[name][k]:.4f}" for k in AUCS) + f" ({m[name]['seconds']:.3f}s)"
              for name in methods]
    return " | ".join(parts)


def rounded(entry: dict) -> dict:
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in entry.items()}


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend, or ``None`` (with a warning) when not installed."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logging.getLogger("benchmarks").warning("matplotlib is not installed (pip install '.[bench]'): no plot")
        return None
    return plt
