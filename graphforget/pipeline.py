"""Reusable glue of the attack protocol: data, default hyper-parameters, the method registry, experiments.

The command line (:mod:`graphforget.cli`) and the benchmark scripts are thin layers over this module,
which itself only uses the public API of the library. The IFRU "attack" protocol (Zhang et al.,
"Recommendation Unlearning via Influence Function", ACM TORS 2024):

1. filter the interactions to their 5-core, binarise the labels, split 6:2:2 at random by interaction;
2. flip the labels of a random ``attack_ratio`` of the training interactions, train on all of them
   (the *Original* model);
3. the flipped interactions form the request :math:`D_r`; every method unlearns it, and is compared
   with *Retrain* (training from scratch without :math:`D_r`) by AUC on the test pairs and by the
   completeness coefficient

   .. math::
       c = \\frac{\\mathrm{AUC}_{\\text{method}} - \\mathrm{AUC}_{\\text{original}}}
                {\\mathrm{AUC}_{\\text{retrain}} - \\mathrm{AUC}_{\\text{original}}} .

Methods are looked up by name in :data:`UNLEARNERS`, one entry per method (see
:func:`register_unlearner`).
"""
from __future__ import annotations

import ast
import inspect
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from .data import (EDGE, Split, attack_flip, binarize, find_data_root, k_core, load_labelled_triples,
                   load_movielens_100k, num_items, num_users, planted_communities, random_split)
from .metrics import completeness, evaluate_auc, prediction_distance
from .models import MODELS, Recommender, build_model
from .objectives import BCEObjective, Objective
from .train import TrainConfig, train
from .unlearn import (IFRU, SCIF, SISA, FineTune, IFRUConfig, RecEraser, Retrain, Unlearner, UnlearnRec,
                      UnlearnRecConfig)

__all__ = ["DATASET_NAMES", "TRAININGS", "AttackData", "prepare_attack_data", "Hyperparameters", "default_hparams",
           "UNLEARNERS", "UnlearnerFactory", "register_unlearner", "build_unlearner", "check_options", "parse_options",
           "run_experiment", "to_jsonable", "AUC_KEYS"]

log = logging.getLogger(__name__)

#: Datasets the attack protocol knows.
DATASET_NAMES = ("ml-100k", "bookcrossing", "synthetic")

#: The metrics reported for every model.
AUC_KEYS = ("auc_0", "auc_1", "auc_2")

#: k of the k-core filter (the IFRU protocol).
CORE = 5

#: Size of the synthetic stand-in (:func:`~graphforget.data.planted_communities`).
SYNTHETIC = {"num_users": 600, "num_items": 400, "num_communities": 4, "interactions_per_user": 40}


class AttackData(NamedTuple):
    """What :func:`prepare_attack_data` returns (a tuple: ``split, train, request, source = ...``).

    Attributes:
        split: the clean 6:2:2 :class:`~graphforget.data.Split` (``split.train`` before the attack).
        train: the attacked training graph (labels of the request flipped): what the Original sees.
        request: ``[2, R]`` the flipped (user, item) training edges, :math:`D_r`.
        source: one line saying which data was used and how it was prepared; it starts with
            ``synthetic`` exactly when the synthetic data was used.
    """
    split: Split
    train: HeteroData
    request: Tensor
    source: str


def _check_ratio(attack_ratio: float) -> float:
    attack_ratio = float(attack_ratio)
    if not 0 < attack_ratio < 1:
        raise ValueError(f"attack ratio must be in (0, 1), got {attack_ratio}")
    return attack_ratio


def _explicit_root(root) -> Path | None:
    """An explicitly given root must exist: a wrong path is an error, never a silent fallback."""
    if root is None:
        return None
    path = Path(root).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"data directory not found: {path}")
    return path


