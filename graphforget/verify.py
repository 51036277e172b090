"""Forgetting verification: evidence that a model no longer knows the edges it was asked to forget.

A request's edges (the *members*: the model was trained on them before the deletion) are compared with
*matched non-members*: for every requested edge ``(u, i)``, a pair ``(u, j)`` of the same user with an item
``j`` of similar popularity that ``u`` never had an edge with; where the deletion leaves the item ``i`` without an
edge and ``u`` with some (an item withdrawn), a pair ``(v, i)`` of the same item with a user of similar activity,
as an exact deletion leaves ``i``'s row untrained and it would score below any other item of ``u``'s (every item
request was found over-forgotten, a retrain's included). After a complete deletion the model should
treat the two sets alike: the same mean predicted probability, and a membership-inference attack that
cannot tell them apart (attack AUC 0.5). A model that still remembers the request scores its edges higher.

The mean probabilities (MI-BF, MI-NG) treat a requested edge as a positive interaction (implicit feedback,
the usual content of a deletion request). A model generalises as well as it memorises: after a retrain the
requested edges of a user's favourite genre still score above random items of the same popularity, so the
attack AUC of an exact deletion is often above 0.5. Compare a method's figures with those of a reference
retrain (``reference=``), not with 0.5 alone. A request of label-0 edges (explicit dislikes, the flipped labels
of the IFRU attack protocol) is one a model that memorised it scores *low*: given ``before`` (which holds the
labels) the attack reads the label-signed score, a loss threshold; without it every requested edge counts as a
positive, and an AUC below 0.5 is then the membership signal. Given the training ``objective``, an edge it reads no
term of (BPR's dislikes, which it never fits as such) counts as a positive too.

A model can also forget too much. A retrain has no reason to score a user's removed interactions *below* that
user's matched non-members (a real interaction is at least as predictable as a non-interaction of the same
popularity), so when an unlearned model does so significantly (``ForgettingReport.over_forgotten``: a
one-sided sign test over the matched pairs) an attacker who compares the user's items can read the deletion
off the scores, and the method has pushed the request further than an exact deletion would. The premise is a real
interaction's: poisoned or mislabelled edges (the flipped labels of the IFRU attack protocol) go against the rest
of the data, and an exact deletion scores them below their matches too (ML-100K, MF without L2, 5% flipped: two
Retrains had 56% and 57% of the votes below, p 3e-6 and 9e-7). For such requests compare with a reference retrain.
Nor does the premise hold for a user or item the request leaves fewer interactions than it removes, whose
interactions the test leaves out (``ForgettingReport.below_match``).

Given the model before the deletion, the report also flags a model that scores the request and its matches exactly
as that model does on the same graph (``ForgettingReport.unchanged``): it forgot nothing of the request, whatever its
graph lost; a method that changed nothing had been reported as any other. Given a reference (a Retrain), it flags a
model that forgot less than an exact deletion would (``ForgettingReport.under_forgotten``): the attack tells its
removed edges from their matches better than any Retrain would, at 95%.

No test data is used: the non-members are non-edges of the graph before the deletion, and the attack's
threshold is calibrated on half of them. Held-out pairs (validation and test interactions, which are no edges of
the training graph) are left out of them where the caller passes them (``exclude``, as ``forget``, ``verify`` and
the benchmark harness do): they are interactions the user had, and a test pair drawn as a non-member was scored, and
calibrated the attack (about a tenth of the matches on ML-100K).
"""
from __future__ import annotations

import contextlib
import functools
import logging
import math
from dataclasses import asdict, dataclass
from typing import Any, Callable, cast

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from .config import eval_mode, is_integer, seeded, uniform
from .data.interactions import (EDGE, as_pairs, check_interactions, check_model_fits, check_pairs_in_range,
                                edge_positions, message_passing_edges, num_items, num_users, on_device, pair_keys,
                                pair_scores, validate_pairs)
from .io import to_jsonable
from .metrics import _ratio, auc, auc_interval, check_binary_labels

__all__ = ["FEWEST_VOTES", "ForgettingReport", "OVER_FORGETTING_LEVEL", "matched_non_members", "membership_attack",
           "sign_test", "verify_forgetting"]

log = logging.getLogger(__name__)

#: Random draws per pair in one round of the sampling stage of :func:`matched_non_members`, and rounds.
_DRAWS, _ROUNDS = 16, 3
#: Most elements of one dense ``[pairs, items]`` block in the exact stage of :func:`matched_non_members`.
_DENSE_LIMIT = 1 << 24
#: ``ForgettingReport.over_forgotten``: the level of the one-sided sign test (:func:`sign_test`). A one-user
#: request of 20 interactions is flagged when at least 18 score below their matches.
OVER_FORGETTING_LEVEL = 1e-3
#: The fewest sign-test votes whose p-value can fall under :data:`OVER_FORGETTING_LEVEL` (every vote below: 2^-n);
#: with fewer the test cannot flag the request, and the report says so (``votes``).
FEWEST_VOTES = math.ceil(-math.log2(OVER_FORGETTING_LEVEL))


# ----------------------------------------------------------------------------------------------- input checks

def _check_pairs(graph: HeteroData, pairs, what: str) -> Tensor:
    """``pairs`` as a non-empty ``[2, R]`` long CPU tensor of in-range, distinct (user, item) ids.

    Raises:
        ValueError: for a bad shape or dtype, an empty tensor, unknown ids or duplicated pairs.
    """
    try:
        pairs = validate_pairs(graph, pairs)
    except ValueError as error:
        raise ValueError(f"{what}: {error} (the graph has {num_users(graph)} users and {num_items(graph)} items)"
                         ) from None
    if pairs.size(1) == 0:
        raise ValueError(f"{what} is empty: give at least one (user, item) pair")
    return pairs.cpu()


def _check_graph(graph: HeteroData, what: str) -> None:
    """:func:`~graphforget.data.check_interactions`, and labels of 0 or 1 (a NaN read as no interaction and lost its
    edge's vote; ratings 2 and 5 read as two likes), naming ``what`` graph: a malformed one failed deep inside with an
    AttributeError or IndexError."""
    try:
        check_interactions(graph)
    except ValueError as error:
        raise ValueError(f"{what}: {error}") from None
    label = graph[EDGE].edge_label
    if label.is_floating_point() and not bool(torch.isfinite(label).all()):
        raise ValueError(f"{what}: edge_label holds {int((~torch.isfinite(label)).sum())} NaN or infinite values")
    check_binary_labels(label, f"{what}: edge_label")


def _check_model_graph(pair, what: str, graph: HeteroData) -> tuple[torch.nn.Module, HeteroData]:
    """Unpacks a ``(model, graph)`` argument; checks that the model fits its graph, which has ``graph``'s
    node counts."""
    if not (isinstance(pair, (tuple, list)) and len(pair) == 2 and isinstance(pair[1], HeteroData)):
        raise ValueError(f"{what} must be a (model, graph) pair, got {type(pair).__name__}")
    _check_graph(pair[1], f"the {what} graph")
    check_model_fits(pair[0], pair[1])
    _check_same_nodes(graph, pair[1], what)
    return pair[0], pair[1]


def _check_same_nodes(graph: HeteroData, other: HeteroData, what: str) -> None:
    """Raises ``ValueError`` when ``other`` has other node counts than ``graph``."""
    mine, theirs = (num_users(graph), num_items(graph)), (num_users(other), num_items(other))
    if mine != theirs:
        raise ValueError(f"the {what} graph has {theirs[0]} users and {theirs[1]} items, the model's graph "
                         f"{mine[0]} and {mine[1]}: they must share the id space")


def _check_fraction(name: str, value: float) -> float:
    try:
        inside = 0 < value < 1
    except TypeError:  # a string or None: named here, not a comparison error from Python
        inside = False
    if not inside:
        raise ValueError(f"{name} must be in (0, 1), got {value!r}")
    return float(value)


# ---------------------------------------------------------------------------------------- matched non-members

