"""Where model, graph, objective and request meet: the checks that turn silent corruption into clear errors."""
from __future__ import annotations

import pytest
import torch
from torch_geometric.data import HeteroData

from graphforget.data import (EDGE, add_negatives, attack_flip, binarize, make_interactions, planted_communities,
                              random_edges, random_split, remove_edges)
from graphforget.metrics import evaluate_auc
from graphforget.models import MF
from graphforget.objectives import BCEObjective, BPRObjective
from graphforget.train import TrainConfig, train
from graphforget.unlearn import IFRU, Retrain, RetrainConfig, build_unlearner

U, I = 20, 16


@pytest.fixture
def graph():
    """20 users x 16 items, 5 labelled (0/1) edges per user."""
    return planted_communities(num_users=U, num_items=I, num_communities=2, interactions_per_user=5, seed=0)


def _model(num_users=U, num_items=I):
    model = MF(num_users, num_items, 4)
    model.reset_parameters(0)
    return model


def _retrain(model, graph, objective=None):
    return Retrain(model, graph, objective or BCEObjective(), RetrainConfig(TrainConfig(epochs=1, batch_size=0)))


# --------------------------------------------------------------------------------------------- duplicates

def _hand_built(edge_index):
    """A graph built without make_interactions (so its duplicates are not caught at construction)."""
    data = HeteroData()
    data["user"].num_nodes, data["item"].num_nodes = U, I
    data[EDGE].edge_index = edge_index
    data[EDGE].edge_label = torch.ones(edge_index.size(1))
    return data


def test_unlearner_refuses_a_graph_with_duplicate_pairs(graph):
    doubled = _hand_built(torch.tensor([[0, 3, 0, 5], [1, 2, 1, 7]]))  # (0, 1) twice: forgetting it kept a copy
    with pytest.raises(ValueError, match=r"the training graph holds 1 duplicated \(user, item\) pairs, "
                                         r"the first \(0, 1\) at positions 0 and 2"):
        _retrain(_model(), doubled, BPRObjective())
    # Also at unlearn time, when the graph was swapped after construction.
    unlearner = _retrain(_model(), graph)
    unlearner.graph = _hand_built(torch.cat([graph[EDGE].edge_index, graph[EDGE].edge_index[:, :1]], 1))
    with pytest.raises(ValueError, match="1 duplicated"):
        unlearner.unlearn(graph[EDGE].edge_index[:, :1])


@pytest.mark.parametrize("edge_index, message", [
    (torch.tensor([[0.0, 3.0], [1.0, 2.0]]), "edge_index holds integer .* got dtype torch.float32"),
    (torch.tensor([[0, U], [1, 2]]), rf"user id {U} at position 1, outside \[0, num_users\) = \[0, {U}\)"),
    (torch.tensor([[0, 3], [-1, 2]]), r"item id -1 at position 0, outside \[0, num_items\)"),
    (torch.tensor([[0, 3], [1, 2], [0, 0]]), r"edge_index must have shape \[2, E\], got \[3, 2\]"),
    # int32 ids passed every check, then LightGCN's IFRU failed in torch's index_fill_
    (torch.tensor([[0, 3], [1, 2]], dtype=torch.int32),
     r"graph\['user', 'rates', 'item'\].edge_index must have dtype torch.int64, got torch.int32: convert it"),
])
def test_unlearner_refuses_a_hand_built_graph_with_bad_edges(edge_index, message):
    """Caught where the method is built, naming the fault, not as an IndexError inside a method."""
    for method in (IFRU, Retrain):
        with pytest.raises(ValueError, match=message):
            method(_model(), _hand_built(edge_index), BCEObjective())