def _load_raw(dataset: str, root) -> tuple[HeteroData | None, str]:
    """The raw graph and the file it came from, or ``(None, reason)`` when the file is absent."""
    base = _explicit_root(root) or find_data_root()
    if dataset == "ml-100k":
        candidates = [] if base is None else [base / "u.data", base / "ml-100k" / "u.data"]
        found = next((p for p in candidates if p.is_file()), None)
        if found is None:
            return None, _missing(dataset, base, "ml-100k/u.data")
        return _read(load_movielens_100k, found.parent, found), str(found)
    candidates = [] if base is None else [base / "ratings_final.txt", base / "bookcrossing" / "ratings_final.txt"]
    found = next((p for p in candidates if p.is_file()), None)
    if found is None:
        return None, _missing(dataset, base, "bookcrossing/ratings_final.txt")
    return _read(load_labelled_triples, found, found), str(found)


def _read(loader: Callable[[Path], HeteroData], arg: Path, file: Path) -> HeteroData:
    """``loader(arg)``; an empty or malformed data ``file`` is a ``ValueError`` naming it."""
    if file.stat().st_size == 0:
        raise ValueError(f"data file {file} is empty")
    try:
        return loader(arg)
    except (ValueError, IndexError, KeyError, TypeError, RuntimeError) as error:
        detail = (str(error).strip().splitlines() or [""])[0]
        raise ValueError(f"cannot read data file {file}: {type(error).__name__}: {detail}") from error


def _missing(dataset: str, base: Path | None, rel: str) -> str:
    if base is None:
        return f"{dataset} not found: no data directory (pass root, set $GRAPHFORGET_DATA, or use ../shared/data)"
    return f"{dataset} not found: {base / rel} is missing"


def prepare_attack_data(dataset: str = "ml-100k", root: str | os.PathLike | None = None,
                        attack_ratio: float = 0.02, seed: int = 0, synthetic_fallback: bool = True) -> AttackData:
    """Data of the IFRU attack protocol, deterministic in ``(dataset, root, attack_ratio, seed)``.

    * ``ml-100k``: :func:`~graphforget.data.load_movielens_100k` -> 5-core -> ratings >= 4 are
      positive -> random 6:2:2 split -> :func:`~graphforget.data.attack_flip`.
    * ``bookcrossing``: :func:`~graphforget.data.load_labelled_triples` (labels already 0/1, the
      sampled negatives unobserved) -> 5-core over all rows (keeps 89,915 of the 139,746 rows,
      3,988 users x 9,676 items, still about half positive) -> split -> attack.
    * ``synthetic``: :func:`~graphforget.data.planted_communities` (600 users x 400 items, 40 rated
      items per user, seeded by ``seed``) -> split -> attack. Needs no file.

    The attack flips labels only: a flipped edge keeps its place in the message-passing graph.

    Args:
        dataset: one of :data:`DATASET_NAMES`.
        root: the data directory (holding ``ml-100k/`` or ``bookcrossing/``, or the dataset's own
            folder); ``None`` looks in ``$GRAPHFORGET_DATA`` then ``../shared/data``
            (:func:`~graphforget.data.find_data_root`). A given ``root`` that does not exist is an error.
        attack_ratio: fraction of training edges whose label is flipped, in (0, 1).
        seed: seeds the split and the attack (and the synthetic generator).
        synthetic_fallback: when the real dataset is not found, use the synthetic one (say so in
            ``source`` and log a warning naming the missing file) instead of raising.

    Returns:
        :class:`AttackData` ``(split, train, request, source)``.

    Raises:
        ValueError: unknown dataset, a ratio outside (0, 1), or a data file that is empty, malformed or
            left without interactions by the 5-core.
        FileNotFoundError: a given ``root`` that does not exist, or a missing dataset without fallback.
    """
    if dataset not in DATASET_NAMES:
        raise ValueError(f"unknown dataset {dataset!r}; known: {', '.join(DATASET_NAMES)}")
    attack_ratio = _check_ratio(attack_ratio)
    fallback_note = ""
    if dataset != "synthetic":
        raw, where = _load_raw(dataset, root)
        if raw is None:
            if not synthetic_fallback:
                raise FileNotFoundError(where)
            log.warning("%s; using the synthetic stand-in instead (synthetic_fallback=True)", where)
            dataset, fallback_note = "synthetic", f", because {where}"
    if dataset == "synthetic":
        graph = planted_communities(**SYNTHETIC, seed=seed)
        source = (f"synthetic planted communities ({SYNTHETIC['num_users']} users x "
                  f"{SYNTHETIC['num_items']} items, seed {seed}){fallback_note}")
    elif dataset == "ml-100k":
        graph = binarize(k_core(raw, CORE), 4)
        source = f"MovieLens-100K from {where} ({CORE}-core, rating >= 4 -> 1)"
    else:
        graph = k_core(raw, CORE)
        source = f"Book-Crossing from {where} ({CORE}-core, labels as given)"
    if graph[EDGE].edge_index.size(1) == 0:
        raise ValueError(f"no interactions left in {where} after the {CORE}-core")
    split = random_split(graph, (0.6, 0.2, 0.2), seed=seed)
    attacked, request = attack_flip(split.train, attack_ratio, seed=seed)
    source += (f"; 6:2:2 split, {split.train[EDGE].edge_index.size(1)} training edges, "
               f"{request.size(1)} flipped ({attack_ratio:g})")
    return AttackData(split, attacked, request, source)


