"""The IFRU unlearner: the rows phi a request acts on, the removal's gradient, the first step and the Newton
extension, and what ``info`` reports."""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import TypeVar, cast

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from ...clock import Stopwatch
from ...config import check_fields, eval_mode
from ...data.interactions import EDGE, num_users
from ...distributed import TermShare
from ...io import unchanged, versions
from ...influence import (AndersonMixing, ContrastiveTerm, DotProductOperator, GaussNewtonOperator, HessianOperator,
                          LocalProblem, NodeRows, Terms, check_receptive_field, dot_product_gradient,
                          dot_product_objective, has_contrastive_term, has_linear_dot_product, homogeneous_index,
                          importance_scores, k_hop_mask, local_problem, message_passing_degrees, node_ids,
                          objective_function, rows_function, scoring_graph, select_nodes, solve, training_terms)
from ...influence.hvp import nodes_graph
from ...models.base import Recommender, running_statistics
from ...models.sgl import ContrastiveBPRObjective
from ...objectives import Objective
from ...train import check_trainable
from ..base import (Unlearner, UnlearningFailed, UntrustedWarning, non_finite_at, refuse_no_remaining_edge,
                    warn_caller)
from ..registry import register
from .config import IFRUConfig
from .ladder import (DAMPING_GROWTH, NEGLIGIBLE_STEP, RETRY_DAMPING, Ladder, fresh_draw_failure, held, mean_diagonal,
                     shifted)
from .newton import (AUTO_NEWTON_DECREASE, AUTO_NEWTON_STEPS, AUTO_NEWTON_STOP, AUTO_NEWTON_TOL, STATIONARY_RATIO,
                     WIDEN_RATIO, NewtonPlan, backtrack, descend, forcing_term)
from .tilted import TiltedObjective, gradient_ratio

_Settled = TypeVar("_Settled", bound="Tensor | torch.nn.Module")  # what _settle keeps or applies


#: A node the request leaves with fewer than this share of its terms (and some) is stripped: its own implicit ridge
#: holds its row where it is larger than the pooled one (:meth:`IFRU._hold_stripped_rows`).
STRIPPED_SHARE = 0.5
#: The methods that make the trained objective of pairs(), losses() and l2, and the library's own of them, which the
#: step takes as they are (ContrastiveBPRObjective's contrastive term is IFRU's too: IFRUConfig.contrastive).
COMPOSITION = ("regularization", "total", "batch_loss")
LIBRARY_COMPOSITION = (Objective.regularization, Objective.total, Objective.batch_loss,
                       ContrastiveBPRObjective.batch_loss)
#: How many more solves :meth:`IFRU._hold_long_rows` takes at most (``solver.max_row_growth``), and by how much of
#: its cap a row must go past it to call for one.
HOLD_ROUNDS, HOLD_SLACK = 6, 0.05
#: :meth:`IFRU._refit_stripped_rows`: at most this many Newton steps, stopped once the gradient on the stripped rows is
#: under REFIT_TOL times its value where they start.
REFIT_STEPS, REFIT_TOL = 10, 1e-3
#: The draw of negatives (an epoch of BPR's), and of a contrastive term's views, that ``trust.max_fresh_loss_rise``
#: scores a step on; IFRU's objective holds epoch 0's, and the views' draw 0.
FRESH_EPOCH = 1
#: The edges whose pairs tell whether an objective without ``resample`` draws anew every epoch
RESAMPLE_PROBE = 256


@dataclass
class _Region:
    """Where a request acts: :math:`\\phi` (the kept nodes' rows) and the node masks around it."""
    rows: NodeRows
    phi: Tensor
    kept_mask: Tensor
    affected: Tensor  # within K hops of V(D_r): the nodes whose outputs the removal changes
    reach: Tensor  # within K hops of the kept nodes: the nodes whose outputs depend on phi


@dataclass(eq=False)
class _Scored:
    """Loss terms with the graph they are scored on, this rank's part of them (``mine``: all of them
    without data parallelism, see :class:`~graphforget.distributed.TermShare`), and where that part can be
    scored exactly: its scoring graph (:func:`~graphforget.influence.scoring_graph`), and for the closed form its
    :class:`~graphforget.influence.LocalProblem` over the request's rows, each built on first use."""
    terms: Terms
    graph: HeteroData
    share: TermShare = field(default_factory=TermShare)
    contrastive: ContrastiveTerm | None = None  # the objective's contrastive term on ``graph`` (rank 0 only)
    mine: Terms = field(init=False, repr=False)
    _sub: HeteroData | None = field(default=None, init=False, repr=False)
    _local: LocalProblem | None = field(default=None, init=False, repr=False)

    def __post_init__(self):
        self.mine = self.share.terms(self.terms)

    def scoring_graph(self, model, locality: bool) -> HeteroData:
        if self._sub is None:
            self._sub = scoring_graph(model, self.graph, self.mine, locality)
        return self._sub

    def local(self, model, rows: NodeRows) -> LocalProblem:
        """The closed form's problem: ``rows`` (the same for every use within a call) and this part's terms,
        relabelled to the nodes of its scoring graph."""
        if self._local is None:
            self._local = local_problem(model, rows, self.mine, self.scoring_graph(model, True))
        return self._local


@dataclass
class _Call:
    """One request's state, passed between the phases of :meth:`IFRU._unlearn` (it lives for the call)."""
    request: Tensor
    positions: Tensor  # the request's edges in the training graph
    remaining: HeteroData
    region: _Region
    original: _Scored  # the terms of D that reach phi, on the training graph
    new: _Scored  # the terms of D \ D_r that reach phi, on the remaining graph
    removed: _Scored  # the terms of D_r, on the training graph
    replaced: _Scored | None  # what replaces them in the new objective (SCIF's relabelled terms), if anything
    share: TermShare  # this rank's share of the sums over terms (data_parallel)
    fresh: _Scored | None = None  # ``new``'s terms on a draw of negatives they were not fit on (trust)