def test_edges_edited_in_place_after_construction_are_checked_again(graph):
    """The checks that sort every pair run once per version of the edges: an in-place edit is caught."""
    unlearner = IFRU(_model(), graph, BCEObjective())
    unlearner.unlearn(graph[EDGE].edge_index[:, :1])  # unchanged edges: not re-checked, and nothing to find
    labels = unlearner.graph[EDGE].edge_label
    labels.mul_(3)  # in place: labels 0 and 3
    with pytest.raises(ValueError, match=r"edge_label in \{0, 1\}"):
        unlearner.unlearn(graph[EDGE].edge_index[:, :1])
    labels.div_(3)
    unlearner.graph[EDGE].edge_index[:, 1] = unlearner.graph[EDGE].edge_index[:, 0]  # pair 0 now stored twice
    with pytest.raises(ValueError, match="1 duplicated"):
        unlearner.unlearn(graph[EDGE].edge_index[:, 2:3])
    fresh = planted_communities(num_users=U, num_items=I, num_communities=2, interactions_per_user=5, seed=0)
    unlearner.graph = fresh
    unlearner.unlearn(fresh[EDGE].edge_index[:, :1])
    fresh["item"].num_nodes = I - 1  # the edges unchanged, their range not
    with pytest.raises(ValueError, match=rf"item id {I - 1} at position \d+, outside \[0, num_items\)"):
        unlearner.unlearn(fresh[EDGE].edge_index[:, :1])


def test_labels_given_new_data_after_fit_are_refused():
    """A tensor given new data (``label.data = ...``) keeps its version: the state fit() records holds its data
    pointer, and dropping it passed every test of the training graph's side (a QA probe's mutation)."""
    from graphforget.models import LightGCN
    from graphforget.unlearn import UnlearnRec, UnlearnRecConfig
    graph = planted_communities(num_users=60, num_items=40, num_communities=2, interactions_per_user=6, seed=0)
    config = UnlearnRecConfig(pretrain_epochs=1, finetune_epochs=0, batch_size=0, max_loss_increase=None)
    unlearner = UnlearnRec(LightGCN(60, 40, 4), graph, BPRObjective(l2=0.1), config).fit()
    label = graph[EDGE].edge_label
    label.data = label.data.clone()
    label.data[:40] = 0
    with pytest.raises(ValueError, match=r"changed since fit\(\)"):
        unlearner.unlearn(random_edges(graph, 0.05, seed=0))


# --------------------------------------------------------------------------------------------- labels

def test_bce_rejects_labels_outside_0_1(graph):
    rated = make_interactions(graph[EDGE].edge_index, 2 + graph[EDGE].edge_label * 3, U, I)  # ratings 2 and 5
    with pytest.raises(ValueError) as err:
        BCEObjective().check(rated)
    message = str(err.value)
    assert f"got {rated[EDGE].edge_index.size(1)} other labels, e.g. [2.0, 5.0]" in message
    assert "graphforget.data.binarize" in message
    with pytest.raises(ValueError, match=r"edge_label in \{0, 1\}.*binarize"):
        train(_model(), rated, BCEObjective(), TrainConfig(epochs=1))
    with pytest.raises(ValueError, match=r"edge_label in \{0, 1\}.*binarize"):
        _retrain(_model(), rated)
    BCEObjective().check(binarize(rated, 4))  # the hint works
    BPRObjective().check(rated)  # BPR reads label > 0 as a positive: no restriction


def test_bce_on_implicit_feedback_raises_instead_of_a_nan_auc(graph):
    implicit = make_interactions(graph[EDGE].edge_index, None, U, I)
    with pytest.raises(ValueError) as err:
        train(_model(), implicit, BCEObjective(), TrainConfig(epochs=1), val=graph)
    assert "every edge_label of the training graph is 1" in str(err.value)
    assert "add_negatives" in str(err.value) and "BPRObjective" in str(err.value)
    with pytest.raises(ValueError, match="negative labels"):
        train(_model(), implicit, BCEObjective(), TrainConfig(epochs=1, optimizer="lbfgs"))
    result = train(_model(), implicit, BPRObjective(), TrainConfig(epochs=1), val=graph)
    assert result.epochs == 1 and result.history[0]["val_auc"] == result.history[0]["val_auc"]  # not NaN
    # every label 0: each score only went down, and training ran on as if it had learnt something
    negatives = make_interactions(graph[EDGE].edge_index, torch.zeros(graph[EDGE].edge_index.size(1)), U, I)
    with pytest.raises(ValueError, match="positive labels but every edge_label of the training graph is 0"):
        train(_model(), negatives, BCEObjective(), TrainConfig(epochs=1))
    labelled = add_negatives(make_interactions(graph[EDGE].edge_index, None, U, 40), ratio=1)
    assert train(_model(U, 40), labelled, BCEObjective(), TrainConfig(epochs=1)).epochs == 1


# --------------------------------------------------------------------------------------------- requests

