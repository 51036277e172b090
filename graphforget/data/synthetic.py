"""A seeded synthetic recommender dataset with planted user/item communities."""
from __future__ import annotations

import torch
from torch_geometric.data import HeteroData

from .interactions import make_interactions

__all__ = ["planted_communities"]


def planted_communities(num_users: int = 600, num_items: int = 400, num_communities: int = 4,
                        interactions_per_user: int = 40, p_in: float = 0.8, like_in: float = 0.85,
                        like_out: float = 0.15, seed: int = 0) -> HeteroData:
    """Users and items belong to communities; users mostly rate and mostly like in-community items.

    Each user rates ``interactions_per_user`` distinct items, a fraction ``p_in`` of them from its own
    community; an in-community rating is positive with probability ``like_in``, an out-of-community one
    with ``like_out``. Labels therefore carry a learnable signal, so flipped labels measurably hurt and
    unlearning them measurably helps.
    """
    if interactions_per_user >= num_items // num_communities:
        raise ValueError("interactions_per_user must be below the community size")
    gen = torch.Generator().manual_seed(seed)
    user_comm = torch.randint(num_communities, (num_users,), generator=gen)
    item_comm = torch.arange(num_items) % num_communities
    # Per-user item weights: in-community items share p_in, the rest share 1 - p_in.
    in_comm = user_comm[:, None] == item_comm[None, :]
    n_in = in_comm.sum(1, keepdim=True).float()
    weight = torch.where(in_comm, p_in / n_in, (1 - p_in) / (num_items - n_in))
    items = torch.multinomial(weight, interactions_per_user, replacement=False, generator=gen)
    users = torch.arange(num_users)[:, None].expand_as(items)
    same = in_comm.gather(1, items)
    like = torch.rand(items.shape, generator=gen) < torch.where(same, torch.tensor(like_in), torch.tensor(like_out))
    data = make_interactions(torch.stack([users.flatten(), items.flatten()]), like.flatten().float(),
                             num_users, num_items)
    data["user"].community = user_comm
    data["item"].community = item_comm
    return data