@register
class IFRU(Unlearner):
    r"""Influence-function unlearning with spillover, k-hop locality and importance pruning.

    With the summed objective :math:`L(\theta; D)` (see :mod:`graphforget.objectives`),

    .. math::
        g = \nabla_\phi \Big[ \sum_{D_r} \ell(f_\theta(u,i; D), y)
            + \sum_{D_c} \big( \ell(f_\theta(u,i; D), y) - \ell(f_\theta(u,i; D_{-r}), y) \big) \Big]_{\hat\theta},
        \qquad \phi' = \hat\phi + (H_{\phi\phi} + \lambda I)^{-1} g ,

    where :math:`\phi` are the embedding rows of the nodes kept by pruning (and, by default, the
    model's dense parameters), :math:`D_c` the remaining terms scoring a node within :math:`K` hops of
    the request's nodes (:math:`K` = receptive field), and :math:`H` the curvature of :math:`L` (never
    formed: curvature-vector products). All terms are computed on the computation subgraph that can
    reach :math:`\phi` where the model supports it.

    **Trust.** Models trained with early stopping and little L2 are not stationary and their curvature
    is nearly singular: the undamped step moves far along directions training never moved along.
    By default :math:`\lambda` is the implicit ridge of the trained point (:class:`SolverConfig`), the
    step is a Newton step of the tilted new objective :math:`T` (``TiltedObjective``), and it is
    accepted only when the solve converged (its true residual measured, not only the solver's estimate),
    everything is finite, :math:`T` decreased by at least
    ``trust.min_ratio`` of what its quadratic model predicts and, where the objective draws new negatives
    every epoch (BPR), their loss on a draw the step was not fit on rose by at most
    ``trust.max_fresh_loss_rise``. A rejected step is solved again with 10x the damping
    (Levenberg-Marquardt), up to ``trust.retries`` times; then ``trust.on_failure`` decides, and
    ``info["trusted"]`` / ``info["reason"]`` report the outcome. Given ``val``, the accepted result's
    validation AUC is tested too (``trust.max_val_auc_drop``), under the same policy.

    **Scale.** With ``data_parallel`` in a ``torch.distributed`` process group, the sums over loss terms
    (curvature products, gradients, objective values) are split across the ranks, one all-reduce each
    (:class:`~graphforget.distributed.TermShare`); every rank calls ``unlearn`` and gets the same model.

    **Phases** of a request (``info["phase_seconds"]``): ``select`` (pruning: the rows :math:`\phi`),
    ``gradient`` (the terms that reach :math:`\phi`, the tilted objective and :math:`g`), ``solve``
    (the first step with its retries, then the Newton extension), ``write`` (the new model) and ``validate`` (the
    check of the outputs on the remaining graph and, given ``val`` and a trusted step, the validation test).

    The result's ``info``:

    * ``request_edges``, ``affected_nodes`` (within :math:`K` hops of the request), ``affected_terms``
      (:math:`|D_c|`), ``kept_nodes``, ``kept_parameters`` (the size of :math:`\phi`), ``contrastive``
      (whether the objective's contrastive term was in it, see :class:`IFRUConfig`),
      ``widened`` (the rows taken wider for the Newton steps, see ``_widens`` and :class:`NewtonConfig`);
    * ``implicit_ridge`` (whatever ``solver.damping``: a damping set by hand below it, away from stationarity, is
      warned of), ``gradient_ratio``
      (:math:`\lVert\nabla L(\hat\phi; D)\rVert / \lVert g\rVert`: how far from stationary the model is),
      ``damping`` (the last attempt's :math:`\lambda`; ``None`` when nothing was solved), ``dense_damping``
      (``{dense parameter: the scale of its damping}``, see :class:`SolverConfig`; empty when none is scaled),
      ``stripped_rows`` (how many rows of nodes the request strips of most of their terms: each is held by its own
      ridge where larger than the pooled one), ``held_rows`` (how many rows were solved again with more damping for
      ending longer than ``solver.max_row_growth`` allows), ``long_rows`` (how many still do: the holding ended
      first; see :class:`SolverConfig`) and ``refit_rows`` (how many stripped rows were fit again to the terms they
      keep, see ``_refit_stripped_rows``);
    * ``attempts``: one dict per solve of the first step, then of each accepted round of ``solver.max_row_growth``
      (the solver's ``iterations``, ``residual`` (CG's: its recursive estimate), ``seconds``, ``converged``,
      ``negative_curvature``, and ``rhs_norm``, ``damping``,
      ``predicted_decrease``, ``actual_decrease``, ``ratio``, ``true_residual`` (measured; a finite step's),
      ``reason``; with a fresh draw of negatives or views, once
      the rest passed, ``fresh_loss_rise`` (the larger part's): see :class:`~graphforget.unlearn.TrustConfig`);
    * ``solver``: always a list, one dict per solve of a step: the first step's last attempt (the accepted
      one when ``trusted``), then one per Newton step (with its ``tol``, its ``step_size``, whether the
      Anderson-mixed iterate was taken instead, ``mixed``, and with ``line_search`` how much it lowered the
      objective of the steps, ``decrease``); empty when the gradient was not finite or zero
      (nothing was solved; zero: the rows are already the answer, trusted);
    * ``trusted`` and ``reason`` (``None`` when trusted); ``newton_stop`` (why the Newton steps ended:
      ``converged``, ``stalled``, ``gradient rose``, ``no descent`` or ``max steps``; only when they ran);
      ``newton_discarded`` (only when the Newton steps were dropped for raising :math:`T` or failing
      ``trust.max_fresh_loss_rise``); ``zeroed_entries`` (only for a trusted first step with
      ``curvature_of="remaining"``): how many entries of :math:`\phi` were set to 0 as rows of nodes left with no
      term, and no edge on a model that passes messages (their minimiser, see ``TiltedObjective``);
      ``non_finite_outputs`` (only where the
      model's outputs at nodes the request leaves without edges are non-finite whatever the step, see
      ``_check_outputs``);
    * given ``val`` and a trusted step: ``val_auc`` and ``original_val_auc`` (the result's and the trained
      model's) and ``val_pairs`` (how many were scored), unless they lack a class; when the validation test
      rejects the step and the model is returned unchanged, ``rejected_val_auc`` (the step's) in place of
      ``val_auc``, and no ``zeroed_entries``;
    * ``phase_seconds`` (per phase, see above) and ``threads``;
    * ``untouched_buffers`` (only for a model that has them): the buffers of running statistics (a BatchNorm's
      ``running_mean`` and ``running_var``), left as trained, with the request's data in them: a step moves
      parameters only, so IFRU and SCIF warn once per unlearner and name them (they are not recomputed).

    Args:
        model: the trained model.
        graph: its training graph.
        objective: its training objective.
        config: :class:`IFRUConfig` (or a dict of its options; ``None``: the defaults).
        val: validation pairs (optional): the accepted result's validation AUC is tested
            (``trust.max_val_auc_drop``).
        _reference_paths: for tests only: never take the closed-form products nor the k-hop computation
            subgraph (double backward through the model on the whole graph), the reference the fast paths
            are checked against.

    Raises:
        ValueError: a trainable parameter in half precision (``float16``, ``bfloat16``); from
            :meth:`~graphforget.unlearn.Unlearner.unlearn`, a request that removes every training edge (Retrain and
            FineTune refuse it too: no data is left).
    """
    name = "ifru"
    needs_one_dtype = True
    Config = IFRUConfig

    def __init__(self, model, graph: HeteroData, objective: Objective, config: IFRUConfig | dict | None = None, *,
                 val: HeteroData | None = None, _reference_paths: bool = False):
        self._of_edges: dict[str, tuple] = {}  # what _of_training_edges built: (the edges' state, the value)
        self._drawn: list[tuple] = []  # (graph, epoch, its state, every term): _all_terms
        super().__init__(model, graph, objective, config, val=val)
        _check_prune(self.config, model)
        _check_surrogate(self.config, model)
        check_receptive_field(model, graph, type(self).__name__)
        _warn_of_surrogate_dense(self.config, model, type(self).__name__)
        self._reference_paths = _reference_paths
        if val is None and self._draws_anew() and self.config.trust.max_fresh_loss_rise is None:
            warn_caller(f"{type(self).__name__}: the objective draws new negatives or views every epoch, but the step "
                        "is fit and tested on one draw of them, which it can overfit unseen (docs/methods.rst, Trust: "
                        "a trusted step took Recall@20 from 0.233 to 0.183); keep trust.max_fresh_loss_rise, or pass "
                        "val, whose test sees the ranking")
        self._running_stats = running_statistics(model)  # the model's structure: found once
        if self._running_stats:  # said once per unlearner; every result's info names them
            warn_caller(f"{type(self).__name__}: {type(model).__name__} has running statistics "
                        f"({', '.join(self._running_stats)}), computed on the training data with the requests "
                        "in it: an influence step moves parameters, not buffers, so they are left as trained "
                        "(info['untouched_buffers'])")
        if self.config.contrastive and getattr(objective, "ssl_weight", 0) > 0 and not self._has_contrastive():
            why = ("curvature='mf_surrogate' has no term for it" if self.config.curvature == "mf_surrogate" else
                   f"{type(model).__name__} has no fixed_views(reference, generator) to draw its views")
            name = type(self).__name__
            warn_caller(f"{name}: the objective has a contrastive term, but {why}: {name} differentiates the BPR risk "
                        "alone (IFRUConfig.contrastive=False says so and silences this)")

    @classmethod
    def check_objective(cls, objective: Objective) -> None:
        r"""Refuses an objective whose :meth:`~graphforget.objectives.Objective.regularization`, ``total`` or
        ``batch_loss`` is its own (its class's or the instance's): the step takes the objective as the losses of
        ``pairs()`` plus :math:`\tfrac{l_2}{2}\lVert\phi\rVert^2`, and a lighter L2 on the items had been left out of a
        step called trusted, 94% off the Newton step of the objective trained (a QA probe), as were a penalty added in
        ``batch_loss`` and an L2 switched off on the instance. An override that only calls ``super()`` is refused
        too: nothing tells it apart."""
        own = [name for name in COMPOSITION if name in vars(objective)
               or getattr(type(objective), name) not in LIBRARY_COMPOSITION]
        if own:
            raise ValueError(f"{cls.__name__} takes the objective as the losses of pairs() plus objective.l2 / 2 "
                             f"||phi||^2, but {type(objective).__name__} defines its own "
                             f"{', '.join(f'{name}()' for name in own)}: the step may be of another objective than the "
                             "one trained (give its L2 as l2 and its penalties as loss terms, or use FineTune or "
                             "Retrain)")

    def _check_config(self) -> None:
        super()._check_config()
        _check_prune(self.config, self.model)  # edited to another length: it failed deep inside, naming no field
        _check_surrogate(self.config, self.model)

    def _of_training_edges(self, build):
        """``build(self.graph)``, built again only when the training graph's edges changed: every request reads what
        it builds, a scan of every edge (the message-passing degrees, the homogeneous index of the region searches)."""
        store = self.graph[EDGE]
        state = versions(store.edge_index, store.get("observed"))
        kept = self._of_edges.get(build.__name__)
        if kept is None or not unchanged(state, kept[0]):
            kept = self._of_edges[build.__name__] = state, build(self.graph)
        return kept[1]

    def _message_passing_degrees(self) -> Tensor:
        """``[U + I]`` message-passing degrees of the training graph (:meth:`_of_training_edges`)."""
        return self._of_training_edges(message_passing_degrees)

    def _unlearn(self, request: Tensor, positions: Tensor, remaining: HeteroData):
        # a frozen model (requires_grad_(False) for serving) came back unchanged, trusted
        check_trainable(self.model, type(self).__name__, "the step moves only the trainable ones (unfreeze them)")
        # else the step would fit the L2 alone (or nothing, without L2; BPR's label-0 edges are no term), or BCE's
        # one class (every score up, or down), and call it trusted where Retrain and FineTune refuse
        refuse_no_remaining_edge(self, remaining, "for the step to fit (a model of no data is an untrained one)")
        # A copy to work on: the curvature products swap tensors into the module they call (torch.func), and the
        # modes and sparse embeddings are switched, which a thread serving the caller's model saw (wrong scores).
        # Results are copies of the caller's (_caller): a forward may write the working copy's buffers.
        self._caller, self.model = self.model, copy.deepcopy(self.model)
        try:
            # The eval-mode model, the one scored and served: in train mode a dropout would make every gradient
            # and curvature product random (unlearn hands the result back in the caller's modes).
            with eval_mode(self.model):
                return self._unlearn_request(request, positions, remaining)
        finally:  # the remaining graph's terms go with the call; the training graph's serve the next one
            self.model = self._caller
            self._drawn = [entry for entry in self._drawn if entry[0] is self.graph]

    def _unlearn_request(self, request: Tensor, positions: Tensor, remaining: HeteroData):
        clock = _PhaseClock(self.graph[EDGE].edge_index.device)
        region = self._select(request, self.config.hops)
        clock.lap("select")
        share = TermShare.of_group() if self.config.data_parallel else TermShare()
        call, target, gradient = self._prepare(request, positions, remaining, region, share)
        widened = self._widens(target, gradient)
        wider = self._select(request, self.model.receptive_field + 1, coupled=True) if widened else region
        if not torch.equal(wider.kept_mask, region.kept_mask):  # the same rows give the same terms and gradients
            region = wider
            call, target, gradient = self._prepare(request, positions, remaining, region, share)
        clock.lap("gradient")
        phi, outcome = self._solve(call, gradient.detach(), target)
        clock.lap("solve")
        new_model = copy.deepcopy(self._caller).eval()  # checked as served; unlearn gives it the caller's modes
        region.rows.write(new_model, phi)
        clock.lap("write")
        if outcome["trusted"]:
            new_model = self._check_outputs(new_model, call, outcome)
        if outcome["trusted"]:
            new_model = self._validate(new_model, remaining, outcome)
            clock.lap("validate")
        stats = self._running_stats
        return new_model, {**self._describe(call), **outcome, "widened": widened, "phase_seconds": clock.phases,
                           "threads": torch.get_num_threads(), **({"untouched_buffers": stats} if stats else {})}

    def _check_outputs(self, new_model: Recommender, call: _Call, outcome: dict) -> Recommender:
        """The new model's outputs on the remaining graph at the nodes the request leaves without edges, which no term
        scores, so that the acceptance test never sees them. Non-finite where the unchanged model's are finite (rows
        the step zeroed, in a model that normalises them): ``trust.on_failure`` decides. Non-finite there in both
        (a model that divides by the degree, as a Retrain's would be): a warning, and ``info["non_finite_outputs"]``.
        The outputs are taken on the nodes' computation subgraph (their own rows: they have no edges), or, for a model
        without :meth:`embed`, its scores on the remaining graph (:func:`~graphforget.unlearn.base.non_finite_at`)."""
        users = num_users(call.remaining)
        ends = node_ids(call.request, users)
        isolated = ends[self._remaining_degrees(call)[ends] == 0]
        if isolated.numel() == 0:
            return new_model
        sub = nodes_graph(new_model, call.remaining, isolated, locality=not self._reference_paths)
        bad = non_finite_at(new_model, sub, isolated, call.remaining)
        if bad.numel() == 0:
            return new_model
        created = bad[~torch.isin(bad, non_finite_at(self.model, sub, isolated, call.remaining))]
        first = int((created if created.numel() else bad)[0])
        node = f"user {first}" if first < users else f"item {first - users}"
        name = type(self).__name__
        if created.numel() == 0:
            outcome["non_finite_outputs"] = bad.numel()
            warn_caller(f"{name}: the model's outputs on the remaining graph are not finite at {bad.numel()} node(s) "
                        f"that the request leaves without edges, {node} first, whatever the step: the unchanged "
                        "model's are too, as a Retrain's would be (does the model divide by the degree?)")
            return new_model
        reason = (f"the step made the model's outputs on the remaining graph non-finite at {created.numel()} node(s) "
                  f"that the request leaves without edges, {node} first (the unchanged model's are finite there)")
        outcome.update(trusted=False, reason=reason)
        settled = self._settle(copy.deepcopy(self._caller), new_model, reason)
        if settled is not new_model:  # nothing of the step was applied
            outcome.pop("zeroed_entries", None)
        return settled

    def _validate(self, new_model: Recommender, remaining: HeteroData, outcome: dict) -> Recommender:
        """``trust.max_val_auc_drop`` on the accepted result (see :meth:`Unlearner._validation_test`); on failure
        ``trust.on_failure`` decides. Measured on SGL trained to convergence (ML-100K, fake edges removed,
        3 seeds) with ``contrastive=False``: IFRU's step lowered the validation AUC by 3.4-4.0 standard errors
        (a Retrain: -0.3 and -0.5 on seeds 0 and 1) and moved the predictions away from Retrain's (gap 1.26);
        10x and 100x the damping (seed 0) brought the fall to 1.7 and 0.6 only by forgetting less (attack AUC
        0.22 and 0.40 against 0.07, the Original's 0.63). On the grid of ``benchmarks/ifru_robustness.py`` it
        never fired."""
        check = self._validation_test(new_model, remaining, self.config.trust.max_val_auc_drop, "retrain")
        if check is None:
            return new_model
        figures, reason = check
        outcome.update(figures)
        if reason is None:
            return new_model
        outcome.update(trusted=False, reason=reason)
        settled = self._settle(copy.deepcopy(self._caller), new_model, reason)
        if settled is not new_model:  # the figures are the rejected step's, not the returned model's
            outcome["rejected_val_auc"] = outcome.pop("val_auc")
            outcome.pop("zeroed_entries", None)
        return settled

    def _prepare(self, request: Tensor, positions: Tensor, remaining: HeteroData, region: _Region,
                 share: TermShare) -> tuple[_Call, TiltedObjective, Tensor]:
        """The request's terms over ``region``, the tilted objective T and the removal's gradient g."""
        call = self._gather(request, positions, remaining, region, share)
        target = self._tilted_objective(call)
        return call, target, self._gradient(call, target)

    def _widens(self, target: TiltedObjective, gradient: Tensor) -> bool:
        """Whether the region grows by one hop and the rows coupled to it (``_select``'s ``coupled``): on a
        stationary model (``newton.steps="auto"``, ``hops`` not set), the Newton steps go to the new objective's
        minimiser, towards which the rows that the curvature couples to the request's move too. The steps on an
        early-stopped model (``newton.early_stopped``) widen only while the removal's gradient outweighs the
        trained point's residual (``gradient_ratio <= 1``): beyond, the coupled rows would move mostly with the
        residual, which the tilt holds, and for a single user (ratios 1.9-24 on ML-100K) they are most of the graph
        (2285 of 2625 nodes), at 7-21x the one step's time for the same forgetting. Rows set by ``hops`` or ``prune``
        (one ratio per order of the receptive field) are not widened."""
        cfg = self.config
        if cfg.newton.steps != "auto" or cfg.hops is not None or cfg.prune is not None:
            return False
        ratio = gradient_ratio(target, gradient)
        return ratio <= STATIONARY_RATIO or (ratio <= WIDEN_RATIO and self._iterates(target, ratio))

    def _iterates(self, target: TiltedObjective, ratio: float) -> bool:
        """Whether the auto Newton steps run: on a stationary model; with ``newton.early_stopped``, also where
        the explicit L2 is at least the implicit ridge :math:`\\lambda`. Their objective, T without its
        proximal term, lacks the ridge that stands for early stopping; that changes the total ridge
        :math:`l_2 + \\lambda` by at most half only when :math:`\\lambda \\le l_2`. Where early stopping is the
        main regulariser its minimiser overfits the region (measured: ML-100K LightGCN, weak L2, 0.47 -> -2.59),
        and without L2 it has flat directions (the linear maps of the embedding space)."""
        if ratio <= STATIONARY_RATIO:
            return True
        l2 = self.objective.l2
        return self.config.newton.early_stopped and l2 > 0 and target.implicit_ridge() <= l2

    def _all_terms(self, graph: HeteroData, epoch: int = 0) -> Terms:
        """Every term of the objective on ``graph`` with ``epoch``'s negatives, drawn once: the training graph's
        while its edges, labels and the objective are unchanged (every request reads them), the remaining graph's
        for the call (a widened region reads them again). BPR draws a negative per edge: 0.2 s on ML-1M."""
        store = graph[EDGE]
        state = versions(store.edge_index, store.get("observed"), store.edge_label) + [
            (self.objective, repr(self.objective))]
        for drawn_on, drawn_epoch, drawn_state, terms in self._drawn:
            if drawn_on is graph and drawn_epoch == epoch and unchanged(state, drawn_state):
                return terms
        terms = training_terms(self.objective, graph, epoch=epoch)
        # a stale draw of the same graph and epoch is replaced
        self._drawn = [entry for entry in self._drawn if entry[0] is not graph or entry[1] != epoch]
        self._drawn.append((graph, epoch, state, terms))
        return terms

    def _terms_touching(self, graph: HeteroData, region: Tensor, epoch: int = 0) -> Terms:
        """The terms on ``graph`` that score a node of ``region`` (:func:`~graphforget.influence.local_terms`)."""
        return self._all_terms(graph, epoch).touching(region, num_users(graph))

    # -- select: the rows phi and the regions around the request --------------------------------------

    def _select(self, request: Tensor, hops: int | None, coupled: bool = False) -> _Region:
        """phi: the rows of the nodes that pruning keeps within ``hops`` (``None``: the receptive field) of the
        request (its endpoints always); with ``coupled``, also every node that shares a loss term with one of
        them: the curvature couples a term's nodes whether or not the pair carries messages (a 0-labelled
        pair, a BPR negative)."""
        cfg, graph, model = self.config, self.graph, self.model
        users, depth = num_users(graph), model.receptive_field
        request_nodes, hops = node_ids(request, users), depth if hops is None else hops
        index = self._of_training_edges(homogeneous_index) if max(hops, depth) else None
        affected = k_hop_mask(graph, request_nodes, depth, index)
        if cfg.prune is None:  # every node the importance reaches: exactly those within hops of the request
            kept_mask = affected.clone() if hops == depth else k_hop_mask(graph, request_nodes, hops, index)
        else:
            scores = importance_scores(graph, request, hops, self._message_passing_degrees())
            kept_mask = select_nodes(scores, cfg.prune, always=request_nodes)
        if coupled:
            kept_mask[self._terms_touching(graph, kept_mask).nodes(users, kept_mask.numel())] = True
        # The MF surrogate has no curvature for dense parameters: they are left out of it.
        rows = NodeRows.from_node_mask(model, kept_mask, users, dense=cfg.dense and cfg.curvature != "mf_surrogate")
        # Nodes whose outputs depend on phi: the same in both graphs, since the request's endpoints are kept.
        reach = k_hop_mask(graph, kept_mask.nonzero().flatten(), depth, index)
        if rows.has_dense:  # dense parameters reach every output
            reach = torch.ones_like(reach)
        return _Region(rows, rows.gather(model), kept_mask, affected, reach)

    # -- gradient: the terms, the tilted objective T and g ----------------------------------------------

    def _gather(self, request: Tensor, positions: Tensor, remaining: HeteroData, region: _Region,
                share: TermShare) -> _Call:
        """The request's state: the terms that reach phi before and after the removal, the removed ones."""
        removed = training_terms(self.objective, self.graph, positions)
        replaced = self._replacement_terms(removed, request, remaining)
        contrastive, new_terms = self._contrastive_term(share), self._terms_touching(remaining, region.reach)
        fresh = None
        if self._draws_anew() and self.config.trust.max_fresh_loss_rise is not None:
            # without resampled negatives only the views are drawn anew, and the terms are the new ones (unread)
            terms = (self._terms_touching(remaining, region.reach, FRESH_EPOCH)
                     if self._resamples() else new_terms)
            fresh = _Scored(terms, remaining, share, self._contrastive_term(share, FRESH_EPOCH))
        return _Call(request, positions, remaining, region,
                     original=_Scored(self._terms_touching(self.graph, region.reach), self.graph, share,
                                      contrastive),
                     new=_Scored(new_terms, remaining, share, contrastive),
                     removed=_Scored(removed, self.graph, share),
                     replaced=None if replaced is None else _Scored(replaced, self.graph, share), share=share,
                     fresh=fresh)

    def _has_contrastive(self) -> bool:
        """Whether the objective IFRU differentiates includes a contrastive term (``contrastive``)."""
        return (self.config.contrastive and self.config.curvature != "mf_surrogate"
                and has_contrastive_term(self.model, self.objective))

    def _draws_anew(self) -> bool:
        """Whether training drew new negatives (BPR's ``resample``) or new views (the contrastive term IFRU
        differentiates) every epoch, of which IFRU's objective holds one draw (``trust.max_fresh_loss_rise``)."""
        return self._resamples() or self._has_contrastive()

    def _resamples(self) -> bool:
        """Whether the objective's terms change with the epoch: BPR's ``resample``, or, for an objective without the
        field, whether the first edges' pairs differ between epoch 0 and :data:`FRESH_EPOCH` (a user's BPR whose
        negatives followed the epoch had skipped the fresh-draw test, unsaid; a QA probe)."""
        if hasattr(self.objective, "resample"):
            return bool(self.objective.resample)
        edges = self.graph[EDGE].edge_index
        probe = torch.arange(min(edges.size(1), RESAMPLE_PROBE), device=edges.device)
        (first, target), (fresh, again) = (self.objective.pairs(self.graph, probe, epoch)
                                           for epoch in (0, FRESH_EPOCH))
        return not (torch.equal(first, fresh) and torch.equal(target, again))

    def _contrastive_term(self, share: TermShare, draw: int = 0) -> ContrastiveTerm | None:
        """The objective's contrastive term, one draw of its views per call; rank 0 adds it (``data_parallel``)."""
        return ContrastiveTerm(self.model, self.objective, self.graph, draw=draw) if (
            self._has_contrastive() and share.rank == 0) else None

    def _replacement_terms(self, removed: Terms, request: Tensor, remaining: HeteroData) -> Terms | None:
        """Terms that replace the removed ones in the new objective (none: they are simply removed)."""
        return None

    def _tilted_objective(self, call: _Call) -> TiltedObjective:
        """:math:`T` of the acceptance test over the terms that reach phi (see :class:`TiltedObjective`);
        its value and gradients summed across the ranks (``data_parallel``)."""
        rows, phi, replaced, summed = call.region.rows, call.region.phi, call.replaced, call.share.summed
        pieces = [(call.new, True)] + ([] if replaced is None else [(replaced, False)])
        functions = [self._terms_fn(rows, scored, l2) for scored, l2 in pieces]
        if call.new.contrastive is not None:
            functions.append(call.new.contrastive.function(rows, call.remaining))

        @torch.no_grad()  # a value: autograd recorded the dense parameters left fixed (dense=False), and torch warned
        def value(x):
            return sum(fn(x) for fn in functions)

        def gradient(x):
            total = self._objective_grad(rows, x, call.new)
            return total if replaced is None else total + self._loss_gradient(rows, x, replaced)
        tilt = summed(self._objective_grad)(rows, phi, call.original).detach()
        row_entries = phi.numel() - sum(self.model.get_parameter(name).numel() for name in rows.dense)
        fresh = None if call.fresh is None else {
            name: summed(torch.no_grad()(loss)) for name, loss in self._fresh_parts(rows, call).items()}
        return TiltedObjective(summed(value), summed(gradient), tilt, phi, self._orphans(call), self.objective.l2,
                               row_entries, decoupled=not self._has_contrastive(), fresh=fresh)

    def _fresh_parts(self, rows: NodeRows, call: _Call) -> dict:
        """``{part: phi -> its loss}`` on the fresh draw (:data:`FRESH_EPOCH`), each tested on its own: the remaining
        terms on fresh negatives (``resample``), the contrastive term on fresh views (rank 0 holds it; the others add
        0). A step solved on one draw of the views can fit it as one of negatives (SGL at tau 0.01: a trusted step 4.5
        times the parameters' norm, the term's loss on another draw of the views 50 times the trained point's)."""
        parts, fresh = {}, cast(_Scored, call.fresh)  # called where it is set
        if self._resamples():
            parts["negatives"] = self._terms_fn(rows, fresh, False)
        if self._has_contrastive():
            views = None if fresh.contrastive is None else fresh.contrastive.function(rows, call.remaining)

            def contrastive(x: Tensor) -> Tensor:
                return x.new_zeros(()) if views is None else views(x)
            parts["views"] = contrastive
        return parts

    def _orphans(self, call: _Call) -> Tensor:
        """``[len(phi)]`` whether each entry of phi is a row of a node that no term of the new objective
        scores and no remaining edge reaches (none for SCIF, whose new objective keeps every node, nor for the
        paper's step, ``curvature_of="original"``, whose right-hand side is g on every row). A model without
        message passing (MF) reads no edge: a BPR user left with disliked (label 0) edges alone has no term, and
        its row, not zeroed, went from norm 2.9 to 18.8, trusted."""
        if self.config.curvature_of == "original":
            return torch.zeros_like(call.region.phi, dtype=torch.bool)
        users = num_users(self.graph)
        degrees = self._remaining_degrees(call)
        data = (degrees > 0) if self.model.receptive_field > 0 else torch.zeros_like(degrees, dtype=torch.bool)
        data |= call.replaced is not None
        data[call.new.terms.nodes(users, data.numel())] = True
        return call.region.rows.expand(self.model, ~data, users)

    def _remaining_degrees(self, call: _Call) -> Tensor:
        """``[U + I]`` each node's message-passing degree in the remaining graph: the kept ones less the removed
        message-passing edges (no scan of every edge)."""
        users, store = num_users(self.graph), self.graph[EDGE]
        removed = call.positions if "observed" not in store else call.positions[store.observed[call.positions]]
        ends = torch.cat([store.edge_index[0, removed], store.edge_index[1, removed] + users])
        degrees = self._message_passing_degrees()
        return degrees.index_add(0, ends, torch.ones_like(ends, dtype=degrees.dtype), alpha=-1)

    def _gradient(self, call: _Call, target: TiltedObjective) -> Tensor:
        """:math:`g = \\nabla L(\\hat\\phi; D) - \\nabla L(\\hat\\phi; D \\setminus D_r)` over the terms that reach
        phi: the direct and the spillover influence at once, and exactly :math:`-\\nabla T(\\hat\\phi)`, so the
        acceptance test judges the step against the objective it was solved for (for BPR this includes the
        negatives the removal redraws). Without spillover (the paper's ablation; SCIF), the removed terms'
        gradient, less that of their replacements, and the removed edges' share of a contrastive term (its weight
        is :math:`|D|\\,\\lambda_{ssl}`; its change through the views is the spillover's; it had been left out)."""
        rows, phi = call.region.rows, call.region.phi
        if self.config.spillover:
            return (target.full_gradient - target.new_gradient(phi)).detach()
        contrastive, share = call.original.contrastive, call.positions.numel() / self.graph[EDGE].edge_index.size(1)

        def direct(x):
            gradient = self._loss_gradient(rows, x, call.removed)
            if contrastive is not None:
                y = x.detach().requires_grad_(True)
                gradient = gradient + share * torch.autograd.grad(contrastive.function(rows, self.graph)(y), y)[0]
            return gradient if call.replaced is None else gradient - self._loss_gradient(rows, x, call.replaced)
        return call.share.summed(direct)(phi)

    # -- solve: the first step (Levenberg-Marquardt), then the Newton extension -----------------------------

    def _solve(self, call: _Call, gradient: Tensor, target: TiltedObjective) -> tuple[Tensor, dict]:
        """The accepted first step, then the Newton extension's steps; returns phi and the info entries."""
        phi = call.region.phi
        ratio = gradient_ratio(target, gradient)
        outcome = {"implicit_ridge": target.implicit_ridge(), "gradient_ratio": ratio, "attempts": []}
        if not gradient.any():  # the removal changes nothing the rows see (SCIF: every label substituted by itself)
            outcome.update(dense_damping={}, stripped_rows=0, held_rows=0, long_rows=0, refit_rows=0, damping=None,
                           trusted=True, reason=None, solver=[])
            return self._zero_orphans(phi, target, outcome), outcome  # a saturated sigmoid's gradient rounds to 0
        target.metric, outcome["dense_damping"], ridge = self._damping_metric(call, target, ratio)
        outcome["stripped_rows"] = 0 if ridge is None else call.region.rows.count(self.model, ridge > 0)
        new_phi = cast(Tensor, self._steps(call, gradient, target, ratio, outcome))  # without damping: never None
        new_phi = self._hold_long_rows(call, gradient, target, ratio, outcome, new_phi)
        return self._refit_stripped_rows(call, target, outcome, new_phi, ridge), outcome

    def _steps(self, call: _Call, gradient: Tensor, target: TiltedObjective, ratio: float, outcome: dict,
               damping: float | None = None) -> Tensor | None:
        """The accepted first step, then the Newton extension's steps, under ``target``'s metric; fills ``outcome``.
        Given ``damping`` (a round of :meth:`_hold_long_rows`), the first step is solved from it, and ``None`` is
        returned when it fails its test after its retries (no ``trust.on_failure``: the last trusted step stands)."""
        phi = call.region.phi
        outcome["attempts"] = []
        step, reason = self._first_step(call, gradient, target, outcome["attempts"], damping)
        if damping is not None and reason is not None:
            return None
        outcome["damping"] = target.damping if outcome["attempts"] else None  # None: nothing was solved
        self._warn_below_ridge(outcome)
        solves = outcome["attempts"][-1:]  # the step's own solve (the same dict as its attempt's)
        failed = None if step is None or not step.any() else phi + step  # a zero step applies nothing
        new_phi = phi + step if reason is None else self._settle(phi, failed, reason)
        if reason is None:
            new_phi = self._zero_orphans(new_phi, target, outcome)
        if new_phi is not phi:  # a step was applied: the Newton extension goes on from it
            plan = self._newton_plan(target, ratio, float(gradient.norm()))
            new_phi = self._extend(call, new_phi, target, solves, outcome, plan)
        outcome.update(trusted=reason is None, reason=reason, solver=solves)
        return new_phi

    def _hold_long_rows(self, call: _Call, gradient: Tensor, target: TiltedObjective, ratio: float, outcome: dict,
                        new_phi: Tensor) -> Tensor:
        """Solves again while a trusted step leaves rows more than ``HOLD_SLACK`` past ``solver.max_row_growth`` times
        the longest row of their table after training (away from stationarity, ``damping="auto"``), each over-long
        row's damping multiplied by how far past its room (the cap less its trained norm) it went, at least 2: early
        stopping bounded every row, and a row past all of them has left the region where the implicit ridge stands for
        training. A round is a whole solve: the slack spares one for a row barely past (Book-Crossing's LightGCN had
        taken a second for one row 1.6% past, a third for one 0.05% past). Each round is solved at the accepted step's
        damping (the first retry's where that is 0), and a round that fails its test is solved again with the damping
        tenfold, as a rejected first step is (``trust.retries``): the long rows can carry a step through its test (a
        user left with one like of six went from norm 0.9 to 15.9, trusted, where the round holding it failed its test;
        it had ended the holding). A round that fails after its retries, or ``HOLD_ROUNDS`` of them, end the holding
        with the last trusted step. ``info["held_rows"]`` counts the rows held, ``info["long_rows"]`` those the
        returned step leaves over the cap (an untrusted one is not held)."""
        outcome["held_rows"] = outcome["long_rows"] = 0
        growth_cap = self.config.solver.max_row_growth
        if growth_cap is None or not self._ridge_damped(ratio):
            return new_phi
        rows, base = call.region.rows, target.phi0.double()
        cap = growth_cap * rows.longest_rows(self.model).double()
        start = rows.row_sums(self.model, base * base).sqrt()
        held = torch.zeros_like(cap, dtype=torch.bool)
        for round_ in range(HOLD_ROUNDS + 1):
            norms = rows.row_sums(self.model, new_phi.double().pow(2)).sqrt()
            over = (norms > cap) & (cap > 0)  # a table of zero rows has no trained length to hold a row to
            if not outcome["trusted"] or not (norms > (1 + HOLD_SLACK) * cap)[over].any() or round_ == HOLD_ROUNDS:
                break
            growth = ((norms - start) / (cap - start).clamp_min(1e-3 * cap)).clamp_min(2.0)
            kept = target.metric, target.damping
            target.metric = torch.ones_like(target.phi0) if target.metric is None else target.metric.clone()
            target.metric[over] *= growth[over].to(target.metric.dtype)
            trial = {key: value for key, value in outcome.items() if key not in ("newton_stop", "newton_discarded")}
            held_phi = self._steps(call, gradient, target, ratio, trial, damping=outcome["damping"])
            if held_phi is None:
                target.metric, target.damping = kept
                break
            new_phi, held = held_phi, held | over
            trial["attempts"] = outcome["attempts"] + trial["attempts"]  # every solve, in order
            outcome.clear()
            outcome.update(trial)
        outcome["held_rows"], outcome["long_rows"] = rows.count(self.model, held), rows.count(self.model, over)
        return new_phi

    def _zero_orphans(self, phi: Tensor, target: TiltedObjective, outcome: dict) -> Tensor:
        """``phi`` with the rows the request leaves without an edge set to 0 (``info["zeroed_entries"]``), where the
        curvature is the remaining data's. Without a contrastive term no term of T scores an orphan row: its block of T
        is decoupled and minimal at 0 exactly, where an inexact solve leaves the row shrunk but pointing the same way
        (the user's rankings unchanged). A contrastive term scores it still; zeroed all the same, it keeps nothing of
        the data. A gradient of exactly 0 (a sigmoid saturated at 1) had kept a forgotten user's row whole, trusted."""
        if self.config.curvature_of != "remaining":
            return phi
        outcome["zeroed_entries"] = int(target.orphan.sum())
        return torch.where(target.orphan, torch.zeros_like(phi), phi)

    def _refit_stripped_rows(self, call: _Call, target: TiltedObjective, outcome: dict, phi: Tensor,
                             ridge: Tensor | None) -> Tensor:
        r"""A trusted step's ``phi`` with the stripped rows (:meth:`_hold_stripped_rows`) fit again to what their nodes
        keep, under their ridge :math:`\lambda_v` and the rest held: Newton steps on
        :math:`L(\phi; D \setminus D_r) + \sum_v \tfrac{\lambda_v}{2} \lVert\phi_v\rVert^2` over those rows
        (``info["refit_rows"]``). The influence step is a linear response, and a row that loses most of its terms is
        out of its reach: it gives back what the removed terms took, along their direction, and can leave the row
        fitting what it keeps worse than before (a user left with 73 likes of 384 terms, all the dislikes removed:
        the user's own test AUC 0.34, trusted; three Retrains 0.78-0.80). As an orphan row goes to the ridge's
        minimiser 0 (:meth:`_zero_orphans`), a stripped row goes to the ridge's minimiser on the terms it keeps, which
        is where early stopping, modelled as that ridge, would leave it. Not where the objective draws negatives or
        views (``target.fresh``): a row refit on few terms of one draw fits that draw (on BPR the refit lowered a
        tiny LightGCN's test AUC by 0.004)."""
        outcome["refit_rows"] = 0
        if ridge is None or not outcome["trusted"] or not self.config.solver.refit_stripped_rows or target.fresh:
            return phi
        free, ridge64, ridge = ridge > 0, ridge, ridge.to(phi.dtype)  # the values in float64, as target.value's

        def value(x: Tensor) -> Tensor:
            return target.value(x) + 0.5 * (ridge64 * x.double().pow(2)).sum()

        def gradient(x: Tensor) -> Tensor:
            return torch.where(free, target.new_gradient(x).detach() + ridge * x, torch.zeros_like(x))
        refit, level, start = phi, float(value(phi)), float(gradient(phi).norm())
        for _ in range(REFIT_STEPS):
            rhs = -gradient(refit)
            if float(rhs.norm()) <= REFIT_TOL * start:
                break
            operator = held(shifted(self._new_curvature(call, refit), ridge), ~free)
            result = solve(self.config.solver.name, operator, rhs, **self.config.solver.options())
            size, level = backtrack(value, refit, result.x, level)
            if size == 0:
                break
            refit = refit + size * result.x
        outcome["refit_rows"] = call.region.rows.count(self.model, free)
        return refit

    def _warn_below_ridge(self, outcome: dict) -> None:
        """Warns when a damping set by hand ended below the implicit ridge of a model away from stationarity. Its
        step then goes past what early stopping held, which no test sees while the validation AUC holds or rises
        (ML-100K MF, 3 epochs without L2, ``damping=0``: trusted, 2.7x the unchanged model's distance to Retrain's
        predictions, where the default's is 0.85x)."""
        damping, ridge = outcome["damping"], outcome["implicit_ridge"]
        if self.config.solver.damping == "auto" or damping is None or outcome["gradient_ratio"] <= STATIONARY_RATIO:
            return
        if damping < ridge:
            warn_caller(f"{type(self).__name__}: solver.damping={self.config.solver.damping:g} ended at {damping:.3g}, "
                        f"below the implicit ridge {ridge:.3g} of this model away from a stationary point: the step "
                        f"may go past what a Retrain would learn, and no test sees it (solver.damping='auto' uses "
                        f"the ridge)")

    def _ridge_damped(self, ratio: float) -> bool:
        """Whether the damping is the implicit ridge of a model away from stationarity (``damping="auto"``, gradient
        ratio ``ratio``): there the metric of the damping (:meth:`_damping_metric`) and the bound on rows
        (:meth:`_hold_long_rows`) apply."""
        return self.config.solver.damping == "auto" and ratio > STATIONARY_RATIO

    def _damping_metric(self, call: _Call, target: TiltedObjective,
                        ratio: float) -> tuple[Tensor | None, dict, Tensor | None]:
        """The damping's scale on each entry of phi (``None``: 1 on every entry), ``{dense parameter: its scale}``
        and the stripped rows' ridges (:meth:`_hold_stripped_rows`), on a model away from stationarity with
        ``damping="auto"``: elsewhere the damping is the same on every entry."""
        if not self._ridge_damped(ratio):
            return None, {}, None
        metric = torch.ones_like(target.full_gradient)
        ridge = self._hold_stripped_rows(call, target, metric)
        scales = self._scale_dense(call.region.rows, target, metric)
        return (metric if ridge is not None or scales else None), scales, ridge

    def _hold_stripped_rows(self, call: _Call, target: TiltedObjective, metric: Tensor) -> Tensor | None:
        r"""Raises ``metric`` on the rows of nodes the request strips of most of their terms (they keep some, fewer
        than ``STRIPPED_SHARE``) to the row's own implicit ridge over the pooled one, where larger:
        :math:`\max(1, \lambda_v / \hat\lambda)`, :math:`\lambda_v = \max(0, -\langle\nabla_v L,
        \hat\phi_v\rangle / \lVert\hat\phi_v\rVert^2)`. Their remaining data no longer bounds their step, so
        only the ridge holds them, and the pooled ridge is the typical row's: early stopping held a row with many
        terms harder (Adam moves every entry at about the same rate, whatever its gradient). Returns each entry's
        ridge, :math:`\max(\hat\lambda, \lambda_v)` on the stripped rows and 0 elsewhere (``None`` without a stripped
        row or a pooled ridge), for :meth:`_refit_stripped_rows`. Without it a user left with 73 likes of 401 edges
        (ML-100K MF, no L2) went from norm 3.5 to 16.5 (Retrain's: 4.0), trusted, and AUC_1 fell 0.030 (three
        Retrains': at most 0.008); on every row the rule cost completeness on the robustness grid (see
        :doc:`/methods`)."""
        pooled, rows = target.implicit_ridge(), call.region.rows
        users, nodes = num_users(self.graph), call.region.kept_mask.numel()
        before = _term_counts(call.original.terms, users, nodes)
        after = _term_counts(call.new.terms, users, nodes)
        if call.replaced is not None:
            after += _term_counts(call.replaced.terms, users, nodes)
        stripped = (after > 0) & (after < STRIPPED_SHARE * before)
        entries = rows.expand(self.model, stripped, users)
        if not pooled > 0 or not entries.any():
            return None
        phi, gradient = target.phi0.double(), target.full_gradient.double()
        squares = rows.row_sums(self.model, phi * phi)
        own = (-rows.row_sums(self.model, gradient * phi) / squares.clamp_min(torch.finfo(squares.dtype).tiny))
        raised = entries & (own > pooled)
        metric[raised] = (own[raised] / pooled).to(metric.dtype)
        return torch.where(entries, own.clamp_min(pooled), torch.zeros_like(own))

    def _scale_dense(self, rows: NodeRows, target: TiltedObjective, metric: Tensor) -> dict:
        """Sets ``metric`` on each dense parameter to the RMS of its entries' gradient over the rows' (at least 1),
        and returns ``{dense parameter: that scale}``. Adam steps each entry by about ``lr`` over the root of its
        mean squared gradient, so stopping it early leaves a ridge of that root's shape; a weight shared by every
        node gathers the gradient of every term and is held back accordingly (see :doc:`/methods`)."""
        gradient, start = target.full_gradient, target.row_entries
        rows_rms = float(gradient[:start].pow(2).mean().sqrt()) if start else 0.0
        if not rows.dense or not rows_rms > 0:
            return {}
        scales = {}
        for name in rows.dense:
            stop = start + self.model.get_parameter(name).numel()
            scales[name] = max(1.0, float(gradient[start:stop].pow(2).mean().sqrt()) / rows_rms)
            metric[start:stop], start = scales[name], stop
        return scales

    def _first_step(self, call: _Call, gradient: Tensor, target: TiltedObjective, attempts: list,
                    damping: float | None = None):
        """The influence step and ``None``, or the last finite step (or ``None``) and why none was accepted. Given
        ``damping`` (a round of :meth:`_hold_long_rows`): solved from it, its retries growing it tenfold."""
        if not torch.isfinite(gradient).all():
            return None, "the gradient of the removed terms is not finite"
        curvature = self._curvature(call.region.rows, self._curvature_terms(call), target.phi0)
        if damping is None:
            damping = self._start_damping(curvature, target)
        elif damping == 0:  # a round of the row bound: a damping of 0 would hold no row, whatever its metric
            damping = RETRY_DAMPING * mean_diagonal(curvature, target.phi0)
        return self._levenberg_marquardt(curvature, gradient, target, damping, attempts)

    def _start_damping(self, curvature, target: TiltedObjective) -> float:
        """The first attempt's :math:`\\lambda`: the implicit ridge or the configured damping, plus the
        relative damping's share of the mean curvature diagonal."""
        solver = self.config.solver
        damping = target.implicit_ridge() if solver.damping == "auto" else float(solver.damping)
        if damping == 0 and target.metric is not None:  # no ridge to scale: the first retry's damping
            damping = RETRY_DAMPING * mean_diagonal(curvature, target.phi0)
        return damping + (solver.relative_damping * mean_diagonal(curvature, target.phi0)
                          if solver.relative_damping else 0.0)

    def _curvature_terms(self, call: _Call) -> _Scored:
        """The terms whose curvature the first step takes (``curvature_of``)."""
        remaining = self.config.curvature_of == "remaining"
        if self.config.curvature == "mf_surrogate":  # reads only the terms scoring a kept node directly
            graph = call.remaining if remaining else self.graph
            return _Scored(self._terms_touching(graph, call.region.kept_mask), graph, call.share)
        return call.new if remaining else call.original

    def _levenberg_marquardt(self, curvature, rhs: Tensor, target: TiltedObjective, damping: float, attempts: list):
        """Solve, test, and on rejection grow the damping, up to ``trust.retries`` times; returns the step and the
        reason of the last rejection (``None`` when accepted). The attempts of one geometric ladder of dampings share
        their solver's work where they can (:class:`Ladder`)."""
        retries, phi = self.config.trust.retries, target.phi0
        step, ladder = None, None
        for attempt in range(retries + 1):
            if attempt == 1:
                damping = _first_retry_damping(damping, curvature, phi, retries)
            elif attempt:
                damping *= DAMPING_GROWTH
            if ladder is None or not ladder.holds(damping):
                ladder = Ladder(curvature, rhs, target, damping, retries + 1 - attempt, self.config)
            result, b, check = ladder.attempt(damping, last=attempt == retries)
            if attempt and check["reason"] is None and check.get("negligible"):  # no request that barely matters
                check["reason"] = _damped_away(damping, attempts[0])
            attempts.append({**result.stats(), "rhs_norm": float(b.norm()), "damping": damping, **check})
            if torch.isfinite(result.x).all():
                step = result.x
            if check["reason"] is None:
                return result.x, None
        return step, attempts[-1]["reason"]

    def _settle(self, unchanged: _Settled, candidate: _Settled | None, reason: str) -> _Settled:
        """The failure policy (``trust.on_failure``) once no result passed: ``candidate`` (the step's result, or
        ``None``) applied anyway, or ``unchanged`` (the trained rows or model)."""
        policy = self.config.trust.on_failure
        if policy == "raise":
            raise UnlearningFailed(f"{type(self).__name__}: {reason}")
        applied = policy == "apply" and candidate is not None
        outcome = "the step was applied anyway" if applied else "the model is returned unchanged"
        warn_caller(f"{type(self).__name__}: {reason}; {outcome} (info['trusted'] is False)", UntrustedWarning)
        return cast(_Settled, candidate) if applied else unchanged  # applied: not None

    def _newton_plan(self, target: TiltedObjective, ratio: float, gradient_norm: float) -> NewtonPlan:
        """The configured Newton steps; for ``"auto"``, inexact line-searched ones where they run
        (:meth:`_iterates`; ``ratio``: the full objective's gradient over the removal's), else the one step."""
        newton, solver = self.config.newton, self.config.solver
        if newton.steps != "auto":
            return NewtonPlan(newton.steps, newton.line_search, solver.options(), 0.0)
        if not self._iterates(target, ratio):
            return NewtonPlan(1, newton.line_search, solver.options(), 0.0)
        options = {**solver.options(), "tol": max(solver.tol, AUTO_NEWTON_TOL)}
        return NewtonPlan(AUTO_NEWTON_STEPS, True, options, AUTO_NEWTON_STOP * gradient_norm, forcing=True,
                          tilted=ratio > STATIONARY_RATIO)  # away from stationarity: newton.early_stopped

    def _extend(self, call: _Call, first: Tensor, target: TiltedObjective, solves: list, outcome: dict,
                plan: NewtonPlan) -> Tensor:
        """The Newton steps after the first. Steps on the new objective are kept only when they do not raise
        :math:`T` above the first step's value (on a model far from stationarity they minimise it beyond what
        the removal explains) and pass ``trust.max_fresh_loss_rise``. The tilted steps (``plan.tilted``) leave
        :math:`T`'s proximal term out and go past its minimiser by design; their line search and stop rules hold
        them (held to :math:`T`, every single-user request on ML-100K MF dropped them, with a warning)."""
        if plan.line_search:
            solves[0]["step_size"] = 1.0  # the first step is taken whole
        if plan.steps == 1:
            return first
        phi, outcome["newton_stop"] = self._newton_steps(call, first, target, solves, plan)
        failure = fresh_draw_failure(target.fresh_rise(phi), self.config, subject="the Newton steps",
                                     drawn=target.fresh_drawn)
        if failure is None and (plan.tilted or float(target(phi)) <= float(target(first))):
            return phi
        outcome["newton_discarded"] = True
        by_hand = self.config.solver.damping != "auto" and target.damping > 0  # on a stationary model too (qa113)
        cause = (f"its proximal term at the damping set by hand, solver.damping={target.damping:g}, charges their "
                 "distance from the trained point" if by_hand else
                 "the model is far from a stationary point of its objective")
        failure = failure or f"the Newton steps raised the tilted objective ({cause})"
        warn_caller(f"{type(self).__name__}: {failure}: only the first step is kept")
        return first

    def _newton_steps(self, call: _Call, phi: Tensor, target: TiltedObjective, solves: list,
                      plan: NewtonPlan) -> tuple[Tensor, str]:
        """Our extension: Newton steps on the new objective itself from the accepted first step (damped
        with the first step's damping, line-searched): for stationary models, where the tilt vanishes (or on
        :meth:`TiltedObjective.tilted`, ``plan.tilted``). Returns phi and why the steps stopped.
        The tilted steps also stop when the objective's gradient grows: away from stationarity its minimiser
        can lie far off along directions the removal does not explain, and past the first rise the iterates
        head there (ML-100K MF, default L2: 0.80 of Retrain's AUC gain after 8 steps, -2.1 after 25)."""
        residual, tol = solves[0]["rhs_norm"], plan.options["tol"]
        objective, gradient = (target.tilted, target.tilted_gradient) if plan.tilted else (target.value,
                                                                                           target.new_gradient)
        value = float(objective(phi)) if plan.line_search else None  # cast below: read with line_search only
        # a share of the first step's decrease (the tilted objective equals T at the trained point); tilted plans are
        # line-searched (_newton_plan)
        min_decrease = AUTO_NEWTON_DECREASE * (float(target.start()) - cast(float, value)) if plan.tilted else 0.0
        mixing = AndersonMixing(self.config.newton.anderson)
        # The orphan rows stay where the first step left them (at 0): a contrastive term still scores them, and its
        # gradient at a zero row is ~1/eps (F.normalize), which swamped every later step (CG ran 0 iterations)
        orphan = target.orphan if target.orphan.any() else None
        for _ in range(1, plan.steps):
            rhs = -gradient(phi).detach()
            if orphan is not None:
                rhs = torch.where(orphan, torch.zeros_like(rhs), rhs)
            norm = float(rhs.norm())
            if norm <= plan.stop_below:
                return phi, "converged"
            # against the last Newton step's gradient (the first step's g is T's, with the proximal term)
            if plan.tilted and len(solves) > 1 and norm > residual:
                return phi, "gradient rose"
            if plan.forcing:
                tol = forcing_term(norm, residual, tol, plan.options["tol"])
            residual = norm
            operator = shifted(self._new_curvature(call, phi), target.proximal)
            result = solve(self.config.solver.name, operator if orphan is None else held(operator, orphan), rhs,
                           **{**plan.options, "tol": tol})
            decrease = None
            if plan.line_search:
                following, size, lowered, mixed = descend(objective, phi, result.x, cast(float, value), mixing)
                decrease, value = cast(float, value) - lowered, lowered
            else:
                size, mixed = float(torch.isfinite(result.x).all()), False
                following = phi + size * result.x
            solves.append({**result.stats(), "rhs_norm": norm, "tol": tol, "step_size": size, "mixed": mixed,
                           "decrease": decrease})
            if size == 0:
                return phi, "no descent"
            phi = following
            if decrease is not None and decrease < min_decrease:
                return phi, "stalled"
        return phi, "max steps"

    # -- info -------------------------------------------------------------------------------------------

    def _describe(self, call: _Call) -> dict:
        """The request's size and where it acted (the first entries of ``info``)."""
        region = call.region
        return {"request_edges": call.request.size(1), "affected_nodes": int(region.affected.sum()),
                "affected_terms": self._affected_count(call), "kept_nodes": int(region.kept_mask.sum()),
                "kept_parameters": region.phi.numel(), "contrastive": self._has_contrastive()}

    def _affected_count(self, call: _Call) -> int:
        """:math:`|D_c|`: the remaining terms scoring a node whose output the removal changes (K hops of
        V(D_r), inside the reach of phi, so among the terms already gathered)."""
        if not (self.config.spillover and self.model.receptive_field > 0):
            return 0
        return int(call.new.terms.touches(call.region.affected, num_users(call.remaining)).sum())

    # -- the objective's pieces as functions of phi -------------------------------------------------------

    def _closed_form(self, rows: NodeRows) -> bool:
        """Whether curvature products and gradients take the dot-product closed form (the model allows it)."""
        return not self._reference_paths and has_linear_dot_product(self.model) and not rows.has_dense

    def _sub(self, scored: _Scored) -> HeteroData:
        """Where the terms are scored: their k-hop computation subgraph when the model supports it."""
        return scored.scoring_graph(self.model, locality=not self._reference_paths)

    # Each of these is this rank's part of a sum over the terms (all of it without data parallelism): its
    # terms (``scored.mine``) and, on rank 0 only, the explicit L2 (``share.objective``); the callers sum
    # the parts across the ranks (``share.summed``).

    def _terms_fn(self, rows: NodeRows, scored: _Scored, regularize: bool):
        objective = scored.share.objective(self.objective)
        if self._closed_form(rows):  # values only: the closed form's gradients and products need no graph
            local = scored.local(self.model, rows)
            return dot_product_objective(self.model, local.rows, local.terms, local.graph, objective, regularize,
                                         embedding=local.embedding(self.model))
        return objective_function(self.model, objective, scored.mine, scored.graph, rows, regularize,
                                  sub=self._sub(scored))

    def _loss_gradient(self, rows: NodeRows, phi: Tensor, scored: _Scored) -> Tensor:
        """Gradient in phi of the terms' summed loss on their graph, and of its contrastive term (no L2)."""
        gradient = self._terms_gradient(rows, phi, scored)
        if scored.contrastive is None:
            return gradient
        x = phi.detach().requires_grad_(True)
        return gradient + torch.autograd.grad(scored.contrastive.function(rows, scored.graph)(x), x)[0]

    def _terms_gradient(self, rows: NodeRows, phi: Tensor, scored: _Scored) -> Tensor:
        """Gradient in phi of the terms' summed loss on their graph (no L2)."""
        if len(scored.mine) == 0:
            return torch.zeros_like(phi)
        if self._closed_form(rows):
            local = scored.local(self.model, rows)
            return dot_product_gradient(self.model, local.rows, phi, local.terms, local.graph, self.objective,
                                        embedding=local.embedding(self.model))
        x = phi.detach().requires_grad_(True)
        return torch.autograd.grad(self._terms_fn(rows, scored, False)(x), x)[0]

    def _objective_grad(self, rows: NodeRows, phi: Tensor, scored: _Scored) -> Tensor:
        return self._loss_gradient(rows, phi, scored) + scored.share.objective(self.objective).l2 * phi

    def _curvature(self, rows: NodeRows, scored: _Scored, phi: Tensor):
        """The undamped curvature operator of the terms' objective (with its explicit L2) at ``phi``, its products
        summed across the ranks."""
        return scored.share.summed(self._curvature_part(rows, scored, phi))

    def _curvature_part(self, rows: NodeRows, scored: _Scored, phi: Tensor, regularize: bool = True):
        """This rank's part of :meth:`_curvature` (the explicit L2 left out unless ``regularize``)."""
        curvature, objective, terms = self.config.curvature, scored.share.objective(self.objective), scored.mine
        objective = objective if regularize else objective.without_l2()
        operator: HessianOperator | DotProductOperator | GaussNewtonOperator
        if curvature == "mf_surrogate":
            operator = HessianOperator(_mf_surrogate_loss(self.model, rows, terms, objective, num_users(self.graph)),
                                       phi)
        elif self._closed_form(rows):
            local = scored.local(self.model, rows)
            operator = DotProductOperator(self.model, local.rows, phi, local.terms, local.graph, objective,
                                          curvature == "exact", embedding=local.embedding(self.model))
        elif curvature == "exact":
            operator = HessianOperator(self._terms_fn(rows, scored, regularize), phi)
        else:
            sub = self._sub(scored)
            logits = rows_function(self.model, rows, lambda score: score(sub, terms.edge_label_index))
            operator = GaussNewtonOperator(logits, lambda z: objective.losses(z, terms.target).sum(), phi,
                                           objective.l2)
        if scored.contrastive is not None:  # never with the MF surrogate (see _has_contrastive)
            term = scored.contrastive
            extra = (HessianOperator(term.function(rows, scored.graph), phi) if curvature == "exact"
                     else term.gauss_newton(rows, scored.graph, phi))
            operator = _added(operator, extra)
        return operator

    def _new_curvature(self, call: _Call, phi: Tensor):
        """The new objective's curvature at ``phi``: the remaining terms' with the L2, plus SCIF's relabelled
        terms' (they are part of the objective the Newton steps minimise, and of its gradient); one sum across the
        ranks per product."""
        part = self._curvature_part(call.region.rows, call.new, phi)
        if call.replaced is not None:
            part = _added(part, self._curvature_part(call.region.rows, call.replaced, phi, regularize=False))
        return call.share.summed(part)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={type(self.model).__name__}, objective={self.objective}, " \
               f"config={self.config})"


