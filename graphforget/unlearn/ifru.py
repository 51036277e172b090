"""IFRU: recommendation unlearning via influence function (Zhang et al., ACM TORS 2024)."""
from __future__ import annotations

import copy
import functools
from dataclasses import dataclass, field, replace
from typing import Literal

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from ..clock import Stopwatch
from ..config import check_types
from ..data.interactions import EDGE, num_users
from ..distributed import TermShare
from ..influence import (SOLVERS, AndersonMixing, ContrastiveTerm, DotProductOperator, GaussNewtonOperator,
                         HessianOperator, LocalProblem, NodeRows, ShiftedConjugateGradient, SolveResult, Terms,
                         dot_product_gradient, dot_product_objective, has_contrastive_term, has_linear_dot_product,
                         importance_scores, k_hop_mask, local_problem, local_terms, message_passing_degrees, node_ids,
                         objective_function, rows_function, scoring_graph, select_nodes, solve, training_terms)
from ..objectives import Objective
from .base import Unlearner, UnlearningFailed, unchanged, versions, warn_caller
from .registry import register

__all__ = ["IFRU", "IFRUConfig", "SolverConfig", "NewtonConfig", "TrustConfig"]

CURVATURES = ("exact", "gauss_newton", "mf_surrogate")
CURVATURE_OF = ("original", "remaining")
#: What :class:`IFRU` does when no step passes its checks: ``keep`` the model (and warn), ``raise``
#: :class:`~graphforget.unlearn.UnlearningFailed`, or ``apply`` the last step anyway (and warn).
ON_FAILURE = ("keep", "raise", "apply")
#: Factor by which the damping grows after a rejected step (Levenberg-Marquardt); an undamped step's retry
#: starts at RETRY_DAMPING times the curvature's mean diagonal.
DAMPING_GROWTH, RETRY_DAMPING = 10.0, 0.01
#: A Levenberg-Marquardt attempt's CG iterate is tested at this many iterations, and again each time they double.
CHECK_FROM = 8
#: ``newton.steps="auto"``: this many Newton steps when the trained point is stationary, that is when
#: the full objective's gradient at phi is at most STATIONARY_RATIO times the removal's gradient g.
AUTO_NEWTON_STEPS, STATIONARY_RATIO = 8, 0.1
#: ``newton.steps="auto"``: inexact Newton, stopped once the new objective's gradient is below
#: AUTO_NEWTON_STOP times the removal's gradient g. Each solve stops at the relative residual of Eisenstat and
#: Walker's second forcing term, FORCING_GAMMA * (|r_k| / |r_k-1|)^2 for the Newton residuals r, kept in
#: [AUTO_NEWTON_TOL, FORCING_MAX]: while the outer iteration converges slowly (Gauss-Newton's linear rate
#: away from a zero-residual fit), a tighter inner solve buys nothing.
AUTO_NEWTON_TOL, AUTO_NEWTON_STOP, FORCING_GAMMA, FORCING_MAX = 0.1, 0.01, 0.9, 0.9
#: ``newton.early_stopped``: the steps stop once one lowers the objective by less than this share of what the
#: first step lowered it. On single users (ML-100K) their gradient stays at 0.03-0.28 of the removal's, above
#: AUTO_NEWTON_STOP, while each later step lowers the objective by under 3.2% of the first's: 1-4 steps.
AUTO_NEWTON_DECREASE = 0.01
#: ``newton.early_stopped``: the steps take the coupled rows (as on a stationary model) while the full objective's
#: gradient at phi is at most this times the removal's: while the removal, not the residual, moves the rows.
WIDEN_RATIO = 1.0


def _check(path: str, config, rules: dict[str, tuple[bool, str]], choices: dict[str, tuple] | None = None) -> None:
    """Raises ``ValueError("<path>.<field>: <requirement>, got <value>")`` for the first rule that fails, or
    ``ValueError("<path>.<field>: unknown value <value>; known: ...")`` for a value outside its choices."""
    for name, known in (choices or {}).items():
        if getattr(config, name) not in known:
            raise ValueError(f"{path}.{name}: unknown value {getattr(config, name)!r}; known: {', '.join(known)}")
    for name, (holds, requirement) in rules.items():
        if not holds:
            raise ValueError(f"{path}.{name}: {requirement}, got {getattr(config, name)!r}")


def _check_types(path: str, config) -> None:
    """:func:`~graphforget.config.check_types` with the messages of :func:`_check` (``<path>.<field>: must be
    an int, got 2.5``); it also builds a nested config given as a dict of its fields."""
    check_types(config, check=functools.partial(_check, path))


@dataclass
class SolverConfig:
    """How :class:`IFRU` solves for its step :math:`(H + \\lambda I)^{-1} g`, and the damping :math:`\\lambda`
    (the field ``solver`` of :class:`IFRUConfig`).

    Args:
        name: ``cg`` (default), ``lissa``, ``adam`` (the paper's) or ``direct``.
        damping: :math:`\\lambda` added to the curvature. ``"auto"`` (default): the implicit ridge
            :math:`\\hat\\lambda = \\max(0, -\\langle \\nabla_\\phi L(\\hat\\theta; D), \\hat\\phi\\rangle /
            \\lVert\\hat\\phi\\rVert^2)`, the L2 strength under which the trained point would be
            stationary (early stopping acts as such a ridge; 0 at a stationary point), fitted on the node
            rows; away from stationarity each dense parameter's damping is scaled by the RMS of its gradient
            over the rows' (``info["dense_damping"]``; see :doc:`/methods`).
        relative_damping: adds ``relative_damping`` times the mean diagonal of the curvature
            (Hutchinson's estimate from 4 random sign vectors) to :math:`\\lambda`.
        tol: relative residual at which the solver stops; a solve that does not reach it is rejected.
            The default 1e-2 gives the same models as 1e-4 on ML-100K at about half the iterations.
        max_iter: solver iteration cap.
        lr: Adam's learning rate (``name='adam'``; the paper searches 1e-4..1e-2).
    """
    name: str = "cg"
    damping: float | Literal["auto"] = "auto"
    relative_damping: float = 0.0
    tol: float = 1e-2
    max_iter: int = 200
    lr: float = 1e-3

    def __post_init__(self):
        _check_types("IFRUConfig.solver", self)
        _check("IFRUConfig.solver", self, {
            "damping": (self.damping == "auto" or self.damping >= 0, "must be 'auto' or a number >= 0"),
            "relative_damping": (self.relative_damping >= 0, "must be >= 0"),
            "tol": (self.tol > 0, "must be > 0"),
            "max_iter": (self.max_iter >= 1, "must be an integer >= 1"),
            "lr": (self.lr > 0, "must be > 0"),
        }, choices={"name": tuple(SOLVERS)})

    def options(self) -> dict:
        """The keyword arguments of :func:`~graphforget.influence.solve` (``lr`` only for Adam)."""
        options = {"tol": self.tol, "max_iter": self.max_iter}
        return {**options, "lr": self.lr} if self.name == "adam" else options


