"""Crash-safe file writes: a file is either its previous version or the complete new one."""
from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import json
import math
import os
import re
import socket
import tempfile
import zlib
from pathlib import Path
from typing import IO, Any, Callable, cast

import torch

__all__ = ["atomic_write", "fsync_directory", "to_jsonable", "write_json"]


def atomic_write(path: str | os.PathLike, write_fn: Callable[[IO], object], *, binary: bool = True,
                 exclusive: bool = False) -> Path:
    """Writes ``path`` atomically: a kill or an error at any point leaves the previous file untouched.

    ``write_fn`` writes into a temporary file in the same directory, which is flushed, fsync-ed and
    then renamed over ``path`` with :func:`os.replace` (atomic on POSIX and Windows); the directory is
    fsync-ed afterwards so that the rename itself survives a power loss. On any error (including
    ``KeyboardInterrupt``) the temporary file is removed and the error re-raised; one that a kill left (its name
    carries its writer) is removed by the next write of ``path``. A symbolic link at
    ``path`` is followed: its target is replaced. The new file gets the previous file's permission
    bits, or the usual ``0o666 & ~umask`` for a new file.

    Args:
        path: the destination file; its directory must exist.
        write_fn: called once with the open temporary file (binary, or text in UTF-8 when
            ``binary`` is false), e.g. ``lambda f: torch.save(obj, f)``.
        binary: open the temporary file in binary mode (default) or text mode.
        exclusive: never replace: the file is published with :func:`os.link`, which fails if ``path`` exists by
            then (a check before the work leaves a window while it runs); a link at ``path`` counts as a file. On a
            file system without hard links the name is reserved first: a reader may see it empty until the rename,
            and a kill in between leaves it empty.

    Returns:
        The path written (symbolic links resolved, unless ``exclusive``).

    Raises:
        FileNotFoundError: naming ``path`` when its directory does not exist (not the temporary file's name).
        FileExistsError: ``exclusive`` and ``path`` exists (nothing is written).
    """
    target = Path(os.path.abspath(path) if exclusive else os.path.realpath(path))
    if not target.parent.is_dir():
        raise FileNotFoundError(f"cannot write {path}: no directory {target.parent}")
    mode, prefix, tmp = _permissions(target), f".{target.name}.{owner()}.", None
    _remove_abandoned(target)
    try:
        fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=target.parent)
        # cast: typeshed's overloads match no mode chosen at runtime with keyword arguments from a dict
        with os.fdopen(fd, "wb" if binary else "w",
                       **cast("dict[str, Any]", {} if binary else {"encoding": "utf-8"})) as handle:
            write_fn(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        if exclusive:
            _rename_new(tmp, target)
        else:
            os.replace(tmp, target)
    except BaseException as error:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise naming(_disk_error(error), path, temporary=prefix)
    fsync_directory(target.parent)
    return target


def owner() -> str:
    """``HOST-PID``, the writer that a temporary file's name or a publisher's marker carries (the host as 8 hex digits
    of its name), so that a later writer can tell the leftovers of a killed one (:func:`abandoned_by`)."""
    return f"{zlib.crc32(socket.gethostname().encode()):08x}-{os.getpid()}"


def abandoned_by(writer: str) -> bool:
    """Whether ``writer`` (an :func:`owner`) is a process of this host that no longer runs (POSIX; elsewhere, or when
    unsure, ``False``: a writer on another host sharing the folder may still run)."""
    host, _, pid = writer.partition("-")
    if os.name != "posix" or host != owner().partition("-")[0] or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)  # signal 0: a check that the process exists, nothing sent
    except ProcessLookupError:
        return True
    except (OSError, OverflowError):
        return False
    return False


def _remove_abandoned(target: Path) -> None:
    """Removes the temporary files of ``target`` whose writer is gone: a kill skips :func:`atomic_write`'s clean-up,
    and they stayed for good beside it."""
    name = re.compile(rf"\.{re.escape(target.name)}\.([0-9a-f]{{8}}-[0-9]+)\.[^.]+\.tmp")
    for path in target.parent.glob(f"{glob.escape('.' + target.name)}.*.tmp"):
        writer = name.fullmatch(path.name)
        if writer is not None and abandoned_by(writer[1]):
            with contextlib.suppress(OSError):
                path.unlink()


def _disk_error(error: BaseException) -> BaseException:
    """The ``OSError`` that a writer's own error was raised in handling, else ``error``: torch.save's zip writer
    replaces a full disk's with "[enforce fail at inline_container.cc] unexpected pos" (a 52-line traceback)."""
    if isinstance(error, RuntimeError) and isinstance(error.__context__, OSError):
        return error.__context__
    return error


