"""IFRU data-parallel over the loss terms (``IFRUConfig.data_parallel``): two gloo ranks against one process.

Each rank sums its half of the terms; one all-reduce per curvature product, gradient and objective value
adds the halves. The numbers differ from one process's only by the order of the float sums (a sum split in
two, then added, is rounded differently from one running sum), so the parameters agree to a tolerance, not
bit for bit; the two ranks agree with each other bit for bit (they hold the same reduced numbers).

CG amplifies those roundings by up to the conditioning of its Krylov steps: in float32 LightGCN agrees to
about 1e-4 only (MF: 3e-7), so the cases run in float64 (measured: agreeing to 1e-9 or better) and MF once
in float32. The dense model is solved to a tight tolerance: its CG iterates near the default tolerance
change by 1e-5 for a 1e-15 change of the right-hand side, even with the explicit matrix.
"""
import collections
import functools
import os
import re
import signal
import subprocess
import sys
import warnings
from typing import NamedTuple

import numpy as np
import pytest
import torch
import torch.distributed as dist

from graphforget import BCEObjective, BPRObjective, TrainConfig, train
from graphforget.data import attack_flip, planted_communities, random_split
from graphforget.distributed import (TermShare, _digest, collective_device, gather_results, init_from_env, launch,
                                     my_jobs, rank_and_size, run_jobs, summed_across_ranks)
from graphforget.influence import training_terms
from graphforget.models import MF, SGL, ContrastiveBPRObjective, LightGCN
from graphforget.unlearn import IFRU, SCIF, IFRUConfig
from helpers import case_value, launch_each

U, I, D = 60, 40, 8
BCE, BPR = BCEObjective(l2=1e-2), BPRObjective(l2=1e-2)  # an L2 term, to check that it is counted once
DP = {"data_parallel": True}
F32, F64 = torch.float32, torch.float64
# name -> (method, model, dtype, objective, config, reference paths): the closed-form products (MF, LightGCN),
# autograd on the whole graph (exact Hessian by double backward; Gauss-Newton), the authors' MF surrogate
# with a relative damping (Hutchinson's probes of the curvature), Gauss-Newton by autograd with dense
# parameters in phi, BPR with line-searched Newton steps (discarded at the end: the model is far from
# stationary), SCIF (no spillover, relabelled terms), also for one edge (rank 0 has no removed term), and SGL
# with its contrastive term, which rank 0 alone adds.
CASES = {
    "mf": (IFRU, "mf", F64, BCE, IFRUConfig(**DP), False),
    "mf_float32": (IFRU, "mf", F32, BCE, IFRUConfig(**DP), False),
    "lightgcn": (IFRU, "lightgcn", F64, BCE, IFRUConfig(**DP), False),
    "lightgcn_exact_autograd": (IFRU, "lightgcn", F64, BCE, IFRUConfig(curvature="exact", **DP), True),
    "lightgcn_gauss_newton_autograd": (IFRU, "lightgcn", F64, BCE, IFRUConfig(**DP), True),
    "lightgcn_mf_surrogate": (IFRU, "lightgcn", F64, BCE,
                              IFRUConfig(curvature="mf_surrogate", solver={"relative_damping": 0.1}, **DP), False),
    "dense_gauss_newton_autograd": (IFRU, "dense", F64, BCE, IFRUConfig(solver={"tol": 1e-6}, **DP), False),
    "lightgcn_bpr_newton": (IFRU, "lightgcn", F64, BPR, IFRUConfig.newton(2, steps=3, **DP), False),
    "scif_mf": (SCIF, "mf", F64, BCE, IFRUConfig(**DP), False),
    "scif_mf_one_edge": (SCIF, "mf", F64, BCE, IFRUConfig(**DP), False),
    "sgl_contrastive": (IFRU, "sgl", F64, ContrastiveBPRObjective(l2=1e-2, ssl_weight=0.1), IFRUConfig(**DP), False),
}


