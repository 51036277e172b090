"""graphforget.train and the Retrain unlearner on small seeded planted-community graphs."""
from __future__ import annotations

import copy
import math
import re
import sys
import warnings
from dataclasses import replace

import pytest
import torch

from graphforget.data import (EDGE, attack_flip, edge_subgraph, make_interactions, num_items, num_users,
                              planted_communities, random_edges, random_split)
from graphforget.metrics import evaluate_auc
from graphforget.models import MF, SGL, ContrastiveBPRObjective, LightGCN
from graphforget.objectives import BCEObjective
from graphforget.train import NoSignalWarning, NotStationaryWarning, TrainConfig, TrainResult, train
from graphforget.unlearn import METHODS, Retrain, RetrainConfig, UnlearnResult, build_unlearner
from helpers import case_value, data_parallel_gradient, launch_each, rank_tensors_averaged, train_data_parallel


def split_of(seed: int = 0, num_users: int = 200, num_items: int = 120, num_communities: int = 4,
             interactions_per_user: int = 25):
    graph = planted_communities(num_users=num_users, num_items=num_items, num_communities=num_communities,
                                interactions_per_user=interactions_per_user, seed=seed)
    return random_split(graph, seed=seed)


def fresh(cls, split, seed: int = 0, dim: int = 16, **kwargs):
    model = cls(num_users(split.train), num_items(split.train), dim, **kwargs)
    model.reset_parameters(seed)
    return model


def snapshot(model, graph):
    """Clones of every parameter and every edge tensor, to check later that nothing was mutated."""
    return ({k: v.clone() for k, v in model.state_dict().items()},
            {k: v.clone() for k, v in graph[EDGE].items()})


def assert_unchanged(model, graph, snap):
    params, edges = snap
    for k, v in model.state_dict().items():
        assert torch.equal(v, params[k]), k
    assert set(graph[EDGE].keys()) == set(edges)
    for k, v in graph[EDGE].items():
        assert torch.equal(v, edges[k]), k


@pytest.fixture(scope="module")
def split():
    return split_of()




# --------------------------------------------------------------------------------------------- training

def test_training_lowers_the_objective_and_learns(split, one_thread):
    model = fresh(LightGCN, split, num_layers=2)
    objective = BCEObjective(l2=1e-2)
    with torch.no_grad():
        before = float(objective.total(model, split.train))
        val_before = evaluate_auc(model, split.train, split.val)["auc_0"]
    result = train(model, split.train, objective, TrainConfig(epochs=40, lr=0.05, batch_size=0, patience=10),
                   split.val)
    with torch.no_grad():
        after = float(objective.total(model, split.train))
    assert isinstance(result, TrainResult)
    assert after < 0.9 * before
    assert result.best_val_auc > 0.7 and val_before < 0.6
    assert evaluate_auc(model, split.train, split.test)["auc_0"] > 0.7
    assert [row["epoch"] for row in result.history] == list(range(1, result.epochs + 1))
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    for optimizer in ("adam", "lbfgs"):  # without val there is no validation AUC: NaN, where -1 was averaged in
        alone = train(fresh(MF, split), split.train, objective, TrainConfig(epochs=2, optimizer=optimizer))
        assert math.isnan(alone.best_val_auc) and alone.best_epoch == alone.epochs == 2


def test_training_is_deterministic(split):
    # Default intra-op threads on purpose: multi-threaded CPU kernels must not make training irreproducible.
    # (MF's runs are compared bit for bit in the early-stopping test.)
    cls, kwargs = LightGCN, {"num_layers": 2}
    config = TrainConfig(epochs=2, lr=0.05, batch_size=1024, patience=0, seed=3)
    runs = []
    for _ in range(2):
        model = fresh(cls, split, seed=1, **kwargs)
        result = train(model, split.train, BCEObjective(l2=1e-3), config, split.val)
        runs.append((model.state_dict(), result.history))
    assert runs[0][1] == runs[1][1]
    for k, v in runs[0][0].items():
        assert torch.equal(v, runs[1][0][k]), k
    # Another batch-order seed trains to other weights.
    model = fresh(cls, split, seed=1, **kwargs)
    train(model, split.train, BCEObjective(l2=1e-3), TrainConfig(epochs=2, lr=0.05, batch_size=1024, seed=4))
    assert not torch.equal(model.user_emb.weight, runs[0][0]["user_emb.weight"])


