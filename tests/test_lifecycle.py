"""One lifecycle for every method: typed configs built from options, the registry, fit() -> self, the CLI's
option listing."""
from __future__ import annotations

import dataclasses
import functools
import re
import warnings

import pytest
import torch

from graphforget.cli import main
from graphforget.config import build_config, check_fields, describe
from graphforget.data import EDGE, make_interactions, planted_communities, random_edges, random_split
from graphforget.models import MF, LightGCN
from graphforget.objectives import BCEObjective
from graphforget.train import TrainConfig, train
from graphforget.unlearn import (IFRU, METHODS, IFRUConfig, NotFittedError, RecEraserConfig, RetrainConfig, SISAConfig,
                                 Unlearner, build_unlearner, method_config, register)


@dataclasses.dataclass
class Inner:
    """Options.

    Args:
        rate: a rate
            over two lines.
        name: a name.
    """
    rate: float = 0.1
    name: str = "a"


@dataclasses.dataclass
class Outer:
    """Options.

    Args:
        flag: a flag.
        sizes: sizes.
        limit: a limit or none.
        mode: a number or ``"auto"``.
        inner: the nested group.
    """
    flag: bool = False
    sizes: tuple[int, ...] = (1, 2)
    limit: int | None = None
    mode: float | str = "auto"
    inner: Inner = dataclasses.field(default_factory=Inner)

    def __post_init__(self):
        check_fields(self, {"limit": (self.limit is None or self.limit >= 0, "None or >= 0")})


def test_build_config_parses_strings_by_the_field_type():
    config = build_config(Outer, {"flag": "yes", "sizes": "3,4,5", "limit": "none", "mode": "0.5",
                                  "inner.rate": "2e-3", "inner.name": "b"})
    assert config == Outer(True, (3, 4, 5), None, 0.5, Inner(2e-3, "b"))
    assert build_config(Outer, {"mode": "auto", "sizes": "(7,)", "limit": 3}) == Outer(mode="auto", sizes=(7,),
                                                                                      limit=3)
    assert build_config(Outer, {"inner": {"rate": 1}}).inner == Inner(1.0)  # an int is a float
    base = Outer(limit=2)
    assert build_config(Outer, {"inner.name": "c"}, base) == Outer(limit=2, inner=Inner(name="c"))
    assert base == Outer(limit=2)  # the base is not mutated
    assert build_config(Outer, {"limit": "3"}, base).inner is not base.inner  # nor shared (a QA probe's mutation)


@pytest.mark.parametrize("options, message", [
    ({"nope": 1}, "Outer: unknown option nope (known: flag, sizes, limit, mode, inner)"),
    ({"flag": "maybe"}, "Outer.flag: expected bool, got 'maybe'"),
    ({"sizes": "1,x"}, "Outer.sizes: expected tuple[int, ...], got '1,x'"),
    ({"limit": 1.5}, "Outer.limit: expected int | None, got 1.5"),
    ({"limit": "-1"}, "Outer.limit: None or >= 0 (got -1)"),
    ({"inner.rate": "fast"}, "Outer.inner.rate: expected float, got 'fast'"),
    ({"inner.bogus": 1}, "Outer.inner: unknown option bogus"),
    ({"flag": True, "inner": 3}, "Outer.inner: expected Inner, got 3"),
])
def test_build_config_names_the_field_in_every_error(options, message):
    with pytest.raises(ValueError) as error:
        build_config(Outer, options)
    assert message in str(error.value)


def test_describe_lists_nested_fields_with_defaults_and_help():
    rows = {row.name: row for row in describe(Outer)}
    assert list(rows) == ["flag", "sizes", "limit", "mode", "inner.rate", "inner.name"]
    assert (rows["sizes"].type, rows["sizes"].default) == ("tuple[int, ...]", (1, 2))
    assert rows["limit"].type == "int | None" and rows["mode"].type == "float | str"
    assert rows["inner.rate"].help == "a rate over two lines." and rows["inner.rate"].default == 0.1


def test_build_config_merges_a_dict_with_dotted_keys_of_the_same_group():
    """``{"inner.name": ..., "inner": {...}}`` sets both fields: the dict adds to the dotted keys before it."""
    assert build_config(Outer, {"inner.name": "b", "inner": {"rate": 2.0}}) == Outer(inner=Inner(2.0, "b"))


def test_build_config_leaves_the_callers_options_as_they_were():
    """A dict given for a nested config, then a dotted key of the same config: the caller's dict must not
    gain the dotted key (options are reused, e.g. for a second method or a stored run)."""
    inner = {"rate": 2.0}
    assert build_config(Outer, {"inner": inner, "inner.name": "b"}) == Outer(inner=Inner(2.0, "b"))
    assert inner == {"rate": 2.0}


@pytest.mark.parametrize("options, keys", [({"inner": None, "inner.rate": 2.0}, "'inner', 'inner.rate'"),
                                           ({"inner.rate": 2.0, "inner": Inner()}, "'inner.rate', 'inner'")])
def test_build_config_refuses_a_group_given_both_as_a_whole_and_by_its_fields(options, keys):
    """Either order: which one the caller meant is not the library's to guess (one would silently drop the other)."""
    with pytest.raises(ValueError, match=re.escape(f"Outer.inner: given as a whole and by its fields ({keys})")):
        build_config(Outer, options)


def test_build_config_reads_none_in_any_case_and_a_list_in_brackets():
    """Command lines write ``None`` as Python prints it, and lists as JSON does."""
    for text in ("None", "NULL", " none "):
        assert build_config(Outer, {"limit": text}).limit is None, text
    assert build_config(Outer, {"sizes": "[3, 4]"}).sizes == (3, 4)


