"""A config built directly gets the type checks of build_config: every wrong value is a ValueError naming the
field, never an obscure error later; dicts of a nested config's fields (and JSON lists) are converted."""
from __future__ import annotations

import dataclasses
import json
import math
import re
import types
import typing
import warnings

import numpy as np
import pytest
import torch

from graphforget.config import build_config, check_device, describe
from graphforget.models import ContrastiveBPRObjective
from graphforget.objectives import BCEObjective, BPRObjective
from graphforget.presets import Hyperparameters, default_hparams
from graphforget.train import TrainConfig
from graphforget.unlearn import (METHODS, FineTuneConfig, IFRUConfig, NewtonConfig, RecEraserConfig, RetrainConfig,
                                 SISAConfig, SolverConfig, TrustConfig, UnlearnRecConfig, method_config)

CONFIGS = (TrainConfig, RetrainConfig, FineTuneConfig, SISAConfig, RecEraserConfig, UnlearnRecConfig, SolverConfig,
           NewtonConfig, TrustConfig, IFRUConfig)
#: The name an error gives a config: IFRU's groups name themselves by their place in IFRUConfig.
PATHS = {SolverConfig: "IFRUConfig.solver", NewtonConfig: "IFRUConfig.newton", TrustConfig: "IFRUConfig.trust"}
#: Typed (non-string) values of every kind, right or wrong for one field or another.
VALUES = (2.5, 3, 0, True, None, float("nan"), float("inf"), (0.5,), [0.1, 0.2], {"lr": 0.5}, {"bogus": 1})


def _fields(cls):
    hints = typing.get_type_hints(cls)
    return [(f.name, hints[f.name]) for f in dataclasses.fields(cls) if f.init]


def _float_fields(cls) -> list[str]:
    """The fields of ``cls`` that hold a float (``float``, ``float | None``, ``float | 'auto'``)."""
    unions = (typing.Union, types.UnionType)
    return [name for name, kind in _fields(cls)
            if kind is float or (typing.get_origin(kind) in unions and float in typing.get_args(kind))]


