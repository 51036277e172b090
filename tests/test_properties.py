"""Property-based tests: on random small graphs and random requests, valid or not, every method either returns
a finite model whose graph is exactly the original minus the request, or refuses with a ValueError/TypeError
that says what is wrong (never a torch-internal error, never a silent wrong result). And the shifted CG that IFRU's
damping attempts share, on random spectra and shifts."""
from __future__ import annotations

import pytest
import torch

hypothesis = pytest.importorskip("hypothesis", reason="hypothesis is not installed (pip install '.[test]')")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from graphforget.data import EDGE, make_interactions, pair_keys  # noqa: E402
from graphforget.influence import ShiftedConjugateGradient  # noqa: E402
from graphforget.models import MF  # noqa: E402
from graphforget.objectives import BCEObjective  # noqa: E402
from graphforget.train import TrainConfig  # noqa: E402
from graphforget.unlearn import build_unlearner  # noqa: E402
from graphforget.verify import _matched  # noqa: E402

TRAIN = TrainConfig(epochs=1, batch_size=0, patience=0)
OPTIONS = {"retrain": {}, "finetune": {"epochs": 1}, "ifru": {}, "scif": {}, "sisa": {"num_shards": 2},
           "receraser": {"num_shards": 2}, "unlearnrec": {"pretrain_epochs": 1, "finetune_epochs": 1}}
#: What a refusal must say: the messages of the library's own checks, not torch's.
#: What a refusal of a valid request must say: that the data left cannot be trained on.
UNTRAINABLE = ("no edges", "no remaining edges", "label", "without data", "two positive training edges")
TORCH_INTERNALS = ("index out of range", "out of bounds", "size mismatch", "Expected all tensors")


@st.composite
def graphs(draw):
    """A random bipartite graph of 2-6 users and 2-6 items, each pair present or not, labels 0/1."""
    users, items = draw(st.integers(2, 6)), draw(st.integers(2, 6))
    pairs = torch.cartesian_prod(torch.arange(users), torch.arange(items)).t()
    present = draw(st.lists(st.booleans(), min_size=pairs.size(1), max_size=pairs.size(1)))
    mask = torch.tensor(present)
    if int(mask.sum()) < 4:  # SISA needs an edge per shard, training needs a few
        mask[:4] = True
    labels = draw(st.lists(st.integers(0, 1), min_size=int(mask.sum()), max_size=int(mask.sum())))
    return make_interactions(pairs[:, mask], torch.tensor(labels, dtype=torch.float), users, items)


@st.composite
def requests(draw, graph):
    """A request: edges of the graph (possibly none), or one of the ways a request goes wrong."""
    edges = graph[EDGE].edge_index
    picks = draw(st.lists(st.integers(0, edges.size(1) - 1), unique=True, max_size=edges.size(1)))
    valid = edges[:, picks] if picks else torch.zeros(2, 0, dtype=torch.long)
    kind = draw(st.sampled_from(["valid", "valid", "duplicate", "unknown id", "non-edge", "float", "shape"]))
    if kind == "duplicate" and picks:
        return torch.cat([valid, valid[:, :1]], 1), kind
    if kind == "unknown id":
        return torch.tensor([[graph["user"].num_nodes], [0]]), kind
    if kind == "non-edge":
        keys = set(pair_keys(edges, graph["item"].num_nodes).tolist())
        absent = [(u, i) for u in range(graph["user"].num_nodes) for i in range(graph["item"].num_nodes)
                  if u * graph["item"].num_nodes + i not in keys]
        if absent:
            return torch.tensor([list(absent[0])]).t(), kind
    if kind == "float":
        return valid.float(), kind
    if kind == "shape":
        return valid.t().reshape(-1, 2) if valid.size(1) != 2 else valid.reshape(1, -1), kind
    return valid, "valid"


def _untrainable(graph, request: torch.Tensor) -> bool:
    """Whether the graph minus the request has no edge, or BCE labels of one class only."""
    keys = pair_keys(graph[EDGE].edge_index, graph["item"].num_nodes)
    keep = ~torch.isin(keys, pair_keys(request, graph["item"].num_nodes))
    return keep.sum() == 0 or graph[EDGE].edge_label[keep].unique().numel() < 2


def _may_refuse(method: str, graph, request: torch.Tensor) -> bool:
    """Whether a valid request may be refused: what is left cannot be trained on (a shard's data for the sharded
    methods; UnlearnRec pre-trains its encoder on pairs of positive edges)."""
    positives = int((graph[EDGE].edge_label > 0).sum())
    return (method in ("sisa", "receraser") or _untrainable(graph, request)
            or (method == "unlearnrec" and positives < 2))


