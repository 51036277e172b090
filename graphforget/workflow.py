"""The deletion workflow on a user's own data: train on a file, forget named users, items or edges, verify.

* :func:`fit_on_file` reads a file in one of :data:`FORMATS`, binarises ratings, samples negatives for
  implicit feedback, splits off validation (and test) pairs, trains and publishes a ``fit`` run
  (:mod:`graphforget.runs`).
* :func:`forget` derives a new run from a run: the request is built from raw ids (a user's or an item's
  every training edge, sampled negatives included, or listed edges), checked against what the lineage
  already removed, unlearned by a method, verified (:func:`~graphforget.verify.verify_forgetting`) and
  published with its lineage and audit line. The parent run is never modified.
* :func:`verify_run` reports on every edge a lineage removed, optionally beside a reference Retrain.
* :class:`ForgetStream` applies a stream of requests with a write-ahead journal and a retraining policy.

Every function validates its input before any work and raises ``ValueError`` (or ``FileNotFoundError`` /
``FileExistsError``) naming the bad value.

**What a forget run keeps of the forgotten.** Its model and training graph no longer hold the request, but
the lineage's record does: ``removed.pt`` lists every removed (user, item) pair in local ids with its label,
``graph.pt`` maps local ids to raw ids, and ``audit.jsonl`` holds each request's hash and size. They are what
:func:`verify_run` tests and what refuses a repeated request, and every descendant run carries them. Serve
a run's ``model.pt``; where the deletion must reach the record too, keep the run directories apart from
what you serve and delete a lineage whole once its latest run is verified: each run carries its ancestors' record,
and :func:`verify_run` reads every run back to the ``fit`` (one deleted in between made its descendants unverifiable,
and removed nothing of the record: qa146). A request published untrusted (``allow_untrusted``) removed its
edges from the data but not necessarily from the model: :func:`verify_run` lists it (until a Retrain from scratch
later in the lineage, which learnt from none of the removed edges), and a second ``forget`` of the same ids from that
lineage is refused, so forget them again from the run before it, or forget the next request with Retrain.
"""
from __future__ import annotations

import copy
import csv
import json
import logging
import numbers
import os
import re
import unicodedata
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence, cast

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from . import __version__
from .config import (check_device, check_instances, config_record, is_integer, is_integer_tensor, seeded, uniform,
                     warn_caller, wrapped_seed)
from .data import (EDGE, Split, add_negatives, binarize, edge_subgraph, load_csv, load_labelled_triples,
                   load_movielens_100k, make_interactions, num_items, num_users, on_device, pair_keys, random_split,
                   edge_positions, without_edges)
from .data.interactions import node_values
from .data.loaders import _ASCII_SPACE, _lightgcn_files, read_text, require_file, stripped_id
from .distributed import agreed, from_rank_zero, launched_size, rank_and_size
from .io import to_jsonable, write_json
from .metrics import evaluate_auc
from .presets import CONTRASTIVE, Hyperparameters, default_hparams, recorded_objective
from .models.base import Recommender, module_on
from .runs import (Run, absolute_run_path, directory_lock, enclosing_run, fsync_directory, lineage, load_run,
                   parents_elsewhere, read_run_info, recorded_run, refuse_taken, request_sha256, save_run, sha256_file,
                   utc_now)
from .train import train
from .unlearn import METHODS, NoValidationWarning, UnlearningFailed, UnlearnResult, build_unlearner, method_config
from .unlearn.base import EMPTY_INFO, non_finite
from .unlearn.sisa import SISA
from .verify import verify_forgetting

__all__ = ["FORMATS", "FIT_MODELS", "FitResult", "ForgetResult", "Request", "load_file", "data_files", "with_negatives",
           "prepare_split", "raw_to_local", "fit_on_file", "build_request", "check_method", "forget", "verify_run",
           "read_edges_file", "heldout_auc", "ForgetStream"]

log = logging.getLogger(__name__)

#: File formats :func:`fit_on_file` reads: MovieLens-100K ``u.data``, ``user item label`` triples, the
#: LightGCN ``train.txt``/``test.txt`` line format, and CSV with a header.
FORMATS = ("movielens", "triples", "lightgcn", "csv")
#: The built-in models :func:`fit_on_file` trains (with BCE on labelled pairs); a model of your own registered in
#: :data:`graphforget.models.MODELS` (or an installed package's entry point) too.
FIT_MODELS = ("mf", "lightgcn")
#: Validation and test shares of the interactions when the file has no test set.
SPLIT = (0.8, 0.1, 0.1)
#: The validation share when the format brings its own test set.
VAL_SHARE = 0.1


# ------------------------------------------------------------------------------------------------ loading

def _movielens(path: Path) -> HeteroData:
    if path.is_file():
        if path.name != "u.data":
            raise ValueError(f"--format movielens reads a file named u.data (or its folder), got {path}")
        path = path.parent
    return load_movielens_100k(path)


def _lightgcn(path: Path) -> tuple[HeteroData, HeteroData | None]:
    """``(train, test)`` of the LightGCN format: ``path`` is the folder or its ``train.txt``; the test set
    is ``test.txt`` beside it when present."""
    folder = path if path.is_dir() else path.parent
    if path.is_file() and path.name != "train.txt":
        raise ValueError(f"--format lightgcn reads train.txt (and test.txt beside it) or their folder, got {path}")
    if not (folder / "train.txt").is_file():
        raise FileNotFoundError(f"no train.txt in {folder}")
    names = ("train.txt", "test.txt") if (folder / "test.txt").is_file() else ("train.txt",)
    train_graph, *rest = _lightgcn_files(folder, names)  # load_lightgcn's reader, test.txt optional here
    return train_graph, rest[0] if rest else None


def load_file(path: str | os.PathLike, format: str, *, user_col: str | None = None, item_col: str | None = None,
              label_col: str | None = None, duplicates: str = "raise",
              delimiter: str = ",", encoding: str = "utf-8") -> tuple[HeteroData, HeteroData | None]:
    """Reads interactions in one of :data:`FORMATS`: ``(graph, test)``, ``test`` only for ``lightgcn``
    with a ``test.txt``. ``duplicates``, ``delimiter`` and ``encoding``: :func:`~graphforget.data.load_csv`'s.

    Raises:
        ValueError: an unknown format, CSV without ``user_col``/``item_col``, or a file the loader rejects.
        FileNotFoundError, IsADirectoryError: a missing file, or a folder where a format reads a file.
    """
    if format not in FORMATS:
        raise ValueError(f"unknown format {format!r}; known: {', '.join(FORMATS)}")
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"data file not found: {path}")
    if format != "csv" and (user_col or item_col or label_col or duplicates != "raise" or delimiter != ","
                            or encoding != "utf-8"):
        raise ValueError(f"--user-col/--item-col/--label-col/--duplicates/--delimiter/--encoding are for --format csv, "
                         f"not {format}")
    if format == "movielens":
        return _movielens(path), None
    if format == "triples":
        return load_labelled_triples(path), None
    if format == "lightgcn":
        return _lightgcn(path)
    if not (user_col and item_col):
        raise ValueError("--format csv needs --user-col and --item-col (and --label-col for labels or ratings)")
    return load_csv(path, user_col, item_col, label_col, delimiter=delimiter, duplicates=duplicates,
                    encoding=encoding), None


def data_files(path: str | os.PathLike, format: str) -> list[Path]:
    """The files :func:`load_file` reads from ``path`` in ``format`` (those there): a MovieLens folder's ``u.data`` (or
    its ``ml-100k/u.data``), a triples folder's ``ratings_final.txt`` (or its ``bookcrossing/ratings_final.txt``),
    the ``train.txt`` and ``test.txt`` of the LightGCN format, else ``path`` itself. A run records their sha256."""
    path = Path(path).expanduser()
    if format == "lightgcn":
        folder = path if path.is_dir() else path.parent
        return [file for file in (folder / "train.txt", folder / "test.txt") if file.is_file()]
    if path.is_dir() and format in ("movielens", "triples"):
        name, below = ("u.data", "ml-100k") if format == "movielens" else ("ratings_final.txt", "bookcrossing")
        return [file for file in (path / name, path / below / name) if file.is_file()][:1]  # the folder's own first
    return [path] if path.is_file() else []


def check_threshold_has_ratings(format: str, label_col: str | None, threshold: float | None) -> None:
    """Refuses a ``threshold`` for data without ratings (CSV without ``label_col``, LightGCN lines): it failed
    later as "no label reaches the threshold 4.0 (the labels run from 1 to 1)", naming neither option."""
    if threshold is not None and (format == "lightgcn" or (format == "csv" and label_col is None)):
        where, advice = (("a csv file without --label-col", "name the rating column with --label-col, or drop "
                          "--threshold") if format == "csv" else ("lightgcn data", "drop --threshold"))
        raise ValueError(f"--threshold binarises ratings, but {where} holds none (every row is an interaction): "
                         f"{advice}")  # --label-col is a CSV's: lightgcn was advised it, and refused it then


def binary_labels(graph: HeteroData, threshold: float | None, source: str) -> HeteroData:
    """``graph`` with 0/1 labels: ratings binarised at ``threshold``; 0/1 labels kept as they are.

    Raises:
        ValueError: labels other than 0/1 and no ``threshold``, naming ``source`` and ``--threshold``.
    """
    label = graph[EDGE].edge_label
    if threshold is not None:
        return binarize(graph, threshold)
    if bool(((label != 0) & (label != 1)).any()):
        values = label[(label != 0) & (label != 1)].unique()[:5].tolist()
        raise ValueError(f"{source} holds labels other than 0/1, e.g. {values} (ratings or counts): pass "
                         f"--threshold T to binarise them (label 1 where rating >= T)")
    return graph


def _check_negatives_count(negatives: int) -> None:
    if not is_integer(negatives) or negatives < 0:  # "1" failed comparing a str with an int, 1.5 was add_negatives'
        raise ValueError(f"negatives must be an integer >= 0, got {negatives!r}")  # "ratio", a name not passed


def _check_negatives(graph: HeteroData, negatives: int, source: str, threshold: float | None = None) -> None:
    _check_negatives_count(negatives)
    if negatives == 0 and not bool((graph[EDGE].edge_label == 0).any()):
        if threshold is not None:  # the threshold made them so: "implicit feedback" named the wrong cause
            raise ValueError(f"{source}: every rating reaches --threshold {threshold:g}, so every label is 1 and BCE "
                             "training has no negative: raise --threshold, or pass --negatives N to sample some")
        raise ValueError(f"{source} holds implicit feedback only (every label is 1), and BCE training needs "
                         f"negatives: pass --negatives N to sample N non-interactions per interaction (e.g. 1)")


def raw_to_local(raw_ids, queries: Iterable) -> tuple[Tensor, Tensor]:
    """Local ids of raw ids: ``(local [Q], known [Q])``; ``local`` is -1 where a query is unknown.

    Args:
        raw_ids: a node type's ``raw_id`` (long tensor or numpy string array; local id -> raw id).
        queries: raw ids; compared as integers with integer raw ids (a query that is not an integer is
            unknown), as strings otherwise.
    """
    queries = list(queries)
    if isinstance(raw_ids, Tensor):
        table = raw_ids.cpu().numpy().astype(np.int64)
        parsed = [_as_int(q) for q in queries]
        parsed = [p if p is not None and -2**63 <= p < 2**63 else None for p in parsed]  # no raw id is larger
        valid = np.array([p is not None for p in parsed], dtype=bool)
        wanted = np.array([0 if p is None else p for p in parsed], dtype=np.int64)
    else:
        table = np.asarray(raw_ids).astype(str)
        valid = np.ones(len(queries), dtype=bool)
        wanted = np.array([str(q) for q in queries], dtype=str)
    local = np.full(len(queries), -1, dtype=np.int64)
    if len(table) and len(queries):
        order = np.argsort(table, kind="stable")
        slot = np.minimum(np.searchsorted(table[order], wanted), len(table) - 1)
        found = valid & (table[order][slot] == wanted)
        local[found] = order[slot][found]
    return torch.from_numpy(local), torch.from_numpy(local >= 0)


def _as_int(value) -> int | None:
    if isinstance(value, Tensor) and value.numel() == 1:  # an element of a tensor of ids: str() gives 'tensor(3)'
        value = value.item()
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value)
    text = str(value).strip()  # as the loaders read ids: int() also takes '1_0' (10) and non-ASCII digits
    return int(text) if re.fullmatch(r"[+-]?[0-9]+", text) else None


# ------------------------------------------------------------------------------------------------ splitting

def _remap(part: HeteroData, onto: HeteroData) -> HeteroData:
    """``part``'s pairs in ``onto``'s local ids (through the raw ids), with their labels, ``observed`` flags (a
    sampled negative stays one) and ``onto``'s raw ids; pairs with an unknown node dropped."""
    ends, store = [], part[EDGE]
    for k, node in enumerate(("user", "item")):
        raw = node_values(part[node].raw_id, store.edge_index[k])  # a one-pair part: a list of one id
        ends.append(raw_to_local(onto[node].raw_id, raw.tolist())[0])
    keep = (ends[0] >= 0) & (ends[1] >= 0)
    if not bool(keep.all()):  # by design (the model has no row for them), but said, as random_split says its own
        log.info("dropped %d of the test file's %d pairs (%d interactions) whose user or item has no training edge",
                 int((~keep).sum()), keep.numel(), int((~keep & (store.edge_label > 0)).sum()))
    observed = store.observed[keep] if "observed" in store else None
    remapped = make_interactions(torch.stack([ends[0][keep], ends[1][keep]]), store.edge_label[keep], num_users(onto),
                                 num_items(onto), observed)
    for node in ("user", "item"):  # its ids are onto's now, and so are their raw ids
        remapped[node].raw_id = onto[node].raw_id
    return remapped


