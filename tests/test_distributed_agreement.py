"""Ranks of a process group that do not make the same call: every rank raises the same error, none waits forever.

Each case runs in two gloo ranks whose collectives time out after ``TIMEOUT`` seconds, so that a rank left waiting
fails the test instead of hanging it; the cases share one launch (:func:`helpers.launch_each`), each in a group of its
own. A case's function catches what each rank raises and returns it, and the ranks' outcomes are compared.
"""
import dataclasses
import pickle
import re
import traceback

import numpy as np
import pytest
import torch
import torch.distributed as dist

from graphforget import BCEObjective, TrainConfig
from graphforget.bench import run_bench
from graphforget.data import planted_communities
from graphforget.distributed import (_digest, _in_job_order, _noted, _raise_first, _sendable, _without_addresses,
                                     agreed, gather_results, launch, rank_and_size, run_jobs)
from graphforget.models import MF, LightGCN
from graphforget.presets import Hyperparameters
from graphforget.train import train
from graphforget.unlearn import IFRU, SISA, IFRUConfig, RecEraser, RecEraserConfig, SISAConfig
from graphforget.unlearn.sharding import train_shards
from helpers import case_value, launch_each

pytestmark = pytest.mark.distributed
TIMEOUT = 60  # seconds a collective may wait: each case takes a few seconds
U, I = 60, 40
OBJECTIVE = BCEObjective(l2=1e-2)
CONFIG = TrainConfig(epochs=2, batch_size=64, patience=0, seed=0)


def _graph():
    return planted_communities(U, I, num_communities=4, interactions_per_user=8, seed=0)


def _model():
    model = MF(U, I, 8)
    model.reset_parameters(0)
    return model


def _outcome(fn) -> str:
    """What ``fn()`` did on this rank: ``"ok"``, or the type and first words of what it raised."""
    try:
        fn()
        return "ok"
    except Exception as error:
        return f"{type(error).__name__}: {str(error)[:60]}"


def _every_rank(outcome: str) -> list[str]:
    return gather_results({rank_and_size()[0]: outcome}, rank_and_size()[1])


def train_with_rank_seed() -> list[str]:
    """Data-parallel training where each rank seeds its own batch order (module level, for ``launch``)."""
    config = TrainConfig(epochs=2, batch_size=64, patience=0, seed=rank_and_size()[0], data_parallel=True)
    return _every_rank(_outcome(lambda: train(_model(), _graph(), OBJECTIVE, config)))


def train_with_objective_edited_on_rank_one() -> list[str]:
    """Data-parallel training whose objective's l2 rank 1 set to -5 after construction (module level, for ``launch``):
    its field check, run before the ranks agreed, failed on rank 1 alone (found by a review)."""
    config = TrainConfig(epochs=2, batch_size=64, patience=0, data_parallel=True)
    objective = BCEObjective(l2=OBJECTIVE.l2)
    if rank_and_size()[0] == 1:
        objective.l2 = -5.0
    return _every_rank(_outcome(lambda: train(_model(), _graph(), objective, config)))


def train_with_rank_layers() -> list[str]:
    """Data-parallel training of a LightGCN with one layer on rank 0, two on rank 1: the same parameters, another
    model (module level, for ``launch``)."""
    model = LightGCN(U, I, 8, num_layers=1 + rank_and_size()[0])
    model.reset_parameters(0)
    config = dataclasses.replace(CONFIG, data_parallel=True)
    return _every_rank(_outcome(lambda: train(model, _graph(), OBJECTIVE, config)))


def train_with_rank_values() -> list[str]:
    """Data-parallel training from another initialisation on each rank: DDP trained rank 0's, and rank 1's was thrown
    away without a word (module level, for ``launch``)."""
    model = MF(U, I, 8)
    model.reset_parameters(rank_and_size()[0])
    config = dataclasses.replace(CONFIG, data_parallel=True)
    return _every_rank(_outcome(lambda: train(model, _graph(), OBJECTIVE, config)))