def _damped_away(damping: float, first: dict) -> str:
    """Why a retry's step that is too short to test is no unlearning: the retries shrank it there after the first
    attempt's failed (SCIF on a LightGCN took a step of 1e-4 at 1000 times its damping, trusted, the removed pair's
    score barely moved)."""
    return (f"the retries damped the step away: at damping {damping:.3g} it is at most {NEGLIGIBLE_STEP:g} of the "
            f"parameters' norm and its decrease too small to measure, after the first attempt, at damping "
            f"{first['damping']:.3g}, failed: {first['reason']}")


def _first_retry_damping(damping: float, curvature, phi: Tensor, retries: int) -> float:
    """The damping of the first retry: ``DAMPING_GROWTH`` times the first, or ``RETRY_DAMPING`` times the curvature's
    mean diagonal where the ladder would not reach that: from 0, or from a stationary point's implicit ridge that is
    rounding noise (1e-11: every retry gave the same step, and nothing was forgotten). From a curvature of zero
    diagonal (no data left, no L2), ``RETRY_DAMPING`` itself."""
    floor = RETRY_DAMPING * mean_diagonal(curvature, phi) or RETRY_DAMPING
    return floor if damping * DAMPING_GROWTH ** retries < floor else DAMPING_GROWTH * damping


def _check_prune(config: IFRUConfig, model) -> None:
    """With ``hops`` unset, ``prune`` has one ratio per order 0..K of the model's receptive field K: checked here,
    since the config alone does not know the model."""
    if config.prune is None or config.hops is not None:
        return
    depth = model.receptive_field
    check_fields(config, {"prune": (len(config.prune) == depth + 1, f"one ratio per order 0..hops, {depth + 1} with "
                                    f"hops=None ({type(model).__name__}'s receptive field {depth})")})


