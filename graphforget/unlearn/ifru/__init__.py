"""IFRU: recommendation unlearning via influence function (Zhang et al., ACM TORS 2024).

:mod:`.config` holds its options, :mod:`.tilted` the objective its steps are tested against, :mod:`.ladder` the
first step's Levenberg-Marquardt attempts and their acceptance test, :mod:`.newton` the Newton extension, and
:mod:`.method` the unlearner that puts them together."""
from .config import IFRUConfig, NewtonConfig, SolverConfig, TrustConfig
from .method import IFRU

__all__ = ["IFRU", "IFRUConfig", "SolverConfig", "NewtonConfig", "TrustConfig"]
