"""Every method on each device this machine has: the CPU always, CUDA when a GPU is visible (skipped
otherwise). A method run on the device from the same trained model and seeds must predict what it predicts
on the CPU (on the CPU: what a second run predicts, i.e. determinism under a seed). On a GPU machine the
README's test command runs the CUDA cases too.
"""
from __future__ import annotations

import copy
import types

import pytest
import torch
from torch_geometric.data import HeteroData

from graphforget import clock
from graphforget.clock import Stopwatch
from graphforget.data import (EDGE, add_negatives, k_core, make_interactions, on_device, planted_communities,
                              random_edges, random_split)
from graphforget.models import MF, ContrastiveBPRObjective, LightGCN, PyGRecommender, build_model
from graphforget.objectives import BCEObjective, BPRObjective
from graphforget.influence.solvers import direct_solve
from graphforget.train import TrainConfig, train
from graphforget.unlearn import IFRU, METHODS, build_unlearner
from helpers import MeanSAGE

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                                 reason="no CUDA device"))]
TRAINING = TrainConfig(epochs=3, lr=0.05, batch_size=256, patience=0, seed=0)
#: Small settings of the methods that train, so that each case takes about a second.
QUICK = {"sisa": {"num_shards": 2}, "receraser": {"num_shards": 2},
         "unlearnrec": {"pretrain_epochs": 1, "finetune_epochs": 1, "batch_size": 256}}


@pytest.fixture(scope="module")
def trained():
    """A LightGCN trained on the CPU per loss (UnlearnRec needs BPR, SCIF BCE), its graph, test pairs, request."""
    graph = planted_communities(60, 40, num_communities=3, interactions_per_user=10, seed=0)
    split = random_split(graph, (0.8, 0.2, 0.0), seed=0)
    request = random_edges(split.train, 0.05, seed=0)
    models = {}
    for name, objective in (("bce", BCEObjective(l2=1e-2)), ("bpr", BPRObjective(l2=1e-2))):
        model = LightGCN(60, 40, 8, num_layers=2)
        model.reset_parameters(0)
        train(model, split.train, objective, TRAINING)
        models[name] = model, objective
    return models, split, request


def _predictions(method: str, trained, device: str, options: dict | None = None) -> torch.Tensor:
    """``method``'s unlearned model on ``device`` (from the CPU-trained model moved there), its predicted
    probabilities of the held-out pairs, on the CPU; checks that the result lives on the device. (The split holds no
    test pairs: the comparisons were of empty tensors.)"""
    models, split, request = trained
    model, objective = models["bpr" if method == "unlearnrec" else "bce"]
    graph = split.train.clone().to(device)  # PyG's .to() moves in place: the fixture's graph stays on the CPU
    unlearner = build_unlearner(method, copy.deepcopy(model).to(device), graph, objective, options or QUICK.get(method),
                                train=TRAINING, seed=0).fit()
    result = unlearner.unlearn(request.to(device))
    assert all(param.device.type == device for param in result.model.parameters())
    assert result.graph[EDGE].edge_index.device.type == device
    with torch.no_grad():
        scores = torch.sigmoid(result.model(result.graph, split.val[EDGE].edge_index.to(device))).cpu()
    assert scores.numel() == split.val[EDGE].edge_index.size(1) > 0
    return scores


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_on_the_device_predicts_what_it_predicts_on_the_cpu(method, device, trained, one_thread):
    on_cpu = _predictions(method, trained, "cpu")
    on_device = _predictions(method, trained, device)
    assert torch.allclose(on_device, on_cpu, atol=1e-3), float((on_device - on_cpu).abs().max())