def _check_surrogate(config: IFRUConfig, model) -> None:
    """``curvature="mf_surrogate"`` scores layer-0 rows: a user and an item table, or one ``node`` table (a PyG
    model's, users' rows first). Other tables failed inside the solve ("not enough values to unpack")."""
    if config.curvature != "mf_surrogate":
        return
    types = sorted(model.node_parameters().values())
    check_fields(config, {"curvature": (types in (["item", "user"], ["node"]), f"'mf_surrogate' scores a user "
                                        f"table's rows against an item table's, or one node table's, and "
                                        f"{type(model).__name__} has tables of {types or 'no'} node types")})


def _warn_of_surrogate_dense(config: IFRUConfig, model, name: str) -> None:
    """``curvature="mf_surrogate"`` has no curvature for dense parameters, so ``dense=True`` (the default) is not
    what runs on a model that has them: said once, at construction (it had been silent)."""
    nodes = model.node_parameters()
    dense = [key for key, param in model.named_parameters() if param.requires_grad and key not in nodes]
    if config.curvature == "mf_surrogate" and config.dense and dense:
        warn_caller(f"{name}: curvature='mf_surrogate' has no curvature for the dense parameters ({', '.join(dense)}), "
                    "which saw every edge: they keep what they learnt from the request (IFRUConfig.dense=False says "
                    "so and silences this)")


