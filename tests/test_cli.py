"""The command line, the presets and the attack protocol: outputs checked against direct library calls and hand formulas."""
from __future__ import annotations

import inspect
import io
import json
import math
import os
import shutil
import signal
import re
import subprocess
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from graphforget import cli
from graphforget.cli import UsageError, _noise_note, main, parse_options
from graphforget.data import EDGE, make_interactions, num_items, num_users, remove_edges
from graphforget.io import to_jsonable
from graphforget.metrics import evaluate_auc
from graphforget.models import load_model, save_model
from graphforget.presets import Hyperparameters, default_hparams
from graphforget.protocols.attack import AttackData, prepare_attack_data, run_attack
from graphforget.train import train
from graphforget.unlearn import (IFRU, METHODS, IFRUConfig, Retrain, RetrainConfig, SolverConfig, UntrustedWarning,
                                 build_unlearner, method_config, register)

TINY = ["--epochs", "3", "--embedding-dim", "8"]
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _restore_threads():
    """Give the test process its thread count back (``main`` does; a test may set one itself)."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(arg) for arg in argv])  # paths as a shell passes them
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A tiny synthetic run written by ``graphforget train`` (module-scoped: several tests read it)."""
    out = tmp_path_factory.mktemp("run")
    code = main(["--threads", "1", "train", "--dataset", "synthetic", "--seed", "3", "--quiet", "--out", str(out), *TINY])
    assert code == 0
    return out


# --- train / evaluate / unlearn ---------------------------------------------------------------------

def test_train_writes_checkpoint_and_metrics_matching_a_direct_computation(trained_run):
    metrics = json.loads((trained_run / "metrics.json").read_text())
    assert {"auc_0", "auc_1", "auc_2", "train_seconds"} <= set(metrics)
    assert metrics["train_seconds"] > 0 and metrics["epochs"] == 3

    model, checkpoint = load_model(trained_run / "model.pt")
    run = checkpoint["run"]
    assert (run["dataset"], run["seed"], run["attack_ratio"], run["root"]) == ("synthetic", 3, 0.02, None)
    assert run["objective"] == {"name": "BCEObjective", "l2": 5.0}
    assert run["train_config"]["epochs"] == 3 and run["hparams"]["embedding_dim"] == 8
    # The reloaded model on the rebuilt data gives exactly the AUCs the run reported.
    data = prepare_attack_data("synthetic", None, 0.02, 3)
    assert data.request.size(1) == metrics["request_edges"] == round(0.02 * metrics["train_edges"])
    expected = evaluate_auc(model, data.train, data.split.test, data.request)
    for key in ("auc_0", "auc_1", "auc_2"):
        assert metrics[key] == pytest.approx(expected[key], abs=1e-12)

    # Training is deterministic: the same command trains the same parameters.
    torch.set_num_threads(1)
    hparams = Hyperparameters(**run["hparams"])
    fresh = hparams.build_model(model.num_users, model.num_items, seed=3)
    train(fresh, data.train, hparams.objective(), hparams.train_config(seed=3), data.split.val)
    assert torch.equal(fresh.user_emb.weight, model.user_emb.weight)


def test_bpr_negatives_follow_the_runs_seed_in_train_and_unlearn(capsys, tmp_path, monkeypatch):
    out = tmp_path / "run"
    assert main(["--threads", "1", "train", "--dataset", "synthetic", "--model", "sgl", "--seed", "5", "--quiet",
                 "--out", str(out), *TINY]) == 0
    model, checkpoint = load_model(out / "model.pt")
    assert checkpoint["run"]["objective"]["seed"] == 5  # seed 0's negatives whatever the run's seed, before
    seeds, build = [], cli.build_unlearner

    def recording(method, model, graph, objective, *args, **kwargs):
        seeds.append(objective.seed)
        return build(method, model, graph, objective, *args, **kwargs)
    monkeypatch.setattr(cli, "build_unlearner", recording)
    unlearn = ["unlearn", "--run", str(out), "--method", "finetune", "--quiet"]
    assert run_cli(capsys, *unlearn, "--out", str(tmp_path / "u"))[0] == 0
    # a run trained before recorded seed 0 (its negatives' seed): unlearning keeps the objective it trained with
    checkpoint["run"]["objective"]["seed"] = 0
    kept = {k: v for k, v in checkpoint.items()
            if k not in ("model", "config", "state_dict", "state_sha256", "layout_sha256", "meta_sha256")}
    save_model(model, out / "model.pt", checkpoint["model"], checkpoint["config"], **kept)
    assert run_cli(capsys, *unlearn, "--out", str(tmp_path / "old"))[0] == 0
    assert seeds == [5, 0]


def test_evaluate_prints_the_runs_metrics(trained_run, capsys, tmp_path):
    code, out, _ = run_cli(capsys, "evaluate", "--run", str(trained_run), "--out", str(tmp_path / "e.json"))
    assert code == 0
    printed = json.loads(out)
    reported = json.loads((trained_run / "metrics.json").read_text())
    for key in ("auc_0", "auc_1", "auc_2"):
        assert printed[key] == pytest.approx(reported[key], abs=1e-12)
    assert printed["method"] == "original"
    assert json.loads((tmp_path / "e.json").read_text()) == printed


def test_a_report_file_that_appears_while_the_command_runs_is_not_overwritten(trained_run, capsys, tmp_path,
                                                                              monkeypatch):
    """--out was checked before the work only, and the report then replaced a file written there meanwhile."""
    import graphforget.cli as gcli
    out = tmp_path / "e.json"
    real = gcli._evaluate_attack_run

    def meanwhile(args):
        out.write_text("the user's own")
        return real(args)
    monkeypatch.setattr(gcli, "_evaluate_attack_run", meanwhile)
    code, printed, err = run_cli(capsys, "evaluate", "--run", str(trained_run), "--out", str(out))
    assert code == 2 and f"--out {out} appeared while the command ran, and is not overwritten" in err
    assert out.read_text() == "the user's own" and json.loads(printed)["method"] == "original"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.json"]  # no temporary file left


def test_unlearn_retrain_equals_training_from_scratch_without_the_request(trained_run, capsys, tmp_path):
    code, out, _ = run_cli(capsys, "--threads", "1", "unlearn", "--run", str(trained_run), "--method", "retrain",
                           "--quiet", "--out", str(tmp_path))
    assert code == 0 and "retrain:" in out
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert {"auc_0", "auc_1", "auc_2", "unlearn_seconds", "info"} <= set(metrics)
    assert metrics["unlearn_seconds"] > 0 and metrics["info"]["epochs"] == 3

    # Reference: a fresh model (seed 3) trained on the attacked graph without the flipped edges.
    model, checkpoint = load_model(trained_run / "model.pt")
    hparams = Hyperparameters(**checkpoint["run"]["hparams"])
    data = prepare_attack_data("synthetic", None, 0.02, 3)
    remaining = remove_edges(data.train, data.request)
    fresh = hparams.build_model(model.num_users, model.num_items, seed=3)
    train(fresh, remaining, hparams.objective(), hparams.train_config(seed=3), data.split.val)
    expected = evaluate_auc(fresh, remaining, data.split.test, data.request)
    for key in ("auc_0", "auc_1", "auc_2"):
        assert metrics[key] == pytest.approx(expected[key], abs=1e-12)
    assert metrics["original"]["auc_0"] == pytest.approx(json.loads((trained_run / "metrics.json").read_text())["auc_0"])


def test_progress_bars_are_no_part_of_the_record(trained_run, capsys, tmp_path):
    """The bars are the command's display: without --quiet, metrics.json recorded train.progress true, so two runs of
    one seed had other records (a QA probe)."""
    configs = []
    for name, quiet in (("bars", []), ("quiet", ["--quiet"])):
        code, _, err = run_cli(capsys, "--threads", "1", "unlearn", "--run", str(trained_run), "--method", "finetune",
                               *quiet, "--out", str(tmp_path / name))
        assert code == 0, err
        configs.append(json.loads((tmp_path / name / "metrics.json").read_text())["config"])
    assert configs[0] == configs[1] and configs[0]["train"]["progress"] is False


def test_progress_bars_show_on_a_terminal_only(trained_run, capsys, tmp_path, monkeypatch):
    """Redirected to a log (CI, nohup), the log kept every redraw of every bar; on a terminal they show unless
    --quiet."""
    unlearn = ("--threads", "1", "unlearn", "--run", trained_run, "--method", "finetune", "--out")
    code, _, err = run_cli(capsys, *unlearn, tmp_path / "log")
    assert code == 0 and "it/s]" not in err, err
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    code, _, err = run_cli(capsys, *unlearn, tmp_path / "terminal")
    assert code == 0 and "train: " in err and "it/s]" in err, err
    code, _, err = run_cli(capsys, *unlearn, tmp_path / "quiet", "--quiet")
    assert code == 0 and "it/s]" not in err, err


def test_train_unlearn_evaluate_on_a_model_of_an_installed_package(capsys, tmp_path, plugin):
    run, out = tmp_path / "run", tmp_path / "ifru"
    code, _, err = run_cli(capsys, "--threads", "1", "train", "--dataset", "synthetic", "--model", "pyg_lightgcn",
                           "--quiet", "--out", str(run), *TINY)
    assert code == 0, err
    model, checkpoint = load_model(run / "model.pt")
    assert checkpoint["model"] == "pyg_lightgcn" and checkpoint["config"]["num_layers"] == 2
    code, _, err = run_cli(capsys, "unlearn", "--run", str(run), "--method", "ifru", "--quiet", "--out", str(out))
    assert code == 0, err
    unlearned, _ = load_model(out / "model.pt")  # the same class as the run's: written, and evaluated again
    assert type(unlearned) is type(model) and not torch.equal(unlearned.module.embedding.weight,
                                                               model.module.embedding.weight)
    code, printed, err = run_cli(capsys, "evaluate", "--run", str(out))
    metrics = json.loads((out / "metrics.json").read_text())
    assert code == 0 and json.loads(printed)["auc_0"] == pytest.approx(metrics["auc_0"], abs=1e-12), err


def test_stationary_training_is_kept_by_the_run_and_its_retrain(capsys, tmp_path):
    run = tmp_path / "run"
    code, _, _ = run_cli(capsys, "--threads", "1", "train", "--dataset", "synthetic", "--training", "stationary",
                         "--embedding-dim", "8", "--quiet", "--out", str(run))
    assert code == 0
    checkpoint = load_model(run / "model.pt")[1]["run"]
    assert checkpoint["hparams"]["train"]["optimizer"] == "lbfgs" and checkpoint["train_config"]["optimizer"] == "lbfgs"
    code, _, _ = run_cli(capsys, "--threads", "1", "unlearn", "--run", str(run), "--method", "retrain", "--quiet",
                         "--out", str(tmp_path / "retrain"))
    info = json.loads((tmp_path / "retrain" / "metrics.json").read_text())["info"]
    assert code == 0 and info["max_gradient"] <= 0.05  # Retrain trains the same way (default tol)
    code, _, err = run_cli(capsys, "train", "--dataset", "synthetic", "--training", "converged", "--out", str(run))
    assert code == 2 and "invalid choice" in err


def test_unlearn_ifru_matches_the_library_and_can_be_evaluated_again(trained_run, capsys, tmp_path):
    out_dir = tmp_path / "ifru"
    code, _, _ = run_cli(capsys, "unlearn", "--run", str(trained_run), "--method", "ifru", "--option", "solver.name=cg",
                         "--option", "solver.max_iter=50", "--out", str(out_dir))
    assert code == 0
    metrics = json.loads((out_dir / "metrics.json").read_text())
    assert metrics["options"] == {"solver.name": "cg", "solver.max_iter": 50}  # parsed by the field's type
    assert metrics["config"]["solver"]["name"] == "cg" and metrics["config"]["solver"]["max_iter"] == 50
    assert metrics["info"]["solver"][0]["iterations"] <= 50

    model, _ = load_model(trained_run / "model.pt")
    data = prepare_attack_data("synthetic", None, 0.02, 3)
    result = IFRU(model, data.train, Hyperparameters(model="mf", embedding_dim=8).objective(),
                  IFRUConfig(solver=SolverConfig(name="cg", max_iter=50))).unlearn(data.request)
    expected = evaluate_auc(result.model, result.graph, data.split.test, data.request)
    for key in ("auc_0", "auc_1", "auc_2"):
        assert metrics[key] == pytest.approx(expected[key], abs=1e-6)

    # The unlearned checkpoint evaluates on the graph without the request, reproducing the same AUCs.
    code, out, _ = run_cli(capsys, "evaluate", "--run", str(out_dir))
    printed = json.loads(out)
    assert code == 0 and printed["method"] == "ifru"
    for key in ("auc_0", "auc_1", "auc_2"):
        assert printed[key] == pytest.approx(metrics[key], abs=1e-12)