@pytest.mark.parametrize("device", DEVICES)
def test_ifru_with_pruning_on_the_device_predicts_what_it_predicts_on_the_cpu(device, trained, one_thread):
    """The pruning's ranking (``select_nodes``) made a CPU tensor: on CUDA it failed with "Expected all tensors to be
    on the same device" (found on an H200; the CPU cases passed)."""
    pruned = {"prune": (1.0, 0.5, 0.5)}
    on_cpu, on_device = (_predictions("ifru", trained, where, pruned) for where in ("cpu", device))
    assert torch.allclose(on_device, on_cpu, atol=1e-3), float((on_device - on_cpu).abs().max())
    assert not torch.allclose(on_cpu, _predictions("ifru", trained, "cpu"), atol=1e-6)  # the pruning changed the step


def test_the_clock_waits_for_the_gpu(monkeypatch):
    # Kernels run asynchronously: a clock that does not synchronise times the launch, not the work.
    calls = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: calls.append(torch.device(device)))
    with Stopwatch("cuda:0") as watch:
        pass
    assert calls == [torch.device("cuda:0")] * 2 and watch.seconds >= 0
    with Stopwatch("cpu"):
        pass
    assert len(calls) == 2


def test_a_reused_clock_times_each_block_alone_and_a_restart_clears_the_last_reading(monkeypatch):
    """Benchmarks reuse one Stopwatch: each block's reading is that block's time (not a running total), start()
    forgets the last reading, and reading the clock before it started is a RuntimeError, not a TypeError."""
    ticks = iter([10.0, 12.0, 20.0, 23.0, 30.0])  # block 1: 10 -> 12, block 2: 20 -> 23, restart at 30
    monkeypatch.setattr(clock, "time", types.SimpleNamespace(perf_counter=lambda: next(ticks)))
    watch = Stopwatch()
    with pytest.raises(RuntimeError, match=r"elapsed\(\) before start\(\)"):
        watch.elapsed()
    with watch:
        pass
    assert watch.seconds == 2.0
    with watch:
        pass
    assert watch.seconds == 3.0
    assert watch.start() is watch and watch.seconds is None and watch.started == 30.0


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("model_name", ["sgl", "simgcl"])
def test_ifru_with_a_contrastive_term_on_the_device(model_name, device, trained, one_thread):
    """IFRU differentiates SGL's and SimGCL's contrastive term (its fixed views drawn on the CPU) on the device
    as on the CPU."""
    _, split, request = trained
    objective = ContrastiveBPRObjective(l2=1e-2, ssl_weight=0.1, seed=0)
    model = build_model(model_name, num_users=60, num_items=40, embedding_dim=8)
    model.reset_parameters(0)
    train(model, split.train, objective, TRAINING)
    predictions = []
    for where in ("cpu", device):
        graph = split.train.clone().to(where)
        result = build_unlearner("ifru", copy.deepcopy(model).to(where), graph, objective).unlearn(request.to(where))
        assert result.info["contrastive"] and result.info["trusted"]
        with torch.no_grad():
            predictions.append(torch.sigmoid(result.model(result.graph, split.test[EDGE].edge_index.to(where))).cpu())
    on_cpu, on_device = predictions
    assert torch.allclose(on_device, on_cpu, atol=1e-3), float((on_device - on_cpu).abs().max())


def _ifru_on(device: str, model, graph, request) -> tuple[torch.Tensor, dict]:
    """Default IFRU run on ``device`` from a copy of the CPU-trained ``model``: its predicted probabilities of every
    training pair (on the CPU) and its ``info``."""
    moved = graph.clone().to(device)
    result = IFRU(copy.deepcopy(model).to(device), moved, BCEObjective()).unlearn(request.to(device))
    assert all(param.device.type == device for param in result.model.parameters())
    with torch.no_grad():
        return torch.sigmoid(result.model(result.graph, moved[EDGE].edge_index)).cpu(), result.info


def _early_stopped_without_l2(model, graph):
    """Adam at lr 0.05, no L2: a model away from stationarity, the case of IFRU's damping="auto"."""
    model.reset_parameters(0)
    train(model, graph, BCEObjective(), TrainConfig(epochs=10, lr=0.05, batch_size=128, patience=0, seed=0))
    return model


