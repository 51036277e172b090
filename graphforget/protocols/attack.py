"""The IFRU "attack" protocol (Zhang et al., "Recommendation Unlearning via Influence Function", ACM TORS 2024).

1. filter the interactions to their 5-core, binarise the labels, split 6:2:2 at random by interaction;
2. flip the labels of a random ``attack_ratio`` of the training interactions, train on all of them
   (the *Original* model);
3. the flipped interactions form the request :math:`D_r`; every method unlearns it, and is compared
   with *Retrain* (training from scratch without :math:`D_r`) by AUC on the test pairs and by the
   completeness coefficient

   .. math::
       c = \\frac{\\mathrm{AUC}_{\\text{method}} - \\mathrm{AUC}_{\\text{original}}}
                {\\mathrm{AUC}_{\\text{retrain}} - \\mathrm{AUC}_{\\text{original}}} .

:func:`prepare_attack_data` prepares steps 1-2's data; :func:`run_attack` trains the Original, runs the
methods and returns an :class:`AttackReport`.
"""
from __future__ import annotations

import functools
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, NamedTuple, Sequence

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from ..data import (EDGE, Split, attack_flip, binarize, find_data_root, k_core, load_labelled_triples,
                    load_movielens_100k, num_items, num_users, on_device, planted_communities, random_split)
from ..data.requests import check_ratio
from ..io import to_jsonable
from ..metrics import completeness, evaluate_auc, prediction_distance, prediction_gap
from ..presets import Hyperparameters
from ..train import train
from ..unlearn import METHODS, UnlearnResult, build_unlearner, method_config
from ..unlearn.registry import refuse_stray_options

__all__ = ["DATASET_NAMES", "AUC_KEYS", "AttackData", "prepare_attack_data", "MethodReport", "AttackReport",
           "run_attack"]

log = logging.getLogger(__name__)

#: Datasets the attack protocol knows.
DATASET_NAMES = ("ml-100k", "bookcrossing", "synthetic")

#: The metrics reported for every model.
AUC_KEYS = ("auc_0", "auc_1", "auc_2")

#: k of the k-core filter (the IFRU protocol).
CORE = 5

#: Size of the synthetic stand-in (:func:`~graphforget.data.planted_communities`).
SYNTHETIC = {"num_users": 600, "num_items": 400, "num_communities": 4, "interactions_per_user": 40}


class AttackData(NamedTuple):
    """What :func:`prepare_attack_data` returns (a tuple: ``split, train, request, source = ...``).

    Attributes:
        split: the clean 6:2:2 :class:`~graphforget.data.Split` (``split.train`` before the attack).
        train: the attacked training graph (labels of the request flipped): what the Original sees.
        request: ``[2, R]`` the flipped (user, item) training edges, :math:`D_r`.
        source: one line saying which data was used and how it was prepared.
        dataset: the name of the data used (``synthetic`` when the fallback was taken).
        attack_ratio: the fraction of training edges flipped.
    """
    split: Split
    train: HeteroData
    request: Tensor
    source: str
    dataset: str
    attack_ratio: float

    def __repr__(self) -> str:
        # Sizes: the tuple's own repr printed the request's ids and both graphs' every attribute.
        train = self.train[EDGE].edge_index.size(1)
        return (f"AttackData(dataset={self.dataset!r}, split={self.split}, train={train}, "
                f"request={self.request.size(1)}, attack_ratio={self.attack_ratio:g}, source={self.source!r})")


def _check_ratio(attack_ratio: float) -> float:
    # float() named nothing for None or a list, and read the string '0.05' as a ratio
    return check_ratio(attack_ratio, "attack ratio")


#: The file each named dataset reads, relative to the data directory or to the dataset's own folder in it.
RAW_FILES = {"ml-100k": ("ml-100k", "u.data"), "bookcrossing": ("bookcrossing", "ratings_final.txt")}


def raw_data_file(dataset: str, root: str | os.PathLike | None = None) -> Path | None:
    """The file :func:`prepare_attack_data` reads for ``dataset`` (``ml-100k`` or ``bookcrossing``) under ``root``
    (as there: ``None`` finds the data directory), or ``None`` when it is absent.

    Raises:
        FileNotFoundError: a given ``root`` that does not exist.
    """
    base = find_data_root(root)
    folder, name = RAW_FILES[dataset]
    candidates = [] if base is None else [base / name, base / folder / name]
    return next((p for p in candidates if p.is_file()), None)


