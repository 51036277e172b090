"""Recommenders: the contract, MF and LightGCN; the graph is always an argument."""
from .base import MODELS, Recommender, build_model, load_model, save_model
from .lightgcn import LightGCN
from .mf import MF
from .sgl import SGL, ContrastiveBPRObjective, info_nce
from .simgcl import SimGCL

__all__ = ["Recommender", "MF", "LightGCN", "MODELS", "build_model", "save_model", "load_model",
           "SGL", "SimGCL", "ContrastiveBPRObjective", "info_nce"]
