"""SISA, RecEraser and the sharded ensemble, checked against hand computations on tiny seeded graphs."""
import copy
import dataclasses
import math
import re
import time
import warnings

import pytest
import torch
import torch.nn.functional as F

from graphforget.config import derived_seed
from graphforget.data import EDGE, make_interactions, planted_communities, random_split, remove_edges
from graphforget.data.interactions import pair_keys
from graphforget.distributed import launch
from graphforget.models import MF, SGL, ContrastiveBPRObjective, LightGCN
from graphforget.objectives import BCEObjective, BPRObjective
from graphforget.train import NoSignalWarning, NotStationaryWarning, TrainConfig, TrainResult, chance_level, train
from graphforget.unlearn import (METHODS, RecEraser, RecEraserConfig, SISA, SISAConfig, ShardAttention,
                                 ShardedRecommender, UnlearningFailed, UntrainableShard)
from graphforget.unlearn.receraser import balanced_assign, balanced_kmeans, balanced_partition
from graphforget.unlearn.sharding import _warn_of_shards_at_chance, split_graph, train_aggregator, train_shards
from graphforget.unlearn.sisa import random_partition
from helpers import fit_and_unlearn_sisa

U, I, D, S = 30, 24, 8, 4
CONFIG = TrainConfig(epochs=3, batch_size=64, patience=0)
OBJECTIVE = BCEObjective(l2=1e-3)


@pytest.fixture(scope="module")
def graph():
    return planted_communities(num_users=U, num_items=I, num_communities=2, interactions_per_user=6, seed=0)