def matched_non_members(graph: HeteroData, request, seed: int = 0, num_buckets: int = 10,
                        exclude=None) -> Tensor:
    """One non-member pair of the same user and of a similarly popular item for every requested edge.

    Items are sorted by degree (their number of observed edges in ``graph``) and cut into ``num_buckets``
    buckets of equal size (degree deciles by default). For a requested edge :math:`(u, i)` the match is
    :math:`(u, j)` with :math:`j` drawn uniformly among the items of :math:`i`'s bucket that :math:`u` has
    no edge with in ``graph`` (observed interactions and sampled negatives alike) and that no other match
    of :math:`u` took; where that bucket holds no such item, among those of the nearest buckets that do.
    The matches are therefore distinct pairs, none of them an edge of ``graph``. A requested edge whose item the
    deletion leaves without any edge (of any label) while its user keeps one is matched on the item's side, the roles
    swapped: :math:`(v, i)` with :math:`v` drawn among the users of :math:`u`'s activity bucket without an edge with
    :math:`i` (an exact deletion leaves :math:`i`'s row untrained: against :math:`u`'s other items it would score low
    whatever the method). The other edges are matched as in a request without such edges, never with an item the
    deletion leaves without any edge (for the same reason; one withdrawn with its only user too). Nor with a pair of
    ``exclude`` (held-out interactions).

    A user with fewer free items than requested edges (who interacted with every item) cannot be matched
    for all of them, nor an item withdrawn whole for more of its pairs than there are users without it (ML-100K's
    item 50: 474 pairs, 469 such users): the pairs left over are dropped, with a logged warning saying which, and the
    result is shorter than the request by their count (``ForgettingReport.unmatched``).

    Sampling is vectorised: a few rounds of rejection sampling within the bucket, then an exact pass over
    the remaining pairs' dense ``[pairs, items]`` availability (chunked). Deterministic for a ``seed``.

    Args:
        graph: the interactions *before* the deletion (every requested pair must be one of its edges).
        request: ``[2, R]`` integer (user, item) ids of the requested edges.
        seed: seed of the draws.
        num_buckets: number of degree buckets (at most the number of items is used).
        exclude: ``[2, X]`` (user, item) pairs never drawn as matches, e.g. the held-out validation and test pairs
            (``None``: none).

    Returns:
        ``[2, M]`` (user, item) pairs, ``M <= R``, on the graph's device; column ``k`` matches the
        ``k``-th requested edge that could be matched, in request order.

    Raises:
        ValueError: for a request that is not ``[2, R]`` integer ids, an empty one, ids out of range,
            duplicated pairs, pairs that are not edges of ``graph`` (the remaining graph passed by mistake),
            a ``num_buckets`` that is not a positive integer, or ``exclude`` that is not ``[2, X]`` integer ids of
            the graph's nodes.
    """
    pairs = _check_pairs(graph, request, "request")
    return _matched(graph, pairs, seed, num_buckets, _check_exclude(graph, exclude))[0]


def _check_exclude(graph: HeteroData, exclude) -> Tensor | None:
    """``exclude`` as ``[2, X]`` CPU ids of ``graph``'s nodes (a pair may repeat), ``None`` kept."""
    if exclude is None:
        return None
    exclude = as_pairs(exclude, "exclude", "X")
    check_pairs_in_range(exclude, num_users(graph), num_items(graph), "exclude", "X")
    return exclude.cpu().long()