@dataclass
class NewtonConfig:
    """The Newton extension of :class:`IFRU` (ours): more Newton steps on the new objective after the
    paper's one (the field ``newton`` of :class:`IFRUConfig`).

    Args:
        steps: 1 is the paper; more iterate Newton steps on the new objective. ``"auto"`` (default): 8
            line-searched inexact steps when the trained point is stationary
            (:math:`\\lVert\\nabla_\\phi L(\\hat\\theta; D)\\rVert \\le 0.1 \\lVert g\\rVert`), each solved to
            Eisenstat and Walker's forcing term, over the rows one hop wider than the receptive field and
            every row sharing a loss term with them unless ``hops`` is set (the minimiser they go to moves the
            rows the curvature couples to the request's too); else 1 (unless ``early_stopped``): away from
            stationarity the new objective's minimiser is not where retraining goes.
        early_stopped: with ``steps="auto"``, take the Newton steps also on a model away from stationarity
            whose objective's L2 is at least its implicit ridge (:math:`\\hat\\lambda \\le l_2`), on the new
            objective tilted by the trained point's residual (:math:`T` without its proximal term), over the
            first step's rows (widened as for a stationary model while ``gradient_ratio <= 1``), until a step
            lowers it by under 1% of what the first step did or its gradient grows (``info["newton_stop"]``).
            On the robustness grid's 10 early-stopped attack cells where they run this lifts IFRU from
            0.25-1.04 to 0.74-1.26 of Retrain's AUC gain (see :doc:`/methods`); a single user's request mostly
            stops after one more step (at most four on ML-100K). ``False``: one step away from stationarity.
        line_search: scale each later Newton step by the largest :math:`2^{-j}` (:math:`j < 10`) that does
            not increase the objective of the acceptance test (0 when none does, which ends the iterations).
        anderson: with ``line_search``, the depth of the Anderson acceleration of the Newton steps
            (:class:`~graphforget.influence.AndersonMixing`, 0: none). The mixed iterate is taken when it does
            not increase the new objective, else the line-searched step. Gauss-Newton steps converge only
            linearly when the fit leaves residuals; mixing the last three lifts the robustness grid's
            stationary weak-L2 MF on ML-100K (whose rows are already the whole graph) from 0.88 to 0.92-0.93
            of Retrain's AUC gain, at the same number of CG iterations.
    """
    steps: int | Literal["auto"] = "auto"
    line_search: bool = False
    anderson: int = 3
    early_stopped: bool = True

    def __post_init__(self):
        _check_types("IFRUConfig.newton", self)
        _check("IFRUConfig.newton", self, {
            "steps": (self.steps == "auto" or self.steps >= 1, "must be 'auto' or an integer >= 1"),
            "anderson": (self.anderson >= 0, "must be an integer >= 0"),
        })


@dataclass
class TrustConfig:
    """When :class:`IFRU` accepts a step, and what it does when none passes (the field ``trust`` of
    :class:`IFRUConfig`).

    Args:
        min_ratio: the acceptance test: the actual decrease of the test's objective over the decrease
            its quadratic model predicts must be at least this (a trust-region ratio).
        retries: rejected steps are solved again with the damping multiplied by 10 (from 1% of the mean
            curvature diagonal when it is 0), at most this many times. With CG the attempts share one Krylov
            space (a rejected attempt costs no second solve), and an attempt that has a retry after it stops at
            the first of CG's iterations 8, 16, 32, ... whose iterate fails the acceptance test (see
            :doc:`/methods`); ``info["attempts"]`` then counts the shared iterations.
        on_failure: what happens when no step is accepted, or the accepted one fails the validation test
            (``max_val_auc_drop``): ``keep`` (the model unchanged, a warning),
            ``raise`` (:class:`~graphforget.unlearn.UnlearningFailed`) or ``apply`` (the last finite
            step, a warning). Either way ``info["trusted"]`` is ``False`` and ``info["reason"]`` says why.
        max_val_auc_drop: when the unlearner was given ``val``, the accepted result's validation AUC may fall
            below the trained model's by at most this many standard errors (the larger of the two AUCs'; on the
            pairs whose user and item keep a training edge); beyond it ``on_failure`` decides, as for a rejected
            step (``None``: no test). More damping is no way out: it gives back the forgetting with the damage.
    """
    min_ratio: float = 0.5
    retries: int = 4
    on_failure: str = "keep"
    max_val_auc_drop: float | None = 3.0

    def __post_init__(self):
        _check_types("IFRUConfig.trust", self)
        _check("IFRUConfig.trust", self, {
            "min_ratio": (self.min_ratio >= 0, "must be >= 0"),
            "retries": (self.retries >= 0, "must be an integer >= 0"),
            "max_val_auc_drop": (self.max_val_auc_drop is None or self.max_val_auc_drop > 0, "must be None or > 0"),
        }, choices={"on_failure": ON_FAILURE})


@dataclass
class IFRUConfig:
    """Options of :class:`IFRU` (and :class:`~graphforget.unlearn.SCIF`), grouped by meaning: the paper's
    method at the top, then the solver and its damping (:class:`SolverConfig`), the Newton extension
    (:class:`NewtonConfig`) and the trust policy (:class:`TrustConfig`).

    The default is the robust step for models as users train them (Adam, early stopping, little or no
    L2): the paper's influence step on the remaining objective's curvature, damped by the *implicit
    ridge* of the trained point, and applied only when it passes an acceptance test (see :class:`IFRU`).
    :meth:`paper` is the paper's exact step; :meth:`newton` iterates Newton steps for models trained to
    a stationary point. A group may be given as a dict of its fields
    (``IFRUConfig(solver={"tol": 1e-4})``); on the command line its fields are dotted
    (``--option solver.tol=1e-4``).

    Where the model allows it, IFRU computes on the k-hop computation subgraph of the terms
    (``model.supports_edge_weight``) and takes closed-form curvature products (dot-product models over a
    linear embedding: MF, LightGCN; :class:`~graphforget.influence.DotProductOperator`); other models
    use double backward through the model on the whole graph.

    Args:
        spillover: add the spillover influence of the changed computational graph (``D_c``).
        prune: ratios :math:`(a_0, ..., a_K)` of Algorithm 1 (``None``: keep every node the
            importance reaches). The request's own users and items are always kept.
        hops: orders of importance propagation :math:`K` (``None``: the model's receptive field).
        curvature: ``gauss_newton`` (default): :math:`J^\\top \\nabla^2_z \\ell\\, J + \\lambda_2 I` of the real
            objective through the propagation, positive definite; ``exact``: the full Hessian, which is
            indefinite at an early-stopped (non-stationary) point; ``mf_surrogate``: the authors' code, an
            MF-style Hessian on the layer-0 embeddings even for LightGCN (for comparison only).
        curvature_of: ``remaining`` (default): the curvature of :math:`L(\\hat\\theta; D \\setminus D_r)`,
            which makes the step a Newton step on the new objective; ``original`` (the paper): that of
            :math:`L(\\hat\\theta; D)`. Later Newton steps always use the remaining one.
        solver: the solver and its damping (:class:`SolverConfig`).
        newton: the Newton extension (:class:`NewtonConfig`).
        trust: the acceptance test and the failure policy (:class:`TrustConfig`).
        dense: also solve for the model's dense (non-node) parameters, which saw every edge; models with
            only node tables (MF, LightGCN) have none.
        contrastive: for an objective with a contrastive term (SGL, SimGCL: ``ContrastiveBPRObjective``), add
            it to the objective IFRU differentiates, as one fixed draw of the views on the training and the
            remaining graph (:class:`~graphforget.influence.ContrastiveTerm`; its Gauss-Newton curvature with
            ``curvature="gauss_newton"``); the model draws the views (``fixed_views(reference, generator)``, as
            SGL and SimGCL do; without it IFRU warns). ``False``: the BPR risk alone, the term's gradient at the
            trained point held fixed in the tilt. Measured on SGL trained to convergence (ML-100K, fake edges removed, 3
            seeds): without it the step lowers the validation AUC by 3.4-4.0 standard errors and fails the
            validation test; with it, by 0.3-0.6, and the fake edges' membership-attack AUC falls from 0.63 to
            0.19 (Retrain: 0.03), at 1.3-3 s against 0.25 s (Retrain: 70 s).
        data_parallel: in a ``torch.distributed`` process group, each rank computes every sum over loss
            terms (curvature products, gradients, the objective values of the acceptance test and the line
            search) on its contiguous part of the terms, and one all-reduce per product adds the parts
            (:class:`~graphforget.distributed.TermShare`), so that a region too large for one device is
            solved across several. The selection of phi stays on every rank; the solver, the acceptance test
            and the line search see the same numbers and decide the same on every rank, which must all call
            ``unlearn`` with the same request; every rank returns the same model (equal to one process's up
            to the order of float sums). Without a group (or with one rank): no effect.
    """
    # the paper's method
    spillover: bool = True
    prune: tuple[float, ...] | None = None
    hops: int | None = None
    curvature: str = "gauss_newton"
    curvature_of: str = "remaining"
    # the solver and its damping, the Newton extension, the trust policy
    solver: SolverConfig = field(default_factory=SolverConfig)
    newton: NewtonConfig = field(default_factory=NewtonConfig)
    trust: TrustConfig = field(default_factory=TrustConfig)
    dense: bool = True
    contrastive: bool = True
    data_parallel: bool = False

    def __post_init__(self):
        _check_types("IFRUConfig", self)  # builds a group given as a dict
        _check("IFRUConfig", self, {
            "prune": (self.prune is None or all(0 <= a <= 1 for a in self.prune), "must be None or ratios in [0, 1]"),
            "hops": (self.hops is None or self.hops >= 0, "must be None or an integer >= 0"),
        }, choices={"curvature": CURVATURES, "curvature_of": CURVATURE_OF})

    @classmethod
    def paper(cls, **changes) -> "IFRUConfig":
        """The paper's step exactly: no damping, the original objective's curvature, a tight solve, no retry,
        and the step applied even when it fails the acceptance test (then with a warning and
        ``info["trusted"] = False``). For comparison: on early-stopped models it can wreck the model.

        ``changes`` override top-level fields; a group given as a dict changes only the fields it names
        (``paper(solver={"name": "lissa"})`` keeps the paper's damping and tolerance), a group given as
        its dataclass replaces the preset's group.
        """
        return cls(**_merged({"curvature_of": "original", "solver": {"damping": 0.0, "tol": 1e-4},
                              "newton": {"steps": 1}, "trust": {"retries": 0, "on_failure": "apply"}}, changes))


