"""graphforget.metrics against naive loops and scikit-learn."""
from __future__ import annotations

import copy
import itertools
import math
import re
import statistics
import warnings

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from graphforget.data import EDGE, make_interactions, without_edges
from graphforget.metrics import (auc, auc_groups, auc_interval, auc_standard_error, completeness, evaluate_auc,
                                 mean_probability, mi_bf, mi_ng, parameter_distance, prediction_distance,
                                 prediction_gap, in_graph, recall_ndcg_at_k)
from helpers import hand_mf
from graphforget.models import MF


def naive_auc(scores, labels) -> float:
    """P(score of a positive > score of a negative), ties counting one half, by counting all pairs."""
    pos = [s for s, y in zip(scores, labels) if y > 0.5]
    neg = [s for s, y in zip(scores, labels) if y <= 0.5]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))



# --------------------------------------------------------------------------------------------- AUC

@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auc_with_ties_against_pair_counting_and_sklearn(seed):
    gen = torch.Generator().manual_seed(seed)
    scores = torch.randint(0, 7, (240,), generator=gen).float() / 6  # many ties
    labels = (torch.rand(240, generator=gen) < scores * 0.6 + 0.2).float()
    expected = naive_auc(scores.tolist(), labels.tolist())
    assert auc(scores, labels) == pytest.approx(expected, abs=1e-12)
    assert auc(scores, labels) == pytest.approx(roc_auc_score(labels.numpy(), scores.numpy()), abs=1e-12)
    assert 0.55 < expected < 0.95  # a non-trivial case


def test_auc_edge_cases():
    assert auc(torch.tensor([0.1, 0.9]), torch.tensor([0., 1.])) == 1.0
    assert auc(torch.tensor([0.9, 0.1]), torch.tensor([0., 1.])) == 0.0
    assert auc(torch.tensor([0.5, 0.5, 0.5]), torch.tensor([0., 1., 1.])) == 0.5
    assert math.isnan(auc(torch.tensor([0.1, 0.2]), torch.tensor([1., 1.])))
    assert math.isnan(auc(torch.tensor([0.1, 0.2]), torch.tensor([0., 0.])))
    assert auc([0.5, 0.9, 0.3], [0, 1, True]) == 0.5  # lists and bool labels, as auc_groups takes them
    # labels > 0.5 were the positives: a 0.7 and a 2 counted as 1, and ratings 1-5 gave NaN, as if a class were absent
    for labels, shown in (([0.7, 0.3, 1.0], r"\[0.69"), ([5., 1., 3.], r"\[5.0, 3.0\]")):
        with pytest.raises(ValueError, match=rf"labels must be 0 or 1 \(1: an interaction, 0: a non-interaction\), "
                                             f"got 2 other values, e.g. {shown}"):
            auc(torch.tensor([0.1, 0.9, 0.3]), torch.tensor(labels))


def test_auc_standard_error_is_the_exact_null_variance_and_matches_simulation():
    # With no signal, Q1 = Q2 = 1/3 exactly and the formula is the Mann-Whitney null variance.
    for n_pos, n_neg in [(1, 1), (30, 50), (400, 7)]:
        assert auc_standard_error(0.5, n_pos, n_neg) ** 2 == pytest.approx((n_pos + n_neg + 1) / (12 * n_pos * n_neg))
    # Exponential scores (the model it assumes): negatives Exp(1), positives Exp(1/A - 1), so P(pos > neg) = A.
    gen, a, n_pos, n_neg = torch.Generator().manual_seed(0), 0.8, 30, 50
    values = []
    for _ in range(3000):
        positive = torch.empty(n_pos).exponential_(1 / a - 1, generator=gen)
        negative = torch.empty(n_neg).exponential_(1.0, generator=gen)
        values.append(auc(torch.cat([positive, negative]), torch.cat([torch.ones(n_pos), torch.zeros(n_neg)])))
    simulated = torch.tensor(values)
    assert float(simulated.mean()) == pytest.approx(a, abs=0.003)
    assert float(simulated.std()) == pytest.approx(auc_standard_error(a, n_pos, n_neg), rel=0.05)
    for bad in [(0.7, 0, 5), (0.7, 5, 0), (1.2, 5, 5), (float("nan"), 5, 5)]:
        with pytest.raises(ValueError):
            auc_standard_error(*bad)


def test_auc_interval_covers_binormal_aucs_on_few_pairs_and_is_the_wald_interval_on_many():
    """Binormal scores, not the exponential ones its variance assumes: the interval covers the true AUC about 95% of
    the time on balanced and unbalanced classes, down to 3 pairs a class; at an AUC of 1 on 4 negatives it stays
    wide; with equal classes of many pairs it is the estimate plus or minus 1.96 Hanley-McNeil standard errors."""
    gen = torch.Generator().manual_seed(0)
    for n_pos, n_neg, true in [(200, 5, 0.8), (5, 200, 0.8), (20, 20, 0.7), (3, 3, 0.6)]:
        shift, covered = 2 ** 0.5 * statistics.NormalDist().inv_cdf(true), 0
        for _ in range(400):
            positive = torch.randn(n_pos, generator=gen, dtype=torch.double) + shift
            negative = torch.randn(n_neg, generator=gen, dtype=torch.double)
            estimate = naive_auc(torch.cat([positive, negative]).tolist(), [1] * n_pos + [0] * n_neg)
            low, high = auc_interval(estimate, n_pos, n_neg)
            assert low <= estimate <= high
            covered += low <= true <= high
        assert 0.91 <= covered / 400 <= 0.995, (n_pos, n_neg, covered)
    low, high = auc_interval(1.0, 2654, 4)
    assert high == 1.0 and 0.6 < low < 0.9
    low, high = auc_interval(0.7, 400, 400)
    half = 1.959964 * auc_standard_error(0.7, 400, 400)
    assert low == pytest.approx(0.7 - half, abs=2e-3) and high == pytest.approx(0.7 + half, abs=2e-3)
    assert auc_interval(0.7, 400, 400, level=0.5)[0] > low
    for bad in [(0.7, 0, 5), (1.2, 5, 5), (0.7, 5, 5, 1.0), (0.7, 5, 5, True)]:
        with pytest.raises(ValueError):
            auc_interval(*bad)


def test_auc_groups_against_a_loop():
    gen = torch.Generator().manual_seed(3)
    test_edges = torch.stack([torch.randint(20, (300,), generator=gen), torch.randint(15, (300,), generator=gen)])
    scores = torch.randint(0, 10, (300,), generator=gen).float()
    labels = (torch.rand(300, generator=gen) < 0.5).float()
    request = torch.tensor([[1, 4, 4, 9, 13], [2, 2, 7, 11, 0]])
    req_users, req_items = set(request[0].tolist()), set(request[1].tolist())
    rows = list(zip(test_edges[0].tolist(), test_edges[1].tolist(), scores.tolist(), labels.tolist()))
    either = [(s, y) for u, i, s, y in rows if u in req_users or i in req_items]
    both = [(s, y) for u, i, s, y in rows if u in req_users and i in req_items]
    assert 0 < len(both) < len(either) < 300
    out = auc_groups(scores, test_edges, labels, request)
    assert out["auc_0"] == pytest.approx(naive_auc(scores.tolist(), labels.tolist()), abs=1e-12)
    assert out["auc_1"] == pytest.approx(naive_auc(*zip(*either)), abs=1e-12)
    assert out["auc_2"] == pytest.approx(naive_auc(*zip(*both)), abs=1e-12)
    assert set(auc_groups(scores, test_edges, labels, None)) == {"auc_0"}