def test_pretrain_json_records_the_run_by_its_absolute_path(trained_run, capsys, tmp_path, monkeypatch):
    """pretrain.json recorded --run as typed, relative to the caller's directory, where every other record is absolute
    (a QA probe)."""
    monkeypatch.chdir(trained_run.parent)
    code, _, err = run_cli(capsys, "pretrain-encoder", "--run", trained_run.name, "--option", "pretrain_epochs=1",
                           "--out", str(tmp_path / "enc"), "--quiet")
    assert code == 0, err
    assert json.loads((tmp_path / "enc" / "pretrain.json").read_text())["run"] == str(trained_run.resolve())


def test_pretrained_encoder_is_reused_by_unlearn(trained_run, capsys, tmp_path):
    options = ["--option", "pretrain_epochs=1", "--option", "finetune_epochs=1"]
    code, out, _ = run_cli(capsys, "pretrain-encoder", "--run", str(trained_run), *options, "--out",
                           str(tmp_path / "enc"), "--quiet")
    assert code == 0 and (tmp_path / "enc" / "encoder.pt").is_file()
    assert json.loads((tmp_path / "enc" / "pretrain.json").read_text())["pretrain_seconds"] > 0
    # Unlearning with the saved encoder equals unlearning after pre-training in the same process.
    code, _, _ = run_cli(capsys, "unlearn", "--run", str(trained_run), "--method", "unlearnrec", *options,
                         "--encoder", str(tmp_path / "enc" / "encoder.pt"), "--out", str(tmp_path / "a"), "--quiet")
    assert code == 0
    code, _, err = run_cli(capsys, "unlearn", "--run", str(trained_run), "--method", "unlearnrec", *options,
                           "--encoder", str(tmp_path / "enc"), "--out", str(tmp_path / "folder"), "--quiet")
    assert code == 0, err  # the folder pretrain-encoder wrote: its encoder.pt (it was "no encoder file")
    assert json.loads((tmp_path / "folder" / "metrics.json").read_text())["auc_0"] == json.loads(
        (tmp_path / "a" / "metrics.json").read_text())["auc_0"]
    code, _, _ = run_cli(capsys, "unlearn", "--run", str(trained_run), "--method", "unlearnrec", *options,
                         "--out", str(tmp_path / "b"), "--quiet")
    assert code == 0
    with_file, in_process = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("a", "b"))
    assert "fit_seconds" not in with_file and "fit_seconds" in in_process
    # The encoder pre-trained elsewhere is named, with its pre-training's figures, where no fit_seconds tells of it.
    # Its seed too: unlearn's own seed may differ (its batches), and the record said that one alone.
    pretrained = json.loads((tmp_path / "enc" / "pretrain.json").read_text())
    assert with_file["encoder"] == {"path": str((tmp_path / "enc" / "encoder.pt").resolve()), "epochs": 1,
                                    "steps": pretrained["steps"], "seconds": pretrained["pretrain_seconds"],
                                    "seed": 3}
    assert pretrained["seed"] == 3  # the run's (trained_run's seed)
    assert "encoder" not in in_process
    for key in ("auc_0", "auc_1", "auc_2"):
        assert with_file[key] == pytest.approx(in_process[key], abs=1e-9)
    code, _, err = run_cli(capsys, "unlearn", "--run", str(trained_run), "--method", "ifru", "--encoder",
                           str(tmp_path / "enc" / "encoder.pt"), "--out", str(tmp_path / "c"))
    assert code == 2 and "--encoder is for unlearnrec" in err
    code, out, err = run_cli(capsys, "unlearn", "--run", str(trained_run), "--method", "unlearnrec", "--encoder",
                             str(tmp_path / "enc" / "encoder.pt"), "--out", str(tmp_path / "d"))
    assert code == 2 and "pre-trained with other options (pretrain_epochs=1, here 10)" in err and not out
    assert not (tmp_path / "d").exists()


def test_every_path_flag_reads_a_tilde_as_a_shell_would(trained_run, capsys, tmp_path, monkeypatch):
    """A ~ passed as written (Python's subprocess, a config file) was expanded by --out and --root alone: `evaluate
    --run "~/r"` found no model.pt, and `unlearn --encoder "~/enc"` no encoder, where train and pretrain-encoder had
    written them (a QA probe)."""
    monkeypatch.setenv("HOME", str(tmp_path))
    shutil.copytree(trained_run, tmp_path / "r")
    code, _, err = run_cli(capsys, "evaluate", "--run", "~/r", "--out", "~/e.json")
    assert code == 0 and (tmp_path / "e.json").is_file(), err
    options = ["--option", "pretrain_epochs=1", "--option", "finetune_epochs=1", "--quiet"]
    assert run_cli(capsys, "pretrain-encoder", "--run", "~/r", *options, "--out", "~/enc")[0] == 0
    code, _, err = run_cli(capsys, "unlearn", "--run", "~/r", "--method", "unlearnrec", *options, "--encoder", "~/enc",
                           "--out", "~/u")
    assert code == 0 and (tmp_path / "u" / "metrics.json").is_file(), err


def test_an_unlearned_run_is_refused_by_pretrain_encoder_and_unlearn(trained_run, capsys, tmp_path):
    """A run that `unlearn` wrote holds a model that forgot the attack's request, but its data is rebuilt with it:
    pretrain-encoder trained an encoder on the graph that still held the removed edges, and unlearn removed them a
    second time from a graph the model was no longer trained on."""
    code, _, _ = run_cli(capsys, "unlearn", "--run", str(trained_run), "--method", "finetune", "--option", "epochs=1",
                         "--out", str(tmp_path / "forgot"), "--quiet")
    assert code == 0 and (tmp_path / "forgot" / "model.pt").is_file()
    for argv in (["pretrain-encoder", "--option", "pretrain_epochs=1"], ["unlearn", "--method", "ifru"]):
        code, out, err = run_cli(capsys, *argv, "--run", str(tmp_path / "forgot"), "--out", str(tmp_path / "o"),
                                 "--quiet")
        assert code == 2 and not out and err.count("\n") == 1, (argv, err)
        assert "already unlearned the attack's request (finetune)" in err and "graphforget train" in err
        assert not (tmp_path / "o").exists()


def test_unlearn_says_whether_the_method_trusted_its_result(capsys, tmp_path, trained_run):
    code, out, _ = run_cli(capsys, "unlearn", "--run", str(trained_run), "--method", "ifru", "--quiet",
                           "--out", str(tmp_path / "ok"))
    info = json.loads((tmp_path / "ok" / "metrics.json").read_text())["info"]
    assert code == 0 and info["trusted"] is True
    assert out.splitlines()[-2].endswith(  # the run's validation pairs: the validation test ran
        f"s, validation AUC {info['original_val_auc']:.4f} -> {info['val_auc']:.4f}  (trusted)")
    # A solve that cannot converge: the result is not trusted, and the line says why.
    with warnings.catch_warnings(record=True) as caught:  # said once, on the line: it was a warning before it too
        warnings.simplefilter("always")
        code, out, _ = run_cli(capsys, "unlearn", "--run", str(trained_run), "--method", "ifru", "--quiet",
                               "--option", "solver.max_iter=1", "--option", "solver.tol=1e-12",
                               "--out", str(tmp_path / "no"))
    assert not [w for w in caught if issubclass(w.category, UntrustedWarning)]
    reason = json.loads((tmp_path / "no" / "metrics.json").read_text())["info"]["reason"]
    assert code == 0 and reason.startswith("the solve did not converge")
    assert out.splitlines()[-2].endswith(f"NOT TRUSTED: {reason}")
    code, out, _ = run_cli(capsys, "unlearn", "--run", str(trained_run), "--method", "finetune", "--quiet",
                           "--out", str(tmp_path / "ft"))
    assert code == 0 and "TRUSTED" not in out and "(trusted)" not in out  # FineTune has no acceptance test


# --- demo ------------------------------------------------------------------------------------------

def test_demo_prints_the_table_and_its_numbers_agree_with_results_json(capsys, tmp_path):
    code, out, _ = run_cli(capsys, "demo", "--dataset", "synthetic", "--methods", "retrain", "ifru", "scif",
                           "--option", "scif:solver.max_iter=80", "--quiet", "--out", str(tmp_path), *TINY)
    assert code == 0
    assert "data: synthetic planted communities" in out
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["options"]["scif"] == {"solver.max_iter": 80}  # parsed, as unlearn records it ("80": a QA probe)
    run = results["runs"][0]
    assert set(run["methods"]) == {"retrain", "ifru", "scif"}
    lines = {line.split()[1]: line.split() for line in out.splitlines() if line.startswith("mf ")}
    assert set(lines) == {"original", "retrain", "ifru", "scif"}
    header = next(line for line in out.splitlines() if line.startswith("model"))
    assert header.split()[:8] == ["model", "method", "auc_0", "auc_1", "auc_2", "completeness", "(0/1/2)", "trusted"]
    for method in ("ifru", "scif"):  # their acceptance test, as results.json records it
        assert lines[method][10] == {True: "yes", False: "NO"}[run["methods"][method]["info"]["trusted"]]
    assert lines["retrain"][10] == lines["original"][6] == "-"
    original = run["original"]
    for method, row in run["methods"].items():
        assert float(lines[method][2]) == pytest.approx(row["auc_0"], abs=5e-5)
        for key in ("auc_0", "auc_1", "auc_2"):  # completeness by its definition
            gap = run["methods"]["retrain"][key] - original[key]
            assert row["completeness"][key] == pytest.approx((row[key] - original[key]) / gap)
    assert lines["retrain"][5:8] == ["100%", "/", "100%"]
    if _has_matplotlib():
        assert (tmp_path / "demo.png").stat().st_size > 1000


def test_out_is_probed_where_its_run_is_written_and_a_mount_point_is_refused(tmp_path, monkeypatch):
    """The write probe was made inside --out, where publish writes beside it (a parent that refused it failed at the
    end, and an existing run got a folder made and removed in it), and a mount point (a container's volume) passed,
    the work done, and failed at the rename: "Device or resource busy" (a QA probe)."""
    import tempfile
    from graphforget.cli import _check_out_dir
    probed, real = [], tempfile.TemporaryFile
    monkeypatch.setattr(tempfile, "TemporaryFile", lambda **kwargs: probed.append(kwargs["dir"]) or real(**kwargs))
    (tmp_path / "empty").mkdir()
    for out in (tmp_path / "empty", tmp_path / "new" / "deeper"):
        assert _check_out_dir(str(out)) == out
    assert probed == [tmp_path, tmp_path]
    monkeypatch.setattr("os.path.ismount", lambda path: Path(path) == tmp_path / "empty")
    with pytest.raises(UsageError, match=f"--out {re.escape(str(tmp_path / 'empty'))} is a mount point: an output is "
                                         "written beside its place and renamed into it"):
        _check_out_dir(str(tmp_path / "empty"))
    # bench writes into --out: an existing one is probed itself (a mount point will do), a new one where it is made
    probed.clear()
    for out in (tmp_path / "empty", tmp_path / "new" / "deeper"):
        assert _check_out_dir(str(out), into=True) == out
    assert probed == [tmp_path / "empty", tmp_path]


def test_the_demo_plot_draws_a_bar_below_its_zoom_no_taller_than_the_bars_in_it():
    """A bar below the zoomed axis was drawn a third of the way up: SISA at 0.553 stood above RecEraser's 0.715 (a QA
    probe). It has no height now, and carries its value."""
    pytest.importorskip("matplotlib")
    from graphforget.cli import _plot
    aucs = {"original": 0.70, "retrain": 0.72, "receraser": 0.705, "sisa": 0.553, "ifru": 0.95}
    figures = {name: {f"auc_{k}": value for k in range(3)} for name, value in aucs.items()}
    result = {"model": "mf", "dataset": "d", "request_edges": 5, "original": figures.pop("original"), "methods": figures}
    ax = _plot([result]).axes[0]
    low, high = ax.get_ylim()
    tops = {name: [bar.get_y() + bar.get_height() for bar in container]
            for name, container in zip(aucs, ax.containers)}
    assert tops["sisa"] == pytest.approx([low] * 3) and tops["ifru"] == pytest.approx([high] * 3)
    assert all(top == pytest.approx(aucs[name]) for name in ("original", "retrain", "receraser") for top in tops[name])
    labels = [text.get_text() for text in ax.texts]
    assert labels.count("0.553") == 3 and labels.count("0.950") == 3


def test_demo_without_data_says_it_uses_synthetic_data(capsys, tmp_path, monkeypatch):
    monkeypatch.delenv("GRAPHFORGET_DATA", raising=False)
    monkeypatch.chdir(tmp_path)  # no ../shared/data from here
    code, out, _ = run_cli(capsys, "demo", "--methods", "retrain", "--quiet", "--out", str(tmp_path / "o"),
                           "--epochs", "1", "--embedding-dim", "4")
    assert code == 0
    assert "ML-100K not found, using SYNTHETIC data" in out
    assert json.loads((tmp_path / "o" / "results.json").read_text())["runs"][0]["dataset"] == "synthetic"


def test_demo_trains_with_the_given_l2(capsys, tmp_path):
    code, _, _ = run_cli(capsys, "demo", "--dataset", "synthetic", "--methods", "retrain", "--l2", "0", "--quiet",
                         "--out", str(tmp_path), *TINY)
    assert code == 0
    assert json.loads((tmp_path / "results.json").read_text())["runs"][0]["hparams"]["l2"] == 0.0