def ifru_with_request_empty_on_rank_one() -> list[str]:
    """IFRU data-parallel, with rank 1's request empty (module level, for ``launch``)."""
    graph = _graph()
    request = graph["user", "rates", "item"].edge_index[:, :4 * (1 - rank_and_size()[0])]
    method = IFRU(_model(), graph, OBJECTIVE, IFRUConfig(data_parallel=True))
    return _every_rank(_outcome(lambda: method.unlearn(request)))


def sisa_with_rank_seed() -> list[str]:
    """SISA's fit with a partition seeded per rank (module level, for ``launch``)."""
    config = SISAConfig(CONFIG, num_shards=3, seed=rank_and_size()[0])
    return _every_rank(_outcome(lambda: SISA(_model(), _graph(), OBJECTIVE, config).fit()))


def sisa_with_labels_untrainable_on_rank_one() -> list[str]:
    """SISA's fit where rank 1's graph has every label 1, which BCE cannot train on (module level, for ``launch``):
    rank 1 failed its shard checks alone, before any collective, and rank 0 waited in the shards' training."""
    graph = _graph()
    if rank_and_size()[0] == 1:
        graph["user", "rates", "item"].edge_label.fill_(1.0)
    config = SISAConfig(CONFIG, num_shards=3)
    return _every_rank(_outcome(lambda: SISA(_model(), graph, OBJECTIVE, config).fit()))


def receraser_with_rank_models() -> list[str]:
    """RecEraser's fit from a trained model that differs between the ranks (module level, for ``launch``): it
    partitions from the model's embeddings, so the ranks' partitions differ."""
    model = MF(U, I, 8)
    model.reset_parameters(rank_and_size()[0])
    config = RecEraserConfig(CONFIG, num_shards=3, aggregation="mean")
    return _every_rank(_outcome(lambda: RecEraser(model, _graph(), OBJECTIVE, config).fit()))


class _FailsOnRankOne(MF):
    """An MF whose training fails on rank 1 alone, as a shard whose loss becomes NaN would."""

    def forward(self, graph, edge_label_index):
        if self.training and dist.get_rank() == 1:
            raise ValueError("the shard failed on rank 1")
        return super().forward(graph, edge_label_index)


def shard_failing_on_rank_one() -> list[str]:
    """Two shards trained by the two ranks; rank 1's fails (module level, for ``launch``)."""
    graph = _graph()
    models, graphs = [_FailsOnRankOne(U, I, 8)] * 2, [graph] * 2
    return _every_rank(_outcome(lambda: train_shards(models, graphs, OBJECTIVE, CONFIG)))


def ifru_with_graph_edited_on_rank_one() -> list[str]:
    """IFRU data-parallel, with a label of rank 1's graph set to 2 after construction (module level, for ``launch``):
    the graph's checks, run again at ``unlearn``, fail on rank 1 alone."""
    graph = _graph()
    method = IFRU(_model(), graph, OBJECTIVE, IFRUConfig(data_parallel=True))
    if rank_and_size()[0] == 1:
        graph["user", "rates", "item"].edge_label[0] = 2.0
    request = graph["user", "rates", "item"].edge_index[:, :4]
    return _every_rank(_outcome(lambda: method.unlearn(request)))


def check_failing_on_rank_one() -> list[str]:
    """``agreed`` whose check raises on rank 1 only (module level, for ``launch``)."""
    def check():
        if dist.get_rank() == 1:
            raise ValueError("bad input on rank 1")
    return _every_rank(_outcome(lambda: agreed("probe", check, same=torch.ones(3))))


def sisa_unlearn_without_fit_on_rank_one() -> list[str]:
    """Rank 0 fits SISA before unlearning, rank 1 does not (module level, for ``launch``): each met the other's
    collective, and rank 0 raised a KeyError while rank 1 went on to wait."""
    graph = _graph()
    method = SISA(_model(), graph, OBJECTIVE, SISAConfig(CONFIG, num_shards=3))

    def calls():
        if rank_and_size()[0] == 0:
            method.fit()
        method.unlearn(graph["user", "rates", "item"].edge_index[:, :4])
    return _every_rank(_outcome(calls))


