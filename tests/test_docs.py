"""The documentation: Sphinx builds without warnings, the README's commands and examples are the real ones."""
from __future__ import annotations

import math
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

#: Every example must learn: a NoSignalWarning from a page's code fails its test.
pytestmark = pytest.mark.filterwarnings("error::graphforget.train.NoSignalWarning")


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
    pytest.importorskip("sphinx-mathjax-offline", reason="sphinx-mathjax-offline is not installed (pip install '.[docs]')")
    html = tmp_path / "html"
    proc = subprocess.run([sys.executable, "-m", "sphinx", "-W", "-n", "--keep-going", "-q", "-b", "html", str(DOCS),
                           str(html)], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, f"sphinx-build -W failed:\n{proc.stderr[-4000:]}"
    api = (html / "api.html").read_text()
    for name in ("prepare_attack_data", "IFRUConfig", "evaluate_auc", "Recommender", "graphforget.unlearn.register",
                 "PyGRecommender", "run_attack", "Stopwatch", "default_hparams", "build_config"):
        assert name in api, f"{name} missing from the API reference"
    for page in ("benchmarks", "tutorials/forget_a_user", "tutorials/benchmark_methods", "tutorials/own_model"):
        assert (html / f"{page}.html").is_file(), f"docs page {page} was not built"
    assert_mathjax_is_local(html, html / "methods.html")


def assert_mathjax_is_local(html: Path, page: Path) -> None:
    """Formulas render offline: the page loads MathJax from the build's own _static, no script from the web."""
    scripts = re.findall(r'<script[^>]*\bsrc="([^"]+)"', page.read_text())
    mathjax = [src for src in scripts if "mathjax" in src.lower()]
    assert mathjax, f"{page.name} loads no MathJax: {scripts}"
    assert not [src for src in scripts if re.match(r"(https?:)?//", src)], f"{page.name} loads scripts from the web: {scripts}"
    for src in mathjax:
        assert (page.parent / src.split("?")[0]).is_file(), f"{src} is not in the build"
    fonts = html / "_static" / "mathjax" / "output" / "chtml" / "fonts" / "woff-v2"
    assert any(fonts.glob("*.woff")), "MathJax's fonts are not in the build"


def test_readme_starts_with_the_two_commands_and_ci_runs_the_test_command():
    readme = (REPO / "README.md").read_text()
    first_block = markdown_blocks(REPO / "README.md", "bash")[0].strip().splitlines()
    assert first_block == [INSTALL_AND_RUN, INSTALL_AND_TEST]
    assert readme.index(INSTALL_AND_RUN) < 60  # right under the title
    ci = (REPO / ".ci" / "run").read_text()
    assert INSTALL_AND_TEST in ci.splitlines()
    assert "set -euo pipefail" in ci and (REPO / ".ci" / "run").stat().st_mode & 0o111


def _ratings_csv(path: Path) -> None:
    """A ratings file for the workflow example: planted communities, 5 for a positive pair, 1 for a negative,
    user 0 named alice."""
    from graphforget.data import EDGE, planted_communities
    graph = planted_communities(num_users=120, num_items=120, interactions_per_user=20, seed=2)
    pairs, labels = graph[EDGE].edge_index.t().tolist(), graph[EDGE].edge_label.tolist()
    rows = [f"{'alice' if u == 0 else f'u{u}'},m{i},{5 if y else 1}" for (u, i), y in zip(pairs, labels)]
    path.write_text("user,item,rating\n" + "\n".join(rows) + "\n")


def test_custom_model_and_data_examples_run(one_thread, tmp_path, monkeypatch):
    from graphforget.data import EDGE
    from graphforget.models import MODELS, PyGRecommender
    from graphforget.runs import load_run
    from graphforget.unlearn import METHODS
    namespace: dict = {}
    monkeypatch.chdir(tmp_path)  # the workflow example reads ratings.csv and writes runs/
    _ratings_csv(tmp_path / "ratings.csv")
    try:
        for block in rst_python_blocks(DOCS / "custom_model.rst"):
            exec(compile(block, "custom_model.rst", "exec"), namespace)
        result, model, split, objective = (namespace[k] for k in ("result", "model", "split", "objective"))
        assert result.info["solver"][0]["converged"] and result.info["affected_terms"] > 0
        assert model.receptive_field == 2 and MODELS["layer_attention_gcn"] is namespace["LayerAttentionGCN"]
        hetero = namespace["forgotten_by_ifru"]  # to_hetero's layers are dense parameters: solved for, and moved
        moved = [name for name, p in hetero.model.gnn.named_parameters()
                 if not torch.equal(p, namespace["hetero"].gnn.get_parameter(name))]
        assert hetero.info["trusted"] and moved
        forgotten = namespace["forgotten"]  # the PyG model's run: alice's pairs are gone, and it loads again
        child = load_run(forgotten.path)
        assert isinstance(child.model, PyGRecommender) and forgotten.audit["trusted"] is True
        assert "alice" not in {child.graph["user"].raw_id[u] for u in child.graph[EDGE].edge_index[0].tolist()}

        for block in rst_python_blocks(DOCS / "data.rst"):
            exec(compile(block, "data.rst", "exec"), namespace)
        assert namespace["request"].size(1) > 0 and isinstance(namespace["source"], str)

        # methods.rst: the plug-in example (the run_attack call is the benchmark's, not run here)
        for block in rst_python_blocks(DOCS / "methods.rst"):
            if "run_attack(" not in block:
                exec(compile(block, "methods.rst", "exec"), namespace)
        assert "nothing" in METHODS
        from graphforget.data import random_edges
        from graphforget.unlearn import build_unlearner
        unlearner = build_unlearner("nothing", model, split.train, objective)
        out = unlearner.unlearn(random_edges(split.train, 0.05, seed=1))
        assert torch.equal(out.model.user_emb.weight, model.user_emb.weight)
    finally:
        MODELS.pop("layer_attention_gcn", None)
        MODELS.pop("pyg_lightgcn", None)
        METHODS.pop("nothing", None)


def test_readme_quick_start_runs_without_data(one_thread):
    namespace: dict = {}
    for block in markdown_blocks(REPO / "README.md", "python"):
        exec(compile(block, "README.md", "exec"), namespace)
    original, reference = namespace["original"], namespace["reference"]
    assert reference["auc_0"] > original["auc_0"]  # retraining removes the attack's damage
    # The chained deletion requests: both users' interactions, and only theirs, are gone.
    before = namespace["split"].train["user", "rates", "item"].edge_index[0]  # the attacked graph's edges
    after = namespace["train_graph"]["user", "rates", "item"].edge_index[0]
    gone = torch.isin(before, torch.tensor([3, 17]))
    assert gone.any() and not torch.isin(after, torch.tensor([3, 17])).any()
    assert after.numel() == before.numel() - int(gone.sum())
    # The PyG model: user 5's interactions are gone from the graph of the result.
    assert not torch.isin(namespace["result"].graph["user", "rates", "item"].edge_index[0], torch.tensor([5])).any()


def test_readme_quick_start_is_the_attack_protocol(one_thread):
    """run_attack on the synthetic data with the preset recipe is the README's quick start, step for step."""
    namespace: dict = {}
    for block in markdown_blocks(REPO / "README.md", "python")[:1]:
        exec(compile(block, "README.md", "exec"), namespace)
    from graphforget.presets import default_hparams
    from graphforget.protocols.attack import prepare_attack_data, run_attack
    data = prepare_attack_data("synthetic", attack_ratio=0.02, seed=0)
    report = run_attack(data, default_hparams("mf", "synthetic"), ["retrain", "ifru", "scif"], seed=0).to_dict()
    assert set(report["methods"]) == {"retrain", "ifru", "scif"}
    assert report["methods"]["ifru"]["auc_0"] == pytest.approx(namespace["unlearned"]["auc_0"], abs=1e-9)


def test_tutorials_run(one_thread):
    """The tutorials' code, page by page, with the claims each page makes."""
    quick: dict = {}
    for block in rst_python_blocks(DOCS / "quickstart.rst"):
        exec(compile(block, "quickstart.rst", "exec"), quick)
    assert list(quick["report"].methods) == ["retrain", "ifru", "scif"]
    assert quick["report"].methods["ifru"].scores["auc_0"] == pytest.approx(quick["unlearned"]["auc_0"], abs=1e-9)

    page = DOCS / "tutorials" / "forget_a_user.rst"
    forget: dict = {}
    for block in rst_python_blocks(page):
        exec(compile(block, page.name, "exec"), forget)
    assert forget["retrained"].graph["user", "rates", "item"].edge_index.size(1) == \
        forget["split"].train["user", "rates", "item"].edge_index.size(1) - forget["request"].size(1)
    assert forget["reference"] < forget["before"]  # Retrain, too, forgets the user's items
    assert forget["result"].info["trusted"] and "val_auc" in forget["result"].info  # the validation test ran
    assert forget["report"].mia_auc == 0.5 and math.isnan(forget["report"].below_match)  # as the page says
    assert [round(bound, 2) for bound in forget["report"].mia_auc_interval] == [0.33, 0.67]
    assert forget["report"].unchanged is False  # the model moved: IFRU zeroed the user's row
    assert not torch.isin(forget["train_graph"]["user", "rates", "item"].edge_index[0],
                          torch.tensor([3, 17, 42])).any()

    page = DOCS / "tutorials" / "benchmark_methods.rst"
    bench: dict = {}
    for block in rst_python_blocks(page):
        exec(compile(block, page.name, "exec"), bench)
    report = bench["report"]
    assert list(report.methods) == ["retrain", "ifru", "scif", "finetune"]
    assert report.methods["retrain"].completeness["auc_0"] == pytest.approx(1.0)
    assert bench["watch"].seconds > 0

    page = DOCS / "tutorials" / "own_model.rst"
    own: dict = {}
    for block in rst_python_blocks(page):
        exec(compile(block, page.name, "exec"), own)
    assert own["model"].receptive_field == 2
    assert not torch.isin(own["result"].graph["user", "rates", "item"].edge_index[0], torch.tensor([3])).any()


def test_docstrings_have_no_invalid_escapes():
    """A docstring with math must be raw or double its backslashes: in a plain one ``\\nabla`` is a newline
    and ``abla``, and ``\\hat`` a SyntaxWarning (an error in a future Python)."""
    import warnings
    for path in sorted((REPO / "graphforget").rglob("*.py")):
        with warnings.catch_warnings():
            warnings.simplefilter("error", SyntaxWarning)
            warnings.simplefilter("error", DeprecationWarning)
            compile(path.read_text(), str(path), "exec")
