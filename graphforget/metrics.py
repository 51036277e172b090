"""Evaluation metrics, all vectorised: AUC_0/1/2, completeness, Recall/NDCG@K, MI-BF/MI-NG, distances."""
from __future__ import annotations

import math
import statistics
from typing import Callable

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from .config import eval_mode, is_integer, warn_caller
from .data.interactions import (EDGE, as_pairs, check_layout, check_model_fits, check_model_on_graph_device,
                                check_pair_ids, check_pair_tensor, check_unique_pairs, finite_scores,
                                message_passing_edges, num_items, num_users, pair_keys, pair_scores, validate_pairs)
from .models.base import row_products

__all__ = ["auc", "auc_standard_error", "auc_interval", "auc_groups", "completeness", "evaluate_auc",
           "recall_ndcg_at_k", "mean_probability", "mi_bf", "mi_ng", "prediction_distance", "prediction_gap",
           "parameter_distance"]


def auc(scores: Tensor, labels: Tensor) -> float:
    """ROC AUC by the rank statistic (ties count one half); NaN when a class is absent.

    .. math:: \\mathrm{AUC} = \\frac{\\sum_{i \\in P} r_i - |P|(|P|+1)/2}{|P|\\,|N|}

    Raises:
        ValueError: scores and labels of different lengths, a score that is NaN, or a label that is not 0 or 1.
    """
    scores, labels = torch.as_tensor(scores), torch.as_tensor(labels)  # a list too, as auc_groups takes
    if scores.numel() != labels.numel():
        raise ValueError(f"scores [{scores.numel()}] and labels [{labels.numel()}] must have the same length")
    for name, values in (("scores", scores), ("labels", labels)):
        if bool(values.isnan().any()):
            raise ValueError(f"{name} hold {int(values.isnan().sum())} NaN values: the AUC would rank them at random")
    check_binary_labels(labels, "labels")
    # The labels on the scores' device: a mask of another device cannot select the ranks.
    scores, labels = scores.detach().double().flatten(), labels.flatten().to(scores.device) > 0.5
    n_pos = int(labels.sum())
    n_neg = labels.numel() - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    sorted_scores, order = torch.sort(scores)
    # Average ranks over ties: rank of a value = mean of its first and last 1-based positions.
    _, inverse, counts = torch.unique_consecutive(sorted_scores, return_inverse=True, return_counts=True)
    last = torch.cumsum(counts, 0).double()
    avg_rank = (last - (counts.double() - 1) / 2)[inverse]
    ranks = torch.empty_like(avg_rank)
    ranks[order] = avg_rank
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def auc_standard_error(auc_value: float, num_positive: int, num_negative: int) -> float:
    """Hanley and McNeil's standard error of an AUC estimated on ``num_positive`` positive and ``num_negative``
    negative pairs (Radiology 143, 1982), which treats the scores as exponentially distributed:

    .. math:: \\mathrm{SE}^2 = \\frac{A(1-A) + (n_1 - 1)(Q_1 - A^2) + (n_2 - 1)(Q_2 - A^2)}{n_1 n_2},
        \\quad Q_1 = \\frac{A}{2 - A},\\ Q_2 = \\frac{2A^2}{1 + A}

    Raises:
        ValueError: counts that are not integers, a class without pairs, or an AUC outside ``[0, 1]``.
    """
    if not (is_integer(num_positive) and is_integer(num_negative)):  # 2.5 pairs gave a figure, inf gave NaN
        raise ValueError(f"pair counts must be integers, got {num_positive!r} and {num_negative!r}")
    if num_positive < 1 or num_negative < 1:
        raise ValueError(f"an AUC needs both classes, got {num_positive} positive and {num_negative} negative pairs")
    if not 0 <= auc_value <= 1:
        raise ValueError(f"an AUC lies in [0, 1], got {auc_value}")
    a = auc_value
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    variance = (a * (1 - a) + (num_positive - 1) * (q1 - a * a) + (num_negative - 1) * (q2 - a * a))
    return (variance / (num_positive * num_negative)) ** 0.5