def _frozen_on_rank(square: bool = False) -> MF:
    """An MF whose user table rank 0 freezes and whose item table rank 1 freezes (square: the tables of one shape)."""
    model = MF(U, U if square else I, 8)
    model.reset_parameters(0)
    (model.user_emb if rank_and_size()[0] == 0 else model.item_emb).weight.requires_grad_(False)
    return model


def train_with_rank_frozen_tables() -> list[str]:
    """Data-parallel training of an MF whose tables, of one shape, each rank freezes the other of (module level, for
    ``launch``): DistributedDataParallel matched the gradients by position and summed one table's into the other's,
    and the ranks ended with different models, without a word (found by a probe)."""
    config = dataclasses.replace(CONFIG, data_parallel=True)
    graph = planted_communities(U, U, num_communities=4, interactions_per_user=8, seed=0)
    return _every_rank(_outcome(lambda: train(_frozen_on_rank(square=True), graph, OBJECTIVE, config)))


def ifru_with_rank_frozen_tables() -> list[str]:
    """IFRU data-parallel on models that freeze different tables (module level, for ``launch``): gloo aborted a rank
    with a collective's size mismatch."""
    graph = _graph()
    method = IFRU(_frozen_on_rank(), graph, OBJECTIVE, IFRUConfig(data_parallel=True))
    return _every_rank(_outcome(lambda: method.unlearn(graph["user", "rates", "item"].edge_index[:, :4])))


def sisa_with_rank_frozen_template() -> list[str]:
    """SISA's fit from templates that freeze different tables (module level, for ``launch``): each rank's shards
    trained their own, an ensemble neither template gives in one process."""
    config = SISAConfig(CONFIG, num_shards=2)
    return _every_rank(_outcome(lambda: SISA(_frozen_on_rank(), _graph(), OBJECTIVE, config).fit()))


def run_jobs_with_rank_counts() -> list[str]:
    """``run_jobs`` given 2 jobs on rank 0 and 3 on rank 1 (module level, for ``launch``)."""
    return _every_rank(_outcome(lambda: run_jobs(lambda j: j, 2 + rank_and_size()[0])))


def run_jobs_with_a_result_that_cannot_travel() -> list[str]:
    """``run_jobs`` whose job 1 (rank 1's) returns a local function: the exchange failed to pickle it on rank 1 alone,
    and rank 0 waited for it (module level, for ``launch``)."""
    return _every_rank(_outcome(lambda: run_jobs(lambda j: (lambda: j) if j == 1 else j, 2)))


