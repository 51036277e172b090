"""The power-law interaction generator: seeded, exact, duplicate-free, heavy-tailed, and trainable."""
from __future__ import annotations

import math

import pytest
import torch

from graphforget import BCEObjective, BPRObjective, TrainConfig, train
from graphforget.data import (EDGE, GOWALLA_SHAPE, add_negatives, check_unique_pairs, pair_keys, power_law_exponent,
                              power_law_interactions)
from graphforget.data.synthetic import _truncated_pareto_mean
from graphforget.models import LightGCN, MF


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One torch thread for this module (restored after): its sorts are small, and with the default threads
    a loaded 2-core machine runs them several times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def degrees(graph, side: int) -> torch.Tensor:
    """``[N]`` degrees of the users (``side`` 0) or items (1)."""
    count = graph["user" if side == 0 else "item"].num_nodes
    return torch.bincount(graph[EDGE].edge_index[side], minlength=count)


def test_same_seed_same_graph_other_seed_other_graph():
    first, again, other = (power_law_interactions(20_000, seed=s) for s in (3, 3, 4))
    assert torch.equal(first[EDGE].edge_index, again[EDGE].edge_index)
    assert not torch.equal(first[EDGE].edge_index, other[EDGE].edge_index)


@pytest.mark.parametrize("num_edges, num_users, num_items", [(1, None, None), (12_345, None, None),
                                                             (5_000, 100, 120), (30_000, 400, 300)])
def test_exact_count_distinct_pairs_implicit_labels(num_edges, num_users, num_items):
    graph = power_law_interactions(num_edges, num_users, num_items, seed=1)
    ei, n_items = graph[EDGE].edge_index, graph["item"].num_nodes
    assert ei.size(1) == num_edges
    assert pair_keys(ei, n_items).unique().numel() == num_edges
    check_unique_pairs(ei, n_items)
    assert torch.equal(graph[EDGE].edge_label, torch.ones(num_edges))
    assert "observed" not in graph[EDGE]  # as Gowalla is loaded: every edge is a real interaction
    if num_users is None and num_edges > 1:  # Gowalla's proportion of users and items to edges
        assert graph["user"].num_nodes == round(num_edges * GOWALLA_SHAPE["users_per_edge"])
        assert graph["item"].num_nodes == round(num_edges * GOWALLA_SHAPE["items_per_edge"])
    elif num_users is not None:
        assert (graph["user"].num_nodes, n_items) == (num_users, num_items)
    if num_edges >= 5_000:  # the surplus of distinct draws dropped at random, not the highest keys' (qa96: the
        # last tenth of 100 users, whose weights are drawn alike, had kept 2 of them with an edge)
        tenth = graph["user"].num_nodes // 10
        assert 0.07 < float(torch.bincount(ei[0], minlength=graph["user"].num_nodes)[-tenth:].sum()) / num_edges < 0.13


def test_degrees_follow_the_requested_power_law():
    graph = power_law_interactions(100_000, seed=0)
    users, items = degrees(graph, 0), degrees(graph, 1)
    # k_min as fitted on Gowalla (40 and 10); the cap at 30x / 72x the mean steepens the tail a little.
    assert power_law_exponent(users, 40) == pytest.approx(GOWALLA_SHAPE["user_exponent"], abs=0.2)
    assert power_law_exponent(items, 10) == pytest.approx(GOWALLA_SHAPE["item_exponent"], abs=0.2)
    steeper = power_law_interactions(100_000, user_exponent=3.5, seed=0)
    assert power_law_exponent(degrees(steeper, 0), 40) > power_law_exponent(users, 40) + 0.4
    for k in (users, items):  # Gowalla: 30x and 72x; the cap bounds the largest expected degree
        assert 10 < k.max() / k.float().mean() < 80


def test_each_side_is_capped_by_its_own_max_ratio():
    """The user and item caps are set apart: the side given 25x has a heavy tail, the side given 3x keeps its
    largest degree near 3x the mean (plus Poisson noise), whichever side it is."""
    for user_ratio, item_ratio in ((25, 3), (3, 25)):
        graph = power_law_interactions(50_000, user_max_ratio=user_ratio, item_max_ratio=item_ratio, seed=0)
        spread = [float(k.max() / k.float().mean()) for k in (degrees(graph, 0), degrees(graph, 1))]
        heavy, capped = (spread[0], spread[1]) if user_ratio > item_ratio else (spread[1], spread[0])
        assert heavy > 10 and capped < 5, (user_ratio, item_ratio, spread)


def test_the_truncated_pareto_mean_matches_the_integrals():
    """The cap solves cap / mean = max_ratio with this mean: E[w] = int w^(1-g) dw / int w^(-g) dw over [1, b],
    by hand for g = 3, b = 2 (0.5 / 0.375) and g = 4, b = 3 ((4/9) / (26/81)); no spread at b = 1."""
    assert _truncated_pareto_mean(3.0, 2.0) == pytest.approx(4 / 3, rel=1e-12)
    assert _truncated_pareto_mean(4.0, 3.0) == pytest.approx(18 / 13, rel=1e-12)
    assert _truncated_pareto_mean(2.5, 1.0) == 1.0