def test_evaluate_auc_and_mi_bf_run_a_message_passing_model_on_the_graph_they_are_given():
    """The tests of the graph arguments scored an MF, which reads no graph: scoring on the test pairs, or MI-BF's
    model before on the graph after, passed them (QA probes' mutations). A LightGCN reads it."""
    from graphforget.models import LightGCN
    train = make_interactions(torch.tensor([[0, 0, 1, 1, 2], [0, 1, 1, 2, 0]]), num_users=3, num_items=3)
    test = make_interactions(torch.tensor([[0, 1, 2, 2], [2, 0, 1, 2]]), torch.tensor([1., 0., 1., 0.]), 3, 3)
    after = make_interactions(torch.tensor([[0, 1, 1, 2], [1, 1, 2, 0]]), num_users=3, num_items=3)
    model = LightGCN(3, 3, 4, num_layers=2)
    model.reset_parameters(1)
    edges, request = test[EDGE].edge_index, torch.tensor([[0], [0]])
    with torch.no_grad():
        on_train, on_test = model(train, edges), model(test, edges)
    assert auc(on_train, test[EDGE].edge_label) != auc(on_test, test[EDGE].edge_label)
    assert evaluate_auc(model, train, test)["auc_0"] == auc(on_train, test[EDGE].edge_label)
    before, later = mean_probability(model, train, request), mean_probability(model, after, request)
    assert before != later and mi_bf(model, train, model, after, request) == before / later


def test_evaluate_auc_scores_the_model_on_its_graph():
    model = hand_mf([[1.0], [-1.0]], [[0.3], [0.1], [-0.2]])
    train = make_interactions(torch.tensor([[0, 1], [0, 1]]), num_users=2, num_items=3)
    test = make_interactions(torch.tensor([[0, 0, 1, 1], [1, 2, 0, 2]]), torch.tensor([1., 0., 0., 1.]), 2, 3)
    model.train()
    out = evaluate_auc(model, train, test, request=torch.tensor([[0], [1]]))
    # Scores 0.1, -0.2, -0.3, 0.2: positives {0.1, 0.2} beat negatives {-0.2, -0.3}.
    assert out["auc_0"] == 1.0
    assert model.training  # mode restored
    flipped = make_interactions(test[EDGE].edge_index, 1 - test[EDGE].edge_label, 2, 3)
    assert evaluate_auc(model, train, flipped)["auc_0"] == 0.0
    # A request outside the graph's ranges selected AUC_1's and AUC_2's pairs by ids no pair has, without a word.
    with pytest.raises(ValueError, match=r"request holds 1 pairs with unknown ids, the first \(2, 0\)"):
        evaluate_auc(model, train, test, request=torch.tensor([[2], [0]]))


def test_evaluate_auc_warns_of_test_pairs_that_are_training_edges():
    """A test set that shares pairs with the training graph scores what the model fitted (accepted silently, a known
    gap of sessions); validation pairs are warned of where they are given, not at each epoch's evaluation."""
    from graphforget.config import GraphforgetWarning
    model = hand_mf([[1.0], [-1.0]], [[0.3], [0.1], [-0.2]])
    train = make_interactions(torch.tensor([[0, 1], [0, 1]]), num_users=2, num_items=3)
    leaky = make_interactions(torch.tensor([[0, 0, 1, 1], [0, 2, 1, 2]]), torch.tensor([1., 0., 0., 1.]), 2, 3)
    with pytest.warns(GraphforgetWarning, match=re.escape(
            "evaluate_auc: 2 of the test set's 4 pairs are training edges: the AUC scores pairs the model trains on")):
        evaluate_auc(model, train, leaky)
    held_out = make_interactions(torch.tensor([[0, 0, 1, 1], [1, 2, 0, 2]]), torch.tensor([1., 0., 0., 1.]), 2, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        evaluate_auc(model, train, held_out)
        evaluate_auc(model, train, leaky, what="val")


def test_completeness():
    assert completeness(0.7, 0.6, 0.8) == pytest.approx(0.5)
    assert completeness(0.8, 0.6, 0.8) == pytest.approx(1.0)
    assert completeness(0.6, 0.6, 0.8) == pytest.approx(0.0)
    assert completeness(0.5, 0.6, 0.8) == pytest.approx(-0.5)
    assert math.isnan(completeness(0.7, 0.6, 0.6))
    # a method that did not move the metric while Retrain lowered it: 0, not -0.0 (the demo printed "-0%")
    assert math.copysign(1.0, completeness(0.5, 0.5, 0.4)) == 1.0


# --------------------------------------------------------------------------------------------- ranking

def dot(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b))


def naive_recall_ndcg(model, train_pairs, test_rows, num_items: int, k: int, score=dot) -> tuple[float, float]:
    """Per-user loops: mask training items, rank all items by ``score`` of the user's and the item's rows,
    recall = hits / |test|, NDCG with log2 discount."""
    user_emb, item_emb = model.user_emb.weight.tolist(), model.item_emb.weight.tolist()
    truth: dict[int, set[int]] = {}
    for u, i, y in test_rows:
        if y > 0:
            truth.setdefault(u, set()).add(i)
    recalls, ndcgs = [], []
    for u, items in truth.items():
        scores = {i: score(user_emb[u], item_emb[i]) for i in range(num_items) if (u, i) not in train_pairs}
        top = sorted(scores, key=lambda i: -scores[i])[:k]
        recalls.append(sum(i in items for i in top) / len(items))
        dcg = sum(1 / math.log2(rank + 2) for rank, i in enumerate(top) if i in items)
        idcg = sum(1 / math.log2(rank + 2) for rank in range(min(k, len(items))))
        ndcgs.append(dcg / idcg)
    return sum(recalls) / len(recalls), sum(ndcgs) / len(ndcgs)


class DistanceMF(MF):
    """Scores a pair by minus the squared distance of its rows, not by the dot product of ``embed``'s rows (as
    a PyG module through the adapter, or a mean of shards, may): ``score_all`` is its own."""

    def forward(self, graph, edge_label_index):
        user, item = self.user_emb.weight[edge_label_index[0]], self.item_emb.weight[edge_label_index[1]]
        return -(user - item).pow(2).sum(-1)

    def score_all(self, graph, users=None):
        user = self.user_emb.weight if users is None else self.user_emb.weight[users]
        return -torch.cdist(user, self.item_emb.weight).pow(2)


@pytest.mark.parametrize("k, kind", [(3, MF), (10, MF), (10, DistanceMF)])
def test_recall_ndcg_against_naive_loops(k, kind):
    num_users, num_items = 25, 40
    gen = torch.Generator().manual_seed(k)
    model = kind(num_users, num_items, 6).double()
    model.reset_parameters(k + 2)  # a draw where masking changes the figures (asserted below)
    keys = torch.randperm(num_users * num_items, generator=gen)[:360]
    train_ei = torch.stack([keys[:250] // num_items, keys[:250] % num_items])
    test_ei = torch.stack([keys[250:] // num_items, keys[250:] % num_items])
    test_label = (torch.rand(110, generator=gen) < 0.7).float()
    train = make_interactions(train_ei, num_users=num_users, num_items=num_items)
    test = make_interactions(test_ei, test_label, num_users, num_items)
    train_pairs = set(map(tuple, train_ei.t().tolist()))
    test_rows = list(zip(test_ei[0].tolist(), test_ei[1].tolist(), test_label.tolist()))
    with_test = {u for u, _, y in test_rows if y > 0}
    assert len(with_test) < num_users  # some users have no test positives: they are skipped
    score = dot if kind is MF else lambda a, b: -sum((x - y) ** 2 for x, y in zip(a, b))
    recall, ndcg = naive_recall_ndcg(model, train_pairs, test_rows, num_items, k, score)
    out = recall_ndcg_at_k(model, train, test, k=k, batch_size=4)  # several batches
    assert out[f"recall@{k}"] == pytest.approx(recall, abs=1e-6)
    assert out[f"ndcg@{k}"] == pytest.approx(ndcg, abs=1e-6)
    # Masking matters in this case, so a missing mask would be caught.
    unmasked = naive_recall_ndcg(model, set(), test_rows, num_items, k, score)
    assert unmasked != pytest.approx((recall, ndcg), abs=1e-6)


def test_recall_ndcg_hand_case():
    # One user, items scored 4 > 3 > 2 > 1 > 0; item 0 (best) is a training item and is masked.
    model = hand_mf([[1.0]], [[4.0], [3.0], [2.0], [1.0], [0.0]])
    train = make_interactions(torch.tensor([[0], [0]]), num_users=1, num_items=5)
    test = make_interactions(torch.tensor([[0, 0], [2, 4]]), num_users=1, num_items=5)
    out = recall_ndcg_at_k(model, train, test, k=2)
    # Ranking after masking: 1, 2, 3, 4; top-2 = {1, 2}: one hit of two at rank 2.
    assert out["recall@2"] == pytest.approx(0.5)
    assert out["ndcg@2"] == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3)))


def test_recall_ndcg_masks_training_interactions_but_not_sampled_negatives():
    # One user, items scored 4 > 3 > 2 > 1 > 0. Item 0 is an interaction (masked); item 1 a sampled negative
    # (observed False): supervision, not an interaction, so it stays in the ranking and takes a top-2 slot.
    model = hand_mf([[1.0]], [[4.0], [3.0], [2.0], [1.0], [0.0]])
    train = make_interactions(torch.tensor([[0, 0], [0, 1]]), torch.tensor([1., 0.]), 1, 5,
                              observed=torch.tensor([True, False]))
    test = make_interactions(torch.tensor([[0, 0], [2, 3]]), num_users=1, num_items=5)
    out = recall_ndcg_at_k(model, train, test, k=2)
    # Ranking 1, 2, 3, 4: one hit (item 2) of two, at rank 2; masking item 1 too would give two hits.
    assert out["recall@2"] == pytest.approx(0.5)
    assert out["ndcg@2"] == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3)))


