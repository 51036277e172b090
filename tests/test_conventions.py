"""The project's conventions over its public objects: ``__all__`` resolves, every function and class has a docstring
and is documented in docs/api.rst, every class has a readable repr that prints no tensor, configs name the field
they refuse, and the library leaves torch's and Python's global state as it found it."""
from __future__ import annotations

import ast
import importlib
import inspect
import logging
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from graphforget.data import AdjacencyPattern, planted_communities, random_edges, random_split
from graphforget.models import MF, SGL, ContrastiveBPRObjective
from graphforget.objectives import BCEObjective

REPO = Path(__file__).resolve().parents[1]
MODULES = ["graphforget"] + [f"graphforget.{name}" for name in (
    "data", "models", "unlearn", "influence", "bench", "metrics", "train", "objectives", "verify", "workflow", "runs",
    "io", "distributed", "config", "protocols", "protocols.attack", "presets", "clock", "cli")]
PUBLIC = [(module, name) for module in MODULES for name in importlib.import_module(module).__all__]


def public(module: str, name: str):
    """``module.name``; ``None`` for a stale entry of ``__all__`` (reported by its own test, not at collection)."""
    return getattr(importlib.import_module(module), name, None)


@pytest.mark.parametrize("module, name", PUBLIC)
def test_every_public_name_resolves_and_has_a_docstring(module, name):
    assert hasattr(importlib.import_module(module), name), f"{module}.__all__ lists {name}, which is not there"
    obj = public(module, name)
    if inspect.isclass(obj):  # its own, not one inherited from a base class
        assert (obj.__dict__.get("__doc__") or "").strip(), f"{module}.{name} has no docstring"
    elif inspect.isfunction(obj):
        assert (obj.__doc__ or "").strip(), f"{module}.{name} has no docstring"


def test_every_public_object_is_in_the_api_reference():
    """Each module docs/api.rst documents with its members documents its ``__all__`` (autodoc follows it); a
    package's re-exports count where their own module is documented."""
    api = (REPO / "docs" / "api.rst").read_text()
    documented = re.findall(r"^\.\. automodule:: (\S+)\n(?!\s+:no-members:)", api, flags=re.M)
    covered = {id(public(m, n)) for m in documented for n in importlib.import_module(m).__all__}
    missing = [f"{m}.{n}" for m, n in PUBLIC
               if not n.startswith("__") and not inspect.ismodule(public(m, n)) and id(public(m, n)) not in covered]
    assert not missing, f"not in docs/api.rst: {missing}"


@pytest.mark.parametrize("cls", sorted({id(o): o for o in (public(m, n) for m, n in PUBLIC) if inspect.isclass(o)}
                                       .values(), key=lambda c: c.__qualname__), ids=lambda c: c.__qualname__)
def test_every_public_class_has_its_own_repr(cls):
    """``<graphforget.x.Y object at 0x...>`` says nothing: some class below ``object`` defines ``__repr__``
    (a dataclass's, a NamedTuple's, a module's or an exception's will do)."""
    assert any("__repr__" in k.__dict__ for k in cls.__mro__[:-1]), f"{cls.__qualname__} has object's repr"


# ------------------------------------------------------------------------------------------------ reprs

@pytest.fixture(scope="module")
def graph_1000():
    """A 1000-node graph: 500 users x 500 items, its 6:2:2 split, an MF model and the BCE objective."""
    split = random_split(planted_communities(num_users=500, num_items=500, interactions_per_user=6, seed=0), seed=0)
    users, items = split.train["user"].num_nodes, split.train["item"].num_nodes
    model = MF(users, items, 8)
    model.reset_parameters(0)  # drawn from the global generator, it depended on the tests run before (one untrusted)
    return split, model, BCEObjective(l2=1e-3)