def naming(error: BaseException, path: str | os.PathLike, temporary: str | None = None) -> BaseException:
    """``error`` naming ``path`` where it is an ``OSError`` that names no file (a full disk's, raised by a write to an
    open file: "[Errno 28] No space left on device" said nothing of where) or names a temporary file of ``path``,
    one whose name starts with ``temporary`` (a read-only directory refused it: a name the caller never saw), or a
    file of such a temporary directory (named as the same file of ``path``); else ``error`` itself."""
    if not isinstance(error, OSError) or error.errno is None:
        return error
    name = Path(str(error.filename))
    if temporary and error.filename is not None and name.parent.name.startswith(temporary):
        path = Path(path) / name.name  # a file written into publish's temporary directory
    elif not (error.filename is None or (temporary and name.name.startswith(temporary))):
        return error
    named = type(error)(error.errno, error.strerror, str(path))
    named.__cause__ = error
    return named


#: What os.link raises on a file system without hard links (FAT, some FUSE and SMB mounts).
_NO_HARD_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS, errno.EMLINK}


def _rename_new(tmp: str, target: Path) -> None:
    """Renames ``tmp`` to ``target`` unless ``target`` exists (``FileExistsError``): by a hard link, atomic; where the
    file system has none, by reserving the name (``O_EXCL``, an empty file until the rename) and renaming over it."""
    try:
        os.link(tmp, target)
    except OSError as error:
        if isinstance(error, FileExistsError) or error.errno not in _NO_HARD_LINKS:
            raise
        os.close(os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        try:
            os.replace(tmp, target)
        except BaseException:  # the empty reservation would refuse every retry
            with contextlib.suppress(OSError):
                os.unlink(target)
            raise
        return
    os.unlink(tmp)


def _permissions(target: Path) -> int:
    """The permission bits the written file should get: those of the file it replaces, else the umask's."""
    try:
        return target.stat().st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def fsync_directory(directory: str | os.PathLike) -> None:
    """Makes the creation, removal or rename of an entry of ``directory`` durable (POSIX; else a no-op)."""
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def load_failure(error: BaseException) -> str:
    """``torch.load``'s error as one clause: its type and first sentence, or for a weights-only refusal what it
    refused (``Unsupported global: GLOBAL __main__.Foo``), without torch's advice to load again with
    ``weights_only=False`` (unsafe for a file from elsewhere) and the terminal escape codes that torch 2.13 puts in."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error)).strip()
    refused = re.search(r"WeightsUnpickler error:\s*(.+?)(?: was not an allowed global|\n|$)", text)
    detail = (f"a weights-only load refused {refused.group(1).strip()}" if refused
              else (text.splitlines() or [""])[0].split(". ")[0].rstrip("."))
    return f"{type(error).__name__}{': ' + detail if detail else ''}"


def tensors_sha256(*tensors: torch.Tensor) -> str:
    """The sha256 of the tensors' bytes, in order (contiguous, on the CPU): a fingerprint of the data they hold.
    The bytes are read as ``uint8``: NumPy has no bfloat16."""
    digest = hashlib.sha256()
    for tensor in tensors:
        digest.update(tensor.detach().contiguous().cpu().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def versions(*tensors: torch.Tensor | None) -> list:
    """``[(tensor, (tensor._version, its data pointer))]`` of the given tensors (``None`` skipped): the state
    :func:`unchanged` compares. The pointer sees new data given to the same tensor (``p.data = ...``), which no
    version counts. An inference tensor (made under ``torch.inference_mode()``) has no version: its state is a new
    object each time, never unchanged, so what it guards is checked or hashed again."""
    return [(t, (object() if t.is_inference() else t._version, t.data_ptr() if t.layout == torch.strided else None))
            for t in tensors if t is not None]


def unchanged(state: list, checked: list) -> bool:
    """Whether ``state`` holds the very objects of ``checked`` (identity: a replaced tensor or objective differs)
    with equal second entries: a tensor's version and data pointer (``Tensor._version`` counts in-place writes made
    through torch, not those through a NumPy view or through ``.data``, ``p.data.add_(1)``, which have counters of
    their own), or any value compared by ``==`` (the node counts kept beside the objective). A cheap test before
    hashing a content again."""
    return len(state) == len(checked) and all(t is u and v == w for (t, v), (u, w) in zip(state, checked))


def to_jsonable(value: Any) -> Any:
    """Plain JSON values: tensors become numbers or lists, NaN and infinities become ``None``."""
    if isinstance(value, torch.Tensor):
        value = value.item() if value.numel() == 1 else value.tolist()
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (bool, int, str)) or value is None:
        return value
    if hasattr(value, "item"):  # numpy scalars and arrays (as a tensor: one element is a number, more a list)
        return to_jsonable(value.item() if getattr(value, "size", 1) == 1 else value.tolist())
    return repr(value)


def write_json(path: str | os.PathLike, value: Any, exclusive: bool = False) -> Path:
    """Writes :func:`to_jsonable` ``(value)`` as indented JSON, atomically (:func:`atomic_write`, ``exclusive``)."""
    text = json.dumps(to_jsonable(value), indent=2) + "\n"
    return atomic_write(path, lambda handle: handle.write(text), binary=False, exclusive=exclusive)