DISAGREEMENTS = {  # id: (the case, the start of what every rank raised)
    "train_seed": (train_with_rank_seed, "RanksDisagree: train: the ranks were given different config"),
    "train_objective_edited_on_one_rank": (train_with_objective_edited_on_rank_one,
                                           "ValueError: BCEObjective: l2 must be a finite number >= 0, got -5.0"),
    "train_layers": (train_with_rank_layers, "RanksDisagree: train: the ranks were given different model"),
    "train_values": (train_with_rank_values, "RanksDisagree: train: the ranks were given different model"),
    "ifru_empty_on_one_rank":
        (ifru_with_request_empty_on_rank_one, "RanksDisagree: IFRU.unlearn: the ranks were given different request"),
    "sisa_seed": (sisa_with_rank_seed, "RanksDisagree: SISA.fit: the ranks were given different config"),
    "sisa_labels_on_one_rank":
        (sisa_with_labels_untrainable_on_rank_one, "RanksDisagree: SISA.fit: the ranks were given different graph"),
    "receraser_models":
        (receraser_with_rank_models, "RanksDisagree: RecEraser.fit: the ranks were given different model"),
    "shard_fails_on_one_rank": (shard_failing_on_rank_one, "ValueError: the shard failed on rank 1"),
    "check_fails_on_one_rank": (check_failing_on_rank_one, "ValueError: bad input on rank 1"),
    "ifru_graph_fails_checks_on_one_rank":
        (ifru_with_graph_edited_on_rank_one, "ValueError: BCEObjective needs edge_label in {0, 1}"),
    "sisa_calls_differ":
        (sisa_unlearn_without_fit_on_rank_one, "RanksDisagree: the ranks made different calls (SISA.fit on rank 0"),
    "job_counts_differ":
        (run_jobs_with_rank_counts, "RanksDisagree: the ranks made different calls (run_jobs(2,) on rank 0, run_"),
    "result_cannot_travel": (run_jobs_with_a_result_that_cannot_travel, "AttributeError: Can't "),
    "train_frozen_tables":
        (train_with_rank_frozen_tables, "RanksDisagree: train: the ranks were given different model"),
    "ifru_frozen_tables":
        (ifru_with_rank_frozen_tables, "RanksDisagree: IFRU.unlearn: the ranks were given different model"),
    "sisa_frozen_templates":
        (sisa_with_rank_frozen_template, "RanksDisagree: SISA.fit: the ranks were given different model"),
}


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    """Every case of this module that runs in two ranks, in one launch: rank 0's value per case."""
    seeds, cache = tmp_path_factory.mktemp("seeds"), tmp_path_factory.mktemp("cache")
    return launch_each({
        **{name: (case,) for name, (case, _) in DISAGREEMENTS.items()},
        "sisa_unseeded": (sisa_with_unseeded_template,),
        # each pair in order: the second reads the cache the first wrote
        "bench_same_seeds": (bench_with_rank_seeds, seeds, (0, 0)),
        "bench_rank_seeds": (bench_with_rank_seeds, seeds, (0, 1)),
        "bench_computed": (bench_with_rank_zero_cache, cache),
        "bench_read_back": (bench_with_rank_zero_cache, cache),
        "bench_writers": (bench_out_on_every_rank, tmp_path_factory.mktemp("shared")),
        "bench_rank_methods": (bench_with_rank_methods, (["sisa", "finetune"], ["sisa"])),
    }, timeout=TIMEOUT)


@pytest.mark.parametrize("name", list(DISAGREEMENTS))
def test_ranks_that_disagree_or_fail_alone_raise_the_same_error_on_every_rank(outcomes, name):
    # Before: training mixed the ranks' batch orders (or LightGCNs of other depths: the same parameters) silently,
    # SISA mixed two partitions' shards, and a rank that skipped its empty request or failed a shard alone left the
    # other waiting in a collective (under torchrun, it then failed with gloo's "Connection closed by peer"); so did
    # a rank whose graph failed unlearn's checks alone.
    expected, ranks = DISAGREEMENTS[name][1], case_value(outcomes, name)
    assert [outcome[:len(expected)] for outcome in ranks] == [expected, expected], ranks


@pytest.mark.parametrize("options, message", [
    ({"world_size": 2.0}, "launch: world_size must be an integer in [1, 2**31), got 2.0"),
    ({"world_size": 2, "threads": 0}, "launch: threads must be an integer in [1, 2**31), got 0"),
    ({"world_size": 2, "threads": 2 ** 40}, "launch: threads must be an integer in [1, 2**31), got 1099511627776"),
    ({"world_size": 2, "timeout": 0}, "launch: timeout must be None or seconds in [0.001, 2.14748e+06] (gloo counts "
                                      "it in milliseconds, in a C int), got 0"),
    ({"world_size": 2, "timeout": 1e-7}, "got 1e-07"),  # 0 milliseconds
    ({"world_size": 2, "timeout": 1e15}, "got 1000000000000000.0"),  # an OverflowError inside every process
    ({"world_size": 2, "timeout": "10"}, "launch: timeout must be None or seconds in [0.001, 2.14748e+06]"),
    ({"world_size": 2, "timeout": float("nan")}, "got nan"),
])
def test_launch_refuses_its_arguments_by_name_before_spawning(options, message):
    """Each had failed inside every spawned process after seconds of start-up, with spawn's traceback; a timeout of 0
    made every waiting collective fail (found by a probe)."""
    with pytest.raises(ValueError, match=re.escape(message)):
        launch(_outcome, **options)


