"""IFRU's first step: the Levenberg-Marquardt attempts over a ladder of dampings, which share one Krylov space,
and the acceptance test each attempt must pass."""
from __future__ import annotations

import math
from dataclasses import replace

import torch
from torch import Tensor

from ...influence import ShiftedConjugateGradient, SolveResult, solve
from ...objectives import _mix
from .config import IFRUConfig
from .tilted import TiltedObjective

#: Factor by which the damping grows after a rejected step (Levenberg-Marquardt); an undamped step's retry
#: starts at RETRY_DAMPING times the curvature's mean diagonal.
DAMPING_GROWTH, RETRY_DAMPING = 10.0, 0.01
#: Roundings of the predicted decrease below which the part of the rows with data left is noise (a forgotten user
#: whose every row lost its data: ratios of -5.4 and 2.2 on float32, and refusals).
ORPHAN_REST_ROUNDINGS = 1000
#: A Levenberg-Marquardt attempt's CG iterate is tested at this many iterations, and again each time they double.
CHECK_FROM = 8
#: CG reports its recursive residual, which in float32 drifts from the true one as the system's condition grows; a
#: converged solve whose true residual exceeds RESIDUAL_DRIFT times the tolerance did not converge, unless it is
#: within RESIDUAL_FLOOR roundings of its dtype (a tolerance below that is more than the dtype can measure).
RESIDUAL_DRIFT, RESIDUAL_FLOOR = 2.0, 100
#: Roundings of :math:`T`'s value under which a predicted decrease is more than the test can measure: on an MF that L2
#: had collapsed to 5e-8, a decrease of 2e-15 against noise of 6e-14 read as a ratio of -0. In the model's dtype such a
#: step is taken as it is where it is NEGLIGIBLE_STEP of the parameters' norm or less (its quadratic model is then
#: exact but for rounding: a float32 step predicting 7e-11 was refused at a ratio of -3e5, and requests that barely
#: matter were); in float64, the resolution of :math:`T`'s sum, a larger one is refused as unmeasurable.
DECREASE_FLOOR, NEGLIGIBLE_STEP = 16, 1e-4


class Ladder:
    r"""The Levenberg-Marquardt attempts for the dampings :math:`\lambda_k = 10^k \lambda_0` (:math:`k <` ``count``;
    only :math:`\lambda_0` when it is 0): each solved and tested (:func:`acceptance`) as the trust policy asks.

    With CG they share one Krylov space (:class:`~graphforget.influence.ShiftedConjugateGradient`): the products that
    solve one attempt's system solve the next ones' on the way, so a rejected attempt costs no second solve. The
    damping's metric :math:`M` (stripped rows and dense weights, :meth:`IFRU._damping_metric`) becomes the identity
    in the coordinates :math:`M^{1/2}\phi` (residuals still measured in :math:`\phi`'s), and the right-hand sides
    differ only on orphan entries, whose block of the system is decoupled, :math:`(l_2 + \lambda)\,I`, and solved
    exactly. Each attempt's solve is checked every time its iteration count doubles from ``CHECK_FROM``: CG's
    iterates grow in norm (Steihaug, SIAM J. Numer. Anal. 20, 1983), so once one fails the acceptance test the
    converged step, further out, lies beyond where the quadratic model holds, and the attempt stops there.
    """

    def __init__(self, curvature, g: Tensor, target: TiltedObjective, damping: float, count: int,
                 config: IFRUConfig):
        self.curvature, self.g, self.target, self.config = curvature, g, target, config
        self.dampings = [damping]
        for _ in range(count - 1 if damping > 0 else 0):  # as the attempts grow it (the same roundings)
            self.dampings.append(DAMPING_GROWTH * self.dampings[-1])
        # a contrastive term may score orphan rows: their block is not known to be decoupled
        self.shared = config.solver.name == "cg" and (target.decoupled or not target.orphan.any())
        self.scale = None if target.metric is None else target.metric.rsqrt()  # M^-1/2, which makes M the identity
        self.family: ShiftedConjugateGradient | None = self._family() if self.shared else None

    def holds(self, damping: float) -> bool:
        """Whether ``damping`` is on this ladder and its Krylov space can still serve it."""
        return damping in self.dampings and not (self.family is not None and self.family.negative)

    def _family(self) -> ShiftedConjugateGradient:
        target, base, scale = self.target, self.dampings[0], self.scale
        target.damping = base
        operator, b = shifted(self.curvature, target.proximal), target.rhs(self.g)
        if scale is not None:
            operator, b = congruent(operator, scale), scale * b
        options = self.config.solver.options()
        return ShiftedConjugateGradient(operator, b, [d - base for d in self.dampings], options["tol"],
                                        options["max_iter"], None if scale is None else scale.reciprocal())

    def attempt(self, damping: float, last: bool) -> tuple[SolveResult, Tensor, dict]:
        """The attempt at ``damping``: its solve, its right-hand side and its acceptance test. The ``last`` attempt
        (no retry after it) is solved through: on failure it is the step that ``trust.on_failure="apply"`` applies."""
        target, cfg = self.target, self.config
        target.damping = damping
        operator, b = shifted(self.curvature, target.proximal), target.rhs(self.g)
        if not self.shared:
            result = solve(cfg.solver.name, operator, b, **cfg.solver.options())
            return result, b, acceptance(target, result, b, operator, cfg)
        k, cap = self.dampings.index(damping), cfg.solver.max_iter
        limit = cap if last else CHECK_FROM
        while True:
            result = self._solve(k, limit)
            if result.converged or result.negative_curvature or not limit <= result.iterations < cap:
                return result, b, acceptance(target, result, b, operator, cfg)
            check = acceptance(target, result, b, operator, cfg, iterate=True)
            if check["reason"] is not None:
                return result, b, check
            limit = 2 * result.iterations  # past the earlier attempts' iterations when they shared the space

    def _solve(self, k: int, limit: int) -> SolveResult:
        """Attempt ``k``'s solve after at most ``limit`` iterations, in phi's coordinates with its orphan block."""
        assert self.family is not None, "a shared ladder's solve"
        result = self.family.solve(k, limit)
        x = result.x if self.scale is None else self.scale * result.x
        target, base, damping = self.target, self.dampings[0], self.dampings[k]
        if damping != base:  # the part of the right-hand side that differs: -(damping - base) phi0 on orphans
            x = torch.where(target.orphan, x - (damping - base) / (target.l2 + damping) * target.phi0, x)
        return replace(result, x=x)


