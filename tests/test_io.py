"""Atomic writes: an interrupted save leaves the previous file byte-identical and no temporary file behind."""
from __future__ import annotations

import errno
import hashlib
import math
import os
import re
import stat
import time
from pathlib import Path

import pytest
import torch

from graphforget.data import make_interactions
from graphforget.clock import Stopwatch
from graphforget.io import atomic_write, tensors_sha256, to_jsonable, write_json
from graphforget.models import MF, load_model, save_model
from graphforget.objectives import BPRObjective
from graphforget.unlearn import UnlearnRec, UnlearnRecConfig


class Killed(Exception):
    """Stands in for the process dying in the middle of a write."""


def _dying_writer(handle):
    handle.write(b"half of the new con")
    raise Killed


def _old_file(tmp_path, name="model.pt", content=b"the previous, complete version\n"):
    path = tmp_path / name
    path.write_bytes(content)
    return path, content


@pytest.mark.parametrize("error", [Killed, KeyboardInterrupt])
def test_a_writer_dying_midway_leaves_the_previous_file_and_no_temporary(tmp_path, error):
    path, content = _old_file(tmp_path)

    def writer(handle):
        handle.write(b"half of the new con")
        raise error

    with pytest.raises(error):
        atomic_write(path, writer)
    assert path.read_bytes() == content
    assert sorted(os.listdir(tmp_path)) == ["model.pt"]


