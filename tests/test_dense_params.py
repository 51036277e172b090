"""NodeRows with dense (non-node) parameters in phi, against hand-written references.

The reference functions below rebuild the model's parameters from phi by hand (no NodeRows.tables) and
run the model's propagation with a dense adjacency matrix (no message passing), so that they check the
curvature operators, ``tables`` and ``rows_function`` independently.
"""
import copy
import warnings

import pytest
import torch
from torch import nn

from graphforget import BCEObjective, BPRObjective
from graphforget.data import make_interactions, propagation_edges
from graphforget.influence import (GaussNewtonOperator, HessianOperator, NodeRows, objective_function, rows_function,
                                   training_terms)
from graphforget.models import MF, EmbeddingRecommender

U, I, D = 6, 5, 3
USERS, ITEMS = [0, 3], [1, 4]  # the selected nodes
DENSE = ("layer_logits", "lin.weight", "lin.bias")  # registration order


class DenseGCN(EmbeddingRecommender):
    """One propagation layer, a Linear + tanh on the propagated embeddings, a learned layer weighting."""

    supports_edge_weight = True
    receptive_field = 1

    def __init__(self, num_users, num_items, embedding_dim):
        super().__init__(num_users, num_items, embedding_dim)
        self.layer_logits = nn.Parameter(torch.zeros(2))
        self.lin = nn.Linear(embedding_dim, embedding_dim)

    def embed(self, graph):
        user, item = self.user_emb.weight, self.item_emb.weight
        edge_index, weight = propagation_edges(graph, user.dtype)  # as the k-hop subgraphs carry them
        w = weight.to(user.dtype)[:, None]
        to_user = torch.zeros_like(user).index_add(0, edge_index[0], w * item.index_select(0, edge_index[1]))
        to_item = torch.zeros_like(item).index_add(0, edge_index[1], w * user.index_select(0, edge_index[0]))
        alpha = torch.softmax(self.layer_logits, 0)
        x = alpha[0] * torch.cat([user, item]) + alpha[1] * self.transform(torch.cat([to_user, to_item]))
        return x.split([self.num_users, self.num_items])

    def transform(self, x):
        return torch.tanh(self.lin(x))


@pytest.fixture
def graph():
    """15 labelled edges; every user has 2-3 items (so BPR has negatives), every item 2-4 users."""
    edge_index = torch.tensor([[0, 0, 0, 1, 1, 2, 2, 2, 3, 3, 4, 4, 4, 5, 5],
                               [0, 1, 3, 1, 2, 0, 2, 4, 3, 4, 0, 1, 4, 2, 3]])
    label = torch.tensor([1., 0., 1., 1., 1., 0., 1., 1., 1., 0., 1., 1., 0., 1., 1.])
    return make_interactions(edge_index, label, U, I)


def _model(seed=0):
    model = DenseGCN(U, I, D).double()
    model.reset_parameters(seed)
    gen = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():  # a generic point: no zero weights, unequal layer weights
        for p in (model.layer_logits, model.lin.weight, model.lin.bias):
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return model


def _mask():
    mask = torch.zeros(U + I, dtype=torch.bool)
    mask[USERS] = True
    mask[[U + i for i in ITEMS]] = True
    return mask


def _reference_logits(model, graph, eli):
    """``phi -> logits of eli``: parameters rebuilt from phi by hand, propagation by a dense matrix."""
    edge_index, weight = propagation_edges(graph, torch.float64)
    adj = torch.zeros(U, I, dtype=torch.float64)
    adj[edge_index[0], edge_index[1]] = weight.double()
    users, items = torch.tensor(USERS), torch.tensor(ITEMS)
    user0, item0 = model.user_emb.weight.detach(), model.item_emb.weight.detach()

    def fn(phi):
        user, item = user0.clone(), item0.clone()
        n_u, n_i = len(USERS) * D, len(ITEMS) * D
        user[users] = phi[:n_u].reshape(len(USERS), D)
        item[items] = phi[n_u:n_u + n_i].reshape(len(ITEMS), D)
        rest = phi[n_u + n_i:]
        logits_, weight_, bias = rest[:2], rest[2:2 + D * D].reshape(D, D), rest[2 + D * D:]
        assert bias.numel() == D
        alpha = torch.exp(logits_) / torch.exp(logits_).sum()
        hu = alpha[0] * user + alpha[1] * torch.tanh((adj @ item) @ weight_.t() + bias)
        hi = alpha[0] * item + alpha[1] * torch.tanh((adj.t() @ user) @ weight_.t() + bias)
        return (hu[eli[0]] * hi[eli[1]]).sum(-1)
    return fn