@pytest.mark.parametrize("device", DEVICES)
def test_ifru_solves_a_custom_gnns_dense_weights_on_the_device(device, one_thread):
    """The conv weights of a PyG model are in IFRU's solve, each block damped by its own scale, on the device as on
    the CPU (the LightGCN cases have no dense weights)."""
    graph = planted_communities(40, 30, num_communities=2, interactions_per_user=8, seed=0)
    model = _early_stopped_without_l2(PyGRecommender(MeanSAGE(70, width=8), 40, 30, receptive_field=1), graph)
    request = random_edges(graph, 0.05, seed=0)
    (on_cpu, cpu_info), (on_device, info) = (_ifru_on(where, model, graph, request) for where in ("cpu", device))
    assert cpu_info["trusted"] and set(cpu_info["dense_damping"]) == {n for n, _ in model.named_parameters()
                                                                     if "conv" in n}
    assert info["trusted"] and info["dense_damping"].keys() == cpu_info["dense_damping"].keys()
    assert torch.allclose(on_device, on_cpu, atol=1e-3), float((on_device - on_cpu).abs().max())


@pytest.mark.parametrize("device", DEVICES)
def test_ifru_holds_a_stripped_users_row_on_the_device(device, one_thread):
    """The request takes 3/4 of the busiest user's edges from an early-stopped MF: its row is held by its own
    implicit ridge (``stripped_rows``), on the device as on the CPU."""
    graph = planted_communities(40, 30, num_communities=2, interactions_per_user=12, seed=0)
    model = _early_stopped_without_l2(MF(40, 30, 8), graph)
    edge_index = graph[EDGE].edge_index
    user = int(torch.bincount(edge_index[0]).argmax())
    request = edge_index[:, edge_index[0] == user][:, : 3 * int((edge_index[0] == user).sum()) // 4]
    (on_cpu, cpu_info), (on_device, info) = (_ifru_on(where, model, graph, request) for where in ("cpu", device))
    assert cpu_info["trusted"] and cpu_info["stripped_rows"] >= 1
    assert info["trusted"] and info["stripped_rows"] == cpu_info["stripped_rows"]
    assert torch.allclose(on_device, on_cpu, atol=1e-3), float((on_device - on_cpu).abs().max())


# --- a caller's graph stays where it is ---------------------------------------------------------------------------

def _tensors(graph) -> list:
    """Every tensor a graph's stores hold, by identity."""
    return [value for store in graph.stores for value in store.values() if isinstance(value, torch.Tensor)]


def _move_in_place(monkeypatch) -> None:
    """``HeteroData.to`` as PyG runs it across devices, on this CPU: each store of the graph itself gets new tensors
    (a GPU copy in real use), and the graph is returned."""
    monkeypatch.setattr(HeteroData, "to", lambda self, device, *args, **kwargs: self.apply(lambda t: t.clone()))


@pytest.mark.parametrize("device", DEVICES)
def test_k_core_on_the_device(device):
    # its mask of live edges was built on the CPU, whatever the graph's device
    graph = planted_communities(30, 40, num_communities=2, interactions_per_user=8, seed=0)
    expected, core = k_core(graph, 5), k_core(on_device(graph, device), 5)
    assert core[EDGE].edge_index.device.type == device
    assert torch.equal(core[EDGE].edge_index.cpu(), expected[EDGE].edge_index)
    assert 0 < expected[EDGE].edge_index.size(1) < graph[EDGE].edge_index.size(1)  # some edges go, some stay


@pytest.mark.parametrize("device", DEVICES)
def test_a_split_and_its_negatives_on_the_device_are_the_cpus(device):
    """Their masks, seen nodes and drawn negatives were CPU tensors, indexed by or joined with the graph's: both
    failed on a CUDA graph (found by simulating a device on the CPU)."""
    graph = planted_communities(30, 40, num_communities=2, interactions_per_user=8, seed=0)
    on = on_device(graph, device)
    expected, got = random_split(graph, (0.6, 0.2, 0.2), seed=3), random_split(on, (0.6, 0.2, 0.2), seed=3)
    for expected, got in ((expected.train, got.train), (expected.val, got.val), (expected.test, got.test)):
        assert got[EDGE].edge_index.device.type == device
        assert torch.equal(got[EDGE].edge_index.cpu(), expected[EDGE].edge_index)
        assert torch.equal(got["user"].raw_id.cpu(), expected["user"].raw_id)
    expected, got = add_negatives(graph, 2, seed=1), add_negatives(on, 2, seed=1)
    assert got[EDGE].edge_index.device.type == device
    for key in ("edge_index", "edge_label", "observed"):
        assert torch.equal(got[EDGE][key].cpu(), expected[EDGE][key])
    assert int((~expected[EDGE].observed).sum()) == 2 * int((graph[EDGE].edge_label > 0).sum())  # 2 per positive


@pytest.mark.parametrize("device", DEVICES)
def test_negatives_of_a_user_with_most_items_on_the_device_are_the_cpus(device):
    """with_negatives draws a heavy user's negatives exactly, on a CPU generator: its mask was a CPU tensor indexed by
    the graph's ids, which fails on a CUDA graph (qa177, a simulated device)."""
    from graphforget.workflow import with_negatives
    rows = [(0, i, float(i < 4)) for i in range(12)] + [(u, (u + i) % 16, float(i < 2)) for u in range(1, 9)
                                                         for i in range(6)]
    users, items, labels = zip(*rows)
    graph = make_interactions(torch.tensor([users, items]), torch.tensor(labels), 9, 16)  # user 0 has 12 of 16
    expected, got = with_negatives(graph, 1, seed=0), with_negatives(on_device(graph, device), 1, seed=0)
    assert got[EDGE].edge_index.device.type == device
    for key in ("edge_index", "edge_label", "observed"):
        assert torch.equal(got[EDGE][key].cpu(), expected[EDGE][key])
    assert int((expected[EDGE].edge_index[0][~expected[EDGE].observed] == 0).sum()) == 4  # one per positive


@pytest.mark.parametrize("device", DEVICES)
def test_forget_verifies_a_result_on_the_device_against_the_model_before(device, tmp_path):
    """forget verifies each result against the model before, loaded on the CPU, scored on the result's graph: on a
    GPU every forget failed inside the model (qa177, a simulated device). The figures are the CPU's."""
    from graphforget.workflow import fit_on_file, forget
    rows = "".join(f"u{u},m{(u * 7 + i) % 40},{1 + (u + i) % 5}\n" for u in range(30) for i in range(12))
    (tmp_path / "r.csv").write_text("user,item,rating\n" + rows)
    fit_on_file(tmp_path / "r.csv", "csv", user_col="user", item_col="item", label_col="rating", threshold=4,
                out=tmp_path / "base", hparams={"embedding_dim": 8, "train.epochs": 3})
    def forgotten(where: str) -> dict:
        result = forget(tmp_path / "base", out=tmp_path / where, users=["u3"], method="scif", device=where)
        return result.report.to_dict()
    expected = forgotten("cpu")
    got = expected if device == "cpu" else forgotten(device)
    assert expected["request_edges"] > 0 and expected["unchanged"] is False
    for name in ("request_probability", "mia_auc", "mi_ng"):
        assert got[name] == pytest.approx(expected[name], abs=1e-5)


@pytest.mark.parametrize("device", DEVICES)
def test_the_direct_solver_takes_the_minimum_norm_step_of_a_singular_system_on_the_device(device):
    """CUDA's least squares has only the driver gels, which assumes full rank: an undamped row that no remaining term
    reaches makes the curvature singular."""
    matrix = torch.diag(torch.tensor([2.0, 1.0, 0.0], dtype=torch.float64, device=device))
    rhs = torch.tensor([1.0, 1.0, 0.0], dtype=torch.float64, device=device)
    result = direct_solve(lambda v: matrix @ v, rhs)
    assert result.x.device.type == device
    assert torch.allclose(result.x.cpu(), torch.tensor([0.5, 1.0, 0.0], dtype=torch.float64), atol=1e-12)
    assert result.converged


@pytest.mark.parametrize("device", DEVICES)
def test_load_model_puts_the_model_where_map_location_says(device, tmp_path):
    """The tensors were mapped and then copied into a model built on the CPU: map_location='cuda' gave a CPU
    model; CUDA on a machine without it was reported as a corrupt file."""
    from graphforget.models import load_model, save_model
    model = MF(5, 4, 3).double()
    save_model(model, tmp_path / "m.pt")
    loaded, _ = load_model(tmp_path / "m.pt", map_location=device)
    assert {p.device.type for p in loaded.parameters()} == {device}
    assert all(torch.equal(a.cpu(), b) for a, b in zip(loaded.parameters(), model.parameters()))
    indexed, _ = load_model(tmp_path / "m.pt", map_location=f"{device}:0")  # "cpu:0" was called a corrupt file
    assert all(torch.equal(a.cpu(), b) for a, b in zip(indexed.parameters(), model.parameters()))
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="map_location='cuda', but CUDA is not available on this machine"):
            load_model(tmp_path / "m.pt", map_location="cuda")


