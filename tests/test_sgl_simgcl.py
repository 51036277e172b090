"""SGL and SimGCL backbones: views, InfoNCE and the contrastive objective against dense hand computation."""
from __future__ import annotations

import functools
import math
import re
import warnings

import pytest
import torch

from graphforget.data import EDGE, make_interactions, planted_communities, without_edges
from graphforget.influence import ContrastiveTerm, GaussNewtonOperator, NodeRows, objective_function, training_terms
from graphforget.models import (MODELS, SGL, ContrastiveBPRObjective, LightGCN, SimGCL, build_model, info_nce,
                                load_model, save_model)
from graphforget.objectives import BPRObjective
from graphforget.train import TrainConfig, train
from graphforget.unlearn import IFRU, IFRUConfig
from graphforget.unlearn.ifru import method as ifru_method


@pytest.fixture
def graph():
    """5 users x 4 items, 11 implicit edges; item 3 has a single edge."""
    edge_index = torch.tensor([[0, 0, 1, 1, 1, 2, 2, 3, 3, 4, 4],
                               [0, 1, 0, 1, 2, 1, 2, 0, 2, 3, 1]])
    return make_interactions(edge_index, num_users=5, num_items=4)


def dense_adjacency(edge_index: torch.Tensor, num_users: int, num_items: int) -> torch.Tensor:
    """``D^-1/2 A D^-1/2`` of the bipartite graph as an ``[N, N]`` dense matrix (zero rows stay zero)."""
    n = num_users + num_items
    adj = torch.zeros(n, n, dtype=torch.float64)
    adj[edge_index[0], num_users + edge_index[1]] = 1
    adj[num_users + edge_index[1], edge_index[0]] = 1
    deg = adj.sum(1)
    inv = torch.where(deg > 0, deg.rsqrt(), torch.zeros_like(deg))
    return inv[:, None] * adj * inv[None, :]


def naive_info_nce(a: torch.Tensor, b: torch.Tensor, tau: float) -> float:
    """InfoNCE by explicit loops over rows, cosine similarity computed element by element."""
    a, b = a.double().tolist(), b.double().tolist()

    def cos(x, y):
        return sum(p * q for p, q in zip(x, y)) / math.sqrt(sum(p * p for p in x) * sum(q * q for q in y))

    total = 0.0
    for i in range(len(a)):
        denom = sum(math.exp(cos(a[i], b[j]) / tau) for j in range(len(b)))
        total += -math.log(math.exp(cos(a[i], b[i]) / tau) / denom)
    return total / len(a)


def test_info_nce_matches_hand_computation():
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(6, 3, generator=gen), torch.randn(6, 3, generator=gen)
    for tau in (0.2, 1.0):
        assert float(info_nce(a, b, tau)) == pytest.approx(naive_info_nce(a, b, tau), rel=1e-5)
    # Two identical, mutually orthogonal views: each row's positive is cos 1, negatives cos 0.
    eye = torch.eye(3)
    expected = -math.log(math.exp(1 / 0.5) / (math.exp(1 / 0.5) + 2))
    assert float(info_nce(eye, eye, 0.5)) == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError):
        info_nce(a, b[:3], 0.2)
    with pytest.raises(ValueError):
        info_nce(a, b, 0.0)


@pytest.mark.parametrize("tau", [math.nan, math.inf, -1.0])
def test_info_nce_refuses_a_temperature_that_is_not_positive_and_finite(tau):
    """A NaN temperature passed ``tau <= 0`` and gave a NaN loss, without a word."""
    a = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="tau must be a finite number > 0"):
        info_nce(a, a, tau)


@pytest.mark.parametrize("cls", [SGL, SimGCL])
def test_contrastive_loss_refuses_ids_out_of_range(graph, cls):
    """User 7 of 5 read an item's row, item -1 the last user's: the public method checked nothing."""
    model = cls(5, 4, embedding_dim=3, num_layers=2)
    gen = torch.Generator().manual_seed(0)
    for users, items, message in (([7], [0], "contrastive_loss: user id 7 at position 0, outside [0, 5)"),
                                  ([0], [-1], "contrastive_loss: item id -1 at position 0, outside [0, 4)")):
        with pytest.raises(ValueError, match=re.escape(message)):
            model.contrastive_loss(graph, torch.tensor(users), torch.tensor(items), gen)
    assert torch.isfinite(model.contrastive_loss(graph, torch.tensor([4]), torch.tensor([3]), gen))


@pytest.mark.parametrize("layers", ["2", None, 0, 1.0])
def test_simgcl_names_a_layer_count_that_is_no_integer_from_one(layers):
    """"2" and None failed comparing with an int (TypeError), where LightGCN names them."""
    with pytest.raises(ValueError, match=re.escape(f"SimGCL averages layers 1..K: num_layers must be an integer >= 1, "
                                                   f"got {layers!r}")):
        SimGCL(5, 4, 3, layers)

def dense_sgl_views(model, graph, seed: int) -> list[torch.Tensor]:
    """A 2-layer SGL's two views by dense matrices, in the documented draw order: one rand([E]) per view, keep
    where >= drop_ratio."""
    x0 = torch.cat([model.user_emb.weight, model.item_emb.weight]).detach().double()
    edges = graph[EDGE].edge_index
    gen = torch.Generator().manual_seed(seed)
    views = []
    for _ in range(2):
        keep = torch.rand(edges.size(1), generator=gen) >= model.drop_ratio
        adj = dense_adjacency(edges[:, keep], model.num_users, model.num_items)
        views.append((x0 + adj @ x0 + adj @ adj @ x0) / 3)
    return views