@pytest.mark.parametrize("request_, message", [
    (torch.ones(2, 3, dtype=torch.bool), "dtype torch.bool"),  # was read as the ids (1, 1)
    (torch.zeros(2, 3), "dtype torch.float32"),                 # was cast silently
    (torch.zeros(2, 3, dtype=torch.float64), "dtype torch.float64"),
    (torch.zeros(2, 3, dtype=torch.long, device="meta"), "meta device"),
    (None, r"a request is a \[2, R\] tensor \(or nested list\) of \(user, item\) ids, got a NoneType"),
    ("0 1", r"a request is a \[2, R\] tensor .* got a str"),
    ([[0, 1], [2]], r"a request is a \[2, R\] tensor .* got a list"),  # ragged
])
def test_unlearn_rejects_requests_that_are_not_integer_ids(graph, request_, message):
    with pytest.raises(ValueError, match=message):
        _retrain(_model(), graph).unlearn(request_)


def test_an_empty_request_of_python_lists_is_an_empty_request(graph):
    """``[[], []]`` holds no ids, so no dtype: torch reads it as float32, which was refused as "not integer ids"."""
    result = _retrain(_model(), graph).unlearn([[], []])
    assert result.info["empty"] and torch.equal(result.graph[EDGE].edge_index, graph[EDGE].edge_index)
    with pytest.raises(ValueError, match="dtype torch.float32"):  # floats given as such are still refused
        _retrain(_model(), graph).unlearn([[0.0], [1.0]])


# --------------------------------------------------------------------------------------------- sizes

@pytest.mark.parametrize("sizes, message", [
    ((U + 3, I), f"the model has num_users={U + 3} but the graph has {U} users"),
    ((U, I - 1), f"the model has num_items={I - 1} but the graph has {I} items"),
])
def test_model_and_graph_sizes_must_agree(graph, sizes, message):
    with pytest.raises(ValueError, match=message):
        train(_model(*sizes), graph, BCEObjective(), TrainConfig(epochs=1))
    with pytest.raises(ValueError, match=message):
        _retrain(_model(*sizes), graph)
    unlearner = _retrain(_model(), graph)
    unlearner.model = _model(*sizes)
    with pytest.raises(ValueError, match=message):
        unlearner.unlearn(graph[EDGE].edge_index[:, :1])


# --------------------------------------------------------------------------------------------- the caller's model

SHORT = {"ifru": {}, "scif": {}, "receraser": {"num_shards": 2},
         "unlearnrec": {"pretrain_epochs": 1, "finetune_epochs": 1, "max_val_auc_drop": 100.0}}


@pytest.mark.parametrize("method", list(SHORT))
def test_every_submodules_training_flag_is_left_as_the_caller_set_it(graph, method):
    """A model in train mode with a submodule in eval mode (a frozen dropout or norm): scoring it in eval mode
    must restore each submodule's own flag, not set them all to the model's (``model.train(was_training)``)."""
    split = random_split(graph, (0.7, 0.3, 0.0), seed=0)
    objective = BPRObjective(l2=0.1) if method == "unlearnrec" else BCEObjective(l2=0.1)
    model = _model(split.train["user"].num_nodes, split.train["item"].num_nodes)
    model.train()
    model.item_emb.eval()
    flags = [module.training for module in model.modules()]
    unlearner = build_unlearner(method, model, split.train, objective, SHORT[method],
                                train=TrainConfig(epochs=1, batch_size=0), val=split.val).fit()
    assert [module.training for module in model.modules()] == flags
    unlearner.unlearn(random_edges(split.train, 0.05, seed=1))
    assert [module.training for module in model.modules()] == flags
    evaluate_auc(model, split.train, split.val)
    assert [module.training for module in model.modules()] == flags


@pytest.mark.parametrize("method", ["retrain", "finetune", "ifru", "scif", "unlearnrec"])
@pytest.mark.parametrize("caller_training", [True, False])
def test_the_result_comes_back_in_the_callers_modes(graph, method, caller_training):
    """Training leaves a model in train mode: Retrain's and FineTune's results came back so whatever the caller's
    mode, and a served result with a dropout would draw at random."""
    split = random_split(graph, (0.7, 0.3, 0.0), seed=0)
    objective = BPRObjective(l2=0.1) if method == "unlearnrec" else BCEObjective(l2=0.1)
    model = _model(split.train["user"].num_nodes, split.train["item"].num_nodes).train(caller_training)
    model.item_emb.train(not caller_training)
    options = SHORT.get(method, {"finetune": {"epochs": 1}, "retrain": {"seed": 1}}.get(method))
    result = build_unlearner(method, model, split.train, objective, options,
                             train=TrainConfig(epochs=1, batch_size=0)).fit().unlearn(random_edges(split.train, 0.05,
                                                                                                   seed=1))
    assert [m.training for m in result.model.modules()] == [m.training for m in model.modules()]
    assert [m.training for m in model.modules()] == [caller_training, caller_training, not caller_training]