def _matched(graph: HeteroData, pairs: Tensor, seed: int, num_buckets: int,
             exclude: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """:func:`matched_non_members` of a checked CPU request: ``(matched [2, M]`` on the graph's device,
    ``kept [R]`` bool mask of the requested edges that got a match, ``positions [R]`` of the requested edges
    in ``graph``)."""
    if not is_integer(num_buckets) or num_buckets < 1:  # a float or a bool failed inside torch
        raise ValueError(f"num_buckets must be a positive integer, got {num_buckets!r}")
    try:
        positions = edge_positions(graph, pairs).cpu()
    except ValueError as error:
        raise ValueError(f"{error}: pass the graph before the deletion, which holds every requested edge") from None
    # The pairs of a withdrawn item are matched on its side alone: on the user's, they would take items that their
    # users' other pairs could match (an edge left unmatched, or matched a bucket further, though an item was free).
    # Nor does an item the deletion leaves without an edge match another pair (one withdrawn with its only user too):
    # its row is left untrained, as for its own pairs.
    emptied = _left_without_edges(graph, pairs, 1)
    by_item = emptied & ~_left_without_edges(graph, pairs, 0)  # withdrawn whole, its user keeping an edge
    user_side = (~by_item).nonzero().flatten()
    withdrawn = torch.zeros(num_items(graph), dtype=torch.bool)
    withdrawn[pairs[1, emptied]] = True
    matched, kept_of_user_side = _match(graph, pairs[:, user_side], seed, num_buckets, withdrawn, exclude)
    kept = torch.zeros_like(by_item)
    kept[user_side[kept_of_user_side]] = True
    if by_item.any():
        matched, kept = _matched_by_item(graph, pairs, matched, kept, by_item, seed, num_buckets, exclude)
    if matched.size(1) < pairs.size(1):
        log.warning("%d of %d requested edges have no matched non-member (verify's sign test leaves them out, its "
                    "other figures count them): %s",
                    pairs.size(1) - matched.size(1), pairs.size(1), _why_unmatched(kept, by_item))
    return matched.to(graph[EDGE].edge_index.device), kept, positions


def _why_unmatched(kept: Tensor, by_item: Tensor) -> str:
    """Why the requested edges outside ``kept`` got no match: on the user's side, or (an item withdrawn whole, matched
    on its side) too few users without the item, each match another such user."""
    reasons = []
    if bool((~kept & ~by_item).any()):
        reasons.append(f"{int((~kept & ~by_item).sum())} whose users have fewer items without an edge (sampled "
                       "negatives included) or an excluded pair and not withdrawn whole than requested edges, each "
                       "match another such item")
    if bool((~kept & by_item).any()):
        reasons.append(f"{int((~kept & by_item).sum())} of items withdrawn whole, which fewer users are without than "
                       "the item has removed pairs, each match another such user")
    return "; ".join(reasons)


def _left_and_removed(graph: HeteroData, pairs: Tensor, row: int,
                      interactions: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """``([R], [R])``: how many edges the deletion of ``pairs`` (distinct edges of ``graph``) leaves each one's user
    (``row`` 0) or item (1), and how many it removes from it; with ``interactions`` (``[R]``: whether each pair is
    labelled above 0.5), counting interactions only."""
    count = num_users(graph) if row == 0 else num_items(graph)
    edges, removed = graph[EDGE].edge_index[row].cpu(), pairs[row]
    if interactions is not None:
        edges, removed = edges[graph[EDGE].edge_label.cpu() > 0.5], removed[interactions]
    gone = torch.bincount(removed, minlength=count)
    return (torch.bincount(edges, minlength=count) - gone)[pairs[row]], gone[pairs[row]]


def _left_without_edges(graph: HeteroData, pairs: Tensor, row: int) -> Tensor:
    """``[R]`` whether the deletion of ``pairs`` leaves each one's user (``row`` 0) or item (1) without any edge, of
    any label: withdrawn whole."""
    return _left_and_removed(graph, pairs, row)[0] == 0


def _stripped(graph: HeteroData, pairs: Tensor, row: int, interactions: Tensor) -> Tensor:
    """``[R]`` whether the deletion of ``pairs`` leaves each one's user (``row`` 0) or item (1) fewer interactions
    than it removes from it (``interactions [R]``: whether each pair is one): none, with label-0 edges kept, or a
    few of many."""
    left, removed = _left_and_removed(graph, pairs, row, interactions)
    return left < removed


def _matched_by_item(graph: HeteroData, pairs: Tensor, matched: Tensor, kept: Tensor, by_item: Tensor, seed: int,
                     num_buckets: int, exclude: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """``(matched, kept)`` of :func:`_match` on the other pairs, with the pairs of ``by_item`` matched on their
    item's side: in the graph with users and items swapped (the other pairs' matches, outside the withdrawn items,
    cannot be drawn again)."""
    choice = torch.full_like(pairs, -1)
    choice[:, kept] = matched
    store = graph[EDGE]
    swapped = HeteroData()
    swapped["user"].num_nodes, swapped["item"].num_nodes = num_items(graph), num_users(graph)
    swapped[EDGE].edge_index = store.edge_index.cpu().flip(0)
    if "observed" in store:
        swapped[EDGE].observed = store.observed.cpu()
    positions = by_item.nonzero().flatten()
    flipped = None if exclude is None else exclude.flip(0)
    item_matched, item_kept = _match(swapped, pairs[:, positions].flip(0), seed, num_buckets, blocked=flipped)
    choice[:, positions[item_kept]] = item_matched.flip(0)
    kept = choice[0] >= 0
    return choice[:, kept], kept


def _degree_buckets(graph: HeteroData, num_buckets: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Equal-size buckets of items sorted by degree (ties in id order).

    Returns ``(bucket [I], order [I], start [B], size [B])``: each item's bucket, the items by degree
    rank, and where each bucket's items begin in ``order`` and how many there are.
    """
    count = num_items(graph)
    degree = torch.bincount(message_passing_edges(graph)[1].cpu(), minlength=count)
    order = torch.sort(degree, stable=True).indices
    buckets = min(num_buckets, count)
    bucket_of_rank = torch.arange(count) * buckets // count
    bucket = torch.empty(count, dtype=torch.long)
    bucket[order] = bucket_of_rank
    size = torch.bincount(bucket_of_rank, minlength=buckets)
    return bucket, order, torch.cumsum(size, 0) - size, size


def _match(graph: HeteroData, pairs: Tensor, seed: int, num_buckets: int, excluded: Tensor | None = None,
           blocked: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """The sampling of :func:`matched_non_members` on a checked CPU request, among the items outside ``excluded``
    (``[I]`` bool) and the pairs outside ``blocked`` (``[2, X]``): the matched ``[2, M]`` pairs and the ``[R]`` mask of
    the requested edges they match, on the CPU."""
    edges = _edges_of_users(graph, pairs[0])  # only the requested users' edges can block a match
    if blocked is not None:  # as edges of their users: neither stage draws them
        edges = torch.cat([edges, _of_users(blocked, pairs[0], num_users(graph))], 1)
    edge_keys = pair_keys(edges, num_items(graph)).sort().values
    bucket, order, start, size = _degree_buckets(graph, num_buckets)
    excluded = torch.zeros_like(bucket, dtype=torch.bool) if excluded is None else excluded
    gen = seeded(seed)
    choice = torch.full((pairs.size(1),), -1, dtype=torch.long)  # -1: pending, -2: no free item, else the item
    for _ in range(_ROUNDS):
        pending = (choice == -1).nonzero().flatten()
        if pending.numel() == 0:
            break
        taken = _taken_keys(pairs, choice, bucket.numel())
        candidate = _draw_in_bucket(pairs[:, pending], bucket, order, start, size, edge_keys, taken, excluded, gen)
        _accept(pairs, choice, pending, candidate, bucket.numel())
    _nearest_free(pairs, choice, edges, bucket, excluded, gen, num_users(graph))
    keep = choice >= 0
    return torch.stack([pairs[0, keep], choice[keep]]), keep


def _edges_of_users(graph: HeteroData, users: Tensor) -> Tensor:
    """The ``[2, E']`` edges of ``graph`` (on the CPU) whose user is one of ``users``."""
    return _of_users(graph[EDGE].edge_index.cpu(), users, num_users(graph))


def _of_users(pairs: Tensor, users: Tensor, count: int) -> Tensor:
    """The ``[2, P']`` pairs of ``pairs`` whose user is one of ``users`` (``count`` users in all)."""
    wanted = torch.zeros(count, dtype=torch.bool)
    wanted[users] = True
    return pairs[:, wanted[pairs[0]]]


def _taken_keys(pairs: Tensor, choice: Tensor, count: int) -> Tensor:
    """Sorted pair keys of the matches made so far."""
    done = choice >= 0
    return (pairs[0, done] * count + choice[done]).sort().values


def _draw_in_bucket(pairs: Tensor, bucket: Tensor, order: Tensor, start: Tensor, size: Tensor,
                    edge_keys: Tensor, taken: Tensor, excluded: Tensor, gen: torch.Generator) -> Tensor:
    """One candidate item per pair ``[P]``: the first free one of :data:`_DRAWS` uniform draws from the
    requested item's bucket; -1 where none was free (an edge of the user, a match already taken, or excluded)."""
    mine = bucket[pairs[1]]
    offset = (uniform((pairs.size(1), _DRAWS), gen) * size[mine, None]).long()
    candidate = order[start[mine, None] + torch.minimum(offset, size[mine, None] - 1)]
    keys = pairs[0, :, None] * bucket.numel() + candidate
    free = ~_contains(edge_keys, keys) & ~_contains(taken, keys) & ~excluded[candidate]
    first = free.to(torch.uint8).argmax(1, keepdim=True)
    return torch.where(free.any(1), candidate.gather(1, first).squeeze(1), -1)


def _contains(sorted_keys: Tensor, keys: Tensor) -> Tensor:
    """Whether each of ``keys`` is in ``sorted_keys`` (sorted ascending): a binary search, no re-sort."""
    if sorted_keys.numel() == 0:
        return torch.zeros_like(keys, dtype=torch.bool)
    slot = torch.searchsorted(sorted_keys, keys).clamp(max=sorted_keys.numel() - 1)
    return sorted_keys[slot] == keys


def _accept(pairs: Tensor, choice: Tensor, pending: Tensor, candidate: Tensor, count: int) -> None:
    """Writes ``candidate`` into ``choice`` at ``pending``, where it is an item and the first pending pair
    (in request order) to pick that (user, item) pair; the others stay pending."""
    found = candidate >= 0
    index, item = pending[found], candidate[found]
    sorted_keys, position = torch.sort(pairs[0, index] * count + item, stable=True)
    first = torch.ones_like(sorted_keys, dtype=torch.bool)
    first[1:] = sorted_keys[1:] != sorted_keys[:-1]
    winner = position[first]
    choice[index[winner]] = item[winner]


def _nearest_free(pairs: Tensor, choice: Tensor, edges: Tensor, bucket: Tensor, excluded: Tensor,
                  gen: torch.Generator, users: int) -> None:
    """The exact stage: every pending pair gets a uniformly random free item of the nearest buckets that
    hold one, or -2 when its user has none left. Chunks of at most :data:`_DENSE_LIMIT` dense elements; every
    pass settles at least one pair, so the loop ends."""
    rows = max(1, _DENSE_LIMIT // bucket.numel())
    while True:
        pending = (choice == -1).nonzero().flatten()[:rows]
        if pending.numel() == 0:
            return
        candidate = _nearest_free_chunk(pairs, choice, pending, edges, bucket, excluded, gen, users)
        choice[pending[candidate < 0]] = -2
        _accept(pairs, choice, pending, candidate, bucket.numel())


def _nearest_free_chunk(pairs: Tensor, choice: Tensor, pending: Tensor, edges: Tensor, bucket: Tensor,
                        excluded: Tensor, gen: torch.Generator, users: int) -> Tensor:
    """One item per pending pair (-1 where its user has no free item): the argmin of the bucket distance
    plus a uniform random number in ``[0, 1)`` over the items outside ``excluded`` that its user has neither an
    edge nor a match with."""
    user, item = pairs[:, pending]
    distinct, row = torch.unique(user, return_inverse=True)
    local = torch.full((users,), -1, dtype=torch.long)
    local[distinct] = torch.arange(distinct.numel())
    blocked = torch.zeros(distinct.numel(), bucket.numel(), dtype=torch.bool)
    done = choice >= 0
    for owner, target in (edges, (pairs[0, done], choice[done])):
        mine = local[owner] >= 0
        blocked[local[owner[mine]], target[mine]] = True
    cost = (bucket[None, :] - bucket[item][:, None]).abs().double()
    cost += torch.rand(cost.shape, generator=gen, dtype=torch.double)
    cost[blocked[row] | excluded] = math.inf
    best = cost.min(1)
    return torch.where(torch.isfinite(best.values), best.indices, -1)


# ------------------------------------------------------------------------------------------------ the attack

@contextlib.contextmanager
def _scoring(model: torch.nn.Module):
    """Eval mode and no gradients inside; every submodule's training flag restored afterwards."""
    with eval_mode(model), torch.no_grad():
        yield


def _scores(model: torch.nn.Module, graph: HeteroData, edges: Tensor) -> Tensor:
    """Logits ``[E]`` of ``edges`` (``[2, E]``) by ``model`` run on ``graph`` in eval mode, on the CPU, in float64
    (the probabilities and their means that the report takes of them: a bfloat16 model's rounded to 3 digits).

    Raises:
        ValueError: when the model returns another shape or non-finite scores.
    """
    parameter = next(model.parameters(), None)
    if parameter is not None:  # the model before, on the CPU, scored on a result's graph on a GPU (qa177)
        graph = on_device(graph, parameter.device)
    with _scoring(model):
        scores = model(graph, edges.to(graph[EDGE].edge_index.device)).detach().cpu()
        return pair_scores(scores, edges.size(1)).double()


def membership_attack(model: torch.nn.Module, graph: HeteroData, members, non_members,
                      calibration_fraction: float = 0.5, seed: int = 0, fpr: float = 0.1, *,
                      member_labels=None, non_member_labels=None) -> dict[str, Any]:
    r"""A score-threshold membership-inference attack calibrated on non-members only.

    The attack's statistic is the model's score (logit) :math:`s_{ui} = \hat y_{ui}` of a pair on ``graph``;
    it calls a pair a member when :math:`s_{ui} > \tau`. With labels :math:`y_{ui} \in \{0, 1\}` (a
    non-member takes the label of the requested edge it is matched with) the statistic is the label-signed
    score :math:`s_{ui} = (2 y_{ui} - 1)\,\hat y_{ui}`, a decreasing function of the BCE loss
    :math:`\log(1 + e^{-s_{ui}})`: a loss-threshold attack, which also finds memorised label-0 edges
    (explicit dislikes); with every label 1 the two coincide. The non-members are split at random (seeded:
    ``torch.randperm(N)`` from ``torch.Generator().manual_seed(seed)``; the first
    :math:`n_c = \mathrm{round}(\text{calibration\_fraction} \cdot N)`, kept within :math:`[1, N-1]`,
    calibrate). The threshold fixes the false-positive rate on the calibration half: :math:`\tau` is the
    :math:`(k+1)`-th largest calibration score with :math:`k = \min(\lfloor \text{fpr} \cdot n_c \rfloor,
    n_c - 1)`, so at most a share ``fpr`` of calibration non-members lies above it.

    Why this rule: the threshold never looks at the members, so the true-positive rate measured on them is
    not fitted to them (maximising balanced accuracy over members would be optimistic on small requests);
    it is what an auditor holding only known non-members can do; and a fixed low false-positive rate is how
    membership attacks are best compared (Carlini et al., "Membership Inference Attacks From First
    Principles", IEEE S&P 2022). The evaluation half is independent of the threshold: its measured ``fpr``
    checks the calibration.

    Args:
        model: the recommender, scored in eval mode without gradients (its modes are restored).
        graph: the graph the model is run on (its own training graph).
        members: ``[2, R]`` pairs the model may have been trained on.
        non_members: ``[2, N]`` pairs it was not trained on, ``N >= 2``.
        calibration_fraction: share of the non-members that calibrates, in ``(0, 1)``.
        seed: seed of the split.
        fpr: target false-positive rate of the threshold, in ``(0, 1)``.
        member_labels: optional ``[R]`` 0/1 labels of the members (with ``non_member_labels``).
        non_member_labels: optional ``[N]`` 0/1 labels of the non-members.

    Returns:
        ``mia_auc`` (AUC of the member scores against the evaluation non-members'; 0.5: indistinguishable),
        ``auc_interval`` (its 95% interval, :func:`~graphforget.metrics.auc_interval`),
        ``tpr_at_fpr`` (share of members above :math:`\tau`), ``fpr`` (share of evaluation non-members
        above it), ``accuracy`` (balanced: :math:`(\mathrm{TPR} + 1 - \mathrm{FPR}) / 2`), ``threshold``,
        ``target_fpr`` and the counts ``members``, ``calibration``, ``evaluation``.

    Raises:
        ValueError: for pairs that are not ``[2, *]`` integer ids, empty ones, ids out of range, fewer than
            two non-members, fractions outside ``(0, 1)``, labels given for one side only or not 0/1 of
            the pairs' count, a non-member that is an edge of ``graph`` or a member too, or a model with
            non-finite scores.
    """
    fraction, fpr = _check_fraction("calibration_fraction", calibration_fraction), _check_fraction("fpr", fpr)
    check_model_fits(model, graph)
    edges, sign, requested = _attack_inputs(graph, members, non_members, member_labels, non_member_labels)
    statistic = _scores(model, graph, edges).double() * sign
    return _attack(statistic[:requested], statistic[requested:], fraction, seed, fpr)


def _attack_inputs(graph: HeteroData, members, non_members, member_labels, non_member_labels
                   ) -> tuple[Tensor, Tensor, int]:
    """The checked inputs of :func:`membership_attack`: ``edges [2, R + N]`` (members, then non-members), the
    signs ``[R + N]`` of the statistic (all 1 without labels) and the member count ``R``."""
    members = _check_pairs(graph, members, "members")
    non_members = _check_pairs(graph, non_members, "non_members")
    if non_members.size(1) < 2:
        raise ValueError(f"membership_attack needs at least 2 non-members (one to calibrate, one to evaluate), "
                         f"got {non_members.size(1)}")
    if (member_labels is None) != (non_member_labels is None):
        raise ValueError("give labels for both members and non-members, or for neither")
    labels = torch.ones(members.size(1) + non_members.size(1), dtype=torch.double)
    if member_labels is not None:
        labels = torch.cat([_check_labels(member_labels, members.size(1), "member_labels"),
                            _check_labels(non_member_labels, non_members.size(1), "non_member_labels")])
    _check_non_members(graph, members, non_members)
    return torch.cat([members, non_members], 1), 2 * labels - 1, members.size(1)


def _check_non_members(graph: HeteroData, members: Tensor, non_members: Tensor, advice: str = (
        "give pairs the model was not trained on (matched_non_members draws them)")) -> None:
    """Raises ``ValueError`` when a non-member is an edge of ``graph`` (the model was trained on it) or a member
    too: the attack would score it as a non-member and understate what the model remembers."""
    count = num_items(graph)
    keys = pair_keys(non_members, count)
    for what, pairs in (("edges of the graph the model is run on", _edges_of_users(graph, non_members[0])),
                        ("members too", members)):
        found = _contains(pair_keys(pairs, count).sort().values, keys)
        if bool(found.any()):
            user, item = non_members[:, found.nonzero()[0, 0]].tolist()
            raise ValueError(f"non_members holds {int(found.sum())} {what}, the first ({user}, {item}): {advice}")


def _check_labels(labels, count: int, what: str) -> Tensor:
    """``labels`` as a ``[count]`` float64 CPU tensor of 0/1 values."""
    labels = torch.as_tensor(labels).detach().cpu().double()
    if labels.shape != (count,):
        raise ValueError(f"{what} must have shape [{count}], got {list(labels.shape)}")
    check_binary_labels(labels, what)
    return labels


def _calibrating(fraction: float, count: int) -> int:
    """How many of ``count >= 2`` non-members calibrate the attack: a ``fraction`` of them, at least 1, leaving 1."""
    return min(max(round(fraction * count), 1), count - 1)


def _split(count: int, fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """The positions of the ``count >= 2`` non-members that calibrate the attack, and of those it is evaluated on."""
    permutation = torch.randperm(count, generator=seeded(seed))
    calibrating = _calibrating(fraction, count)
    return permutation[:calibrating], permutation[calibrating:]


def _attack(member: Tensor, non_member: Tensor, fraction: float, seed: int, fpr: float) -> dict[str, Any]:
    """:func:`membership_attack` on scores: ``member [R]``, ``non_member [N]`` (``N >= 2``)."""
    count = non_member.numel()
    calibration, evaluation = (non_member[positions] for positions in _split(count, fraction, seed))
    calibrating = calibration.numel()
    # Calibration non-members allowed above the threshold; the tolerance reads 0.29 * 100 as 29, and the cap keeps
    # an fpr within it of 1 on the lowest calibration score.
    above = min(math.floor(fpr * calibrating + 1e-9), calibrating - 1)
    threshold = float(calibration.sort(descending=True).values[above])
    tpr = float((member > threshold).double().mean())
    measured_fpr = float((evaluation > threshold).double().mean())
    labels = torch.cat([torch.ones(member.numel()), torch.zeros(evaluation.numel())])
    value = auc(torch.cat([member, evaluation]), labels)
    return {"mia_auc": value, "auc_interval": auc_interval(value, member.numel(), evaluation.numel()),
            "tpr_at_fpr": tpr, "fpr": measured_fpr,
            "accuracy": (tpr + 1 - measured_fpr) / 2, "threshold": threshold, "target_fpr": fpr,
            "members": member.numel(), "calibration": calibrating, "evaluation": count - calibrating}


# ------------------------------------------------------------------------------------------------ the report

@dataclass
class ForgettingReport:
    """The forgetting figures of one model for one request (see :func:`verify_forgetting`).

    Args:
        request_edges: number of requested edges :math:`|D_r|`.
        matched: requested edges with a matched non-member (the non-member count).
        unmatched: requested edges without one (their users have fewer items without an edge than requested edges,
            or their item, withdrawn whole, has fewer users without it than removed pairs); never silent. The sign
            test (``below_match``, ``over_forgetting_p``), which compares each edge with its match, leaves them out;
            the probabilities, MI-BF, MI-NG and the attack count them among the requested edges.
        in_graph: requested edges still in the model's graph (0 after a deletion).
        request_probability: mean :math:`\\sigma(\\hat y)` of the requested edges, the model on its graph.
        non_member_probability: the same for the matched non-members.
        mi_bf: MI-BF, mean :math:`\\sigma(\\hat y)` of the requested edges before / after (> 1: lowered);
            ``None`` without the model before the deletion.
        mi_ng: MI-NG, ``non_member_probability / request_probability`` (about 1 or more: forgotten, on a request of
            interactions). Both ratios count every requested edge as a positive, as the paper's implicit feedback
            does, so they read the other way on label-0 edges (dislikes), which a model that remembers scores low:
            on one ML-100K user's 306 dislikes an unchanged MF read MI-NG 1.32 and MI-BF 1.00, two Retrains 1.03-1.04
            and 0.43 (a QA probe), and on ML-100K's 2% random requests an unchanged MF read MI-NG 0.95-1.00 and a
            Retrain 0.94-1.00 over 10 seeds. Read the attack there, which signs the scores by the labels (attack AUC
            0.67-0.70 against 0.56-0.60 on those requests).
        mia_auc: membership-inference attack AUC (:func:`membership_attack`), evaluated on the non-members the
            calibration leaves; NaN, as the attack's other figures, where that is fewer than 2 (up to 3 matched
            non-members at the default ``calibration_fraction``): one can only give 0, 0.5 or 1.
        mia_auc_interval: its 95% interval (:func:`~graphforget.metrics.auc_interval`), ``(low, high)``: on few
            evaluated non-members an AUC says little (0.855 on 2,654 members and 4 non-members: 0.58 to 0.96); ``None``
            where ``mia_auc`` is NaN.
        mia_tpr: the attack's true-positive rate at the calibrated threshold.
        mia_fpr: its false-positive rate on the evaluation non-members (about ``target_fpr``).
        mia_accuracy: its balanced accuracy at the threshold (0.5: chance).
        target_fpr: the false-positive rate the threshold was calibrated for.
        mia_statistic: ``"score"`` (every requested edge labelled 1, or labels unknown: no ``before``) or
            ``"loss"`` (the label-signed score of a request holding label-0 edges, see
            :func:`membership_attack`).
        before_mia_auc: the attack AUC of the model before the deletion (how much there was to forget);
            ``None`` without it.
        below_match: share of the requested interactions (label 1) that score below their matched non-member,
            ties left out (0.5: as many above as below; NaN without a matched interaction). The interactions of an
            item the request withdraws whole vote once, by their summed difference: they share the item's row, which
            an exact deletion leaves untrained, so they fall above or below their matches together, by chance; so do
            those of a user withdrawn whole (a request of one whole user is one vote: never flagged). Those of a user
            or item the request leaves fewer interactions than it removes (none, its label-0 edges kept, or a few of
            many) do not vote: its row, retrained mostly on what is not like them, scores them below their matches
            under an exact deletion too (40 ML-100K users' likes removed, none or one kept each: a Retrain had 78% and
            80% of those users below, flagged when each user voted). ``below_match`` is the share of the votes.
        over_forgetting_p: the one-sided :func:`sign_test` p-value of that count (small: the requested
            interactions score below comparable items of the same users more often than chance allows).
        over_forgotten: ``over_forgetting_p < OVER_FORGETTING_LEVEL`` (1e-3): the deletion is readable off the
            scores, pushed further than a retrain would (see the module's docstring).
        votes: the sign test's votes (ties left out). Under :data:`FEWEST_VOTES` (10) no count reaches the level:
            ``over_forgotten`` is False whatever the scores (a request of a few whole users), and the report's table
            says "cannot tell"; read the attack's figures beside a reference's.
        unchanged: with ``before``, whether the model scores every requested edge and its match exactly as the model
            before the deletion does on the same graph: the model forgot nothing of the request, whatever its graph
            lost (a FineTune at a learning rate of 1e-30 had been reported as any other, and passed ``verify
            --strict``; a QA probe); ``None`` without ``before``, or where both score every pair 0, which tells
            nothing (a SimGCL's users left without an edge, in any model; the table says "cannot tell"). Only a model
            that changed nothing is caught: one that moved a little (a FineTune at 1e-6) is not, and no figure here
            says how much moving is enough without a reference (``reference``, ``verify --retrain``).
        seed: seed of the matching and of the calibration split.
        reference: the same figures for a reference model (a Retrain) on the same request and non-members.
        reference_distance: with ``reference``, the root mean square of :math:`\\sigma(\\hat y) - \\sigma(\\hat
            y^{\\,\\mathrm{ref}})` over the requested edges and their matched non-members (0: the reference's
            predictions); ``None`` without it.
        reference_gap: ``reference_distance`` over the same distance of the model before the deletion (0: as the
            reference, 1: no closer to it than before the deletion); ``None`` without ``reference`` or ``before``.
        reference_auc_floor: with ``reference``, the lowest attack AUC an exact deletion gives at 95%: the lower end
            of the reference's interval or, for a request withdrawing users or items whole, the 2.5% quantile of the
            AUC over random directions of their rows, whichever is lower (as ``reference_auc_ceiling``).
        reference_auc_ceiling: with ``reference``, the highest attack AUC an exact deletion gives at 95%: the upper
            end of the reference's interval or, where the request leaves users or items whose rows a Retrain leaves
            at a random start (withdrawn whole), the 97.5% quantile of the AUC over random directions of those rows,
            whichever is higher (see :func:`verify_forgetting`); ``None`` without a reference or an attack, or for
            such a request on a reference whose scores are not dot products of its ``embed`` rows.
        under_forgotten: with ``reference``, whether the attack tells the requested edges from their matches better
            on this model than an exact deletion would: ``mia_auc_interval`` wholly above ``reference_auc_ceiling``
            (both on the same pairs, whose AUCs move together, so the comparison is conservative); ``None`` where
            there is no ceiling. False where the interval spans the ceiling too, which the report's table shows as
            "cannot tell": on few edges the attack cannot tell a model that forgot nothing from an exact deletion
            (a FineTune at a learning rate of 1e-7 on one ML-100K user's 27 edges: 0.687 [0.493, 0.826], the ceiling
            0.618, ``reference_gap`` 1.00). The distance cannot tell it alone either: a Retrain from another seed can
            be further from the reference than the model before was, where the request moved few predictions (a
            FineTune chained five times on MF without L2, attack AUC 0.74 against its Retrain's 0.48 [0.43, 0.53], had
            passed ``verify --strict``: qa140).
        below_reference: with ``reference``, whether the requested edges score below their matches more than under
            an exact deletion: ``mia_auc_interval`` wholly below ``reference_auc_floor`` and below 0.5 (the attack,
            reading the scores the other way, tells them apart); ``None`` where ``under_forgotten`` is. It sees what
            the sign test cannot where the request withdraws users or items whole, each one vote: on an ML-1M MF,
            SCIF's deletion of one item's 575 edges read 0.30 [0.26, 0.34] against its Retrain's 0.47 [0.43, 0.51],
            one vote, and had passed ``verify --retrain --strict`` (qa179). An interval above 0.5 is not flagged,
            however far below the floor: the requested edges still score above their matches, as held-out
            interactions do, only less than on the reference, as on a model that generalises less well (of four
            Retrains of a 2% random request on an early-stopped BPR LightGCN, one read 0.585 [0.547, 0.621] against
            the others' 0.68-0.69: qa184).

    Both bounds hold the sampling of the pairs and, where a request withdraws users or items whole, the directions of
    their rows; not the training seed's effect on how well a model generalises to the requested edges, which an
    early-stopped model whose best epoch varies with the seed can make large: there the Retrains above were flagged
    ``under_forgotten`` against the one at 0.585 (3 of 12 ordered pairs of the four). There pass Retrains from
    several seeds as ``reference`` (``verify --retrain --retrains 2``): the range spans them all, and none of the
    four was flagged beside any two of the others.
    """
    request_edges: int
    matched: int
    unmatched: int
    in_graph: int
    request_probability: float
    non_member_probability: float
    mi_bf: float | None
    mi_ng: float
    mia_auc: float
    mia_tpr: float
    mia_fpr: float
    mia_accuracy: float
    target_fpr: float
    mia_statistic: str = "score"
    mia_auc_interval: tuple[float, float] | None = None
    before_mia_auc: float | None = None
    below_match: float = math.nan
    over_forgetting_p: float = math.nan
    over_forgotten: bool = False
    votes: int = 0
    unchanged: bool | None = None
    seed: int = 0
    reference: ForgettingReport | None = None
    reference_distance: float | None = None
    reference_gap: float | None = None
    reference_auc_floor: float | None = None
    reference_auc_ceiling: float | None = None
    under_forgotten: bool | None = None
    below_reference: bool | None = None

    def to_dict(self) -> dict:
        """Plain JSON values (:func:`~graphforget.io.to_jsonable`; NaN and infinities become ``None``);
        ``reference`` nested."""
        return to_jsonable(asdict(self))

    def table(self) -> str:
        """A short plain-text table: one row per figure, a column for the method, one for the reference."""
        columns = [self] + ([self.reference] if self.reference is not None else [])
        header = ["", "method"] + (["reference"] if self.reference is not None else [])
        labels = {**dict(_TABLE_ROWS), "mia_tpr": f"MIA TPR at FPR {self.target_fpr:g}"}
        rows = [header] + [[labels[name]] + [report._shown(name) for report in columns] for name, _ in _TABLE_ROWS]
        width = [max(len(row[k]) for row in rows) for k in range(len(header))]
        return "\n".join("  ".join(cell.ljust(width[0]) if k == 0 else cell.rjust(width[k])
                                   for k, cell in enumerate(row)).rstrip() for row in rows)

    def _shown(self, name: str) -> str:
        """The table's text of the figure ``name``."""
        value = getattr(self, name)
        if name == "over_forgetting_p":
            return p_value_text(value)
        if name == "over_forgotten" and not value and self.votes < FEWEST_VOTES:
            return f"cannot tell ({self.votes} of {FEWEST_VOTES} votes)"
        if name == "unchanged" and value:
            return "yes: nothing forgotten"
        if name == "unchanged" and value is None and self.before_mia_auc is not None:  # given the model before
            return "cannot tell (every score 0)"
        if name in ("under_forgotten", "below_reference") and value is False and self.mia_auc_interval is not None:
            low, high = self.mia_auc_interval  # "False" where the interval spans the bound was read as "forgot as a
            upper = name == "under_forgotten"  # Retrain did" (qa169: a FineTune at a learning rate of 1e-7)
            floor = self.reference_auc_floor
            bound = self.reference_auc_ceiling if upper else (None if floor is None else min(floor, 0.5))
            if bound is not None and ((high > bound) if upper else (low < bound)):
                return f"cannot tell (its MIA AUC interval spans {bound:.3f})"
        if name == "mia_auc" and self.mia_auc_interval is not None:
            return f"{_cell(value)} {interval_text(self.mia_auc_interval)}"
        return _cell(value)


_TABLE_ROWS = (("request_edges", "requested edges"), ("matched", "matched non-members"),
               ("unmatched", "unmatched (no sign-test vote)"), ("in_graph", "requested edges in graph"),
               ("request_probability", "P(requested edges)"), ("non_member_probability", "P(non-members)"),
               ("mi_bf", "MI-BF"), ("mi_ng", "MI-NG"), ("mia_statistic", "MIA statistic"),
               ("before_mia_auc", "MIA AUC before"),
               ("mia_auc", "MIA AUC"), ("mia_tpr", "MIA TPR"), ("mia_fpr", "MIA FPR (evaluation)"),
               ("mia_accuracy", "MIA balanced accuracy"), ("votes", "sign-test votes"),
               ("below_match", "votes below their match"),
               ("over_forgetting_p", "over-forgetting p (sign test)"), ("over_forgotten", "over-forgotten"),
               ("unchanged", "scored as the model before"),
               ("reference_distance", "RMS distance to the reference"),
               ("reference_gap", "distance to the reference / before's"),
               ("reference_auc_floor", "lowest MIA AUC of an exact deletion (95%)"),
               ("reference_auc_ceiling", "MIA AUC an exact deletion reaches (95%)"),
               ("below_reference", "forgot more than an exact deletion"),
               ("under_forgotten", "forgot less than an exact deletion"))


def interval_text(bounds: tuple[float, float]) -> str:
    """``[low, high]`` of an interval, to three decimals (the report's table and ``forget``'s line)."""
    return f"[{bounds[0]:.3f}, {bounds[1]:.3f}]"


def p_value_text(p: float | None) -> str:
    """``p`` with three significant digits, and a p-value under :data:`OVER_FORGETTING_LEVEL` that rounds onto it
    written as under it (9.96e-4, flagged, was printed 0.0010, as was an unflagged 1.0007e-3); "-" where there is
    none."""
    if p is None or math.isnan(p):
        return "-"
    text = f"{p:.2e}"
    return f"<{OVER_FORGETTING_LEVEL:.2e}" if p < OVER_FORGETTING_LEVEL <= float(text) else text


def _cell(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}" if value == 0 or abs(value) >= 1e-4 else f"{value:.1e}"
    return str(value)


def sign_test(below: int, above: int) -> float:
    r"""One-sided sign test: :math:`P(X \ge \text{below})` for :math:`X \sim \mathrm{Binomial}(n, 1/2)`,
    :math:`n` = ``below + above`` (ties are left out before); 1 for :math:`n = 0`. Summed in log space, so
    it holds for any :math:`n` (tails far below float64's smallest normal number underflow to 0)."""
    if not (is_integer(below) and is_integer(above)) or below < 0 or above < 0:  # 2.5 gave a p-value, NaN a crash
        raise ValueError(f"sign_test needs integer counts >= 0, got below={below!r}, above={above!r}")
    n = below + above
    k = torch.arange(below, n + 1, dtype=torch.float64)
    log_terms = math.lgamma(n + 1) - torch.lgamma(k + 1) - torch.lgamma(n - k + 1) - n * math.log(2)
    return min(1.0, float(torch.logsumexp(log_terms, 0).exp())) if n else 1.0


def verify_forgetting(model: torch.nn.Module, graph: HeteroData, request, *, before=None, reference=None,
                      objective=None, seed: int = 0, fpr: float = 0.1, calibration_fraction: float = 0.5,
                      num_buckets: int = 10, exclude=None) -> ForgettingReport:
    r"""The forgetting report of an unlearned model for a request.

    The requested edges are compared with :func:`matched_non_members` drawn from the non-edges of the
    graph before the deletion (``before``'s graph, else the remaining ``graph`` plus the request):

    .. math::
        \mathrm{MI\text{-}BF} = \frac{\overline{\sigma(\hat y^{\,\mathrm{before}}_{D_r})}}
        {\overline{\sigma(\hat y_{D_r})}}, \qquad
        \mathrm{MI\text{-}NG} = \frac{\overline{\sigma(\hat y_{\mathrm{non}})}}{\overline{\sigma(\hat y_{D_r})}}

    (:func:`graphforget.metrics.mi_bf` and :func:`~graphforget.metrics.mi_ng`, one forward pass per model), and the
    attack of :func:`membership_attack`. With ``before``, the requested edges' labels are read from its graph and each
    non-member takes its edge's: a request holding label-0 edges is attacked on the label-signed score (a loss
    threshold); without, every requested edge counts as a positive. Every model is scored in eval mode without
    gradients, its modes restored. No test data is used where the held-out pairs are passed as ``exclude``.

    Args:
        model: the unlearned model.
        graph: its remaining graph (the graph it is run on).
        request: ``[2, R]`` integer (user, item) ids of the removed edges.
        before: ``(model, graph)`` before the deletion: gives MI-BF and the attack AUC before, and its
            graph the non-member candidates (it must hold every requested edge).
        reference: ``(model, graph)`` of a reference, e.g. a Retrain, or a list of them (Retrains from several
            seeds): the first's figures on the same request and non-members (``ForgettingReport.reference``), the
            distance to it, and whether the model forgot less or more than an exact deletion (``under_forgotten``,
            ``below_reference``), whose range spans every reference's.
        objective: the models' training objective (:class:`~graphforget.objectives.Objective`): an edge it reads no
            term of (BPR's dislikes) is attacked as a positive, and a row left without a term counts as untrained in
            the reference; ``None``: every label is fitted, and a row with an edge left is trained.
        seed: seed of the matching, of the attack's calibration split and of the ceiling's random directions.
        fpr: the attack's target false-positive rate.
        calibration_fraction: share of the non-members that calibrates the attack.
        num_buckets: degree buckets of the matching.
        exclude: ``[2, X]`` pairs never drawn as non-members: the validation and test pairs, which are no edges.

    Raises:
        ValueError: a request (or ``exclude``) that is not ``[2, R]`` integer ids of the graph's nodes, an empty or
            duplicated request; ``before``/``reference`` that are not (model, graph) pairs of the same node counts; a
            request not in ``before``'s graph; no matched non-member at all, or one that is an edge of ``graph`` or of
            the reference's (a graph that grew since ``before``'s); a model that does not fit its graph or returns
            non-finite scores; a malformed graph, or one with labels other than 0 or 1.
    """
    _check_graph(graph, "the graph")
    check_model_fits(model, graph)
    pairs = _check_pairs(graph, request, "request")
    pairs = pairs[:, pair_keys(pairs, num_items(graph)).argsort()]  # the figures of a set of edges, in any order
    fraction, fpr = _check_fraction("calibration_fraction", calibration_fraction), _check_fraction("fpr", fpr)
    _check_objective(objective)
    prior = None if before is None else _check_model_graph(before, "before", graph)
    references = _checked_references(reference, graph)
    original = prior[1] if prior is not None else _with_request(graph, pairs)
    plan = _plan(original, pairs, prior, seed, num_buckets, (fpr, fraction), _check_exclude(graph, exclude), objective)
    _check_grown([graph] + [scored for _, scored in references], plan)
    report, scores = _figures(model, graph, plan)
    if references:
        _beside_reference(report, scores, plan, references, objective)
    return report


def _checked_references(reference, graph: HeteroData) -> list[tuple[torch.nn.Module, HeteroData]]:
    """``reference`` as checked ``(model, graph)`` pairs: none, one pair, or a non-empty list of them."""
    if reference is None:
        return []
    if isinstance(reference, (tuple, list)) and len(reference) == 2 and isinstance(reference[0], torch.nn.Module):
        reference = [reference]
    elif not (isinstance(reference, (tuple, list)) and reference):
        raise ValueError(f"reference must be a (model, graph) pair or a non-empty list of them, got {reference!r}")
    return [_check_model_graph(pair, "reference", graph) for pair in reference]


def _check_objective(objective) -> None:
    if objective is not None and not callable(getattr(objective, "has_term", None)):
        raise ValueError(f"objective must be a graphforget Objective (with has_term), got {type(objective).__name__}")


def _check_grown(graphs: list[HeteroData], plan: _Plan) -> None:
    """The matched non-members are non-edges of the graph before the deletion, but a graph a model runs on that
    grew since may hold them (trained on): refused."""
    for scored in graphs:
        _check_non_members(scored, plan.edges[:, :plan.requested], plan.edges[:, plan.requested:], "the graph a "
                           "model is run on holds edges that the graph before the deletion lacks: verify against a "
                           "graph before the deletion that holds them")


def _beside_reference(report: ForgettingReport, scores: Tensor, plan: _Plan,
                      references: list[tuple[torch.nn.Module, HeteroData]], objective) -> None:
    """Sets ``report``'s figures beside the ``references``: the first one's report and the distance to it, and the
    verdicts against the range that all of them span (none where too few non-members are left to attack)."""
    ranges = []
    for reference in references:
        figures, target = _figures(*reference, plan)
        if report.reference is None:
            report.reference = figures
            report.reference_distance, report.reference_gap = plan.closeness(scores, target)
        if report.mia_auc_interval is not None:
            ranges.append(_exact_range(plan, reference, target, figures, objective))
    if not ranges or None in ranges:
        return
    lows, highs = zip(*cast("list[tuple[float, float]]", ranges))
    floor, ceiling = min(lows), max(highs)
    low, high = cast("tuple[float, float]", report.mia_auc_interval)  # ranges: the interval is there
    report.reference_auc_floor, report.reference_auc_ceiling = floor, ceiling
    report.under_forgotten, report.below_reference = low > ceiling, high < min(floor, 0.5)


#: Random directions drawn for the rows an exact deletion leaves untrained (:func:`_exact_range`).
_DIRECTIONS = 200


def _exact_range(plan: _Plan, reference: tuple[torch.nn.Module, HeteroData], scores: Tensor,
                 figures: ForgettingReport, objective) -> tuple[float, float] | None:
    """The lowest and the highest attack AUC an exact deletion gives, at 95%: the ends of the reference's interval
    where it trained every row it scores. A Retrain leaves the rows of users and items without a term of
    ``objective`` (or without an edge) at a random start, and its AUC then moves with the seed beyond that interval
    (0.38 to 0.61 over four Retrains of one ML-100K user's 513 edges, each interval +-0.045: qa141); there the 2.5%
    and 97.5% quantiles of the AUC over random directions of those rows (:data:`_DIRECTIONS` draws, their norms
    kept, the other rows as trained) are taken where they lie further out. ``None`` where the reference's scores are
    not the dot products of its ``embed`` rows."""
    model, graph = reference
    low, high = figures.mia_auc_interval if figures.mia_auc_interval is not None else (math.nan, math.nan)
    store = graph[EDGE]
    edges = store.edge_index.cpu()
    if objective is not None:
        edges = edges[:, objective.has_term(store.edge_label).cpu()]
    untrained = [torch.bincount(edges[row], minlength=count)[plan.edges[row]] == 0
                 for row, count in ((0, num_users(graph)), (1, num_items(graph)))]
    hit = untrained[0] | untrained[1]  # the pairs whose score an untrained row enters
    if not bool(hit.any()):
        return low, high
    if not getattr(model, "scores_by_dot_product", False):
        return None
    with _scoring(model):
        tables = cast(Any, model).embed(graph)  # a Recommender: scores_by_dot_product says it has embed
    rows = [table.detach().cpu().double()[plan.edges[row][hit]] for row, table in enumerate(tables)]
    draws = [_redrawing(rows[row], plan.edges[row][hit], untrained[row][hit]) for row in (0, 1)]
    generator, aucs, simulated = seeded(plan.seed), [], scores.clone()
    for _ in range(_DIRECTIONS):
        simulated[hit] = (draws[0](generator) * draws[1](generator)).sum(-1)
        aucs.append(plan.attack_auc(simulated))
    # the model's interval holds the sampling of the pairs, which the reference shares: not added twice (qa143)
    spread = torch.tensor(aucs, dtype=torch.float64).quantile(torch.tensor([0.025, 0.975], dtype=torch.float64))
    return min(low, float(spread[0])), max(high, float(spread[1]))


def _redrawing(rows: Tensor, nodes: Tensor, untrained: Tensor) -> Callable[[torch.Generator], Tensor]:
    """A draw of ``rows [P, d]`` (one per pair, of node ``nodes [P]``) with those of the ``untrained`` nodes turned
    to a random direction each, drawn once per node, at their norms."""
    ids, node = nodes[untrained].unique(return_inverse=True)
    norm = rows[untrained].norm(dim=1, keepdim=True)

    def draw(generator: torch.Generator) -> Tensor:
        if not ids.numel():  # a side the request withdrew nothing whole of (most often the items)
            return rows
        direction = torch.randn(ids.numel(), rows.size(1), generator=generator, dtype=rows.dtype)
        turned = (direction / direction.norm(dim=1, keepdim=True).clamp_min(1e-300))[node] * norm
        if turned.size(0) == rows.size(0):  # every row of this side is drawn: nothing to copy
            return turned
        drawn = rows.clone()
        drawn[untrained] = turned
        return drawn
    return draw


def _plan(original: HeteroData, pairs: Tensor, before: tuple[torch.nn.Module, HeteroData] | None, seed: int,
          num_buckets: int, attack: tuple[float, float], exclude: Tensor | None = None, objective=None) -> _Plan:
    """The :class:`_Plan` of a report: ``pairs`` and their matched non-members in ``original`` (the graph before the
    deletion, outside ``exclude``), with the labels' signs and the scores of ``before`` (``(model, graph)``, or
    ``None``: labels 1); ``attack`` is ``(fpr, calibration_fraction)``."""
    non_members, kept, positions = _matched(original, pairs, seed, num_buckets, exclude)
    if non_members.size(1) == 0:
        # e.g. ML-1M's heaviest user: 2,688 edges and 1,018 held-out pairs covered all 3,706 items (qa179)
        raise ValueError("no requested edge has a matched non-member, so membership cannot be tested: each requested "
                         "user already has a pair (an edge, a sampled negative or a held-out validation or test pair) "
                         "with every item, or each withdrawn item one with every user")
    label = original[EDGE].edge_label.cpu()[positions]
    interactions = label > 0.5
    # without the graph before the deletion the labels are unknown: 1
    labels = interactions.float() if before is not None else torch.ones(pairs.size(1))
    if objective is not None:  # an edge the objective reads no term of (BPR's dislikes) was never fitted by its label
        labels = torch.where(objective.has_term(label).cpu(), labels, torch.ones_like(labels))
    edges = torch.cat([pairs, non_members.cpu()], 1)
    # The pairs of an item withdrawn whole share its row, which an exact deletion leaves untrained: its random
    # direction puts them all above or all below their matches (a Retrain of ML-100K's item 50: 59% below, p 4e-4).
    # They are one draw, not many: one vote. So are a user's withdrawn whole (single-user Retrains of an ML-100K
    # LightGCN: 4 of 120 flagged at 1e-3 when each interaction voted). A user or an item left with fewer interactions
    # than the request removes votes not at all (-1): its row, retrained mostly on what is not like them, puts them
    # below their matches under an exact deletion too, one user after another (40 ML-100K users' likes removed, none
    # or one kept each, their dislikes kept: a Retrain had 78% and 80% of the users below, p 3e-4 and 9e-5, when each
    # user voted once).
    count = pairs.size(1)
    users, items = (_left_without_edges(original, pairs, row) for row in (0, 1))
    votes = torch.where(items & ~users, count + pairs[1], torch.arange(count))
    votes = torch.where(users, count + num_items(original) + pairs[0], votes)
    for row, whole in ((0, users), (1, items)):
        votes = torch.where(_stripped(original, pairs, row, interactions) & ~whole, -1, votes)
    votes = torch.where(interactions, votes, -1)  # the sign test's premise is a real interaction's, whatever the sign
    return _Plan(edges, count, kept.cpu(), 2 * torch.cat([labels, labels[kept]]).double() - 1, votes,
                 None if before is None else _scores(*before, edges), None if before is None else before[0], seed,
                 *attack)


def _with_request(graph: HeteroData, pairs: Tensor) -> HeteroData:
    """The graph before the deletion, rebuilt: ``graph``'s edges plus the requested ones it lacks (observed;
    labels 1). Both sets hold distinct pairs and are disjoint, so the result needs no duplicate check."""
    store = graph[EDGE]
    edges = store.edge_index.cpu()
    count = num_items(graph)
    missing = ~_contains(pair_keys(_edges_of_users(graph, pairs[0]), count).sort().values, pair_keys(pairs, count))
    observed = store.observed.cpu() if "observed" in store else torch.ones(edges.size(1), dtype=torch.bool)
    original = HeteroData()
    original["user"].num_nodes, original["item"].num_nodes = num_users(graph), count
    original[EDGE].edge_index = torch.cat([edges, pairs[:, missing]], 1)
    original[EDGE].edge_label = torch.cat([store.edge_label.cpu().float(), torch.ones(int(missing.sum()))])
    original[EDGE].observed = torch.cat([observed, torch.ones(int(missing.sum()), dtype=torch.bool)])
    return original


@dataclass(frozen=True)
class _Plan:
    """What every model of a report is scored on: ``edges [2, R + M]`` (the ``requested`` pairs, then their
    matched non-members, one for each requested edge of the mask ``kept [R]``, in order), the label signs
    ``sign [R + M]`` of the attack statistic, the ``votes [R]`` of the requested edges in the sign test (their own
    index, or one per item or user withdrawn whole), the model ``before`` the deletion and its scores ``old`` of
    ``edges`` on its graph (or ``None``), and the attack's options."""
    edges: Tensor
    requested: int
    kept: Tensor
    sign: Tensor
    votes: Tensor
    old: Tensor | None
    before: torch.nn.Module | None
    seed: int
    fpr: float
    fraction: float

    def attack(self, scores: Tensor) -> dict[str, Any]:
        """:func:`_attack` on the label-signed ``scores`` ``[R + M]``; NaN figures where the calibration leaves fewer
        than 2 non-members to evaluate on (up to 3 non-members at the default fraction): one can only give an AUC of
        0, 0.5 or 1, which tells nothing, and 2 or 3 requested edges had been reported so (a QA probe)."""
        count = scores.numel() - self.requested
        if count < 2 or count - _calibrating(self.fraction, count) < 2:
            return {**dict.fromkeys(("mia_auc", "tpr_at_fpr", "fpr", "accuracy"), math.nan), "auc_interval": None}
        statistic = scores.double() * self.sign
        return _attack(statistic[:self.requested], statistic[self.requested:], self.fraction, self.seed, self.fpr)

    @functools.cached_property
    def _evaluated(self) -> tuple[Tensor, Tensor]:
        """The positions of the requested edges and of the non-members the attack is evaluated on, and their
        labels (:meth:`attack_auc`'s, drawn once: the split is the seed's)."""
        count = self.edges.size(1) - self.requested
        evaluating = self.requested + _split(count, self.fraction, self.seed)[1]
        positions = torch.cat([torch.arange(self.requested), evaluating])
        return positions, torch.cat([torch.ones(self.requested), torch.zeros(evaluating.numel())])

    def attack_auc(self, scores: Tensor) -> float:
        """The attack's AUC alone of ``scores [R + M]`` (where :meth:`attack` gives one): what the exact-deletion
        ceiling draws hundreds of times (:func:`_exact_range`)."""
        positions, labels = self._evaluated
        return auc((scores.double() * self.sign)[positions], labels)

    def over_forgetting(self, scores: Tensor) -> tuple[float, float, int]:
        """``(below_match, over_forgetting_p, votes)`` of ``scores [R + M]``: the votes of the requested interactions
        (label 1) below their own match, against those above (see :class:`ForgettingReport`); an item or a user
        withdrawn whole votes once, by its interactions' summed difference, and one stripped of them not at all."""
        interaction = (self.sign[:self.requested][self.kept] > 0) & (self.votes[self.kept] >= 0)
        difference = (scores[:self.requested][self.kept] - scores[self.requested:])[interaction]
        _, vote = self.votes[self.kept][interaction].unique(return_inverse=True)
        summed = torch.zeros(int(vote.max()) + 1 if vote.numel() else 0, dtype=torch.float64)
        summed.index_add_(0, vote, difference.double())
        below, above = int((summed < 0).sum()), int((summed > 0).sum())
        return (below / (below + above) if below + above else math.nan), sign_test(below, above), below + above

    def closeness(self, scores: Tensor, reference: Tensor) -> tuple[float, float | None]:
        """``(reference_distance, reference_gap)`` of ``scores [R + M]`` to the ``reference``'s (see
        :class:`ForgettingReport`); the gap is ``None`` without the scores before the deletion."""
        target = torch.sigmoid(reference.double())

        def distance(logits: Tensor) -> float:
            return float((torch.sigmoid(logits.double()) - target).pow(2).mean().sqrt())
        return distance(scores), None if self.old is None else _ratio(distance(scores), distance(self.old))


def _unchanged(scores: Tensor, before: Tensor) -> bool | None:
    """Whether ``scores`` are ``before``'s exactly; ``None`` where both are 0 on every pair: there the output holds
    nothing of the parameters (SimGCL embeds a node left without an edge as the mean of its layers after the first, 0
    in any model, and every method had read "nothing forgotten" on whole users, Retrain included: qa184)."""
    if not (bool(scores.any()) or bool(before.any())):
        return None
    return bool(torch.equal(scores, before))


def _figures(model: torch.nn.Module, graph: HeteroData, plan: _Plan) -> tuple[ForgettingReport, Tensor]:
    """One model's report, and its scores of ``plan.edges`` (``model`` run on ``graph``)."""
    check_model_fits(model, graph)
    requested, scores = plan.requested, _scores(model, graph, plan.edges)
    probability = torch.sigmoid(scores)
    p_request, p_non = float(probability[:requested].mean()), float(probability[requested:].mean())
    attack = plan.attack(scores)
    below_match, p_over, votes = plan.over_forgetting(scores)
    # the model before on this graph: a LightGCN's scores move with the edges it passes messages over, not only its own
    unchanged = None if plan.before is None else _unchanged(scores, _scores(plan.before, graph, plan.edges))
    before_auc, mi_bf = None, None
    if plan.old is not None:
        mi_bf = _ratio(float(torch.sigmoid(plan.old[:requested]).mean()), p_request)
        before_auc = plan.attack(plan.old)["mia_auc"]
    count = num_items(graph)
    request = plan.edges[:, :requested]
    in_graph = _contains(pair_keys(_edges_of_users(graph, request[0]), count).sort().values, pair_keys(request, count))
    non_members = plan.edges.size(1) - requested
    return ForgettingReport(
        request_edges=requested, matched=non_members, unmatched=requested - non_members, in_graph=int(in_graph.sum()),
        request_probability=p_request, non_member_probability=p_non, mi_bf=mi_bf, mi_ng=_ratio(p_non, p_request),
        mia_auc=attack["mia_auc"], mia_auc_interval=attack["auc_interval"], mia_tpr=attack["tpr_at_fpr"],
        mia_fpr=attack["fpr"], mia_accuracy=attack["accuracy"], target_fpr=plan.fpr,
        mia_statistic="loss" if bool((plan.sign < 0).any()) else "score", before_mia_auc=before_auc,
        below_match=below_match, over_forgetting_p=p_over, over_forgotten=p_over < OVER_FORGETTING_LEVEL,
        votes=votes, unchanged=unchanged, seed=plan.seed), scores