def test_the_largest_learning_rate_accepted_runs_adams_first_step():
    """At 0.1 x float32's maximum (1 - 0.9 is under 0.1 in floating point) Adam's first step overflowed in torch."""
    from graphforget.config import LR_LIMIT
    from graphforget.data import planted_communities
    from graphforget.models import MF
    from graphforget.objectives import BCEObjective
    from graphforget.train import train
    weight = torch.zeros(1, requires_grad=True)
    weight.grad = torch.ones(1)
    with pytest.raises(RuntimeError, match="without overflow"):  # the bound's reason: 0.1 x the maximum overflows
        torch.optim.Adam([weight], lr=0.1 * float(torch.finfo(torch.float32).max)).step()
    graph = planted_communities(num_users=6, num_items=6, num_communities=2, interactions_per_user=2, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # what such a rate does to the model is its own affair
        assert train(MF(6, 6, 2), graph, BCEObjective(), TrainConfig(epochs=1, lr=LR_LIMIT)).epochs == 1


@pytest.mark.parametrize("make, message", [
    (lambda: TrainConfig(epochs=2.5), "TrainConfig.epochs: must be an int (got 2.5)"),
    (lambda: TrainConfig(epochs=True), "TrainConfig.epochs: must be an int (got True)"),  # a bool is no int
    (lambda: TrainConfig(lr="0.01"), "TrainConfig.lr: must be a float (got '0.01')"),
    (lambda: TrainConfig(lr=float("inf")), "TrainConfig.lr: must be finite (got inf)"),
    # Adam's lr converted to float32 failed inside torch: "value cannot be converted to type float without overflow"
    (lambda: TrainConfig(lr=1e300), "TrainConfig.lr: must be finite in float32: an absolute value at most 3.403e+38 "
                                    "(got 1e+300)"),
    # finite in float32, but Adam's first step divides it by 0.1: torch's overflow message again, naming no field
    (lambda: TrainConfig(lr=1e38), "TrainConfig.lr: must be at most 3.063e+37 (Adam's first step divides it by 0.1)"),
    (lambda: UnlearnRecConfig(lr=1e38), "UnlearnRecConfig.lr: must be at most 3.063e+37"),
    (lambda: UnlearnRecConfig(finetune_lr=1e38), "UnlearnRecConfig.finetune_lr: must be at most 3.063e+37"),
    (lambda: SolverConfig(name="adam", lr=1e38), "IFRUConfig.solver.lr: must be at most 3.063e+37"),
    (lambda: TrainConfig(progress=1), "TrainConfig.progress: must be a bool (got 1)"),
    (lambda: RetrainConfig(seed="a"), "RetrainConfig.seed: must be an int (got 'a')"),
    (lambda: RetrainConfig(train=3), "RetrainConfig.train: must be a TrainConfig or a dict of its fields (got 3)"),
    (lambda: FineTuneConfig(local="no"), "FineTuneConfig.local: must be a bool (got 'no')"),
    (lambda: SISAConfig(num_shards=2.0), "SISAConfig.num_shards: must be an int (got 2.0)"),
    (lambda: SISAConfig(num_shards="3"), "SISAConfig.num_shards: must be an int (got '3')"),
    (lambda: SISAConfig(attention_dim=1.5), "SISAConfig.attention_dim: must be an int or None (got 1.5)"),
    (lambda: RecEraserConfig(partition_iters="5"), "RecEraserConfig.partition_iters: must be an int (got '5')"),
    (lambda: UnlearnRecConfig(request_ratio=2.0), "UnlearnRecConfig.request_ratio: must be a tuple[float, float] "
                                                  "(got 2.0)"),
    (lambda: UnlearnRecConfig(request_ratio=(0.1,)), "UnlearnRecConfig.request_ratio: must be a tuple[float, float]"),
    (lambda: UnlearnRecConfig(finetune_lr="1e-3"), "UnlearnRecConfig.finetune_lr: must be a float or None"),
    (lambda: SolverConfig(damping="autox"), "IFRUConfig.solver.damping: must be a float or 'auto' (got 'autox')"),
    (lambda: SolverConfig(tol=float("nan")), "IFRUConfig.solver.tol: must be finite (got nan)"),
    (lambda: NewtonConfig(steps="3"), "IFRUConfig.newton.steps: must be an int or 'auto' (got '3')"),
    (lambda: TrustConfig(retries=1.0), "IFRUConfig.trust.retries: must be an int (got 1.0)"),
    (lambda: IFRUConfig(prune=(0.5, "1")), "IFRUConfig.prune: must be a tuple[float, ...] or None (got (0.5, '1'))"),
    (lambda: IFRUConfig(hops=1.0), "IFRUConfig.hops: must be an int or None (got 1.0)"),
    (lambda: IFRUConfig(prune=(1.0, math.nan)), "IFRUConfig.prune: must be finite (got (1.0, nan))"),
    # Values of the right type that would fail only later, inside torch or at the first request.
    (lambda: TrainConfig(seed=2 ** 64), "TrainConfig.seed: must be in [0, 2**32) (got 18446744073709551616)"),
    (lambda: SISAConfig(seed=-1), "SISAConfig.seed: must be in [0, 2**32) (got -1)"),
    (lambda: UnlearnRecConfig(seed=2 ** 32), "UnlearnRecConfig.seed: must be in [0, 2**32)"),
    (lambda: IFRUConfig(hops=0, prune=(0.5, 0.5)), "IFRUConfig.prune: one ratio per order 0..hops, 1 with hops=0"),
    (lambda: RecEraserConfig(attention_dim=0), "RecEraserConfig.attention_dim: None or >= 1 (got 0)"),
    (lambda: SISAConfig(activation="foo"), "SISAConfig.activation: 'tanh' or 'relu' (got 'foo')"),
    (lambda: UnlearnRecConfig(withdraw_init=-1.0), "UnlearnRecConfig.withdraw_init: must be >= 0 (got -1.0)"),
    # Integers too large for torch and tqdm (a C long), or for the list of dampings (out of memory).
    (lambda: TrainConfig(batch_size=2 ** 64), "TrainConfig.batch_size: must have an absolute value below 2**62"),
    (lambda: FineTuneConfig(epochs=10 ** 20), "FineTuneConfig.epochs: must have an absolute value below 2**62"),
    (lambda: TrustConfig(retries=21), "IFRUConfig.trust.retries: must be an integer in [0, 20] (the damping grows "
                                      "tenfold with each) (got 21)"),
])
def test_a_wrong_type_is_a_value_error_naming_the_field(make, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        make()


@pytest.mark.parametrize("cls", CONFIGS, ids=lambda cls: cls.__name__)
def test_typed_values_are_taken_as_build_config_takes_them(cls):
    """Every typed value of every field: both refuse it (the constructor naming the field), or both build the
    same config."""
    path = PATHS.get(cls, cls.__name__)
    for name, _ in _fields(cls):
        for value in VALUES:
            try:
                direct = cls(**{name: value})
            except ValueError as error:
                assert str(error).startswith(f"{path}.{name}"), (name, value, str(error))
                with pytest.raises(ValueError):
                    build_config(cls, {name: value})
            else:
                assert build_config(cls, {name: value}) == direct, (name, value)


@pytest.mark.parametrize("cls, name", [(cls, name) for cls in CONFIGS for name in _float_fields(cls)],
                         ids=lambda param: getattr(param, "__name__", param))
def test_nan_and_infinities_are_refused_in_every_float_field(cls, name):
    for value in (math.nan, math.inf, -math.inf):
        with pytest.raises(ValueError, match=re.escape(f"{PATHS.get(cls, cls.__name__)}.{name}: must be finite")):
            cls(**{name: value})


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_names_an_option_name_that_is_no_string(name):
    """qa164: every method's constructor (and method_config) failed in str.startswith, before build_config's check of
    the names, with an AttributeError that named no config."""
    from graphforget.data import planted_communities
    from graphforget.models import MF
    graph, model = planted_communities(12, 8, 2, 3, seed=0), MF(12, 8, 4)
    cls = METHODS[name].Config
    for key in (1, ("epochs",)):
        with pytest.raises(ValueError, match=re.escape(f"{cls.__name__}: option names are strings, got {key!r}")):
            METHODS[name](model, graph, BCEObjective(), {key: 2})
        with pytest.raises(ValueError, match=re.escape(f"{cls.__name__}: option names are strings, got {key!r}")):
            method_config(name, {key: 2})


def test_huge_integers_other_classes_and_nested_edits_are_named():
    """An int past float's range raised a bare OverflowError; a base of another class was returned as it was; a key
    that is no string failed in str.partition; an edited nested TrainConfig named neither SISA's field nor its path."""
    for make in (lambda: TrainConfig(lr=10 ** 400), lambda: build_config(TrainConfig, {"lr": -10 ** 400})):
        with pytest.raises(ValueError, match=re.escape("TrainConfig.lr: must be finite (got")):
            make()
    with pytest.raises(TypeError, match="IFRUConfig: base must be a IFRUConfig, got a SISAConfig"):
        build_config(IFRUConfig, {}, SISAConfig())
    with pytest.raises(ValueError, match="IFRUConfig: option names are strings, got 1"):
        build_config(IFRUConfig, {1: 2})
    # nested (qa164): a bare TypeError of str.join, or of sorted where a string name came too
    for options in ({"train": {1: 2}}, {"train": {None: 2, "epohcs": 3}}):
        with pytest.raises(ValueError, match="RetrainConfig.train: option names are strings, got "):
            build_config(RetrainConfig, options)
    from graphforget.config import recheck
    for field in ("train", "aggregator_train"):
        config = SISAConfig(aggregation="attention", aggregator_train=TrainConfig())
        getattr(config, field).lr = -1.0
        with pytest.raises(ValueError, match=re.escape(f"SISAConfig.{field}.lr: must be > 0 (got -1.0)")):
            recheck(config)
    config = IFRUConfig()
    config.solver.tol = 5.0  # IFRU's groups name their place themselves: as it was
    with pytest.raises(ValueError, match=re.escape("IFRUConfig.solver.tol: must be < 1")):
        recheck(config)


def test_a_dict_becomes_the_nested_config_as_in_ifru():
    assert RetrainConfig(train={"lr": 0.1}) == RetrainConfig(TrainConfig(lr=0.1))
    assert FineTuneConfig(train={"epochs": 5}, epochs=2).train == TrainConfig(epochs=5)
    assert SISAConfig(aggregation="attention", aggregator_train={"lr": 0.5}).aggregator_train == TrainConfig(lr=0.5)
    assert IFRUConfig(solver={"tol": 0.1}).solver == SolverConfig(tol=0.1)
    with pytest.raises(ValueError, match=re.escape("RetrainConfig.train: unknown field(s) bogus (known: epochs,")):
        RetrainConfig(train={"bogus": 1})
    with pytest.raises(ValueError, match=re.escape("FineTuneConfig.train: TrainConfig.epochs: must be an int (got 2.5)")):
        FineTuneConfig(train={"epochs": 2.5})
    with pytest.raises(ValueError, match=re.escape("SISAConfig.aggregator_train: TrainConfig.lr: must be > 0")):
        SISAConfig(aggregation="attention", aggregator_train={"lr": -1.0})


def test_values_are_converted_as_build_config_converts_them():
    config = TrainConfig(lr=1)
    assert type(config.lr) is float and config == build_config(TrainConfig, {"lr": 1})
    assert IFRUConfig(prune=[1, 0.5]).prune == (1.0, 0.5)  # a list, as JSON gives a tuple back
    assert UnlearnRecConfig(request_ratio=[0.1, 0.2]).request_ratio == (0.1, 0.2)


def test_numpy_scalars_are_the_numbers_they_stand_for():
    """A sweep over ``np.arange`` gives NumPy scalars: they are taken, stored as Python's int and float (JSON writes
    those), and a NumPy float is no int, as a Python float is none."""
    config = FineTuneConfig(epochs=np.int64(2), train=TrainConfig(lr=np.float32(0.5), patience=np.uint8(3)))
    assert (config.epochs, config.train.lr, config.train.patience) == (2, 0.5, 3)
    assert [type(v) for v in (config.epochs, config.train.lr, config.train.patience)] == [int, float, int]
    with pytest.raises(ValueError, match=re.escape("FineTuneConfig.epochs: must be an int (got np.float64(2.0))")):
        FineTuneConfig(epochs=np.float64(2.0))
    with pytest.raises(ValueError, match=re.escape("TrainConfig.lr: must be a float")):
        TrainConfig(lr=np.bool_(True))


@pytest.mark.parametrize("config", [
    TrainConfig(), RetrainConfig(), FineTuneConfig(), SISAConfig(), RecEraserConfig(), UnlearnRecConfig(),
    IFRUConfig(), IFRUConfig.paper(), IFRUConfig.newton(2), IFRUConfig.newton(1, prune=(1.0, 0.5, 0.1)),
    SISAConfig(TrainConfig(epochs=3), num_shards=4, aggregation="attention", aggregator_train=TrainConfig(lr=0.5)),
    UnlearnRecConfig(encoder_layers=2, finetune_lr=1e-2, max_loss_increase=None),
], ids=lambda config: type(config).__name__)
def test_defaults_and_presets_build_and_come_back_from_json(config):
    stored = json.loads(json.dumps(dataclasses.asdict(config)))
    assert type(config)(**stored) == config
    assert build_config(type(config), stored) == config


def test_stored_hyperparameters_still_load():
    for hparams in (default_hparams("mf"), default_hparams("lightgcn", training="stationary"),
                    default_hparams("sgl", "synthetic")):
        assert Hyperparameters(**json.loads(json.dumps(hparams.as_dict()))) == hparams


def test_build_config_still_parses_command_line_strings():
    assert build_config(RetrainConfig, {"train.lr": "1e-3", "train.epochs": "5", "seed": "2", "warm_start": "yes"}) \
        == RetrainConfig(TrainConfig(epochs=5, lr=1e-3), seed=2, warm_start=True)
    config = build_config(IFRUConfig, {"prune": "1,0.5", "hops": "none", "newton.steps": "3", "solver.damping": "0"})
    assert (config.prune, config.hops, config.newton.steps, config.solver.damping) == ((1.0, 0.5), None, 3, 0.0)
    assert build_config(UnlearnRecConfig, {"request_ratio": "0.1,0.2"}).request_ratio == (0.1, 0.2)
    assert build_config(SISAConfig, {"attention_dim": "none", "num_shards": "4"}).num_shards == 4
    with pytest.raises(TypeError, match="SolverConfig: options must be a dict of its fields, got a str"):
        build_config(SolverConfig, "tol=1e-3")  # unparsed: the command line's KEY=VALUE make a dict
    with pytest.raises(ValueError, match=re.escape("TrainConfig.lr: must be finite (got nan)")):
        build_config(TrainConfig, {"lr": "nan"})
    with pytest.raises(ValueError, match=re.escape("RetrainConfig.train: TrainConfig.lr: must be finite (got inf)")):
        build_config(RetrainConfig, {"train.lr": "inf"})
    # tuples: brackets of either kind, a trailing comma; an unbalanced bracket or an empty item was read past
    for text in ("(1, .5)", "[1, 0.5]", " 1,0.5, ", "(1, 0.5,)"):
        assert build_config(IFRUConfig, {"prune": text}).prune == (1.0, 0.5), text
    for text in ("1,,0.5", "(1,0.5", "1,0.5]", "[1, 0.5)", ","):
        with pytest.raises(ValueError, match="IFRUConfig.prune: expected"):
            build_config(IFRUConfig, {"prune": text})
    assert build_config(IFRUConfig, {"solver.damping": " auto"}).solver.damping == "auto"  # as " 0.5 " is 0.5
    with pytest.raises(ValueError, match=re.escape("IFRUConfig: unknown option '' (an empty name) (known:")):
        build_config(IFRUConfig, {".tol": "1e-3"})  # "unknown option  (known: ...)"


@pytest.mark.parametrize("cls", (Hyperparameters, *CONFIGS), ids=lambda cls: cls.__name__)
def test_describe_gives_the_defaults_a_config_built_without_options_has(cls):
    """Each option's listed default is its value in ``build_config(cls)``, nested ones too: Hyperparameters' ``train``
    defaults to an early-stopped TrainConfig (``patience=5``), which describe listed as TrainConfig's own (10)."""
    built = build_config(cls)
    for row in describe(cls):
        value = built
        for part in row.name.split("."):
            value = getattr(value, part)
        assert row.default == value, row.name


def test_a_dict_for_a_nested_config_changes_the_field_s_default():
    """Hyperparameters' train stops early after 5 epochs without a gain, TrainConfig's own after 10: a dict setting
    only the learning rate (or a dotted train.lr without a base) reset the patience to 10."""
    preset = Hyperparameters().train
    assert preset.patience == 5
    for made in (Hyperparameters(train={"lr": 0.5}), build_config(Hyperparameters, {"train.lr": "0.5"}),
                 build_config(Hyperparameters, {"train": {"lr": "0.5"}})):
        assert made.train == dataclasses.replace(preset, lr=0.5)
    assert IFRUConfig(solver={"tol": 1e-3}).solver == dataclasses.replace(IFRUConfig().solver, tol=1e-3)


def test_a_replaced_config_shares_no_nested_config_with_its_base():
    """Hyperparameters.replace() returned a copy whose TrainConfig was the base's: an edit of one's epochs was the
    other's too (found by a probe)."""
    base = Hyperparameters()
    quick = base.replace(l2=1.0)
    quick.train.epochs = 3
    assert base.train.epochs == 100 and quick.train is not base.train
    base_ifru = IFRUConfig()
    ifru = build_config(IFRUConfig, {"spillover": False}, base_ifru)
    assert ifru.solver == base_ifru.solver and ifru.solver is not base_ifru.solver


def test_simgcl_hyperparameters_need_a_layer_before_any_data_is_read():
    """SimGCL averages layers 1..K: num_layers 0 passed Hyperparameters and was refused by the model, after the
    command line had read the data (found by a probe)."""
    with pytest.raises(ValueError, match=r"^Hyperparameters.num_layers: must be >= 1 \(got 0\)$"):
        Hyperparameters(model="simgcl", loss="bpr", num_layers=0)
    assert Hyperparameters(model="lightgcn", num_layers=0).num_layers == 0


def test_check_device_names_a_device_of_the_wrong_type():
    for device in (None, 1.5):
        with pytest.raises(ValueError, match=f"^unknown device {device!r}$"):
            check_device(device)


def test_check_device_refuses_mps_where_it_is_not_available():
    if torch.backends.mps.is_available():
        pytest.skip("this machine has MPS")
    with pytest.raises(ValueError, match="^MPS is not available on this machine$"):
        check_device("mps")


# ---------------------------------------------------- each test below failed under a mutation the suite had passed
# (qa112, mutation testing of the configs, presets and registry)

# ------------------------------------------------------------------------------------------------ config.py

def test_warn_caller_attributes_the_warning_to_the_first_frame_outside_graphforget():
    """warn_caller's docstring: the warning names the user's line, however many graphforget frames lie between."""
    from graphforget.config import warn_caller
    library = {"__name__": "graphforget.qa_fake", "warn_caller": warn_caller}
    exec(compile("def inner():\n    warn_caller('probe')\ndef outer():\n    inner()\n", "<graphforget-fake>", "exec"),
         library)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        library["outer"]()
    assert [w.filename for w in caught] == [__file__]
    # ... and torch's wrapper of a function graphforget decorates with no_grad (evaluate_auc's named it)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.no_grad()(library["outer"])()
    assert [w.filename for w in caught] == [__file__]


def test_a_learning_rate_of_zero_is_told_it_must_be_positive():
    """lr_rule: 0 fails the lower bound, so the message is the lower bound's, not 'must be at most 3e37'."""
    with pytest.raises(ValueError, match=re.escape("TrainConfig.lr: must be > 0 (got 0.0)")):
        TrainConfig(lr=0.0)


def test_a_float_of_float32s_largest_magnitude_is_accepted():
    """check_types' docstring: 'finite in float32' / 'an absolute value at most 3.403e+38': the maximum is in."""
    largest = float(np.finfo(np.float32).max)
    assert TrustConfig(min_ratio=largest).min_ratio == largest


def test_an_integer_of_2_to_the_62_is_refused():
    """Integers lie in (-2**62, 2**62): 2**62 itself must be refused."""
    with pytest.raises(ValueError, match=re.escape("TrainConfig.batch_size: must have an absolute value below 2**62")):
        TrainConfig(batch_size=2 ** 62)
    assert TrainConfig(batch_size=2 ** 62 - 1).batch_size == 2 ** 62 - 1


def test_a_huge_negative_integer_for_a_float_is_reported_as_negative():
    """-10**400 overflows a float: the refused value is -inf, not +inf (the sign of what the caller gave)."""
    with pytest.raises(ValueError, match=re.escape("TrainConfig.lr: must be finite (got -inf)")):
        TrainConfig(lr=-10 ** 400)


@pytest.mark.parametrize("text, value", [("no", False), ("NO", False), ("false", False), ("0", False),
                                         ("yes", True), ("true", True), ("1", True)])
def test_bool_strings_are_read_by_their_meaning(text, value):
    assert build_config(RetrainConfig, {"warm_start": text}).warm_start is value


@dataclasses.dataclass
class _Opts:
    """Options.

    Args:
        rate:
            a rate   with   spaces
            over two lines.
    """
    rate: float = 0.1


def test_describe_collapses_whitespace_of_a_help_that_starts_on_the_next_line():
    """describe's help is the Args entry with its lines joined by single spaces."""
    assert describe(_Opts)[0].help == "a rate with spaces over two lines."


def test_describe_reads_the_help_of_a_config_nested_in_a_function_or_class():
    """A user's config defined inside a function or class has its docstring indented deeper; its help had read
    as empty (the Args entries were looked for at 4 to 8 spaces)."""
    def make():
        class Holder:
            @dataclasses.dataclass
            class Nested:
                """Options.

                Args:
                    rate: a rate
                        over two lines.
                    steps: how many.

                A paragraph after the section.
                """
                rate: float = 0.1
                steps: int = 3
        return Holder.Nested
    assert [(row.name, row.help) for row in describe(make())] == [
        ("rate", "a rate over two lines."), ("steps", "how many.")]


# ------------------------------------------------------------------------------------------------ presets.py

def test_hyperparameters_refuse_an_embedding_dim_of_zero():
    with pytest.raises(ValueError, match=re.escape("Hyperparameters.embedding_dim: must be >= 1 (got 0)")):
        Hyperparameters(embedding_dim=0)


def test_hyperparameters_take_an_l2_of_zero():
    """l2 'must be >= 0': 0 disables the L2 term (Objective's docstring)."""
    hparams = Hyperparameters(l2=0.0)
    assert hparams.l2 == 0.0 and hparams.objective().l2 == 0.0


def test_hyperparameters_take_an_ssl_weight_of_zero_for_a_contrastive_model():
    """'must be None or a weight >= 0': 0 switches the contrastive term off."""
    hparams = Hyperparameters(model="sgl", loss="bpr", ssl_weight=0.0)
    assert hparams.objective().ssl_weight == 0.0


def test_as_dict_leaves_out_an_ssl_weight_equal_to_the_models_preset():
    """as_dict: ssl_weight only when set to other than the model's preset (SGL: 0.1, SimGCL: 0.2)."""
    assert "ssl_weight" not in Hyperparameters(model="sgl", loss="bpr", ssl_weight=0.1).as_dict()
    assert "ssl_weight" not in Hyperparameters(model="simgcl", loss="bpr", ssl_weight=0.2).as_dict()
    assert Hyperparameters(model="sgl", loss="bpr", ssl_weight=0.3).as_dict()["ssl_weight"] == 0.3


def test_the_objective_takes_the_given_ssl_weight_and_seed():
    objective = Hyperparameters(model="sgl", loss="bpr", ssl_weight=0.5).objective(seed=7)
    assert isinstance(objective, ContrastiveBPRObjective)
    assert (objective.ssl_weight, objective.tau, objective.seed) == (0.5, 0.2, 7)
    plain = Hyperparameters(loss="bpr", l2=0.25).objective(seed=7)
    assert type(plain) is BPRObjective and (plain.l2, plain.seed) == (0.25, 7)
    assert type(Hyperparameters(l2=0.25).objective()) is BCEObjective


def test_presets_have_the_documented_values():
    """default_hparams' docstring."""
    lgn = default_hparams("lightgcn")
    assert (lgn.num_layers, lgn.l2, lgn.train.lr, lgn.train.batch_size, lgn.train.patience) == (2, 1.0, 0.01, 4096, 5)
    bpr = default_hparams("mf", loss="bpr")
    assert (bpr.l2, bpr.train.lr, bpr.train.batch_size, bpr.train.epochs) == (1e-4, 5e-3, 8192, 50)
    assert default_hparams("mf", "ml-100k", "stationary").l2 == 8.0
    assert default_hparams("mf", "bookcrossing", "stationary").l2 == 5.0
    assert default_hparams("mf", "synthetic", "stationary").l2 == 5.0
    assert default_hparams("lightgcn", "ml-100k", "stationary").l2 == 1.0
    assert default_hparams("mf", "ml-100k", "stationary").train.epochs == 500


@pytest.mark.parametrize("model", ["lightgcn", "sgl", "simgcl"])
def test_build_model_passes_num_layers_to_every_model_but_mf(model):
    hparams = Hyperparameters(model=model, loss="bce" if model == "lightgcn" else "bpr", num_layers=3,
                              embedding_dim=4)
    assert hparams.build_model(5, 6).num_layers == 3


def test_build_model_draws_from_its_seed():
    hparams = Hyperparameters(embedding_dim=4)
    one, other = hparams.build_model(5, 6, seed=1), hparams.build_model(5, 6, seed=2)
    assert not torch.equal(one.user_emb.weight, other.user_emb.weight)
    assert torch.equal(one.user_emb.weight, hparams.build_model(5, 6, seed=1).user_emb.weight)


# ------------------------------------------------------------------------------------------------ ifru/config.py

def test_solver_max_row_growth_of_one_is_accepted():
    """'None or >= 1'."""
    assert SolverConfig(max_row_growth=1.0).max_row_growth == 1.0
    message = "IFRUConfig.solver.max_row_growth: must be None or >= 1 (got 0.99)"
    with pytest.raises(ValueError, match=re.escape(message)):
        SolverConfig(max_row_growth=0.99)


def test_solver_max_row_growth_none_passes_with_a_given_damping():
    """The unread-option rule allows max_row_growth None or its default beside a given damping, nothing else."""
    assert SolverConfig(damping=0.1, max_row_growth=None).max_row_growth is None
    with pytest.raises(ValueError, match=re.escape("IFRUConfig.solver.max_row_growth: read only with damping='auto'")):
        SolverConfig(damping=0.1, max_row_growth=2.0)


def test_solver_relative_damping_must_not_be_negative():
    with pytest.raises(ValueError, match=re.escape("IFRUConfig.solver.relative_damping: must be >= 0 (got -1.0)")):
        SolverConfig(relative_damping=-1.0)


def test_trust_bounds():
    """max_val_auc_drop 'None or > 0'; max_fresh_loss_rise 'None or >= 0'; min_ratio '>= 0'."""
    message = "IFRUConfig.trust.max_val_auc_drop: must be None or > 0 (got 0.0)"
    with pytest.raises(ValueError, match=re.escape(message)):
        TrustConfig(max_val_auc_drop=0.0)
    assert TrustConfig(max_fresh_loss_rise=0.0).max_fresh_loss_rise == 0.0
    with pytest.raises(ValueError, match=re.escape("IFRUConfig.trust.min_ratio: must be >= 0 (got -0.5)")):
        TrustConfig(min_ratio=-0.5)


def test_prune_ratio_of_zero_is_in_range():
    """'ratios in [0, 1]': 0 is one."""
    assert IFRUConfig(prune=(0.0,)).prune == (0.0,)


def test_the_paper_preset_is_the_documented_one():
    """paper(): no damping, the original objective's curvature, a tight solve, no retry, the step applied even
    when it fails the test; a dict changes only the fields it names."""
    paper = IFRUConfig.paper()
    assert paper.curvature_of == "original" and paper.solver.damping == 0.0 and paper.solver.tol == 1e-4
    assert (paper.trust.retries, paper.trust.on_failure, paper.newton.steps) == (0, "apply", 1)
    changed = IFRUConfig.paper(solver={"tol": 1e-6, "name": "direct"}, trust={"on_failure": "raise"})
    assert (changed.solver.tol, changed.solver.name, changed.solver.damping) == (1e-6, "direct", 0.0)
    assert (changed.trust.on_failure, changed.trust.retries) == ("raise", 0)


def test_the_newton_preset_reaches_one_hop_past_the_receptive_field():
    for receptive_field in (0, 2):
        config = IFRUConfig.newton(receptive_field)
        assert config.hops == receptive_field + 1 and config.solver.tol == 0.1
        assert config.newton == NewtonConfig(8, True) and config.curvature_of == "remaining"


# ------------------------------------------------------------------------------------------------ registry.py

def test_register_refuses_the_benchmarks_own_method_name():
    from graphforget.unlearn import IFRU, METHODS, register
    with pytest.raises(ValueError, match="retrain_seed' is the benchmark harness's own method"):
        register(type("Shadow", (IFRU,), {"name": "retrain_seed"}))
    assert "retrain_seed" not in METHODS


def test_method_config_takes_progress_from_the_runs_training():
    """method_config: train and seed set the config's fields, 'and progress, from train's'."""
    assert method_config("unlearnrec", None, train=TrainConfig(progress=True)).progress is True
    assert method_config("unlearnrec", None, train=TrainConfig(progress=False)).progress is False


def test_an_unknown_method_is_a_value_error_listing_the_known():
    with pytest.raises(ValueError, match=r"unknown method 'nope'; known: .*ifru"):
        method_config("nope")


@dataclasses.dataclass
class _ArgsOnTheFirstLine:
    """Args:
        alpha: a rate,
            over two lines.
        beta: a count.
    """
    alpha: float = 0.1
    beta: int = 2


def test_describe_reads_an_args_section_that_opens_the_docstring():
    """The fields of an Args: on the docstring's first line are read as any others (a cleandoc moved them to column
    0, where they had read as empty)."""
    assert [(row.name, row.help) for row in describe(_ArgsOnTheFirstLine)] == [
        ("alpha", "a rate, over two lines."), ("beta", "a count.")]


def test_the_bpr_preset_never_stops_early():
    """Mutant P3 (BPR preset ``patience=5``): the docstring's BPR profile trains 50 epochs because implicit data
    has no labelled validation set to stop on; TrainConfig's ``patience=0`` is 'never stop early'."""
    for model in ("mf", "lightgcn", "sgl", "simgcl"):
        hparams = default_hparams(model, "ml-100k", loss="bpr")
        assert (hparams.train.patience, hparams.train.epochs) == (0, 50)