@dataclass
class Hyperparameters:
    """Model, objective and training hyper-parameters as plain values (what a checkpoint stores).

    Args:
        model: a name in :data:`graphforget.models.MODELS` (``mf``, ``lightgcn``).
        embedding_dim: embedding size.
        num_layers: propagation layers (LightGCN only; ignored by MF).
        l2: :math:`\\lambda` of :class:`~graphforget.objectives.BCEObjective` (summed form).
        lr, batch_size, patience, epochs, optimizer: see :class:`~graphforget.train.TrainConfig`.
    """
    model: str = "mf"
    embedding_dim: int = 64
    num_layers: int = 2
    l2: float = 5.0
    lr: float = 0.01
    batch_size: int = 4096
    patience: int = 5
    epochs: int = 100
    optimizer: str = "adam"

    def __post_init__(self):
        if self.model not in MODELS:
            raise ValueError(f"unknown model {self.model!r}; known: {', '.join(sorted(MODELS))}")
        if self.embedding_dim < 1 or self.num_layers < 0 or self.l2 < 0:
            raise ValueError(f"invalid Hyperparameters: {self}")
        self.train_config()  # validates lr, batch_size, patience, epochs

    def build_model(self, num_users: int, num_items: int, seed: int = 0) -> Recommender:
        """A freshly initialised model (from a private generator seeded with ``seed``)."""
        kwargs = {"num_users": num_users, "num_items": num_items, "embedding_dim": self.embedding_dim}
        if self.model == "lightgcn":
            kwargs["num_layers"] = self.num_layers
        model = build_model(self.model, **kwargs)
        model.reset_parameters(seed)
        return model

    def objective(self) -> Objective:
        """The training objective, :class:`~graphforget.objectives.BCEObjective` with ``l2``."""
        return BCEObjective(l2=self.l2)

    def train_config(self, seed: int = 0, progress: bool = False) -> TrainConfig:
        """The :class:`~graphforget.train.TrainConfig`."""
        return TrainConfig(epochs=self.epochs, lr=self.lr, batch_size=self.batch_size, patience=self.patience,
                           seed=seed, progress=progress, optimizer=self.optimizer)

    def replace(self, **changes) -> "Hyperparameters":
        """A copy with the given fields changed (``None`` values are ignored)."""
        known = {f.name for f in fields(self)}
        unknown = set(changes) - known
        if unknown:
            raise ValueError(f"unknown hyper-parameters {sorted(unknown)}; known: {sorted(known)}")
        return Hyperparameters(**{**asdict(self), **{k: v for k, v in changes.items() if v is not None}})

    def as_dict(self) -> dict:
        return asdict(self)


#: How the Original (and Retrain) are trained: ``early-stopped`` (mini-batch Adam, early stopping on
#: validation AUC, the papers' practice) or ``stationary`` (full-batch L-BFGS to a vanishing gradient,
#: the point influence functions assume; retraining from any seed then agrees).
TRAININGS = ("early-stopped", "stationary")