def test_a_temporary_file_of_a_killed_writer_is_removed_by_the_next_write(tmp_path):
    """A SIGKILL skips the clean-up: its temporary file stayed beside the target for good (a QA probe). Its name
    carries its writer; the next write of the target removes those whose writer is gone, never a running one's."""
    import signal
    import subprocess
    import sys
    from graphforget.io import owner
    path, _ = _old_file(tmp_path)
    killed = ("import os, signal, sys; from graphforget.io import atomic_write; atomic_write(sys.argv[1], "
              "lambda f: (f.write(b'half'), f.flush(), os.kill(os.getpid(), signal.SIGKILL)))")
    proc = subprocess.run([sys.executable, "-c", killed, str(path)], capture_output=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    (left,) = set(os.listdir(tmp_path)) - {"model.pt"}
    gone = left.split(".")[3]  # the killed writer
    assert gone.split("-")[0] == owner().split("-")[0] and gone != owner()
    kept = [f".model.pt.{owner()}.abcd1234.tmp", ".model.pt.0badc0de-1.abcd1234.tmp",  # this process's; another host's
            f".model.pt.b.{gone}.abcd1234.tmp", f".model.pt.{gone}.tmp"]  # another target's; not a temporary's name
    for name in kept:
        (tmp_path / name).write_bytes(b"")
    atomic_write(path, lambda handle: handle.write(b"new"))
    assert path.read_bytes() == b"new" and left not in os.listdir(tmp_path)
    assert sorted(os.listdir(tmp_path)) == sorted(kept + ["model.pt"])
    # another host's writer is kept even where its pid runs nothing here (qa100: pid 1, above, always runs)
    pid = int(gone.split("-")[1])
    other = "0badc0de" if owner().split("-")[0] != "0badc0de" else "0badc0df"
    (tmp_path / f".model.pt.{other}-{pid}.abcd1234.tmp").write_bytes(b"")
    atomic_write(path, lambda handle: handle.write(b"newer"))
    assert f".model.pt.{other}-{pid}.abcd1234.tmp" in os.listdir(tmp_path)


def test_atomic_write_into_a_missing_directory_names_the_path(tmp_path):
    # the error named the temporary file (".x.pt.69k7egmr.tmp"), a path the caller never gave
    with pytest.raises(FileNotFoundError, match=r"cannot write .*nowhere/x\.pt: no directory .*nowhere$"):
        atomic_write(tmp_path / "nowhere" / "x.pt", lambda handle: handle.write(b"x"))


def test_atomic_write_replaces_keeps_permissions_and_follows_links(tmp_path):
    path, _ = _old_file(tmp_path)
    path.chmod(0o640)
    assert atomic_write(path, lambda f: f.write(b"new")) == path.resolve()
    assert path.read_bytes() == b"new" and stat.S_IMODE(path.stat().st_mode) == 0o640
    fresh = tmp_path / "fresh.txt"
    atomic_write(fresh, lambda f: f.write("text é"), binary=False)
    plain = tmp_path / "plain.txt"
    plain.write_text("x")  # the mode an ordinary write gives under this umask
    assert fresh.read_text(encoding="utf-8") == "text é"
    assert stat.S_IMODE(fresh.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)
    link = tmp_path / "link.pt"
    link.symlink_to(path)
    atomic_write(link, lambda f: f.write(b"via the link"))
    assert link.is_symlink() and path.read_bytes() == b"via the link"
    assert sorted(os.listdir(tmp_path)) == ["fresh.txt", "link.pt", "model.pt", "plain.txt"]


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs a directory that refuses new files: /proc")
def test_writes_refused_by_the_directory_name_the_path_not_a_temporary_file():
    """A directory that refuses new files (read-only, or /proc) made the error name the temporary file or directory,
    which the caller never saw."""
    from graphforget.runs import publish
    for write, path in ((lambda: write_json("/proc/report.json", {}), "/proc/report.json"),
                        (lambda: save_model(MF(3, 4, 8), "/proc/model.pt"), "/proc/model.pt"),
                        (lambda: publish("/proc/run", lambda tmp: None), "/proc/run")):
        with pytest.raises(OSError) as raised:
            write()
        assert raised.value.filename == path, raised.value


FULL_DISK = """
import resource, signal, sys
import torch
from graphforget.models import MF, save_model
from graphforget.runs import publish
from graphforget.io import write_json
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG, as a full disk's with ENOSPC
resource.setrlimit(resource.RLIMIT_FSIZE, (2000, 2000))
for write in (lambda: save_model(MF(30, 40, 64), sys.argv[1] + "/model.pt"),
              lambda: publish(sys.argv[1] + "/run", lambda tmp: write_json(tmp / "r.json", list(range(1000))))):
    try:
        write()
    except OSError as error:
        print(error)
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="RLIMIT_FSIZE is POSIX's")
def test_a_full_disk_is_an_oserror_naming_the_path_given(tmp_path):
    """torch.save's zip writer replaced a full disk's OSError with "[enforce fail at inline_container.cc] unexpected
    pos" (fit and forget printed a 52-line traceback); a file of publish's temporary directory was named there
    (".run.tmp-x/r.json"), not in the run."""
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-c", FULL_DISK, str(tmp_path)], capture_output=True, text=True,
                         timeout=300, env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [f"[Errno 27] File too large: '{tmp_path}/model.pt'",
                                       f"[Errno 27] File too large: '{tmp_path}/run/r.json'"]
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing left behind


def test_an_oserror_without_errno_keeps_its_words(tmp_path):
    def write(handle):
        raise OSError("the device went away")
    with pytest.raises(OSError, match="^the device went away$"):
        atomic_write(tmp_path / "x.json", write)


def test_an_exclusive_atomic_write_never_replaces(tmp_path):
    path, content = _old_file(tmp_path)
    with pytest.raises(FileExistsError, match=f"File exists: '{re.escape(str(path))}'$"):  # not the temporary file
        atomic_write(path, lambda f: f.write(b"new"), exclusive=True)
    link = tmp_path / "dangling.pt"
    link.symlink_to(tmp_path / "absent.pt")  # a link counts as a file: its target is not created
    with pytest.raises(FileExistsError):
        atomic_write(link, lambda f: f.write(b"new"), exclusive=True)
    assert path.read_bytes() == content and not (tmp_path / "absent.pt").exists()
    assert atomic_write(tmp_path / "new.pt", lambda f: f.write(b"new"), exclusive=True).read_bytes() == b"new"
    assert sorted(os.listdir(tmp_path)) == ["dangling.pt", "model.pt", "new.pt"]


#: The errnos of os.link without hard links that this platform defines (ENOTSUP is EOPNOTSUPP on Linux).
_NO_LINK_ERRORS = sorted({getattr(errno, name) for name in ("EPERM", "ENOTSUP", "EOPNOTSUPP", "ENOSYS", "EMLINK")
                          if hasattr(errno, name)})


@pytest.mark.parametrize("code", _NO_LINK_ERRORS, ids=[errno.errorcode[code] for code in _NO_LINK_ERRORS])
def test_an_exclusive_atomic_write_without_hard_links_reserves_the_name(tmp_path, monkeypatch, code):
    """On a file system without hard links (FAT, some FUSE mounts) os.link fails with EPERM: the report was lost
    after the work, where os.replace had written it. Some FUSE and SMB mounts fail with ENOTSUP or ENOSYS."""
    path, content = _old_file(tmp_path)

    def no_links(*args):
        raise OSError(code, os.strerror(code))
    monkeypatch.setattr(os, "link", no_links)
    assert atomic_write(tmp_path / "new.pt", lambda f: f.write(b"new"), exclusive=True).read_bytes() == b"new"
    with pytest.raises(FileExistsError):
        atomic_write(path, lambda f: f.write(b"new"), exclusive=True)
    assert path.read_bytes() == content and sorted(os.listdir(tmp_path)) == ["model.pt", "new.pt"]

    def interrupted(*args):
        raise KeyboardInterrupt
    monkeypatch.setattr(os, "replace", interrupted)  # after the reservation: it is taken back, a retry may write
    with pytest.raises(KeyboardInterrupt):
        atomic_write(tmp_path / "report.json", lambda f: f.write(b"{}"), exclusive=True)
    assert sorted(os.listdir(tmp_path)) == ["model.pt", "new.pt"]


def test_atomic_write_renames_a_new_file_over_the_old_and_syncs_the_directory_after(tmp_path, monkeypatch):
    """The new content is a new file renamed over the path: a reader that opened the previous file still reads it
    whole (a copy into the path would truncate it under the reader), and the directory is fsync-ed once the rename is
    done, so that the rename survives a power loss."""
    import graphforget.io as gio
    path, content = _old_file(tmp_path)
    synced = []
    real = gio.fsync_directory
    monkeypatch.setattr(gio, "fsync_directory", lambda d: (synced.append((Path(d), path.read_bytes())), real(d)))
    with open(path, "rb") as reader:
        before = os.fstat(reader.fileno()).st_ino
        atomic_write(path, lambda f: f.write(b"new content"))
        assert reader.read() == content
    assert os.stat(path).st_ino != before and path.read_bytes() == b"new content"
    assert synced == [(tmp_path.resolve(), b"new content")]


def test_save_model_killed_midway_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "model.pt"
    old = MF(5, 4, 3)
    save_model(old, path, run={"seed": 1})
    content = path.read_bytes()

    def dying_save(obj, f, *args, **kwargs):
        if isinstance(f, (str, os.PathLike)):  # what torch.save does with a path: truncate it first
            f = open(f, "wb")
        _dying_writer(f)

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(Killed):
        save_model(MF(5, 4, 3), path, run={"seed": 2})
    monkeypatch.undo()
    assert path.read_bytes() == content and sorted(os.listdir(tmp_path)) == ["model.pt"]
    model, checkpoint = load_model(path)
    assert checkpoint["run"] == {"seed": 1} and torch.equal(model.user_emb.weight, old.user_emb.weight)


def _encoder_unlearner():
    graph = make_interactions(torch.tensor([[0, 1, 2, 3], [0, 1, 2, 3]]), num_users=5, num_items=4)
    return UnlearnRec(MF(5, 4, 3), graph, BPRObjective(), UnlearnRecConfig(pretrain_epochs=0)).fit()


WRITERS = {
    "save_model": lambda path: save_model(MF(5, 4, 3), path),
    "cli_write_json": lambda path: write_json(path, {"auc_0": 0.5}),
    "save_encoder": lambda path: _encoder_unlearner().save_encoder(path),
}


@pytest.mark.parametrize("writer", list(WRITERS))
def test_writers_that_fail_before_the_data_is_on_disk_keep_the_previous_file(writer, tmp_path, monkeypatch):
    path, content = _old_file(tmp_path, "out")

    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(OSError, match="No space left"):
        WRITERS[writer](path)
    assert path.read_bytes() == content and sorted(os.listdir(tmp_path)) == ["out"]
    monkeypatch.undo()
    WRITERS[writer](path)  # and without the failure it is written
    assert path.read_bytes() != content and sorted(os.listdir(tmp_path)) == ["out"]


def test_to_jsonable_turns_numpy_arrays_into_lists_as_it_does_tensors():
    """A numpy array of more than one element (a method's info, a figure) raised ValueError in ``.item()``, and
    the cell, computed, was lost; now it is a list, as a tensor is, with NaN as null."""
    import numpy as np
    from graphforget.io import to_jsonable
    assert to_jsonable({"a": np.array([1.5, np.nan]), "b": np.array([[1, 2]])}) == {"a": [1.5, None], "b": [[1, 2]]}
    assert to_jsonable(np.array([0.25])) == to_jsonable(torch.tensor([0.25])) == 0.25  # one element: a number
    assert to_jsonable(torch.tensor([[7]])) == to_jsonable(np.array([[7]])) == 7  # of any shape
    assert to_jsonable(np.float32(0.5)) == 0.5 and to_jsonable(np.array([])) == []


def test_tensors_sha256_reads_bytes_numpy_has_no_dtype_for():
    """bfloat16 failed in NumPy (UnlearnRec's and SISA's fingerprints of a bf16 model or labels raised a TypeError);
    the digest is of the raw bytes, as it was for the dtypes NumPy has (stored fingerprints still match)."""
    import hashlib
    from graphforget.io import tensors_sha256
    values = torch.tensor([[1.5, -2.0], [0.25, 3.0]])
    assert tensors_sha256(values, torch.tensor(7)) == hashlib.sha256(
        values.numpy().tobytes() + torch.tensor(7).numpy().tobytes()).hexdigest()
    half = values.bfloat16()
    assert tensors_sha256(half) == hashlib.sha256(half.view(torch.int16).numpy().tobytes()).hexdigest()
    assert tensors_sha256(half) != tensors_sha256(half + 1)
    assert tensors_sha256(values.t()) == tensors_sha256(values.t().contiguous())  # by content, not by layout


def test_unchanged_pairs_the_versions_up_and_a_state_of_another_length_is_changed():
    """``versions`` skips ``None``: a state missing a tensor must not read as unchanged because zip stops at the
    shorter list."""
    from graphforget.io import unchanged, versions
    a, b = torch.zeros(3), torch.ones(2)
    assert unchanged(versions(a, b), versions(a, b))
    assert not unchanged(versions(a), versions(a, b)) and not unchanged(versions(a, b), versions(a))


def test_to_jsonable_writes_infinities_and_nan_as_null():
    """json.dumps would write the non-JSON 'Infinity' and 'NaN'."""
    assert to_jsonable({"a": math.inf, "b": -math.inf, "c": math.nan, "d": 1.5}) == {
        "a": None, "b": None, "c": None, "d": 1.5}


def test_an_exclusive_write_leaves_no_temporary_file(tmp_path):
    """The hard link publishes the file; the temporary name must go."""
    atomic_write(tmp_path / "x.bin", lambda f: f.write(b"abc"), exclusive=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.bin"]


def test_tensors_sha256_hashes_every_tensor_in_order():
    """The sha256 of the tensors' bytes concatenated, by hashlib directly."""
    a, b = torch.arange(3, dtype=torch.int64), torch.tensor([1.5, -2.0], dtype=torch.float32)
    assert tensors_sha256(a, b) == hashlib.sha256(a.numpy().tobytes() + b.numpy().tobytes()).hexdigest()


def test_a_restarted_stopwatch_forgets_its_last_reading_and_times_forward():
    """start() clears seconds; elapsed() is the seconds since start, bounded by perf_counter readings."""
    with Stopwatch() as watch:
        pass
    assert watch.seconds is not None and "seconds=" in repr(watch)
    before = time.perf_counter()
    watch.start()
    assert watch.seconds is None and "running" in repr(watch)
    time.sleep(0.01)
    assert 0.01 <= watch.elapsed() <= time.perf_counter() - before


def test_a_new_file_gets_0o666_masked_by_the_umask(tmp_path):
    """A hard-coded 0o644 equals 0o666 & ~0o022, the usual umask; under umask 0o007 the file must be 0o660."""
    old = os.umask(0o007)
    try:
        path = atomic_write(tmp_path / "new.bin", lambda f: f.write(b"x"))
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o660
