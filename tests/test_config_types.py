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
from graphforget.presets import Hyperparameters, default_hparams
from graphforget.train import TrainConfig
from graphforget.unlearn import (FineTuneConfig, IFRUConfig, NewtonConfig, RecEraserConfig, RetrainConfig, SISAConfig,
                                 SolverConfig, TrustConfig, UnlearnRecConfig)

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
