"""One clock for every timing in the library and its benchmarks.

CUDA kernels run asynchronously: a wall clock read while the GPU is still busy measures the launch, not
the work. :class:`Stopwatch` synchronises the device before it starts and before it stops.
"""
from __future__ import annotations

import time

import torch

__all__ = ["Stopwatch", "synchronize"]


def synchronize(device: torch.device | str | None) -> None:
    """Waits for the device's queued work (a no-op on the CPU and for ``None``)."""
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


class Stopwatch:
    """Wall time of a block, device work included.

    Example::

        with Stopwatch(device) as watch:
            train(...)
        watch.seconds             # the block's time

        watch = Stopwatch(device).start()   # or without a block
        ...
        watch.elapsed()           # seconds so far (synchronises)

    Args:
        device: the device whose work is timed (``None``: the CPU only).
    """

    def __init__(self, device: torch.device | str | None = None):
        self.device = device
        self.started: float | None = None
        self.seconds: float | None = None

    def start(self) -> "Stopwatch":
        """Starts (or restarts) the clock; returns ``self``."""
        synchronize(self.device)
        self.started, self.seconds = time.perf_counter(), None
        return self

    def elapsed(self) -> float:
        """Seconds since :meth:`start` (device work included)."""
        if self.started is None:
            raise RuntimeError("Stopwatch.elapsed() before start()")
        synchronize(self.device)
        return time.perf_counter() - self.started

    def __enter__(self) -> "Stopwatch":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.seconds = self.elapsed()

    def __repr__(self) -> str:
        # No elapsed() here: a repr must not wait for the device.
        state = ("not started" if self.started is None else "running" if self.seconds is None
                 else f"seconds={self.seconds:.4f}")
        return f"Stopwatch(device={self.device}, {state})"
