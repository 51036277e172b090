"""Training loops: Adam on mini-batches with early stopping on validation AUC, or full-batch L-BFGS to a
stationary point of the summed objective (what influence functions assume)."""
from __future__ import annotations

import contextlib
import copy
import logging
import math
from dataclasses import asdict, dataclass, field

import torch
from torch_geometric.data import HeteroData
from tqdm.auto import tqdm

from .clock import Stopwatch
from .config import (GraphforgetWarning, check_fields, check_instances, check_types, gradients_on, lr_rule, modes_kept,
                     recheck, warn_caller, wrapped_seed)
from .data.adjacency import hold_graph
from .data.interactions import (EDGE, check_interactions, check_layout, check_model_fits, check_pair_ids,
                                check_pair_tensor, check_unique_pairs, num_items)
from .distributed import agreed, average_across_ranks, data_parallel_loss, rank_and_size, summed_across_ranks
from .metrics import auc_standard_error, check_binary_labels, evaluate_auc, in_graph
from .models.base import check_precision, running_statistics
from .objectives import BCEObjective, Objective

__all__ = ["OPTIMIZERS", "TrainConfig", "TrainResult", "train", "chance_level", "check_val", "NoSignalWarning",
           "NotStationaryWarning"]

#: ``adam``: mini-batches, early stopping; ``lbfgs``: full batch until the gradient vanishes.
OPTIMIZERS = ("adam", "lbfgs")

#: L-BFGS iterations between two convergence checks (one history row each).
LBFGS_CHUNK = 10
#: How many standard errors of a chance AUC the best validation AUC must clear for the model to count as
#: having learnt something (:func:`chance_level`).
CHANCE_MARGIN = 3.0

log = logging.getLogger(__name__)


class NoSignalWarning(GraphforgetWarning):
    """A trained model whose validation AUC does not clear :func:`chance_level`: nothing shows it learnt."""


class NotStationaryWarning(GraphforgetWarning):
    """L-BFGS stopped above its ``tol``: the model is not the stationary point that influence functions need (SISA's
    shards and RecEraser's aggregator, which none reads, leave it out)."""


