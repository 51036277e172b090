"""The Recommender contract every model (ours or a user's) follows."""
from __future__ import annotations

import os

import torch
from torch import Tensor, nn
from torch_geometric.data import HeteroData

from ..io import atomic_write

__all__ = ["Recommender", "save_model", "load_model", "MODELS", "build_model"]


class Recommender(nn.Module):
    """Base class of graph recommenders.

    The contract (see ``docs/custom_model.rst``):

    * ``forward(graph, edge_label_index)`` scores the ``[2, B]`` (user, item) pairs given the
      interaction graph passed in, returning ``[B]`` logits. Nothing graph-derived is cached across
      calls, so a model can be run on an edited graph or with edited parameters.
    * Per-node parameters live in embedding tables; :meth:`node_parameters` names them and their node
      type, so that unlearning methods can select rows.
    * :attr:`receptive_field` is the number of hops a prediction depends on (MF: 0; K-layer GNN: K).
    * :attr:`supports_edge_weight`: ``True`` when the model propagates with the weights from
      :func:`~graphforget.data.propagation_edges` (so it can be run exactly on a k-hop subgraph).
    * :attr:`linear_embedding`: ``True`` when :meth:`embed` is linear in the node tables and the
      scores are the base class's dot products (MF, LightGCN): curvature products then take a fast
      closed form (:class:`~graphforget.influence.DotProductOperator`).

    Args:
        num_users, num_items: node counts.
        embedding_dim: size of the embeddings.
    """

    receptive_field: int = 0
    supports_edge_weight: bool = False
    linear_embedding: bool = False

    def __init__(self, num_users: int, num_items: int, embedding_dim: int = 64):
        super().__init__()
        if min(num_users, num_items, embedding_dim) < 1:
            raise ValueError("num_users, num_items and embedding_dim must be positive")
        self.num_users, self.num_items, self.embedding_dim = num_users, num_items, embedding_dim
        self.user_emb = nn.Embedding(num_users, embedding_dim)
        self.item_emb = nn.Embedding(num_items, embedding_dim)
        self.reset_parameters()

    def reset_parameters(self, seed: int | None = None) -> None:
        """Re-initialises the embeddings, N(0, 0.1^2); from a private generator when ``seed`` is given."""
        gen = None if seed is None else torch.Generator(self.user_emb.weight.device).manual_seed(seed)
        nn.init.normal_(self.user_emb.weight, std=0.1, generator=gen)
        nn.init.normal_(self.item_emb.weight, std=0.1, generator=gen)

    def node_parameters(self) -> dict[str, str]:
        """Names of per-node parameter tables (rows = node ids) -> node type (``user``/``item``)."""
        return {"user_emb.weight": "user", "item_emb.weight": "item"}

    def embed(self, graph: HeteroData) -> tuple[Tensor, Tensor]:
        """Final user ``[U, d]`` and item ``[I, d]`` representations on ``graph``."""
        return self.user_emb.weight, self.item_emb.weight

    def forward(self, graph: HeteroData, edge_label_index: Tensor) -> Tensor:
        user, item = self.embed(graph)
        # index_select, not ``user[idx]``: the backward of advanced indexing (index_put_ with accumulate)
        # adds rows with atomics on multi-threaded CPUs, so training would not be bit-reproducible.
        return (user.index_select(0, edge_label_index[0]) * item.index_select(0, edge_label_index[1])).sum(-1)

    def score_all(self, graph: HeteroData, users: Tensor | None = None) -> Tensor:
        """Scores ``[len(users), I]`` of every item for the given users (all users by default)."""
        user, item = self.embed(graph)
        return (user if users is None else user[users]) @ item.t()

    def config(self) -> dict:
        """Constructor arguments, for checkpoints."""
        return {"num_users": self.num_users, "num_items": self.num_items, "embedding_dim": self.embedding_dim}

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.config().items())


#: Registered model classes by name (for checkpoints and the CLI); :func:`register` adds more.
MODELS: dict[str, type[Recommender]] = {}


def build_model(name: str, **kwargs) -> Recommender:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known: {sorted(MODELS)}")
    return MODELS[name](**kwargs)


def save_model(model: Recommender, path: str | os.PathLike, **extra) -> None:
    """Writes the state dict, the model's name and its config (plus ``extra`` plain values).

    The write is atomic (:func:`~graphforget.io.atomic_write`): an interrupted save leaves the previous
    file at ``path`` intact.
    """
    name = next((k for k, v in MODELS.items() if v is type(model)), None)
    if name is None:
        raise ValueError(f"{type(model).__name__} is not registered in graphforget.models.MODELS")
    checkpoint = {"model": name, "config": model.config(), "state_dict": model.state_dict(), **extra}
    atomic_write(path, lambda handle: torch.save(checkpoint, handle))


def load_model(path: str | os.PathLike, map_location=None) -> tuple[Recommender, dict]:
    """Reads a checkpoint with ``weights_only=True``; returns the model and the whole checkpoint dict."""
    checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    model = build_model(checkpoint["model"], **checkpoint["config"])
    model.load_state_dict(checkpoint["state_dict"])
    return model, checkpoint
