"""The reports of a benchmark run: ``results.json``, ``results.md`` (tables) and one plot per protocol."""
from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path

from ..io import atomic_write, write_json
from ..runs import directory_lock
from .data import CSV_DEFAULTS, IMPLICIT_DATASETS
from .harness import BenchResult, bench_hparams
from .protocols import PROTOCOLS, stream_positions

__all__ = ["COLUMNS", "markdown", "write_reports", "plot", "rst", "readme_table", "render_docs",
           "README_MARKERS"]

log = logging.getLogger(__name__)

#: The figures shown in each protocol's table (all of them are in ``results.json``).
COLUMNS = {
    "attack": ("auc_0", "auc_1", "original_auc_0", "completeness_auc_0", "completeness_auc_1", "prediction_gap",
               "mia_auc", "mia_auc_retrain", "mia_auc_before", "seconds", "fit_seconds"),
    "adversarial": ("recall@20", "recall@20_retrain", "original_recall@20", "clean_recall@20",
                    "completeness_recall@20", "ndcg@20", "auc_0", "completeness_auc_0", "prediction_gap", "mia_auc",
                    "mia_auc_retrain", "mi_bf", "mi_ng", "seconds", "fit_seconds"),
    "deletion": ("request_edges", "auc_0", "recall@20", "recall@20_retrain", "prediction_gap", "mia_auc",
                 "mia_auc_retrain", "mia_auc_before", "mi_bf", "seconds", "fit_seconds"),
    "stream": ("prediction_gap@25%", "prediction_gap@50%", "prediction_gap@100%", "prediction_distance@25%",
               "prediction_distance@100%", "original_distance@25%", "original_distance@100%", "auc_0@100%",
               "recall@20@100%", "recall@20_retrain@100%", "mia_auc@100%", "mia_auc_retrain@100%",
               "seconds_per_request", "cumulative_seconds", "fit_seconds"),
}


#: What each figure means, by the columns it explains: results.md explains those its table shows, and only those.
LEGEND = (
    (("prediction_gap",), "prediction_gap: ||p_method - p_retrain|| / ||p_original - p_retrain|| on the test pairs "
                          "(0: Retrain's predictions)"),
    (("prediction_distance",), "prediction_distance: its numerator"),
    (("original_distance",), "original_distance: its denominator"),
    (("auc_0",), "auc_0: the test AUC over every test pair"),
    (("auc_1",), "auc_1: over the test pairs whose user or item the request touches"),
    (("original_auc_0", "original_recall@20"), "original_*: the Original's (the model before unlearning)"),
    (("completeness_auc_0", "completeness_auc_1", "completeness_recall@20"),
     "completeness_*: (method - Original) / (Retrain - Original) of the figure, the share of Retrain's change the "
     "method makes (1: as Retrain), computed per seed and then averaged (not from the means shown)"),
    (("recall@20",), "recall@20: all-item ranking on the test set, the model's training interactions masked"),
    (("recall@20_retrain",), "recall@20_retrain: the matching Retrain's"),
    (("clean_recall@20",), "clean_recall@20: a model trained without the adversarial edges"),
    (("ndcg@20",), "ndcg@20: the NDCG of that ranking"),
    (("mia_auc",), "mia_auc: membership attack on the removed edges against matched non-members"),
    (("mia_auc_retrain",), "mia_auc_retrain: the same attack on the matching Retrain"),
    (("mia_auc_before",), "mia_auc_before: on the Original"),
    (("mi_bf",), "mi_bf: the removed edges' mean predicted probability before over after unlearning (> 1: forgotten)"),
    (("mi_ng",), "mi_ng: the matched non-members' mean predicted probability over the removed edges' after "
                 "unlearning (> 1: forgotten)"),
    (("request_edges",), "request_edges: the training edges the request removes"),
    (("seconds",), "seconds: the unlearning call"),
    (("seconds_per_request",), "seconds_per_request: the stream's unlearning calls, on average"),
    (("cumulative_seconds",), "cumulative_seconds: in all, to the last checkpoint"),
    (("fit_seconds",), "fit_seconds: the one-off fit of SISA/RecEraser/UnlearnRec, shared by the requests of a seed"),
)


