"""graphforget.models: LightGCN against the dense formula of the paper, MF, score_all, checkpoints."""
from __future__ import annotations

import copy
import json
import math
import re
from collections import deque

import numpy as np
import pytest
import torch

from graphforget.data import EDGE, edge_subgraph, make_interactions, symmetric_edge_weight
from graphforget.models import (MF, MODELS, SGL, EmbeddingRecommender, LightGCN, Recommender, SimGCL, build_model,
                                load_model, save_model, table_mask)
from helpers import fake_install


# --------------------------------------------------------------------------------------------- references

def dense_lightgcn(x0: torch.Tensor, edge_index: torch.Tensor, num_users: int, num_layers: int,
                   weight: torch.Tensor | None = None) -> torch.Tensor:
    r"""LightGCN by the paper's matrix form, densely, in float64.

    :math:`\tilde A = D^{-1/2} A D^{-1/2}` over the given (user, item) edges (or the given per-edge
    weights in place of :math:`\tilde A`'s entries), :math:`E = \frac{1}{K+1}\sum_k \tilde A^k E^{(0)}`.
    """
    n = x0.size(0)
    adj = torch.zeros(n, n, dtype=torch.float64)
    rows, cols = edge_index[0], edge_index[1] + num_users
    if weight is None:
        adj[rows, cols] = 1.0
        adj[cols, rows] = 1.0
        deg = adj.sum(1)
        d_inv_sqrt = torch.where(deg > 0, deg.pow(-0.5), torch.zeros_like(deg))
        adj = d_inv_sqrt[:, None] * adj * d_inv_sqrt[None, :]
    else:
        adj[rows, cols] = weight.double()
        adj[cols, rows] = weight.double()
    out, x = x0.clone(), x0.clone()
    for _ in range(num_layers):
        x = adj @ x
        out = out + x
    return out / (num_layers + 1)


def hop_distances(edge_index: torch.Tensor, num_users: int, source: int) -> dict[int, int]:
    """Plain BFS over the homogeneous user-item graph (items offset by ``num_users``)."""
    neighbours: dict[int, set[int]] = {}
    for u, i in edge_index.t().tolist():
        neighbours.setdefault(u, set()).add(i + num_users)
        neighbours.setdefault(i + num_users, set()).add(u)
    dist, queue = {source: 0}, deque([source])
    while queue:
        v = queue.popleft()
        for w in neighbours.get(v, ()):
            if w not in dist:
                dist[w] = dist[v] + 1
                queue.append(w)
    return dist


def x0_of(model: Recommender) -> torch.Tensor:
    return torch.cat([model.user_emb.weight, model.item_emb.weight]).detach()