def test_demo_notes_a_retrain_gain_below_the_auc_standard_error():
    # 60 positive and 40 negative test pairs: at AUC 0.8, Hanley and McNeil's standard error is 0.0433.
    test = make_interactions(torch.stack([torch.arange(100), torch.zeros(100, dtype=torch.long)]),
                             (torch.arange(100) < 60).float(), 100, 1)
    a = 0.8
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    error = math.sqrt((a * (1 - a) + 59 * (q1 - a * a) + 39 * (q2 - a * a)) / (60 * 40))
    assert error == pytest.approx(0.0433, abs=1e-4)

    def result(retrain):
        return {"original": {"auc_0": a}, "methods": {"retrain": {"auc_0": retrain}}}
    note = _noise_note("mf", result(a + 0.02), test)
    assert note.startswith("note (mf): Retrain moves AUC_0 by +0.0200, less than the standard error of an AUC on "
                           "these 100 test pairs (0.0433)")
    assert _noise_note("mf", result(a - 0.04), test) is not None
    assert _noise_note("mf", result(a + 0.05), test) is None and _noise_note("mf", result(a - 0.05), test) is None


def _has_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


# --- errors ----------------------------------------------------------------------------------------

def test_fit_help_gives_no_defaults_for_the_models_it_refuses(capsys):
    """fit trains with BCE and refuses SGL and SimGCL: its help listed their defaults, copied from train's."""
    helps = {}
    for name in ("fit", "train"):
        with pytest.raises(SystemExit):
            main([name, "--help"])
        helps[name] = " ".join(capsys.readouterr().out.split())
    assert "sgl" not in helps["fit"] and "stationary" not in helps["fit"]
    assert "Adam learning rate (default: the preset's, 0.01)" in helps["fit"]
    assert "Adam learning rate (default: the preset's, 0.01; sgl/simgcl 0.005)" in helps["train"]
    assert "(default: the preset's, 100; sgl/simgcl 50; stationary: 500 L-BFGS iterations)" in helps["train"]
    assert "LightGCN 1.0; sgl/simgcl 1e-4; stationary: per dataset)" in helps["train"]
    assert "4096; sgl/simgcl 8192)" in helps["train"] and "(default: the preset's, 5; sgl/simgcl 0)" in helps["train"]


@pytest.mark.parametrize("argv, fragment", [
    (["train", "--dataset", "nope", "--out", "x"], "invalid choice: 'nope'"),
    (["train", "--model", "gcn", "--out", "x"], "unknown model 'gcn'"),
    (["train", "--dataset", "synthetic", "--attack-ratio", "1.5", "--out", "x"], "attack ratio must be in (0, 1)"),
    (["train", "--dataset", "synthetic", "--attack-ratio", "0", "--out", "x"], "attack ratio must be in (0, 1)"),
    (["train", "--root", "/does/not/exist", "--out", "x"], "data directory not found: /does/not/exist"),
    (["demo", "--methods", "nope"], "unknown method 'nope'"),
    (["bench", "--protocol", "attack", "--methods", "nope", "--out", "x"], "receraser, unlearnrec, retrain_seed)"),
    (["demo", "--option", "ifru-solver"], "--option takes METHOD:KEY=VALUE"),
    (["demo", "--model", "mf", "mf"], "--model names ['mf'] more than once"),
    (["demo", "--methods", "ifru", "ifru"], "--methods names ['ifru'] more than once"),
    # demo and bench named the config field only, not the flag
    (["demo", "--dataset", "synthetic", "--l2=-1"], "--l2 -1.0: Hyperparameters.l2: must be >= 0 (got -1.0)"),
    (["bench", "--protocol", "attack", "--dataset", "synthetic", "--l2", "nan", "--out", "x"],
     "--l2 nan: Hyperparameters.l2: must be finite (got nan)"),
    (["bench", "--protocol", "attack", "--model", "sgl", "--ssl-weight", "-1", "--out", "x"],
     "--ssl-weight -1.0: Hyperparameters.ssl_weight: must be"),
    (["train", "--out", "x", "--epochs", "0"], "expected a positive integer"),
    (["train", "--dataset", "synthetic", "--device", "toaster", "--out", "x"], "unknown device 'toaster'"),
    ([], "required: COMMAND"),
    (["train", "--out", "x", "--threads", "1"], "--threads goes before the command: graphforget --threads ... COMMAND"),
    (["evaluate", "--run", "x", "-v"], "-v goes before the command"),
    # The train flags were checked after the data was read, naming a config field; a huge --epochs crashed tqdm.
    (["train", "--out", "x", "--lr", "nan"], "--lr nan: Hyperparameters.train: TrainConfig.lr: must be finite"),
    (["train", "--out", "x", "--patience", "-3"], "--patience -3: Hyperparameters.train: TrainConfig.patience: must"),
    (["train", "--out", "x", "--epochs", str(10**20)], "--epochs 100000000000000000000: Hyperparameters.train: "
                                                        "TrainConfig.epochs: must have an absolute value below 2**62"),
    # An empty --root read $GRAPHFORGET_DATA but recorded the working directory; an empty --out wrote nothing.
    (["train", "--root", "", "--out", "x"], "argument --root: expected a directory, got an empty path"),
    (["evaluate", "--run", "x", "--out", ""], "--out is empty: name a new output"),
    # A seed out of range was refused once the data was read and 5-cored.
    (["train", "--out", "x", "--seed", "-1"], "argument --seed: expected an integer in [0, 2**32), got -1"),
    (["demo", "--seed", str(2**32)], "argument --seed: expected an integer in [0, 2**32), got 4294967296"),
    # flags read by nothing were recorded with the run as if used (MF's model.pt was byte-identical without them)
    (["train", "--model", "mf", "--layers", "3", "--out", "x"], "--layers is not read: MF has no layers"),
    (["train", "--training", "stationary", "--batch-size", "7", "--out", "x"],
     "--batch-size is not read: --training stationary trains by full-batch L-BFGS"),
    (["forget", "--run", "x", "--users", "1", "--method", "ifru", "--out", "y", "--seed", "1.5"],
     "argument --seed: expected an integer in [0, 2**32), got '1.5'"),
])
def test_usage_errors_exit_2_with_one_line(argv, fragment, capsys):
    code, out, err = run_cli(capsys, *argv)
    assert code == 2
    assert err.count("\n") == 1 and fragment in err and "Traceback" not in err
    assert "data:" not in out  # refused before any data is loaded


def test_an_ensembles_output_is_not_evaluated_and_says_why(trained_run, tmp_path, capsys):
    """SISA's result is not one model of the run's class: unlearn keeps its metrics only, and evaluate's hint was to
    train a model into that folder."""
    out = tmp_path / "sisa"
    code, _, err = run_cli(capsys, "unlearn", "--run", str(trained_run), "--method", "sisa", "--option",
                           "num_shards=2", "--out", str(out))
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json"]
    metrics = json.loads((out / "metrics.json").read_text())
    fit = metrics["fit"]  # how the edges were split and the shards trained: it had been left out
    assert len(fit["shard_sizes"]) == len(fit["shard_epochs"]) == 2 and min(fit["shard_sizes"]) > 0
    assert fit["seconds"] == metrics["fit_seconds"]
    code, _, err = run_cli(capsys, "evaluate", "--run", str(out))
    assert code == 2 and err.count("\n") == 1 and "only its metrics were kept" in err and "train --out" not in err


