"""The benchmark harness: cache keys, resuming a killed run, the intervals, the stream's removed sets."""
from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import math
import os
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from graphforget import cli
from graphforget.bench import (DEFAULT_METHODS, PROTOCOLS, BenchResult, Cell, CellCache, DataSource, Setting,
                               aggregate, bench_hparams, deletion_request, mean_interval, parse_params, plan_cells,
                               run_bench, stream_positions, stream_requests, t_quantile)
from graphforget.bench.harness import MAX_SEED_COUNT, _seed_list
from graphforget.bench.protocols import ProtocolError
from graphforget.bench.setting import BENCH_METHODS, request_digest
from graphforget.data import EDGE, make_interactions, pair_keys, planted_communities
from graphforget.metrics import prediction_distance
from graphforget.presets import Hyperparameters
from graphforget.protocols.attack import prepare_attack_data
from graphforget.runs import sha256_file
from graphforget.unlearn import METHODS, Retrain, RetrainConfig, register
from graphforget.unlearn.registry import RESERVED
from graphforget.verify import verify_forgetting

#: A tiny model trained for a few epochs: fast, and deterministic for a seed.
TINY = Hyperparameters(model="mf", embedding_dim=8, l2=1.0, train={"epochs": 3, "patience": 0})
#: SISA and RecEraser with two shards (the default ten would leave the small shards nearly empty).
SHARDS = {"sisa": {"num_shards": 2}, "receraser": {"num_shards": 2}}


def _differences(a, b, path: str = "") -> list[str]:
    """The paths where ``a`` and ``b`` (JSON-like) differ, with both values: what a failed equality shows (pytest
    truncates two long dicts)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [f"{path}/{k}" for k in a.keys() ^ b.keys()] + [
            d for k in a.keys() & b.keys() for d in _differences(a[k], b[k], f"{path}/{k}")]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for k, (x, y) in enumerate(zip(a, b)) for d in _differences(x, y, f"{path}[{k}]")]
    same = a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))
    return [] if same else [f"{path}: {a!r} != {b!r}"]


def _without_timing(value):
    """``value`` with every timing (a key naming seconds) removed, recursively: what must match across runs."""
    if isinstance(value, dict):
        return {k: _without_timing(v) for k, v in value.items() if "seconds" not in k and k != "cached"}
    if isinstance(value, list):
        return [_without_timing(v) for v in value]
    return value


# ---------------------------------------------------------------------------------------- intervals

def test_t_quantile_matches_tables():
    for df, expected in ((1, 12.7062047), (2, 4.3026527), (3, 3.1824463), (10, 2.2281389), (30, 2.0422725),
                         (5, 2.5705818), (7, 2.3646243), (9, 2.2621572), (15, 2.1314495), (29, 2.0452296)):
        assert t_quantile(0.95, df) == pytest.approx(expected, abs=1e-6)  # odd df >= 5: the odd series' terms


def test_interval_against_a_hand_computed_value():
    # x = 1, 2, 3: mean 2, s = 1, half-width t_{0.975, 2} / sqrt(3) = 4.302652729749464 / 1.7320508 = 2.4841377
    stat = mean_interval([1.0, 2.0, 3.0])
    assert stat["mean"] == 2.0 and stat["n"] == 3
    assert stat["half_width"] == pytest.approx(2.4841377117503, abs=1e-9)
    assert (stat["low"], stat["high"]) == pytest.approx((2 - 2.4841377117503, 2 + 2.4841377117503))


def test_interval_edge_cases():
    assert mean_interval([0.5])["half_width"] is None and mean_interval([0.5])["mean"] == 0.5
    assert mean_interval([None, math.nan])["mean"] is None
    assert mean_interval([1.0, None, 3.0])["n"] == 2
    for value in ("0.5", True):  # averaged as 0.5 and 1 (a QA probe)
        with pytest.raises(ValueError, match=f"mean_interval takes numbers or None, got {re.escape(repr(value))}"):
            mean_interval([0.7, value])
    for confidence in (0.0, 1.0, 1.5, -0.1, math.nan):  # 1.5 bisected for ever (qa96)
        with pytest.raises(ValueError, match="confidence must be in"):
            t_quantile(confidence, 2)
    for df in (0, "2", math.inf, math.nan, 2.5):  # "2" was refused as "got 2"; inf and NaN in Python's int()
        with pytest.raises(ValueError, match=f"degrees of freedom must be an integer >= 1, got {re.escape(repr(df))}"):
            t_quantile(0.95, df)


def test_infinite_values_are_left_out_and_one_value_is_its_own_interval():
    # An infinite seed (a ratio over an underflowed 0) would make the mean and the interval infinite.
    stat = mean_interval([1.0, math.inf, 3.0, -math.inf])
    assert stat["n"] == 2 and stat["mean"] == 2.0
    # s = sqrt(2), half-width t_{0.975, 1} * s / sqrt(2) = 12.7062047
    assert stat["half_width"] == pytest.approx(12.7062047, abs=1e-6)
    assert mean_interval([0.5, math.inf]) == {"mean": 0.5, "low": None, "high": None, "half_width": None, "n": 1}


# ---------------------------------------------------------------------------------------- cache keys

def _base_cells(protocol: str) -> list[Cell]:
    params = PROTOCOLS[protocol].defaults(True)
    return plan_cells(protocol, DataSource("synthetic", negatives=1), TINY, ["ifru"], 1, params, {})


@pytest.mark.parametrize("protocol", sorted(PROTOCOLS))
def test_every_parameter_changes_the_key(protocol):
    base = next(c for c in _base_cells(protocol) if c.method == "ifru")
    variant = base.params["protocol"]
    changed = {"protocol": {"attack": {"attack_ratio": 0.01}, "deletion": {"kind": "core"},
                            "stream": {"order": "most"}, "adversarial": {"fraction": 0.5}}[protocol]}
    variants = [dataclasses.replace(base, dataset="ml-100k"), dataclasses.replace(base, model="lightgcn"),
                dataclasses.replace(base, method="scif"), dataclasses.replace(base, seed=1),
                *(dataclasses.replace(base, params={**base.params, "data": {**base.params["data"], key: value}})
                  for key, value in (("root", "/elsewhere"), ("negatives", 2))),
                dataclasses.replace(base, params={**base.params, "options": {"solver.damping": 0.1}}),
                dataclasses.replace(base, params={**base.params,
                                                  "hparams": TINY.replace({"train.lr": 0.001}).as_dict()}),
                dataclasses.replace(base, params={**base.params, "protocol": {**variant, **changed["protocol"]}})]
    for key, value in variant.items():  # every protocol parameter, one at a time
        other = [*value, 0.9] if isinstance(value, list) else (value + 1 if isinstance(value, (int, float))
                                                                 else value + "x")
        variants.append(dataclasses.replace(base, params={**base.params, "protocol": {**variant, key: other}}))
    keys = [base.key] + [cell.key for cell in variants]
    assert len(set(keys)) == len(keys)


def test_key_is_stable_and_order_free():
    cell = _base_cells("deletion")[0]
    shuffled = Cell(cell.protocol, cell.dataset, cell.model, cell.method, cell.seed,
                    dict(reversed(list(cell.params.items()))))
    assert shuffled.key == cell.key and len(cell.key) == 64


def test_options_are_keyed_by_the_values_the_method_reads():
    """``solver.tol=1e-3`` and ``solver.tol=0.001`` ran the same IFRU under two keys (the strings were keyed)."""
    params = PROTOCOLS["deletion"].defaults(True)
    keys = [next(c for c in plan_cells("deletion", DataSource("synthetic", negatives=1), TINY, ["ifru"], 1, params,
                                       {"ifru": options}) if c.method == "ifru").key
            for options in ({"solver.tol": "1e-3"}, {"solver.tol": 0.001}, {"solver": {"tol": "0.001"}},
                            {"solver.tol": "0.01"})]
    assert keys[0] == keys[1] == keys[2] != keys[3]
    cell = plan_cells("deletion", DataSource("synthetic", negatives=1), TINY, ["ifru"], 1, params,
                      {"ifru": {"prune": "1, 0.5", "hops": "1"}})[-1]
    assert cell.params["options"] == {"prune": [1.0, 0.5], "hops": 1}
    # the default's value given is the default's cell (0.01 is solver.tol's default: a second cell, named a change)
    given = {"solver.tol": "0.01", "newton.anderson": 3, "hops": 1}
    cell = plan_cells("deletion", DataSource("synthetic", negatives=1), TINY, ["ifru"], 1, params, {"ifru": given})[-1]
    plain = next(c for c in plan_cells("deletion", DataSource("synthetic", negatives=1), TINY, ["ifru"], 1, params, {})
                 if c.method == "ifru")
    assert cell.params["options"] == {"hops": 1} and plain.params["options"] == {}
    assert keys[3] == plain.key
    # train and seed stay: their defaults are the run's (FineTune's train.lr=0.01 is the bare TrainConfig's)
    tuned = plan_cells("deletion", DataSource("synthetic", negatives=1), TINY, ["finetune"], 1, params,
                       {"finetune": {"train.lr": 0.01, "epochs": 3}})[-1]
    assert tuned.params["options"] == {"train.lr": 0.01}


def test_library_version_is_in_the_key(monkeypatch):
    cell = _base_cells("attack")[0]
    before = cell.key
    monkeypatch.setattr("graphforget.bench.cache.__version__", "99.0")
    assert cell.key != before


@pytest.mark.parametrize("module", ["torch", "torch_geometric"])
def test_torch_and_pyg_versions_are_in_the_key(monkeypatch, module):
    """An upgrade may change the numbers (a kernel, a sparse product): its cells are computed anew."""
    import importlib
    cell = _base_cells("attack")[0]
    before = cell.key
    monkeypatch.setattr(importlib.import_module(module), "__version__", "99.0")
    assert cell.key != before and cell.identity()[module] == "99.0"


def test_the_code_is_in_the_key(monkeypatch):
    from graphforget.bench import cache
    cell = _base_cells("attack")[0]
    assert cell.identity()["code"] == cache.code_digest() and len(cache.code_digest()) == 16
    before = cell.key
    monkeypatch.setattr(cache, "code_digest", lambda: "0" * 16)  # code edited since
    assert cell.key != before


def test_the_bench_version_is_in_the_key(monkeypatch):
    from graphforget.bench import cache
    cell = _base_cells("attack")[0]
    before = cell.key
    monkeypatch.setattr(cache, "BENCH_VERSION", cache.BENCH_VERSION + 1)  # figures that changed meaning
    assert cell.identity()["bench"] == cache.BENCH_VERSION and cell.key != before


def test_the_code_digest_tells_a_line_moved_to_the_next_file(tmp_path):
    # The same bytes in the same order, cut between two files otherwise: other code, so another digest.
    from graphforget.bench import cache
    one, two = tmp_path / "one", tmp_path / "two"
    for root, a, b in ((one, "x = 1\ny = 2\n", "z = 3\n"), (two, "x = 1\n", "y = 2\nz = 3\n")):
        root.mkdir()
        (root / "a.py").write_text(a)
        (root / "b.py").write_text(b)
    assert cache.code_digest.__wrapped__(one) != cache.code_digest.__wrapped__(two)


def test_the_code_digest_is_of_the_sources_bytes_wherever_they_lie(tmp_path):
    from graphforget.bench import cache
    code_digest = cache.code_digest.__wrapped__  # uncached: the copy is edited below
    source = Path(cache.__file__).resolve().parent.parent
    copy = tmp_path / "graphforget"
    shutil.copytree(source, copy, ignore=shutil.ignore_patterns("__pycache__"))
    assert code_digest(copy) == cache.code_digest()  # a worktree, an install
    (copy / "metrics.py").write_text((copy / "metrics.py").read_text() + "\n# an edit\n")
    assert code_digest(copy) != cache.code_digest()


def test_a_cached_file_of_another_cell_is_not_read(tmp_path):
    cache = CellCache(tmp_path)
    one, two = _base_cells("attack")[:2]
    cache.store(one, {"mia_auc": 0.5})
    cache.path(two).write_text(cache.path(one).read_text())  # a wrong file under two's name
    assert cache.load(one) == {"mia_auc": 0.5} and cache.load(two) is None
    cache.path(one).write_text("{not json")
    assert cache.load(one) is None


@pytest.mark.parametrize("stored", ["[]", "null", "3", '"text"', "{}", "CELL_NO_RESULT", "CELL_LIST_RESULT"])
def test_a_cached_file_that_holds_no_cell_result_is_recomputed(tmp_path, stored):
    """Valid JSON that is not ``{"cell", "result"}`` (a hand-edited or foreign file) raised AttributeError or
    KeyError in load, or came back as a result that broke the aggregation, instead of being recomputed."""
    cache = CellCache(tmp_path)
    cell = _base_cells("attack")[0]
    texts = {"CELL_NO_RESULT": json.dumps({"cell": cell.identity()}),
             "CELL_LIST_RESULT": json.dumps({"cell": cell.identity(), "result": [0.5]})}
    cache.path(cell).write_text(texts.get(stored, stored))
    assert cache.load(cell) is None


@pytest.mark.parametrize("edit", [{"auc_0": "oops"}, {"auc_0": 0.771}, {"wall_seconds": "1.5"}, {"info": "trusted"}])
def test_a_cached_result_edited_or_damaged_is_recomputed(tmp_path, edit):
    """A cell file that parsed but held an edited figure was used as it stood ("oops" aggregated as a number, one
    changed digit unnoticed) or crashed the report (a string of seconds, an info that is no dict)."""
    cache = CellCache(tmp_path)
    cell = _base_cells("attack")[0]
    result = {"auc_0": 0.761, "wall_seconds": 1.5, "info": {"trusted": True}, "gap": math.nan}
    cache.store(cell, result)
    assert cache.load(cell) == {**result, "gap": None}  # as JSON holds it
    stored = json.loads(cache.path(cell).read_text())
    stored["result"].update(edit)
    cache.path(cell).write_text(json.dumps(stored))
    assert cache.load(cell) is None


def test_the_request_digest_tells_apart_requests_of_the_same_size_and_largest_item():
    # (1, 0), (2, 2) against (0, 2), (3, 0): keyed user * 2 + item, both would be [2, 6]; user * 3 + item is not
    a, b = torch.tensor([[1, 2], [0, 2]]), torch.tensor([[0, 3], [2, 0]])
    assert request_digest(a) != request_digest(b)
    assert request_digest(a) == request_digest(a.flip(1))  # order-free


def test_requests_with_different_largest_items_get_different_digests():
    """Keyed user * (largest item + 1) + item alone, user 1's items 0, 1 and user 0's items 2, 3 both give [2, 3]:
    Setting.reference (and the ranking cache) would hand one request the other's Retrain."""
    a = torch.tensor([[1, 1], [0, 1]])  # 1 * 2 + 0, 1 * 2 + 1 = 2, 3
    b = torch.tensor([[0, 0], [2, 3]])  # 0 * 4 + 2, 0 * 4 + 3 = 2, 3
    assert request_digest(a) != request_digest(b)


# ------------------------------------------------------------------------------------- resuming a run

class _Killed(Exception):
    pass


def _deletion_run(out, after_cell=None):
    return run_bench("deletion", "synthetic", methods=["ifru", "finetune"], seeds=1, out=out,
                     params={"kinds": ["edge"], "ratios": [0.05]}, hparams=TINY, after_cell=after_cell)


def test_a_killed_run_resumes_from_the_cache(tmp_path, monkeypatch):
    calls = []
    spec = PROTOCOLS["deletion"]

    def counting(setting, method, *args):
        calls.append(method)
        return spec.run(setting, method, *args)
    monkeypatch.setitem(PROTOCOLS, "deletion", dataclasses.replace(spec, run=counting))

    def kill(cell, record):
        raise _Killed(cell.label())
    with pytest.raises(_Killed):
        _deletion_run(tmp_path / "run", kill)
    assert calls == ["retrain"] and len(list((tmp_path / "run" / "cells").glob("*.json"))) == 1

    calls.clear()
    resumed = _deletion_run(tmp_path / "run")
    assert calls == ["ifru", "finetune"]  # the first cell was read back, not recomputed
    assert [record["cached"] for record in resumed.cells] == [True, False, False]

    whole = _deletion_run(tmp_path / "whole")
    assert _differences(_without_timing(resumed.to_dict()), _without_timing(whole.to_dict())) == []
    on_disk = json.loads((tmp_path / "run" / "results.json").read_text())
    assert _without_timing(on_disk) == _without_timing(json.loads(json.dumps(resumed.to_dict())))

    calls.clear()  # a changed parameter is a new cell: nothing stale is read back
    run_bench("deletion", "synthetic", methods=["ifru"], seeds=1, out=tmp_path / "run",
              params={"kinds": ["edge"], "ratios": [0.06]}, hparams=TINY)
    assert calls == ["retrain", "ifru"]


# ------------------------------------------------------------------------------------------ protocols

def test_deletion_sets():
    graph = planted_communities(num_users=60, num_items=40, interactions_per_user=8, seed=0)
    edges = graph[EDGE].edge_index
    for kind in ("random", "core", "edge", "interactions"):
        request = deletion_request(graph, kind, 0.1, seed=3)
        assert request.size(1) >= round(0.1 * edges.size(1))
        assert torch.isin(pair_keys(request, 40), pair_keys(edges, 40)).all()
        if kind != "interactions":  # whole users: every edge of each chosen user
            users = request[0].unique()
            assert request.size(1) == int(torch.isin(edges[0], users).sum())
    with pytest.raises(ValueError, match="deletion kind"):
        deletion_request(graph, "hot", 0.1)
    # the random users follow the seed: a constant seed passed every test (a QA probe's mutation)
    assert len({tuple(deletion_request(graph, "random", 0.1, seed=s)[0].unique().tolist()) for s in range(4)}) > 1