def _newton_preset(cls, receptive_field: int, steps: int = 8, **changes) -> IFRUConfig:
    """Our extension for models at a stationary point: ``steps`` inexact Newton steps on the new
    objective (Gauss-Newton curvature of the remaining data, CG to a relative residual of 0.1, a line
    search, Anderson mixing), over the rows within ``receptive_field + 1`` hops of the request, so that
    the rows the curvature couples to the request's move too. On the attack protocol it recovers 89-110% of
    retraining's AUC gain (five steps: 86-106%; the paper's step: 18-85%; measured before the mixing),
    1.6-3.6x faster than retraining with L-BFGS (see the benchmarks page). ``changes`` override fields as in
    :meth:`paper`.
    """
    return cls(**_merged({"curvature_of": "remaining", "newton": {"steps": steps, "line_search": True},
                          "solver": {"tol": 0.1}, "hops": receptive_field + 1}, changes))


# The preset ``IFRUConfig.newton(K)`` shares its name with the field ``newton``: the dataclass removes the
# field's class attribute (its default is a factory), so the preset is attached after it; an instance's
# ``newton`` is its field.
_newton_preset.__name__, _newton_preset.__qualname__ = "newton", "IFRUConfig.newton"
IFRUConfig.newton = classmethod(_newton_preset)


def _merged(preset: dict, changes: dict) -> dict:
    """``changes`` over a preset; a group changed by a dict keeps the preset's other fields."""
    merged = dict(preset)
    for key, value in changes.items():
        base = preset.get(key)
        merged[key] = {**base, **value} if isinstance(base, dict) and isinstance(value, dict) else value
    return merged


@dataclass
class _NewtonPlan:
    """The Newton extension's steps: how many, line-searched or not, the solver's options, and the norm
    of the new objective's gradient below which they stop; ``forcing``: each solve's tolerance from
    Eisenstat and Walker's forcing term (``options["tol"]`` its floor); ``tilted``: the steps minimise
    :meth:`_TiltedObjective.tilted` instead of the new objective, stop once a step lowers it by less than
    ``AUTO_NEWTON_DECREASE`` of what the first step did or its gradient grows, and are not held to :math:`T`."""
    steps: int
    line_search: bool
    options: dict
    stop_below: float
    forcing: bool = False
    tilted: bool = False


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