def test_edges_come_sorted_by_user_then_item():
    """As the docstring promises (the surplus of distinct draws is dropped at random, the rest kept in order)."""
    for num_edges, num_users, num_items in ((12_345, None, None), (5_000, 100, 120), (30_000, 400, 300)):
        graph = power_law_interactions(num_edges, num_users, num_items, seed=1)
        keys = pair_keys(graph[EDGE].edge_index, graph["item"].num_nodes)
        assert bool((keys[1:] > keys[:-1]).all()), num_edges


def test_default_node_counts_leave_at_least_two_pairs_per_edge():
    """Gowalla's proportions (29,858 users and 40,981 items to 810,128 edges), then items raised to 2 * E / users:
    10 edges -> 1 user (not 0), 20 items; 1,000 edges -> round(36.9) = 37 users and ceil(2000 / 37) = 55 items
    (Gowalla's proportion alone gives 51)."""
    for num_edges, counts in ((10, (1, 20)), (1_000, (37, 55))):
        graph = power_law_interactions(num_edges, seed=0)
        assert (graph["user"].num_nodes, graph["item"].num_nodes) == counts


def test_as_many_edges_as_pairs_give_the_complete_graph():
    graph = power_law_interactions(12, 3, 4, seed=0)
    assert pair_keys(graph[EDGE].edge_index, 4).tolist() == list(range(12))


def test_a_uniform_graph_is_not_heavy_tailed():
    """The bound the power law passes above: a graph without weights (cap 1) has Poisson degrees."""
    uniform = power_law_interactions(50_000, user_max_ratio=1, item_max_ratio=1, seed=0)
    for side in (0, 1):
        k = degrees(uniform, side)
        assert k.max() / k.float().mean() < 3


def test_power_law_exponent_recovers_a_sampled_exponent():
    gen = torch.Generator().manual_seed(0)
    # round(X) of a continuous Pareto X >= k_min - 1/2 is the discrete law the estimate assumes
    sample = (9.5 * (1 - torch.rand(50_000, generator=gen, dtype=torch.float64)) ** (-1 / 1.5)).round()
    assert power_law_exponent(sample, 10) == pytest.approx(2.5, abs=0.05)
    for bad in (0, math.nan, 1.5):  # NaN was refused as "fewer than two degrees >= k_min=nan"
        with pytest.raises(ValueError, match="k_min must be an integer >= 1"):
            power_law_exponent(sample, bad)
    with pytest.raises(ValueError, match="fewer than two"):
        power_law_exponent(sample, 10 ** 12)


def test_power_law_exponent_needs_two_tail_degrees_and_counts_k_min_in_the_tail():
    """One degree >= k_min is refused; two give 1 + n / sum(ln(k / (k_min - 1/2))), k_min itself included."""
    with pytest.raises(ValueError, match="fewer than two degrees >= k_min=10"):
        power_law_exponent(torch.tensor([1, 3, 50]), 10)
    expected = 1 + 2 / (math.log(10 / 9.5) + math.log(40 / 9.5))
    assert power_law_exponent(torch.tensor([1, 9, 10, 40]), 10) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("kwargs, match", [({"num_edges": 0}, ">= 1"), ({"num_edges": 60, "num_users": 10,
                                            "num_items": 5}, "possible pairs"),
                                           ({"num_edges": 100, "user_exponent": 2.0}, "exponents"),
                                           ({"num_edges": 100, "item_max_ratio": 0.5}, "ratios"),
                                           # a float count raised a TypeError, or was cut down by int()
                                           ({"num_edges": 10.5}, r"sizes must be integers, got num_edges=10\.5"),
                                           ({"num_edges": 10, "num_users": 3.7}, "num_users=3.7"),
                                           # the items' default divided by it: a ZeroDivisionError
                                           ({"num_edges": 100, "num_users": 0}, "num_users must be >= 1")])
def test_bad_arguments_are_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        power_law_interactions(**kwargs)


@pytest.mark.parametrize("model_cls", [MF, LightGCN])
def test_a_model_trains_an_epoch_on_it(model_cls):
    graph = power_law_interactions(4_000, seed=0)
    users, items = graph["user"].num_nodes, graph["item"].num_nodes
    for data, objective in ((add_negatives(graph, 1, seed=0), BCEObjective(l2=1.0)), (graph, BPRObjective(l2=1.0))):
        model = model_cls(users, items, embedding_dim=8)
        model.reset_parameters(0)
        result = train(model, data, objective, TrainConfig(epochs=1, batch_size=1024, patience=0))
        assert result.epochs == 1 and torch.isfinite(torch.tensor(result.history[-1]["loss"]))
