"""SCIF: label substitution and parameter selection on a hand-made graph."""
import copy
import re
import warnings

import pytest
import torch

from graphforget import BCEObjective, BPRObjective, GraphforgetWarning
from graphforget.data import EDGE, make_interactions, remove_edges
from graphforget.models import LightGCN, MF
from graphforget.unlearn import SCIF, IFRUConfig, substitute_labels

# users 0..3, items 0..4; user 3's only edge is requested, so item 4's mean stands in for it.
EDGES = torch.tensor([[0, 0, 0, 1, 1, 2, 2, 3, 1],
                      [0, 1, 2, 0, 3, 1, 4, 4, 4]])
LABELS = torch.tensor([1., 0., 1., 1., 1., 0., 0., 1., 1.])


@pytest.fixture
def graph():
    return make_interactions(EDGES, LABELS, 4, 5)


def test_substitute_labels(graph):
    request = torch.tensor([[0, 3], [2, 4]])
    labels = substitute_labels(remove_edges(graph, request), request)
    # user 0 keeps labels {1, 0} -> 0.5; user 3 has none left -> item 4's remaining labels {0, 1} -> 0.5
    torch.testing.assert_close(labels, torch.tensor([0.5, 0.5]))
    request = torch.tensor([[1], [0]])
    torch.testing.assert_close(substitute_labels(remove_edges(graph, request), request), torch.tensor([1.0]))
    # User 3 and item 4 keep no edge: (3, 4) gets the mean of every remaining label, (1,0,1,1,1,0) -> 2/3; (2, 4)
    # and (1, 4) their users' means, 0 and 1.
    request = torch.tensor([[3, 2, 1], [4, 4, 4]])
    torch.testing.assert_close(substitute_labels(remove_edges(graph, request), request),
                               torch.tensor([2 / 3, 0.0, 1.0]))
    # user -1 had been given user 3's mean (the last user's), and float ids failed inside torch's indexing
    remaining = remove_edges(graph, request)
    for bad, message in ((torch.tensor([[-1], [0]]), r"unknown ids, the first \(-1, 0\)"),
                         (torch.tensor([[0.0], [1.0]]), "holds integer .* got dtype torch.float32"),
                         (torch.tensor([[0, 0], [1, 1]]), r"request holds 1 duplicated \(user, item\) pairs")):
        with pytest.raises(ValueError, match=message):
            substitute_labels(remaining, bad)




@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_labels_are_summed_exactly(dtype):
    """A bfloat16 sum stops at 256 (float16 at 2048): a user's 3000 remaining labels of 1 had a mean of 0.085
    (bfloat16) and 0.68 (float16), not 1. The means come back in the labels' dtype."""
    items = torch.arange(3001)
    graph = make_interactions(torch.stack([torch.zeros_like(items), items]), num_users=1, num_items=3001)
    graph[EDGE].edge_label = graph[EDGE].edge_label.to(dtype)
    request = torch.tensor([[0], [3000]])
    labels = substitute_labels(remove_edges(graph, request), request)
    assert labels.dtype == dtype and labels.tolist() == [1.0]


