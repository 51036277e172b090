"""The power-law interaction generator: seeded, exact, duplicate-free, heavy-tailed, and trainable."""
from __future__ import annotations

import pytest
import torch

from graphforget import BCEObjective, BPRObjective, TrainConfig, train
from graphforget.data import (EDGE, GOWALLA_SHAPE, add_negatives, check_unique_pairs, pair_keys, power_law_exponent,
                              power_law_interactions)
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
    with pytest.raises(ValueError, match="k_min"):
        power_law_exponent(sample, 0)
    with pytest.raises(ValueError, match="fewer than two"):
        power_law_exponent(sample, 10 ** 12)


@pytest.mark.parametrize("kwargs, match", [({"num_edges": 0}, ">= 1"), ({"num_edges": 60, "num_users": 10,
                                            "num_items": 5}, "possible pairs"),
                                           ({"num_edges": 100, "user_exponent": 2.0}, "exponents"),
                                           ({"num_edges": 100, "item_max_ratio": 0.5}, "ratios")])
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