def test_check_fields_reports_the_value_of_a_dotted_field():
    """A rule on a nested field (``inner.rate``) names the field and shows its value, not None."""
    outer = Outer(inner=Inner(rate=-0.5))
    rules = {"flag": (True, "a bool"), "inner.rate": (outer.inner.rate >= 0, "must be >= 0")}
    with pytest.raises(ValueError, match=re.escape("Outer.inner.rate: must be >= 0 (got -0.5)")):
        check_fields(outer, rules)
    with pytest.raises(ValueError, match=re.escape("Top.outer.inner.rate: must be >= 0 (got -0.5)")):
        check_fields(outer, rules, path="Top.outer")


def test_describe_keeps_a_nested_config_that_defaults_to_none_as_one_option():
    """SISA's ``aggregator_train`` is ``None`` (train as ``train``) by default: one row, not TrainConfig's
    defaults listed as if they were set, while ``train`` is expanded."""
    rows = {row.name: row for row in describe(SISAConfig)}
    assert (rows["aggregator_train"].type, rows["aggregator_train"].default) == ("TrainConfig | None", None)
    assert "aggregator_train.lr" not in rows and "train" not in rows
    assert rows["train.lr"].default == TrainConfig().lr


def test_every_registered_method_has_a_config_that_builds_and_describes():
    assert list(METHODS) == ["retrain", "ifru", "scif", "finetune", "sisa", "receraser", "unlearnrec"]
    for name, cls in METHODS.items():
        config = method_config(name)
        assert isinstance(config, cls.Config) and cls.name == name
        assert all(row.help for row in describe(cls.Config)), f"{name}: an option without help"
    assert method_config("ifru", IFRUConfig.paper()) == IFRUConfig.paper()  # a ready config is taken as is


def test_run_settings_fill_train_and_seed_and_options_change_them():
    train = TrainConfig(epochs=7, lr=0.5)
    config = method_config("retrain", {"train.lr": "0.25"}, train=train, seed=9)
    assert config == RetrainConfig(TrainConfig(epochs=7, lr=0.25), seed=9)
    assert method_config("sisa", {"seed": "3"}, seed=9).seed == 3
    assert method_config("ifru", None, train=train, seed=9) == IFRUConfig()  # IFRU has neither field
    with pytest.raises(ValueError, match="bad options for 'sisa': SISAConfig.num_shards: must be >= 1"):
        method_config("sisa", {"num_shards": 0})


def test_a_ready_config_whose_training_or_seed_is_not_the_runs_is_refused_by_field():
    """A ready config keeps its own ``train`` and ``seed``: they had been dropped without a word (a
    SISAConfig(num_shards=5) trained its shards with TrainConfig's defaults, and every seed of a run with seed 0's
    partition). Equal ones, ``progress`` and the fields the method does not read (FineTune's train.epochs) pass."""
    train = TrainConfig(epochs=7, lr=0.5, seed=9)
    with pytest.raises(ValueError, match=re.escape("a ready SISAConfig keeps its own train.epochs=100 (the run's: 7), "
                                                   "train.lr=0.01 (the run's: 0.5), train.seed=0 (the run's: 9), "
                                                   "seed=0 (the run's: 9): pass its options as a dict")):
        method_config("sisa", SISAConfig(num_shards=5), train=train, seed=9)
    with pytest.raises(ValueError, match=re.escape("a ready RetrainConfig keeps its own seed=3 (the run's: 9)")):
        method_config("retrain", RetrainConfig(train, seed=3), train=train, seed=9)
    ready = SISAConfig(dataclasses.replace(train, progress=True), num_shards=5, seed=9)
    assert method_config("sisa", ready, train=train, seed=9) is ready
    assert method_config("sisa", ready) is ready  # no run settings to differ from
    finetune = METHODS["finetune"].Config(train=dataclasses.replace(train, epochs=50, patience=3))
    assert method_config("finetune", finetune, train=train, seed=9) is finetune


@pytest.mark.parametrize("method, options, field", [
    ("sisa", {"attention_dim": "4"}, "SISAConfig.attention_dim"),
    ("sisa", {"activation": "relu"}, "SISAConfig.activation"),
    ("sisa", {"transform": "false"}, "SISAConfig.transform"),
    ("sisa", {"aggregator_train.epochs": "2"}, "SISAConfig.aggregator_train"),
    ("receraser", {"aggregation": "mean", "attention_dim": "4"}, "RecEraserConfig.attention_dim"),
])
def test_the_attentions_options_are_refused_under_mean_aggregation(method, options, field):
    """They had been accepted, recorded with the run and never read; with the attention they are read."""
    with pytest.raises(ValueError, match=re.escape(f"{field}: the attention's: read only with "
                                                   "aggregation='attention'")):
        method_config(method, options)
    name = field.split(".")[1]
    config = method_config(method, {**options, "aggregation": "attention"})
    assert getattr(config, name) != getattr(SISAConfig(), name)


def test_aggregator_train_options_change_the_run_training_it_defaults_to():
    """``aggregator_train=None`` trains the attention as ``train``: ``aggregator_train.epochs=2`` started from
    TrainConfig's defaults instead, and the run's learning rate, batch size and seed were silently dropped."""
    train = TrainConfig(epochs=7, lr=0.5, batch_size=128, seed=4)
    config = method_config("receraser", {"aggregator_train.epochs": "2", "train.lr": "0.25"}, train=train, seed=4)
    assert config.aggregator_train == TrainConfig(epochs=2, lr=0.25, batch_size=128, seed=4)
    assert config.train == TrainConfig(epochs=7, lr=0.25, batch_size=128, seed=4)
    assert method_config("receraser", {}, train=train).aggregator_train is None
    set_whole = method_config("sisa", {"aggregator_train": TrainConfig(lr=0.1), "aggregation": "attention"},
                              train=train).aggregator_train
    assert set_whole == TrainConfig(lr=0.1)
    with pytest.raises(ValueError, match="given as a whole and by its fields"):
        method_config("sisa", {"aggregator_train": "none", "aggregator_train.lr": "0.1"}, train=train)
    # a dict of fields is those fields: it started from TrainConfig's defaults
    as_dict = method_config("receraser", {"aggregator_train": {"epochs": 2}}, train=train, seed=4).aggregator_train
    assert as_dict == TrainConfig(epochs=2, lr=0.5, batch_size=128, seed=4)
    with pytest.raises(ValueError, match="bad options for 'ifru': IFRUConfig: unknown option aggregator_train"):
        method_config("ifru", {"aggregator_train.epochs": "2"})  # was an AttributeError