@pytest.mark.parametrize("dtype", [torch.long, torch.bool])
def test_integer_labels_substitute_and_step_as_float_labels(graph, dtype):
    """0/1 labels stored as integers or bools pass every check and train; SCIF failed on them (``mean()``
    refused the dtype; a bool sum would have been a logical or), and cast the means back to integers."""
    request = torch.tensor([[3, 2, 1], [4, 4, 4]])
    exact = make_interactions(EDGES, LABELS, 4, 5)
    exact[EDGE].edge_label = LABELS.to(dtype)  # set by hand: make_interactions stores float labels
    torch.testing.assert_close(substitute_labels(remove_edges(exact, request), request),
                               torch.tensor([2 / 3, 0.0, 1.0]))
    model = MF(4, 5, 3).double()
    model.reset_parameters(0)
    request = torch.tensor([[0], [2]])  # user 0 keeps labels {1, 0}: substitute 0.5
    expected = SCIF(model, graph, BCEObjective(l2=1.0)).unlearn(request).model
    result = SCIF(model, exact, BCEObjective(l2=1.0)).unlearn(request).model
    assert (expected.user_emb.weight != model.user_emb.weight).any()
    for a, b in zip(result.parameters(), expected.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
def test_a_float64_model_gets_float64_substitutes_from_float32_labels():
    """A user's mean of 1/3, rounded to the graph's float32 labels, moved a float64 model's step by 1e-8 from the same
    labels stored in float64 (a QA probe): the substitutes take the model's precision."""
    edges, labels = torch.tensor([[0, 0, 0, 0, 1, 1], [0, 1, 2, 3, 0, 2]]), torch.tensor([1., 1., 0., 0., 1., 0.])
    single, double = make_interactions(edges, labels, 2, 4), make_interactions(edges, labels, 2, 4)
    double[EDGE].edge_label = labels.double()
    model = MF(2, 4, 3).double()
    model.reset_parameters(0)
    request = torch.tensor([[0], [0]])  # user 0 keeps {1, 0, 0}: 1/3
    first, second = (SCIF(model, g, BCEObjective(l2=1.0)).unlearn(request).model for g in (single, double))
    assert (first.user_emb.weight != model.user_emb.weight).any()
    assert all(torch.equal(a, b) for a, b in zip(first.parameters(), second.parameters()))


@pytest.mark.parametrize("kind", ["mf", "lightgcn"])
def test_only_request_rows_change_and_step_matches_direct_formula(graph, kind):
    model = (MF(4, 5, 3) if kind == "mf" else LightGCN(4, 5, 3, num_layers=1)).double()
    model.reset_parameters(0)
    objective = BCEObjective(l2=1.0)
    request = torch.tensor([[0], [2]])
    result = SCIF(model, graph, objective, IFRUConfig.paper()).unlearn(request)  # the formula: no damping
    changed_users = (result.model.user_emb.weight != model.user_emb.weight).any(1).nonzero().flatten()
    changed_items = (result.model.item_emb.weight != model.item_emb.weight).any(1).nonzero().flatten()
    assert changed_users.tolist() == [0] and changed_items.tolist() == [2]
    assert result.info["affected_terms"] == 0 and result.info["kept_nodes"] == 2
    # Reference: the same step from a dense Gauss-Newton matrix over the 6 parameters of (u0, i2).
    def logits_of(x):
        users = model.user_emb.weight.detach().index_put((torch.tensor([0]),), x[:3].view(1, 3))
        items = model.item_emb.weight.detach().index_put((torch.tensor([2]),), x[3:].view(1, 3))
        tables = {"user_emb.weight": users, "item_emb.weight": items}
        return torch.func.functional_call(model, tables, (graph, graph[EDGE].edge_index))
    x = torch.cat([model.user_emb.weight[0], model.item_emb.weight[2]]).detach()
    jac = torch.autograd.functional.jacobian(logits_of, x)
    p = torch.sigmoid(logits_of(x))
    relevant = ((EDGES[0] == 0) | (EDGES[1] == 2)) if kind == "mf" else torch.ones(EDGES.size(1), dtype=torch.bool)
    gn = jac[relevant].t() @ torch.diag((p * (1 - p))[relevant]) @ jac[relevant] + torch.eye(6, dtype=x.dtype)
    index = 2  # the request's position in EDGES
    y_bar = 0.5
    g = jac[index] * ((p[index] - LABELS[index]) - (p[index] - y_bar))  # d/dx [l(y) - l(y_bar)]
    expected = x + torch.linalg.solve(gn, g)
    got = torch.cat([result.model.user_emb.weight[0], result.model.item_emb.weight[2]]).detach()
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)


def test_requires_labels_and_leaves_caller_untouched(graph):
    with pytest.raises(ValueError):
        SCIF(MF(4, 5, 3), graph, BPRObjective())
    model = MF(4, 5, 3)
    before = copy.deepcopy(model.state_dict())
    empty = SCIF(model, graph, BCEObjective()).unlearn(torch.empty(2, 0, dtype=torch.long))
    SCIF(model, graph, BCEObjective()).unlearn(torch.tensor([[0], [2]]))
    for key, value in before.items():
        assert torch.equal(model.state_dict()[key], value)
        assert torch.equal(empty.model.state_dict()[key], value)