#: Summed-form L2 of the stationary training, chosen on validation AUC of the 2% attack, seed 0
#: (without early stopping the L2 alone keeps the model from overfitting).
STATIONARY_L2 = {("mf", "ml-100k"): 8.0, ("mf", "bookcrossing"): 5.0}


def default_hparams(model_name: str = "mf", dataset: str = "ml-100k",
                    training: str = "early-stopped") -> Hyperparameters:
    """Defaults measured on ML-100K and Book-Crossing.

    * ``early-stopped``: MF ``embedding_dim=64``, ``l2=5.0``, ``lr=0.01``, ``batch_size=4096``,
      ``patience=5``; LightGCN (2 layers) the same with ``l2=1.0``.
    * ``stationary``: full-batch L-BFGS (at most 500 iterations); MF ``l2=8`` on ML-100K and ``5``
      elsewhere, LightGCN ``l2=1``.
    """
    if dataset not in DATASET_NAMES:
        raise ValueError(f"unknown dataset {dataset!r}; known: {', '.join(DATASET_NAMES)}")
    if training not in TRAININGS:
        raise ValueError(f"unknown training {training!r}; known: {', '.join(TRAININGS)}")
    hparams = Hyperparameters(model=model_name)
    if model_name == "lightgcn":
        hparams = hparams.replace(num_layers=2, l2=1.0)
    if training == "stationary":
        hparams = hparams.replace(optimizer="lbfgs", epochs=500,
                                  l2=STATIONARY_L2.get((model_name, dataset), hparams.l2))
    return hparams


# --- the method registry ------------------------------------------------------------------------

#: ``factory(model, graph, objective, train_config, val, seed, **options) -> Unlearner``.
UnlearnerFactory = Callable[..., Unlearner]


def _retrain(model, graph, objective, train_config, val, seed, **options) -> Unlearner:
    return Retrain(model, graph, objective, config=train_config, val=val, seed=seed, **options)


def _finetune(model, graph, objective, train_config, val, seed, **options) -> Unlearner:
    return FineTune(model, graph, objective, config=train_config, **options)


def _ifru(model, graph, objective, train_config, val, seed, **options) -> Unlearner:
    return IFRU(model, graph, objective, IFRUConfig(**options))


def _scif(model, graph, objective, train_config, val, seed, **options) -> Unlearner:
    return SCIF(model, graph, objective, IFRUConfig(**options))


def _sisa(model, graph, objective, train_config, val, seed, **options) -> Unlearner:
    return SISA(model, graph, objective, train_config, seed=seed, val=val, **options)


def _receraser(model, graph, objective, train_config, val, seed, **options) -> Unlearner:
    # The partition needs embeddings trained on all the data: the original model is exactly that.
    options.setdefault("pretrained", model)
    return RecEraser(model, graph, objective, train_config, seed=seed, val=val, **options)


def _unlearnrec(model, graph, objective, train_config, val, seed, **options) -> Unlearner:
    return UnlearnRec(model, graph, objective, UnlearnRecConfig(**{"seed": seed, **options}))


#: Unlearning methods by name, one entry per method. Each value is a factory
#: ``factory(model, graph, objective, train_config, val, seed, **options)`` returning an
#: :class:`~graphforget.unlearn.Unlearner`; ``options`` are the method's own keyword arguments
#: (IFRU and SCIF: the fields of :class:`~graphforget.unlearn.IFRUConfig`; SISA and RecEraser: their
#: constructor's keywords; UnlearnRec: the fields of :class:`~graphforget.unlearn.UnlearnRecConfig`;
#: FineTune: ``epochs`` and ``local``).
#: Add a method with :func:`register_unlearner` (or one more entry here, in the library).
UNLEARNERS: dict[str, UnlearnerFactory] = {"retrain": _retrain, "ifru": _ifru, "scif": _scif, "sisa": _sisa,
                                           "receraser": _receraser, "unlearnrec": _unlearnrec,
                                           "finetune": _finetune}