class _TiltedObjective:
    r"""The new objective as seen from the trained point, over the terms that reach :math:`\phi`:

    .. math::
        T(\phi) = L(\phi; D \setminus D_r) - \langle \nabla L(\hat\phi; D), \phi - \hat\phi \rangle
                  + \tfrac{\lambda}{2} \lVert \phi - \hat\phi \rVert^2 .

    The tilt makes :math:`\hat\phi` stationary on the full data (an early-stopped model is not), so
    :math:`T` moves its minimiser only because of the removal, and its Newton step at :math:`\hat\phi`
    is IFRU's step :math:`(H + \lambda I)^{-1} g`. At a stationary point the tilt vanishes.

    Entries of ``orphan`` rows (nodes the removal leaves with no term and no edge) have no data left to
    hold them: their tilt is only the ridge's part, :math:`-\lambda\hat\phi_v`, which is the tilt of
    :math:`L + \tfrac{\lambda}{2}\lVert\phi\rVert^2` without the misfit of their (removed) data, so
    their target is the ridge's prior mean 0 (where retraining leaves them, up to its initialisation).
    """

    def __init__(self, value, gradient, tilt: Tensor, phi: Tensor, orphan: Tensor, l2: float,
                 row_entries: int | None = None, decoupled: bool = True):
        self.value, self.new_gradient, self.full_gradient, self.phi0 = value, gradient, tilt, phi
        self.orphan, self.l2 = orphan, l2
        self.decoupled = decoupled  # whether no term couples the orphan entries (a contrastive term may)
        self.row_entries = phi.numel() if row_entries is None else row_entries  # phi's node rows come first
        self.damping, self._start = 0.0, None
        self.metric: Tensor | None = None  # per-entry scale of the damping (None: the same on every entry)

    @property
    def proximal(self) -> float | Tensor:
        """The proximal term's strength on each entry: the damping, times the metric where there is one."""
        return self.damping if self.metric is None else self.damping * self.metric

    def start(self) -> Tensor:
        """:math:`T(\\hat\\phi)`, the same for every damping (computed once)."""
        if self._start is None:
            self._start = self.value(self.phi0)
        return self._start

    @property
    def tilt(self) -> Tensor:
        r""":math:`\nabla L(\hat\phi; D)`, or :math:`-\lambda\hat\phi` on orphan entries."""
        return torch.where(self.orphan, -self.proximal * self.phi0, self.full_gradient)

    def rhs(self, g: Tensor) -> Tensor:
        r""":math:`-\nabla T(\hat\phi)`: ``g``, or :math:`-(\lambda_2 + \lambda)\hat\phi` on orphan entries."""
        return torch.where(self.orphan, -(self.l2 + self.proximal) * self.phi0, g)

    def __call__(self, phi: Tensor) -> Tensor:
        shift = (phi - self.phi0).double()
        squares = shift.pow(2) if self.metric is None else self.metric.double() * shift.pow(2)
        return self.value(phi) - self.tilt.double().dot(shift) + 0.5 * self.damping * squares.sum()

    def tilted(self, phi: Tensor) -> Tensor:
        """:math:`T` without its proximal term: the new objective with the trained point's residual held
        fixed (``newton.early_stopped``). Along the curvature's null directions (the rotations of the
        embedding space) the proximal term's gradient would be amplified by 1/damping. Orphan entries keep
        no tilt: theirs is the ridge's part, which goes with the proximal term (with it, their target
        would be :math:`-\\lambda\\hat\\phi_v / l_2`, the trained row reversed)."""
        return self.value(phi) - self.data_tilt.double().dot((phi - self.phi0).double())

    def tilted_gradient(self, phi: Tensor) -> Tensor:
        """The gradient of :meth:`tilted`."""
        return self.new_gradient(phi) - self.data_tilt

    @functools.cached_property
    def data_tilt(self) -> Tensor:
        """The tilt of :meth:`tilted` (fixed, so computed once): the residual of the trained point's data,
        none on orphan entries."""
        return torch.where(self.orphan, torch.zeros_like(self.full_gradient), self.full_gradient)

    def implicit_ridge(self) -> float:
        """:math:`\\max(0, -\\langle \\nabla L(\\hat\\phi; D), \\hat\\phi\\rangle / \\lVert\\hat\\phi\\rVert^2)`
        over the node rows (the first ``row_entries``): the L2 strength at which they would be stationary (least
        squares). Dense weights are left out: their residual measures how far training left them, not a ridge."""
        phi, gradient = self.phi0[:self.row_entries], self.full_gradient[:self.row_entries]
        norm = float(phi.pow(2).sum())
        return max(0.0, -float(gradient.dot(phi)) / norm) if norm > 0 else 0.0


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
    step is a Newton step of the tilted new objective :math:`T` (:class:`_TiltedObjective`), and it is
    accepted only when the solve converged, everything is finite and :math:`T` decreased by at least
    ``trust.min_ratio`` of what its quadratic model predicts. A rejected step is solved again with 10x the
    damping (Levenberg-Marquardt), up to ``trust.retries`` times; then ``trust.on_failure`` decides, and
    ``info["trusted"]`` / ``info["reason"]`` report the outcome. Given ``val``, the accepted result's
    validation AUC is tested too (``trust.max_val_auc_drop``), under the same policy.

    **Scale.** With ``data_parallel`` in a ``torch.distributed`` process group, the sums over loss terms
    (curvature products, gradients, objective values) are split across the ranks, one all-reduce each
    (:class:`~graphforget.distributed.TermShare`); every rank calls ``unlearn`` and gets the same model.

    **Phases** of a request (``info["phase_seconds"]``): ``select`` (pruning: the rows :math:`\phi`),
    ``gradient`` (the terms that reach :math:`\phi`, the tilted objective and :math:`g`), ``solve``
    (the first step with its retries, then the Newton extension), ``write`` (the new model) and, given ``val``
    and a trusted step, ``validate``.

    The result's ``info``:

    * ``request_edges``, ``affected_nodes`` (within :math:`K` hops of the request), ``affected_terms``
      (:math:`|D_c|`), ``kept_nodes``, ``kept_parameters`` (the size of :math:`\phi`), ``contrastive``
      (whether the objective's contrastive term was in it, see :class:`IFRUConfig`),
      ``widened`` (the rows taken wider for the Newton steps, see :meth:`_widens` and :class:`NewtonConfig`);
    * ``implicit_ridge`` (``None`` unless ``solver.damping="auto"``), ``gradient_ratio``
      (:math:`\lVert\nabla L(\hat\phi; D)\rVert / \lVert g\rVert`: how far from stationary the model is),
      ``damping`` (the last attempt's :math:`\lambda`);
    * ``attempts``: one dict per solve of the first step (the solver's ``iterations``, ``residual``,
      ``seconds``, ``converged``, ``negative_curvature``, and ``rhs_norm``, ``damping``,
      ``predicted_decrease``, ``actual_decrease``, ``ratio``, ``reason``);
    * ``solver``: always a list, one dict per solve of a step: the first step's last attempt (the accepted
      one when ``trusted``), then one per Newton step (with its ``tol``, its ``step_size``, whether the
      Anderson-mixed iterate was taken instead, ``mixed``, and with ``line_search`` how much it lowered the
      objective of the steps, ``decrease``); empty when the gradient was not finite (nothing
      was solved);
    * ``trusted`` and ``reason`` (``None`` when trusted); ``newton_stop`` (why the Newton steps ended:
      ``converged``, ``stalled``, ``gradient rose``, ``no descent`` or ``max steps``; only when they ran);
      ``newton_discarded`` (only when the Newton steps were dropped for raising :math:`T`);
    * given ``val`` and a trusted step: ``val_auc`` and ``original_val_auc`` (the result's and the trained
      model's) and ``val_pairs`` (how many were scored), unless they lack a class;
    * ``phase_seconds`` (per phase, see above) and ``threads``.

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
    """
    name = "ifru"
    Config = IFRUConfig

    def __init__(self, model, graph: HeteroData, objective: Objective, config: IFRUConfig | dict | None = None, *,
                 val: HeteroData | None = None, _reference_paths: bool = False):
        self._degrees, self._degrees_of = None, []  # the training graph's degrees, and the edges they count
        super().__init__(model, graph, objective, config, val=val)
        self._reference_paths = _reference_paths
        if self.config.contrastive and getattr(objective, "ssl_weight", 0) > 0 and not hasattr(model, "fixed_views"):
            warn_caller(f"IFRU: the objective has a contrastive term, but {type(model).__name__} has no "
                        "fixed_views(reference, generator) to draw its views: IFRU differentiates the BPR risk alone "
                        "(IFRUConfig.contrastive=False says so and silences this)")

    def _message_passing_degrees(self) -> Tensor:
        """``[U + I]`` message-passing degrees of the training graph, counted again only when its edges changed:
        every request reads them, and counting is a scan of every edge."""
        store = self.graph[EDGE]
        state = versions(store.edge_index, store.get("observed"))
        if not unchanged(state, self._degrees_of):
            self._degrees, self._degrees_of = message_passing_degrees(self.graph), state
        return self._degrees

    def _unlearn(self, request: Tensor, positions: Tensor, remaining: HeteroData):
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
        new_model = copy.deepcopy(self.model)
        region.rows.write(new_model, phi)
        clock.lap("write")
        if outcome["trusted"]:
            new_model = self._validate(new_model, remaining, outcome)
            clock.lap("validate")
        return new_model, {**self._describe(call), **outcome, "widened": widened, "phase_seconds": clock.phases,
                           "threads": torch.get_num_threads()}

    def _validate(self, new_model: torch.nn.Module, remaining: HeteroData, outcome: dict) -> torch.nn.Module:
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
        return self._settle(copy.deepcopy(self.model), new_model, reason)

    def _prepare(self, request: Tensor, positions: Tensor, remaining: HeteroData, region: _Region,
                 share: TermShare) -> tuple[_Call, _TiltedObjective, Tensor]:
        """The request's terms over ``region``, the tilted objective T and the removal's gradient g."""
        call = self._gather(request, positions, remaining, region, share)
        target = self._tilted_objective(call)
        return call, target, self._gradient(call, target)

    def _widens(self, target: _TiltedObjective, gradient: Tensor) -> bool:
        """Whether the region grows by one hop and the rows coupled to it (``_select``'s ``coupled``): on a
        stationary model (``newton.steps="auto"``, ``hops`` not set), the Newton steps go to the new objective's
        minimiser, towards which the rows that the curvature couples to the request's move too. The steps on an
        early-stopped model (``newton.early_stopped``) widen only while the removal's gradient outweighs the
        trained point's residual (``gradient_ratio <= 1``): beyond, the coupled rows would move mostly with the
        residual, which the tilt holds, and for a single user (ratios 1.9-24 on ML-100K) they are most of the graph
        (2285 of 2625 nodes), at 7-21x the one step's time for the same forgetting."""
        if self.config.newton.steps != "auto" or self.config.hops is not None:
            return False
        ratio = _gradient_ratio(target, gradient)
        return ratio <= STATIONARY_RATIO or (ratio <= WIDEN_RATIO and self._iterates(target, ratio))

    def _iterates(self, target: _TiltedObjective, ratio: float) -> bool:
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

    # -- select: the rows phi and the regions around the request --------------------------------------

    def _select(self, request: Tensor, hops: int | None, coupled: bool = False) -> _Region:
        """phi: the rows of the nodes that pruning keeps within ``hops`` (``None``: the receptive field) of the
        request (its endpoints always); with ``coupled``, also every node that shares a loss term with one of
        them: the curvature couples a term's nodes whether or not the pair carries messages (a 0-labelled
        pair, a BPR negative)."""
        cfg, graph, model = self.config, self.graph, self.model
        users, depth = num_users(graph), model.receptive_field
        request_nodes = node_ids(request, users)
        scores = importance_scores(graph, request, depth if hops is None else hops, self._message_passing_degrees())
        kept_mask = select_nodes(scores, cfg.prune, always=request_nodes)
        if coupled:
            kept_mask[local_terms(self.objective, graph, kept_mask).nodes(users, kept_mask.numel())] = True
        # The MF surrogate has no curvature for dense parameters: they are left out of it.
        rows = NodeRows.from_node_mask(model, kept_mask, users, dense=cfg.dense and cfg.curvature != "mf_surrogate")
        # Nodes whose outputs depend on phi: the same in both graphs, since the request's endpoints are kept.
        reach = k_hop_mask(graph, kept_mask.nonzero().flatten(), depth)
        if rows.has_dense:  # dense parameters reach every output
            reach = torch.ones_like(reach)
        return _Region(rows, rows.gather(model), kept_mask, k_hop_mask(graph, request_nodes, depth), reach)

    # -- gradient: the terms, the tilted objective T and g ----------------------------------------------

    def _gather(self, request: Tensor, positions: Tensor, remaining: HeteroData, region: _Region,
                share: TermShare) -> _Call:
        """The request's state: the terms that reach phi before and after the removal, the removed ones."""
        removed = training_terms(self.objective, self.graph, positions)
        replaced = self._replacement_terms(removed, request, remaining)
        contrastive = self._contrastive_term(share)
        return _Call(request, positions, remaining, region,
                     original=_Scored(local_terms(self.objective, self.graph, region.reach), self.graph, share,
                                      contrastive),
                     new=_Scored(local_terms(self.objective, remaining, region.reach), remaining, share, contrastive),
                     removed=_Scored(removed, self.graph, share),
                     replaced=None if replaced is None else _Scored(replaced, self.graph, share), share=share)

    def _has_contrastive(self) -> bool:
        """Whether the objective IFRU differentiates includes a contrastive term (``contrastive``)."""
        return (self.config.contrastive and self.config.curvature != "mf_surrogate"
                and has_contrastive_term(self.model, self.objective))

    def _contrastive_term(self, share: TermShare) -> ContrastiveTerm | None:
        """The objective's contrastive term, one draw of its views per call; rank 0 adds it (``data_parallel``)."""
        return ContrastiveTerm(self.model, self.objective, self.graph) if (
            self._has_contrastive() and share.rank == 0) else None

    def _replacement_terms(self, removed: Terms, request: Tensor, remaining: HeteroData) -> Terms | None:
        """Terms that replace the removed ones in the new objective (none: they are simply removed)."""
        return None

    def _tilted_objective(self, call: _Call) -> _TiltedObjective:
        """:math:`T` of the acceptance test over the terms that reach phi (see :class:`_TiltedObjective`);
        its value and gradients summed across the ranks (``data_parallel``)."""
        rows, phi, replaced, summed = call.region.rows, call.region.phi, call.replaced, call.share.summed
        pieces = [(call.new, True)] + ([] if replaced is None else [(replaced, False)])
        functions = [self._terms_fn(rows, scored, l2) for scored, l2 in pieces]
        if call.new.contrastive is not None:
            functions.append(call.new.contrastive.function(rows, call.remaining))

        def value(x):
            return sum(fn(x) for fn in functions)

        def gradient(x):
            total = self._objective_grad(rows, x, call.new)
            return total if replaced is None else total + self._loss_gradient(rows, x, replaced)
        tilt = summed(self._objective_grad)(rows, phi, call.original).detach()
        row_entries = phi.numel() - sum(self.model.get_parameter(name).numel() for name in rows.dense)
        return _TiltedObjective(summed(value), summed(gradient), tilt, phi, self._orphans(call), self.objective.l2,
                                row_entries, decoupled=not self._has_contrastive())

    def _orphans(self, call: _Call) -> Tensor:
        """``[len(phi)]`` whether each entry of phi is a row of a node that no term of the new objective
        scores and no remaining edge reaches (none for SCIF, whose new objective keeps every node)."""
        users, store = num_users(self.graph), self.graph[EDGE]
        removed = call.positions if "observed" not in store else call.positions[store.observed[call.positions]]
        ends = torch.cat([store.edge_index[0, removed], store.edge_index[1, removed] + users])
        # The remaining degrees are the kept ones less the removed message-passing edges: no scan of every edge.
        degrees = self._message_passing_degrees()
        remaining = degrees.index_add(0, ends, torch.ones_like(ends, dtype=degrees.dtype), alpha=-1)
        data = (remaining > 0) | (call.replaced is not None)
        data[call.new.terms.nodes(users, data.numel())] = True
        return call.region.rows.expand(self.model, ~data, users)

    def _gradient(self, call: _Call, target: _TiltedObjective) -> Tensor:
        """:math:`g = \\nabla L(\\hat\\phi; D) - \\nabla L(\\hat\\phi; D \\setminus D_r)` over the terms that reach
        phi: the direct and the spillover influence at once, and exactly :math:`-\\nabla T(\\hat\\phi)`, so the
        acceptance test judges the step against the objective it was solved for (for BPR this includes the
        negatives the removal redraws). Without spillover (the paper's ablation; SCIF), the removed terms'
        gradient, less that of their replacements."""
        rows, phi = call.region.rows, call.region.phi
        if self.config.spillover:
            return (target.full_gradient - target.new_gradient(phi)).detach()

        def direct(x):
            gradient = self._loss_gradient(rows, x, call.removed)
            return gradient if call.replaced is None else gradient - self._loss_gradient(rows, x, call.replaced)
        return call.share.summed(direct)(phi)

    # -- solve: the first step (Levenberg-Marquardt), then the Newton extension -----------------------------

    def _solve(self, call: _Call, gradient: Tensor, target: _TiltedObjective) -> tuple[Tensor, dict]:
        """The accepted first step, then the Newton extension's steps; returns phi and the info entries."""
        phi = call.region.phi
        ratio = _gradient_ratio(target, gradient)
        implicit = target.implicit_ridge() if self.config.solver.damping == "auto" else None
        outcome = {"implicit_ridge": implicit, "gradient_ratio": ratio, "attempts": []}
        target.metric, outcome["dense_damping"] = self._damping_metric(call.region.rows, target, ratio)
        step, reason = self._first_step(call, gradient, target, outcome["attempts"])
        outcome["damping"] = target.damping
        solves = outcome["attempts"][-1:]  # the step's own solve (the same dict as its attempt's)
        new_phi = phi + step if reason is None else self._settle(phi, None if step is None else phi + step, reason)
        if reason is None and self.config.curvature_of == "remaining":
            # No term of T scores an orphan row: its block of T is decoupled and minimal at 0 exactly, where an
            # inexact solve leaves the row shrunk but pointing the same way (the user's rankings unchanged).
            new_phi = torch.where(target.orphan, torch.zeros_like(new_phi), new_phi)
            outcome["zeroed_entries"] = int(target.orphan.sum())
        if new_phi is not phi:  # a step was applied: the Newton extension goes on from it
            plan = self._newton_plan(target, ratio, float(gradient.norm()))
            new_phi = self._extend(call, new_phi, target, solves, outcome, plan)
        outcome.update(trusted=reason is None, reason=reason, solver=solves)
        return new_phi, outcome

    def _damping_metric(self, rows: NodeRows, target: _TiltedObjective, ratio: float) -> tuple[Tensor | None, dict]:
        """The damping's scale on each entry of phi, and ``{dense parameter: its scale}``: 1 on node rows; on each
        dense parameter of a model away from stationarity (``damping="auto"``), the RMS of its entries' gradient
        over the rows' (at least 1). Adam steps each entry by about ``lr`` over the root of its mean squared
        gradient, so stopping it early leaves a ridge of that root's shape; a weight shared by every node gathers
        the gradient of every term and is held back accordingly (see :doc:`/methods`)."""
        if self.config.solver.damping != "auto" or not rows.dense or ratio <= STATIONARY_RATIO:
            return None, {}
        gradient, start = target.full_gradient, target.row_entries
        rows_rms = float(gradient[:start].pow(2).mean().sqrt()) if start else 0.0
        if not rows_rms > 0:
            return None, {}
        metric, scales = torch.ones_like(gradient), {}
        for name in rows.dense:
            stop = start + self.model.get_parameter(name).numel()
            scales[name] = max(1.0, float(gradient[start:stop].pow(2).mean().sqrt()) / rows_rms)
            metric[start:stop], start = scales[name], stop
        return metric, scales

    def _first_step(self, call: _Call, gradient: Tensor, target: _TiltedObjective, attempts: list):
        """The influence step and ``None``, or the last finite step (or ``None``) and why none was accepted."""
        if not torch.isfinite(gradient).all():
            return None, "the gradient of the removed terms is not finite"
        curvature = self._curvature(call.region.rows, self._curvature_terms(call), target.phi0)
        return self._levenberg_marquardt(curvature, gradient, target, self._start_damping(curvature, target),
                                         attempts)

    def _start_damping(self, curvature, target: _TiltedObjective) -> float:
        """The first attempt's :math:`\\lambda`: the implicit ridge or the configured damping, plus the
        relative damping's share of the mean curvature diagonal."""
        solver = self.config.solver
        damping = target.implicit_ridge() if solver.damping == "auto" else float(solver.damping)
        if damping == 0 and target.metric is not None:  # no ridge to scale: the first retry's damping
            damping = RETRY_DAMPING * _mean_diagonal(curvature, target.phi0)
        return damping + (solver.relative_damping * _mean_diagonal(curvature, target.phi0)
                          if solver.relative_damping else 0.0)

    def _curvature_terms(self, call: _Call) -> _Scored:
        """The terms whose curvature the first step takes (``curvature_of``)."""
        remaining = self.config.curvature_of == "remaining"
        if self.config.curvature == "mf_surrogate":  # reads only the terms scoring a kept node directly
            graph = call.remaining if remaining else self.graph
            return _Scored(local_terms(self.objective, graph, call.region.kept_mask), graph, call.share)
        return call.new if remaining else call.original

    def _levenberg_marquardt(self, curvature, rhs: Tensor, target: _TiltedObjective, damping: float,
                             attempts: list):
        """Solve, test, and on rejection grow the damping; returns the step and the reason of the last
        rejection (``None`` when accepted). The attempts of one geometric ladder of dampings share their
        solver's work where they can (:class:`_Ladder`)."""
        retries, phi = self.config.trust.retries, target.phi0
        step, ladder = None, None
        for attempt in range(retries + 1):
            if attempt:
                damping = DAMPING_GROWTH * damping if damping > 0 else RETRY_DAMPING * _mean_diagonal(curvature, phi)
            if ladder is None or not ladder.holds(damping):
                ladder = _Ladder(curvature, rhs, target, damping, retries + 1 - attempt, self.config)
            result, b, check = ladder.attempt(damping, last=attempt == retries)
            attempts.append({**result.stats(), "rhs_norm": float(b.norm()), "damping": damping, **check})
            if torch.isfinite(result.x).all():
                step = result.x
            if check["reason"] is None:
                return result.x, None
        return step, attempts[-1]["reason"]

    def _settle(self, unchanged: Tensor | torch.nn.Module, candidate: Tensor | torch.nn.Module | None,
                reason: str) -> Tensor | torch.nn.Module:
        """The failure policy (``trust.on_failure``) once no result passed: ``candidate`` (the step's result, or
        ``None``) applied anyway, or ``unchanged`` (the trained rows or model)."""
        policy = self.config.trust.on_failure
        if policy == "raise":
            raise UnlearningFailed(f"IFRU: {reason}")
        applied = policy == "apply" and candidate is not None
        outcome = "the step was applied anyway" if applied else "the model is returned unchanged"
        warn_caller(f"IFRU: {reason}; {outcome} (info['trusted'] is False)")
        return candidate if applied else unchanged

    def _newton_plan(self, target: _TiltedObjective, ratio: float, gradient_norm: float) -> _NewtonPlan:
        """The configured Newton steps; for ``"auto"``, inexact line-searched ones where they run
        (:meth:`_iterates`; ``ratio``: the full objective's gradient over the removal's), else the one step."""
        newton, solver = self.config.newton, self.config.solver
        if newton.steps != "auto":
            return _NewtonPlan(newton.steps, newton.line_search, solver.options(), 0.0)
        if not self._iterates(target, ratio):
            return _NewtonPlan(1, newton.line_search, solver.options(), 0.0)
        options = {**solver.options(), "tol": max(solver.tol, AUTO_NEWTON_TOL)}
        return _NewtonPlan(AUTO_NEWTON_STEPS, True, options, AUTO_NEWTON_STOP * gradient_norm, forcing=True,
                           tilted=ratio > STATIONARY_RATIO)  # away from stationarity: newton.early_stopped

    def _extend(self, call: _Call, first: Tensor, target: _TiltedObjective, solves: list, outcome: dict,
                plan: _NewtonPlan) -> Tensor:
        """The Newton steps after the first. Steps on the new objective are kept only when they do not raise
        :math:`T` above the first step's value: on a model far from stationarity they minimise it beyond what
        the removal explains. The tilted steps (``plan.tilted``) leave :math:`T`'s proximal term out and go past
        its minimiser by design; their line search and stop rules hold them (held to :math:`T`, every
        single-user request on ML-100K MF dropped them, with a warning)."""
        if plan.line_search:
            solves[0]["step_size"] = 1.0  # the first step is taken whole
        if plan.steps == 1:
            return first
        phi, outcome["newton_stop"] = self._newton_steps(call, first, target, solves, plan)
        if plan.tilted or float(target(phi)) <= float(target(first)):
            return phi
        outcome["newton_discarded"] = True
        warn_caller("IFRU: the Newton steps raised the tilted objective (the model is far from a stationary point "
                    "of its objective): only the first step is kept")
        return first

    def _newton_steps(self, call: _Call, phi: Tensor, target: _TiltedObjective, solves: list,
                      plan: _NewtonPlan) -> tuple[Tensor, str]:
        """Our extension: Newton steps on the new objective itself from the accepted first step (damped
        with the first step's damping, line-searched): for stationary models, where the tilt vanishes (or on
        :meth:`_TiltedObjective.tilted`, ``plan.tilted``). Returns phi and why the steps stopped.
        The tilted steps also stop when the objective's gradient grows: away from stationarity its minimiser
        can lie far off along directions the removal does not explain, and past the first rise the iterates
        head there (ML-100K MF, default L2: 0.80 of Retrain's AUC gain after 8 steps, -2.1 after 25)."""
        residual, tol = solves[0]["rhs_norm"], plan.options["tol"]
        objective, gradient = (target.tilted, target.tilted_gradient) if plan.tilted else (target.value,
                                                                                           target.new_gradient)
        value = float(objective(phi)) if plan.line_search else None
        # a share of the first step's decrease (the tilted objective equals T at the trained point)
        min_decrease = AUTO_NEWTON_DECREASE * (float(target.start()) - value) if plan.tilted else 0.0
        mixing = AndersonMixing(self.config.newton.anderson)
        for _ in range(1, plan.steps):
            rhs = -gradient(phi).detach()
            norm = float(rhs.norm())
            if norm <= plan.stop_below:
                return phi, "converged"
            # against the last Newton step's gradient (the first step's g is T's, with the proximal term)
            if plan.tilted and len(solves) > 1 and norm > residual:
                return phi, "gradient rose"
            if plan.forcing:
                tol = _forcing_term(norm, residual, tol, plan.options["tol"])
            residual = norm
            curvature = self._curvature(call.region.rows, call.new, phi)
            result = solve(self.config.solver.name, _shifted(curvature, target.proximal), rhs,
                           **{**plan.options, "tol": tol})
            decrease = None
            if plan.line_search:
                following, size, lowered, mixed = _descend(objective, phi, result.x, value, mixing)
                decrease, value = value - lowered, lowered
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
                                         local.tables)
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
                                        local.tables)
        x = phi.detach().requires_grad_(True)
        return torch.autograd.grad(self._terms_fn(rows, scored, False)(x), x)[0]

    def _objective_grad(self, rows: NodeRows, phi: Tensor, scored: _Scored) -> Tensor:
        return self._loss_gradient(rows, phi, scored) + scored.share.objective(self.objective).l2 * phi

    def _curvature(self, rows: NodeRows, scored: _Scored, phi: Tensor):
        """The undamped curvature operator of the terms' objective (with its explicit L2) at ``phi``, its
        products summed across the ranks."""
        curvature, objective, terms = self.config.curvature, scored.share.objective(self.objective), scored.mine
        if curvature == "mf_surrogate":
            operator = HessianOperator(_mf_surrogate_loss(self.model, rows, terms, objective), phi)
        elif self._closed_form(rows):
            local = scored.local(self.model, rows)
            operator = DotProductOperator(self.model, local.rows, phi, local.terms, local.graph, objective,
                                          curvature == "exact", tables=local.tables)
        elif curvature == "exact":
            operator = HessianOperator(self._terms_fn(rows, scored, True), phi)
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
        return scored.share.summed(operator)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={type(self.model).__name__}, objective={self.objective}, " \
               f"config={self.config})"