@dataclass
class TrainConfig:
    """Training hyper-parameters.

    Args:
        epochs: maximum number of epochs (``lbfgs``: of iterations).
        lr: Adam learning rate (``lbfgs`` uses a strong-Wolfe line search and ignores it).
        batch_size: edges per mini-batch (0 = full batch; ``lbfgs`` is always full batch).
        patience: epochs without a better validation AUC before stopping (0 = never stop early;
            ``lbfgs`` never stops early: it runs to stationarity).
        seed: seeds the batch order and, inside the run, torch's global random state (a dropout of the
            user's model draws from it; the caller's state is restored afterwards; with ``data_parallel``, rank
            ``r`` seeds it with ``seed + r``, so that the ranks draw their shares' masks apart). The model's
            initialisation is the caller's, see :meth:`~graphforget.models.Recommender.reset_parameters`. The
            batches are drawn over the edges' positions: the same edges stored in another order are batched
            otherwise, as under another seed (an MF's Retrain moved as far as between seeds 0 and 1; a QA probe).
        progress: show a tqdm bar.
        optimizer: ``adam`` (mini-batch Adam, early stopping on validation AUC) or ``lbfgs`` (full-batch
            L-BFGS on the summed objective divided by :math:`|D|`, until the largest entry of the
            gradient of the summed objective :math:`L` is at most ``tol``): a stationary point, where
            influence functions are exact to first order and retraining from different seeds agrees. Its
            objective is fixed: BPR's negatives are epoch 0's draw, a contrastive term is refused, and the model
            runs in eval mode, the function that is served and that the influence methods differentiate (a dropout
            drew new masks at every evaluation: an MF with one ended 500 iterations at a largest gradient entry of
            4.0, ``tol`` 0.003; a BatchNorm's running statistics are used as they are).
        tol: ``lbfgs``'s gradient tolerance. It bounds :math:`\\nabla L`, whose entries sum the terms of
            one node each, so it means the same on a small graph and a large one (a bound on
            :math:`\\nabla L / |D|` would hold at the initialisation of a large graph already).
        data_parallel: in a ``torch.distributed`` process group, each rank computes the loss terms of its
            share of every mini-batch and ``DistributedDataParallel`` sums the gradients across the ranks
            (:func:`~graphforget.distributed.data_parallel_loss`; every rank ends with the same model, its running
            statistics averaged over the ranks after each epoch). Adam only.
            Every rank must pass the same arguments (``progress`` aside): :func:`train` raises a ValueError on
            every rank when they differ or one rank's fail its checks (:func:`~graphforget.distributed.agreed`).
            ``data_parallel`` itself is the exception: a rank without it trains alone, making no collective call,
            and the others wait in theirs until the process group's timeout.
    """
    epochs: int = 100
    lr: float = 0.01
    batch_size: int = 4096
    patience: int = 10
    seed: int = 0
    progress: bool = False
    optimizer: str = "adam"
    tol: float = 0.05
    data_parallel: bool = False

    def __post_init__(self):
        check_types(self)
        check_fields(self, {"optimizer": (self.optimizer in OPTIMIZERS, f"one of {', '.join(OPTIMIZERS)}"),
                            "epochs": (self.epochs >= 1, "must be >= 1"), "lr": lr_rule(self.lr),
                            "batch_size": (self.batch_size >= 0, "must be >= 0"),
                            "patience": (self.patience >= 0, "must be >= 0"), "tol": (self.tol > 0, "must be > 0"),
                            "data_parallel": (not (self.data_parallel and self.optimizer == "lbfgs"),
                                              "Adam only (L-BFGS is full batch)")})

    def unread_fields(self) -> dict[str, str]:
        """The fields that this config's optimizer does not read, each with why: L-BFGS trains on full batches with a
        line search until ``tol``; Adam stops on the validation AUC, never on ``tol``."""
        if self.optimizer == "lbfgs":
            return dict.fromkeys(("lr", "batch_size", "patience"),
                                 "optimizer='lbfgs' trains on full batches with a line search, until tol")
        return {"tol": "read only with optimizer='lbfgs'"}


@dataclass
class TrainResult:
    """What :func:`train` did: epochs run, the best epoch and its validation AUC (NaN without ``val``: it was -1, an
    AUC that averaged into summaries), seconds, history."""
    epochs: int
    best_epoch: int
    best_val_auc: float
    seconds: float
    history: list = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)

    def __repr__(self) -> str:
        # the history's rows in full ran to 22,000 characters for 300 epochs, printed by a notebook cell ending in
        # train(...): they are counted here, and read from result.history
        return (f"TrainResult(epochs={self.epochs}, best_epoch={self.best_epoch}, "
                f"best_val_auc={self.best_val_auc:.4f}, seconds={self.seconds:.2f}, "
                f"history=[{len(self.history)} rows])")