#: Bisection steps of :func:`auc_interval`'s bounds: the bracket halves each step, to below float64's resolution.
INTERVAL_BISECTIONS = 60


def auc_interval(auc_value: float, num_positive: int, num_negative: int, level: float = 0.95) -> tuple[float, float]:
    r"""A confidence interval for an AUC estimated on ``num_positive`` positive and ``num_negative`` negative
    pairs that stays honest on few pairs: the AUCs :math:`\theta` that the estimate :math:`A` does not reject,
    :math:`(A - \theta)^2 \le z^2\, V(\theta)`, as Wilson's interval inverts a proportion's test (Newcombe,
    Stat. Med. 25, 2006). :math:`V` is Hanley and McNeil's variance (:func:`auc_standard_error`) at
    :math:`\theta`, with both counts replaced by their mean :math:`\bar n = (n_1 + n_2) / 2`:

    .. math:: V(\theta) = \frac{\theta(1-\theta)}{n_1 n_2}\Big[1 + (\bar n - 1)
        \Big(\frac{1-\theta}{2-\theta} + \frac{\theta}{1+\theta}\Big)\Big]

    The plain standard error gives an interval of width 0 at an AUC of 0 or 1, which 2 negatives under 2,654
    positives can give; with :math:`\bar n` the few pairs of the smaller class widen it as they should (binormal
    scores, 2,000 draws each: coverage 0.948-0.978 from 3 to 200 pairs a class, where the plain variance covered 0.89
    at 200 positives and 5 negatives).

    Raises:
        ValueError: counts that are not integers or a class without pairs, an AUC outside ``[0, 1]``, or a
            ``level`` outside ``(0, 1)``.
    """
    auc_standard_error(auc_value, num_positive, num_negative)  # its checks
    if not (isinstance(level, float | int) and 0 < level < 1):
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    z2, pairs, mean = statistics.NormalDist().inv_cdf(0.5 + level / 2) ** 2, num_positive * num_negative, \
        (num_positive + num_negative) / 2

    def accepted(theta: float) -> bool:
        spread = 1 + (mean - 1) * ((1 - theta) / (2 - theta) + theta / (1 + theta))
        return (auc_value - theta) ** 2 <= z2 * theta * (1 - theta) / pairs * spread

    def bound(inside: float, outside: float) -> float:
        for _ in range(INTERVAL_BISECTIONS):
            middle = (inside + outside) / 2
            inside, outside = (middle, outside) if accepted(middle) else (inside, middle)
        return inside
    return bound(auc_value, 0.0), bound(auc_value, 1.0)


def auc_groups(scores: Tensor, test_edges: Tensor, labels: Tensor, request: Tensor | None) -> dict[str, float]:
    """AUC_0 on all test pairs, AUC_1 on pairs whose user OR item is in ``V(D_r)``, AUC_2 on user AND item; NaN for a
    group without both labels (a small request can leave AUC_2 with no pair, or one), written ``null`` in JSON and
    ``-`` in the command line's tables.

    Args:
        scores: ``[T]`` predicted scores of the test pairs.
        test_edges: ``[2, T]`` (user, item) test pairs.
        labels: ``[T]`` 0/1 labels.
        request: ``[2, R]`` the unlearned edges (``None``: only AUC_0).

    Raises:
        ValueError: ``test_edges`` or ``request`` that are not ``[2, *]`` integer ids, ``scores`` or ``labels``
            of another length than ``test_edges``, or labels that are not 0 or 1.
    """
    test_edges, scores, labels = _group_inputs(test_edges, scores, labels)
    out = {"auc_0": auc(scores, labels)}
    if request is not None:
        request = as_pairs(request, "request", "R").cpu()
        in_user = torch.isin(test_edges[0], request[0])
        in_item = torch.isin(test_edges[1], request[1])
        for name, mask in (("auc_1", in_user | in_item), ("auc_2", in_user & in_item)):
            out[name] = auc(scores[mask], labels[mask])
    return out


