"""graphforget: remove training interactions from trained graph recommenders without retraining."""
from . import data, metrics, models, objectives, unlearn
from .config import GraphforgetWarning
from .objectives import BCEObjective, BPRObjective, Objective
from .train import NoSignalWarning, NotStationaryWarning, TrainConfig, TrainResult, train

__version__ = "0.1.0"
# ``graphforget.train`` is the function; its module's warnings are here too (``graphforget.NoSignalWarning``), as
# ``import graphforget.train`` binds the function, not the module, to that name.
__all__ = ["data", "metrics", "models", "objectives", "unlearn", "train", "TrainConfig", "TrainResult",
           "GraphforgetWarning", "NoSignalWarning", "NotStationaryWarning",
           "Objective", "BCEObjective", "BPRObjective", "__version__"]