def train(model: torch.nn.Module, graph: HeteroData, objective: Objective, config: TrainConfig | None = None,
          val: HeteroData | None = None) -> TrainResult:
    """Trains ``model`` in place on every edge of ``graph``; keeps the weights of the best validation epoch (Adam;
    L-BFGS keeps its last iterate, and ``best_epoch``/``best_val_auc`` are that iterate's). Autograd is on inside,
    whatever the caller's mode (``torch.no_grad()``); the model trains in train mode (L-BFGS: in eval mode, see
    :class:`TrainConfig`), and its submodules' modes are restored after.

    Args:
        model: a :class:`~graphforget.models.Recommender` on the graph's device.
        graph: the training interactions.
        objective: the loss (see :mod:`graphforget.objectives`); a contrastive model (SGL, SimGCL) given one with
            no contrastive term (a plain BPRObjective) is warned that it trains as LightGCN.
        config: hyper-parameters.
        val: labelled validation pairs for early stopping (without it all epochs run). A
            :class:`NoSignalWarning` says when the best validation AUC is under :func:`chance_level`; a
            :class:`NotStationaryWarning` when L-BFGS stops above ``config.tol``; a warning when some of its pairs
            are training edges.

    Raises:
        ValueError: when the graph has no edges or stores a pair twice (its term would count twice), the model no
            trainable parameter, its node counts differ from the graph's, the graph's labels do not suit the objective
            (:meth:`~graphforget.objectives.Objective.check`), or the objective is BCE and no edge is labelled 0;
            when ``val`` does not fit the model or lacks pairs labelled 1 or 0 (its AUC, which early stopping
            follows, would be undefined); when the loss becomes NaN or infinite (a learning rate too high, or a
            non-finite value in the parameters); with L-BFGS, an objective with a contrastive term (its closure
            minimises :meth:`~graphforget.objectives.Objective.total`, which leaves the term out).
        TypeError: a ``model`` that is not a module instance, a ``graph`` or ``val`` that is not a ``HeteroData``, an
            ``objective`` that is not an :class:`~graphforget.objectives.Objective` instance (its class, say) or a
            ``config`` that is not a :class:`TrainConfig` (a dict).
    """
    config = TrainConfig() if config is None else config
    _check_types(model, graph, objective, config, val)
    recheck(config)  # a field set after it was built
    check_optimizer(config, objective)
    if config.data_parallel:  # ranks given different inputs would mix them, or wait forever for one that stopped
        # model by its values: DDP starts every rank from rank 0's, and another rank's would be dropped unseen
        agreed("train", lambda: _check_all(model, graph, objective, val), model=model, graph=graph,
               objective=objective, config=config, val=val)
    else:
        _check_all(model, graph, objective, val)
    device = graph[EDGE].edge_index.device
    # each rank draws its share's dropout from its own stream: one seed drew the same masks on every rank
    rng_seed = wrapped_seed(config.seed + rank_and_size()[0]) if config.data_parallel else config.seed
    # modes kept: an eval-mode model came back in train mode (dropout on)
    with hold_graph(model, graph), seeded_global_rng(rng_seed, device), gradients_on(), modes_kept(model):
        run = _train_lbfgs if config.optimizer == "lbfgs" else _train_adam
        result = run(model, graph, objective, config, val)
    if val is not None:
        warn_if_at_chance(result, val)
    return result


#: What an ``objective`` argument must be, for the type checks' messages.
AN_OBJECTIVE = "an Objective instance, e.g. BCEObjective(l2=1.0)"


def _check_types(model, graph, objective, config, val) -> None:
    """``TypeError`` naming the argument that is not what :func:`train` reads (a dict from JSON for the config, the
    objective's or the model's class for an instance, an edge_index tensor for a graph, failed deep inside with an
    AttributeError, an IndexError or a missing argument)."""
    check_instances({"model": (model, torch.nn.Module, "a model instance, e.g. MF(num_users, num_items)"),
                     "graph": (graph, HeteroData, "the interaction graph, a HeteroData (make_interactions)"),
                     "val": (val, (HeteroData, type(None)), "a HeteroData of labelled pairs, or None"),
                     "objective": (objective, Objective, AN_OBJECTIVE),
                     "config": (config, TrainConfig, "a TrainConfig (TrainConfig(**fields) for a dict)")}, "train: ")


@contextlib.contextmanager
def seeded_global_rng(seed: int, device: torch.device):
    """torch's global random state seeded with ``seed`` inside, the caller's restored afterwards: a model that draws
    from it (a dropout) trains the same under the same seed, whatever the caller drew before."""
    cuda = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.default_generator.manual_seed(seed)
        for dev in cuda:
            with torch.cuda.device(dev):
                torch.cuda.manual_seed(seed)
        yield


