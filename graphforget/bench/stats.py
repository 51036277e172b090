"""Aggregation over seeds: the mean and its 95% Student-t confidence interval."""
from __future__ import annotations

import math
import numbers
from typing import Iterable, cast

from ..config import is_integer

__all__ = ["t_quantile", "mean_interval"]


def _two_sided_t_cdf(t: float, df: int) -> float:
    """:math:`P(|T| \\le t)` for Student's t with ``df`` degrees of freedom (an integer >= 1).

    The closed-form finite series of Abramowitz & Stegun 26.7.3-4 (exact for integer ``df``), with
    :math:`\\theta = \\arctan(t / \\sqrt{\\nu})`.
    """
    theta = math.atan(t / math.sqrt(df))
    sin, cos2 = math.sin(theta), math.cos(theta) ** 2
    if df % 2 == 0:  # sin(theta) * (1 + 1/2 c^2 + 1*3/(2*4) c^4 + ... ), nu/2 terms
        term, total = 1.0, 1.0
        for k in range(1, df // 2):
            term *= cos2 * (2 * k - 1) / (2 * k)
            total += term
        return sin * total
    if df == 1:
        return 2 * theta / math.pi
    term, total = 1.0, 1.0  # 2/pi (theta + sin cos (1 + 2/3 c^2 + 2*4/(3*5) c^4 + ...)), (nu-1)/2 terms
    for k in range(1, (df - 1) // 2):
        term *= cos2 * (2 * k) / (2 * k + 1)
        total += term
    return 2 / math.pi * (theta + sin * math.cos(theta) * total)


def t_quantile(confidence: float, df: int) -> float:
    """The two-sided Student-t critical value: :math:`t` with :math:`P(|T| \\le t) =` ``confidence``.

    Found by bisection on the exact CDF (no SciPy needed); e.g. ``t_quantile(0.95, 2) = 4.3027``.

    Raises:
        ValueError: ``confidence`` outside (0, 1) or ``df < 1``.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if not (is_integer(df) and df >= 1):  # "2", inf and NaN gave Python's own errors, or a message naming 2
        raise ValueError(f"degrees of freedom must be an integer >= 1, got {df!r}")
    low, high = 0.0, 1.0
    while _two_sided_t_cdf(high, int(df)) < confidence:
        high *= 2
    for _ in range(200):
        middle = (low + high) / 2
        if _two_sided_t_cdf(middle, int(df)) < confidence:
            low = middle
        else:
            high = middle
    return (low + high) / 2


def mean_interval(values: Iterable[float | None], confidence: float = 0.95) -> dict:
    """Mean and confidence interval of a metric over seeds (missing and non-finite values left out).

    .. math:: \\bar x \\pm t_{n-1}\\, s / \\sqrt{n}, \\qquad s^2 = \\tfrac{1}{n-1} \\sum (x_i - \\bar x)^2

    Returns:
        ``{"mean", "low", "high", "half_width", "n"}``; with one value the interval is not estimable
        (``low``, ``high`` and ``half_width`` ``None``: not a zero-width interval), with none every figure is
        ``None``.

    Raises:
        ValueError: a value that is neither a real number nor ``None`` (a string, a bool).
    """
    values = [v for v in values if v is not None]
    wrong = [v for v in values if isinstance(v, bool) or not isinstance(v, numbers.Real)]
    if wrong:  # a string "0.5" was averaged as a number, True as 1
        raise ValueError(f"mean_interval takes numbers or None, got {wrong[0]!r} ({type(wrong[0]).__name__})")
    xs = [float(v) for v in cast("list[float]", values) if math.isfinite(v)]  # real numbers, None left out
    n = len(xs)
    if n == 0:
        return {"mean": None, "low": None, "high": None, "half_width": None, "n": 0}
    mean = sum(xs) / n
    if n == 1:
        return {"mean": mean, "low": None, "high": None, "half_width": None, "n": 1}
    sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1))
    half = t_quantile(confidence, n - 1) * sd / math.sqrt(n)
    return {"mean": mean, "low": mean - half, "high": mean + half, "half_width": half, "n": n}