def _columns(operator, n):
    eye = torch.eye(n, dtype=torch.float64)
    return torch.stack([operator(eye[:, j]) for j in range(n)], 1)


def test_from_node_mask_includes_trainable_dense_parameters():
    model = _model()
    rows = NodeRows.from_node_mask(model, _mask(), U)
    assert rows.dense == DENSE and rows.has_dense
    assert rows.rows["user_emb.weight"].tolist() == USERS and rows.rows["item_emb.weight"].tolist() == ITEMS
    assert rows.numel(model) == (len(USERS) + len(ITEMS)) * D + 2 + D * D + D == rows.gather(model).numel()
    assert repr(rows) == "NodeRows(user_emb.weight: 2, item_emb.weight: 2; dense: layer_logits, lin.weight, lin.bias)"
    model.layer_logits.requires_grad_(False)  # frozen parameters stay out
    assert NodeRows.from_node_mask(model, _mask(), U).dense == ("lin.weight", "lin.bias")
    without = NodeRows.from_node_mask(model, _mask(), U, dense=False)
    assert without.dense == () and not without.has_dense
    with pytest.raises(ValueError):
        NodeRows({"user_emb.weight": torch.tensor([0])}, ("user_emb.weight",))


def test_longest_rows_are_each_tables_longest_row_on_its_entries_and_0_on_dense_ones():
    model = _model()
    rows = NodeRows.from_node_mask(model, _mask(), U)
    longest = rows.longest_rows(model)
    assert longest.shape == (rows.numel(model),)
    users, items = (model.get_parameter(name).detach().norm(dim=1).max() for name in ("user_emb.weight",
                                                                                      "item_emb.weight"))
    expected = torch.cat([users.expand(len(USERS) * D), items.expand(len(ITEMS) * D), torch.zeros(2 + D * D + D)])
    torch.testing.assert_close(longest, expected.to(longest.dtype), rtol=0, atol=0)


def test_tables_returns_dense_views_of_phi():
    model = _model()
    rows = NodeRows.from_node_mask(model, _mask(), U)
    phi = rows.gather(model) + 0.5
    tables = rows.tables(model, phi)
    assert list(tables) == ["user_emb.weight", "item_emb.weight", *DENSE]
    start = (len(USERS) + len(ITEMS)) * D
    for name in DENSE:
        p = model.get_parameter(name)
        assert tables[name].shape == p.shape and tables[name].data_ptr() == phi[start:].data_ptr()
        assert torch.equal(tables[name].flatten(), phi[start:start + p.numel()])
        start += p.numel()
    leaf = phi.clone().requires_grad_(True)
    grad = torch.autograd.grad(rows.tables(model, leaf)["lin.weight"].sum(), leaf)[0]
    assert grad.sum() == D * D and grad[start - D - D * D:start - D].eq(1).all()
    with pytest.raises(ValueError):
        rows.tables(model, phi[:-1])


def test_gather_write_round_trip():
    model = _model()
    rows = NodeRows.from_node_mask(model, _mask(), U)
    same = copy.deepcopy(model)
    rows.write(same, rows.gather(model))
    for (name, a), (_, b) in zip(model.state_dict().items(), same.state_dict().items()):
        assert torch.equal(a, b), name
    # A modified phi changes exactly the selected rows and the dense parameters.
    phi = rows.gather(model) + torch.arange(rows.numel(model), dtype=torch.float64) + 1.0
    changed = copy.deepcopy(model)
    rows.write(changed, phi)
    assert torch.equal(rows.gather(changed), phi)
    for name, node_type in model.node_parameters().items():
        selected = torch.zeros(U if node_type == "user" else I, dtype=torch.bool)
        selected[rows.rows[name]] = True
        old, new = model.get_parameter(name), changed.get_parameter(name)
        assert torch.equal(old[~selected], new[~selected])
        assert (old[selected] != new[selected]).all()
    for name in DENSE:
        assert (model.get_parameter(name) != changed.get_parameter(name)).all()