def _legend(result, columns: list[str]) -> str:
    """The meaning of each of ``columns`` (a stream's checkpoints too), and of the noise floor's row where it has one:
    one paragraph for every table had explained columns it lacked and left others unexplained."""
    shown = {_checkpoint(name)[0] for name in columns}
    parts = [text for names, text in LEGEND if shown & set(names)]
    if any(name.endswith("%") for name in columns):
        parts.append("@NN%: after NN% of the stream's requests, rounded up to a whole request (the largest share that "
                     "falls on a count names it)")
    if any(group["method"] == "retrain_seed" for group in result.aggregates):
        parts.append("retrain_seed: a Retrain from another seed, the noise floor: a method as close to Retrain as it "
                     "is has forgotten as well as retraining can tell")
    return ". ".join(parts) + "."


#: The columns that count something: a whole mean shows no decimals (a request of 147 edges read "147.0").
COUNTS = frozenset({"request_edges"})


def _fmt(stat: dict | None, seeds: int | None = None, count: bool = False) -> str:
    """``mean ± half-width`` (3 decimals, 1 from 100 on; a ``count`` whose seeds agree on a whole number as that
    number alone), ``-`` when not measured, with ``(n=k)`` where only ``k`` of the group's ``seeds`` gave a finite
    value (the others are left out of the interval)."""
    if not stat or stat.get("mean") is None:
        return "-"
    mean, half = stat["mean"], stat.get("half_width")
    digits = 1 if abs(mean) >= 100 else 3
    if count and float(mean).is_integer() and not half:
        text = f"{mean:.0f}"
    else:
        text = f"{mean:.{digits}f}" if half is None else f"{mean:.{digits}f} ± {half:.{digits}f}"
    return text if seeds is None or stat.get("n", seeds) >= seeds else f"{text} (n={stat['n']})"


def _variant(variant: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in variant.items() if k != "fractions") or "-"


def _cell_seconds(result) -> float:
    """The summed wall time of the run's cells (what computing them cost, whether or not read back now)."""
    return sum(record["result"].get("wall_seconds") or 0.0 for record in result.cells)


def _title(result) -> str:
    """``protocol on dataset, model``; a stream's with its length (two streams' tables had one title), and how many
    of its requests ran where its last checkpoint falls before its end (the later ones are not run)."""
    if result.protocol != "stream":
        return f"{result.protocol} on {result.dataset}, {_model(result)}"
    length, fractions = result.params["length"], result.params["fractions"]
    run = stream_positions(length, fractions)[-1]
    shown = "" if run == length else f", the first {run} run (its last checkpoint at {100 * max(fractions):g}%)"
    return f"stream of {length} requests{shown} on {result.dataset}, {_model(result)}"


def _model(result) -> str:
    """The model's name, with every setting of its model and training that the run changed from the preset's
    (its contrastive weight, L2 and epochs first), the seed and the progress bars aside: a model of 8 dimensions
    trained at another learning rate had the preset's title."""
    def leaves(hparams: dict) -> dict:
        return {**{k: v for k, v in hparams.items() if k != "train"}, **hparams["train"]}
    preset = leaves(bench_hparams(result.model, result.dataset, result.protocol).as_dict())
    run = leaves(result.hparams)
    keys = [key for key in dict.fromkeys(("ssl_weight", "l2", "epochs", *run))
            if key not in ("seed", "progress") and key in run and run[key] != preset.get(key)]
    changed = [f"{run[key]} epoch{'s' if run[key] != 1 else ''}" if key == "epochs" else f"{key} {_setting(run[key])}"
               for key in keys]
    return f"{result.model} ({', '.join(changed)})" if changed else result.model


def _setting(value) -> str:
    """A setting's value in a title: a float as ``:g`` (``0.02``, ``1e-05``)."""
    return f"{value:g}" if isinstance(value, float) else str(value)


def _intro(result, code: str = "`") -> str:
    """The seeds, the protocol's parameters and the compute (``code``: the inline-code mark of the format)."""
    seeds = sorted({s for group in result.aggregates for s in group["seeds"]})
    spread = ("mean ± half-width of the 95% Student-t interval over seeds" if len(seeds) > 1 else
              "one seed: no interval")  # a single seed's cells are bare means
    return (f"Seeds {seeds}; {spread}. Protocol parameters: "
            f"{code}{result.params}{code}.{_settings(result, code)} Compute: {_cell_seconds(result):.0f} s over "
            f"{len(result.cells)} cells (their wall times, cached or not).{_provenance(result, code)}")