def unlearn_cases(cases: list) -> list:
    """Every rank's ``[(state, info)]``, one per case, in rank order (module level, for ``launch``)."""
    rank, size = rank_and_size()
    mine = []
    for method, model, graph, objective, config, reference, request in cases:
        with warnings.catch_warnings():  # the warnings of untrusted or discarded steps are compared as info
            warnings.simplefilter("ignore", RuntimeWarning)
            result = method(model, graph, objective, config, _reference_paths=reference).unlearn(request)
        mine.append((result.model.state_dict(), result.info))
    return gather_results({rank: mine}, size)


def _model(kind: str, dtype: torch.dtype = F64):
    from test_dense_params import DenseGCN
    with torch.random.fork_rng():  # DenseGCN's Linear draws its initial weights from torch's global generator
        torch.manual_seed(0)
        model = {"mf": MF(U, I, D), "lightgcn": LightGCN(U, I, D, num_layers=2), "dense": DenseGCN(U, I, D),
                 "sgl": SGL(U, I, D, num_layers=2)}[kind]
    model.reset_parameters(0)
    return model.to(dtype)


@pytest.fixture(scope="module")
def runs():
    """The cases' models trained briefly (Adam, early stopping) on a 5%-flipped graph, unlearned by one
    process and by two ranks (one launch for every case, which keeps the test short)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        split = random_split(planted_communities(U, I, 2, 15, seed=0), (0.6, 0.2, 0.2), seed=0)
        graph, request = attack_flip(split.train, 0.05, seed=0)
        trained = {}
        for _, kind, dtype, objective, _, _ in CASES.values():
            if (kind, dtype, objective) not in trained:
                trained[kind, dtype, objective] = model = _model(kind, dtype)
                train(model, graph, objective, TrainConfig(epochs=30, lr=0.05, batch_size=128, patience=3), split.val)
        cases = [(method, trained[kind, dtype, objective], graph, objective, config, reference,
                  request[:, :1] if name.endswith("one_edge") else request)
                 for name, (method, kind, dtype, objective, config, reference) in CASES.items()]
        single = unlearn_cases(cases)
        double = launch(unlearn_cases, 2, cases)
    finally:
        torch.set_num_threads(threads)
    return {name: (single[0][j], double[0][j], double[1][j]) for j, name in enumerate(CASES)}


def _decisions(info: dict) -> tuple:
    """What the solver, the acceptance test and the line search decided: iterations, step sizes, outcome."""
    solves = info["attempts"] + info["solver"]
    return ([solve["iterations"] for solve in solves], [solve.get("step_size") for solve in solves],
            info["trusted"], info["reason"], info.get("newton_discarded"))


@pytest.mark.distributed
@pytest.mark.parametrize("name", list(CASES))
def test_data_parallel_ifru_on_two_ranks_matches_one_process(runs, name):
    (one, one_info), (rank0, info0), (rank1, info1) = runs[name]
    tol = 1e-5 if one["user_emb.weight"].dtype == F32 else 1e-6  # relative to the largest entry (see above)
    for key in one:
        assert torch.equal(rank0[key], rank1[key]), key  # the ranks write the same phi
        assert float((rank0[key] - one[key]).abs().max()) <= tol * float(one[key].abs().max()), key
    assert _decisions(info0) == _decisions(one_info) == _decisions(info1)
    assert info0["kept_parameters"] == one_info["kept_parameters"] > 0
    assert info0["affected_terms"] == one_info["affected_terms"]  # counted on all the terms, on every rank
    assert info0["contrastive"] == info1["contrastive"] == one_info["contrastive"] == (name == "sgl_contrastive")
    assert info0["damping"] == pytest.approx(one_info["damping"], rel=1e-4)


def test_one_rank_share_is_the_identity(small_planted):
    """Without a process group (or with one rank) nothing is split nor reduced: IFRU with ``data_parallel``
    gives, bit for bit, the model it gives without."""
    share = TermShare()
    assert TermShare.of_group() == share == TermShare(0, 1)
    terms, fn = training_terms(BCE, small_planted), (lambda v: 2 * v)
    assert share.terms(terms) is terms and share.summed(fn) is fn and share.objective(BPR) is BPR
    other = TermShare(1, 2).objective(BPR)
    assert other.l2 == 0 and BPR.l2 == 1e-2 and other.seed == BPR.seed  # rank 1 adds no L2
    model = _model("lightgcn", F32)
    request = small_planted["user", "rates", "item"].edge_index[:, :5]
    plain, parallel = (IFRU(model, small_planted, BCE, IFRUConfig(data_parallel=flag)).unlearn(request)
                       for flag in (False, True))
    assert all(torch.equal(a, b) for a, b in zip(plain.model.parameters(), parallel.model.parameters()))


@pytest.mark.parametrize("objective", [BCE, BPR], ids=["bce", "bpr"])
def test_terms_parts_are_contiguous_and_cover_the_terms(small_planted, objective):
    """BPR terms carry their negative pair in a second block: a part keeps each term's pairs together."""
    terms = training_terms(objective, small_planted)
    parts = [terms.part(index, 3) for index in range(3)]
    sizes = [len(part) for part in parts]
    assert sum(sizes) == len(terms) and max(sizes) - min(sizes) <= 1
    whole = functools.reduce(lambda a, b: a.cat(b), parts)
    assert torch.equal(whole.edge_label_index, terms.edge_label_index) and torch.equal(whole.target, terms.target)
    assert terms.part(0, 1) is terms and len(terms.select(torch.zeros(len(terms), dtype=torch.bool)).part(1, 2)) == 0