def _check(method: str, graph, request: torch.Tensor, kind: str) -> None:
    model = MF(graph["user"].num_nodes, graph["item"].num_nodes, 4)
    model.reset_parameters(123)  # not Retrain's seed 0: its check would see an unchanged re-initialisation
    unlearner = build_unlearner(method, model, graph, BCEObjective(l2=0.1), OPTIONS[method], train=TRAIN)
    try:
        result = unlearner.fit().unlearn(request)
    except (ValueError, TypeError) as error:
        message = str(error)
        assert message and not any(text in message for text in TORCH_INTERNALS), message
        if kind == "valid":  # only data the method cannot train on may refuse a valid request
            assert _may_refuse(method, graph, request), f"{method} refused a valid request: {message}"
            assert any(text in message for text in UNTRAINABLE), message
        return
    assert kind == "valid", f"{method} accepted a {kind} request"
    assert all(torch.isfinite(p).all() for p in result.model.parameters())
    before = pair_keys(graph[EDGE].edge_index, graph["item"].num_nodes).tolist()
    removed = set(pair_keys(request, graph["item"].num_nodes).tolist())
    after = pair_keys(result.graph[EDGE].edge_index, graph["item"].num_nodes).tolist()
    assert after == [key for key in before if key not in removed]  # exactly the rest, in order
    assert torch.equal(graph[EDGE].edge_index, unlearner.graph[EDGE].edge_index)  # the caller's graph unchanged


@pytest.mark.parametrize("method", list(OPTIONS))
@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_every_method_forgets_exactly_the_request_or_refuses_it(method, data, one_thread):
    graph = data.draw(graphs())
    request, kind = data.draw(requests(graph))
    _check(method, graph, request, kind)


@settings(max_examples=150, deadline=None, derandomize=True)
@given(data=st.data())
def test_matched_non_members_take_free_pairs_and_as_many_as_there_are(data):
    """On random graphs and requests of their edges: every match is a distinct non-edge of the requested edge's user
    (of its item, for an item withdrawn whole), never on the user's side an item the request leaves without an edge
    (withdrawn with its only user too); and each user (item) gets as many matches as it has requested edges or free
    partners, whichever is fewer. (The pairs of a withdrawn item had taken the items their users' other edges needed:
    6 of 150 random graphs.)"""
    graph = data.draw(graphs())
    edges = graph[EDGE].edge_index
    picks = data.draw(st.lists(st.integers(0, edges.size(1) - 1), unique=True, min_size=1, max_size=edges.size(1)))
    request, users, items = edges[:, picks].t().tolist(), graph["user"].num_nodes, graph["item"].num_nodes
    matched, kept, _ = _matched(graph, edges[:, picks], data.draw(st.integers(0, 3)), data.draw(st.integers(1, 4)))
    pairs = set(map(tuple, edges.t().tolist()))
    left = pairs - set(map(tuple, request))
    # whose side each requested edge is matched on: its item's, when the request leaves the item without edges
    # while the user keeps one, else its user's
    side = [("item", i) if all(j != i for _, j in left) and any(v == u for v, _ in left) else ("user", u)
            for u, i in request]
    emptied = {i for _, i in request if all(j != i for _, j in left)}
    matches = matched.t().tolist()
    assert len(set(map(tuple, matches))) == len(matches) and not set(map(tuple, matches)) & pairs
    got = {key: 0 for key in side}
    for (u, i), (kind, _), match in zip([p for p, k in zip(request, kept) if k],
                                        [s for s, k in zip(side, kept) if k], matches):
        assert match[1] == i if kind == "item" else (match[0] == u and match[1] not in emptied)
    for key, k in zip(side, kept.tolist()):
        got[key] += k
    for kind, node in got:
        free = (sum((v, node) not in pairs for v in range(users)) if kind == "item" else
                sum((node, j) not in pairs and j not in emptied for j in range(items)))
        assert got[kind, node] == min(side.count((kind, node)), free), (kind, node)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(size=st.integers(1, 24), log_cond=st.floats(0.0, 6.0), seed=st.integers(0, 2 ** 16),
       shifts=st.lists(st.floats(1e-6, 1e3), max_size=4, unique=True), weighted=st.booleans())
def test_shifted_cg_meets_every_tolerance_it_reports(size, log_cond, seed, shifts, weighted):
    """On a random SPD spectrum (condition up to 1e6) and ladder of shifts, each system asked for in order
    converges by its recursive residual (which decides, without a product), its true residual (weighted when
    weighted) is within 10x of the tolerance, and it agrees with a direct solve within what that residual allows.
    Exact arithmetic would converge in ``size`` iterations; the cap leaves room for rounding."""
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(size, size, generator=gen, dtype=torch.float64))
    spectrum = torch.logspace(0.0, log_cond, size, dtype=torch.float64)
    a, b = q @ torch.diag(spectrum) @ q.t(), torch.randn(size, generator=gen, dtype=torch.float64)
    ones = torch.ones(size, dtype=torch.float64)
    weight = torch.rand(size, generator=gen, dtype=torch.float64) + 0.5 if weighted else ones
    sigmas, tol = [0.0] + sorted(shifts), 1e-8
    family = ShiftedConjugateGradient(lambda v: a @ v, b, sigmas, tol, max_iter=50 * size,
                                      weight=weight if weighted else None)
    eye = torch.eye(size, dtype=torch.float64)
    for j, sigma in enumerate(sigmas):
        result = family.solve(j)
        true = float((weight * (b - (a + sigma * eye) @ result.x)).norm() / (weight * b).norm())
        assert result.converged and true <= 10 * tol and result.residual <= tol
        reference = torch.linalg.solve(a + sigma * eye, b)
        bound = 10 * tol * float(spectrum[-1] + sigma) / float(spectrum[0] + sigma) * 3 ** weighted
        assert float((result.x - reference).norm() / reference.norm()) <= bound