def test_the_command_line_refuses_to_run_once_per_rank(capsys, monkeypatch):
    """Under torchrun every rank ran the whole command, and rank 1 found --out taken (a QA probe)."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    code, out, err = run_cli(capsys, "methods")
    assert code == 2 and out == "" and err == (
        "graphforget: error: the command line runs in one process, and WORLD_SIZE=2 (torchrun?) would run the whole "
        "command once per rank: run it without torchrun, or call the Python API from a script under torchrun "
        "(graphforget.distributed.init_from_env; see the methods page)\n")
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert run_cli(capsys, "methods")[0] == 0


def test_missing_model_and_unknown_method_on_a_run(trained_run, tmp_path, capsys):
    code, _, err = run_cli(capsys, "evaluate", "--run", str(tmp_path))
    assert code == 2 and err.count("\n") == 1 and "no model.pt in" in err
    # a file, the run's model.pt say: the advice `graphforget train --out FILE` failed when followed
    code, _, err = run_cli(capsys, "evaluate", "--run", str(trained_run / "model.pt"))
    assert code == 2 and err.count("\n") == 1 and "is not a run directory: give the directory" in err
    assert "train --out" not in err
    # the other commands' outputs are named: the advice `graphforget train --out DIR` would fail on a folder in use
    bench = tmp_path / "bench"
    bench.mkdir()
    (bench / "results.json").write_text("{}")
    code, _, err = run_cli(capsys, "evaluate", "--run", str(bench))
    assert code == 2 and err == (f"graphforget: error: no model.pt in {bench}: it holds a `graphforget bench` or "
                                 "`demo` output (results.json), not a run: give the directory a `train` run wrote\n")
    for run, held in ((bench, "a `graphforget bench` or `demo` output (results.json)"),
                      (trained_run, "a `graphforget train` or `unlearn` output (metrics.json), on a protocol's data")):
        code, _, err = run_cli(capsys, "verify", "--run", str(run))
        assert code == 2 and err == (f"graphforget: error: --run {run} is not a run directory (no run.json; make one "
                                     f"with `graphforget fit`): it holds {held}\n")
    code, _, err = run_cli(capsys, "unlearn", "--run", str(trained_run), "--method", "nope", "--out", str(tmp_path))
    assert code == 2 and err.count("\n") == 1 and "unknown method 'nope'" in err
    code, _, err = run_cli(capsys, "unlearn", "--run", str(trained_run), "--method", "ifru", "--option", "bogus=1",
                           "--out", str(tmp_path))
    assert code == 2 and err.count("\n") == 1 and "bad options for 'ifru'" in err
    assert not (tmp_path / "metrics.json").exists()


def _bad_input_files(tmp: Path) -> None:
    """The files :func:`_bad_inputs` refers to: a plain file, an empty u.data, broken encoders."""
    (tmp / "a_file").write_text("I am a file\n")
    (tmp / "ml").mkdir()
    (tmp / "ml" / "u.data").write_bytes(b"")
    buffer = io.BytesIO()
    torch.save({"encoder": {"h0": torch.zeros(50, 8)}}, buffer)
    (tmp / "truncated.pt").write_bytes(buffer.getvalue()[:120])
    (tmp / "text.pt").write_text("user item rating\n")
    (tmp / "full").mkdir()
    (tmp / "full" / "metrics.json").write_text("{}")  # an earlier command's output


def _bad_inputs(run: Path, tmp: Path) -> dict[str, tuple[list[str], str, bool]]:
    """Bad command lines: ``name -> (argv, fragment of the message, fails before any data or model is read)``."""
    unlearn = ["unlearn", "--run", str(run), "--out", str(tmp / "o")]
    ifru, unlearnrec = [*unlearn, "--method", "ifru"], [*unlearn, "--method", "unlearnrec", "--quiet"]
    train_ = ["train", "--dataset", "synthetic", "--quiet", *TINY]
    return {
        "max_iter=abc": ([*ifru, "--option", "solver.max_iter=abc"],
                         "IFRUConfig.solver.max_iter: expected int, got 'abc'", True),
        "tol=abc": ([*ifru, "--option", "solver.tol=abc"], "IFRUConfig.solver.tol: expected float, got 'abc'", True),
        "prune=a,b": ([*ifru, "--option", "prune=a,b"], "IFRUConfig.prune: expected tuple[float, ...] | None", True),
        "solver=nope": ([*ifru, "--option", "solver.name=nope"],
                        "IFRUConfig.solver.name: one of cg, lissa, adam, direct (got 'nope')", True),
        "unknown option": ([*ifru, "--option", "bogus=1"], "IFRUConfig: unknown option bogus", True),
        "unknown sisa option": ([*unlearn, "--method", "sisa", "--option", "shards=2"],
                                "SISAConfig: unknown option shards", True),
        "unlearnrec option": ([*unlearnrec, "--option", "l_u=abc"], "UnlearnRecConfig.l_u: expected float, got 'abc'",
                              True),
        "pretrain option": (["pretrain-encoder", "--run", str(run), "--out", str(tmp / "o"), "--option",
                             "tau=-1"], "UnlearnRecConfig.tau: must be > 0 (got -1.0)", True),
        "demo option": (["demo", "--dataset", "synthetic", "--methods", "ifru", "--option",
                         "ifru:solver.max_iter=abc"], "IFRUConfig.solver.max_iter: expected int", True),
        "train --device meta": ([*train_, "--device", "meta", "--out", str(tmp / "o")], "unsupported device 'meta'",
                                True),
        "unlearn --device meta": ([*ifru, "--device", "meta"], "unsupported device 'meta'", True),
        "empty u.data": (["train", "--root", str(tmp / "ml"), "--out", str(tmp / "o")], "u.data is empty", False),
        "truncated encoder": ([*unlearnrec, "--encoder", str(tmp / "truncated.pt")], "cannot read encoder file",
                              False),
        "non-torch encoder": ([*unlearnrec, "--encoder", str(tmp / "text.pt")], "cannot read encoder file", False),
        "unlearn --out RUN": ([*ifru[:-2], "--out", str(run), "--method", "ifru"], "is the run directory", True),
        "unlearn --out RUN/.": ([*ifru[:-2], "--out", str(run / "."), "--method", "ifru"], "is the run directory",
                                True),
        "unlearn --out FILE": ([*ifru[:-2], "--out", str(tmp / "a_file"), "--method", "ifru"],
                               "is an existing file, not a directory", True),
        "unlearn --out under a FILE": ([*ifru[:-2], "--out", str(tmp / "a_file" / "o"), "--method", "ifru"],
                                       "is not a directory", True),
        "train --out ''": ([*train_, "--out", ""], "--out is empty", True),
        "train --out FILE": ([*train_, "--out", str(tmp / "a_file")], "is an existing file, not a directory", True),
        "pretrain --out FILE": (["pretrain-encoder", "--run", str(run), "--out", str(tmp / "a_file")],
                                "is an existing file, not a directory", True),
        "demo --out FILE": (["demo", "--dataset", "synthetic", "--out", str(tmp / "a_file")],
                            "is an existing file, not a directory", True),
        "evaluate --out DIR": (["evaluate", "--run", str(run), "--out", str(tmp)], "is a directory, not a file",
                               True),
        "evaluate --out FILE": (["evaluate", "--run", str(run), "--out", str(tmp / "a_file")],
                                "exists: outputs are never overwritten", True),
        "evaluate --out RUN/metrics.json": (["evaluate", "--run", str(run), "--out", str(run / "metrics.json")],
                                            "is inside the run", True),
        # a train run has no run.json: an unlearned run was written inside it
        "unlearn --out RUN/x": ([*ifru[:-2], "--out", str(run / "x"), "--method", "ifru"], "is inside the run", True),
        "unlearn --out RUN2": ([*ifru[:-2], "--out", str(tmp / "full"), "--method", "ifru"],
                               "exists: runs are never overwritten", True),
        "train --out RUN2": ([*train_, "--out", str(tmp / "full")], "exists: runs are never overwritten", True),
        "pretrain --out RUN2": (["pretrain-encoder", "--run", str(run), "--out", str(tmp / "full")],
                                "exists: runs are never overwritten", True),
        "demo --out RUN2": (["demo", "--dataset", "synthetic", "--out", str(tmp / "full")],
                            "exists: runs are never overwritten", True),
    }


BAD_INPUTS = list(_bad_inputs(Path("run"), Path("tmp")))


def test_ctrl_c_and_warnings_are_one_line(capsys, monkeypatch):
    """Ctrl-C printed a traceback through torch, a warning Python's source path and line (the format Python prints
    a warning with is checked: pytest records warnings instead of printing them)."""
    import warnings

    def interrupted(args):
        sys.stderr.write(warnings.formatwarning("the step was not trusted:\n retry", RuntimeWarning, "w.py", 7))
        raise KeyboardInterrupt
    monkeypatch.setattr("graphforget.cli.cmd_methods", interrupted)
    code, out, err = run_cli(capsys, "methods")
    assert code == 130 and out == ""
    assert err == ("graphforget: warning: the step was not trusted: retry\n"
                   "graphforget: interrupted; no output was left half-written\n")
    assert "w.py:7" in warnings.formatwarning("x", UserWarning, "w.py", 7)  # restored after the command


@pytest.mark.parametrize("name", BAD_INPUTS)
def test_bad_inputs_exit_2_with_one_line_and_no_traceback(name, trained_run, tmp_path, capsys, monkeypatch):
    _bad_input_files(tmp_path)
    argv, fragment, before_work = _bad_inputs(trained_run, tmp_path)[name]
    model_bytes = (trained_run / "model.pt").read_bytes()
    if before_work:  # the error must come before any data is loaded or any model read or trained
        def no_work(*args, **kwargs):
            raise AssertionError("work started before the usage error")
        for target in ("prepare_attack_data", "load_model", "train"):
            monkeypatch.setattr(f"graphforget.cli.{target}", no_work)
    code, out, err = run_cli(capsys, *argv)
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("graphforget") and "Traceback" not in err, err
    assert fragment in err, err
    assert not (tmp_path / "o").exists()
    assert (trained_run / "model.pt").read_bytes() == model_bytes  # the run is never overwritten


def test_unlearn_into_the_run_directory_through_a_link_is_refused(trained_run, tmp_path, capsys):
    link = tmp_path / "same-run"
    link.symlink_to(trained_run, target_is_directory=True)
    before = sorted(os.listdir(trained_run)), (trained_run / "model.pt").read_bytes()
    code, _, err = run_cli(capsys, "unlearn", "--run", str(trained_run), "--method", "retrain", "--out", str(link))
    assert code == 2 and "is the run directory" in err and err.count("\n") == 1
    assert (sorted(os.listdir(trained_run)), (trained_run / "model.pt").read_bytes()) == before


def test_a_command_killed_while_writing_leaves_no_output_directory(trained_run, tmp_path, capsys, monkeypatch):
    """--out is published whole: metrics.json written, then a kill while model.pt is written leaves neither."""
    def killed(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr("graphforget.cli.save_model", killed)
    code, _, err = run_cli(capsys, "unlearn", "--run", str(trained_run), "--method", "ifru", "--quiet", "--out",
                           str(tmp_path / "o"))
    assert code == 130 and err == "graphforget: interrupted; no output was left half-written\n"
    assert os.listdir(tmp_path) == []  # neither the directory nor its temporary sibling


def test_a_ctrl_c_after_the_output_was_published_names_it(trained_run, tmp_path, capsys, monkeypatch):
    """A Ctrl-C after --out was published said only "interrupted": the run was there, whole (a QA probe)."""
    from graphforget.runs import publish

    def published_then_interrupted(*args, **kwargs):
        publish(*args, **kwargs)
        raise KeyboardInterrupt
    monkeypatch.setattr("graphforget.cli.publish", published_then_interrupted)
    code, _, err = run_cli(capsys, "unlearn", "--run", str(trained_run), "--method", "ifru", "--quiet", "--out",
                           str(tmp_path / "o"))
    assert code == 130 and err == (f"graphforget: interrupted; {tmp_path / 'o'} had been published whole before it; "
                                   "no output was left half-written\n")
    assert {"metrics.json", "model.pt"} <= set(os.listdir(tmp_path / "o"))


def test_a_command_stopped_by_sigterm_removes_its_temporary_output(trained_run, tmp_path, capsys, monkeypatch):
    """SIGTERM, which cron, queues and systemd stop a command with, ended the process at once: its temporary output
    folder stayed for good (a QA probe). It now unwinds as Ctrl-C does, exits 143, and the handler is restored."""
    def terminated(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
    monkeypatch.setattr("graphforget.cli.save_model", terminated)
    before = signal.getsignal(signal.SIGTERM)
    code, _, err = run_cli(capsys, "unlearn", "--run", str(trained_run), "--method", "ifru", "--quiet", "--out",
                           str(tmp_path / "o"))
    assert code == 143 and err == "graphforget: terminated; no output was left half-written\n"
    assert os.listdir(tmp_path) == []
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_ctrl_c_while_the_parser_is_built_is_one_line(capsys, monkeypatch):
    """build_parser() ran before main's try: a Ctrl-C there was a traceback."""
    def interrupted():
        raise KeyboardInterrupt
    monkeypatch.setattr("graphforget.cli.build_parser", interrupted)
    code, _, err = run_cli(capsys, "methods")
    assert code == 130 and err == "graphforget: interrupted; no output was left half-written\n"


def test_a_reader_that_left_the_pipe_is_no_traceback():
    """`graphforget evaluate ... | head` ended in a BrokenPipeError traceback once head stopped reading."""
    read, write = os.pipe()
    os.close(read)  # the reader has left before the first line: every write fails with EPIPE
    done = subprocess.run([sys.executable, "-m", "graphforget", "methods"], stdout=write, stderr=subprocess.PIPE,
                          text=True, timeout=120)
    os.close(write)
    assert done.returncode == 141 and done.stderr == "", done.stderr


def test_a_console_without_unicode_gets_question_marks_not_a_failed_command():
    """`graphforget methods ifru` prints its formulas in Unicode: on a cp1252 console (Windows, output redirected) it
    died half-printed with exit 2 ("'charmap' codec can't encode '\\u2207'")."""
    done = subprocess.run([sys.executable, "-m", "graphforget", "methods", "ifru"], capture_output=True,
                          env={**os.environ, "PYTHONIOENCODING": "cp1252"}, timeout=120)
    out = done.stdout.decode("cp1252")
    assert done.returncode == 0 and done.stderr == b"", done.stderr
    assert "the implicit ridge ?? = max(0, -??_? L(??; D), ??? / ????²)" in out and "solver.name" in out  # ² is cp1252

@pytest.mark.parametrize("kind", ["UnlearningFailed", "UntrainableShard"])
def test_unlearning_failed_is_exit_1_with_one_line(trained_run, tmp_path, capsys, monkeypatch, kind):
    """SISA's UntrainableShard is a ValueError too: it exited 2, "error", where the docs say 1 (found by a probe)."""
    import graphforget.unlearn as unlearn

    def fail(self, request):
        raise getattr(unlearn, kind)("IFRU: the step did not lower the objective")
    monkeypatch.setattr(IFRU, "unlearn", fail)
    code, _, err = run_cli(capsys, "unlearn", "--run", str(trained_run), "--method", "ifru", "--out", str(tmp_path))
    assert code == 1 and err == "graphforget: unlearning failed: IFRU: the step did not lower the objective\n"


def test_unreadable_checkpoint_is_a_one_line_error(tmp_path, capsys):
    (tmp_path / "model.pt").write_bytes(b"not a checkpoint")
    code, _, err = run_cli(capsys, "evaluate", "--run", str(tmp_path))
    assert code == 2 and err.count("\n") == 1 and "cannot read" in err


@pytest.mark.parametrize("edit, field", [
    (lambda run: run["hparams"].update(dropout=0.0), "hparams (Hyperparameters.__init__() got an unexpected keyword "
                                                     "argument 'dropout')"),
    (lambda run: run.pop("attack_ratio"), "attack_ratio"),
    (lambda run: run.pop("fingerprint"), "fingerprint"),
    (lambda run: run.update(root=5), "root"),
    (lambda run: run.update(hparams=None), "hparams"),
    (lambda run: run.update(seed=True), "seed"),
    (lambda run: run.pop("root"), "root"),  # None is a root, a missing one is not
    (lambda run: run.update(seed=3.5), "seed"),
    (lambda run: (run.pop("fingerprint"), run.pop("attack_ratio")), "attack_ratio"),  # the first, in record order
])
def test_a_train_checkpoint_of_another_version_is_a_one_line_error_naming_the_field(trained_run, tmp_path, capsys,
                                                                                    edit, field):
    """A record this version cannot read (a field a newer version added, one an older lacked), sealed as
    save_model seals it: evaluate and unlearn failed with a KeyError or TypeError traceback."""
    from graphforget.models.base import _meta_sha256
    checkpoint = torch.load(trained_run / "model.pt", weights_only=True)
    edit(checkpoint["run"])
    checkpoint["meta_sha256"] = _meta_sha256(checkpoint)
    (tmp_path / "run").mkdir()
    torch.save(checkpoint, tmp_path / "run" / "model.pt")
    for command in (["evaluate"], ["unlearn", "--method", "ifru", "--out", str(tmp_path / "out"), "--quiet"]):
        code, _, err = run_cli(capsys, command[0], "--run", str(tmp_path / "run"), *command[1:])
        assert code == 2 and err == (f"graphforget: error: {tmp_path / 'run' / 'model.pt'}: {field} is not what "
                                     "`graphforget train` records (another version's file, or edited)\n"), err


def test_a_train_run_whose_data_moved_is_rebuilt_from_root_or_where_the_library_finds_data(tmp_path, capsys,
                                                                                           data_root):
    """A run records its data directory as an absolute path: once it moved, evaluate and unlearn failed with "data
    directory not found", and had no --root. The fingerprint still checks that the data is the run's."""
    (tmp_path / "a" / "ml-100k").mkdir(parents=True)
    shutil.copy(data_root / "ml-100k" / "u.data", tmp_path / "a" / "ml-100k" / "u.data")
    run = tmp_path / "run"
    assert run_cli(capsys, "train", "--root", str(tmp_path / "a"), "--out", str(run), "--quiet", *TINY)[0] == 0
    (tmp_path / "a").rename(tmp_path / "b")
    code, out, err = run_cli(capsys, "evaluate", "--run", str(run))  # the library's data: the same ML-100K
    assert code == 0 and json.loads(out)["method"] == "original", err
    (tmp_path / "a").mkdir()  # the recorded folder is back, without the dataset: it stopped the search (a QA probe)
    code, out, err = run_cli(capsys, "evaluate", "--run", str(run))
    assert code == 0 and json.loads(out)["method"] == "original", err
    assert run_cli(capsys, "evaluate", "--run", str(run), "--root", str(tmp_path / "b"))[0] == 0
    code, _, err = run_cli(capsys, "unlearn", "--run", str(run), "--root", str(tmp_path / "b"), "--method", "ifru",
                           "--out", str(tmp_path / "u"), "--quiet")
    assert code == 0, err
    (tmp_path / "c" / "ml-100k").mkdir(parents=True)
    lines = (tmp_path / "b" / "ml-100k" / "u.data").read_text().splitlines(keepends=True)
    (tmp_path / "c" / "ml-100k" / "u.data").write_text("".join(lines[:-5]))  # other data: five ratings fewer
    code, _, err = run_cli(capsys, "evaluate", "--run", str(run), "--root", str(tmp_path / "c"))
    assert code == 2 and "differs from the data it was trained on" in err


