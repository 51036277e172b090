"""Measured hyper-parameter presets: a model, its objective and how it is trained, as plain values."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch

from .config import build_config, check_fields, check_types
from .models import ContrastiveBPRObjective, Recommender, build_model, registered_model
from .objectives import BCEObjective, BPRObjective, Objective
from .train import TrainConfig

__all__ = ["Hyperparameters", "default_hparams", "recorded_objective", "TRAININGS", "PRESET_DATASETS", "LOSSES"]

#: Training losses: ``bce`` on 0/1 labels (explicit feedback, or implicit with sampled negatives) or ``bpr``
#: on implicit interactions (negatives drawn by the objective; SGL/SimGCL add their contrastive term).
LOSSES = ("bce", "bpr")

#: The contrastive term of the self-supervised backbones under BPR (their papers' settings).
CONTRASTIVE = {"sgl": {"ssl_weight": 0.1, "tau": 0.2}, "simgcl": {"ssl_weight": 0.2, "tau": 0.2}}

#: How the Original (and Retrain) are trained: ``early-stopped`` (mini-batch Adam, early stopping on
#: validation AUC, the papers' practice) or ``stationary`` (full-batch L-BFGS to a vanishing gradient,
#: the point influence functions assume; retraining from any seed then agrees).
TRAININGS = ("early-stopped", "stationary")

#: Datasets the presets were measured on.
PRESET_DATASETS = ("ml-100k", "bookcrossing", "synthetic")

#: Summed-form L2 of the stationary training, chosen on validation AUC of the 2% attack, seed 0
#: (without early stopping the L2 alone keeps the model from overfitting).
STATIONARY_L2 = {("mf", "ml-100k"): 8.0, ("mf", "bookcrossing"): 5.0}


def _not_registered(name: str) -> str | None:
    """Why ``name`` names no model (:func:`~graphforget.models.registered_model`'s error), or ``None``."""
    try:
        registered_model(name)
    except ValueError as error:
        return str(error)
    return None


def _early_stopped() -> TrainConfig:
    return TrainConfig(patience=5)


@dataclass
class Hyperparameters:
    """A model, its objective and its training as plain values (what a checkpoint stores).

    Args:
        model: a registered model (:func:`~graphforget.models.registered_model`: ``mf``, ``lightgcn``, ``sgl``,
            ``simgcl`` or your own); :meth:`build_model` calls it with :meth:`model_config`.
        embedding_dim: embedding size.
        num_layers: propagation layers (ignored by MF).
        l2: :math:`\\lambda` of the objective (:class:`~graphforget.objectives.Objective`).
        loss: one of :data:`LOSSES`.
        train: how the model is trained (:class:`~graphforget.train.TrainConfig`; a dict of its fields is
            accepted, as stored in a checkpoint).
        ssl_weight: the contrastive term's weight for SGL and SimGCL (``None``: the model's in
            ``CONTRASTIVE``).
    """
    model: str = "mf"
    embedding_dim: int = 64
    num_layers: int = 2
    l2: float = 5.0
    train: TrainConfig = field(default_factory=_early_stopped)
    loss: str = "bce"
    ssl_weight: float | None = None

    def __post_init__(self):
        check_types(self)  # a dict for train (as a checkpoint stores it) becomes a TrainConfig
        unknown = _not_registered(self.model)
        check_fields(self, {"model": (unknown is None, unknown),
                            "embedding_dim": (self.embedding_dim >= 1, "must be >= 1"),
                            "num_layers": (self.num_layers >= (self.model == "simgcl"),  # SimGCL averages 1..K
                                           f"must be >= {int(self.model == 'simgcl')}"),
                            "l2": (self.l2 >= 0, "must be >= 0"),
                            "loss": (self.loss in LOSSES, f"one of {', '.join(LOSSES)}"),
                            "ssl_weight": (self.ssl_weight is None or (self.model in CONTRASTIVE
                                                                         and self.ssl_weight >= 0),
                                           self._ssl_advice())})
        if self.model in CONTRASTIVE and self.loss != "bpr":
            raise ValueError(f"Hyperparameters.loss: {self.model} trains with bpr (got {self.loss!r})")

    def _ssl_advice(self) -> str:
        """What ``ssl_weight`` may be for this model: a negative weight for SGL read as a range error, and so did a
        weight for a model without a contrastive term."""
        if self.model in CONTRASTIVE:
            return "must be None or a weight >= 0"
        return (f"only {' and '.join(CONTRASTIVE)} have a contrastive term to weigh (--ssl-weight), not {self.model}: "
                "leave it None")

    def model_config(self, num_users: int, num_items: int) -> dict:
        """The keyword arguments :meth:`build_model` passes to the registered class or factory (a checkpoint's
        ``config``): ``num_users``, ``num_items``, ``embedding_dim`` and, but for MF, ``num_layers``."""
        kwargs = {"num_users": num_users, "num_items": num_items, "embedding_dim": self.embedding_dim}
        if self.model != "mf":
            kwargs["num_layers"] = self.num_layers
        return kwargs

    def build_model(self, num_users: int, num_items: int, seed: int = 0) -> Recommender:
        """A freshly initialised model (from a private generator seeded with ``seed``); torch's global random state as
        it was (the modules' constructors draw their first values from it, then overwritten)."""
        with torch.random.fork_rng(devices=[]):
            model = build_model(self.model, **self.model_config(num_users, num_items))
        model.reset_parameters(seed)
        return model

    def objective(self, seed: int = 0) -> Objective:
        """The training objective with ``l2``: :class:`~graphforget.objectives.BCEObjective`, or
        :class:`~graphforget.objectives.BPRObjective` (negatives seeded by ``seed``), with the contrastive
        term for SGL/SimGCL (:class:`~graphforget.models.ContrastiveBPRObjective`)."""
        if self.loss == "bce":
            return BCEObjective(l2=self.l2)
        if self.model in CONTRASTIVE:
            weight: dict[str, Any] = {} if self.ssl_weight is None else {"ssl_weight": self.ssl_weight}
            return ContrastiveBPRObjective(l2=self.l2, seed=seed, **{**CONTRASTIVE[self.model], **weight})
        return BPRObjective(l2=self.l2, seed=seed)

    def train_config(self, seed: int = 0, progress: bool = False) -> TrainConfig:
        """``train`` with the run's ``seed`` (of the batch order) and ``progress``."""
        return dataclasses.replace(self.train, seed=seed, progress=progress)

    def replace(self, changes: dict[str, Any] | None = None, /, **more) -> "Hyperparameters":
        """A copy with the given fields changed; dotted names reach ``train`` (``{"train.lr": 0.001}``).

        ``None`` values are left out (a command-line flag that was not given).

        Raises:
            ValueError: ``Hyperparameters.field: ...`` for an unknown field or a bad value.
        """
        given = {key: value for key, value in {**(changes or {}), **more}.items() if value is not None}
        return build_config(Hyperparameters, given, self)

    def as_dict(self) -> dict:
        """The fields as plain values; ``ssl_weight`` only when set to other than the model's preset (the cache keys
        of earlier runs stand, and the preset's weight set is the same objective, named as a change)."""
        values = dataclasses.asdict(self)
        if values["ssl_weight"] in (None, CONTRASTIVE.get(self.model, {}).get("ssl_weight")):
            del values["ssl_weight"]
        return values


def recorded_objective(record: dict) -> Objective:
    """The objective a run's record trained with (``run.json``, or a ``train`` checkpoint's ``run``): its
    hyper-parameters' and, for BPR, the negatives of the seed it recorded (seed 0's for a record from before runs
    recorded one: they all drew those)."""
    return Hyperparameters(**record["hparams"]).objective(record.get("objective", {}).get("seed", 0))


def default_hparams(model_name: str = "mf", dataset: str = "ml-100k",
                    training: str = "early-stopped", loss: str | None = None) -> Hyperparameters:
    """Defaults measured on ML-100K and Book-Crossing (BCE), and UnlearnRec's on ML-1M (BPR).

    * ``early-stopped``: MF ``embedding_dim=64``, ``l2=5.0``, Adam ``lr=0.01``, ``batch_size=4096``,
      ``patience=5``; LightGCN (2 layers) the same with ``l2=1.0``.
    * ``stationary``: full-batch L-BFGS (at most 500 iterations); MF ``l2=8`` on ML-100K and ``5``
      elsewhere, LightGCN ``l2=1``.
    * ``loss="bpr"`` (the default of SGL and SimGCL): UnlearnRec's profile, ``l2=1e-4``, Adam ``lr=5e-3``,
      ``batch_size=8192``, 50 epochs (implicit data has no labelled validation set to stop on).

    Raises:
        ValueError: an unknown dataset, training or loss; ``stationary`` training with BPR (it has no such preset).
    """
    if dataset not in PRESET_DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; known: {', '.join(PRESET_DATASETS)}")
    if training not in TRAININGS:
        raise ValueError(f"unknown training {training!r}; known: {', '.join(TRAININGS)}")
    loss = loss or ("bpr" if model_name in CONTRASTIVE else "bce")
    if loss == "bpr":
        if training == "stationary":  # the BPR profile is Adam's: it would hand back a model that is not stationary
            raise ValueError(f"no stationary preset for the BPR loss ({model_name}): the stationary training "
                             "(full-batch L-BFGS) is measured for BCE; train early-stopped")
        return Hyperparameters(model=model_name, l2=1e-4, loss="bpr",
                               train=TrainConfig(lr=5e-3, batch_size=8192, epochs=50, patience=0))
    hparams = Hyperparameters(model=model_name, loss=loss)
    if model_name == "lightgcn":
        hparams = hparams.replace(num_layers=2, l2=1.0)
    if training == "stationary":
        hparams = hparams.replace({"train.optimizer": "lbfgs", "train.epochs": 500},
                                  l2=STATIONARY_L2.get((model_name, dataset), hparams.l2))
    return hparams