def test_options_a_method_fixes_are_refused_by_name_not_replaced():
    """SCIF fixes hops, spillover, prune and curvature_of: ``--option hops=2`` was recorded with the run and
    silently replaced by 0. The fixed values themselves are accepted, and so is IFRU's default where no option
    set it; an option that sets IFRU's default explicitly (``spillover=true``) was accepted and replaced too. The
    config returned, the one a run records, is the one SCIF runs (a run recorded ``curvature_of='remaining'``)."""
    with pytest.raises(ValueError, match=re.escape("bad options for 'scif': SCIF fixes hops=0, spillover=False, "
                                                   "prune=None, curvature_of='original'; got hops=2")):
        method_config("scif", {"hops": "2"})
    for explicit in ({"spillover": "true"}, {"curvature_of": "remaining"}, {"hops": "none"}):
        with pytest.raises(ValueError, match="SCIF fixes"):
            method_config("scif", explicit)
    ran = {"hops": 0, "spillover": False, "prune": None, "curvature_of": "original"}
    for given in ({"hops": "0", "spillover": "false"}, None, IFRUConfig(solver={"tol": 1e-3})):
        config = method_config("scif", given)
        assert {name: getattr(config, name) for name in ran} == ran
    with pytest.raises(ValueError, match="SCIF fixes"):  # a ready config is checked too
        method_config("scif", IFRUConfig(hops=2))
    graph = planted_communities(20, 16, 2, 4, seed=0)
    with pytest.raises(ValueError, match="SCIF fixes .*got spillover=True"):  # and a dict given to the constructor
        METHODS["scif"](MF(20, 16, 4), graph, BCEObjective(), {"spillover": True})
    # and one edited in place after it was built: an edited SCIF ran an IFRU step and called it SCIF's
    scif = METHODS["scif"](MF(20, 16, 4), graph, BCEObjective())
    scif.config.hops, scif.config.spillover = 2, True
    with pytest.raises(ValueError, match="SCIF fixes .*got hops=2, spillover=True"):
        scif.unlearn(graph[EDGE].edge_index[:, :2])


def test_options_a_method_does_not_read_are_refused_in_every_form():
    """FineTune runs its own epochs of Adam: ``{"train": {"epochs": 50, "optimizer": "lbfgs"}}`` was accepted (the
    dotted form alone was refused), recorded, and 3 epochs of Adam ran; L-BFGS's ``train.tol`` was accepted too."""
    for options in ({"train": {"epochs": 50, "optimizer": "lbfgs"}}, {"train.tol": "0.5"}, {"train": {"tol": 0.5}}):
        with pytest.raises(ValueError, match="bad options for 'finetune': FineTune does not read train"):
            method_config("finetune", options)
    assert method_config("finetune", {"train": {"lr": 0.5}}).train.lr == 0.5
    graph = planted_communities(20, 16, 2, 4, seed=0)  # a dict given to the constructor: taken, recorded, not run
    with pytest.raises(ValueError, match="FineTune does not read train.epochs"):
        METHODS["finetune"](MF(20, 16, 4), graph, BCEObjective(), {"train": {"epochs": 50}})


@pytest.mark.parametrize("method, options, train, message", [
    ("retrain", {"train.tol": 1e-6}, TrainConfig(),
     "Retrain does not read train.tol (read only with optimizer='lbfgs')"),
    ("sisa", {"train": {"tol": 1e-6}}, TrainConfig(), "SISA does not read train.tol"),
    ("receraser", {"aggregator_train.tol": 1e-3}, TrainConfig(), "RecEraser does not read aggregator_train.tol"),
    ("retrain", {"train.lr": 0.1, "train.patience": 2}, TrainConfig(optimizer="lbfgs"),
     "Retrain does not read train.lr (optimizer='lbfgs' trains on full batches with a line search, until tol), "
     "train.patience"),
    ("retrain", {"train.optimizer": "lbfgs", "train.batch_size": 100}, TrainConfig(), "does not read train.batch_size"),
    ("retrain", {"warm_start": True, "seed": 123}, None, "Retrain does not read seed (warm_start starts from the "
                                                          "trained model: there is no initialisation to seed)"),
])
def test_options_the_training_they_build_does_not_read_are_refused(method, options, train, message):
    """A QA probe through the command line: each was accepted, recorded with the run and trained as without it (the
    AUCs the same to the last digit)."""
    with pytest.raises(ValueError, match=re.escape(message)):
        method_config(method, options, train=train)


def test_options_the_training_reads_are_taken_and_the_runs_own_values_pass():
    """What the run's training reads is taken, and an option its value leaves unread only where the caller gives it
    (the run's seed beside warm_start passes)."""
    assert method_config("retrain", {"train.tol": 1e-6}, train=TrainConfig(optimizer="lbfgs")).train.tol == 1e-6
    assert method_config("retrain", {"warm_start": True}, train=TrainConfig(lr=0.5), seed=7).seed == 7
    # without the run's training (the command line's check before a run is read) its optimizer is not known
    assert method_config("retrain", {"train.tol": 1e-6}).train.tol == 1e-6