def _provenance(result, code: str) -> str:
    """When its cells were measured (UTC days; cells of before 2026-12-07 have none) and with which library code
    (``graphforget.bench.cache.code_digest``): a committed table keeps its figures while the code moves on (qa150:
    the membership attack's had changed since the README's were measured)."""
    days = sorted({record["result"].get("measured_on") for record in result.cells} - {None})
    digests = sorted({record["cell"].get("code") for record in result.cells} - {None})
    when = "" if not days else f" on {days[0]}" if len(days) == 1 else f" from {days[0]} to {days[-1]}"
    shown = ", ".join(f"{code}{digest}{code}" for digest in digests)
    return f" Measured{when} with the library code {shown}." if digests else ""


def _settings(result, code: str) -> str:
    """The methods' options and the data's reading options (a file's, its CSV reading's other than the defaults, an
    implicit dataset's sampled negatives), where the run set them: two runs that differ in them only had reports alike
    but for their figures."""
    params = [record["cell"]["params"] for record in result.cells]
    options = {record["cell"]["method"]: record["cell"]["params"]["options"] for record in result.cells
               if record["cell"]["params"].get("options")}
    data = params[0].get("data", {}) if params else {}
    read = {key: data[key] for key in ("negatives", "threshold") if data.get(key) is not None}
    read.update({"columns": data["columns"]} if any(data.get("columns") or []) else {})
    read.update({key: value for key, value in (data.get("csv") or {}).items() if value != CSV_DEFAULTS.get(key)})
    text = f" Method options: {code}{options}{code}." if options else ""
    reads = data.get("dataset") == "file" or data.get("dataset") in IMPLICIT_DATASETS  # ML-100K's labels are its own
    return text + (f" Data options: {code}{read}{code}." if reads and read else "")


def _columns(result) -> list[str]:
    """:data:`COLUMNS` of the run's protocol that it measured, a stream's at its own checkpoints (:func:`_at`), each
    figure's in the order of its checkpoints."""
    names = list(COLUMNS[result.protocol])
    if result.protocol == "stream":
        chosen = _stream_checkpoints(result)
        order = {_checkpoint(name)[0]: k for k, name in enumerate(names)}  # a figure's place in COLUMNS
        mapped = [name for name in (_at(name, chosen) for name in names) if name is not None]
        names = sorted(mapped, key=lambda name: (order[_checkpoint(name)[0]], _checkpoint(name)[1]))
    return [c for c in dict.fromkeys(names) if any(c in g["metrics"] for g in result.aggregates)]


def _checkpoint(name: str) -> tuple[str, float]:
    """``(figure, percent)`` of a stream's ``figure@NN%`` (``(name, 0)`` for a figure without a checkpoint)."""
    base, _, tag = name.rpartition("@")
    return (base, float(tag[:-1])) if name.endswith("%") else (name, 0.0)


def _stream_checkpoints(result) -> dict[str, float | None]:
    """The measured checkpoints (percent) that the columns' ``@100%``, ``@25%`` and ``@50%`` show: each its own where
    measured, else the one nearest that share of the last not already shown (none left: ``None``). A stream checked
    at 30% and 60% had shown none of its figures; ``@100%`` first, as the figures measured at the end alone are in
    its columns: a stream checked at 50% alone had lost them to ``@25%``."""
    tags = sorted({_checkpoint(key)[1] for group in result.aggregates for key in group["metrics"] if key.endswith("%")})
    chosen: dict[str, float | None] = {}
    for tag in ("100", "25", "50") if tags else ():
        free = [t for t in tags if t not in chosen.values()]
        nearest = min(free, key=lambda t: abs(t - float(tag) * tags[-1] / 100), default=None)
        chosen[tag] = float(tag) if float(tag) in tags else nearest
    return chosen


def _at(name: str, chosen: dict[str, float | None]) -> str | None:
    """``name`` at the checkpoint ``chosen`` for its own tag (``None``: no such checkpoint)."""
    base, percent = _checkpoint(name)
    if not name.endswith("%") or f"{percent:g}" not in chosen:
        return name
    point = chosen[f"{percent:g}"]
    return None if point is None else f"{base}@{point:g}%"