def group_facts(results: list) -> list:
    """What each rank sees of the helpers, gathered in rank order: its share, its jobs, the sums across the
    ranks and the results of jobs shared round robin (module level, for ``launch``)."""
    rank, size = rank_and_size()
    share = TermShare.of_group()
    facts = {"share": share, "jobs": my_jobs(5), "summed": summed_across_ranks(rank + 1.0),
             "term_sum": share.summed(lambda v: v * (rank + 1))(torch.tensor([1.0, 2.0])),
             "gathered": gather_results({job: results[job] for job in my_jobs(len(results))}, len(results))}
    return gather_results({rank: facts}, size)


RESULTS = [(0, "a"), [1, (2.0,)], {"t": (torch.ones(2), 3)}]  # what group_facts's jobs return


@pytest.fixture(scope="module")
def helpers_on_two_ranks():
    """The cases below run in two ranks, in one launch: rank 0's value per case."""
    return launch_each({
        "warnings": (future_warnings,),  # first: a warning torch gives once per process would be missed later
        "group": (group_facts, RESULTS), "named": (named_jobs,), "typed": (typed_jobs,),
        "batch_norm": (batch_norm_states,), "dropout": (dropout_draws, True)})


@pytest.mark.distributed
def test_two_ranks_share_jobs_and_terms_and_every_rank_gets_every_result_as_returned(helpers_on_two_ranks):
    """IFRU's ranks find their share of the terms from the group (rank 1 of 2 is not one rank doing all of
    it), jobs go round robin, sums add 1 + 2, and results cross over as they were returned (tuples stay
    tuples)."""
    ranks = case_value(helpers_on_two_ranks, "group")
    for rank, facts in enumerate(ranks):
        assert facts["share"] == TermShare(rank, 2)
        assert facts["jobs"] == [[0, 2, 4], [1, 3]][rank]
        assert facts["summed"] == 3.0 and torch.equal(facts["term_sum"], torch.tensor([3.0, 6.0]))
        gathered = facts["gathered"]
        assert type(gathered[0]) is tuple and gathered[0] == (0, "a")
        assert type(gathered[1]) is list and type(gathered[1][1]) is tuple and gathered[1] == [1, (2.0,)]
        assert type(gathered[2]["t"]) is tuple and torch.equal(gathered[2]["t"][0], torch.ones(2))


class Pair(NamedTuple):
    """A job's result of a named tuple type (module level, to travel between the ranks)."""
    value: torch.Tensor
    name: str


def named_jobs() -> list:
    """``run_jobs`` of jobs that return named tuples (module level, for ``launch``)."""
    return run_jobs(lambda j: Pair(torch.full((2,), float(j)), f"job {j}"), 3)