def test_a_method_built_with_a_dict_has_the_config_method_config_gives():
    """SISA's and RecEraser's constructors started ``aggregator_train.*`` from a default TrainConfig (lr 0.01, batch
    size 4096) where method_config starts it from ``train``; an edited config given to method_config was not checked
    (run_attack trained the original before the method refused it)."""
    options = {"train.lr": 0.1, "train.batch_size": 128, "aggregation": "attention", "aggregator_train.epochs": 2}
    graph = planted_communities(20, 16, 2, 4, seed=0)
    for name in ("sisa", "receraser"):
        built = METHODS[name](MF(20, 16, 4), graph, BCEObjective(), dict(options)).config
        assert built == method_config(name, dict(options))
        assert built.aggregator_train == TrainConfig(epochs=2, lr=0.1, batch_size=128)
    edited = IFRUConfig()
    edited.trust.on_failure = "Raise"
    with pytest.raises(ValueError, match="IFRUConfig.trust.on_failure"):
        method_config("ifru", edited)


def test_register_refuses_a_taken_name_or_none_unless_told_to_overwrite():
    """A second class under a taken name is refused, and taken with ``overwrite=True`` (both call forms); a
    subclass that keeps the base's name, or no Unlearner at all, is refused."""
    first = register(type("First", (IFRU,), {"name": "test-twice"}))
    second = type("Second", (IFRU,), {"name": "test-twice"})
    try:
        assert register(first) is first and METHODS["test-twice"] is first  # the same class again is fine
        with pytest.raises(ValueError, match=re.escape("method 'test-twice' is already registered (First)")):
            register(second)
        assert METHODS["test-twice"] is first
        assert register(second, overwrite=True) is second and METHODS["test-twice"] is second
        assert register(overwrite=True)(first) is first and METHODS["test-twice"] is first
    finally:
        del METHODS["test-twice"]
    for bad in (type("Nameless", (Unlearner,), {}), int):
        with pytest.raises(ValueError, match="is not an Unlearner subclass with its own `name`"):
            register(bad)
    assert Unlearner.name not in METHODS


@dataclasses.dataclass
class _Required:
    factor: float


@pytest.mark.parametrize("attributes, message", [
    ({"name": 5}, "register: Bad.name must be a word of letters, digits, _, . or - (the command line reads it), not "
                  "starting with - or ., got 5"),
    ({"name": ""}, "got ''"), ({"name": "a b"}, "got 'a b'"), ({"name": "a:b"}, "got 'a:b'"),
    ({"name": "-mine"}, "got '-mine'"), ({"name": ".mine"}, "got '.mine'"), ({"name": "méthode"}, "got 'méthode'"),
    ({"Config": dict}, "register: Bad.Config must be a dataclass, got <class 'dict'>"),
    ({"Config": _Required}, "register: Bad.Config's fields ['factor'] have no default: give each one"),
    ({"_unlearn": Unlearner._unlearn}, "register: Bad implements no _unlearn(request, positions, remaining)"),
])
def test_register_refuses_what_would_fail_later_elsewhere(attributes, message):
    """Each was registered: a name of 5 broke every command line's parser (even evaluate's), "-mine" was read as a
    flag (a QA probe), a config without defaults every build ("missing 1 required positional argument"), a method
    without _unlearn failed with an empty NotImplementedError."""
    bad = type("Bad", (Unlearner,), {"name": "test-bad", "_unlearn": lambda self, *args: (self.model, {}),
                                     **attributes})
    with pytest.raises(ValueError, match=re.escape(message)):
        register(bad)
    assert "test-bad" not in METHODS and 5 not in METHODS


def test_build_unlearner_hands_the_validation_pairs_to_the_method(small_planted):
    split = random_split(small_planted, (0.7, 0.3, 0.0), seed=0)
    for name in ("retrain", "ifru"):
        unlearner = build_unlearner(name, MF(60, 40, 4), split.train, BCEObjective(), val=split.val)
        assert unlearner.val is split.val, name


def test_fit_returns_self_and_unlearn_before_a_needed_fit_is_refused(small_planted):
    model, objective = MF(60, 40, 4), BCEObjective()
    request = random_edges(small_planted, 0.05, seed=0)
    sisa = build_unlearner("sisa", model, small_planted, objective, SISAConfig(TrainConfig(epochs=1), num_shards=2))
    assert sisa.needs_fit and not sisa.fitted
    with pytest.raises(NotFittedError, match=r"SISA.unlearn\(\) needs fit\(\) first"):
        sisa.unlearn(request)
    assert sisa.fit() is sisa and sisa.fitted and sisa.fit_seconds > 0 and sisa.fit_info["seconds"] > 0
    assert sisa.unlearn(request).info["num_retrained"] >= 1
    ifru = build_unlearner("ifru", model, small_planted, objective)
    assert not ifru.needs_fit and ifru.fitted and ifru.fit() is ifru and ifru.fit_info == {"seconds": ifru.fit_seconds}
    assert torch.isfinite(ifru.unlearn(request).model.user_emb.weight).all()