def _table(result) -> tuple[list[str], list[list[str]]]:
    """The header and the rows of the run's table: one row per (variant, method), mean ± half-width cells."""
    columns = _columns(result)
    rows = []
    for group in result.aggregates:
        # a reader copying a row must see that its figures hold results the method's own test refused
        marks = [f"{group[key]} {word}" for key, word in (("errors", "failed"), ("untrusted", "untrusted"))
                 if group.get(key)]
        name = group["method"] + (f" ({', '.join(marks)})" if marks else "")
        seeds = len(group["seeds"])
        rows.append([_variant(group["variant"]), name]
                    + [_fmt(group["metrics"].get(c), seeds, c in COUNTS) for c in columns])
    return ["setting", "method", *columns], rows


def markdown(result) -> str:
    """The run's tables: one row per (variant, method), every figure as mean ± 95% half-width over seeds."""
    header, rows = _table(result)
    lines = [f"# {_title(result)}", "", _intro(result), "", "| " + " | ".join(header) + " |",
             "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    trust = _trust(result)
    lines += ["", trust] if trust else []
    lines += _failures(result)
    lines += ["", _legend(result, header[2:])]
    return "\n".join(lines) + "\n"


def _several_variants(result) -> bool:
    """Whether the run's groups are of more than one variant (a row then names its setting)."""
    return len({json.dumps(g["variant"], sort_keys=True) for g in result.aggregates}) > 1


def _failures(result) -> list[str]:
    """A paragraph naming why each failed cell failed, one line per method and error (a rerun reads the cells
    back without logging it: the table's "(n failed)" was all that said it)."""
    several = _several_variants(result)
    lines = []
    for group in result.aggregates:
        errors: dict[str, list[int]] = {}
        for failure in group.get("failures", []):
            errors.setdefault(failure["error"], []).append(failure["seed"])
        where = f" ({_variant(group['variant'])})" if several else ""
        for error, seeds in errors.items():
            said = " ".join(error.split())  # a traceback's lines, on one
            lines.append(f"- {group['method']}{where}, seed{'s' * (len(seeds) > 1)} {', '.join(map(str, seeds))}: "
                         f"{said}")
    return ["", "Failed cells:", "", *lines] if lines else []


def _trust(result) -> str | None:
    """How many cells of each method with an acceptance test (IFRU, SCIF, UnlearnRec) passed it."""
    several = _several_variants(result)
    parts = []
    for group in result.aggregates:
        if group.get("tested"):
            where = f" ({_variant(group['variant'])})" if several else ""
            parts.append(f"{group['method']}{where} {group['tested'] - group['untrusted']} of {group['tested']}")
    return ("Trusted (the method's acceptance test passed; a stream cell when every request did): "
            + ", ".join(parts) + " cells.") if parts else None


def _pyplot():
    """matplotlib's pyplot on the file-only Agg backend, or ``None`` when matplotlib is not installed."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("matplotlib is not installed (pip install 'graphforget[bench]'): no plot")
        return None
    return plt


def _bar_height(stat: dict) -> float:
    """A figure's mean, or NaN (no bar) when it was not measured: a bar of 0 read as a prediction gap of 0."""
    return math.nan if stat.get("mean") is None else stat["mean"]


def plot(result, path: Path) -> Path | None:
    """One figure per protocol: the stream's prediction gap along the stream (one line per method), else
    the prediction gap and the MIA AUC per method and setting (bars with 95% intervals)."""
    plt = _pyplot()
    if plt is None:
        return None
    if result.protocol == "stream":
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        for group in result.aggregates:
            points = sorted((k[len("prediction_gap@"):-1] for k, v in group["metrics"].items()
                             if k.startswith("prediction_gap@") and v["mean"] is not None), key=float)
            x = [float(p) for p in points]
            for ax, key in zip(axes, ("prediction_gap@", "mia_auc@")):
                # a figure no seed measured at a checkpoint (NaN: stored as null) is absent: no point there
                stats = [group["metrics"].get(f"{key}{p}%") or {} for p in points]
                y = [_bar_height(s) for s in stats]
                err = [s.get("half_width") or 0 for s in stats]
                ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=group["method"])
        for ax, label in zip(axes, ("prediction gap to Retrain", "MIA AUC (removed edges)")):
            ax.set_xlabel("% of the stream"), ax.set_ylabel(label)
        axes[0].legend(fontsize=8)
    else:
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        several = _several_variants(result)
        labels = [f"{g['method']}\n{_variant(g['variant'])}" if several or len(result.aggregates) > 8 else g["method"]
                  for g in result.aggregates]
        for ax, key in zip(axes, ("prediction_gap", "mia_auc")):
            stats = [g["metrics"].get(key) or {} for g in result.aggregates]
            ax.bar(range(len(stats)), [_bar_height(s) for s in stats],
                   yerr=[s.get("half_width") or 0 for s in stats], capsize=3)
            ax.set_xticks(range(len(stats)), labels, rotation=90, fontsize=7)
            ax.set_ylabel(key)
    fig.suptitle(f"{result.protocol}: {result.dataset}, {_model(result)}")
    fig.tight_layout()
    written = atomic_write(path, lambda handle: fig.savefig(handle, format="png", dpi=110))
    plt.close(fig)
    return written  # resolved, as the results files' paths are


