"""Seeded synthetic recommender datasets: planted user/item communities (labels with a learnable signal)
and power-law implicit interactions at any size (degree distributions like Gowalla's)."""
from __future__ import annotations

import math

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from ..config import is_integer, seeded, uniform
from .interactions import make_interactions, pairs_of_keys

__all__ = ["planted_communities", "power_law_interactions", "power_law_exponent", "path_graph", "path_hops",
           "GOWALLA_SHAPE"]

#: Gowalla's training graph (the LightGCN split, ``gowalla/train.txt``) as :func:`power_law_interactions`
#: reproduces it: nodes per edge, the degree exponents fitted to its tails, and its largest degree over
#: the mean degree, for users and items.
GOWALLA_SHAPE = {"users_per_edge": 29858 / 810128, "items_per_edge": 40981 / 810128,
                 "user_exponent": 2.74, "item_exponent": 2.56,
                 "user_max_ratio": 811 / (810128 / 29858), "item_max_ratio": 1415 / (810128 / 40981)}

#: Draws per chunk of :func:`power_law_interactions` (bounds its working memory).
_CHUNK = 1 << 22


def planted_communities(num_users: int = 600, num_items: int = 400, num_communities: int = 4,
                        interactions_per_user: int = 40, p_in: float = 0.8, like_in: float = 0.85,
                        like_out: float = 0.15, seed: int = 0) -> HeteroData:
    """Users and items belong to communities; users mostly rate and mostly like in-community items.

    Each user rates ``interactions_per_user`` distinct items, drawn one after another without replacement from
    weights that give the user's own community a share ``p_in`` of the first draw: as the community's items run
    out, later draws fall outside it more often, so the in-community share is below ``p_in`` (with the defaults,
    40 items per user of 400 in 4 communities and ``p_in`` 0.8: 0.77; with 10 per user: 0.79). An in-community
    rating is positive with probability ``like_in``, an out-of-community one with ``like_out``. Labels therefore
    carry a learnable signal; as 15% of them go against it already (at the defaults), a few flipped more barely hurt:
    2% move the README's MF's test AUC by about 0.001, within what another seed changes (the attack protocol shows
    on ML-100K).

    Raises:
        ValueError: a size that is not a positive int, a probability outside [0, 1], ``p_in = 0`` with one community,
            or ``interactions_per_user`` not below the community size ``num_items // num_communities`` (the draws
            would exhaust a user's community), each naming the argument.
    """
    _check_communities(num_users, num_items, num_communities, interactions_per_user,
                       {"p_in": p_in, "like_in": like_in, "like_out": like_out})
    gen = seeded(seed)
    user_comm = torch.randint(num_communities, (num_users,), generator=gen)
    item_comm = torch.arange(num_items) % num_communities
    # Per-user item weights: in-community items share p_in, the rest share 1 - p_in.
    in_comm = user_comm[:, None] == item_comm[None, :]
    n_in = in_comm.sum(1, keepdim=True).float()
    weight = torch.where(in_comm, p_in / n_in, (1 - p_in) / (num_items - n_in))
    items = torch.multinomial(weight, interactions_per_user, replacement=False, generator=gen)
    users = torch.arange(num_users)[:, None].expand_as(items)
    same = in_comm.gather(1, items)
    like = uniform(tuple(items.shape), gen) < torch.where(same, torch.tensor(like_in), torch.tensor(like_out))
    data = make_interactions(torch.stack([users.flatten(), items.flatten()]), like.flatten().float(),
                             num_users, num_items)
    data["user"].community = user_comm
    data["item"].community = item_comm
    return data


def _check_communities(num_users: int, num_items: int, num_communities: int, interactions_per_user: int,
                       probabilities: dict[str, float]) -> None:
    """Refuses sizes that leave a user too few in-community items, naming the field and its value."""
    value: float  # the sizes (ints), then the probabilities
    for name, value in {"num_users": num_users, "num_items": num_items, "num_communities": num_communities,
                        "interactions_per_user": interactions_per_user}.items():
        if not is_integer(value) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    for name, value in probabilities.items():
        if not 0 <= value <= 1:
            raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")
    if num_communities == 1 and probabilities["p_in"] == 0:  # no item to draw: torch's multinomial named no field
        raise ValueError("p_in = 0 draws every item out of the user's community, but with num_communities = 1 there "
                         "is no other: raise num_communities or p_in")
    size = num_items // num_communities
    if interactions_per_user >= size:
        raise ValueError(f"interactions_per_user ({interactions_per_user}) must be below the community size "
                         f"(num_items // num_communities = {num_items} // {num_communities} = {size})")