def test_an_error_from_another_rank_names_that_rank():
    """Python 3.11's note, or on 3.10 (no ``add_note``: it had raised an AttributeError in place of the error) the
    end of its message."""
    with pytest.raises(KeyError) as caught:
        _raise_first([(None, 0, ()), (KeyError("user 7"), 0, ()), (ValueError("later"), 0, ())], None)
    assert "(raised on rank 1 of 3)" in "".join(traceback.format_exception(caught.value))

    class WithoutNotes(ValueError):
        add_note = None  # as on Python 3.10

    class MissingWithoutNotes(FileNotFoundError):
        add_note = None

    class UndecodableWithoutNotes(UnicodeDecodeError):
        add_note = None

    note = "(raised on rank 1 of 2)"
    assert _noted(WithoutNotes("bad id", 5), note).args == ("bad id (raised on rank 1 of 2)", 5)
    assert _noted(WithoutNotes(), note).args == (note,)
    # their text is of their attributes, not of args (which had been rewritten, the note lost)
    missing = _noted(MissingWithoutNotes(2, "No such file or directory", "/data/u.data"), note)
    assert str(missing) == "[Errno 2] No such file or directory (raised on rank 1 of 2): '/data/u.data'"
    assert missing.errno == 2 and missing.filename == "/data/u.data"
    undecodable = _noted(UndecodableWithoutNotes("utf-8", b"\xff", 0, 1, "invalid start byte"), note)
    assert str(undecodable).endswith("invalid start byte (raised on rank 1 of 2)")


def test_a_ranks_own_error_is_raised_as_it_was_raised():
    """``_raise_first``: "``own`` on that rank itself": the very exception with its traceback, no note naming a rank
    (here rank 0, without a group; the report holds the pickled copy that travelled)."""
    own = KeyError("user 7")
    with pytest.raises(KeyError) as caught:
        _raise_first([(pickle.loads(pickle.dumps(own)), 0, ()), (None, 0, ())], own)
    assert caught.value is own and not getattr(own, "__notes__", [])


class _TwoArgumentError(ValueError):
    """Pickles but does not unpickle: pickle rebuilds it from ``args`` (one), ``__init__`` takes two."""

    def __init__(self, what, where):
        super().__init__(f"{what} at {where}")


def test_an_error_that_pickles_but_does_not_unpickle_travels_as_a_runtime_error():
    """``_sendable``: an error the other ranks cannot unpickle would fail them in the exchange; it travels as a
    RuntimeError with its type and message."""
    error = _TwoArgumentError("bad id", "row 3")
    with pytest.raises(TypeError):
        pickle.loads(pickle.dumps(error))  # the precondition: it pickles, and does not unpickle
    sent = _sendable(error)
    assert type(sent) is RuntimeError and str(sent) == "_TwoArgumentError: bad id at row 3"
    assert str(pickle.loads(pickle.dumps(sent))) == str(sent)
    assert _sendable(KeyError("user 7")).args == ("user 7",)  # one that travels is sent as it is


def sisa_with_unseeded_template() -> list[str]:
    """SISA's fit from a model initialised differently on each rank: the shards are re-initialised from the seeds,
    so only the model's layout must agree (module level, for ``launch``)."""
    model = MF(U, I, 8)
    model.reset_parameters(10 + rank_and_size()[0])
    fitted = SISA(model, _graph(), OBJECTIVE, SISAConfig(CONFIG, num_shards=3, seed=0)).fit()
    return _every_rank(fitted.model.state_dict())


def test_sisa_accepts_templates_that_differ_in_values_only(outcomes):
    states = case_value(outcomes, "sisa_unseeded")
    assert all(torch.equal(states[0][key], states[1][key]) for key in states[0])