def with_negatives(graph: HeteroData, ratio: int, seed: int = 0) -> HeteroData:
    """:func:`~graphforget.data.add_negatives` that also serves users who interacted with most items.

    Every user gets ``ratio`` negatives per positive (an edge labelled 1), as from
    :func:`~graphforget.data.add_negatives`. Those whose negatives would take more than half of the items they
    have no pair with (ML-1M has one with 2,314 of 3,706 movies; rejection sampling crawls there) get theirs
    drawn exactly instead: ``min(ratio * positives, free items)`` distinct free items at random, with a warning
    where there are fewer free items than that. Negatives are stored with ``observed = False``; node attributes
    are kept.
    """
    store, count = graph[EDGE], num_items(graph)
    device = store.edge_index.device
    degree = torch.bincount(store.edge_index[0], minlength=num_users(graph))
    need = ratio * torch.bincount(store.edge_index[0][store.edge_label > 0], minlength=num_users(graph))
    heavy = 2 * need > count - degree
    if not bool(heavy.any()):
        return add_negatives(graph, ratio, seed)
    short = need > count - degree
    if bool(short.any()):
        missing = int((need - (count - degree))[short].sum())
        warn_caller(f"{int(short.sum())} users have fewer items without a pair than the {ratio} negatives per "
                    f"positive they need ({missing} short in all): they get every such item")
    light = edge_subgraph(graph, ~heavy[store.edge_index[0]])
    sampled = add_negatives(light, ratio, seed) if light[EDGE].edge_index.size(1) else light
    extra: list[Tensor] | Tensor  # the drawn blocks, then their concatenation
    extra = [sampled[EDGE].edge_index[:, light[EDGE].edge_index.size(1):]]  # the drawn ones (appended), not the file's
    gen = seeded(seed)
    for user in heavy.nonzero().flatten().tolist():  # few users: one exact draw each
        free = torch.ones(count, dtype=torch.bool)  # on the CPU, as the generator (a graph on a GPU: qa177)
        free[store.edge_index[1][store.edge_index[0] == user].cpu()] = False
        items = free.nonzero().flatten()
        pick = items[torch.randperm(items.numel(), generator=gen)[:int(need[user])]].sort().values.to(device)
        extra.append(torch.stack([torch.full_like(pick, user), pick]))
    log.info("%d users interacted with most items: their negatives were drawn exactly", int(heavy.sum()))
    extra = torch.cat(extra, 1)
    observed = store.observed if "observed" in store else torch.ones(store.edge_index.size(1), dtype=torch.bool,
                                                                      device=device)
    out = make_interactions(torch.cat([store.edge_index, extra], 1),
                            torch.cat([store.edge_label, store.edge_label.new_zeros(extra.size(1))]), num_users(graph),
                            count, torch.cat([observed, observed.new_zeros(extra.size(1))]))
    for node in ("user", "item"):  # every attribute, as add_negatives keeps them (features had been dropped here)
        for key, value in graph[node].items():
            out[node][key] = value
    return out


def check_disjoint(graph: HeteroData, test: HeteroData) -> None:
    """Raises ``ValueError`` naming the (user, item) pairs in both the training and the test file, by raw id."""
    keys = pair_keys(graph[EDGE].edge_index, num_items(graph))
    both = torch.isin(keys, pair_keys(test[EDGE].edge_index, num_items(graph))).nonzero().flatten()
    if both.numel():
        pairs = graph[EDGE].edge_index[:, both[:5]].t().tolist()
        shown = ", ".join(_raw_pair(graph, pair) if "raw_id" in graph["user"] else str(tuple(pair)) for pair in pairs)
        raise ValueError(f"train and test files overlap: {both.numel()} (user, item) pair(s) in both, "
                         f"{shown}{', ...' if both.numel() > 5 else ''}; each pair must be in one of them")


def _split_with_test(graph: HeteroData, test: HeteroData, negatives: int, seed: int) -> Split:
    """Train/validation from ``graph``, test from ``test`` (same id space), negatives sampled for both.

    Negatives are drawn once for the union of both files (never an interaction of either) and given to
    the test part with the share of test interactions, at random.
    """
    check_disjoint(graph, test)
    edges = torch.cat([graph[EDGE].edge_index, test[EDGE].edge_index], 1)
    union = make_interactions(edges, torch.cat([graph[EDGE].edge_label, test[EDGE].edge_label]),
                              num_users(graph), num_items(graph))
    for node in ("user", "item"):
        union[node].raw_id = graph[node].raw_id
    if negatives:
        union = with_negatives(union, negatives, seed)
    store = union[EDGE]
    is_test = torch.isin(pair_keys(store.edge_index, num_items(union)),
                         pair_keys(test[EDGE].edge_index, num_items(union)))
    if "observed" in store:  # sampled negatives: to the test part with the test share of interactions
        share = test[EDGE].edge_index.size(1) / edges.size(1)
        draw = uniform(store.edge_index.size(1), seeded(wrapped_seed(seed + 1)))
        is_test |= ~store.observed & (draw < share)
    split = random_split(edge_subgraph(union, ~is_test), (1 - VAL_SHARE, VAL_SHARE, 0.0), seed)
    return Split(split.train, split.val, _remap(edge_subgraph(union, is_test), split.train))


def prepare_split(graph: HeteroData, test: HeteroData | None, *, threshold: float | None = None,
                  negatives: int = 0, seed: int = 0, source: str = "the data") -> Split:
    """Binarised labels, sampled negatives and the split of :func:`fit_on_file`.

    Without a test set the interactions (with their negatives) are split 8:1:1 at random; with one, a
    tenth of ``graph`` becomes the validation set. Node ids are those of the training part; ``raw_id`` is kept.

    Raises:
        ValueError: labels other than 0/1 without ``threshold``; implicit feedback without ``negatives``.
    """
    graph = binary_labels(graph, threshold, source)
    _check_negatives(graph, negatives, source, threshold)
    if test is not None:
        return _split_with_test(graph, binary_labels(test, threshold, source), negatives, seed)
    if negatives:
        graph = with_negatives(graph, negatives, seed)
    return random_split(graph, SPLIT, seed)


# ------------------------------------------------------------------------------------------------ fitting

@dataclass
class FitResult:
    """What :func:`fit_on_file` did: the published run directory and its metrics."""
    path: Path
    metrics: dict


def _hparams(model: str, hparams) -> Hyperparameters:
    """The preset of ``model`` with ``hparams`` (a :class:`Hyperparameters`, or a dict of changes; dotted
    keys reach the training: ``{"train.epochs": 5}``); a model of your own starts from MF's preset."""
    if model in CONTRASTIVE:
        raise ValueError(f"fit trains with BCE on labelled pairs, and {model} trains with BPR: use "
                         f"{', '.join(FIT_MODELS)} or a model of your own (graphforget.models.MODELS; on the command "
                         "line, the graphforget.models entry point of an installed package)")
    if isinstance(hparams, Hyperparameters):
        if hparams.model != model:
            raise ValueError(f"hparams are for model {hparams.model!r}, not {model!r}")
        return hparams
    return default_hparams(model, "synthetic").replace(dict(hparams or {}))


def _data_record(path: Path, format: str, options: dict) -> dict:
    """Where the data came from: the absolute path, the format, its options and the sha256 of the files read."""
    return {"path": str(path.resolve()), "format": format, "options": options,
            "sha256": {p.name: sha256_file(p) for p in data_files(path, format)}}


def _read_recorded(path: str | os.PathLike, format: str, options: dict) -> tuple[dict, HeteroData, HeteroData | None]:
    """:func:`load_file`'s graph and test part, with the record of the files as read (:func:`_data_record`).

    Raises:
        ValueError: a data file changed while it was read (a job replacing it): the run would record the sha256 of
            bytes it never trained on (it had hashed the files after the training, so the new file's).
    """
    where = Path(path).expanduser()
    record = _data_record(where, format, options)
    reading = ("user_col", "item_col", "label_col", "duplicates", "delimiter", "encoding")  # load_file's options
    graph, test = load_file(path, format, **{key: options[key] for key in reading})
    before, now = record["sha256"], _data_record(where, format, options)["sha256"]
    changed = sorted(name for name in before.keys() | now.keys() if before.get(name) != now.get(name))
    if changed:
        raise ValueError(f"{record['path']}: {', '.join(changed)} changed while it was read; fit again once it is "
                         "written whole")
    # -v: a large file takes a while to read, sample and split before the training's bar
    log.info("read %s: %d pairs of %d users and %d items", path, graph[EDGE].edge_index.size(1), num_users(graph),
             num_items(graph))
    return record, graph, test


def fit_on_file(path: str | os.PathLike, format: str, *, out: str | os.PathLike, user_col: str | None = None,
                item_col: str | None = None, label_col: str | None = None, duplicates: str = "raise",
                delimiter: str = ",", encoding: str = "utf-8", threshold: float | None = None, negatives: int = 0,
                model: str = "mf", hparams: dict | Hyperparameters | None = None, seed: int = 0, device: str = "cpu",
                progress: bool = False) -> FitResult:
    """Trains a model on a file and publishes a ``fit`` run at ``out``.

    Args:
        path: the data file (or folder, see :data:`FORMATS`).
        format: one of :data:`FORMATS`.
        out: the new run directory (not there yet, or empty; checked first).
        user_col, item_col, label_col: CSV column names.
        duplicates: CSV: a (user, item) pair on several rows is an error (``"raise"``) or its last row is kept
            (``"last"``).
        delimiter: CSV: the field separator.
        encoding: CSV: the text encoding (``"latin-1"``, ...).
        threshold: binarise ratings: label 1 where ``rating >= threshold``.
        negatives: sampled non-interactions per interaction (implicit feedback needs them for BCE).
        model: one of :data:`FIT_MODELS`, or the name of your own model's class or factory in
            :data:`graphforget.models.MODELS` (called with :meth:`~graphforget.presets.Hyperparameters.model_config`).
        hparams: changes to the preset (``{"embedding_dim": 32, "train.epochs": 20}``) or a full
            :class:`~graphforget.presets.Hyperparameters`.
        seed: seed of the negatives, the split, the initialisation and the batch order.
        device: torch device of the training.
        progress: a progress bar while training.

    Raises:
        FileExistsError: ``out`` exists (an empty directory will do).
        ValueError, FileNotFoundError: an ``out`` inside a run, bad data or options (see :func:`load_file`,
            :func:`prepare_split`).
    """
    _check_new_run_on_every_rank(absolute_run_path(out), dict(locals()))
    check_device(device)
    hp = _hparams(model, hparams)
    check_threshold_has_ratings(format, label_col, threshold)
    _check_negatives_count(negatives)  # before the file is read
    options = {"user_col": user_col, "item_col": item_col, "label_col": label_col, "duplicates": duplicates,
               "delimiter": delimiter, "encoding": encoding, "threshold": threshold, "negatives": negatives}
    data, graph, test = _read_recorded(path, format, options)
    agreed("fit_on_file", lambda: None, data=data["sha256"])  # a path may name another copy on each node (qa142)
    split = prepare_split(graph, test, threshold=threshold, negatives=negatives, seed=seed, source=str(path))
    _check_val_labels(split.val, str(path))
    log.info("split into %d training, %d validation and %d test pairs",
             *(part[EDGE].edge_index.size(1) for part in (split.train, split.val, split.test)))
    dev = torch.device(device)
    users, items = num_users(split.train), num_items(split.train)
    net = hp.build_model(users, items, seed).to(dev)
    fit = train(net, split.train.to(dev), hp.objective(seed), hp.train_config(seed, progress), split.val.to(dev))
    metrics = {"train_seconds": fit.seconds, "threads": torch.get_num_threads(), "epochs": fit.epochs,
               "best_epoch": fit.best_epoch, "val_auc": fit.best_val_auc,
               "test_auc": heldout_auc(net, split.train.to(dev), split.test),
               **_sizes(split.train, split.val, split.test),
               # nodes of the file whose every pair the split held out: the model has no row for them
               "users_left_out": num_users(graph) - users, "items_left_out": num_items(graph) - items}
    info = {"kind": "fit", "version": __version__, "data": data,
            "model": {"name": hp.model, "config": hp.model_config(users, items)}, "hparams": hp.as_dict(),
            "seed": seed, "objective": {"seed": seed}, "metrics": metrics,
            "lineage": {"parent": None, "request": None, "removed_edges": 0, "depth": 0}}
    parts = (split.train, split.val, split.test, _none_removed())
    return FitResult(_on_rank_zero(lambda: save_run(out, info, net, *parts)), metrics)