class _Ladder:
    r"""The Levenberg-Marquardt attempts for the dampings :math:`\lambda_k = 10^k \lambda_0` (:math:`k <` ``count``;
    only :math:`\lambda_0` when it is 0): each solved and tested (:func:`_acceptance`) as the trust policy asks.

    With CG they share one Krylov space (:class:`~graphforget.influence.ShiftedConjugateGradient`): the products that
    solve one attempt's system solve the next ones' on the way, so a rejected attempt costs no second solve. The
    damping's metric :math:`M` (dense weights, :meth:`IFRU._damping_metric`) becomes the identity in the coordinates
    :math:`M^{1/2}\phi` (residuals still measured in :math:`\phi`'s), and the right-hand sides differ only on orphan
    entries, whose block of the system is decoupled, :math:`(l_2 + \lambda)\,I`, and solved exactly. Each attempt's
    solve is checked every time its iteration count doubles from ``CHECK_FROM``: CG's iterates grow in norm
    (Steihaug, SIAM J. Numer. Anal. 20, 1983), so once one fails the acceptance test the converged step, further out,
    lies beyond where the quadratic model holds, and the attempt stops there.
    """

    def __init__(self, curvature, g: Tensor, target: _TiltedObjective, damping: float, count: int,
                 config: IFRUConfig):
        self.curvature, self.g, self.target, self.config = curvature, g, target, config
        self.dampings = [damping]
        for _ in range(count - 1 if damping > 0 else 0):  # as the attempts grow it (the same roundings)
            self.dampings.append(DAMPING_GROWTH * self.dampings[-1])
        # a contrastive term may score orphan rows: their block is not known to be decoupled
        self.shared = config.solver.name == "cg" and (target.decoupled or not target.orphan.any())
        self.scale = None if target.metric is None else target.metric.rsqrt()  # M^-1/2, which makes M the identity
        self.family = self._family() if self.shared else None

    def holds(self, damping: float) -> bool:
        """Whether ``damping`` is on this ladder and its Krylov space can still serve it."""
        return damping in self.dampings and not (self.family is not None and self.family.negative)

    def _family(self) -> ShiftedConjugateGradient:
        target, base, scale = self.target, self.dampings[0], self.scale
        target.damping = base
        operator, b = _shifted(self.curvature, target.proximal), target.rhs(self.g)
        if scale is not None:
            operator, b = _congruent(operator, scale), scale * b
        options = self.config.solver.options()
        return ShiftedConjugateGradient(operator, b, [d - base for d in self.dampings], options["tol"],
                                        options["max_iter"], None if scale is None else scale.reciprocal())

    def attempt(self, damping: float, last: bool) -> tuple[SolveResult, Tensor, dict]:
        """The attempt at ``damping``: its solve, its right-hand side and its acceptance test. The ``last`` attempt
        (no retry after it) is solved through: on failure it is the step that ``trust.on_failure="apply"`` applies."""
        target, cfg = self.target, self.config
        target.damping = damping
        operator, b = _shifted(self.curvature, target.proximal), target.rhs(self.g)
        if not self.shared:
            result = solve(cfg.solver.name, operator, b, **cfg.solver.options())
            return result, b, _acceptance(target, result, b, operator, cfg)
        k, cap = self.dampings.index(damping), cfg.solver.max_iter
        limit = cap if last else CHECK_FROM
        while True:
            result = self._solve(k, limit)
            if result.converged or result.negative_curvature or not limit <= result.iterations < cap:
                return result, b, _acceptance(target, result, b, operator, cfg)
            check = _acceptance(target, result, b, operator, cfg, iterate=True)
            if check["reason"] is not None:
                return result, b, check
            limit = 2 * result.iterations  # past the earlier attempts' iterations when they shared the space

    def _solve(self, k: int, limit: int) -> SolveResult:
        """Attempt ``k``'s solve after at most ``limit`` iterations, in phi's coordinates with its orphan block."""
        result = self.family.solve(k, limit)
        x = result.x if self.scale is None else self.scale * result.x
        target, base, damping = self.target, self.dampings[0], self.dampings[k]
        if damping != base:  # the part of the right-hand side that differs: -(damping - base) phi0 on orphans
            x = torch.where(target.orphan, x - (damping - base) / (target.l2 + damping) * target.phi0, x)
        return replace(result, x=x)