def test_recall_ndcg_with_k_above_the_item_count_ranks_every_item():
    model = hand_mf([[1.0]], [[4.0], [3.0], [2.0], [1.0], [0.0]])
    train = make_interactions(torch.tensor([[0], [0]]), num_users=1, num_items=5)
    test = make_interactions(torch.tensor([[0, 0], [2, 4]]), num_users=1, num_items=5)
    out = recall_ndcg_at_k(model, train, test, k=10)
    # Ranking 1, 2, 3, 4 (item 0 masked): hits at ranks 2 and 4; the ideal ranking has them at 1 and 2.
    assert out["recall@10"] == pytest.approx(1.0)
    assert out["ndcg@10"] == pytest.approx((1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3)))


def brute_force_tied_recall_ndcg(user_rows, item_rows, train_pairs, truth, k) -> tuple[float, float]:
    """Recall@K and NDCG@K averaged over every order of the unmasked items that sorts their (tied) dot-product
    scores non-increasing, then over the users in ``truth``: the expectation under random tie-breaking."""
    recalls, ndcgs = [], []
    for u, items in truth.items():
        free = [i for i in range(len(item_rows)) if (u, i) not in train_pairs]
        score = {i: sum(a * b for a, b in zip(user_rows[u], item_rows[i])) for i in free}
        orders = [order for order in itertools.permutations(free)
                  if all(score[a] >= score[b] for a, b in zip(order, order[1:]))]
        idcg = sum(1 / math.log2(rank + 2) for rank in range(min(k, len(items))))
        recalls.append(sum(sum(i in items for i in order[:k]) for order in orders) / len(orders) / len(items))
        ndcgs.append(sum(sum(1 / math.log2(rank + 2) for rank, i in enumerate(order[:k]) if i in items)
                         for order in orders) / len(orders) / idcg)
    return sum(recalls) / len(recalls), sum(ndcgs) / len(ndcgs)