def _none_removed() -> dict:
    """The removed edges of a fit run: none."""
    return {"edge_index": torch.zeros(2, 0, dtype=torch.long), "edge_label": torch.zeros(0),
            "observed": torch.zeros(0, dtype=torch.bool)}


def _check_val_labels(val: HeteroData, source: str) -> None:
    """Refuses a validation part without pairs of both labels, naming the data: the training's own error told to
    pass ``val=None`` or to call ``add_negatives``, which fit's caller cannot do.

    Raises:
        ValueError: naming how many validation pairs of each label there are.
    """
    labels = val[EDGE].edge_label
    positive = int((labels == 1).sum())
    if 0 < positive < labels.numel():
        return
    raise ValueError(f"{source}: the validation pairs split off it hold {positive} labelled 1 and "
                     f"{labels.numel() - positive} labelled 0, and training needs both (early stopping follows the "
                     "validation AUC): too few interactions, or too few of one label")


def _check_new_run_on_every_rank(out: Path, inputs: dict, check: Callable[[], Any] = lambda: None) -> Any:
    """:func:`_check_new_run` and ``check()`` (its value) in a process group (``torchrun``), where every rank must make
    the same call (``inputs``: its arguments but the device and the progress bar, which a rank may set alone): only
    rank 0 publishes the run (:func:`_on_rank_zero`), and every rank raises what one rank's check raised (a user
    unknown to one rank stopped it alone, and the others failed in their next collective) or
    :class:`~graphforget.distributed.RanksDisagree` (ranks given other users had returned their own results beside
    rank 0's run)."""
    def checks():
        _check_new_run(out)
        return check()
    same = {name: value for name, value in inputs.items() if name not in ("device", "progress")}
    return agreed("publishing a run", checks, **{**same, "out": str(out)})


def _on_rank_zero(write: Callable[[], Any]) -> Any:
    """``write()`` on rank 0 alone, its value (or its error) on every rank of a process group: every rank published
    the run, and all but one failed with FileExistsError, after the run was written (a QA probe, IFRU with
    data_parallel under torchrun). Without a group: ``write()``."""
    rank, size = rank_and_size()
    if size == 1:
        return write()
    value, error = None, None
    if rank == 0:
        try:
            value = write()
        except Exception as caught:
            error = caught
    value, sent = from_rank_zero((value, None if error is None else repr(error)))
    if error is not None:
        raise error
    if sent is not None:
        raise RuntimeError(f"rank 0 failed to publish the run: {sent}")
    return value


def _check_new_run(out: Path) -> None:
    """Refuses an ``out`` that :func:`~graphforget.runs.publish` would refuse or fail on, before any work: it checks
    only after the training or the unlearning.

    Raises:
        FileExistsError: ``out`` exists (an empty directory will do).
        ValueError: ``out`` lies inside a run directory, which is never modified.
    """
    refuse_taken(out, str(out))
    run = enclosing_run(out)
    if run is not None:
        raise ValueError(f"{out} is inside the run {run}, and runs are never modified: choose a directory outside it")


def heldout_auc(model, graph: HeteroData, test: HeteroData) -> float | None:
    """AUC of ``model`` (scored on ``graph``) on the held-out pairs ``test`` (``None`` without both labels there)."""
    if test[EDGE].edge_index.size(1) == 0:
        return None
    value = evaluate_auc(model, graph, on_device(test, graph[EDGE].edge_index.device))["auc_0"]
    return None if value != value else value


def _sizes(graph: HeteroData, val: HeteroData, test: HeteroData) -> dict:
    store = graph[EDGE]
    observed = int(store.observed.sum()) if "observed" in store else store.edge_index.size(1)
    return {"users": num_users(graph), "items": num_items(graph), "train_edges": store.edge_index.size(1),
            "train_interactions": observed, "val_pairs": val[EDGE].edge_index.size(1),
            "test_pairs": test[EDGE].edge_index.size(1)}


# ------------------------------------------------------------------------------------------------ requests

@dataclass
class Request:
    """A deletion request in a run's local ids.

    Attributes:
        kind: ``users``, ``items`` or ``edges``.
        ids: the local user or item ids (``users``/``items``), or ``[2, K]`` pairs (``edges``).
        edges: ``[2, R]`` the training edges to remove (a user's or item's every edge, sampled negatives
            included: they are part of its loss terms; for ``edges``, the listed pairs that are training edges,
            the others being validation or test pairs).
    """
    kind: str
    ids: Tensor
    edges: Tensor

    def __repr__(self) -> str:
        return f"Request(kind={self.kind}, ids={self.ids.size(-1)}, edges={self.edges.size(1)})"


def _local_nodes(graph: HeteroData, node: str, ids: Sequence, local_ids: bool) -> Tensor:
    """Local ids of the given ``node`` ids (raw unless ``local_ids``).

    Raises:
        ValueError: naming up to ten unknown ids.
    """
    ids = list(ids)
    if local_ids:
        parsed = [_as_int(value) for value in ids]
        count = graph[node].num_nodes
        local = torch.tensor([p if p is not None and 0 <= p < count else -1 for p in parsed], dtype=torch.long)
        known = local >= 0
    else:
        local, known = raw_to_local(graph[node].raw_id, ids)
    if not bool(known.all()):
        # distinct ids: an edges file names a user on each of its pairs, counted once each
        unknown = list(dict.fromkeys(ids[k] for k in (~known).nonzero().flatten().tolist()))
        kind = "local" if local_ids else "raw"
        # a raw id of the data file is unknown too when the split held out its every pair (fit drops those nodes)
        article = "an" if node == "item" else "a"
        why = "" if local_ids else (f": mistyped, or {article} {node} of the data file whose every pair went to "
                                    "validation or test, which fit drops: the model never learnt from it, nothing to "
                                    "forget")
        other = "item" if node == "user" else "user"
        if not local_ids and bool(raw_to_local(graph[other].raw_id, unknown)[1].all()):  # 'm001' given as a user
            # after the held-out reason, not in its place: where ids overlap (ML-100K's integers) a held-out one is too
            why += f"; each is {'an' if other == 'item' else 'a'} {other} id of the run: were users and items swapped?"
        if not local_ids:
            why += _another_form(graph[node].raw_id, unknown)
        raise ValueError(f"unknown {node} ids ({kind}): {', '.join(map(_shown_id, unknown[:10]))}"
                         f"{' ...' if len(unknown) > 10 else ''} ({len(unknown)} of {len(set(ids))}; the run's training "
                         f"graph has {graph[node].num_nodes} {node}s){why}")
    return local


def _shown_id(value) -> str:
    """An id as an error shows it: as written, or quoted where spaces around it or unprintable characters would not
    show (qa149: 'alice@example.com ' read as the known 'alice@example.com')."""
    text = str(value)
    return text if text and text.isprintable() and text == text.strip() else repr(text)


def _another_form(raw_ids: Sequence, unknown: Sequence) -> str:
    """Where an unknown id is a known one with spaces around it (the loaders strip a file's values; a service's ids
    may keep a tab or a newline, qa149), or in another Unicode normal form (the same text on screen, other code
    points: "Zoë" typed decomposed, as some macOS sources give it), says which: "mistyped" misled (qa103). Never
    matched in its place: the two may be two ids of the caller's system. Integer ids (a tensor) have no forms."""
    if isinstance(raw_ids, Tensor):
        return ""
    known_ids = set(map(str, raw_ids))
    forms = {unicodedata.normalize("NFC", raw): raw for raw in known_ids}
    for given in map(str, unknown):
        if given.strip() in known_ids:
            return (f"; {given!r} is the run's {given.strip()!r} with spaces around it (fit reads a file's values "
                    "without them): give the id alone")
        known = forms.get(unicodedata.normalize("NFC", given))
        if known is not None and known != given:
            return (f"; {ascii(given)} is the run's {ascii(known)} in another Unicode normal form (the same text on "
                    "screen, other code points): give the run's form")
    return ""


def _raw_pair(graph: HeteroData, pair: Sequence[int]) -> str:
    user, item = (graph[node].raw_id[int(k)] for node, k in (("user", pair[0]), ("item", pair[1])))
    return f"({_plain_id(user)}, {_plain_id(item)})"


def _named_pair(graph: HeteroData, pair: Sequence[int], local_ids: bool) -> str:
    """A pair as the request named it: by raw ids, or by local ids, said so (a local pair named by its raw ids read
    as another pair, perhaps a real one)."""
    return f"({int(pair[0])}, {int(pair[1])}) (local ids)" if local_ids else _raw_pair(graph, pair)


def _plain_id(value) -> str:
    return str(value.item() if hasattr(value, "item") else value)


def _check_edges_not_forgotten(run: Run, pairs: Tensor, local_ids: bool = False) -> None:
    """Refuses listed edges that the lineage already removed (checked before anything else), named as the request
    named them (``local_ids``).

    Raises:
        ValueError: naming the edges already removed, or the sampled negatives among them (a forgotten user's are
            removed with the user's edges; they were never interactions).
    """
    count = num_items(run.graph)
    wanted, removed = pair_keys(pairs, count), pair_keys(run.removed, count)
    _refuse_negatives(run, pairs, torch.isin(wanted, removed[~run.removed_observed]), local_ids)
    again = torch.isin(wanted, removed)
    if bool(again.any()):
        first = pairs[:, again.nonzero()[0, 0]].tolist()
        raise ValueError(f"{int(again.sum())} of the requested edges were already forgotten {_forgotten_by(run)}, "
                         f"e.g. {_named_pair(run.graph, first, local_ids)}{_untrusted_note(run)}")


def _listed(count: int, one: str, many: str) -> str:
    """'1 of the listed pairs is {one}' or 'n of the listed pairs are {many}'."""
    return f"{count} of the listed pairs " + (f"is {one}" if count == 1 else f"are {many}")


def _refuse_negatives(run: Run, pairs: Tensor, negative: Tensor, local_ids: bool) -> None:
    """Refuses the listed ``pairs`` that ``negative`` marks: sampled negatives, never interactions."""
    if bool(negative.any()):
        first = pairs[:, negative.nonzero()[0, 0]].tolist()
        said = _listed(int(negative.sum()), "a sampled negative, not an interaction",
                       "sampled negatives, not interactions")
        raise ValueError(f"{said}, e.g. {_named_pair(run.graph, first, local_ids)}: list observed interactions only")


def _check_nodes_not_forgotten(run: Run, row: int, ids: Tensor, left: Tensor, local_ids: bool = False) -> None:
    """Refuses users (``row`` 0) or items (1) that the lineage forgot: it removed their edges and the run stores no
    pair of theirs (``left``, from :func:`_holding`); named as the request named them (``local_ids``).

    Raises:
        ValueError: naming the users or items already forgotten.
    """
    done = torch.isin(ids, run.removed[row]) & ~left
    if bool(done.any()):
        node = ("user", "item")[row]
        names = [str(int(k)) if local_ids else _plain_id(run.graph[node].raw_id[int(k)]) for k in ids[done][:10]]
        kind = " (local ids)" if local_ids else ""
        raise ValueError(f"{node}s already forgotten {_forgotten_by(run)}{kind}: {', '.join(names)}"
                         f"{_untrusted_note(run)}")


def _forgotten_by(run: Run) -> str:
    """Where a removal is recorded: the lineage's removed pairs (its audit log names no raw id, qa169), and a stream's
    requests still pending."""
    where = f"in this lineage (its removed pairs: {run.path}/removed.pt; its requests: audit.jsonl"
    if run.pending:
        where += f", or pending in the stream: request{'s' * (len(run.pending) > 1)} {', '.join(map(str, run.pending))}"
    return where + ")"


def untrusted_requests(run: Run) -> list[dict]:
    """The audit lines of the lineage's requests published untrusted (``allow_untrusted``): their edges are gone
    from the data, but the model may still hold what it learnt from them. A Retrain from scratch later in the lineage
    learnt from none of them: the requests before it are not listed (verify --strict had failed for good)."""
    fresh = [k for k, line in enumerate(run.audit) if _retrained_from_scratch(line)]
    return [line for line in run.audit[fresh[-1] + 1 if fresh else 0:] if line.get("trusted") is False]


def _retrained_from_scratch(line: dict) -> bool:
    """Whether an audit line, or a run's ``run.json``, records a Retrain that did not start from the parent."""
    method = line.get("method") or {}
    return method.get("name") == "retrain" and not (method.get("config") or {}).get("warm_start", False)


def _untrusted_note(run: Run) -> str:
    count = len(untrusted_requests(run))
    if not count:
        return ""
    them = ("request of the lineage was", "it") if count == 1 else ("requests of the lineage were", "them")
    return (f"; {count} {them[0]} published untrusted: to forget {them[1]} again, forget from the run before "
            f"{them[1]}")


def _holding(run: Run, row: int, ids: Tensor) -> Tensor:
    """Whether the run still stores a pair of each user (``row`` 0) or item (1): a training edge or a held-out pair."""
    return torch.stack([torch.isin(ids, part[EDGE].edge_index[row]) for part in (run.graph, run.val, run.test)]).any(0)