def _mf_surrogate_loss(model, rows: NodeRows, terms: Terms, objective: Objective):
    """``phi -> L`` with layer-0 dot products as logits: the authors' code's Hessian even for LightGCN."""
    def loss(x):
        tables = rows.tables(model, x)
        user, item = (tables[name] for name in model.node_parameters())
        eli = terms.edge_label_index
        logits = (user[eli[0]] * item[eli[1]]).sum(-1)
        return objective.losses(logits, terms.target).sum() + 0.5 * objective.l2 * x.pow(2).sum()
    return loss


def _mean_diagonal(operator, like: Tensor, probes: int = 4) -> float:
    """Hutchinson's estimate of the operator's mean diagonal: mean of ``v.Av / n`` over random signs ``v``."""
    gen = torch.Generator().manual_seed(0)
    total = 0.0
    for _ in range(probes):
        v = (torch.randint(2, (like.numel(),), generator=gen) * 2 - 1).to(like)
        total += float(v.dot(operator(v))) / like.numel()
    return total / probes


def _gradient_ratio(target: _TiltedObjective, gradient: Tensor) -> float:
    r"""How far the trained point is from stationary, relative to the removal's own gradient:
    :math:`\lVert\nabla L(\hat\phi; D)\rVert / \lVert g\rVert`."""
    norm = float(gradient.norm())
    return float(target.full_gradient.norm()) / norm if norm > 0 else float("inf")