def _load_raw(dataset: str, root) -> tuple[HeteroData | None, str]:
    """The raw graph and the file it came from, or ``(None, reason)`` when the file is absent."""
    found = raw_data_file(dataset, root)
    if found is None:
        return None, _missing(dataset, find_data_root(root), *RAW_FILES[dataset])
    if dataset == "ml-100k":
        return _read(load_movielens_100k, found.parent, found), str(found)
    return _read(functools.partial(load_labelled_triples, binary=True), found, found), str(found)


def _read(loader: Callable[[Path], HeteroData], arg: Path, file: Path) -> HeteroData:
    """``loader(arg)``; an empty or malformed data ``file`` is a ``ValueError`` naming it (the loaders' own
    errors name the file and the line already)."""
    if file.stat().st_size == 0:
        raise ValueError(f"data file {file} is empty")
    try:
        return loader(arg)
    except (IndexError, KeyError, TypeError, RuntimeError) as error:
        detail = (str(error).strip().splitlines() or [""])[0]
        raise ValueError(f"cannot read data file {file}: {type(error).__name__}: {detail}") from error


def _missing(dataset: str, base: Path | None, folder: str, name: str) -> str:
    """Why ``dataset`` was not found: both places :func:`raw_data_file` looks (a root given as the dataset's own folder
    was named as ``ml-100k/ml-100k/u.data``)."""
    if base is None:
        return f"{dataset} not found: no data directory (pass root, set $GRAPHFORGET_DATA, or use ../shared/data)"
    return f"{dataset} not found: no {name} in {base / folder} nor in {base}"


def prepare_attack_data(dataset: str = "ml-100k", root: str | os.PathLike | None = None,
                        attack_ratio: float = 0.02, seed: int = 0, synthetic_fallback: bool = False) -> AttackData:
    """Data of the IFRU attack protocol, deterministic in ``(dataset, root, attack_ratio, seed)``.

    * ``ml-100k``: :func:`~graphforget.data.load_movielens_100k` -> 5-core -> ratings >= 4 are
      positive -> random 6:2:2 split -> :func:`~graphforget.data.attack_flip`.
    * ``bookcrossing``: :func:`~graphforget.data.load_labelled_triples` (labels already 0/1, the
      sampled negatives unobserved) -> 5-core over all rows (keeps 89,915 of the 139,746 rows,
      3,988 users x 9,676 items, still about half positive) -> split -> attack.
    * ``synthetic``: :func:`~graphforget.data.planted_communities` (600 users x 400 items, 40 rated
      items per user, seeded by ``seed``) -> split -> attack. Needs no file.

    The attack flips labels only: a flipped edge keeps its place in the message-passing graph.

    Args:
        dataset: one of :data:`DATASET_NAMES`.
        root: the data directory (holding ``ml-100k/`` or ``bookcrossing/``, or the dataset's own
            folder); ``None`` looks in ``$GRAPHFORGET_DATA`` then ``../shared/data``
            (:func:`~graphforget.data.find_data_root`). A given ``root`` that does not exist is an error.
        attack_ratio: fraction of training edges whose label is flipped, in (0, 1).
        seed: seeds the split and the attack (and the synthetic generator).
        synthetic_fallback: when the real dataset is not found, use the synthetic one (say so in
            ``source`` and log a warning naming the missing file) instead of raising.

    Returns:
        :class:`AttackData` ``(split, train, request, source, dataset, attack_ratio)``.

    Raises:
        ValueError: unknown dataset, a ratio outside (0, 1), a ``root`` for the synthetic data, or a data file that
            is empty, malformed or left without interactions by the 5-core.
        FileNotFoundError: a given ``root`` that does not exist, or a missing dataset without fallback.
    """
    if dataset not in DATASET_NAMES:
        raise ValueError(f"unknown dataset {dataset!r}; known: {', '.join(DATASET_NAMES)}")
    attack_ratio = _check_ratio(attack_ratio)
    if root is not None:  # a given root that does not exist is an error
        find_data_root(root)
    if root is not None and dataset == "synthetic":  # ignored, and yet recorded with a run (bench refused it)
        raise ValueError(f"root: synthetic data reads no data root (got {str(root)!r}): it is generated")
    fallback_note = ""
    if dataset != "synthetic":
        raw, where = _load_raw(dataset, root)
        if raw is None:
            if not synthetic_fallback:
                raise FileNotFoundError(where)
            log.warning("%s; using the synthetic stand-in instead (synthetic_fallback=True)", where)
            dataset, fallback_note = "synthetic", f", because {where}"
    if dataset == "synthetic":
        graph = planted_communities(**SYNTHETIC, seed=seed)
        source = (f"synthetic planted communities ({SYNTHETIC['num_users']} users x "
                  f"{SYNTHETIC['num_items']} items, seed {seed}){fallback_note}")
    elif dataset == "ml-100k":
        graph = binarize(k_core(raw, CORE), 4)
        source = f"MovieLens-100K from {where} ({CORE}-core, rating >= 4 -> 1)"
    else:
        graph = k_core(raw, CORE)
        source = f"Book-Crossing from {where} ({CORE}-core, labels as given)"
    if graph[EDGE].edge_index.size(1) == 0:
        raise ValueError(f"no interactions left in {where} after the {CORE}-core")
    return _split_and_attack(graph, source, dataset, attack_ratio, seed)


def _split_and_attack(graph: HeteroData, source: str, dataset: str, attack_ratio: float, seed: int) -> AttackData:
    """The protocol's 6:2:2 split of the prepared ``graph`` and the attack on its training part."""
    split = random_split(graph, (0.6, 0.2, 0.2), seed=seed)
    attacked, request = attack_flip(split.train, attack_ratio, seed=seed)
    source += (f"; 6:2:2 split, {split.train[EDGE].edge_index.size(1)} training edges, "
               f"{request.size(1)} flipped ({attack_ratio:g})")
    return AttackData(split, attacked, request, source, dataset, attack_ratio)


# --- running the protocol------------------------------------------------------------------------

@dataclass
class MethodReport:
    """One method's row of an :class:`AttackReport`.

    Attributes:
        scores: ``auc_0/1/2`` on the test pairs (:func:`~graphforget.metrics.evaluate_auc`).
        seconds: the unlearning call alone.
        info: the result's ``info``.
        fit_seconds: the method's :meth:`~graphforget.unlearn.Unlearner.fit` (``None`` for methods without one).
        before: the AUCs of the fitted model before unlearning (its cost even for an empty request; the
            "harmless" check of SISA and RecEraser), for methods with a fit step.
        completeness: per AUC, :math:`c` relative to the Original and Retrain.
        prediction_gap: the L2 distance of its predicted probabilities on the test pairs to Retrain's, over
            the Original's distance to Retrain's (0: Retrain's predictions; 1: as far as the Original); NaN where
            that distance is within float32 rounding (:func:`~graphforget.metrics.prediction_gap`).
    """
    scores: dict[str, float]
    seconds: float
    info: dict
    fit_seconds: float | None = None
    before: dict[str, float] | None = None
    completeness: dict[str, float] = field(default_factory=dict)
    prediction_gap: float | None = None


@dataclass
class AttackReport:
    """What :func:`run_attack` measured. :meth:`to_dict` gives the JSON-ready form (the ``scores`` of
    every row flattened into it: ``report["methods"]["ifru"]["auc_0"]``).

    Attributes:
        dataset: the data's name (see :class:`AttackData`).
        source: which data was used and how it was prepared (see :class:`AttackData`).
        sizes: ``num_users``, ``num_items``, ``train_edges``, ``request_edges``.
        run: the model name, seed, attack ratio, device, CPU threads and hyper-parameters.
        original: the Original's ``auc_0/1/2``, ``train_seconds``, ``epochs`` and ``best_epoch``.
        methods: one :class:`MethodReport` per method, Retrain first.
    """
    dataset: str
    source: str
    sizes: dict[str, int]
    run: dict
    original: dict
    methods: dict[str, MethodReport]

    def to_dict(self) -> dict:
        """The report as JSON-ready data, each row's ``scores`` flattened into the row."""
        rows = {name: {**row.scores, **{k: v for k, v in asdict(row).items() if k != "scores"}}
                for name, row in self.methods.items()}
        return to_jsonable({"dataset": self.dataset, "source": self.source, **self.sizes, **self.run,
                            "original": self.original, "methods": rows})


def _checked_methods(methods: Sequence[str] | None, options: dict) -> list[str]:
    """The methods to run (all registered by default), checked, with Retrain first (the reference); ``options`` name
    none that is not run (``"IFRU"``'s, or a method's left out, were dropped without a word, even invalid ones)."""
    methods = list(METHODS) if methods is None else list(methods)
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown methods {unknown}; known: {', '.join(METHODS)}")
    repeated = sorted({m for m in methods if methods.count(m) > 1})
    if repeated:  # each ran again, its row replaced
        raise ValueError(f"methods listed twice: {', '.join(repeated)}")
    methods = ["retrain"] + [m for m in methods if m != "retrain"]
    refuse_stray_options(options, methods)
    return methods


def _run_method(unlearner, train_graph: HeteroData, test: HeteroData, request: Tensor
                ) -> tuple[MethodReport, UnlearnResult]:
    """Fits (when the method needs it) and unlearns; returns the report row and the result."""
    fit_seconds = before = None
    if unlearner.needs_fit:
        fit_seconds = unlearner.fit().fit_seconds
        before = evaluate_auc(unlearner.model, train_graph, test, request)
    outcome = unlearner.unlearn(request)
    scores = evaluate_auc(outcome.model, outcome.graph, test, request)
    log.info("%s: %s in %.2fs", unlearner.name, {k: round(scores[k], 4) for k in AUC_KEYS}, outcome.seconds)
    return MethodReport(scores, outcome.seconds, outcome.info, fit_seconds, before), outcome


def _compare_with_retrain(report: AttackReport, original, train_graph: HeteroData, test: HeteroData,
                          outcomes: dict[str, UnlearnResult]) -> None:
    """Fills each row's ``completeness`` and ``prediction_gap`` (relative to Retrain)."""
    base, retrain = report.original, report.methods["retrain"].scores
    pairs, reference = test[EDGE].edge_index, outcomes["retrain"]
    for model_ in [original, *(outcome.model for outcome in outcomes.values())]:
        model_.eval()  # the experiment's own models: predictions without training-time noise
    with torch.no_grad():
        scale = prediction_distance(original, train_graph, reference.model, reference.graph, pairs)
        for method, row in report.methods.items():
            row.completeness = {k: completeness(row.scores[k], base[k], retrain[k]) for k in AUC_KEYS}
            gap = prediction_distance(outcomes[method].model, outcomes[method].graph, reference.model,
                                      reference.graph, pairs)
            row.prediction_gap = prediction_gap(gap, scale, pairs.size(1))


def run_attack(data: AttackData, hparams: Hyperparameters, methods: Sequence[str] | None = None,
               options: dict[str, dict] | None = None, seed: int = 0, device: str | torch.device = "cpu",
               progress: bool = False) -> AttackReport:
    """Trains the Original on the attacked data, unlearns the request with each method, evaluates.

    Retrain is always run (first), since completeness is measured against it. Every model is
    evaluated on the test pairs with :func:`~graphforget.metrics.evaluate_auc` (AUC_0/1/2 with the
    request's users and items).

    Args:
        data: from :func:`prepare_attack_data`.
        hparams: the model and its training (e.g. :func:`~graphforget.presets.default_hparams`).
        methods: names in :data:`~graphforget.unlearn.METHODS` (default: all of them).
        options: per method, its options (e.g. ``{"ifru": {"solver.name": "lissa"}}``; see
            :func:`~graphforget.unlearn.method_config`).
        seed: seeds the model's initialisation, the batch order and the methods' own draws.
        device: where to train and unlearn.
        progress: tqdm bars while training.

    Raises:
        ValueError: an unknown or repeated method, a bad option or options of a method not run, before anything is
            trained.
    """
    options, device = options or {}, torch.device(device)
    methods = _checked_methods(methods, options)
    objective, config = hparams.objective(seed), hparams.train_config(seed, progress)
    # on_device: the caller's data stays where it is (HeteroData.to moves the object's own tensors)
    train_graph, val, test = (on_device(g, device) for g in (data.train, data.split.val, data.split.test))
    request = data.request.to(device)
    for method in methods:  # every option checked before anything is trained
        METHODS[method].check_training(method_config(method, options.get(method), train=config, seed=seed), objective)
    original = hparams.build_model(num_users(train_graph), num_items(train_graph), seed).to(device)
    fit = train(original, train_graph, objective, config, val)
    report = AttackReport(
        data.dataset, data.source,
        {"num_users": num_users(train_graph), "num_items": num_items(train_graph),
         "train_edges": train_graph[EDGE].edge_index.size(1), "request_edges": request.size(1)},
        {"model": hparams.model, "seed": seed, "attack_ratio": data.attack_ratio,
         "device": str(device), "threads": torch.get_num_threads(), "hparams": hparams.as_dict()},
        {**evaluate_auc(original, train_graph, test, request), "train_seconds": fit.seconds, "epochs": fit.epochs,
         "best_epoch": fit.best_epoch}, {})
    outcomes = {}
    for method in methods:
        unlearner = build_unlearner(method, original, train_graph, objective, options.get(method), train=config,
                                    seed=seed, val=val)
        report.methods[method], outcomes[method] = _run_method(unlearner, train_graph, test, request)
    _compare_with_retrain(report, original, train_graph, test, outcomes)
    return report