#: Built-in methods whose options are the fields of a config dataclass (checked by constructing it).
_OPTION_CONFIGS: dict[Callable, type] = {_ifru: IFRUConfig, _scif: IFRUConfig, _unlearnrec: UnlearnRecConfig}
#: Built-in methods whose options are keywords of a class' constructor (checked by name).
_OPTION_CLASSES: dict[Callable, type] = {_retrain: Retrain, _finetune: FineTune, _sisa: SISA, _receraser: RecEraser}
#: Constructor arguments the factories pass themselves: not options.
_RESERVED = {"self", "model", "graph", "objective", "config", "val", "seed"}


def check_options(method: str, options: dict[str, Any]) -> None:
    """Checks ``options`` of a built-in ``method`` without data, a model or training (cheap: run it first).

    IFRU, SCIF and UnlearnRec: the options must build the method's config dataclass
    (:class:`~graphforget.unlearn.IFRUConfig`, :class:`~graphforget.unlearn.UnlearnRecConfig`), which
    checks names, types and ranges. The other built-in methods: the names must be keywords of the
    method's constructor. Methods added with :func:`register_unlearner` are not checked here.

    Raises:
        ValueError: ``bad options for 'METHOD': ...`` naming the problem; or an unknown method.
    """
    if method not in UNLEARNERS:
        raise ValueError(f"unknown method {method!r}; known: {', '.join(UNLEARNERS)}")
    factory = UNLEARNERS[method]
    try:
        if factory in _OPTION_CONFIGS:
            _build_config(_OPTION_CONFIGS[factory], options)
        elif factory in _OPTION_CLASSES:
            known = set(inspect.signature(_OPTION_CLASSES[factory]).parameters) - _RESERVED
            unknown = sorted(set(options) - known)
            if unknown:
                raise ValueError(f"unknown option{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}"
                                 f" (known: {', '.join(sorted(known))})")
    except (TypeError, ValueError) as error:
        raise ValueError(f"bad options for {method!r}: {error}") from error


def _build_config(cls: type, options: dict[str, Any]) -> None:
    """Builds ``cls(**options)``; a ``TypeError`` from a value of the wrong type names the option(s) at fault."""
    try:
        cls(**options)
    except TypeError as error:
        if "keyword argument" in str(error):
            raise
        expected = {f.name: f.type for f in fields(cls)}
        culprits = [key for key in options if not _builds(cls, {key: options[key]})]
        named = ", ".join(f"{key}={options[key]!r} (expected {expected.get(key, '?')})" for key in culprits)
        raise TypeError(f"{named or 'a value of the wrong type'}: {error}") from error


def _builds(cls: type, options: dict[str, Any]) -> bool:
    try:
        cls(**options)
    except (TypeError, ValueError):
        return False
    return True


def register_unlearner(name: str, factory: UnlearnerFactory | None = None, *, overwrite: bool = False):
    """Adds a method to :data:`UNLEARNERS` (usable as a decorator).

    Example::

        @register_unlearner("my-method")
        def my_method(model, graph, objective, train_config, val, seed, **options):
            return MyUnlearner(model, graph, objective, **options)

    An unlearner that must be prepared before it can unlearn (SISA and RecEraser train their shards,
    UnlearnRec pre-trains its encoder) exposes a ``fit()`` method: :func:`run_experiment` calls it
    first and reports its time as ``fit_seconds`` apart from ``seconds``.

    Raises:
        ValueError: when ``name`` is taken and ``overwrite`` is false.
    """
    def add(fn: UnlearnerFactory) -> UnlearnerFactory:
        if name in UNLEARNERS and not overwrite and UNLEARNERS[name] is not fn:
            raise ValueError(f"unlearner {name!r} is already registered")
        UNLEARNERS[name] = fn
        return fn
    return add if factory is None else add(factory)


