"""Recommenders: the contract, the embedding-table models (MF, LightGCN, SGL, SimGCL) and the PyG adapter;
the graph is always an argument."""
from .base import (ENTRY_POINT_GROUP, MODELS, NODE_TYPES, EmbeddingRecommender, NotARecommender, Recommender,
                   build_model, load_model, registered_model, save_model, table_mask, table_offset)
from .lightgcn import LightGCN
from .mf import MF
from .pyg import PyGRecommender
from .sgl import SGL, ContrastiveBPRObjective, info_nce
from .simgcl import SimGCL

__all__ = ["Recommender", "EmbeddingRecommender", "PyGRecommender", "MF", "LightGCN", "MODELS", "NODE_TYPES",
           "ENTRY_POINT_GROUP", "registered_model", "build_model", "save_model", "load_model", "table_mask",
           "table_offset", "NotARecommender",
           "SGL", "SimGCL", "ContrastiveBPRObjective", "info_nce"]
