"""Work split across the ranks of a ``torch.distributed`` process group, or all in this process without one.

The library's parallel work is written once, for every rank: each rank does its share of a list of jobs
(:func:`my_jobs`) and the results are exchanged (:func:`gather_results`), so that every rank holds all of
them and continues identically. Without a process group (or with one rank) the same code runs every job
here. A group comes from ``torchrun`` (:func:`init_from_env`: gloo on the CPU, nccl on GPUs) or, for
tests and benchmarks, from :func:`launch`, which starts ``world_size`` processes on this machine.
"""
from __future__ import annotations

import copy
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

__all__ = ["rank_and_size", "my_jobs", "gather_results", "sum_across_ranks", "init_from_env", "launch"]


def rank_and_size() -> tuple[int, int]:
    """This process's rank and the group's size; ``(0, 1)`` without a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def my_jobs(num_jobs: int) -> list[int]:
    """The jobs this rank does: ``j`` with ``j % size == rank`` (round robin, so sizes differ by one at most)."""
    rank, size = rank_and_size()
    return list(range(rank, num_jobs, size))


def gather_results(mine: dict[int, Any], num_jobs: int) -> list[Any]:
    """Every job's result on every rank, in job order, from each rank's ``{job: result}``.

    Results travel pickled (:func:`torch.distributed.all_gather_object`); tensors in them arrive on the
    CPU, as the caller's code is device-agnostic.
    """
    _, size = rank_and_size()
    pieces: list[dict[int, Any]] = [mine]
    if size > 1:
        pieces = [{} for _ in range(size)]
        dist.all_gather_object(pieces, _to_cpu(mine))
    merged = {job: result for piece in pieces for job, result in piece.items()}
    missing = sorted(set(range(num_jobs)) - set(merged))
    if missing:
        raise RuntimeError(f"no rank returned jobs {missing}")
    return [merged[job] for job in range(num_jobs)]


def sum_across_ranks(params: list[torch.Tensor], loss: torch.Tensor) -> torch.Tensor:
    """Sums the parameters' gradients and ``loss`` across the ranks, in one flat all-reduce; returns the loss.

    Every rank then holds the gradient of the whole batch (each computed its share's), as
    ``DistributedDataParallel`` does; one flat buffer costs one collective instead of one per parameter.
    """
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads] + [loss.reshape(1).to(grads[0])])
    dist.all_reduce(flat)
    offset = 0
    for param, grad in zip(params, grads):
        param.grad = flat[offset:offset + grad.numel()].view_as(grad)
        offset += grad.numel()
    return flat[-1]


def _to_cpu(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.cpu()
    if isinstance(value, dict):
        return {key: _to_cpu(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_cpu(item) for item in value)
    return value


def init_from_env() -> bool:
    """Joins the process group ``torchrun`` describes (``WORLD_SIZE`` > 1 in the environment): nccl when
    CUDA is available, else gloo. Returns whether a group is (now) initialised."""
    if dist.is_initialized():
        return True
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend)
    return True


def launch(fn: Callable[..., Any], world_size: int, *args, threads: int = 1) -> Any:
    """Runs ``fn(*args)`` in ``world_size`` new processes joined in a gloo group; returns rank 0's value.

    For tests and benchmarks on one machine (``torchrun`` is the launcher of real jobs). ``fn`` must be
    importable (a module-level function); each process works on its own copy of ``args`` (the caller's
    are never modified) with ``threads`` torch threads.
    """
    if world_size < 1:
        raise ValueError(f"launch: world_size must be >= 1, got {world_size}")
    with tempfile.TemporaryDirectory(prefix="graphforget-launch-") as folder:
        rendezvous, result = Path(folder) / "rendezvous", Path(folder) / "result.pt"
        mp.spawn(_run, args=(world_size, str(rendezvous), str(result), threads, fn, args), nprocs=world_size)
        return torch.load(result, weights_only=False)


def _run(rank: int, world_size: int, rendezvous: str, result: str, threads: int, fn: Callable, args: tuple) -> None:
    torch.set_num_threads(threads)
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=world_size)
    try:
        value = fn(*copy.deepcopy(args))  # private copies: spawn passes CPU tensors in shared memory
        if rank == 0:
            torch.save(value, result)
    finally:
        dist.destroy_process_group()