def build_unlearner(method: str, model: Recommender, graph: HeteroData, objective: Objective,
                    train_config: TrainConfig | None = None, val: HeteroData | None = None, seed: int = 0,
                    **options) -> Unlearner:
    """The :class:`~graphforget.unlearn.Unlearner` registered as ``method``.

    Args:
        method: a name in :data:`UNLEARNERS`.
        model, graph, objective: the trained model, its training graph and objective.
        train_config: how the model was trained (methods that train: Retrain, SISA, ...).
        val: validation pairs for early stopping.
        seed: seed of whatever the method draws at random.
        **options: the method's own options (IFRU: the fields of :class:`~graphforget.unlearn.IFRUConfig`).

    Raises:
        ValueError: unknown method, or options the method rejects.
    """
    check_options(method, options)
    try:
        return UNLEARNERS[method](model, graph, objective, train_config or TrainConfig(), val, seed, **options)
    except TypeError as error:
        if "keyword argument" not in str(error):
            raise
        raise ValueError(f"bad options for {method!r}: {error}") from error  # a user error, reported as such


def parse_options(pairs: Sequence[str]) -> dict[str, Any]:
    """``["solver=lissa", "prune=(0.5, 0.5)"]`` -> ``{"solver": "lissa", "prune": (0.5, 0.5)}``.

    Values are Python literals where they parse as one, else strings.
    """
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"options are KEY=VALUE, got {pair!r}")
        try:
            options[key.strip()] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            options[key.strip()] = value.strip()
    return options


# --- experiments --------------------------------------------------------------------------------

def to_jsonable(value: Any) -> Any:
    """Plain JSON values: tensors become numbers or lists, NaN and infinities become ``None``."""
    if isinstance(value, Tensor):
        value = value.item() if value.numel() == 1 else value.tolist()
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (bool, int, str)) or value is None:
        return value
    if hasattr(value, "item"):  # numpy scalars
        return to_jsonable(value.item())
    return repr(value)


def _retrain_first(methods: Sequence[str] | None) -> list[str]:
    """The methods to run (all by default), checked, with Retrain first (the reference)."""
    methods = list(UNLEARNERS) if methods is None else list(methods)
    unknown = [m for m in methods if m not in UNLEARNERS]
    if unknown:
        raise ValueError(f"unknown methods {unknown}; known: {', '.join(UNLEARNERS)}")
    return ["retrain"] + [m for m in methods if m != "retrain"]


def _sizes(graph: HeteroData, request: Tensor) -> dict:
    return {"num_users": num_users(graph), "num_items": num_items(graph),
            "train_edges": graph[EDGE].edge_index.size(1), "request_edges": request.size(1)}


def _run_method(unlearner: Unlearner, train_graph: HeteroData, test: HeteroData, request: Tensor,
                device: torch.device):
    """Fits (when the method has a ``fit``) and unlearns; returns the report row and the result."""
    row = {}
    if callable(getattr(unlearner, "fit", None)):
        start = time.perf_counter()
        unlearner.fit()
        if device.type == "cuda":  # the clock must not stop before the GPU does
            torch.cuda.synchronize(device)
        row["fit_seconds"] = time.perf_counter() - start
        # The fitted model before any unlearning: its gap to the Original is the method's cost
        # even for an empty request (the "harmless" check; SISA and RecEraser have one).
        row["before"] = evaluate_auc(unlearner.model, train_graph, test, request)
    outcome = unlearner.unlearn(request)
    row.update(evaluate_auc(outcome.model, outcome.graph, test, request))
    row["seconds"] = outcome.seconds
    row["info"] = outcome.info
    log.info("%s: %s in %.2fs", unlearner.name, {k: round(row[k], 4) for k in AUC_KEYS}, outcome.seconds)
    return row, outcome


def _compare_with_retrain(result: dict, original, train_graph: HeteroData, test: HeteroData, outcomes: dict) -> None:
    """Adds each method's ``completeness`` and ``prediction_gap`` (relative to Retrain) to ``result``."""
    base, retrain = result["original"], result["methods"]["retrain"]
    pairs, reference = test[EDGE].edge_index, outcomes["retrain"]
    for model_ in [original, *(outcome.model for outcome in outcomes.values())]:
        model_.eval()  # the experiment's own models: predictions without training-time noise
    with torch.no_grad():
        scale = prediction_distance(original, train_graph, reference.model, reference.graph, pairs)
        for method, row in result["methods"].items():
            row["completeness"] = {k: completeness(row[k], base[k], retrain[k]) for k in AUC_KEYS}
            gap = prediction_distance(outcomes[method].model, outcomes[method].graph, reference.model,
                                      reference.graph, pairs)
            row["prediction_gap"] = gap / scale if scale > 0 else float("nan")