def test_a_train_run_whose_held_out_pairs_changed_is_refused(trained_run, capsys, monkeypatch):
    """The fingerprint covered the training edges and the request only: data edited where the split held pairs
    out (one test label) was accepted, and evaluate reported the AUC of other test data as the run's."""
    def one_test_label_flipped(*args, **kwargs):
        data = prepare_attack_data(*args, **kwargs)
        label = data.split.test[EDGE].edge_label
        label[0] = 1 - label[0]
        return data

    assert run_cli(capsys, "evaluate", "--run", str(trained_run))[0] == 0
    monkeypatch.setattr("graphforget.cli.prepare_attack_data", one_test_label_flipped)
    code, _, err = run_cli(capsys, "evaluate", "--run", str(trained_run))
    assert code == 2 and "differs from the data it was trained on" in err


def test_missing_dataset_file_is_a_one_line_error(tmp_path, capsys):
    code, _, err = run_cli(capsys, "train", "--dataset", "ml-100k", "--root", str(tmp_path), "--out", str(tmp_path / "o"))
    assert code == 2 and err.count("\n") == 1 and "ml-100k not found: no u.data in" in err


def test_python_dash_m_runs_and_errors_without_traceback(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    bad = subprocess.run([sys.executable, "-m", "graphforget", "unlearn", "--run", str(tmp_path), "--method", "ifru",
                          "--out", str(tmp_path)], capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr
    assert "no model.pt in" in bad.stderr


def test_version(capsys):
    from graphforget import __version__
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out.strip() == f"graphforget {__version__}"


# --- protocols -------------------------------------------------------------------------------------

def test_prepare_attack_data_flips_exactly_the_request():
    data = prepare_attack_data("synthetic", attack_ratio=0.05, seed=1)
    assert isinstance(data, AttackData) and isinstance(data, tuple) and len(data) == 6
    clean, attacked = data.split.train[EDGE], data.train[EDGE]
    assert torch.equal(clean.edge_index, attacked.edge_index)
    flipped = clean.edge_label != attacked.edge_label
    assert torch.equal(attacked.edge_label[flipped], 1 - clean.edge_label[flipped])
    keys = lambda ei: set((ei[0] * 10_000 + ei[1]).tolist())  # noqa: E731
    assert keys(clean.edge_index[:, flipped]) == keys(data.request)
    assert data.request.size(1) == round(0.05 * clean.edge_index.size(1))
    again = prepare_attack_data("synthetic", attack_ratio=0.05, seed=1)
    assert torch.equal(again.request, data.request) and torch.equal(again.split.test[EDGE].edge_index,
                                                                     data.split.test[EDGE].edge_index)
    assert not torch.equal(prepare_attack_data("synthetic", attack_ratio=0.05, seed=2).request, data.request)


def test_prepare_attack_data_errors_and_fallback(tmp_path):
    with pytest.raises(ValueError, match="attack ratio"):
        prepare_attack_data("synthetic", attack_ratio=1.0)
    with pytest.raises(ValueError, match="unknown dataset"):
        prepare_attack_data("movielens")
    with pytest.raises(FileNotFoundError, match="data directory not found"):
        prepare_attack_data("ml-100k", tmp_path / "absent")
    with pytest.raises(FileNotFoundError, match="bookcrossing not found"):
        prepare_attack_data("bookcrossing", tmp_path, synthetic_fallback=False)
    data = prepare_attack_data("ml-100k", tmp_path, synthetic_fallback=True)  # an empty directory: falls back, says so
    assert data.source.startswith("synthetic") and "ml-100k not found" in data.source


def test_prepare_attack_data_names_an_attack_ratio_that_is_not_a_number():
    """None or a list raised float()'s TypeError, naming no argument; a string was read as a ratio."""
    for bad in (None, [0.1], "0.05", "x", True):
        with pytest.raises(ValueError, match=re.escape(f"attack ratio must be a number in (0, 1), got {bad!r}")):
            prepare_attack_data("synthetic", attack_ratio=bad)
    assert prepare_attack_data("synthetic", attack_ratio=np.float32(0.05)).request.size(1) == 720


def test_synthetic_fallback_is_opt_in_and_logged(tmp_path, caplog):
    missing = f"no u.data in {tmp_path / 'ml-100k'} nor in {tmp_path}"
    # prepare_attack_data does not fall back by default: it raises before anything is trained.
    with pytest.raises(FileNotFoundError, match=re.escape(f"ml-100k not found: {missing}")):
        prepare_attack_data("ml-100k", tmp_path)
    own = tmp_path / "ml-100k"  # the dataset's own folder as the root: both places named, not ml-100k/ml-100k alone
    own.mkdir()
    with pytest.raises(FileNotFoundError, match=re.escape(f"ml-100k not found: no u.data in {own / 'ml-100k'} nor in "
                                                          f"{own}")):
        prepare_attack_data("ml-100k", own)
    # Opted into, the fallback logs a warning naming the missing file.
    with caplog.at_level("WARNING", logger="graphforget.protocols.attack"):
        data = prepare_attack_data("ml-100k", tmp_path, synthetic_fallback=True)
    assert data.source.startswith("synthetic")
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1
    assert f"ml-100k not found: {missing}; using the synthetic stand-in instead" in warnings[0].getMessage()


def test_ml100k_protocol_sizes(data_root):
    data = prepare_attack_data("ml-100k", data_root, 0.02, 0, synthetic_fallback=False)
    total = sum(g[EDGE].edge_index.size(1) for g in (data.split.train, data.split.val, data.split.test))
    # ML-100K is already a 5-core of users (>= 20 ratings each); the 5-core drops a few items' ratings.
    assert 99_000 < total <= 100_000 and data.split.train[EDGE].edge_index.size(1) == 59_572
    assert data.request.size(1) == round(0.02 * 59_572)
    positives = float(data.split.train[EDGE].edge_label.mean())
    assert 0.5 < positives < 0.6  # ratings >= 4 are a little over half of ML-100K


def test_bookcrossing_5core_sizes(data_root):
    from graphforget.data import k_core, load_labelled_triples
    core = k_core(load_labelled_triples(data_root / "bookcrossing"), 5)
    assert (core["user"].num_nodes, core["item"].num_nodes, core[EDGE].edge_index.size(1)) == (3988, 9676, 89915)


def test_default_hparams_and_overrides():
    mf, lgn = default_hparams("mf"), default_hparams("lightgcn")
    assert (mf.embedding_dim, mf.l2, mf.train.lr, mf.train.batch_size, mf.train.patience, mf.train.epochs) == \
        (64, 5.0, 0.01, 4096, 5, 100)
    assert (lgn.num_layers, lgn.l2) == (2, 1.0)
    model = lgn.replace({"train.lr": None}, embedding_dim=4).build_model(5, 6, seed=0)
    assert model.num_layers == 2 and model.embedding_dim == 4 and model.receptive_field == 2
    assert lgn.replace({"train.lr": None}).train.lr == 0.01 and lgn.train_config(seed=7).seed == 7
    stationary = default_hparams("mf", "ml-100k", "stationary")
    assert (stationary.train.optimizer, stationary.l2, stationary.train.epochs) == ("lbfgs", 8.0, 500)
    assert stationary.train_config().optimizer == "lbfgs"
    assert default_hparams("lightgcn", "bookcrossing", "stationary").l2 == 1.0
    with pytest.raises(ValueError, match="unknown training"):
        default_hparams("mf", "ml-100k", "converged")
    for model, loss in (("sgl", None), ("mf", "bpr")):  # the BPR profile is Adam's: it was returned as stationary
        with pytest.raises(ValueError, match="no stationary preset for the BPR loss"):
            default_hparams(model, "ml-100k", "stationary", loss)
    with pytest.raises(ValueError, match="unknown option dropout"):
        mf.replace(dropout=0.1)
    with pytest.raises(ValueError, match="unknown model"):
        Hyperparameters(model="gcn")
    with pytest.raises(ValueError):
        Hyperparameters(train={"lr": 0})


def test_parse_options_and_jsonable():
    options = parse_options(["solver.name=lissa", "prune=(0.5, 0.25)", "solver.tol=1e-3", "spillover=False"])
    config = method_config("ifru", options)
    assert (config.solver.name, config.prune, config.solver.tol, config.spillover) == ("lissa", (0.5, 0.25), 1e-3, False)
    with pytest.raises(UsageError, match="KEY=VALUE"):
        parse_options(["solver"])
    with pytest.raises(UsageError, match=re.escape("solver.tol is given twice ('1e-3' and '1e-4')")):
        parse_options(["solver.tol=1e-3", "solver.tol=1e-4"])  # the last one silently won
    value = to_jsonable({"a": torch.tensor([1, 2]), "b": float("nan"), "c": (torch.tensor(0.5), math.inf)})
    assert value == {"a": [1, 2], "b": None, "c": [0.5, None]}
    json.dumps(value, allow_nan=False)


def test_registry_builds_each_method_and_accepts_new_ones(small_planted):
    assert list(METHODS)[:2] == ["retrain", "ifru"]
    objective = Hyperparameters().objective()
    model = Hyperparameters(embedding_dim=4).build_model(60, 40)
    assert isinstance(build_unlearner("retrain", model, small_planted, objective), Retrain)
    ifru = build_unlearner("ifru", model, small_planted, objective, {"solver.name": "lissa"})
    assert isinstance(ifru, IFRU) and ifru.config.solver.name == "lissa"
    with pytest.raises(ValueError, match="unknown method"):
        build_unlearner("nope", model, small_planted, objective)
    for wrong in (RetrainConfig(), "solver.tol=1e-3"):  # another method's config, a command line's string
        with pytest.raises(TypeError, match="options for 'ifru' must be a IFRUConfig, a dict of its options or None"):
            build_unlearner("ifru", model, small_planted, objective, wrong)

    @register
    class Identity(IFRU):
        name = "test-identity"
    try:
        assert METHODS["test-identity"] is Identity
        built = build_unlearner("test-identity", model, small_planted, objective, {"solver.max_iter": 1})
        assert isinstance(built, Identity) and built.config.solver.max_iter == 1
        with pytest.raises(ValueError, match="already registered"):
            register(type("Other", (IFRU,), {"name": "test-identity"}))
    finally:
        del METHODS["test-identity"]


def test_run_attack_refuses_options_of_a_method_not_run_and_a_method_listed_twice(monkeypatch):
    """options={"IFRU": {"solver.damping": 0.1}} ran IFRU at its default damping, and an invalid option of a method
    left out was never read; ["ifru", "ifru"] ran IFRU twice. run_bench and the CLI refuse both."""
    data = prepare_attack_data("synthetic", attack_ratio=0.02, seed=0)
    monkeypatch.setattr("graphforget.protocols.attack.train", lambda *a, **k: pytest.fail("trained before the checks"))
    for methods, options, message in (
            (["ifru"], {"IFRU": {"solver.damping": 0.1}}, "options for methods that are not run: IFRU (methods: "
                                                          "retrain, ifru)"),
            (["ifru"], {"scif": {"solver.tol": "x"}}, "options for methods that are not run: scif"),
            (["ifru", "ifru"], {}, "methods listed twice: ifru")):
        with pytest.raises(ValueError, match=re.escape(message)):
            run_attack(data, Hyperparameters(embedding_dim=4), methods=methods, options=options)

def test_run_attack_reports_completeness_against_retrain():
    torch.set_num_threads(1)
    data = prepare_attack_data("synthetic", attack_ratio=0.02, seed=0)
    hparams = Hyperparameters(embedding_dim=8, train={"epochs": 3})
    result = run_attack(data, hparams, methods=["ifru"]).to_dict()
    json.dumps(result, allow_nan=False)
    assert list(result["methods"]) == ["retrain", "ifru"]  # Retrain always runs: completeness needs it
    original, retrain, ifru = result["original"], result["methods"]["retrain"], result["methods"]["ifru"]
    assert original["epochs"] == 3 and original["train_seconds"] > 0 and ifru["seconds"] > 0
    for key in ("auc_0", "auc_1", "auc_2"):
        assert retrain["completeness"][key] == pytest.approx(1.0)
        assert ifru["completeness"][key] == pytest.approx((ifru[key] - original[key]) / (retrain[key] - original[key]))
    assert result["request_edges"] == data.request.size(1) and result["dataset"] == "synthetic"
    # prediction_gap: ||p_ifru - p_retrain|| / ||p_original - p_retrain|| on the test pairs, recomputed by hand.
    objective, config = hparams.objective(), hparams.train_config(0)
    model = hparams.build_model(num_users(data.train), num_items(data.train), 0)
    train(model, data.train, objective, config, data.split.val)
    retrained = Retrain(model, data.train, objective, RetrainConfig(config), val=data.split.val).unlearn(data.request)
    unlearned = IFRU(model, data.train, objective).unlearn(data.request)
    pairs = data.split.test[EDGE].edge_index
    with torch.no_grad():
        p = {name: torch.sigmoid(m(g, pairs)) for name, (m, g) in {
            "original": (model, data.train), "retrain": (retrained.model, retrained.graph),
            "ifru": (unlearned.model, unlearned.graph)}.items()}
    expected = float((p["ifru"] - p["retrain"]).norm() / (p["original"] - p["retrain"]).norm())
    assert retrain["prediction_gap"] == 0 and ifru["prediction_gap"] == pytest.approx(expected, rel=1e-5)


class _Captured(Exception):
    """Raised by a stand-in for the library call a command ends in: its arguments, before any training."""


def test_bench_and_train_flags_reach_the_library(tmp_path, monkeypatch):
    import graphforget.bench
    monkeypatch.setattr(graphforget.bench, "run_bench", lambda *args, **kwargs: (_ for _ in ()).throw(
        _Captured(args, kwargs)))
    with pytest.raises(_Captured) as caught:
        main(["bench", "--protocol", "deletion", "--dataset", "ml-1m", "--negatives", "3", "--l2", "0.25",
              "--epochs", "2", "--out", str(tmp_path / "bench")])
    args, kwargs = caught.value.args
    assert args[1].dataset == "ml-1m" and args[1].negatives == 3
    assert (kwargs["hparams"].l2, kwargs["hparams"].train.epochs) == (0.25, 2)
    monkeypatch.setattr("graphforget.cli.train", lambda *args, **kwargs: (_ for _ in ()).throw(_Captured(*args)))
    with pytest.raises(_Captured) as caught:
        main(["train", "--dataset", "synthetic", "--patience", "7", "--lr", "0.002", "--batch-size", "128",
              "--embedding-dim", "6", "--l2", "0.5", "--quiet", "--out", str(tmp_path / "run")])
    model, _, objective, config, _ = caught.value.args
    assert (config.patience, config.lr, config.batch_size, model.embedding_dim, objective.l2) == (7, 0.002, 128, 6, 0.5)


# --- the attack protocol's data and seeds, the presets, the command line's own checks -----------------------------

def _u_data(folder: Path, users: int, items: int) -> Path:
    """A u.data where every one of ``users`` rates every one of ``items`` (5 and 1 alternating)."""
    folder.mkdir(parents=True)
    rows = [f"{u}\t{i}\t{5 if (u + i) % 2 else 1}\t0\n" for u in range(1, users + 1) for i in range(1, items + 1)]
    (folder / "u.data").write_text("".join(rows))
    return folder / "u.data"


def test_data_that_the_5_core_empties_is_refused(tmp_path):
    file = _u_data(tmp_path / "ml-100k", 4, 4)  # 4 ratings per user and item: none in the 5-core
    with pytest.raises(ValueError, match=re.escape(f"no interactions left in {file} after the 5-core")):
        prepare_attack_data("ml-100k", tmp_path)


@pytest.mark.parametrize("loss", ["bce", "bpr"])
def test_run_attack_trains_the_original_from_its_seed(loss):
    data = prepare_attack_data("synthetic", attack_ratio=0.02, seed=0)
    hparams = Hyperparameters(embedding_dim=8, loss=loss, train={"epochs": 2})
    report = run_attack(data, hparams, methods=["retrain"], seed=1).to_dict()
    # by hand: the model from seed 1, trained in seed 1's batch order (and BPR's negatives), early-stopped on the
    # validation pairs; every BPR run drew seed 0's negatives before
    model = hparams.build_model(num_users(data.train), num_items(data.train), 1)
    train(model, data.train, hparams.objective(1), hparams.train_config(1), data.split.val)
    expected = evaluate_auc(model, data.train, data.split.test, data.request)
    for key in ("auc_0", "auc_1", "auc_2"):
        assert report["original"][key] == pytest.approx(expected[key], abs=1e-12)


def test_hyperparameter_checks_and_the_presets_the_docstring_gives():
    assert Hyperparameters(model="lightgcn", num_layers=0).build_model(3, 4).num_layers == 0  # LightGCN as MF
    for bad in ({"num_layers": -1}, {"embedding_dim": 0}, {"model": "sgl", "loss": "bce"}):
        with pytest.raises(ValueError, match=r"Hyperparameters\.|sgl trains with bpr"):
            Hyperparameters(**bad)
    assert default_hparams("mf", loss="bpr").objective(seed=3).seed == 3  # BPR's negatives from the run's seed
    # stationary MF: l2 = 8 on ML-100K and 5 elsewhere
    assert [default_hparams("mf", d, "stationary").l2 for d in ("ml-100k", "bookcrossing", "synthetic")] == [8, 5, 5]
    with pytest.raises(ValueError, match="unknown dataset 'ml-1m'"):
        default_hparams("mf", "ml-1m")


def test_out_file_checks_refuse_a_fit_run_and_a_dangling_link(tmp_path):
    from graphforget.cli import _check_out_file
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "run.json").write_text("{}")  # a fit/forget run: no model.pt, but still a run
    with pytest.raises(UsageError, match="is inside the run"):
        _check_out_file(str(tmp_path / "run" / "report.json"))
    (tmp_path / "run" / "reports").mkdir()  # a sub-folder of a run: deleting the run deleted the report
    with pytest.raises(UsageError, match=re.escape(f"is inside the run {(tmp_path / 'run').resolve()}, and runs")):
        _check_out_file(str(tmp_path / "run" / "reports" / "report.json"))
    (tmp_path / "train").mkdir()  # a train run: its model.pt beside its metrics.json
    for name in ("model.pt", "metrics.json"):
        (tmp_path / "train" / name).write_text("")
    (tmp_path / "train" / "reports").mkdir()
    with pytest.raises(UsageError, match="is inside the run"):
        _check_out_file(str(tmp_path / "train" / "reports" / "report.json"))
    (tmp_path / "own" / "reports").mkdir(parents=True)  # a project's own model.pt makes no run of its tree
    (tmp_path / "own" / "model.pt").write_text("")
    assert _check_out_file(str(tmp_path / "own" / "reports" / "report.json")).name == "report.json"
    # an ensemble's unlearn output holds its metrics.json alone, pretrain-encoder's its two files: reports and
    # nested outputs had been written into them
    from graphforget.cli import _check_out_dir
    unlearned = json.dumps({"method": "sisa", "options": {}, "config": {}, "auc_0": 0.7})
    for name, files in {"unlearned": {"metrics.json": unlearned},
                        "encoder": {"encoder.pt": "", "pretrain.json": "{}"}}.items():
        (tmp_path / name).mkdir()
        for file, text in files.items():
            (tmp_path / name / file).write_text(text)
        with pytest.raises(UsageError, match="is inside the run"):
            _check_out_file(str(tmp_path / name / "report.json"))
        with pytest.raises(UsageError, match="is inside the run"):
            _check_out_dir(str(tmp_path / name / "child"))
        with pytest.raises(UsageError, match="is inside the run"):  # deeper too, through a folder not there yet
            _check_out_dir(str(tmp_path / name / "a" / "b"))
    # an encoder copied by hand, an evaluate report or a project's own metrics.json make no output directory, nor one
    # that json cannot read (nested too deep: a RecursionError traceback; an integer of 5000 digits: a ValueError)
    for name, file, text in (("copied", "encoder.pt", ""), ("report", "metrics.json", '{"method": "original"}'),
                             ("project", "metrics.json", "not json"), ("deep", "metrics.json", "[" * 200000),
                             ("long", "metrics.json", "9" * 5000)):
        (tmp_path / name).mkdir()
        (tmp_path / name / file).write_text(text)
        _check_out_file(str(tmp_path / name / "report.json"))
        _check_out_dir(str(tmp_path / name / "child"))
    (tmp_path / "link.json").symlink_to(tmp_path / "absent.json")  # writing through it would create its target
    with pytest.raises(UsageError, match="exists: outputs are never overwritten"):
        _check_out_file(str(tmp_path / "link.json"))


def test_demo_refuses_a_missing_named_dataset_and_options_of_methods_it_does_not_run(capsys, tmp_path):
    """The synthetic stand-in is for a demo without --dataset; an option must name one of the demo's methods."""
    code, out, err = run_cli(capsys, "demo", "--dataset", "ml-100k", "--root", str(tmp_path), "--methods", "retrain",
                             "--quiet", "--out", str(tmp_path / "o"), "--epochs", "1", "--embedding-dim", "4")
    assert code == 2 and "ml-100k not found" in err and not (tmp_path / "o").exists()
    code, _, err = run_cli(capsys, "demo", "--methods", "retrain", "--option", "ifru:solver.name=cg")
    assert code == 2 and "--option takes METHOD:KEY=VALUE with METHOD in retrain, got 'ifru:solver.name=cg'" in err
    for command in (["demo"], ["bench", "--protocol", "attack"]):  # demo let the last of a key given twice win
        code, _, err = run_cli(capsys, *command, "--methods", "ifru", "--option", "ifru:solver.tol=0.1", "--option",
                               "ifru:solver.tol=0.2", "--out", str(tmp_path / "o"))
        expected = f"graphforget {command[0]}: error: --option ifru:solver.tol=0.2 gives ifru's solver.tol twice\n"
        assert (code, err) == (2, expected), err


def test_bench_data_flags_reach_the_source_and_negatives_are_refused_for_labelled_data(tmp_path, monkeypatch, capsys):
    import graphforget.bench
    monkeypatch.setattr(graphforget.bench, "run_bench", lambda *args, **kwargs: (_ for _ in ()).throw(
        _Captured(args, kwargs)))
    (tmp_path / "ratings.csv").write_text("u,i,r\n1,2,4\n")
    with pytest.raises(_Captured) as caught:
        main(["bench", "--protocol", "deletion", "--data", str(tmp_path / "ratings.csv"), "--format", "csv",
              "--user-col", "u", "--item-col", "i", "--label-col", "r", "--threshold", "3.5", "--model", "simgcl",
              "--ssl-weight", "0.05", "--out", str(tmp_path / "bench")])
    args, kwargs = caught.value.args
    assert (args[1].threshold, args[1].user_col, args[1].label_col) == (3.5, "u", "r")
    assert (kwargs["hparams"].model, kwargs["hparams"].ssl_weight) == ("simgcl", 0.05)
    code, _, err = run_cli(capsys, "bench", "--protocol", "deletion", "--dataset", "synthetic", "--negatives", "1",
                           "--out", str(tmp_path / "b"))
    assert code == 2 and "--negatives is for implicit data; synthetic brings its own 0/1 labels" in err


def test_a_run_recorded_with_a_seed_above_the_range_still_evaluates(trained_run, capsys, tmp_path):
    """Seeds up to 2**63 were accepted before seeds were bounded by 2**32: a run recording 2**32 + 3 (drawn as 3 by
    torch's generators) could no longer be evaluated, with no flag to change the seed it named."""
    model, checkpoint = load_model(trained_run / "model.pt")
    run = tmp_path / "old"
    run.mkdir()
    save_model(model, run / "model.pt", checkpoint["model"], checkpoint["config"],
               run={**checkpoint["run"], "seed": 2**32 + 3})
    (run / "metrics.json").write_text((trained_run / "metrics.json").read_text())
    code, out, _ = run_cli(capsys, "evaluate", "--run", str(run))
    assert code == 0 and json.loads(out)["auc_0"] == json.loads((trained_run / "metrics.json").read_text())["auc_0"]


def test_running_out_of_memory_is_one_line(capsys, tmp_path):
    """torch's allocator raises a RuntimeError, which escaped as a traceback (embeddings of 10**12 columns)."""
    code, _, err = run_cli(capsys, "train", "--dataset", "synthetic", "--embedding-dim", str(10**12), "--out",
                           str(tmp_path / "run"))
    assert code == 1 and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("graphforget: out of memory: ") and "use smaller sizes (--embedding-dim, --batch-size)" in err
    assert not (tmp_path / "run").exists()


def test_negative_threads_are_a_usage_error(capsys):
    code, _, err = run_cli(capsys, "--threads", "-1", "methods")
    assert code == 2 and err == "graphforget: error: --threads must be >= 0, got -1\n"


def test_more_threads_than_the_machine_has_cpus_are_a_usage_error(capsys, monkeypatch):
    """--threads 100000 was accepted and crashed the first large product (a segmentation fault; 16384 made libgomp
    abort: 'Thread creation failed'), and 99999999999 said 'Overflow when unpacking long', naming no flag."""
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    for threads in ("5", "100000", "99999999999"):
        code, _, err = run_cli(capsys, "--threads", threads, "methods")
        assert code == 2 and err == f"graphforget: error: --threads {threads} is more than this machine's 4 CPUs\n"
    code, out, _ = run_cli(capsys, "--threads", "4", "methods")
    assert code == 0 and out.startswith("retrain")


def test_main_gives_a_calling_script_its_thread_count_and_streams_back(capsys, monkeypatch):
    """A script that registers a method and calls main (docs/methods.rst) was left with the command's --threads and
    with stdout and stderr writing "?" for what they cannot encode (a QA probe)."""
    torch.set_num_threads(2)
    streams = (sys.stdout, sys.stderr)
    before = [stream.errors for stream in streams]
    set_threads, counts = torch.set_num_threads, []
    monkeypatch.setattr(torch, "set_num_threads", lambda n: (counts.append(n), set_threads(n)))
    assert main(["--threads", "1", "methods"]) == 0 and counts == [1, 2] and torch.get_num_threads() == 2
    assert [stream.errors for stream in streams] == before != ["replace", "replace"]


def test_an_encoder_for_a_method_without_one_is_refused_before_the_data_is_rebuilt(trained_run, capsys, tmp_path,
                                                                                    monkeypatch):
    """`unlearn --method ifru --encoder FILE` rebuilt the run's data and model (seconds on ML-100K, minutes on larger
    data) before saying --encoder is for unlearnrec: a usage error seen in the flags alone."""
    import graphforget.cli as cli

    def no_data(*args, **kwargs):
        raise AssertionError("the data was rebuilt")
    monkeypatch.setattr(cli, "prepare_attack_data", no_data)
    (tmp_path / "encoder.pt").write_bytes(b"")
    code, out, err = run_cli(capsys, "unlearn", "--run", str(trained_run), "--method", "ifru", "--encoder",
                             str(tmp_path / "encoder.pt"), "--out", str(tmp_path / "c"))
    assert (code, out, err) == (2, "", "graphforget: error: --encoder is for unlearnrec, not ifru\n")
    assert not (tmp_path / "c").exists()


def test_run_attack_takes_empty_options_of_a_method_not_run_as_no_options(monkeypatch):
    """Only options given for a method not run are refused: an empty dict is no options (as the bench reads
    it), and run_attack goes on to train."""

    class Trained(Exception):
        pass

    def stop(*args, **kwargs):
        raise Trained

    data = prepare_attack_data("synthetic", attack_ratio=0.02, seed=0)
    monkeypatch.setattr("graphforget.protocols.attack.train", stop)
    with pytest.raises(Trained):
        run_attack(data, Hyperparameters(embedding_dim=4), methods=["ifru"], options={"scif": {}, "ifru": {}})


def test_run_attack_gives_no_prediction_gap_to_an_original_within_rounding_of_retrain(monkeypatch):
    """One rule for every protocol (metrics.prediction_gap): the attack protocol divided by any Original-to-Retrain
    distance above 0, where the harness's protocols give none under 4 float32 steps per test pair."""
    data = prepare_attack_data("synthetic", attack_ratio=0.02, seed=0)
    distances = iter([1e-7, 0.0, 1e-6])  # the Original's to Retrain, then each row's: retrain, ifru
    monkeypatch.setattr("graphforget.protocols.attack.prediction_distance", lambda *args: next(distances))
    report = run_attack(data, Hyperparameters(embedding_dim=4, train={"epochs": 2}), methods=["ifru"])
    assert list(report.methods) == ["retrain", "ifru"]
    assert all(math.isnan(row.prediction_gap) for row in report.methods.values())


# ------------------------------------------ each test below failed under a mutation the suite had passed (qa111)

def _capture(monkeypatch, target):
    def stop(*args, **kwargs):
        raise _Captured(args, kwargs)
    monkeypatch.setattr(target, stop)


# --- argument types ---------------------------------------------------------------------------------

def test_attack_ratio_of_one_is_refused_as_the_argument_is_parsed(capsys, tmp_path, monkeypatch):
    """(0, 1) is open: a ratio of 1 flips every label A mutation (< 1 -> <= 1) let it through to the data."""
    _capture(monkeypatch, "graphforget.cli.prepare_attack_data")
    for ratio in ("1", "1.0"):
        code, out, err = run_cli(capsys, "train", "--dataset", "synthetic", "--attack-ratio", ratio,
                                 "--out", tmp_path / "o")
        assert code == 2 and "argument --attack-ratio: attack ratio must be in (0, 1)" in err, err
        assert out == ""


def test_negatives_below_zero_are_refused_as_the_argument_is_parsed(capsys, tmp_path):
    """A mutation of _non_negative's bound (off by one) accepted --negatives -1."""
    (tmp_path / "t.txt").write_text("1 2 1\n")
    code, _, err = run_cli(capsys, "fit", "--data", tmp_path / "t.txt", "--format", "triples", "--negatives", "-1",
                           "--out", tmp_path / "o")
    assert code == 2 and "argument --negatives: expected an integer >= 0, got -1" in err, err


def test_delimiter_tab_spelled_out_is_a_tab():
    """_one_character's docstring: '\\t' (as a shell passes it) or 'tab' is a tab. A mutation dropped 'tab'."""
    parser = cli.build_parser()
    for spelled in ("tab", "\\t", "\t"):
        args = parser.parse_args(["fit", "--data", "x", "--format", "csv", "--delimiter", spelled, "--out", "o"])
        assert args.delimiter == "\t"


def test_an_empty_world_size_is_one_process(capsys, monkeypatch):
    """WORLD_SIZE set but empty is no torchrun: a mutation refused it."""
    monkeypatch.setenv("WORLD_SIZE", "")
    code, out, err = run_cli(capsys, "methods")
    assert code == 0 and err == "" and out.startswith("retrain")


# --- parse_options ------------------------------------------------------------------------------------

def test_parse_options_strips_keys_and_values():
    """A mutation kept the spaces of a value ('solver.name = cg' as ' cg')."""
    assert cli.parse_options(["solver.name = cg ", " prune=0.5,0.5"]) == {"solver.name": "cg", "prune": "0.5,0.5"}


def test_an_option_without_a_key_is_refused_as_not_key_value():
    """A mutation passed '=5' on as an option named ''."""
    for pair in ("=5", "  =5"):
        with pytest.raises(UsageError, match=re.escape(f"options are KEY=VALUE, got {pair!r}")):
            cli.parse_options([pair])


# --- printed figures --------------------------------------------------------------------------------

def test_fmt_prints_a_dash_for_nan_and_four_decimals():
    """_fmt's comment: not measured or NaN is '-'. A mutation printed 'nan'."""
    assert cli._fmt(float("nan")) == "-" and cli._fmt(None) == "-" and cli._fmt(float("nan"), pct=True) == "-"
    assert cli._fmt(0.123456) == "0.1235" and cli._fmt(0.5, pct=True) == "50%"


def test_count_uses_the_plural_for_zero():
    """English: 0 edges, 1 edge, 2 edges. A mutation printed '0 edge'."""
    assert [cli._count(n, "edge") for n in (0, 1, 2)] == ["0 edges", "1 edge", "2 edges"]
    assert cli._count(0, "validation or test pair", "validation and test pairs") == "0 validation and test pairs"


def test_forgotten_counts_listed_pairs_not_their_ids():
    """An edges request holds [2, K] pairs: K listed edges. A mutation counted 2K."""
    from graphforget.workflow import Request
    request = Request("edges", ids=torch.tensor([[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]),
                      edges=torch.tensor([[0, 1], [5, 6]]))
    assert cli._forgotten(request) == "2 of 5 listed edges"
    users = Request("users", ids=torch.tensor([3]), edges=torch.zeros(2, 7, dtype=torch.long))
    assert cli._forgotten(users) == "7 edges of 1 user"


def test_train_names_its_steps_epochs_or_lbfgs_iterations(capsys, tmp_path):
    """A mutation swapped 'epochs' and 'L-BFGS iterations' in train's last figure line."""
    code, out, err = run_cli(capsys, "--threads", "1", "train", "--dataset", "synthetic", "--quiet", "--out",
                             tmp_path / "run", *TINY)
    assert code == 0, err
    epochs = json.loads((tmp_path / "run" / "metrics.json").read_text())["epochs"]
    assert re.search(rf"train \d+\.\ds \({epochs} epochs?\)\n", out), out


def test_demo_says_one_cpu_thread_in_the_singular(capsys, tmp_path, monkeypatch):
    """A mutation printed '(1 CPU threads)'."""
    _capture(monkeypatch, "graphforget.cli.run_attack")
    with pytest.raises(_Captured):
        main(["--threads", "1", "demo", "--dataset", "synthetic", "--methods", "retrain", "--quiet", "--out",
              str(tmp_path / "o"), *TINY])
    assert "(1 CPU thread)\n" in capsys.readouterr().out


def test_demo_row_shows_the_fit_seconds_of_a_sharded_method():
    """_row: a method that trains an ensemble first shows '(+F fit)' after its seconds. A mutation dropped it."""
    metrics = {"auc_0": 0.7, "auc_1": 0.6, "auc_2": 0.5, "info": {}}
    row = cli._row("mf", "sisa", metrics, {"auc_0": 0.5, "auc_1": 1.0, "auc_2": 0.25}, 1.234, 5.678)
    assert row["seconds"] == "1.23 (+5.68 fit)"
    assert row["completeness"] == "50% / 100% / 25%" and row["trusted"] == "-"
    assert cli._row("mf", "ifru", metrics, None, 0.5)["seconds"] == "0.50"


# --- bench ------------------------------------------------------------------------------------------

def test_bench_refuses_file_flags_without_data(capsys, tmp_path, monkeypatch):
    """--threshold and --format describe a --data file: without one they were silently ignored (a mutation)."""
    import graphforget.bench
    monkeypatch.setattr(graphforget.bench, "run_bench", lambda *a, **k: (_ for _ in ()).throw(_Captured(a, k)))
    code, _, err = run_cli(capsys, "bench", "--protocol", "deletion", "--dataset", "synthetic", "--threshold", "3",
                           "--out", tmp_path / "b")
    assert code == 2 and "need --data" in err, err
    code, _, err = run_cli(capsys, "bench", "--protocol", "deletion", "--dataset", "synthetic", "--format",
                           "triples", "--out", tmp_path / "b")
    assert code == 2 and "--data and --format go together" in err, err


def test_bench_runs_three_seeds_by_default(tmp_path, monkeypatch):
    """--help: 'seeds 0..N-1 (default: 3)'. A mutation changed the default."""
    import graphforget.bench
    monkeypatch.setattr(graphforget.bench, "run_bench", lambda *a, **k: (_ for _ in ()).throw(_Captured(a, k)))
    with pytest.raises(_Captured) as caught:
        main(["bench", "--protocol", "deletion", "--dataset", "synthetic", "--out", str(tmp_path / "b")])
    args, _ = caught.value.args
    assert args[4] == 3


# --- demo defaults ------------------------------------------------------------------------------------

def test_demo_passes_its_embedding_dim_and_default_attack_ratio(capsys, tmp_path, monkeypatch):
    """demo --help: attack ratio 'default: 0.02' (a mutation changed it); --embedding-dim reaches the model (a mutation
    dropped it)."""
    import graphforget.cli as gcli
    real = gcli.prepare_attack_data
    seen = {}

    def recording(dataset, root, ratio, *args, **kwargs):
        seen["ratio"] = ratio
        return real(dataset, root, ratio, *args, **kwargs)
    monkeypatch.setattr(gcli, "prepare_attack_data", recording)
    monkeypatch.setattr(gcli, "run_attack", lambda data, hparams, *a, **k: (_ for _ in ()).throw(_Captured(hparams)))
    with pytest.raises(_Captured) as caught:
        main(["--threads", "1", "demo", "--dataset", "synthetic", "--methods", "retrain", "--quiet", "--out",
              str(tmp_path / "o"), "--epochs", "2", "--embedding-dim", "6"])
    hparams = caught.value.args[0]
    assert seen["ratio"] == 0.02 and hparams.embedding_dim == 6 and hparams.train.epochs == 2


# --- --threads ---------------------------------------------------------------------------------------

def test_the_default_thread_count_is_one(capsys, monkeypatch):
    """--help: '--threads (default: 1 ...)'. A mutation made the default 0 (torch's choice)."""
    set_threads, counts = torch.set_num_threads, []
    before = torch.get_num_threads()
    monkeypatch.setattr(torch, "set_num_threads", lambda n: (counts.append(n), set_threads(n)))
    assert main(["methods"]) == 0
    assert counts == [1, before]


# --- methods -----------------------------------------------------------------------------------------

def test_methods_says_what_a_run_gives_each_method(capsys):
    """FineTune's config has train.* and no seed; UnlearnRec's a seed and no train.* (a mutation swapped the two
    texts). FineTune leaves train.epochs etc. unread: not listed as options (a mutation listed them)."""
    from graphforget.config import describe
    from graphforget.unlearn import METHODS
    names = {m: [r.name for r in describe(METHODS[m].Config)] for m in ("finetune", "unlearnrec")}
    assert any(n.startswith("train.") for n in names["finetune"]) and "seed" not in names["finetune"]
    assert "seed" in names["unlearnrec"] and not any(n.startswith("train.") for n in names["unlearnrec"])
    assert main(["methods", "finetune"]) == 0
    out = capsys.readouterr().out
    assert "On a run (`unlearn --run`), train.* start from the run's own training.\n" in out
    for unread in METHODS["finetune"].unread:
        assert f"  {unread} (" not in out, unread
    assert "Not read by the method: " in out
    assert main(["methods", "unlearnrec"]) == 0
    assert "On a run (`unlearn --run`), seed starts from the run's seed.\n" in capsys.readouterr().out


# --- fit / forget / verify ---------------------------------------------------------------------------

def test_fit_says_items_left_out_even_when_no_user_is(capsys, tmp_path, monkeypatch):
    """The 'left out' line is due when users OR items were left out (a mutation: only when both)."""
    import graphforget.workflow as workflow
    metrics = {"train_interactions": 10, "users": 3, "items": 4, "train_edges": 10, "epochs": 1, "train_seconds": 0.1,
               "val_auc": 0.5, "test_auc": 0.5, "users_left_out": 0, "items_left_out": 2}
    monkeypatch.setattr(workflow, "fit_on_file", lambda *a, **k: SimpleNamespace(metrics=metrics, path=tmp_path / "o"))
    (tmp_path / "t.txt").write_text("1 2 1\n")
    code, out, err = run_cli(capsys, "fit", "--data", tmp_path / "t.txt", "--format", "triples", "--out",
                             tmp_path / "o")
    assert code == 0, err
    assert "left out: 0 users and 2 items of the file" in out


def test_methods_of_an_unknown_name_is_a_usage_error(capsys):
    """`graphforget methods nope`: exit 2 and one line naming the methods."""
    code, out, err = run_cli(capsys, "methods", "nope")
    assert code == 2 and out == ""
    assert err == f"graphforget: error: unknown method 'nope' (choose from {', '.join(METHODS)})\n"


def test_methods_header_says_needs_fit_exactly_for_the_methods_that_train_before_a_request(capsys):
    """SISA, RecEraser (ensembles) and UnlearnRec (its encoder) must be fitted first; Retrain, IFRU, SCIF, FineTune
    not."""
    expected = {"retrain": False, "ifru": False, "scif": False, "finetune": False,
                "sisa": True, "receraser": True, "unlearnrec": True}
    for name, needs in expected.items():
        code, out, _ = run_cli(capsys, "methods", name)
        assert code == 0
        first = out.splitlines()[0]
        assert first.startswith(f"{name}: ") and first.endswith(" (needs fit)") == needs, first


def test_methods_scif_lists_the_fields_it_fixes(capsys):
    """SCIF fixes hops=0, no spillover, no pruning, the original's curvature (its definition: the involved nodes'
    embeddings only): the listing says so, and does not offer them as options."""
    code, out, _ = run_cli(capsys, "methods", "scif")
    assert code == 0
    assert "Fixed by the method: hops=0, spillover=False, prune=None, curvature_of='original'.\n" in out
    for name in ("hops", "spillover", "prune", "curvature_of"):
        assert f"\n  {name} (" not in out


def test_methods_listing_gives_each_methods_first_paragraph(capsys):
    """The listing is one line a method: its name and the first paragraph of its docstring."""
    code, out, _ = run_cli(capsys, "methods")
    assert code == 0
    lines = out.splitlines()
    for line, (name, cls) in zip(lines, METHODS.items()):
        first_paragraph = " ".join(inspect.cleandoc(cls.__doc__).split("\n\n")[0].split())
        assert line.split()[0] == name
        # the first words of the docstring, markup aside, open the line (e.g. "SISA (Bourtoule et al., ...")
        assert line[12:].strip().split()[:2] == first_paragraph.replace("``", "").split()[:2], line
    assert lines[len(METHODS)] == ""


@pytest.mark.parametrize("count", ["0", "1"])
def test_bench_refuses_any_negatives_for_a_labelled_dataset_zero_too(capsys, tmp_path, monkeypatch, count):
    """--negatives N (N >= 0) is for implicit data; a protocol dataset brings its own 0/1 labels. '--negatives 0'
    is given all the same, and was accepted."""
    import graphforget.bench
    monkeypatch.setattr(graphforget.bench, "run_bench", lambda *a, **k: pytest.fail("the bench ran"))
    code, out, err = run_cli(capsys, "bench", "--protocol", "deletion", "--dataset", "synthetic", "--negatives", count,
                             "--out", tmp_path / "b")
    assert code == 2 and err == ("graphforget bench: error: --negatives is for implicit data; synthetic brings its "
                                 "own 0/1 labels\n")


class _Stop(Exception):
    pass


def _stop(seen):
    def record(*args, **kwargs):
        seen.append(kwargs.get("progress"))
        raise _Stop
    return record


def test_bench_draws_progress_bars_unless_quiet(tmp_path, monkeypatch):
    """bench --help: '--quiet: no progress bars'."""
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)  # bars show on a terminal only
    import graphforget.bench
    seen = []
    monkeypatch.setattr(graphforget.bench, "run_bench", _stop(seen))
    for quiet in ([], ["--quiet"]):
        with pytest.raises(_Stop):
            main(["--threads", "1", "bench", "--protocol", "deletion", "--dataset", "synthetic", *quiet,
                  "--out", str(tmp_path / "b")])
    assert seen == [True, False]


def test_verify_draws_progress_bars_unless_quiet(tmp_path, monkeypatch):
    """verify --help: '--quiet: no progress bars'."""
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)  # bars show on a terminal only
    import graphforget.workflow
    seen = []
    monkeypatch.setattr(graphforget.workflow, "verify_run", _stop(seen))
    (tmp_path / "run.json").write_text("{}")
    for quiet in ([], ["--quiet"]):
        with pytest.raises(_Stop):
            main(["--threads", "1", "verify", "--run", str(tmp_path), *quiet])
    assert seen == [True, False]