@pytest.mark.parametrize("name", list(METHODS))
def test_every_method_runs_alike_in_the_callers_no_grad_or_inference_mode(small_planted, name, one_thread):
    """Serving code may honour a deletion inside ``torch.no_grad()`` or ``torch.inference_mode()``, its request made
    there too: FineTune, SCIF and RecEraser failed with torch's "does not require grad" or "inference tensors", and
    train() too. Each result equals the one made outside, bit for bit, and the caller's mode is left as it was."""
    options = {"finetune": {"epochs": 1}, "sisa": {"num_shards": 2}, "receraser": {"num_shards": 2},
               "unlearnrec": {"pretrain_epochs": 1, "finetune_epochs": 1}}.get(name, {})
    train_config = TrainConfig(epochs=1, batch_size=0, patience=0)

    def forget(model):  # made outside the mode, as a served model is
        train(model, small_planted, BCEObjective(l2=0.1), train_config)
        request = small_planted[EDGE].edge_index[:, :5].clone()
        unlearner = build_unlearner(name, model, small_planted, BCEObjective(l2=0.1), options, train=train_config)
        return unlearner.fit().unlearn(request).model.state_dict()
    models = [MF(60, 40, 4) for _ in range(3)]
    for model in models:
        model.reset_parameters(3)
    expected = forget(models[0])
    for mode, model in zip((torch.no_grad, torch.inference_mode), models[1:]):
        with mode():
            state = forget(model)
            assert not torch.is_grad_enabled()
        assert state.keys() == expected.keys() and all(torch.equal(state[k], expected[k]) for k in state), mode