@pytest.mark.parametrize("objective", [BCEObjective(l2=0.3), BPRObjective(l2=0.3, seed=1)])
def test_hessian_with_dense_parameters_matches_autograd(graph, objective):
    model = _model()
    rows = NodeRows.from_node_mask(model, _mask(), U)
    terms = training_terms(objective, graph)
    eli, target = objective.pairs(graph)
    assert torch.equal(eli, terms.edge_label_index)
    logits = _reference_logits(model, graph, eli)
    x = rows.gather(model) + 0.05 * torch.randn(rows.numel(model), generator=torch.Generator().manual_seed(3),
                                                dtype=torch.float64)
    # The functional model equals the hand-written one (and the model itself at the stored point).
    scored = rows_function(model, rows, lambda score: score(graph, eli))
    torch.testing.assert_close(scored(x), logits(x), rtol=0, atol=1e-12)
    torch.testing.assert_close(logits(rows.gather(model)), model(graph, eli), rtol=0, atol=1e-12)

    def reference(phi):
        return objective.losses(logits(phi), target).sum() + 0.5 * objective.l2 * phi.pow(2).sum()

    hessian = torch.autograd.functional.hessian(reference, x)
    for locality in (True, False):
        fn = objective_function(model, objective, terms, graph, rows, locality=locality)
        torch.testing.assert_close(fn(x), reference(x), rtol=0, atol=1e-10)
        operator = HessianOperator(fn, x, damping=0.5)
        torch.testing.assert_close(_columns(operator, x.numel()), hessian + 0.5 * torch.eye(x.numel(), dtype=x.dtype),
                                   rtol=0, atol=1e-10)
    # The dense block is not zero: the dense parameters do carry curvature.
    n_rows = (len(USERS) + len(ITEMS)) * D
    assert hessian[n_rows:, n_rows:].abs().max() > 1e-3 and hessian[:n_rows, n_rows:].abs().max() > 1e-3


@pytest.mark.parametrize("objective", [BCEObjective(l2=0.2), BPRObjective(l2=0.2, seed=1)])
def test_gauss_newton_with_dense_parameters_matches_jacobian_product(graph, objective):
    model = _model(1)
    rows = NodeRows.from_node_mask(model, _mask(), U)
    terms = training_terms(objective, graph)
    x = rows.gather(model)
    logits = _reference_logits(model, graph, terms.edge_label_index)
    loss = lambda z: objective.losses(z, terms.target).sum()  # noqa: E731
    jac = torch.autograd.functional.jacobian(logits, x)
    hz = torch.autograd.functional.hessian(loss, logits(x))
    reference = jac.t() @ hz @ jac + 0.2 * torch.eye(x.numel(), dtype=x.dtype)
    operator = GaussNewtonOperator(rows_function(model, rows, lambda score: score(graph, terms.edge_label_index)),
                                   loss, x, l2=0.2)
    torch.testing.assert_close(_columns(operator, x.numel()), reference, rtol=0, atol=1e-10)


@pytest.mark.filterwarnings("error::UserWarning")
def test_dense_parameters_left_out_of_the_step_raise_no_torch_warning(graph):
    """With dense=False the acceptance test evaluated the objective with autograd on for the dense parameters it
    leaves fixed: torch warned 'Converting a tensor with requires_grad=True to a scalar' (found by a probe)."""
    from graphforget.unlearn import IFRU, IFRUConfig
    model = _model()
    result = IFRU(model, graph, BCEObjective(l2=1.0), IFRUConfig(dense=False)).unlearn(torch.tensor([[0], [0]]))
    assert result.info["trusted"] and torch.equal(result.model.lin.weight, model.lin.weight)