def test_a_bad_option_lists_the_known_options_without_progress(capsys):
    """Progress bars are the command's: an unknown option's message lists the config's fields but not 'progress',
    which the command line refuses."""
    import dataclasses
    from graphforget.unlearn import UnlearnRecConfig
    code, out, err = run_cli(capsys, "demo", "--dataset", "synthetic", "--methods", "unlearnrec", "--option",
                             "unlearnrec:bogus=1")
    assert code == 2 and err.count("\n") == 1
    known = err[err.index("(known: ") + len("(known: "):err.rindex(")")].split(", ")
    assert known == [f.name for f in dataclasses.fields(UnlearnRecConfig) if f.name != "progress"]


def test_verbose_log_lines_are_not_passed_to_a_callers_root_handler(capsys, monkeypatch):
    """-v prints the package's log on stderr; a calling script's root handler does not get each line again
    (it would print it twice)."""
    import logging

    class Collect(logging.Handler):
        def __init__(self):
            super().__init__()
            self.records = []

        def emit(self, record):
            self.records.append(record)
    collect = Collect()
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [collect])

    def logs(args):
        logging.getLogger("graphforget.qa").info("hello from the command")
        return 0
    monkeypatch.setattr("graphforget.cli.cmd_methods", logs)
    code, out, err = run_cli(capsys, "-v", "methods")
    assert code == 0 and err == "INFO graphforget.qa: hello from the command\n"
    assert collect.records == []


