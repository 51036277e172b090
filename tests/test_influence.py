"""Influence layer against references: dense Hessians, direct solves, networkx BFS, plain-loop pruning."""
import math
import re
from fractions import Fraction

import networkx as nx
import pytest
import torch

from graphforget import BCEObjective, BPRObjective
from graphforget.data import EDGE, make_interactions, planted_communities, random_edges, remove_edges
from graphforget.influence import (AndersonMixing, DotProductOperator, GaussNewtonOperator, HessianOperator, NodeRows,
                                   ShiftedConjugateGradient, Terms, adam_quadratic, computation_subgraph,
                                   conjugate_gradient, direct_solve, dot_product_gradient, dot_product_objective,
                                   has_contrastive_term, has_linear_dot_product, homogeneous_graph, importance_scores,
                                   k_hop_mask, lissa, local_problem, local_terms, message_passing_degrees, node_ids,
                                   objective_function, rows_function, scoring_graph, select_nodes, training_terms)
from graphforget.influence.hvp import _second_derivatives, call_with_parameters
from graphforget.influence.solvers import power_iteration
from graphforget.models import MF, SGL, ContrastiveBPRObjective, LightGCN, PyGRecommender
from torch_geometric.nn.models import LightGCN as PyGLightGCN

U, I, D = 12, 10, 3


@pytest.fixture
def graph():
    return planted_communities(U, I, 2, 4, seed=2)


def _model(kind, seed=0):
    model = (MF(U, I, D) if kind == "mf" else LightGCN(U, I, D, num_layers=2)).double()
    model.reset_parameters(seed)
    return model


def _rows(model, nodes: list[int], users: int = U, items: int = I) -> NodeRows:
    """The rows of the given homogeneous node ids (users 0..users-1, then items)."""
    mask = torch.zeros(users + items, dtype=torch.bool)
    mask[nodes] = True
    return NodeRows.from_node_mask(model, mask, users)


def _sparse_region(kind, objective, users: int, items: int, communities: int, nodes: list[int]):
    """A sparse planted graph (3 interactions a user, so k-hop regions are strict parts of it), a float64
    model, the rows of ``nodes``, and the objective's terms: all of them and those that reach the rows."""
    graph = planted_communities(users, items, communities, 3, seed=4)
    model = (MF(users, items, D) if kind == "mf" else LightGCN(users, items, D, num_layers=2)).double()
    model.reset_parameters(1)
    rows = _rows(model, nodes, users, items)
    reach = k_hop_mask(graph, torch.tensor(nodes), model.receptive_field)
    terms = training_terms(objective, graph)
    return graph, model, rows, terms, terms.touching(reach, users)


def _full_loss(model, objective, graph):
    """The summed objective as a function of the concatenated [user; item] tables (the reference)."""
    def fn(x):
        tables = {"user_emb.weight": x[:U * D].view(U, D), "item_emb.weight": x[U * D:].view(I, D)}
        eli, target = objective.pairs(graph)
        logits = torch.func.functional_call(model, tables, (graph, eli))
        return objective.losses(logits, target).sum() + 0.5 * objective.l2 * x.pow(2).sum()
    return fn


@pytest.mark.parametrize("kind", ["mf", "lightgcn"])
@pytest.mark.parametrize("objective", [BCEObjective(l2=0.3), BPRObjective(l2=0.3, seed=1)])
def test_hvp_matches_dense_hessian(graph, kind, objective):
    model = _model(kind)
    everything = NodeRows.from_node_mask(model, torch.ones(U + I, dtype=torch.bool), U)
    x = everything.gather(model)
    hessian = torch.autograd.functional.hessian(_full_loss(model, objective, graph), x)
    fn = objective_function(model, objective, training_terms(objective, graph), graph, everything)
    operator = HessianOperator(fn, x, damping=0.5)
    v = torch.randn(x.numel(), generator=torch.Generator().manual_seed(0), dtype=x.dtype)
    torch.testing.assert_close(operator(v), hessian @ v + 0.5 * v)


@pytest.mark.parametrize("kind", ["mf", "lightgcn"])
def test_restricted_hvp_is_the_sub_block_with_locality(kind):
    objective = BCEObjective(l2=0.2)
    graph, model, rows, terms, local = _sparse_region(kind, objective, 40, 30, 3, [0, 3, 40 + 2])
    assert len(local) < len(terms)
    fn = objective_function(model, objective, local, graph, rows, locality=True)
    x = rows.gather(model)
    # Reference: the full objective on the whole graph, differentiated in the same rows.
    full = objective_function(model, objective, terms, graph, rows, locality=False)
    hessian = torch.autograd.functional.hessian(full, x)
    v = torch.randn(x.numel(), generator=torch.Generator().manual_seed(1), dtype=x.dtype)
    torch.testing.assert_close(HessianOperator(fn, x)(v), hessian @ v)
    leaf = x.clone().requires_grad_(True)
    torch.testing.assert_close(torch.autograd.grad(fn(leaf), leaf)[0], torch.autograd.grad(full(leaf), leaf)[0])


def test_gauss_newton_matches_jacobian_product(graph):
    model = _model("lightgcn")
    objective = BCEObjective(l2=0.1)
    rows = NodeRows.from_node_mask(model, torch.ones(U + I, dtype=torch.bool), U)
    terms = training_terms(objective, graph)
    logits = rows_function(model, rows, lambda score: score(graph, terms.edge_label_index))
    x = rows.gather(model)
    jac = torch.autograd.functional.jacobian(logits, x)
    p = torch.sigmoid(logits(x))
    reference = jac.t() @ torch.diag(p * (1 - p)) @ jac + 0.1 * torch.eye(x.numel(), dtype=x.dtype)
    operator = GaussNewtonOperator(logits, lambda z: objective.losses(z, terms.target).sum(), x, l2=0.1)
    v = torch.randn(x.numel(), generator=torch.Generator().manual_seed(2), dtype=x.dtype)
    torch.testing.assert_close(operator(v), reference @ v)
    # The loss's curvature in the logits given as a product (BCE's: diag(p(1-p))) instead of by double backward.
    given = GaussNewtonOperator(logits, None, x, l2=0.1, output_curvature=lambda z: lambda w: torch.sigmoid(z) *
                                (1 - torch.sigmoid(z)) * w)
    torch.testing.assert_close(given(v), reference @ v)
    with pytest.raises(ValueError, match="loss_fn or output_curvature"):
        GaussNewtonOperator(logits, None, x)


def _spd(n, seed=0, cond=50.0):
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64))
    return q @ torch.diag(torch.linspace(1.0, cond, n, dtype=torch.float64)) @ q.t()