def test_mf_has_no_dense_parameters():
    model = MF(U, I, D).double()
    model.reset_parameters(0)
    rows = NodeRows.from_node_mask(model, _mask(), U)
    assert rows.dense == () and not rows.has_dense
    assert repr(rows) == "NodeRows(user_emb.weight: 2, item_emb.weight: 2)"
    expected = torch.cat([model.user_emb.weight.detach()[USERS].flatten(), model.item_emb.weight.detach()[ITEMS].flatten()])
    assert torch.equal(rows.gather(model), expected) and rows.numel(model) == expected.numel()
    assert list(rows.tables(model, expected)) == ["user_emb.weight", "item_emb.weight"]


@pytest.mark.parametrize("method", ["ifru", "scif"])
def test_a_frozen_node_table_stays_out_of_phi_as_a_frozen_dense_parameter_does(method):
    """``requires_grad=False`` keeps a parameter as it is in training (and FineTune) and a dense one out of phi;
    IFRU and SCIF stepped the rows of a frozen node table all the same."""
    from graphforget.data import planted_communities, random_edges
    from graphforget.unlearn import METHODS

    graph = planted_communities(num_users=30, num_items=20, num_communities=2, interactions_per_user=6, seed=0)
    model = MF(30, 20, 4)
    model.reset_parameters(0)
    model.item_emb.weight.requires_grad_(False)  # e.g. fixed item features
    request = random_edges(graph, 0.05, seed=1)
    result = METHODS[method](model, graph, BCEObjective(l2=0.1)).unlearn(request)
    assert torch.equal(result.model.item_emb.weight, model.item_emb.weight)
    assert not result.model.item_emb.weight.requires_grad
    assert (result.model.user_emb.weight != model.user_emb.weight).any()  # the trainable table still steps
    rows = NodeRows.from_node_mask(model, torch.ones(50, dtype=torch.bool), 30)
    assert rows.rows["item_emb.weight"].numel() == 0 and rows.rows["user_emb.weight"].numel() == 30


class _ScaledGCN(DenseGCN):
    """DenseGCN (float32) with a float64 score temperature."""

    def __init__(self, *args):
        super().__init__(*args)
        self.scale = nn.Parameter(torch.ones((), dtype=torch.float64))

    def forward(self, graph, edge_label_index):
        return super().forward(graph, edge_label_index) * self.scale


class _WideLinearGCN(DenseGCN):
    """DenseGCN whose Linear may be wider than its tables: the layer computes in its own dtype (cast at its ends)."""

    def transform(self, x):
        return torch.tanh(self.lin(x.to(self.lin.weight.dtype))).to(x.dtype)


@pytest.mark.parametrize("method", ["ifru", "scif"])
@pytest.mark.parametrize("widest", ["lin", "scale"])
def test_a_model_of_float32_tables_and_a_float64_layer_unlearns_in_each_parameters_dtype(method, widest):
    """phi takes the widest dtype of its parameters: IFRU and SCIF solved for a float32 table and a float64 Linear,
    then failed writing the float64 rows into the float32 table ("Index put requires the source and destination dtypes
    match"); beside a float64 scalar, the float32 Linear ran in float64 ("mat1 and mat2 must have the same dtype")."""
    from graphforget.data import planted_communities, random_edges
    from graphforget.unlearn import METHODS

    graph = planted_communities(num_users=30, num_items=20, num_communities=2, interactions_per_user=6, seed=0)
    request, objective = random_edges(graph, 0.05, seed=1), BCEObjective(l2=0.1)
    mixed = _WideLinearGCN(30, 20, 4) if widest == "lin" else _ScaledGCN(30, 20, 4)
    mixed.reset_parameters(0)
    if widest == "lin":
        mixed.lin.double()
    wide = copy.deepcopy(mixed).double()  # the reference: every parameter in float64
    # untrained: every step goes past the initial rows, and the bound on them (max_row_growth) would hold rows whose
    # length differs across dtypes in the last digits by different amounts
    config = {"solver": {"max_row_growth": None}}
    result, reference = (METHODS[method](model, graph, objective, config).unlearn(request) for model in (mixed, wide))
    assert result.info["trusted"] and reference.info["trusted"]
    for name, parameter in result.model.named_parameters():
        assert parameter.dtype == mixed.get_parameter(name).dtype, name
        expected = reference.model.get_parameter(name)
        step = float((expected - wide.get_parameter(name)).abs().max())
        assert step > 1e-3, name  # the step moved it
        # float32 against float64: under 3e-5 of the step's largest entry here (1.2e-4 apart once, on a step of ~5;
        # 1.02e-3 of a step of 0.013 in a full run on a busy machine, where OpenMP may split reductions otherwise)
        torch.testing.assert_close(parameter.double(), expected, rtol=0, atol=max(2e-3 * step, 2e-5))