def mean_diagonal(operator, like: Tensor, probes: int = 4) -> float:
    """Hutchinson's estimate of the operator's mean diagonal: mean of ``v.Av / n`` over sign vectors ``v``, with
    ``like`` the point the operator is taken at (:func:`value_signs`: the estimate does not depend on how users and
    items are numbered)."""
    total = 0.0
    for v in value_signs(like, probes):
        total += float(v.dot(operator(v))) / like.numel()
    return total / probes


def value_signs(values: Tensor, probes: int = 1) -> Tensor:
    """``[probes, n]`` signs (``+1``/``-1``, in the values' dtype) that look random, each a hash of its entry's value
    (its bits): entries that a renumbering of users or items moves keep their signs, where signs drawn by position
    changed (a damping of 0.046 became 0.043 on a tiny MF, its step by 0.45: qa173). Probe ``k`` reads bit ``61 - k``
    of one hash (``probes`` <= 62). Equal values share their signs, which biases the estimate by their off-diagonal
    entries: trained parameters have few."""
    if not 1 <= probes <= 62:
        raise ValueError(f"probes must be in [1, 62] (the bits of one hash), got {probes}")
    flat = values.detach().reshape(-1).contiguous()
    mixed = _mix(flat.view(_SIGNED[flat.element_size()]).to(torch.int64))  # the value's bits, sign-extended to 64
    ones = torch.ones((), dtype=flat.dtype, device=flat.device)  # bit 61 - probe shifted to the sign bit: 1 if set
    return torch.stack([torch.where((mixed << (2 + probe)) < 0, ones, -ones) for probe in range(probes)])