def _mf_surrogate_loss(model, rows: NodeRows, terms: Terms, objective: Objective, num_users: int):
    """``phi -> L`` with layer-0 dot products as logits: the authors' code's Hessian even for LightGCN."""
    def loss(x):
        full = rows.tables(model, x)
        tables = {node_type: full[name] for name, node_type in model.node_parameters().items()}
        node = tables.get("node")  # a homogeneous table: the users' rows, then the items'
        user, item = (tables["user"], tables["item"]) if node is None else (node[:num_users], node[num_users:])
        eli = terms.edge_label_index
        logits = (user[eli[0]] * item[eli[1]]).sum(-1)
        return objective.losses(logits, terms.target).sum() + 0.5 * objective.l2 * x.pow(2).sum()
    return loss


def _term_counts(terms: Terms, users: int, nodes: int) -> Tensor:
    """``[U + I]`` how many pairs of ``terms`` score each node."""
    user, item = terms.edge_label_index
    return torch.cat([torch.bincount(user, minlength=users), torch.bincount(item, minlength=nodes - users)])


def _added(first, second):
    """``v -> first(v) + second(v)``."""
    return lambda v: first(v) + second(v)


class _PhaseClock:
    """Seconds of each phase of a call (device work included), for the result's ``info``."""

    def __init__(self, device: torch.device):
        self.phases: dict[str, float]
        self.phases, self._watch, self._last = {}, Stopwatch(device).start(), 0.0

    def lap(self, name: str) -> None:
        now = self._watch.elapsed()
        self.phases[name], self._last = now - self._last, now