def chance_level(val: HeteroData) -> float | None:
    r"""The validation AUC a model must beat to show that it learnt a preference: 0.5 plus
    ``CHANCE_MARGIN`` times the spread of the AUC of scores that carry no signal,
    :math:`\sqrt{(n_0 + n_1 + 1) / (12 n_0 n_1)}` (the null variance of the Mann-Whitney statistic, which
    :func:`~graphforget.metrics.auc_standard_error` gives at 0.5). ``None`` when ``val`` lacks a class."""
    labels = val[EDGE].edge_label
    positives = int((labels > 0.5).sum())
    negatives = labels.numel() - positives
    if not positives or not negatives:
        return None
    return 0.5 + CHANCE_MARGIN * auc_standard_error(0.5, positives, negatives)


def warn_if_at_chance(result: TrainResult, val: HeteroData, who: str = "train") -> None:
    """Warns (:class:`NoSignalWarning`, naming ``who`` trained) when the best validation AUC is under
    :func:`chance_level`: nothing shows that the model learnt."""
    level = chance_level(val)
    if level is None or not math.isfinite(result.best_val_auc):
        return
    if level >= 1:  # "under 1.47" would name a bound no AUC reaches
        pairs = val[EDGE].edge_index.size(1)
        warn_caller(f"{who}: {pairs} validation pairs are too few to tell whether the model learnt a preference: "
                    f"chance alone reaches an AUC of 1 within {CHANCE_MARGIN:g} standard errors (the best was "
                    f"{result.best_val_auc:.3f}, epoch {result.best_epoch})", NoSignalWarning)
    elif result.best_val_auc < level:  # digits enough to tell the two apart ("0.527 is under 0.527")
        digits = next((d for d in range(3, 9) if f"{result.best_val_auc:.{d}f}" != f"{level:.{d}f}"), 9)
        warn_caller(f"{who}: the best validation AUC, {result.best_val_auc:.{digits}f} (epoch {result.best_epoch}), "
                    f"is under {level:.{digits}f}, {CHANCE_MARGIN:g} standard errors above chance: nothing shows "
                    "that the model learnt a preference: too few validation pairs to tell, or the training failed "
                    "(check the learning rate, the epochs and the objective's terms, e.g. a contrastive weight)",
                    NoSignalWarning)


#: Seconds an epoch runs before its bar of batches shows (tqdm's ``delay``): quick epochs draw none.
BATCH_BAR_DELAY = 2.0