def _forcing_term(norm: float, previous: float, last: float, floor: float) -> float:
    """Eisenstat and Walker's second forcing term (SIAM J. Sci. Comput. 17, 1996), with their safeguard against
    a sudden drop, kept in ``[floor, FORCING_MAX]``."""
    eta = FORCING_GAMMA * (norm / previous) ** 2 if previous > 0 else FORCING_MAX
    safeguard = FORCING_GAMMA * last ** 2
    if safeguard > 0.1:
        eta = max(eta, safeguard)
    return min(FORCING_MAX, max(floor, eta))


def _added(first, second):
    """``v -> first(v) + second(v)``."""
    return lambda v: first(v) + second(v)


def _shifted(operator, damping: float | Tensor):
    """``v -> operator(v) + damping * v`` (``damping``: a number, or one per entry)."""
    return operator if not torch.is_tensor(damping) and damping == 0 else (lambda v: operator(v) + damping * v)


def _congruent(operator, scale: Tensor):
    """``v -> scale * operator(scale * v)``: the operator in the coordinates ``phi / scale``."""
    return lambda v: scale * operator(scale * v)


def _acceptance(target: _TiltedObjective, result, rhs: Tensor, operator, cfg: IFRUConfig, iterate: bool = False
                ) -> dict:
    r"""The acceptance test of a solve: finite, converged, and a decrease of :math:`T` of at least
    ``trust.min_ratio`` times the decrease its quadratic model :math:`-g^\top s + \tfrac12 s^\top A s` predicts.
    For an ``iterate`` of CG on its way (not converged), the model's decrease is :math:`\tfrac12 g^\top s`, no
    product needed (a CG iterate minimises the model on its Krylov space, so :math:`s^\top A s = g^\top s`)."""
    step, phi = result.x, target.phi0
    if not torch.isfinite(step).all():
        return {"ratio": None, "reason": "the step is not finite"}
    predicted = float(-0.5 * rhs.dot(step) if iterate else -rhs.dot(step) + 0.5 * step.dot(operator(step)))
    actual = float(target(phi + step) - target.start())
    ratio = actual / predicted if predicted < 0 else float("nan")
    check = {"predicted_decrease": -predicted, "actual_decrease": -actual, "ratio": ratio}
    where, then = (f" at CG iteration {result.iterations}", "; its solve stopped there") if iterate else ("", "")
    if not (iterate or result.converged):
        reason = (f"the solve did not converge (relative residual {result.residual:.3g} > solver.tol {cfg.solver.tol:g}"
                  + (", negative curvature met" if result.negative_curvature else "") + ")")
    elif not ratio >= cfg.trust.min_ratio:
        reason = (f"the step failed the acceptance test{where} (the objective's actual decrease over its predicted "
                  f"decrease is {ratio:.3g} < trust.min_ratio {cfg.trust.min_ratio:g}){then}")
    else:
        reason = None
    return {**check, "reason": reason}


