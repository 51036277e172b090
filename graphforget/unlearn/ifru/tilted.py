"""The objective IFRU's steps are tested against: the new objective as seen from the trained point."""
from __future__ import annotations

import functools
import math

import torch
from torch import Tensor


class TiltedObjective:
    r"""The new objective as seen from the trained point, over the terms that reach :math:`\phi`:

    .. math::
        T(\phi) = L(\phi; D \setminus D_r) - \langle \nabla L(\hat\phi; D), \phi - \hat\phi \rangle
                  + \tfrac{\lambda}{2} \lVert \phi - \hat\phi \rVert^2 .

    The tilt makes :math:`\hat\phi` stationary on the full data (an early-stopped model is not), so
    :math:`T` moves its minimiser only because of the removal, and its Newton step at :math:`\hat\phi`
    is IFRU's step :math:`(H + \lambda I)^{-1} g`. At a stationary point the tilt vanishes.

    Entries of ``orphan`` rows (nodes the removal leaves with no term, and no edge on a model that passes messages)
    have no data left to hold them: their tilt is only the ridge's part, :math:`-\lambda\hat\phi_v`, which is the
    tilt of :math:`L + \tfrac{\lambda}{2}\lVert\phi\rVert^2` without the misfit of their (removed) data, so
    their target is the ridge's prior mean 0 (where retraining leaves them, up to its initialisation).
    """

    def __init__(self, value, gradient, tilt: Tensor, phi: Tensor, orphan: Tensor, l2: float,
                 row_entries: int | None = None, decoupled: bool = True, fresh=None):
        self.value, self.new_gradient, self.full_gradient, self.phi0 = value, gradient, tilt, phi
        self.orphan, self.l2 = orphan, l2
        self.decoupled = decoupled  # whether no term couples the orphan entries (a contrastive term may)
        self.row_entries = phi.numel() if row_entries is None else row_entries  # phi's node rows come first
        self.damping = 0.0
        self._start: Tensor | None = None
        self.metric: Tensor | None = None  # per-entry scale of the damping (None: the same on every entry)
        # the new objective's loss, part by part, on a draw the step is not fit on: BPR's negatives ("negatives"), a
        # contrastive term's views ("views"); see fresh_rise. fresh_drawn: the part that rose most, for the messages
        self.fresh, self.fresh_drawn = fresh or {}, "negatives"
        self._fresh_start: dict[str, float] = {}

    @property
    def proximal(self) -> float | Tensor:
        """The proximal term's strength on each entry: the damping, times the metric where there is one."""
        return self.damping if self.metric is None else self.damping * self.metric

    def start(self) -> Tensor:
        """:math:`T(\\hat\\phi)`, the same for every damping (computed once)."""
        if self._start is None:
            self._start = self.value(self.phi0)
        return self._start

    def fresh_rise(self, phi: Tensor) -> float | None:
        """The largest rise of a part of the loss on the fresh draw (:attr:`fresh`) from the trained point to ``phi``,
        as a share of that part's value there (``None`` without a fresh draw); :attr:`fresh_drawn` names the part.
        Each part on its own: their sum let a 2.6% rise of the negatives' loss pass under a contrastive term 14 times
        its size. A part that rises from 0 (a saturated InfoNCE), or is not finite, rises infinitely."""
        if not self.fresh:
            return None
        rises: dict[str, float] = {}
        for name, loss in self.fresh.items():
            if name not in self._fresh_start:
                self._fresh_start[name] = float(loss(self.phi0))
            rises[name] = _rise(self._fresh_start[name], float(loss(phi)))
        self.fresh_drawn = max(rises, key=rises.__getitem__)
        return rises[self.fresh_drawn]

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

    def orphan_change(self, phi: Tensor) -> float | None:
        r"""The change of :math:`T`'s orphan block from the trained point to ``phi``,
        :math:`\tfrac12 (l_2 + \lambda) (\lVert\phi_o\rVert^2 - \lVert\hat\phi_o\rVert^2)`: that block is its own
        quadratic model, so it passes the acceptance test whatever the rest of the step does (``None`` without
        orphan entries, or where a term may couple them)."""
        if not self.decoupled or not self.orphan.any():
            return None
        strength = self.l2 + (self.proximal[self.orphan] if torch.is_tensor(self.proximal) else self.proximal)
        new, old = phi[self.orphan].double(), self.phi0[self.orphan].double()
        return float(0.5 * (strength * (new.pow(2) - old.pow(2))).sum())

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


def gradient_ratio(target: TiltedObjective, gradient: Tensor) -> float:
    r"""How far the trained point is from stationary, relative to the removal's own gradient:
    :math:`\lVert\nabla L(\hat\phi; D)\rVert / \lVert g\rVert`."""
    norm = float(gradient.norm())
    return float(target.full_gradient.norm()) / norm if norm > 0 else float("inf")


def _rise(start: float, value: float) -> float:
    """``value``'s rise over ``start`` as a share of it: infinite from a start of 0 or less, or where either is not
    finite (a NaN part had been passed over by the largest of the parts, or not, by their order)."""
    if not (math.isfinite(start) and math.isfinite(value)):
        return math.inf
    if start > 0:
        return (value - start) / start
    return math.inf if value > start else 0.0