def test_a_request_whose_labels_substitute_themselves_is_no_step_and_trusted(graph):
    """(1, 0) is labelled 1 and user 1's remaining labels are all 1: its substitute is its own label, so the
    removal's gradient is 0 and the exact step is none. Nothing is solved, nothing warns, the result is trusted
    (an acceptance test of 0 / 0 rejected it as nan, retried four times and warned that the model was kept)."""
    model = MF(4, 5, 3)
    model.reset_parameters(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = SCIF(model, graph, BCEObjective(l2=1.0)).unlearn(torch.tensor([[1], [0]]))
    info = result.info
    assert info["trusted"] and info["reason"] is None and info["solver"] == [] and info["attempts"] == []
    assert all(torch.equal(a, b) for a, b in zip(result.model.parameters(), model.parameters()))
    assert result.graph[EDGE].edge_index.size(1) == EDGES.size(1) - 1


def test_newton_steps_reach_the_minimiser_of_the_relabelled_objective():
    """SCIF's Newton steps minimise the new objective: the remaining terms, the relabelled ones and the L2, over
    the request's rows. Their curvature must hold the relabelled terms too: with the remaining terms' alone the
    gradient was still 1.6e-2 after seven steps (5.8 at the first). Reference: the hand-written objective's
    gradient and Hessian."""
    from graphforget.data import planted_communities, random_edges
    from test_ifru import _trained
    graph = planted_communities(30, 24, 2, 10, seed=1)
    request = random_edges(graph, 0.05, seed=3)  # 15 edges
    objective = BCEObjective(l2=1.0)
    model = _trained("mf", graph, objective)
    # Undamped, unmixed Newton steps on the exact Hessian converge quadratically (gradient 1e-3, 1e-6, 1e-12).
    config = IFRUConfig(curvature="exact", solver={"damping": 0.0, "tol": 1e-12, "max_iter": 500},
                        newton={"steps": 8, "line_search": True, "anderson": 0})
    result = SCIF(model, graph, objective, config).unlearn(request)
    users, items = request[0].unique(), request[1].unique()
    remaining = result.graph[EDGE]
    pairs = torch.cat([remaining.edge_index, request], 1)
    labels = torch.cat([remaining.edge_label.double(), substitute_labels(result.graph, request, torch.float64)])
    user_table, item_table = model.user_emb.weight.detach(), model.item_emb.weight.detach()
    split = users.numel() * user_table.size(1)

    def new_objective(x):
        u = user_table.index_put((users,), x[:split].view(users.numel(), -1))
        i = item_table.index_put((items,), x[split:].view(items.numel(), -1))
        logits = (u[pairs[0]] * i[pairs[1]]).sum(-1)
        return (torch.nn.functional.binary_cross_entropy_with_logits(logits, labels, reduction="sum")
                + 0.5 * objective.l2 * x.pow(2).sum())
    got = torch.cat([result.model.user_emb.weight[users].flatten(), result.model.item_emb.weight[items].flatten()])
    gradient = torch.autograd.functional.jacobian(new_objective, got.detach())
    assert float(gradient.norm()) < 1e-9, float(gradient.norm())  # a stationary point of the hand-written objective
    assert float(torch.linalg.eigvalsh(torch.autograd.functional.hessian(new_objective, got.detach())).min()) > 0


class _WeightedBCE(BCEObjective):
    """A [B, 2] target: a label and a weight per term."""

    def pairs(self, graph, positions=None, epoch=0):
        edge_label_index, label = super().pairs(graph, positions, epoch)
        return edge_label_index, torch.stack([label, torch.ones_like(label)], 1)

    def losses(self, logits, target):
        return target[:, 1] * super().losses(logits, target[:, 0])


def test_a_target_of_several_columns_is_refused_when_built(graph):
    """SCIF substitutes the labels: a [B, 2] target had been accepted, and unlearn failed inside the objective's
    losses with an IndexError (a QA probe)."""
    with pytest.raises(ValueError, match=re.escape("SCIF substitutes each removed term's label, so it needs a target "
                                                   "of one label per term ([B]); _WeightedBCE.pairs() gives [8, 2]")):
        SCIF(MF(4, 5, 2), graph, _WeightedBCE())


def test_substituted_means_of_float64_labels_are_float64_exact():
    """Float64 soft labels 0.1, 0.2, 0.4 of one user average to 0.7/3 to float64 precision (documented: the sums
    are float64)."""
    from torch_geometric.data import HeteroData
    g = HeteroData()
    g["user"].num_nodes, g["item"].num_nodes = 2, 4
    g[EDGE].edge_index = torch.tensor([[0, 0, 0, 1], [0, 1, 2, 3]])
    g[EDGE].edge_label = torch.tensor([0.1, 0.2, 0.4, 1.0], dtype=torch.float64)
    means = substitute_labels(g, torch.tensor([[0, 1], [3, 0]]))
    assert means.dtype == torch.float64
    assert abs(float(means[0]) - (0.1 + 0.2 + 0.4) / 3) < 1e-15 and float(means[1]) == 1.0


def test_a_user_or_item_whose_every_pair_is_removed_is_counted_and_warned_of(graph):
    """SCIF keeps a withdrawn node's pairs as relabelled terms, so its row goes on fitting them where a Retrain leaves
    it untrained (a whole-item deletion on ML-1M left the attack AUC above the Original's): said, and counted. Here
    (3, 4) is user 3's only pair and (1, 3) item 3's: two nodes withdrawn; user 1 and item 4 keep pairs."""
    model = MF(4, 5, 3)
    model.reset_parameters(0)
    with pytest.warns(GraphforgetWarning, match=r"SCIF: the request removes every pair of 2 of its users and items; "
                                                r".* IFRU zeroes such rows \(info\['withdrawn_nodes'\]\)"):
        result = SCIF(model, graph, BCEObjective(l2=1.0)).unlearn(torch.tensor([[3, 1], [4, 3]]))
    assert result.info["withdrawn_nodes"] == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # (0, 1): user 0 and item 1 keep pairs
        assert SCIF(model, graph, BCEObjective(l2=1.0)).unlearn(torch.tensor([[0], [1]])).info["withdrawn_nodes"] == 0

# Each test below failed under a one-line mutation that the suite had passed (qa165, mutation testing).
# users 0..2, items 0..3; user 0's edges first, so the request below lists (1, 0) before (0, 1), against graph order.
OUT_OF_ORDER_EDGES = torch.tensor([[0, 0, 0, 1, 1, 1, 1, 2, 2],
                      [0, 1, 2, 0, 1, 3, 2, 3, 2]])
OUT_OF_ORDER_LABELS = torch.tensor([1., 0., 0., 0., 1., 1., 0., 0., 1.])
# (1, 0) labelled 0 at position 3, (0, 1) labelled 0 at position 1
OUT_OF_ORDER_REQUEST = torch.tensor([[1, 0], [0, 1]])


def _hand_means(request):
    """Each removed pair's user's mean remaining label, by a plain loop (every user here keeps an edge)."""
    removed = {tuple(p) for p in request.t().tolist()}
    out = []
    for u, _ in request.t().tolist():
        kept = [float(y) for (a, b), y in zip(OUT_OF_ORDER_EDGES.t().tolist(), OUT_OF_ORDER_LABELS)
                if a == u and (a, b) not in removed]
        out.append(sum(kept) / len(kept))
    return torch.tensor(out, dtype=torch.float64)


def test_substitutes_follow_the_request_order_and_prefer_the_users_mean_over_the_items():
    """(1, 0): user 1 keeps {1, 1, 0} -> 2/3, though item 0 keeps {1} (its mean 1 would be the item fallback's);
    (0, 1): user 0 keeps {1, 0} -> 1/2. In the request's order, not the graph's."""
    graph = make_interactions(OUT_OF_ORDER_EDGES, OUT_OF_ORDER_LABELS, 3, 4)
    got = substitute_labels(remove_edges(graph, OUT_OF_ORDER_REQUEST), OUT_OF_ORDER_REQUEST, torch.float64)
    torch.testing.assert_close(got, _hand_means(OUT_OF_ORDER_REQUEST), rtol=0, atol=1e-15)
    torch.testing.assert_close(got, torch.tensor([2 / 3, 1 / 2], dtype=torch.float64), rtol=0, atol=1e-15)


def test_scif_step_on_two_pairs_out_of_graph_order_matches_the_dense_formula():
    """phi' = phi + H^-1 sum_r grad [l(y_r) - l(ybar_r)] over the rows of users 1, 0 and items 0, 1 only (hops 0),
    with each removed pair paired with its own user's mean (a dense float64 Gauss-Newton reference, as
    test_scif's one-pair test). Two pairs of distinct substitutes, requested against graph order: a substitute given
    to the other pair, or the item's mean taken first, moves the step."""
    graph = make_interactions(OUT_OF_ORDER_EDGES, OUT_OF_ORDER_LABELS, 3, 4)
    model = MF(3, 4, 3).double()
    model.reset_parameters(0)
    config = IFRUConfig.paper(solver={"tol": 1e-12, "max_iter": 500})
    result = SCIF(model, graph, BCEObjective(l2=1.0), config).unlearn(OUT_OF_ORDER_REQUEST)
    users, items = torch.tensor([0, 1]), torch.tensor([0, 1])
    changed_users = (result.model.user_emb.weight != model.user_emb.weight).any(1).nonzero().flatten()
    changed_items = (result.model.item_emb.weight != model.item_emb.weight).any(1).nonzero().flatten()
    assert changed_users.tolist() == [0, 1] and changed_items.tolist() == [0, 1]  # user 2, items 2, 3 untouched
    U, V = model.user_emb.weight.detach(), model.item_emb.weight.detach()

    def logits_of(x):
        u = U.index_put((users,), x[:6].view(2, 3))
        v = V.index_put((items,), x[6:].view(2, 3))
        return (u[OUT_OF_ORDER_EDGES[0]] * v[OUT_OF_ORDER_EDGES[1]]).sum(-1)
    x = torch.cat([U[users].flatten(), V[items].flatten()])
    jac = torch.autograd.functional.jacobian(logits_of, x)
    p = torch.sigmoid(logits_of(x))
    gn = jac.t() @ torch.diag(p * (1 - p)) @ jac + torch.eye(12, dtype=x.dtype)  # every original term, L2 of 1
    positions = [3, 1]
    y_bar = _hand_means(OUT_OF_ORDER_REQUEST)
    g = sum(jac[k] * (y_bar[j] - OUT_OF_ORDER_LABELS[k].double()) for j, k in enumerate(positions))
    expected = x + torch.linalg.solve(gn, g)
    got = torch.cat([result.model.user_emb.weight[users].flatten(), result.model.item_emb.weight[items].flatten()])
    torch.testing.assert_close(got.detach(), expected, rtol=1e-8, atol=1e-10)  # a tight CG solve


def test_a_single_withdrawn_node_is_counted_and_warned_of():
    """(2, 3) and (2, 2) are user 2's every pair; items 3 and 2 keep (1, 3) and (0, 2), (1, 2): one node withdrawn
    (hand count). The warning fires at one node, not only at several."""
    graph = make_interactions(OUT_OF_ORDER_EDGES, OUT_OF_ORDER_LABELS, 3, 4)
    model = MF(3, 4, 3)
    model.reset_parameters(0)
    request = torch.tensor([[2, 2], [3, 2]])
    with pytest.warns(GraphforgetWarning, match=r"removes every pair of 1 of its users and items"):
        result = SCIF(model, graph, BCEObjective(l2=1.0)).unlearn(request)
    assert result.info["withdrawn_nodes"] == 1