def power_law_interactions(num_edges: int, num_users: int | None = None, num_items: int | None = None,
                           user_exponent: float = GOWALLA_SHAPE["user_exponent"],
                           item_exponent: float = GOWALLA_SHAPE["item_exponent"],
                           user_max_ratio: float = GOWALLA_SHAPE["user_max_ratio"],
                           item_max_ratio: float = GOWALLA_SHAPE["item_max_ratio"], seed: int = 0) -> HeteroData:
    r"""Exactly ``num_edges`` distinct implicit (user, item) interactions with power-law degrees, seeded.

    A bipartite Chung-Lu graph: every node gets a weight :math:`w` drawn from a Pareto law truncated to
    :math:`[1, b]`, :math:`p(w) \propto w^{-\gamma}`, and each edge joins a user and an item drawn with
    probabilities proportional to their weights, so a node's expected degree is proportional to its
    weight and the degrees follow a power law of exponent :math:`\gamma` (Poisson-smoothed at the low
    end). The cap :math:`b` is set so that the largest expected degree is ``*_max_ratio`` times the mean
    degree, or a third of the other side's node count where that is less (so that every user keeps items
    to sample a negative per edge from; with Gowalla's proportions this binds below about 115k edges for
    items and 50k for users).

    The defaults reproduce Gowalla's training graph (LightGCN's split, 810,128 check-ins of 29,858 users
    at 40,981 places) at any size (:data:`GOWALLA_SHAPE`): users and items in Gowalla's proportion to
    the edges (mean degrees 27.1 and 19.8), largest degrees 30x and 72x the mean (Gowalla: 811 and 1,415),
    and exponents fitted to Gowalla by the method of Clauset, Shalizi and Newman (SIAM Review 2009):
    the discrete power-law maximum-likelihood exponent above each candidate :math:`k_{min}`, keeping the
    :math:`k_{min}` with the smallest Kolmogorov-Smirnov distance: users :math:`\gamma = 2.74`
    (:math:`k_{min} = 40`, 4,842 users in the tail, KS 0.028), items :math:`\gamma = 2.56`
    (:math:`k_{min} = 10`, 29,636 items, KS 0.005). The same estimate on the generated graphs (at the same
    :math:`k_{min}`, from 1e5 to 5e7 edges) gives about 2.81 and 2.48: the cap steepens the users' tail a
    little, Poisson noise flattens the items'. With the cap fixed relative to the mean, the per-node degree
    distribution is the same at every size: a larger graph has more nodes, not denser ones.

    Pairs are drawn in chunks of :math:`2^{22}`, each reduced to its distinct ``user * num_items + item``
    keys; the union is deduplicated with one sort, topped up with further draws until it holds
    ``num_edges`` keys, and a seeded random surplus is dropped. 50M edges (1.8M users, 2.5M items) took
    85 seconds and a peak of 4.4 GiB on a loaded 2-core machine. A few nodes of the smallest weights may
    draw no edge (they stay nodes of the graph).

    Args:
        num_edges: the number of interactions ``E``.
        num_users, num_items: node counts (default: Gowalla's per-edge proportion of ``num_edges``).
        user_exponent, item_exponent: :math:`\gamma` of each side's degree law (> 2, so the mean is finite).
        user_max_ratio, item_max_ratio: largest expected degree over the mean degree, each side (>= 1).
        seed: the same seed gives the same graph.

    Returns:
        ``HeteroData`` (:func:`~graphforget.data.make_interactions`) with ``edge_index [2, E]`` sorted by
        user then item and ``edge_label`` all 1 (implicit feedback, as Gowalla is loaded): add sampled
        negatives (:func:`~graphforget.data.add_negatives`) for BCE, or train with BPR.

    Raises:
        ValueError: on a bad size, exponent or ratio, or more edges than ``num_users * num_items`` pairs.
    """
    num_users, num_items = _node_counts(num_edges, num_users, num_items)
    _check_power_law(num_edges, num_users, num_items, (user_exponent, item_exponent), (user_max_ratio, item_max_ratio))
    # The largest expected degree stays below a third of the other side (room for a negative per edge).
    room = max(1.0, num_users * num_items / (3 * num_edges))  # (other side / 3) / mean degree, both sides
    gen = seeded(seed)
    users = _weight_cdf(num_users, user_exponent, min(user_max_ratio, room), gen)
    items = _weight_cdf(num_items, item_exponent, min(item_max_ratio, room), gen)
    return make_interactions(pairs_of_keys(_draw_keys(users, items, num_edges, gen), num_items), None,
                             num_users, num_items)