def bench_with_rank_zero_cache(out) -> list[list[bool]]:
    """The SISA cells of ``benchmarks/sisa_receraser_smoke.py``'s pattern: rank 0 alone is given the output folder
    and its cache (module level, for ``launch``)."""
    hparams = Hyperparameters(model="mf", embedding_dim=8, l2=1.0, train={"epochs": 2, "patience": 0})
    result = run_bench("deletion", "synthetic", methods=["sisa"], seeds=1, options={"sisa": {"num_shards": 2}},
                       params={"kinds": ["edge"], "ratios": [0.05]}, hparams=hparams,
                       out=out if rank_and_size()[0] == 0 else None)
    return _every_rank([record["cached"] for record in result.cells])


def bench_out_on_every_rank(out) -> list[list[str]]:
    """Every rank given the output folder: what each rank wrote (module level, for ``launch``)."""
    from graphforget.bench import cache, report
    wrote, store, write = [], cache.CellCache.store, report.write_reports
    cache.CellCache.store = lambda self, *args: wrote.append("cell") or store(self, *args)
    report.write_reports = lambda *args: wrote.append("reports") or write(*args)
    hparams = Hyperparameters(model="mf", embedding_dim=8, l2=1.0, train={"epochs": 2, "patience": 0})
    run_bench("deletion", "synthetic", methods=["sisa"], seeds=1, options={"sisa": {"num_shards": 2}},
              params={"kinds": ["edge"], "ratios": [0.05]}, hparams=hparams, out=out)
    return _every_rank(wrote)


def bench_with_rank_seeds(out, seeds) -> list[str]:
    """Rank 0 given the output folder and ``seeds[0]``, rank 1 ``seeds[1]`` (module level, for ``launch``)."""
    rank = rank_and_size()[0]
    hparams = Hyperparameters(model="mf", embedding_dim=8, l2=1.0, train={"epochs": 2, "patience": 0})
    return _every_rank(_outcome(lambda: run_bench(
        "deletion", "synthetic", methods=["sisa"], seeds=[seeds[rank]], options={"sisa": {"num_shards": 2}},
        params={"kinds": ["edge"], "ratios": [0.05]}, hparams=hparams, out=out if rank == 0 else None)))


def bench_with_rank_methods(methods) -> list[str]:
    """Rank 0 given ``methods[0]``, rank 1 ``methods[1]`` (module level, for ``launch``)."""
    hparams = Hyperparameters(model="mf", embedding_dim=8, l2=1.0, train={"epochs": 2, "patience": 0})
    return _every_rank(_outcome(lambda: run_bench(
        "deletion", "synthetic", methods=methods[rank_and_size()[0]], seeds=1, options={"sisa": {"num_shards": 2}},
        params={"kinds": ["edge"], "ratios": [0.05]}, hparams=hparams)))


def test_ranks_that_plan_other_cells_stop_the_bench(outcomes):
    """Rank 1 took rank 0's cached records as its own cells' (another seed's figures, said cached; a QA probe)."""
    assert case_value(outcomes, "bench_same_seeds") == ["ok", "ok"]
    said = "RanksDisagree: run_bench: the ranks were given different cell"
    ranks = case_value(outcomes, "bench_rank_seeds")  # seed 0 cached on rank 0
    assert [outcome[:len(said)] for outcome in ranks] == [said, said], ranks
    # a plan that is a prefix of rank 0's: rank 1 returned after it, and rank 0 died in the next cell (qa142)
    ranks = case_value(outcomes, "bench_rank_methods")
    assert [outcome[:len(said)] for outcome in ranks] == [said, said], ranks


def test_rank_zero_alone_writes_the_bench_output(outcomes):
    """Every rank given ``out`` wrote every cell and the reports, the last writer's wall times winning (a QA probe)."""
    assert case_value(outcomes, "bench_writers") == [["cell", "cell", "reports"], []]


def test_a_second_bench_run_reads_rank_zero_cache_on_every_rank(outcomes):
    # Before: rank 0 read SISA's cell back while rank 1 computed it, and waited in the shards' exchange.
    assert case_value(outcomes, "bench_computed") == [[False, False]] * 2
    assert case_value(outcomes, "bench_read_back") == [[True, True]] * 2