def test_the_progress_bar_counts_an_epochs_batches_too(split, capsys, monkeypatch):
    """One epoch of Gowalla's LightGCN showed 'train: 0/1' for four minutes (a QA probe): an epoch of several batches
    has a bar of its own once it runs BATCH_BAR_DELAY seconds (0 here); an epoch of one batch has none, and no bar is
    drawn without progress."""
    module = sys.modules["graphforget.train"]  # graphforget.train is the function
    monkeypatch.setattr(module, "BATCH_BAR_DELAY", 0)
    edges = split.train[EDGE].edge_index.size(1)
    for batch_size, progress in ((-(-edges // 3), True), (0, True), (-(-edges // 3), False)):
        train(fresh(MF, split), split.train, BCEObjective(), TrainConfig(epochs=2, batch_size=batch_size,
                                                                         progress=progress))
        err = capsys.readouterr().err
        assert ("epoch 2:" in err and "/3 [" in err) == (batch_size > 0 and progress), err  # bars that are not kept
        assert ("train:" in err and "/2 [" in err) == progress, err
    monkeypatch.undo()  # the default delay: an epoch of milliseconds draws none
    train(fresh(MF, split), split.train, BCEObjective(), TrainConfig(epochs=2, batch_size=-(-edges // 3),
                                                                     progress=True))
    assert "epoch 1" not in capsys.readouterr().err


def test_gradients_are_bit_reproducible(split):
    """The scores' backward must add rows in a fixed order with the default (several) threads; advanced
    indexing's backward (index_put_ with accumulate) did not, and failed this in 5 trials out of 5."""
    edges = split.train[EDGE].edge_index.repeat(1, 4)
    upstream = torch.rand(edges.size(1), generator=torch.Generator().manual_seed(0))
    for model, repeats in ((fresh(MF, split), 30), (fresh(LightGCN, split, num_layers=2), 10)):
        grads = []
        for _ in range(repeats):
            model.zero_grad()
            model(split.train, edges).backward(upstream)
            grads.append(torch.cat([model.user_emb.weight.grad, model.item_emb.weight.grad]))
            assert torch.equal(grads[-1], grads[0])


def test_the_epoch_loss_is_the_mean_over_edges_of_the_batch_losses(split, one_thread):
    """history's loss: each mini-batch's loss weighted by its share of the edges (the last batch is smaller)."""
    graph, objective = split.train, BCEObjective(l2=1e-3)
    config = TrainConfig(epochs=2, lr=0.05, batch_size=700, patience=0, seed=1)
    model = fresh(MF, split, seed=3)
    result = train(copy.deepcopy(model), graph, objective, config)
    num_edges = graph[EDGE].edge_index.size(1)
    assert num_edges % 700  # an uneven last batch
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    gen = torch.Generator().manual_seed(config.seed)
    model.train()
    for epoch in (1, 2):
        total = 0.0
        for batch in torch.randperm(num_edges, generator=gen).split(700):
            optimizer.zero_grad()
            loss = objective.batch_loss(model, graph, batch, epoch)
            loss.backward()
            optimizer.step()
            total += float(loss) * batch.numel() / num_edges
        assert result.history[epoch - 1]["loss"] == pytest.approx(total, rel=1e-6)


def test_lbfgs_refuses_a_contrastive_term_it_would_drop():
    """L-BFGS minimises Objective.total(), which leaves SGL's contrastive term out: ssl_weight 0 and 5 trained the
    same weights, bit for bit, without a word."""
    graph = planted_communities(20, 16, 2, 4, seed=0)
    model = SGL(20, 16, 4)
    with pytest.raises(ValueError, match=r"train: L-BFGS minimises ContrastiveBPRObjective's BPR risk alone, not its "
                                         r"contrastive term .*: train with optimizer='adam', or ssl_weight=0"):
        train(model, graph, ContrastiveBPRObjective(ssl_weight=5.0), TrainConfig(epochs=2, optimizer="lbfgs"))
    train(model, graph, ContrastiveBPRObjective(ssl_weight=0.0), TrainConfig(epochs=2, optimizer="lbfgs"))
    # the methods that train with their config refuse it when built, not at their first request; FineTune runs Adam
    lbfgs = TrainConfig(epochs=2, optimizer="lbfgs")
    for method, config in (("retrain", RetrainConfig(lbfgs)), ("sisa", {"train": lbfgs, "num_shards": 2})):
        with pytest.raises(ValueError, match=f"{METHODS[method].__name__}: L-BFGS minimises"):
            METHODS[method](model, graph, ContrastiveBPRObjective(ssl_weight=5.0), config)
    METHODS["finetune"](model, graph, ContrastiveBPRObjective(ssl_weight=5.0), {"train": lbfgs})


def test_early_stopping_restores_the_best_epoch(split, one_thread):
    # A high learning rate without regularisation overfits fast, so validation AUC peaks early.
    config = TrainConfig(epochs=60, lr=0.2, batch_size=0, patience=4, seed=0)
    model = fresh(MF, split, seed=2)
    result = train(model, split.train, BCEObjective(), config, split.val)
    aucs = [row["val_auc"] for row in result.history]
    assert result.epochs < 60 and result.epochs == result.best_epoch + 4  # stopped by patience
    assert result.best_val_auc == max(aucs) == aucs[result.best_epoch - 1]
    assert aucs[-1] < result.best_val_auc
    assert evaluate_auc(model, split.train, split.val)["auc_0"] == result.best_val_auc
    # The restored weights are exactly those after ``best_epoch`` epochs of the same run.
    replay = fresh(MF, split, seed=2)
    train(replay, split.train, BCEObjective(),
          TrainConfig(epochs=result.best_epoch, lr=0.2, batch_size=0, patience=0, seed=0))
    for k, v in model.state_dict().items():
        assert torch.equal(v, replay.state_dict()[k]), k


def _max_gradient(model, graph, objective):
    loss = objective.total(model, graph)
    return max(float(g.abs().max()) for g in torch.autograd.grad(loss, list(model.parameters())))


@pytest.mark.parametrize("cls,kwargs", [(MF, {}), (LightGCN, {"num_layers": 2})])
def test_lbfgs_training_reaches_a_stationary_point(split, one_thread, cls, kwargs):
    objective = BCEObjective(l2=1.0)
    config = TrainConfig(epochs=500, optimizer="lbfgs", tol=3e-3)
    models = [fresh(cls, split, seed=0, **kwargs) for _ in range(2)]
    assert _max_gradient(models[0], split.train, objective) > 0.3  # 100 times the tolerance
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # stationary: no warning
        results = [train(model, split.train, objective, config, split.val) for model in models]
    # stopped before it: said (the history alone had said it)
    with pytest.warns(NotStationaryWarning, match=r"train: L-BFGS stopped after 3 iterations with a largest gradient "
                                                  r"entry of .*, above tol=0.003: the model is not a stationary point, "
                                                  r"where influence functions are exact \(raise epochs\)"):
        train(fresh(cls, split, seed=0, **kwargs), split.train, objective, replace(config, epochs=3), split.val)
    for model, result in zip(models, results):
        assert result.epochs < 500 and result.history[-1]["max_gradient"] <= 3e-3
        assert _max_gradient(model, split.train, objective) <= 3e-3  # measured afresh
        assert result.best_val_auc == evaluate_auc(model, split.train, split.val)["auc_0"]
    for a, b in zip(*(model.parameters() for model in models)):  # deterministic
        assert torch.equal(a, b)


def test_lbfgs_minimises_the_eval_mode_function_a_dropout_drawing_no_masks(split, one_thread):
    """In train mode every closure drew new dropout masks: L-BFGS ran all its iterations on a random objective and
    stopped far above tol, advising more epochs (a QA probe's GATConv with dropout 0.2: 300 iterations, a largest
    gradient entry of 33). It now minimises the served, eval-mode function, and hands back the caller's modes."""
    objective, config = BCEObjective(l2=1.0), TrainConfig(epochs=500, optimizer="lbfgs", tol=3e-3)
    model = fresh(DroppedMF, split, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # stationary: no NotStationaryWarning
        result = train(model, split.train, objective, config)
    assert model.training and result.epochs < 500
    model.eval()
    assert _max_gradient(model, split.train, objective) <= 3e-3


def test_lbfgs_warns_of_any_gradient_above_tol_and_says_whether_epochs_or_precision_stopped_it(split, one_thread):
    """The warning's threshold is tol itself (the test above stops far above it), and its advice is "train in
    float64" where L-BFGS made no more progress before its epochs: its own float32 test held the gradient at tol,
    though it is above it. Each run retraces a first run of 10 iterations, whose largest gradient entry ends at g."""
    objective, config = BCEObjective(l2=1.0), TrainConfig(epochs=10, optimizer="lbfgs", tol=1e-30)
    with pytest.warns(NotStationaryWarning, match=r"after 10 iterations .* \(raise epochs\)$"):
        first = train(fresh(MF, split, seed=0), split.train, objective, config)
    g = first.history[-1]["max_gradient"]
    with pytest.warns(NotStationaryWarning, match=rf"after 10 iterations with a largest gradient entry of {g:.3g}, "
                                                  rf"above tol={g / 2:g}: .* \(raise epochs\)$"):
        again = train(fresh(MF, split, seed=0), split.train, objective, replace(config, tol=g / 2))
    assert again.history == first.history
    with pytest.warns(NotStationaryWarning, match=r"after 10 iterations .* \(it made no more progress: train in "
                                                  r"float64\)$"):
        stuck = train(fresh(MF, split, seed=0), split.train, objective, replace(config, tol=g * (1 - 1e-10), epochs=20))
    assert stuck.epochs == 10 and stuck.history == first.history + first.history[-1:]  # a last step that moved nothing


def test_train_names_an_argument_of_the_wrong_type(split):
    """A config given as a dict (as JSON gives it back) failed with "'dict' object has no attribute 'optimizer'", the
    objective's class for an instance with "check() missing 1 required positional argument"."""
    model = fresh(MF, split, seed=0)
    with pytest.raises(TypeError, match=r"^train: config must be a TrainConfig \(TrainConfig\(\*\*fields\) for a "
                                        r"dict\), got a dict$"):
        train(model, split.train, BCEObjective(), {"epochs": 1})
    with pytest.raises(TypeError, match=r"^train: objective must be an Objective instance, e.g. "
                                        r"BCEObjective\(l2=1.0\), got the class BCEObjective$"):
        train(model, split.train, BCEObjective, TrainConfig(epochs=1))
    # the model's class, an edge_index for a graph, pairs for val: torch's IndexError, a KeyError, a missing argument
    for args, message in (((MF, split.train), "model must be a model instance, .* got the class MF"),
                          ((model, split.train[EDGE].edge_index), "graph must be the interaction graph, a HeteroData "
                                                                  r"\(make_interactions\), got a Tensor"),
                          ((model, split.train, {"user": 1}), "val must be a HeteroData of labelled pairs, or None, "
                                                              "got a dict")):
        with pytest.raises(TypeError, match=f"^train: {message}$"):
            train(*args[:2], BCEObjective(), TrainConfig(epochs=1), *args[2:])


def test_train_refuses_a_pair_stored_twice_and_a_last_step_that_diverged(split):
    """A pair stored twice counted twice (its LightGCN adjacency entry 0.8165, not 0.7071), where Retrain refused it;
    a NaN gradient at the last step left the parameters NaN, without the error a NaN loss raises one epoch later."""
    twice = split.train.clone()
    twice[EDGE].edge_index = torch.cat([split.train[EDGE].edge_index, split.train[EDGE].edge_index[:, :1]], 1)
    twice[EDGE].edge_label = torch.cat([split.train[EDGE].edge_label, split.train[EDGE].edge_label[:1]])
    with pytest.raises(ValueError, match="the training graph holds 1 duplicated"):
        train(fresh(MF, split, seed=0), twice, BCEObjective(), TrainConfig(epochs=1))
    model = fresh(MF, split, seed=0)
    model.user_emb.weight.register_hook(lambda grad: grad * math.nan)
    with pytest.raises(ValueError, match="train: the training loss is nan at epoch 1: lower the learning rate"):
        train(model, split.train, BCEObjective(), TrainConfig(epochs=1, batch_size=0))


def test_lbfgs_stops_where_a_chunk_leaves_the_point_as_it_was():
    """In float32 a stalled L-BFGS took one iteration a chunk, each the same point, until its epochs ran out, and then
    advised raising them; it stops at the first chunk that moves nothing, and says to train in float64."""
    gen = torch.Generator().manual_seed(2)
    keys = torch.randperm(20 * 25, generator=gen)[:200]
    graph = make_interactions(torch.stack([keys // 25, keys % 25]), (torch.rand(200, generator=gen) > 0.3).float(), 20,
                              25)
    model = MF(20, 25, 4)
    model.reset_parameters(7)
    with pytest.warns(NotStationaryWarning, match=r"\(it made no more progress: train in float64\)$"):
        result = train(model, graph, BCEObjective(l2=1.0), TrainConfig(epochs=400, optimizer="lbfgs", tol=1e-7))
    assert result.epochs < 100 and result.history[-1]["loss"] == result.history[-2]["loss"]


def test_training_errors(split):
    for bad in ({"epochs": 0}, {"lr": 0.0}, {"batch_size": -1}, {"patience": -2}, {"optimizer": "sgd"},
                {"tol": 0.0}):
        with pytest.raises(ValueError):
            TrainConfig(**bad)
    empty = make_interactions(torch.zeros(2, 0, dtype=torch.long), num_users=3, num_items=3)
    with pytest.raises(ValueError, match="no edges"):
        train(MF(3, 3, 2), empty, BCEObjective())


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
def test_a_model_without_a_trainable_parameter_is_refused_by_name(split, optimizer):
    """Every parameter frozen: torch's optimizer refused "an empty parameter list", naming neither the model nor why
    (and Retrain, FineTune and SISA passed that on)."""
    model = fresh(MF, split).requires_grad_(False)
    message = r"the model has no trainable parameter \(every requires_grad is False\): nothing to train"
    with pytest.raises(ValueError, match=message):
        train(model, split.train, BCEObjective(), TrainConfig(epochs=1, optimizer=optimizer))
    with pytest.raises(ValueError, match=message):
        Retrain(model, split.train, BCEObjective(), RetrainConfig(TrainConfig(epochs=1))).unlearn(
            random_edges(split.train, 0.01, seed=0))


@pytest.mark.parametrize("method", ["ifru", "scif"])
def test_the_influence_methods_refuse_a_frozen_model_by_name(split, method):
    """A model frozen for serving: IFRU and SCIF moved none of its rows and returned it unchanged, trusted."""
    model = fresh(MF, split).requires_grad_(False)
    unlearner = METHODS[method](model, split.train, BCEObjective())
    with pytest.raises(ValueError, match=rf"^{METHODS[method].__name__}: the model has no trainable parameter .*: "
                                         "the step moves only the trainable ones"):
        unlearner.unlearn(random_edges(split.train, 0.01, seed=0))
    model.requires_grad_(True)  # unfrozen, the same unlearner moves it
    result = unlearner.unlearn(random_edges(split.train, 0.01, seed=0))
    assert not torch.equal(result.model.user_emb.weight, model.user_emb.weight)


class DroppedMF(MF):
    """MF with dropout on its user rows: it draws from torch's global random state in train mode."""

    def __init__(self, num_users, num_items, embedding_dim):
        super().__init__(num_users, num_items, embedding_dim)
        self.drop = torch.nn.Dropout(0.5)

    def embed(self, graph):
        return self.drop(self.user_emb.weight), self.item_emb.weight


def test_a_model_drawing_from_the_global_random_state_trains_the_same_under_the_same_seed(split):
    """A dropout draws from torch's global state: the same TrainConfig.seed gave different models after different
    draws of the caller's. Training seeds that state inside and hands the caller's back as it was."""
    models = []
    for caller_seed in (1, 2):
        model = fresh(DroppedMF, split)  # its construction draws from the global state too
        torch.manual_seed(caller_seed)
        before = torch.get_rng_state()
        train(model, split.train, BCEObjective(l2=0.1), TrainConfig(epochs=2, batch_size=512, seed=3))
        assert torch.equal(torch.get_rng_state(), before)
        models.append(model)
    assert all(torch.equal(a, b) for a, b in zip(models[0].parameters(), models[1].parameters()))
    other = fresh(DroppedMF, split)
    train(other, split.train, BCEObjective(l2=0.1), TrainConfig(epochs=2, batch_size=512, seed=4))
    assert not torch.equal(other.user_emb.weight, models[0].user_emb.weight)


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
def test_training_hands_back_the_modes_it_was_given(split, optimizer):
    """Adam trains in train mode (the dropout on), L-BFGS in eval mode (its objective fixed), and the model came back
    so: an eval-mode model's next scores were dropped out."""
    model = fresh(DroppedMF, split)
    model.eval()
    model.drop.train()  # the caller's own mix
    train(model, split.train, BCEObjective(l2=0.1), TrainConfig(epochs=1, batch_size=512, optimizer=optimizer))
    assert (model.training, model.drop.training) == (False, True)
    model.drop.eval()
    seen = []
    model.drop.register_forward_pre_hook(lambda module, args: seen.append(module.training))
    train(model, split.train, BCEObjective(l2=0.1), TrainConfig(epochs=1, batch_size=512, optimizer=optimizer))
    assert seen and seen[0] == (optimizer == "adam") and not model.training and not model.drop.training


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
def test_a_failed_training_hands_back_the_modes_too(split, optimizer):
    model = fresh(DroppedMF, split)
    model.eval()

    def stop(module, args):
        raise RuntimeError("stop")
    model.drop.register_forward_pre_hook(stop)
    with pytest.raises(RuntimeError, match="stop"):
        train(model, split.train, BCEObjective(l2=0.1), TrainConfig(epochs=1, batch_size=512, optimizer=optimizer))
    assert not model.training and not model.drop.training


@pytest.mark.filterwarnings("ignore::graphforget.train.NoSignalWarning")  # one epoch
def test_validation_pairs_that_are_training_edges_are_warned_of(split):
    """Early stopping on pairs the model trains on was accepted silently (a QA probe); held-out pairs are not warned
    of."""
    train_graph, val = split.train, split.val
    leaked = make_interactions(torch.cat([val[EDGE].edge_index, train_graph[EDGE].edge_index[:, :3]], 1),
                               torch.cat([val[EDGE].edge_label, train_graph[EDGE].edge_label[:3]]),
                               num_users(train_graph), num_items(train_graph))
    model = MF(num_users(train_graph), num_items(train_graph), 4)
    with pytest.warns(RuntimeWarning, match=f"train: 3 of val's {leaked[EDGE].edge_index.size(1)} pairs are training "
                                            "edges: early stopping follows pairs the model trains on"):
        train(model, train_graph, BCEObjective(), TrainConfig(epochs=1), val=leaked)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="train: .* of val's")
        train(model, train_graph, BCEObjective(), TrainConfig(epochs=1), val=val)
    # every method too, when built: IFRU's validation test had refused a step without naming why (qa104), and
    # UnlearnRec's passed on them
    for name, method in METHODS.items():
        with pytest.warns(RuntimeWarning, match=f"{method.__name__}: 3 of val's .* pairs are training edges: its "
                                                "early stopping or validation test follows pairs the model trains on"):
            build_unlearner(name, model, train_graph, BCEObjective(), val=leaked)


def test_a_validation_set_without_both_classes_is_refused_before_training(split):
    """Its AUC is undefined: early stopping would keep no epoch (silently an untrained model before)."""
    train_graph, val = split.train, split.val
    model = MF(num_users(train_graph), num_items(train_graph), 4)
    positives = edge_subgraph(val, (val[EDGE].edge_label == 1).nonzero().flatten())
    with pytest.raises(ValueError, match="val holds only pairs labelled 1: early stopping follows the validation AUC"):
        train(model, train_graph, BCEObjective(), TrainConfig(epochs=2), val=positives)
    with pytest.raises(ValueError, match="val's edge_label must be 0 or 1"):
        relabelled = val.clone()
        relabelled[EDGE].edge_label = relabelled[EDGE].edge_label * 3
        train(model, train_graph, BCEObjective(), TrainConfig(epochs=2), val=relabelled)
    with pytest.raises(ValueError, match="the model has num_users=.* but the val has 2 users"):
        train(model, train_graph, BCEObjective(), TrainConfig(epochs=2),
              val=make_interactions(torch.tensor([[0, 1], [0, 1]]), torch.tensor([1.0, 0.0]), 2, 2))
    repeated = val.clone()  # a pair listed twice: refused after the first epoch, as "the test set"
    repeated[EDGE].edge_index = torch.cat([val[EDGE].edge_index, val[EDGE].edge_index[:, :1]], 1)
    repeated[EDGE].edge_label = torch.cat([val[EDGE].edge_label, val[EDGE].edge_label[:1]])
    before = model.user_emb.weight.clone()
    with pytest.raises(ValueError, match=r"^val holds 1 duplicated \(user, item\) pairs, the first"):
        train(model, train_graph, BCEObjective(), TrainConfig(epochs=2), val=repeated)
    assert torch.equal(model.user_emb.weight, before)


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
def test_a_loss_that_is_not_finite_stops_the_training(split, optimizer):
    model = MF(num_users(split.train), num_items(split.train), 4)
    with torch.no_grad():
        model.item_emb.weight[2, 1] = float("nan")
    remedy = "lower the learning rate" if optimizer == "adam" else "look for a NaN .*L-BFGS's line search takes no"
    with pytest.raises(ValueError, match=f"the training loss is nan at epoch 1: {remedy}"):
        train(model, split.train, BCEObjective(), TrainConfig(epochs=2, optimizer=optimizer))


# --------------------------------------------------------------------------------------------- Retrain

@pytest.fixture(scope="module")
def trained(split):
    model = fresh(LightGCN, split, num_layers=1, dim=8)
    config = TrainConfig(epochs=8, lr=0.05, batch_size=0, patience=0)
    train(model, split.train, BCEObjective(l2=1e-3), config)
    return model, config


def test_retrain_returns_new_objects_and_leaves_the_callers_alone(split, trained):
    model, config = trained
    graph = split.train
    request = random_edges(graph, 0.05, seed=1)
    snap = snapshot(model, graph)
    result = Retrain(model, graph, BCEObjective(l2=1e-3), RetrainConfig(config, seed=5)).unlearn(request)
    assert isinstance(result, UnlearnResult) and result.seconds > 0
    assert result.model is not model and result.graph is not graph
    assert_unchanged(model, graph, snap)
    # The new graph: every edge but the request, in order, with its label.
    pairs = list(map(tuple, graph[EDGE].edge_index.t().tolist()))
    gone = set(map(tuple, request.t().tolist()))
    keep = [p for p, pair in enumerate(pairs) if pair not in gone]
    assert list(map(tuple, result.graph[EDGE].edge_index.t().tolist())) == [pairs[p] for p in keep]
    assert torch.equal(result.graph[EDGE].edge_label, graph[EDGE].edge_label[keep])
    # Retrained from scratch with the given seed: exactly a fresh model trained on the remaining edges.
    expected = fresh(LightGCN, split, seed=5, num_layers=1, dim=8)
    train(expected, result.graph, BCEObjective(l2=1e-3), config)
    for k, v in result.model.state_dict().items():
        assert torch.equal(v, expected.state_dict()[k]), k
    assert result.info["epochs"] == 8
    # Editing the result never reaches the caller's objects.
    with torch.no_grad():
        result.model.user_emb.weight.zero_()
    result.graph[EDGE].edge_label.zero_()
    assert_unchanged(model, graph, snap)


def test_retrain_warm_start_starts_from_the_trained_weights(split, trained):
    model, _ = trained
    request = random_edges(split.train, 0.05, seed=1)
    config = TrainConfig(epochs=1, lr=1e-6, batch_size=0, patience=0)
    warm = Retrain(model, split.train, BCEObjective(), RetrainConfig(config, warm_start=True)).unlearn(request).model
    cold = Retrain(model, split.train, BCEObjective(), RetrainConfig(config)).unlearn(request).model
    assert torch.allclose(warm.user_emb.weight, model.user_emb.weight, atol=1e-5)
    assert not torch.allclose(cold.user_emb.weight, model.user_emb.weight, atol=1e-2)


def test_retrain_empty_request_is_an_exact_copy(split, trained):
    model, config = trained
    snap = snapshot(model, split.train)
    result = Retrain(model, split.train, BCEObjective(), RetrainConfig(config)).unlearn(torch.zeros(2, 0, dtype=torch.long))
    assert result.model is not model and result.info.get("empty")
    for k, v in model.state_dict().items():
        assert torch.equal(result.model.state_dict()[k], v) and result.model.state_dict()[k] is not v
    for k, v in split.train[EDGE].items():
        assert torch.equal(result.graph[EDGE][k], v)
    with torch.no_grad():
        assert torch.equal(result.model(result.graph, split.test[EDGE].edge_index),
                           model(split.train, split.test[EDGE].edge_index))
    assert_unchanged(model, split.train, snap)


def test_retrain_rejects_bad_requests(split, trained):
    model, config = trained
    graph = split.train
    pairs = graph[EDGE].edge_index
    present = set(map(tuple, pairs.t().tolist()))
    absent = next((u, i) for u in range(num_users(graph)) for i in range(num_items(graph)) if (u, i) not in present)
    unlearner = Retrain(model, graph, BCEObjective(), RetrainConfig(config))
    bad_requests = [
        torch.tensor([[absent[0]], [absent[1]]]),          # not an edge
        pairs[:, [3, 4, 3]],                               # duplicate pair
        torch.tensor([[num_users(graph)], [0]]),           # unknown user
        torch.tensor([[0], [num_items(graph)]]),           # unknown item
        pairs[:, :3].t(),                                  # wrong shape
        pairs[:, :2].float(),                              # float ids
    ]
    snap = snapshot(model, graph)
    for request in bad_requests:
        with pytest.raises(ValueError):
            unlearner.unlearn(request)
    assert_unchanged(model, graph, snap)


def test_retrain_beats_the_attacked_original(one_thread):
    """IFRU's attack protocol in miniature: flipped labels hurt MF, retraining without them helps."""
    config = TrainConfig(epochs=100, lr=0.05, batch_size=0, patience=10)
    objective = BCEObjective(l2=1e-2)
    for seed in (0, 1, 2):
        split = split_of(seed, num_users=300, num_items=120, num_communities=3, interactions_per_user=30)
        attacked, flipped = attack_flip(split.train, 0.1, seed=seed)
        original = fresh(MF, split, seed=seed)
        train(original, attacked, objective, config, split.val)
        result = Retrain(original, attacked, objective, RetrainConfig(config, seed=seed), val=split.val).unlearn(flipped)
        auc_original = evaluate_auc(original, attacked, split.test, flipped)
        auc_retrain = evaluate_auc(result.model, result.graph, split.test, flipped)
        for key in ("auc_0", "auc_1", "auc_2"):
            assert auc_retrain[key] > auc_original[key] + 0.02, (seed, key, auc_original, auc_retrain)


def test_training_warns_when_the_validation_auc_stays_at_chance():
    # Shuffled labels carry no preference: the best validation AUC stays within 3 standard errors of 0.5
    # (0.016 with these 1,350 validation pairs) and training says so; the planted labels are learnt, silently.
    graph = planted_communities(300, 120, num_communities=3, interactions_per_user=30, seed=0)
    shuffled = graph.clone()
    labels = graph[EDGE].edge_label
    shuffled[EDGE].edge_label = labels[torch.randperm(labels.numel(), generator=torch.Generator().manual_seed(0))]
    config = TrainConfig(epochs=30, lr=0.05, batch_size=1024, patience=5)
    for data, at_chance in ((shuffled, True), (graph, False)):
        split = random_split(data, (0.7, 0.15, 0.15), seed=0)
        model = MF(300, 120, 16)
        model.reset_parameters(0)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fit = train(model, split.train, BCEObjective(l2=1e-2), config, split.val)
        messages = [str(w.message) for w in caught if "nothing shows that the" in str(w.message)]
        assert bool(messages) == at_chance, (fit.best_val_auc, messages)
        assert (fit.best_val_auc < 0.56) == at_chance


def test_the_chance_warning_shows_digits_enough_to_tell_the_auc_from_the_bound(split):
    """Both were rounded to three places: "the best validation AUC, 0.527 (epoch 3), is under 0.527"."""
    from graphforget.train import warn_if_at_chance, chance_level
    level = chance_level(split.val)
    for best in (level - 1e-2, level - 2e-6):
        shown = 3 if f"{best:.3f}" != f"{level:.3f}" else 6  # the second: equal to three places
        result = TrainResult(epochs=3, best_epoch=3, best_val_auc=best, seconds=0.0, history=[])
        with pytest.warns(NoSignalWarning) as caught:
            warn_if_at_chance(result, split.val)
        auc, bound = re.search(r"AUC, ([\d.]+) \(epoch 3\), is under ([\d.]+),", str(caught[0].message)).groups()
        assert auc != bound and len(auc.split(".")[1]) == len(bound.split(".")[1]) == shown
        assert float(auc) == pytest.approx(best, abs=10 ** -shown)


def test_a_training_result_repr_counts_its_history_rows():
    """The dataclass repr printed every row of the history: 22,562 characters for 300 epochs (a QA probe)."""
    history = [{"epoch": epoch, "loss": 0.5, "val_auc": 0.7} for epoch in range(1, 301)]
    result = TrainResult(epochs=300, best_epoch=120, best_val_auc=0.71234, seconds=3.5, history=history)
    assert repr(result) == ("TrainResult(epochs=300, best_epoch=120, best_val_auc=0.7123, seconds=3.50, "
                            "history=[300 rows])")
    assert result.as_dict()["history"] == history  # the rows are there to read


def test_the_training_warnings_are_named_by_the_package():
    """``graphforget.train`` is the function (``import graphforget.train`` binds it to that name, not the module), so
    ``graphforget.train.NoSignalWarning``, which the docs name, was an AttributeError: the package names them."""
    import graphforget
    assert (graphforget.NoSignalWarning, graphforget.NotStationaryWarning) == (NoSignalWarning, NotStationaryWarning)
    assert graphforget.train is train and {"NoSignalWarning", "NotStationaryWarning"} <= set(graphforget.__all__)


def test_training_says_when_the_validation_pairs_are_too_few_to_tell():
    """With 4 validation pairs 3 standard errors above chance is 1.47: the warning said a best AUC of 1.000 was
    "under 1.47", a bound no AUC can reach."""
    graph = planted_communities(60, 40, num_communities=2, interactions_per_user=10, seed=0)
    split = random_split(graph, (0.8, 0.1, 0.1), seed=0)
    store = split.val[EDGE]
    few = [(store.edge_label == label).nonzero().flatten()[:2] for label in (0, 1)]
    val = edge_subgraph(split.val, torch.cat(few))
    model = MF(60, 40, 8)
    model.reset_parameters(0)
    with pytest.warns(NoSignalWarning, match="train: 4 validation pairs are too few to tell whether the model learnt a "
                                             "preference: chance alone reaches an AUC of 1 within 3 standard errors"):
        train(model, split.train, BCEObjective(l2=1e-2), TrainConfig(epochs=2, batch_size=0), val)


def test_the_training_warnings_point_at_the_callers_line_through_a_method_and_name_an_aggregator():
    """Raised with a fixed stacklevel, the warning of a model that learnt nothing pointed at graphforget's retrain.py
    when Retrain trained it; RecEraser's attention aggregator added a second one that said "train:" alone."""
    from graphforget.unlearn import RecEraser, RecEraserConfig
    graph = planted_communities(60, 40, num_communities=2, interactions_per_user=10, seed=0)
    split = random_split(graph, (0.7, 0.15, 0.15), seed=0)
    model = MF(60, 40, 8)
    model.reset_parameters(0)
    still = TrainConfig(epochs=2, lr=1e-9, batch_size=0, patience=0)  # learns nothing
    request = split.train[EDGE].edge_index[:, :3]
    with pytest.warns(NoSignalWarning, match="^train: the best validation AUC") as caught:
        Retrain(model, split.train, BCEObjective(l2=1e-2), RetrainConfig(still), val=split.val).unlearn(request)
    assert {w.filename for w in caught} == {__file__}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        RecEraser(model, split.train, BCEObjective(l2=1e-2), RecEraserConfig(still, num_shards=2),
                  val=split.val).fit()
    said = [str(w.message) for w in caught if issubclass(w.category, NoSignalWarning)]
    assert any(m.startswith("the ensemble's attention aggregator: the best validation AUC") for m in said), said
    assert not any(m.startswith("train:") for m in said) and {w.filename for w in caught} == {__file__}


def _gradient_case() -> tuple:
    """A LightGCN, its graph, objective and a batch of 96 positions: ``data_parallel_gradient``'s arguments."""
    graph = planted_communities(60, 40, num_communities=3, interactions_per_user=10, seed=0)
    model = LightGCN(60, 40, 8, num_layers=2)
    model.reset_parameters(0)
    positions = torch.randperm(graph[EDGE].edge_index.size(1), generator=torch.Generator().manual_seed(0))[:96]
    return model, graph, BCEObjective(l2=1e-2), positions


def _training_case(model_name: str) -> tuple:
    """A model, its graph, objective, data-parallel config and validation split: ``train_data_parallel``'s
    arguments."""
    graph = planted_communities(60, 40, num_communities=3, interactions_per_user=10, seed=0)
    split = random_split(graph, (0.7, 0.3, 0.0), seed=0)
    model = (MF(60, 40, 8) if model_name == "mf" else LightGCN(60, 40, 8, num_layers=2))
    model.reset_parameters(0)
    config = TrainConfig(epochs=6, lr=0.05, batch_size=64, patience=2, seed=1, data_parallel=True)
    return model, split.train, BCEObjective(l2=1e-2), config, split.val


@pytest.fixture(scope="module")
def two_ranks():
    """The data-parallel cases below run in two ranks, in one launch: rank 0's value per case."""
    return launch_each({"gradient": (data_parallel_gradient, *_gradient_case()), "average": (rank_tensors_averaged,),
                        **{name: (train_data_parallel, *_training_case(name)) for name in ("mf", "lightgcn")}})


@pytest.mark.distributed
def test_distributed_data_parallel_sums_the_ranks_shares_of_a_batch(two_ranks, one_thread):
    # Each rank's loss is its share of the batch, not an estimate of it: DistributedDataParallel, which
    # averages by default, must add the shares up to the whole batch's gradient.
    model, graph, objective, positions = _gradient_case()
    ranks = case_value(two_ranks, "gradient")
    objective.batch_loss(model, graph, positions, 1).backward()
    for param, summed in zip(model.parameters(), ranks):
        assert torch.allclose(summed, param.grad, rtol=1e-5, atol=1e-8)
        assert not torch.allclose(summed / 2, param.grad, rtol=1e-3)


@pytest.mark.distributed
def test_average_across_ranks_sets_each_tensor_to_its_mean(two_ranks):
    """BatchNorm's running statistics after a data-parallel epoch: the test of training with them checks only that the
    ranks agree, which a sum satisfies too."""
    first, second = case_value(two_ranks, "average")  # rank r held [1 + r, 10 r] and 4 (r + 1)
    assert torch.equal(first, torch.tensor([1.5, 5.0])) and torch.equal(second, torch.full((2, 2), 6.0))


@pytest.mark.distributed
@pytest.mark.parametrize("model_name", ["mf", "lightgcn"])
def test_data_parallel_training_on_two_ranks_matches_one_process(two_ranks, model_name, one_thread):
    # Each rank takes every other edge of a batch and the gradients are summed across the ranks: the
    # same updates as one process up to the order of float32 sums, early stopping included.
    double = case_value(two_ranks, model_name)
    single = train_data_parallel(*_training_case(model_name))
    assert [row["epoch"] for row in single[1]] == [row["epoch"] for row in double[1]]
    for key, value in single[0].items():
        assert torch.allclose(value, double[0][key], atol=2e-5), key
    losses = torch.tensor([[row["loss"] for row in run[1]] for run in (single, double)])
    assert torch.allclose(losses[0], losses[1], rtol=1e-5)
    with pytest.raises(ValueError, match="TrainConfig.data_parallel: Adam only"):
        TrainConfig(optimizer="lbfgs", data_parallel=True)


def test_train_checks_the_graph_it_is_given():
    graph = make_interactions(torch.tensor([[0, 1, 2], [0, 1, 2]]), torch.tensor([1., 0., 1.]), 3, 3)
    broken = graph.clone()
    broken[EDGE].edge_index = torch.tensor([[0, 1, 2], [0, 1, 5]])
    with pytest.raises(ValueError, match=r"item id 5 at position 2"):
        train(MF(3, 3, 2), broken, BCEObjective(), TrainConfig(epochs=1))
    del broken[EDGE].edge_label
    broken[EDGE].edge_index = graph[EDGE].edge_index
    with pytest.raises(ValueError, match="the training graph needs an edge_label per edge"):
        train(MF(3, 3, 2), broken, BCEObjective(), TrainConfig(epochs=1))


def test_retrain_early_stops_on_val_as_train_does(split, one_thread):
    """Retrain is ``train`` of a fresh model on the remaining edges with the caller's ``val``: the same early stop and
    restored epoch, bit for bit (without ``val`` it would run every epoch)."""
    original = fresh(MF, split, seed=1)
    config = TrainConfig(epochs=60, lr=0.2, batch_size=0, patience=4, seed=0)  # overfits fast: an early peak
    request = random_edges(split.train, 0.05, seed=2)
    retrain = Retrain(original, split.train, BCEObjective(), RetrainConfig(config, seed=2), val=split.val)
    result = retrain.unlearn(request)
    expected = fresh(MF, split, seed=2)
    reference = train(expected, result.graph, BCEObjective(), config, split.val)
    assert reference.best_epoch + 4 == reference.epochs < 60  # stopped by patience
    assert (result.info["epochs"], result.info["best_epoch"]) == (reference.epochs, reference.best_epoch)
    for k, v in result.model.state_dict().items():
        assert torch.equal(v, expected.state_dict()[k]), k


def test_an_epoch_that_only_ties_the_best_validation_auc_is_no_improvement(one_thread):
    """Patience counts epochs without a *better* validation AUC, and the first best epoch is kept. Here the validation
    pairs join a user and two items that have no training edge (and no L2): their scores, so the AUC, never move,
    every epoch ties epoch 1, and training stops after 1 + patience epochs with epoch 1's weights."""
    edges = torch.tensor([[0, 0, 1, 1, 2, 2, 3, 3], [0, 1, 1, 2, 2, 3, 3, 4]])
    graph = make_interactions(edges, torch.tensor([1., 0.] * 4), num_users=5, num_items=7)
    val = make_interactions(torch.tensor([[4, 4], [5, 6]]), torch.tensor([1., 0.]), num_users=5, num_items=7)
    config = TrainConfig(epochs=10, lr=0.1, batch_size=0, patience=2, seed=0)
    model = MF(5, 7, 4)
    model.reset_parameters(0)
    result = train(model, graph, BCEObjective(), config, val)
    assert len({row["val_auc"] for row in result.history}) == 1  # every epoch ties
    assert (result.epochs, result.best_epoch) == (3, 1)
    replay = MF(5, 7, 4)
    replay.reset_parameters(0)
    train(replay, graph, BCEObjective(), TrainConfig(epochs=1, lr=0.1, batch_size=0, patience=0, seed=0))
    for k, v in model.state_dict().items():
        assert torch.equal(v, replay.state_dict()[k]), k


@pytest.mark.filterwarnings("ignore::graphforget.train.NoSignalWarning")
def test_patience_zero_never_stops_early_even_with_val():
    """patience=0 means never stop early; the validation AUC here never improves (it ties)."""
    edges = torch.tensor([[0, 0, 1, 1, 2, 2, 3, 3], [0, 1, 1, 2, 2, 3, 3, 4]])
    graph = make_interactions(edges, torch.tensor([1., 0.] * 4), num_users=5, num_items=7)
    val = make_interactions(torch.tensor([[4, 4], [5, 6]]), torch.tensor([1., 0.]), num_users=5, num_items=7)
    model = MF(5, 7, 4)
    model.reset_parameters(0)
    result = train(model, graph, BCEObjective(), TrainConfig(epochs=4, lr=0.1, batch_size=0, patience=0), val)
    assert result.epochs == len(result.history) == 4


def test_a_chance_level_between_1_and_1_2_says_the_pairs_are_too_few():
    """4 positive and 4 negative pairs: chance reaches 0.5 + 3 sqrt(9 / 192) = 1.1495 >= 1, an AUC no model
    reaches, so the warning must say the pairs are too few (not 'under 1.150')."""
    from graphforget.train import warn_if_at_chance
    assert 1 <= 0.5 + 3 * math.sqrt((4 + 4 + 1) / (12 * 4 * 4)) < 1.2
    val = make_interactions(torch.tensor([[0, 0, 0, 0, 1, 1, 1, 1], [0, 1, 2, 3, 0, 1, 2, 3]]),
                            torch.tensor([1., 0.] * 4), num_users=2, num_items=4)
    with pytest.warns(NoSignalWarning, match="too few to tell"):
        warn_if_at_chance(TrainResult(3, 2, 0.9, 0.1, []), val)


def test_bce_on_a_graph_without_a_positive_label_is_refused():
    """Every score would only go down: there is no preference to learn."""
    graph = make_interactions(torch.tensor([[0, 0, 1, 1], [0, 1, 1, 2]]), torch.zeros(4), num_users=2, num_items=3)
    with pytest.raises(ValueError, match="every edge_label of the training graph is 0"):
        train(MF(2, 3, 2), graph, BCEObjective(), TrainConfig(epochs=1, batch_size=0, patience=0))
