"""Work split across the ranks of a ``torch.distributed`` process group, or all in this process without one.

The library's parallel work is written once, for every rank: each rank does its share of a list of jobs
(:func:`my_jobs`) and the results are exchanged (:func:`gather_results`), so that every rank holds all of
them and continues identically. Without a process group (or with one rank) the same code runs every job
here. Sums over loss terms are split the same way (:class:`TermShare`: each rank sums its part of the
terms, one all-reduce adds the parts). A group comes from ``torchrun`` (:func:`init_from_env`: gloo on the
CPU, nccl on GPUs) or, for tests and benchmarks, from :func:`launch`, which starts ``world_size`` processes
on this machine.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import os
import pickle
import re
import tempfile
import time
import traceback
import warnings
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

from .config import is_integer, is_real

__all__ = ["RanksDisagree", "rank_and_size", "my_jobs", "gather_results", "run_jobs", "agreed", "layout",
           "from_rank_zero", "data_parallel_loss", "summed_across_ranks", "average_across_ranks", "collective_device",
           "TermShare", "init_from_env", "launch"]


class RanksDisagree(ValueError):
    """The ranks of a process group were given different inputs, or made different calls: a mistake of the launch,
    not of the data, raised on every rank (a caller that records a method's ``ValueError`` as its result, as the
    bench's cells do, lets this one through)."""


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
    return _in_job_order(pieces, num_jobs)


def _in_job_order(pieces: list[dict[int, Any]], num_jobs: int) -> list[Any]:
    """The results of the ranks' ``{job: result}`` pieces in job order; a RuntimeError names the jobs missing."""
    merged = {job: result for piece in pieces for job, result in piece.items()}
    missing = sorted(set(range(num_jobs)) - set(merged))
    if missing:
        raise RuntimeError(f"no rank returned jobs {missing}")
    return [merged[job] for job in range(num_jobs)]


def run_jobs(job: Callable[[int], Any], num_jobs: int) -> list[Any]:
    """``[job(j) for j in range(num_jobs)]`` on every rank, each rank running its share (:func:`my_jobs`).

    A job that raises on one rank, or returns what cannot be pickled, raises the same error on every rank (the ranks
    exchange it with the results): alone, its rank would leave the others waiting in the exchange, or, under
    ``torchrun``, failing with gloo's "Connection closed by peer" instead of the error.
    """
    if rank_and_size()[1] == 1:
        return [job(j) for j in range(num_jobs)]
    mine, error = {}, None
    try:
        for j in my_jobs(num_jobs):
            mine[j] = job(j)
            pickle.dumps(_to_cpu(mine[j]))  # a result that cannot travel fails here, where the ranks hear of it
    except Exception as caught:
        error = caught
    return _in_job_order(_exchange(("run_jobs", (num_jobs,)), error, {} if error else mine), num_jobs)


def agreed(what: str, check: Callable[[], Any], **inputs: Any) -> Any:
    """``check()`` (a rank's checks of its inputs), where every rank of a process group must pass the same ``inputs``.

    One all-gather tells every rank whether a rank's check failed or its inputs differ from rank 0's (compared by a
    digest), and then every rank raises the same error: a rank that stopped here alone (a bad input, an empty
    request it skips) would leave the others waiting forever in their next collective, and ranks given different
    inputs would mix them silently. A ``progress`` field of a config may differ (a bar on rank 0 only). Without a
    group: ``check()``.
    """
    if rank_and_size()[1] == 1:
        return check()
    value, error = None, None
    try:
        value = check()
    except Exception as caught:
        error = caught
    digests = _exchange((what, tuple(sorted(inputs))), error, {name: _digest(item) for name, item in inputs.items()})
    differ = [name for name in inputs if len({digest[name] for digest in digests}) > 1]
    if differ:
        raise RanksDisagree(f"{what}: the ranks were given different {', '.join(differ)}: every rank must make the "
                            "same call with the same inputs")
    return value


def layout(model: torch.nn.Module) -> list:
    """What :func:`agreed` should compare of a model whose values do not matter (re-initialised, or broadcast from
    rank 0 by ``DistributedDataParallel``): its class, its repr (settings in no parameter: a LightGCN's
    ``num_layers``), its state's names, shapes and dtypes, and which parameters train (``_trained``)."""
    return [type(model).__name__, _settings(model), _trained(model)] + [
        (name, list(v.shape), str(v.dtype)) for name, v in model.state_dict().items()]


def _trained(model: torch.nn.Module) -> list[str]:
    """The names of ``model``'s parameters that require a gradient: ranks that froze different ones of one shape had
    summed one table's gradients into the other's (DistributedDataParallel matches them by position), or a
    collective had aborted a rank."""
    return [name for name, parameter in model.named_parameters() if parameter.requires_grad]


def from_rank_zero(value: Any) -> Any:
    """Rank 0's ``value`` on every rank (``value`` itself without a group)."""
    if rank_and_size()[1] == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _sendable(error: Exception | None) -> Exception | None:
    """``error`` if it pickles (to travel to the other ranks), else a RuntimeError with its type and message."""
    if error is None:
        return None
    try:
        pickle.loads(pickle.dumps(error))
        return error
    except Exception:
        return RuntimeError(f"{type(error).__name__}: {error}")


def _exchange(call: tuple, error: Exception | None, payload: Any) -> list[Any]:
    """Every rank's ``payload``, by one all-gather of ``(error, payload, call)``. Every rank raises the same error when
    the ranks made different ``call``s (each had met another's collective: ``SISA.fit`` on one rank and
    ``SISA.unlearn`` on another raised a KeyError on the first and let the second go on to wait forever), else the
    first rank's ``error``."""
    rank, size = rank_and_size()
    reports = gather_results({rank: (_sendable(error), payload, call)}, size)
    calls = [report[2] for report in reports]
    if any(other != call for other in calls):
        whole = len({other[0] for other in calls}) == 1  # one name: the arguments differ (run_jobs' job counts)
        made = ", ".join(f"{other[0]}{other[1] if whole else ''} on rank {k}" for k, other in enumerate(calls))
        raise RanksDisagree(f"the ranks made different calls ({made}): every rank must make the same calls in the "
                            "same order")
    _raise_first(reports, error)
    return [report[1] for report in reports]


def _raise_first(reports: list[tuple], own: Exception | None) -> None:
    """Raises the error of the first rank that reports one (``own`` on that rank itself), on every rank."""
    for rank, (error, *_) in enumerate(reports):
        if error is not None:
            if own is not None and rank == rank_and_size()[0]:
                raise own
            raise _noted(error, f"(raised on rank {rank} of {len(reports)})")


def _noted(error: BaseException, note: str) -> BaseException:
    """``error`` with ``note``: in its notes (Python 3.11+), else at the end of its message (3.10 has no
    ``add_note``)."""
    add_note = getattr(error, "add_note", None)
    if add_note is not None:
        add_note(note)
        return error
    for message in ("strerror", "reason"):  # an OSError's and a UnicodeError's text is of these, not of args
        if isinstance(getattr(error, message, None), str):
            setattr(error, message, f"{getattr(error, message)} {note}")
            return error
    error.args = (f"{error.args[0]} {note}",) + error.args[1:] if error.args else (note,)
    return error


def _digest(value: Any) -> str:
    """A digest of ``value``'s content: tensors by their bytes, graphs by their stores, modules by their state."""
    hasher = hashlib.sha256()
    _feed(hasher, value)
    return hasher.hexdigest()


def _feed(hasher, value: Any) -> None:
    hasher.update(type(value).__name__.encode())
    if isinstance(value, torch.Tensor) and value.is_sparse:  # its content, not its repr (which abbreviates)
        value = value.detach().coalesce()
        _feed(hasher, [list(value.shape), value.indices(), value.values()])
    elif isinstance(value, torch.Tensor) and value.layout != torch.strided and not value.is_meta:  # CSR, CSC, ...
        _feed(hasher, value.detach().to_sparse_coo())
    elif isinstance(value, torch.Tensor) and not value.is_meta:
        hasher.update(f"{value.dtype}{list(value.shape)}".encode())
        hasher.update(value.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(value, np.ndarray):  # raw ids of a loaded CSV: every element, not the repr's "..."
        hasher.update(f"{value.dtype}{list(value.shape)}".encode())
        if value.dtype == object:
            _feed(hasher, value.tolist())
        else:
            hasher.update(np.ascontiguousarray(value).tobytes())
    elif isinstance(value, (set, frozenset)):  # in an order every process shares (a set's follows the hash seed)
        hasher.update("".join(sorted(_digest(item) for item in value)).encode())
    elif isinstance(value, torch.nn.Module):
        _feed(hasher, [_settings(value), _trained(value), dict(value.state_dict())])
    elif hasattr(value, "to_dict") and hasattr(value, "edge_types"):  # a (Hetero)Data graph
        _feed(hasher, value.to_dict())
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        _feed(hasher, {f.name: getattr(value, f.name) for f in dataclasses.fields(value) if f.name != "progress"})
    elif isinstance(value, dict):
        for key in sorted(value, key=repr):
            hasher.update(repr(key).encode())
            _feed(hasher, value[key])
    elif isinstance(value, (list, tuple)):
        for item in value:
            _feed(hasher, item)
    elif hasattr(value, "__dict__") and not callable(value):  # an objective: its settings
        _feed(hasher, vars(value))
    else:
        hasher.update(_without_addresses(repr(value)).encode())


def _settings(model: torch.nn.Module) -> str:
    """``model``'s repr: its settings in no parameter (a LightGCN's ``num_layers``); empty where the repr fails (a
    user's model whose ``extra_repr`` reads an attribute it lacks), the same on every rank."""
    try:
        return _without_addresses(repr(model))
    except Exception:
        return ""


def _without_addresses(text: str) -> str:
    """``text`` (a repr) without addresses: those of objects without a repr of their own differ between the ranks'
    processes."""
    return re.sub(r" at 0x[0-9a-fA-F]+", "", text)


class _ShareLoss(torch.nn.Module):
    """One rank's share of a mini-batch's loss as a module: the unit ``DistributedDataParallel`` wraps."""

    def __init__(self, model: torch.nn.Module, graph, objective, share: tuple[int, int]):
        super().__init__()
        self.model, self.graph, self.objective, self.share = model, graph, objective, share

    def forward(self, positions: torch.Tensor, epoch: int) -> torch.Tensor:
        return self.objective.batch_loss(self.model, self.graph, positions, epoch, self.share)


def _sum_gradients(state, bucket):
    """DDP communication hook: the ranks' gradients summed (DDP's own averages them), as each rank's loss is
    its share of the batch's, not an estimate of the whole."""
    return dist.all_reduce(bucket.buffer(), async_op=True).get_future().then(lambda done: done.value()[0])


def data_parallel_loss(model: torch.nn.Module, graph, objective) -> Callable[[torch.Tensor, int], torch.Tensor]:
    """``loss(positions, epoch)``: this rank's share of a mini-batch's loss (``Objective.batch_loss`` with
    ``share=(rank, size)``), whose ``backward()`` leaves every rank with the whole batch's gradient.

    The ranks' gradients are summed by ``DistributedDataParallel`` (bucketed all-reduces that overlap the
    backward pass). They are all-reduced dense: the objective's L2 reaches every row on every step, and a
    GNN's propagation does too, so the gradient is dense (``benchmarks/distributed.py`` measured sparse
    all-reduces where it is not, MF without L2). Without a process group: the plain batch loss. Keep the
    returned callable until ``backward()`` has run: the all-reduce hooks go with it.
    """
    rank, size = rank_and_size()
    module = _ShareLoss(model, graph, objective, (rank, size))
    if size == 1:
        return module
    with warnings.catch_warnings():  # torch 2.13's advice, forward_sync_buffers, would sync buffers at init (a
        # graph's) and does not exist before it; each rank printed the warning, which a user cannot act on
        warnings.filterwarnings("ignore", "`broadcast_buffers` is deprecated", FutureWarning)
        wrapped = DistributedDataParallel(module, broadcast_buffers=False)
    wrapped.register_comm_hook(None, _sum_gradients)
    return wrapped


def summed_across_ranks(value: float) -> float:
    """``value`` summed over the ranks (itself without a group)."""
    if rank_and_size()[1] == 1:
        return value
    total = torch.tensor([value], dtype=torch.float64, device=collective_device())
    dist.all_reduce(total)
    return float(total)


def average_across_ranks(tensors: Sequence[torch.Tensor]) -> None:
    """Sets each of ``tensors`` to its mean over the ranks, in place; nothing without a group."""
    _, size = rank_and_size()
    if size == 1:
        return
    for tensor in tensors:
        dist.all_reduce(tensor)
        tensor.div_(size)


def collective_device() -> torch.device:
    """Where the group's collectives take a tensor: the CPU, but the current GPU under nccl alone (a group a user
    initialised so; nccl has no CPU collectives, and :func:`init_from_env` adds gloo for them)."""
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


@dataclass(frozen=True)
class TermShare:
    r"""One rank's share of sums over loss terms (values, gradients, curvature-vector products), for work
    data-parallel over the terms: rank :math:`r` of :math:`R` sums over its contiguous part :math:`S_r` of
    the terms, and one all-reduce per call adds the parts,

    .. math::
        f(x) = \sum_{r<R} \Big( \sum_{e \in S_r} f_e(x) + [r = 0]\, f_0(x) \Big) ,

    where :math:`f_0` is what is not a sum over terms (the explicit L2), added by rank 0 alone. Every rank
    then holds the same numbers, so what it decides from them (a solver's steps, a line search) is the same
    on every rank. ``TermShare()`` (one rank) returns every term set, objective and function unchanged.

    Args:
        rank: this rank.
        size: the number of ranks.
    """
    rank: int = 0
    size: int = 1

    @classmethod
    def of_group(cls) -> "TermShare":
        """The share of this process in its process group (``TermShare()`` without one)."""
        return cls(*rank_and_size())

    def terms(self, terms):
        """This rank's contiguous part of a :class:`~graphforget.influence.Terms` (see ``Terms.part``)."""
        return terms.part(self.rank, self.size)

    def objective(self, objective):
        """The objective this rank sums: ``objective`` itself on rank 0, elsewhere a copy without its L2."""
        return objective if self.rank == 0 else objective.without_l2()

    def summed(self, fn: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        """``fn`` with its (tensor) value summed across the ranks, one all-reduce per call; ``fn`` itself on one
        rank. Every rank must make the same calls in the same order (collectives)."""
        if self.size == 1:
            return fn

        def total(*args, **kwargs) -> torch.Tensor:
            value = fn(*args, **kwargs).detach().clone()
            dist.all_reduce(value)
            return value
        return total


def _to_cpu(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.cpu()
    if isinstance(value, dict):  # a copy keeps the type and attributes (a state_dict's _metadata, a default factory)
        out = copy.copy(value)
        for key, item in value.items():
            out[key] = _to_cpu(item)
        return out
    if isinstance(value, (list, tuple)):
        items = [_to_cpu(item) for item in value]
        return type(value)(*items) if hasattr(value, "_fields") else type(value)(items)  # a named tuple: by field
    return value


def launched_size() -> int:
    """How many processes ``torchrun`` launched (``WORLD_SIZE``), whether or not they joined a group; 1 without it."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def init_from_env() -> bool:
    """Joins the process group ``torchrun`` describes (``WORLD_SIZE`` > 1 in the environment): nccl for CUDA
    tensors and gloo for the CPU's when CUDA is available (nccl alone failed the CPU's: a loss summed across the
    ranks), else gloo. Returns whether a group is (now) initialised."""
    if dist.is_initialized():
        return True
    if launched_size() <= 1:
        return False
    backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend)
    return True


#: The shortest and the longest :func:`launch` timeout, in seconds: gloo counts it in whole milliseconds (1e-7 was
#: 0, and every waiting collective failed), in a C int.
MIN_TIMEOUT, MAX_TIMEOUT = 1e-3, (2 ** 31 - 1) / 1000


def _check_launch(world_size: int, threads: int, timeout: float | None) -> None:
    """Refuses :func:`launch`'s arguments by name, here: each had failed inside every spawned process after seconds
    of start-up, with spawn's traceback (a timeout of 0 made every waiting collective fail)."""
    for name, value in (("world_size", world_size), ("threads", threads)):
        if not (is_integer(value) and 1 <= value < 2 ** 31):  # torch reads both as C ints
            raise ValueError(f"launch: {name} must be an integer in [1, 2**31), got {value!r}")
    if timeout is not None and not (is_real(timeout) and MIN_TIMEOUT <= timeout <= MAX_TIMEOUT):
        raise ValueError(f"launch: timeout must be None or seconds in [{MIN_TIMEOUT:g}, {MAX_TIMEOUT:g}] (gloo counts "
                         f"it in milliseconds, in a C int), got {timeout!r}")


def launch(fn: Callable[..., Any], world_size: int, *args, threads: int = 1, timeout: float | None = None) -> Any:
    """Runs ``fn(*args)`` in ``world_size`` new processes joined in a gloo group; returns rank 0's value.

    For tests and benchmarks on one machine (``torchrun`` is the launcher of real jobs). ``fn`` must be
    importable (a module-level function); each process works on its own copy of ``args`` (the caller's
    are never modified) with ``threads`` torch threads. ``timeout``: seconds a collective may wait (``None``:
    torch's default), so that a test of ranks that disagree fails instead of hanging.

    Raises:
        ValueError: ``world_size`` or ``threads`` is not an integer in ``[1, 2**31)``, or ``timeout`` is not ``None``
            or seconds in ``[0.001, 2147483.647]`` (gloo counts it in milliseconds, in a C int).
        RuntimeError: naming the rank that failed first, with its traceback (the others then fail in their
            collectives), or a rank that ended without raising (killed) when spawn saw it end first.
    """
    _check_launch(world_size, threads, timeout)
    with tempfile.TemporaryDirectory(prefix="graphforget-launch-") as folder:
        files = {name: str(Path(folder) / name) for name in ("rendezvous", "args.pt", "result.pt", "failures")}
        torch.save(args, files["args.pt"])  # spawn's own pickling moved the caller's tensors into shared memory
        Path(files["failures"]).mkdir()
        try:
            mp.spawn(_run, args=(world_size, files, threads, fn, timeout), nprocs=world_size)
        except (mp.ProcessRaisedException, mp.ProcessExitedException) as error:
            failures = sorted(Path(files["failures"]).iterdir())  # named by the time each was raised
            if isinstance(error, mp.ProcessExitedException) and not any(
                    path.name.endswith(f"-{error.error_index}") for path in failures):  # killed: a signal, os._exit
                raise RuntimeError(f"launch: rank {error.error_index} ended without raising: {error}") from error
            if not failures:
                raise
            rank = failures[0].name.rpartition("-")[2]
            raise RuntimeError(f"launch: rank {rank} failed first:\n{failures[0].read_text()}") from error
        return torch.load(files["result.pt"], weights_only=False)


def _run(rank: int, world_size: int, files: dict[str, str], threads: int, fn: Callable,
         timeout: float | None = None) -> None:
    torch.set_num_threads(threads)
    wait: dict[str, Any] = {} if timeout is None else {"timeout": timedelta(seconds=timeout)}
    dist.init_process_group("gloo", init_method=f"file://{files['rendezvous']}", rank=rank, world_size=world_size,
                            **wait)
    try:
        value = fn(*torch.load(files["args.pt"], weights_only=False))  # each rank's own copy
        if rank == 0:
            torch.save(value, files["result.pt"])
    except BaseException:
        # written before this rank's group closes, which fails the others ("Connection closed by peer"): spawn
        # reported whichever rank it saw end first, and the failing rank's own error was lost
        Path(files["failures"], f"{time.monotonic_ns():020d}-{rank}").write_text(traceback.format_exc())
        raise
    finally:
        if dist.is_initialized():  # fn may have closed it: destroying none raises an AssertionError over fn's value
            dist.destroy_process_group()