def _edge_request(run: Run, pairs: Tensor, local_ids: bool = False) -> Tensor:
    """The listed pairs that are training edges of the run. The others must be held-out interactions
    (validation or test pairs): the run stores them too, and :func:`forget` drops them without unlearning. Errors
    name a pair as the request named it (``local_ids``).

    Raises:
        ValueError: naming pairs that are neither, or that are sampled negatives.
    """
    count = num_items(run.graph)
    wanted = pair_keys(pairs, count)
    found, negative = [], torch.zeros_like(wanted, dtype=torch.bool)
    for part in (run.graph, run.val, run.test):
        store = part[EDGE]
        keys = pair_keys(store.edge_index, count)
        found.append(torch.isin(wanted, keys))
        if "observed" in store:
            negative |= torch.isin(wanted, keys[~store.observed])
    trained, known = found[0], torch.stack(found).any(0)
    if not bool(known.all()):
        first = pairs[:, (~known).nonzero()[0, 0]].tolist()
        said = _listed(int((~known).sum()), "not an interaction", "not interactions")
        raise ValueError(f"{said} of {run.path} (neither "
                         f"training edges nor validation or test pairs; a held-out pair that an earlier request "
                         f"dropped is no longer stored), e.g. {_named_pair(run.graph, first, local_ids)}")
    _refuse_negatives(run, pairs, negative, local_ids)
    return pairs[:, trained]