def test_sgl_views_and_loss_match_dense_edge_dropout(graph):
    model = SGL(5, 4, embedding_dim=3, num_layers=2, drop_ratio=0.3)
    model.reset_parameters(1)
    expected = dense_sgl_views(model, graph, 7)
    assert not torch.allclose(expected[0], expected[1])  # the seed does drop different edges
    first, second = model.views(graph, torch.Generator().manual_seed(7))
    torch.testing.assert_close(first.double(), expected[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(second.double(), expected[1], rtol=1e-5, atol=1e-6)

    users, items = torch.tensor([0, 2, 4]), torch.tensor([1, 3])
    loss = model.contrastive_loss(graph, users, items, torch.Generator().manual_seed(7), tau=0.5)
    ref = naive_info_nce(expected[0][users], expected[1][users], 0.5) + \
        naive_info_nce(expected[0][5 + items], expected[1][5 + items], 0.5)
    assert float(loss.detach()) == pytest.approx(ref, rel=1e-5)


def test_sgl_inference_is_plain_lightgcn(graph):
    sgl = SGL(5, 4, embedding_dim=3, num_layers=2, drop_ratio=0.5)
    sgl.reset_parameters(3)
    lgn = LightGCN(5, 4, embedding_dim=3, num_layers=2)
    lgn.load_state_dict(sgl.state_dict())
    pairs = torch.tensor([[0, 1, 4, 3], [3, 0, 1, 2]])
    torch.testing.assert_close(sgl(graph, pairs), lgn(graph, pairs))
    assert torch.equal(sgl(graph, pairs), sgl(graph, pairs))
    # drop_ratio 0 views are the deterministic propagation itself.
    sgl.drop_ratio = 0.0
    first, second = sgl.views(graph, torch.Generator().manual_seed(0))
    torch.testing.assert_close(first, torch.cat(sgl.embed(graph)))
    torch.testing.assert_close(second, first)


def test_simgcl_views_loss_and_inference_match_dense(graph):
    eps, layers = 0.3, 2
    model = SimGCL(5, 4, embedding_dim=3, num_layers=layers, eps=eps)
    model.reset_parameters(2)
    x0 = torch.cat([model.user_emb.weight, model.item_emb.weight]).detach().double()
    adj = dense_adjacency(graph[EDGE].edge_index, 5, 4)
    # Inference: mean of layers 1..K, no layer 0, no noise.
    plain = (adj @ x0 + adj @ adj @ x0) / 2
    torch.testing.assert_close(torch.cat(model.embed(graph)).double(), plain, rtol=1e-5, atol=1e-6)
    # Views: per layer one rand of x's shape, noise rows normalised, sign-matched, magnitude eps.
    gen = torch.Generator().manual_seed(11)
    expected = []
    for _ in range(2):
        x, out = x0, torch.zeros_like(x0)
        for _ in range(layers):
            x = adj @ x
            noise = torch.rand(x.shape, generator=gen).double()
            delta = eps * torch.sign(x) * noise / noise.norm(dim=1, keepdim=True)
            assert torch.allclose(delta.norm(dim=1)[x.abs().min(1).values > 0], torch.tensor(eps).double())
            x = x + delta
            out = out + x
        expected.append(out / layers)
    first, second = model.views(graph, torch.Generator().manual_seed(11))
    torch.testing.assert_close(first.double(), expected[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(second.double(), expected[1], rtol=1e-5, atol=1e-6)
    users, items = torch.tensor([1, 3]), torch.tensor([0, 1, 2])
    loss = model.contrastive_loss(graph, users, items, torch.Generator().manual_seed(11), tau=0.2)
    ref = naive_info_nce(expected[0][users], expected[1][users], 0.2) + \
        naive_info_nce(expected[0][5 + items], expected[1][5 + items], 0.2)
    assert float(loss.detach()) == pytest.approx(ref, rel=1e-5)
    assert torch.equal(model(graph, torch.tensor([[0], [1]])), model(graph, torch.tensor([[0], [1]])))


@pytest.mark.parametrize("cls", [SGL, SimGCL])
def test_contrastive_objective_adds_the_models_term(graph, cls):
    model = cls(5, 4, embedding_dim=4, num_layers=2)
    model.reset_parameters(0)
    objective = ContrastiveBPRObjective(l2=1e-3, ssl_weight=0.3, tau=0.4, seed=5)
    positions = torch.tensor([0, 3, 4, 7, 10])
    loss = objective.batch_loss(model, graph, positions, epoch=2)
    bpr = BPRObjective(l2=1e-3, seed=5).batch_loss(model, graph, positions, epoch=2)
    pairs = graph[EDGE].edge_index[:, positions]
    ssl = model.contrastive_loss(graph, pairs[0].unique(), pairs[1].unique(),
                                 objective.generator(positions, 2), tau=0.4)
    assert float(loss.detach()) == pytest.approx(float((bpr + 0.3 * ssl).detach()), rel=1e-6)
    assert float(ssl.detach()) > 0
    # Deterministic given (seed, epoch, batch); a different epoch draws different views.
    assert torch.equal(loss, objective.batch_loss(model, graph, positions, epoch=2))
    other = model.contrastive_loss(graph, pairs[0].unique(), pairs[1].unique(), objective.generator(positions, 3), 0.4)
    assert float(other.detach()) != float(ssl.detach())
    # The contrastive term reaches the embeddings' gradient.
    loss.backward()
    grad_with = model.user_emb.weight.grad.clone()
    model.zero_grad()
    bpr.backward()
    assert not torch.allclose(grad_with, model.user_emb.weight.grad)


@pytest.mark.parametrize("cls", [SGL, SimGCL])
def test_a_batch_contrasts_the_users_and_items_of_its_positive_edges_alone(cls):
    """As the influence term does (ContrastiveTerm.contrasted): user 4 and item 3, whose one edge is disliked, are not
    contrasted (qa96: the batch's every node contrasted passed every test, no batch having held a label 0)."""
    edges = torch.tensor([[0, 0, 1, 1, 2, 3, 4], [0, 1, 1, 2, 2, 0, 3]])
    labels = torch.tensor([1., 1., 1., 1., 1., 1., 0.])
    graph = make_interactions(edges, labels, 5, 4, observed=labels > 0)
    model = cls(5, 4, embedding_dim=4, num_layers=2)
    model.reset_parameters(0)
    objective = ContrastiveBPRObjective(l2=1e-3, ssl_weight=0.3, tau=0.4, seed=5)
    positions = torch.arange(7)
    bpr = BPRObjective(l2=1e-3, seed=5).batch_loss(model, graph, positions, epoch=1)
    ssl = model.contrastive_loss(graph, torch.tensor([0, 1, 2, 3]), torch.tensor([0, 1, 2]),
                                 objective.generator(positions, 1), tau=0.4)
    assert float(objective.batch_loss(model, graph, positions, epoch=1)) == pytest.approx(float(bpr + 0.3 * ssl),
                                                                                          rel=1e-6)


def test_two_steps_of_one_epoch_over_the_same_nodes_draw_other_views():
    """ContrastiveBPRObjective.generator: "Seeding from the batch too gives every step of an epoch its own views": two
    batches of one epoch and size over users {0, 1} and items {0, 1} contrast other draws (qa157: a key without the
    batch's positions contrasted the same two views at every such step)."""
    graph = make_interactions(torch.tensor([[0, 1, 1, 0, 2, 2], [0, 1, 0, 1, 2, 3]]), num_users=3, num_items=4)
    model = SGL(3, 4, embedding_dim=4, num_layers=2, drop_ratio=0.5)
    model.reset_parameters(0)
    objective, bpr = ContrastiveBPRObjective(l2=0.0, ssl_weight=1.0, tau=0.3, seed=7), BPRObjective(l2=0.0, seed=7)
    with torch.no_grad():
        parts = [float(objective.batch_loss(model, graph, positions, epoch=4)
                       - bpr.batch_loss(model, graph, positions, epoch=4))
                 for positions in (torch.tensor([0, 1]), torch.tensor([2, 3]))]
    assert min(parts) > 0 and parts[0] != pytest.approx(parts[1], rel=1e-6), parts


def test_contrastive_objective_trains_and_rejects_plain_models(graph):
    model = SGL(5, 4, embedding_dim=8, num_layers=2)
    model.reset_parameters(0)
    result = train(model, graph, ContrastiveBPRObjective(ssl_weight=0.1, seed=0),
                   TrainConfig(epochs=30, lr=0.05, batch_size=0, patience=0))
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    with pytest.raises(ValueError, match="contrastive_loss"):
        ContrastiveBPRObjective(ssl_weight=0.1).batch_loss(LightGCN(5, 4, 4), graph, torch.arange(3))
    with pytest.raises(ValueError):
        ContrastiveBPRObjective(ssl_weight=-1)


@pytest.mark.parametrize("cls", [SGL, SimGCL])
def test_a_contrastive_model_given_an_objective_without_the_term_is_warned_that_it_trains_as_lightgcn(graph, cls):
    """A plain BPRObjective trained SGL as LightGCN without a word (a QA probe); ssl_weight=0 is a choice."""
    config = TrainConfig(epochs=1, batch_size=0, patience=0)
    with pytest.warns(RuntimeWarning, match=f"train: {cls.__name__} has a contrastive term, but BPRObjective adds "
                                            "none: the model trains as LightGCN"):
        train(cls(5, 4, embedding_dim=4, num_layers=1), graph, BPRObjective(), config)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        train(cls(5, 4, embedding_dim=4, num_layers=1), graph, ContrastiveBPRObjective(ssl_weight=0), config)
        train(LightGCN(5, 4, embedding_dim=4, num_layers=1), graph, BPRObjective(), config)


def test_registry_and_checkpoints(tmp_path):
    assert MODELS["sgl"] is SGL and MODELS["simgcl"] is SimGCL
    for name, extra in (("sgl", {"drop_ratio": 0.25}), ("simgcl", {"eps": 0.05})):
        model = build_model(name, num_users=3, num_items=2, embedding_dim=4, num_layers=1, **extra)
        save_model(model, tmp_path / f"{name}.pt")
        loaded, _ = load_model(tmp_path / f"{name}.pt")
        assert type(loaded) is type(model) and loaded.config() == model.config()
        assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))
        assert name.upper()[:3] in repr(model).upper()
    with pytest.raises(ValueError):
        SGL(3, 2, drop_ratio=1.0)
    with pytest.raises(ValueError):
        SimGCL(3, 2, num_layers=0)
    with pytest.raises(ValueError):
        SimGCL(3, 2, eps=-0.1)
    for eps in (math.nan, math.inf, True, "0.1", None):  # NaN or infinite noise: every view non-finite
        with pytest.raises(ValueError, match="eps must be a finite number >= 0"):
            SimGCL(3, 2, eps=eps)
    for drop_ratio in (False, "0.1", None):  # a bool was taken as a ratio of 0; a string failed in a comparison
        with pytest.raises(ValueError, match=r"drop_ratio must be a number in \[0, 1\)"):
            SGL(3, 2, drop_ratio=drop_ratio)


def test_the_contrastive_weight_is_a_hyperparameter_that_leaves_earlier_keys_alone():
    """``Hyperparameters.ssl_weight`` sets the objective's weight; unset, the preset's stands and ``as_dict`` (the
    bench's cache keys) is what it was before the field existed."""
    from graphforget.presets import CONTRASTIVE, Hyperparameters, default_hparams
    preset = default_hparams("simgcl")
    assert preset.objective().ssl_weight == CONTRASTIVE["simgcl"]["ssl_weight"] and "ssl_weight" not in preset.as_dict()
    lighter = preset.replace(ssl_weight=0.02)
    assert lighter.objective().ssl_weight == 0.02 and lighter.objective().tau == CONTRASTIVE["simgcl"]["tau"]
    assert Hyperparameters(**lighter.as_dict()) == lighter
    # the preset's weight set is the preset's objective: its key and report are the unset one's (a QA probe)
    assert preset.replace(ssl_weight=CONTRASTIVE["simgcl"]["ssl_weight"]).as_dict() == preset.as_dict()
    # "None, or a weight >= 0 for sgl, simgcl (got 0.1)" read as a range error for MF
    for model, weight, message in (("mf", 0.1, r"only sgl and simgcl have a contrastive term to weigh "
                                                r"\(--ssl-weight\), not mf: leave it None \(got 0.1\)"),
                                   ("simgcl", -1.0, "must be None or a weight >= 0"),
                                   ("simgcl", math.nan, "must be finite")):
        with pytest.raises(ValueError, match=f"Hyperparameters.ssl_weight: {message}"):
            default_hparams(model, loss="bpr").replace(ssl_weight=weight)


# -- the contrastive term as influence methods differentiate it ---------------------------------------------


def test_fixed_views_are_one_draw_on_every_graph(graph):
    """SGL's fixed views keep the same edges on the training graph and on a graph with edges removed from it,
    drawn as training draws them; SimGCL's add the noise drawn at the tables of the draw, on every graph."""
    model = SGL(5, 4, embedding_dim=3, num_layers=2, drop_ratio=0.3)
    model.reset_parameters(1)
    x0 = torch.cat([model.user_emb.weight, model.item_emb.weight]).detach().double()
    edges = graph[EDGE].edge_index
    remaining, _ = without_edges(graph, torch.tensor([[1, 4], [2, 3]]))
    gen = torch.Generator().manual_seed(5)
    keeps = [torch.rand(edges.size(1), generator=gen) >= 0.3 for _ in range(2)]
    removed = ((edges[0] == 1) & (edges[1] == 2)) | ((edges[0] == 4) & (edges[1] == 3))
    assert any(keep[removed].any() for keep in keeps)  # a view keeps a removed edge

    def dense_view(keep):
        adj = dense_adjacency(edges[:, keep], 5, 4)
        return (x0 + adj @ x0 + adj @ adj @ x0) / 3
    draw = model.fixed_views(graph, torch.Generator().manual_seed(5))
    for g, drop in ((graph, torch.zeros_like(removed)), (remaining, removed), (graph, torch.zeros_like(removed))):
        for view, keep in zip(draw(g), keeps):
            torch.testing.assert_close(view.double(), dense_view(keep & ~drop), rtol=1e-5, atol=1e-6)
    for view, trained in zip(draw(graph), model.views(graph, torch.Generator().manual_seed(5))):
        torch.testing.assert_close(view, trained)  # the draw training makes from the same generator state

    simgcl = SimGCL(5, 4, embedding_dim=3, num_layers=2, eps=0.3)
    simgcl.reset_parameters(2)
    draw = simgcl.fixed_views(graph, torch.Generator().manual_seed(5))
    for view, trained in zip(draw(graph), simgcl.views(graph, torch.Generator().manual_seed(5))):
        torch.testing.assert_close(view, trained)  # training's draw, at the tables it was drawn at
    # The noise is drawn once, its signs those of the propagation then: on a graph without edges each layer is
    # its noise alone, the views (d1 + d2) / 2, where training's views, whose signs follow the zero
    # propagation, have none.
    x0 = torch.cat([simgcl.user_emb.weight, simgcl.item_emb.weight]).detach().double()
    adj, gen, expected = dense_adjacency(edges, 5, 4), torch.Generator().manual_seed(5), []
    for _ in range(2):
        x, deltas = x0, []
        for _ in range(2):
            x = adj @ x
            noise = torch.rand(x.shape, generator=gen).double()
            deltas.append(0.3 * torch.sign(x) * noise / noise.norm(dim=1, keepdim=True))
            x = x + deltas[-1]
        expected.append(sum(deltas) / 2)
    empty, _ = without_edges(graph, edges)
    for view, want in zip(draw(empty), expected):
        torch.testing.assert_close(view.double(), want, rtol=1e-5, atol=1e-6)
    assert all(float(view.detach().abs().max()) == 0 for view in simgcl.views(empty, torch.Generator().manual_seed(5)))


def _term_setup(graph, seed: int = 3):
    model = SGL(5, 4, embedding_dim=3, num_layers=2, drop_ratio=0.3)
    model.reset_parameters(seed)
    objective = ContrastiveBPRObjective(l2=0.1, ssl_weight=0.5, tau=0.5, seed=seed)
    rows = NodeRows.from_node_mask(model, torch.tensor([1, 1, 0, 1, 0, 1, 1, 0, 1], dtype=torch.bool), 5)
    return model, objective, rows, rows.gather(model)


def _term_by_hand(model, graph, users, items, scale: float) -> float:
    """``scale`` (InfoNCE_users + InfoNCE_items) on the fixed views of a generator seeded with the objective's seed 3,
    by loops."""
    first, second = (view.detach() for view in model.fixed_views(graph, torch.Generator().manual_seed(3))(graph))
    return scale * (naive_info_nce(first[users], second[users], 0.5) + naive_info_nce(first[items], second[items], 0.5))


def _sgl_and_objective():
    model = SGL(5, 4, embedding_dim=3, num_layers=2, drop_ratio=0.3)
    model.reset_parameters(3)
    return model, ContrastiveBPRObjective(l2=0.1, ssl_weight=0.5, tau=0.5, seed=3)


def test_a_side_of_exactly_max_nodes_is_not_sampled_and_keeps_the_seeds_draw(graph):
    """ContrastiveTerm samples a side "when it has more" than max_nodes: with max_nodes = 5, the users, every node is
    contrasted on the seed's draw as with the default (qa157: a side of exactly max_nodes drew a permutation, which
    moved the views' draw off the seed's). Weight |D| ssl_weight = 11 * 0.5."""
    model, objective = _sgl_and_objective()
    rows = NodeRows.from_node_mask(model, torch.ones(9, dtype=torch.bool), 5)
    expected = _term_by_hand(model, graph, torch.arange(5), torch.arange(5, 9), 11 * 0.5)
    for max_nodes in (5, 8192):
        term = ContrastiveTerm(model, objective, graph, max_nodes=max_nodes)
        with torch.no_grad():
            assert float(term.function(rows, graph)(rows.gather(model))) == pytest.approx(expected, rel=1e-5)


def test_the_terms_weight_counts_the_edges_labelled_0_too():
    """|D| ssl_weight with |D| the graph's edges, as a training step weighs its batch's mean BPR over all its edges
    against one InfoNCE: 9 edges, 2 labelled 0, weigh 9 * 0.5 (qa157: counting the positive edges alone shrank IFRU's
    term, gradient and curvature by 7/9). The nodes contrasted are those of positive edges."""
    edges = torch.tensor([[0, 0, 1, 1, 2, 2, 3, 3, 4], [0, 1, 0, 1, 1, 2, 0, 2, 3]])
    labels = torch.tensor([1., 1., 1., 0., 1., 1., 1., 0., 0.])
    graph = make_interactions(edges, labels, 5, 4, observed=labels > 0)
    model, objective = _sgl_and_objective()
    rows = NodeRows.from_node_mask(model, torch.ones(9, dtype=torch.bool), 5)
    term = ContrastiveTerm(model, objective, graph)
    expected = _term_by_hand(model, graph, torch.tensor([0, 1, 2, 3]), torch.tensor([5, 6, 7]), 9 * 0.5)
    with torch.no_grad():
        assert float(term.function(rows, graph)(rows.gather(model))) == pytest.approx(expected, rel=1e-5)


def test_the_contrastive_term_and_its_gauss_newton_curvature_against_dense(graph):
    model, objective, rows, phi = _term_setup(graph)
    edges = graph[EDGE].edge_index
    gen = torch.Generator().manual_seed(3)  # the objective's seed draws the views, as in the test above
    propagations = []
    for keep in [torch.rand(edges.size(1), generator=gen) >= 0.3 for _ in range(2)]:
        adj = dense_adjacency(edges[:, keep], 5, 4)
        propagations.append((torch.eye(9, dtype=torch.float64) + adj + adj @ adj) / 3)

    def logits(x):  # the users' and the items' cosine logits over tau, flattened, in float64
        tables = rows.tables(model, x)
        x0 = torch.cat([tables["user_emb.weight"], tables["item_emb.weight"]]).double()
        z = [torch.nn.functional.normalize(p @ x0, dim=1) for p in propagations]
        return torch.cat([(z[0][:5] @ z[1][:5].t()).flatten(), (z[0][5:] @ z[1][5:].t()).flatten()]) / 0.5
    z = logits(phi).detach()
    expected = 11 * 0.5 * sum(torch.nn.functional.cross_entropy(m, torch.arange(n)) for n, m in
                              ((5, z[:25].view(5, 5)), (4, z[25:].view(4, 4))))
    term = ContrastiveTerm(model, objective, graph)
    assert float(term.function(rows, graph)(phi)) == pytest.approx(float(expected), rel=1e-5)

    jacobian = torch.autograd.functional.jacobian(logits, phi.detach()).double()
    blocks = []
    for n, m in ((5, z[:25].view(5, 5)), (4, z[25:].view(4, 4))):
        blocks += [(torch.diag(row) - torch.outer(row, row)) / n for row in torch.softmax(m, dim=1)]
    dense = 11 * 0.5 * jacobian.t() @ torch.block_diag(*blocks) @ jacobian
    operator = term.gauss_newton(rows, graph, phi)
    for v in torch.randn(3, phi.numel(), generator=torch.Generator().manual_seed(0)):
        torch.testing.assert_close(operator(v).double(), dense @ v.double(), rtol=1e-4, atol=1e-5)
    assert torch.linalg.eigvalsh(dense).min() > -1e-8  # positive semi-definite


def test_ifru_differentiates_the_contrastive_term(graph):
    """IFRU's step on SGL is the damped Newton step of the whole objective, its contrastive term included:
    against the dense Hessian of BPR plus the term on the remaining graph, and the gradients' difference."""
    model, objective, _, _ = _term_setup(graph)
    with torch.no_grad():  # rows of norm ~1: at the initialisation's ~0.1 the cosines' curvature is indefinite
        for parameter in model.parameters():
            parameter.mul_(10)
    request = torch.tensor([[1], [2]])  # user 1 and item 2 keep other edges: no row is left without data
    remaining, _ = without_edges(graph, request)
    rows = NodeRows.from_node_mask(model, torch.ones(9, dtype=torch.bool), 5)
    phi = rows.gather(model)
    term = ContrastiveTerm(model, objective, graph)

    def whole(g):
        bpr = objective_function(model, objective, training_terms(objective, g), g, rows, locality=False)
        contrastive = term.function(rows, g)
        return lambda x: bpr(x) + contrastive(x)

    def grad(fn):
        x = phi.detach().requires_grad_(True)
        return torch.autograd.grad(fn(x), x)[0]
    full, new = whole(graph), whole(remaining)
    gradient = grad(full) - grad(new)
    damping = 20.0
    hessian = torch.autograd.functional.hessian(new, phi.detach()).double()
    expected = phi.double() + torch.linalg.solve(hessian + damping * torch.eye(phi.numel()), gradient.double())

    config = {"hops": 10, "curvature": "exact", "newton": {"steps": 1},
              "solver": {"name": "direct", "damping": damping, "tol": 1e-4}, "trust": {"retries": 0}}
    out = IFRU(model, graph, objective, IFRUConfig(**config)).unlearn(request)
    assert out.info["trusted"] and out.info["contrastive"] and out.info["kept_nodes"] == 9
    torch.testing.assert_close(rows.gather(out.model).double(), expected, rtol=1e-4, atol=1e-5)
    without = IFRU(model, graph, objective, IFRUConfig(**config, contrastive=False)).unlearn(request)
    assert not without.info["contrastive"]
    moved = (rows.gather(out.model) - phi).norm()
    assert (rows.gather(without.model) - rows.gather(out.model)).norm() > 0.1 * moved  # the term matters


def test_without_spillover_the_removed_edges_share_of_the_contrastive_term_is_in_the_gradient(graph):
    """spillover=False (the paper's ablation): g is the removed terms' gradient, and the removed edges' share of the
    contrastive term, whose weight is |D| ssl_weight (its change through the views is the spillover's). It had been
    the BPR terms' alone, while the term was in the curvature and in the test's objective. Against the dense formula."""
    model, objective, _, _ = _term_setup(graph)
    model = model.double()
    with torch.no_grad():  # rows of norm ~1, as in the test above
        for parameter in model.parameters():
            parameter.mul_(10)
    request = torch.tensor([[1], [2]])
    remaining, positions = without_edges(graph, request)
    rows = NodeRows.from_node_mask(model, torch.ones(9, dtype=torch.bool), 5)
    phi = rows.gather(model)
    term = ContrastiveTerm(model, objective, graph)

    def grad(fn):
        x = phi.detach().requires_grad_(True)
        return torch.autograd.grad(fn(x), x)[0]
    removed = objective_function(model, objective, training_terms(objective, graph, positions), graph, rows,
                                 regularize=False, locality=False)
    gradient = grad(removed) + grad(term.function(rows, graph)) / 11  # 1 of the graph's 11 edges
    new_terms = objective_function(model, objective, training_terms(objective, remaining), remaining, rows,
                                   locality=False)
    hessian = torch.autograd.functional.hessian(lambda x: new_terms(x) + term.function(rows, remaining)(x), phi)
    expected = phi + torch.linalg.solve(hessian + 20.0 * torch.eye(phi.numel(), dtype=torch.float64), gradient)
    config = IFRUConfig(hops=10, curvature="exact", spillover=False, newton={"steps": 1},
                        solver={"name": "direct", "damping": 20.0}, trust={"retries": 0, "on_failure": "apply"})
    out = IFRU(model, graph, objective, config).unlearn(request)
    assert out.info["contrastive"]
    torch.testing.assert_close(rows.gather(out.model), expected, rtol=1e-6, atol=1e-8)


def test_cg_solves_the_contrastive_objective_of_an_orphaned_user_as_the_direct_solver(graph):
    """A request that leaves user 4 without edges: no BPR term scores its row, and the remaining graph's contrastive
    term no longer contrasts it (a training batch contrasts its positive edges' nodes), so its block is decoupled
    and zeroed. (Contrasted still, it had coupled the block, and the zeroing after the acceptance test raised the
    objective that test had passed.) The first attempt fits its draw of the views (the term's loss on another draw
    rises by 36%), the second the negatives' (1.15%): both solvers retry them, and the step matches the direct
    solver's."""
    model, objective, _, _ = _term_setup(graph)
    model = model.double()
    with torch.no_grad():  # rows of norm ~1, as in the test above
        for parameter in model.parameters():
            parameter.mul_(10)
    request = torch.tensor([[4, 4], [3, 1]])
    config = {"hops": 10, "newton": {"steps": 1}, "solver": {"damping": 1.0, "tol": 1e-10, "max_iter": 500}}
    cg, direct = (IFRU(model, graph, objective, IFRUConfig(**{**config, "solver": {**config["solver"], "name": name}})
                       ).unlearn(request) for name in ("cg", "direct"))
    assert cg.info["zeroed_entries"] == 3 and cg.info["contrastive"] and cg.info["trusted"]
    dampings = [a["damping"] for a in cg.info["attempts"]]
    assert dampings == [a["damping"] for a in direct.info["attempts"]] == [1, 10, 100]
    assert "raised the contrastive term's loss on a fresh draw of views by 36%" in cg.info["attempts"][0]["reason"]
    assert "raised the remaining terms' loss on a fresh draw of negatives by 1.15%" in cg.info["attempts"][1]["reason"]
    for mine, reference in zip(cg.model.parameters(), direct.model.parameters()):
        torch.testing.assert_close(mine, reference, rtol=1e-6, atol=1e-8)


def test_the_contrastive_term_contrasts_the_nodes_with_an_edge_on_each_graph(graph):
    """A user the request leaves without an edge (user 4, and item 3 with it) drops out of the remaining graph's
    term, whose value then does not depend on its row; so does a user whose edges are all disliked (0-labelled):
    training contrasts the pairs of BPR terms only (a user left with unobserved negatives was contrasted, its row
    zeroed as one without data, and the term on the fresh draw rose 5.1% past the test; QA probe). Every
    node of the sample had been contrasted: a forgotten user's row, zeroed after the acceptance test, raised the term
    (T from 670.5 at the tested step to 688.4)."""
    model, objective, _, _ = _term_setup(graph)
    rows = NodeRows.from_node_mask(model, torch.ones(9, dtype=torch.bool), 5)
    phi = rows.gather(model)
    term = ContrastiveTerm(model, objective, graph)
    assert [ids.tolist() for ids in term.contrasted(graph)] == [[0, 1, 2, 3, 4], [5, 6, 7, 8]]
    remaining, _ = without_edges(graph, torch.tensor([[4, 4], [3, 1]]))
    assert [ids.tolist() for ids in term.contrasted(remaining)] == [[0, 1, 2, 3], [5, 6, 7]]
    moved = phi.clone()
    moved[12:15] += 1.0  # user 4's row (rows are the users' then the items', 3 entries each)
    value = term.function(rows, remaining)
    assert float(value(moved)) == float(value(phi)) and float(term.function(rows, graph)(moved)) != float(
        term.function(rows, graph)(phi))
    disliked = make_interactions(graph[EDGE].edge_index, (graph[EDGE].edge_index[0] != 0).float(), 5, 4)
    assert term.contrasted(disliked)[0].tolist() == [1, 2, 3, 4]
    operator = term.gauss_newton(rows, remaining, phi)  # its curvature is the term's over the same nodes
    v = torch.randn(phi.numel(), generator=torch.Generator().manual_seed(0))
    sides = term.contrasted(remaining)
    autograd = GaussNewtonOperator(lambda x: term._logits(rows, remaining, x, sides), term._loss(remaining, sides), phi)
    torch.testing.assert_close(operator(v), autograd(v), rtol=1e-4, atol=1e-6)
    assert float(operator(v)[12:15].abs().max()) == 0


def test_a_user_left_with_unobserved_negatives_is_zeroed_and_no_longer_contrasted():
    """Book-Crossing's layout: label-0 rows are unobserved negatives. A user whose observed edges are forgotten keeps
    them, has no BPR term and no message-passing edge, and IFRU zeroes its row; the term contrasted it still, and the
    returned SGL's term on the fresh draw of views was 5.1% above the trained one's, past the test (a QA probe)."""
    planted = planted_communities(num_users=60, num_items=60, interactions_per_user=8, seed=0)
    edges, labels = planted[EDGE].edge_index, planted[EDGE].edge_label
    graph = make_interactions(edges, labels, 60, 60, observed=labels > 0)
    model = SGL(60, 60, embedding_dim=16)
    model.reset_parameters(seed=0)
    objective = ContrastiveBPRObjective(l2=1e-2, ssl_weight=0.1, seed=0)
    train(model, graph, objective, TrainConfig(epochs=10, lr=0.05, batch_size=256, patience=0))
    assert bool(((edges[0] == 3) & (labels == 0)).any())
    result = IFRU(model, graph, objective, IFRUConfig()).unlearn(edges[:, (edges[0] == 3) & (labels > 0)])
    assert result.info["trusted"] and result.info["zeroed_entries"] == 16 and not result.model.user_emb.weight[3].any()
    fresh = ContrastiveTerm(model, objective, graph, draw=1)
    assert 3 not in fresh.contrasted(result.graph)[0].tolist()
    rows = NodeRows.from_node_mask(model, torch.ones(120, dtype=torch.bool), 60)
    value = fresh.function(rows, result.graph)
    with torch.no_grad():
        before, after = float(value(rows.gather(model))), float(value(rows.gather(result.model)))
    assert after <= before * (1 + IFRUConfig().trust.max_fresh_loss_rise)


def test_the_contrastive_term_samples_large_sides_and_warns_without_fixed_views(graph):
    model, objective, rows, phi = _term_setup(graph)
    term = ContrastiveTerm(model, objective, graph, max_nodes=3)
    again = ContrastiveTerm(model, objective, graph, max_nodes=3)
    assert term.users.tolist() == again.users.tolist() and len(set(term.users.tolist())) == 3
    assert term.items.tolist() == again.items.tolist() and all(5 <= i < 9 for i in term.items.tolist())
    assert torch.equal(term.users, term.users.sort().values)
    for bad in (0, -1, 2.5, True):  # 0 contrasted nobody (a NaN term), -1 every node but one
        with pytest.raises(ValueError, match="max_nodes must be an integer >= 1"):
            ContrastiveTerm(model, objective, graph, max_nodes=bad)
    # Its views are drawn after the sample: the same draw as fixed_views from the generator past the sample.
    gen = torch.Generator().manual_seed(3)
    for side in (5, 4):  # the users' and then the items' sample
        torch.randperm(side, generator=gen)
    first, second = (v.detach() for v in model.fixed_views(graph, gen)(graph))
    users, items = term.users, term.items
    expected = 11 * 0.5 * (naive_info_nce(first[users], second[users], 0.5)
                           + naive_info_nce(first[items], second[items], 0.5))
    assert float(term.function(rows, graph)(phi)) == pytest.approx(expected, rel=1e-5)
    # Its curvature products over the sample: those of double backward through the flattened logits.
    sides = term.contrasted(graph)
    autograd = GaussNewtonOperator(lambda x: term._logits(rows, graph, x, sides), term._loss(graph, sides), phi)
    v = torch.randn(phi.numel(), generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(term.gauss_newton(rows, graph, phi)(v), autograd(v), rtol=1e-4, atol=1e-6)

    plain = LightGCN(5, 4, embedding_dim=3)  # a model that cannot draw fixed views
    with pytest.warns(RuntimeWarning, match="no fixed_views"):
        IFRU(plain, graph, objective)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        val = make_interactions(torch.tensor([[0, 1], [2, 3]]), torch.tensor([1.0, 0.0]), 5, 4)  # held out
        IFRU(plain, graph, objective, IFRUConfig(contrastive=False), val=val)  # given val: no warning of one draw


def test_newton_steps_hold_a_forgotten_user_s_zeroed_rows_under_the_contrastive_term():
    """The first step zeroes the rows of a user the request leaves with no edge, but the contrastive term still scores
    them, and its gradient at a zero row is ~1/eps (F.normalize): every later Newton step solved against a right-hand
    side of 5e10, ran 0 CG iterations, and reported a full step (the result bit-identical to one step)."""
    planted = planted_communities(60, 40, 4, 6, seed=0)
    edges, labels = planted[EDGE].edge_index, planted[EDGE].edge_label
    keep = edges[0] != 0
    keep[((edges[0] == 0) & (labels > 0)).nonzero()[0]] = True  # user 0 keeps one edge
    graph = make_interactions(edges[:, keep], labels[keep], 60, 40)
    model = SGL(60, 40, 8, 2, drop_ratio=0.2)
    model.reset_parameters(0)
    objective = ContrastiveBPRObjective(l2=1e-3, ssl_weight=0.1, tau=0.2, seed=0)
    train(model, graph, objective, TrainConfig(epochs=4, lr=0.05, batch_size=64, patience=0))
    request = graph[EDGE].edge_index[:, graph[EDGE].edge_index[0] == 0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the steps raise T on this barely trained model: discarded, and said so
        result = IFRU(model, graph, objective, IFRUConfig(newton={"steps": 3, "line_search": True})).unlearn(request)
    assert result.info["zeroed_entries"] == 8 and not result.model.user_emb.weight[0].any()
    later = result.info["solver"][1:]
    assert len(later) == 2 and all(step["iterations"] > 0 and step["rhs_norm"] < 100 for step in later), later


def test_a_step_that_fits_its_draw_of_the_views_is_retried_with_more_damping():
    """IFRU's objective holds one draw of SGL's views, as it holds one of BPR's negatives, and a step can fit it:
    at tau 0.01 the contrastive term's curvature vanishes where its softmax saturates, and the first step (the removal's
    gradient over the implicit ridge) moved the parameters by 42, against their norm of 9.4, trusted (training AUC
    0.926 to 0.859; Retrain 0.916). Scored on another draw of the views, its loss rises, so it is retried."""
    graph = planted_communities(60, 40, 4, 6, seed=0)
    model = SGL(60, 40, 8, 2, drop_ratio=0.2)
    model.reset_parameters(0)
    objective = ContrastiveBPRObjective(l2=1e-3, ssl_weight=0.1, tau=0.01, seed=0)
    train(model, graph, objective, TrainConfig(epochs=2, lr=0.05, batch_size=64, patience=0))
    request = graph[EDGE].edge_index[:, (graph[EDGE].edge_label > 0).nonzero().flatten()[:3]]
    result = IFRU(model, graph, objective).unlearn(request)
    first = result.info["attempts"][0]
    assert first["ratio"] > 0.5 and first["fresh_loss_rise"] > 0.5  # passes the test on its own draw, not another's
    assert "raised the contrastive term's loss on a fresh draw of views" in first["reason"] and result.info["trusted"]
    flat = [torch.cat([p.detach().flatten() for p in m.parameters()]) for m in (model, result.model)]
    assert float((flat[1] - flat[0]).norm()) < 0.5 * float(flat[0].norm())
    fixed_negatives = ContrastiveBPRObjective(l2=1e-3, ssl_weight=0.1, tau=0.01, seed=0, resample=False)
    with pytest.warns(RuntimeWarning, match="draws new negatives or views every epoch"):  # the views still are
        IFRU(model, graph, fixed_negatives, IFRUConfig(trust={"max_fresh_loss_rise": None}))
    # the fresh draw is another draw of the views, the same each time (qa95: draw 0's views had passed these checks)
    rows = NodeRows.from_node_mask(model, torch.ones(100, dtype=torch.bool), 60)
    with torch.no_grad():
        fit, fresh, again = (float(ContrastiveTerm(model, objective, graph, draw=d).function(rows, graph)(
            rows.gather(model))) for d in (0, 1, 1))
    assert fresh == again != fit


@pytest.mark.parametrize("cls, field, bad, message", [
    (SGL, "drop_ratio", float("nan"), "drop_ratio must be a number in [0, 1), got nan"),
    (SGL, "drop_ratio", 1.0, "drop_ratio must be a number in [0, 1), got 1.0"),
    (SimGCL, "eps", -5.0, "eps must be a finite number >= 0, got -5.0"),
])
def test_a_views_option_edited_after_construction_is_refused_where_the_views_are_drawn(cls, field, bad, message):
    """The constructors refuse these values; set afterwards, IFRU drew its views with them and called its step
    trusted (found by a probe), and training drew its views so too."""
    graph = planted_communities(20, 16, 2, 4, seed=0)
    model = cls(20, 16, 8, 2)
    model.reset_parameters(0)
    setattr(model, field, bad)
    objective = ContrastiveBPRObjective(ssl_weight=0.1, seed=0)
    request = graph[EDGE].edge_index[:, (graph[EDGE].edge_label > 0).nonzero().flatten()[:2]]
    with pytest.raises(ValueError, match=re.escape(message)):
        IFRU(model, graph, objective).unlearn(request)
    with pytest.raises(ValueError, match=re.escape(message)):
        train(model, graph, objective, TrainConfig(epochs=1, batch_size=0, patience=0))


def test_the_mf_surrogate_curvature_says_it_leaves_the_contrastive_term_out(graph):
    """The authors' MF-style curvature differentiates the BPR risk alone: info said contrastive=False, nothing else."""
    model = SGL(graph["user"].num_nodes, graph["item"].num_nodes, 8, 2)
    model.reset_parameters(0)
    objective = ContrastiveBPRObjective(ssl_weight=0.1, seed=0)
    with pytest.warns(RuntimeWarning, match="curvature='mf_surrogate' has no term for it: IFRU differentiates the BPR"):
        IFRU(model, graph, objective, IFRUConfig(curvature="mf_surrogate"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        IFRU(model, graph, objective, IFRUConfig(curvature="mf_surrogate", contrastive=False))


def test_a_side_of_the_sample_with_no_node_left_to_contrast_adds_nothing(graph):
    """max_nodes=2 samples users 0 and 1; a request of all their edges leaves the remaining graph's user side with
    no node to contrast. The term is then the items' InfoNCE alone, |D'| ssl_weight = 6 * 0.5 times it (not NaN, the
    mean cross-entropy of no row), and its curvature products are those of double backward (zero, not NaN, on the
    rows of users 0 and 1)."""
    model, objective, _, _ = _term_setup(graph)
    rows = NodeRows.from_node_mask(model, torch.ones(9, dtype=torch.bool), 5)
    phi = rows.gather(model)
    term = ContrastiveTerm(model, objective, graph, max_nodes=2)
    assert term.users.tolist() == [0, 1] and term.items.tolist() == [5, 6]
    edges = graph[EDGE].edge_index
    remaining, _ = without_edges(graph, edges[:, edges[0] <= 1])
    sides = term.contrasted(remaining)
    assert [ids.tolist() for ids in sides] == [[], [5, 6]]
    gen = torch.Generator().manual_seed(3)  # the views are drawn after the sample (test above)
    for side in (5, 4):
        torch.randperm(side, generator=gen)
    first, second = (v.detach() for v in model.fixed_views(graph, gen)(remaining))
    expected = 6 * 0.5 * naive_info_nce(first[[5, 6]], second[[5, 6]], 0.5)
    assert float(term.function(rows, remaining)(phi)) == pytest.approx(expected, rel=1e-5)
    v = torch.randn(phi.numel(), generator=torch.Generator().manual_seed(0))
    product = term.gauss_newton(rows, remaining, phi)(v)
    autograd = GaussNewtonOperator(lambda x: term._logits(rows, remaining, x, sides), term._loss(remaining, sides), phi)
    torch.testing.assert_close(product, autograd(v), rtol=1e-4, atol=1e-6)
    assert bool(product.isfinite().all()) and float(product[:6].abs().max()) == 0  # users 0 and 1


def test_a_sample_with_no_node_left_to_contrast_is_a_term_of_zero_and_ifru_runs_on_it(graph, monkeypatch):
    """max_nodes=2 samples users 0 and 1 and items 0 and 1; on a graph where none of them has an edge the term is a 0
    still tied to phi (it was the float 0, and IFRU's gradient failed on it: every model with over 8,192 users and
    items whose sample of each had no edge), its gradient and curvature products are zero, and IFRU unlearns."""
    model, objective, _, _ = _term_setup(graph)
    rows = NodeRows.from_node_mask(model, torch.ones(9, dtype=torch.bool), 5)
    phi = rows.gather(model).requires_grad_(True)
    edges = graph[EDGE].edge_index
    sparse, _ = without_edges(graph, edges[:, (edges[0] <= 1) | (edges[1] <= 1)])
    assert sparse[EDGE].edge_index.tolist() == [[2, 3, 4], [2, 2, 3]]
    term = ContrastiveTerm(model, objective, sparse, max_nodes=2)
    assert [ids.tolist() for ids in term.contrasted(sparse)] == [[], []]
    value = term.function(rows, sparse)(phi)
    assert torch.is_tensor(value) and float(value.detach()) == 0
    assert float(torch.autograd.grad(value, phi)[0].abs().max()) == 0
    assert float(term.gauss_newton(rows, sparse, phi.detach())(torch.ones_like(phi)).abs().max()) == 0
    monkeypatch.setattr(ifru_method, "ContrastiveTerm", functools.partial(ContrastiveTerm, max_nodes=2))
    result = IFRU(model, sparse, objective).unlearn(torch.tensor([[2], [2]]))
    assert result.info["contrastive"] and result.info["trusted"], result.info["reason"]


def test_a_contrastive_objective_without_resampled_negatives_is_scored_on_fresh_views():
    """The views are drawn anew every step even where BPR's negatives are not (resample=False): the step that fits its
    draw of them (the tau=0.01 case above, trained so) is rejected on another draw, and retried."""
    graph = planted_communities(60, 40, 4, 6, seed=0)
    model = SGL(60, 40, 8, 2, drop_ratio=0.2)
    model.reset_parameters(0)
    objective = ContrastiveBPRObjective(l2=1e-3, ssl_weight=0.1, tau=0.01, seed=0, resample=False)
    train(model, graph, objective, TrainConfig(epochs=2, lr=0.05, batch_size=64, patience=0))
    request = graph[EDGE].edge_index[:, (graph[EDGE].edge_label > 0).nonzero().flatten()[:3]]
    result = IFRU(model, graph, objective).unlearn(request)
    first = result.info["attempts"][0]
    assert first["ratio"] > 0.5 and first["fresh_loss_rise"] > 0.01  # measured: +1.7% over the bound of 1%
    assert "raised the contrastive term's loss on a fresh draw of views" in first["reason"]
    assert len(result.info["attempts"]) > 1 and result.info["trusted"]


def test_newton_steps_that_fit_their_draw_of_the_views_are_said_to(graph, monkeypatch):
    """When the Newton steps fail trust.max_fresh_loss_rise, their warning names the part drawn anew that rose (the
    views' here), as the first step's reason does, and they are dropped. Their rise is set to 50% by hand: on the
    small cases tried, Newton steps lowered it (from a mutation run)."""
    from graphforget.unlearn.ifru.tilted import TiltedObjective
    model, objective, _, _ = _term_setup(graph)
    model = model.double()
    newton_done = []
    steps, rise = IFRU._newton_steps, TiltedObjective.fresh_rise

    def fresh_rise(self, phi):
        if not newton_done:
            return rise(self, phi)
        self.fresh_drawn = "views"
        return 0.5
    monkeypatch.setattr(IFRU, "_newton_steps", lambda self, *args: newton_done.append(1) or steps(self, *args))
    monkeypatch.setattr(TiltedObjective, "fresh_rise", fresh_rise)
    config = IFRUConfig(hops=10, newton={"steps": 2}, trust={"max_fresh_loss_rise": 0.1, "on_failure": "apply"})
    with pytest.warns(RuntimeWarning, match=re.escape("IFRU: the Newton steps raised the contrastive term's loss on a "
                                                      "fresh draw of views by 50% (> trust.max_fresh_loss_rise 10%): "
                                                      "it fits the draw it was solved on: only the first step is "
                                                      "kept")):
        result = IFRU(model, graph, objective, config).unlearn(torch.tensor([[1], [2]]))
    assert newton_done and result.info["newton_discarded"]


@pytest.mark.parametrize("name", ["sgl", "simgcl"])
def test_a_seed_draws_the_same_views_under_a_float64_default_dtype(name):
    """SGL's edge dropout and SimGCL's noise drew torch.rand in torch's default dtype: under
    ``torch.set_default_dtype(torch.float64)`` a seed gave other views (SimGCL's up to 0.15 apart on rows of norm
    1.35, a QA probe)."""
    graph = planted_communities(num_users=12, num_items=16, interactions_per_user=3, seed=0)
    model = build_model(name, num_users=12, num_items=16, embedding_dim=4, num_layers=2)
    model.reset_parameters(0)
    views = model.views(graph, torch.Generator().manual_seed(5))
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        again = model.views(graph, torch.Generator().manual_seed(5))
    finally:
        torch.set_default_dtype(default)
    assert all(torch.equal(a, b) for a, b in zip(views, again))


@pytest.mark.parametrize("shape", [(4,), (2, 3, 4)])
def test_info_nce_names_views_that_are_not_matrices(shape):
    """Views of one dimension would fail inside F.normalize with an IndexError."""
    a = torch.ones(shape)
    with pytest.raises(ValueError, match=re.escape(f"views must both be [n, d], got {list(shape)} and {list(shape)}")):
        info_nce(a, a, 0.2)


def test_info_nce_of_no_row_is_zero_and_a_side_without_nodes_adds_nothing(graph):
    """The mean cross-entropy of no row would be NaN; with no users the loss is the items' InfoNCE, by hand on dense
    edge-dropout views."""
    empty = torch.zeros(0, 3, requires_grad=True)
    loss = info_nce(empty, empty, 0.5)
    assert float(loss) == 0.0
    model = SGL(5, 4, embedding_dim=3, num_layers=2, drop_ratio=0.3)
    model.reset_parameters(1)
    views = dense_sgl_views(model, graph, 7)
    items = torch.tensor([1, 3])
    no_users = torch.tensor([], dtype=torch.long)
    loss = model.contrastive_loss(graph, no_users, items, torch.Generator().manual_seed(7), 0.5)
    expected = naive_info_nce(views[0][5 + items], views[1][5 + items], 0.5)
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("cls, field, value", [(SGL, "drop_ratio", 0.25), (SimGCL, "eps", 0.05)])
def test_a_checkpoint_keeps_the_views_option(tmp_path, cls, field, value):
    """A checkpoint reloaded without its drop_ratio or eps would silently take the default."""
    model = cls(3, 2, embedding_dim=4, num_layers=1, **{field: value})
    save_model(model, tmp_path / "m.pt")
    loaded, _ = load_model(tmp_path / "m.pt")
    assert getattr(loaded, field) == value
    assert loaded.config()[field] == value


@pytest.mark.parametrize("kwargs, message", [
    ({"ssl_weight": math.inf}, "ssl_weight must be a finite number >= 0, got inf"),
    ({"ssl_weight": math.nan}, "ssl_weight must be a finite number >= 0, got nan"),
    ({"tau": 0.0}, "tau must be a finite number > 0, got 0.0"),
    ({"tau": math.inf}, "tau must be a finite number > 0, got inf"),
])
def test_the_contrastive_objective_refuses_a_weight_or_temperature_out_of_range(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        ContrastiveBPRObjective(**kwargs)


def test_a_contrastive_objective_of_weight_zero_is_bpr_on_any_model(graph):
    """A weight of 0 asks no model for a contrastive_loss (LightGCN has none)."""
    model = LightGCN(5, 4, embedding_dim=4, num_layers=2)
    model.reset_parameters(0)
    positions = torch.tensor([0, 3, 4, 7, 10])
    got = ContrastiveBPRObjective(l2=1e-3, ssl_weight=0, seed=5).batch_loss(model, graph, positions, epoch=1)
    assert torch.equal(got, BPRObjective(l2=1e-3, seed=5).batch_loss(model, graph, positions, epoch=1))


@pytest.mark.parametrize("cls", [SGL, SimGCL])
@pytest.mark.parametrize("size", [2, 3])
@torch.no_grad()
def test_the_ranks_shares_of_the_contrastive_objective_sum_to_the_whole(graph, cls, size):
    """Each rank adds its share of the InfoNCE term, not the whole term."""
    model = cls(5, 4, embedding_dim=4, num_layers=2)
    model.reset_parameters(0)
    objective = ContrastiveBPRObjective(l2=1e-3, ssl_weight=0.3, tau=0.4, seed=5)
    positions = torch.tensor([0, 3, 4, 7, 10])
    bpr = BPRObjective(l2=1e-3, seed=5).batch_loss(model, graph, positions, epoch=2)
    pairs = graph[EDGE].edge_index[:, positions]
    ssl = model.contrastive_loss(graph, pairs[0].unique(), pairs[1].unique(), objective.generator(positions, 2), 0.4)
    whole = float(bpr + 0.3 * ssl)
    parts = [float(objective.batch_loss(model, graph, positions, epoch=2, share=(r, size))) for r in range(size)]
    assert sum(parts) == pytest.approx(whole, rel=1e-6)


def test_simgcl_of_zero_noise_views_the_dense_layer_mean(graph):
    """eps = 0 is allowed (eps >= 0): the views are then the noiseless propagation, layer 0 left out."""
    model = SimGCL(5, 4, embedding_dim=3, num_layers=2, eps=0)
    model.reset_parameters(2)
    x0 = torch.cat([model.user_emb.weight, model.item_emb.weight]).detach().double()
    adj = dense_adjacency(graph[EDGE].edge_index, 5, 4)
    plain = (adj @ x0 + adj @ adj @ x0) / 2
    for view in model.views(graph, torch.Generator().manual_seed(0)):
        torch.testing.assert_close(view.detach().double(), plain, rtol=1e-5, atol=1e-6)
    model.eps = 0.0  # set after construction too: checked where the noise is drawn
    model.views(graph, torch.Generator().manual_seed(0))


@pytest.mark.parametrize("tau", [True, "0.2", math.nan, 0.0])
def test_info_nce_refuses_a_temperature_that_is_not_a_positive_number(tau):
    """True had been read as 1 and "0.2" failed with a bare TypeError, where the objective refuses both."""
    a = torch.ones(2, 3)
    with pytest.raises(ValueError, match=re.escape(f"tau must be a finite number > 0, got {tau!r}")):
        info_nce(a, a, tau)


def test_info_nce_takes_a_learnt_temperature_and_any_real_number():
    """A 0-dim floating tensor (a learnt temperature) and a Fraction are temperatures as their float is."""
    from fractions import Fraction
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(4, 3, generator=gen), torch.randn(4, 3, generator=gen)
    expected = naive_info_nce(a.double(), b.double(), 0.2)
    for tau in (0.2, torch.tensor(0.2), Fraction(1, 5)):
        assert float(info_nce(a, b, tau)) == pytest.approx(expected, rel=1e-5), tau