class _SharedLinear(EmbeddingRecommender):
    """MF through one Linear on both sides: held once, under a second name (``self.lin_i = self.lin_u``), or as
    two Linears whose parameters are tied. The three compute the same function of the same parameters."""

    receptive_field = 0

    def __init__(self, num_users, num_items, embedding_dim, held):
        super().__init__(num_users, num_items, embedding_dim)
        self.lin_u = nn.Linear(embedding_dim, embedding_dim)
        if held == "aliased":
            self.lin_i = self.lin_u
        elif held == "tied":
            self.lin_i = nn.Linear(embedding_dim, embedding_dim)
            self.lin_i.weight, self.lin_i.bias = self.lin_u.weight, self.lin_u.bias

    def embed(self, graph):
        return self.lin_u(self.user_emb.weight), getattr(self, "lin_i", self.lin_u)(self.item_emb.weight)


class _BiasMF(MF):
    """MF plus a per-user and a per-item bias table, ``[n]`` or ``[n, 1]``."""

    def __init__(self, num_users, num_items, embedding_dim, flat):
        super().__init__(num_users, num_items, embedding_dim)
        self.user_bias = nn.Parameter(torch.zeros(num_users) if flat else torch.zeros(num_users, 1))
        self.item_bias = nn.Parameter(torch.zeros(num_items) if flat else torch.zeros(num_items, 1))

    def node_parameters(self):
        return {**super().node_parameters(), "user_bias": "user", "item_bias": "item"}

    def forward(self, graph, edge_label_index):
        user, item = edge_label_index
        bias = self.user_bias[user].flatten() + self.item_bias[item].flatten()
        return super().forward(graph, edge_label_index) + bias


def _trained_variants(make, variants, objective):
    """``{variant: model}`` holding the parameters of the first variant trained briefly (float64), and the graph
    and a request."""
    from graphforget import TrainConfig, train
    from graphforget.data import planted_communities, random_edges

    graph = planted_communities(num_users=30, num_items=20, num_communities=2, interactions_per_user=6, seed=0)
    models = {variant: make(variant).double() for variant in variants}
    first = models[variants[0]]
    train(first, graph, objective, TrainConfig(epochs=20, lr=0.05, batch_size=0, patience=0))
    for model in models.values():
        with torch.no_grad():
            for (name, p), (_, q) in zip(first.named_parameters(), model.named_parameters()):
                q.copy_(p.reshape(q.shape))
    return models, graph, random_edges(graph, 0.05, seed=1)


def test_a_module_held_twice_or_tied_is_stepped_as_the_module_held_once():
    """IFRU on a model whose Linear was registered under two names raised ``weight is not an nn.Parameter`` and
    left a non-leaf tensor in the caller's model in place of the parameter (torch's ``tie_weights`` swapped the
    module twice); every later method then failed to copy it."""
    from graphforget.unlearn import IFRU

    objective = BCEObjective(l2=0.1)
    models, graph, request = _trained_variants(lambda held: _SharedLinear(30, 20, 4, held),
                                               ("once", "aliased", "tied"), objective)
    before = {variant: copy.deepcopy(model.state_dict()) for variant, model in models.items()}
    results = {variant: IFRU(model, graph, objective).unlearn(request) for variant, model in models.items()}
    expected = dict(results["once"].model.named_parameters())
    assert (expected["lin_u.weight"] != models["once"].lin_u.weight).any()  # the dense weights step
    for variant, model in models.items():
        assert all(type(p) is nn.Parameter for p in model.parameters()), variant
        assert all(torch.equal(model.state_dict()[k], v) for k, v in before[variant].items()), variant
        for name, p in results[variant].model.named_parameters():
            torch.testing.assert_close(p, expected[name], rtol=0, atol=1e-10, msg=f"{variant} {name}")


