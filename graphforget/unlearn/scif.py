"""SCIF: selective and collaborative influence function (Li et al., ESWA 2023)."""
from __future__ import annotations


import torch
from torch_geometric.data import HeteroData

from ..data.interactions import EDGE, num_items, num_users, validate_pairs
from ..influence import Terms
from ..objectives import BCEObjective, Objective
from .base import orphan_nodes, warn_caller
from .registry import register
from .ifru import IFRU

__all__ = ["SCIF", "substitute_labels"]


def substitute_labels(remaining: HeteroData, request, dtype: torch.dtype | None = None) -> torch.Tensor:
    """The label each removed (user, item) pair gets in SCIF: the user's mean remaining label.

    Where the user has no remaining edge, the item's mean; where neither has one, the global mean. Integer and
    bool 0/1 labels give floating-point means (``mean`` refused them, and a bool sum is a logical or), in the labels'
    own floating dtype, or ``dtype``; the sums are float64 (a bfloat16 sum stopped at 256: 599 labels of 1 had a mean
    of 0.43).

    Raises:
        ValueError: ``request`` is not a ``[2, R]`` tensor of distinct (user, item) ids of ``remaining``'s node ranges
            (user -1 had been given the last user's mean).
    """
    request = validate_pairs(remaining, request).to(remaining[EDGE].edge_index.device)
    ei, label = remaining[EDGE].edge_index, remaining[EDGE].edge_label
    if dtype is None:
        dtype = label.dtype if label.is_floating_point() else torch.get_default_dtype()
    label = label.double()
    def means(ids, count):
        total = torch.zeros(count, dtype=label.dtype, device=label.device).index_add_(0, ids, label)
        n = torch.bincount(ids, minlength=count).to(label.dtype)
        return total / n.clamp(min=1), n > 0
    user_mean, user_has = means(ei[0], num_users(remaining))
    item_mean, item_has = means(ei[1], num_items(remaining))
    overall = label.mean() if label.numel() else torch.tensor(0.5)
    user, item = request
    return torch.where(user_has[user], user_mean[user], torch.where(item_has[item], item_mean[item], overall)).to(dtype)


@register
class SCIF(IFRU):
    r"""Influence unlearning on the involved users' and items' embeddings only, labels substituted.

    The removed terms are not dropped but relabelled with :func:`substitute_labels`; the Newton step
    updates only the embedding rows of the request's users and items (no neighbour expansion, no
    spillover), and a custom model's dense weights unless ``dense=False`` (as IFRU's, see :class:`IFRUConfig`):

    .. math::
        \phi' = \hat\phi + H_{\phi\phi}^{-1} \nabla_\phi \sum_{D_r} \big(\ell(f_\theta(u,i), y) -
        \ell(f_\theta(u,i), \bar y_u)\big) .

    Needs a labelled objective (:class:`~graphforget.objectives.BCEObjective`). Solver, damping and
    curvature options, the acceptance test, the failure policy and the Newton steps after this one (on a
    stationary model, or an early-stopped one whose L2 is at least its implicit ridge; ``newton.steps=1``
    for the paper's single step) are IFRU's (see :class:`IFRUConfig`); ``hops``, ``spillover``, ``prune``
    and ``curvature_of`` (``original``) are fixed: a config setting them otherwise is refused.

    The substitution teaches the model the user's mean remaining label on every removed pair: a request of all of a
    user's dislikes relabels them as likes. On ML-100K's LightGCN (2% flipped, seed 2, no L2, Adam at lr 0.05, early
    stopping) a request of the 311 dislikes of the user with most grew its row from norm 3.4 to 19.5 (three
    Retrains: 8.2-8.6) for AUC_1 0.735 against the Original's 0.745 and the Retrains' 0.743-0.745, trusted: its
    validation AUC fell 0.003.

    On a model that passes messages the step leaves out how the removal changes the remaining terms' scores (the
    spillover), which the acceptance test's objective holds: where that change dominates, no damping passes, and the
    model is returned unchanged with a warning. On ML-100K's early-stopped LightGCN of the presets without L2 (2%
    flipped, seed 0), a request of an item's only three edges, all labelled 0, left the test's ratio at 0.01-0.34
    across five dampings from 0.8 to 8,092 (a step consistent with the objective tends to 1 as the damping grows);
    IFRU, whose step holds the spillover, took it at the first damping, trusted (ratio 0.92 with ``hops=0``).

    A user or item whose every pair the request removes (a whole-user or whole-item deletion) keeps those pairs as
    terms, relabelled: its row goes on fitting them, where a Retrain leaves it untrained. SCIF warns and counts such
    nodes (``info["withdrawn_nodes"]``); the step's trust is its acceptance test's, as ever. On the first 2,000 users
    of ML-1M (MF, Adam, early stopping, no L2), an item's 1,035 pairs withdrawn, SCIF left a membership attack's AUC
    on them at 0.721 (before: 0.711; Retrain: 0.569), their mean probability at 0.76 (Retrain: 0.46) and its
    predictions at 0.57 of the Original's distance from Retrain's, trusted; IFRU, which zeroes such rows: 0.50, 0.50
    and 0.12.
    """
    name = "scif"
    # The new objective keeps the removed terms (relabelled): its curvature is the original one.
    fixed = {"hops": 0, "spillover": False, "prune": None, "curvature_of": "original"}

    def _unlearn(self, request, positions, remaining: HeteroData):
        model, info = super()._unlearn(request, positions, remaining)
        withdrawn = int(orphan_nodes(request, remaining, self.objective).sum())
        if withdrawn:
            warn_caller(f"SCIF: the request removes every pair of {withdrawn} of its users and items; SCIF keeps "
                        "their pairs as terms with substituted labels (the paper's rule), so their rows go on fitting "
                        "them, and a membership attack can still find them, where a Retrain leaves those rows "
                        "untrained; IFRU zeroes such rows (info['withdrawn_nodes'])")
        return model, {**info, "withdrawn_nodes": withdrawn}

    @classmethod
    def check_objective(cls, objective: Objective) -> None:
        super().check_objective(objective)
        if not isinstance(objective, BCEObjective):
            raise ValueError("SCIF substitutes labels, so it needs a labelled objective (BCEObjective)")

    def _check_graph(self) -> None:
        """IFRU's checks, and a target of one label per term: the labels are what SCIF substitutes (a ``[B, 2]``
        target, a label and a weight, had failed inside the objective's losses)."""
        super()._check_graph()
        edges = self.graph[EDGE].edge_index
        _, target = self.objective.pairs(self.graph, torch.arange(min(edges.size(1), 8), device=edges.device))
        if target.dim() != 1:
            raise ValueError(f"SCIF substitutes each removed term's label, so it needs a target of one label per term "
                             f"([B]); {type(self.objective).__name__}.pairs() gives {list(target.shape)}: use IFRU")

    def _replacement_terms(self, removed: Terms, request, remaining: HeteroData) -> Terms:
        # means: floating point even where the labels are not, and in a float64 model's precision where the labels
        # are float32 (rounded to them, the targets moved a float64 model's step by 1e-8)
        precision = next((p.dtype for p in self.model.parameters() if p.is_floating_point()), removed.target.dtype)
        dtype = torch.promote_types(removed.target.dtype, precision)
        return Terms(removed.edge_label_index, substitute_labels(remaining, request, dtype).to(removed.target.device))