@torch.no_grad()
def _descend(objective, phi: Tensor, step: Tensor, value: float,
             mixing: AndersonMixing) -> tuple[Tensor, float, float, bool]:
    """The iterate after a Newton ``step`` from ``phi`` (whose ``objective`` is ``value``): the Anderson-mixed
    one when it does not increase the objective, else the line-searched step; ``(next, step_size, its
    value, mixed)``."""
    mixed = mixing.propose(phi, step)
    if mixed is not None:
        candidate = float(objective(mixed))
        if candidate <= value:
            return mixed, 1.0, candidate, True
    size, value = _backtrack(objective, phi, step, value)
    return phi + size * step, size, value, False


@torch.no_grad()
def _backtrack(objective, phi: Tensor, step: Tensor, start: float, halvings: int = 10) -> tuple[float, float]:
    """``(t, objective(phi + t * step))`` for the largest ``t = 2**-j`` (``j < halvings``) at which the objective
    is at most ``start`` (the caller's ``objective(phi)``); ``(0, start)`` when there is none."""
    if not torch.isfinite(step).all():
        return 0.0, start
    t = 1.0
    for _ in range(halvings):
        value = float(objective(phi + t * step))
        if value <= start:
            return t, value
        t /= 2
    return 0.0, start


class _PhaseClock:
    """Seconds of each phase of a call (device work included), for the result's ``info``."""

    def __init__(self, device: torch.device):
        self.phases, self._watch, self._last = {}, Stopwatch(device).start(), 0.0

    def lap(self, name: str) -> None:
        now = self._watch.elapsed()
        self.phases[name], self._last = now - self._last, now
