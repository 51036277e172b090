"""One Unlearner per method, one interface: ``Method(model, graph, objective, ...).unlearn(request)``."""
from .base import Unlearner, UnlearnResult
from .ifru import IFRU, IFRUConfig
from .retrain import Retrain

__all__ = ["Unlearner", "UnlearnResult", "Retrain", "IFRU", "IFRUConfig"]