def _draw_keys(user_cdf: Tensor, item_cdf: Tensor, num_edges: int, gen: torch.Generator) -> Tensor:
    """``num_edges`` sorted distinct keys ``user * num_items + item``: weighted draws in chunks, deduplicated,
    topped up until there are enough, a random surplus dropped."""
    keys, draws = torch.empty(0, dtype=torch.long), num_edges
    while keys.numel() < num_edges:
        before = keys.numel()
        keys = torch.cat([keys] + [_distinct_draws(user_cdf, item_cdf, min(_CHUNK, draws - start), gen)
                                   for start in range(0, draws, _CHUNK)]).unique()
        rate = max((keys.numel() - before) / draws, 0.01)  # new distinct keys per draw, for the top-up
        draws = math.ceil((num_edges - keys.numel()) / rate * 1.1) + 1024
    if keys.numel() > num_edges:
        keys = keys[torch.randperm(keys.numel(), generator=gen)[:num_edges].sort().values]
    return keys


def _node_counts(num_edges: int, num_users: int | None, num_items: int | None) -> tuple[int, int]:
    """The given node counts, or Gowalla's per-edge proportion of ``num_edges`` (at least two pairs per edge)."""
    sizes = {"num_edges": num_edges, "num_users": num_users, "num_items": num_items}
    bad = [f"{name}={value!r}" for name, value in sizes.items() if value is not None and not is_integer(value)]
    if bad:  # a float count raised a TypeError, or was cut down by int()
        raise ValueError(f"sizes must be integers, got {', '.join(bad)}")
    if num_users is not None and num_users < 1:  # the items' default divides by it
        raise ValueError(f"num_users must be >= 1, got {num_users}")
    if num_users is None:
        num_users = max(1, round(num_edges * GOWALLA_SHAPE["users_per_edge"]))
    if num_items is None:
        num_items = max(round(num_edges * GOWALLA_SHAPE["items_per_edge"]), math.ceil(2 * num_edges / num_users))
    return int(num_users), int(num_items)


def _check_power_law(num_edges: int, num_users: int, num_items: int, exponents, ratios) -> None:
    """Raises ``ValueError`` for impossible sizes, exponents without a finite mean, or ratios below 1."""
    if num_edges < 1 or num_users < 1 or num_items < 1:
        raise ValueError(f"num_edges, num_users and num_items must be >= 1, got {num_edges}, {num_users}, {num_items}")
    if num_edges > num_users * num_items:
        raise ValueError(f"{num_edges} edges are more than the {num_users} x {num_items} possible pairs: "
                         f"raise num_users or num_items")
    if not all(gamma > 2 for gamma in exponents):
        raise ValueError(f"degree exponents must be > 2 (a finite mean degree), got {exponents}")
    if not all(ratio >= 1 for ratio in ratios):
        raise ValueError(f"max-degree ratios must be >= 1, got {ratios}")


def _truncated_pareto_mean(gamma: float, cap: float) -> float:
    r"""Mean of the Pareto law :math:`p(w) \propto w^{-\gamma}` truncated to ``[1, cap]``."""
    if cap <= 1:
        return 1.0
    return (gamma - 1) / (gamma - 2) * (1 - cap ** (2 - gamma)) / (1 - cap ** (1 - gamma))


def _weight_cdf(count: int, gamma: float, max_ratio: float, gen: torch.Generator) -> Tensor:
    """``[count]`` float64 cumulative distribution of truncated-Pareto node weights (drawn with ``gen``),
    the cap ``b`` solving ``b / mean(b) = max_ratio`` (bisection: the left side grows with ``b``)."""
    low, high = 1.0, max_ratio * gamma / (gamma - 2) + 1  # b / mean(b) > max_ratio at ``high``
    for _ in range(100):
        mid = (low + high) / 2
        low, high = (mid, high) if mid / _truncated_pareto_mean(gamma, mid) < max_ratio else (low, mid)
    tail = 1 - low ** (1 - gamma)  # inverse CDF of the truncated law
    weight = (1 - torch.rand(count, generator=gen, dtype=torch.float64) * tail) ** (-1 / (gamma - 1))
    cdf = weight.cumsum(0)
    return cdf / cdf[-1]