def test_bench_option_of_an_unknown_method_names_the_benchs_methods(capsys, tmp_path, monkeypatch):
    """bench --option METHOD:KEY=VALUE of an unknown method: one line naming every method bench runs, retrain_seed
    (a Retrain from another seed, which takes options) included."""
    import graphforget.bench
    from graphforget.bench import BENCH_METHODS
    monkeypatch.setattr(graphforget.bench, "run_bench", lambda *a, **k: pytest.fail("the bench ran"))
    code, out, err = run_cli(capsys, "bench", "--protocol", "deletion", "--dataset", "synthetic", "--option",
                             "nope:x=1", "--out", tmp_path / "b")
    assert code == 2 and err == (f"graphforget: error: unknown method 'nope' (choose from "
                                 f"{', '.join([*METHODS, *BENCH_METHODS])})\n")
    assert "retrain_seed" in err


def test_bench_takes_the_largest_seed_count_and_refuses_one_more(capsys, tmp_path, monkeypatch):
    """--seeds must be in [1, MAX_SEED_COUNT]: the bound itself is accepted."""
    import graphforget.bench
    from graphforget.bench.harness import MAX_SEED_COUNT
    seen = []

    def record(*args, **kwargs):
        seen.append(args[4])
        raise _Stop
    monkeypatch.setattr(graphforget.bench, "run_bench", record)
    with pytest.raises(_Stop):
        main(["--threads", "1", "bench", "--protocol", "deletion", "--dataset", "synthetic", "--seeds",
              str(MAX_SEED_COUNT), "--out", str(tmp_path / "b")])
    assert seen == [MAX_SEED_COUNT]
    code, _, err = run_cli(capsys, "bench", "--protocol", "deletion", "--dataset", "synthetic", "--seeds",
                           str(MAX_SEED_COUNT + 1), "--out", tmp_path / "b")
    assert code == 2 and err == (f"graphforget bench: error: --seeds must be in [1, {MAX_SEED_COUNT}], got "
                                 f"{MAX_SEED_COUNT + 1}\n")


