"""One Unlearner per method, one interface: ``Method(model, graph, objective, ...).unlearn(request)``."""
from .base import Unlearner, UnlearningFailed, UnlearnResult
from .finetune import FineTune
from .ifru import IFRU, IFRUConfig
from .receraser import RecEraser, balanced_partition
from .retrain import Retrain
from .scif import SCIF, substitute_labels
from .sharding import ShardAttention, ShardedRecommender
from .sisa import SISA
from .unlearnrec import InfluenceEncoder, UnlearnRec, UnlearnRecConfig, influence_dependency_matrix

__all__ = ["Unlearner", "UnlearnResult", "UnlearningFailed", "Retrain", "FineTune", "IFRU", "IFRUConfig", "SCIF", "substitute_labels", "SISA", "RecEraser", "ShardedRecommender",
           "ShardAttention", "balanced_partition",
           "UnlearnRec", "UnlearnRecConfig", "InfluenceEncoder", "influence_dependency_matrix"]