def test_recall_ndcg_of_tied_scores_is_their_expectation_over_every_order():
    # One user, items scored 2 > 1 = 1 = 1 > 0, positives 2 and 4, K = 2: item 2 takes rank 2, 3 or 4 with
    # chance 1/3 each, item 4 rank 5. By item id (topk's order) item 2 was always ranked 2nd: recall 1/2.
    model = hand_mf([[1.0]], [[2.0], [1.0], [1.0], [1.0], [0.0]])
    empty = make_interactions(torch.zeros(2, 0, dtype=torch.long), num_users=1, num_items=5)
    test = make_interactions(torch.tensor([[0, 0], [2, 4]]), num_users=1, num_items=5)
    out = recall_ndcg_at_k(model, empty, test, k=2)
    assert out["recall@2"] == pytest.approx(1 / 6, rel=1e-12)
    assert out["ndcg@2"] == pytest.approx((1 / (3 * math.log2(3))) / (1 + 1 / math.log2(3)), rel=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_recall_ndcg_with_ties_and_masks_against_every_order(seed):
    # Integer rows make many ties; zero user rows tie every item (a forgotten user's row under IFRU).
    gen = torch.Generator().manual_seed(seed)
    num_users, num_items = 5, 7
    user_rows = torch.randint(-1, 2, (num_users, 2), generator=gen).double().tolist()
    user_rows[0] = [0.0, 0.0]
    item_rows = torch.randint(-1, 2, (num_items, 2), generator=gen).double().tolist()
    keys = torch.randperm(num_users * num_items, generator=gen)[:18]
    train_ei = torch.stack([keys[:8] // num_items, keys[:8] % num_items])
    test_ei = torch.stack([keys[8:] // num_items, keys[8:] % num_items])
    train = make_interactions(train_ei, num_users=num_users, num_items=num_items)
    test = make_interactions(test_ei, num_users=num_users, num_items=num_items)
    truth: dict[int, set[int]] = {}
    for u, i in test_ei.t().tolist():
        truth.setdefault(u, set()).add(i)
    train_pairs = set(map(tuple, train_ei.t().tolist()))
    for k in (1, 2, 3, 10):
        recall, ndcg = brute_force_tied_recall_ndcg(user_rows, item_rows, train_pairs, truth, k)
        out = recall_ndcg_at_k(hand_mf(user_rows, item_rows), train, test, k=k, batch_size=2)
        assert (out[f"recall@{k}"], out[f"ndcg@{k}"]) == (pytest.approx(recall, rel=1e-12),
                                                          pytest.approx(ndcg, rel=1e-12))


# --------------------------------------------------------------------------------------------- forgetting, distances

def test_mean_probability_mi_bf_and_mi_ng_hand_computed():
    graph = make_interactions(torch.tensor([[0, 1], [0, 1]]), num_users=2, num_items=3)
    before = hand_mf([[1.0], [2.0]], [[0.5], [-1.0], [0.0]])
    after = hand_mf([[1.0], [2.0]], [[-0.5], [-2.0], [0.0]])
    request = torch.tensor([[0, 1], [0, 1]])
    negatives = torch.tensor([[0, 1], [2, 2]])
    p_before = (sigmoid(0.5) + sigmoid(-2.0)) / 2
    p_after = (sigmoid(-0.5) + sigmoid(-4.0)) / 2
    p_neg = (sigmoid(0.0) + sigmoid(0.0)) / 2
    assert mean_probability(after, graph, request) == pytest.approx(p_after, rel=1e-12)
    remaining, _ = without_edges(graph, request)
    assert mi_bf(before, graph, after, remaining, request) == pytest.approx(p_before / p_after, rel=1e-12)
    assert mi_ng(after, graph, request, negatives) == pytest.approx(p_neg / p_after, rel=1e-12)
    assert mi_bf(before, graph, before, remaining, request) == pytest.approx(1.0)
    # the request left in the graph after, or the two graphs swapped: a ratio without a word (qa104)
    for graphs, wrong in (((graph, graph), "are still edges of graph_after: pass the graph after unlearning"),
                          ((remaining, remaining), "are not edges of graph_before: pass the graph the model was")):
        with pytest.raises(ValueError, match=re.escape(f"mi_bf: 2 requested pairs, the first (0, 0), {wrong}")):
            mi_bf(before, graphs[0], after, graphs[1], request)


def test_prediction_and_parameter_distance():
    graph = make_interactions(torch.tensor([[0, 1], [0, 1]]), num_users=2, num_items=3)
    a = hand_mf([[1.0, 0.0], [2.0, 1.0]], [[0.5, 1.0], [-1.0, 0.0], [0.0, 3.0]])
    b = hand_mf([[1.0, 1.0], [2.0, 0.0]], [[0.5, 1.0], [-1.0, 2.0], [1.0, 3.0]])
    edges = torch.tensor([[0, 0, 1, 1], [0, 2, 1, 2]])
    sa = [sigmoid(x) for x in (0.5, 0.0, -2.0, 3.0)]
    sb = [sigmoid(x) for x in (1.5, 4.0, -2.0, 2.0)]
    expected = math.sqrt(sum((x - y) ** 2 for x, y in zip(sa, sb)))
    assert prediction_distance(a, graph, b, graph, edges) == pytest.approx(expected, rel=1e-12)
    # Parameters differ by 1 in four entries (user 0 dim 1, user 1 dim 1, item 1 dim 1 by 2, item 2 dim 0).
    assert parameter_distance(a, b) == pytest.approx(math.sqrt(1 + 1 + 4 + 1), rel=1e-12)
    assert parameter_distance(a, copy.deepcopy(a)) == 0.0
    assert prediction_distance(a, graph, copy.deepcopy(a), graph, edges) == 0.0


def test_scoring_metrics_name_pairs_and_models_that_do_not_fit_the_graph():
    graph = make_interactions(torch.tensor([[0, 1, 2], [0, 1, 2]]), torch.tensor([1., 0., 1.]), 4, 3)
    model = MF(4, 3, 2)
    outside = make_interactions(torch.tensor([[0, 5], [1, 2]]), torch.tensor([1., 0.]), 6, 3)
    ranges = r"the graph's users are 0..3 and its items 0..2"
    with pytest.raises(ValueError, match=r"the test set holds 1 pairs with unknown ids, the first \(5, 2\) at "
                                         r"position 1; " + ranges):
        evaluate_auc(model, graph, outside)
    with pytest.raises(ValueError, match=r"the test set holds 1 pairs with unknown ids, the first \(5, 2\)"):
        recall_ndcg_at_k(model, graph, outside)
    with pytest.raises(ValueError, match=r"the edge list holds 1 pairs with unknown ids, the first \(0, -1\)"):
        mean_probability(model, graph, torch.tensor([[0, 1], [-1, 2]]))
    with pytest.raises(ValueError, match=r"the edge list holds 2 pairs with unknown ids, the first \(9, 0\)"):
        prediction_distance(model, graph, model, graph, torch.tensor([[9, 9], [0, 1]]))
    with pytest.raises(ValueError, match=r"the model has num_users=5 but the graph has 4 users"):
        evaluate_auc(MF(5, 3, 2), graph, graph)


def test_metrics_refuse_what_they_cannot_score_or_rank_by_name():
    graph = make_interactions(torch.tensor([[0, 1, 2, 3], [0, 1, 2, 0]]), torch.tensor([1., 0., 1., 0.]), 4, 3)
    model = MF(4, 3, 2)
    model.reset_parameters(0)
    broken = copy.deepcopy(model)
    with torch.no_grad():
        broken.user_emb.weight[1] = float("nan")
    with pytest.raises(ValueError, match="the model's scores hold 1 NaN or infinite values"):
        evaluate_auc(broken, graph, graph)
    held_out = make_interactions(torch.tensor([[0, 1], [1, 2]]), num_users=4, num_items=3)  # ranked: not in graph
    with pytest.raises(ValueError, match="NaN or infinite values"):
        recall_ndcg_at_k(broken, graph, held_out)
    with pytest.raises(ValueError, match="NaN or infinite values"):
        mean_probability(broken, graph, torch.tensor([[1], [0]]))
    overflowing = copy.deepcopy(model)  # finite rows, as a diverged Adam leaves them: their products overflow
    with torch.no_grad():
        overflowing.user_emb.weight[0] = 1e20
        overflowing.item_emb.weight[0] = torch.tensor([1e20, -1e20])
    for metric, test in ((evaluate_auc, graph), (recall_ndcg_at_k, held_out)):  # Recall@K had ranked the infinities
        with pytest.raises(ValueError, match="the model's scores hold 1 NaN or infinite values: its parameters are "
                                             r"non-finite or too large \(a diverged training\?\)"):
            metric(overflowing, graph, test)
    for edges, message in [(torch.tensor([[0, 1], [1, 2], [3, 3]]), r"\[2, T\].* got \[3, 2\]"),
                           (torch.tensor([0, 1]), r"got \[2\]"), (torch.zeros(2, 0, dtype=torch.long), r"got \[2, 0\]"),
                           (torch.tensor([[0.], [1.]]), "got dtype torch.float32")]:
        with pytest.raises(ValueError, match=message):
            mean_probability(model, graph, edges)
    unlabelled = graph.clone()
    del unlabelled[EDGE].edge_label
    with pytest.raises(ValueError, match=r"the test set needs an edge_label per pair \(\[4\]"):
        evaluate_auc(model, graph, unlabelled)
    with pytest.raises(ValueError, match="labels hold 1 NaN values"):
        auc(torch.rand(3), torch.tensor([1., float("nan"), 0.]))
    with pytest.raises(ValueError, match=r"scores \[5\] and labels \[3\] must have the same length"):
        auc(torch.rand(5), torch.tensor([1., 0., 1.]))
    # Float ids indexed nothing inside torch, and a uint8 row was read as a mask; narrow integers are ids.
    floats = graph.clone()
    floats[EDGE].edge_index = graph[EDGE].edge_index.float()
    for metric in (evaluate_auc, recall_ndcg_at_k):
        with pytest.raises(ValueError, match="the test set's edge_index holds integer .* got dtype torch.float32"):
            metric(model, graph, floats)
    for dtype in (torch.int16, torch.uint8):
        narrow = held_out.clone()
        narrow[EDGE].edge_index = held_out[EDGE].edge_index.to(dtype)
        assert recall_ndcg_at_k(model, graph, narrow, k=2) == recall_ndcg_at_k(model, graph, held_out, k=2)
    with pytest.raises(ValueError, match="batch_size must be a positive integer, got -1"):
        recall_ndcg_at_k(model, graph, graph, batch_size=-1)
    with pytest.raises(ValueError, match="k must be a positive integer, got 2.5"):
        recall_ndcg_at_k(model, graph, graph, k=2.5)
    with pytest.raises(ValueError, match=r"user_emb.weight \[4, 2\] vs \[5, 2\]"):
        parameter_distance(model, MF(5, 3, 2))


def test_metrics_take_ids_of_any_integer_dtype_and_node_tables_of_two_dtypes(one_thread):
    """A test set's int32 pairs were keyed in int32, and distinct pairs of a 100,000 x 50,000 graph were refused as
    duplicates; unsigned ids (NumPy's uint arrays) failed inside torch (no min, no comparison); a float64 item table
    beside a float32 user table failed in Recall@K's matrix product, which forward's products promote."""
    users, items = 100_000, 50_000
    train = make_interactions(torch.tensor([[0, 1], [0, 1]]), torch.tensor([1., 0.]), users, items)
    test = make_interactions(torch.tensor([[0, 85899], [0, 17296]]), torch.tensor([1., 0.]), users, items)
    model = MF(users, items, 2)
    model.reset_parameters(0)
    for dtype in (torch.int32, torch.uint32):
        narrow = test.clone()
        narrow[EDGE].edge_index = test[EDGE].edge_index.to(dtype)
        assert evaluate_auc(model, train, narrow) == evaluate_auc(model, train, test)
        assert mean_probability(model, train, narrow[EDGE].edge_index) == mean_probability(model, train,
                                                                                             test[EDGE].edge_index)
    small = MF(4, 3, 2)
    small.reset_parameters(0)
    graph = make_interactions(torch.tensor([[0, 1, 2, 3], [0, 1, 2, 0]]), num_users=4, num_items=3)
    held_out = make_interactions(torch.tensor([[0, 1, 2, 3], [1, 2, 0, 1]]), num_users=4, num_items=3)
    mixed = copy.deepcopy(small)
    mixed.user_emb.double()
    assert recall_ndcg_at_k(mixed, graph, held_out, k=2) == recall_ndcg_at_k(small.double(), graph, held_out, k=2)
    assert torch.equal(mixed.score_all(graph), small.score_all(graph))


def test_metrics_refuse_pairs_counted_twice_and_labels_that_are_not_0_or_1():
    """A test pair stored twice was counted twice (NDCG@1 of 2.0), a request edge listed twice weighed twice in
    MI-BF, a rating of 0.3 was a negative to the AUC and a positive to Recall, and 2.5 pairs gave a standard error."""
    from graphforget.verify import sign_test
    graph = make_interactions(torch.tensor([[0, 1, 2, 3], [0, 1, 2, 0]]), torch.tensor([1., 0., 1., 0.]), 4, 3)
    model = MF(4, 3, 2)
    model.reset_parameters(0)
    twice = graph.clone()
    twice[EDGE].edge_index = graph[EDGE].edge_index[:, [0, 1, 2, 2]]
    twice[EDGE].edge_label = torch.tensor([1., 0., 1., 1.])
    for metric in (evaluate_auc, recall_ndcg_at_k):
        with pytest.raises(ValueError, match=r"the test set holds 1 duplicated \(user, item\) pairs, the first "
                                             r"\(2, 2\) at positions 2 and 3; store each pair once"):
            metric(model, graph, twice)
    ratings = graph.clone()
    ratings[EDGE].edge_label = torch.tensor([5., 0.3, 1., 0.])
    for metric in (evaluate_auc, recall_ndcg_at_k):
        with pytest.raises(ValueError, match=r"edge_label must be 0 or 1 .* got 2 other values, e.g. \[5.0, 0.3"):
            metric(model, graph, ratings)
    request = torch.tensor([[0, 2, 0], [0, 2, 0]])
    with pytest.raises(ValueError, match="request holds 1 duplicated"):
        mi_bf(model, graph, model, graph, request)
    with pytest.raises(ValueError, match="request holds 1 duplicated"):
        mi_ng(model, graph, request, torch.tensor([[1], [0]]))
    # Negatives the model was trained on, or the request itself (MI-NG was then 1.0), are no negatives.
    request = torch.tensor([[0, 2], [1, 0]])
    for negatives, message in ((torch.tensor([[0, 1], [2, 1]]), r"1 pairs of graph_after, .* the first \(1, 1\)"),
                               (torch.tensor([[3, 2], [1, 0]]), r"1 requested edges, the first \(2, 0\)"),
                               (torch.tensor([[3, 3], [1, 1]]), "negatives holds 1 duplicated")):
        with pytest.raises(ValueError, match=message):
            mi_ng(model, graph, request, negatives)
    assert mi_ng(model, graph, request, torch.tensor([[3, 3], [1, 2]])) > 0
    for negatives, message in ((torch.tensor([[3.0, 3.7], [1.0, 2.2]]), "negatives holds integer .* torch.float32"),
                               (torch.tensor([[True, True], [False, True]]), "negatives holds integer .* torch.bool"),
                               (torch.tensor([[3, 3], [1, 2], [0, 0]]), r"negatives must have shape \[2, N\]"),
                               (torch.tensor([[3, 3], [1, -1]]), r"negatives holds 1 pairs with unknown ids, the "
                                                                  r"first \(3, -1\)")):  # its key was pair (2, 2)'s
        with pytest.raises(ValueError, match=message):
            mi_ng(model, graph, request, negatives)
    # Narrow integer negatives are keyed as int64: a uint8 key 3 * 100 + 5 overflowed and a trained pair passed
    wide = make_interactions(torch.tensor([[0, 1, 3], [0, 1, 5]]), None, 4, 100)
    for dtype in (torch.uint8, torch.int8, torch.int32):
        with pytest.raises(ValueError, match=r"1 pairs of graph_after, .* the first \(3, 5\)"):
            mi_ng(MF(4, 100, 2), wide, torch.tensor([[0], [1]]), torch.tensor([[3, 2], [5, 7]], dtype=dtype))
    for counts in ((2.5, 3), (3, float("inf")), (True, 3)):
        with pytest.raises(ValueError, match="pair counts must be integers"):
            auc_standard_error(0.5, *counts)
        with pytest.raises(ValueError, match="sign_test needs integer counts >= 0"):
            sign_test(*counts)


# --------------------------------------------------------------------------------------------- audit cases

class DropoutMF(MF):
    """MF with a dropout on the user rows (a user's own GNN may have one): scores are random in train mode."""

    def __init__(self, num_users: int, num_items: int, embedding_dim: int):
        super().__init__(num_users, num_items, embedding_dim)
        self.drop = torch.nn.Dropout(0.5)

    def embed(self, graph):
        return self.drop(self.user_emb.weight), self.item_emb.weight


def test_scoring_metrics_score_in_eval_mode_and_restore_every_mode():
    graph = make_interactions(torch.tensor([[0, 1, 2, 3], [0, 1, 2, 3]]), None, 4, 6)
    test = make_interactions(torch.tensor([[0, 1, 2, 3, 0], [4, 5, 0, 1, 5]]), None, 4, 6)
    edges, negatives = torch.tensor([[0, 1, 2, 3], [4, 5, 0, 1]]), torch.tensor([[0, 1], [2, 3]])
    model = DropoutMF(4, 6, 8)
    model.reset_parameters(0)
    model.eval()
    expected = (mean_probability(model, graph, edges), mi_ng(model, graph, edges, negatives),
                recall_ndcg_at_k(model, graph, test, k=2))
    reference = copy.deepcopy(model)
    model.frozen = torch.nn.Identity()  # a submodule the caller froze: its own flag, not the model's, comes back
    model.train()
    model.frozen.eval()
    state = torch.random.get_rng_state()
    for _ in range(3):  # in train mode the dropout drew other rows on each call
        assert mean_probability(model, graph, edges) == expected[0]
        assert mi_ng(model, graph, edges, negatives) == expected[1]
        assert mi_bf(model, test, reference, graph, edges) == 1.0
        assert prediction_distance(model, graph, reference, graph, edges) == 0.0
        assert recall_ndcg_at_k(model, graph, test, k=2) == expected[2]
    assert model.training and model.drop.training and not model.frozen.training and not reference.training
    assert torch.equal(state, torch.random.get_rng_state())


def test_recall_ndcg_never_ranks_a_masked_training_item_even_with_k_above_the_free_items():
    # One user, items scored 4 > 3 > 2 > 1; item 0 is a training pair. With K = 5 the top-K reaches the masked item
    # (score -inf), which is no hit: the test positives 2 and 3 are ranks 2 and 3 of the free items 1, 2, 3.
    model = hand_mf([[1.0]], [[4.0], [3.0], [2.0], [1.0]])
    train = make_interactions(torch.tensor([[0], [0]]), num_users=1, num_items=4)
    test = make_interactions(torch.tensor([[0, 0], [2, 3]]), num_users=1, num_items=4)
    recall, ndcg = naive_recall_ndcg(model, {(0, 0)}, [(0, 2, 1.0), (0, 3, 1.0)], 4, 5)
    assert (recall, ndcg) == (1.0, pytest.approx((1 / math.log2(3) + 0.5) / (1 + 1 / math.log2(3))))
    out = recall_ndcg_at_k(model, train, test, k=5)
    assert (out["recall@5"], out["ndcg@5"]) == (pytest.approx(recall), pytest.approx(ndcg))


def test_recall_ndcg_refuses_test_positives_that_are_training_interactions():
    """Masked, they can never be recalled: the training pairs given as the test set (or the whole graph as the
    training graph) scored Recall@20 0, with no word. A label-0 test pair among them is no positive, and passes."""
    model = hand_mf([[1.0]], [[4.0], [3.0], [2.0]])
    train = make_interactions(torch.tensor([[0, 0], [0, 1]]), num_users=1, num_items=3)
    test = make_interactions(torch.tensor([[0, 0, 0], [0, 1, 2]]), torch.tensor([1.0, 0.0, 1.0]), 1, 3)
    with pytest.raises(ValueError, match=re.escape("1 of the test positives are training interactions of the graph, "
                                                   "e.g. [[0, 0]]: they are masked from the ranking")):
        recall_ndcg_at_k(model, train, test, k=2)
    test[EDGE].edge_label = torch.tensor([0.0, 0.0, 1.0])
    assert recall_ndcg_at_k(model, train, test, k=1)["recall@1"] == 1.0  # item 2, the only free one
    # found in the batch that ranks its user: the last of three, one user a batch
    model = hand_mf([[1.0], [0.5], [0.2]], [[4.0], [3.0], [2.0]])
    train = make_interactions(torch.tensor([[0, 1, 2], [0, 1, 2]]), num_users=3, num_items=3)
    test = make_interactions(torch.tensor([[0, 1, 2], [1, 2, 2]]), num_users=3, num_items=3)
    with pytest.raises(ValueError, match=re.escape("1 of the test positives are training interactions of the graph, "
                                                   "e.g. [[2, 2]]")):
        recall_ndcg_at_k(model, train, test, k=1, batch_size=1)


def test_recall_ndcg_without_a_test_positive_is_nan_not_zero():
    # No user to average over: PyG's metrics said 0, a figure the model never earned (or lost).
    model = hand_mf([[1.0], [0.5]], [[4.0], [3.0], [2.0]])
    train = make_interactions(torch.tensor([[0], [0]]), num_users=2, num_items=3)
    negatives = make_interactions(torch.tensor([[0, 1], [1, 2]]), torch.tensor([0., 0.]), 2, 3)
    out = recall_ndcg_at_k(model, train, negatives, k=2)
    assert set(out) == {"recall@2", "ndcg@2"} and all(math.isnan(value) for value in out.values())


def test_mi_bf_and_mi_ng_of_probabilities_that_underflowed_are_infinite_as_in_the_report():
    graph = make_interactions(torch.tensor([[0, 1], [0, 1]]), num_users=2, num_items=3)
    before = hand_mf([[1.0], [2.0]], [[0.5], [-1.0], [0.0]])
    after = hand_mf([[1.0], [2.0]], [[-800.0], [-900.0], [0.0]])  # sigma(-800) is 0 in float64
    request = torch.tensor([[0, 1], [0, 1]])
    assert mean_probability(after, graph, request) == 0.0
    remaining, _ = without_edges(graph, request)
    assert mi_bf(before, graph, after, remaining, request) == math.inf  # was a ZeroDivisionError
    assert mi_ng(after, graph, request, torch.tensor([[0], [2]])) == math.inf
    assert math.isnan(mi_bf(after, graph, after, remaining, request))  # 0 / 0


def test_parameter_distance_of_models_without_parameters_is_zero():
    class Table(torch.nn.Module):  # scores from a buffer: no parameter at all
        def __init__(self):
            super().__init__()
            self.register_buffer("table", torch.zeros(2, 3))

    assert parameter_distance(Table(), Table()) == 0.0  # was a TypeError from torch.sqrt(0)


class ColumnScores(torch.nn.Module):
    """A stub recommender: the score of (u, i) is ``table[u, i]``, returned in the shape ``shape(scores [T])`` gives
    (a user's GNN returning ``[T, 1]`` logits, say)."""

    def __init__(self, table, shape=lambda scores: scores):
        super().__init__()
        self.register_buffer("table", torch.as_tensor(table, dtype=torch.float))
        self.shape = shape

    def forward(self, graph, edge_label_index):
        return self.shape(self.table[edge_label_index[0], edge_label_index[1]])


def test_scoring_metrics_refuse_scores_that_are_not_one_logit_per_pair():
    # A [T, 1] output broadcast against a [T] one: the distance between two models of the same scores was 0.88,
    # not 0; a [2, T] output was averaged into a mean probability of 0.5; a [1] output broadcast over the pairs.
    graph = make_interactions(torch.tensor([[0, 1], [0, 1]]), num_users=2, num_items=3)
    table, edges = torch.tensor([[0., 1., 2.], [3., 4., 5.]]), torch.tensor([[0, 0, 1], [0, 2, 1]])
    flat, column = ColumnScores(table), ColumnScores(table, lambda s: s[:, None])
    both_signs, first = ColumnScores(table, lambda s: torch.stack([s, -s])), ColumnScores(table, lambda s: s[:1])
    assert prediction_distance(flat, graph, ColumnScores(table), graph, edges) == 0.0
    with pytest.raises(ValueError, match=r"the model returned scores of shape \[3, 1\] for the edge list \(3 pairs\)"):
        prediction_distance(flat, graph, column, graph, edges)
    with pytest.raises(ValueError, match=r"scores of shape \[1\] for the edge list"):
        prediction_distance(first, graph, flat, graph, edges)
    for model, shape in ((both_signs, r"\[2, 3\]"), (first, r"\[1\]")):
        with pytest.raises(ValueError, match=f"scores of shape {shape}"):
            mean_probability(model, graph, edges)
        with pytest.raises(ValueError, match=f"scores of shape {shape}"):
            mi_ng(model, graph, edges, torch.tensor([[0, 1, 1], [1, 0, 2]]))
    test = make_interactions(torch.tensor([[0, 0, 1, 1], [0, 1, 1, 2]]), torch.tensor([1., 0., 1., 0.]), 2, 3)
    with pytest.raises(ValueError, match=r"scores of shape \[4, 1\] for the test set"):
        evaluate_auc(column, graph, test)


def test_auc_groups_names_inputs_that_do_not_fit():
    # Each was an IndexError or an AttributeError inside torch; float ids were compared as floats.
    scores, labels = torch.tensor([0.1, 0.4, 0.3, 0.9, 0.2]), torch.tensor([1., 0., 1., 0., 1.])
    test_edges, request = torch.tensor([[0, 1, 2, 3, 4], [0, 1, 2, 3, 4]]), torch.tensor([[0], [1]])
    cases = [((scores[:4], test_edges, labels[:4], request), r"scores \[4\] and labels \[4\] must hold one value per "
                                                              r"pair of test_edges \[2, 5\]"),
             ((scores, test_edges, labels[:4], None), r"labels \[4\]"),
             ((scores, test_edges.t(), labels, request), r"test_edges must have shape \[2, T\], got \[5, 2\]"),
             ((scores, test_edges.float(), labels, request), "test_edges holds integer .* got dtype torch.float32"),
             ((scores, test_edges, labels, torch.tensor([[0, 1]])), r"request must have shape \[2, R\], got \[1, 2\]"),
             ((scores, test_edges, labels, request.float()), "request holds integer")]
    for args, message in cases:
        with pytest.raises(ValueError, match=message):
            auc_groups(*args)
    # Nested lists are pairs too: the same figures as tensors.
    expected = auc_groups(scores, test_edges, labels, request)
    assert auc_groups(scores, test_edges, labels, [[0], [1]]) == pytest.approx(expected, nan_ok=True)
    # An empty request written [[], []] has no ids to be floats (it was refused as float32), as validate_pairs takes it
    empty = auc_groups(scores, test_edges, labels, torch.zeros(2, 0, dtype=torch.long))
    assert math.isnan(empty["auc_1"]) and math.isnan(empty["auc_2"])
    assert auc_groups(scores, test_edges, labels, [[], []]) == pytest.approx(empty, nan_ok=True)
    with pytest.raises(ValueError, match="request holds integer"):  # a tensor's dtype is checked, empty or not
        auc_groups(scores, test_edges, labels, torch.empty(2, 0))


class EveryUserScores(DistanceMF):
    """A ``score_all`` that ignores its ``users`` and returns every user's row (a user's own model may)."""

    def score_all(self, graph, users=None):
        return super().score_all(graph, None)


class WideScores(DistanceMF):
    """A ``score_all`` with one column too many (a padding item, say)."""

    def score_all(self, graph, users=None):
        scores = super().score_all(graph, users)
        return torch.cat([scores, scores.new_full((scores.size(0), 1), 1e3)], dim=1)


@pytest.mark.parametrize("kind, shape", [(EveryUserScores, "4, 5"), (WideScores, "2, 6")])
def test_recall_ndcg_refuses_a_score_all_that_does_not_return_the_batch_s_rows(kind, shape):
    # With batches smaller than the user count, the rows of users 0..B-1 were ranked for the batch's users: recall
    # and NDCG of other users, without a word; and only the rows had been checked: an extra column would rank an
    # item that does not exist.
    model = kind(4, 5, 2)
    model.reset_parameters(0)
    train = make_interactions(torch.tensor([[0, 1, 2, 3], [0, 1, 2, 3]]), num_users=4, num_items=5)
    test = make_interactions(torch.tensor([[1, 2, 3], [4, 4, 4]]), num_users=4, num_items=5)
    with pytest.raises(ValueError, match=rf"score_all returned scores of shape \[{shape}\] for 2 users; .* \[2, 5\]"):
        recall_ndcg_at_k(model, train, test, k=2, batch_size=2)


def test_a_model_off_its_graph_s_device_is_refused_naming_both():
    # it failed inside torch ("Expected all tensors to be on the same device"); a meta model stands for a GPU one here
    graph = make_interactions(torch.tensor([[0, 1], [0, 1]]), num_users=2, num_items=3)
    elsewhere = hand_mf([[1.0, 0.0], [2.0, 1.0]], [[0.5, 1.0], [-1.0, 0.0], [0.0, 3.0]]).to("meta")
    for call in (lambda: prediction_distance(elsewhere, graph, elsewhere, graph, torch.tensor([[0], [0]])),
                 lambda: evaluate_auc(elsewhere, graph, graph),
                 lambda: recall_ndcg_at_k(elsewhere, graph, graph, k=1)):
        with pytest.raises(ValueError, match="the model is on meta and its graph on cpu"):
            call()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_distances_and_auc_of_models_and_tensors_on_different_devices():
    # A model on the GPU against a retrain on the CPU: each is scored on its graph's device, and the difference of
    # tensors of two devices was a RuntimeError inside torch.
    graph = make_interactions(torch.tensor([[0, 1], [0, 1]]), num_users=2, num_items=3)
    a = hand_mf([[1.0, 0.0], [2.0, 1.0]], [[0.5, 1.0], [-1.0, 0.0], [0.0, 3.0]])
    b = hand_mf([[1.0, 1.0], [2.0, 0.0]], [[0.5, 1.0], [-1.0, 2.0], [1.0, 3.0]])
    edges = torch.tensor([[0, 0, 1, 1], [0, 2, 1, 2]])
    expected = prediction_distance(a, graph, b, graph, edges), parameter_distance(a, b)
    gpu = copy.deepcopy(a).cuda()
    # float32 sums in another order on the GPU (PyG's .to() moves in place: a clone, or b's graph went too)
    assert prediction_distance(gpu, graph.clone().to("cuda"), b, graph, edges) == pytest.approx(expected[0], rel=1e-6)
    with pytest.raises(ValueError, match="the model is on cuda:0 and its graph on cpu"):
        prediction_distance(gpu, graph, b, graph, edges)
    assert parameter_distance(gpu, b) == pytest.approx(expected[1], rel=1e-6)
    scores, labels = torch.tensor([0.1, 0.9, 0.4]), torch.tensor([0., 1., 1.])
    assert auc(scores, labels.cuda()) == auc(scores.cuda(), labels) == auc(scores, labels)
    test_edges = torch.tensor([[0, 1, 1], [0, 1, 2]])
    expected = auc_groups(scores, test_edges, labels, torch.tensor([[1], [2]]))
    assert auc_groups(scores.cuda(), test_edges, labels, torch.tensor([[1], [2]]).cuda()) == pytest.approx(
        expected, nan_ok=True)


def test_prediction_gap_is_a_share_of_the_originals_distance_above_float32_noise():
    """One rule for every protocol: the attack protocol divided by any distance above 0, the harness's others only
    by one above 4 float32 steps per pair (4 * 2**-23 * sqrt(100) = 4.77e-6 on 100 pairs)."""
    assert prediction_gap(0.3, 1.2, 100) == 0.25
    assert prediction_gap(1e-6, 5e-6, 100) == pytest.approx(0.2)
    assert math.isnan(prediction_gap(1e-6, 4.7e-6, 100)) and math.isnan(prediction_gap(0.0, 0.0, 100))
    assert math.isnan(prediction_gap(1e-6, 1e-5, 10_000))  # 4.77e-5 on 10,000 pairs
    floor = 4 * 2 ** -23 * math.sqrt(100)  # within the floor itself: no ratio (from a mutation run)
    assert math.isnan(prediction_gap(1e-6, floor, 100))
    assert prediction_gap(1e-6, math.nextafter(floor, 1.0), 100) == 1e-6 / math.nextafter(floor, 1.0)
    for pairs in (-3, 0, 2.5):  # -3 failed on a math domain error, 0 and 2.5 passed (a QA probe)
        with pytest.raises(ValueError, match=rf"prediction_gap: num_pairs must be a positive integer, got {pairs}"):
            prediction_gap(0.3, 1.2, pairs)


def test_a_newcomers_mistakes_get_errors_that_name_the_argument(one_thread):
    """Found by a QA probe: two (user, item) tuples were read as a [2, R] request, users (0, 68) and items (0, 40),
    and the wrong edges were forgotten; an UnlearnResult, a model or a tensor in a graph's or a model's place failed
    with an AttributeError nine frames deep."""
    from graphforget.data import user_edges, validate_pairs
    graph = make_interactions(torch.tensor([[0, 0, 1, 2], [1, 2, 0, 1]]), torch.tensor([1., 0., 1., 0.]), 3, 3)
    model = MF(3, 3, 2)
    for pairs in ([(0, 1), (0, 2)], ((0, 1), (0, 2)), np.array([[0, 1], [0, 2]])):
        with pytest.raises(ValueError, match=r"a request given as a \w+ of shape \[2, 2\] is ambiguous .* "
                                             r"torch.tensor\(pairs\).t\(\) for a list of \(user, item\) pairs"):
            validate_pairs(graph, pairs)
    assert validate_pairs(graph, torch.tensor([[0, 0], [1, 2]])).tolist() == [[0, 0], [1, 2]]  # a tensor is [2, R]
    with pytest.raises(ValueError, match=re.escape("a request must be a dense [2, R] integer tensor, got a "
                                                   "torch.sparse_coo one: .to_dense()")):  # torch's error (qa104)
        validate_pairs(graph, torch.tensor([[0, 0], [1, 2]]).to_sparse())
    with pytest.raises(ValueError, match=re.escape("must have shape [2, R], got [3, 2] (a (user, item) pair a row: "
                                                   "transpose it, .t())")):
        validate_pairs(graph, [(0, 1), (0, 2), (1, 0)])
    result = type("UnlearnResult", (), {})()
    with pytest.raises(TypeError, match="the model must be a torch.nn.Module .* got a UnlearnResult"):
        evaluate_auc(result, graph, graph)
    with pytest.raises(TypeError, match="the training graph must be a HeteroData interaction graph .* got a MF"):
        evaluate_auc(graph, model, graph)
    with pytest.raises(TypeError, match="the test set must be a HeteroData interaction graph .* got a Tensor"):
        evaluate_auc(model, graph, torch.tensor([[0], [1]]))
    with pytest.raises(TypeError, match="the graph must be a HeteroData interaction graph .* got a MF"):
        user_edges(model, [0])
    transposed = graph.clone()  # it was said to need an edge_label per pair (qa104)
    transposed[EDGE].edge_index = transposed[EDGE].edge_index.t().contiguous()
    for metric in (lambda: evaluate_auc(model, graph, transposed), lambda: recall_ndcg_at_k(model, graph, transposed)):
        with pytest.raises(ValueError, match=re.escape("the test set's edge_index must have shape [2, T], got [4, 2]")):
            metric()


def test_every_pair_argument_reads_lists_as_requests_do(one_thread):
    """mean_probability, mi_ng's negatives and prediction_distance read two (user, item) tuples as a [2, R] row of
    users and one of items, and scored other pairs; an empty list was refused as exclude or negatives for its float
    dtype, which torch gives it (a QA probe)."""
    from graphforget.verify import matched_non_members
    graph = make_interactions(torch.tensor([[0, 0, 1, 2], [1, 2, 0, 1]]), torch.tensor([1., 0., 1., 0.]), 3, 3)
    model = MF(3, 3, 2)
    model.reset_parameters(0)
    request = torch.tensor([[0], [1]])
    calls = [("the edge list", lambda p: mean_probability(model, graph, p)),
             ("negatives", lambda p: mi_ng(model, graph, request, p)),
             ("the edge list", lambda p: prediction_distance(model, graph, model, graph, p))]
    for what, call in calls:
        with pytest.raises(ValueError, match=rf"{what} given as a list of shape \[2, 2\] is ambiguous"):
            call([(1, 1), (2, 2)])
    with pytest.raises(ValueError, match=r"request must be a non-empty \[2, T\]"):  # it said "the edge list"
        mi_bf(model, graph, model, graph, [[], []])
    assert matched_non_members(graph, request, exclude=[[], []]).tolist() == matched_non_members(
        graph, request).tolist()


def test_probabilities_of_a_half_precision_model_are_summed_in_float64():
    """A bfloat16 model's probabilities were taken, averaged and differenced in bfloat16: its mean probability read 0.5
    and its distance to its float32 self 0.102, against 0.49955 and 0.031 from the same logits in float64 (a QA
    probe)."""
    graph = make_interactions(torch.tensor([[u, i] for u in range(30) for i in range(20) if (u + i) % 3]).t(),
                              torch.ones(400), 30, 20)
    model = MF(30, 20, 16)
    model.reset_parameters(0)
    half = copy.deepcopy(model).to(torch.bfloat16)
    edges = graph[EDGE].edge_index
    with torch.no_grad():
        low, full = torch.sigmoid(half(graph, edges).double()), torch.sigmoid(model(graph, edges).double())
    assert mean_probability(half, graph, edges) == pytest.approx(float(low.mean()), rel=1e-12)
    assert prediction_distance(half, graph, model, graph, edges) == pytest.approx(float((low - full).norm()),
                                                                                  rel=1e-12)


def test_membership_ratios_run_the_model_without_autograd():
    """mi_bf and mi_ng ran the model with autograd on (torch warned of converting a tensor that requires grad), where
    mean_probability did not (a QA probe)."""
    class Checked(MF):
        def forward(self, graph, edge_label_index):
            assert not torch.is_grad_enabled()
            return super().forward(graph, edge_label_index)
    model = Checked(3, 4, 2)
    graph = make_interactions(torch.tensor([[0, 1, 2], [0, 1, 2]]), torch.ones(3), 3, 4)
    request = graph[EDGE].edge_index[:, :2]
    assert math.isfinite(mi_bf(model, graph, model, without_edges(graph, request)[0], request)) and math.isfinite(
        mi_ng(model, graph, request, torch.tensor([[0, 1], [3, 3]])))


def test_in_graph_against_a_set_of_pairs_with_fewer_users_than_items():
    """Pair keys built with the user count instead of the item count collide ((1, 0) and (0, 3) with 3 users)."""
    edges = torch.tensor([[1, 2, 0], [0, 4, 1]])
    graph = make_interactions(edges, num_users=3, num_items=5)
    every = torch.tensor(list(itertools.product(range(3), range(5)))).t()
    members = set(map(tuple, edges.t().tolist()))
    assert in_graph(graph, every).tolist() == [tuple(pair) in members for pair in every.t().tolist()]


# Each test below failed under a one-line mutation that the suite had passed (qa166, mutation testing).

# --------------------------------------------------------------------------------------------- AUC

def test_auc_ranks_float64_scores_that_float32_would_tie():
    """Scores of a float64 model 1e-12 apart are distinct: ranked in float32 they tied and the AUC was 0.5."""
    scores = torch.tensor([1.0, 1.0 + 1e-12, 1.0 + 2e-12, 1.0 + 3e-12], dtype=torch.float64)
    labels = torch.tensor([0., 0., 1., 1.])
    expected = naive_auc(scores.tolist(), labels.tolist())
    assert expected == 1.0
    assert auc(scores, labels) == expected


# --------------------------------------------------------------------------------------------- AUC interval

def documented_accepts(a: float, theta: float, n1: int, n2: int, level: float) -> bool:
    """The docstring's test: (A - theta)^2 <= z^2 V(theta), V Hanley-McNeil's variance at theta with both counts
    replaced by their mean, written out from the formula (not the module's code)."""
    z = statistics.NormalDist().inv_cdf(1 - (1 - level) / 2)
    mean = (n1 + n2) / 2
    variance = theta * (1 - theta) / (n1 * n2) * (1 + (mean - 1) * ((1 - theta) / (2 - theta) + theta / (1 + theta)))
    return (a - theta) ** 2 <= z * z * variance


def reference_bound(a: float, n1: int, n2: int, level: float, upper: bool) -> float:
    """The edge of the accepted AUCs on one side of ``a``: a grid of 10,001 points to bracket it, then 200
    bisections."""
    inside = a
    grid = [a + (1 - a) * j / 10_000 for j in range(10_001)] if upper else [a - a * j / 10_000 for j in range(10_001)]
    outside = None
    for theta in grid:
        if documented_accepts(a, theta, n1, n2, level):
            inside = theta
        else:
            outside = theta
            break
    if outside is None:
        return inside
    for _ in range(200):
        middle = (inside + outside) / 2
        if documented_accepts(a, middle, n1, n2, level):
            inside = middle
        else:
            outside = middle
    return inside


@pytest.mark.parametrize("a, n1, n2, level", [(0.8, 3, 3, 0.95), (0.6, 4, 9, 0.95), (1.0, 50, 4, 0.95),
                                              (0.0, 7, 5, 0.9), (0.72, 40, 25, 0.99), (0.55, 2, 200, 0.8)])
def test_auc_interval_is_the_documented_test_inverted_to_float_precision(a, n1, n2, level):
    """Each bound is where the documented test flips from accept to reject (Newcombe's inversion with the mean
    count): mean instead of mean - 1 in the variance moved the bounds by 0.001-0.041 on these cases (0.041 at 3
    and 3 pairs), and 10 bisections instead of 60 left them up to 1e-3 off, both inside the coverage tests'
    tolerances."""
    low, high = auc_interval(a, n1, n2, level)
    assert low == pytest.approx(reference_bound(a, n1, n2, level, upper=False), abs=1e-9)
    assert high == pytest.approx(reference_bound(a, n1, n2, level, upper=True), abs=1e-9)
    # and the documented test accepts the bounds and rejects just beyond them (unless at 0 or 1)
    assert documented_accepts(a, low, n1, n2, level) and documented_accepts(a, high, n1, n2, level)
    if low > 1e-6:
        assert not documented_accepts(a, low - 1e-7, n1, n2, level)
    if high < 1 - 1e-6:
        assert not documented_accepts(a, high + 1e-7, n1, n2, level)


# --------------------------------------------------------------------------------------------- prediction distance

class EdgeCountModel(torch.nn.Module):
    """Scores (u, i) by ``weight * (deg(u) - deg(i))`` in the graph it is given: its scores read the graph, so
    a model run on another graph than its own gives other scores (as a LightGCN's do)."""

    def __init__(self, num_users: int, num_items: int, weight: float):
        super().__init__()
        self.num_users, self.num_items = num_users, num_items
        self.weight = torch.nn.Parameter(torch.tensor(weight, dtype=torch.float64))

    def forward(self, graph, edge_label_index):
        edges = graph[EDGE].edge_index
        user_deg = torch.bincount(edges[0], minlength=self.num_users).double()
        item_deg = torch.bincount(edges[1], minlength=self.num_items).double()
        return self.weight * (user_deg[edge_label_index[0]] - item_deg[edge_label_index[1]])


def test_prediction_distance_runs_each_model_on_its_own_graph():
    """The Original on the graph before against Retrain on the graph after: with both tests on one graph, either
    model run on the other's graph passed (mutations of qa166)."""
    before = make_interactions(torch.tensor([[0, 0, 0, 1, 2], [0, 1, 2, 1, 2]]), num_users=3, num_items=3)
    after = make_interactions(torch.tensor([[0, 1, 2], [1, 1, 2]]), num_users=3, num_items=3)
    a, b = EdgeCountModel(3, 3, 0.7), EdgeCountModel(3, 3, -0.4)
    edges = torch.tensor([[0, 1, 2, 0], [0, 1, 2, 2]])
    # Degrees before: users (3, 1, 1), items (1, 2, 2); after: users (1, 1, 1), items (0, 2, 1).
    deg = {"before": ((3, 1, 1), (1, 2, 2)), "after": ((1, 1, 1), (0, 2, 1))}

    def probabilities(weight, which):
        users, items = deg[which]
        return [sigmoid(weight * (users[u] - items[i])) for u, i in zip(*edges.tolist())]

    def l2(p, q):
        return math.sqrt(sum((x - y) ** 2 for x, y in zip(p, q)))

    expected = l2(probabilities(0.7, "before"), probabilities(-0.4, "after"))
    assert prediction_distance(a, before, b, after, edges) == pytest.approx(expected, rel=1e-12)
    # each graph matters: either model on the other's graph gives another distance
    for wrong in (l2(probabilities(0.7, "after"), probabilities(-0.4, "after")),
                  l2(probabilities(0.7, "before"), probabilities(-0.4, "before"))):
        assert abs(wrong - expected) > 1e-3