def test_on_device_moves_a_copy_and_leaves_the_callers_graph():
    graph = planted_communities(6, 6, num_communities=2, interactions_per_user=2, seed=0)
    before = _tensors(graph)
    assert on_device(graph, "cpu") is graph and on_device(graph, torch.device("cpu")) is graph
    moved = on_device(graph, torch.device("meta"))
    assert moved is not graph and all(t.device.type == "meta" for t in _tensors(moved))
    assert moved["user"].num_nodes == graph["user"].num_nodes and moved[EDGE].edge_index.shape == (2, 12)
    after = _tensors(graph)
    assert len(after) == len(before) and all(a is b for a, b in zip(after, before))
    assert all(t.device.type == "cpu" for t in after)


def test_module_on_moves_a_copy_and_leaves_the_callers_model():
    from graphforget.models.base import module_on
    model = MF(5, 4, 3)
    weights = [p for p in model.parameters()]
    assert module_on(model, "cpu") is model
    moved = module_on(model, torch.device("meta"))
    assert moved is not model and all(p.device.type == "meta" for p in moved.parameters())
    assert all(p is q and p.device.type == "cpu" for p, q in zip(model.parameters(), weights))


@pytest.mark.filterwarnings("ignore::graphforget.train.NoSignalWarning")  # one epoch: the graphs are the point
def test_public_functions_do_not_move_the_callers_graphs(monkeypatch):
    from graphforget.presets import Hyperparameters
    from graphforget.protocols.attack import AttackData, run_attack
    from graphforget.workflow import heldout_auc
    graph = planted_communities(30, 20, num_communities=2, interactions_per_user=6, seed=0)
    split = random_split(graph, (0.6, 0.2, 0.2), seed=0)
    request = random_edges(split.train, 0.05, seed=0)
    data = AttackData(split, split.train, request, "tiny", "tiny", 0.05)
    graphs = (split.train, split.val, split.test)
    before = [_tensors(g) for g in graphs]
    _move_in_place(monkeypatch)
    model = LightGCN(30, 20, 4, num_layers=1)
    heldout_auc(model, split.train, split.test)
    run_attack(data, Hyperparameters(embedding_dim=4, train={"epochs": 1}), methods=["retrain"])
    for graph, tensors in zip(graphs, before):
        assert all(a is b for a, b in zip(_tensors(graph), tensors))