def build_request(run: Run, *, users: Sequence | None = None, items: Sequence | None = None,
                  edges: Sequence[Sequence] | Tensor | None = None, local_ids: bool = False) -> Request:
    """The request of :func:`forget` in the run's local ids (exactly one of ``users``, ``items``, ``edges``).

    Raises:
        ValueError: none or several of ``users``/``items``/``edges``, an empty list, a nested one, unknown ids, a
            request that repeats what the lineage already forgot, listed pairs that are not observed edges, or a
            tensor or array of another shape than ``[R]`` ids or ``[R, 2]`` pairs (``[2, 2]`` is ambiguous).
        TypeError: ``users`` or ``items`` given as one string, not a list of ids (an edge as one string is a
            ``ValueError``, as any edge that is not a pair), or a tensor or array of float, complex or bool values.
    """
    kind, values = _request_values(users, items, edges)
    if not isinstance(local_ids, bool):  # "false" is truthy: raw user 6 was forgotten for raw user 5
        raise TypeError(f"local_ids must be True or False, got {local_ids!r}")
    if kind == "edges":
        pairs = torch.stack([_local_nodes(run.graph, node, [p[k] for p in values], local_ids)
                             for k, node in enumerate(("user", "item"))])
        pairs = torch.unique(pair_keys(pairs, num_items(run.graph)))  # a pair listed twice is one request
        ids = torch.stack([pairs // num_items(run.graph), pairs % num_items(run.graph)])
        _check_edges_not_forgotten(run, ids, local_ids)
        return Request(kind, ids, _edge_request(run, ids, local_ids))
    row, node = (0, "user") if kind == "users" else (1, "item")
    ids = _local_nodes(run.graph, node, values, local_ids).unique()
    left = _holding(run, row, ids)
    _check_nodes_not_forgotten(run, row, ids, left, local_ids)
    store = run.graph[EDGE]
    edges = cast(Tensor, store.edge_index[:, torch.isin(store.edge_index[row], ids)])  # untyped: HeteroData's
    if not bool(left.any()):
        raise ValueError(f"the requested {kind} have no training edges nor validation or test pairs in {run.path}")
    return Request(kind, ids, edges)


def _request_values(users, items, edges) -> tuple[str, list]:
    """``(kind, its values as a list)`` of a request, checked for what needs no run: exactly one kind, not one
    string, not empty, edges as pairs."""
    given = {name: value for name, value in (("users", users), ("items", items), ("edges", edges))
             if value is not None}
    if len(given) != 1:
        raise ValueError(f"give exactly one of users, items or edges, got {sorted(given) or 'none'}")
    (kind, values), = given.items()
    if _one_value(values):  # a string is a sequence of characters: users="12" forgot users 1 and 2
        one = "[(user, item)]" if kind == "edges" else f"[{values!r}]"
        what = "the string" if isinstance(values, (str, bytes)) else f"the single {type(values).__name__}"
        raise TypeError(f"{kind} must be a list of {'pairs' if kind == 'edges' else 'ids'}, got {what} "
                        f"{values!r} (for one: {kind}={one})")
    values = _array_listed(kind, values) if isinstance(values, (Tensor, np.ndarray)) else list(values)
    if not values:
        raise ValueError(f"the request lists no {kind}")
    if kind == "edges":
        # edges=[0, 2] was one pair left unwrapped
        odd = next((pair for pair in values if _one_value(pair) or len(pair) != 2), None)
        if odd is not None:
            raise ValueError(f"edges must be (user, item) pairs, got {odd!r} (for one: edges=[(user, item)])")
    else:
        odd = next((value for value in values if not _one_value(value)), None)
        if odd is not None:  # users=[[1]] failed hashing a list
            raise ValueError(f"{kind} must be a flat list of ids, got {odd!r} in it")
    return kind, values


def _array_listed(kind: str, values: Tensor | np.ndarray) -> list:
    """A tensor's or array's ids as a list: ``users`` and ``items`` 1-D, ``edges`` ``[R, 2]``, a (user, item) pair a
    row, as a list of pairs (and a DataFrame's two columns) reads. ``[2, R]`` is the layout of ``Request.edges``, so
    a ``[2, 2]`` one is ambiguous: it read the other two edges."""
    name = f"{type(values).__name__} of shape {tuple(values.shape)}"
    if isinstance(values, Tensor) and values.is_meta:
        raise ValueError(f"{kind} is a tensor on the meta device: it holds no ids")
    if isinstance(values, Tensor) and values.layout != torch.strided:  # tolist() of a sparse one failed in torch
        values = values.to_dense()
    if values.dtype.kind in "fcb" if isinstance(values, np.ndarray) else not is_integer_tensor(values):
        raise TypeError(f"{kind} must hold integer ids, got a {values.dtype} {name}")
    if kind != "edges":
        if values.ndim != 1:
            raise ValueError(f"{kind} must be 1-D, a list of ids, got a {name}")
        return values.tolist()
    rows, columns = values.shape if values.ndim == 2 else (0, 0)
    if (rows, columns) == (2, 2):
        raise ValueError(f"edges given as a {name} are ambiguous: give edges.tolist() for a (user, item) pair a row, "
                         "or edges.T.tolist() for the [2, R] layout of Request.edges")
    if columns != 2:
        turn = ": transpose it (edges.T); [2, R] is the layout of Request.edges" if rows == 2 else ""
        raise ValueError(f"edges given as a {name} must be [R, 2], a (user, item) pair a row{turn}")
    return values.tolist()


# Column names a header line of an edges file may give (compared in lower case), for users and for items.
_HEADER_NAMES = ({"user", "user_id", "userid", "uid"},
                 {"item", "item_id", "itemid", "iid", "movie", "movie_id", "movieid"})


def read_edges_file(path: str | os.PathLike, run: Run | None = None, encoding: str = "utf-8"
                    ) -> list[tuple[str, str]]:
    """``(user, item)`` raw id pairs of a file with one pair a line (comma, else tab, else space separated, so ids
    with spaces need a comma or a tab; a comma-separated line is read as CSV, so a quoted id may hold a comma;
    ``#`` comments at a line's start or after a space, and blank lines skipped).

    A first line of column names (``user``, ``user_id``, ``userId`` or ``uid``, then ``item``, ``item_id``,
    ``itemId``, ``iid``, ``movie``, ``movie_id`` or ``movieId``, or the CSV columns the run was fitted from; any case)
    is skipped when ``run`` is given and neither name is one of its raw ids. Raw ids can be any strings, so without
    ``run`` (or in a run with a user called ``user``) the line is a pair like any other. Likewise a comment that, read
    as a line, names a user and an item of ``run`` (``#u5,m439``, where ``#u5`` is a user) is refused: quote the id
    (``"#u5",m439``) to request the pair.

    Args:
        path: the edges file.
        run: the run whose raw ids the pairs name, to tell a header line from a pair.
        encoding: the file's text encoding (UTF-8 may start with a byte-order mark).

    Raises:
        FileNotFoundError, IsADirectoryError: a missing file, or a folder.
        ValueError: a path that is neither a regular file nor a pipe (a device), an empty file, a line without
            exactly two fields or not in ``encoding``, an id that begins or ends with a non-ASCII space or an invisible
            character (as ``fit`` refuses it), or a comment that names a pair of ``run``, naming the file and line; an
            unknown encoding.
    """
    path = require_file(Path(path).expanduser(), "edges file", pipe=True)  # read once: forget --edges <(grep ...)
    pairs, first = [], 0
    # lines end at \n, \r\n or \r alone, as fit's CSV reader has them: str.splitlines also breaks at U+0085, U+2028 and
    # others, which ids may hold (a cp1252 '…' read as latin-1 is U+0085)
    text = read_text(path, encoding, "pass its encoding (forget --encoding latin-1, ...) or save it as UTF-8")
    for number, line in enumerate(re.split(r"\r\n|\r|\n", text), start=1):
        try:
            fields = _edge_fields(line)
        except ValueError as error:
            raise ValueError(f"{path}, line {number}: {error}") from None
        if run is not None and "#" in line:  # only a line with a comment is parsed again
            _refuse_commented_pair(line, fields, run, f"{path}, line {number}")
        if not fields:
            continue
        if len(fields) != 2:
            raise ValueError(f"{path}, line {number}: expected 'user item', got {line.strip()!r}{_separators(run)}")
        pairs.append((fields[0], fields[1]))
        first = first or number
    if pairs and run is not None and _is_header(pairs[0], run):
        pairs = pairs[1:]
    elif pairs and run is not None:
        _refuse_unknown_first_pair(pairs[0], run, f"{path}, line {first}")
    if not pairs:
        raise ValueError(f"{path} lists no (user, item) pair")
    return pairs


def _edge_fields(line: str, comments: bool = True) -> list[str]:
    """The fields of an edges file's line: split at commas, else at tabs, else at spaces, so that a CSV's ids with
    spaces ('John Smith,m4') stay whole; '#' starts a comment at the line's start or after a space only, as ids can
    hold it ('Zoë#2'). Blank fields are dropped ('u1,m2,' is a pair); with commas the line is CSV, as fit read it
    ('"Smith, J",m1' names the user 'Smith, J'). ``comments=False``: the whole line, '#' read as text."""
    text = re.split(r"(?:^|\s)#", line, maxsplit=1)[0] if comments else line
    if not text.strip():  # a blank line, no-break spaces and all
        return []
    if "," in text:
        fields = next(csv.reader([text], skipinitialspace=True))
    else:  # at ASCII blanks, as fit reads ids: 'a' + U+00A0 had matched user 'a'
        fields = re.split("\t" if "\t" in text else f"[{_ASCII_SPACE}]", text)
    return [field for field in map(stripped_id, fields) if field]


def _separators(run: Run | None) -> str:
    """What separates an edges file's two ids, and not the data file's own delimiter where it is another (qa103: a
    Book-Crossing run's edges in its ';' format were told only "expected 'user item'")."""
    delimiter = _data_options(run).get("delimiter") if run is not None else None
    other = f", not by the data file's {delimiter!r}" if delimiter and delimiter.strip() not in ("", ",") else ""
    return f" (two ids a line, separated by a comma, a tab or spaces{other})"


def _data_options(run: Run) -> dict:
    """The options ``fit`` read the run's data file with (its CSV columns, delimiter, ...); none for a dataset's."""
    return (run.info.get("data") or {}).get("options") or {}


def _refuse_commented_pair(line: str, fields: list[str], run: Run, where: str) -> None:
    """Raises ``ValueError`` where ``line``'s comment hides a pair of ``run``: a user whose raw id starts with '#'
    (``fit`` reads it as an id) was skipped as a comment line, and its pairs were left in the model without a word."""
    try:
        whole = _edge_fields(line, comments=False)
    except ValueError:  # a comment ending in a no-break space: no id of the run ends in one
        return
    if whole == fields or len(whole) != 2:
        return
    if all(raw_to_local(run.graph[node].raw_id, [name])[1][0] for name, node in zip(whole, ("user", "item"))):
        raise ValueError(f"{where}: {line.strip()!r} reads as a comment ('#'), but names user {whole[0]!r} and item "
                         f"{whole[1]!r} of the run: quote the id that starts with '#' to request the pair, or delete "
                         "the line")


def _is_header(pair: tuple[str, str], run: Run) -> bool:
    """Whether ``pair`` names the columns (``_HEADER_NAMES``, or the CSV columns ``run`` was fitted from) and neither
    name is a raw id of ``run``."""
    columns = _data_options(run)
    if not all(name.lower() in names or name.lower() == str(columns.get(column) or "").lower()
               for name, names, column in zip(pair, _HEADER_NAMES, ("user_col", "item_col"))):
        return False
    known = [bool(raw_to_local(run.graph[node].raw_id, [name])[1][0]) for name, node in zip(pair, ("user", "item"))]
    return not any(known)


def _refuse_unknown_first_pair(pair: tuple[str, str], run: Run, where: str) -> None:
    """Raises ``ValueError`` naming the line where neither id of an edges file's first pair is in ``run``: a header
    of other names ('email,book') was told "unknown user ids (raw): email", without the file or the line (qa149)."""
    if not any(raw_to_local(run.graph[node].raw_id, [name])[1][0] for name, node in zip(pair, ("user", "item"))):
        raise ValueError(f"{where}: neither user {pair[0]!r} nor item {pair[1]!r} is in the run's training graph: if "
                         "the line names the columns, delete it; if it is a pair, both ids are mistyped, or fit held "
                         "out their every pair")


# ------------------------------------------------------------------------------------------------ forgetting

@dataclass
class ForgetResult:
    """What :func:`forget` did.

    Attributes:
        path: the new run directory.
        request: the request in local ids.
        result: the method's :class:`~graphforget.unlearn.UnlearnResult` (model, remaining graph, seconds, info).
        report: the verification (:class:`~graphforget.verify.ForgettingReport`), ``None`` when not asked for
            or impossible (``audit["verification_error"]`` says why).
        audit: the audit line written for this request.
        untrusted_before: the runs of the lineage before it whose request was published untrusted
            (``untrusted_requests``; none after a Retrain from scratch, which learnt from none of them).
    """
    path: Path
    request: Request
    result: Any
    report: Any
    audit: dict = field(default_factory=dict)
    untrusted_before: list[str] = field(default_factory=list)


def check_method(method: str) -> None:
    """Raises ``ValueError`` for an unknown method or one whose result a run cannot hold (a shard ensemble)."""
    usable = ", ".join(m for m in METHODS if not issubclass(METHODS[m], SISA))
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; a run takes {usable}")
    if issubclass(METHODS[method], SISA):
        raise ValueError(f"{method} returns an ensemble of shard models, which a run directory cannot hold: "
                         f"use one of {usable}")


def _heldout_without(run: Run, request: Request) -> tuple[HeteroData, HeteroData, Tensor]:
    """The run's validation and test pairs without the request's users or items (or its listed pairs), and the
    ``[2, H]`` pairs dropped: a forgotten user's data is no longer used, not even to choose a checkpoint."""
    parts, dropped = [], []
    for part in (run.val, run.test):
        edges = part[EDGE].edge_index
        if request.kind == "edges":
            count = num_items(run.graph)
            drop = torch.isin(pair_keys(edges, count), pair_keys(request.ids, count))
        else:
            drop = torch.isin(edges[0 if request.kind == "users" else 1], request.ids)
        parts.append(edge_subgraph(part, ~drop))
        dropped.append(edges[:, drop])
    return parts[0], parts[1], torch.cat(dropped, 1)


def _unlearn(parent: Run, method: str, config, request: Request, val: HeteroData, device: str):
    """Runs the method (``fit()`` first where it needs it): ``(result, fit_seconds)``. A request of held-out
    pairs only removes nothing the model was trained on: the model is kept, no method runs."""
    if request.edges.size(1) == 0:
        return UnlearnResult(copy.deepcopy(parent.model), parent.graph.clone(), 0.0, dict(EMPTY_INFO), method), 0.0
    dev = torch.device(device)
    objective = recorded_objective(parent.info)
    val = _usable_val(val, "; `graphforget verify --retrain` compares the result with a Retrain")
    with warnings.catch_warnings():
        if val is None:  # said once, above: a method's own warning of it had followed, advising a val not to be had
            warnings.simplefilter("ignore", NoValidationWarning)
        unlearner = METHODS[method](module_on(parent.model, dev), on_device(parent.graph, dev), objective, config,
                                    val=None if val is None else on_device(val, dev))
    # -v: a LightGCN's step on Gowalla took tens of seconds, said by nothing until it was done (qa146)
    log.info("%s: unlearning %d training edges of a graph of %d", method, request.edges.size(1),
             parent.graph[EDGE].edge_index.size(1))
    fit_seconds = unlearner.fit().fit_seconds if unlearner.needs_fit else 0.0
    try:
        result = unlearner.unlearn(request.edges.to(dev))
    except UnlearningFailed as error:  # trust.on_failure="raise": said as an untrusted result is
        raise _Unpublished(str(error), "retry with method retrain") from error
    log.info("%s in %.2fs: %s", method, result.seconds, _scalars(result.info))
    return result, fit_seconds


def _scalars(info: dict) -> str:
    """A method's ``info`` for the log (``-v``): its numbers, flags and words, floats to four digits."""
    def shown(value) -> str:
        return f"{value:.4g}" if isinstance(value, float) else str(value)
    return ", ".join(f"{key} {shown(value)}" for key, value in info.items()
                     if isinstance(value, (bool, int, float, str)) or value is None)


def _usable_val(val: HeteroData, advice: str = "") -> HeteroData | None:
    """``val`` where it holds pairs labelled 1 and 0, else ``None`` (no early stopping, no validation check), with a
    warning ending with ``advice``. A request can take every validation pair of a class (the one user who rated low),
    and every method refused such a ``val``: the request could not be honoured at all."""
    labels = val[EDGE].edge_label
    if bool((labels == 1).any()) and bool((labels == 0).any()):
        return val
    warn_caller(f"the validation pairs left hold {labels.numel()} pairs of a single class or none: the method runs "
                f"without validation (no early stopping, no validation check){advice}", NoValidationWarning)
    return None


class _Unpublished(UnlearningFailed):
    """:func:`forget`'s refusal to publish a result. ``what`` is the failure without the advice to forget's caller,
    which a stream, applying Retrain itself, journals."""

    def __init__(self, what: str, advice: str = ""):
        super().__init__(f"{what}; nothing was written" + (f": {advice}" if advice else ""))
        self.what = what


def _check_result(parent: Run, request: Request, result, method: str, allow_untrusted: bool) -> None:
    """Refuses to publish an untrusted or non-finite model; checks the remaining graph is exactly the parent's
    minus the request.

    Raises:
        UnlearningFailed: an untrusted result (unless ``allow_untrusted``) or non-finite parameters or buffers.
        RuntimeError: a remaining graph that is not the parent's minus the request (a bug of the method).
    """
    if result.info.get("trusted") is False and not allow_untrusted:
        raise _Unpublished(f"{method} could not produce a trusted result ({result.info.get('reason')})",
                           "retry with method retrain, or publish it anyway with allow_untrusted=True (the command "
                           "line's --allow-untrusted)")
    bad = non_finite(result.model)
    if bad:
        raise _Unpublished(f"{method} returned non-finite {bad}")
    count = num_items(parent.graph)
    before = pair_keys(parent.graph[EDGE].edge_index.cpu(), count)
    expected = before[~torch.isin(before, pair_keys(request.edges.cpu(), count))].sort().values
    got = pair_keys(result.graph[EDGE].edge_index.cpu(), count).sort().values
    if not torch.equal(expected, got):
        raise RuntimeError(f"{method}'s remaining graph holds {got.numel()} edges, not the parent's "
                           f"{before.numel()} minus the {request.edges.size(1)} requested")


def _verification(result, parent: Run, request: Request, seed: int):
    """:func:`~graphforget.verify.verify_forgetting` of the result against the parent: ``(report, error)``."""
    if request.edges.size(1) == 0:
        return None, "no training edge was removed (held-out pairs only)"
    try:
        report = verify_forgetting(result.model, result.graph, request.edges, before=(parent.model, parent.graph),
                                   objective=recorded_objective(parent.info), seed=seed,
                                   exclude=_held_out_pairs(parent))
    except ValueError as error:  # e.g. a user with an edge to every item: recorded, never silent
        log.warning("verification impossible: %s", error)
        return None, str(error)
    return report, None


def _held_out_pairs(run: Run) -> Tensor:
    """``[2, X]`` the run's validation and test pairs: never drawn as a verification's non-members (interactions the
    user had; a test pair had been scored and calibrated the attack)."""
    return torch.cat([part[EDGE].edge_index.cpu() for part in (run.val, run.test)], 1)


def _removed(parent: Run, request: Request) -> dict:
    """The lineage's cumulative removed edges with their labels and observed flags."""
    store, count = parent.graph[EDGE], num_items(parent.graph)
    edges, label = store.edge_index.cpu(), store.edge_label.cpu()
    position = torch.isin(pair_keys(edges, count), pair_keys(request.edges.cpu(), count)).nonzero().flatten()
    observed = store.observed.cpu()[position] if "observed" in store else torch.ones(position.numel(), dtype=torch.bool)
    return {"edge_index": torch.cat([parent.removed, edges[:, position]], 1),
            "edge_label": torch.cat([parent.removed_label, label[position]]),
            "observed": torch.cat([parent.removed_observed, observed])}


def _lineage_record(parent: Run, out: Path, request: Request, removed: int, heldout: Tensor) -> dict:
    """The ``lineage`` of a forget run's ``run.json``: parent (absolute and relative path, its ``run.json``
    sha256), the request's size (its training edges, and the ``heldout`` pairs it dropped from the validation
    and test pairs) and the hash of all those pairs, the cumulative removed count and the depth. The relative path
    is from the folder ``out`` resolves to, as :func:`~graphforget.runs.lineage` reads it (``out`` through a link to
    a folder recorded a path that led nowhere once the tree moved)."""
    parent_path = parent.path.resolve()
    return {"parent": {"path": str(parent_path), "relative_path": os.path.relpath(parent_path, out.parent.resolve()),
                       "run_sha256": sha256_file(parent.path / "run.json")},
            "request": {"kind": request.kind, "ids": int(request.ids.size(-1)), "edges": request.edges.size(1),
                        "heldout_pairs": heldout.size(1),
                        "sha256": _request_sha256(parent, request, heldout)},
            "removed_edges": removed, "depth": parent.info["lineage"]["depth"] + 1}


def _request_sha256(parent: Run, request: Request, heldout: Tensor) -> str:
    """What a run's lineage records of its request: the hash of its training edges and the ``heldout`` pairs it
    dropped, as keys of the ``parent``'s graph (:class:`ForgetStream` compares it with its journal's request)."""
    return request_sha256(torch.cat([request.edges, heldout], 1), num_items(parent.graph))


def _audit_line(parent: Run, out: Path, info: dict, result, report, error: str | None) -> Callable[[dict], dict]:
    """A builder of this request's audit line from the new run's file checksums (see :func:`save_run`)."""
    files = parent.info["files"]
    verification = None if report is None else {k: v for k, v in report.to_dict().items() if k != "reference"}

    def line(sums: dict) -> dict:
        return {"time": utc_now(), "version": __version__, "run": str(out), "request": info["lineage"]["request"],
                "removed_edges": info["lineage"]["removed_edges"], "method": info["method"],
                "seconds": result.seconds, "threads": info["metrics"]["threads"],
                "fit_seconds": info["metrics"]["fit_seconds"],
                "trusted": result.info.get("trusted"), "reason": result.info.get("reason"),
                "verification": verification, "verification_error": error,
                "parent": {"path": info["lineage"]["parent"]["path"], "run_sha256": info["lineage"]["parent"]["run_sha256"],
                           "model_sha256": files["model.pt"], "graph_sha256": files["graph.pt"]},
                "child": {"model_sha256": sums["model.pt"], "graph_sha256": sums["graph.pt"]}}
    return line


def _check_switches(**switches) -> None:
    """Raises ``TypeError`` naming a switch that is not a bool: ``"false"`` is truthy (``allow_untrusted="false"``
    published an untrusted result, ``retrain="no"`` ran a whole Retrain)."""
    check_instances({name: (value, bool, "True or False") for name, value in switches.items()})


def forget(run: str | os.PathLike | Run, *, out: str | os.PathLike, users: Sequence | None = None,
           items: Sequence | None = None, edges: Sequence[Sequence] | None = None, local_ids: bool = False,
           method: str = "ifru", options: dict | None = None, seed: int | None = None, verify: bool = True,
           allow_untrusted: bool = False, device: str = "cpu", progress: bool = False) -> ForgetResult:
    """Forgets users, items or edges of a run and publishes the result as a new run at ``out``.

    A repeat of what the lineage removed is refused. A user's (item's) request holds its training edges,
    sampled negatives included, and its held-out pairs; listed ``edges`` are observed interactions. The method
    unlearns the training edges (none: the model is kept); the held-out pairs are dropped. The result is
    checked, verified (:func:`~graphforget.verify.verify_forgetting`) and published with its lineage and audit line.

    Args:
        run: the parent run (a directory or a loaded :class:`~graphforget.runs.Run`, as loaded: one whose model or
            graph was changed in memory is refused); never modified. Forget from a lineage's latest run: a run knows
            its parents, not its children, so one forgotten from an earlier run starts a branch without the later
            requests' deletions (a :class:`ForgetStream` keeps to its latest run).
        out: the new run directory (not there yet, or empty).
        users, items, edges: what to forget (exactly one): user ids, item ids, or ``(user, item)`` pairs (a
            list, or an ``[R, 2]`` tensor or array: a ``[2, 2]`` one is refused, ambiguous with ``Request.edges``).
        local_ids: the ids are the run's local ids (``False``: the data file's raw ids).
        method: a name in :data:`~graphforget.unlearn.METHODS` whose result is one model (not SISA or
            RecEraser).
        options: the method's options (:func:`~graphforget.unlearn.method_config`); ``train.*`` and
            ``seed`` start from the run's own.
        seed: seed of the method, its training and the verification (default: the options' ``seed``, else the run's).
        verify: compute the verification figures.
        allow_untrusted: publish a result the method does not trust (``info["trusted"] is False``).
        device, progress: the torch device; progress bars for methods that train.

    Raises:
        FileExistsError: ``out`` exists (an empty directory will do).
        ValueError: a loaded run changed in memory, an ``out`` inside a run, an unknown or unsupported method, bad
            options, unknown ids, a repeated request, or listed pairs that are not observed interactions of the run.
        UnlearningFailed: an untrusted (and not allowed) or non-finite result; nothing is written.
        TypeError: ``verify``, ``allow_untrusted``, ``progress`` or ``local_ids`` is not a bool.
    """
    inputs, out = dict(locals()), absolute_run_path(out)
    parent, request = _check_new_run_on_every_rank(out, inputs, lambda: _forget_inputs_checked(**inputs))
    seed = _forget_seed(parent, method, options, seed)
    train = Hyperparameters(**parent.info["hparams"]).train_config(seed, progress)
    config = method_config(method, options, train=train, seed=seed)
    val, test, heldout = _heldout_without(parent, request)
    result, fit_seconds = _unlearn(parent, method, config, request, val, device)
    _check_result(parent, request, result, method, allow_untrusted)
    report, error = _verification(result, parent, request, seed) if verify else (None, "not requested")
    model, graph = _published_result(result, parent)
    removed = _removed(parent, request)
    metrics = _forget_metrics(result, report, fit_seconds, model, graph, val, test, parent)
    info = _forget_info(parent, out, request, _method_record(method, options, seed, config, request), metrics,
                        removed["edge_index"].size(1), heldout)
    audit, written = _audit_line(parent, out, info, result, report, error), {}

    def remember(sums: dict) -> dict:
        written.update(audit(sums))
        return written
    path, written = _on_rank_zero(lambda: (save_run(out, info, model, graph, val, test, removed, parent.audit,
                                                    remember), written))
    return ForgetResult(path, request, result, report, written, _untrusted_before(parent, written))


def _forget_inputs_checked(*, run, users, items, edges, local_ids, method, verify, allow_untrusted, device, progress,
                           **_) -> tuple[Run, Request]:
    """:func:`forget`'s checks of its arguments, then its parent run and its request."""
    _check_switches(verify=verify, allow_untrusted=allow_untrusted, progress=progress)
    check_method(method)
    check_device(device)
    return _parent_and_request(run, users=users, items=items, edges=edges, local_ids=local_ids)


def _published_result(result, parent: Run) -> tuple[Recommender, HeteroData]:
    """The result's model and graph on the CPU, the graph with the parent's raw ids (the node set never changes,
    whatever the method kept)."""
    model, graph = result.model.cpu(), result.graph.cpu()
    for node in ("user", "item"):
        graph[node].raw_id = parent.graph[node].raw_id
    return model, graph


def _untrusted_before(parent: Run, written: dict) -> list[str]:
    """The runs before ``written``'s whose request was published untrusted; none after a Retrain from scratch."""
    return [] if _retrained_from_scratch(written) else [line["run"] for line in untrusted_requests(parent)]


def _parent_and_request(run: str | os.PathLike | Run, **given) -> tuple[Run, Request]:
    """The parent run (read, or a loaded one as it was loaded) and its checked request (:func:`build_request`)."""
    if isinstance(run, Run):  # one read from disk here is as loaded: its content was hashed once, by load_run
        run.check_as_loaded()
    parent = run if isinstance(run, Run) else load_run(run)
    return parent, _checked_request(parent, **given)


def _checked_request(run: Run, **given) -> Request:
    """:func:`build_request`, refusing a request that leaves nothing to learn from (:func:`_check_leaves_edges`)."""
    request = build_request(run, **given)
    _check_leaves_edges(run, request)
    return request


def _forget_seed(parent: Run, method: str, options, seed: int | None) -> int:
    """The seed of the method, its training and the verification: ``seed``, else the one the options give the method,
    else the run's own. The options' had seeded the method alone, while the verification and the record took
    ``seed`` (or the run's); given beside another ``seed``, it is refused."""
    option = method_config(method, options).seed if isinstance(options, dict) and "seed" in options else None
    if seed is not None and option is not None and option != seed:
        raise ValueError(f"seed={seed} and the method's option seed={option}: give the seed once (forget's seed is the "
                         "method's, its training's and the verification's)")
    chosen = seed if seed is not None else option
    return wrapped_seed(parent.info["seed"]) if chosen is None else chosen


def _method_record(method: str, options: dict | None, seed: int, config, request: Request) -> dict:
    """``run.json``'s ``method``, with the seed the method and the verification used (the run's own unless given:
    verify_run needs it again); a request of held-out pairs only ran no method (:func:`_unlearn`)."""
    if request.edges.size(1) == 0:
        return {"name": None, "requested": method, "seed": seed}
    given = options if options is None or isinstance(options, dict) else asdict(options)  # a ready config: its fields
    return {"name": method, "options": given or {}, "seed": seed, "config": config_record(config)}


def _check_leaves_edges(run: Run, request: Request) -> None:
    """Refuses a request of every training edge, or of every one labelled above 0 (sampled negatives and dislikes
    left only): no method has an interaction left to learn from (a stream's request of the last ones stayed pending
    for good, every method and Retrain refusing it)."""
    store = run.graph[EDGE]
    if request.edges.size(1) == store.edge_index.size(1):
        raise ValueError(f"the request removes every training edge of {run.path} ({request.edges.size(1)}): nothing "
                         "would remain to serve recommendations from")
    kept = torch.ones_like(store.edge_label, dtype=torch.bool)
    kept[edge_positions(run.graph, request.edges)] = False
    positive = store.edge_label > 0
    if bool(positive.any()) and not bool(positive[kept].any()):
        raise ValueError(f"the request removes every training edge of {run.path} labelled above 0: only sampled "
                         "negatives or dislikes would remain, and no method learns a preference from those")


def _forget_metrics(result, report, fit_seconds, model, graph: HeteroData, val, test, parent: Run) -> dict:
    """The new run's metrics: the method's seconds, torch's CPU threads (results differ between counts at float
    precision) and trust, test AUC and the parent's on the same pairs (what the request cost the model, which no
    acceptance test reads), sizes, the verification figures."""
    metrics = {"seconds": result.seconds, "threads": torch.get_num_threads(), "fit_seconds": fit_seconds,
               "test_auc": heldout_auc(model, graph, test),
               "parent_test_auc": heldout_auc(module_on(parent.model, "cpu"), parent.graph.cpu(), test),
               "trusted": result.info.get("trusted"), **_sizes(graph, val, test)}
    if report is not None:
        metrics["verification"] = {k: v for k, v in report.to_dict().items() if k != "reference"}
    return metrics


def _forget_info(parent: Run, out: Path, request: Request, method: dict, metrics: dict, removed_count: int,
                 heldout: Tensor) -> dict:
    """``run.json`` of a forget run: the parent's data, model and settings, the method, metrics, lineage."""
    return {"kind": "forget", "version": __version__, "data": parent.info["data"],
            "model": parent.info["model"], "hparams": parent.info["hparams"], "seed": parent.info["seed"],
            **({"objective": parent.info["objective"]} if "objective" in parent.info else {}),
            "method": method, "metrics": metrics,
            "lineage": _lineage_record(parent, out, request, removed_count, heldout)}


# ------------------------------------------------------------------------------------------------ verifying

def _retrain_reference(root: Run, current: Run, seed: int, device: str, progress: bool):
    """A Retrain from the lineage's root on everything it removed, early-stopped on the current validation
    pairs: ``((model, graph), seconds)``."""
    train = Hyperparameters(**root.info["hparams"]).train_config(seed, progress)
    dev = torch.device(device)
    val = _usable_val(current.val)
    unlearner = build_unlearner("retrain", module_on(root.model, dev), on_device(root.graph, dev),
                                recorded_objective(root.info), train=train, seed=seed,
                                val=None if val is None else on_device(val, dev))
    result = unlearner.unlearn(current.removed.to(dev))
    return (result.model.cpu(), result.graph.cpu()), result.seconds


def verify_run(run: str | os.PathLike, *, retrain: bool = False, seed: int | None = None, device: str = "cpu",
               progress: bool = False, retrains: int = 1) -> dict:
    """The forgetting report of a run for every edge its lineage removed.

    The run's model on its graph is compared with the lineage's root (the ``fit`` run) on the removed
    edges and matched non-members (:func:`~graphforget.verify.verify_forgetting`: request probability vs
    non-members, MI-BF, MI-NG, membership-inference attack AUC); with ``retrain``, a Retrain from the root
    on the same removed edges is the reference beside it, or ``retrains`` of them from seeds ``seed``, ``seed + 1``,
    ...: the exact deletion's range then spans them all (an early-stopped model's generalisation can move with the
    seed). ``seed`` (of the matching, the attack and the Retrain) defaults to the one the run's request used
    (``forget(seed=...)``), as its own verification did.

    Returns:
        ``{"run", "lineage", "parents_elsewhere", "seed", "requests", "untrusted_requests", "removed_edges", "report",
        "retrain_seconds", "retrains", "threads", "table"}`` (the parents read at their recorded path rather than
        beside their child, ``parents_elsewhere``; the seed used, the runs whose request was published
        untrusted, the report as plain JSON values, the Retrains' seconds in all and their number, torch's CPU
        threads, the table as text).

    Raises:
        FileNotFoundError, ValueError: a missing or modified run or ancestor; a run that removed nothing; ``retrains``
            not an integer >= 1, or given without ``retrain``.
        TypeError: ``retrain`` or ``progress`` is not a bool.
    """
    _check_switches(retrain=retrain, progress=progress)
    check_device(device)
    if not is_integer(retrains) or retrains < 1 or (retrains != 1 and not retrain):
        raise ValueError(f"retrains must be an integer >= 1, read with retrain=True only, got {retrains!r}")
    chain = lineage(run)
    current = load_run(chain[-1])
    if current.removed.size(1) == 0:
        raise ValueError(f"{run} removed nothing from its training graph (a fit run, or a lineage of held-out pairs "
                         "only): verify a run whose lineage removed training edges")
    root = load_run(chain[0])
    if seed is None:  # the seed the run's own method and verification used (forget --seed), else its fit's
        seed = wrapped_seed(current.info.get("method", {}).get("seed", current.info["seed"]))
    options: dict[str, Any] = {"before": (root.model, root.graph), "seed": seed, "exclude": _held_out_pairs(root),
                               "objective": recorded_objective(root.info)}
    # first: a request it cannot verify is refused before a whole Retrain
    report = verify_forgetting(current.model, current.graph, current.removed, **options)
    seconds = None
    if retrain:
        done = [_retrain_reference(root, current, wrapped_seed(seed + k), device, progress) for k in range(retrains)]
        seconds = sum(took for _, took in done)
        report = verify_forgetting(current.model, current.graph, current.removed,
                                   reference=[reference for reference, _ in done], **options)
    return {"run": str(current.path.resolve()), "lineage": [str(p.resolve()) for p in chain],
            "parents_elsewhere": parents_elsewhere(chain), "seed": seed,
            "requests": len(current.audit), "untrusted_requests": [line["run"] for line in untrusted_requests(current)],
            "removed_edges": current.removed.size(1), "report": report.to_dict(), "retrain_seconds": seconds,
            "retrains": retrains if retrain else 0,
            "threads": torch.get_num_threads(), "table": report.table()}


# ------------------------------------------------------------------------------------------------ streams

class ForgetStream:
    """Deletion requests applied one by one to a run, surviving a crash at any point.

    The stream lives in ``directory``:

    * ``stream.json``: the base run (its path, also relative to the stream's folder, so that a stream moved with
      its base still finds it, and the sha256 of its ``run.json``), the method, its options and the retraining
      policy (written once). Once a request is applied, the base is not read again (its training edges are kept);
    * ``journal.jsonl``: the write-ahead journal, one line per accepted request (``{"seq", "time",
      "request"}``), one per request refused when it was applied (``{"seq", "rejected"}``) and one per method
      result replaced by a Retrain (``{"seq", "fallback": {"method", "error"}}``, :meth:`fallbacks`; written again
      when a crash stops the Retrain and the request is applied again, and read once);
    * ``runs/000001``, ``runs/000002``, ...: the run after each request (:func:`forget`), each derived from
      the previous one, so the lineage and ``audit.jsonl`` grow by one request per run (a latest run that was not,
      one put there by hand or one whose predecessor was deleted, is refused: :meth:`current_path`, as is one that
      removed other pairs than its request's, and a stream missing any run before its latest: :meth:`applied`).

    :meth:`submit` returns only after the request's journal line is fsync-ed: an acknowledged request is
    never lost. A request is applied when its run directory is published (an atomic rename), so a crash
    before that leaves it pending, and the next :meth:`process` of any :class:`ForgetStream` on the
    directory applies it; after the rename the run exists, and the request is never applied twice. A
    journal line torn by a crash (never acknowledged) is cut off; any other line that is not an entry is refused by
    name (a damaged journal). Processes share a stream safely: those that apply requests take an advisory lock on
    the directory, and appends to the journal take one on it. A stream runs in one process: under ``torchrun`` it is
    refused (each rank journaled every request, and the ranks deadlocked).

    The policy: the configured ``method`` is used, except that a request is applied by Retrain (from
    scratch, on everything that remains) when ``retrain_every`` approximate requests (a warm-started Retrain is
    one) were applied since the base or the last Retrain from scratch, or when the drift (edges removed by
    approximate methods since then, over the training edges at that point) reached ``max_drift``, or when the
    method does not trust its result.

    Args:
        directory: the stream's folder (created with the base run, reopened without it).
        base: the run the stream starts from (only when creating the stream).
        method: the unlearning method (see :func:`forget`).
        options: its options, a dict (kept as JSON).
        retrain_every: retrain after this many approximate requests, an integer >= 1 (``None``: never for this
            reason).
        max_drift: retrain when the drift reaches this share, in (0, 1] (``None``: never for this reason).
        device: torch device of the computation.

    Raises:
        ValueError: creating without ``base``, with a bad method, options or policy, or in a directory inside a
            run; reopening with a different base or policy; a base replaced since the stream was created.
        TypeError: options that are not a dict.
    """

    def __init__(self, directory: str | os.PathLike, base: str | os.PathLike | None = None, *,
                 method: str | None = None, options: dict | None = None, retrain_every: int | None = None,
                 max_drift: float | None = None, device: str = "cpu"):
        ranks = max(rank_and_size()[1], launched_size())
        if ranks > 1:  # each rank journaled every request, and their locks and collectives deadlocked (qa142)
            raise ValueError(f"ForgetStream runs in one process, and there are {ranks} (torchrun?): every rank would "
                             "journal and apply each request; run the stream from one process")
        self.directory = Path(directory).expanduser().absolute()
        check_device(device)
        self.device = device
        given = {"base": None if base is None else str(Path(base).expanduser().resolve()), "method": method,
                 "options": options, "retrain_every": retrain_every, "max_drift": max_drift}
        self.config = self._open({key: value for key, value in given.items() if value is not None})
        self._current: Run | None = None
        self._holding: set[tuple[int, str]] = set()  # (seq, its run.json's sha256) found to hold its request
        self._journal_read: tuple[tuple, list[dict], int] | None = None  # (the file's stat, its entries, length)

    def _open(self, given: dict) -> dict:
        """The stream's settings: read back (``given`` must agree with them), or checked and written once."""
        record = self.directory / "stream.json"
        if not record.is_file():
            config = self._new_config(given)
            self.directory.mkdir(parents=True, exist_ok=True)
            with directory_lock(self.directory):  # two creators at once: the second reads the first's back
                if not record.is_file():
                    (self.directory / "runs").mkdir(exist_ok=True)
                    write_json(record, {**config, "version": __version__})
        # read back, a new stream's too: the caller's options dict had been kept, and its later edits applied
        config = json.loads(record.read_text())
        try:  # options an earlier version took: every request would stay pending, for good
            method_config(config["method"], config["options"])
        except (ValueError, TypeError) as error:
            raise ValueError(f"the stream {self.directory} keeps options this version refuses ({error}); a stream's "
                             "options never change: start a new stream from its latest run") from None
        differ = [key for key, value in given.items() if not self._same_setting(key, value, config)]
        if differ:
            moved = " (a stream moved with its base: open it without base)" if "base" in differ else ""
            raise ValueError(f"the stream {self.directory} was created with other {', '.join(differ)}: "
                             f"{ {key: config.get(key) for key in differ} }{moved}")
        return config

    @staticmethod
    def _same_setting(key: str, value, config: dict) -> bool:
        """Whether ``value`` given for ``key`` is the stream's: as JSON holds it (a tuple reads back as a list), and
        for the options as the method's config reads them (``"0.1"`` and ``0.1`` are the same damping)."""
        stored = config.get(key)
        if key == "options":
            try:
                return method_config(config["method"], value) == method_config(config["method"], stored)
            except (ValueError, TypeError):  # options of another method, or none it takes: not the stream's
                return False
        return json.loads(json.dumps(to_jsonable(value))) == stored

    def _new_config(self, given: dict) -> dict:
        """A new stream's settings from ``given``, checked (the base run read whole)."""
        if "base" not in given:
            raise ValueError(f"{self.directory} is not a stream yet: give the base run to create it")
        config = {"method": "ifru", "options": {}, "retrain_every": None, "max_drift": None, **given}
        check_method(config["method"])
        if not isinstance(config["options"], dict):  # a config object was stored as its repr, and refused on reopening
            raise TypeError(f"a stream keeps its options as JSON: give them as a dict of options, not a "
                            f"{type(config['options']).__name__}")
        built = method_config(config["method"], config["options"])
        config["retrain_every"], config["max_drift"] = _checked_policy(config["retrain_every"], config["max_drift"])
        run = enclosing_run(self.directory / "runs")  # every request's run would be refused by publish
        if run is not None:
            raise ValueError(f"the stream directory {self.directory} is inside the run {run}, and runs are never "
                             "modified: choose a directory outside it")
        base = load_run(config["base"])  # a readable, intact run
        # Bad options fail now, not at the first request: those the model refuses too (IFRU's prune for MF's
        # receptive field), which left every request pending, for good. The method's warnings come with its runs.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            METHODS[config["method"]](base.model, base.graph, recorded_objective(base.info), built)
        # What later requests read of the base, found as lineage finds a parent, and checked as one
        return {**config, "base_relative": os.path.relpath(config["base"], self.directory.resolve()),
                "base_sha256": sha256_file(base.path / "run.json"),
                "base_train_edges": base.info["metrics"]["train_edges"]}

    def _base(self) -> Path:
        """The base run's directory: relative to the stream's first (a moved tree of stream and base still resolves),
        then as recorded; checked against the ``run.json`` the stream was created from (a stream from before these
        were recorded: its path alone)."""
        config = self.config
        relative = self.directory / config["base_relative"] if config.get("base_relative") else None
        return recorded_run(relative, config["base"], config.get("base_sha256"),
                            f"the base run {config['base']} of the stream {self.directory} is gone (needed until a "
                            "request is applied)",
                            f"the base run {{path}} changed after the stream {self.directory} was created from it")

    def __repr__(self) -> str:
        return (f"ForgetStream({str(self.directory)!r}, method={self.config['method']}, applied={len(self.applied())}, "
                f"pending={len(self.pending())})")

    # --- the journal ---------------------------------------------------------------------------------

    @property
    def journal_path(self) -> Path:
        return self.directory / "journal.jsonl"

    def _read_journal(self) -> tuple[list[dict], int]:
        """The journal's complete lines and the byte length they take (a torn last line is not counted).

        Raises:
            ValueError: naming the journal and the line, for a complete line that is not a request's, a refusal's or
                a fallback's (a damaged or edited journal: read as none, an applied request was taken again).
        """
        if not self.journal_path.is_file():
            return [], 0
        # Parsed again only once the file changed: a request's submit and process read it a dozen times, each a
        # parse of every line (0.16 s of a request's 0.25 s after 400 requests; qa174).
        stat = self.journal_path.stat()
        key = (stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
        if self._journal_read is None or self._journal_read[0] != key:
            data = self.journal_path.read_bytes()
            entries, length = [], 0
            for number, line in enumerate(data.splitlines(keepends=True), start=1):
                if not line.endswith(b"\n"):
                    break  # torn by a crash: never acknowledged
                entries.append(_journal_entry(line, self.journal_path, number))
                length += len(line)
            self._journal_read = (key, entries, length)
        return self._journal_read[1], self._journal_read[2]  # shared: read, never modified (the public readers copy)

    def _journal_lock(self):
        """The journal's own lock, which every append holds: the directory's lock is held by :meth:`process` for
        as long as it works, and :meth:`submit` need not wait for it."""
        if not self.journal_path.exists():
            self.journal_path.touch()
            fsync_directory(self.directory)
        return directory_lock(self.journal_path)

    def _append(self, entry: dict) -> None:
        """Appends a journal line durably (the torn tail of a crashed append is cut off first); the caller holds
        :meth:`_journal_lock`."""
        _, length = self._read_journal()
        with open(self.journal_path, "ab") as handle:
            handle.truncate(length)
            handle.write((json.dumps(entry, sort_keys=True) + "\n").encode())
            handle.flush()
            os.fsync(handle.fileno())

    def _run_path(self, seq: int) -> Path:
        return self.directory / "runs" / f"{seq:06d}"

    def requests(self) -> list[dict]:
        """The journal's requests, in order (``{"seq", "time", "request"}``).

        Raises:
            ValueError: a request's sequence number twice (a line copied by hand: it was counted as applied twice).
        """
        return copy.deepcopy(self._requests())

    def _requests(self) -> list[dict]:
        """:meth:`requests`, the journal's own entries (read, never modified)."""
        entries = [entry for entry in self._read_journal()[0] if "request" in entry]
        seqs = [entry["seq"] for entry in entries]
        if len(set(seqs)) < len(seqs):
            again = next(seq for k, seq in enumerate(seqs) if seq in seqs[:k])
            raise ValueError(f"{self.journal_path} holds request {again} twice: the journal is damaged")
        return entries

    def rejected(self) -> dict[int, str]:
        """Requests refused when applied: sequence number -> reason."""
        return {entry["seq"]: entry["rejected"] for entry in self._read_journal()[0] if "rejected" in entry}

    def fallbacks(self) -> dict[int, dict]:
        """Requests applied by Retrain because the method did not produce a trusted result: sequence number ->
        ``{"method", "error"}`` (its run records a Retrain like any other). The line is journaled before the Retrain
        runs: one whose request has no published Retrain (killed in between, then applied by the method) is left out."""
        return {entry["seq"]: dict(entry["fallback"]) for entry in self._read_journal()[0]
                if "fallback" in entry and self._applied_by_retrain(entry["seq"])}

    def _applied_by_retrain(self, seq: int) -> bool:
        path = self._run_path(seq)  # its record checked (read_run_info): one edited by hand had steered the policy
        return (path / "run.json").is_file() and read_run_info(path)["method"]["name"] == "retrain"

    def applied(self) -> list[int]:
        """Sequence numbers of the applied requests (those with a published run).

        Raises:
            ValueError: a request neither refused nor with a run, before a published run: its run was deleted, and
                the later runs' lineage reads it (taken as pending, it had been refused as already forgotten and
                recorded so, and its removal's record was gone); or the latest run not made from the one before it
                (:meth:`current_path`).
        """
        seqs, published, refused = [entry["seq"] for entry in self._requests()], self._published(), self.rejected()
        if not published:
            return []
        self._check_latest(published)  # else neither is the stream's
        done = set(published)
        gone = [seq for seq in seqs if seq < published[-1] and seq not in done and seq not in refused]
        if gone:
            raise ValueError(f"{self._run_path(gone[0])} is gone, and runs/{published[-1]:06d} after it holds its "
                             "request: a stream's runs must all stay (the later ones' lineage reads it); restore it")
        return [seq for seq in seqs if seq in done]

    def _published(self) -> list[int]:
        """Sequence numbers of the published runs (``runs/NNNNNN`` holding its ``run.json``), in order."""
        runs = self.directory / "runs"
        return sorted(int(path.name) for path in runs.iterdir()
                      if path.name.isdigit() and (path / "run.json").is_file())

    def pending(self) -> list[int]:
        """Sequence numbers of accepted requests that are neither applied nor refused."""
        done, refused = set(self.applied()), self.rejected()
        return [entry["seq"] for entry in self._requests() if entry["seq"] not in done and entry["seq"] not in refused]

    # --- state -------------------------------------------------------------------------------------------

    def current_path(self) -> Path:
        """The latest published run (requests are applied in order, each from the one before), or the base run. A
        run whose journal line a power loss dropped counts too: the next request starts from what it forgot.

        Raises:
            ValueError: the latest run was not made from the run before it (``_check_made_from``).
        """
        published = self._published()
        if not published:
            return self._base()
        self._check_latest(published)
        return self._run_path(published[-1])

    def _check_latest(self, published: list[int]) -> None:
        """Raises ``ValueError`` unless the latest of the ``published`` runs was made from the one before it."""
        self._check_made_from(published[-1], published[-2] if len(published) > 1 else None)

    def _check_made_from(self, seq: int, before: int | None) -> None:
        """Raises ``ValueError`` unless run ``seq``'s lineage names run ``before`` (``None``: the base) as its parent,
        by the sha256 of its ``run.json``. A run of another lineage put in ``runs/`` by hand became the current run,
        and the users the stream had forgotten were back in its model; a run deleted before it had its request taken
        again, and refused for good as already forgotten."""
        path = self._run_path(seq)
        if before is None:
            expected, name = self.config.get("base_sha256"), "the base run"
        else:
            expected, name = sha256_file(self._run_path(before) / "run.json"), f"runs/{before:06d}"
        lineage = read_run_info(path)["lineage"]
        parent = lineage["parent"]
        if expected is not None and (parent is None or parent.get("run_sha256") != expected):
            made_from = "no parent (a fit run)" if parent is None else f"the parent {parent.get('path')}"
            raise ValueError(f"{path} was not made from {name}, the stream's run before it: its lineage names "
                             f"{made_from}. A run was put in {path.parent} by hand, or one before it deleted: "
                             "restore the stream's own runs, or move this one out")
        self._check_holds_request(seq, lineage["request"]["sha256"], self._base() if before is None
                                  else self._run_path(before))

    def _check_holds_request(self, seq: int, recorded: str, parent_path: Path) -> None:
        """Raises ``ValueError`` unless run ``seq`` removed what journal request ``seq`` asks of its parent (the sha256
        of its pairs, as :func:`forget` records it; once per run and process). A run made by hand from the right
        parent with another request (``graphforget forget --out runs/000002``) counted the journal's request as
        applied, and that user stayed in every later model (qa151). A run without its journal line (a power loss
        dropped it) is not checked: :meth:`current_path` counts it as the stream's."""
        key = (seq, sha256_file(self._run_path(seq) / "run.json"))
        if key in self._holding:
            return
        entry = next((entry for entry in self._requests() if entry["seq"] == seq), None)
        if entry is None:
            return
        current = self._current
        parent = current if current is not None and current.path == parent_path else load_run(parent_path)
        try:
            request = build_request(parent, **_journaled(entry))
            expected = _request_sha256(parent, request, _heldout_without(parent, request)[2])
        except ValueError:  # a request its parent refuses: no run of it could be
            expected = None
        if expected != recorded:
            raise ValueError(f"{self._run_path(seq)} does not hold request {seq} of {self.journal_path} (it removed "
                             f"other pairs): a run was put in {self.directory / 'runs'} by hand (`graphforget forget "
                             f"--out` into the stream?): move it out, and the stream applies request {seq} itself")
        self._holding.add(key)

    @property
    def current(self) -> Run:
        """The current run: its model, remaining graph and cumulative removed edges (``current.removed``)."""
        path = self.current_path()
        stale = self._current is None or self._current.path != path
        if stale or not cast(Run, self._current).as_loaded():  # edited by a caller: read again (None: stale)
            self._current = load_run(path)
        return cast(Run, self._current)  # read above where None

    def drift(self) -> tuple[int, float]:
        """``(requests, drift)`` since the base or the last Retrain from scratch: approximate requests applied (a
        warm-started Retrain among them), and the edges they removed over the training edges at that point."""
        anchor, count, edges = self.config.get("base_train_edges"), 0, 0
        for seq in reversed(self.applied()):  # back to the last Retrain only (all of them: 0.13 s at 400; qa174)
            info = read_run_info(self._run_path(seq))  # checked: one edited by hand had steered the policy
            if info["lineage"]["request"]["edges"] == 0:  # held-out pairs only: no method ran
                continue
            if _retrained_from_scratch(info):  # a warm start had reset the count: the policy never retrained
                anchor = info["metrics"]["train_edges"]
                break
            count, edges = count + 1, edges + info["lineage"]["request"]["edges"]
        if anchor is None:  # a stream from before the base's edges were recorded
            anchor = json.loads((self._base() / "run.json").read_text())["metrics"]["train_edges"]
        return count, edges / max(anchor, 1)

    def _method_now(self) -> tuple[str, dict]:
        """The policy: the configured method and options, or a Retrain from scratch when a bound is reached."""
        every, bound = self.config["retrain_every"], self.config["max_drift"]
        if every is None and bound is None:  # no policy: nothing to count
            return self.config["method"], self.config["options"]
        count, drift = self.drift()
        if (every is not None and count >= every) or (bound is not None and drift >= bound):
            return "retrain", {}  # not the stream's options: a Retrain configured warm_start had kept them
        return self.config["method"], self.config["options"]

    # --- requests ----------------------------------------------------------------------------------------

    def submit(self, *, users: Sequence | None = None, items: Sequence | None = None,
               edges: Sequence[Sequence] | None = None, local_ids: bool = False) -> int:
        """Accepts a request: checks it against the current run as the pending requests will leave it, then
        journals it durably. It does not wait for a :meth:`process` at work in another process (a request valid
        now but not when applied is refused then).

        Returns:
            The request's sequence number (its run will be ``runs/NNNNNN``).

        Raises:
            ValueError: as :func:`build_request` (unknown ids, a request already applied or pending, ...), or a
                request of every remaining training edge.
        """
        # first: its errors owe nothing to the pending requests; values read once (an iterator was journaled empty)
        kind, values = _request_values(users, items, edges)
        users, items, edges = (values if name == kind else None for name in ("users", "items", "edges"))
        with self._journal_lock():
            given = {"users": users, "items": items, "edges": edges, "local_ids": local_ids}
            # pending first: a run published between the two reads is then pending and applied in the current run
            # (refused by the projection, left out), where read the other way round it was neither: a repeat passed
            pending = set(self.pending())
            current = run = self.current
            steps = []
            request: Request | dict  # each projection's, then the one journaled
            for seq, request, run in self._projections(current, pending):  # run: as every pending one leaves it
                steps.append((seq, request))
            if _refusal(run, given) is not None:
                _checked_request(current, **given)  # refused without the pending requests too: said so
                raise _refusal_owed_to_pending(given, current, run, steps)
            request = {"users": _jsonable_ids(users), "items": _jsonable_ids(items),
                       "edges": None if edges is None else [[_plain_id(u), _plain_id(i)] for u, i in edges],
                       "local_ids": local_ids}
            seq = self._next_seq()
            self._append({"seq": seq, "time": utc_now(), "request": request})
        return seq

    def _projections(self, run: Run, pending: set[int]) -> Iterator[tuple[int, Request, Run]]:
        """``run``'s data as each ``pending`` request in turn will leave it (the model as it is: no check reads it),
        with that request's number and the request checked. One that will be refused is left out: it removes
        nothing."""
        for entry in self._requests():
            if entry["seq"] not in pending:
                continue
            try:
                request = _checked_request(run, **_journaled(entry))
            except ValueError:
                continue
            run = _without_request(run, request)
            yield entry["seq"], request, run

    def _next_seq(self) -> int:
        """The number after every journaled one and every run directory: a power loss can drop a journal line not
        yet fsync-ed whose run a concurrent :meth:`process` published, and a new request numbered as that line
        would count as applied by that run."""
        seqs = [entry["seq"] for entry in self._read_journal()[0]]
        seqs += [int(path.name) for path in (self.directory / "runs").iterdir() if path.name.isdigit()]
        return max(seqs, default=0) + 1

    def process(self, progress: bool = False) -> list[Path]:
        """Applies every pending request in order; returns the runs published now.

        A request that became invalid (e.g. a user already forgotten by an earlier request) is refused with a
        journal line; a result the method does not trust is replaced by a Retrain. Any other error (a damaged run,
        a failure of the method or model) is raised, and the request stays pending.
        """
        published = []
        with directory_lock(self.directory):
            # read once: this loop settles each, and no other process applies any meanwhile (read again per entry,
            # the whole journal was parsed three times a request: 72 s for a call with nothing to do after 800)
            pending = set(self.pending())
            for entry in self._requests():
                if entry["seq"] in pending:
                    path = self._apply(entry, progress)
                    published += [path] if path is not None else []
        return published

    def _apply(self, entry: dict, progress: bool) -> Path | None:
        """Applies a journaled request: its run, or ``None`` when it is refused. Only a request invalid against the
        current run is refused, for good; any other error (a damaged run, a method's or model's failure) stops the
        stream with the request pending."""
        request = _journaled(entry)
        parent = self.current
        try:
            _checked_request(parent, **request)
        except ValueError as error:
            self._reject(entry["seq"], error)
            return None
        out, (method, options) = self._run_path(entry["seq"]), self._method_now()
        try:
            done = forget(parent, out=out, **request, method=method, options=options, device=self.device,
                          progress=progress)
        except UnlearningFailed as error:
            what = error.what if isinstance(error, _Unpublished) else str(error)  # not forget's advice to retry
            log.warning("request %d: %s; the stream applies it with retrain", entry["seq"], what)
            with self._journal_lock():
                self._append({"seq": entry["seq"], "time": utc_now(), "fallback": {"method": method, "error": what}})
            done = forget(parent, out=out, **request, method="retrain", device=self.device, progress=progress)
        return done.path

    def _reject(self, seq: int, error: ValueError) -> None:
        """Journals the refusal of request ``seq``: it is settled, never tried again."""
        with self._journal_lock():
            self._append({"seq": seq, "time": utc_now(), "rejected": str(error)})
        log.warning("request %d refused: %s", seq, error)

    def forget(self, *, users: Sequence | None = None, items: Sequence | None = None,
               edges: Sequence[Sequence] | None = None, local_ids: bool = False, progress: bool = False) -> Path:
        """:meth:`submit` then :meth:`process`: the run of this request.

        Raises:
            ValueError: the request was refused (or an earlier pending one blocks it).
        """
        seq = self.submit(users=users, items=items, edges=edges, local_ids=local_ids)
        self.process(progress)
        if seq in self.rejected():
            raise ValueError(f"request {seq} was refused: {self.rejected()[seq]}")
        return self._run_path(seq)


def _journal_entry(line: bytes, path: Path, number: int) -> dict:
    """A journal line's entry: a request's, a refusal's or a fallback's (see :class:`ForgetStream`); ``ValueError``
    naming the line otherwise."""
    try:
        entry = json.loads(line)
    except ValueError:
        entry = None
    kinds = {"request": dict, "rejected": str, "fallback": dict}  # the entry's kind, and the type of its value
    valid = (isinstance(entry, dict) and isinstance(entry.get("seq"), int) and not isinstance(entry["seq"], bool)
             and sum(key in entry for key in kinds) == 1
             and all(isinstance(entry[key], kind) for key, kind in kinds.items() if key in entry))
    if not valid:
        raise ValueError(f"{path}, line {number}: not a line of a stream's journal (a request's, a refusal's or a "
                         "fallback's): the journal is damaged")
    return entry


def _journaled(entry: dict) -> dict:
    """The arguments of :func:`build_request` (and :func:`forget`) that a journal line holds."""
    return {key: value for key, value in entry["request"].items() if value is not None}


def _refusal_owed_to_pending(given: dict, current: Run, projected: Run, steps: list[tuple[int, Request]]
                             ) -> ValueError:
    """The refusal of a request that ``current`` accepts and ``projected`` (``current`` as the pending requests
    ``steps``, ``(seq, request)``, leave it) refuses, naming the pending requests that refuse it alone, or all of them
    where none does (together they leave too little). The message had listed every pending request: the user could
    not tell which one held an id."""
    alone = [seq for seq, request in steps if _refusal(_without_request(current, request), given) is not None]
    named = alone or [seq for seq, _ in steps]
    refusal = _refusal(replace(projected, pending=named), given)
    assert refusal is not None, "the caller's projected run refuses the request"
    if "pending in the stream" in str(refusal):
        return refusal
    return ValueError(f"{refusal} (counting the requests accepted before it and not yet applied: "
                      f"{', '.join(map(str, named))})")


def _refusal(run: Run, given: dict) -> ValueError | None:
    """Why ``run`` refuses the request ``given`` (:func:`_checked_request`), or None where it accepts it."""
    try:
        _checked_request(run, **given)
    except ValueError as error:
        return error
    return None


def _without_request(run: Run, request: Request) -> Run:
    """``run``'s data once ``request`` is applied: its training edges and held-out pairs gone, its edges removed."""
    val, test, _ = _heldout_without(run, request)
    removed = _removed(run, request)
    return replace(run, graph=without_edges(run.graph, request.edges)[0], val=val, test=test,
                   removed=removed["edge_index"], removed_label=removed["edge_label"],
                   removed_observed=removed["observed"])


def _checked_policy(retrain_every, max_drift) -> tuple[int | None, float | None]:
    """The retraining policy as plain numbers.

    Raises:
        ValueError: naming a bad bound: ``nan`` never triggered, nor did a ``max_drift`` above 1 (the drift is a
            share of the training edges); ``2.5`` or ``True`` triggered at a count nobody wrote.
    """
    if retrain_every is not None:
        if not is_integer(retrain_every) or retrain_every < 1:
            raise ValueError(f"retrain_every must be an integer >= 1, got {retrain_every!r}")
        retrain_every = int(retrain_every)
    if max_drift is not None:
        if (isinstance(max_drift, bool) or not isinstance(max_drift, numbers.Real)
                or not 0 < max_drift <= 1):  # type: ignore[operator]  # typeshed: numbers.Real lacks __gt__
            raise ValueError(f"max_drift must be a share in (0, 1], got {max_drift!r}")
        max_drift = float(max_drift)
    return retrain_every, max_drift


def _one_value(values) -> bool:
    """Whether ``values`` is one value where a list is due: a string, a number, a 0-d tensor or array."""
    return isinstance(values, (str, bytes)) or getattr(values, "ndim", 1) == 0 or not hasattr(values, "__iter__")


def _jsonable_ids(ids) -> list | None:
    return None if ids is None else [_plain_id(value) for value in ids]