def run_experiment(dataset: str = "ml-100k", model: str = "mf", methods: Sequence[str] | None = None,
                   root: str | os.PathLike | None = None, attack_ratio: float = 0.02, seed: int = 0,
                   hparams: Hyperparameters | None = None, method_options: dict[str, dict] | None = None,
                   synthetic_fallback: bool = False, progress: bool = False, device: str | torch.device = "cpu",
                   data: AttackData | None = None, training: str = "early-stopped") -> dict:
    """Trains the Original on the attacked data, unlearns the request with each method, evaluates.

    Retrain is always run (first), since completeness is measured against it. Every model is
    evaluated on the test pairs with :func:`~graphforget.metrics.evaluate_auc` (AUC_0/1/2 with the
    request's users and items).

    Args:
        dataset, root, attack_ratio, seed, synthetic_fallback: see :func:`prepare_attack_data`
            (``seed`` also seeds the model's initialisation and the batch order). Unlike there,
            ``synthetic_fallback`` is off by default: a missing dataset raises ``FileNotFoundError``
            unless the fallback is asked for.
        model: a model name (``mf``, ``lightgcn``); ignored when ``hparams`` is given.
        methods: names in :data:`UNLEARNERS` (default: all of them).
        hparams: hyper-parameters (default: :func:`default_hparams`).
        method_options: per method, its own options (e.g. ``{"ifru": {"solver": "lissa"}}``).
        progress: tqdm bars while training.
        device: where to train and unlearn.
        data: prepared data, to reuse one :func:`prepare_attack_data` across runs.
        training: see :data:`TRAININGS` (used when ``hparams`` is not given).

    Returns:
        A JSON-ready dict: ``dataset``, ``source``, sizes, ``hparams``, ``threads``, ``original``
        (``auc_0/1/2``, ``train_seconds``, ``epochs``) and ``methods``: for each method its
        ``auc_0/1/2``, ``seconds`` (the unlearning call alone), ``fit_seconds`` and ``before`` (the AUCs
        of the fitted model before unlearning, for methods with a ``fit`` step), ``completeness`` per
        AUC (relative to Original and Retrain), ``prediction_gap`` (the L2 distance of its predicted
        probabilities on the test pairs to Retrain's, over the Original's distance to Retrain's: 0 is
        Retrain's predictions, 1 as far as the Original) and ``info``.
    """
    methods = _retrain_first(methods)
    data = data or prepare_attack_data(dataset, root, attack_ratio, seed, synthetic_fallback)
    dataset = "synthetic" if data.source.startswith("synthetic") else dataset  # the fallback, if taken
    hparams = hparams or default_hparams(model, dataset, training)
    device = torch.device(device)
    train_graph, val, test, request = (t.to(device) for t in (data.train, data.split.val, data.split.test,
                                                              data.request))
    objective, config = hparams.objective(), hparams.train_config(seed, progress)

    original = hparams.build_model(num_users(train_graph), num_items(train_graph), seed).to(device)
    fit = train(original, train_graph, objective, config, val)
    result = {
        "dataset": dataset, "source": data.source, "model": hparams.model, "seed": seed,
        "attack_ratio": attack_ratio, **_sizes(train_graph, request), "device": str(device),
        "threads": torch.get_num_threads(), "hparams": hparams.as_dict(),
        "original": {**evaluate_auc(original, train_graph, test, request), "train_seconds": fit.seconds,
                     "epochs": fit.epochs, "best_epoch": fit.best_epoch},
        "methods": {},
    }
    outcomes = {}
    for method in methods:
        unlearner = build_unlearner(method, original, train_graph, objective, config, val, seed,
                                    **(method_options or {}).get(method, {}))
        result["methods"][method], outcomes[method] = _run_method(unlearner, train_graph, test, request, device)
    _compare_with_retrain(result, original, train_graph, test, outcomes)
    return to_jsonable(result)