def state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def same_state(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def shard_graph_by_hand(graph, shard_of, s):
    ei = graph[EDGE].edge_index
    keep = shard_of == s
    return make_interactions(ei[:, keep], graph[EDGE].edge_label[keep], U, I)


def pick_request(graph, shard_of, shards, per_shard=2):
    """``per_shard`` edges of each listed shard, as a [2, R] request."""
    ei = graph[EDGE].edge_index
    cols = torch.cat([(shard_of == s).nonzero().flatten()[:per_shard] for s in shards])
    return ei[:, cols]


# --- the ensemble -------------------------------------------------------------------------------

def test_random_partition_is_balanced_and_seeded():
    a = random_partition(103, 4, seed=3)
    assert torch.bincount(a, minlength=4).tolist() == [26, 26, 26, 25]
    assert torch.equal(a, random_partition(103, 4, seed=3))
    assert not torch.equal(a, random_partition(103, 4, seed=4))


@pytest.mark.parametrize("model_cls", [MF, LightGCN])
def test_mean_aggregation_equals_mean_of_shard_logits(graph, model_cls):
    ei = graph[EDGE].edge_index
    shard_of = random_partition(ei.size(1), S, seed=0)
    shards = []
    for s in range(S):
        model = model_cls(U, I, D)
        model.reset_parameters(100 + s)
        shards.append(model)
    ensemble = ShardedRecommender(shards, shard_of, ei)
    pairs = torch.stack([torch.arange(U).repeat_interleave(I), torch.arange(I).repeat(U)])
    by_hand = sum(shards[s](shard_graph_by_hand(graph, shard_of, s), pairs) for s in range(S)) / S
    assert torch.allclose(ensemble(graph, pairs), by_hand, atol=1e-6)
    # score_all averages the shard score matrices; embed's concatenation has the same dot products.
    assert torch.allclose(ensemble.score_all(graph).flatten(), by_hand, atol=1e-6)
    user, item = ensemble.embed(graph)
    assert user.shape == (U, S * D)
    assert torch.allclose((user @ item.t()).flatten(), by_hand, atol=1e-6)
    assert ensemble.receptive_field == shards[0].receptive_field
    if model_cls is LightGCN:  # the shard graph matters: running shards on the whole graph differs
        whole = sum(m(graph, pairs) for m in shards) / S
        assert not torch.allclose(whole, by_hand, atol=1e-4)


def test_unassigned_edges_raise(graph):
    ei = graph[EDGE].edge_index
    ensemble = ShardedRecommender([MF(U, I, D) for _ in range(S)], random_partition(ei.size(1), S), ei)
    keys = set((ei[0] * I + ei[1]).tolist())
    extra = next(k for k in range(U * I) if k not in keys)
    bigger = make_interactions(torch.cat([ei, torch.tensor([[extra // I], [extra % I]])], 1), num_users=U, num_items=I)
    with pytest.raises(ValueError, match="no shard assignment"):
        ensemble(bigger, ei[:, :3])
    with pytest.raises(ValueError, match="aggregation"):
        ShardedRecommender([MF(U, I, D)], torch.zeros(ei.size(1), dtype=torch.long), ei, aggregation="max")


def test_reset_parameters_seeds_shard_s_with_seed_plus_s(graph):
    """The docstring's rule: shard ``s`` re-drawn with ``seed + s`` (a Retrain of an ensemble resets it so), the
    attention with ``seed``; one seed for all gave every shard the same start."""
    ei = graph[EDGE].edge_index
    ensemble = ShardedRecommender([MF(U, I, D) for _ in range(S)], random_partition(ei.size(1), S), ei, "attention")
    ensemble.reset_parameters(7)
    for s in range(S):
        ref = MF(U, I, D)
        ref.reset_parameters(7 + s)
        assert same_state(state(ensemble.shards[s]), state(ref)), s
    assert same_state(state(ensemble.attention), state(ShardAttention(S, D, seed=7)))


@pytest.mark.parametrize("aggregation", ["mean", "attention"])
def test_an_ensemble_refuses_malformed_pairs_by_name(graph, aggregation):
    """The attention ensemble scored user -1 as the last user and a ``[3, B]`` index as pairs, and failed on user
    30 with torch's IndexError; the mean ensemble's shards already refused them."""
    ei = graph[EDGE].edge_index
    ensemble = ShardedRecommender([MF(U, I, D) for _ in range(S)], random_partition(ei.size(1), S), ei, aggregation)
    bad = {"holds user id -1 at position 0, outside [0, 30)": [[-1], [0]],
           "holds user id 30 at position 0, outside [0, 30)": [[30], [0]],
           "must have shape [2, B], got [3, 1]": [[0], [0], [5]]}
    for message, pairs in bad.items():
        with pytest.raises(ValueError, match=re.escape(f"edge_label_index {message}")):
            ensemble(graph, torch.tensor(pairs))


def test_the_public_sharding_helpers_refuse_arguments_out_of_their_contract(graph):
    """A QA probe: split_graph dropped every edge of a shard id out of range and read a bool mask as shards 0/1;
    random_partition took True for one shard and failed inside torch on 2.5; balanced_assign took a capacity of 2.5
    and made a group of 3."""
    count = graph[EDGE].edge_index.size(1)
    for bad, message in ((torch.full((count,), S), f"shard ids must be in [0, {S}), got ids from {S} to {S}"),
                         (torch.ones(count, dtype=torch.bool), "shard_of holds integer shard ids, got dtype "
                                                               "torch.bool"),
                         (torch.zeros(count - 1, dtype=torch.long), f"shard_of must hold one shard id per edge, "
                                                                     f"[{count}], got [{count - 1}]")):
        with pytest.raises(ValueError, match=re.escape(message)):
            split_graph(graph, bad, S)
    with pytest.raises(ValueError, match="num_shards must be an integer >= 1, got 2.5"):
        split_graph(graph, torch.zeros(count, dtype=torch.long), 2.5)
    parts = split_graph(graph, random_partition(count, S, seed=0), S)
    assert sum(part[EDGE].edge_index.size(1) for part in parts) == count
    for value in (True, 2.5, "2"):
        with pytest.raises(ValueError, match=re.escape(f"num_shards must be an integer, got {value!r}")):
            random_partition(10, value)
    with pytest.raises(ValueError, match="num_edges must be an integer, got 10.0"):
        random_partition(10.0, 2)
    with pytest.raises(ValueError, match="capacity must be an integer, got 2.5"):
        balanced_assign(torch.rand(5, 2), 2.5)


def test_receraser_refuses_embeddings_that_are_not_floating_point_by_name(graph):
    """Integer (bool, complex) tables passed construction and failed in fit(), inside torch's cdist."""
    config = RecEraserConfig(CONFIG, num_shards=S, partition="user", aggregation="mean")
    tables = (torch.randint(0, 5, (U, D)), torch.randint(0, 5, (I, D)))
    with pytest.raises(ValueError, match=re.escape("RecEraser: pretrained embeddings must be floating-point tables, "
                                                   "got torch.int64 and torch.int64")):
        RecEraser(MF(U, I, D), graph, OBJECTIVE, config, pretrained=tables)
    with pytest.raises(ValueError, match=re.escape("user_emb and item_emb must be floating-point tables, got "
                                                   "torch.bool and torch.float32")):
        balanced_partition(tables[0] > 2, tables[1].float(), graph[EDGE].edge_index, S, "user")


def test_shard_graphs_drop_the_whole_graphs_edge_weight(graph):
    """Weights computed for the whole graph are wrong for a shard graph: each shard propagates with its own
    graph's symmetric weights, whatever ``edge_weight`` the graph passed in carries."""
    ei = graph[EDGE].edge_index
    shard_of = random_partition(ei.size(1), S, seed=0)
    weighted = graph.clone()
    weighted[EDGE].edge_weight = torch.full((ei.size(1),), 5.0)
    assert all("edge_weight" not in sub[EDGE] for sub in split_graph(weighted, shard_of, S))
    shards = []
    for s in range(S):
        shards.append(LightGCN(U, I, D))
        shards[s].reset_parameters(s)
    ensemble = ShardedRecommender(shards, shard_of, ei)
    pairs = ei[:, :20]
    with torch.no_grad():
        assert torch.equal(ensemble(weighted, pairs), ensemble(graph, pairs))
        by_hand = sum(shards[s](shard_graph_by_hand(graph, shard_of, s), pairs) for s in range(S)) / S
        assert torch.allclose(ensemble(weighted, pairs), by_hand, atol=1e-6)


class BiasedMF(MF):
    """A shard whose score is not the dot product of its embeddings."""

    def forward(self, graph, edge_label_index):
        return super().forward(graph, edge_label_index) + 1.0 + edge_label_index[1].float()


def test_mean_embed_refuses_non_dot_product_shards(graph):
    ei = graph[EDGE].edge_index
    shards = [BiasedMF(U, I, D) for _ in range(2)]
    ensemble = ShardedRecommender(shards, random_partition(ei.size(1), 2), ei)
    with pytest.raises(NotImplementedError, match="score_all"):
        ensemble.embed(graph)
    pairs = torch.stack([torch.arange(U).repeat_interleave(I), torch.arange(I).repeat(U)])
    by_hand = (shards[0](graph, pairs) + shards[1](graph, pairs)) / 2  # MF ignores the graph
    assert torch.allclose(ensemble(graph, pairs), by_hand, atol=1e-6)
    # score_all averages the shards' own score_all, which score through their forward (it is overridden), not by
    # their embeddings' dot products: the ensemble's forward, every pair.
    assert torch.allclose(ensemble.score_all(graph), by_hand.view(U, I), atol=1e-6)


def test_attention_refuses_shards_of_different_widths_by_name(graph):
    """The attention stacks the shards' embeddings: shards of two widths failed at the first score, in torch.stack."""
    edge_index = graph[EDGE].edge_index
    shard_of = random_partition(edge_index.size(1), 2)
    for attention in ("attention", ShardAttention(2, 16)):
        with pytest.raises(ValueError, match=r"one embedding_dim, got \[8, 16\]"):  # in order (by text: [16, 8])
            ShardedRecommender([MF(U, I, 16), MF(U, I, 8)], shard_of, edge_index, attention)
    mean = ShardedRecommender([MF(U, I, 4), MF(U, I, 8)], shard_of, edge_index, "mean")  # scores alone are averaged
    assert mean(graph, edge_index[:, :3]).shape == (3,)


def test_attention_weights_and_scores_by_hand():
    gen = torch.Generator().manual_seed(0)
    att = ShardAttention(3, 4, attention_dim=5, seed=1)
    with torch.no_grad():  # move the transfer off the identity so that it is exercised
        att.transfer_weight.add_(0.3 * torch.randn(3, 4, 4, generator=gen))
        att.transfer_bias.add_(0.1 * torch.randn(3, 4, generator=gen))
    users, items = torch.randn(3, 6, 4, generator=gen), torch.randn(3, 7, 4, generator=gen)
    weights = att.weights(users, "user")
    assert weights.shape == (6, 3)
    assert torch.allclose(weights.sum(1), torch.ones(6), atol=1e-6)

    def by_hand(stack, proj, h):
        out = []
        for n in range(stack.size(1)):
            moved = [att.transfer_weight[s] @ stack[s, n] + att.transfer_bias[s] for s in range(3)]
            logits = torch.stack([h @ torch.tanh(proj.weight @ e + proj.bias) for e in moved])
            a = torch.exp(logits) / torch.exp(logits).sum()
            out.append((a, sum(a[s] * moved[s] for s in range(3))))
        return out

    hand_u, hand_i = by_hand(users, att.user_proj, att.user_h), by_hand(items, att.item_proj, att.item_h)
    assert torch.allclose(weights, torch.stack([a for a, _ in hand_u]), atol=1e-6)
    assert torch.allclose(att.aggregate(items, "item"), torch.stack([e for _, e in hand_i]), atol=1e-6)
    pairs = torch.tensor([[0, 5, 2], [6, 1, 1]])
    expected = torch.stack([hand_u[u][1] @ hand_i[i][1] for u, i in pairs.t().tolist()])
    assert torch.allclose(att.score(users, items, pairs), expected, atol=1e-5)


def test_attention_scores_gather_without_indexing_whose_backward_is_not_reproducible():
    """The attention's score gathers its aggregated rows with index_select: the backward of indexing adds rows in
    parallel in any order, and on two threads a seeded RecEraser (and a resumed bench) differed from run to run.
    The gradients of a large batch are the same in repeated runs on two threads."""
    gen = torch.Generator().manual_seed(0)
    att = ShardAttention(3, 16)
    users, items = torch.randn(3, 50, 16, generator=gen), torch.randn(3, 40, 16, generator=gen)
    pairs = torch.stack([torch.randint(0, 50, (100_000,), generator=gen),
                         torch.randint(0, 40, (100_000,), generator=gen)])
    weights, threads, seen = torch.randn(100_000, generator=gen), torch.get_num_threads(), set()
    torch.set_num_threads(2)
    try:
        for _ in range(3):
            stacks = users.clone().requires_grad_(), items.clone().requires_grad_()
            scores = att.score(*stacks, pairs)
            nodes, names = [scores.grad_fn], set()
            while nodes:
                node = nodes.pop()
                names.add(type(node).__name__)
                nodes += [child for child, _ in node.next_functions if child is not None]
            assert "IndexBackward0" not in names
            gradients = torch.autograd.grad((scores * weights).sum(), [*stacks, *att.parameters()])
            seen.add(tuple(float(g.double().sum()) for g in gradients))
    finally:
        torch.set_num_threads(threads)
    assert len(seen) == 1


# --- SISA ---------------------------------------------------------------------------------------

def test_sisa_retrains_exactly_the_touched_shards(graph):
    template = MF(U, I, D)
    before_template, before_graph = state(template), graph[EDGE].edge_index.clone()
    sisa = SISA(template, graph, OBJECTIVE, SISAConfig(CONFIG, num_shards=S, seed=5))
    with pytest.raises(RuntimeError, match="fit"):
        sisa.unlearn(graph[EDGE].edge_index[:, :1])
    sisa.fit()
    ensemble, seconds = sisa.model, sisa.fit_seconds
    assert seconds > 0 and sisa.ensemble is ensemble
    shard_of = random_partition(graph[EDGE].edge_index.size(1), S, derived_seed(5, "partition"))  # independently
    old = state(ensemble)
    request = pick_request(graph, shard_of, [1, 3])
    result = sisa.unlearn(request)
    assert result.info["retrained_shards"] == [1, 3] and result.info["num_retrained"] == 2
    new = result.model
    for s in range(S):
        untouched = same_state(state(new.shards[s]), state(ensemble.shards[s]))
        assert untouched == (s in (0, 2))
    assert same_state(state(ensemble), old)  # the fitted ensemble is not mutated
    # A retrained shard is exactly a fresh model trained on its shard graph minus the request, with
    # the L2 scaled to the shard's share of the data.
    request_shard = torch.tensor([1, 1, 3, 3])
    shard_objective = type(OBJECTIVE)(l2=OBJECTIVE.l2 / S)
    for s in (1, 3):
        ref = MF(U, I, D)
        ref.reset_parameters(5 + s)
        train(ref, remove_edges(shard_graph_by_hand(graph, shard_of, s), request[:, request_shard == s]),
              shard_objective, CONFIG)
        assert same_state(state(ref), state(new.shards[s]))
    # The new ensemble serves the remaining graph and refuses the forgotten edges.
    new(result.graph, request)
    with pytest.raises(ValueError, match="no shard assignment"):
        new(graph, request)
    # Nothing of the caller's changed.
    assert same_state(state(template), before_template)
    assert torch.equal(graph[EDGE].edge_index, before_graph)


def test_sisa_partition_is_independent_of_a_request_drawn_with_its_seed(graph):
    """The partition came from the permutation that drew a request under the same seed (the run's, in the CLI and
    the benchmarks): SISA dealt the request out over the shards in turn, whatever the seed. (RecEraser's first
    anchors were the request's first edges; the tests above compute its partition with the derived seed.)"""
    ei = graph[EDGE].edge_index
    dealt = [j % S for j in range(2 * S)]
    for seed in (0, 1, 2):
        drawn = torch.randperm(ei.size(1), generator=torch.Generator().manual_seed(seed))[:2 * S]
        shard_of = SISA(MF(U, I, D), graph, OBJECTIVE, SISAConfig(CONFIG, num_shards=S, seed=seed)).partition()
        assert random_partition(ei.size(1), S, seed)[drawn].tolist() == dealt
        assert shard_of[drawn].tolist() != dealt


def test_sisa_retrain_all_and_empty_request(graph):
    sisa = SISA(MF(U, I, D), graph, OBJECTIVE, SISAConfig(CONFIG, num_shards=S, retrain_all=True))
    ensemble = sisa.fit().model
    shard_of = random_partition(graph[EDGE].edge_index.size(1), S, derived_seed(0, "partition"))
    request = pick_request(graph, shard_of, [2], per_shard=1)
    result = sisa.unlearn(request)
    assert result.info["retrained_shards"] == list(range(S))
    # One count per shard, the last (untouched) shard's 0 included, counted from the assignment by hand.
    keys = (request[0] * I + request[1]).tolist()
    edge_keys = (graph[EDGE].edge_index[0] * I + graph[EDGE].edge_index[1]).tolist()
    held = [int(shard_of[edge_keys.index(k)]) for k in keys]
    assert result.info["request_per_shard"] == [held.count(s) for s in range(S)] == [0, 0, 1, 0]
    empty = sisa.unlearn(torch.empty(2, 0, dtype=torch.long))
    assert empty.model is not ensemble and same_state(state(empty.model), state(ensemble))
    assert empty.info == {"empty": True, "trusted": True, "reason": None}


@pytest.mark.distributed
def test_sisa_on_two_ranks_equals_one_process(graph, one_thread):
    # Two gloo processes share the shards (train_shards splits them round robin) and exchange the
    # trained models: fit and unlearn give, bit for bit, the single-process ensemble.
    request = pick_request(graph, random_partition(graph[EDGE].edge_index.size(1), 3, derived_seed(1, "partition")),
                           [0, 2], per_shard=1)
    single = fit_and_unlearn_sisa(graph, OBJECTIVE, CONFIG, 3, request)
    double = launch(fit_and_unlearn_sisa, 2, graph, OBJECTIVE, CONFIG, 3, request)
    assert same_state(single[0], double[0]) and same_state(single[1], double[1])
    assert single[2]["shard_sizes"] == double[2]["shard_sizes"]
    assert (single[2]["world_size"], single[2]["rank_0_jobs"]) == (1, [0, 1, 2])
    assert (double[2]["world_size"], double[2]["rank_0_jobs"]) == (2, [0, 2])  # rank 1 trained shard 1
    assert single[2]["retrained_shards"] == double[2]["retrained_shards"] == [0, 2]


def test_sisa_continues_from_a_fitted_ensemble(graph):
    sisa = SISA(MF(U, I, D), graph, OBJECTIVE, SISAConfig(CONFIG, num_shards=S))
    sisa.fit()
    shard_of = random_partition(graph[EDGE].edge_index.size(1), S, derived_seed(0, "partition"))
    first = sisa.unlearn(pick_request(graph, shard_of, [0], per_shard=1))
    again = SISA(first.model, first.graph, OBJECTIVE, SISAConfig(CONFIG))
    second = again.unlearn(pick_request(first.graph, first.model.assignment_of(first.graph[EDGE].edge_index), [2]))
    assert second.info["retrained_shards"] == [2]
    assert same_state(state(second.model.shards[0]), state(first.model.shards[0]))


@pytest.mark.parametrize("method", [m for m in METHODS if not issubclass(METHODS[m], SISA)])
def test_other_methods_refuse_an_ensemble_by_name(graph, method):
    """An ensemble stores its training edges (``pair_keys``): Retrain, FineTune, IFRU and SCIF took one, and their
    result kept the removed pairs there, each one's shard readable with ``assignment_of``."""
    ensemble = SISA(MF(U, I, D), graph, OBJECTIVE, SISAConfig(CONFIG, num_shards=S)).fit().model
    with pytest.raises(TypeError, match=f"{METHODS[method].__name__}: the model is a fitted SISA/RecEraser ensemble"):
        METHODS[method](ensemble, graph, OBJECTIVE)
    assert SISA(ensemble, graph, OBJECTIVE, SISAConfig(CONFIG)).ensemble is ensemble


def test_a_continued_ensemble_retrains_as_its_fit_did(graph):
    """A further request served from ``result.model`` took the new config's seed and training (a shard seeded
    ``0 + s`` beside shards seeded ``7 + s``) and accepted another objective, and a graph edited after construction
    went unnoticed: the ensemble was no longer one that fit() produces."""
    fitted = SISA(MF(U, I, D), graph, OBJECTIVE, SISAConfig(CONFIG, num_shards=S, seed=7)).fit()
    shard_of = fitted.model.assignment_of(graph[EDGE].edge_index)
    first = fitted.unlearn(pick_request(graph, shard_of, [0], per_shard=1))
    again = SISA(first.model, first.graph, OBJECTIVE, SISAConfig(CONFIG))
    assert again.config.seed == 7 and again.config.num_shards == S
    shard_of = first.model.assignment_of(first.graph[EDGE].edge_index)
    request = pick_request(first.graph, shard_of, [2])
    second = again.unlearn(request)
    ref = MF(U, I, D)
    ref.reset_parameters(7 + 2)
    shard_objective = type(OBJECTIVE)(l2=OBJECTIVE.l2 / S)
    train(ref, remove_edges(shard_graph_by_hand(first.graph, shard_of, 2), request), shard_objective, CONFIG)
    assert same_state(state(ref), state(second.model.shards[2]))
    with pytest.raises(ValueError, match=re.escape("SISA: the ensemble was fitted with SISAConfig.seed=7, got 3")):
        SISA(first.model, first.graph, OBJECTIVE, SISAConfig(CONFIG, seed=3))
    with pytest.raises(ValueError, match=re.escape("SISA: the ensemble was fitted with BCEObjective(l2=0.001), got "
                                                   "BCEObjective(l2=0.5)")):
        SISA(first.model, first.graph, BCEObjective(l2=0.5), SISAConfig(CONFIG))
    # RecEraser's config extends SISA's: it continued this ensemble as SISA's own, labelled receraser (a probe)
    for objective in (OBJECTIVE, BCEObjective(l2=0.5)):  # the method named first (from a mutation run)
        with pytest.raises(ValueError, match=re.escape("RecEraser: the ensemble was fitted with a SISAConfig, not a "
                                                       "RecEraserConfig: continue it with the method that fitted it")):
            RecEraser(first.model, first.graph, objective, RecEraserConfig(CONFIG))
    quiet = SISA(first.model, first.graph, OBJECTIVE, SISAConfig(dataclasses.replace(CONFIG, progress=True)))
    assert quiet.config.train.progress and quiet.config.seed == 7  # a progress bar changes no shard: accepted
    unrecorded = copy.deepcopy(first.model)  # an ensemble pickled before its fit's config was recorded
    del unrecorded.fit_config, unrecorded.fit_objective
    assert SISA(unrecorded, first.graph, OBJECTIVE, SISAConfig(CONFIG)).config.num_shards == S
    edited = copy.deepcopy(first.graph)
    continued = SISA(first.model, edited, OBJECTIVE, SISAConfig(CONFIG))
    edited[EDGE].edge_label[0] = 1 - edited[EDGE].edge_label[0]
    with pytest.raises(ValueError, match="the training graph changed since fit"):
        continued.unlearn(request)


def test_a_continued_ensemble_refuses_other_labels_or_another_use_of_val(graph):
    """An ensemble given a graph of the same pairs with other labels retrained its shard on labels the other shards
    never saw, and one continued without the validation pairs of its Adam fit retrained a shard for every epoch where
    the fit's shards kept their best: neither is what fit() produces, and both went unnoticed. Refused at unlearn(),
    so that fit() can start again; L-BFGS's shards do not read val."""
    split = random_split(graph, (0.8, 0.2, 0.0), seed=0)
    users, items = split.train["user"].num_nodes, split.train["item"].num_nodes
    fitted = SISA(MF(users, items, D), split.train, OBJECTIVE, SISAConfig(CONFIG, num_shards=S), val=split.val).fit()
    shard_of = fitted.model.assignment_of(split.train[EDGE].edge_index)
    first = fitted.unlearn(pick_request(split.train, shard_of, [0], per_shard=1))
    request = pick_request(first.graph, first.model.assignment_of(first.graph[EDGE].edge_index), [2], per_shard=1)
    relabelled = copy.deepcopy(first.graph)
    relabelled[EDGE].edge_label[3] = 1 - relabelled[EDGE].edge_label[3]
    with pytest.raises(ValueError, match=re.escape("SISA: the graph's edge labels (edge_label, observed) are not those "
                                                   "the ensemble's shards learnt for the same pairs")):
        SISA(first.model, relabelled, OBJECTIVE, SISAConfig(CONFIG), val=split.val).unlearn(request)
    assert SISA(first.model, relabelled, OBJECTIVE, SISAConfig(CONFIG), val=split.val).fit().unlearn(request).info
    same = copy.deepcopy(first.graph)  # the same labels per pair: in another order, observed spelt out, accepted
    order = torch.randperm(same[EDGE].edge_index.size(1), generator=torch.Generator().manual_seed(0))
    same[EDGE].edge_index, same[EDGE].edge_label = same[EDGE].edge_index[:, order], same[EDGE].edge_label[order]
    same[EDGE].observed = torch.ones(order.numel(), dtype=torch.bool)
    assert SISA(first.model, same, OBJECTIVE, SISAConfig(CONFIG), val=split.val).unlearn(request).info
    with pytest.raises(ValueError, match=re.escape("SISA: the ensemble was fitted with validation pairs (val: Adam "
                                                   "keeps each shard's best epoch by them, and the attention's), got "
                                                   "none: pass them")):
        SISA(first.model, first.graph, OBJECTIVE, SISAConfig(CONFIG)).unlearn(request)
    without = SISA(MF(users, items, D), split.train, OBJECTIVE, SISAConfig(CONFIG, num_shards=S)).fit()
    with pytest.raises(ValueError, match=re.escape("SISA: the ensemble was fitted without validation pairs (val: Adam "
                                                   "keeps each shard's best epoch by them, and the attention's), got "
                                                   "some: pass val=None")):
        SISA(without.model, split.train, OBJECTIVE, SISAConfig(CONFIG), val=split.val).unlearn(request)
    # other validation pairs picked other best epochs, without a word (qa97); the fit's, reordered, pick the same
    flipped = copy.deepcopy(split.val)
    flipped[EDGE].edge_label = 1 - flipped[EDGE].edge_label
    with pytest.raises(ValueError, match=re.escape("SISA: the validation pairs are not those the ensemble was fitted "
                                                   "with (val: Adam keeps each shard's best epoch by them")):
        SISA(first.model, first.graph, OBJECTIVE, SISAConfig(CONFIG), val=flipped).unlearn(request)
    shuffled = copy.deepcopy(split.val)
    order = torch.randperm(shuffled[EDGE].edge_index.size(1), generator=torch.Generator().manual_seed(1))
    shuffled[EDGE].edge_index, shuffled[EDGE].edge_label = shuffled[EDGE].edge_index[:, order], \
        shuffled[EDGE].edge_label[order]
    reordered, kept = (SISA(first.model, first.graph, OBJECTIVE, SISAConfig(CONFIG), val=val).unlearn(request).model
                       for val in (shuffled, split.val))
    assert all(torch.equal(a, b) for a, b in zip(reordered.state_dict().values(), kept.state_dict().values()))
    lbfgs = SISAConfig(dataclasses.replace(CONFIG, optimizer="lbfgs", epochs=5), num_shards=S)
    by_lbfgs = SISA(MF(users, items, D), split.train, OBJECTIVE, lbfgs, val=split.val).fit()
    assert SISA(by_lbfgs.model, split.train, OBJECTIVE, SISAConfig()).unlearn(request).info  # without val: accepted
    # L-BFGS shards, an attention trained by Adam: it keeps its best epoch by val (a continuation without them was
    # accepted, and its attention ran every epoch)
    attentive = dataclasses.replace(lbfgs, aggregation="attention", aggregator_train=CONFIG)
    by_both = SISA(MF(users, items, D), split.train, OBJECTIVE, attentive, val=split.val).fit()
    with pytest.raises(ValueError, match=r"SISA: the ensemble was fitted with validation pairs .* got none"):
        SISA(by_both.model, split.train, OBJECTIVE, SISAConfig()).unlearn(request)


def test_an_l2_edited_after_construction_trains_every_shard_of_the_fit():
    """The shards' L2 (1/S of the objective's) was fixed when SISA was built: an ``l2`` edited before fit() trained
    them with the old one while the ensemble recorded the new one, and a later request retrained a shard with it."""
    graph = planted_communities(num_users=U, num_items=I, num_communities=2, interactions_per_user=6, seed=0)
    objective = BCEObjective(l2=1e-3)
    sisa = SISA(MF(U, I, D), graph, objective, SISAConfig(CONFIG, num_shards=S))
    objective.l2 = 0.5
    sisa.fit()
    assert sisa.model.fit_objective == "BCEObjective(l2=0.5)"
    ref = MF(U, I, D)
    ref.reset_parameters(0 + 1)
    shard_graph = shard_graph_by_hand(graph, sisa.model.assignment_of(graph[EDGE].edge_index), 1)
    train(ref, shard_graph, BCEObjective(l2=0.5 / S), CONFIG)
    assert same_state(state(ref), state(sisa.model.shards[1]))


class _WeightedBCE(BCEObjective):
    """A user's objective with a field of its own."""

    def __init__(self, l2: float = 0.0, pos_weight: float = 1.0):
        super().__init__(l2)
        self.pos_weight = pos_weight

    def losses(self, logits, target):
        return F.binary_cross_entropy_with_logits(logits, target, pos_weight=torch.tensor(self.pos_weight),
                                                  reduction="none")


def test_a_users_objective_edited_after_fit_is_refused_as_an_l2_edit_is():
    """SISA told an edit by the objective's repr, which showed ``l2`` only: a subclass's ``pos_weight`` edited after
    fit() was accepted, and a shard retrained with it beside shards trained without."""
    graph = planted_communities(num_users=U, num_items=I, num_communities=2, interactions_per_user=6, seed=0)
    objective = _WeightedBCE(l2=1e-3, pos_weight=2.0)
    assert repr(objective) == "_WeightedBCE(l2=0.001, pos_weight=2.0)"
    sisa = SISA(MF(U, I, D), graph, objective, SISAConfig(CONFIG, num_shards=S)).fit()
    objective.pos_weight = 5.0
    with pytest.raises(ValueError, match="the training graph changed since fit"):
        sisa.unlearn(graph[EDGE].edge_index[:, :3])


def test_receraser_refitted_from_an_ensemble_partitions_by_the_ensembles_embeddings(graph):
    """RecEraser built on a fitted ensemble and fitted again clustered its first shard's embeddings, learnt from a
    quarter of the data, where the docstring promises the model's own."""
    template = MF(U, I, D)
    train(template, graph, OBJECTIVE, CONFIG)
    config = RecEraserConfig(CONFIG, num_shards=S, partition="interaction", seed=0)
    ensemble = RecEraser(template, graph, OBJECTIVE, config).fit().model
    refit = RecEraser(ensemble, graph, OBJECTIVE, RecEraserConfig(CONFIG)).fit()
    with pytest.raises(ValueError, match=re.escape("SISA: the ensemble was fitted with a RecEraserConfig, not a "
                                                   "SISAConfig")):  # continued as SISA's, without a word
        SISA(ensemble, graph, OBJECTIVE, SISAConfig(CONFIG))
    with torch.no_grad():
        user, item = copy.deepcopy(ensemble).eval().embed(graph)
    edges = graph[EDGE].edge_index
    expected = balanced_partition(user, item, edges, S, "interaction", 10, derived_seed(0, "partition")).shard_of
    with torch.no_grad():
        user, item = copy.deepcopy(ensemble.shards[0]).eval().embed(graph)
    first_shards = balanced_partition(user, item, edges, S, "interaction", 10, derived_seed(0, "partition")).shard_of
    assert not torch.equal(expected, first_shards)  # else the test could not tell the two apart
    assert torch.equal(refit.model.assignment_of(edges), expected)
    # An ensemble without embeddings (mean over shards that score otherwise) cannot give the partition: said so
    biased = RecEraser(BiasedMF(U, I, D), graph, OBJECTIVE, dataclasses.replace(config, aggregation="mean")).fit()
    with pytest.raises(ValueError, match=re.escape("RecEraser: the fitted ensemble has no embeddings to partition by")):
        RecEraser(biased.model, graph, OBJECTIVE, RecEraserConfig(CONFIG)).fit()


def test_a_seed_at_the_top_of_the_range_seeds_every_shard(graph):
    """A shard's seed + s overflowed the range of seeds for a seed near its top, and fit() refused a seed it had
    accepted, naming one the caller never gave: the shards' seeds wrap (shard 1 of seed 2**32 - 1 is seeded 0)."""
    sisa = SISA(MF(U, I, D), graph, OBJECTIVE, SISAConfig(CONFIG, num_shards=2, seed=2**32 - 1)).fit()
    fresh = MF(U, I, D)
    fresh.reset_parameters(0)
    shard_graph = shard_graph_by_hand(graph, sisa.model.assignment_of(graph[EDGE].edge_index), 1)
    train(fresh, shard_graph, type(OBJECTIVE)(l2=OBJECTIVE.l2 / 2), CONFIG)
    assert same_state(state(fresh), state(sisa.model.shards[1]))


class ProjectedMF(MF):
    """MF with a user projection that the inherited reset_parameters (the tables only) does not re-draw."""

    def __init__(self, *args):
        super().__init__(*args)
        self.proj = torch.nn.Linear(D, D)

    def embed(self, graph):
        return self.proj(self.user_emb.weight), self.item_emb.weight


@pytest.mark.parametrize("method", [SISA, RecEraser])
def test_shards_refuse_a_reset_that_leaves_trained_parameters(graph, method):
    """A shard model copied from the trained model keeps what reset_parameters does not re-draw (here the
    projection, trained on every edge, those to forget included): not a fresh model, so the shards are refused,
    as Retrain refuses it, before any training."""
    model = ProjectedMF(U, I, D)
    train(model, graph, OBJECTIVE, CONFIG)
    config = method.Config(CONFIG, num_shards=2)
    with pytest.raises(ValueError, match=r"reset_parameters\(\) left these trained parameters unchanged: "
                                         r"proj\.weight, proj\.bias;"):
        method(model, graph, OBJECTIVE, config).fit()
    # A model whose reset covers every parameter passes, even untrained and drawn from shard 0's own seed (its
    # re-draw equals it value for value).
    fresh = MF(U, I, D)
    fresh.reset_parameters(config.seed)
    method(fresh, graph, OBJECTIVE, config).fit()


# --- RecEraser's balanced partition -------------------------------------------------------------

def greedy_by_hand(dist, capacity):
    """The greedy rule as stated: visit (distance, point, anchor) in increasing order."""
    n, s = dist.shape
    out, load = [-1] * n, [0] * s
    for _, e, k in sorted((float(dist[e, k]), e, k) for e in range(n) for k in range(s)):
        if out[e] < 0 and load[k] < capacity:
            out[e], load[k] = k, load[k] + 1
    return out


@pytest.mark.parametrize("seed", range(4))
def test_balanced_assign_equals_the_greedy_loop(seed):
    gen = torch.Generator().manual_seed(seed)
    n, s = 37, 5
    dist = torch.rand(n, s, generator=gen)
    if seed % 2:  # many ties
        dist = torch.randint(0, 4, (n, s), generator=gen).float()
    capacity = math.ceil(n / s) + seed // 2
    assert balanced_assign(dist, capacity).tolist() == greedy_by_hand(dist, capacity)
    with pytest.raises(ValueError, match="cannot hold"):
        balanced_assign(dist, 7)


def test_balanced_kmeans_anchors_are_vector_means():
    x = torch.randn(50, 6, generator=torch.Generator().manual_seed(0))
    groups, anchors, iterations = balanced_kmeans(x, 4, iters=10, seed=2)
    assert anchors.shape == (4, 6) and 1 <= iterations <= 10
    assert torch.bincount(groups, minlength=4).max() <= math.ceil(50 / 4)
    for s in range(4):
        assert torch.allclose(anchors[s], x[groups == s].mean(0), atol=1e-6)
    # It stops early, at a fixed point: one more assignment from these anchors gives the same groups (under an
    # ``if`` it stopped early, this could not fail when the stop was lost: a QA probe's mutation).
    assert iterations < 10
    assert torch.equal(balanced_assign(torch.cdist(x, anchors), math.ceil(50 / 4)), groups)


@pytest.mark.parametrize("partition", ["interaction", "user", "item"])
def test_balanced_partitions(graph, partition):
    gen = torch.Generator().manual_seed(0)
    user_emb, item_emb = torch.randn(U, D, generator=gen), torch.randn(I, D, generator=gen)
    ei = graph[EDGE].edge_index
    part = balanced_partition(user_emb, item_emb, ei, S, partition, iters=10, seed=0)
    assert part.shard_of.shape == (ei.size(1),)
    assert part.shard_of.min() >= 0 and part.shard_of.max() < S
    ensemble = ShardedRecommender([MF(U, I, D) for _ in range(S)], part.shard_of, ei)
    shard_keys = [g[EDGE].edge_index[0] * I + g[EDGE].edge_index[1] for g in ensemble.shard_graphs(graph)]
    all_keys = torch.cat(shard_keys)
    assert all_keys.numel() == ei.size(1)  # every interaction in exactly one shard
    assert torch.equal(all_keys.sort().values, (ei[0] * I + ei[1]).sort().values)
    if partition == "interaction":
        assert part.anchors.shape == (S, 2 * D)
        assert torch.bincount(part.shard_of, minlength=S).max() <= math.ceil(ei.size(1) / S)
        points = torch.cat([user_emb[ei[0]], item_emb[ei[1]]], 1)
        for s in range(S):
            assert torch.allclose(part.anchors[s], points[part.shard_of == s].mean(0), atol=1e-6)
    else:
        owner, count = (ei[0], U) if partition == "user" else (ei[1], I)
        assert part.anchors.shape == (S, D) and part.groups.shape == (count,)
        assert torch.bincount(part.groups, minlength=S).max() <= math.ceil(count / S)
        assert torch.equal(part.shard_of, part.groups[owner])  # all of a user's (item's) edges together
    # a transposed edge_index was partitioned as 2 interactions, user -1 took the last user's row, uint8 ids read
    # as a mask, and True or 2.5 shards failed inside torch
    for bad, message in ((ei.t(), r"edge_index must have shape \[2, E\], got \[\d+, 2\]"),
                         (torch.tensor([[-1], [0]]), "edge_index holds user id -1"),
                         (ei.float(), "edge_index holds integer .* got dtype torch.float32")):
        with pytest.raises(ValueError, match=message):
            balanced_partition(user_emb, item_emb, bad, S, partition)
    narrow = balanced_partition(user_emb, item_emb, ei.to(torch.uint8), S, partition, iters=10, seed=0)
    assert torch.equal(narrow.shard_of, part.shard_of)
    for shards, iters in ((True, 10), (2.5, 10), (S, "3")):
        with pytest.raises(ValueError, match=r"(num_shards|iters) must be an integer, got "):
            balanced_partition(user_emb, item_emb, ei, shards, partition, iters=iters)


def test_balanced_partition_clusters_in_the_tables_dtype_and_names_embeddings_too_large(graph):
    """A float64 model's embeddings were cast to float32, where a row of 1e19 (finite scores in float64) overflowed
    the squared distances: "distances must be finite", naming neither the embeddings nor their size."""
    gen = torch.Generator().manual_seed(0)
    user_emb, item_emb = torch.randn(U, D, generator=gen, dtype=torch.float64), torch.randn(I, D, generator=gen)
    user_emb[3] = 1e19
    ei = graph[EDGE].edge_index
    part = balanced_partition(user_emb, item_emb, ei, S, "user", iters=10, seed=0)
    assert part.anchors.dtype == torch.float64
    assert torch.bincount(part.groups, minlength=S).max() <= math.ceil(U / S)
    with pytest.raises(ValueError, match=r"distances between the embeddings are not finite: their entries reach "
                                         r"1e\+19, beyond what torch.float32's squares hold"):
        balanced_partition(user_emb.float(), item_emb, ei, S, "user")
    user_emb[3] = float("nan")
    with pytest.raises(ValueError, match="they hold NaN or infinite entries"):
        balanced_partition(user_emb, item_emb, ei, S, "user")


# --- RecEraser ----------------------------------------------------------------------------------

def test_a_fitted_ensemble_is_saved_whole_with_torch_save_as_save_model_says(graph, tmp_path):
    """save_model told to register ShardedRecommender, which then failed to rebuild from its config (a QA probe)."""
    from graphforget.models import save_model
    sisa = SISA(MF(U, I, D), graph, BCEObjective(l2=1e-2), SISAConfig(TrainConfig(epochs=1), num_shards=2)).fit()
    with pytest.raises(ValueError, match=re.escape("is saved whole with torch.save(model, path) and read with "
                                                   "torch.load(path, weights_only=False)")):
        save_model(sisa.model, tmp_path / "ensemble.pt")
    torch.save(sisa.model, tmp_path / "ensemble.pt")
    loaded = torch.load(tmp_path / "ensemble.pt", weights_only=False)
    pairs = graph[EDGE].edge_index
    assert torch.equal(loaded(graph, pairs), sisa.model(graph, pairs))


def test_receraser_fit_and_unlearn(graph):
    template = LightGCN(U, I, D)
    before_template, before_graph = state(template), graph[EDGE].edge_index.clone()
    eraser = RecEraser(template, graph, OBJECTIVE, RecEraserConfig(CONFIG, num_shards=S, partition="interaction", seed=0,
                                                                  pretrain=True))
    ensemble = eraser.fit().model
    assert ensemble.aggregation == "attention" and eraser.pretrained_model is not None
    assert torch.equal(ensemble.assignment_of(graph[EDGE].edge_index), eraser.balanced.shard_of)
    # The partition came from the pre-trained model's embeddings.
    user, item = eraser.pretrained_model.embed(graph)
    again = balanced_partition(user.detach(), item.detach(), graph[EDGE].edge_index, S, "interaction", 10,
                               derived_seed(0, "partition"))
    assert torch.equal(again.shard_of, eraser.balanced.shard_of)
    # ... a fresh copy of the template, re-drawn with the config's seed and trained on the graph (not the
    # template's own draw).
    ref = LightGCN(U, I, D)
    ref.reset_parameters(0)
    train(ref, graph, OBJECTIVE, CONFIG)
    assert same_state(state(ref), state(eraser.pretrained_model))
    old = state(ensemble)
    request = pick_request(graph, eraser.balanced.shard_of, [0, 2])
    result = eraser.unlearn(request)
    assert result.info["retrained_shards"] == [0, 2] and "aggregator_seconds" in result.info
    for s in (1, 3):
        assert same_state(state(result.model.shards[s]), state(ensemble.shards[s]))
    assert not same_state(state(result.model.attention), state(ensemble.attention))  # retrained
    assert same_state(state(ensemble), old)
    empty = eraser.unlearn(torch.empty(2, 0, dtype=torch.long))
    assert same_state(state(empty.model), old)
    assert same_state(state(template), before_template)
    assert torch.equal(graph[EDGE].edge_index, before_graph)
    scores = result.model(result.graph, result.graph[EDGE].edge_index)
    assert torch.isfinite(scores).all()


def _kept(graph, request):
    """``[E]``: whether each training edge of ``graph`` is not in ``request``."""
    count = graph["item"].num_nodes
    return ~torch.isin(pair_keys(graph[EDGE].edge_index, count), pair_keys(request, count))


def test_receraser_unlearn_retrains_the_attention_from_its_seed_on_the_remaining_graph(graph):
    """unlearn retrains the aggregator on the remaining graph, from the config's seed, under the full objective: the
    attention is the one trained by hand on the unlearnt shards (only its change had been checked: an attention
    trained from another seed or with the shards' l2/S passed; qa183). Trained on the original graph, it differs."""
    eraser = RecEraser(MF(U, I, D), graph, OBJECTIVE, RecEraserConfig(CONFIG, num_shards=S, partition_iters=3, seed=2))
    ensemble = eraser.fit().model
    request = pick_request(graph, eraser.balanced.shard_of, [1, 3])
    result = eraser.unlearn(request)
    kept = _kept(graph, request)
    remaining = remove_edges(graph, request)
    by_hand = ShardedRecommender([copy.deepcopy(m) for m in result.model.shards], eraser.balanced.shard_of[kept],
                                 graph[EDGE].edge_index[:, kept], "attention")
    train_aggregator(by_hand, remaining, OBJECTIVE, CONFIG, seed=2)
    assert same_state(state(by_hand.attention), state(result.model.attention))
    on_original = copy.deepcopy(result.model)
    on_original.pair_keys, on_original.pair_shard = ensemble.pair_keys, ensemble.pair_shard
    train_aggregator(on_original, graph, OBJECTIVE, CONFIG, seed=2)
    assert not same_state(state(on_original.attention), state(result.model.attention))


@pytest.mark.filterwarnings("ignore:.*validation AUC")
def test_receraser_unlearn_trains_shards_and_attention_with_val_and_aggregator_train(graph):
    """With validation pairs (each model keeps its best epoch by them) and an ``aggregator_train`` of its own, the
    retrained shards and attention are those trained by hand: shard ``s`` from ``seed + s`` on its remaining edges
    under l2/S, the attention from ``seed`` on the remaining graph under the full objective and ``aggregator_train``,
    both with ``val`` (dropping val, or the aggregator's config, had passed: qa183)."""
    split = random_split(graph, (0.8, 0.2, 0.0), seed=0)
    train_graph, val = split.train, split.val
    shard_config = TrainConfig(epochs=6, batch_size=32, patience=2, lr=0.05)
    aggregator_config = TrainConfig(epochs=10, batch_size=16, patience=1, lr=0.3)
    config = RecEraserConfig(shard_config, num_shards=S, partition_iters=3, seed=4, aggregator_train=aggregator_config)
    eraser = RecEraser(MF(U, I, D), train_graph, OBJECTIVE, config, val=val)
    eraser.fit()
    shard_of = eraser.balanced.shard_of
    request = pick_request(train_graph, shard_of, [0, 2])
    result = eraser.unlearn(request)
    assert result.info["retrained_shards"] == [0, 2]
    store, kept = train_graph[EDGE], _kept(train_graph, request)
    for s in (0, 2):
        keep = (shard_of == s) & kept
        shard = MF(U, I, D)
        shard.reset_parameters(4 + s)
        train(shard, make_interactions(store.edge_index[:, keep], store.edge_label[keep], U, I),
              BCEObjective(l2=OBJECTIVE.l2 / S), shard_config, val)
        assert same_state(state(shard), state(result.model.shards[s])), s
    by_hand = ShardedRecommender([copy.deepcopy(m) for m in result.model.shards], shard_of[kept],
                                 store.edge_index[:, kept], "attention")
    without_val = copy.deepcopy(by_hand)
    train_aggregator(by_hand, result.graph, OBJECTIVE, aggregator_config, val, seed=4)
    assert same_state(state(by_hand.attention), state(result.model.attention))
    train_aggregator(without_val, result.graph, OBJECTIVE, aggregator_config, None, seed=4)
    assert not same_state(state(without_val.attention), state(result.model.attention))


def test_receraser_runs_float64_models_and_contrastive_objectives(graph):
    """The attention computes in the shards' dtype (it was float32 whatever the model), and a contrastive objective
    trains it with its BPR part (the attention has no contrastive_loss: fit() failed after training the shards)."""
    config = RecEraserConfig(CONFIG, num_shards=S, partition_iters=3)
    ensemble = RecEraser(MF(U, I, D).double(), graph, OBJECTIVE, config).fit().model
    assert {p.dtype for p in ensemble.attention.parameters()} == {torch.float64}
    scores = ensemble(graph, graph[EDGE].edge_index)
    assert scores.dtype == torch.float64 and torch.isfinite(scores).all()
    implicit = make_interactions(graph[EDGE].edge_index[:, graph[EDGE].edge_label > 0], num_users=U, num_items=I)
    contrastive = ContrastiveBPRObjective(l2=1e-4, ssl_weight=0.1)
    sgl = RecEraser(SGL(U, I, D), implicit, contrastive, config).fit()
    # The same attention as trained, from the same start, with the BPR objective alone.
    bpr = BPRObjective(contrastive.l2, contrastive.seed, contrastive.resample)
    ensemble = copy.deepcopy(sgl.model)
    train_aggregator(ensemble, implicit, bpr, CONFIG, seed=config.seed)
    assert same_state(state(ensemble.attention), state(sgl.model.attention))


def test_fit_leaves_the_callers_global_random_state_alone(graph):
    """The attention's layers were drawn from the global random state before reset_parameters drew them again."""
    model = MF(U, I, D)  # its construction draws from the global state
    torch.manual_seed(123)
    before = torch.get_rng_state()
    RecEraser(model, graph, OBJECTIVE, RecEraserConfig(CONFIG, num_shards=S, partition_iters=3)).fit()
    assert torch.equal(torch.get_rng_state(), before)


def test_attention_needs_the_models_embedding_width_before_any_training(graph):
    """A Recommender without embedding_dim (the contract does not ask for one) failed after training every shard."""
    model = MF(U, I, D)
    del model.embedding_dim
    with pytest.raises(ValueError, match="RecEraser: attention aggregation weighs the shards' embeddings, so the "
                                         "model needs embedding_dim .* MF has none"):
        RecEraser(model, graph, OBJECTIVE, RecEraserConfig(CONFIG, num_shards=S))
    assert SISA(model, graph, OBJECTIVE, SISAConfig(CONFIG, num_shards=S)).fit().model.embedding_dim is None  # mean


def test_the_config_edited_after_construction_is_the_one_fitted_and_after_fit_is_refused(graph):
    """num_shards was read once at construction: 5 set before fit() trained 2 shards while the config said 5. The
    fit's record was the unlearner's config itself: train edited after fit() edited it too, and the retrained shards
    took 7 epochs at lr 0.5 beside shards of the fit's 3 at 0.01, without a word (found by a probe)."""
    sisa = SISA(MF(U, I, D), graph, OBJECTIVE, SISAConfig(CONFIG, num_shards=2))
    sisa.config.num_shards = 3
    assert sisa.fit().model.num_shards == 3 == sisa.num_shards
    sisa.config.train.epochs = 7
    request = graph[EDGE].edge_index[:, :1]
    with pytest.raises(ValueError, match=re.escape("SISA: the ensemble was fitted with SISAConfig.train=TrainConfig("
                                                   "epochs=3,")):
        sisa.unlearn(request)
    sisa.config.train.epochs = 3
    assert sisa.unlearn(request).info["shard_epochs"] == [3]


def test_a_request_that_empties_a_shard_is_refused_by_name(graph):
    """As an UnlearningFailed too: a benchmark records the cell's error and a stream applies the request by Retrain
    (a plain ValueError stopped a bench run, which could never finish; found by a probe)."""
    sisa = SISA(MF(U, I, D), graph, OBJECTIVE, SISAConfig(CONFIG, num_shards=S)).fit()
    shard_of = sisa.model.assignment_of(graph[EDGE].edge_index)
    with pytest.raises(UntrainableShard, match=re.escape("SISA: the request removes every edge of shard(s) [1], "
                                                         "whose model cannot be trained without data: fit() again "
                                                         "with fewer")) as refused:
        sisa.unlearn(graph[EDGE].edge_index[:, shard_of == 1])
    assert isinstance(refused.value, UnlearningFailed) and isinstance(refused.value, ValueError)
    positives = graph[EDGE].edge_index[:, (shard_of == 1) & (graph[EDGE].edge_label > 0)]
    with pytest.raises(UntrainableShard, match=re.escape("SISA: shard 1 cannot be trained on its edges (")):
        sisa.unlearn(positives)  # BCE with no label 1 left in the shard


def test_receraser_takes_pretrained_embeddings(graph):
    gen = torch.Generator().manual_seed(3)
    emb = (torch.randn(U, D, generator=gen), torch.randn(I, D, generator=gen))
    eraser = RecEraser(MF(U, I, D), graph, OBJECTIVE, RecEraserConfig(CONFIG, num_shards=S, partition="item", aggregation="mean"),
                       pretrained=emb)
    ensemble = eraser.fit().model
    expected = balanced_partition(*emb, graph[EDGE].edge_index, S, "item", 10, derived_seed(0, "partition"))
    assert torch.equal(ensemble.assignment_of(graph[EDGE].edge_index), expected.shard_of)
    assert eraser.pretrained_model is None
    with pytest.raises(ValueError, match="partition"):
        RecEraser(MF(U, I, D), graph, OBJECTIVE, RecEraserConfig(CONFIG, partition="random"))


def test_receraser_partitions_with_its_seed_iterations_and_a_pretrained_model(graph):
    """The partition's seed and iteration count are the config's, and a trained Recommender passed as
    ``pretrained`` gives the embeddings (not the template)."""
    template, other = MF(U, I, D), MF(U, I, D)
    template.reset_parameters(1)
    other.reset_parameters(9)
    ei = graph[EDGE].edge_index
    config = RecEraserConfig(CONFIG, num_shards=S, partition="interaction", aggregation="mean", seed=3,
                             partition_iters=1)
    eraser = RecEraser(template, graph, OBJECTIVE, config, pretrained=other)
    assigned = eraser.fit().model.assignment_of(ei)
    three, zero = derived_seed(3, "partition"), derived_seed(0, "partition")
    with torch.no_grad():
        expected = balanced_partition(other.user_emb.weight, other.item_emb.weight, ei, S, "interaction", 1, three)
        # Each alternative differs here, so that the assertion tells them apart.
        for alternative in (balanced_partition(template.user_emb.weight, template.item_emb.weight, ei, S,
                                               "interaction", 1, three),
                            balanced_partition(other.user_emb.weight, other.item_emb.weight, ei, S, "interaction",
                                               1, zero),
                            balanced_partition(other.user_emb.weight, other.item_emb.weight, ei, S, "interaction",
                                               10, three)):
            assert not torch.equal(alternative.shard_of, expected.shard_of)
    assert torch.equal(assigned, expected.shard_of) and eraser.fit_info["partition_iterations"] == 1


def test_shards_that_learn_nothing_are_reported_once():
    # Shuffled labels carry no preference: every shard model stays at chance on validation, and fitting says
    # so in one warning for the ensemble, not one per shard.
    graph = planted_communities(300, 120, num_communities=3, interactions_per_user=30, seed=0)
    labels = graph[EDGE].edge_label
    graph[EDGE].edge_label = labels[torch.randperm(labels.numel(), generator=torch.Generator().manual_seed(0))]
    split = random_split(graph, (0.7, 0.15, 0.15), seed=0)
    models = [MF(300, 120, 8) for _ in range(3)]
    shards = [split.train] * 3
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trained = train_shards(models, shards, BCEObjective(l2=1e-2), TrainConfig(epochs=5, lr=0.05), split.val)
    reported = [w for w in caught if "validation" in str(w.message)]
    messages = [str(w.message) for w in reported]
    assert len(messages) == 1 and messages[0].startswith("train_shards: 3 of 3 shard models show no preference")
    assert messages[0].endswith("fewer shards (num_shards) give each more")  # the option named, and the method:
    assert reported[0].filename == __file__  # attributed to the caller's line, not the library's
    assert all(result.best_val_auc < 0.55 for _, result in trained)
    with warnings.catch_warnings(record=True) as caught:  # the demo's four lines had named neither
        warnings.simplefilter("always")
        SISA(MF(300, 120, 8), split.train, BCEObjective(l2=1e-2), SISAConfig(TrainConfig(epochs=5, lr=0.05),
                                                                            num_shards=3), val=split.val).fit()
    assert any(str(w.message).startswith("SISA: 3 of 3 shard models show no preference") for w in caught)
    with warnings.catch_warnings(record=True) as caught:  # one shard: fewer is no advice (qa97), its training is
        warnings.simplefilter("always")
        train_shards(models[:1], shards[:1], BCEObjective(l2=1e-2), TrainConfig(epochs=5, lr=0.05), split.val)
    message, = [str(w.message) for w in caught if "validation" in str(w.message)]
    assert message.endswith("the one shard holds all the data: train it longer or faster (train.epochs, train.lr)")
    with warnings.catch_warnings(record=True) as caught:  # one shard of three retrained: fewer is the advice
        warnings.simplefilter("always")
        train_shards(models[:1], shards[:1], BCEObjective(l2=1e-2), TrainConfig(epochs=5, lr=0.05), split.val,
                     num_shards=3)
    message, = [str(w.message) for w in caught if "validation" in str(w.message)]
    assert message.startswith("train_shards: 1 of 1 shard") and message.endswith("give each more")


def test_l_bfgs_shards_and_aggregator_stopped_above_tol_are_not_warned_of():
    """L-BFGS stopped above its tol warns that the model is no stationary point for influence functions; none reads
    the shards or the aggregator, so their training keeps it from the caller (it would warn once per shard)."""
    graph = planted_communities(num_users=U, num_items=I, num_communities=2, interactions_per_user=6, seed=0)
    lbfgs = TrainConfig(epochs=2, optimizer="lbfgs")
    with pytest.warns(NotStationaryWarning):  # the same training on its own
        train(MF(U, I, D), graph, OBJECTIVE, lbfgs)
    with warnings.catch_warnings():
        warnings.simplefilter("error", NotStationaryWarning)
        fitted = RecEraser(MF(U, I, D), graph, OBJECTIVE, RecEraserConfig(lbfgs, num_shards=2, partition_iters=2)).fit()
        (_, shard), = train_shards([MF(U, I, D)], [graph], OBJECTIVE, lbfgs)
        aggregator = train_aggregator(fitted.model, graph, OBJECTIVE, lbfgs)
    assert min(shard.history[-1]["max_gradient"], aggregator.history[-1]["max_gradient"]) > lbfgs.tol


class DropoutMF(MF):
    """MF with a dropout on the user rows: random in train mode, the identity in eval mode (how it serves)."""

    def __init__(self, *args):
        super().__init__(*args)
        self.dropout = torch.nn.Dropout(0.5)

    def embed(self, graph):
        return self.dropout(self.user_emb.weight), self.item_emb.weight


def test_the_aggregator_learns_from_the_serving_embeddings_of_dropout_shards(graph):
    """The attention was fitted on shard embeddings computed in train mode (the shards come out of training so):
    a dropout drew them from the caller's global random state, so fit() moved it, two fits under one seed
    differed, and the attention was fitted to dropped-out rows that the ensemble never serves (eval mode)."""
    config = RecEraserConfig(CONFIG, num_shards=S, partition_iters=2)
    fits = []
    for caller_seed in (1, 2):
        model = DropoutMF(U, I, D)  # its construction draws from the global state, its reset does not
        model.reset_parameters(0)  # the same partition's embeddings in both fits
        torch.manual_seed(caller_seed)
        before = torch.get_rng_state()
        fits.append(RecEraser(model, graph, OBJECTIVE, config).fit().model)
        assert torch.equal(torch.get_rng_state(), before)
    assert same_state(state(fits[0]), state(fits[1]))
    # The attention is the one fitted on the eval-mode (serving) embeddings, whatever the ensemble's modes.
    served = copy.deepcopy(fits[0]).eval()
    train_aggregator(served, graph, OBJECTIVE, CONFIG, seed=config.seed)
    assert same_state(state(served.attention), state(fits[0].attention))
    assert fits[0].shards[0].training  # the ensemble's modes are left as they were
    request = pick_request(graph, fits[0].assignment_of(graph[EDGE].edge_index), [1], per_shard=1)
    torch.manual_seed(3)
    before = torch.get_rng_state()
    RecEraser(fits[0], graph, OBJECTIVE, config).unlearn(request)
    assert torch.equal(torch.get_rng_state(), before)


@pytest.mark.parametrize("method, config", [(SISA, SISAConfig(CONFIG, num_shards=S)),
                                            (RecEraser, RecEraserConfig(CONFIG, num_shards=S, partition_iters=2))])
def test_the_ensemble_comes_back_in_the_callers_modes(graph, method, config):
    """Training left the shards (and the attention) in train mode: served as it came back, an ensemble of dropout
    shards scored the same pairs anew at every call, for a caller whose model was in eval mode."""
    model = DropoutMF(U, I, D)
    model.reset_parameters(0)
    model.eval()
    unlearner = method(model, graph, OBJECTIVE, config).fit()
    request = pick_request(graph, unlearner.model.assignment_of(graph[EDGE].edge_index), [1], per_shard=1)
    pairs = graph[EDGE].edge_index[:, :20]
    result = unlearner.unlearn(request)
    for ensemble, scored_on in ((unlearner.model, graph), (result.model, result.graph)):
        assert not any(module.training for module in ensemble.modules())
        assert torch.equal(ensemble(scored_on, pairs), ensemble(scored_on, pairs))
    model.train()
    assert all(module.training for module in method(model, graph, OBJECTIVE, config).fit().model.modules())


def test_a_fitted_ensemble_is_refused_with_a_graph_that_lacks_some_of_its_pairs(graph):
    """Its shards learnt from every pair it assigns: given a graph without some of them (removed from the data but
    not unlearned), no request could ever name those pairs (they are not edges), so they stayed in the model."""
    sisa = SISA(MF(U, I, D), graph, OBJECTIVE, SISAConfig(CONFIG, num_shards=S)).fit()
    fewer = remove_edges(graph, graph[EDGE].edge_index[:, :2])
    with pytest.raises(ValueError, match=r"SISA: the ensemble's shards learnt from 2 pairs that are not edges of the "
                                         r"graph, e\.g\. \[\[0, 2\], \[0, 18\]\]"):
        SISA(sisa.model, fewer, OBJECTIVE, SISAConfig(CONFIG))
    result = sisa.unlearn(graph[EDGE].edge_index[:, :2])  # unlearned, they leave the ensemble's pairs
    SISA(result.model, result.graph, OBJECTIVE, SISAConfig(CONFIG))


@pytest.mark.parametrize("partition,units", [("user", U), ("item", I)])
def test_receraser_refuses_more_shards_than_users_or_items_by_name(graph, partition, units):
    """A user (item) partition clusters the users (items): more shards than there are failed only in fit(), after
    any pre-training, with "need 1 <= num_shards <= 30 (the number of points)"."""
    config = RecEraserConfig(CONFIG, num_shards=units + 1, partition=partition, pretrain=True)
    with pytest.raises(ValueError, match=re.escape(f"RecEraserConfig.num_shards: the {partition} partition clusters "
                                                   f"the {units} {partition}s: need num_shards <= {units}, got "
                                                   f"{units + 1}")):
        RecEraser(MF(U, I, D), graph, OBJECTIVE, config)


def test_a_partition_with_empty_shards_is_refused_naming_num_shards(graph):
    """A balanced user (item) partition may leave a shard with users (items) but no edge; the error named neither
    the method nor the option to change."""

    class OneShard(SISA):
        def partition(self):
            return torch.zeros(self.graph[EDGE].edge_index.size(1), dtype=torch.long)

    with pytest.raises(ValueError, match=re.escape("OneShard: the partition leaves shards [1, 2, 3] without an edge: "
                                                   "use fewer shards (SISAConfig.num_shards, now 4)")):
        OneShard(MF(U, I, D), graph, OBJECTIVE, SISAConfig(CONFIG, num_shards=S)).fit()


def test_receraser_refuses_pretrained_embeddings_of_another_graph_by_name(graph):
    """A pre-trained model of other node counts was used as it was: an MF with a user more was clustered with a
    phantom user (the user partition's capacity counted it), a LightGCN failed inside torch; embeddings of the
    wrong shape were refused only in fit(), and a value of another type failed with an AttributeError there."""
    config = RecEraserConfig(CONFIG, num_shards=S, partition="user", aggregation="mean")
    for other in (MF(U + 1, I, D), LightGCN(U, I + 2, D)):
        with pytest.raises(ValueError, match=re.escape(f"RecEraser: pretrained has {other.num_users} users and "
                                                       f"{other.num_items} items, the graph {U} and {I}")):
            RecEraser(MF(U, I, D), graph, OBJECTIVE, config, pretrained=other)
    with pytest.raises(ValueError, match=re.escape("RecEraser: pretrained embeddings must be [30, d] and [24, d], "
                                                   "got [31, 8] and [24, 8]")):
        RecEraser(MF(U, I, D), graph, OBJECTIVE, config, pretrained=(torch.zeros(U + 1, D), torch.zeros(I, D)))
    with pytest.raises(TypeError, match="RecEraser: pretrained must be a trained Recommender, a .user, item. pair of "
                                        "embeddings or None, got a str"):
        RecEraser(MF(U, I, D), graph, OBJECTIVE, config, pretrained="model.pt")


def test_shard_attention_refuses_a_zero_attention_dim():
    """``attention_dim=0`` was taken for "the default" (``0 or d // 2``) and built silently."""
    with pytest.raises(ValueError, match="attention_dim must be positive"):
        ShardAttention(3, 4, attention_dim=0)
    assert ShardAttention(3, 4).attention_dim == 2 and ShardAttention(3, 1).attention_dim == 1


def test_an_attention_too_large_to_build_is_refused_before_any_shard_trains(graph, monkeypatch):
    """attention_dim=10**12 failed with torch's allocation error after every shard had trained (a known item); the
    attention is built first, and the refusal names the field."""
    import graphforget.unlearn.sisa as sisa
    monkeypatch.setattr(sisa, "train_shards", lambda *args: pytest.fail("a shard trained"))
    config = SISAConfig(CONFIG, num_shards=2, aggregation="attention", attention_dim=10 ** 12)
    with pytest.raises(ValueError, match=re.escape("SISA: the attention cannot be built (SISAConfig.attention_dim="
                                                   "1000000000000, embedding_dim=8): ")):
        SISA(MF(U, I, D), graph, OBJECTIVE, config).fit()
    monkeypatch.undo()
    built = SISA(MF(U, I, D), graph, OBJECTIVE, dataclasses.replace(config, attention_dim=3)).fit().model.attention
    assert built.attention_dim == 3 and built.user_proj.weight.shape == (3, D)


@pytest.mark.parametrize("transform", [True, False])
def test_the_attentions_size_is_its_parameters_count(transform):
    attention = ShardAttention(3, 5, 7, transform=transform)
    assert ShardAttention.size(3, 5, 7, transform) == sum(p.numel() for p in attention.parameters())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_an_attention_larger_than_the_machines_memory_is_refused_before_it_is_allocated(graph, monkeypatch, dtype):
    """On an H100 machine, the test above's attention_dim=10**12 was not refused: its worker was killed (an allocation
    can succeed where the system overcommits memory, and fail when written). Its training's size (its parameters,
    their gradients and Adam's two moments) in the shards' dtype is checked against the machine's memory first."""
    import graphforget.unlearn.sharding as sharding
    need = 4 * ShardAttention.size(2, D, 100) * dtype.itemsize
    monkeypatch.setattr(sharding, "physical_memory", lambda: need - 1)
    monkeypatch.setattr(sharding, "skip_init", lambda *args, **kwargs: pytest.fail("a projection was allocated"))
    config = SISAConfig(CONFIG, num_shards=2, aggregation="attention", attention_dim=100)
    with pytest.raises(ValueError, match=re.escape(
            f"SISA: the attention cannot be built (SISAConfig.attention_dim=100, embedding_dim=8): ShardAttention("
            f"num_shards=2, embedding_dim=8, attention_dim=100): its training takes {need / 2 ** 30:.4g} GiB ({dtype}), "
            "more than this machine's memory")):
        SISA(MF(U, I, D).to(dtype), graph, OBJECTIVE, config).fit()
    monkeypatch.undo()
    monkeypatch.setattr(sharding, "physical_memory", lambda: need)  # just enough
    attention = SISA(MF(U, I, D).to(dtype), graph, OBJECTIVE, config).fit().model.attention
    assert attention.attention_dim == 100 and attention.user_h.dtype == dtype


@pytest.mark.parametrize("dtype", [torch.int64, torch.complex64, "float64"])
def test_the_attention_refuses_a_dtype_that_is_not_a_real_floating_one(dtype):
    with pytest.raises(ValueError, match=re.escape(f"dtype must be a real floating torch.dtype, got {dtype!r}")):
        ShardAttention(2, 4, dtype=dtype)


def test_the_machines_memory_is_unknown_where_the_system_does_not_say(monkeypatch):
    import graphforget.unlearn.sharding as sharding
    monkeypatch.setattr(sharding.os, "sysconf", lambda name: -1)  # POSIX's answer for an indeterminate value
    assert sharding.physical_memory() is None and ShardAttention(2, 4).attention_dim == 2
    monkeypatch.delattr(sharding.os, "sysconf")  # not POSIX
    assert sharding.physical_memory() is None


def test_the_ensemble_refuses_ids_it_would_store_under_another_pairs_key():
    """Pairs are stored as keys ``user * num_items + item``: an item id of ``num_items`` was stored as the next user's
    item 0 (that pair got a shard, and a lookup of it answered), and float or bool ids were truncated, silently."""
    shards = [MF(3, 2, D), MF(3, 2, D)]
    edge_index, shard_of = torch.tensor([[0, 1], [0, 1]]), torch.tensor([0, 1])
    with pytest.raises(ValueError, match=re.escape("edge_index holds item id 2 at position 1, outside [0, 2)")):
        ShardedRecommender(shards, shard_of, torch.tensor([[0, 0], [0, 2]]))
    with pytest.raises(ValueError, match=re.escape("edge_index holds user id -1 at position 0, outside [0, 3)")):
        ShardedRecommender(shards, shard_of, torch.tensor([[-1, 1], [0, 1]]))
    with pytest.raises(ValueError, match="edge_index holds integer .* got dtype torch.float32"):
        ShardedRecommender(shards, shard_of, edge_index.float())
    for bad in (torch.tensor([0.4, 1.6]), torch.tensor([False, True])):
        with pytest.raises(ValueError, match=f"shard_of holds integer shard ids, got dtype {bad.dtype}"):
            ShardedRecommender(shards, bad, edge_index)
    with pytest.raises(ValueError, match=re.escape("shard ids must be in [0, 2), got ids from 0 to 2")):
        ShardedRecommender(shards, torch.tensor([0, 2]), edge_index)
    ensemble = ShardedRecommender(shards, shard_of, edge_index)
    assert ensemble.assignment_of(torch.tensor([[1], [1]])).tolist() == [1]
    with pytest.raises(ValueError, match=re.escape("pairs holds item id 2 at position 0, outside [0, 2)")):
        ensemble.assignment_of(torch.tensor([[0], [2]]))  # the key of (1, 0), which has no shard either
    with pytest.raises(ValueError, match="pairs holds integer .* got dtype torch.float32"):
        ensemble.assignment_of(torch.tensor([[1.2], [1.0]]))


@pytest.mark.parametrize("bad", ["tuple", "model"])
def test_receraser_refuses_non_finite_pretrained_embeddings_by_name(graph, bad):
    """A NaN in ``pretrained`` failed only in fit(), inside the clustering, with "distances must be finite",
    naming neither the argument nor the value."""
    if bad == "tuple":
        user = torch.randn(U, D)
        user[3, 1] = float("nan")
        pretrained, message = (user, torch.randn(I, D)), "RecEraser: pretrained embeddings hold a NaN or an infinity"
    else:
        pretrained, message = MF(U, I, D), "RecEraser: pretrained: the model has non-finite parameters: item_emb.weight"
        with torch.no_grad():
            pretrained.item_emb.weight[2, 0] = float("inf")
    with pytest.raises(ValueError, match=re.escape(message)):
        RecEraser(MF(U, I, D), graph, OBJECTIVE, RecEraserConfig(CONFIG, num_shards=S), pretrained=pretrained)


def test_receraser_refuses_non_finite_embeddings_of_its_pre_training_by_name(graph):
    """Embeddings that turn non-finite in fit() (a diverged pre-training, a model set as ``pretrained`` since) are
    named with where they came from, not left to the clustering's "distances must be finite"."""
    eraser = RecEraser(MF(U, I, D), graph, OBJECTIVE, RecEraserConfig(CONFIG, num_shards=S))
    eraser.pretrained = MF(U, I, D)
    with torch.no_grad():
        eraser.pretrained.user_emb.weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match=re.escape("RecEraser: the embeddings of pretrained hold a NaN or an "
                                                   "infinity")):
        eraser.fit()


def test_a_shard_the_objective_cannot_train_on_is_refused_by_name(graph):
    """BPR has no term on a shard without an edge labelled 1: fit() and unlearn() failed with the objective's "got
    none of 45", naming neither the shard nor the option to change (an empty shard is refused by name)."""
    ei = graph[EDGE].edge_index
    shard_of = random_partition(ei.size(1), S, derived_seed(0, "partition"))
    labels = (shard_of != 1).float()
    bpr = BPRObjective(l2=1e-3)
    with pytest.raises(ValueError, match=re.escape("SISA: shard 1 cannot be trained on its edges (BPRObjective needs "
                                                   "edges labelled > 0 (its terms), got none of 45): use fewer shards "
                                                   "(SISAConfig.num_shards, now 4)")):
        SISA(MF(U, I, D), make_interactions(ei, labels, U, I), bpr, SISAConfig(CONFIG, num_shards=S)).fit()
    one = (shard_of == 1).nonzero()[0]
    labels[one] = 1.0  # shard 1's only positive edge
    sisa = SISA(MF(U, I, D), make_interactions(ei, labels, U, I), bpr, SISAConfig(CONFIG, num_shards=S)).fit()
    with pytest.raises(ValueError, match=re.escape("SISA: shard 1 cannot be trained on its edges (BPRObjective needs "
                                                   "edges labelled > 0 (its terms), got none of 44): fit() again with "
                                                   "fewer shards (num_shards), or Retrain")):
        sisa.unlearn(ei[:, one])
    labels = graph[EDGE].edge_label.clone()
    labels[shard_of == 1] = 1.0  # BCE has no negative on shard 1: the trainer's error blamed the training graph
    with pytest.raises(ValueError, match=re.escape("SISA: shard 1 cannot be trained on its edges (BCEObjective needs "
                                                   "negative labels but every edge_label of shard 1 is 1): use fewer "
                                                   "shards")):  # not "implicit feedback: add negatives": it has them
        SISA(MF(U, I, D), make_interactions(ei, labels, U, I), BCEObjective(), SISAConfig(CONFIG, num_shards=S)).fit()


def test_a_request_that_leaves_no_shard_a_term_is_refused_as_retrain_refuses_it(graph):
    """Every positive edge requested: the shards' advice, fit() again with fewer shards or Retrain, could not help,
    and Retrain refuses the same request (a QA probe)."""
    sisa = SISA(MF(U, I, D), graph, BCEObjective(), SISAConfig(CONFIG, num_shards=S)).fit()
    store = graph[EDGE]
    with pytest.raises(ValueError, match=re.escape("SISA: the request leaves nothing to retrain the shards on: it "
                                                   "removes every edge labelled 1, which BCEObjective needs (keep some "
                                                   "out of the request")):
        sisa.unlearn(store.edge_index[:, store.edge_label == 1])


def test_receptive_field_is_the_largest_of_the_shards(graph):
    """the class docstring says the receptive field is the largest of the shards'."""
    ei = graph[EDGE].edge_index
    shards = [MF(U, I, D), LightGCN(U, I, D, num_layers=3), LightGCN(U, I, D, num_layers=1)]
    ensemble = ShardedRecommender(shards, random_partition(ei.size(1), 3, seed=0), ei)
    assert ensemble.receptive_field == 3


def test_shard_sizes_has_one_count_per_shard_even_when_the_last_is_empty(graph):
    """``[S]`` counts, counted by hand."""
    ei = graph[EDGE].edge_index
    shard_of = torch.arange(ei.size(1)) % (S - 1)  # shard S-1 holds nothing
    ensemble = ShardedRecommender([MF(U, I, D) for _ in range(S)], shard_of, ei)
    assert ensemble.shard_sizes().tolist() == [int((shard_of == s).sum()) for s in range(S - 1)] + [0]


def test_random_partition_refuses_more_shards_than_edges():
    """the docstring's 1 <= num_shards <= num_edges."""
    with pytest.raises(ValueError, match=re.escape("need 1 <= num_shards <= num_edges, got 4 shards for 3 edges")):
        random_partition(3, 4)
    assert sorted(random_partition(3, 3).tolist()) == [0, 1, 2]


def test_balanced_assign_refuses_a_capacity_one_point_short():
    """2 anchors of capacity 2 cannot hold 5 points (the existing test was 2 points short)."""
    with pytest.raises(ValueError, match="capacity 2 x 2 anchors cannot hold 5 points"):
        balanced_assign(torch.rand(5, 2), 2)
    assert torch.bincount(balanced_assign(torch.rand(4, 2), 2), minlength=2).tolist() == [2, 2]


def test_balanced_kmeans_default_capacity_is_the_ceiling_of_n_over_s():
    """6 points near 0, 2 near 10, 2 shards: capacity ceil(8/2) = 4 forces groups of 4."""
    x = torch.tensor([[0.0], [0.1], [0.2], [0.3], [0.4], [0.5], [10.0], [10.1]])
    groups, _, _ = balanced_kmeans(x, 2, iters=10, seed=0)
    assert sorted(torch.bincount(groups, minlength=2).tolist()) == [4, 4]


def test_balanced_kmeans_counts_its_iterations_as_a_plain_loop_does():
    """the same Lloyd loop, written out by hand."""
    x = torch.randn(50, 6, generator=torch.Generator().manual_seed(0))
    groups, anchors, iterations = balanced_kmeans(x, 4, iters=10, seed=2)
    cap = math.ceil(50 / 4)
    pick = torch.randperm(50, generator=torch.Generator().manual_seed(2))[:4]
    a, prev = x[pick].clone(), None
    for it in range(1, 11):
        new = balanced_assign(torch.cdist(x, a), cap)
        a = torch.stack([x[new == s].mean(0) if (new == s).any() else a[s] for s in range(4)])
        if prev is not None and torch.equal(new, prev):
            break
        prev = new
    assert iterations == it and torch.equal(groups, new)


def _result(auc):
    return TrainResult(epochs=1, best_epoch=1, best_val_auc=auc, seconds=0.0)


def test_a_shard_just_under_chance_is_warned_of_and_two_shards_get_the_fewer_shards_advice(graph):
    """A shard just under chance is warned of; with two shards the advice is fewer shards."""
    split = random_split(graph, (0.7, 0.15, 0.15), seed=0)
    level = chance_level(split.val)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _warn_of_shards_at_chance([_result(level - 0.01), _result(0.99)], split.val, "who", 2)
    message, = [str(w.message) for w in caught if issubclass(w.category, NoSignalWarning)]
    assert message.startswith("who: 1 of 2 shard models show no preference")
    assert message.endswith("fewer shards (num_shards) give each more")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _warn_of_shards_at_chance([_result(level + 0.01)], split.val, "who", 2)
    assert not [w for w in caught if issubclass(w.category, NoSignalWarning)]


def test_train_shards_seeds_job_j_with_j_by_default(graph):
    """the default seeds are ``0 .. S-1`` (``_check_jobs``'s docstring): a fresh model reset with j and
    trained by hand is the shard."""
    ei = graph[EDGE].edge_index
    shard_of = random_partition(ei.size(1), 2, seed=0)
    graphs = [shard_graph_by_hand(graph, shard_of, s) for s in range(2)]
    trained = train_shards([MF(U, I, D)] * 2, graphs, OBJECTIVE, CONFIG)
    for j in range(2):
        ref = MF(U, I, D)
        ref.reset_parameters(j)
        train(ref, graphs[j], OBJECTIVE, CONFIG)
        assert same_state(state(ref), state(trained[j][0])), j


def test_train_aggregator_starts_from_the_seeded_attention_whatever_it_held(graph):
    """``(Re-)trains`` from ``reset_parameters(seed)``, so an attention perturbed
    beforehand ends where a fresh one does."""
    ei = graph[EDGE].edge_index
    shard_of = random_partition(ei.size(1), S, seed=0)
    shards = [MF(U, I, D) for _ in range(S)]
    for s, m in enumerate(shards):
        m.reset_parameters(10 + s)
    fresh = ShardedRecommender(shards, shard_of, ei, "attention")
    moved = ShardedRecommender(shards, shard_of, ei, "attention")
    with torch.no_grad():
        for p in moved.attention.parameters():
            p.add_(1.0)
    train_aggregator(fresh, graph, OBJECTIVE, CONFIG, seed=3)
    train_aggregator(moved, graph, OBJECTIVE, CONFIG, seed=3)
    assert same_state(state(fresh.attention), state(moved.attention))


def test_receraser_embedding_seconds_exclude_the_pre_training(graph, monkeypatch):
    """``embedding_seconds`` is the embeddings' time without the pre-training (its own entry)."""
    import graphforget.unlearn.receraser as receraser
    real = receraser.train

    def slow(*args, **kwargs):  # a pre-training of 0.3 s that its result counts
        start = time.perf_counter()
        time.sleep(0.3)
        result = real(*args, **kwargs)
        result.seconds = time.perf_counter() - start
        return result
    monkeypatch.setattr(receraser, "train", slow)
    config = RecEraserConfig(CONFIG, num_shards=S, aggregation="mean", pretrain=True)
    info = RecEraser(MF(U, I, D), graph, OBJECTIVE, config).fit().fit_info
    assert info["pretrain_seconds"] >= 0.3 and info["embedding_seconds"] < 0.3


def test_split_graph_refuses_a_negative_shard_id(graph):
    """The ``min() < 0`` check: an id out of range left its edge in no shard."""
    count = graph[EDGE].edge_index.size(1)
    shard_of = torch.zeros(count, dtype=torch.long)
    shard_of[0] = -1
    with pytest.raises(ValueError, match=re.escape(f"shard ids must be in [0, {S}), got ids from -1 to 0")):
        split_graph(graph, shard_of, S)


def test_a_pair_beyond_every_assigned_key_is_named_as_unassigned(graph):
    """the pair with the largest key, left out of the
    ensemble, is refused with the documented ValueError, not an IndexError."""
    ei = graph[EDGE].edge_index
    keys = ei[0] * I + ei[1]
    last = int(keys.argmax())
    kept = torch.cat([ei[:, :last], ei[:, last + 1:]], 1)
    ensemble = ShardedRecommender([MF(U, I, D) for _ in range(2)], torch.arange(kept.size(1)) % 2, kept)
    with pytest.raises(ValueError, match="1 edges have no shard assignment"):
        ensemble.assignment_of(ei[:, last:last + 1])


def test_train_shards_refuses_an_empty_shard_graph_by_name(graph):
    """``_check_jobs`` names the shard graph without edges."""
    ei = graph[EDGE].edge_index
    shard_of = torch.zeros(ei.size(1), dtype=torch.long)  # shard 1 empty
    graphs = [shard_graph_by_hand(graph, shard_of, s) for s in range(2)]
    with pytest.raises(ValueError, match=re.escape("shard graph 1 has no training edges (left): use fewer shards")):
        train_shards([MF(U, I, D)] * 2, graphs, OBJECTIVE, CONFIG)


def test_a_fresh_attentions_transfer_is_the_identity():
    """"the transfer starts at the identity" (the class docstring): T_s e + c_s = e."""
    stack = torch.randn(3, 5, 4, generator=torch.Generator().manual_seed(0))
    att = ShardAttention(3, 4, seed=1)
    assert torch.equal(att.transfer(stack), stack)


@pytest.mark.parametrize("args, name, value", [((2.5, 4), "num_shards", 2.5), ((2, 4.0), "embedding_dim", 4.0),
                                               ((2, 4, 2.5), "attention_dim", 2.5), ((True, 4), "num_shards", True)])
def test_shard_attention_refuses_a_size_that_is_not_an_integer(args, name, value):
    """A float had failed inside torch ('empty() takes 1 positional argument'), naming no argument."""
    with pytest.raises(ValueError, match=re.escape(f"ShardAttention: {name} must be an integer (Python's or NumPy's), "
                                                   f"got {value!r}")):
        ShardAttention(*args)


def test_numpy_sizes_are_read_as_python_integers_by_the_memory_guard(monkeypatch):
    """np.int32 sizes overflowed in ShardAttention.size (a RuntimeWarning): 10 shards of width 20,000 read as
    105 million parameters where they are 4.4 billion, and the guard passed a 66 GiB training as 1.6 GiB."""
    import numpy as np
    import graphforget.unlearn.sharding as sharding
    # per node type a projection and a vector, 2 t (d + 2); per shard a map and a bias, d (d + 1)
    assert ShardAttention.size(10, 20000, 10000, True) == 2 * 10000 * 20002 + 10 * 20000 * 20001
    attention = ShardAttention(np.int32(3), np.int64(4))
    assert (type(attention.num_shards), type(attention.attention_dim)) == (int, int)
    monkeypatch.setattr(sharding, "physical_memory", lambda: 2 * 2 ** 30)
    monkeypatch.setattr(sharding, "skip_init", lambda *args, **kwargs: pytest.fail("a projection was allocated"))
    with pytest.raises(ValueError, match="more than this machine's memory"):
        ShardAttention(np.int32(10), np.int32(20000))
