"""graphforget: remove training interactions from trained graph recommenders without retraining."""
from . import data, metrics, models, objectives, unlearn
from .objectives import BCEObjective, BPRObjective, Objective
from .train import TrainConfig, TrainResult, train

__version__ = "0.1.0"
__all__ = ["data", "metrics", "models", "objectives", "unlearn", "train", "TrainConfig", "TrainResult",
           "Objective", "BCEObjective", "BPRObjective", "__version__"]
