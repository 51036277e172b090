"""IFRU's Newton extension (ours): when its steps run and stop, how tightly each is solved, and its line search
with Anderson mixing."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ...influence import AndersonMixing

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


@dataclass
class NewtonPlan:
    """The Newton extension's steps: how many, line-searched or not, the solver's options, and the norm
    of the new objective's gradient below which they stop; ``forcing``: each solve's tolerance from
    Eisenstat and Walker's forcing term (``options["tol"]`` its floor); ``tilted``: the steps minimise
    :meth:`TiltedObjective.tilted` instead of the new objective, stop once a step lowers it by less than
    ``AUTO_NEWTON_DECREASE`` of what the first step did or its gradient grows, and are not held to :math:`T`."""
    steps: int
    line_search: bool
    options: dict
    stop_below: float
    forcing: bool = False
    tilted: bool = False


def forcing_term(norm: float, previous: float, last: float, floor: float) -> float:
    """Eisenstat and Walker's second forcing term (SIAM J. Sci. Comput. 17, 1996), with their safeguard against
    a sudden drop, kept in ``[floor, FORCING_MAX]``."""
    eta = FORCING_GAMMA * (norm / previous) ** 2 if previous > 0 else FORCING_MAX
    safeguard = FORCING_GAMMA * last ** 2
    if safeguard > 0.1:
        eta = max(eta, safeguard)
    return min(FORCING_MAX, max(floor, eta))


@torch.no_grad()
def descend(objective, phi: Tensor, step: Tensor, value: float,
            mixing: AndersonMixing) -> tuple[Tensor, float, float, bool]:
    """The iterate after a Newton ``step`` from ``phi`` (whose ``objective`` is ``value``): the Anderson-mixed
    one when it does not increase the objective, else the line-searched step; ``(next, step_size, its
    value, mixed)``."""
    mixed = mixing.propose(phi, step)
    if mixed is not None:
        candidate = float(objective(mixed))
        if candidate <= value:
            return mixed, 1.0, candidate, True
    size, value = backtrack(objective, phi, step, value)
    return phi + size * step, size, value, False


@torch.no_grad()
def backtrack(objective, phi: Tensor, step: Tensor, start: float, halvings: int = 10) -> tuple[float, float]:
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
