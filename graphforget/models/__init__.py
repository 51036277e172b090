"""Recommenders: the contract, MF and LightGCN; the graph is always an argument."""
from .base import MODELS, Recommender, build_model, load_model, save_model
from .lightgcn import LightGCN
from .mf import MF

__all__ = ["Recommender", "MF", "LightGCN", "MODELS", "build_model", "save_model", "load_model"]