@pytest.mark.parametrize("name", [*METHODS, "train"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_is_refused_by_every_method_and_train_with_the_remedy(small_planted, name, dtype):
    """Only IFRU and SCIF refused it: LightGCN's propagation failed in torch's sparse kernel on the CPU
    ("addmm_out_sparse_csr_impl_mkl" not implemented for 'BFloat16'), and a float16 Adam is NaN at any learning rate
    (its eps rounds to 0), which train and FineTune called too high a learning rate."""
    model = LightGCN(60, 40, 4, num_layers=1).to(dtype)
    who, verb = ("train", "train") if name == "train" else (METHODS[name].__name__, "unlearn")
    with pytest.raises(ValueError, match=rf"^{who} needs float32 or float64 parameters, got {dtype}: {verb} a "
                                         r"model.float\(\) copy"):
        if name == "train":
            train(model, small_planted, BCEObjective(l2=0.1), TrainConfig(epochs=1))
        else:
            build_unlearner(name, model, small_planted, BCEObjective(l2=0.1))


@pytest.mark.parametrize("name", list(METHODS))
def test_node_tables_mixing_float32_and_float64_are_refused_by_the_methods_that_multiply_their_rows(small_planted,
                                                                                                     name, one_thread):
    """IFRU and SCIF failed in torch's sampled_addmm ("expected mat1 and mat2 to have the same dtype"), RecEraser in
    its attention, UnlearnRec in its encoder on a LightGCN; the methods that train the parameters apart take the model
    as it is (a dense layer of another dtype than the tables: tests/test_dense_params.py)."""
    model = MF(60, 40, 4)
    model.reset_parameters(0)
    model.user_emb.double()
    options = {"finetune": {"epochs": 1}, "sisa": {"num_shards": 2}, "unlearnrec": {"pretrain_epochs": 1,
                                                                                   "finetune_epochs": 1}}.get(name)
    make = functools.partial(build_unlearner, name, model, small_planted, BCEObjective(l2=0.1), options,
                             train=TrainConfig(epochs=1, batch_size=0, patience=0))
    if not METHODS[name].needs_one_dtype:
        result = make().fit().unlearn(small_planted[EDGE].edge_index[:, :5])
        assert torch.isfinite(result.model(result.graph, small_planted[EDGE].edge_index)).all()
        return
    assert name in ("ifru", "scif", "receraser", "unlearnrec")
    with pytest.raises(ValueError, match=re.escape(f"{METHODS[name].__name__} needs the node tables in one dtype, got "
                                                   "user_emb.weight torch.float64, item_emb.weight torch.float32: "
                                                   "unlearn a copy that casts them alike (model.float() or")):
        make()


@pytest.mark.parametrize("name", list(METHODS))
def test_every_method_takes_a_graph_and_model_made_in_inference_mode(small_planted, name, one_thread):
    """A serving process may load its graph and model inside ``torch.inference_mode()``: their tensors have no version
    counter, and every constructor failed with torch's "Inference tensors do not track version counter". The result
    equals, bit for bit, the one of tensors made outside; the checks they guard run again at each call."""
    options = {"finetune": {"epochs": 1}, "sisa": {"num_shards": 2}, "receraser": {"num_shards": 2},
               "unlearnrec": {"pretrain_epochs": 1, "finetune_epochs": 1}}.get(name, {})
    train_config, request = TrainConfig(epochs=1, batch_size=0, patience=0), small_planted[EDGE].edge_index[:, :5]
    states = []
    for inference in (False, True):
        with torch.inference_mode(inference):
            graph = small_planted.clone()
            model = MF(60, 40, 4)
            model.reset_parameters(3)
        assert graph[EDGE].edge_index.is_inference() == inference == model.user_emb.weight.is_inference()
        unlearner = build_unlearner(name, model, graph, BCEObjective(l2=0.1), options, train=train_config).fit()
        states.append(unlearner.unlearn(request.clone()).model.state_dict())
        unlearner.unlearn(request.clone())  # a second call: the state of inference tensors is never "unchanged"
    assert all(torch.equal(states[0][key], states[1][key]) for key in states[0])


@pytest.mark.parametrize("name", ["unlearnrec", "sisa"])
def test_an_inference_tensor_written_in_place_after_fit_is_seen(small_planted, name, one_thread):
    """An inference tensor counts no version: a label flipped in place inside inference_mode() after fit() must still
    be seen (its state is never read as unchanged), or UnlearnRec answers with an encoder pre-trained for another
    graph."""
    options = {"sisa": {"num_shards": 2}, "unlearnrec": {"pretrain_epochs": 1, "finetune_epochs": 1}}[name]
    train_config = TrainConfig(epochs=1, batch_size=0, patience=0)
    with torch.inference_mode():
        graph = small_planted.clone()
        model = MF(60, 40, 4)
        model.reset_parameters(3)
    unlearner = build_unlearner(name, model, graph, BCEObjective(l2=0.1), options, train=train_config).fit()
    request = graph[EDGE].edge_index[:, :5].clone()
    with torch.inference_mode():
        graph[EDGE].edge_label[10] = 1 - graph[EDGE].edge_label[10]
    with pytest.raises(ValueError, match="training graph changed since fit"):
        unlearner.unlearn(request)


def test_a_given_edge_weight_is_warned_of_where_the_result_propagates_with_it(small_planted):
    """The remaining graph keeps each remaining edge's given weight: whole-graph normalised weights went stale with
    the deletion, silently (FineTune fine-tuned LightGCN on them). Not for MF, which reads none, nor for SISA, whose
    shard graphs drop them."""
    weighted = small_planted.clone()
    weighted[EDGE].edge_weight = torch.rand(weighted[EDGE].edge_index.size(1))
    for name in ("finetune", "ifru", "retrain", "unlearnrec"):
        with pytest.warns(RuntimeWarning, match=f"{METHODS[name].__name__}: the training graph carries edge_weight, "
                                                "which LightGCN propagates with as given"):
            build_unlearner(name, LightGCN(60, 40, 4), weighted, BCEObjective())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build_unlearner("finetune", MF(60, 40, 4), weighted, BCEObjective())
        build_unlearner("sisa", LightGCN(60, 40, 4), weighted, BCEObjective(), {"num_shards": 2})
        build_unlearner("finetune", LightGCN(60, 40, 4), small_planted, BCEObjective())


def test_a_config_edited_after_it_was_built_is_checked_again(small_planted):
    """Only a dict was checked: an instance edited after it was built went through (solver.tol=5.0 solved nothing,
    a typo 'Raise' in trust.on_failure kept the model where the caller asked for an exception)."""
    config = IFRUConfig()
    config.trust.on_failure = "Raise"
    with pytest.raises(ValueError, match=r"IFRUConfig.trust.on_failure: one of .* \(got 'Raise'\)"):
        IFRU(MF(60, 40, 4), small_planted, BCEObjective(), config)
    config.trust.on_failure = "raise"
    unlearner = IFRU(MF(60, 40, 4), small_planted, BCEObjective(), config)
    config.solver.tol = 5.0  # after the method was built
    with pytest.raises(ValueError, match=r"IFRUConfig.solver.tol: must be < 1 .* \(got 5.0\)"):
        unlearner.unlearn(random_edges(small_planted, 0.05, seed=0))
    training = TrainConfig(epochs=2)
    training.epochs = 0
    with pytest.raises(ValueError, match=r"TrainConfig.epochs: .* \(got 0\)"):
        train(MF(60, 40, 4), small_planted, BCEObjective(), training)


def test_a_fit_that_fails_after_the_method_prepared_leaves_it_unfitted(small_planted, monkeypatch):
    """fit() marked the method fitted before it recorded the graph it was fitted on; when that failed (a bf16 label
    NumPy could not hash), unlearn() ran on an unrecorded state instead of asking for fit()."""
    sisa = build_unlearner("sisa", MF(60, 40, 4), small_planted, BCEObjective(),
                           SISAConfig(TrainConfig(epochs=1), num_shards=2))

    def fail():
        raise RuntimeError("the digest failed")
    monkeypatch.setattr(sisa, "_graph_digest", fail)
    with pytest.raises(RuntimeError, match="the digest failed"):
        sisa.fit()
    assert not sisa.fitted
    with pytest.raises(NotFittedError, match=r"SISA.unlearn\(\) needs fit\(\) first"):
        sisa.unlearn(random_edges(small_planted, 0.05, seed=0))


def test_unlearn_refuses_a_graph_edited_after_fit_until_fit_runs_again(small_planted, one_thread):
    """What fit() prepared (SISA's shards) was learnt from the graph as it was then: labels flipped in place
    afterwards were unlearned from with every shard still trained on the old labels (both retrained shards counted
    as a result). Values written back unchanged, or a copy of the same edges, are the same graph."""
    graph = small_planted.clone()
    request = random_edges(graph, 0.05, seed=0)
    config = SISAConfig(TrainConfig(epochs=1), num_shards=2)
    sisa = build_unlearner("sisa", MF(60, 40, 4), graph, BCEObjective(), config).fit()
    store = graph[EDGE]
    store.edge_label.copy_(store.edge_label.clone())  # an in-place write of the same values
    store.edge_index = store.edge_index.clone()
    assert sisa.unlearn(request).info["num_retrained"] >= 1
    store.edge_label[:] = 1 - store.edge_label
    with pytest.raises(ValueError, match=r"SISA: the training graph changed since fit\(\).*call fit\(\) again"):
        sisa.unlearn(request)
    assert sisa.fit().unlearn(request).info["num_retrained"] >= 1


def test_a_config_of_another_method_is_refused_by_name(small_planted):
    model, objective = MF(60, 40, 4), BCEObjective()
    for config in (TrainConfig(), SISAConfig(), "solver.tol=1e-4"):
        with pytest.raises(TypeError, match=f"IFRU: config must be an instance of IFRUConfig, a dict of its options "
                                            f"or None, got a {type(config).__name__}"):
            METHODS["ifru"](model, small_planted, objective, config)
    # a subclass of the method's config is another method's: SISA took RecEraser's, partitioning at random (a probe)
    with pytest.raises(TypeError, match="SISA: config must be an instance of SISAConfig, a dict of its options or "
                                        "None, got a RecEraserConfig"):
        METHODS["sisa"](model, small_planted, objective, RecEraserConfig(partition="user"))
    with pytest.raises(TypeError, match="options for 'sisa' must be a SISAConfig"):
        method_config("sisa", RecEraserConfig())


@pytest.mark.parametrize("name", ["ifru", "sisa", "unlearnrec"])
def test_arguments_of_the_wrong_kind_are_type_errors_naming_them(small_planted, name):
    model, objective = MF(60, 40, 4), BCEObjective()
    wanted = "objective must be an Objective instance, e.g. BCEObjective(l2=1.0), got"
    cases = [((model, small_planted, BCEObjective), f"{wanted} the class BCEObjective"),
             ((model, small_planted, "bce"), f"{wanted} a str"),
             ((torch.nn.Linear(4, 4), small_planted, objective), "model must be a graphforget.models.Recommender "
                                                                 "(PyG modules: PyGRecommender), got a Linear"),
             ((model, small_planted[EDGE].edge_index, objective), "graph must be a HeteroData of interactions "
                                                                  "(graphforget.data.make_interactions), got a Tensor")]
    for arguments, message in cases:
        with pytest.raises(TypeError, match=re.escape(message)):
            METHODS[name](*arguments)
    with pytest.raises(TypeError, match=re.escape("val must be None or a HeteroData of validation pairs (a split's "
                                                  "val), got a Tensor")):
        METHODS[name](model, small_planted, objective, val=small_planted[EDGE].edge_index)


def test_cli_lists_methods_and_their_options(capsys):
    assert main(["methods"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines() if line and not line.startswith("`")]
    assert listed == list(METHODS)
    assert main(["methods", "ifru"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("ifru: IFRU with IFRUConfig\n")
    assert "  solver.damping (float | 'auto', default 'auto'): " in out and "  trust.on_failure (str" in out
    assert "``" not in out and ":math:" not in out  # docstring markup is shown as plain text
    assert "(see docs/methods.rst, *Trust*)" in out and "/methods" not in out.replace("docs/methods", "")
    # formulas in Unicode, where the TeX was printed (\hat\lambda = \max(0, -\langle \nabla_\phi ...)
    assert "λ̂ = max(0, -⟨∇_φ L(θ̂; D), φ̂⟩ / ‖φ̂‖²)" in out and "Jᵀ ∇²_z ℓ J + λ_2 I" in out
    assert main(["methods", "unlearnrec"]) == 0
    out = capsys.readouterr().out  # each weight its own line, where three printed one sentence naming all three
    assert "  l_u (float, default 0.5): weight λ_u of the unlearning loss.\n" in out and "(H^(0), η)" in out
    for name in METHODS:
        assert main(["methods", name]) == 0
        assert "\\" not in capsys.readouterr().out, name
    assert main(["methods", "nope"]) == 2
    # a paragraph after the Args section is not the last field's (it had joined newton.anderson's help), and progress
    # bars are the command's (--quiet), not an option
    for name, field, paragraph in [("ifru", "newton.anderson", "An option that the others leave unread"),
                                   ("unlearnrec", "contrastive_nodes", "An option that no epoch reads")]:
        assert main(["methods", name]) == 0
        out = capsys.readouterr().out
        assert f"  {field} (" in out and paragraph not in out and "progress" not in out, name


def test_the_command_line_refuses_an_option_of_progress_bars(capsys, tmp_path):
    """``--quiet --option train.progress=true`` drew bars (a QA probe): bars are the command's, shown unless
    ``--quiet``; the option is refused before a run is read."""
    for option in ("train.progress=true", "progress=false"):
        method = "unlearnrec" if option.startswith("progress") else "retrain"
        assert main(["unlearn", "--run", str(tmp_path / "none"), "--method", method, "--option", option, "--out",
                     str(tmp_path / "out"), "--quiet"]) == 2
        error = capsys.readouterr().err
        assert f"--option {option.split('=')[0]}: progress bars are the command's: they show unless --quiet" in error
    # bench too: it drew bars under --quiet and keyed a cell of its own for them (a QA probe)
    assert main(["bench", "--protocol", "attack", "--methods", "finetune", "--option", "finetune:train.progress=true",
                 "--out", str(tmp_path / "bench"), "--quiet"]) == 2
    assert ("--option train.progress: progress bars are the command's: they show unless --quiet"
            in capsys.readouterr().err)
    assert not (tmp_path / "bench").exists()
    # nor do the options an unknown one's error lists name them (qa98: "known: ..., progress" and then refused)
    for command, option, known in [(["unlearn", "--run", str(tmp_path / "none"), "--method", "unlearnrec"],
                                    "num_shards=4", "l_u, l_p"),
                                   (["bench", "--protocol", "attack", "--methods", "retrain_seed"],
                                    "retrain_seed:train.foo=1", "epochs, lr, batch_size, patience, seed, optimizer")]:
        assert main([*command, "--option", option, "--out", str(tmp_path / "out"), "--quiet"]) == 2
        error = capsys.readouterr().err
        assert f"(known: {known}" in error and "progress" not in error, error


def test_a_frozen_half_precision_parameter_is_not_refused(small_planted):
    """check_precision reads trainable parameters only: a frozen float16 scale (no optimizer step, no curvature)
    trains and unlearns as before."""
    model = MF(60, 40, 4)
    model.register_parameter("scale", torch.nn.Parameter(torch.ones(1, dtype=torch.float16), requires_grad=False))
    assert train(model, small_planted, BCEObjective(l2=0.1), TrainConfig(epochs=1)).epochs == 1
    build_unlearner("finetune", model, small_planted, BCEObjective(l2=0.1))


def test_a_closing_delimiter_hugs_what_it_encloses_after_a_space():
    """TeX reads no space in math mode: the library's own ``\\lVert \\theta \\rVert`` (objectives.py) and
    ``\\langle a_u, b_i \\rangle`` (dot_product.py) are ‖θ‖ and ⟨a_u, b_i⟩ (from a mutation run)."""
    from graphforget.cli import _plain_math
    assert _plain_math(r"\lVert \theta \rVert^2") == "‖θ‖²"
    assert _plain_math(r"\langle a_u, b_i \rangle") == "⟨a_u, b_i⟩"


def test_methods_prints_less_or_equal_in_unicode(capsys):
    """IFRU's newton options hold :math:`\\hat\\lambda \\le l_2` and :math:`\\lVert\\nabla_\\phi L(\\hat\\theta;
    D)\\rVert \\le 0.1 \\lVert g\\rVert`: \\le is printed as ≤ (without it in _TEX the word 'le' was printed), and
    a delimiter without the space TeX drops after a control word (it printed "‖ g")."""
    assert main(["methods", "ifru"]) == 0
    out = capsys.readouterr().out
    assert "(λ̂ ≤ l_2)" in out and "‖∇_φ L(θ̂; D)‖ ≤ 0.1 ‖g‖" in out and "-⟨∇_φ L(θ̂; D), φ̂⟩" in out
    assert not re.search(r"\ble\b", out)


def test_an_objective_the_training_graph_cannot_train_is_named_not_the_request(small_planted):
    """BCE on an implicit (all-ones) graph said "the request leaves nothing for the step to fit" (a QA probe): the
    training graph never had a negative."""
    edges = small_planted[EDGE].edge_index[:, small_planted[EDGE].edge_label == 1]
    implicit = make_interactions(edges, None, 60, 40)
    model = MF(60, 40, 4)
    model.reset_parameters(0)
    for name in ("ifru", "finetune", "retrain"):
        with pytest.raises(ValueError, match=f"{METHODS[name].__name__}: BCEObjective needs negative labels but every "
                                             "edge_label of the training graph is 1"):
            build_unlearner(name, model, implicit, BCEObjective(l2=0.1)).unlearn(edges[:, :3])


def test_unlearn_refuses_a_nan_written_into_the_model_after_construction():
    """unlearn() checks the model's finiteness again (documented under Raises), as fit() does: without it FineTune said
    "the training loss is nan ... lower the learning rate" (qa108's mutation)."""
    edges = torch.tensor([[0, 0, 1, 1, 2, 2], [0, 1, 1, 2, 0, 2]])
    graph = make_interactions(edges, torch.tensor([1., 0., 1., 0., 1., 0.]), num_users=3, num_items=3)
    for method in (METHODS["finetune"], METHODS["retrain"]):
        model = MF(3, 3, 4)
        model.reset_parameters(0)
        unlearner = method(model, graph, BCEObjective())
        with torch.no_grad():
            model.user_emb.weight[0, 0] = float("nan")
        with pytest.raises(ValueError, match="the model has non-finite parameters: user_emb.weight"):
            unlearner.unlearn(edges[:, :1])

# Each test below failed under a one-line mutation that the suite had passed (qa165, mutation testing).
def test_a_ready_config_is_refused_where_the_runs_seed_is_zero():
    """Seed 0 is a run's seed like any other: a ready config of seed 3 is refused against it, as against seed 9."""
    with pytest.raises(ValueError, match=re.escape("a ready RetrainConfig keeps its own seed=3 (the run's: 0)")):
        method_config("retrain", RetrainConfig(seed=3), seed=0)
    with pytest.raises(ValueError, match=re.escape("a ready SISAConfig keeps its own seed=3 (the run's: 0)")):
        method_config("sisa", SISAConfig(seed=3), seed=0)
    assert method_config("retrain", RetrainConfig(seed=0), seed=0).seed == 0


def test_another_methods_config_is_refused_even_a_subclass():
    """Documented: a TypeError for options that are another method's config; RecEraserConfig subclasses
    SISAConfig, and SISA had ignored its partition, pretrain and iterations."""
    with pytest.raises(TypeError, match="options for 'sisa' must be a SISAConfig"):
        method_config("sisa", RecEraserConfig())


@pytest.mark.parametrize("name", ["SCIF", "Scif", "IFRU", "Retrain"])
def test_method_names_are_matched_exactly(name):
    """METHODS is keyed by the lowercase names; another case is an unknown method (the bench and the CLI record the
    name given), for method_config and build_unlearner alike."""
    with pytest.raises(ValueError, match=re.escape(f"unknown method {name!r}")):
        method_config(name)
    graph = planted_communities(20, 16, 2, 4, seed=0)
    with pytest.raises(ValueError, match=re.escape(f"unknown method {name!r}")):
        build_unlearner(name, MF(20, 16, 4), graph, BCEObjective())


def test_build_unlearner_hands_the_runs_seed_and_training_to_the_method():
    """build_unlearner(..., train=, seed=) is METHODS[name](..., method_config(name, options, train=, seed=)): the
    run's seed reaches the method's config (a run of seed 7 retrained with seed 0's draw otherwise)."""
    graph = planted_communities(20, 16, 2, 4, seed=0)
    train = TrainConfig(epochs=3, lr=0.25, seed=7)
    for name in ("retrain", "sisa"):
        built = build_unlearner(name, MF(20, 16, 4), graph, BCEObjective(), {}, train=train, seed=7)
        assert built.config.seed == 7 and built.config.train == train
        assert built.config == method_config(name, {}, train=train, seed=7)


def test_empty_options_for_a_method_not_run_pass_and_given_ones_are_refused():
    """Documented: an empty dict loses nothing and passes; options given to a method not run are refused."""
    from graphforget.unlearn.registry import refuse_stray_options
    refuse_stray_options({"ifru": {}, "retrain": {"train.lr": 0.1}}, ["retrain"])
    with pytest.raises(ValueError, match=re.escape("options for methods that are not run: ifru (methods: retrain)")):
        refuse_stray_options({"ifru": {"hops": 1}}, ["retrain"])