@pytest.fixture(scope="module")
def instances(graph_1000) -> dict:
    """A typical instance of each class whose repr was object's or printed tensors, on the 1000-node graph."""
    from graphforget import influence as inf
    from graphforget.bench import Workspace
    from graphforget.clock import Stopwatch
    from graphforget.protocols import prepare_attack_data

    split, model, objective = graph_1000
    graph, terms = split.train, inf.training_terms(objective, split.train)
    nodes = torch.ones(model.num_users + model.num_items, dtype=torch.bool)
    rows = inf.NodeRows.from_node_mask(model, nodes, model.num_users)
    phi = torch.zeros(rows.numel(model))
    return {
        "Stopwatch": Stopwatch().start(),
        "AndersonMixing": inf.AndersonMixing(3),
        "HessianOperator": inf.HessianOperator(lambda v: v.pow(2).sum(), phi),
        "GaussNewtonOperator": inf.GaussNewtonOperator(lambda v: v * 2, lambda z: z.pow(2).sum(), phi),
        "ShiftedConjugateGradient": inf.ShiftedConjugateGradient(lambda v: v, torch.ones(1000), [0.0, 1.0]),
        "LinearEmbedding": inf.LinearEmbedding(model, rows, graph),
        "DotProductOperator": inf.DotProductOperator(model, rows, phi, terms, graph, objective),
        "LocalProblem": inf.local_problem(model, rows, terms, graph),
        "ContrastiveTerm": inf.ContrastiveTerm(SGL(model.num_users, model.num_items, 8), ContrastiveBPRObjective(),
                                               graph),
        "AdjacencyPattern": AdjacencyPattern.of(graph),
        "Workspace": Workspace(),
        "AttackData": prepare_attack_data("synthetic", seed=0),
    }


@pytest.mark.parametrize("name", ["Stopwatch", "AndersonMixing", "HessianOperator", "GaussNewtonOperator",
                                  "ShiftedConjugateGradient", "LinearEmbedding", "DotProductOperator", "LocalProblem",
                                  "ContrastiveTerm", "AdjacencyPattern", "Workspace", "AttackData"])
def test_repr_is_short_and_prints_no_tensor(one_thread, instances, name):
    text = repr(instances[name])
    assert text.startswith(f"{name}("), text
    assert " object at 0x" not in text and "tensor(" not in text and len(text) < 500, text


def test_unlearn_result_repr_names_the_method_and_trust_not_the_whole_info(one_thread, graph_1000):
    """An IFRU result's info holds per-attempt and per-solve histories (about 2,000 characters): the repr names
    the method, the time, the trust and the info's keys, cut short."""
    from graphforget.unlearn import IFRU
    split, model, objective = graph_1000
    result = IFRU(model, split.train, objective, val=split.val).unlearn(random_edges(split.train, 0.01, seed=0))
    text = repr(result)
    assert len(repr(result.info)) > 1000 and len(text) < 300, text
    assert text.startswith("UnlearnResult(method='ifru', model=MF, seconds=") and "trusted=True" in text, text
    assert "request_edges" in text and "more" in text and "tensor(" not in text, text


# ------------------------------------------------------------------------------------------------ configs

@pytest.mark.parametrize("options, message", [
    ({"threshold": float("nan")}, "DataSource.threshold: must be None or finite (got nan)"),
    ({"threshold": True}, "DataSource.threshold: must be None or finite (got True)"),
    ({"negatives": float("nan")}, "DataSource.negatives: must be None or an integer (got nan)"),
    ({"negatives": 1.5}, "DataSource.negatives: must be None or an integer (got 1.5)"),
    ({"negatives": -1}, "DataSource.negatives: must be >= 0 (got -1)"),
    ({"dataset": "nope"}, "DataSource.dataset: unknown dataset 'nope'"),
])
def test_data_source_names_the_field_it_refuses(options, message):
    from graphforget.bench import DataSource
    with pytest.raises(ValueError) as error:
        DataSource(**{"dataset": "file", "path": "r.csv", "format": "csv", **options})
    assert message in str(error.value)
    assert DataSource("file", path="r.csv", format="csv", label_col="r", threshold=4, negatives=1).threshold == 4


# ------------------------------------------------------------------------------------------------ global state

def _global_state() -> dict:
    return {"threads": torch.get_num_threads(), "rng": torch.get_rng_state(), "filters": list(warnings.filters),
            "handlers": list(logging.root.handlers)}