def write_reports(result, out: Path) -> list[Path]:
    """Writes ``results.json``, ``results.md`` and ``<protocol>.png`` (when matplotlib is installed), and removes
    the plot an earlier run in ``out`` left, of another protocol or (without matplotlib) of this one: it would
    show what the reports no longer say.

    Both reports are built before either is written, and every earlier plot is removed before them: a report
    that failed to build, or an interruption while the plot was drawn (the slow part), left new figures beside
    the old ones; so is the old ``results.md``, before the new ``results.json``: a kill between the two left one run's
    beside the other's (a missing one is written again from ``results.json``, :meth:`BenchResult.from_dict`). They
    are written under a lock on ``out``: two runs sharing it (over disjoint seeds, in parallel) mixed them too.
    """
    out.mkdir(parents=True, exist_ok=True)
    record, table = result.to_dict(), markdown(result)
    with directory_lock(out):
        for old in [f"{protocol}.png" for protocol in PROTOCOLS] + ["results.md"]:
            (out / old).unlink(missing_ok=True)
        files = [write_json(out / "results.json", record),
                 atomic_write(out / "results.md", lambda handle: handle.write(table), binary=False)]
        figure = plot(result, out / f"{result.protocol}.png")
    return files + ([figure] if figure is not None else [])


# ------------------------------------------------------------------------------ docs and the README

#: The methods' order in the README's table.
README_METHODS = ("retrain", "retrain_seed", "finetune", "ifru", "scif", "sisa", "receraser", "unlearnrec")
#: Per protocol: the (prediction gap, MIA AUC, seconds) figures the README's table shows.
README_FIGURES = {"stream": ("prediction_gap", "mia_auc", "seconds_per_request")}  # a stream's: at its last checkpoint
README_DEFAULT = ("prediction_gap", "mia_auc", "seconds")
#: Settings the README's table leaves to docs/benchmarks.rst (its length is budgeted in words): of the deletion
#: sets, CURE4Rec's are the protocol's.
README_LEFT_OUT = ({"kind": "interactions"},)


def _rst_table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = [".. list-table::", "   :header-rows: 1", ""]
    for row in [header] + rows:
        lines += [f"   * - {row[0]}"] + [f"     - {cell}" for cell in row[1:]]
    return lines + [""]


def rst(result) -> str:
    """The run's tables as reStructuredText (the same cells as :func:`markdown`), under a section title."""
    header, rows = _table(result)
    title, trust = _title(result), _trust(result)
    lines = [title, "~" * len(title), "", _intro(result, "``"), ""] + _rst_table(header, rows)
    return "\n".join(lines + (["", trust, ""] if trust else []))