def _train_adam(model, graph, objective: Objective, config: TrainConfig, val) -> TrainResult:
    """Mini-batch Adam, early-stopping on the validation AUC."""
    num_edges = graph[EDGE].edge_index.size(1)
    device = graph[EDGE].edge_index.device
    gen = torch.Generator().manual_seed(config.seed)
    batch_size = config.batch_size or num_edges
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=config.lr)
    batch_loss = (data_parallel_loss(model, graph, objective) if config.data_parallel
                  else lambda positions, epoch: objective.batch_loss(model, graph, positions, epoch))
    best = (-1.0, 0, None)
    history, clock, stale = [], Stopwatch(device).start(), 0
    bar = tqdm(range(1, config.epochs + 1), disable=not config.progress, desc="train", leave=False)
    model.train()
    batches = -(-num_edges // batch_size)
    for epoch in bar:
        total = torch.zeros((), dtype=torch.float64, device=device)  # read once an epoch: no wait on a GPU per batch
        # a bar of the epoch's batches too, for an epoch that takes a while: one of Gowalla's LightGCN had shown 0/1
        # for four minutes
        for batch in tqdm(torch.randperm(num_edges, generator=gen).to(device).split(batch_size), total=batches,
                          disable=not config.progress or batches < 2, desc=f"epoch {epoch}", leave=False,
                          delay=BATCH_BAR_DELAY):
            optimizer.zero_grad()
            loss = batch_loss(batch, epoch)
            loss.backward()
            optimizer.step()
            total += loss.detach().double() * batch.numel() / num_edges
        if config.data_parallel:  # a BatchNorm over the batch's rows: each rank's statistics are of its share
            average_across_ranks([model.get_buffer(name) for name in running_statistics(model)])
        loss_sum = total.item()
        row = {"epoch": epoch, "loss": _finite_loss(summed_across_ranks(loss_sum) if config.data_parallel else loss_sum,
                                                    epoch)}
        if val is not None:
            row["val_auc"] = evaluate_auc(model, graph, val, what="val")["auc_0"]
            if row["val_auc"] > best[0]:
                best, stale = (row["val_auc"], epoch, copy.deepcopy(model.state_dict())), 0
            else:
                stale += 1
        history.append(row)
        bar.set_postfix({k: f"{v:.4f}" for k, v in row.items() if k != "epoch"})
        if val is not None and config.patience and stale >= config.patience:
            break
    if best[2] is not None:
        model.load_state_dict(best[2])
    _finite_parameters(model, len(history))  # the last step's loss is never computed: it diverged without a word
    seconds = clock.elapsed()
    log.info("trained %d epochs in %.1fs (best epoch %d)", len(history), seconds, best[1])
    if val is None:
        return TrainResult(len(history), len(history), math.nan, seconds, history)
    return TrainResult(len(history), best[1], best[0], seconds, history)


def check_val(model: torch.nn.Module, val: HeteroData) -> None:
    """The validation pairs fit the model and hold both classes (the AUC is undefined without one).

    Raises:
        ValueError: naming what is wrong (node counts, the pairs' shape, dtype or ids, a repeated pair, labels, no
            pair, a single class).
    """
    check_layout(val, "val")  # before its node counts and val[EDGE], which PyG adds to a graph without them
    check_model_fits(model, val, "val")
    pairs = val[EDGE].edge_index
    check_pair_tensor(pairs, "val's edge_index", "P")
    check_pair_ids(pairs, val, "val")
    # here, not after the first epoch, where the AUC's own check named "the test set"
    check_unique_pairs(pairs, num_items(val), "val", advice="list each validation pair once")
    labels = val[EDGE].get("edge_label")
    if labels is None or labels.shape != (pairs.size(1),):
        raise ValueError("val needs an edge_label per pair (1: an interaction, 0: a non-interaction)")
    if labels.numel() == 0:
        raise ValueError("val holds no pairs: pass validation pairs labelled 1 and 0, or val=None")
    check_binary_labels(labels, "val's edge_label")
    positives = int((labels == 1).sum())
    if positives in (0, labels.numel()):
        raise ValueError(f"val holds only pairs labelled {int(positives > 0)}: early stopping follows the validation "
                         "AUC, and so do the acceptance tests that use val, which needs pairs labelled 1 and 0 (add "
                         "sampled non-interactions with graphforget.data.add_negatives, or pass val=None)")


def _finite_parameters(model: torch.nn.Module, epoch: int) -> None:
    """A ``ValueError`` when a trained parameter is NaN or infinite after ``epoch`` (as :func:`_finite_loss`)."""
    if not all(bool(torch.isfinite(p).all()) for p in model.parameters() if p.requires_grad):
        _finite_loss(math.nan, epoch)


def _finite_loss(loss: float, epoch: int, remedy: str = "lower the learning rate, or look for a NaN or an infinity "
                                                         "in the parameters or the objective") -> float:
    """``loss``, or a ``ValueError`` when it is NaN or infinite (the parameters are lost from there on)."""
    if not math.isfinite(loss):
        raise ValueError(f"train: the training loss is {loss} at epoch {epoch}: {remedy}")
    return loss


#: L-BFGS takes no learning rate: a line search sets its steps
LBFGS_REMEDY = ("look for a NaN or an infinity in the parameters or the objective, or train with optimizer='adam' "
                "(L-BFGS's line search takes no learning rate)")


def _check_all(model: torch.nn.Module, graph: HeteroData, objective: Objective, val: HeteroData | None) -> None:
    """The checks of :func:`train`'s arguments (see its Raises)."""
    check_layout(graph, "the training graph")  # before graph[EDGE], which PyG adds to a graph without it
    if graph[EDGE].edge_index.size(1) == 0:
        raise ValueError("the training graph has no edges")
    objective.check_fields()  # as recheck(config): an l2 of -5 set after construction trained
    _check_inputs(model, graph, objective)
    _warn_without_contrast(model, objective)
    if val is not None:
        check_val(model, val)
        warn_if_val_is_trained_on(graph, val)


def warn_if_val_is_trained_on(graph: HeteroData, val: HeteroData, who: str = "train",
                              reads: str = "early stopping follows") -> None:
    """Warns when validation pairs are training edges: early stopping (``who`` and what ``reads`` them) then follows
    pairs the model fits, and says nothing of held-out data (accepted silently, found by a QA probe)."""
    shared = int(in_graph(graph, val[EDGE].edge_index).sum())
    if shared:
        warn_caller(f"{who}: {shared} of val's {val[EDGE].edge_index.size(1)} pairs are training edges: {reads} pairs "
                    "the model trains on (hold them out of the training graph, e.g. graphforget.data.random_split)")


def _check_inputs(model: torch.nn.Module, graph: HeteroData, objective: Objective) -> None:
    """Model/graph sizes, the trainable parameters, and the labels against the objective."""
    check_interactions(graph)
    check_unique_pairs(graph[EDGE].edge_index, num_items(graph), "the training graph")  # as Retrain refuses it
    check_model_fits(model, graph)
    check_precision(model, "train", "train")
    check_trainable(model, "train", "nothing to train")  # torch's optimizer would say "an empty parameter list"
    check_labels_train(graph, objective)


def _warn_without_contrast(model: torch.nn.Module, objective: Objective) -> None:
    """Warns when a contrastive model (SGL, SimGCL) is given an objective with no contrastive term at all (a plain
    BPRObjective): it trains as LightGCN, silently. ``ssl_weight=0`` is a choice and says so itself."""
    if hasattr(model, "fixed_views") and not hasattr(objective, "ssl_weight"):
        warn_caller(f"train: {type(model).__name__} has a contrastive term, but {type(objective).__name__} adds none: "
                    "the model trains as LightGCN. ContrastiveBPRObjective adds it (ssl_weight=0 leaves it out without "
                    "this warning)")


def check_trainable(model: torch.nn.Module, who: str, why: str) -> None:
    """Raises ``ValueError`` for a model without a trainable parameter (a model frozen for serving), naming ``who``
    refuses it and ``why``."""
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError(f"{who}: the model has no trainable parameter (every requires_grad is False): {why}")


def check_optimizer(config: TrainConfig, objective: Objective, who: str = "train") -> None:
    """Raises ``ValueError`` for L-BFGS with a contrastive term: its closure minimises
    :meth:`~graphforget.objectives.Objective.total`, which leaves the term (drawn views) out."""
    if config.optimizer == "lbfgs" and getattr(objective, "ssl_weight", 0) > 0:
        raise ValueError(f"{who}: L-BFGS minimises {type(objective).__name__}'s BPR risk alone, not its contrastive "
                         "term (drawn views): train with optimizer='adam', or ssl_weight=0")


def check_labels_train(graph: HeteroData, objective: Objective, what: str = "the training graph",
                       part: bool = False) -> None:
    """Raises ``ValueError`` when ``objective`` cannot train on ``graph``'s labels: its own check, and for BCE
    at least one negative (else every score goes up and the validation AUC is NaN) and one positive (else every
    score goes down: no preference to learn); ``what`` names the graph. A ``part`` of the data (a shard) is not
    called implicit feedback when it has no negative: the data it was cut from may have them."""
    objective.check(graph)
    objective.check_terms(graph)
    if not isinstance(objective, BCEObjective):
        return
    label = graph[EDGE].edge_label
    if not bool((label == 0).any()):
        raise ValueError(f"BCEObjective needs negative labels but every edge_label of {what} is 1" + ("" if part else
                         " (implicit feedback): add sampled negatives (graphforget.data.add_negatives(graph); the "
                         "command line's --negatives N), or train with BPRObjective"))
    if not bool((label == 1).any()):
        raise ValueError(f"BCEObjective needs positive labels but every edge_label of {what} is 0: there is no "
                         "interaction to learn a preference from")


def _train_lbfgs(model, graph, objective: Objective, config: TrainConfig, val) -> TrainResult:
    """Full-batch L-BFGS on :math:`L(\\theta; D) / |D|` until the largest entry of :math:`\\nabla L`
    is <= ``tol``."""
    num_edges = graph[EDGE].edge_index.size(1)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.LBFGS(params, lr=1, max_iter=LBFGS_CHUNK, history_size=20,
                                  line_search_fn="strong_wolfe", tolerance_grad=config.tol / num_edges,
                                  tolerance_change=0)

    def closure():
        optimizer.zero_grad()
        loss = objective.total(model, graph) / num_edges
        loss.backward()
        return loss

    history, clock, done = [], Stopwatch(graph[EDGE].edge_index.device).start(), 0
    model.eval()  # a fixed objective: the served function, without a dropout's masks (TrainConfig.optimizer)
    with tqdm(total=config.epochs, disable=not config.progress, desc="train (L-BFGS)", leave=False) as bar:
        while done < config.epochs:
            optimizer.param_groups[0]["max_iter"] = min(LBFGS_CHUNK, config.epochs - done)
            optimizer.step(closure)
            iterations = optimizer.state[params[0]]["n_iter"]
            bar.update(iterations - done)
            loss = closure().detach()  # the gradient at the current point, for the stopping test
            gradient = num_edges * max(float(p.grad.abs().max()) for p in params)  # of the summed L
            row = {"epoch": iterations, "loss": _finite_loss(loss.item(), iterations, LBFGS_REMEDY),
                   "max_gradient": gradient}
            if val is not None:
                row["val_auc"] = evaluate_auc(model, graph, val, what="val")["auc_0"]
            history.append(row)
            bar.set_postfix({k: f"{v:.2e}" for k, v in row.items() if k != "epoch"})
            # stationary, or no progress possible: no iteration, or the same point as the last chunk's (in float32 a
            # stalled run took one iteration a chunk until epochs ran out, then advised raising them)
            stalled = len(history) > 1 and (row["loss"], gradient) == (history[-2]["loss"], history[-2]["max_gradient"])
            if gradient <= config.tol or iterations == done or stalled:
                break
            done = iterations
    optimizer.zero_grad(set_to_none=True)
    seconds = clock.elapsed()
    last = history[-1]
    log.info("L-BFGS: %d iterations in %.1fs, max gradient %.1e", last["epoch"], seconds, last["max_gradient"])
    if not last["max_gradient"] <= config.tol:  # else only the history said it: stationarity is why L-BFGS is chosen
        advice = "raise epochs" if last["epoch"] >= config.epochs else "it made no more progress: train in float64"
        warn_caller(f"train: L-BFGS stopped after {last['epoch']} iterations with a largest gradient entry of "
                    f"{last['max_gradient']:.3g}, above tol={config.tol:g}: the model is not a stationary point, "
                    f"where influence functions are exact ({advice})", NotStationaryWarning)
    return TrainResult(last["epoch"], last["epoch"], last.get("val_auc", math.nan), seconds, history)
