"""Matrix factorisation."""
from .base import MODELS, EmbeddingRecommender

__all__ = ["MF"]


class MF(EmbeddingRecommender):
    r"""Matrix factorisation: :math:`\hat y_{ui} = \mathbf{p}_u^\top \mathbf{q}_i` (logit).

    The graph is accepted and ignored (receptive field 0).

    Args:
        num_users, num_items: node counts.
        embedding_dim: size of :math:`\mathbf{p}_u, \mathbf{q}_i`.
    """
    receptive_field = 0
    supports_edge_weight = True
    linear_embedding = True  # embed() is linear in the tables: fast curvature products


MODELS["mf"] = MF