def test_a_configs_progress_field_is_no_part_of_its_digest_and_every_other_field_is():
    """``agreed``'s docstring: "A progress field of a config may differ (a bar on
    rank 0 only)". Any other field must change the digest."""
    assert _digest(TrainConfig(progress=True)) == _digest(TrainConfig(progress=False))
    assert _digest(TrainConfig(lr=0.5)) != _digest(TrainConfig(lr=0.25))


def test_tensors_of_the_same_bytes_but_another_dtype_or_shape_digest_differently():
    """8 zero bytes are a float32 [2], a float64 [1], an
    int64 [1] or a float32 [1, 2]; ranks given any two of them were given different inputs."""
    same_bytes = [torch.zeros(2, dtype=torch.float32), torch.zeros(1, dtype=torch.float64),
                  torch.zeros(1, dtype=torch.int64), torch.zeros(1, 2, dtype=torch.float32)]
    assert len({_digest(t) for t in same_bytes}) == len(same_bytes)
    assert _digest(torch.arange(4).reshape(2, 2)) != _digest(torch.arange(4))


def test_a_dicts_digest_reads_its_keys_not_their_order_nor_only_its_values():
    """Ranks given equal options built in another order were given one input; options setting another field to the
    same value, a list of the same items, or the dict of a config's fields are other inputs."""
    assert _digest({"lr": 0.1, "epochs": 2}) == _digest({"epochs": 2, "lr": 0.1})
    assert _digest({"lr": 0.1}) != _digest({"momentum": 0.1})
    assert _digest({"solver.damping": 1.0, "l2": 0.5}) != _digest({"solver.damping": 0.5, "l2": 1.0})
    assert _digest({"a": 1}) != _digest(["a", 1])
    config = TrainConfig()
    fields = {field.name: getattr(config, field.name) for field in dataclasses.fields(config)
              if field.name != "progress"}
    assert _digest(config) != _digest(fields)


def test_a_sets_digest_does_not_follow_its_iteration_order():
    """``_feed`` promises an order every process shares ("a set's
    follows the hash seed"). Two equal sets whose iteration orders differ (colliding hashes, inserted in other orders)
    must digest alike."""
    a, b = set(), set()
    for x in (0, 8, 16):
        a.add(x)
    for x in (16, 8, 0):
        b.add(x)
    assert a == b and list(a) != list(b)  # the precondition: same content, other order
    assert _digest(a) == _digest(b)
    assert _digest(frozenset(a)) == _digest(frozenset(b))
    assert _digest({0, 8}) != _digest({0, 16})


def test_object_arrays_of_raw_ids_are_digested_element_by_element():
    """Numpy abbreviates a long array's repr with "...", so two
    arrays of raw ids differing in the middle were one input (the comment in ``_feed``: "every element, not the
    repr's '...'")."""
    ids = np.array([f"user{k}" for k in range(3000)], dtype=object)
    other = ids.copy()
    other[1500] = "someone-else"
    assert "..." in repr(ids)  # the precondition: the repr hides position 1500
    assert _digest(ids) != _digest(other)
    assert _digest(ids) == _digest(ids.copy())


def test_addresses_with_hex_letters_are_removed_from_a_repr():
    """Real addresses hold hex letters, and ranks' processes
    place objects at other addresses, so reprs that keep them never agree."""
    assert _without_addresses("<foo.Bar object at 0x7fab3c9d0e10>") == "<foo.Bar object>"
    assert _without_addresses("[<A at 0xDEADbeef>, <B at 0x10>]") == "[<A>, <B>]"


def test_jobs_no_piece_returned_are_named_in_a_runtime_error():
    """The docstring of ``_in_job_order``: "a RuntimeError
    names the jobs missing"."""
    assert _in_job_order([{2: "c", 0: "a"}, {1: "b"}], 3) == ["a", "b", "c"]
    with pytest.raises(RuntimeError, match=r"no rank returned jobs \[1, 3\]"):
        _in_job_order([{0: "a"}, {2: "c"}], 4)