def test_a_flat_node_table_is_stepped_as_its_one_column_table():
    """A ``[n]`` per-node table (a bias) failed in IFRU with ``IndexError: Dimension out of range`` (a row's
    size was read as ``size(1)``); it is the ``[n, 1]`` table's problem, flattened."""
    from graphforget.unlearn import IFRU

    objective = BCEObjective(l2=0.1)
    models, graph, request = _trained_variants(lambda flat: _BiasMF(30, 20, 4, flat), (False, True), objective)
    column, flat = (IFRU(models[flat], graph, objective).unlearn(request).model for flat in (False, True))
    assert (column.user_bias != models[False].user_bias).any()
    for name, p in column.named_parameters():
        torch.testing.assert_close(flat.get_parameter(name).flatten(), p.flatten(), rtol=0, atol=1e-10, msg=name)


def test_dense_weights_widen_the_terms_of_a_model_without_message_passing_to_every_term():
    """A model of receptive field 0 whose dense weights score every pair: IFRU's undamped step is the Newton step of
    the Gauss-Newton matrix of every remaining term, built from their Jacobian, in the rows of the request's users
    and items and the dense weights. Taken over the terms at the request's nodes alone (the nodes a model without
    dense weights reaches), the weights' block would miss most of the data."""
    from torch.func import functional_call

    from graphforget.data import EDGE, without_edges
    from graphforget.unlearn import IFRU, IFRUConfig, UntrustedWarning

    objective = BCEObjective(l2=0.1)
    models, graph, request = _trained_variants(lambda held: _SharedLinear(30, 20, 4, held), ("once",), objective)
    model = models["once"]
    config = IFRUConfig(solver={"damping": 0.0, "tol": 1e-10, "max_iter": 200}, newton={"steps": 1},
                        trust={"retries": 0, "on_failure": "apply"})  # the step as solved, whatever its test says
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UntrustedWarning)  # a briefly trained model: the full step need not descend
        result = IFRU(model, graph, objective, config).unlearn(request)
    assert result.info["damping"] == 0

    users, items = request[0].unique(), request[1].unique()
    names = ("user_emb.weight", "item_emb.weight", "lin_u.weight", "lin_u.bias")
    base = {name: model.get_parameter(name).detach() for name in names}
    sizes = [users.numel() * 4, items.numel() * 4, 16, 4]
    p0 = torch.cat([base["user_emb.weight"][users].flatten(), base["item_emb.weight"][items].flatten(),
                    base["lin_u.weight"].flatten(), base["lin_u.bias"]])

    def parameters(p):
        user_rows, item_rows, weight, bias = p.split(sizes)
        return {"user_emb.weight": base["user_emb.weight"].index_put((users,), user_rows.view(-1, 4)),
                "item_emb.weight": base["item_emb.weight"].index_put((items,), item_rows.view(-1, 4)),
                "lin_u.weight": weight.view(4, 4), "lin_u.bias": bias}

    def scores(p, edges):
        return functional_call(model, parameters(p), (edges, edges[EDGE].edge_index))

    def loss(p, edges):
        labels = edges[EDGE].edge_label.double()
        return torch.nn.functional.binary_cross_entropy_with_logits(scores(p, edges), labels, reduction="sum")
    remaining = without_edges(graph, request)[0]
    jacobian = torch.autograd.functional.jacobian(lambda p: scores(p, remaining), p0)
    sigma = torch.sigmoid(scores(p0, remaining)).detach()
    gauss_newton = jacobian.t() @ ((sigma * (1 - sigma))[:, None] * jacobian) + 0.1 * torch.eye(p0.numel())
    p = p0.clone().requires_grad_(True)
    gradient = torch.autograd.grad(loss(p, graph) - loss(p, remaining), p)[0]  # the removed terms' gradient
    expected = parameters(p0 + torch.linalg.solve(gauss_newton, gradient))
    for name in names:  # a step of up to 4.9 (the user rows), within 7e-8 here
        torch.testing.assert_close(result.model.get_parameter(name).detach(), expected[name], rtol=0, atol=1e-6)