@pytest.mark.distributed
def test_named_tuples_cross_the_ranks_as_returned(helpers_on_two_ranks):
    """A job's named tuple reaches every rank as it would in one process: before, moving its tensors to the CPU
    rebuilt it from one generator argument, and two ranks raised a TypeError where one process returned it."""
    expected = named_jobs()  # one process
    gathered = case_value(helpers_on_two_ranks, "named")
    assert [type(result) for result in gathered] == [Pair] * 3
    assert [result.name for result in gathered] == [result.name for result in expected] == ["job 0", "job 1", "job 2"]
    assert all(torch.equal(a.value, b.value) for a, b in zip(gathered, expected))


def typed_jobs() -> list:
    """``run_jobs`` of jobs that return dicts of other types (module level, for ``launch``)."""
    def job(j: int):
        counts = collections.defaultdict(list, {"job": [j]})
        return [counts, torch.nn.Linear(2, 2).state_dict(), collections.OrderedDict(b=j, a=torch.ones(1))][j]
    return run_jobs(job, 3)


@pytest.mark.distributed
def test_dict_types_cross_the_ranks_as_returned(helpers_on_two_ranks):
    """Results from another rank came back as plain dicts: a defaultdict without its factory, a state_dict
    without its ``_metadata`` (what ``load_state_dict`` reads), where one process returned them as they were."""
    counts, state, ordered = case_value(helpers_on_two_ranks, "typed")
    assert type(counts) is collections.defaultdict and counts["other"] == [] and counts["job"] == [0]
    assert type(state) is collections.OrderedDict and hasattr(state, "_metadata")  # rank 1's job
    assert type(ordered) is collections.OrderedDict and list(ordered) == ["b", "a"]


class BatchNormMF(MF):
    """An MF that normalises the user rows of each batch (module level, to travel to the ranks)."""

    def __init__(self, *args):
        super().__init__(*args)
        self.norm = torch.nn.BatchNorm1d(self.embedding_dim)

    def forward(self, graph, edge_label_index):
        users = self.norm(self.user_emb(edge_label_index[0]))
        return (users * self.item_emb(edge_label_index[1])).sum(-1)


def batch_norm_states() -> list:
    """Both ranks' states after data-parallel training of a BatchNormMF (module level, for ``launch``)."""
    graph, model = planted_communities(40, 32, 4, 6, seed=0), BatchNormMF(40, 32, 8)
    model.reset_parameters(0)
    train(model, graph, BCEObjective(l2=1e-3), TrainConfig(epochs=2, batch_size=64, patience=0, data_parallel=True))
    return gather_results({rank_and_size()[0]: model.state_dict()}, 2)


@pytest.mark.distributed
def test_data_parallel_ranks_agree_on_running_statistics(helpers_on_two_ranks):
    """A BatchNorm over the batch's rows updated each rank's statistics from its share of the batches: the ranks
    ended with different models (and a later data-parallel unlearn refused them as different)."""
    first, second = case_value(helpers_on_two_ranks, "batch_norm")
    assert all(torch.equal(first[key], second[key]) for key in first)
    assert not torch.equal(first["norm.running_mean"], torch.zeros(8))


class DropoutMF(MF):
    """An MF that records the first draw of torch's global random state at each forward (module level)."""

    def forward(self, graph, edge_label_index):
        if self.training:
            self.draws.append(float(torch.rand(())))
        return super().forward(graph, edge_label_index)


def dropout_draws(data_parallel: bool) -> list:
    """Every rank's draws in a training of a DropoutMF (module level, for ``launch``)."""
    graph, model = planted_communities(40, 32, 4, 6, seed=0), DropoutMF(40, 32, 8)
    model.reset_parameters(0)
    model.draws = []
    config = TrainConfig(epochs=2, batch_size=64, patience=0, seed=5, data_parallel=data_parallel)
    train(model, graph, BCEObjective(l2=1e-3), config)
    return gather_results({rank_and_size()[0]: model.draws}, rank_and_size()[1])


