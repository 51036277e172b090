"""Shared helpers of the benchmark scripts that measure outside the harness (robustness grid, scale)."""
from __future__ import annotations

import logging

AUCS = ("auc_0", "auc_1", "auc_2")


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend, or ``None`` (with a warning) when not installed."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logging.getLogger("benchmarks").warning("matplotlib is not installed (pip install '.[bench]'): no plot")
        return None
    return plt