def _group_inputs(test_edges: Tensor, scores: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """:func:`auc_groups`' pairs, scores and labels checked, on the CPU (a mask of one device cannot select another's
    values); a shape or length that does not fit was an IndexError or an AttributeError inside torch."""
    test_edges = as_pairs(test_edges, "test_edges", "T").cpu()
    scores, labels = torch.as_tensor(scores).detach().cpu().flatten(), torch.as_tensor(labels).cpu().flatten()
    if not scores.numel() == labels.numel() == test_edges.size(1):
        raise ValueError(f"scores [{scores.numel()}] and labels [{labels.numel()}] must hold one value per pair of "
                         f"test_edges [2, {test_edges.size(1)}]")
    return test_edges, scores, labels


def _scores(model, graph: HeteroData, edges: Tensor, what: str) -> Tensor:
    """The model's scores of the ``[2, T]`` pairs ``edges``, run on ``graph`` (on its device) in eval mode (every
    module's mode restored), once the model's tables and the pairs' ids are checked against the graph (a named
    error, not an IndexError inside torch); scores of another shape than ``[T]`` and non-finite scores (a model
    with NaN parameters) are refused rather than averaged or ranked."""
    check_model_fits(model, graph)
    check_model_on_graph_device(model, graph)
    edges = as_pairs(edges, what, "T")
    if edges.size(1) == 0:
        raise ValueError(f"{what} must be a non-empty [2, T] tensor of (user, item) ids, got {list(edges.shape)}")
    edges = edges.to(graph[EDGE].edge_index.device)
    check_pair_ids(edges, graph, what)
    with eval_mode(model):  # a dropout (a user's own GNN) would make every figure random
        return pair_scores(model(graph, edges), edges.size(1), what)


@torch.no_grad()
def evaluate_auc(model, graph: HeteroData, test: HeteroData, request: Tensor | None = None, *,
                 what: str = "the test set") -> dict[str, float]:
    """AUC_0 of ``model`` run on its training ``graph``, on the labelled pairs of ``test`` (``what`` they are, in an
    error: validation pairs are not the test set), and AUC_1/2 with a ``request``; NaN for a group without both
    labels (:func:`auc_groups`).

    Raises:
        ValueError: the model's tables or the test pairs' ids do not fit the graph, a test pair stored twice or
            labelled other than 0/1, or ``request`` is not a ``[2, R]`` tensor of distinct (user, item) pairs of
            the graph's node ranges.
    """
    check_layout(graph, "the training graph")  # before its node counts, which PyG adds to a graph without them
    labels = _test_labels(test, graph, what)
    request = None if request is None else validate_pairs(graph, request)
    edges = test[EDGE].edge_index.to(graph[EDGE].edge_index.device)
    shared = int(in_graph(graph, edges).sum())
    if shared and what == "the test set":  # validation pairs are warned of where they are given (train, the methods)
        warn_caller(f"evaluate_auc: {shared} of the test set's {edges.size(1)} pairs are training edges: the AUC "
                    "scores pairs the model trains on (hold them out of the training graph, e.g. "
                    "graphforget.data.random_split)")
    scores = _scores(model, graph, edges, what)
    return auc_groups(scores.cpu(), edges.cpu(), labels.cpu(), None if request is None else request.cpu())


def in_graph(graph: HeteroData, pairs: Tensor) -> Tensor:
    """Which of the (user, item) pairs ``pairs [2, P]`` are edges of ``graph``: ``[P]`` bool."""
    keys = pair_keys(graph[EDGE].edge_index.to(pairs.device), num_items(graph))
    return torch.isin(pair_keys(pairs, num_items(graph)), keys)


def check_binary_labels(labels: Tensor, name: str) -> None:
    """Raises ``ValueError`` for labels other than 0 and 1, ``name`` starting the message (a rating of 0.7 was a
    positive, 0.3 a negative; ratings 1-5 gave NaN, as if a class were absent; ratings 2 and 5 were two likes)."""
    other = labels[(labels != 0) & (labels != 1)]
    if other.numel():
        raise ValueError(f"{name} must be 0 or 1 (1: an interaction, 0: a non-interaction), got {other.numel()} other "
                         f"values, e.g. {other[:3].tolist()}: binarise ratings first (graphforget.data.binarize)")


def _test_labels(test: HeteroData, graph: HeteroData, what: str = "the test set") -> Tensor:
    """``test``'s ``edge_label`` ``[T]``, one 0 or 1 per pair of ids of ``graph``, each pair once: a named error
    otherwise (a pair stored twice counted twice, NDCG reached 2; a rating of 0.3 was a negative to the AUC and a
    positive to Recall)."""
    check_layout(test, what)  # before test[EDGE], which PyG adds to a graph without it
    labels, edges = test[EDGE].get("edge_label"), test[EDGE].edge_index
    # floats indexed nothing, a uint8 row was read as a mask; first: a [T, 2] one was said to lack its labels (qa104)
    check_pair_tensor(edges, f"{what}'s edge_index", "T")
    if labels is None or tuple(labels.shape) != (edges.size(1),):
        raise ValueError(f"{what} needs an edge_label per pair ([{edges.size(1)}], 1: an interaction, 0: a "
                         f"non-interaction), got {None if labels is None else list(labels.shape)}")
    check_binary_labels(labels, f"{what}'s edge_label")
    check_pair_ids(edges, graph, what)
    check_unique_pairs(edges, num_items(graph), what, "store each pair once")
    return labels


def completeness(method: float, original: float, retrain: float) -> float:
    """``(method - original) / (retrain - original)``: 1 means as good as retraining; NaN where Retrain did not move
    the metric (no gain to measure against)."""
    gap = retrain - original
    # + 0.0: a method that did not move the metric is 0, not the -0.0 of 0 over a negative gap ("-0%" in a table)
    return float("nan") if gap == 0 else (method - original) / gap + 0.0


def _all_item_scores(model, graph: HeteroData) -> Callable[[Tensor], Tensor]:
    """``users -> [B, I]`` scores of every item: ``embed``'s dot products, ``embed`` computed once, where the
    model scores so (``scores_by_dot_product``); else the model's own ``score_all`` (a model that scores pairs
    by another function than the dot product of its embeddings, a mean-aggregated shard ensemble)."""
    if getattr(model, "scores_by_dot_product", False):
        user, item = (finite_scores(table) for table in model.embed(graph))
        # the products too: finite rows of 1e20 overflow to inf and NaN (they were ranked)
        return lambda users: finite_scores(row_products(user[users], item))
    return lambda users: finite_scores(_score_rows(model.score_all(graph, users), users.numel(), num_items(graph)))


def _score_rows(scores: Tensor, rows: int, items: int) -> Tensor:
    """``scores`` when it is ``[rows, items]``, else a ``ValueError``: a ``score_all`` that returned every user's
    row (the ``users`` argument ignored) was read as the batch's rows, other users' scores ranked without a word."""
    if scores.shape != (rows, items):
        raise ValueError(f"the model's score_all returned scores of shape {list(scores.shape)} for {rows} users; it "
                         f"must return one row per given user and one column per item, [{rows}, {items}]")
    return scores


@torch.no_grad()
def recall_ndcg_at_k(model, graph: HeteroData, test: HeteroData, k: int = 20, batch_size: int = 1024
                     ) -> dict[str, float]:
    """Recall@K and NDCG@K by all-item ranking with the training interactions masked, averaged over the users
    with test positives (PyG's ``LinkPredRecall`` and ``LinkPredNDCG`` where no scores tie).

    Tied scores are ranked in every order with equal chance, and the figures are their expectations
    (McSherry and Najork, 2008): a ranking by item id would favour a model with tied rows, such as the
    zero row IFRU leaves a user whose every interaction was forgotten, wherever the ids follow popularity.
    Users without test interactions are skipped, as PyG's metrics do; without any, both figures are NaN. A
    masked item is never ranked, even where a user has fewer unmasked items than K. The scores are the model's
    ``score_all`` in eval mode (every module's mode restored); for a model that scores by the dot products of
    ``embed`` (:attr:`~graphforget.models.Recommender.scores_by_dot_product`), ``embed`` is computed once for
    every batch. Scores that are not finite (a diverged training, or finite rows whose products overflow) are
    refused with ``ValueError``, as every metric refuses them, and so are test positives that are training
    interactions of ``graph`` (masked, they could never be recalled).
    """
    if not is_integer(batch_size) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if not is_integer(k) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    check_layout(graph, "the training graph")
    check_model_fits(model, graph)
    check_model_on_graph_device(model, graph)
    device = graph[EDGE].edge_index.device
    train = message_passing_edges(graph)
    test_ei = test[EDGE].edge_index[:, _test_labels(test, graph) > 0].to(device).long()
    users = test_ei[0].unique()
    if users.numel() == 0:  # no user to average over (0 would be a figure nobody earned)
        return {f"recall@{k}": math.nan, f"ndcg@{k}": math.nan}
    totals = torch.zeros(2, dtype=torch.float64)
    with eval_mode(model):  # a dropout (a user's own GNN) would rank at random
        score = _all_item_scores(model, graph)
        for start in range(0, users.numel(), batch_size):
            batch = users[start:start + batch_size]
            scores = score(batch)
            local = torch.full((num_users(graph),), -1, dtype=torch.long, device=device)
            local[batch] = torch.arange(batch.numel(), device=device)
            seen = local[train[0]] >= 0
            scores[local[train[0][seen]], train[1][seen]] = float("-inf")
            mine = local[test_ei[0]] >= 0
            rows, items = local[test_ei[0][mine]], test_ei[1][mine]
            if bool(torch.isneginf(scores[rows, items]).any()):  # a masked positive (scores are finite): named then
                _refuse_masked_positives(test_ei, train, num_items(graph))
            totals += torch.stack(_expected_recall_ndcg(scores, rows, items, k)).cpu()
    return {f"recall@{k}": float(totals[0]) / users.numel(), f"ndcg@{k}": float(totals[1]) / users.numel()}


def _refuse_masked_positives(positives: Tensor, train: Tensor, items: int) -> None:
    """Raises ``ValueError`` naming the test positives among the training interactions, once a batch found one:
    masked, they are never ranked, and were counted as misses (the training pairs given as the test set scored 0)."""
    masked = torch.isin(pair_keys(positives, items), pair_keys(train, items))
    first = positives[:, masked].t()[:3].tolist()
    raise ValueError(f"{int(masked.sum())} of the test positives are training interactions of the graph, e.g. "
                     f"{first}: they are masked from the ranking, so never recalled; evaluate on held-out pairs")


def _expected_recall_ndcg(scores: Tensor, rows: Tensor, items: Tensor, k: int) -> tuple[Tensor, Tensor]:
    r"""Sums over the rows of ``scores [B, I]`` (masked items ``-inf``) of Recall@K and NDCG@K, the test positives
    being ``(rows, items)``, every row holding one, expected over the orders of tied scores.

    A positive item with :math:`a` unmasked items scored above it and :math:`t` scored as it (itself included)
    takes each rank of :math:`a + 1 .. a + t` with chance :math:`1/t`: it is in the top K with chance
    :math:`(\min(a + t, K) - a)^+ / t`, and its expected gain is :math:`(D_{\min(a + t, K)} - D_a) / t` with
    :math:`D_m = \sum_{r \le m} 1/\log_2(r + 1)`. Only a positive scored at least the K-th best value can reach
    the top K; every item scored above it is then among the top K values, which count :math:`a`."""
    k = min(k, scores.size(1))
    values = scores.topk(k, dim=1).values
    kth, own = values[:, -1], scores[rows, items]
    above = (values[rows] > own[:, None]).sum(1)
    # A positive above the K-th value has its ties among the top values; one at it, anywhere in its row.
    at_kth = (scores == kth[:, None]).sum(1)
    ties = torch.where(own > kth[rows], (values[rows] == own[:, None]).sum(1), at_kth[rows]).clamp(min=1)
    reached = (own >= kth[rows]) & (own > float("-inf"))
    last = torch.minimum(above + ties, torch.tensor(k, device=scores.device))
    discount = torch.cat([scores.new_zeros(1, dtype=torch.float64), (1 / torch.arange(
        2, k + 2, device=scores.device, dtype=torch.float64).log2()).cumsum(0)])
    share = torch.where(reached, (last - above) / ties.double(), 0.0)
    gain = torch.where(reached, (discount[last] - discount[above]) / ties.double(), 0.0)
    positives = torch.bincount(rows, minlength=scores.size(0))
    recall = torch.bincount(rows, share, minlength=scores.size(0)) / positives
    ndcg = torch.bincount(rows, gain, minlength=scores.size(0)) / discount[positives.clamp(max=k)]
    return recall.sum(), ndcg.sum()


@torch.no_grad()
def mean_probability(model, graph: HeteroData, edges: Tensor) -> float:
    r"""Mean predicted probability :math:`\sigma(\hat y)` of ``edges`` (``[2, T]``), the model run on ``graph`` in
    eval mode: unlearning a request should lower it on the requested edges."""
    return _mean_probability(model, graph, edges, "the edge list")


@torch.no_grad()  # mi_bf's and mi_ng's too: they had run the model with autograd on
def _mean_probability(model, graph: HeteroData, edges: Tensor, what: str) -> float:
    """:func:`mean_probability`, its errors naming ``edges`` as ``what`` (the request, the negatives). In float64:
    a bfloat16 model's mean of its probabilities rounded to 0.5 (0.49955 in float64)."""
    return float(torch.sigmoid(_scores(model, graph, edges, what).double()).mean())


def mi_bf(model_before, graph_before, model_after, graph_after, request: Tensor) -> float:
    """MI-BF: mean :math:`\\sigma(\\hat y)` of the requested edges before / after unlearning (> 1 is good);
    infinite (NaN for 0/0) where the probabilities after underflowed to 0. ``request`` holds each pair once, edges of
    ``graph_before`` that ``graph_after`` no longer holds (a ``ValueError`` otherwise)."""
    request = validate_pairs(graph_after, request)  # a set: an edge listed twice weighed twice in the mean
    # the graphs swapped, or the request left in graph_after, gave a ratio without a word (qa104)
    for graph, holds, what in ((graph_before, False, "are not edges of graph_before: pass the graph the model was "
                                                     "trained on"),
                               (graph_after, True, "are still edges of graph_after: pass the graph after unlearning "
                                                   "(the result's graph)")):
        wrong = in_graph(graph, request) == holds
        if bool(wrong.any()):
            user, item = request[:, wrong.nonzero()[0, 0]].tolist()
            raise ValueError(f"mi_bf: {int(wrong.sum())} requested pairs, the first ({user}, {item}), {what}")
    before = _mean_probability(model_before, graph_before, request, "request")
    return _ratio(before, _mean_probability(model_after, graph_after, request, "request"))


def mi_ng(model_after, graph_after, request: Tensor, negatives: Tensor) -> float:
    """MI-NG: mean :math:`\\sigma(\\hat y)` of random negative pairs / of the requested edges after unlearning;
    infinite (NaN for 0/0) where the requested edges' probabilities underflowed to 0. ``request`` and ``negatives``
    hold each pair once.

    Raises:
        ValueError: pairs that are not ``[2, *]`` integer ids of the graph, a pair listed twice, or a negative that is
            a pair of ``graph_after`` (the model was trained on it) or a requested edge (the ratio was then 1).
    """
    request = validate_pairs(graph_after, request)  # a set: an edge listed twice weighed twice in the mean
    negatives = as_pairs(negatives, "negatives", "N").long()
    check_pair_ids(negatives, graph_after, "negatives")
    check_unique_pairs(negatives, num_items(graph_after), "negatives", "give each pair once")
    keys = pair_keys(negatives, num_items(graph_after))
    for what, pairs in (("pairs of graph_after, which the model was trained on", graph_after[EDGE].edge_index),
                        ("requested edges", request)):
        found = torch.isin(keys, pair_keys(pairs.to(keys.device), num_items(graph_after)))
        if bool(found.any()):
            user, item = negatives[:, found.nonzero()[0, 0]].tolist()
            raise ValueError(f"negatives holds {int(found.sum())} {what}, the first ({user}, {item}): give pairs the "
                             "model never saw (graphforget.verify.matched_non_members draws them)")
    negative = _mean_probability(model_after, graph_after, negatives, "negatives")
    return _ratio(negative, _mean_probability(model_after, graph_after, request, "request"))


def _ratio(numerator: float, denominator: float) -> float:
    """``numerator / denominator``, infinite (or NaN for 0/0) where every probability underflowed to 0: a model
    that pushed the requested edges' logits far down forgot them, which is no error."""
    if denominator == 0:
        return math.nan if numerator == 0 else math.inf
    return numerator / denominator


@torch.no_grad()
def prediction_distance(model_a, graph_a, model_b, graph_b, edges: Tensor) -> float:
    """L2 distance between two models' predicted probabilities on ``edges`` (``[2, T]``), each in eval mode; in
    float64 (in a bfloat16 model's own precision, its distance to its float32 self was 0.102, not 0.031)."""
    pa = torch.sigmoid(_scores(model_a, graph_a, edges, "the edge list").double())
    pb = torch.sigmoid(_scores(model_b, graph_b, edges, "the edge list").double())
    # Each model's scores are on its graph's device (a GPU model against a CPU retrain): compared on the CPU.
    return float((pa.cpu() - pb.cpu()).norm())


def prediction_gap(distance: float, original_distance: float, num_pairs: int) -> float:
    """A method's :func:`prediction_distance` to Retrain as a share of the Original's, on ``num_pairs`` pairs; NaN
    where the Original's is within a few float32 rounding steps per pair: the Original is Retrain there (saturated
    probabilities), and a ratio to that distance is noise.

    Raises:
        ValueError: ``num_pairs`` is not a positive integer (-3 failed on a math domain error, 0 and 2.5 passed).
    """
    if not (is_integer(num_pairs) and num_pairs > 0):
        raise ValueError(f"prediction_gap: num_pairs must be a positive integer, got {num_pairs!r}")
    noise = 4 * torch.finfo(torch.float32).eps * math.sqrt(num_pairs)
    return distance / original_distance if original_distance > noise else math.nan


def parameter_distance(model_a, model_b) -> float:
    """L2 distance between the flattened parameters of two models of the same architecture.

    Raises:
        ValueError: the models' parameters differ in name or shape.
    """
    params_a, params_b = dict(model_a.named_parameters()), dict(model_b.named_parameters())
    shape_a, shape_b = ({name: list(p.shape) for name, p in params.items()} for params in (params_a, params_b))
    differ = sorted(name for name in shape_a.keys() | shape_b.keys() if shape_a.get(name) != shape_b.get(name))
    if differ:
        pairs = ", ".join(f"{name} {shape_a.get(name)} vs {shape_b.get(name)}" for name in differ)
        raise ValueError(f"the models' parameters differ (None: absent): {pairs}")
    # A Python sum: a model without parameters (scores from buffers) is at distance 0, not a TypeError. Model b's
    # parameters go to model a's device (a GPU model against a CPU retrain).
    return math.sqrt(sum(float(((params_a[n].detach() - params_b[n].detach().to(params_a[n].device)) ** 2).sum())
                         for n in params_a))