@pytest.mark.distributed
def test_data_parallel_ranks_draw_their_shares_dropout_apart(helpers_on_two_ranks):
    """Every rank seeded torch's global state with the run's seed: a dropout drew the same masks on both halves
    of every batch. Rank r seeds it with seed + r; rank 0 draws as one process does."""
    first, second = case_value(helpers_on_two_ranks, "dropout")
    alone, = dropout_draws(False)
    assert len(first) == len(second) == len(alone) > 2 and first == alone and set(first).isdisjoint(second)


def future_warnings() -> list:
    """Every rank's FutureWarnings in a data-parallel training (module level, for ``launch``)."""
    graph, model = planted_communities(20, 10, 2, 4, seed=0), MF(20, 10, 4)
    model.reset_parameters(0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train(model, graph, BCEObjective(l2=1e-2), TrainConfig(epochs=1, patience=0, data_parallel=True))
    mine = [str(w.message) for w in caught if issubclass(w.category, FutureWarning)]
    return gather_results({rank_and_size()[0]: mine}, rank_and_size()[1])


@pytest.mark.distributed
def test_data_parallel_training_says_nothing_a_user_cannot_act_on(helpers_on_two_ranks):
    """torch 2.13 deprecates DistributedDataParallel's broadcast_buffers: every rank printed a FutureWarning."""
    assert case_value(helpers_on_two_ranks, "warnings") == [[], []]


def fails_on_rank_one() -> None:
    """Rank 1 raises while rank 0 waits for it in a collective (module level, for ``launch``)."""
    if rank_and_size()[0] == 1:
        raise ValueError("rank one's own error")
    torch.distributed.barrier()


def killed_on_rank_zero() -> None:
    """Rank 0 is killed (an OOM killer's SIGKILL) and raises nothing (module level, for ``launch``)."""
    if rank_and_size()[0] == 0:
        os.kill(os.getpid(), signal.SIGKILL)


@pytest.mark.distributed
def test_launch_names_a_rank_killed_without_raising():
    with pytest.raises(RuntimeError, match="launch: rank 0 ended without raising: process 0 terminated with signal "
                                           "SIGKILL"):
        launch(killed_on_rank_zero, 2, timeout=60)


@pytest.mark.distributed
def test_launch_raises_the_error_of_the_rank_that_failed_first():
    """Rank 1's failure closed its group, and rank 0 then failed in its collective ("Connection closed by peer"):
    spawn reported whichever rank it saw end first, and rank 1's own error was lost (3 times in 3 in a probe)."""
    for _ in range(3):
        with pytest.raises(RuntimeError, match=r"(?s)launch: rank 1 failed first:.*ValueError: rank one's own error"):
            launch(fails_on_rank_one, 2, timeout=60)


def plus_one(x: torch.Tensor, close: bool = False) -> torch.Tensor:
    """``x + 1`` plus this rank after changing the rank's own ``x`` in place, closing the process group itself with
    ``close`` (module level, for ``launch``)."""
    rank = rank_and_size()[0]
    if close:
        torch.distributed.destroy_process_group()
    x.mul_(0)
    return x + 1 + rank


@pytest.mark.distributed
def test_launch_leaves_the_callers_arguments_as_they_were_and_returns_rank_zeros_value():
    """spawn's pickling moved the caller's tensors into shared memory: a later ``resize_`` of them crashed the
    caller (a segmentation fault). A function that closes its group itself returns its value (launch's own closing
    raised torch's AssertionError "Process group cannot be None"). Its value is rank 0's (rank 1's is 2)."""
    x = torch.arange(4.0)
    assert torch.equal(launch(plus_one, 2, x, timeout=60), torch.ones(4))
    assert torch.equal(launch(plus_one, 2, x, True, timeout=60), torch.ones(4))
    assert not x.is_shared() and torch.equal(x, torch.arange(4.0))
    x.resize_(10)


def test_digests_read_sets_arrays_and_sparse_tensors_whole():
    """``agreed`` compares digests: a set's fell back to its repr, whose order follows each process's hash seed
    (identical inputs were refused), and a NumPy array's or a sparse tensor's repr abbreviates ("..."), so that
    arrays differing in one element passed."""
    code = "from graphforget.distributed import _digest; print(_digest({'movies', 'books', 'music', 'games'}))"
    processes = [subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "PYTHONHASHSEED": seed},
                                  stdout=subprocess.PIPE, text=True) for seed in ("1", "2", "3")]  # side by side
    digests = {process.communicate()[0] for process in processes}
    assert [process.returncode for process in processes] == [0, 0, 0] and len(digests) == 1
    array = np.arange(5000.0)
    changed = array.copy()
    changed[2500] = -1.0
    assert _digest(array) != _digest(changed) and _digest(array) == _digest(array.copy())
    assert _digest(np.array(["u1", "u2"], dtype=object)) != _digest(np.array(["u1", "u3"], dtype=object))
    indices = torch.tensor([[0, 1], [1, 0]])
    sparse, other = (torch.sparse_coo_tensor(indices, torch.tensor([1.0, v]), (3000, 3000)) for v in (2.0, 3.0))
    assert _digest(sparse) != _digest(other) and _digest(sparse.to_sparse_csr()) != _digest(other.to_sparse_csr())
    assert _digest(sparse) == _digest(sparse.clone())