def test_bench_exits_1_and_says_so_when_a_cell_failed(capsys, tmp_path, monkeypatch):
    """A failed cell is a hole in the table: bench exited 0 on it, and a job reading the status published a table
    with a method missing (qa139). A run whose cells all ran exits 0."""
    import graphforget.bench
    from graphforget.bench import BenchResult
    from graphforget.bench.harness import aggregate

    def run(*args, failing=1, **kwargs):
        cells = [{"cell": {"protocol": "deletion", "dataset": "synthetic", "model": "mf", "method": "ifru",
                           "seed": seed, "params": {"protocol": {}}},
                  "result": {"error": "ValueError: x"} if seed < failing else {"auc_0": 0.7}, "cached": False}
                 for seed in range(3)]
        hparams = {"model": "mf", "train": {"epochs": 3}}
        return BenchResult("deletion", "synthetic", "mf", {}, hparams, cells, aggregate(cells), files=["r.md"])
    for failing, status in ((1, 1), (0, 0)):
        monkeypatch.setattr(graphforget.bench, "run_bench", lambda *a, **k: run(*a, failing=failing, **k))
        code, out, err = run_cli(capsys, "--threads", "1", "bench", "--protocol", "deletion", "--dataset",
                                 "synthetic", "--quiet", "--out", tmp_path / "b")
        assert code == status and "3 cells (0 read from the cache)" in out
        assert err == ("graphforget bench: 1 of 3 cells failed: their errors are under 'Failed cells' in results.md\n"
                       if failing else "")


def test_bench_writes_into_an_out_that_is_a_mount_point(tmp_path, monkeypatch):
    """bench writes its cells into --out (it is not renamed into place), so a mount point is a fine --out; the
    published commands refuse one."""
    import os
    import graphforget.bench
    out = tmp_path / "mnt"
    out.mkdir()
    real = os.path.ismount
    monkeypatch.setattr(os.path, "ismount", lambda p: Path(p) == out or real(p))
    seen = []
    monkeypatch.setattr(graphforget.bench, "run_bench", _stop(seen))
    with pytest.raises(_Stop):
        main(["--threads", "1", "bench", "--protocol", "deletion", "--dataset", "synthetic", "--out", str(out)])
    assert len(seen) == 1  # run_bench was reached


def test_train_fit_and_forget_draw_progress_bars_unless_quiet(tmp_path, monkeypatch):
    """--quiet: 'no progress bars', for train, fit and forget alike."""
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)  # bars show on a terminal only
    import graphforget.cli as gcli
    import graphforget.workflow as workflow
    seen = {"train": [], "fit": [], "forget": []}

    def train(model, graph, objective, config, val):
        seen["train"].append(config.progress)
        raise _Stop
    monkeypatch.setattr(gcli, "train", train)
    monkeypatch.setattr(workflow, "fit_on_file", _stop(seen["fit"]))
    monkeypatch.setattr(workflow, "forget", _stop(seen["forget"]))
    (tmp_path / "t.txt").write_text("1 2 1\n")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "run.json").write_text("{}")
    for i, quiet in enumerate(([], ["--quiet"])):
        commands = (["train", "--dataset", "synthetic", "--epochs", "1", "--embedding-dim", "4",
                     "--out", str(tmp_path / f"t{i}")],
                    ["fit", "--data", str(tmp_path / "t.txt"), "--format", "triples",
                     "--out", str(tmp_path / f"f{i}")],
                    ["forget", "--run", str(tmp_path / "run"), "--users", "u1", "--method", "scif",
                     "--out", str(tmp_path / f"g{i}")])
        for argv in commands:
            with pytest.raises(_Stop):
                main(["--threads", "1", *argv, *quiet])
    assert seen == {"train": [True, False], "fit": [True, False], "forget": [True, False]}