def _readme_cell(group: dict | None, figures: tuple[str, str, str]) -> str:
    """``gap/mia/seconds`` as one token (the README's length is budgeted in words), then ``!n`` when the method's
    acceptance test failed on ``n`` seeds and ``xn`` when it raised on ``n`` (their figures left out, as results.md's
    "(n failed)" says); ``failed`` when it raised on every seed."""
    if group is None:
        return "-"
    errors = group.get("errors", 0)
    if errors and errors == len(group["seeds"]):
        return "failed"  # a cell that ran and measured a NaN gap is not one: its other figures are shown
    gap, mia, seconds = ((group["metrics"].get(name) or {}).get("mean") for name in figures)
    if gap is None and mia is None and seconds is None:
        return "-"
    # a figure no seed measured (an MIA AUC without a matched non-member) is "-", as in the tables
    text = ["-" if mean is None else f"{mean:.2f}" for mean in (gap, mia)]
    # two significant digits below 100 s; from 99.5 s on ``.2g`` would write 1e+02
    text.append("-" if seconds is None else f"{seconds:.0f}s" if seconds >= 99.5 else f"{seconds:.2g}s")
    marks = (f"!{group['untrusted']}" if group.get("untrusted") else "") + (f"x{errors}" if errors else "")
    return "/".join(text) + marks


def readme_table(results: list) -> str:
    """One row per (run, setting), one column per method: prediction gap / MIA AUC / seconds (means over seeds)."""
    methods = [m for m in README_METHODS if any(g["method"] == m for r in results for g in r.aggregates)]
    lines = ["| protocol, data/model | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
    for result in results:
        figures = README_FIGURES.get(result.protocol, README_DEFAULT)
        variants = list(dict.fromkeys(json.dumps(g["variant"], sort_keys=True) for g in result.aggregates
                                      if not _left_out(g["variant"])))
        ratios = len({json.loads(variant).get("ratio") for variant in variants}) > 1
        for variant in variants:
            groups = {g["method"]: g for g in result.aggregates if json.dumps(g["variant"], sort_keys=True) == variant}
            name = f"{result.protocol}{_readme_variant(json.loads(variant), ratios)}, {result.dataset}/{_model(result)}"
            lines.append(f"| {name} | " + " | ".join(_readme_cell(groups.get(m), figures) for m in methods) + " |")
    return "\n".join(lines) + "\n"


def _left_out(variant: dict) -> bool:
    return any(all(variant.get(key) == value for key, value in rule.items()) for rule in README_LEFT_OUT)


def _readme_variant(variant: dict, ratios: bool = False) -> str:
    """The part of a variant that tells the README's rows apart: the deletion kind (and its ratio where the run has
    several: ``ratios``), the stream's length."""
    if "kind" in variant:
        return f" ({variant['kind']}, {variant['ratio']:g})" if ratios else f" ({variant['kind']})"
    return f" ({variant['length']})" if "length" in variant else ""


#: The order of protocols in the generated documents.
PROTOCOL_ORDER = ("attack", "adversarial", "deletion", "stream")
#: Where the README's generated table sits.
README_MARKERS = ("<!-- bench-table: generated by benchmarks/render_docs.py, do not edit -->",
                  "<!-- bench-table end -->")


def committed_results(bench_dir: Path) -> list[tuple[Path, BenchResult]]:
    """Every ``results.json`` under ``bench_dir`` (one folder per run), in protocol, then folder order."""
    found = [(path.parent, BenchResult.from_dict(json.loads(path.read_text())))
             for path in sorted(Path(bench_dir).glob("*/results.json"))]
    return sorted(found, key=lambda item: PROTOCOL_ORDER.index(item[1].protocol))


def render_docs(bench_dir: Path, docs_dir: Path) -> tuple[str, str]:
    """The generated benchmark page (reStructuredText, for ``docs_dir``) and the README's table, both from the
    committed ``results.json`` files of ``bench_dir``: the same numbers as their ``results.md``."""
    runs = committed_results(bench_dir)
    page = [".. Generated by benchmarks/render_docs.py from benchmarks/results/bench/*/results.json: do not edit.", ""]
    for folder, result in runs:
        page.append(rst(result))
        figure = folder / f"{result.protocol}.png"
        if figure.is_file():
            page += [f".. figure:: {os.path.relpath(figure, docs_dir)}", "   :width: 90%", ""]
        page += [f"Raw cells: ``{os.path.relpath(folder / 'results.json', docs_dir.parent)}``.", ""]
    return "\n".join(page), readme_table([result for _, result in runs])
