"""Unlearning methods, one lifecycle: ``Method(model, graph, objective, config).fit().unlearn(request)``.

:data:`METHODS` maps each method's name to its class (and ``METHODS[name].Config`` to its config);
:func:`build_unlearner` builds one from plain options, :func:`register` adds a method.
"""
from .base import (NoOptions, NotFittedError, NoValidationWarning, Unlearner, UnlearningFailed, UnlearnResult,
                   UntrustedWarning)
from .registry import METHODS, build_unlearner, method_config, register
from .retrain import Retrain, RetrainConfig
from .ifru import IFRU, IFRUConfig, NewtonConfig, SolverConfig, TrustConfig
from .scif import SCIF, substitute_labels
from .finetune import FineTune, FineTuneConfig
from .sharding import ShardAttention, ShardedRecommender
from .sisa import SISA, SISAConfig, UntrainableShard
from .receraser import RecEraser, RecEraserConfig, balanced_partition
from .unlearnrec import InfluenceEncoder, UnlearnRec, UnlearnRecConfig, influence_dependency_matrix

__all__ = ["Unlearner", "UnlearnResult", "UnlearningFailed", "NoValidationWarning", "UntrustedWarning",
           "NotFittedError", "NoOptions", "METHODS", "register", "method_config", "build_unlearner",
           "Retrain", "RetrainConfig", "FineTune", "FineTuneConfig",
           "IFRU", "IFRUConfig", "SolverConfig", "NewtonConfig", "TrustConfig", "SCIF", "substitute_labels",
           "SISA", "SISAConfig", "UntrainableShard",
           "RecEraser", "RecEraserConfig", "ShardedRecommender", "ShardAttention",
           "balanced_partition", "UnlearnRec", "UnlearnRecConfig", "InfluenceEncoder", "influence_dependency_matrix"]