@pytest.mark.parametrize("solver,options", [
    (conjugate_gradient, {"tol": 1e-10, "max_iter": 500}),
    (lissa, {"tol": 1e-8, "max_iter": 20000}),
    (adam_quadratic, {"tol": 1e-6, "max_iter": 20000, "lr": 0.05}),
])
def test_solvers_agree_with_direct(solver, options):
    a = _spd(30)
    b = torch.randn(30, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    reference = torch.linalg.solve(a, b)
    torch.testing.assert_close(direct_solve(lambda v: a @ v, b).x, reference)
    # bit for bit at every call (data-parallel ranks each solve): lstsq's default driver on the CPU was not
    assert all(torch.equal(direct_solve(lambda v: a @ v, b).x, direct_solve(lambda v: a @ v, b).x) for _ in range(3))
    result = solver(lambda v: a @ v, b, **options)
    assert result.converged and result.residual <= options["tol"]
    assert float((result.x - reference).norm() / reference.norm()) < 100 * options["tol"]


def test_shifted_cg_solves_every_shift_from_one_krylov_space():
    """Each system (A + sigma I) x = b against a direct solve, at one product per iteration for all of them; the
    residual measured in a weighted norm; asking for a later system drops the earlier ones but not the later."""
    a = _spd(30, cond=1e3)
    b = torch.randn(30, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    products = []

    def matvec(v):
        products.append(1)
        return a @ v
    shifts = [0.0, 0.1, 1.0, 10.0]
    family = ShiftedConjugateGradient(matvec, b, shifts, tol=1e-9, max_iter=500)
    eye = torch.eye(30, dtype=torch.float64)
    for j, sigma in enumerate(shifts):
        result = family.solve(j)
        reference = torch.linalg.solve(a + sigma * eye, b)
        assert result.converged and result.iterations == len(products)
        assert float((result.x - reference).norm() / reference.norm()) < 1e-7
    assert torch.equal(ShiftedConjugateGradient(matvec, b, [0.0], 1e-9, 500).solve(0).x,
                       conjugate_gradient(matvec, b, tol=1e-9, max_iter=500).x)
    weight = torch.rand(30, generator=torch.Generator().manual_seed(4), dtype=torch.float64) + 0.5
    family = ShiftedConjugateGradient(lambda v: a @ v, b, shifts, tol=1e-6, max_iter=500, weight=weight)
    early = family.solve(2, max_iter=3)
    assert early.iterations == 3 and not early.converged
    result = family.solve(2)
    true = float((weight * (b - (a + eye) @ result.x)).norm() / (weight * b).norm())
    assert result.converged and result.residual == pytest.approx(true, rel=1e-3) and true <= 1e-6
    later = family.solve(3)  # still served
    assert float((later.x - torch.linalg.solve(a + 10 * eye, b)).norm()) < 1e-5 * float(later.x.norm())
    with pytest.raises(ValueError, match="system 2 was dropped"):
        family.solve(2)


def test_shifted_cg_returns_a_system_that_converged_on_the_way_without_more_products():
    """A damping ladder's later system often converges while an earlier one is being solved; asked for next (the
    earlier attempt stopped at a CG check), it is returned as it converged, with its own residual: the base
    residual, which CG does not decrease monotonically, can rise again, and must not restart the iteration."""
    gen = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(40, 40, generator=gen, dtype=torch.float64))
    a = q @ torch.diag(torch.logspace(0, 5, 40, dtype=torch.float64)) @ q.t()
    b = torch.randn(40, generator=gen, dtype=torch.float64)

    def family():
        return ShiftedConjugateGradient(lambda v: a @ v, b, [0.0, 1e3], tol=1e-6, max_iter=500)
    alone = family().solve(1)  # the iterations after which the shifted system has converged
    shifted = a + 1e3 * torch.eye(40, dtype=torch.float64)
    for limit in range(alone.iterations, 40):  # the base system stopped at each later count, as a CG check does
        ladder = family()
        before = ladder.solve(0, max_iter=limit).iterations
        result = ladder.solve(1)
        true = float((b - shifted @ result.x).norm() / b.norm())
        assert result.iterations == before and torch.equal(result.x, alone.x)
        assert result.converged and result.residual == pytest.approx(true, rel=1e-3)


def test_cg_stops_on_nan_or_negative_curvature():
    b = torch.tensor([1.0, 2.0], dtype=torch.float64)
    for operator in (lambda v: torch.full_like(v, float("nan")), lambda v: -v):
        result = conjugate_gradient(operator, b, tol=1e-8, max_iter=10)
        assert result.iterations == 0 and not result.converged and result.negative_curvature
        assert torch.equal(result.x, torch.zeros_like(b))


def test_a_direct_solve_beyond_its_size_names_what_to_use():
    a = _spd(30)
    with pytest.raises(ValueError, match=r"max_size=20, a dense 20x20 matrix\): use cg "
                                         r"\(IFRUConfig solver.name='cg'\)"):
        direct_solve(lambda v: a @ v, torch.ones(30, dtype=torch.float64), max_size=20)
    at_limit = torch.eye(20, dtype=torch.float64) * 2  # max_size itself is within it (qa95)
    result = direct_solve(lambda v: at_limit @ v, torch.ones(20, dtype=torch.float64), max_size=20)
    assert result.converged and torch.equal(result.x, torch.full((20,), 0.5, dtype=torch.float64))


def test_a_direct_solve_of_a_non_finite_system_is_not_converged():
    """torch.linalg.lstsq failed an internal assert ("please report a bug to PyTorch") on a NaN: the solve now
    reports what LiSSA and Adam do, a residual of NaN, not converged."""
    b = torch.tensor([1.0, 2.0], dtype=torch.float64)
    for operator, rhs in ((lambda v: v, torch.tensor([1.0, float("nan")], dtype=torch.float64)),
                          (lambda v: torch.full_like(v, float("nan")), b)):
        result = direct_solve(operator, rhs)
        assert not result.converged and math.isnan(result.residual) and torch.isnan(result.x).all()


@pytest.mark.parametrize("depth", [4, 2])
def test_anderson_mixing_is_walker_and_ni_formula(depth):
    """The mixed iterate is x + f - (dX + dF) gamma with gamma the least-squares fit of f by the last ``depth``
    step differences (solved here by lstsq on the tall matrices; depth 2 < the 7 differences recorded, so its
    history wraps around). On a linear iteration x <- Mx + c in R^n it is GMRES in disguise, so with
    depth >= n it lands on the fixed point in n + 1 mixed steps, where the plain iteration (spectral radius
    0.95) is still far."""
    gen = torch.Generator().manual_seed(0)
    n = 4
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64))
    m = q @ torch.diag(torch.tensor([0.95, 0.9, -0.5, 0.2], dtype=torch.float64)) @ q.t()
    c = torch.randn(n, generator=gen, dtype=torch.float64)
    fixed = torch.linalg.solve(torch.eye(n, dtype=torch.float64) - m, c)
    mixing, x, xs, fs = AndersonMixing(depth), torch.zeros(n, dtype=torch.float64), [], []
    for _ in range(n + 2 if depth >= n else n + 4):
        f = m @ x + c - x
        xs, fs = xs + [x], fs + [f]
        mixed = mixing.propose(x, f)
        if mixed is not None:
            df = torch.stack([b - a for a, b in zip(fs, fs[1:])][-depth:], 1)
            dx = torch.stack([b - a for a, b in zip(xs, xs[1:])][-depth:], 1)
            gamma = torch.linalg.lstsq(df, f.unsqueeze(1)).solution.squeeze(1)
            torch.testing.assert_close(mixed, x + f - (dx + df) @ gamma)
        x = x + f if mixed is None else mixed
    if depth >= n:
        assert float((x - fixed).norm()) < 1e-8 * float(fixed.norm())
        plain = torch.zeros(n, dtype=torch.float64)
        for _ in range(n + 2):
            plain = m @ plain + c
        assert float((plain - fixed).norm()) > 0.1 * float(fixed.norm())