@pytest.mark.parametrize("method", ["retrain", "sisa", "receraser"])
def test_the_methods_that_train_afresh_keep_a_frozen_table_as_it_is(graph, method):
    """A frozen table (fixed item features) was re-drawn by reset_parameters and never trained: the result's
    features were random. Every other method leaves it as it is, as training does."""
    model = _model()
    model.item_emb.weight.requires_grad_(False)
    options = {"seed": 1} if method == "retrain" else {"seed": 1, "num_shards": 2}  # not the model's own draw
    result = build_unlearner(method, model, graph, BCEObjective(l2=0.1), options,
                             train=TrainConfig(epochs=2, batch_size=0)).fit().unlearn(random_edges(graph, 0.05, seed=1))
    trained = [result.model] if method == "retrain" else list(result.model.shards)
    for fresh in trained:
        assert torch.equal(fresh.item_emb.weight, model.item_emb.weight) and not fresh.item_emb.weight.requires_grad
        assert not torch.equal(fresh.user_emb.weight, model.user_emb.weight)  # the trainable table is re-drawn


# --------------------------------------------------------------------------------------------- node attributes

def test_raw_ids_survive_every_edge_edit_and_unlearning(graph):
    graph["user"].raw_id = 1000 + 3 * torch.arange(U)
    graph["item"].raw_id = 5000 + 7 * torch.arange(I)
    request = random_edges(graph, 0.05, seed=1)
    model = _model()
    train(model, graph, BCEObjective(l2=0.1), TrainConfig(epochs=5, batch_size=0))
    implicit = make_interactions(graph[EDGE].edge_index, None, U, 40)
    implicit["user"].raw_id, implicit["item"].raw_id = graph["user"].raw_id, 5000 + 7 * torch.arange(40)
    outputs = {"remove_edges": remove_edges(graph, request), "attack_flip": attack_flip(graph, 0.1)[0],
               "add_negatives": add_negatives(implicit, 1),
               "ifru": IFRU(model, graph, BCEObjective(l2=0.1)).unlearn(request).graph}
    for name, out in outputs.items():
        source = implicit if name == "add_negatives" else graph
        assert torch.equal(out["user"].raw_id, source["user"].raw_id), name
        assert torch.equal(out["item"].raw_id, source["item"].raw_id), name
    assert outputs["ifru"][EDGE].edge_index.size(1) == graph[EDGE].edge_index.size(1) - request.size(1)


# --------------------------------------------------------------------------------------------- quiet

QUIET_SCRIPT = """
import warnings
warnings.simplefilter("always")
import torch
from graphforget.data import attack_flip, planted_communities
from graphforget.models import MF, LightGCN
from graphforget.objectives import BCEObjective, BPRObjective
from graphforget.unlearn import IFRU, UnlearnRec, UnlearnRecConfig
graph = planted_communities(num_users=30, num_items=24, num_communities=2, interactions_per_user=6, seed=0)
graph, request = attack_flip(graph, ratio=0.1, seed=0)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    for model in (MF(30, 24, 4), LightGCN(30, 24, 4)):
        model.reset_parameters(0)
        IFRU(model, graph, BCEObjective(l2=1.0)).unlearn(request)
    config = UnlearnRecConfig(pretrain_epochs=1, finetune_epochs=1, batch_size=0)
    UnlearnRec(model, graph, BPRObjective(l2=1.0), config).fit().unlearn(request)
print([str(w.message) for w in caught if "Sparse" in str(w.message)])
"""


def test_csr_tensors_are_built_without_torch_notices_to_the_user():
    # torch's CSR notices fire once per process: a fresh interpreter sees whether any reaches the caller.
    import subprocess
    import sys
    done = subprocess.run([sys.executable, "-c", QUIET_SCRIPT], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout
