"""The benchmark's protocols: what one cell measures.

* ``attack`` (Zhang et al., ACM TORS 2024): flip a share of the training labels, train on everything,
  unlearn the flipped edges; AUC_0/1/2, completeness against Retrain, prediction gap, MIA.
* ``adversarial`` (UnlearnRec, Chen et al., SIGIR 2025): train a clean model, add for each user the item it
  scores lowest, train the Original on the attacked graph, unlearn the added edges (BPR on implicit data:
  Recall@20 / NDCG@20, MI-BF, MI-NG).
* ``deletion`` (CURE4Rec, Chen et al., NeurIPS 2024): one batch request, a given share of the training
  edges: every interaction of ``random`` users, of the most active (``core``) users or of the least active
  (``edge``) users; or random ``interactions``.
* ``stream`` (ERASE, 2026): single-user requests one by one, each method continuing from its own previous
  result; at 25/50/75/100% of the stream it is compared with a Retrain on exactly the cumulative removed set.

Every cell reports Recall@20 and NDCG@20 (all-item ranking, the model's training interactions masked; with
``_retrain``: the matching Retrain's), AUC_0/1/2 where the test set has both labels, ``prediction_gap``, on
the test pairs (0: Retrain's predictions, 1: no closer than the
Original),

.. math::
    \\frac{\\lVert p_{\\text{method}} - p_{\\text{retrain}} \\rVert}
         {\\lVert p_{\\text{original}} - p_{\\text{retrain}} \\rVert} ,

and ``mia_auc``, the membership attack of :func:`~graphforget.verify.verify_forgetting` on the removed
edges against matched non-members, never a validation or test pair (``mia_auc_retrain``: the same attack on the
matching Retrain, the level of an exact deletion; ``mia_auc_before``: on the Original), with its over-forgetting
figures ``below_match``, ``over_forgetting_votes`` and ``over_forgetting_p``
(:class:`~graphforget.verify.ForgettingReport`; NaN without a vote; ``_retrain``: the Retrain's).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, cast

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..config import is_integer, is_real
from ..data import EDGE, num_users, random_edges, user_edges
from ..metrics import completeness, evaluate_auc, prediction_distance, prediction_gap
from ..models import Recommender
from ..verify import ForgettingReport, verify_forgetting
from .setting import Setting, request_digest

__all__ = ["Protocol", "ProtocolError", "PROTOCOLS", "DELETION_KINDS", "STREAM_ORDERS", "deletion_request",
           "stream_requests", "stream_positions", "measure"]

#: The deletion sets of the ``deletion`` protocol (see :func:`deletion_request`): CURE4Rec's three, then random
#: interactions.
DELETION_KINDS = ("random", "core", "edge", "interactions")
#: The sets a run measures unless told: CURE4Rec's.
CURE4REC_KINDS = ("random", "core", "edge")
#: The users each of CURE4Rec's sets takes first.
_KIND_ORDER = {"random": "random", "core": "most", "edge": "least"}
#: The orders of users in the ``stream`` protocol.
STREAM_ORDERS = ("random", "most", "least")
AUC_KEYS: tuple[str, ...] = ("auc_0", "auc_1", "auc_2")


# ------------------------------------------------------------------------------------------- requests

def _user_degrees(graph) -> Tensor:
    """Training edges (observed ones) per user ``[U]``."""
    store = graph[EDGE]
    users = store.edge_index[0].cpu()
    if "observed" in store:
        users = users[store.observed.cpu()]
    return torch.bincount(users, minlength=num_users(graph))


def _users_in_order(graph, order: str, seed: int) -> Tensor:
    """Users with at least one training edge: in a seeded random order, or by activity (most / least)."""
    degree = _user_degrees(graph)
    if order == "random":
        users = torch.randperm(degree.numel(), generator=torch.Generator().manual_seed(seed))
    else:
        users = torch.sort(degree, descending=order == "most", stable=True).indices
    return users[degree[users] > 0]


class ProtocolError(ValueError):
    """A protocol's parameters that its data cannot serve (a stream longer than its users, a deletion ratio that takes
    every edge): the run stops, where a method's refusal of a request gives its cell ``{"error": ...}`` (a bench of
    such cells had exited 0, empty)."""


def deletion_request(graph, kind: str, ratio: float, seed: int = 0) -> Tensor:
    """A deletion set: about ``ratio`` of the observed training edges, as ``[2, R]`` pairs.

    CURE4Rec's sets (Chen et al., NeurIPS 2024) take every interaction of whole users: ``random`` users drawn at
    random, ``core`` the most active users, ``edge`` the least active ones, added until they hold at least
    ``round(ratio * E)`` of the ``E`` edges; ``interactions`` is a uniformly random ``ratio`` of the edges. CURE4Rec counts its
    ratio in users; here it counts edges, so that every kind removes about as much data (on ML-1M, 5% of the
    users hold 24% of ``train.txt``'s interactions when they are the most active, 0.6% when the least).

    Raises:
        ValueError: an unknown kind or a ratio outside (0, 1); :class:`ProtocolError` (a ``ValueError``): a ratio
            whose set takes every observed training edge (every method refused it, the run exited 0 with no figure).
    """
    request = _deletion_set(graph, kind, ratio, seed)
    edges = int(_user_degrees(graph).sum())
    if request.size(1) >= edges:
        raise ProtocolError(f"deletion ratio {ratio} of kind {kind!r} takes every observed training edge of the graph "
                            f"({edges}): nothing would remain to train on; lower it")
    return request


def _deletion_set(graph, kind: str, ratio: float, seed: int) -> Tensor:
    if kind not in DELETION_KINDS:
        raise ValueError(f"unknown deletion kind {kind!r}; known: {', '.join(DELETION_KINDS)}")
    if not 0 < ratio < 1:
        raise ValueError(f"deletion ratio must be in (0, 1), got {ratio}")
    if kind == "interactions":
        return random_edges(graph, ratio, seed)
    users = _users_in_order(graph, _KIND_ORDER[kind], seed)
    cumulative = torch.cumsum(_user_degrees(graph)[users], 0)
    target = max(1, round(ratio * int(cumulative[-1])))
    count = int(torch.searchsorted(cumulative, torch.tensor(target))) + 1
    return user_edges(graph, users[:count])


def stream_requests(graph, length: int, order: str = "random", seed: int = 0) -> list[Tensor]:
    """``length`` single-user requests (all of a user's training edges each), users in ``order``.

    Raises:
        ValueError: an unknown order; :class:`ProtocolError` (a ``ValueError``): as many requests as users with edges
            (the last would leave nothing to train on: the whole run failed there, at its Retrain) or more.
    """
    if order not in STREAM_ORDERS:
        raise ValueError(f"unknown stream order {order!r}; known: {', '.join(STREAM_ORDERS)}")
    users = _users_in_order(graph, order, seed)
    if users.numel() < 2:
        raise ProtocolError(f"a stream needs two users with edges or more (one keeps its edges to train on); the "
                            f"graph has {users.numel()}")
    if not 1 <= length < users.numel():
        raise ProtocolError(f"stream length must be in [1, {users.numel() - 1}] (the users with edges less one, whose "
                            f"edges remain to train on), got {length}")
    return [user_edges(graph, users[k:k + 1]) for k in range(length)]


def stream_positions(length: int, fractions) -> list[int]:
    """The request counts after which the stream is evaluated: ``ceil(f * length)`` for each fraction."""
    return sorted(_checkpoint_fractions(length, fractions))


def _checkpoint_fractions(length: int, fractions) -> dict[int, float]:
    """Each checkpoint's request count and the fraction it stands for (the largest that falls on it): 3 of 10
    requests is the 25% checkpoint, whose figures the tables read as ``@25%`` (tagged 30% they were left out)."""
    return {max(1, math.ceil(f * length - 1e-9)): float(f) for f in sorted(fractions)}


# ------------------------------------------------------------------------------------------ measuring

def measure(setting: Setting, model, graph, removed: Tensor, reference, seed: int) -> dict:
    """Utility, prediction gap to ``reference`` (a Retrain on exactly ``removed``) and the membership attack.

    Args:
        setting: the Original and the data.
        model, graph: the method's model and its remaining graph.
        removed: ``[2, R]`` every edge removed so far (the cumulative set).
        reference: the :class:`~graphforget.unlearn.UnlearnResult` of that Retrain.
        seed: seed of the attack's matching and calibration.
    """
    model.eval()
    original, train_graph = setting.original, setting.train_graph
    pairs = setting.test[EDGE].edge_index
    row = dict(evaluate_auc(model, graph, setting.test, removed)) if _has_both_labels(setting.test) else {}
    row.update(setting.ranking(model, graph))
    retrain_ranking = setting.ranking(reference.model, reference.graph, key=request_digest(removed))
    row.update({f"{name}_retrain": value for name, value in retrain_ranking.items()})
    with torch.no_grad():
        scale = prediction_distance(original, train_graph, reference.model, reference.graph, pairs)
        gap = prediction_distance(model, graph, reference.model, reference.graph, pairs)
    # the relative gap's denominator grows with the removed set: the absolute distances say whether the error does
    row.update(prediction_gap=prediction_gap(gap, scale, pairs.size(1)), prediction_distance=gap,
               original_distance=scale)
    report = verify_forgetting(model, graph, removed, before=(original, train_graph),
                               reference=(reference.model, reference.graph), objective=setting.objective, seed=seed,
                               exclude=setting.held_out)
    retrained = cast(ForgettingReport, report.reference)  # set: a reference was given
    row.update(mia_auc=report.mia_auc, mia_auc_retrain=retrained.mia_auc,  # before given: its figures are set
               mia_auc_before=cast(float, report.before_mia_auc), mi_bf=cast(float, report.mi_bf), mi_ng=report.mi_ng,
               removed_edges=removed.size(1))
    for suffix, figures in (("", report), ("_retrain", retrained)):  # over-forgetting (not in the tables)
        # no vote (users whose interactions all go vote none, if their sampled negatives stay): no test, not p = 1
        row.update({f"below_match{suffix}": figures.below_match, f"over_forgetting_votes{suffix}": figures.votes,
                    f"over_forgetting_p{suffix}": figures.over_forgetting_p if figures.votes else math.nan})
    return row


def _has_both_labels(test) -> bool:
    """Whether the test set has positive and negative pairs (AUC needs both; implicit data under BPR has none)."""
    label = test[EDGE].edge_label
    return bool((label > 0).any()) and bool((label == 0).any())


def _one_batch(setting: Setting, method: str, options: dict, request: Tensor) -> dict:
    """A method unlearns one request from the Original; measured against the matching Retrain."""
    reference = setting.reference(request)
    if method == "retrain":  # the same seeded Retrain on the same set: the reference itself
        outcome, fit_seconds = reference, None
    else:
        unlearner = setting.unlearner(method, options)
        fit_seconds = unlearner.fit_seconds if unlearner.needs_fit else None
        outcome = unlearner.unlearn(request)
    row = measure(setting, outcome.model, outcome.graph, request, reference, setting.seed)
    return {**row, "seconds": outcome.seconds, "fit_seconds": fit_seconds, "request_edges": request.size(1),
            "info": outcome.info}


# ----------------------------------------------------------------------------------------- protocols

@dataclass(frozen=True)
class Protocol:
    """A protocol: its default parameters, how they split into cells, and what a cell runs.

    Attributes:
        name: the protocol's name.
        defaults: ``quick -> dict`` of its parameters.
        variants: ``params -> [dict]``: the per-cell parameters (one cell per variant, method and seed).
        attack: ``params -> dict | None``: how its setting's training graph is attacked (see
            :class:`~graphforget.bench.setting.Setting`; ``None``: the clean training split).
        run: ``(setting, method, options, variant, progress) -> dict`` of figures.
    """
    name: str
    defaults: Callable[[bool], dict]
    variants: Callable[[dict], list]
    attack: Callable[[dict], dict | None]
    run: Callable[..., dict]


def _run_attack_cell(setting: Setting, method: str, options: dict, variant: dict, progress: bool) -> dict:
    """The IFRU attack (flipped labels) and UnlearnRec's (adversarial edges): the request is the attack's edges;
    completeness of every AUC (or of Recall@20 without AUC) between the Original and the Retrain."""
    request = cast(Tensor, setting.request).to(setting.device)  # an attack's setting holds its edges
    row = _one_batch(setting, method, options, request)
    retrain = setting.reference(request)
    if "auc_0" in row:
        base = evaluate_auc(setting.original, setting.train_graph, setting.test, request)
        ref, keys = evaluate_auc(retrain.model, retrain.graph, setting.test, request), AUC_KEYS
    else:
        base = setting.ranking(setting.original, setting.train_graph, "original")
        ref, keys = {"recall@20": row["recall@20_retrain"]}, ("recall@20",)
    row.update({f"completeness_{k}": completeness(row[k], base[k], ref[k]) for k in keys})
    row.update({f"original_{k}": base[k] for k in keys})
    if setting.clean is not None:  # the adversarial protocol: the model before the attack
        row.update({f"clean_{k}": v for k, v in setting.ranking(*setting.clean, key="clean").items()})
    return row


def _run_deletion_cell(setting: Setting, method: str, options: dict, variant: dict, progress: bool) -> dict:
    request = deletion_request(setting.train_graph, variant["kind"], variant["ratio"], setting.seed)
    return _one_batch(setting, method, options, request)


def _listed(params: dict, name: str, protocol: str) -> list:
    """``params[name]`` as a list, refused by name unless a list or tuple (a string was read one letter at a time, a
    single number failed in Python's ``iter``)."""
    if not isinstance(params[name], (list, tuple)):
        raise ValueError(f"{protocol} {name} must be a list, got {params[name]!r}")
    return list(params[name])


def _number(value, what: str):
    """``value`` refused by name unless a real number (a bool ran as 1.0, a string was kept in results.json, None
    failed in Python's ``float``)."""
    if not is_real(value):
        raise ValueError(f"{what} must be a number, got {value!r}")
    return float(value)


def _deletion_variants(params: dict) -> list[dict]:
    kinds = _listed(params, "kinds", "deletion")
    ratios = [_number(r, "deletion ratio") for r in _listed(params, "ratios", "deletion")]
    if not kinds or not ratios:  # no cell at all: an empty table over OUT, and a run that "succeeded"
        raise ValueError(f"deletion needs at least one kind and one ratio, got kinds={kinds}, ratios={ratios}")
    if len(set(kinds)) < len(kinds) or len(set(ratios)) < len(ratios):  # each seed's cell twice in one interval
        raise ValueError(f"deletion kinds and ratios must not repeat, got kinds={kinds}, ratios={ratios}")
    for kind in kinds:
        if kind not in DELETION_KINDS:
            raise ValueError(f"unknown deletion kind {kind!r}; known: {', '.join(DELETION_KINDS)}")
    for ratio in ratios:
        if not 0 < ratio < 1:
            raise ValueError(f"deletion ratio must be in (0, 1), got {ratio}")
    return [{"kind": kind, "ratio": ratio} for kind in kinds for ratio in ratios]


def _stream_variants(params: dict) -> list[dict]:
    if params["order"] not in STREAM_ORDERS:
        raise ValueError(f"unknown stream order {params['order']!r}; known: {', '.join(STREAM_ORDERS)}")
    if not is_integer(params["length"]):  # int() ran a stream of 2 requests for a length of 2.5
        raise ValueError(f"stream length must be an integer, got {params['length']!r}")
    if params["length"] < 1:
        raise ValueError(f"stream length must be >= 1, got {params['length']}")
    fractions = [_number(f, "stream fraction") for f in _listed(params, "fractions", "stream")]
    outside = [f for f in fractions if not 0 < f <= 1]
    if outside or not fractions:
        raise ValueError(f"stream fractions (its checkpoints) must be in (0, 1], got {params['fractions']}")
    if len(set(fractions)) < len(fractions):  # run once, and reported as given: as deletion's ratios
        raise ValueError(f"stream fractions (its checkpoints) must not repeat, got {params['fractions']}")
    tags = [checkpoint_tag(f) for f in fractions]
    if len(set(tags)) < len(tags):  # 0.25 and 0.2500001: the second's figures were reported as the first's
        raise ValueError(f"stream fractions (its checkpoints) {params['fractions']} give two checkpoints one label "
                         f"({', '.join(sorted({t for t in tags if tags.count(t) > 1}))}): give fractions that "
                         "differ in their percentages' first six digits")
    # in order: the same checkpoints given in another are the same cells
    return [{"length": int(params["length"]), "order": params["order"], "fractions": sorted(fractions)}]


def _attack_variants(params: dict) -> list[dict]:
    ratio = _number(params["attack_ratio"], "attack ratio")
    if not 0 < ratio < 1:
        raise ValueError(f"attack ratio must be in (0, 1), got {ratio}")
    return [{"attack_ratio": ratio}]


def _adversarial_variants(params: dict) -> list[dict]:
    fraction = _number(params["fraction"], "adversarial fraction")
    if not 0 < fraction <= 1:
        raise ValueError(f"adversarial fraction must be in (0, 1], got {fraction}")
    return [{"fraction": fraction}]


def _run_stream_cell(setting: Setting, method: str, options: dict, variant: dict, progress: bool) -> dict:
    """Applies the stream request by request, each from the method's previous result; evaluates at the
    stream's checkpoints against a Retrain on exactly the cumulative removed set. The requests after the last
    checkpoint are not run (no figure would read them; the seconds per request had counted them)."""
    requests = stream_requests(setting.train_graph, variant["length"], variant["order"], setting.seed)
    fractions = _checkpoint_fractions(len(requests), variant["fractions"])
    requests = requests[:max(fractions)]
    unlearner = setting.unlearner(method, options)
    fit_seconds = unlearner.fit_seconds if unlearner.needs_fit else None
    seconds, checkpoints, trusted = [], [], []
    bar = tqdm(requests, desc=f"{method} stream", leave=False, disable=not progress)
    for k, request in enumerate(bar, 1):
        outcome = unlearner.unlearn(request)
        seconds.append(outcome.seconds)
        trusted.append(outcome.info.get("trusted"))
        # typed Module: every method's model is a Recommender (SISA's ensemble a ShardedRecommender)
        unlearner = setting.continue_from(method, options, cast(Recommender, outcome.model), outcome.graph)
        if k in fractions:
            removed = torch.cat(requests[:k], 1)
            row = measure(setting, outcome.model, outcome.graph, removed, setting.reference(removed), setting.seed)
            checkpoints.append({**row, "requests": k, "fraction": fractions[k],
                                "seconds_per_request": sum(seconds) / k, "cumulative_seconds": sum(seconds)})
    return _stream_summary(checkpoints, seconds, fit_seconds, trusted)


def checkpoint_tag(fraction: float) -> str:
    """How a stream's figures at the checkpoint after ``fraction`` of its requests are named: ``@NN%`` (``:g``, six
    significant digits: rounded to a whole percent, 0.25 and 0.251 had shared a label)."""
    return f"@{100 * fraction:g}%"


def _stream_summary(checkpoints: list[dict], seconds: list[float], fit_seconds, trusted: list) -> dict:
    """The cell's figures: the headline ones of every checkpoint as ``name@NN%``, every one of the last checkpoint
    under the plain names (the aggregate's mean and interval of each: NDCG@20 and AUC_1 had none); ``info``:
    whether every request passed the method's acceptance test (``None``: it has none) and how many failed it."""
    failed = sum(flag is False for flag in trusted)
    tested = any(flag is not None for flag in trusted)
    row = {"checkpoints": checkpoints, "request_seconds": seconds, "fit_seconds": fit_seconds,
           "seconds_per_request": sum(seconds) / len(seconds), "cumulative_seconds": sum(seconds),
           "info": {"trusted": failed == 0 if tested else None, "untrusted_requests": failed}}
    figures = ("prediction_gap", "mia_auc", "mia_auc_retrain", "auc_0", "recall@20", "recall@20_retrain", "mi_bf",
               "mi_ng", "prediction_distance", "original_distance")
    for point in checkpoints:
        tag = checkpoint_tag(point["fraction"])
        row.update({f"{key}{tag}": point.get(key) for key in
                    (*figures, "removed_edges", "seconds_per_request", "cumulative_seconds")})
    own = ("requests", "fraction", "seconds_per_request", "cumulative_seconds")  # the checkpoint's, not the cell's
    row.update({key: value for key, value in checkpoints[-1].items() if key not in own})
    return row


PROTOCOLS: dict[str, Protocol] = {
    "attack": Protocol("attack", lambda quick: {"attack_ratio": 0.02}, _attack_variants,
                       lambda params: {"kind": "flip", "ratio": float(params["attack_ratio"])}, _run_attack_cell),
    "adversarial": Protocol("adversarial", lambda quick: {"fraction": 1.0}, _adversarial_variants,
                            lambda params: {"kind": "adversarial", "fraction": float(params["fraction"])},
                            _run_attack_cell),
    "deletion": Protocol("deletion", lambda quick: {"kinds": list(CURE4REC_KINDS),
                                                   "ratios": [0.05] if quick else [0.01, 0.05, 0.1, 0.2]},
                         _deletion_variants, lambda params: None, _run_deletion_cell),
    "stream": Protocol("stream", lambda quick: {"length": 20 if quick else 100, "order": "random",
                                               "fractions": [0.25, 0.5, 0.75, 1.0]},
                       _stream_variants, lambda params: None, _run_stream_cell),
}
"""The protocols by name."""