def test_a_settings_trainings_warn_naming_the_model_and_the_seed():
    """A bench run trains a setting's models for the first cell that needs them: 'train: the best validation AUC ...'
    named neither the model nor the seed."""
    from graphforget.train import NoSignalWarning
    setting = Setting(DataSource("synthetic", negatives=1), TINY, seed=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        setting.reference(setting.train_graph[EDGE].edge_index[:, :5])
    said = [str(w.message) for w in caught if w.category is NoSignalWarning]
    assert [text.split(": train: ")[0] for text in said] == ["the Original of seed 0",
                                                             "the Retrain of seed 0 without 5 removed edges"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Setting(DataSource("synthetic", negatives=1), TINY, seed=0, attack={"kind": "adversarial", "fraction": 0.5})
    assert [str(w.message).split(": train: ")[0] for w in caught] == ["the clean model of seed 0"]


def test_stream_removes_the_union_of_its_requests_and_retrains_on_exactly_it():
    setting = Setting(DataSource("synthetic", negatives=1), TINY, seed=1)
    variant = {"length": 6, "order": "random", "fractions": [0.25, 0.5, 0.75, 1.0]}
    result = PROTOCOLS["stream"].run(setting, "ifru", {}, variant, False)
    requests = stream_requests(setting.train_graph, 6, "random", 1)  # the setting's seed (with 0, a constant 0 passed)
    assert not torch.equal(torch.cat(requests, 1), torch.cat(stream_requests(setting.train_graph, 6, "random", 0), 1))
    assert len({int(r[0, 0]) for r in requests}) == 6 and all(r[0].unique().numel() == 1 for r in requests)
    positions = stream_positions(6, variant["fractions"])
    assert positions == [2, 3, 5, 6] and [c["requests"] for c in result["checkpoints"]] == positions
    # tagged by the fraction asked for, which the tables read (by the share reached, 33% and 83%, they were not)
    assert [c["fraction"] for c in result["checkpoints"]] == variant["fractions"]
    assert {key for key in result if key.startswith("prediction_gap@")} == {f"prediction_gap@{p}%" for p in
                                                                             (25, 50, 75, 100)}
    train_keys = set(pair_keys(setting.train_graph[EDGE].edge_index, 400).tolist())
    assert len(setting.references) == len(positions)  # one Retrain per checkpoint, nothing else
    for point in result["checkpoints"]:
        union = torch.cat(requests[:point["requests"]], 1)
        assert point["removed_edges"] == union.size(1) == sum(r.size(1) for r in requests[:point["requests"]])
        reference = setting.references[request_digest(union)]
        kept = set(pair_keys(reference.graph[EDGE].edge_index, 400).tolist())
        assert kept == train_keys - set(pair_keys(union, 400).tolist())
    assert result["prediction_gap"] == result["prediction_gap@100%"] and result["mia_auc"] is not None
    assert len(result["request_seconds"]) == 6
    # every figure of the last checkpoint under its plain name, so aggregated: NDCG@20 and AUC_1 had no mean
    last = result["checkpoints"][-1]
    assert {k: result[k] for k in ("ndcg@20", "auc_1", "mia_auc_before")} == {k: last[k] for k in
                                                                           ("ndcg@20", "auc_1", "mia_auc_before")}
    assert result["seconds_per_request"] == sum(result["request_seconds"]) / 6  # the cell's own, as before


def test_stream_checkpoints_a_whole_percent_apart_keep_their_own_figures():
    """0.25 and 0.251 of a four-request stream fall after one and two requests, and both were tagged @25%: the
    second checkpoint's figures replaced the first's in the tables."""
    setting = Setting(DataSource("synthetic", negatives=1), TINY, seed=0)
    variant = {"length": 4, "order": "random", "fractions": [0.25, 0.251, 1.0]}
    result = PROTOCOLS["stream"].run(setting, "scif", {}, variant, False)
    first, second = result["checkpoints"][:2]
    assert (first["requests"], second["requests"]) == (1, 2) and first["removed_edges"] < second["removed_edges"]
    assert result["removed_edges@25%"] == first["removed_edges"]
    assert result["removed_edges@25.1%"] == second["removed_edges"]


def test_every_method_reports_membership_inference(tmp_path):
    result = run_bench("attack", "synthetic", methods=list(DEFAULT_METHODS), seeds=1, out=tmp_path,
                       options=SHARDS, hparams=TINY)
    methods = [record["cell"]["method"] for record in result.cells]
    assert methods == list(DEFAULT_METHODS)
    for record in result.cells:
        assert "error" not in record["result"], record["result"]
        assert record["result"]["mia_auc"] is not None and record["result"]["prediction_gap"] is not None
    assert all("mia_auc" in group["metrics"] and "prediction_gap" in group["metrics"] for group in result.aggregates)
    table = (tmp_path / "results.md").read_text()
    assert table.count("| attack_ratio=0.02 |") == len(DEFAULT_METHODS)
    # The legend explains the columns shown and no other: one paragraph for every protocol had explained recall@20
    # here and left completeness_* unexplained.
    header, legend = table.split("\n")[4], table.rstrip().split("\n")[-1]
    columns = [name.strip() for name in header.strip("|").split("|")][2:]
    assert all(f"{name}:" in legend for name in columns if not name.startswith(("original_", "completeness_")))
    assert "original_*:" in legend and "completeness_*:" in legend and "retrain_seed:" in legend
    assert "recall@20:" not in legend and "recall@20" not in columns


@pytest.mark.parametrize("original", [1e-7, 1e-3])
def test_the_prediction_gap_to_an_original_within_rounding_of_retrain_is_nan(monkeypatch, original):
    """An Original one float32 step from Retrain (saturated probabilities on a tiny file) made FineTune's gap 164.5:
    a ratio to rounding noise. Under a few float32 steps per test pair there is no gap; above it, the ratio."""
    setting = Setting(DataSource("synthetic", negatives=1), TINY, seed=2)
    monkeypatch.setattr("graphforget.bench.protocols.prediction_distance",
                        lambda model, *args: original if model is setting.original else 1e-6)
    row = PROTOCOLS["deletion"].run(setting, "finetune", {}, {"kind": "random", "ratio": 0.1}, False)
    assert row["original_distance"] == original and row["prediction_distance"] == 1e-6
    assert math.isnan(row["prediction_gap"]) if original < 1e-6 else row["prediction_gap"] == 1e-6 / original


@pytest.mark.parametrize("share", [0.9, 1.1])
def test_the_prediction_gaps_noise_floor_grows_with_the_test_pairs(monkeypatch, share):
    """The floor is 4 float32 steps per test pair, times the square root of their count: an Original 0.9 of it
    from Retrain gives no gap, one 1.1 of it the ratio (from a mutation run: one pair's floor passed the test above)."""
    setting = Setting(DataSource("synthetic", negatives=1), TINY, seed=2)
    floor = 4 * torch.finfo(torch.float32).eps * math.sqrt(setting.test[EDGE].edge_index.size(1))
    monkeypatch.setattr("graphforget.bench.protocols.prediction_distance",
                        lambda model, *args: share * floor if model is setting.original else 1e-6)
    row = PROTOCOLS["deletion"].run(setting, "finetune", {}, {"kind": "random", "ratio": 0.1}, False)
    assert row["original_distance"] == share * floor and row["prediction_distance"] == 1e-6
    assert math.isnan(row["prediction_gap"]) if share < 1 else row["prediction_gap"] == 1e-6 / (share * floor)


def test_a_file_too_small_to_measure_on_is_refused(tmp_path):
    """Two interactions ran a deletion benchmark whose every figure was missing (the test part held no interaction)."""
    path = tmp_path / "two.csv"
    path.write_text("user,item\na,x\nb,y\n")
    source = DataSource("file", path=str(path), format="csv", user_col="user", item_col="item")
    for loss in ("bce", "bpr"):
        with pytest.raises(ValueError, match=r"two.csv: the test pairs split off it \(\d+\) hold no interaction"):
            source.for_loss(loss).prepare(seed=0)


@pytest.mark.filterwarnings("ignore::graphforget.train.NoSignalWarning")  # three epochs: the files are the point
def test_a_data_file_replaced_during_a_run_stops_it_before_its_cells_are_cached(tmp_path):
    """The files' sha256 were taken when the cells were planned, and the file read again for each seed: one replaced
    after seed 0 was read for seed 1, whose cells were cached under the old key, and served as the old file's once
    it was put back (found by a probe). The run stops instead, with seed 0's cells alone cached."""
    from graphforget.data.synthetic import planted_communities
    edges = planted_communities(60, 40, interactions_per_user=8, seed=0)[EDGE].edge_index.t().tolist()
    old = "user,item\n" + "".join(f"u{u},i{i}\n" for u, i in edges)
    path = tmp_path / "clicks.csv"
    path.write_text(old)
    source = DataSource("file", path=str(path), format="csv", user_col="user", item_col="item", negatives=1)

    def replace_after_seed_0(cell, record):
        if cell.seed == 0:
            path.write_text(old.replace("u1,", "u999,"))
    with pytest.raises(ValueError, match=r"clicks.csv: the data files changed during the run \(clicks.csv\): the "
                                         r"cells are keyed by their content when the run began"):
        run_bench("deletion", source, methods=["retrain"], seeds=2, out=tmp_path / "run", hparams=TINY,
                  params={"kinds": ["random"], "ratios": [0.05]}, after_cell=replace_after_seed_0)
    assert len(list((tmp_path / "run" / "cells").iterdir())) == 1


@pytest.mark.filterwarnings("ignore::graphforget.train.NoSignalWarning")  # three epochs: the files are the point
@pytest.mark.parametrize("change, named", [("replace", "train.txt"), ("remove", "test.txt")])
def test_a_run_stopped_by_a_changed_data_file_names_that_file_alone(tmp_path, change, named):
    """A folder's files are keyed one by one: the refusal names the file replaced, or the one removed, and not the
    file left as it was (from a mutation run)."""
    folder = _lightgcn_files(tmp_path / "data")
    source = DataSource("file", path=str(folder), format="lightgcn")

    def change_after_seed_0(cell, record):
        if cell.seed == 0 and change == "replace":
            (folder / "train.txt").write_text((folder / "train.txt").read_text() + "40 1 2 3\n")
        elif cell.seed == 0:
            (folder / "test.txt").unlink()
    with pytest.raises(ValueError, match=re.escape(f"data: the data files changed during the run ({named}): the cells "
                                                   "are keyed by their content when the run began")):
        run_bench("deletion", source, methods=["retrain"], seeds=2, out=tmp_path / "run", hparams=TINY,
                  params={"kinds": ["random"], "ratios": [0.05]}, after_cell=change_after_seed_0)


@pytest.mark.filterwarnings("ignore::graphforget.train.NoSignalWarning")
def test_a_data_file_replaced_while_a_seed_reads_it_stops_the_run_before_that_seeds_cells(tmp_path, monkeypatch):
    """The files are checked after each seed's read, not before it: a file replaced while seed 0 read it is found at
    once, and no cell is cached under the old file's key (from a mutation run)."""
    edges = planted_communities(60, 40, interactions_per_user=8, seed=0)[EDGE].edge_index.t().tolist()
    old = "user,item\n" + "".join(f"u{u},i{i}\n" for u, i in edges)
    path = tmp_path / "clicks.csv"
    path.write_text(old)
    source = DataSource("file", path=str(path), format="csv", user_col="user", item_col="item", negatives=1)
    prepare = DataSource.prepare

    def replaced_while_read(self, *args, **kwargs):
        path.write_text(old.replace("u1,", "u999,"))
        return prepare(self, *args, **kwargs)
    monkeypatch.setattr(DataSource, "prepare", replaced_while_read)
    with pytest.raises(ValueError, match=r"clicks.csv: the data files changed during the run \(clicks.csv\)"):
        run_bench("deletion", source, methods=["retrain"], seeds=2, out=tmp_path / "run", hparams=TINY,
                  params={"kinds": ["random"], "ratios": [0.05]})
    assert list((tmp_path / "run").glob("cells/*")) == []


def test_the_noise_floor_is_a_retrain_from_another_seed():
    setting = Setting(DataSource("synthetic", negatives=1), TINY, seed=2)
    variant = {"kind": "random", "ratio": 0.1}
    row = PROTOCOLS["deletion"].run(setting, "retrain_seed", {}, variant, False)
    request = deletion_request(setting.train_graph, "random", 0.1, seed=2)
    # by hand: a fresh model from seed 1002, trained on the remaining edges in seed 1002's batch order
    other = Retrain(setting.original, setting.train_graph, setting.objective,
                    RetrainConfig(TINY.train_config(1002), seed=1002), val=setting.val).unlearn(request)
    reference, pairs = setting.reference(request), setting.test[EDGE].edge_index
    gap = prediction_distance(other.model, other.graph, reference.model, reference.graph, pairs)
    scale = prediction_distance(setting.original, setting.train_graph, reference.model, reference.graph, pairs)
    assert row["prediction_distance"] == pytest.approx(gap, rel=1e-6) and gap > 0
    assert row["prediction_gap"] == pytest.approx(gap / scale, rel=1e-6)


def test_a_named_dataset_refuses_the_options_of_a_file():
    """ML-100K is binarised at 4 by the IFRU protocol: a threshold of 3 (or a CSV's columns) was ignored silently."""
    for options in ({"threshold": 3}, {"user_col": "u"}, {"label_col": "r"}, {"path": "x.csv"}, {"format": "csv"}):
        for name in ("ml-100k", "bookcrossing", "synthetic"):
            with pytest.raises(ValueError, match=rf"DataSource.{next(iter(options))}: .*{name}"):
                DataSource(name, **options)
    assert DataSource("ml-1m", threshold=1).threshold == 1  # a LightGCN folder is read as a file is
    for options in ({"duplicates": "last"}, {"delimiter": ";"}, {"encoding": "latin-1"}):  # a CSV's only
        for name in ("ml-100k", "ml-1m"):
            with pytest.raises(ValueError, match=rf"DataSource.{next(iter(options))}: .*{name}"):
                DataSource(name, **options)


def test_a_csv_file_is_read_with_the_options_fit_takes(tmp_path):
    """bench read a CSV with fit's defaults only: a file with a repeated pair (which fit reads with --duplicates
    last), another separator or encoding could not be benchmarked at all. The options are in the cell's key."""
    path = tmp_path / "ratings.csv"
    rows = [f"u{u};i{(u * 7 + k) % 30};{1 + (u + k) % 5}" for u in range(40) for k in range(8)]
    path.write_bytes(("user;item;r\u00e9\n" + "\n".join(rows + [rows[0]]) + "\n").encode("latin-1"))
    options = dict(path=str(path), format="csv", user_col="user", item_col="item", label_col="r\u00e9", threshold=4,
                   negatives=1, delimiter=";", encoding="latin-1")
    with pytest.raises(ValueError, match="pair"):
        DataSource("file", **options).prepare(seed=0)
    kept = DataSource("file", **options, duplicates="last")
    assert kept.prepare(seed=0).train[EDGE].edge_index.size(1) > 0
    assert kept.identity() != DataSource("file", **options).identity()
    with pytest.raises(ValueError, match="DataSource.duplicates: must be 'raise' or 'last'"):
        DataSource("file", **options, duplicates="first")
    del options["threshold"]  # ratings without one: fit's advice, where every protocol had said "attack_flip flips
    for negatives in (0, 1):  # 0/1 labels ... binarise first with graphforget.data.binarize(graph, threshold)"
        with pytest.raises(ValueError, match=r"ratings.csv holds labels other than 0/1, e.g. \[2.0, 3.0, 4.0, 5.0\] "
                                             r"\(ratings or counts\): pass --threshold T"):
            DataSource("file", **{**options, "negatives": negatives}, duplicates="last").prepare(seed=0)


def test_a_registered_method_the_bench_cannot_run_is_refused_before_training(tmp_path):
    """A user's method that needs fit() failed a stream after its first request ("needs fit() first", which the
    user cannot act on: the harness builds it); one registered as ``retrain_seed`` was silently replaced by the
    bench's own Retrain from another seed. Each is named before anything is trained."""
    class Prepared(Retrain):
        name, needs_fit = "test-prepared", True

    class Shadow(Retrain):
        name = "retrain_seed"
    register(Prepared)
    with pytest.raises(ValueError, match="register: Shadow.name 'retrain_seed' is the benchmark harness's own method"):
        register(Shadow)  # accepted, then refused by every bench that named it (a QA probe)
    assert set(RESERVED) == set(BENCH_METHODS)
    METHODS["retrain_seed"] = Shadow  # past register: the bench still names it
    try:
        with pytest.raises(ValueError, match="test-prepared cannot continue a stream: built on its previous result, "
                                             r"it needs fit\(\) again"):
            run_bench("stream", "synthetic", methods=["test-prepared"], out=tmp_path)
        with pytest.raises(ValueError, match="retrain_seed is the bench's own method and a registered one, which "
                                             "the bench would not run: register yours under another name"):
            run_bench("attack", "synthetic", methods=["retrain_seed"], out=tmp_path)
    finally:
        del METHODS["test-prepared"], METHODS["retrain_seed"]
    assert not any(tmp_path.iterdir())


SHRINK_CONFIG = """
from dataclasses import dataclass

@dataclass
class ShrinkConfig:
    factor: float = 0.9
"""

SHRINK_METHOD = """
import copy
import torch
from graphforget.unlearn import Unlearner, register

@register
class Shrink(Unlearner):
    name, Config = "{name}", ShrinkConfig

    def _unlearn(self, request, positions, remaining):
        model = copy.deepcopy(self.model)
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.mul_(self.config.factor)
        return model, {{}}
"""

SHRINK = SHRINK_CONFIG + SHRINK_METHOD.format(name="test-shrink")


def test_an_edited_method_of_your_own_computes_new_cells(tmp_path, monkeypatch):
    """A registered method's key held its name and the options given: with its Config's default edited (0.9 to
    0.2), a bench into the same folder read the 0.9 cell back as cached, its prediction gap 0.94 for 1.57."""
    source = tmp_path / "gf_method_demo.py"
    source.write_text(SHRINK)
    spec = importlib.util.spec_from_file_location("gf_method_demo", source)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "gf_method_demo", module)  # as an import leaves it
    try:
        spec.loader.exec_module(module)
        cell = Cell("attack", "synthetic", "mf", "test-shrink", 0)
        key = cell.key
        assert cell.identity()["method_code"] == hashlib.sha256(source.read_bytes()).hexdigest()[:16]
        source.write_text(SHRINK.replace("0.9", "0.2"))
        assert cell.key != key
    finally:
        del METHODS["test-shrink"]
    for method in ("ifru", "retrain_seed", "test-shrink"):  # the library's own: its code digest covers them
        assert "method_code" not in Cell("attack", "synthetic", "mf", method, 0).identity()

def test_a_method_of_your_own_keys_its_base_classes_and_one_typed_at_a_prompt_has_a_key(tmp_path, monkeypatch):
    """A base class of the user's in a third file was outside the key (its edits read back stale cells), and a
    method defined in ``python -c`` or a notebook failed the key ("OSError: source code not available")."""
    (tmp_path / "gf_base_demo.py").write_text("from graphforget.unlearn import Retrain\n\n\nclass Base(Retrain):\n"
                                              "    pass\n")
    (tmp_path / "gf_child_demo.py").write_text("from gf_base_demo import Base\nfrom graphforget.unlearn import register"
                                               "\n\n\n@register\nclass Child(Base):\n    name = 'test-child'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        importlib.import_module("gf_child_demo")
        cell = Cell("attack", "synthetic", "mf", "test-child", 0)
        key = cell.key
        (tmp_path / "gf_base_demo.py").write_text((tmp_path / "gf_base_demo.py").read_text() + "    epochs = 2\n")
        assert cell.key != key
    finally:
        del METHODS["test-child"]
        for name in ("gf_child_demo", "gf_base_demo"):
            sys.modules.pop(name, None)
    typed = ("from graphforget.bench import Cell\nfrom graphforget.unlearn import Retrain, register\n"
             "@register\nclass Typed(Retrain):\n    name = 'test-typed'\n"
             "print('method_code' in Cell('attack', 'synthetic', 'mf', 'test-typed', 0).identity())")
    done = subprocess.run([sys.executable, "-c", typed], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout == "False\n", done.stderr

class Warns(Retrain):
    """A Retrain that says a word of its own at each request (a method's untrusted result, in a bench)."""
    name = "test-warns"

    def _unlearn(self, request, positions, remaining):
        warnings.warn("a word of the method's own", RuntimeWarning)
        return super()._unlearn(request, positions, remaining)


def test_a_methods_warning_in_a_bench_names_its_cell():
    """UnlearnRec's 'not trusted' was printed once per cell (six alike for six cells) naming none of them."""
    register(Warns)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            run_bench("attack", "synthetic", methods=["test-warns"], seeds=2, hparams=TINY)
    finally:
        del METHODS["test-warns"]
    said = sorted(str(w.message) for w in caught if "a word of the method's own" in str(w.message))
    assert said == [f"attack/synthetic/mf/test-warns/seed{seed} [attack_ratio=0.02]: a word of the method's own"
                    for seed in (0, 1)]

def test_bad_input_is_refused_before_training(tmp_path):
    with pytest.raises(ValueError, match="unknown protocol"):
        run_bench("poison", "synthetic", out=tmp_path)
    with pytest.raises(ValueError, match="unknown dataset"):
        run_bench("stream", "ml-10m", out=tmp_path)
    with pytest.raises(ValueError, match="BPR draws its own"):
        run_bench("adversarial", DataSource("ml-1m", negatives=1), out=tmp_path)
    with pytest.raises(ValueError, match="brings its own 0/1 labels"):
        DataSource("ml-100k", negatives=2)
    with pytest.raises(ValueError, match="--threshold binarises ratings, but lightgcn data holds none"):
        DataSource("file", path=str(tmp_path), format="lightgcn", threshold=4)
    with pytest.raises(ValueError, match="unknown stream parameters"):
        run_bench("stream", "synthetic", params={"lenght": 3}, out=tmp_path)
    for protocol in ("attack", "adversarial"):  # quick was accepted and changed nothing, in no cell's key either
        with pytest.raises(ValueError, match=f"quick: the {protocol} protocol has no quick profile"):
            run_bench(protocol, "synthetic", quick=True, out=tmp_path)
    with pytest.raises(ValueError, match="root: synthetic data reads no data root"):  # train and demo ignored it
        prepare_attack_data("synthetic", root=tmp_path)
    # A root that is not read was ignored, yet in every cell's key
    with pytest.raises(ValueError, match="DataSource.root: synthetic data reads no data root"):
        run_bench("stream", "synthetic", root=tmp_path, out=tmp_path)
    with pytest.raises(ValueError, match="DataSource.root: file data reads no data root"):
        DataSource("file", path=str(tmp_path), format="csv", root=str(tmp_path))
    with pytest.raises(ValueError, match="root is for a named dataset: a DataSource carries its own"):
        run_bench("stream", DataSource("ml-100k"), root=tmp_path, out=tmp_path)
    with pytest.raises(ValueError, match="bad options for 'sisa'"):
        run_bench("deletion", "synthetic", options={"sisa": {"shards": 2}}, out=tmp_path)
    with pytest.raises(ValueError, match="options for methods that are not run: scif"):  # were dropped silently
        run_bench("deletion", "synthetic", methods=["ifru"], options={"scif": {"damping": "abc"}}, out=tmp_path)
    with pytest.raises(ValueError, match="retrain is every cell's reference"):  # reached its row only
        run_bench("attack", "synthetic", options={"retrain": {"train.epochs": 1}}, out=tmp_path)
    with pytest.raises(ValueError, match="methods lists none: give at least one"):  # ran every default method
        run_bench("attack", "synthetic", methods=[], out=tmp_path)
    with pytest.raises(ValueError, match="unlearnrec cannot continue a stream"):  # failed after one request
        run_bench("stream", "synthetic", methods=["unlearnrec"], out=tmp_path)
    with pytest.raises(ValueError, match=r"stream fractions \(its checkpoints\) must be in \(0, 1\], got \[0.5, 2.0\]"):
        run_bench("stream", "synthetic", params={"fractions": [0.5, 2.0]}, out=tmp_path)
    # run once and reported as given, [0.5, 0.5], where deletion's repeated ratios are refused
    with pytest.raises(ValueError, match=re.escape("fractions (its checkpoints) must not repeat, got [0.5, 0.5]")):
        run_bench("stream", "synthetic", params={"fractions": [0.5, 0.5]}, out=tmp_path)
    # two checkpoints one label: the second's figures were reported as the first's (a QA probe)
    with pytest.raises(ValueError, match=re.escape("[0.25, 0.2500001, 1.0] give two checkpoints one label (@25%)")):
        run_bench("stream", "synthetic", params={"fractions": [0.25, 0.2500001, 1.0]}, out=tmp_path)
    # Of the wrong type: a string was read one letter at a time (kind 'c'), a number failed in Python's iter, a bool
    # ran as 1.0, a string ratio was kept in results.json, None failed in Python's float
    for protocol, params, message in (("deletion", {"kinds": "core"}, "deletion kinds must be a list, got 'core'"),
                                      ("deletion", {"ratios": 0.05}, "deletion ratios must be a list, got 0.05"),
                                      ("stream", {"fractions": [True]}, "stream fraction must be a number, got True"),
                                      ("attack", {"attack_ratio": "0.05"}, "attack ratio must be a number, got '0.05'"),
                                      ("adversarial", {"fraction": None}, "adversarial fraction must be a number")):
        with pytest.raises(ValueError, match=re.escape(message)):
            run_bench(protocol, "synthetic", params=params, out=tmp_path)
    assert not (tmp_path / "cells").exists()
    notes = tmp_path / "mine"  # a folder of one's own: its results.md was overwritten
    notes.mkdir()
    (notes / "results.md").write_text("my notes\n")
    with pytest.raises(ValueError, match="holds results.md and neither cells/ nor a bench's results.json: it is no "):
        run_bench("stream", "synthetic", out=notes)
    assert (notes / "results.md").read_text() == "my notes\n"
    # a bench's output whose cells/ was deleted, to recompute them, had been refused as no bench's output
    run = dict(methods=["scif"], seeds=1, params={"kinds": ["random"], "ratios": [0.05]}, hparams=TINY)
    first = run_bench("deletion", "synthetic", out=tmp_path / "done", **run)
    shutil.rmtree(tmp_path / "done" / "cells")
    again = run_bench("deletion", "synthetic", out=tmp_path / "done", **run)
    assert not any(record["cached"] for record in again.cells)
    assert [r["result"]["auc_0"] for r in again.cells] == [r["result"]["auc_0"] for r in first.cells]
    mine = notes / "results.md"  # a file: refused before a cell trains (a NotADirectoryError after the first did)
    with pytest.raises(ValueError, match=f"out {re.escape(str(mine))} is a file, not a folder"):
        run_bench("attack", "synthetic", out=mine)
    assert mine.read_text() == "my notes\n"


def test_parse_params():
    assert parse_params("deletion", {"ratios": "0.01,0.05", "kinds": "core"}) == {"ratios": [0.01, 0.05],
                                                                                 "kinds": ["core"]}
    assert parse_params("stream", {"length": "100", "order": "most"}) == {"length": 100, "order": "most"}
    with pytest.raises(ValueError, match="cannot read"):
        parse_params("stream", {"length": "many"})
    with pytest.raises(ValueError, match="unknown attack parameter"):
        parse_params("attack", {"ratio": "0.1"})
    # the same checkpoints given in another order are the same cells (they were other keys); twice is refused
    stream = PROTOCOLS["stream"]
    same = [stream.variants({**stream.defaults(True), "fractions": f}) for f in ([1.0, 0.5], [0.5, 1.0])]
    assert same[0] == same[1] and same[0][0]["fractions"] == [0.5, 1.0]


def test_cli_bench(tmp_path, capsys):
    out = tmp_path / "bench"
    argv = ["bench", "--protocol", "stream", "--dataset", "synthetic", "--methods", "scif", "--seeds", "2",
            "--param", "length=2", "--epochs", "2", "--out", str(out), "--quiet"]
    assert cli.main(argv) == 0
    assert "4 cells (0 read from the cache)" in capsys.readouterr().out
    assert {p.name for p in out.iterdir()} >= {"results.json", "results.md", "cells"}
    assert cli.main(argv) == 0
    assert "4 cells (4 read from the cache)" in capsys.readouterr().out
    assert cli.main(["bench", "--protocol", "stream", "--param", "length", "--out", str(out)]) == 2
    # Another L2 is another setting: new cells, and the reports name it (and the epochs, the preset's 100 not).
    assert cli.main(argv + ["--l2", "0"]) == 0
    printed = capsys.readouterr().out
    assert "4 cells (0 read from the cache)" in printed
    assert "# stream of 2 requests on synthetic, mf (l2 0, 2 epochs)" in printed
    results = json.loads((out / "results.json").read_text())
    assert results["hparams"]["l2"] == 0.0
    # Each stream cell says whether every request passed SCIF's acceptance test; the report counts them.
    scif = [c["result"]["info"] for c in results["cells"] if c["cell"]["method"] == "scif"]
    assert len(scif) == 2 and all(info["trusted"] == (info["untrusted_requests"] == 0) for info in scif)
    assert f"scif {sum(info['trusted'] for info in scif)} of 2 cells." in printed


def test_cli_bench_passes_the_options_of_the_noise_floor(tmp_path, monkeypatch):
    """``--option retrain_seed:seed=5`` was refused as ill-formed ("--option takes METHOD:KEY=VALUE"), though
    retrain_seed is a method of the run and run_bench takes its options (resolve_method)."""
    import graphforget.bench as bench
    given = {}

    def capture(*args, options, **kwargs):
        given.update(options)
        raise _Killed()
    monkeypatch.setattr(bench, "run_bench", capture)
    with pytest.raises(_Killed):
        cli.main(["bench", "--protocol", "deletion", "--dataset", "synthetic", "--methods", "retrain_seed",
                  "--option", "retrain_seed:seed=5", "--out", str(tmp_path / "o"), "--quiet"])
    assert given == {"retrain_seed": {"seed": "5"}}


def test_cli_bench_on_a_model_of_an_installed_package(tmp_path, capsys, plugin):
    out = tmp_path / "bench"
    argv = ["bench", "--protocol", "stream", "--dataset", "synthetic", "--model", "pyg_lightgcn", "--methods", "ifru",
            "--seeds", "1", "--param", "length=2", "--epochs", "2", "--out", str(out), "--quiet"]
    assert cli.main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["hparams"]["model"] == "pyg_lightgcn" and {c["cell"]["method"] for c in results["cells"]} == {
        "retrain", "ifru"}
    assert "# stream of 2 requests on synthetic, pyg_lightgcn" in capsys.readouterr().out
    # The key holds the model's source file: an edited factory computes new cells; the library's models have none.
    recorded = results["cells"][0]["cell"]
    cell = Cell(**{f.name: recorded[f.name] for f in dataclasses.fields(Cell)})
    assert cell.identity() == recorded
    key = cell.key
    source = plugin / "gf_plugin_demo" / "__init__.py"
    source.write_text(source.read_text().replace("sparse=True", "sparse=False"))
    assert cell.key != key and "model_code" not in dataclasses.replace(cell, model="mf").identity()
    assert cli.main([*argv[:5], "--model", "gcn", "--out", str(tmp_path / "none")]) == 2
    assert "--model: unknown model 'gcn'" in capsys.readouterr().err and not (tmp_path / "none").exists()


def test_aggregates_count_the_cells_whose_method_trusted_its_result():
    def record(method, seed, result):
        return {"cell": {"protocol": "attack", "dataset": "d", "model": "mf", "method": method, "seed": seed,
                         "params": {"protocol": {"attack_ratio": 0.02}}}, "result": result}
    records = [record("ifru", 0, {"auc_0": 0.7, "info": {"trusted": True}}),
               record("ifru", 1, {"auc_0": 0.6, "info": {"trusted": False}}),
               record("ifru", 2, {"error": "UnlearningFailed: no step"}),
               record("finetune", 0, {"auc_0": 0.7, "info": {}})]
    groups = {g["method"]: g for g in aggregate(records)}
    assert (groups["ifru"]["tested"], groups["ifru"]["untrusted"], groups["ifru"]["errors"]) == (2, 1, 1)
    assert (groups["finetune"]["tested"], groups["finetune"]["untrusted"]) == (0, 0)
    assert groups["ifru"]["metrics"]["auc_0"]["mean"] == pytest.approx(0.65)


def _record(method, seed, result):
    return {"cell": {"protocol": "attack", "dataset": "d", "model": "mf", "method": method, "seed": seed,
                     "params": {"protocol": {"attack_ratio": 0.02}}}, "result": result}


def test_aggregates_leave_out_flags_and_take_the_confidence_given():
    records = [_record("ifru", seed, {"auc_0": value, "converged": True}) for seed, value in enumerate((1.0, 2.0, 3.0))]
    metrics = aggregate(records, confidence=0.9)[0]["metrics"]
    assert set(metrics) == {"auc_0"}  # a bool is no figure
    # s = 1; for 2 degrees of freedom t_p = (2p - 1) / sqrt(2 p (1 - p)), p = 0.95: 0.9 / sqrt(0.095)
    assert metrics["auc_0"]["half_width"] == pytest.approx(0.9 / math.sqrt(0.095) / math.sqrt(3), rel=1e-9)


def test_a_table_says_how_many_seeds_a_figure_is_over_when_some_gave_none():
    """The interval leaves out missing and non-finite values: '0.600 ± 1.271' under 'Seeds [0, 1, 2]' was over 2."""
    from graphforget.bench.report import markdown
    records = [_record("ifru", 0, {"auc_0": 0.5, "mia_auc": 0.5}), _record("ifru", 1, {"auc_0": 0.6, "mia_auc": None}),
               _record("ifru", 2, {"auc_0": 0.7, "mia_auc": 0.7})]
    table = markdown(BenchResult("attack", "d", "mf", {"attack_ratio": 0.02}, TINY.as_dict(), records,
                                 aggregate(records)))
    half = 12.706204736174705 * math.sqrt(0.02) / math.sqrt(2)  # t(0.975, 1) s / sqrt(n), s = sqrt(0.02)
    assert f"| 0.600 ± {half:.3f} (n=2) |" in table and "| 0.600 ± 0.248 |" in table  # mia_auc, then auc_0


def test_a_count_whose_seeds_agree_shows_no_decimals():
    """A one-user request's 147 edges read "147.0" in a tutorial's table (a QA probe); a mean over seeds keeps its
    decimal, and a figure that is no count keeps its three."""
    from graphforget.bench.report import markdown
    def table(edges):
        records = [_record("ifru", seed, {"request_edges": n, "auc_0": 1.0}) for seed, n in enumerate(edges)]
        return markdown(BenchResult("deletion", "d", "mf", {}, TINY.as_dict(), records, aggregate(records)))
    assert "| ifru | 147 | 1.000 ± 0.000 |" in table([147, 147])
    assert "| ifru | 147 | 1.000 |" in table([147])
    assert "| 147.5 ± 6.4 |" in table([147, 148])


def test_the_report_says_why_each_failed_cell_failed():
    """A rerun reads the cells back without logging their errors: the table's "ifru (2 failed)" was all results.md
    said (a QA probe)."""
    from graphforget.bench.report import markdown
    records = [_record("ifru", 0, {"error": "ValueError: direct solve\nrefused"}), _record("ifru", 1, {"auc_0": 0.6}),
               _record("ifru", 2, {"error": "ValueError: direct solve\nrefused"}),
               _record("scif", 0, {"error": "MethodUnsupported: scif"})]
    groups = aggregate(records)
    assert groups[0]["failures"] == [{"seed": 0, "error": "ValueError: direct solve\nrefused"},
                                     {"seed": 2, "error": "ValueError: direct solve\nrefused"}]
    table = markdown(BenchResult("attack", "d", "mf", {"attack_ratio": 0.02}, TINY.as_dict(), records, groups))
    assert "| ifru (2 failed) |" in table
    assert ("Failed cells:\n\n- ifru, seeds 0, 2: ValueError: direct solve refused\n"
            "- scif, seed 0: MethodUnsupported: scif\n") in table
    assert "Failed cells" not in markdown(BenchResult("attack", "d", "mf", {"attack_ratio": 0.02}, TINY.as_dict(),
                                                      records[1:2], aggregate(records[1:2])))


def test_a_table_row_says_how_many_of_its_cells_failed_or_were_untrusted():
    """A row's figures averaged untrusted results under a plain method name, the count left to a line below the
    table (qa139): a reader copying the row could not tell."""
    from graphforget.bench.report import markdown
    records = [_record("ifru", 0, {"auc_0": 0.6, "info": {"trusted": False}}), _record("ifru", 1, {"error": "x"}),
               _record("ifru", 2, {"auc_0": 0.7, "info": {"trusted": True}}),
               _record("scif", 0, {"auc_0": 0.6, "info": {"trusted": False}}),
               _record("scif", 1, {"auc_0": 0.6, "info": {"trusted": False}}),
               _record("finetune", 0, {"auc_0": 0.6})]
    table = markdown(BenchResult("attack", "d", "mf", {"attack_ratio": 0.02}, TINY.as_dict(), records,
                                 aggregate(records)))
    assert "| ifru (1 failed, 1 untrusted) |" in table
    assert "| scif (2 untrusted) |" in table
    assert "| finetune |" in table


def test_the_readme_cell_marks_seeds_that_raised_and_says_failed_only_when_every_seed_did():
    """The README showed IFRU's one measured seed of three as a plain figure, the two that raised hidden, and called
    SCIF "failed" where two seeds ran (their attack AUC and seconds measured, the gap NaN) and one raised."""
    from graphforget.bench.report import readme_table
    ran = {"prediction_gap": 0.9, "mia_auc": 0.5, "seconds": 1.0}
    records = ([_record("retrain", seed, ran | {"prediction_gap": 0.0}) for seed in range(3)]
               + [_record("ifru", 0, ran), _record("ifru", 1, {"error": "x"}), _record("ifru", 2, {"error": "x"})]
               + [_record("scif", 0, ran | {"prediction_gap": math.nan}), _record("scif", 1, {"error": "y"}),
                  _record("scif", 2, ran | {"prediction_gap": math.nan, "info": {"trusted": False}})]
               + [_record("sisa", seed, {"error": "z"}) for seed in range(3)])
    result = BenchResult("attack", "d", "mf", {"attack_ratio": 0.02}, TINY.as_dict(), records, aggregate(records))
    assert readme_table([result]).splitlines()[-1].endswith("| 0.00/0.50/1s | 0.90/0.50/1sx2 | -/0.50/1s!1x1 | "
                                                            "failed |")


def test_the_plot_draws_no_bar_for_a_method_that_measured_nothing(tmp_path, monkeypatch):
    """A method whose cells all failed (e.g. SCIF under BPR) was drawn as a bar of height 0: a prediction gap of 0
    reads as Retrain's own predictions, an MIA AUC of 0 as a perfect score."""
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    from matplotlib.axes import Axes
    from graphforget.bench.report import plot
    heights, bar = [], Axes.bar

    def recording(self, x, height, *args, **kwargs):
        heights.append(list(height))
        return bar(self, x, height, *args, **kwargs)
    monkeypatch.setattr(Axes, "bar", recording)
    records = [_record("retrain", 0, {"prediction_gap": 0.0, "mia_auc": 0.5}),
               _record("ifru", 0, {"prediction_gap": 0.25, "mia_auc": 0.75}),
               _record("scif", 0, {"error": "MethodUnsupported: scif", "wall_seconds": 0.1})]
    result = BenchResult("attack", "d", "mf", {"attack_ratio": 0.02}, TINY.as_dict(), records, aggregate(records))
    assert plot(result, tmp_path / "attack.png").is_file()
    (gap, mia) = heights
    assert gap[:2] == [0.0, 0.25] and mia[:2] == [0.5, 0.75]
    assert math.isnan(gap[2]) and math.isnan(mia[2])


def test_the_readme_cell_counts_the_untrusted_seeds():
    from graphforget.bench.report import README_DEFAULT, _readme_cell
    figures = {"prediction_gap": 0.5, "mia_auc": 0.25, "seconds": 0.125}
    records = [{"cell": {"protocol": "attack", "dataset": "d", "model": "mf", "method": method, "seed": seed,
                         "params": {"protocol": {"attack_ratio": 0.02}}},
                "result": {**figures, "info": {} if method == "finetune" else {"trusted": seed != 1}}}
               for method in ("ifru", "finetune") for seed in range(3)]
    groups = {g["method"]: g for g in aggregate(records)}
    assert _readme_cell(groups["ifru"], README_DEFAULT) == "0.50/0.25/0.12s!1"
    assert _readme_cell(groups["finetune"], README_DEFAULT) == "0.50/0.25/0.12s"


@pytest.mark.parametrize("seconds, text", [(99.7, "100"), (100.0, "100"), (250.4, "250"), (99.4, "99"),
                                           (0.125, "0.12")])
def test_the_readme_cell_writes_seconds_from_100_on_without_decimals(seconds, text):
    from graphforget.bench.report import README_DEFAULT, _readme_cell
    group = {"metrics": {"prediction_gap": {"mean": 0.5}, "mia_auc": {"mean": 0.25}, "seconds": {"mean": seconds}}}
    assert _readme_cell(group, README_DEFAULT) == f"0.50/0.25/{text}s"  # never 1e+02s


def test_runs_over_disjoint_seeds_share_the_cache(tmp_path):
    run = dict(methods=["scif"], out=tmp_path, params={"kinds": ["random"], "ratios": [0.05]}, hparams=TINY)
    first = run_bench("deletion", "synthetic", seeds=[1], **run)
    both = run_bench("deletion", "synthetic", seeds=2, **run)
    assert [(r["cell"]["seed"], r["cached"]) for r in both.cells] == [(0, False), (0, False), (1, True), (1, True)]
    assert [r["result"] for r in both.cells[2:]] == [r["result"] for r in first.cells]
    assert all(group["metrics"]["mia_auc"]["n"] == 2 for group in both.aggregates)
    with pytest.raises(ValueError, match="distinct seeds"):
        run_bench("deletion", "synthetic", seeds=[1, 1], **run)


def test_a_stream_runs_to_its_last_checkpoint_and_its_table_shows_its_own_checkpoints(tmp_path):
    """At checkpoints 30% and 60% of 4 requests the table had shown no quality figure (it knew @25/50/100% only),
    and the 4th request ran unmeasured, counted in the seconds per request beside the 60% figures."""
    result = run_bench("stream", "synthetic", methods=["scif"], seeds=1, out=tmp_path,
                       params={"length": 4, "fractions": [0.3, 0.6]}, hparams=TINY)
    (cell,) = [record["result"] for record in result.cells if record["cell"]["method"] == "scif"]
    assert len(cell["request_seconds"]) == 3 and [point["requests"] for point in cell["checkpoints"]] == [2, 3]
    assert cell["seconds_per_request"] == pytest.approx(sum(cell["request_seconds"]) / 3)
    lines = (tmp_path / "results.md").read_text().splitlines()
    # two streams' tables had one title; and it said 4 requests where 3 ran
    assert lines[0] == ("# stream of 4 requests, the first 3 run (its last checkpoint at 60%) on synthetic, "
                        "mf (l2 1, 3 epochs, embedding_dim 8, patience 0)")
    header = lines[4]
    for column in ("prediction_gap@30%", "prediction_gap@60%", "prediction_distance@30%", "auc_0@60%",
                   "mia_auc@60%", "seconds_per_request"):
        assert f" {column} |" in header, column
    assert "@50%" not in header and "@100%" not in header and "@25%" not in header
    from graphforget.bench.report import readme_table
    row = readme_table([result]).splitlines()[-1]  # the README's figures: the last checkpoint's, not '-'
    assert re.search(r"\| [-\d.]+/[-\d.]+/[\d.]+s \|", row), row


@pytest.mark.parametrize("measured, shown", [
    ((25, 50, 75, 100), (25, 50, 100)), ((12.5, 25, 37.5, 50, 100), (25, 50, 100)),  # their own checkpoints
    ((10, 25, 100), (10, 25, 100)),  # a measured @25% kept, 10% shown in @50%'s place: none hidden behind another
    ((30, 60), (30, 60)), ((50, 100), (50, 100)), ((50,), (50,)),  # one checkpoint: its every figure shown
    ((10, 25, 50, 60), (25, 50, 60)),  # a measured @50% shown, not 10% (the nearest to a half of 25%) in its place
    ((5, 10, 20, 30, 40), (10, 20, 40))])  # a quarter, a half and all of the last, not 20/30/40 by absolute percent
def test_a_streams_table_shows_each_figure_at_the_checkpoints_it_measured(measured, shown):
    from types import SimpleNamespace
    from graphforget.bench.report import _columns
    metrics = {f"{figure}@{t:g}%": {"mean": 0.1} for t in measured for figure in ("prediction_gap", "auc_0")}
    columns = _columns(SimpleNamespace(protocol="stream", aggregates=[{"metrics": metrics}]))
    assert [c for c in columns if c.startswith("prediction_gap@")] == [f"prediction_gap@{t:g}%" for t in shown]
    assert [c for c in columns if c.startswith("auc_0@")] == [f"auc_0@{measured[-1]:g}%"]  # the last, as @100%


def test_a_stream_needs_two_users_with_edges():
    graph = make_interactions(torch.tensor([[0, 0], [0, 1]]), torch.ones(2), 2, 2)  # user 1 has no edge
    with pytest.raises(ValueError, match=r"a stream needs two users with edges or more .*; the graph has 1"):
        stream_requests(graph, 1)


def test_reports_render_again_from_results_json(tmp_path):
    from graphforget.bench import write_reports
    result = run_bench("stream", "synthetic", methods=["scif"], seeds=1, out=tmp_path / "a", params={"length": 2},
                       hparams=TINY)
    again = BenchResult.from_dict(json.loads((tmp_path / "a" / "results.json").read_text()))
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "attack.png").write_bytes(b"an earlier run's plot")  # showed what the reports no longer say
    written = write_reports(again, tmp_path / "b")
    assert (tmp_path / "b" / "results.md").read_text() == (tmp_path / "a" / "results.md").read_text()
    assert again.to_dict() == json.loads(json.dumps(result.to_dict()))
    assert sorted(path.name for path in (tmp_path / "b").glob("*.png")) == [path.name for path in written
                                                                          if path.suffix == ".png"]


def test_reports_are_never_left_beside_an_earlier_runs(tmp_path, monkeypatch):
    """results.json was written before results.md was built and the plot drawn: a markdown that failed left the
    old results.md beside the new results.json, and Ctrl-C while plotting the old plot beside both."""
    from graphforget.bench import report, write_reports
    run_bench("stream", "synthetic", methods=["scif"], seeds=1, out=tmp_path, params={"length": 2}, hparams=TINY)
    result = BenchResult.from_dict(json.loads((tmp_path / "results.json").read_text()))
    old = {name: (tmp_path / name).read_bytes() for name in ("results.json", "results.md")}
    (tmp_path / "stream.png").write_bytes(b"the earlier run's plot")

    def fails(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(report, "markdown", fails)
    with pytest.raises(KeyboardInterrupt):
        write_reports(result, tmp_path)
    assert {name: (tmp_path / name).read_bytes() for name in old} == old  # nothing written
    monkeypatch.undo()
    result.dataset = "another"  # new figures
    monkeypatch.setattr(report, "plot", fails)
    with pytest.raises(KeyboardInterrupt):
        write_reports(result, tmp_path)
    assert "another" in (tmp_path / "results.md").read_text() and not (tmp_path / "stream.png").exists()
    # a kill between results.json and results.md left one run's beside the other's (a QA probe): the old one goes first
    result.dataset = "a third"
    monkeypatch.setattr(report, "atomic_write", lambda *args, **kwargs: fails())
    with pytest.raises(KeyboardInterrupt):
        write_reports(result, tmp_path)
    assert "a third" in (tmp_path / "results.json").read_text() and not (tmp_path / "results.md").exists()


def test_reports_are_written_under_a_lock_on_out(tmp_path, monkeypatch):
    """Two runs sharing ``out`` over disjoint seeds, in parallel, left one's results.json beside the other's
    results.md (a QA probe): another process's lock on ``out`` is held from the first report to the plot."""
    import fcntl
    from graphforget.bench import report, write_reports
    run_bench("stream", "synthetic", methods=["scif"], seeds=1, out=tmp_path, params={"length": 2}, hparams=TINY)
    result, held = BenchResult.from_dict(json.loads((tmp_path / "results.json").read_text())), []

    def locked(*args) -> bool:  # whether a second open description of out can take the lock now
        fd = os.open(tmp_path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return False
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
    for name in ("write_json", "atomic_write", "plot"):
        original = getattr(report, name)
        monkeypatch.setattr(report, name,
                            lambda *args, _f=original, **kwargs: held.append(locked()) or _f(*args, **kwargs))
    write_reports(result, tmp_path)
    assert len(held) >= 3 and all(held) and not locked()


# ---------------------------------------------------------------------------------- data sources

def _lightgcn_files(folder, users: int = 40, items: int = 30, per_user: int = 8, seed: int = 0):
    """A small implicit dataset in the LightGCN line format (``train.txt`` and ``test.txt``)."""
    gen = torch.Generator().manual_seed(seed)
    folder.mkdir()
    lines = {"train.txt": [], "test.txt": []}
    for user in range(users):
        picked = torch.randperm(items, generator=gen)[:per_user].tolist()
        lines["train.txt"].append(" ".join(map(str, [user, *picked[:-2]])))
        lines["test.txt"].append(" ".join(map(str, [user, *picked[-2:]])))
    for name, rows in lines.items():
        (folder / name).write_text("\n".join(rows) + "\n")
    return folder


def test_a_file_source_is_keyed_by_its_bytes(tmp_path):
    folder = _lightgcn_files(tmp_path / "data")
    source = DataSource("file", path=str(folder), format="lightgcn", negatives=1)
    before = plan_cells("deletion", source, TINY, ["ifru"], 1, PROTOCOLS["deletion"].defaults(True), {})[0].key
    with open(folder / "train.txt", "a") as handle:
        handle.write("40 1 2 3\n")  # one more user: the data changed, so must the key
    after = plan_cells("deletion", source, TINY, ["ifru"], 1, PROTOCOLS["deletion"].defaults(True), {})[0].key
    assert before != after


def test_the_device_is_in_the_key():
    """A run on a GPU read back the cells a CPU run had stored, their seconds included."""
    source, params = DataSource("synthetic", negatives=1), PROTOCOLS["attack"].defaults(True)
    keys = {device: plan_cells("attack", source, TINY, ["ifru"], 1, params, {}, device)[0].key
            for device in ("cpu", "cuda", "cuda:1")}
    assert keys["cpu"] != keys["cuda"] == keys["cuda:1"]  # the kind of device, not which one
    assert plan_cells("attack", source, TINY, ["ifru"], 1, params, {})[0].key == keys["cpu"]


def test_the_thread_count_is_in_the_key(monkeypatch):
    """IFRU's sums run in another order on 2 threads (its AUC moved by 2e-5): a run resumed with --threads 2 served the
    1-thread cells as its own (a QA probe)."""
    source, params = DataSource("synthetic", negatives=1), PROTOCOLS["attack"].defaults(True)
    keys = set()
    for threads in (1, 2):
        monkeypatch.setattr(torch, "get_num_threads", lambda threads=threads: threads)
        keys.add(plan_cells("attack", source, TINY, ["ifru"], 1, params, {})[0].key)
    assert len(keys) == 2


def test_a_named_dataset_is_keyed_by_its_file(tmp_path):
    """Its key held the root only (none at all when found through $GRAPHFORGET_DATA): a replaced u.data reused the
    cells of the old one."""
    (tmp_path / "ml-100k").mkdir()
    data = tmp_path / "ml-100k" / "u.data"
    data.write_text("1\t1\t5\t0\n")
    source = DataSource("ml-100k", root=str(tmp_path), negatives=0)

    def key():
        return plan_cells("attack", source, TINY, ["ifru"], 1, PROTOCOLS["attack"].defaults(True), {})[0].key
    before = key()
    data.write_text("1\t1\t5\t0\n2\t1\t4\t0\n")
    assert key() != before and source.identity()["files"] == {"u.data": sha256_file(data)}
    # the same file elsewhere is the same data: its root had been keyed too, and --root naming the default data
    # folder recomputed every cell (qa182)
    (tmp_path / "copy" / "ml-100k").mkdir(parents=True)
    (tmp_path / "copy" / "ml-100k" / "u.data").write_bytes(data.read_bytes())
    assert DataSource("ml-100k", root=str(tmp_path / "copy"), negatives=0).identity() == source.identity()


def test_a_file_source_is_keyed_by_its_test_file_too(tmp_path):
    """The LightGCN folder's test.txt is the test set: an edit to it is other data."""
    folder = _lightgcn_files(tmp_path / "data")
    source = DataSource("file", path=str(folder), format="lightgcn", negatives=1)
    before = source.identity()
    with open(folder / "test.txt", "a") as handle:
        handle.write("0 29\n")
    assert set(before["files"]) == {"train.txt", "test.txt"} and source.identity() != before


def test_a_file_source_is_keyed_by_every_file_it_reads(tmp_path):
    """A MovieLens folder was keyed by its *.txt files (none: u.data is not one), and LightGCN's train.txt named as the
    file by itself without the test.txt beside it, which is the test set: an edit of either reused stale cells."""
    folder = _lightgcn_files(tmp_path / "data")
    (tmp_path / "ml").mkdir()
    (tmp_path / "ml" / "u.data").write_text("1\t1\t5\t0\n2\t1\t3\t0\n")
    sources = {folder / "test.txt": DataSource("file", path=str(folder / "train.txt"), format="lightgcn"),
               tmp_path / "ml" / "u.data": DataSource("file", path=str(tmp_path / "ml"), format="movielens")}
    for edited, source in sources.items():
        before = source.identity()
        assert before["files"][edited.name] == sha256_file(edited)
        with open(edited, "a") as handle:
            handle.write("3\t2\t4\t0\n" if edited.name == "u.data" else "1 29\n")
        assert source.identity()["files"][edited.name] == sha256_file(edited) != before["files"][edited.name]


def test_implicit_data_gets_sampled_negatives_for_bce_and_none_for_bpr(tmp_path):
    folder = _lightgcn_files(tmp_path / "data")
    bce = DataSource("file", path=str(folder), format="lightgcn").for_loss("bce").prepare(seed=0)
    train_labels = torch.cat([bce.split.train[EDGE].edge_label, bce.split.val[EDGE].edge_label])
    assert int((train_labels == 1).sum()) == int((train_labels == 0).sum()) == 40 * 6  # one negative each
    assert int((bce.split.test[EDGE].edge_label == 1).sum()) == 40 * 2
    bpr = DataSource("file", path=str(folder), format="lightgcn").for_loss("bpr").prepare(seed=0)
    assert bpr.split.train[EDGE].edge_index.size(1) == 40 * 6 and bpr.split.val[EDGE].edge_index.size(1) == 0
    assert bool((bpr.split.train[EDGE].edge_label == 1).all())


def test_a_file_of_ratings_is_binarised_at_its_threshold_for_bpr_too(tmp_path):
    """Without sampled negatives (BPR) the threshold was ignored: no label was 0 before binarising, so the ratings were
    kept as labels and the attack refused them, asking to binarise what the source had been told to binarise."""
    (tmp_path / "u.data").write_text("".join(f"{u}\t{i}\t{1 + (u + i) % 5}\t0\n" for u in range(1, 13)
                                             for i in range(1, 9)))
    for loss in ("bce", "bpr"):
        data = DataSource("file", path=str(tmp_path), format="movielens", threshold=4).for_loss(loss).prepare(seed=0)
        for part in (data.split.train, data.split.val, data.split.test):
            users, items = (part[node].raw_id[part[EDGE].edge_index[k]] for k, node in enumerate(("user", "item")))
            assert torch.equal(part[EDGE].edge_label, (1 + (users + items) % 5 >= 4).float()), loss


def test_a_file_with_labels_gets_no_sampled_negatives_by_default(tmp_path):
    """A labelled file had one negative sampled per positive under BCE, on top of its own 0 labels, where fit samples
    none: a CSV export of ML-100K held 124,300 training pairs against fit's 80,000 of the same file."""
    (tmp_path / "u.data").write_text("".join(f"{u}\t{i}\t{1 + (u + i) % 5}\t0\n" for u in range(1, 13)
                                             for i in range(1, 9)))
    labelled = DataSource("file", path=str(tmp_path), format="movielens", threshold=4)
    assert labelled.for_loss("bce").negatives == 0 and labelled.for_loss("bpr").negatives == 0
    data = labelled.for_loss("bce").prepare(seed=0)
    assert "0 sampled negatives per positive" in data.source
    for other in (dict(format="triples"), dict(format="csv", user_col="u", item_col="i", label_col="r")):
        assert DataSource("file", path=str(tmp_path), **other).for_loss("bce").negatives == 0, other
    assert sum(getattr(data.split, part)[EDGE].edge_index.size(1) for part in ("train", "val", "test")) <= 12 * 8
    assert DataSource("file", path=str(tmp_path), format="movielens", threshold=4,
                      negatives=1).for_loss("bce").negatives == 1  # asked for, as before
    folder = _lightgcn_files(tmp_path / "data")  # implicit: one each, as before
    assert DataSource("file", path=str(folder), format="lightgcn").for_loss("bce").negatives == 1


def test_the_membership_attack_draws_no_validation_or_test_pair(monkeypatch):
    """The attack's non-members must be calibrated without the test set; its pairs are no training edges and had been
    drawn (a QA probe)."""
    import graphforget.bench.protocols as protocols
    seen, verify = [], protocols.verify_forgetting

    def recording(*args, **kwargs):
        seen.append(kwargs["exclude"])
        return verify(*args, **kwargs)
    monkeypatch.setattr(protocols, "verify_forgetting", recording)
    run_bench("deletion", "synthetic", methods=["finetune"], seeds=1, params={"kinds": ["edge"], "ratios": [0.1]},
              hparams=TINY)
    split = DataSource("synthetic").for_loss("bce").prepare(0, 0.02).split
    held_out = torch.cat([split.val[EDGE].edge_index, split.test[EDGE].edge_index], 1)
    assert seen and held_out.size(1) > 0 and all(torch.equal(pairs, held_out) for pairs in seen)


def test_the_report_names_the_methods_options_and_the_files_reading_options(tmp_path):
    """Two runs that differed in an option or a threshold only had reports alike but for their figures."""
    from graphforget.bench import markdown
    (tmp_path / "u.data").write_text("".join(f"{u}\t{i}\t{1 + (u * 7 + i * 3) % 5}\t0\n" for u in range(1, 41)
                                             for i in range(1, 21) if (u + i) % 3))
    source = DataSource("file", path=str(tmp_path), format="movielens", threshold=4)
    result = run_bench("deletion", source, methods=["ifru"], seeds=1, params={"kinds": ["edge"], "ratios": [0.1]},
                       options={"ifru": {"newton.steps": 1}}, hparams=TINY)
    intro = markdown(result).split("\n")[2]
    assert "Method options: `{'ifru': {'newton.steps': 1}}`." in intro
    assert "Data options: `{'negatives': 0, 'threshold': 4}`." in intro
    plain = run_bench("deletion", "synthetic", methods=["ifru"], seeds=1, params={"kinds": ["edge"], "ratios": [0.1]},
                      hparams=TINY)
    assert "options" not in markdown(plain).split("\n")[2]  # none set: none named
    from graphforget.bench.report import _settings
    csv = {"dataset": "file", "negatives": 0, "threshold": None, "columns": ["user", "item", "rating"]}
    cells = [{"cell": {"method": "ifru", "params": {"options": {}, "data": csv}}}]
    assert _settings(dataclasses.replace(result, cells=cells), "`") == (
        " Data options: `{'negatives': 0, 'columns': ['user', 'item', 'rating']}`.")
    # the CSV reading's options other than the defaults (duplicates='last' had left no trace: a QA probe)
    csv["csv"] = {"duplicates": "last", "delimiter": ";", "encoding": "utf-8"}
    assert _settings(dataclasses.replace(result, cells=cells), "`") == (
        " Data options: `{'negatives': 0, 'columns': ['user', 'item', 'rating'], 'duplicates': 'last', "
        "'delimiter': ';'}`.")
    # an implicit dataset's sampled negatives too (ML-1M runs with 1 and 2 had reports alike: a QA probe); ML-100K
    # brings its own 0/1 labels, and reads none
    for dataset, negatives, said in (("ml-1m", 2, " Data options: `{'negatives': 2}`."),
                                     ("gowalla", 1, " Data options: `{'negatives': 1}`."), ("ml-100k", 1, "")):
        data = {"dataset": dataset, "negatives": negatives, "threshold": None, "columns": [None] * 3}
        cells = [{"cell": {"method": "ifru", "params": {"options": {}, "data": data}}}]
        assert _settings(dataclasses.replace(result, cells=cells), "`") == said, dataset


def test_a_streams_legend_explains_its_checkpoints():
    from graphforget.bench import markdown
    stream = json.loads((ROOT / "benchmarks" / "results" / "bench" / "stream_ml-100k" / "results.json").read_text())
    legend = markdown(BenchResult.from_dict(stream)).rstrip().split("\n")[-1]
    assert all(f"{name}:" in legend for name in ("prediction_gap", "auc_0", "@NN%", "seconds_per_request"))
    assert "mia_auc_before:" not in legend and ". seconds:" not in legend  # columns the stream's table lacks


def test_a_bpr_file_source_refuses_test_pairs_that_are_training_pairs(tmp_path):
    """BCE refused train and test files that share a pair; BPR took them, so the pair was both trained on (and masked
    in the ranking) and a test positive."""
    folder = _lightgcn_files(tmp_path / "data")
    item = (folder / "train.txt").read_text().split()[1]  # user 0's first training item, added to its test line
    lines = (folder / "test.txt").read_text().splitlines()
    (folder / "test.txt").write_text("".join(f"{line} {item}\n" if line.split()[0] == "0" else f"{line}\n"
                                             for line in lines))
    for loss in ("bce", "bpr"):
        with pytest.raises(ValueError, match=r"train and test files overlap: 1 \(user, item\) pair\(s\) in both, "
                                             r"\(0, \d+\);"):
            DataSource("file", path=str(folder), format="lightgcn").for_loss(loss).prepare(seed=0)


def test_the_attack_protocol_refuses_implicit_data_without_sampled_negatives(tmp_path):
    """With --negatives 0 the flipped labels were the Original's only negatives: it trained, and the run failed at
    the Retrain, whose request 'leaves nothing to train on'."""
    folder = _lightgcn_files(tmp_path / "data")
    with pytest.raises(ValueError, match=r"holds implicit feedback only \(every label is 1\): the flipped labels"):
        run_bench("attack", DataSource("file", path=str(folder), format="lightgcn", negatives=0),
                  methods=["finetune"], seeds=1, hparams=TINY, out=tmp_path / "o")
    assert not (tmp_path / "o" / "results.json").exists()


def test_ratings_that_all_reach_the_threshold_are_refused_naming_it(tmp_path):
    """Every rating at or above --threshold: the attack called the data implicit feedback (the wrong cause), and
    deletion and stream failed at training, advising Python calls (add_negatives, BPRObjective); fit names the
    threshold (found by a probe). BPR trains on such data: no refusal."""
    path = tmp_path / "ratings.csv"
    path.write_text("user,item,rating\n" + "".join(f"u{u},i{(u * 7 + k) % 40},{3 + k % 3}\n"
                                                      for u in range(60) for k in range(8)))
    source = DataSource("file", path=str(path), format="csv", user_col="user", item_col="item", label_col="rating",
                        threshold=3.0)  # as --threshold 3 reads: named as typed
    for protocol, need in (("attack", "the flipped labels would be the Original's only negatives"),
                           ("deletion", "BCE training has no negative")):
        with pytest.raises(ValueError, match=re.escape(f"ratings.csv: every rating reaches --threshold 3, so every "
                                                       f"label is 1 and {need}: raise --threshold, or sample N")):
            run_bench(protocol, source, methods=["retrain"], seeds=1, hparams=TINY, out=tmp_path / protocol,
                      params={"kinds": ["random"], "ratios": [0.1]} if protocol == "deletion" else None)
    assert Setting(source.for_loss("bpr"), TINY.replace(loss="bpr"), seed=0).val is None
    with pytest.raises(ValueError, match=r"ratings.csv: every rating reaches --threshold 3, so every label is 1 and "
                                         r"the flipped labels would be the Original's only negatives: raise "
                                         r"--threshold$"):
        Setting(source.for_loss("bpr"), TINY.replace(loss="bpr"), seed=0, attack={"kind": "flip", "ratio": 0.02})


def test_implicit_data_reports_recall_beside_the_retrain(tmp_path):
    folder = _lightgcn_files(tmp_path / "data")
    result = run_bench("deletion", DataSource("file", path=str(folder), format="lightgcn"), methods=["ifru"], seeds=1,
                       params={"kinds": ["random"], "ratios": [0.1]}, hparams=TINY)
    retrain, ifru = (record["result"] for record in result.cells)
    assert retrain["recall@20"] == retrain["recall@20_retrain"]  # Retrain is its own reference
    assert ifru["recall@20_retrain"] == retrain["recall@20"] and 0 <= ifru["recall@20"] <= 1
    assert "auc_0" in ifru and ifru["mia_auc"] is not None


def test_the_adversarial_protocol_unlearns_the_edges_a_clean_model_ranks_last(tmp_path):
    folder = _lightgcn_files(tmp_path / "data")
    hparams = Hyperparameters(model="lightgcn", embedding_dim=8, num_layers=1, l2=1e-4, loss="bpr",
                              train={"epochs": 3, "patience": 0, "batch_size": 64})
    source = DataSource("file", path=str(folder), format="lightgcn")
    result = run_bench("adversarial", source, methods=["ifru"], seeds=1, hparams=hparams, params={"fraction": 0.5})
    setting = Setting(source.for_loss("bpr"), hparams, seed=0, attack={"kind": "adversarial", "fraction": 0.5})
    clean_model, clean_graph = setting.clean
    assert setting.request.size(1) == 20 and setting.request[0].unique().numel() == 20  # one edge per attacked user
    scores = clean_model.score_all(clean_graph, setting.request[0])  # the added item is the lowest unseen score
    seen = torch.zeros_like(scores, dtype=torch.bool)
    # nor a validation or test pair (the Original trained on one, which the ranking then masked)
    parts = [clean_graph] + [part for part in (setting.val, setting.test) if part is not None]
    edges = torch.cat([part[EDGE].edge_index for part in parts], 1)
    for row, user in enumerate(setting.request[0].tolist()):
        seen[row, edges[1][edges[0] == user]] = True
    lowest = scores.masked_fill(seen, float("inf")).argmin(1)
    assert torch.equal(lowest, setting.request[1])
    retrain, ifru = (record["result"] for record in result.cells)
    assert "auc_0" not in ifru  # BPR on implicit data: no labelled negatives, ranking metrics instead
    for key in ("recall@20", "completeness_recall@20", "clean_recall@20", "mi_bf", "mi_ng", "mia_auc"):
        assert ifru[key] is not None, key
    assert retrain["completeness_recall@20"] == pytest.approx(1.0)


# ----------------------------------------------------------------------------- the committed results

ROOT = Path(__file__).resolve().parent.parent


def test_docs_and_readme_tables_are_generated_from_the_committed_results():
    from graphforget.bench import markdown
    for path in sorted((ROOT / "benchmarks" / "results" / "bench").glob("*/results.json")):
        result = BenchResult.from_dict(json.loads(path.read_text()))
        assert (path.parent / "results.md").read_text() == markdown(result), path
    spec = importlib.util.spec_from_file_location("render_docs", ROOT / "benchmarks" / "render_docs.py")
    render = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(render)
    assert render.main(["--check"]) == 0  # else: python benchmarks/render_docs.py
    # Every setting other than the preset's is named wherever the run is (the preset's are not; the quick profile's
    # 10 epochs, learning rate and batches are: its title had only the epochs).
    readme = (ROOT / "README.md").read_text()
    assert "| adversarial, ml-100k/simgcl (ssl_weight 0.02, 300 epochs) |" in readme
    assert "| adversarial, ml-1m/simgcl (10 epochs, lr 0.02, batch_size 65536) |" in readme
    # CURE4Rec's deletion sets are in the README; the random-interaction set only in the docs.
    docs = (ROOT / "docs" / "bench_results.inc").read_text()
    assert "| deletion (core), ml-100k/mf |" in readme and "deletion (interactions)" not in readme
    assert "kind=interactions" in docs


def test_cli_bench_on_a_data_file(tmp_path, capsys):
    folder = _lightgcn_files(tmp_path / "data")
    out = tmp_path / "bench"
    argv = ["bench", "--protocol", "deletion", "--data", str(folder), "--format", "lightgcn", "--methods", "ifru",
            "--seeds", "1", "--param", "kinds=edge", "--epochs", "2", "--out", str(out), "--quiet"]
    assert cli.main(argv) == 0
    assert "| kind=edge, ratio=0.05 | ifru |" in capsys.readouterr().out
    result = json.loads((out / "results.json").read_text())
    assert result["dataset"] == "data" and result["cells"][0]["cell"]["params"]["data"]["format"] == "lightgcn"
    assert cli.main(["bench", "--protocol", "deletion", "--data", str(folder), "--out", str(out)]) == 2  # no format
    assert cli.main(["bench", "--protocol", "deletion", "--threshold", "4", "--out", str(out)]) == 2  # no file
    assert "--data" in capsys.readouterr().err
    # a dataset named beside the file was ignored, the file benchmarked
    for extra in (["--dataset", "gowalla"], ["--root", str(tmp_path)]):
        assert cli.main(["bench", "--protocol", "deletion", *argv[3:7], *extra, "--out", str(tmp_path / "x")]) == 2
        assert "--dataset and --root name a dataset, --data a file of your own" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def _graded_users():
    """Users 0..5 with 3, 1, 5, 2, 6, 4 observed edges; user 1 also has 6 sampled negatives (observed False) and
    user 6 only one: activity counts the observed edges, so user 1 is the least active and user 6 has none."""
    pairs, labels = [], []
    for user, degree in enumerate([3, 1, 5, 2, 6, 4]):
        pairs += [(user, item) for item in range(degree)]
        labels += [1.0] * degree
    pairs += [(1, item) for item in range(1, 7)] + [(6, 0)]
    labels += [0.0] * 7
    graph = make_interactions(torch.tensor(pairs).t(), torch.tensor(labels), num_users=7, num_items=8)
    graph[EDGE].observed = graph[EDGE].edge_label > 0
    return graph


@pytest.mark.parametrize("kind, most_first", [("core", True), ("edge", False)])
def test_core_and_edge_deletion_take_the_most_or_least_active_users_until_they_hold_the_ratio(kind, most_first):
    # CURE4Rec's core set is the most active users' interactions, its edge set the least active users'.
    graph = _graded_users()
    degree = {0: 3, 1: 1, 2: 5, 3: 2, 4: 6, 5: 4}  # observed edges per user, 21 in all
    for ratio in (0.05, 0.25, 0.5, 0.6, 0.9):
        chosen, held = [], 0  # by hand: in order of activity, until at least round(ratio * 21) edges are held
        for user in sorted(degree, key=lambda u: -degree[u] if most_first else degree[u]):
            chosen.append(user)
            held += degree[user]
            if held >= max(1, round(ratio * 21)):
                break
        if held == 21:  # every edge: nothing would remain to train on
            with pytest.raises(ProtocolError, match="takes every observed training edge of the graph"):
                deletion_request(graph, kind, ratio)
            continue
        request = deletion_request(graph, kind, ratio)
        assert sorted(map(tuple, request.t().tolist())) == sorted((u, i) for u in chosen for i in range(degree[u]))


def test_random_deletion_stops_at_the_user_that_reaches_the_ratio():
    graph = planted_communities(num_users=60, num_items=40, interactions_per_user=8, seed=0)
    edges = graph[EDGE].edge_index.size(1)
    for ratio in (0.05, 0.1, 0.3):
        request = deletion_request(graph, "random", ratio, seed=3)
        # whole users of 8 edges each: without its last user the set held less than the ratio
        assert ratio * edges <= request.size(1) < ratio * edges + 8 and request.size(1) % 8 == 0


def test_stream_orders_users_by_observed_activity():
    graph = _graded_users()
    users = lambda order, seed=0: [int(r[0].unique()) for r in stream_requests(graph, 5, order, seed)]
    assert users("least") == [1, 3, 0, 5, 2] and users("most") == [4, 2, 5, 0, 3]
    for request in stream_requests(graph, 5, "most"):  # every observed edge of its user, no sampled negative
        user = int(request[0, 0])
        assert sorted(request[1].tolist()) == list(range({0: 3, 1: 1, 2: 5, 3: 2, 4: 6, 5: 4}[user]))
    orders = {tuple(users("random", seed)) for seed in range(5)}
    assert all(len(set(order)) == 5 and set(order) <= set(range(6)) for order in orders) and len(orders) > 1
    assert users("random", 3) == users("random", 3)  # seeded shuffles
    # user 6 has no edge to forget; forgetting all 6 others left nothing to train on, and the run failed at Retrain
    with pytest.raises(ValueError, match=r"stream length must be in \[1, 5\] \(the users with edges less one"):
        stream_requests(graph, 6, "least")


def test_a_stream_continues_each_method_from_its_own_previous_result():
    setting = Setting(DataSource("synthetic", negatives=1), TINY, seed=0)
    variant = {"length": 3, "order": "random", "fractions": [1.0]}
    requests = stream_requests(setting.train_graph, 3, "random", 0)
    result = PROTOCOLS["stream"].run(setting, "finetune", {}, variant, False)
    model, graph = setting.original, setting.train_graph  # by hand: request after request, each from the last result
    for request in requests:
        outcome = setting.continue_from("finetune", {}, model, graph).unlearn(request)
        model, graph = outcome.model.eval(), outcome.graph
    reference = setting.reference(torch.cat(requests, 1))
    expected = prediction_distance(model, graph, reference.model, reference.graph, setting.test[EDGE].edge_index)
    assert result["prediction_distance"] == pytest.approx(expected, rel=1e-6) and expected > 0


# --------------------------------------------------------- settings, plans, seeds and the protocols' checks

def test_a_harness_method_takes_the_options_given_over_its_own():
    """retrain_seed seeds itself from the cell's seed (seed + 1000); options given for it win over that."""
    from graphforget.bench.setting import resolve_method
    assert resolve_method("retrain_seed", None, 2) == ("retrain", {"seed": 1002, "train.seed": 1002})
    assert resolve_method("retrain_seed", {"seed": 5}, 2) == ("retrain", {"seed": 5, "train.seed": 1002})
    assert resolve_method("ifru", {"solver.name": "cg"}, 2) == ("ifru", {"solver.name": "cg"})


def test_the_protocols_without_an_attack_train_on_the_clean_split():
    """deletion and stream start from the clean training split, not from the attack protocol's flipped labels."""
    data = prepare_attack_data("synthetic", attack_ratio=0.02, seed=0)
    clean = Setting(DataSource("synthetic", negatives=1), TINY, seed=0)
    assert torch.equal(clean.train_graph[EDGE].edge_label, data.split.train[EDGE].edge_label) and clean.request is None
    assert not torch.equal(clean.train_graph[EDGE].edge_label, data.train[EDGE].edge_label)
    flipped = Setting(DataSource("synthetic", negatives=1), TINY, seed=0, attack={"kind": "flip", "ratio": 0.02})
    assert torch.equal(flipped.train_graph[EDGE].edge_label, data.train[EDGE].edge_label)
    assert torch.equal(flipped.request, data.request)


def test_the_reference_retrain_and_the_methods_take_the_settings_seed():
    setting = Setting(DataSource("synthetic", negatives=1), TINY, seed=2)
    request = deletion_request(setting.train_graph, "edge", 0.05, seed=2)
    # by hand: a fresh model from seed 2, trained on the remaining edges in seed 2's batch order
    by_hand = Retrain(setting.original, setting.train_graph, setting.objective,
                      RetrainConfig(TINY.train_config(2), seed=2), val=setting.val).unlearn(request)
    reference = setting.reference(request)
    assert torch.allclose(reference.model.user_emb.weight, by_hand.model.user_emb.weight)
    sisa = setting.continue_from("sisa", {"num_shards": 2}, setting.original, setting.train_graph)
    assert (sisa.config.seed, sisa.config.train.seed) == (2, 2)


def test_methods_with_a_fit_step_are_fitted_each_for_itself():
    """The fitted methods of a setting are kept per method and options: RecEraser with SISA's options is not SISA."""
    setting = Setting(DataSource("synthetic", negatives=1), TINY, seed=0)
    options = {"num_shards": 2, "aggregation": "mean"}
    sisa, receraser = setting.unlearner("sisa", options), setting.unlearner("receraser", options)
    assert (type(sisa).__name__, type(receraser).__name__) == ("SISA", "RecEraser")
    assert setting.unlearner("sisa", dict(options)) is sisa  # fitted once per setting


def test_the_harness_trains_with_bpr_for_the_adversarial_protocol_and_the_contrastive_models():
    assert bench_hparams("mf", "synthetic", "deletion").loss == "bce"
    assert bench_hparams("mf", "ml-1m", "adversarial").loss == "bpr"
    assert bench_hparams("sgl", "ml-1m", "stream").loss == "bpr"  # SGL's own loss, whatever the protocol


def test_cells_are_ordered_by_seed_then_variant_with_retrain_first_and_each_method_once():
    params = {"kinds": ["edge", "core"], "ratios": [0.05]}
    cells = plan_cells("deletion", DataSource("synthetic", negatives=1), TINY, ["ifru", "retrain", "ifru"], 2, params,
                       {})
    expected = [(seed, kind, method) for seed in (0, 1) for kind in ("edge", "core") for method in ("retrain", "ifru")]
    assert [(cell.seed, cell.params["protocol"]["kind"], cell.method) for cell in cells] == expected


def test_each_seed_of_a_run_gets_its_own_setting(monkeypatch):
    """The cells of seed 1 run on seed 1's setting (its split and models), not on the setting of the seed before."""
    seen = []

    def recording(setting, method, *args):
        seen.append((method, setting.seed, id(setting)))
        return {}
    monkeypatch.setitem(PROTOCOLS, "deletion", dataclasses.replace(PROTOCOLS["deletion"], run=recording))
    run_bench("deletion", "synthetic", methods=["ifru"], seeds=2, params={"kinds": ["edge"], "ratios": [0.05]},
              hparams=TINY)
    assert [(method, seed) for method, seed, _ in seen] == [("retrain", 0), ("ifru", 0), ("retrain", 1), ("ifru", 1)]
    assert seen[0][2] == seen[1][2]  # one setting shared by the methods of a seed


def test_a_method_that_refuses_the_setting_gives_its_cells_an_error(tmp_path, monkeypatch):
    """A method that refuses the trained model or graph when it is built records the refusal in its cells and the run
    goes on. One that refuses the objective is refused before anything is trained: SCIF, which relabels terms, under
    BPR trained every model, then failed every cell."""
    from graphforget.bench import setting
    folder = _lightgcn_files(tmp_path / "data")
    source = DataSource("file", path=str(folder), format="lightgcn")
    hparams = Hyperparameters(model="mf", embedding_dim=8, l2=1e-4, loss="bpr", train={"epochs": 2, "patience": 0})
    trained = []
    monkeypatch.setattr(setting, "train", lambda *args: trained.append(args) or pytest.fail("trained"))
    with pytest.raises(ValueError, match="SCIF substitutes labels, so it needs a labelled objective"):
        run_bench("deletion", source, methods=["scif"], seeds=1, params={"kinds": ["edge"], "ratios": [0.1]},
                  hparams=hparams, out=tmp_path / "out")
    assert not trained and not (tmp_path / "out").exists()
    monkeypatch.undo()
    built = setting.build_unlearner

    def refusing(name, *args, **kwargs):
        if name == "ifru":
            raise ValueError("refuses this model")
        return built(name, *args, **kwargs)
    monkeypatch.setattr(setting, "build_unlearner", refusing)
    result = run_bench("deletion", source, methods=["ifru"], seeds=1, params={"kinds": ["edge"], "ratios": [0.1]},
                       hparams=hparams)
    retrain, ifru = (record["result"] for record in result.cells)
    assert "error" not in retrain and ifru["error"].startswith("MethodUnsupported: ifru: refuses this model")
    assert result.aggregates[1]["errors"] == 1


def test_options_the_bench_cannot_run_are_refused_before_anything_is_trained(tmp_path, monkeypatch):
    """A ready config failed as "'IFRUConfig' object is not iterable"; L-BFGS for a sharded method under SGL's
    contrastive objective was refused only after the clean model, the Original and Retrain had trained, and in
    run_attack after the Original (found by a probe)."""
    from graphforget.bench import setting
    from graphforget.protocols.attack import prepare_attack_data, run_attack
    from graphforget.unlearn import IFRUConfig
    monkeypatch.setattr(setting, "train", lambda *args: pytest.fail("trained"))
    with pytest.raises(ValueError, match=re.escape("options for ifru: the bench takes each method's options as a")):
        run_bench("attack", "synthetic", "mf", ["ifru"], seeds=1, options={"ifru": IFRUConfig.paper()}, hparams=TINY)
    sgl = Hyperparameters(model="sgl", embedding_dim=8, l2=1e-4, loss="bpr", train={"epochs": 2, "patience": 0})
    lbfgs = {"sisa": {"train.optimizer": "lbfgs", "num_shards": 2}}
    with pytest.raises(ValueError, match="SISA: L-BFGS minimises ContrastiveBPRObjective's BPR risk alone"):
        run_bench("adversarial", "synthetic", "sgl", ["sisa"], seeds=1, options=lbfgs, hparams=sgl)
    monkeypatch.setattr("graphforget.protocols.attack.train", lambda *args: pytest.fail("trained"))
    data = prepare_attack_data("synthetic", attack_ratio=0.05, seed=0)
    with pytest.raises(ValueError, match="SISA: L-BFGS minimises ContrastiveBPRObjective's BPR risk alone"):
        run_attack(data, sgl, ["sisa"], seed=0, options=lbfgs)


def test_a_method_that_refuses_a_request_with_a_value_error_gives_its_cell_an_error(monkeypatch):
    """The direct solver's refusal of a large system (scif:solver.name=direct) stopped the run, which then never
    finished; it is the cell's error, as an UnlearningFailed is (found by a probe)."""
    from graphforget.unlearn import SCIF
    monkeypatch.setattr(SCIF, "_unlearn", lambda *args: (_ for _ in ()).throw(ValueError("direct solve refused")))
    result = run_bench("attack", "synthetic", "mf", ["scif"], seeds=1, hparams=TINY)
    retrain, scif = (record["result"] for record in result.cells)
    assert "error" not in retrain and scif["error"] == "ValueError: direct solve refused"


def test_empty_options_are_no_options():
    """An empty option dict neither counts as options for retrain nor as options of a method that is not run."""
    from graphforget.bench.harness import _options
    assert _options(["ifru"], {"retrain": {}, "scif": {}, "ifru": {}}, TINY, [0]) == {"ifru": {}}


def test_the_adversarial_protocol_runs_unlearnrec_instead_of_scif_by_default(monkeypatch):
    from graphforget.bench import ADVERSARIAL_METHODS, harness
    planned = {}

    def capture(protocol, source, hparams, methods, *rest):
        planned[protocol] = list(methods)
        raise _Killed(protocol)
    monkeypatch.setattr(harness, "plan_cells", capture)
    for protocol in ("adversarial", "deletion"):
        with pytest.raises(_Killed):
            run_bench(protocol, "synthetic")
    assert planned["adversarial"] == ["retrain", "retrain_seed", "finetune", "ifru", "sisa", "receraser", "unlearnrec"]
    assert planned["adversarial"] == list(ADVERSARIAL_METHODS) and planned["deletion"] == list(DEFAULT_METHODS)


def test_a_single_valued_parameter_takes_one_value():
    with pytest.raises(ValueError, match="expected one int"):
        parse_params("stream", {"length": "10,20"})


def test_a_deletion_ratio_outside_the_unit_interval_is_refused():
    graph = planted_communities(num_users=60, num_items=40, interactions_per_user=8, seed=0)
    for ratio in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match=r"deletion ratio must be in \(0, 1\)"):
            deletion_request(graph, "edge", ratio)
        with pytest.raises(ValueError, match=r"deletion ratio must be in \(0, 1\)"):  # before any cell is planned
            PROTOCOLS["deletion"].variants({"kinds": ["edge"], "ratios": [0.05, ratio]})


def test_a_deletion_run_without_a_kind_or_a_ratio_is_refused(tmp_path):
    """``--param kinds=`` (or ``ratios=``) planned no cell: an empty table written over OUT, exit status 0."""
    for params in ({"kinds": [], "ratios": [0.05]}, {"kinds": ["edge"], "ratios": []}):
        with pytest.raises(ValueError, match="at least one"):
            run_bench("deletion", "synthetic", methods=["ifru"], seeds=1, params=params, hparams=TINY, out=tmp_path)
    assert not (tmp_path / "results.json").exists()


def test_a_repeated_deletion_setting_is_refused():
    """``kinds=edge,edge`` planned each cell twice: its group held seeds [0, 0, 1, 1], and the interval counted
    each seed twice (n = 4 for 2 seeds, a narrower interval than the seeds give)."""
    for params in ({"kinds": ["edge", "edge"], "ratios": [0.05]}, {"kinds": ["edge"], "ratios": [0.05, 0.05]}):
        with pytest.raises(ValueError, match="repeat"):
            plan_cells("deletion", DataSource("synthetic", negatives=1), TINY, ["ifru"], 2, params, {})


def test_stream_checkpoints_round_a_fraction_of_the_length_up_not_its_float_error():
    # 0.07 * 100 = 7.000000000000001 and 0.55 * 100 = 55.00000000000001 in floating point: 7 and 55 requests
    assert stream_positions(100, [0.07, 0.55]) == [7, 55]
    assert stream_positions(10, [0.25, 0.5, 1.0]) == [3, 5, 10]


def test_the_membership_attack_of_a_cell_is_seeded_by_the_cell():
    setting = Setting(DataSource("synthetic", negatives=1), TINY, seed=1)
    row = PROTOCOLS["deletion"].run(setting, "retrain", {}, {"kind": "edge", "ratio": 0.05}, False)
    request = deletion_request(setting.train_graph, "edge", 0.05, seed=1)
    reference = setting.reference(request)
    report = verify_forgetting(reference.model, reference.graph, request, seed=1,
                               before=(setting.original, setting.train_graph),
                               reference=(reference.model, reference.graph), exclude=setting.held_out)
    assert (row["mia_auc"], row["mia_auc_before"]) == (report.mia_auc, report.before_mia_auc)


def test_a_stream_without_an_acceptance_test_is_neither_trusted_nor_untrusted():
    from graphforget.bench.protocols import _stream_summary
    point = [{"fraction": 1.0, "removed_edges": 3, "prediction_gap": 0.5}]
    assert _stream_summary(point, [1.0, 2.0], None, [None, None])["info"] == {"trusted": None,
                                                                            "untrusted_requests": 0}
    assert _stream_summary(point, [1.0, 2.0], None, [True, False])["info"] == {"trusted": False,
                                                                             "untrusted_requests": 1}
    summary = _stream_summary(point, [1.0, 2.0], None, [True, True])
    assert summary["info"]["trusted"] is True and summary["seconds_per_request"] == 1.5


def test_the_original_distance_of_a_message_passing_model_is_on_its_own_training_graph():
    """LightGCN's predictions depend on the graph: the Original is scored on its training graph, the Retrain on its."""
    hparams = Hyperparameters(model="lightgcn", embedding_dim=8, num_layers=1, l2=1.0,
                              train={"epochs": 3, "patience": 0})
    setting = Setting(DataSource("synthetic", negatives=1), hparams, seed=0)
    row = PROTOCOLS["deletion"].run(setting, "retrain", {}, {"kind": "random", "ratio": 0.1}, False)
    reference = setting.reference(deletion_request(setting.train_graph, "random", 0.1, seed=0))
    pairs = setting.test[EDGE].edge_index
    models = {"original": (setting.original, setting.train_graph), "retrain": (reference.model, reference.graph)}
    with torch.no_grad():
        p = {name: torch.sigmoid(model(graph, pairs)) for name, (model, graph) in models.items()}
    assert row["original_distance"] == pytest.approx(float((p["original"] - p["retrain"]).norm()), rel=1e-6)
    assert row["prediction_distance"] == 0


# ------------------------------------------------------------------------------------------------ audit

def _stream_result(records):
    params = {"length": 4, "order": "random", "fractions": [0.5, 1.0]}
    return BenchResult("stream", "d", "mf", params, TINY.as_dict(), records, aggregate(records))


def _stream_record(method, seed, result):
    return {"cell": {"protocol": "stream", "dataset": "d", "model": "mf", "method": method, "seed": seed,
                     "params": {"protocol": {"length": 4, "order": "random", "fractions": [0.5, 1.0]}}},
            "result": result}


def test_the_stream_plot_leaves_a_checkpoint_without_a_figure_unplotted(tmp_path, monkeypatch):
    """A checkpoint whose MIA AUC no seed measured (NaN: no matched non-member, stored as null) is absent from the
    aggregates while its prediction gap is there: the plot read ``None["mean"]`` and the run's reports crashed after
    every cell was computed. The missing point is drawn as NaN (no point), the others as measured."""
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    from matplotlib.axes import Axes
    from graphforget.bench.report import plot
    drawn, errorbar = [], Axes.errorbar

    def recording(self, x, y, *args, **kwargs):
        drawn.append((list(x), list(y)))
        return errorbar(self, x, y, *args, **kwargs)
    monkeypatch.setattr(Axes, "errorbar", recording)
    records = [_stream_record("ifru", seed, {"prediction_gap@50%": 0.25 + seed / 4, "prediction_gap@100%": 0.5,
                                             "mia_auc@50%": None, "mia_auc@100%": 0.75}) for seed in range(2)]
    assert plot(_stream_result(records), tmp_path / "stream.png").is_file()
    (gap_x, gap_y), (mia_x, mia_y) = drawn
    assert gap_x == mia_x == [50.0, 100.0] and gap_y == [0.375, 0.5]
    assert math.isnan(mia_y[0]) and mia_y[1] == 0.75


def test_the_readme_cell_writes_a_dash_for_a_figure_no_seed_measured():
    """An MIA AUC that no seed measured (every seed NaN, so absent from the aggregates) raised KeyError('mean') in
    the README's table, and render_docs failed on the whole set of committed results."""
    from graphforget.bench.report import README_DEFAULT, _readme_cell
    group = {"metrics": {"prediction_gap": {"mean": 0.5}, "seconds": {"mean": 0.125}}}
    assert _readme_cell(group, README_DEFAULT) == "0.50/-/0.12s"
    group = {"metrics": {"prediction_gap": {"mean": 0.5}, "mia_auc": {"mean": 0.25}, "seconds": {"mean": None}}}
    assert _readme_cell(group, README_DEFAULT) == "0.50/0.25/-"


def test_the_readme_rows_of_a_deletion_run_tell_its_ratios_apart():
    """A deletion run over two ratios gave two README rows named alike, ``deletion (core), d/mf``: which row was
    which ratio could not be read. A run of one ratio keeps its rows' names."""
    from graphforget.bench.report import readme_table

    def result(ratios):
        records = [{"cell": {"protocol": "deletion", "dataset": "d", "model": "mf", "method": "ifru", "seed": 0,
                             "params": {"protocol": {"kind": "core", "ratio": ratio}}},
                    "result": {"prediction_gap": ratio, "mia_auc": 0.5, "seconds": 1.0}} for ratio in ratios]
        return BenchResult("deletion", "d", "mf", {"kinds": ["core"], "ratios": ratios}, TINY.as_dict(), records,
                           aggregate(records))
    rows = readme_table([result([0.01, 0.05])]).splitlines()[2:]
    model = "d/mf (l2 1, 3 epochs, embedding_dim 8, patience 0)"
    assert [row.split(" | ")[0] for row in rows] == [f"| deletion (core, {r}), {model}" for r in ("0.01", "0.05")]
    assert readme_table([result([0.05])]).splitlines()[2].startswith("| deletion (core), d/mf")


def test_the_plot_names_the_setting_of_each_bar_when_a_run_has_several(tmp_path, monkeypatch):
    """Two deletion kinds with three methods drew six bars labelled ``retrain ifru finetune retrain ifru finetune``
    (the setting was named only from nine bars on): which bar was which kind could not be read."""
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    from matplotlib.axes import Axes
    from graphforget.bench.report import plot
    labels, set_xticks = [], Axes.set_xticks

    def recording(self, ticks, names=None, *args, **kwargs):
        labels.append(list(names))
        return set_xticks(self, ticks, names, *args, **kwargs)
    monkeypatch.setattr(Axes, "set_xticks", recording)
    records = [{"cell": {"protocol": "deletion", "dataset": "d", "model": "mf", "method": method, "seed": 0,
                         "params": {"protocol": {"kind": kind, "ratio": 0.05}}},
                "result": {"prediction_gap": 0.5, "mia_auc": 0.5}}
               for kind in ("core", "edge") for method in ("retrain", "ifru", "finetune")]
    result = BenchResult("deletion", "d", "mf", {"kinds": ["core", "edge"], "ratios": [0.05]}, TINY.as_dict(),
                         records, aggregate(records))
    assert plot(result, tmp_path / "deletion.png").is_file()
    methods = ("retrain", "ifru", "finetune")
    assert labels[0] == [f"{method}\nkind={kind}, ratio=0.05" for kind in ("core", "edge") for method in methods]
    attack = [_record(method, 0, {"prediction_gap": 0.5}) for method in ("retrain", "ifru", "finetune")]
    single = BenchResult("attack", "d", "mf", {"attack_ratio": 0.02}, TINY.as_dict(), attack, aggregate(attack))
    labels.clear()
    plot(single, tmp_path / "attack.png")
    assert labels[0] == ["retrain", "ifru", "finetune"]  # one setting: the methods alone, as before


def test_a_stream_length_that_is_not_a_whole_number_or_under_one_is_refused():
    """``params={"length": 2.5}`` ran a stream of 2 requests under a key saying 2: a length is a count. One under 1
    is refused when the cells are planned, not at the first cell, after the data loaded."""
    variants = PROTOCOLS["stream"].variants
    base = {"order": "random", "fractions": [1.0]}
    for length in (2.5, 2.0, "2", True):
        with pytest.raises(ValueError, match="stream length must be an integer"):
            variants({**base, "length": length})
    for length in (0, -3):
        with pytest.raises(ValueError, match="stream length must be >= 1"):
            variants({**base, "length": length})
    assert variants({**base, "length": 3})[0]["length"] == 3


@pytest.mark.parametrize("seeds", [[1.5], [True], ["1"], [-1], [0, 2 ** 32], True, 2.0, "3", torch.tensor(2),
                                   np.array(2)])
def test_seeds_that_are_not_integers_are_refused_before_training(seeds):
    """``seeds=[1.5]`` (or ``[True]``, ``["1"]``) ran seed 1 under a key saying 1: int() cast it without a word.
    The error shows the value's repr: ``"3"`` read as a valid 3."""
    with pytest.raises(ValueError, match=re.escape(f"seeds must be a count in [1, {MAX_SEED_COUNT}] or distinct seeds "
                                                   f"(integers in [0, 2**32)), got {seeds!r}")):
        plan_cells("deletion", DataSource("synthetic", negatives=1), TINY, ["ifru"], seeds,
                   PROTOCOLS["deletion"].defaults(True), {})
    assert [cell.seed for cell in plan_cells("deletion", DataSource("synthetic", negatives=1), TINY, [], [2, 0],
                                             {"kinds": ["edge"], "ratios": [0.05]}, {})] == [2, 0]


def test_run_bench_refuses_a_method_twice_and_hparams_it_would_ignore_before_training(monkeypatch, capsys, tmp_path):
    """``methods=["finetune", "finetune"]`` ran it once without a word; ``model="lightgcn"`` beside MF hparams ran
    MF; ``train.seed=7`` and ``train.progress=True`` changed every cell's key and record and nothing else (the run
    sets both per cell); a dict for hparams failed with an AttributeError."""
    monkeypatch.setattr("graphforget.bench.setting.train", lambda *a, **k: pytest.fail("trained before the checks"))
    cases = [({"methods": ["finetune", "retrain", "finetune"]}, "methods listed twice: finetune"),
             ({"model": "lightgcn"}, "model 'lightgcn' and hparams.model 'mf' differ: give one of them"),
             ({"hparams": TINY.replace({"train.seed": 7})}, "hparams.train.seed must be left at 0: the bench sets it"),
             ({"hparams": TINY.replace({"train.progress": True})}, "hparams.train.progress must be left at False"),
             ({"hparams": TINY.as_dict()}, "hparams must be a Hyperparameters (graphforget.presets), got dict")]
    cases.append(({"model": "", "hparams": None}, "Hyperparameters.model: unknown model ''"))  # it had run MF
    for change, message in cases:
        arguments = {"methods": ["finetune"], "seeds": 1, "hparams": TINY, **change}
        with pytest.raises(ValueError, match=re.escape(message)):
            run_bench("deletion", "synthetic", quick=True, **arguments)
    code = cli.main(["bench", "--protocol", "deletion", "--quick", "--dataset", "synthetic", "--methods", "finetune",
                     "finetune", "--out", str(tmp_path / "o")])
    assert code == 2 and "methods listed twice: finetune" in capsys.readouterr().err


def test_progress_shows_a_bar_over_each_training_of_a_cell(capsys, monkeypatch):
    """The bar over the cells sat at 0 while the first cell trained the Original and the Retrain (on ML-1M, hours):
    every training of the run (the Original, then each kind's Retrain and FineTune) shows its own bar."""
    real, shown = sys.modules["graphforget.train"].train, []

    def recording(model, graph, objective, config, *args, **kwargs):
        shown.append(config.progress)
        return real(model, graph, objective, config, *args, **kwargs)
    for module in ("graphforget.bench.setting", "graphforget.unlearn.retrain", "graphforget.unlearn.finetune"):
        monkeypatch.setattr(f"{module}.train", recording)
    run_bench("deletion", "synthetic", methods=["finetune"], seeds=1, quick=True, hparams=TINY, progress=True)
    assert shown == [True] * (1 + 2 * len(PROTOCOLS["deletion"].defaults(True)["kinds"]))
    assert "deletion:" in capsys.readouterr().err


def test_a_stream_longer_than_its_users_stops_the_run(tmp_path):
    """A stream of more requests than users with edges, or a deletion ratio that takes every edge, gave every cell
    {"error": ...}, and the run exited 0 with an empty table: a protocol's parameter the data cannot serve is no
    method's refusal."""
    with pytest.raises(ProtocolError, match=re.escape("stream length must be in [1, 599]")):
        run_bench("stream", "synthetic", methods=["finetune"], seeds=1, params={"length": 100_000}, hparams=TINY,
                  out=tmp_path / "o")
    assert not (tmp_path / "o" / "results.json").exists()
    for kind in ("core", "interactions"):
        with pytest.raises(ProtocolError, match=f"deletion ratio 0.99999 of kind '{kind}' takes every observed"):
            run_bench("deletion", "synthetic", methods=["finetune"], seeds=1, hparams=TINY,
                      params={"kinds": [kind], "ratios": [0.99999]})


def test_ranks_given_other_inputs_stop_the_run_and_are_no_cells_failure(tmp_path, monkeypatch):
    """A method's "the ranks were given different graph" was cached as the cell's failure, which a corrected launch
    read back (a QA probe); a method's own ValueError is the cell's."""
    from graphforget.distributed import RanksDisagree

    def disagreeing(setting, method, *args):
        if method != "retrain":
            raise RanksDisagree("SISA.fit: the ranks were given different graph")
        return real(setting, method, *args)
    real = PROTOCOLS["deletion"].run
    monkeypatch.setitem(PROTOCOLS, "deletion", dataclasses.replace(PROTOCOLS["deletion"], run=disagreeing))
    params = {"kinds": ["edge"], "ratios": [0.05]}
    with pytest.raises(RanksDisagree, match="the ranks were given different graph"):
        run_bench("deletion", "synthetic", methods=["finetune"], seeds=1, params=params, hparams=TINY, out=tmp_path)
    cells = [path.read_text() for path in (tmp_path / "cells").rglob("*.json")]
    assert len(cells) == 1 and "error" not in cells[0]  # Retrain's, computed before
    monkeypatch.setitem(PROTOCOLS, "deletion", dataclasses.replace(PROTOCOLS["deletion"], run=real))
    result = run_bench("deletion", "synthetic", methods=["finetune"], seeds=1, params=params, hparams=TINY,
                       out=tmp_path)
    assert [record["cached"] for record in result.cells] == [True, False]
    assert not any("error" in record["result"] for record in result.cells)


@pytest.mark.parametrize("count", [0, MAX_SEED_COUNT + 1, 2 ** 32, 10 ** 20])
def test_a_seed_count_beyond_the_bound_is_refused_before_any_list_is_built(count, capsys, tmp_path):
    """A count of 2**32 was built as a list (tens of GB) before any check; 10**20 failed with an OverflowError. The
    bound itself is a count the message accepts."""
    assert _seed_list(MAX_SEED_COUNT) == list(range(MAX_SEED_COUNT)) and _seed_list(1) == [0]
    with pytest.raises(ValueError, match=re.escape(f"seeds must be a count in [1, {MAX_SEED_COUNT}] or distinct "
                                                   f"seeds (integers in [0, 2**32)), got {count}")):
        plan_cells("deletion", DataSource("synthetic", negatives=1), TINY, ["ifru"], count,
                   PROTOCOLS["deletion"].defaults(True), {})
    code = cli.main(["bench", "--protocol", "deletion", "--seeds", str(count), "--out", str(tmp_path / "o")])
    assert code == 2 and f"--seeds must be in [1, {MAX_SEED_COUNT}], got {count}" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_cli_bench_refuses_a_run_directory_as_its_out(tmp_path, capsys):
    """``bench --out RUN`` wrote results.json, results.md and cells/ into a fit/forget run, which is never modified
    (``--out`` was checked for a run above it only)."""
    # a train output (model.pt beside metrics.json) too: a folder inside it was refused, and it taken (a QA probe)
    for name, files in (("run", ["run.json"]), ("train", ["metrics.json", "model.pt"])):
        run = tmp_path / name
        run.mkdir()
        for file in files:
            (run / file).write_text("{}")
        argv = ["bench", "--protocol", "deletion", "--dataset", "synthetic", "--methods", "retrain", "--seeds", "1",
                "--quick", "--param", "kinds=edge", "--epochs", "1", "--out", str(run), "--quiet"]
        assert cli.main(argv) == 2
        assert "is a run directory" in capsys.readouterr().err and sorted(p.name for p in run.iterdir()) == files


def test_cli_bench_names_an_unknown_method_of_an_option():
    """``--option ifu:damping=1`` was refused as ill-formed ("--option takes METHOD:KEY=VALUE"): the form was right,
    the method's name was wrong, and the message did not say so."""
    argv = ["bench", "--protocol", "deletion", "--option", "ifu:damping=1", "--out", "o"]
    with pytest.raises(cli.UsageError, match="unknown method 'ifu'"):
        cli.cmd_bench(cli.build_parser().parse_args(argv))


def test_a_folder_of_another_known_dataset_is_refused(tmp_path, monkeypatch):
    """A root holding train.txt is taken as the dataset's own folder: ML-1M's was read and labelled gowalla."""
    from graphforget.data import loaders
    (tmp_path / "train.txt").write_text("0 1 2\n1 0\n")
    (tmp_path / "test.txt").write_text("0 0\n")
    md5 = hashlib.md5((tmp_path / "train.txt").read_bytes()).hexdigest()
    monkeypatch.setattr(loaders, "DATASETS", {"ml-1m": {"ml-1m/train.txt": (None, md5)}})
    with pytest.raises(ValueError, match=re.escape(f"{tmp_path / 'train.txt'} is ml-1m's, not gowalla's: give "
                                                   "gowalla's folder")):
        DataSource("gowalla", root=str(tmp_path)).identity()
    assert DataSource("ml-1m", root=str(tmp_path)).identity()["files"]  # its own folder is read


def test_a_named_dataset_without_its_test_file_is_refused(tmp_path):
    """Gowalla's folder without test.txt was split 8:1:1 at random, silently, where the name stands for the LightGCN
    paper's split (load_dataset refused it; a QA probe)."""
    (tmp_path / "gowalla").mkdir()
    (tmp_path / "gowalla" / "train.txt").write_text("0 1 2\n1 0\n")
    with pytest.raises(FileNotFoundError, match=re.escape(f"gowalla not found: {tmp_path / 'gowalla' / 'test.txt'} "
                                                          "is missing")):
        DataSource("gowalla", root=str(tmp_path)).identity()


def test_a_file_source_of_a_data_root_is_keyed_by_the_file_its_loader_finds_below_it(tmp_path):
    """``--data ROOT --format movielens`` reads ROOT/ml-100k/u.data and ``--format triples`` ROOT/bookcrossing/
    ratings_final.txt (the loaders look there when the folder holds no file of its own), but the key held the
    folder's u.data or *.txt only, none here: an edit of the file read reused the stale cells."""
    (tmp_path / "ml-100k").mkdir()
    (tmp_path / "bookcrossing").mkdir()
    files = {"movielens": (tmp_path / "ml-100k" / "u.data", "1\t1\t5\t0\n2\t1\t3\t0\n", "3\t2\t4\t0\n"),
             "triples": (tmp_path / "bookcrossing" / "ratings_final.txt", "1\t1\t1\n2\t1\t0\n", "3\t2\t1\n")}
    for format, (file, text, more) in files.items():
        file.write_text(text)
        source = DataSource("file", path=str(tmp_path), format=format, threshold=4 if format == "movielens" else None)
        before = source.identity()
        assert before["files"] == {file.name: sha256_file(file)}
        file.write_text(text + more)
        assert source.identity()["files"] == {file.name: sha256_file(file)} != before["files"]


class _StubData:
    source, train = "ml-100k", None


class _StubSource:
    """DataSource's place: ML-100K's load is left out."""

    def __init__(self, name):
        pass

    def for_loss(self, loss):
        return self

    def prepare(self, seed):
        return _StubData()


def test_distributed_benchmark_only_refuses_rows_of_another_epoch_count(tmp_path, monkeypatch, capsys):
    """BD1. ``--only training --epochs 1`` into a file of 20-epoch rows filed a 1-epoch row under the header's 20:
    refused (exit 2, argparse's usage error) before anything is measured, the file left as it was. With the file's
    epochs the row is measured and the others are kept."""
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "distributed.py"
    spec = importlib.util.spec_from_file_location("gf_bench_distributed", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "RESULTS", tmp_path)
    monkeypatch.setattr(module, "DataSource", _StubSource)
    stored = {"dataset": "ml-100k", "epochs": 20, "cpus": 2, "machine": "x",
              "rows": {"ifru_lightgcn": {"speedup": 1.5}}}
    path = tmp_path / "distributed.json"
    path.write_text(json.dumps(stored))
    monkeypatch.setattr(module, "training_rows", lambda data, epochs: pytest.fail("measured at another epoch count"))
    monkeypatch.setattr(sys, "argv", ["distributed.py", "--only", "training", "--epochs", "1"])
    with pytest.raises(SystemExit) as exit:
        module.main()
    assert exit.value.code == 2
    assert ("--epochs 1: distributed.json's rows were measured at 20; pass --epochs 20, or measure every row "
            "(no --only)") in capsys.readouterr().err
    assert json.loads(path.read_text()) == stored
    monkeypatch.setattr(module, "training_rows", lambda data, epochs: {"train_mf": {"epochs": epochs}})
    monkeypatch.setattr(sys, "argv", ["distributed.py", "--only", "training", "--epochs", "20"])
    module.main()
    written = json.loads(path.read_text())
    assert written["epochs"] == 20
    assert written["rows"] == {"ifru_lightgcn": {"speedup": 1.5}, "train_mf": {"epochs": 20}}


CONFIG_FILE = SHRINK_CONFIG
METHOD_FILE = "from gf_apart_config import ShrinkConfig\n" + SHRINK_METHOD.format(name="test-apart")


def test_a_method_whose_config_lies_in_another_file_is_keyed_by_both_files(tmp_path, monkeypatch):
    """method_code_digest covers the files of the method's class and of its Config, each once, in that
    order: an edited default in a Config module of its own computes new cells. Reference: SHA-256 of the two
    files' bytes, concatenated."""
    (tmp_path / "gf_apart_config.py").write_text(CONFIG_FILE)
    (tmp_path / "gf_apart_method.py").write_text(METHOD_FILE)
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("gf_apart_config", "gf_apart_method"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    try:
        importlib.import_module("gf_apart_method")
        cell = Cell("attack", "synthetic", "mf", "test-apart", 0)
        expected = hashlib.sha256((tmp_path / "gf_apart_method.py").read_bytes()
                                  + (tmp_path / "gf_apart_config.py").read_bytes()).hexdigest()[:16]
        assert cell.identity()["method_code"] == expected
        key = cell.key
        (tmp_path / "gf_apart_config.py").write_text(CONFIG_FILE.replace("0.9", "0.2"))  # the Config's file alone
        assert cell.key != key
    finally:
        METHODS.pop("test-apart", None)
        for name in ("gf_apart_config", "gf_apart_method"):
            sys.modules.pop(name, None)

# ------------------------------------------------ the figures against their definitions (qa107's mutations)
# Each test failed under a one-line mutation that the suite had passed (qa107, mutation testing of the harness).
def test_a_seed_option_at_the_configs_default_stays_in_the_key():
    """sisa:seed=0 runs SISA from seed 0 in every cell; the seed-1 cell must not share the key of the plain
    seed-1 cell (which runs from seed 1)."""
    params = PROTOCOLS["deletion"].defaults(True)
    src = DataSource("synthetic", negatives=1)
    given = plan_cells("deletion", src, TINY, ["sisa"], 2, params, {"sisa": {"seed": 0}})
    plain = plan_cells("deletion", src, TINY, ["sisa"], 2, params, {})
    key = lambda cells: {(c.seed, c.params["protocol"]["kind"]): c.key for c in cells if c.method == "sisa"}
    assert all(c.params["options"] == {"seed": 0} for c in given if c.method == "sisa")
    assert key(given)[(1, "random")] != key(plain)[(1, "random")]


@pytest.fixture(scope="module")
def deletion_rows():
    setting = Setting(DataSource("synthetic", negatives=1), TINY, seed=0)
    variant = {"kind": "random", "ratio": 0.1}
    return {m: PROTOCOLS["deletion"].run(setting, m, {}, variant, False) for m in ("retrain", "finetune")}


def _same_figure(a, b):
    return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))


def test_a_methods_retrain_figures_are_the_retrain_cells_own(deletion_rows):
    """mia_auc_retrain, below_match_retrain, over_forgetting_p_retrain of any method are the matching
    Retrain's figures, i.e. the Retrain cell's own mia_auc, below_match, over_forgetting_p."""
    retrain, finetune = deletion_rows["retrain"], deletion_rows["finetune"]
    assert finetune["mia_auc"] != retrain["mia_auc"]  # else the check below says nothing
    for name in ("mia_auc", "below_match", "over_forgetting_votes", "over_forgetting_p"):
        assert _same_figure(finetune[f"{name}_retrain"], retrain[name]), name


def test_a_cell_without_a_sign_test_vote_has_no_over_forgetting_p(monkeypatch):
    """A request of users whose interactions all go, their sampled negatives kept, gives the sign test no vote
    (ML-1M's core, edge and random users; a QA probe): its p-value is NaN, left out of the aggregates, where the
    test of no vote had been stored as p = 1 and aggregated as 1.0 +- 0, beside an attack AUC that said the request
    was over-forgotten. With votes, it is the report's. The votes are those of verify_forgetting's report, here set
    to 0 for the method's and kept for Retrain's."""
    import graphforget.bench.protocols as protocols
    verify = protocols.verify_forgetting

    def without_votes(*args, **kwargs):
        report = verify(*args, **kwargs)
        return dataclasses.replace(report, votes=0)
    monkeypatch.setattr(protocols, "verify_forgetting", without_votes)
    setting = Setting(DataSource("synthetic", negatives=1), TINY, seed=0)
    row = PROTOCOLS["deletion"].run(setting, "finetune", {}, {"kind": "random", "ratio": 0.1}, False)
    assert row["over_forgetting_votes"] == 0 and math.isnan(row["over_forgetting_p"])
    assert row["over_forgetting_votes_retrain"] > 0 and 0 < row["over_forgetting_p_retrain"] <= 1


def test_mi_ng_is_not_mi_bf(deletion_rows):
    """MI-NG (non-members over removed edges, after) and MI-BF (removed edges before over after) differ."""
    for row in deletion_rows.values():
        assert row["mi_ng"] != row["mi_bf"]


def test_a_one_batch_cell_of_a_fitted_method_reports_its_fit_seconds():
    """SISA's cell of the deletion protocol carries the fit's seconds (the table's fit_seconds column)."""
    setting = Setting(DataSource("synthetic", negatives=1), TINY, seed=0)
    row = PROTOCOLS["deletion"].run(setting, "sisa", {"num_shards": 2}, {"kind": "random", "ratio": 0.1}, False)
    fitted = setting.unlearner("sisa", {"num_shards": 2})
    assert row["fit_seconds"] is not None and row["fit_seconds"] == fitted.fit_seconds > 0


def test_an_attack_cells_original_figures_are_the_originals():
    """original_auc_* are the Original's AUCs (the model trained on the flipped labels), not Retrain's."""
    from graphforget.metrics import evaluate_auc
    setting = Setting(DataSource("synthetic", negatives=1), TINY, seed=0, attack={"kind": "flip", "ratio": 0.02})
    row = PROTOCOLS["attack"].run(setting, "retrain", {}, {"attack_ratio": 0.02}, False)
    base = evaluate_auc(setting.original, setting.train_graph, setting.test, setting.request)
    assert row["original_auc_0"] == base["auc_0"] and row["original_auc_1"] == base["auc_1"]
    assert row["completeness_auc_0"] == pytest.approx(1.0)


def test_every_stream_column_of_the_table_is_a_figure_the_stream_summary_writes():
    """Each figure@NN% the stream table shows (report.COLUMNS) is written for each checkpoint."""
    from graphforget.bench.protocols import _stream_summary
    from graphforget.bench.report import COLUMNS
    shown = {name.rpartition("@")[0] for name in COLUMNS["stream"] if name.endswith("%")}
    point = {name: 0.5 for name in shown} | {"fraction": 1.0, "requests": 2, "removed_edges": 3}
    row = _stream_summary([point], [1.0, 2.0], None, [None, None])
    assert {f"{name}@100%" for name in shown} <= set(row)


def test_a_count_that_two_fractions_fall_on_is_named_by_the_largest():
    """The docstring and the legend: the largest share that falls on a count names it."""
    from graphforget.bench.protocols import _checkpoint_fractions
    assert _checkpoint_fractions(10, [0.25, 0.3, 1.0]) == {3: 0.3, 10: 1.0}


def test_a_streams_seconds_per_request_at_a_checkpoint_are_over_the_requests_before_it():
    """seconds_per_request@50% averages the requests run up to that checkpoint."""
    setting = Setting(DataSource("synthetic", negatives=1), TINY, seed=0)
    result = PROTOCOLS["stream"].run(setting, "finetune", {}, {"length": 4, "order": "random",
                                                             "fractions": [0.5, 1.0]}, False)
    seconds = result["request_seconds"]
    assert result["seconds_per_request@50%"] == pytest.approx(sum(seconds[:2]) / 2)
    assert result["cumulative_seconds@50%"] == pytest.approx(sum(seconds[:2]))


def test_protocol_ratios_at_the_bounds_are_refused_when_planned():
    """An adversarial fraction of 0 and an attack ratio of 1 are refused by the protocol's variants."""
    with pytest.raises(ValueError, match=r"adversarial fraction must be in \(0, 1\]"):
        PROTOCOLS["adversarial"].variants({"fraction": 0.0})
    with pytest.raises(ValueError, match=r"attack ratio must be in \(0, 1\)"):
        PROTOCOLS["attack"].variants({"attack_ratio": 1.0})


def test_run_attack_gap_noise_floor_is_over_the_test_pairs(monkeypatch):
    """The attack protocol's gap has the harness's floor, 4 float32 steps times sqrt(test pairs)."""
    from graphforget.protocols.attack import run_attack
    data = prepare_attack_data("synthetic", attack_ratio=0.02, seed=0)
    floor = 4 * torch.finfo(torch.float32).eps * math.sqrt(data.split.test[EDGE].edge_index.size(1))
    distances = iter([0.9 * floor, 0.0, 1e-6])
    monkeypatch.setattr("graphforget.protocols.attack.prediction_distance", lambda *args: next(distances))
    report = run_attack(data, Hyperparameters(embedding_dim=4, train={"epochs": 1}), methods=["finetune"])
    assert all(math.isnan(row.prediction_gap) for row in report.methods.values())


def test_run_attack_rows_hold_the_closed_form_completeness_and_a_fitted_methods_three_aucs_before():
    """completeness = (method - Original) / (Retrain - Original) per AUC, by hand from the rows' scores (Original and
    Retrain swapped had gone unseen); a method with a fit step reports AUC_0/1/2 of its fitted model (qa154)."""
    from graphforget.protocols.attack import run_attack
    data = prepare_attack_data("synthetic", attack_ratio=0.05, seed=0)
    report = run_attack(data, Hyperparameters(embedding_dim=8, train={"epochs": 5}), methods=["finetune", "sisa"],
                        options={"sisa": {"num_shards": 2}})
    keys, base, retrain = ("auc_0", "auc_1", "auc_2"), report.original, report.methods["retrain"].scores
    assert all(abs(retrain[key] - base[key]) > 1e-3 for key in keys)  # the precondition: no 0/0
    for row in report.methods.values():
        assert row.completeness == pytest.approx({key: (row.scores[key] - base[key]) / (retrain[key] - base[key])
                                                  for key in keys})
    assert sorted(report.methods["sisa"].before) == ["auc_0", "auc_1", "auc_2"]


def test_the_attack_is_seeded_by_the_seed():
    """Prepare_attack_data flips attack_flip(split.train, ratio, seed)'s edges."""
    from graphforget.data import attack_flip
    data = prepare_attack_data("synthetic", attack_ratio=0.05, seed=3)
    assert torch.equal(data.request, attack_flip(data.split.train, 0.05, seed=3)[1])
    sizes = [part[EDGE].edge_index.size(1) for part in (data.split.train, data.split.val, data.split.test)]
    assert [round(10 * size / sum(sizes)) for size in sizes] == [6, 2, 2]  # the paper's split (8:1:1 went unseen)


def test_fmt_writes_one_decimal_from_100_on():
    """The docstring: 3 decimals, 1 from 100 on, by magnitude: a completeness of -150 too."""
    from graphforget.bench.report import _fmt
    assert _fmt({"mean": 100.0, "half_width": 2.0, "n": 3}) == "100.0 ± 2.0"
    assert _fmt({"mean": 99.9, "half_width": None, "n": 1}) == "99.900"
    assert _fmt({"mean": -150.0, "half_width": 2.25, "n": 3}) == "-150.0 ± 2.2"
    assert (_fmt({"mean": -100.0, "half_width": None, "n": 3}), _fmt({"mean": -99.5, "n": 3})) == ("-100.0", "-99.500")


def test_the_trust_line_counts_the_cells_that_passed():
    """'ifru 1 of 2' where one of two tested cells failed its acceptance test."""
    from types import SimpleNamespace
    from graphforget.bench.report import _trust
    group = {"method": "ifru", "variant": {"attack_ratio": 0.02}, "tested": 2, "untrusted": 1}
    assert "ifru 1 of 2 cells." in _trust(SimpleNamespace(aggregates=[group]))


def test_a_single_seed_report_says_it_has_no_interval():
    """One seed: the table's figures are bare means."""
    from types import SimpleNamespace
    from graphforget.bench.report import _intro
    result = SimpleNamespace(aggregates=[{"seeds": [0]}], params={}, cells=[])
    assert "one seed: no interval" in _intro(result)
    result.aggregates = [{"seeds": [0, 1]}]
    assert "95% Student-t interval" in _intro(result)


def test_a_report_says_when_and_with_which_code_its_cells_were_measured(tmp_path):
    """qa150: the README's membership-attack figures had been measured before the attack changed, and nothing in the
    tables said when or with which code. A computed cell records its UTC day; the report names the days and the
    code digests of its cells (a cell read from the cache keeps its day)."""
    from datetime import datetime, timezone
    from types import SimpleNamespace
    from graphforget.bench.cache import code_digest
    from graphforget.bench.report import _intro
    today = datetime.now(timezone.utc).date().isoformat()
    result = run_bench("attack", "synthetic", methods=["retrain"], seeds=1, out=tmp_path, hparams=TINY)
    if datetime.now(timezone.utc).date().isoformat() != today:  # the run crossed midnight (UTC): its day is either
        pytest.skip("the run crossed midnight")
    assert [record["result"]["measured_on"] for record in result.cells] == [today]
    assert f"Measured on {today} with the library code `{code_digest()}`." in (tmp_path / "results.md").read_text()
    again = run_bench("attack", "synthetic", methods=["retrain"], seeds=1, out=tmp_path, hparams=TINY)
    assert again.cells[0]["cached"] and again.cells[0]["result"]["measured_on"] == today
    cells = [{"cell": {"code": code, "params": {}}, "result": {"measured_on": day} if day else {}}
             for code, day in (("b", "2026-12-08"), ("a", "2026-12-07"), ("a", None))]
    mixed = SimpleNamespace(aggregates=[{"seeds": [0]}], params={}, cells=cells)
    assert _intro(mixed).endswith(" Measured from 2026-12-07 to 2026-12-08 with the library code `a`, `b`.")
    older = SimpleNamespace(aggregates=[{"seeds": [0]}], params={}, cells=cells[2:])  # cells from before the days
    assert _intro(older).endswith(" Measured with the library code `a`.")


def test_the_code_digest_does_not_depend_on_the_order_files_are_listed(tmp_path, monkeypatch):
    """Two copies of the same code agree, whatever order the filesystem lists their files in."""
    from pathlib import Path
    from graphforget.bench import cache
    for name, text in (("a.py", "x = 1\n"), ("b.py", "y = 2\n"), ("c.py", "z = 3\n")):
        (tmp_path / name).write_text(text)
    before = cache.code_digest.__wrapped__(tmp_path)
    listed = Path.rglob
    monkeypatch.setattr(Path, "rglob", lambda self, pattern: reversed(sorted(listed(self, pattern))))
    assert cache.code_digest.__wrapped__(tmp_path) == before


def test_ml100k_attack_data_labels_ratings_of_4_and_5_positive(data_root):
    """'rating >= 4 -> 1': about 55% of ML-100K's ratings are 4 or 5 (82% are 3 or more)."""
    data = prepare_attack_data("ml-100k", data_root, attack_ratio=0.02, seed=0)
    labels = torch.cat([part[EDGE].edge_label for part in (data.split.train, data.split.val, data.split.test)])
    assert "rating >= 4 -> 1" in data.source
    assert 0.53 < float((labels > 0).float().mean()) < 0.58


def test_users_of_equal_activity_are_taken_in_index_order():
    """Ties in activity (common: many users share a degree) are broken by user index, the same on every
    platform and torch build; an unstable sort picked another set of 'core' users."""
    degrees = [3, 1, 3, 2, 1, 3, 2, 2, 1, 3] * 50
    pairs = [(u, i) for u, d in enumerate(degrees) for i in range(d)]
    graph = make_interactions(torch.tensor(pairs).t(), torch.ones(len(pairs)), num_users=len(degrees), num_items=3)
    users = [int(r[0, 0]) for r in stream_requests(graph, 40, "most")]
    assert users == [u for u, d in enumerate(degrees) if d == 3][:40]


# ------------------------------------------------ a second round of the harness's mutations (qa114)

def test_parse_params_refuses_an_empty_value_of_a_single_valued_parameter():
    """Under a mutation (harness.parse_params: ``len(values) != 1`` -> ``> 1``): ``--param length=`` gave an
    IndexError."""
    for text in ("", ",", " "):
        with pytest.raises(ValueError, match=re.escape(f"stream parameter length: expected one int, got {text!r}")):
            parse_params("stream", {"length": text})


def test_aggregate_keeps_a_figure_the_first_seed_did_not_measure():
    """Under a mutation (harness.aggregate: the figures' names taken from the first cell only): a method whose seed
    0 failed lost every figure of its other seeds. By hand: seeds 1 and 2 measured 0.6 and 0.8: mean 0.7 over n = 2."""
    records = [_record("ifru", 0, {"error": "ValueError: refused"}), _record("ifru", 1, {"auc_0": 0.6}),
               _record("ifru", 2, {"auc_0": 0.8, "mia_auc": 0.5})]
    (group,) = aggregate(records)
    assert group["metrics"]["auc_0"]["mean"] == pytest.approx(0.7) and group["metrics"]["auc_0"]["n"] == 2
    assert group["metrics"]["mia_auc"] == {"mean": 0.5, "low": None, "high": None, "half_width": None, "n": 1}
    assert group["errors"] == 1


def test_aggregate_groups_carry_the_fields_the_docstring_lists():
    """Under a mutation (harness.aggregate: "model" left out of a group): the docstring's Returns lists protocol,
    dataset, model, method, variant, seeds, metrics, errors, failures, tested and untrusted."""
    (group,) = aggregate([_record("ifru", seed, {"auc_0": 0.5}) for seed in range(2)])
    assert {"protocol": "attack", "dataset": "d", "model": "mf", "method": "ifru",
            "variant": {"attack_ratio": 0.02}, "seeds": [0, 1]}.items() <= group.items()
    assert {"metrics", "errors", "failures", "tested", "untrusted"} <= group.keys()


def test_the_code_digest_sees_an_edit_in_a_subpackage(tmp_path):
    """Under a mutation (cache.code_digest: ``rglob`` -> ``glob``): an edit of graphforget/bench/stats.py (or any
    file below the package's top folder) must name other cells, as the module docstring says of "an edit of a
    method"."""
    from graphforget.bench import cache
    code_digest = cache.code_digest.__wrapped__
    copy = tmp_path / "graphforget"
    shutil.copytree(Path(cache.__file__).resolve().parent.parent, copy, ignore=shutil.ignore_patterns("__pycache__"))
    before = code_digest(copy)
    for sub in ("bench/stats.py", "unlearn/__init__.py"):
        assert (copy / sub).is_file()
        (copy / sub).write_text((copy / sub).read_text() + "\n# an edit\n")
        after = code_digest(copy)
        assert after != before, sub
        before = after


def test_a_cached_result_without_its_sha256_is_recomputed(tmp_path):
    """Under a mutation (CellCache.load: the sha256 checked only when the file holds one): an edited figure with its
    ``result_sha256`` deleted was read back as it stood."""
    cache = CellCache(tmp_path)
    cell = _base_cells("attack")[0]
    cache.store(cell, {"auc_0": 0.761})
    stored = json.loads(cache.path(cell).read_text())
    stored["result"]["auc_0"] = 0.999
    del stored["result_sha256"]
    cache.path(cell).write_text(json.dumps(stored))
    assert cache.load(cell) is None


def test_an_out_whose_results_json_is_no_benchs_is_refused(tmp_path, monkeypatch):
    """Under a mutation (harness._holds_bench_results: any JSON with a "protocol" key taken as a bench's): a folder
    of one's own notes beside a results.json of something else had its results.md overwritten."""
    monkeypatch.setattr("graphforget.bench.setting.train", lambda *a, **k: pytest.fail("trained before the check"))
    notes = tmp_path / "mine"
    notes.mkdir()
    (notes / "results.json").write_text(json.dumps({"protocol": "my own experiment", "notes": []}))
    (notes / "results.md").write_text("my notes\n")
    with pytest.raises(ValueError, match="neither cells/ nor a bench's results.json: it is no bench's output"):
        run_bench("deletion", "synthetic", methods=["finetune"], seeds=1, quick=True, hparams=TINY, out=notes)
    assert (notes / "results.md").read_text() == "my notes\n"


def test_a_csv_sources_label_column_is_in_its_key(tmp_path):
    """Under a mutation (DataSource.identity: the label column left out of "columns"): one file read by two label
    columns gave two runs the same cells, the second served the first's figures."""
    path = tmp_path / "ratings.csv"
    path.write_text("user,item,a,b\n" + "".join(f"u{u},i{(u * 7 + k) % 30},{k % 2},{(k + 1) % 2}\n"
                                               for u in range(40) for k in range(8)))
    sources = [DataSource("file", path=str(path), format="csv", user_col="user", item_col="item", label_col=label)
               for label in ("a", "b")]
    assert sources[0].identity() != sources[1].identity()
    params = PROTOCOLS["deletion"].defaults(True)
    keys = {plan_cells("deletion", source.for_loss("bce"), TINY, ["ifru"], 1, params, {})[0].key for source in sources}
    assert len(keys) == 2


def test_the_legend_explains_the_noise_floor_only_where_its_row_is():
    """Under a mutation (report._legend: the retrain_seed sentence always appended): "one paragraph for every table
    had explained columns it lacked" (its docstring); a run without retrain_seed has no such row to explain."""
    from graphforget.bench.report import markdown

    def legend(methods):
        records = [_record(method, 0, {"prediction_gap": 0.5}) for method in methods]
        result = BenchResult("attack", "d", "mf", {"attack_ratio": 0.02}, TINY.as_dict(), records, aggregate(records))
        return markdown(result).rstrip().split("\n")[-1]
    assert "retrain_seed:" not in legend(["retrain", "ifru"])
    assert "retrain_seed: a Retrain from another seed" in legend(["retrain", "retrain_seed", "ifru"])


def _deletion_record(method, seed, kind, result):
    return {"cell": {"protocol": "deletion", "dataset": "d", "model": "mf", "method": method, "seed": seed,
                     "params": {"protocol": {"kind": kind, "ratio": 0.05}}}, "result": result}


def test_the_failed_cells_paragraph_names_the_setting_where_a_run_has_several():
    """Under a mutation (report._failures: ``where`` always empty): with two deletion kinds, "- ifru, seed 0: ..."
    could not say which kind's cell failed (the trust line and the plot name it)."""
    from graphforget.bench.report import markdown
    records = [_deletion_record("ifru", 0, "core", {"error": "ValueError: refused"}),
               _deletion_record("ifru", 0, "edge", {"auc_0": 0.5})]
    result = BenchResult("deletion", "d", "mf", {"kinds": ["core", "edge"], "ratios": [0.05]}, TINY.as_dict(),
                         records, aggregate(records))
    assert "- ifru (kind=core, ratio=0.05), seed 0: ValueError: refused" in markdown(result)


def _recording(monkeypatch, name):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    from matplotlib.axes import Axes
    calls, original = [], getattr(Axes, name)

    def recording(self, *args, **kwargs):
        calls.append(kwargs.get("yerr"))
        return original(self, *args, **kwargs)
    monkeypatch.setattr(Axes, name, recording)
    return calls


# two seeds of 0.2 and 0.4: s = sqrt(0.02), half-width t(0.975, 1) s / sqrt(2) = 12.7062047 * 0.1
HALF = 12.706204736174705 * math.sqrt(0.02) / math.sqrt(2)


def test_the_bar_plot_draws_the_95_percent_intervals(tmp_path, monkeypatch):
    """Under a mutation (report.plot: the bars' ``yerr`` dropped): the docstring's "bars with 95% intervals"."""
    from graphforget.bench.report import plot
    calls = _recording(monkeypatch, "bar")
    records = [_record("ifru", seed, {"prediction_gap": 0.2 * (seed + 1), "mia_auc": 0.5}) for seed in range(2)]
    result = BenchResult("attack", "d", "mf", {"attack_ratio": 0.02}, TINY.as_dict(), records, aggregate(records))
    assert plot(result, tmp_path / "attack.png").is_file()
    gap, mia = calls
    assert gap is not None and list(gap) == pytest.approx([HALF]) and list(mia) == [0]


def test_the_stream_plot_draws_the_95_percent_intervals(tmp_path, monkeypatch):
    """Under a mutation (report.plot: a stream's error bars set to 0): its points carry their intervals as the bars
    do."""
    from graphforget.bench.report import plot
    calls = _recording(monkeypatch, "errorbar")
    records = [_stream_record("ifru", seed, {"prediction_gap@50%": 0.2 * (seed + 1), "prediction_gap@100%": 0.5,
                                             "mia_auc@50%": 0.5, "mia_auc@100%": 0.5}) for seed in range(2)]
    assert plot(_stream_result(records), tmp_path / "stream.png").is_file()
    gap, mia = calls
    assert list(gap) == pytest.approx([HALF, 0.0]) and list(mia) == [0, 0]


def test_a_method_that_cannot_continue_from_its_result_gives_its_cell_an_error(monkeypatch):
    """Under a mutation (harness._compute: NotFittedError left out of the cell errors): its docstring says a method
    that "cannot continue from its result gives {"error": ...} instead of stopping the run"; the run stopped with a
    traceback."""
    from graphforget.unlearn import SCIF, NotFittedError
    monkeypatch.setattr(SCIF, "_unlearn",
                        lambda *args: (_ for _ in ()).throw(NotFittedError("SCIF.unlearn() needs fit() first")))
    result = run_bench("attack", "synthetic", "mf", ["scif"], seeds=1, hparams=TINY)
    retrain, scif = (record["result"] for record in result.cells)
    assert "error" not in retrain and scif["error"] == "NotFittedError: SCIF.unlearn() needs fit() first"


def test_the_adversarial_setting_draws_its_attacked_users_from_its_seed():
    """Under a mutation (Setting: adversarial_edges called with seed 0): below a fraction of 1 the attacked users
    are "a seeded random subset" (adversarial_edges); the Setting's docstring: the seed seeds the attack. By
    definition, the edges are adversarial_edges(clean model, clean graph, fraction, seed)."""
    from graphforget.bench import Setting
    from graphforget.data import adversarial_edges
    setting = Setting(DataSource("synthetic", negatives=1), TINY, seed=1,
                      attack={"kind": "adversarial", "fraction": 0.5})
    model, graph = setting.clean
    own = adversarial_edges(model, graph, 0.5, 1, held_out=setting.held_out)[1]
    other = adversarial_edges(model, graph, 0.5, 0, held_out=setting.held_out)[1]
    assert not (own.shape == other.shape and bool((own == other).all()))  # else the check below says nothing
    assert own.shape == setting.request.shape and bool((own == setting.request).all())


def test_the_refusal_of_a_foreign_out_lists_its_files_with_dots_only_when_more_are_held(tmp_path):
    """Under a mutation (harness._check_bench_out: ``len(held) > 3`` -> ``>= 3``): a folder of exactly three files
    was said to hold "a, b, c, ..." (more than it holds). Three are named; "..." stands for a fourth and more."""
    from graphforget.bench.harness import _check_bench_out
    for names, shown in ((["a", "b", "c"], "a, b, c"), (["a", "b", "c", "d"], "a, b, c, ...")):
        out = tmp_path / str(len(names))
        out.mkdir()
        for name in names:
            (out / name).write_text("mine\n")
        with pytest.raises(ValueError, match=re.escape(f"out {out} holds {shown} and neither cells/")):
            _check_bench_out(out)