def test_one_process_does_every_job_and_a_job_no_rank_returned_is_named():
    """Without a group, ``my_jobs`` is every job; results come back in job order, and a missing job is a
    RuntimeError naming it (not a KeyError from the merge)."""
    assert my_jobs(4) == [0, 1, 2, 3] and my_jobs(0) == []
    assert gather_results({1: "b", 0: "a"}, 2) == ["a", "b"]
    with pytest.raises(RuntimeError, match=re.escape("no rank returned jobs [1, 3]")):
        gather_results({0: "a", 2: "c"}, 4)
    with pytest.raises(ValueError, match=re.escape("launch: world_size must be an integer in [1, 2**31), got 0")):
        launch(group_facts, 0, [])


def test_init_from_env_joins_a_torchrun_group_of_two_or_more_with_nccl_on_the_local_gpu(monkeypatch):
    """``WORLD_SIZE`` unset or 1 starts nothing; otherwise gloo on the CPU, and nccl on GPUs with the device of
    ``LOCAL_RANK`` (not the global ``RANK``) selected first."""
    calls = []
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", lambda backend: calls.append(("init", backend)))
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: calls.append(("device", device)))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert init_from_env() is False
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert init_from_env() is False and calls == []
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert init_from_env() is True and calls == [("init", "gloo")]
    calls.clear()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert init_from_env() is True and calls == [("device", 1), ("init", "cpu:gloo,cuda:nccl")]


def test_collectives_take_cpu_tensors_but_under_nccl_alone(monkeypatch):
    """nccl has no CPU collectives: ``summed_across_ranks`` sent a CPU tensor to a group ``init_from_env`` made of
    nccl alone ("No backend type associated with device type cpu"); that group now has gloo for the CPU, and a
    group of nccl alone gets the current GPU's tensor."""
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    for backend, device in (("nccl", torch.device("cuda", 1)), ("cpu:gloo,cuda:nccl", torch.device("cpu")),
                            ("gloo", torch.device("cpu"))):
        monkeypatch.setattr(dist, "get_backend", lambda backend=backend: backend)
        assert collective_device() == device


def exits_on_rank_one() -> int:
    """Rank 1 ends without raising (os._exit), rank 0 returns (module level, for ``launch``)."""
    if rank_and_size()[0] == 1:
        os._exit(3)
    return 0


@pytest.mark.distributed
def test_launch_reraises_spawns_error_when_a_rank_ends_without_raising():
    """A rank exiting without raising leaves no traceback file: launch names it and its exit code, not an
    AttributeError of its own ('NoneType' object has no attribute 'name')."""
    with pytest.raises(RuntimeError, match="launch: rank 1 ended without raising: process 1 terminated with exit "
                                           "code 3"):
        launch(exits_on_rank_one, 2, timeout=60)