#: The signed integer dtype of each element size: a value's bits as an integer, in one view.
_SIGNED = {1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def shifted(operator, damping: float | Tensor):
    """``v -> operator(v) + damping * v`` (``damping``: a number, or one per entry)."""
    return operator if not torch.is_tensor(damping) and damping == 0 else (lambda v: operator(v) + damping * v)


def held(operator, mask: Tensor):
    """``operator`` with the entries of ``mask`` held where they are: the identity on them, and none of them reaching
    the others (a solve with a right-hand side of 0 there leaves them unmoved)."""
    return lambda v: torch.where(mask, v, operator(torch.where(mask, torch.zeros_like(v), v)))


def congruent(operator, scale: Tensor):
    """``v -> scale * operator(scale * v)``: the operator in the coordinates ``phi / scale``."""
    return lambda v: scale * operator(scale * v)


def acceptance(target: TiltedObjective, result, rhs: Tensor, operator, cfg: IFRUConfig,
               iterate: bool = False) -> dict:
    r"""The acceptance test of a solve: finite, converged (by its true residual too, :func:`residual_limit`), a
    decrease of :math:`T` of at least ``trust.min_ratio`` times the decrease its quadratic model
    :math:`-g^\top s + \tfrac12 s^\top A s` predicts, and, where :math:`T` has a fresh draw of negatives or views, a
    rise of its loss of at most ``trust.max_fresh_loss_rise``. A decrease under ``DECREASE_FLOOR`` roundings of
    :math:`T`'s value cannot be measured: the ratio is waived (``negligible``) for a step of at most ``NEGLIGIBLE_STEP``
    of the parameters' norm, and the step is refused where float64 cannot resolve it.
    For an ``iterate`` of CG on its way (not converged), the model's decrease is :math:`\tfrac12 g^\top s`, no
    product needed (a CG iterate minimises the model on its Krylov space, so :math:`s^\top A s = g^\top s`)."""
    step, phi = result.x, target.phi0
    if not torch.isfinite(step).all():
        return {"ratio": None, "reason": "the step is not finite"}
    applied = None if iterate else operator(step)
    predicted = float(-0.5 * rhs.dot(step) if iterate else -rhs.dot(step) + 0.5 * step.dot(applied))
    actual = float(target(phi + step) - target.start())
    check: dict = {"predicted_decrease": -predicted, "actual_decrease": -actual}
    check.update(_ratio(target, phi + step, actual, predicted))
    start = abs(float(target.start()))
    ratio, roundings = check["ratio"], -predicted / start if start else math.inf  # of T's value, to the dtype's eps
    if 0 < roundings < DECREASE_FLOOR * torch.finfo(phi.dtype).eps and step.norm() <= NEGLIGIBLE_STEP * phi.norm():
        check["negligible"] = True  # the ratio is rounding noise, and the step too short for the model to be off
    where, then = (f" at CG iteration {result.iterations}", "; its solve stopped there") if iterate else ("", "")
    if applied is not None:  # paid for (not an iterate): the solve's true residual, whatever the solver reported
        check["true_residual"] = float((rhs - applied).norm() / rhs.norm().clamp(min=torch.finfo(rhs.dtype).tiny))
    reason: str | None
    if not (iterate or result.converged):
        reason = (f"the solve did not converge (relative residual {result.residual:.3g} > solver.tol {cfg.solver.tol:g}"
                  + (", a direction of zero or negative curvature met" if result.negative_curvature else "") + ")"
                  + _advice(cfg.solver, result.residual, phi))
    elif not iterate and not check["true_residual"] <= residual_limit(cfg.solver.tol, rhs.dtype):
        reason = (f"the solve did not converge (true relative residual {check['true_residual']:.3g} > "
                  f"{residual_limit(cfg.solver.tol, rhs.dtype):.3g}, {RESIDUAL_DRIFT:g} x solver.tol or "
                  f"{RESIDUAL_FLOOR} roundings of {str(rhs.dtype)[6:]}; the solver's own estimate was "
                  f"{result.residual:.3g}: rounding on an ill-conditioned system)")
    elif check["predicted_decrease"] == 0:  # a zero step, or products that underflow (a model scaled by 1e-25)
        reason = (f"the step failed the acceptance test{where} (its quadratic model predicts no decrease: the step, or "
                  f"the decrease it predicts, rounds to 0 in {str(rhs.dtype)[6:]}){then}")
    elif not check["predicted_decrease"] > 0:  # ratio NaN: its quadratic model goes up along the step
        reason = (f"the step failed the acceptance test{where} (its quadratic model predicts a rise of the objective "
                  f"by {-check['predicted_decrease']:.3g}, not a decrease: the curvature is negative along it){then}")
    elif roundings < DECREASE_FLOOR * torch.finfo(torch.float64).eps and "negligible" not in check:
        reason = (f"the step failed the acceptance test{where} (the decrease it predicts, "
                  f"{check['predicted_decrease']:.3g}, is under {DECREASE_FLOOR} roundings of the objective's value "
                  f"{float(target.start()):.3g}: no change the test can measure){then}")
    elif not (ratio >= cfg.trust.min_ratio or "negligible" in check):
        rows = " on the rows with data left" if "orphan_share" in check else ""
        reason = (f"the step failed the acceptance test{where} (the objective's actual decrease over its predicted "
                  f"decrease{rows} is {ratio:.3g} < trust.min_ratio {cfg.trust.min_ratio:g}){then}")
    else:
        check["fresh_loss_rise"] = rise = target.fresh_rise(phi + step)
        reason = fresh_draw_failure(rise, cfg, where + then, drawn=target.fresh_drawn)
    return {**check, "reason": reason}


def _advice(solver, residual: float, phi: Tensor) -> str:
    """What to change when a solver stops unconverged: a residual that is not finite comes of products that overflow
    the parameters' dtype (qa152: rows of 1e19 in float32 read "relative residual nan" alone). More damping (the
    retries) does not help Adam, whose steps of a fixed ``lr`` swing around the smaller solution (ML-100K MF: relative
    residual 0.22 at the first damping, 0.44 at 1000x). A residual above 1, worse than the zero step's, is a
    divergence, which more iterations make worse (LiSSA on an indefinite curvature: 766 after 200 iterations, 2e25
    after 1000)."""
    if not math.isfinite(residual):
        return (f"; the curvature's products are not finite: do the parameters, up to {float(phi.abs().max()):.3g}, "
                f"overflow {str(phi.dtype)[6:]}? Unlearn a model.double() copy")
    if solver.name not in ("adam", "lissa"):
        return ""
    name = {"adam": "Adam", "lissa": "LiSSA"}[solver.name]
    if residual > 1:
        return (f"; {name} diverged (a residual above the zero step's: the curvature is indefinite, or undamped along "
                "directions it barely curves): add damping (solver.damping), or use solver.name='cg'")
    if solver.name == "adam":
        return (f"; Adam took solver.max_iter={solver.max_iter} steps of solver.lr={solver.lr:g}: raise max_iter, tune "
                "lr, or use solver.name='cg'")
    return f"; LiSSA stopped at solver.max_iter={solver.max_iter}: raise it, or use solver.name='cg'"


def _ratio(target: TiltedObjective, new_phi: Tensor, actual: float, predicted: float) -> dict:
    """The acceptance test's ratio of the actual to the predicted change of :math:`T`. The orphan rows' block is its
    own quadratic model (:meth:`TiltedObjective.orphan_change`): counted in, it would pull the ratio towards 1, and on
    a forgotten user it is most of the predicted decrease, so the ratio is taken over the other entries
    (``orphan_share``: the block's part of the predicted decrease), unless they predict none beyond rounding."""
    whole = actual / predicted if predicted < 0 else float("nan")
    own = target.orphan_change(new_phi)
    if own is None:
        return {"ratio": whole}
    rest = predicted - own  # a rest within the rounding of the sum predicts nothing: its ratio would be noise
    noise = ORPHAN_REST_ROUNDINGS * torch.finfo(new_phi.dtype).eps * abs(predicted)
    return {"ratio": (actual - own) / rest if rest < -noise else whole,
            "orphan_share": own / predicted if predicted < 0 else float("nan")}


def residual_limit(tol: float, dtype: torch.dtype) -> float:
    """The true relative residual above which a solve to ``tol`` in ``dtype`` did not converge."""
    return max(RESIDUAL_DRIFT * tol, RESIDUAL_FLOOR * torch.finfo(dtype).eps)


def fresh_draw_failure(rise: float | None, cfg: IFRUConfig, where: str = "", subject: str = "the step",
                       drawn: str = "negatives") -> str | None:
    """Why a step whose loss on the fresh draw (of ``drawn``) rose by ``rise`` (:meth:`TiltedObjective.fresh_rise`)
    fails ``trust.max_fresh_loss_rise``; ``None`` when it passes or there is no fresh draw."""
    bound = cfg.trust.max_fresh_loss_rise
    if rise is None or bound is None or rise <= bound:
        return None
    loss = "the contrastive term's loss" if drawn == "views" else "the remaining terms' loss"
    return (f"{subject} raised {loss} on a fresh draw of {drawn} by {100 * rise:.3g}%{where} "
            f"(> trust.max_fresh_loss_rise {100 * bound:g}%): it fits the draw it was solved on")
