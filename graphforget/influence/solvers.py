"""Solvers for :math:`(H + \\lambda I) x = b` given only products ``v -> (H + \\lambda I) v``.

Each returns a :class:`SolveResult` with the iterations, the final relative residual
:math:`\\lVert b - A x\\rVert / \\lVert b\\rVert` (CG: its recursive residual; the others: measured
with one extra product) and the seconds. Each refuses malformed arguments by name (:func:`check_system`).
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from ..clock import Stopwatch
from ..config import is_integer

__all__ = ["SolveResult", "check_system", "conjugate_gradient", "ShiftedConjugateGradient", "lissa", "adam_quadratic",
           "direct_solve", "SOLVERS", "solve", "AndersonMixing"]

MatVec = Callable[[Tensor], Tensor]


@dataclass
class SolveResult:
    """A solve's solution ``x``, its iterations, final relative residual, seconds and whether the residual reached
    the tolerance (see the module's docstring)."""
    x: Tensor
    iterations: int
    residual: float
    seconds: float
    converged: bool
    negative_curvature: bool = False  # CG met a direction of non-positive (or NaN) curvature and stopped there

    def stats(self) -> dict:
        return {"iterations": self.iterations, "residual": self.residual, "seconds": self.seconds,
                "converged": self.converged, "negative_curvature": self.negative_curvature}

    def __repr__(self) -> str:
        return (f"SolveResult(iterations={self.iterations}, residual={self.residual:.3e}, "
                f"seconds={self.seconds:.4f}, converged={self.converged})")


def check_system(b: Tensor, tol: float, max_iter: int, **positive: float | None) -> None:
    """Raises ``ValueError`` naming the argument: ``b`` not a 1-D floating-point tensor (a 2-D one failed inside
    torch), ``tol`` not >= 0 or ``max_iter`` not an integer >= 0 (either returned the zero step, unconverged), or one
    of ``positive`` (LiSSA's ``scale``, Adam's ``lr``) given and not > 0 (a negative scale gave a step of 1e79)."""
    if not (isinstance(b, Tensor) and b.dim() == 1 and b.is_floating_point()):
        got = f"{list(b.shape)} {b.dtype}" if isinstance(b, Tensor) else type(b).__name__
        raise ValueError(f"b must be a 1-D floating-point tensor, got {got}")
    if not (isinstance(tol, numbers.Real) and tol >= 0):
        raise ValueError(f"tol must be a number >= 0, got {tol!r}")
    if not (is_integer(max_iter) and max_iter >= 0):
        raise ValueError(f"max_iter must be an integer >= 0, got {max_iter!r}")
    for name, value in positive.items():
        if value is not None and not (isinstance(value, numbers.Real) and value > 0):
            raise ValueError(f"{name} must be a number > 0, got {value!r}")


def _finish(matvec: MatVec, b: Tensor, x: Tensor, iterations: int, tol: float, clock: Stopwatch) -> SolveResult:
    bnorm = b.norm().clamp(min=torch.finfo(b.dtype).tiny)
    residual = float((b - matvec(x)).norm() / bnorm)
    return SolveResult(x, iterations, residual, clock.elapsed(), residual <= tol)


def conjugate_gradient(matvec: MatVec, b: Tensor, tol: float = 1e-4, max_iter: int = 100) -> SolveResult:
    """Conjugate gradients; stops when the relative residual falls below ``tol``.

    On an indefinite operator CG may meet a direction of non-positive curvature (or a NaN one); it then stops there
    (the iterate so far is returned, and the residual tells how good it is). The residual, and ``converged``, are
    CG's recursive estimate, which saves a product: in float32 on an ill-conditioned system it drifts from the true
    one (condition number 1e5, ``tol`` 1e-4: reported 9.8e-5, true 4.1e-3). Measure ``b - A x`` where that matters,
    as IFRU's acceptance test does.
    """
    return ShiftedConjugateGradient(matvec, b, (0.0,), tol, max_iter).solve(0)


class ShiftedConjugateGradient:
    r"""Conjugate gradients for a family :math:`(A + \sigma_j I)\, x_j = b`, :math:`0 = \sigma_0 < \sigma_1 < \dots`,
    at the cost of one product with :math:`A` per iteration for all of them.

    A Krylov space does not change with a shift, so each shifted system's CG residual is the base system's
    :math:`r_k` over :math:`\pi_k = R_k(-\sigma)`, its residual polynomial at :math:`-\sigma` (Frommer, Computing
    70, 2003), which follows CG's three-term recurrence:
    :math:`\pi_{k+1} = (1 + c_k + \alpha_k \sigma)\,\pi_k - c_k \pi_{k-1}`, :math:`c_k = \alpha_k \beta_{k-1} /
    \alpha_{k-1}`; its step is :math:`\alpha_k \pi_k / \pi_{k+1}` and its direction's weight
    :math:`\beta_k (\pi_k / \pi_{k+1})^2`. The base system (:math:`\sigma = 0`) is plain CG.

    :meth:`solve` advances the shared iteration until the asked system converges (or ``max_iter`` iterations in
    all, or non-positive curvature of :math:`A`) and drops the systems before it: a Levenberg-Marquardt ladder
    asks for them in order. A system that converged is left as it is (its :math:`\pi_k` would grow without
    bound), with the residual it converged at: asked for later, it is returned at once. ``weight`` (optional)
    measures each residual as :math:`\lVert w \odot r\rVert`.
    """

    def __init__(self, matvec: MatVec, b: Tensor, shifts, tol: float = 1e-4, max_iter: int = 100,
                 weight: Tensor | None = None):
        check_system(b, tol, max_iter)
        self.matvec, self.shifts, self.tol, self.max_iter, self.weight = matvec, list(shifts), tol, max_iter, weight
        self.seconds, self.iterations, self.negative, self.first = 0.0, 0, False, 0
        self.r, self.p, self.rr = b.clone(), b.clone(), b.dot(b)
        self.bb = self.measured = self._squared_norm(b)  # measured: the base residual's squared weighted norm
        self.alpha: Tensor | None = None  # the last iteration's
        self.beta: Tensor | None = None
        self.x = [torch.zeros_like(b) for _ in self.shifts]
        self.directions = [None if sigma == 0 else b.clone() for sigma in self.shifts]  # None: the base's
        self.pi = [(1.0, 1.0) for _ in self.shifts]  # (pi_k, pi_k-1)
        self.final: list[Tensor | None] = [None for _ in self.shifts]  # a converged system's squared residual

    def _squared_norm(self, v: Tensor) -> Tensor:
        return v.dot(v) if self.weight is None else (self.weight * v).pow(2).sum()

    def _squared_residual(self, j: int) -> Tensor:
        # a converged system no longer moves: its residual is the one it converged at, not the base's now
        final = self.final[j]
        return self.measured / self.pi[j][0] ** 2 if final is None else final

    def solve(self, j: int, max_iter: int | None = None) -> SolveResult:
        """System ``j``'s solution, after at most ``max_iter`` iterations in all (the solver's cap by default)."""
        if j < self.first:
            raise ValueError(f"system {j} was dropped when system {self.first} was asked for")
        clock = Stopwatch(self.r.device).start()
        limit = self.max_iter if max_iter is None else min(max_iter, self.max_iter)
        self.first = j
        while (self.iterations < limit and not self.negative
               and self._squared_residual(j) > self.tol ** 2 * self.bb):
            self._iterate()
        self.seconds += clock.elapsed()
        # The recursive residual saves a product; in float32 it may drift from the true one (see conjugate_gradient).
        residual = float(self._squared_residual(j).sqrt() / self.bb.sqrt().clamp(min=torch.finfo(self.r.dtype).tiny))
        return SolveResult(self.x[j], self.iterations, residual, self.seconds, residual <= self.tol, self.negative)

    def __repr__(self) -> str:
        return (f"ShiftedConjugateGradient(size={self.r.numel()}, shifts={len(self.shifts)}, tol={self.tol:g}, "
                f"max_iter={self.max_iter}, iterations={self.iterations})")

    def _iterate(self) -> None:
        ap = self.matvec(self.p)
        curvature = self.p.dot(ap)
        if not curvature > 0:  # non-positive (or NaN) curvature: stop with the iterates so far
            self.negative = True
            return
        alpha = self.rr / curvature
        live = [j for j in range(self.first, len(self.shifts)) if self.final[j] is None]
        shifted = any(self.directions[j] is not None for j in live)  # plain CG needs no c (nor its sync)
        c = 0.0
        if shifted and self.alpha is not None and self.beta is not None:  # both None at the first iteration
            c = float(alpha * self.beta / self.alpha)
        for j in live:
            self._step_shifted(j, alpha, c)
        self.r = self.r - alpha * ap
        rr = self.r.dot(self.r)
        beta = rr / self.rr
        self.alpha, self.beta = alpha, beta
        self.measured = rr if self.weight is None else self._squared_norm(self.r)
        for j in live:
            direction = self.directions[j]
            if direction is not None:  # the base system's convergence is solve's loop condition
                ratio = self.pi[j][1] / self.pi[j][0]  # pi_k / pi_k+1 after _step_shifted
                self.directions[j] = self.r / self.pi[j][0] + (beta * ratio ** 2) * direction
                squared = self._squared_residual(j)
                if bool(squared <= self.tol ** 2 * self.bb):
                    self.final[j] = squared
        self.p, self.rr = self.r + beta * self.p, rr
        self.iterations += 1

    def _step_shifted(self, j: int, alpha: Tensor, c: float) -> None:
        r"""System ``j``'s step along its direction, and its :math:`\pi_{k+1}` (kept as ``(pi_k+1, pi_k)``)."""
        if self.directions[j] is None:  # the base system: plain CG
            self.x[j] = self.x[j] + alpha * self.p
            return
        pi, previous = self.pi[j]
        following = (1 + c + float(alpha) * self.shifts[j]) * pi - c * previous
        self.x[j] = self.x[j] + (alpha * (pi / following)) * self.directions[j]
        self.pi[j] = (following, pi)


def power_iteration(matvec: MatVec, n: int, like: Tensor, iters: int = 20, seed: int = 0) -> float:
    """Estimate of the largest absolute eigenvalue (used to scale LiSSA), from a start drawn in float32 on the CPU:
    the same in every dtype and on every device (drawn in float64, LiSSA's step was 1.2e-5 from the float32 one where
    CG's was 3.6e-7: qa181)."""
    v = torch.randn(n, generator=torch.Generator().manual_seed(seed)).to(like)
    v /= v.norm()
    value = 0.0
    for _ in range(iters):
        w = matvec(v)
        value = float(w.norm())
        if value == 0:
            break
        v = w / value
    return value


def lissa(matvec: MatVec, b: Tensor, tol: float = 1e-4, max_iter: int = 1000, scale: float | None = None
          ) -> SolveResult:
    """LiSSA (Agarwal et al., 2017): the Neumann series :math:`x_{j+1} = b/s + (I - A/s) x_j`.

    Converges to :math:`A^{-1} b` for a positive definite :math:`A` when ``scale`` :math:`s` exceeds its
    largest eigenvalue (estimated by power iteration, times 1.1, when omitted). Deterministic (full
    products, no sampling); stops on the relative residual, checked every 10 iterations.
    """
    check_system(b, tol, max_iter, scale=scale)
    clock = Stopwatch(b.device).start()
    if scale is None:
        scale = 1.1 * power_iteration(matvec, b.numel(), b)
    x, it = b / scale, 1
    bnorm = b.norm()
    while it < max_iter:
        ax = matvec(x)
        if it % 10 == 0 and (b - ax).norm() <= tol * bnorm:
            break
        x = x + (b - ax) / scale
        it += 1
    return _finish(matvec, b, x, it, tol, clock)


def adam_quadratic(matvec: MatVec, b: Tensor, tol: float = 1e-4, max_iter: int = 1000, lr: float = 1e-3
                   ) -> SolveResult:
    """The IFRU authors' solver: Adam on :math:`q(t) = \\tfrac12 t^\\top A t - t^\\top b`.

    The gradient of :math:`q` is the residual :math:`A t - b`, so stopping is on its relative norm.
    The paper tunes ``lr`` in [1e-4, 1e-2].
    """
    check_system(b, tol, max_iter, lr=lr)
    clock = Stopwatch(b.device).start()
    t = torch.zeros_like(b, requires_grad=True)
    opt = torch.optim.Adam([t], lr=lr)
    bnorm, it = b.norm(), 0
    while it < max_iter:
        with torch.no_grad():
            grad = matvec(t.detach()) - b
        if grad.norm() <= tol * bnorm:
            break
        t.grad = grad
        opt.step()
        it += 1
    return _finish(matvec, b, t.detach(), it, tol, clock)


def direct_solve(matvec: MatVec, b: Tensor, tol: float = 1e-4, max_size: int = 4000, **_) -> SolveResult:
    """Forms the dense matrix column by column and solves exactly (tiny problems and tests only)."""
    check_system(b, tol, 0)
    clock = Stopwatch(b.device).start()
    n = b.numel()
    if n > max_size:
        raise ValueError(f"direct solve of a {n}-dimensional system refused (max_size={max_size}, a dense "
                         f"{max_size}x{max_size} matrix): use cg (IFRUConfig solver.name='cg')")
    if n == 0:  # nothing to solve for (no rows selected), as the iterative solvers return
        return _finish(matvec, b, b.clone(), 0, tol, clock)
    eye = torch.eye(n, dtype=b.dtype, device=b.device)
    matrix = torch.stack([matvec(eye[i]) for i in range(n)], 1)
    if not (bool(torch.isfinite(matrix).all()) and bool(torch.isfinite(b).all())):  # lstsq failed an internal assert
        return _finish(matvec, b, torch.full_like(b, float("nan")), n, tol, clock)  # not converged, as LiSSA's
    # The minimum-norm solution, as a singular system needs (a row that no remaining term reaches, undamped): gelsd
    # (SVD) on the CPU, the same bits on every call as data-parallel ranks need (the default gelsy gave other bits at
    # each call); CUDA's lstsq has only gels, which assumes full rank, so the pseudo-inverse (an SVD too) there.
    if matrix.device.type == "cpu":
        x = torch.linalg.lstsq(matrix, b.unsqueeze(1), driver="gelsd").solution.squeeze(1)
    else:
        x = torch.linalg.pinv(matrix) @ b
    return _finish(matvec, b, x, n, tol, clock)


SOLVERS: dict[str, Callable[..., SolveResult]] = {"cg": conjugate_gradient, "lissa": lissa, "adam": adam_quadratic,
                                                  "direct": direct_solve}


def solve(name: str, matvec: MatVec, b: Tensor, **options) -> SolveResult:
    """Dispatches to a solver by name (``cg``, ``lissa``, ``adam``, ``direct``)."""
    if name not in SOLVERS:
        raise ValueError(f"unknown solver {name!r}; known: {sorted(SOLVERS)}")
    return SOLVERS[name](matvec, b, **options)


class AndersonMixing:
    r"""Anderson acceleration of a fixed-point iteration :math:`x_{k+1} = x_k + f_k` (Walker and Ni, SIAM J.
    Numer. Anal. 49, 2011): from the last ``depth + 1`` iterates and steps,

    .. math::
        \gamma = \arg\min_\gamma \lVert f_k - \Delta F \gamma \rVert, \qquad
        x_{k+1} = x_k + f_k - (\Delta X + \Delta F)\,\gamma,

    where the columns of :math:`\Delta X` and :math:`\Delta F` are the differences of consecutive iterates
    and steps. It extrapolates along the directions the iterates keep moving in, so an iteration that
    converges only linearly (Gauss-Newton where the fit leaves residuals) converges faster. The least
    squares is solved on its ``depth x depth`` normal equations in float64, columns scaled to unit norm, by
    an SVD that cuts off what parallel differences leave undetermined. The caller decides whether to take
    the mixed iterate.
    """

    def __init__(self, depth: int):
        if depth < 0:
            raise ValueError(f"depth must be >= 0, got {depth}")
        self.depth, self._count = depth, 0  # _count: differences recorded
        self._last: tuple[Tensor, Tensor] | None = None
        # The last depth differences, in rings of rows [depth, n] (row k % depth holds the k-th): no stacking of
        # vectors the size of phi at every step. The least squares does not depend on the order of its columns.
        self._dx: Tensor | None = None
        self._df: Tensor | None = None  # in float64

    def propose(self, x: Tensor, step: Tensor) -> Tensor | None:
        """Records the iterate ``x`` and its ``step``; returns the mixed next iterate, or ``None`` when fewer
        than two steps are recorded (always for ``depth`` 0) or ``step`` is not finite (then not recorded)."""
        if not torch.isfinite(step).all():
            return None
        if self._last is not None and self.depth:
            self._record(x, step, *self._last)
        self._last = (x, step)
        if not self._count or self._dx is None or self._df is None:  # recorded differences, and their rings
            return None
        recorded = min(self._count, self.depth)
        dx, df = self._dx[:recorded], self._df[:recorded]
        gram = (df @ df.T).cpu()  # the Gram matrix and the right side by one product each
        scale = gram.diagonal().rsqrt()  # unit columns: the normal equations' conditioning is that of the steps'
        if not torch.isfinite(scale).all():  # a zero difference (or an overflow)
            return None
        rhs = (df @ step.double()).cpu()
        fit = torch.linalg.lstsq(scale[:, None] * gram * scale, (scale * rhs)[:, None], driver="gelsd")
        weights = (scale * fit.solution[:, 0]).to(df.device)
        return x + step - (weights.to(x.dtype) @ dx + (weights @ df).to(x.dtype))

    def __repr__(self) -> str:
        return f"AndersonMixing(depth={self.depth}, recorded={min(self._count, self.depth)})"

    def _record(self, x: Tensor, step: Tensor, last_x: Tensor, last_step: Tensor) -> None:
        if self._dx is None or self._df is None:
            self._dx = x.new_empty(self.depth, x.numel())
            self._df = step.new_empty(self.depth, step.numel(), dtype=torch.float64)
        slot = self._count % self.depth
        torch.sub(x, last_x, out=self._dx[slot])
        torch.sub(step, last_step, out=self._df[slot])  # in the steps' dtype, as the history was
        self._count += 1
