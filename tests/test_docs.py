"""The documentation: Sphinx builds without warnings, the README's commands and examples are the real ones."""
from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
INSTALL_AND_RUN = "pip install torch==2.13.0 && pip install . && graphforget demo"
INSTALL_AND_TEST = 'pip install torch==2.13.0 && pip install ".[test,docs]" && python -m pytest -m "not slow" -q'


def rst_python_blocks(path: Path) -> list[str]:
    """The bodies of the ``.. code-block:: python`` directives of an rst file."""
    blocks, lines = [], path.read_text().splitlines()
    for i, line in enumerate(lines):
        if line.strip() == ".. code-block:: python":
            body = []
            for following in lines[i + 1:]:
                if following.strip() and not following.startswith(" "):
                    break
                body.append(following)
            blocks.append(textwrap.dedent("\n".join(body)))
    return blocks


def markdown_blocks(path: Path, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", path.read_text(), flags=re.S)




def test_sphinx_builds_without_warnings(tmp_path):
    pytest.importorskip("sphinx", reason="sphinx is not installed (pip install '.[docs]')")
    proc = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", str(DOCS),
                           str(tmp_path / "html")], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, f"sphinx-build -W failed:\n{proc.stderr[-4000:]}"
    api = (tmp_path / "html" / "api.html").read_text()
    for name in ("prepare_attack_data", "IFRUConfig", "evaluate_auc", "Recommender", "register_unlearner"):
        assert name in api, f"{name} missing from the API reference"


def test_readme_starts_with_the_two_commands_and_ci_runs_the_test_command():
    readme = (REPO / "README.md").read_text()
    first_block = markdown_blocks(REPO / "README.md", "bash")[0].strip().splitlines()
    assert first_block == [INSTALL_AND_RUN, INSTALL_AND_TEST]
    assert readme.index(INSTALL_AND_RUN) < 60  # right under the title
    ci = (REPO / ".ci" / "run").read_text()
    assert INSTALL_AND_TEST in ci.splitlines()
    assert "set -euo pipefail" in ci and (REPO / ".ci" / "run").stat().st_mode & 0o111


def test_custom_model_and_data_examples_run(one_thread):
    from graphforget.models import MODELS
    from graphforget.pipeline import UNLEARNERS
    namespace: dict = {}
    try:
        for block in rst_python_blocks(DOCS / "custom_model.rst"):
            exec(compile(block, "custom_model.rst", "exec"), namespace)
        result, model, split, objective = (namespace[k] for k in ("result", "model", "split", "objective"))
        assert result.info["solver"]["converged"] and result.info["affected_terms"] > 0
        assert model.receptive_field == 2 and MODELS["layer_attention_gcn"] is namespace["LayerAttentionGCN"]

        for block in rst_python_blocks(DOCS / "data.rst"):
            exec(compile(block, "data.rst", "exec"), namespace)
        assert namespace["request"].size(1) > 0 and isinstance(namespace["source"], str)

        # methods.rst: the plug-in example (the run_experiment call is the benchmark's, not run here)
        for block in rst_python_blocks(DOCS / "methods.rst"):
            if "run_experiment(" not in block:
                exec(compile(block, "methods.rst", "exec"), namespace)
        assert "nothing" in UNLEARNERS
        from graphforget.data import random_edges
        from graphforget.pipeline import build_unlearner
        unlearner = build_unlearner("nothing", model, split.train, objective)
        out = unlearner.unlearn(random_edges(split.train, 0.05, seed=1))
        assert torch.equal(out.model.user_emb.weight, model.user_emb.weight)
    finally:
        MODELS.pop("layer_attention_gcn", None)
        UNLEARNERS.pop("nothing", None)


def test_readme_tour_runs_on_ml100k(data_root, one_thread, monkeypatch):
    monkeypatch.setenv("GRAPHFORGET_DATA", str(data_root))
    namespace: dict = {}
    for block in markdown_blocks(REPO / "README.md", "python"):
        exec(compile(block, "README.md", "exec"), namespace)
    original, reference = namespace["original"], namespace["reference"]
    assert reference["auc_0"] > original["auc_0"]  # retraining removes the attack's damage
    report = namespace["report"]
    assert set(report["methods"]) == {"retrain", "ifru", "scif"}
    assert report["methods"]["ifru"]["auc_0"] == pytest.approx(namespace["unlearned"]["auc_0"], abs=1e-9)
    # The chained deletion requests: both users' interactions, and only theirs, are gone.
    before = namespace["split"].train["user", "rates", "item"].edge_index[0]  # the attacked graph's edges
    after = namespace["train_graph"]["user", "rates", "item"].edge_index[0]
    gone = torch.isin(before, torch.tensor([3, 17]))
    assert gone.any() and not torch.isin(after, torch.tensor([3, 17])).any()
    assert after.numel() == before.numel() - int(gone.sum())