@pytest.fixture
def graph():
    """9 users x 8 items, 26 random edges; user 8 and item 7 are isolated."""
    gen = torch.Generator().manual_seed(11)
    keys = torch.randperm(8 * 7, generator=gen)[:26]
    edge_index = torch.stack([keys // 7, keys % 7])
    return make_interactions(edge_index, torch.randint(2, (26,), generator=gen).float(), num_users=9, num_items=8)


def all_pairs(num_users: int, num_items: int) -> torch.Tensor:
    users, items = torch.meshgrid(torch.arange(num_users), torch.arange(num_items), indexing="ij")
    return torch.stack([users.flatten(), items.flatten()])


def lightgcn(num_layers: int, seed: int = 0) -> LightGCN:
    model = LightGCN(9, 8, embedding_dim=5, num_layers=num_layers).double()
    model.reset_parameters(seed)
    return model


# --------------------------------------------------------------------------------------------- LightGCN

@pytest.mark.parametrize("num_layers", [0, 1, 3])
def test_lightgcn_matches_dense_formula(graph, num_layers):
    model = lightgcn(num_layers)
    expected = dense_lightgcn(x0_of(model), graph[EDGE].edge_index, 9, num_layers)
    with torch.no_grad():
        user, item = model.embed(graph)
        assert torch.allclose(torch.cat([user, item]), expected, atol=1e-12)
        pairs = all_pairs(9, 8)
        expected_scores = (expected[pairs[0]] * expected[9 + pairs[1]]).sum(-1)
        assert torch.allclose(model(graph, pairs), expected_scores, atol=1e-12)
    if num_layers:
        # Propagation really happened (else the comparison above would be trivial).
        assert not torch.allclose(expected, x0_of(model))
    # Isolated nodes keep E^(0) / (K + 1) (no messages reach them).
    assert torch.allclose(expected[8], x0_of(model)[8] / (num_layers + 1))


def test_lightgcn_propagates_observed_edges_only(graph):
    observed = torch.arange(26) % 3 != 0
    graph[EDGE].observed = observed
    model = lightgcn(2)
    expected = dense_lightgcn(x0_of(model), graph[EDGE].edge_index[:, observed], 9, 2)
    with_all = dense_lightgcn(x0_of(model), graph[EDGE].edge_index, 9, 2)
    with torch.no_grad():
        got = torch.cat(model.embed(graph))
    assert torch.allclose(got, expected, atol=1e-12)
    assert not torch.allclose(got, with_all, atol=1e-6)


def test_lightgcn_uses_edge_weight(graph):
    model = lightgcn(2)
    weight = torch.rand(26, generator=torch.Generator().manual_seed(0))
    graph[EDGE].edge_weight = weight
    expected = dense_lightgcn(x0_of(model), graph[EDGE].edge_index, 9, 2, weight=weight)
    with torch.no_grad():
        assert torch.allclose(torch.cat(model.embed(graph)), expected, atol=1e-12)


def test_a_mask_or_weights_the_propagation_cannot_read_as_such_are_refused(graph):
    """An integer 0/1 observed mask indexed columns (a LightGCN propagated over the first pair seven times, and its
    AUC was 0.25 for 0.5), and NaN weights scored the pairs NaN: scoring runs no other check of the graph."""
    model = lightgcn(2)
    for observed in (torch.arange(26) % 3 != 0).long(), torch.ones(25, dtype=torch.bool):
        graph[EDGE].observed = observed
        message = (f"the graph's observed must be an [E] bool mask (E = 26 edges), got a {observed.dtype} tensor of "
                   f"shape {tuple(observed.shape)}")
        with pytest.raises(ValueError, match=re.escape(message)):
            model.score_all(graph)
    del graph[EDGE].observed
    for weight in (torch.full((26,), math.nan), torch.ones(25, dtype=torch.float64)):
        graph[EDGE].edge_weight = weight
        with pytest.raises(ValueError, match=re.escape("the graph's edge_weight must be [E] finite weights (E = 26 "
                                                       "edges), one per edge")):
            model(graph, graph[EDGE].edge_index)

@pytest.mark.parametrize("num_layers", [1, 2])
def test_lightgcn_on_a_subgraph_with_full_graph_weights(num_layers):
    """Rows of nodes whose whole K-hop computation lies in the subgraph are exact when the subgraph
    carries the full graph's normalisation weights (the influence code's k-hop locality)."""
    gen = torch.Generator().manual_seed(5)
    keys = torch.randperm(30 * 25, generator=gen)[:90]
    full = make_interactions(torch.stack([keys // 25, keys % 25]), num_users=30, num_items=25)
    ei = full[EDGE].edge_index
    model = LightGCN(30, 25, embedding_dim=4, num_layers=num_layers).double()
    model.reset_parameters(1)
    # Keep every edge touching a node within K - 1 hops of user 0 ... plus nothing else.
    near = {v for v, d in hop_distances(ei, 30, 0).items() if d <= num_layers - 1}
    keep = torch.tensor([u in near or i + 30 in near for u, i in ei.t().tolist()])
    sub = edge_subgraph(full, keep)
    sub[EDGE].edge_weight = symmetric_edge_weight(ei, 30, 25)[keep]
    # A node is "inside" when every edge within K - 1 hops of it is kept.
    kept_edges = set(map(tuple, sub[EDGE].edge_index.t().tolist()))
    inside = []
    for v in range(30 + 25):
        ball = {w for w, d in hop_distances(ei, 30, v).items() if d <= num_layers - 1}
        needed = {(u, i) for u, i in ei.t().tolist() if u in ball or i + 30 in ball}
        if needed and needed <= kept_edges:
            inside.append(v)
    assert 0 in inside and len(inside) < 55 and keep.sum() < 90
    with torch.no_grad():
        on_full = torch.cat(model.embed(full))
        on_sub = torch.cat(model.embed(sub))
        del sub[EDGE].edge_weight
        recomputed = torch.cat(model.embed(sub))
    assert torch.allclose(on_sub[inside], on_full[inside], atol=1e-12)
    # Without the full graph's weights, the subgraph's own degrees give different rows.
    assert not torch.allclose(recomputed[0], on_full[0], atol=1e-6)
    outside = [v for v in range(55) if v not in inside]
    assert not torch.allclose(on_sub[outside], on_full[outside], atol=1e-6)


def test_lightgcn_adjacency_cache_follows_the_graph(graph):
    model = lightgcn(2)
    like = torch.zeros(1, dtype=torch.float64)
    assert model.adjacency(graph, like) is model.adjacency(graph, like)  # built once per graph
    changed = graph.clone()
    adjacency = model.adjacency(changed, like)
    changed[EDGE].edge_index[1, 0] = 7  # in place: the version changes, the cache must not answer
    assert model.adjacency(changed, like) is not adjacency
    with torch.no_grad():
        user, item = model.embed(changed)
    expected = dense_lightgcn(x0_of(model), changed[EDGE].edge_index, 9, 2)
    assert torch.allclose(torch.cat([user, item]), expected, atol=1e-12)
    other = edge_subgraph(graph, torch.arange(26) < 13)
    with torch.no_grad():
        first = model(graph, all_pairs(9, 8))
        on_other = model(other, all_pairs(9, 8))
        again = model(graph, all_pairs(9, 8))
        model.user_emb.weight.mul_(2)
        doubled = model(graph, all_pairs(9, 8))
    assert torch.equal(first, again) and not torch.allclose(first, on_other)
    expected = dense_lightgcn(x0_of(model), graph[EDGE].edge_index, 9, 2)
    assert torch.allclose(doubled, (expected[all_pairs(9, 8)[0]] * expected[9 + all_pairs(9, 8)[1]]).sum(-1))


@pytest.mark.parametrize("num_layers", [1, 2, 3])
def test_receptive_field_is_the_hop_count(graph, num_layers):
    model = lightgcn(num_layers)
    assert model.receptive_field == num_layers
    dist = hop_distances(graph[EDGE].edge_index, 9, 0)
    at_k = next(v for v, d in dist.items() if d == num_layers)
    beyond = next(v for v, d in dist.items() if d == num_layers + 1)
    with torch.no_grad():
        base = model.embed(graph)[0][0].clone()
        for node, changes in ((beyond, False), (at_k, True)):
            table, row = (model.user_emb, node) if node < 9 else (model.item_emb, node - 9)
            table.weight[row] += 1.0
            moved = not torch.allclose(model.embed(graph)[0][0], base, atol=1e-12)
            table.weight[row] -= 1.0
            assert moved == changes, (node, dist[node])


def test_receptive_field_of_mf():
    assert MF(3, 4).receptive_field == 0
    assert LightGCN(3, 4, num_layers=0).receptive_field == 0


# --------------------------------------------------------------------------------------------- MF, scoring

def test_mf_scores_are_dot_products(graph):
    model = MF(9, 8, embedding_dim=3).double()
    model.reset_parameters(2)
    pairs = all_pairs(9, 8)
    p, q = model.user_emb.weight.tolist(), model.item_emb.weight.tolist()
    expected = torch.tensor([sum(a * b for a, b in zip(p[u], q[i])) for u, i in pairs.t().tolist()],
                            dtype=torch.float64)
    empty = make_interactions(torch.zeros(2, 0, dtype=torch.long), num_users=9, num_items=8)
    with torch.no_grad():
        assert torch.allclose(model(graph, pairs), expected, atol=1e-12)
        assert torch.allclose(model(empty, pairs), expected, atol=1e-12)  # MF ignores the graph


@pytest.mark.parametrize("make", [lambda: MF(9, 8, 5), lambda: LightGCN(9, 8, 5, num_layers=2)])
def test_score_all_equals_forward(graph, make):
    model = make()
    with torch.no_grad():
        forward = model(graph, all_pairs(9, 8)).view(9, 8)
        assert torch.allclose(model.score_all(graph), forward, atol=1e-6)
        users = torch.tensor([7, 2, 2])
        assert torch.allclose(model.score_all(graph, users), forward[users], atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name", ["lightgcn", "sgl", "simgcl"])
def test_a_half_precision_model_scores_as_its_float32_model(graph, name, dtype):
    """A float16 or bfloat16 LightGCN failed to score on the CPU inside torch's sparse kernel ("not implemented for
    'Half'"); it propagates in float32 there and scores in its own dtype, to that dtype's precision, with a
    gradient (the dense formula of the paper checks the float32 model above)."""
    torch.manual_seed(0)
    half = build_model(name, num_users=9, num_items=8, embedding_dim=4).to(dtype)
    with torch.no_grad():
        half.user_emb.weight.mul_(40)  # scores up to about 10
        expected = copy.deepcopy(half).float().score_all(graph)  # the same rounded values, in float32
    scores = half.score_all(graph)
    assert scores.dtype == dtype
    # each layer's rows rounded to the dtype, and the dot products' sums: under 2 units in the last place of the
    # largest score (measured: 0.5 to 0.8 of one)
    torch.testing.assert_close(scores.float(), expected, rtol=0, atol=2 * torch.finfo(dtype).eps * expected.abs().max())
    half(graph, all_pairs(9, 8)).sum().backward()
    assert half.user_emb.weight.grad.dtype == dtype and bool(half.user_emb.weight.grad.abs().sum() > 0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_symmetric_spmm_of_learnt_edge_weights_in_half_precision_on_the_cpu(dtype):
    """An adjacency that requires a gradient (edge weights being learnt) takes torch's product: in half precision on
    the CPU it runs in float32 there too, with gradients in both (from a mutation run)."""
    from graphforget.models.propagation import symmetric_spmm
    gen = torch.Generator().manual_seed(0)
    dense = torch.rand(5, 5, generator=gen) * (torch.rand(5, 5, generator=gen) < 0.5)
    dense = (dense + dense.t()).to(dtype)
    adjacency = dense.to_sparse_csr().requires_grad_()
    x = (4 * torch.randn(5, 3, generator=gen)).to(dtype).requires_grad_()
    out = symmetric_spmm(adjacency, x)
    assert out.dtype == dtype
    expected = dense.float() @ x.detach().float()  # the same rounded values, in float32
    torch.testing.assert_close(out.detach().float(), expected, rtol=0,
                               atol=2 * torch.finfo(dtype).eps * expected.abs().max())
    out.sum().backward()
    assert x.grad.dtype == dtype and adjacency.grad is not None


@pytest.mark.parametrize("make", [lambda: MF(9, 8, 4), lambda: LightGCN(9, 8, 4, num_layers=2)])
def test_score_all_refuses_a_user_id_out_of_range(graph, make):
    """User -1 was scored silently as the last user (Python's negative indexing)."""
    for users in (torch.tensor([0, -1]), torch.tensor([9])):
        with pytest.raises(ValueError, match=re.escape(f"users holds user id {int(users[-1])} at position "
                                                       f"{users.numel() - 1}, outside [0, 9)")):
            make().score_all(graph, users)


class DistanceMF(MF):
    """Scores a pair by minus the squared distance of its rows: ``forward`` overridden, ``score_all`` not."""

    def forward(self, graph, edge_label_index):
        user, item = self.user_emb.weight[edge_label_index[0]], self.item_emb.weight[edge_label_index[1]]
        return -(user - item).pow(2).sum(-1)


def test_score_all_follows_an_overridden_forward(graph):
    """A model that overrides forward only is ranked by its own scores (all-item metrics call score_all), not by
    the dot products of embed's rows."""
    model = DistanceMF(9, 8, 5).double()
    model.reset_parameters(1)
    with torch.no_grad():
        forward = model(graph, all_pairs(9, 8)).view(9, 8)
        torch.testing.assert_close(model.score_all(graph), forward, rtol=0, atol=1e-12)
        users = torch.tensor([7, 2, 2])
        torch.testing.assert_close(model.score_all(graph, users), forward[users], rtol=0, atol=1e-12)


@pytest.mark.parametrize("make", [lambda: MF(9, 8, 4), lambda: LightGCN(9, 8, 4, num_layers=2),
                                  lambda: DistanceMF(9, 8, 4)])
def test_score_all_refuses_users_that_are_no_list_of_ids_and_a_graph_of_other_counts(graph, make):
    """A bool mask was read as a mask by the dot products and as ids 0 and 1 by an overridden forward; a 2-D tensor
    gave [1, 2, I]; MF, whose embed ignores the graph, scored its own 9 users for a graph of 12."""
    mask = torch.zeros(9, dtype=torch.bool)
    mask[[2, 5]] = True
    for users in (mask, torch.tensor([[1, 2]]), torch.tensor(1), torch.tensor([1.0]), [1, 2]):
        with pytest.raises(ValueError, match="users must be a 1-D tensor of integer user ids"):
            make().score_all(graph, users)
    model = make()  # narrow ids are ids: a uint8 tensor was read as a mask by the dot products
    with torch.no_grad():
        expected = model.score_all(graph, torch.tensor([2, 5]))
        for dtype in (torch.uint8, torch.int8, torch.int16, torch.int32):
            assert torch.equal(model.score_all(graph, torch.tensor([2, 5], dtype=dtype)), expected), dtype
    larger = make_interactions(graph[EDGE].edge_index, graph[EDGE].edge_label, 12, 8)
    with pytest.raises(ValueError, match="the model has num_users=9 but the graph has 12 users"):
        make().score_all(larger)


def test_lightgcn_propagates_the_gradient_of_learnt_edge_weights(graph):
    """The propagation's own backward returned no gradient for the adjacency: edge weights being learnt got None."""
    model = LightGCN(9, 8, 4, num_layers=2).double()
    weighted = graph.clone()
    weights = torch.rand(weighted[EDGE].edge_index.size(1), dtype=torch.float64, requires_grad=True)
    weighted[EDGE].edge_weight = weights
    user, item = model.embed(weighted)
    (user.sum() + item.pow(2).sum()).backward()
    assert weights.grad is not None and weights.grad.abs().sum() > 0


# --------------------------------------------------------------------------------------------- parameters

def test_reset_parameters_seeded_without_touching_global_rng():
    model, other = LightGCN(9, 8, 5), LightGCN(9, 8, 5)
    state = torch.random.get_rng_state()
    model.reset_parameters(3)
    other.reset_parameters(3)
    assert torch.equal(torch.random.get_rng_state(), state)
    for a, b in zip(model.parameters(), other.parameters()):
        assert torch.equal(a, b)
    other.reset_parameters(4)
    assert not torch.equal(model.user_emb.weight, other.user_emb.weight)
    # N(0, 0.1^2) initialisation.
    big = MF(2000, 2000, 50)
    big.reset_parameters(0)
    for table in (big.user_emb.weight, big.item_emb.weight):  # the items' spread was not checked (a QA probe)
        assert abs(float(table.detach().std()) - 0.1) < 0.003 and abs(float(table.detach().mean())) < 0.003


def test_the_contract_is_an_interface_and_tables_exist_from_construction():
    with pytest.raises(TypeError):
        Recommender(3, 4)  # abstract: embed, node_parameters and reset_parameters are the model's

    class Scaled(EmbeddingRecommender):  # a subclass creates its parameters after the base __init__
        def __init__(self, num_users, num_items):
            super().__init__(num_users, num_items, 4)
            self.scale = torch.nn.Parameter(torch.full((1,), 2.0))

        def reset_parameters(self, seed=None):
            super().reset_parameters(seed)
            torch.nn.init.ones_(self.scale)

    model = Scaled(3, 4)
    assert float(model.user_emb.weight.detach().std()) > 0 and model.scale.item() == 2.0
    model.reset_parameters(1)
    assert model.scale.item() == 1.0
    assert model.node_parameters() == {"user_emb.weight": "user", "item_emb.weight": "item"}
    mask = torch.tensor([True, False, False, True, False, False, True])
    assert table_mask(mask, "user", 3).tolist() == [True, False, False]
    assert table_mask(mask, "item", 3).tolist() == [True, False, False, True]
    assert table_mask(mask, "node", 3).tolist() == mask.tolist()
    with pytest.raises(ValueError, match="unknown node type"):
        table_mask(mask, "edge", 3)


def test_node_parameters_name_embedding_tables():
    model = LightGCN(9, 8, 5)
    params = dict(model.named_parameters())
    sizes = {"user": 9, "item": 8}
    assert model.node_parameters()
    for name, node_type in model.node_parameters().items():
        assert params[name].size(0) == sizes[node_type]


@pytest.mark.parametrize("make", [lambda: MF(9, 8, 5), lambda: LightGCN(9, 8, 5, num_layers=3)])
def test_save_load_round_trip(graph, tmp_path, make):
    model = make()
    model.reset_parameters(7)
    path = tmp_path / "model.pt"
    save_model(model, path, epoch=12, note="best")
    torch.load(path, weights_only=True)  # plain tensors and values only: safe to load
    loaded, checkpoint = load_model(path)
    assert type(loaded) is type(model) and loaded.config() == model.config()
    assert checkpoint["epoch"] == 12 and checkpoint["note"] == "best"
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name
    with torch.no_grad():
        assert torch.equal(loaded(graph, all_pairs(9, 8)), model(graph, all_pairs(9, 8)))


def test_checkpoint_errors(tmp_path):
    class Unregistered(MF):
        pass
    with pytest.raises(ValueError, match="not registered"):
        save_model(Unregistered(3, 3, 2), tmp_path / "m.pt")
    with pytest.raises(ValueError, match="unknown model"):
        build_model("no-such-model", num_users=3, num_items=3)
    assert isinstance(build_model("lightgcn", num_users=3, num_items=4, num_layers=1), LightGCN)
    assert set(MODELS) >= {"mf", "lightgcn"}


def _pyg_lightgcn(num_users, num_items, embedding_dim=8, num_layers=2):
    """A factory (not a class) building PyG's LightGCN behind the adapter."""
    from torch_geometric.nn.models import LightGCN as PyGLightGCN

    from graphforget.models import PyGRecommender
    return PyGRecommender(PyGLightGCN(num_users + num_items, embedding_dim, num_layers), num_users, num_items,
                          receptive_field=num_layers, sparse=True)


def test_a_registered_factory_saves_loads_and_is_checked_when_saved(graph, tmp_path, monkeypatch):
    monkeypatch.setitem(MODELS, "pyg_lightgcn", _pyg_lightgcn)
    config = {"num_users": 9, "num_items": 8, "embedding_dim": 6, "num_layers": 1}
    model = build_model("pyg_lightgcn", **config)
    model.reset_parameters(3)
    with pytest.raises(ValueError, match="PyGRecommender is not registered .* pass the name and config of a "
                                         "registered factory that builds it \\(a PyGRecommender: docs/custom_model"):
        save_model(model, tmp_path / "m.pt")  # the adapter's class cannot rebuild the module
    from graphforget.models import PyGRecommender
    # The class itself registered, as that error asked, saved a file whose load failed ("missing 'module'": QA)
    monkeypatch.setitem(MODELS, "pyg", PyGRecommender)
    with pytest.raises(ValueError, match=r"save_model: the model registered as 'pyg' cannot be built from its "
                                         r"config\(\) .*missing a required argument: 'module'"):
        save_model(model, tmp_path / "m.pt")
    monkeypatch.delitem(MODELS, "pyg")
    with pytest.raises(ValueError, match=r"built from config .* entries \['module.embedding.weight'\] differ"):
        save_model(model, tmp_path / "m.pt", name="pyg_lightgcn", config={**config, "embedding_dim": 5})
    assert not (tmp_path / "m.pt").exists()  # refused before writing
    state = torch.random.get_rng_state()
    save_model(model, tmp_path / "m.pt", name="pyg_lightgcn", config=config)
    assert torch.equal(torch.random.get_rng_state(), state)  # the check's rebuild draws from a fork
    loaded, checkpoint = load_model(tmp_path / "m.pt")
    assert checkpoint["model"] == "pyg_lightgcn" and checkpoint["config"] == config
    with torch.no_grad():
        assert torch.equal(loaded(graph, all_pairs(9, 8)), model(graph, all_pairs(9, 8)))
    monkeypatch.setitem(MODELS, "no_layers", lambda num_users, num_items, embedding_dim: MF(num_users, num_items))
    with pytest.raises(ValueError, match=r"'no_layers' cannot be built from the arguments \[.*'num_layers'.*unexpected"):
        build_model("no_layers", **config)
    monkeypatch.setitem(MODELS, "not_a_model", lambda **kwargs: torch.nn.Linear(2, 2))
    for kind in (TypeError, ValueError):  # a ValueError too: the command line's one line, not a traceback
        with pytest.raises(kind, match="built a Linear, not a graphforget Recommender"):
            build_model("not_a_model")
    with pytest.raises(ValueError, match="entry-point group 'graphforget.models'"):
        build_model("no-such-model")



def test_installed_packages_that_register_a_model_badly_are_named(tmp_path, monkeypatch):
    site = tmp_path / "site"
    fake_install(site, "gf_broken", "raise ImportError('needs torch_sparse')\n", {"broken": "gf_broken:make"})
    # any error of the plugin's import (a traceback out of the CLI before, where only ImportError was caught)
    fake_install(site, "gf_no_gpu", "raise RuntimeError('no CUDA device')\n", {"no_gpu": "gf_no_gpu:make"})
    fake_install(site, "gf_first", "make = None\n", {"twice": "gf_first:make"})
    fake_install(site, "gf_second", "make = None\n", {"twice": "gf_second:make"})
    monkeypatch.syspath_prepend(str(site))
    with pytest.raises(ValueError, match="entry point 'gf_broken:make' does not load: needs torch_sparse"):
        build_model("broken")
    with pytest.raises(ValueError, match=r"'gf_no_gpu:make' does not load: no CUDA device \(RuntimeError\)"):
        build_model("no_gpu")
    with pytest.raises(ValueError, match=r"register model 'twice' as \['gf_first:make', 'gf_second:make'\]"):
        build_model("twice")
    assert "broken" not in MODELS and "no_gpu" not in MODELS and "twice" not in MODELS

def test_constructor_errors_and_repr():
    with pytest.raises(ValueError):
        LightGCN(3, 4, num_layers=-1)
    with pytest.raises(ValueError):
        MF(0, 4)
    with pytest.raises(ValueError):
        MF(3, 4, embedding_dim=0)
    assert "num_layers=2" in repr(LightGCN(3, 4, 8, num_layers=2))
    assert "embedding_dim=8" in repr(MF(3, 4, 8))


@pytest.mark.parametrize("make", [lambda: MF(9, 8, 4), lambda: LightGCN(9, 8, 4, num_layers=2)])
def test_a_malformed_edge_label_index_is_refused_by_name(graph, make):
    """A transposed ``[B, 2]``, a 1-D or a ``[3, B]`` index was scored silently (its first rows read as the pairs),
    a float one failed in index_select and an out-of-range id as torch's 'index out of range in self'."""
    model, pairs = make(), all_pairs(9, 8)
    for bad in (pairs.t(), pairs[0], torch.cat([pairs, pairs[:1]])):
        expected = f"edge_label_index must have shape [2, B], got {list(bad.shape)}"
        with pytest.raises(ValueError, match=re.escape(expected)):
            model(graph, bad)
    with pytest.raises(ValueError, match="edge_label_index holds integer"):
        model(graph, pairs.float())
    for bad, side, value, count in (([[9], [0]], "user", 9, 9), ([[0, 0], [0, -1]], "item", -1, 8)):
        with pytest.raises(ValueError, match=re.escape(f"edge_label_index holds {side} id {value} at position "
                                                       f"{len(bad[0]) - 1}, outside [0, {count})")):
            model(graph, torch.tensor(bad))
    assert model(graph, pairs[:, :0]).shape == (0,)


@pytest.mark.parametrize("cls", [LightGCN, SGL, SimGCL])
def test_a_graph_of_other_node_counts_is_refused_by_name(graph, cls):
    """A 9 x 8 model on a 10 x 7 graph (the same 17 nodes) propagated silently, the graph's user 9 taking item 0's
    row; on a 10 x 8 graph it failed inside torch's sparse product."""
    model = cls(9, 8, 4, num_layers=2)
    edge_index = graph[EDGE].edge_index
    for users, items in ((10, 7), (10, 8), (9, 9)):
        other = make_interactions(edge_index[:, edge_index[1] < items], num_users=users, num_items=items)
        with pytest.raises(ValueError, match=re.escape(f"tables of 9 users and 8 items, but the graph has {users} "
                                                       f"users and {items} items")):
            model(other, torch.tensor([[0], [0]]))


def test_a_foreign_checkpoint_and_a_fractional_layer_count_are_named(tmp_path):
    torch.save({"a": 1}, tmp_path / "junk.pt")
    with pytest.raises(ValueError, match=r"junk.pt is not a graphforget checkpoint .* lacks \['model', 'config', "
                                         r"'state_dict'\]"):
        load_model(tmp_path / "junk.pt")
    with pytest.raises(ValueError, match="num_layers must be an integer >= 0, got 1.5"):
        LightGCN(6, 4, 8, num_layers=1.5)
    with pytest.raises(ValueError, match="embedding_dim must be a positive integer, got 2.5"):
        MF(6, 4, embedding_dim=2.5)
    with pytest.raises(ValueError, match="num_users and num_items must be positive integers, got 6.0 and 4"):
        MF(6.0, 4)
    with pytest.raises(ValueError, match=re.escape("seed must be an integer in [0, 2**32), got 0.5")):
        MF(6, 4).reset_parameters(seed=0.5)


def test_what_save_model_writes_load_model_reads_back(graph, tmp_path):
    """Sizes counted by NumPy (``df.user.nunique()``) were saved as NumPy scalars, which ``weights_only`` loading
    refuses: the file was written and never loadable ("truncated, corrupt ..."). A ``Path`` among the extras did
    the same; a text file raised ``KeyError: 101``."""
    model = MF(np.int64(9), np.int64(8), 4)
    save_model(model, tmp_path / "m.pt", run={"users": np.int64(9), "ratio": np.float32(0.5)})
    loaded, checkpoint = load_model(tmp_path / "m.pt")
    assert loaded.config() == {"num_users": 9, "num_items": 8, "embedding_dim": 4}
    assert checkpoint["run"] == {"users": 9, "ratio": 0.5} and type(checkpoint["run"]["users"]) is int
    assert all(value.device.type == "cpu" for value in checkpoint["state_dict"].values())
    with pytest.raises(ValueError, match=re.escape("save_model: the checkpoint['run']['data'] is a PosixPath, which "
                                                   "a checkpoint loaded with weights_only=True cannot hold")):
        save_model(model, tmp_path / "p.pt", run={"data": tmp_path})
    assert not (tmp_path / "p.pt").exists()
    (tmp_path / "t.txt").write_text("hello\n")
    with pytest.raises(ValueError, match=r"t.txt cannot be read as a checkpoint \(truncated, corrupt"):
        load_model(tmp_path / "t.txt")
    # a NumPy width and depth: config() was no JSON, and not the reloaded copy's (UnlearnRec names the backbone by it)
    counted = LightGCN(5, 4, embedding_dim=np.int64(3), num_layers=np.int64(2))
    save_model(counted, tmp_path / "l.pt")
    assert json.dumps(counted.config()) == json.dumps(load_model(tmp_path / "l.pt")[0].config())
    assert repr(counted.config()) == "{'num_users': 5, 'num_items': 4, 'embedding_dim': 3, 'num_layers': 2}"


def test_save_model_refuses_extras_under_its_own_names_or_of_a_kind_it_cannot_load(tmp_path):
    """An extra ``state_dict`` replaced the weights (the file then failed its own sha256 as "damaged"); a namedtuple
    raised a TypeError from rebuilding it; a ``torch.device``, which weights_only loads, was refused."""
    from collections import namedtuple
    model = MF(3, 2, 2)
    for name in ("state_dict", "state_sha256", "layout_sha256"):
        with pytest.raises(ValueError, match=f"save_model: an extra value named {name} would replace the checkpoint's own field"):
            save_model(model, tmp_path / "m.pt", **{name: {}})
    with pytest.raises(ValueError, match=r"the checkpoint\['point'\] is a Point, which a checkpoint loaded"):
        save_model(model, tmp_path / "m.pt", point=namedtuple("Point", "x y")(1, 2))
    assert not (tmp_path / "m.pt").exists()
    save_model(model, tmp_path / "m.pt", device=torch.device("cpu"), pair=(1, [2.0]))
    checkpoint = load_model(tmp_path / "m.pt")[1]
    assert checkpoint["device"] == torch.device("cpu") and checkpoint["pair"] == (1, [2.0])


def test_a_checkpoint_whose_tensors_changed_after_saving_is_refused(graph, tmp_path):
    """A train run's model.pt has no sha256 beside it (a fit run's run.json holds one): a changed tensor loaded
    without a word. The checkpoint now carries its tensors' sha256."""
    path = tmp_path / "m.pt"
    save_model(LightGCN(9, 8, 5, num_layers=1), path)
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["state_dict"]["user_emb.weight"][2, 3] += 1.0
    torch.save(checkpoint, path)
    with pytest.raises(ValueError, match="m.pt: its tensors do not match the sha256 saved with them"):
        load_model(path)
    save_model(LightGCN(9, 8, 5, num_layers=1), tmp_path / "int32.pt")  # its entries' bytes read as int32: 1e9s loaded
    saved = torch.load(tmp_path / "int32.pt", weights_only=True)
    saved["state_dict"] = {key: value.view(torch.int32) for key, value in saved["state_dict"].items()}
    torch.save(saved, tmp_path / "int32.pt")
    with pytest.raises(ValueError, match="int32.pt: its tensors do not match the sha256 saved with them"):
        load_model(tmp_path / "int32.pt")
    for change in ("shape", "key"):  # refused by the digest, not later by load_state_dict
        path = tmp_path / f"{change}.pt"
        save_model(LightGCN(9, 8, 5, num_layers=1), path)
        changed = torch.load(path, weights_only=True)
        state, key = changed["state_dict"], sorted(changed["state_dict"])[0]
        if change == "shape":
            state[key] = state[key].reshape(tuple(reversed(state[key].shape))).contiguous()
        else:
            state[key + "_"] = state.pop(key)
        torch.save(changed, path)
        with pytest.raises(ValueError, match=f"{change}.pt: its tensors do not match the sha256 saved with them"):
            load_model(path)
    # save_model writes every digest: one deleted with an edit had let the changed tensor load
    path = tmp_path / "m.pt"
    for key in ("state_sha256", "layout_sha256"):
        save_model(LightGCN(9, 8, 5, num_layers=1), path)
        torch.save({name: value for name, value in torch.load(path, weights_only=True).items() if name != key}, path)
        with pytest.raises(ValueError, match=re.escape(f"m.pt: its tensors lack their sha256 ({key}): the file was "
                                                       "changed")):
            load_model(path)


def test_symmetric_spmm_differentiates_as_the_dense_product():
    """symmetric_spmm's own backward (no transpose: A is symmetric) gives the dense product's gradient A w, and
    second derivatives that pass gradgradcheck at tight tolerances, in float64."""
    from graphforget.models.propagation import symmetric_spmm
    gen = torch.Generator().manual_seed(0)
    dense = torch.rand(5, 5, generator=gen, dtype=torch.float64) * (torch.rand(5, 5, generator=gen) < 0.5)
    adjacency = (dense + dense.t()).to_sparse_csr()
    x = torch.randn(5, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(5, 3, generator=gen, dtype=torch.float64)
    (grad,) = torch.autograd.grad((symmetric_spmm(adjacency, x) * weight).sum(), x, create_graph=True)
    torch.testing.assert_close(grad, (dense + dense.t()) @ weight, rtol=1e-12, atol=1e-12)
    # the backward runs through the function again: second derivatives (Hessian-vector products)
    assert torch.autograd.gradgradcheck(lambda v: symmetric_spmm(adjacency, v).pow(2), (x,), atol=1e-8, rtol=1e-7)


@pytest.mark.parametrize("name", ["mf", "lightgcn", "sgl", "simgcl"])
def test_a_seed_draws_the_same_values_in_float32_and_float64(name):
    """A float64 copy of a model is the float32 one at a seed: the tables were another draw (up to 0.49 apart, std
    0.1), and so was SimGCL's noise: Retrain's scores differed by 0.90 of a largest score of 1.6."""
    models = [build_model(name, num_users=9, num_items=8, embedding_dim=6).to(dtype) for dtype in (torch.float32,
                                                                                                  torch.float64)]
    for model in models:
        model.reset_parameters(4)
    for single, double in zip(*(model.parameters() for model in models)):
        assert double.dtype == torch.float64 and torch.equal(single.double(), double)
    if name == "simgcl":
        x = models[0].user_emb.weight.detach()
        noise = [model._noise(x.to(model.user_emb.weight.dtype), torch.Generator().manual_seed(3)) for model in models]
        torch.testing.assert_close(noise[1], noise[0].double(), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name, extra", [("mf", {}), ("lightgcn", {"num_layers": 2}), ("sgl", {"drop_ratio": 0.2}),
                                         ("simgcl", {"eps": 0.1}), ("pyg_lightgcn", {"num_layers": 1})])
def test_a_float64_model_loads_as_saved_bit_for_bit(graph, tmp_path, monkeypatch, name, extra):
    """A float64 model (values float32 cannot hold) comes back float64 with the same bits, whether its class is
    registered or a user's factory is, and loading leaves the global random state alone."""
    monkeypatch.setitem(MODELS, "pyg_lightgcn", _pyg_lightgcn)
    config = {"num_users": 9, "num_items": 8, "embedding_dim": 6, **extra}
    model = build_model(name, **config).double()
    model.reset_parameters(4)  # drawn in float32, as in every dtype: moved off float32's grid
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.rand(p.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 1e-9)
    assert any(not torch.equal(p, p.float().double()) for p in model.parameters())
    save_model(model, tmp_path / "m.pt", **({"name": name, "config": config} if name == "pyg_lightgcn" else {}))
    state = torch.random.get_rng_state()
    loaded, _ = load_model(tmp_path / "m.pt")
    assert torch.equal(torch.random.get_rng_state(), state)  # rebuilding drew from a fork, as saving does
    assert loaded.state_dict().keys() == model.state_dict().keys()
    for key, value in model.state_dict().items():
        assert loaded.state_dict()[key].dtype == value.dtype and torch.equal(loaded.state_dict()[key], value), key
    with torch.no_grad():
        assert torch.equal(loaded(graph, all_pairs(9, 8)), model(graph, all_pairs(9, 8)))


def test_save_model_refuses_a_name_or_config_that_builds_another_model(tmp_path):
    """Their state-dict entries matched: a LightGCN saved with num_layers=0 loaded as a 0-layer model (scores 0.041
    apart), an MF saved under the name lightgcn loaded as a LightGCN."""
    lightgcn, mf = LightGCN(9, 8, 5, num_layers=2), MF(9, 8, 5)
    with pytest.raises(ValueError, match=r"does not match the model to save: its config\(\) is .*'num_layers': 0"):
        save_model(lightgcn, tmp_path / "m.pt", name="lightgcn", config={**lightgcn.config(), "num_layers": 0})
    with pytest.raises(ValueError, match="does not match the model to save: its class is 'LightGCN', the model's 'MF'"):
        save_model(mf, tmp_path / "m.pt", name="lightgcn", config={**mf.config(), "num_layers": 2})
    assert not (tmp_path / "m.pt").exists()
    save_model(lightgcn, tmp_path / "m.pt", name="lightgcn", config=lightgcn.config())
    assert load_model(tmp_path / "m.pt")[0].num_layers == 2


def test_mf_refuses_a_graph_of_other_node_counts_and_pairs_that_are_not_a_tensor(graph):
    """MF reads no edge: it scored a graph of other node counts with its own rows (score_all and LightGCN refused it),
    and a list of pairs failed with "'list' object has no attribute 'dim'"."""
    model = MF(9, 8, 4)
    bigger = make_interactions(graph[EDGE].edge_index, num_users=10, num_items=8)
    for call in (lambda: model(bigger, all_pairs(9, 8)), lambda: model.embed(bigger)):
        with pytest.raises(ValueError, match="MF has tables of 9 users and 8 items, but the graph has 10 users"):
            call()
    for pairs in ([[0, 1], [2, 3]], np.array([[0, 1], [2, 3]])):
        with pytest.raises(ValueError, match=f"edge_label_index must be a \\[2, B\\] integer tensor, got a "
                                             f"{type(pairs).__name__}"):
            model(graph, pairs)


def test_an_extra_tensor_is_sealed_by_its_bytes_not_its_printed_form(tmp_path):
    """Extra tensors were hashed by their repr: under torch.set_printoptions(precision=8) the untouched file was
    refused, and an edit in the middle of a long one (elided by its repr) loaded (a QA probe)."""
    path = tmp_path / "m.pt"
    save_model(MF(5, 4, 2), path, weights=torch.tensor([0.123456789, 2.0]), mask=torch.arange(5000))
    try:
        torch.set_printoptions(precision=8)
        assert torch.equal(load_model(path)[1]["weights"], torch.tensor([0.123456789, 2.0]))
    finally:
        torch.set_printoptions(profile="default")
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["mask"][2500] = -7
    torch.save(checkpoint, path)
    with pytest.raises(ValueError, match="m.pt: its model name, config or extra values do not match the sha256"):
        load_model(path)


def test_a_map_location_this_machine_lacks_is_refused_by_name_not_blamed_on_the_file(tmp_path):
    """'mps' and a GPU's index were 'truncated, corrupt or not written by save_model' (a QA probe)."""
    save_model(MF(5, 4, 2), tmp_path / "m.pt")
    for location, why in (("mps", "MPS is not available"), ("meta", "unsupported device 'meta'")):
        if location == "mps" and torch.backends.mps.is_available():
            continue
        with pytest.raises(ValueError, match=f"load_model: map_location={location!r}, but {why}"):
            load_model(tmp_path / "m.pt", map_location=location)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="load_model: map_location=0, but"):
            load_model(tmp_path / "m.pt", map_location=0)


def test_a_truncated_or_tampered_checkpoint_is_refused_by_name(tmp_path, monkeypatch):
    from graphforget.models.base import _meta_sha256
    path = tmp_path / "m.pt"
    save_model(LightGCN(9, 8, 5, num_layers=1), path)
    whole = path.read_bytes()
    path.write_bytes(whole[:len(whole) // 2])
    with pytest.raises(ValueError, match=r"m.pt cannot be read as a checkpoint .*truncated"):
        load_model(path)
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match=r"m.pt cannot be read as a checkpoint"):
        load_model(path)
    path.write_bytes(whole)
    checkpoint = torch.load(path, weights_only=True)
    # A changed config: its sha256 names it (a flipped bit in num_layers loaded another model, with the same tensors)
    for config in ({**checkpoint["config"], "embedding_dim": 4}, {**checkpoint["config"], "num_layers": 3}):
        torch.save({**checkpoint, "config": config}, path)
        with pytest.raises(ValueError, match="m.pt: its model name, config or extra values do not match the sha256"):
            load_model(path)
    old = {key: value for key, value in checkpoint.items() if key != "meta_sha256"}  # deleted with the edit
    torch.save({**old, "config": {**checkpoint["config"], "embedding_dim": 4}}, path)
    with pytest.raises(ValueError, match=re.escape("m.pt: its model name, config or extra values lack their sha256 "
                                                   "(meta_sha256)")):
        load_model(path)
    resealed = {**old, "config": {**checkpoint["config"], "embedding_dim": 4}}  # an edit sealed again: refused by torch
    torch.save({**resealed, "meta_sha256": _meta_sha256(resealed)}, path)
    with pytest.raises(ValueError, match=r"(?s)m.pt: its state dict does not fit model 'lightgcn' built from its config"
                                         r".*size mismatch for user_emb.weight"):
        load_model(path)
    # A flipped bit that torch reads as an IndexError ("pop from empty list") was let through as one
    with monkeypatch.context() as patched:
        patched.setattr(torch, "load", lambda *args, **kwargs: [].pop())
        with pytest.raises(ValueError, match=r"m.pt cannot be read as a checkpoint .*pop from empty list"):
            load_model(path)
    torch.save({**checkpoint, "config": [9, 8]}, path)
    with pytest.raises(ValueError, match=r"m.pt is not a graphforget checkpoint .*config must be a dict, got list"):
        load_model(path)


@pytest.mark.parametrize("make", [lambda: MF(9, 8, 4), lambda: LightGCN(9, 8, 4, num_layers=2)])
def test_narrow_integer_ids_score_as_int64_ones(graph, make):
    """uint8 and int16 ids are ids: index_select refused them ('Expected dtype int32 or int64 for index')."""
    model, pairs = make(), all_pairs(9, 8)
    with torch.no_grad():
        expected = model(graph, pairs)
        for dtype in (torch.uint8, torch.int16):
            assert torch.equal(model(graph, pairs.to(dtype)), expected)


def test_simgcl_noise_of_a_float64_model_is_normalised_in_float64():
    """The float32 draw is cast to the model's dtype before it is normalised: a float64 model's noise is the
    float64 formula of that draw, bit for bit (not a float32 normalisation promoted afterwards)."""
    import torch.nn.functional as F
    model = build_model("simgcl", num_users=9, num_items=8, embedding_dim=6).double()
    model.reset_parameters(4)
    x = model.user_emb.weight.detach()
    noise = model._noise(x, torch.Generator().manual_seed(3))
    drawn = torch.rand(x.shape, generator=torch.Generator().manual_seed(3)).double()
    assert noise.dtype == torch.float64
    assert torch.equal(noise, model.eps * torch.sign(x) * F.normalize(drawn, dim=-1))


def test_row_products_of_mixed_dtypes_are_in_the_promoted_dtype():
    """row_products documents ``user @ item.t()`` in the dtype the two promote to (as forward's elementwise
    products do): a float32 user table and a float64 item table give float64 products, every digit kept (a mutation
    computed in the user table's, qa115)."""
    from graphforget.models.base import row_products
    user = torch.tensor([[1.0, 2.0]], dtype=torch.float32)
    item = torch.tensor([[1 + 1e-12, 0.0], [0.0, 1.0]], dtype=torch.float64)
    out = row_products(user, item)
    assert out.dtype == torch.float64
    assert out.tolist() == [[1 + 1e-12, 2.0]]  # 1 * (1 + 1e-12) + 2 * 0; 2 * 1
    out = row_products(item, user)
    assert out.dtype == torch.float64 and out.tolist() == [[1 + 1e-12], [2.0]]