def _distinct_draws(user_cdf: Tensor, item_cdf: Tensor, count: int, gen: torch.Generator) -> Tensor:
    """The sorted distinct keys ``user * num_items + item`` of ``count`` weighted (user, item) draws."""
    def draw(cdf: Tensor) -> Tensor:
        u = torch.rand(count, generator=gen, dtype=torch.float64)
        return torch.searchsorted(cdf, u).clamp_(max=cdf.numel() - 1)
    user = draw(user_cdf)
    return (user * item_cdf.numel() + draw(item_cdf)).unique()


def power_law_exponent(degrees: Tensor, k_min: int) -> float:
    r"""Maximum-likelihood exponent :math:`\gamma` of a discrete power law fitted to the degrees ``>= k_min``.

    The approximation of Clauset, Shalizi and Newman (SIAM Review 2009, eq. 3.7),
    :math:`\hat\gamma = 1 + n \big/ \sum_{k_j \ge k_{min}} \ln \frac{k_j}{k_{min} - 1/2}`, within about
    0.01 of the exact discrete estimate for :math:`k_{min} \gtrsim 6` (on Gowalla: 2.740 against 2.741
    for users, 2.553 against 2.557 for items).

    Args:
        degrees: ``[N]`` node degrees (any integer or float dtype).
        k_min: the smallest degree of the tail (>= 1).

    Raises:
        ValueError: when ``k_min`` is not an integer >= 1, or fewer than two degrees are ``>= k_min``.
    """
    if not (is_integer(k_min) and k_min >= 1):  # NaN was refused as "fewer than two degrees >= k_min=nan"
        raise ValueError(f"k_min must be an integer >= 1, got {k_min!r}")
    tail = degrees[degrees >= k_min].double()
    if tail.numel() < 2:
        raise ValueError(f"fewer than two degrees >= k_min={k_min}")
    return 1 + tail.numel() / float(torch.log(tail / (k_min - 0.5)).sum())


def path_graph(num_users: int, num_items: int, hops: int, start: str = "user",
               device: torch.device | str | None = None) -> HeteroData:
    """The path ``u0 - i0 - u1 - i1 - ...`` (``start="user"``) or ``i0 - u0 - i1 - u1 - ...`` (``"item"``) among
    ``num_users`` users and ``num_items`` items, to ``hops`` hops from the pair ``(u0, i0)``, its edges labelled 1:
    the node at place ``p`` lies ``max(p - 1, 0)`` hops from the pair, and no shortcut hides it (a model probes its
    depth on it: from the item's side on the first, from the user's on the second).

    Raises:
        ValueError: ``start`` is neither, or ``hops`` is not an integer in ``[0, path_hops(...)]``.
    """
    if start not in ("user", "item"):
        raise ValueError(f"path_graph: start must be 'user' or 'item', got {start!r}")
    longest = path_hops(num_users, num_items, start)
    if not (is_integer(hops) and 0 <= hops <= longest):
        raise ValueError(f"path_graph: hops must be an integer in [0, {longest}] (the longest path from {start} 0 "
                         f"over {num_users} users and {num_items} items), got {hops!r}")
    place = torch.arange(hops + 2, device=device)
    ids, is_user = place // 2, place % 2 == (0 if start == "user" else 1)  # from a user: u_k at 2k, i_k at 2k + 1
    here, there = place[:-1], place[1:]  # each edge joins two consecutive places, one a user's, one an item's
    edges = torch.stack([torch.where(is_user[here], ids[here], ids[there]),
                         torch.where(is_user[here], ids[there], ids[here])])
    return make_interactions(edges, num_users=num_users, num_items=num_items)


def path_hops(num_users: int, num_items: int, start: str = "user") -> int:
    """The hops from ``(u0, i0)`` to the far end of the longest :func:`path_graph` over these node counts."""
    ends = (num_users, num_items) if start == "user" else (num_items, num_users)  # the first node's type, the other's
    return min(2 * ends[0], 2 * ends[1] + 1) - 2