def test_anderson_mixing_without_history_or_finite_steps():
    x, step = torch.zeros(3), torch.ones(3)
    assert all(AndersonMixing(0).propose(x, step) is None for _ in range(3))
    mixing = AndersonMixing(2)
    assert mixing.propose(x, step) is None and mixing.propose(x, torch.full((3,), float("nan"))) is None
    assert mixing.propose(x + step, 0.5 * step) is not None  # the NaN step was not recorded
    with pytest.raises(ValueError, match="depth"):
        AndersonMixing(-1)


def test_cg_on_hvp_operator_matches_direct(graph):
    model = _model("lightgcn")
    objective = BCEObjective(l2=1.0)
    rows = NodeRows.from_node_mask(model, torch.ones(U + I, dtype=torch.bool), U)
    operator = HessianOperator(objective_function(model, objective, training_terms(objective, graph), graph, rows),
                               rows.gather(model), damping=2.0)
    b = torch.randn(operator.size, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    torch.testing.assert_close(conjugate_gradient(operator, b, tol=1e-12, max_iter=500).x,
                               direct_solve(operator, b).x)


def _bfs_region(graph, seeds, hops):
    g = nx.Graph()
    g.add_nodes_from(range(U + I))
    ei = graph[EDGE].edge_index
    g.add_edges_from((int(u), int(i) + U) for u, i in ei.t())
    region = set()
    for s in seeds:
        region |= set(nx.single_source_shortest_path_length(g, int(s), cutoff=hops))
    return region


@pytest.mark.parametrize("hops", [0, 1, 2, 3])
def test_affected_set_matches_networkx_bfs(graph, hops):
    request = random_edges(graph, 0.1, seed=5)
    seeds = node_ids(request, U)
    region = _bfs_region(graph, seeds.tolist(), hops)
    mask = k_hop_mask(graph, seeds, hops)
    assert set(mask.nonzero().flatten().tolist()) == region
    remaining = remove_edges(graph, request)
    objective = BCEObjective()
    d_c = local_terms(objective, remaining, mask)
    ei = remaining[EDGE].edge_index
    expected = sorted((int(u), int(i)) for u, i in ei.t() if int(u) in region or int(i) + U in region)
    assert sorted(map(tuple, d_c.edge_label_index.t().tolist())) == expected


def test_hops_past_the_component_stop_at_it(graph):
    """The search stops once the region stops growing: hops=10**30 hung, one pass per hop."""
    seeds = node_ids(random_edges(graph, 0.1, seed=5), U)
    mask = k_hop_mask(graph, seeds, 10**30)
    assert set(mask.nonzero().flatten().tolist()) == _bfs_region(graph, seeds.tolist(), U + I)


def _algorithm_1(graph, request, hops, ratios):
    """Plain-loop Algorithm 1 of the IFRU paper (the reference)."""
    ei = graph[EDGE].edge_index
    neighbours = {v: set() for v in range(U + I)}
    for u, i in ei.t().tolist():
        neighbours[u].add(i + U)
        neighbours[i + U].add(u)
    score = [0.0] * (U + I)
    for u, i in request.t().tolist():
        for v in (u, i + U):
            score[v] += 1 / len(neighbours[v])
    kept, orders = set(), [score]
    for _ in range(hops):
        prev, nxt = orders[-1], [0.0] * (U + I)
        for v in range(U + I):
            if prev[v] > 0:
                for w in neighbours[v]:
                    nxt[w] += prev[v] / len(neighbours[w])
        orders.append(nxt)
    for k, s in enumerate(orders):
        candidates = sorted((v for v in range(U + I) if s[v] > 0), key=lambda v: (-s[v], v))
        kept |= set(candidates[:math.ceil(ratios[k] * len(candidates))])
    return orders, kept


@pytest.mark.parametrize("ratios", [(1.0, 1.0, 1.0), (1.0, 0.5, 0.2), (0.3, 0.3, 0.1)])
def test_pruning_matches_plain_loop(graph, ratios):
    request = random_edges(graph, 0.08, seed=6)
    orders, kept = _algorithm_1(graph, request, 2, ratios)
    scores = importance_scores(graph, request, 2)
    torch.testing.assert_close(scores, torch.tensor(orders, dtype=scores.dtype), rtol=1e-5, atol=1e-7)
    assert torch.equal(importance_scores(graph, request, 2, message_passing_degrees(graph)), scores)
    # Compare in float64 so ties resolve the same way as the reference.
    mask = select_nodes(torch.tensor(orders, dtype=torch.float64), ratios)
    assert set(mask.nonzero().flatten().tolist()) == kept
    always = node_ids(request, U)
    assert bool(select_nodes(scores, (0.0, 0.0, 0.0), always=always)[always].all())


def test_pruning_breaks_exact_ties_by_id_whatever_the_rounding():
    """Order-2 scores of users 0 and 1 are both 13/54, reached by other sums: in float32 they came out 0.24074073
    and 0.24074076, and the top half kept node 4 (item 2) where the tie-break by the smaller id keeps node 0."""
    pairs = torch.tensor([[0, 0, 0, 1, 1, 1, 2, 2], [0, 1, 3, 1, 2, 3, 0, 1]])
    graph = make_interactions(pairs, num_users=3, num_items=4)
    scores = importance_scores(graph, torch.tensor([[0, 1], [3, 1]]), 2)
    assert scores.dtype == torch.float64 and scores[2, 0] == scores[2, 4]
    assert select_nodes(scores, (0.5, 0.5, 0.5)).nonzero().flatten().tolist() == [0, 1, 5, 6]
    tied = torch.tensor([[0.3, 0.1 + 0.2, 0.25]], dtype=torch.float64)  # 0.3 two ways: unequal in float64
    assert tied[0, 0] < tied[0, 1] and select_nodes(tied, (0.3,)).nonzero().flatten().tolist() == [0]
    small = torch.tensor([[1.0, 1e-11, 3e-11, 2e-10]], dtype=torch.float64)  # far below the largest, yet not tied
    assert select_nodes(small, (0.75,)).nonzero().flatten().tolist() == [0, 2, 3]  # was [0, 1, 3]: 1e-11 ~ 3e-11


def test_pruning_ranks_scores_that_differ_only_in_their_low_bits():
    """select_nodes quantises scores to 32 leading bits to tie equal-in-exact-arithmetic sums; scores
    that genuinely differ (relative 1e-6, far above 2^-32) must keep their order, not fall back to the id order.
    Reference: a plain sort on (-score, id); a mutation run's 8-bit rounding passed."""
    gen = torch.Generator().manual_seed(0)
    base = 1.0 + 1e-6 * torch.randperm(40, generator=gen).double()  # distinct, within 4e-5 of each other
    scores = torch.stack([base, 0.37 * base])
    for ratios in ((0.25, 0.5), (0.5, 0.1), (0.1, 0.9)):
        kept = set()
        for k, row in enumerate(scores.tolist()):
            order = sorted(range(40), key=lambda v: (-row[v], v))
            kept |= set(order[:math.ceil(Fraction(repr(ratios[k])) * 40)])
        assert set(select_nodes(scores, ratios).nonzero().flatten().tolist()) == kept
    assert select_nodes(torch.tensor([[0.5, 0.501]], dtype=torch.float64), (0.5,)).tolist() == [False, True]


@pytest.mark.parametrize("ratio, candidates, kept", [(0.07, 100, 7), (0.55, 2900, 1595), (0.07, 101, 8), (0.0, 50, 0)])
def test_pruning_keeps_the_fraction_as_written(ratio, candidates, kept):
    """The top ``ratio`` of the candidates is ceil(ratio * candidates) for the ratio as written: 0.07 of 100 is 7,
    not ceil(7.000000000000001) = 8 as float arithmetic has it."""
    scores = torch.arange(candidates, 0, -1, dtype=torch.float64)[None]
    assert int(select_nodes(scores, (ratio,)).sum()) == kept


def test_regions_and_pruning_name_bad_input(graph):
    request = random_edges(graph, 0.08, seed=6)
    with pytest.raises(ValueError, match=r"request holds 1 pairs with unknown ids, the first \(0, 10\)"):
        importance_scores(graph, torch.tensor([[0], [I]]), 1)
    with pytest.raises(ValueError, match=r"request must have shape \[2, R\]"):
        importance_scores(graph, request[0], 1)
    for hops in (-1, 1.5):
        with pytest.raises(ValueError, match=rf"hops must be an integer >= 0, got {hops}"):
            importance_scores(graph, request, hops)
        with pytest.raises(ValueError, match=rf"hops must be an integer >= 0, got {hops}"):
            k_hop_mask(graph, torch.tensor([0]), hops)
    for nodes in (torch.tensor([U + I]), torch.tensor([-1])):
        with pytest.raises(ValueError, match=rf"nodes holds ids outside \[0, {U + I}\)"):
            k_hop_mask(graph, nodes, 1)
    with pytest.raises(ValueError, match="nodes holds integer node ids, got dtype torch.float32"):
        k_hop_mask(graph, torch.tensor([1.0]), 1)
    with pytest.raises(ValueError, match=r"pruning ratios must be in \[0, 1\], got \(1.0, 1.5, 1.0\)"):
        select_nodes(importance_scores(graph, request, 2), (1.0, 1.5, 1.0))
    with pytest.raises(ValueError, match=r"scores must be \[K \+ 1, U \+ I\] \(importance_scores'\), got \[10\]"):
        select_nodes(torch.rand(10), (0.5,))  # it had failed inside torch


@pytest.mark.parametrize("hops", [0, 1, 2])
def test_computation_subgraph_is_the_induced_region_with_global_weights(graph, hops):
    nodes = torch.tensor([2, U + 1])
    sub = computation_subgraph(graph, nodes, hops)
    region = _bfs_region(graph, nodes.tolist(), hops)
    ei = graph[EDGE].edge_index
    expected = sorted((int(u), int(i)) for u, i in ei.t() if int(u) in region and int(i) + U in region)
    # Outputs of a 0-layer model read no edge at all.
    assert sorted(map(tuple, sub[EDGE].edge_index.t().tolist())) == (expected if hops else [])
    assert (sub["user"].num_nodes, sub["item"].num_nodes) == (U, I)
    if hops:  # the whole graph's normalisation, so that outputs inside the region are exact
        degree = {}
        for u, i in ei.t().tolist():
            degree[u] = degree.get(u, 0) + 1
            degree[i + U] = degree.get(i + U, 0) + 1
        expected_weight = [(degree[u] * degree[i + U]) ** -0.5 for u, i in sub[EDGE].edge_index.t().tolist()]
        torch.testing.assert_close(sub[EDGE].edge_weight, torch.tensor(expected_weight))


def test_homogeneous_graph_skips_unobserved(graph):
    graph[EDGE].observed = graph[EDGE].edge_label > 0
    edge_index, n = homogeneous_graph(graph)
    assert n == U + I and edge_index.size(1) == 2 * int(graph[EDGE].observed.sum())


@pytest.mark.parametrize("kind", ["mf", "lightgcn"])
@pytest.mark.parametrize("objective", [BCEObjective(l2=0.3), BPRObjective(l2=0.3, seed=1)])
@pytest.mark.parametrize("exact", [True, False])
def test_dot_product_operator_matches_autograd(graph, kind, objective, exact):
    model = _model(kind)
    rows = _rows(model, [1, 4, U, U + 3])
    terms = training_terms(objective, graph)
    phi = rows.gather(model) + 0.1  # away from the stored values: the operator must use phi
    fast = DotProductOperator(model, rows, phi, terms, graph, objective, exact=exact, damping=0.2)
    if exact:
        reference = HessianOperator(objective_function(model, objective, terms, graph, rows), phi, damping=0.2)
    else:
        logits = rows_function(model, rows, lambda score: score(graph, terms.edge_label_index))
        reference = GaussNewtonOperator(logits, lambda z: objective.losses(z, terms.target).sum(), phi,
                                        l2=0.3, damping=0.2)
    v = torch.randn(phi.numel(), generator=torch.Generator().manual_seed(5), dtype=phi.dtype)
    expected = reference(v)
    with torch.no_grad():  # a first product under no_grad (Adam's solve) built the transpose's graph empty
        torch.testing.assert_close(fast(v), expected)
    torch.testing.assert_close(fast(v), expected)
    assert fast.size == phi.numel()


@pytest.mark.parametrize("kind", ["mf", "lightgcn"])
@pytest.mark.parametrize("order", ["item table first", "item table only"])
def test_dot_product_closed_forms_read_phi_in_the_rows_order(graph, kind, order):
    """NodeRows listing the item table first (or alone) is phi's order: the closed forms returned the entries in
    the model's table order (off by 8.9), and with the user table left out ran the model's own user table as the
    direction's (off by 0.11)."""
    model, objective = _model(kind), BCEObjective(l2=0.3)
    item_rows = {"item_emb.weight": torch.tensor([0, 3])}
    rows = NodeRows({**item_rows, "user_emb.weight": torch.tensor([1, 4])} if order == "item table first"
                    else item_rows)
    terms = training_terms(objective, graph)
    phi = rows.gather(model) + 0.1
    reference = objective_function(model, objective, terms, graph, rows)
    v = torch.randn(phi.numel(), generator=torch.Generator().manual_seed(5), dtype=phi.dtype)
    fast = DotProductOperator(model, rows, phi, terms, graph, objective, exact=True)
    torch.testing.assert_close(fast(v), HessianOperator(reference, phi)(v))
    leaf = phi.clone().requires_grad_(True)
    unregularised = objective_function(model, objective, terms, graph, rows, regularize=False)
    torch.testing.assert_close(dot_product_gradient(model, rows, phi, terms, graph, objective),
                               torch.autograd.grad(unregularised(leaf), leaf)[0])


def test_linear_dot_product_detection():
    assert has_linear_dot_product(MF(3, 3, 2)) and has_linear_dot_product(LightGCN(3, 3, 2))


@pytest.mark.parametrize("kind", ["mf", "lightgcn"])
@pytest.mark.parametrize("objective", [BCEObjective(l2=0.3), BPRObjective(l2=0.3, seed=1)])
def test_dot_product_gradient_matches_autograd(graph, kind, objective):
    model = _model(kind)
    rows = _rows(model, [0, 5, U + 1, U + 7])
    terms = training_terms(objective, graph)
    phi = rows.gather(model) - 0.05
    reference = objective_function(model, objective, terms, graph, rows, regularize=False)
    leaf = phi.clone().requires_grad_(True)
    torch.testing.assert_close(dot_product_gradient(model, rows, phi, terms, graph, objective),
                               torch.autograd.grad(reference(leaf), leaf)[0])


@pytest.mark.parametrize("kind", ["mf", "lightgcn"])
@pytest.mark.parametrize("objective", [BCEObjective(l2=0.3), BPRObjective(l2=0.3, seed=1)])
def test_the_local_problem_gives_the_whole_tables_results(kind, objective):
    """Rows, terms and scoring subgraph relabelled to the nodes they touch: the same products, gradient and
    values as on the whole tables, over fewer nodes."""
    users, items = 120, 90
    graph, model, rows, _, terms = _sparse_region(kind, objective, users, items, 6, [0, users + 2])
    sub = scoring_graph(model, graph, terms)
    local = local_problem(model, rows, terms, sub)
    assert local.tables["user_emb.weight"].size(0) + local.tables["item_emb.weight"].size(0) < users + items
    phi = rows.gather(model) + 0.1
    v = torch.randn(phi.numel(), generator=torch.Generator().manual_seed(2), dtype=phi.dtype)
    for exact in (True, False):
        whole = DotProductOperator(model, rows, phi, terms, sub, objective, exact)
        part = DotProductOperator(model, local.rows, phi, local.terms, local.graph, objective, exact,
                                  tables=local.tables)
        torch.testing.assert_close(part(v), whole(v))
    torch.testing.assert_close(dot_product_gradient(model, local.rows, phi, local.terms, local.graph, objective,
                                                    local.tables),
                               dot_product_gradient(model, rows, phi, terms, sub, objective))
    torch.testing.assert_close(dot_product_objective(model, local.rows, local.terms, local.graph, objective,
                                                     tables=local.tables)(phi),
                               dot_product_objective(model, rows, terms, sub, objective)(phi))


def test_the_local_problem_of_a_graph_without_weights_propagates_in_the_models_dtype():
    """On a graph with no ``edge_weight``, the local problem computes the propagation weights in the float64 model's
    dtype, as the model does: the same gradient to float64 rounding (float32 weights were off by 3e-9)."""
    objective = BCEObjective(l2=0.3)
    graph, model, rows, terms, _ = _sparse_region("lightgcn", objective, 120, 90, 6, [0, 122])
    local = local_problem(model, rows, terms, graph)
    assert local.graph[EDGE].edge_weight.dtype == torch.float64
    phi = rows.gather(model) + 0.1
    torch.testing.assert_close(dot_product_gradient(model, local.rows, phi, local.terms, local.graph, objective,
                                                    local.tables),
                               dot_product_gradient(model, rows, phi, terms, graph, objective), rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("kind", ["mf", "lightgcn"])
def test_a_shared_embedding_gives_each_phi_its_own_results(kind):
    """A local problem numbers its rows first (phi is written and read by slicing) and keeps one LinearEmbedding,
    whose last phi its values, gradients and curvatures share, and the scores of each set of terms at it: a new
    phi, or the same tensor changed in place, is propagated and scored again, and other terms at the same phi are
    scored for themselves. Each result equals, bit for bit, one computed without the shared embedding."""
    objective = BCEObjective(l2=0.3)
    graph, model, rows, _, terms = _sparse_region(kind, objective, 120, 90, 6, [0, 122])
    local = local_problem(model, rows, terms, scoring_graph(model, graph, terms))
    shared = local.embedding(model)
    assert shared is local.embedding(model)
    assert all(local.rows.is_prefix(name) for name in local.rows.rows) and not rows.is_prefix("item_emb.weight")
    v = torch.randn(rows.gather(model).numel(), generator=torch.Generator().manual_seed(2), dtype=torch.float64)

    def results(x, terms, **keyword):
        value = dot_product_objective(model, local.rows, terms, local.graph, objective, **keyword)(x)
        gradient = dot_product_gradient(model, local.rows, x, terms, local.graph, objective, **keyword)
        product = DotProductOperator(model, local.rows, x, terms, local.graph, objective, **keyword)(v)
        return value, gradient, product
    every_other = local.terms.select(torch.arange(len(local.terms)) % 2 == 0)
    x = rows.gather(model) + 0.1
    for change in (0.0, -0.3, 0.0):  # a first phi, the same tensor changed in place, the same again
        x.add_(change)
        for terms in (local.terms, every_other):
            with_shared = results(x, terms, embedding=shared)
            for got, expected in zip(with_shared, results(x, terms, tables=local.tables)):
                torch.testing.assert_close(got, expected, rtol=0, atol=0)


@pytest.mark.parametrize("kind", ["mf", "lightgcn"])
@pytest.mark.parametrize("objective", [BCEObjective(l2=0.3), BPRObjective(l2=0.3, seed=1)])
@pytest.mark.parametrize("regularize", [True, False])
def test_dot_product_objective_matches_the_model(graph, kind, objective, regularize):
    """The closed form's objective values (per-pair dot products) equal the model's forward, at several phi."""
    model = _model(kind)
    rows = _rows(model, [2, 3, U, U + 5])
    terms = training_terms(objective, graph)
    fast = dot_product_objective(model, rows, terms, graph, objective, regularize)
    reference = objective_function(model, objective, terms, graph, rows, regularize)
    for shift in (0.0, 0.3, -1.0):
        phi = rows.gather(model) + shift
        torch.testing.assert_close(fast(phi), reference(phi).detach())


# ------------------------------------------------------------------- gaps found by mutation testing (solvers)

def test_direct_solve_reads_the_operator_column_by_column():
    """On a non-symmetric operator (a symmetric one cannot tell a column from a row), against torch.linalg.solve."""
    gen = torch.Generator().manual_seed(7)
    a = torch.randn(6, 6, generator=gen, dtype=torch.float64) + 6 * torch.eye(6, dtype=torch.float64)
    b = torch.randn(6, generator=gen, dtype=torch.float64)
    assert not torch.allclose(a, a.t())
    result = direct_solve(lambda v: a @ v, b)
    torch.testing.assert_close(result.x, torch.linalg.solve(a, b))
    assert result.converged and result.residual < 1e-12


@pytest.mark.parametrize("solver", [conjugate_gradient, lissa, adam_quadratic, direct_solve])
def test_solvers_refuse_malformed_arguments_by_name(solver):
    """A QA probe: tol=-1 or max_iter=-1 returned the zero step unconverged, LiSSA's scale=-5 a step of 1e79, and a
    2-D b failed inside torch."""
    b, matvec = torch.ones(3, dtype=torch.float64), lambda v: 2 * v
    with pytest.raises(ValueError, match=re.escape("b must be a 1-D floating-point tensor, got [3, 1] torch.float64")):
        solver(matvec, b[:, None])
    with pytest.raises(ValueError, match=re.escape("tol must be a number >= 0, got -1")):
        solver(matvec, b, tol=-1)
    if solver is not direct_solve:
        with pytest.raises(ValueError, match=re.escape("max_iter must be an integer >= 0, got -1")):
            solver(matvec, b, max_iter=-1)
    if solver in (lissa, adam_quadratic):
        name = "scale" if solver is lissa else "lr"
        with pytest.raises(ValueError, match=re.escape(f"{name} must be a number > 0, got -5")):
            solver(matvec, b, **{name: -5})


@pytest.mark.parametrize("solver", [conjugate_gradient, lissa, adam_quadratic, direct_solve])
def test_solvers_of_an_empty_system_return_an_empty_solution(solver):
    """No row selected: every solver returns the empty solution, converged at residual 0 (direct_solve raised
    'stack expects a non-empty TensorList', naming none of the user's input)."""
    b = torch.zeros(0, dtype=torch.float64)
    result = solver(lambda v: 2 * v, b)
    assert result.x.shape == (0,) and result.x.dtype == torch.float64
    assert result.converged and result.residual == 0.0


@pytest.mark.parametrize("solver,options", [
    (conjugate_gradient, {"tol": 1e-8, "max_iter": 500}),
    (lissa, {"tol": 1e-8, "max_iter": 20000}),
])
def test_solvers_stop_on_the_relative_residual_whatever_the_scale_of_b(solver, options):
    """The stop is ||b - Ax|| <= tol ||b||: a right-hand side of norm 1e-8 is solved as well as one of norm 1."""
    a = _spd(30)
    b = 1e-8 * torch.randn(30, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    result = solver(lambda v: a @ v, b, **options)
    assert result.converged and result.residual <= options["tol"]
    reference = torch.linalg.solve(a, b)
    assert float((result.x - reference).norm() / reference.norm()) < 100 * options["tol"]


def test_adam_stops_on_the_relative_residual_whatever_the_scale_of_b():
    """Adam's steps scale with lr, not with the gradient: b and lr scaled by c scale its whole trajectory by c, so
    the relative stop must give the same iterations and a converged solve (an absolute stop would end at once)."""
    a = _spd(30)
    b = torch.randn(30, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    one = adam_quadratic(lambda v: a @ v, b, tol=1e-6, max_iter=20000, lr=0.05)
    small = adam_quadratic(lambda v: a @ v, 1e-3 * b, tol=1e-6, max_iter=20000, lr=0.05e-3)
    assert one.converged and small.converged and small.residual <= 1e-6
    assert abs(small.iterations - one.iterations) <= 0.05 * one.iterations


def test_lissa_scale_from_power_iteration_on_a_spiked_spectrum():
    """One eigenvalue of 100 over 29 of 1: the Neumann series converges only for a scale above 50, so the power
    iteration must find the top eigenvalue (a single product's |Av| for a random v is about 100 / sqrt(30))."""
    gen = torch.Generator().manual_seed(1)
    q, _ = torch.linalg.qr(torch.randn(30, 30, generator=gen, dtype=torch.float64))
    a = q @ torch.diag(torch.cat([torch.tensor([100.0]), torch.ones(29)]).double()) @ q.t()
    b = torch.randn(30, generator=gen, dtype=torch.float64)
    assert power_iteration(lambda v: a @ v, 30, b) == pytest.approx(100.0, rel=1e-8)
    result = lissa(lambda v: a @ v, b, tol=1e-8, max_iter=20000)
    assert result.converged
    torch.testing.assert_close(result.x, torch.linalg.solve(a, b))


def test_an_exact_solution_is_converged_even_at_tol_zero():
    """CG calls a relative residual <= tol converged, and so must LiSSA (and Adam, direct): ``residual < tol`` would
    call an exact solution at tol 0 'not converged'. A = 2 I, scale 2: every value is exact in floating point."""
    b = torch.tensor([1.0, -3.0, 0.5], dtype=torch.float64)
    cg = conjugate_gradient(lambda v: 2 * v, b, tol=0.0, max_iter=5)
    assert cg.residual == 0.0 and cg.converged
    result = lissa(lambda v: 2 * v, b, tol=0.0, max_iter=50, scale=2.0)
    assert torch.equal(result.x, b / 2) and result.residual == 0.0 and result.converged


def test_lissa_scale_is_1_1_times_the_largest_eigenvalue():
    """Without ``scale`` LiSSA uses 1.1 x the power-iteration estimate of the largest eigenvalue: its
    first iterate is b / scale. Reference: 1.1 x the top eigenvalue from eigvalsh (the spectrum is spiked, so the
    power iteration finds it to 1e-8)."""
    gen = torch.Generator().manual_seed(1)
    q, _ = torch.linalg.qr(torch.randn(30, 30, generator=gen, dtype=torch.float64))
    a = q @ torch.diag(torch.cat([torch.tensor([100.0]), torch.ones(29)]).double()) @ q.t()
    b = torch.randn(30, generator=gen, dtype=torch.float64)
    scale = 1.1 * float(torch.linalg.eigvalsh(a).max())
    result = lissa(lambda v: a @ v, b, max_iter=1)
    assert result.iterations == 1
    torch.testing.assert_close(result.x, b / scale, rtol=1e-7, atol=0)


def test_lissa_follows_the_neumann_recursion_and_checks_every_tenth_iteration():
    """x_1 = b/s, x_{j+1} = b/s + (I - A/s) x_j (the docstring's recursion), written out here;
    the residual is checked every 10 iterations only, so an operator LiSSA solves in one step still reports 10."""
    gen = torch.Generator().manual_seed(2)
    q, _ = torch.linalg.qr(torch.randn(8, 8, generator=gen, dtype=torch.float64))
    a = q @ torch.diag(torch.linspace(1.0, 5.0, 8, dtype=torch.float64)) @ q.t()
    b = torch.randn(8, generator=gen, dtype=torch.float64)
    s = 6.0
    for steps in (1, 2, 5, 9):
        x = b / s
        for _ in range(steps - 1):
            x = b / s + x - (a @ x) / s
        result = lissa(lambda v: a @ v, b, tol=1e-30, max_iter=steps, scale=s)
        assert result.iterations == steps
        torch.testing.assert_close(result.x, x, rtol=1e-12, atol=1e-14)
    exact = lissa(lambda v: 4 * v, b, tol=1e-12, max_iter=100, scale=4.0)  # x_1 = b / 4 solves 4 x = b
    assert exact.converged and exact.iterations == 10 and torch.equal(exact.x, b / 4)


def test_anderson_mixing_at_depth_one_is_the_secant_step():
    """Depth 1: gamma = <df, f> / |df|^2 from the last step difference, from the second step on (every step)."""
    gen = torch.Generator().manual_seed(0)
    m = torch.randn(3, 3, generator=gen, dtype=torch.float64) / 3
    c = torch.randn(3, generator=gen, dtype=torch.float64)
    mixing, x, last = AndersonMixing(1), torch.zeros(3, dtype=torch.float64), None
    for k in range(5):
        f = m @ x + c - x
        mixed = mixing.propose(x, f)
        assert (mixed is None) == (k == 0)
        if mixed is not None:
            dx, df = x - last[0], f - last[1]
            gamma = df.dot(f) / df.dot(df)
            torch.testing.assert_close(mixed, x + f - gamma * (dx + df))
        last, x = (x, f), x + f if mixed is None else mixed


def test_anderson_mixing_does_not_depend_on_the_scale_of_the_differences():
    """Step differences of norms 1e-4 and 1e4 (steps shrink by orders of magnitude as an iteration converges):
    orthogonal, so gamma_j = <df_j, f> / |df_j|^2 = (1, 1) by hand, and the mixed iterate is (0, 0, 1). The least
    squares is solved on unit columns; unscaled, its normal equations' conditioning (1e16) would cut one off."""
    e = torch.eye(3, dtype=torch.float64)
    f0 = e[2]
    f1 = f0 + 1e-4 * e[0]
    f2 = f1 + 1e4 * e[1]
    mixing = AndersonMixing(2)
    assert mixing.propose(torch.zeros(3, dtype=torch.float64), f0) is None
    mixing.propose(e[0], f1)
    mixed = mixing.propose(e[0] + e[1], f2)
    # x2 + f2 - (dx1 + df1) - (dx2 + df2)
    expected = (e[0] + e[1]) + f2 - (e[0] + 1e-4 * e[0]) - (e[1] + 1e4 * e[1])
    torch.testing.assert_close(expected, e[2])
    torch.testing.assert_close(mixed, expected, rtol=0, atol=1e-9)


# --------------------------------------------------------------------- gaps found by mutation testing (graph)

def test_importance_of_a_node_without_edges_is_zero(graph):
    """An item with no (observed) edge: 0 at every order, not 0/0 (its degree counts as 1), and never kept."""
    extra = I  # one more item, with no edge at all
    ei = graph[EDGE].edge_index
    wider = make_interactions(ei, graph[EDGE].edge_label, num_users=U, num_items=I + 1)
    request = random_edges(wider, 0.08, seed=6)
    scores = importance_scores(wider, request, 2)
    assert bool(torch.isfinite(scores).all()) and bool((scores[:, U + extra] == 0).all())
    torch.testing.assert_close(scores[:, :U + I], importance_scores(graph, request, 2))
    assert not bool(select_nodes(scores, None)[U + extra])
    message = rf"degrees must be \[U \+ I\] = \[{U + I + 1}\], one per node, got \[{U + I}\]"
    with pytest.raises(ValueError, match=message):
        importance_scores(wider, request, 2, degrees=torch.ones(U + I))  # an IndexError inside torch


def test_the_pair_pattern_is_kept_per_shape():
    """The same terms scored on tables of another size (another model) get a pattern of that size: the products
    equal the autograd Hessian's on both."""
    objective = BCEObjective(l2=0.3)
    small = planted_communities(U, I, 2, 4, seed=2)
    terms = training_terms(objective, small)
    for users, items in ((U, I), (U + 5, I + 3)):
        graph = make_interactions(small[EDGE].edge_index, small[EDGE].edge_label, num_users=users, num_items=items)
        model = MF(users, items, D).double()
        model.reset_parameters(0)
        rows = _rows(model, [1, 4, users, users + 3], users, items)
        phi = rows.gather(model)
        fast = DotProductOperator(model, rows, phi, terms, graph, objective, exact=True)
        reference = HessianOperator(objective_function(model, objective, terms, graph, rows), phi)
        v = torch.randn(phi.numel(), generator=torch.Generator().manual_seed(5), dtype=phi.dtype)
        torch.testing.assert_close(fast(v), reference(v))


def test_check_receptive_field_refuses_a_module_that_is_no_recommender_by_name():
    """A plain module with a receptive_field failed with "'Scorer' object has no attribute 'node_parameters'" (found
    by a type check): its node tables are read by name."""
    from graphforget.influence import check_receptive_field
    from graphforget.models import NotARecommender

    class Scorer(torch.nn.Module):
        receptive_field = 1

        def forward(self, graph, pairs):
            return pairs[0].float()
    graph = make_interactions(torch.tensor([[0, 1, 2], [0, 1, 2]]), None, 3, 3)
    with pytest.raises(NotARecommender, match="IFRU: check_receptive_field needs a graphforget Recommender, got a "
                                              r"Scorer \(a PyG module: wrap it in graphforget.models.PyGRecommender\)"):
        check_receptive_field(Scorer(), graph, "IFRU")


def _pyg_lightgcn():
    torch.manual_seed(0)
    module = PyGLightGCN(U + I, D, num_layers=2).double()
    return PyGRecommender(module, U, I, receptive_field=2)


def _dense_hessian(model, name, ids, objective, graph, terms):
    """Reference: the Hessian of sum(losses) + l2/2 |phi|^2 in the rows ``ids`` of table ``name``, by autograd
    through the model's own forward with the table rebuilt by hand."""
    table = model.get_parameter(name).detach()

    def fn(phi):
        full = table.index_put((ids,), phi.view(len(ids), -1))
        z = torch.func.functional_call(model, {name: full}, (graph, terms.edge_label_index))
        return objective.losses(z, terms.target).sum() + 0.5 * objective.l2 * phi.pow(2).sum()
    x = table[ids].flatten()
    return torch.autograd.functional.hessian(fn, x), x


def test_local_problem_of_a_homogeneous_node_table_gives_the_dense_hessian():
    """PyG's LightGCN keeps users and items in one [U + I] table: the local problem must shift the items' local ids
    past the users' (item 0, homogeneous id U, is among the rows), as the dense Hessian says."""
    graph = planted_communities(U, I, 2, 4, seed=2)
    model = _pyg_lightgcn()
    objective = BCEObjective(l2=0.3)
    name = "module.embedding.weight"
    ids = torch.tensor([0, 3, U, U + 4])  # two users, item 0 (id U) and item 4
    rows = NodeRows({name: ids})
    terms = training_terms(objective, graph)
    hessian, phi = _dense_hessian(model, name, ids, objective, graph, terms)
    local = local_problem(model, rows, terms, graph)
    operator = DotProductOperator(model, local.rows, phi, local.terms, local.graph, objective, exact=True,
                                  tables=local.tables)
    eye = torch.eye(phi.numel(), dtype=phi.dtype)
    dense = torch.stack([operator(e) for e in eye], 1)
    torch.testing.assert_close(dense, hessian, rtol=1e-8, atol=1e-10)


def test_repeated_dense_parameters_are_refused():
    """phi would hold the parameter twice, and write it twice."""
    with pytest.raises(ValueError, match=r"repeated dense parameters: \('w', 'w'\)"):
        NodeRows({}, ("w", "w"))


def test_scoring_graph_without_locality_is_the_whole_graph():
    """locality=False must score on the whole graph, as documented
    ("their k-hop computation subgraph when the model supports it and locality is on, else the whole graph")."""
    graph = planted_communities(60, 40, 4, 3, seed=4)
    model = LightGCN(60, 40, D, num_layers=1)
    objective = BCEObjective(l2=0.3)
    terms = training_terms(objective, graph).select(torch.arange(len(training_terms(objective, graph))) < 2)
    assert scoring_graph(model, graph, terms, locality=False) is graph
    # and with locality on, a strict part of it (the terms' 1-hop region): the switch is live
    assert scoring_graph(model, graph, terms)[EDGE].edge_index.size(1) < graph[EDGE].edge_index.size(1)


def _terms(blocks: int, count: int):
    eli = torch.stack([torch.arange(blocks * count), torch.arange(blocks * count) + 100])
    return Terms(eli, torch.arange(count, dtype=torch.float))


def test_terms_parts_partition_the_terms():
    """By the definition: the parts, in order, are the terms, each exactly once, their sizes within one of each
    other."""
    terms = _terms(2, 10)
    for count in (3, 4, 7):
        parts = [terms.part(k, count) for k in range(count)]
        assert sum(len(p) for p in parts) == 10
        assert max(len(p) for p in parts) - min(len(p) for p in parts) <= 1
        assert torch.cat([p.target for p in parts]).tolist() == list(range(10))
        for block in range(2):  # block-major pairs: each part's block b holds its terms' pairs of block b
            got = torch.cat([p.edge_label_index.view(2, 2, -1)[0, block] for p in parts])
            assert got.tolist() == list(range(block * 10, block * 10 + 10))


def test_terms_of_other_block_counts_are_not_concatenated():
    """[2, 4] pairs of 2 blocks and [2, 3] of 1 block would be silently mixed."""
    with pytest.raises(ValueError, match="cannot concatenate terms with different numbers of pairs"):
        _terms(2, 2).cat(_terms(1, 3))


def test_a_scalar_target_is_one_term():
    """A 0-dim target is one term, as documented."""
    terms = Terms(torch.tensor([[0, 1], [2, 3]]), torch.tensor(1.0))
    assert len(terms) == 1 and terms.blocks == 2


def test_select_nodes_keeps_always_whatever_their_score():
    """Nodes 3 and 5, scored 0 and 0.1 with a ratio keeping one node of three, are
    kept all the same; the top-scored node too, by the rule."""
    scores = torch.tensor([[0.0, 0.9, 0.0, 0.0, 0.5, 0.1]], dtype=torch.float64)
    keep = select_nodes(scores, (0.2,), always=torch.tensor([3, 5]))
    assert keep.nonzero().flatten().tolist() == [1, 3, 5]  # ceil(0.2 * 3) = 1: node 1; plus 3 and 5


def test_a_term_touches_a_region_through_any_of_its_pairs():
    """A BPR term scores (u, i+) and (u, i-); one whose
    negative item alone lies in the region touches it (the definition: any pair with an endpoint in the mask)."""
    users = 3
    # 2 blocks (positive pairs, then negative pairs) of 2 terms: term 0 = (0, 0) & (0, 2); term 1 = (1, 1) & (1, 0)
    terms = Terms(torch.tensor([[0, 1, 0, 1], [0, 1, 2, 0]]), torch.ones(2))
    mask = torch.zeros(users + 3, dtype=torch.bool)
    mask[users + 2] = True  # item 2: term 0's negative item only
    assert terms.touches(mask, users).tolist() == [True, False]
    assert len(terms.touching(mask, users)) == 1


def test_terms_nodes_are_homogeneous_ids():
    """Pairs (0, 1) and (2, 0) among 3 users and 4 items score
    users 0, 2 and items 1, 0, homogeneous ids 0, 2, 3 + 1, 3 + 0."""
    terms = Terms(torch.tensor([[0, 2], [1, 0]]), torch.ones(2))
    assert terms.nodes(3, 7).tolist() == [0, 2, 3, 4]


def test_a_zero_contrastive_weight_adds_no_contrastive_term():
    """The documented rule: a contrastive term where ``ssl_weight > 0``."""
    model = SGL(U, I, D)
    assert has_contrastive_term(model, ContrastiveBPRObjective(ssl_weight=0.1))
    assert not has_contrastive_term(model, ContrastiveBPRObjective(ssl_weight=0.0))


def test_a_stateless_call_leaves_sparse_embeddings_sparse():
    """The caller's nn.Embedding(sparse=True) is dense only
    inside the call, and its gradients sparse again afterwards."""
    layer = torch.nn.Embedding(5, 2, sparse=True)
    seen = []

    class Probe(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = layer

        def forward(self, ids):
            seen.append(self.layer.sparse)
            return self.layer(ids).sum()

    value = call_with_parameters(Probe(), {"layer.weight": torch.ones(5, 2)}, (torch.tensor([1, 3]),))
    assert float(value) == 4.0 and seen == [False]
    assert layer.sparse is True
    layer(torch.tensor([0])).sum().backward()
    assert layer.weight.grad.is_sparse


def test_only_a_missing_derivative_is_named_a_second_derivative_failure():
    """An unrelated RuntimeError that merely says "not implemented" must propagate as it is, not be turned into
    the sparse-adjacency advice."""
    with pytest.raises(RuntimeError, match="^foo is not implemented for bar$"):
        with _second_derivatives():
            raise RuntimeError("foo is not implemented for bar")
    with pytest.raises(NotImplementedError, match="second derivatives"):
        with _second_derivatives():
            raise RuntimeError("the derivative for 'x' is not implemented")


def test_power_iteration_starts_from_the_float32_draw_in_every_dtype():
    """The start vector is the float32 draw in float64 too (LiSSA's scale, and so its step, followed the dtype)."""
    starts = []
    for dtype in (torch.float32, torch.float64):
        seen = []
        power_iteration(lambda v: seen.append(v.clone()) or v, 30, torch.zeros(30, dtype=dtype), iters=1)
        assert seen[0].dtype == dtype
        starts.append(seen[0])
    torch.testing.assert_close(starts[1], starts[0].double(), rtol=1e-6, atol=0)  # to float32's rounding