def _warning_calls(tree: ast.AST):
    """The calls of ``warn_caller`` and ``warnings.warn`` in a module's syntax tree, with their category argument
    (``None`` when left to the default)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and ast.unparse(node.func) in ("warn_caller", "warnings.warn"):
            given = node.args[1:2] + [k.value for k in node.keywords if k.arg == "category"]
            yield node, given[0] if given else None


def test_every_warning_the_library_issues_is_a_graphforget_warning():
    """One filter (``category=graphforget.GraphforgetWarning``) catches them all: every warning class of the package
    derives from it, and every call that warns takes one of them, the default (warn_caller's is
    GraphforgetWarning), or passes one on (warn_caller's own ``category``, a caught warning's ``.category``). The
    negatives' shortfall of the workflow was a bare UserWarning, a dozen of the methods' warnings bare
    RuntimeWarnings."""
    from graphforget import GraphforgetWarning
    from graphforget.config import warn_caller
    assert inspect.signature(warn_caller).parameters["category"].default is GraphforgetWarning
    wrong = []
    for path in sorted(p for p in (REPO / "graphforget").rglob("*.py") if p.name != "__main__.py"):
        module = importlib.import_module(".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(
            ".__init__"))
        for name, obj in vars(module).items():
            if inspect.isclass(obj) and issubclass(obj, Warning) and obj.__module__ == module.__name__:
                if not issubclass(obj, GraphforgetWarning):
                    wrong.append(f"{module.__name__}.{name} does not derive from GraphforgetWarning")
        for call, category in _warning_calls(ast.parse(path.read_text())):
            if category is None or ast.unparse(category).split(".")[-1] == "category":  # passed on (warn_caller's)
                continue
            resolved = getattr(module, ast.unparse(category), None)
            if not (inspect.isclass(resolved) and issubclass(resolved, GraphforgetWarning)):
                wrong.append(f"{path.relative_to(REPO)}:{call.lineno} warns with {ast.unparse(category)}")
    assert not wrong, wrong


def _assert_same(before: dict, after: dict, what: str) -> None:
    assert torch.equal(before.pop("rng"), after.pop("rng")), f"{what} changed torch's global random state"
    assert before == after, f"{what} changed the global state"


def test_importing_the_library_changes_no_global_state():
    """In a fresh interpreter (torch and PyG, whose imports add warnings filters of their own, imported first)."""
    state = "(torch.get_num_threads(), torch.get_rng_state(), list(warnings.filters), list(logging.root.handlers))"
    code = ("import logging, warnings, torch, torch_geometric\n"
            f"torch.set_num_threads(1)\nbefore = {state}\n"
            f"for m in {MODULES!r}: __import__(m)\nafter = {state}\n"
            "assert before[0] == after[0] and before[2:] == after[2:] and torch.equal(before[1], after[1])\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]


@pytest.mark.filterwarnings("ignore::graphforget.train.NoSignalWarning")  # two epochs: the state is the point
def test_library_calls_change_no_global_state(one_thread, graph_1000):
    from graphforget.metrics import evaluate_auc
    from graphforget.train import TrainConfig, train
    from graphforget.unlearn import IFRU

    split, model, objective = graph_1000
    before = _global_state()
    train(model, split.train, objective, TrainConfig(epochs=2), split.val)
    _assert_same(before, _global_state(), "train")
    before = _global_state()
    IFRU(model, split.train, objective).fit().unlearn(random_edges(split.train, 0.01, seed=1))
    _assert_same(before, _global_state(), "IFRU")
    before = _global_state()
    evaluate_auc(model, split.train, split.test)
    _assert_same(before, _global_state(), "evaluate_auc")
    from graphforget.presets import default_hparams
    for name in ("mf", "lightgcn", "sgl", "simgcl"):  # the modules' constructors drew from it (found by a probe)
        before = _global_state()
        default_hparams(name, "ml-100k").build_model(50, 40, seed=0)
        _assert_same(before, _global_state(), f"Hyperparameters.build_model ({name})")
