"""Loaders of the standard raw formats, reading from any directory.

Each returns raw interactions as a :class:`~torch_geometric.data.HeteroData` (see
:mod:`graphforget.data.interactions`); k-core, binarisation and splits are separate steps
(:mod:`graphforget.data.transforms`). Raw ids are remapped to contiguous local ids; the mapping
back to raw ids is stored as ``graph['user'].raw_id`` / ``graph['item'].raw_id``.
"""
from __future__ import annotations

import codecs
import csv
import functools
import hashlib
import io
import itertools
import logging
import math
import os
import re
import unicodedata
import urllib.request
import warnings
from pathlib import Path
from typing import Callable, Sequence, cast

import numpy as np
import torch
from torch_geometric.data import HeteroData

from ..io import atomic_write
from .interactions import make_interactions, pair_keys

__all__ = ["load_movielens_100k", "load_labelled_triples", "load_lightgcn", "load_csv", "download",
           "find_data_root", "DATASETS", "load_dataset"]

log = logging.getLogger(__name__)

#: Public homes of the datasets (file name inside the root -> (url, md5)).
DATASETS: dict[str, dict[str, tuple[str | None, str]]] = {
    "ml-100k": {"ml-100k/u.data": (None, "6e47046882bad158b0efbb84cd5cb987")},
    "bookcrossing": {"bookcrossing/ratings_final.txt": (None, "0f69e90a46fa3b81545f0b06031961bd")},
    "gowalla": {
        "gowalla/train.txt": ("https://raw.githubusercontent.com/gusye1234/LightGCN-PyTorch/master/data/gowalla/train.txt",
                              "5eec1eb2edb8dd648377d348b8e136cf"),
        "gowalla/test.txt": ("https://raw.githubusercontent.com/gusye1234/LightGCN-PyTorch/master/data/gowalla/test.txt",
                             "c04e2c4bcd2389f53ed8281816166149"),
    },
    "ml-1m": {"ml-1m/train.txt": (None, "b39cbcec5eedf5eaefa3429ad234f20e"),
              "ml-1m/test.txt": (None, "0055e8c94b962e1106fab2aaeede35db")},
}


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def known_dataset_of(path: str | os.PathLike) -> str | None:
    """The dataset of :data:`DATASETS` whose file ``path`` is, by its md5 and name (``None``: none is)."""
    path = Path(path)
    named = [(dataset, md5) for dataset, files in DATASETS.items() for name, (_, md5) in files.items()
             if Path(name).name == path.name]
    digest = _md5(path) if named else None  # read only for a file name some dataset has
    return next((dataset for dataset, md5 in named if md5 == digest), None)


def download(url: str, path: str | os.PathLike, md5: str | None = None) -> Path:
    """Downloads ``url`` to ``path`` (any scheme urllib knows, ``file://`` included), checking ``md5``.

    The file is written atomically (:func:`~graphforget.io.atomic_write`, a temporary file of its own): two
    processes downloading it at once each publish a whole file (a shared temporary name had been truncated by the
    other, which failed the checksum or the rename). A symbolic link at ``path`` is followed, as
    :func:`~graphforget.io.atomic_write` follows it: its target is written.

    Raises:
        OSError: when the download fails (an error of the connection names ``url``); ``ValueError`` when the
            checksum differs (nothing is written).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    log.info("downloading %s -> %s", url, path)

    def copy_checked(out) -> None:
        digest = hashlib.md5()
        try:
            with urllib.request.urlopen(url, timeout=30) as response:
                for chunk in iter(lambda: response.read(1 << 20), b""):
                    digest.update(chunk)
                    out.write(chunk)
        except OSError as error:  # else atomic_write names the file written, for a connection reset mid-read
            if error.filename is None:
                error.filename = url
            raise
        if md5 is not None and digest.hexdigest() != md5:
            raise ValueError(f"md5 mismatch for {url}: expected {md5}")

    atomic_write(path, copy_checked)
    return path


def find_data_root(root: str | os.PathLike | None = None) -> Path | None:
    """The data directory: ``root``, else ``$GRAPHFORGET_DATA``, else ``../shared/data`` if present.

    ``../shared/data`` is relative to the working directory; ``None`` when nothing is found.

    Raises:
        FileNotFoundError: when a given ``root`` is not a directory, or, without one, when ``$GRAPHFORGET_DATA``
            is set (non-empty) but is not a directory: a mistyped path is an error, never a silent fallback.
        TypeError: ``root`` is neither a path nor ``None`` (an attack ratio given where the root goes failed inside
            pathlib).
    """
    if root is not None and not isinstance(root, (str, os.PathLike)):
        raise TypeError(f"root must be a data directory (a str or os.PathLike) or None, got a {type(root).__name__}: "
                        f"{root!r}")
    if root is not None:
        if not os.fspath(root):  # "" is no directory (it had fallen back to $GRAPHFORGET_DATA; Path("") is ".")
            raise FileNotFoundError("data directory not found: the root given is an empty path")
        path = Path(root).expanduser()
        if not path.is_dir():
            raise FileNotFoundError(f"data directory not found: {path}")
        return path
    env = os.environ.get("GRAPHFORGET_DATA")
    if env:
        if not Path(env).is_dir():
            raise FileNotFoundError(f"$GRAPHFORGET_DATA is set to {env!r}, which is not a directory")
        return Path(env)
    shared = Path.cwd().parent / "shared" / "data"
    return shared if shared.is_dir() else None


def _from_raw(source: os.PathLike | str, users: np.ndarray, items: np.ndarray, labels: np.ndarray | None = None,
              extra: dict | None = None, keep_last: bool = False,
              line_of: Callable[[int], int] | None = None) -> HeteroData:
    """Remaps the raw ids of the file ``source`` to local ones and builds the graph; ``keep_last`` keeps the last
    row of a repeated pair. ``line_of``: the file's 1-based line of a 0-based row (default: a plain table's)."""
    user_raw, user = np.unique(users, return_inverse=True)
    item_raw, item = np.unique(items, return_inverse=True)
    if not keep_last:
        _check_raw_pairs(user, item, user_raw, item_raw, source, line_of or functools.partial(_line_of_row, source))
    rows = _last_of_each_pair(user, item, len(item_raw)) if keep_last else slice(None)
    edge_index = torch.from_numpy(np.stack([user[rows], item[rows]]).astype(np.int64))
    label = None if labels is None else torch.from_numpy(_label_values(labels[rows]))
    data = make_interactions(edge_index, label, len(user_raw), len(item_raw))  # keeps float64 labels as such
    data["user"].raw_id = _raw_id_store(user_raw)
    data["item"].raw_id = _raw_id_store(item_raw)
    for key, value in (extra or {}).items():
        data[("user", "rates", "item")][key] = torch.from_numpy(value[rows])
    return data


def _label_values(labels: np.ndarray) -> np.ndarray:
    """The labels as float32 where it holds every value exactly, else as float64: a rating of 3.9999999 rounded
    to 4.0 in float32 reached ``--threshold 4``."""
    values = labels.astype(np.float64)
    single = values.astype(np.float32)
    return single if np.array_equal(single, values) else values


def _check_raw_pairs(user: np.ndarray, item: np.ndarray, user_raw: np.ndarray, item_raw: np.ndarray,
                     source: os.PathLike | str, line_of: Callable[[int], int]) -> None:
    """Raises ``ValueError`` naming the file, the number of repeated pairs and the first one in raw ids, with the
    lines of the file it is on (``line_of`` a row; they had been counted as data rows, without the header, blank and
    comment lines, as no other error of a loader counts them)."""
    keys = pair_keys(np.stack([user, item]).astype(np.int64), len(item_raw))
    _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    repeated = counts > 1
    if not repeated.any():
        return
    rows = np.flatnonzero(inverse == inverse[np.flatnonzero(repeated[inverse])[0]])
    raise ValueError(f"{source}: {int(repeated.sum())} (user, item) pairs occur on several rows, the first "
                     f"({user_raw[user[rows[0]]]}, {item_raw[item[rows[0]]]}) (raw ids) on lines "
                     f"{line_of(int(rows[0]))} and {line_of(int(rows[1]))}; aggregate them first, e.g. keep the last "
                     f"rating (load_csv(..., duplicates='last') and graphforget fit --duplicates last do, for CSV)")


def _last_of_each_pair(user: np.ndarray, item: np.ndarray, n_items: int) -> np.ndarray:
    """Row positions, in file order, of the last occurrence of each (user, item) pair."""
    keys = pair_keys(np.stack([user, item]).astype(np.int64), n_items)
    _, first_from_end = np.unique(keys[::-1], return_index=True)
    return np.sort(len(keys) - 1 - first_from_end)


def _raw_id_store(raw: np.ndarray):
    """Integer raw ids as a long tensor; other ids (strings, e.g. from a CSV) stay a numpy array."""
    return torch.from_numpy(raw.astype(np.int64)) if np.issubdtype(raw.dtype, np.integer) else raw


def _as_ids(column: np.ndarray) -> np.ndarray:
    """A CSV id column as integers when every value is one written plainly (so ids sort numerically), else as
    strings: ``"007"`` and ``"7"`` are then two ids, never merged into one."""
    try:
        ids = column.astype(np.int64)
    except (ValueError, OverflowError):
        return column
    return ids if (ids.astype(str) == column).all() else column


def require_file(path: Path, what: str = "dataset file", pipe: bool = False) -> Path:
    """``path``, a regular file (or a pipe, where ``pipe``: a file read once): a folder, a missing path and a pipe
    (``--data <(zcat x.gz)``: fit reads a data file twice, its sha256 recorded) are refused, each so named."""
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder: give the {what}")
    if not path.exists():
        raise FileNotFoundError(f"{what} not found: {path}")
    if not (path.is_file() or (pipe and path.is_fifo())):
        raise ValueError(f"{path} is not a regular file (a pipe or a device): save the {what} to a file and give "
                         "that")
    if path.is_file():
        _refuse_compressed(path, what)
    return path


#: The first bytes of the compressed formats an export comes in, and how each is opened.
_COMPRESSED = {b"\x1f\x8b": ("gzip", "gunzip -k"), b"BZh": ("bzip2", "bunzip2 -k"), b"\xfd7zXZ\x00": ("xz", "unxz -k"),
               b"PK\x03\x04": ("zip", "unzip"), b"\x28\xb5\x2f\xfd": ("zstd", "unzstd")}


def _refuse_compressed(path: Path, what: str) -> None:
    """A compressed file is refused by name: numpy read a gzip'd triples file by itself, and the lines that errors
    name were counted in its compressed bytes (a repeated pair failed with a StopIteration traceback)."""
    with open(path, "rb") as f:
        start = f.read(6)
    for magic, (kind, opener) in _COMPRESSED.items():
        if start.startswith(magic):
            raise ValueError(f"{path} is {kind}-compressed: decompress it first ({opener} {path.name}) and give the "
                             f"{what} it holds")


def _line_error(path: str | os.PathLike, number: int, problem: str) -> ValueError:
    """The error every loader raises for a malformed line: ``FILE, line N: problem`` (``N`` 1-based)."""
    return ValueError(f"{path}, line {number}: {problem}")


def _read_int_table(path: Path, columns: tuple[str, ...]) -> np.ndarray:
    """The ``[N, len(columns)]`` table of a whitespace-separated file of integers (``#`` starts a comment).

    Raises:
        ValueError: ``FILE is empty``, or ``FILE, line N: ...`` naming the first malformed line (see
            :func:`_first_malformed_line`).
    """
    require_file(path)  # outside the try: its refusals are not malformed lines
    try:
        with warnings.catch_warnings():  # an empty file is reported below, as an error
            warnings.filterwarnings("ignore", "loadtxt: input contained no data")
            table = np.loadtxt(path, dtype=np.int64, ndmin=2, encoding="utf-8-sig")  # Notepad's mark
    except (ValueError, OverflowError) as error:  # numpy's message names no line: locate it ourselves
        raise _first_malformed_line(path, columns) or ValueError(f"{path}: {error}") from None
    if table.size == 0:
        raise ValueError(f"{path} is empty")
    if table.shape[1] != len(columns):
        raise _first_malformed_line(path, columns) or ValueError(
            f"{path}: {table.shape[1]} columns, expected {len(columns)} ({' '.join(columns)})")
    return table


def _line_of_row(path: os.PathLike | str, row: int) -> int:
    """The 1-based line of row ``row`` (0-based) of :func:`_read_int_table`'s table: lines without data (blank, or
    a comment alone) hold no row."""
    with open(path, encoding="utf-8-sig", errors="replace") as f:  # as the table was read: a mark alone is no row
        rows = (number for number, line in enumerate(f, start=1) if line.split("#", 1)[0].split())
        return next(itertools.islice(rows, row, None))


def _first_malformed_line(path: Path, columns: tuple[str, ...]) -> ValueError | None:
    """The error naming the first line of ``path`` that is not ``len(columns)`` integers; ``None`` if none is."""
    with open(path, encoding="utf-8-sig", errors="replace") as f:  # undecodable bytes fail as a field, named
        for number, line in enumerate(f, start=1):
            fields = line.split("#", 1)[0].split()
            if not fields:
                continue
            if len(fields) != len(columns):
                return _line_error(path, number, f"{len(fields)} fields, expected {len(columns)} ({' '.join(columns)})")
            for name, field in zip(columns, fields):
                if not re.fullmatch(r"[+-]?[0-9]+", field):  # \d takes '\u0663', which numpy refuses
                    return _line_error(path, number, f"column {name!r}: {field!r} is not an integer")
                if not _fits_int64(int(field)):
                    return _line_error(path, number, f"column {name!r}: {field} is beyond 64-bit integers")
    return None


def load_movielens_100k(root: str | os.PathLike) -> HeteroData:
    """MovieLens-100K ``u.data`` (``user \\t item \\t rating \\t timestamp``).

    ``root`` is the folder holding ``u.data``, its parent holding ``ml-100k/u.data``, or a file in this format
    (``u.data``, or a split of it such as ``u1.base``). The rating (1-5)
    is stored as ``edge_label``; binarise with :func:`~graphforget.data.binarize`.

    Raises:
        ValueError: when a (user, item) pair occurs twice (see :func:`~graphforget.data.make_interactions`);
            the published ``u.data`` holds none (100,000 distinct pairs). For an empty file, or a line that is
            not four integers, naming the file and the 1-based line number.
    """
    root = Path(root)
    if root.is_file():  # else looked for as a folder: 'u.data/ml-100k/u.data not found' for a file that is there
        path = root
    else:
        path = root / "u.data" if (root / "u.data").is_file() else root / "ml-100k" / "u.data"
        if not path.is_file():  # it named ml-100k/u.data alone, though a u.data in root is read first
            raise FileNotFoundError(f"dataset file not found: no u.data in {root} nor in {root / 'ml-100k'}")
    table = _read_int_table(path, ("user", "item", "rating", "timestamp"))
    return _from_raw(path, table[:, 0], table[:, 1], table[:, 2], {"timestamp": table[:, 3]})


def load_labelled_triples(path: str | os.PathLike, binary: bool = False) -> HeteroData:
    """``user \\t item \\t label`` lines (Book-Crossing's ``ratings_final.txt``; CRLF accepted).

    Rows labelled 0 in such files are sampled negatives, not interactions, so they are stored with
    ``observed = False`` (message passing skips them). Other labels (ratings) are kept, to binarise;
    ``binary=True`` (Book-Crossing's loaders) refuses them.

    Raises:
        ValueError: when a (user, item) pair occurs twice (see :func:`~graphforget.data.make_interactions`);
            Book-Crossing's ``ratings_final.txt`` holds none (139,746 distinct pairs). For an empty file, a
            line that is not three integers, or with ``binary`` a label other than 0 and 1, naming the file and the
            1-based line number.
    """
    path = Path(path)
    if path.is_dir():
        path = _ratings_final(path)
    table = _read_int_table(path, ("user", "item", "label"))
    other: np.ndarray | list = np.flatnonzero((table[:, 2] != 0) & (table[:, 2] != 1)) if binary else []
    if len(other):  # else the attack protocol failed later by the seed's draw (a split, a flip), naming no line
        raise _line_error(path, _line_of_row(path, int(other[0])), f"column 'label': {table[other[0], 2]} is not 0 "
                          f"or 1 (1: an interaction, 0: a sampled negative); {len(other)} rows in all")
    data = _from_raw(path, table[:, 0], table[:, 1], table[:, 2])
    data[("user", "rates", "item")].observed = data[("user", "rates", "item")].edge_label != 0  # a -1 was rated
    return data


def _ratings_final(folder: Path) -> Path:
    """``ratings_final.txt`` in ``folder`` or in its ``bookcrossing`` folder (the data root)."""
    for path in (folder / "ratings_final.txt", folder / "bookcrossing" / "ratings_final.txt"):
        if path.is_file():
            return path
    raise FileNotFoundError(f"no ratings_final.txt in {folder} nor in {folder / 'bookcrossing'}")


def _read_lightgcn_lines(path: Path) -> tuple[np.ndarray, np.ndarray, int, np.ndarray]:
    """``(users, items, max_user, lines)`` of a LightGCN file; ``max_user`` counts users listed without items,
    ``lines`` holds the 1-based line of each pair.

    Blank lines and a user id alone on its line (a user with no items in this file) are accepted; any
    other token must be a non-negative integer.

    Raises:
        ValueError: ``FILE is empty``; ``FILE, line N: ...`` for a malformed line or a user listed again (the
            format has one line a user: two were merged without a word); ``FILE holds no (user, item) pairs`` when
            no line lists an item.
    """
    users, items, lines, max_user = [], [], [], -1
    listed: dict[int, int] = {}  # user -> its line
    # undecodable bytes fail as an id, named; the byte-order mark that Notepad writes is no part of the first id
    with open(require_file(path), encoding="utf-8-sig", errors="replace") as f:
        for number, line in enumerate(f, start=1):
            ids = line.split()
            if not ids:
                continue
            try:
                # int() reads '1_0' as 10 and '\u0663' as 3, which u.data refuses: check such rare lines' tokens
                if (not line.isascii() or "_" in line) and not all(map(_is_int, ids)):
                    raise ValueError
                row = np.asarray([int(token) for token in ids], dtype=np.int64)
            except ValueError:
                bad = next(token for token in ids if not _is_int(token))
                raise _line_error(path, number, f"{bad!r} is not an integer id "
                                                f"(expected 'user item item ...')") from None
            except OverflowError:
                bad = next(token for token in ids if not _fits_int64(int(token)))
                raise _line_error(path, number, f"id {bad} is beyond 64-bit integers") from None
            if (row < 0).any():
                raise _line_error(path, number, f"negative id {int(row[row < 0][0])}")
            first = listed.setdefault(int(row[0]), number)
            if first != number:
                raise _line_error(path, number, f"user {int(row[0])} is listed again (first on line {first}): the "
                                                "format has one line a user, holding all its items")
            max_user = max(max_user, int(row[0]))
            if len(row) > 1:
                users.append(np.full(len(row) - 1, row[0]))
                items.append(row[1:])
                lines.append(np.full(len(row) - 1, number))
    if not items:
        if max_user < 0:
            raise ValueError(f"{path} is empty")
        raise ValueError(f"{path} holds no (user, item) pairs")
    return np.concatenate(users), np.concatenate(items), max_user, np.concatenate(lines)


def _fits_int64(value: int) -> bool:
    return -2**63 <= value < 2**63


def _is_int(token: str) -> bool:
    return re.fullmatch(r"[+-]?[0-9]+", token) is not None


def load_lightgcn(root: str | os.PathLike) -> tuple[HeteroData, HeteroData]:
    """The "LightGCN" line format (``user item item ...``, 0-based ids): ``train.txt`` and ``test.txt``.

    Ids are kept as they are (they are already contiguous), so train and test share the id space.
    Returns ``(train, test)``; all labels are 1 (implicit feedback).

    Blank lines are skipped; a line holding only a user id (a user with no items in that file) is
    accepted and counts in the user id space. The Gowalla and ML-1M files hold neither.

    Raises:
        NotADirectoryError: ``root`` is a file (``train.txt`` itself): the format is read from its folder.
        ValueError: when an item is listed twice for a user within one file, naming the file and both lines
            (see :func:`~graphforget.data.make_interactions`; the Gowalla and ML-1M files hold none); when
            a file is empty or lists no item; for a malformed line (a token that is not a
            non-negative integer), naming the file and the 1-based line number; or for ids far sparser than
            contiguous ones (over 1024 more ids unused than used).
    """
    if Path(root).is_file():  # else 'train.txt/train.txt not found' for a file that is there
        raise NotADirectoryError(f"{root} is a file: give the folder holding train.txt and test.txt")
    train, test = _lightgcn_files(Path(root), ("train.txt", "test.txt"))
    return train, test


def _lightgcn_files(root: Path, names: Sequence[str]) -> list[HeteroData]:
    """The graphs of the LightGCN-format files ``names`` in ``root`` (see :func:`load_lightgcn`), in one id space:
    the largest id of any file sizes them all. The ids are already contiguous: they are their own raw ids, kept as
    every loader keeps them (a split or k-core renumbers the nodes)."""
    read = [_read_lightgcn_lines(root / name) for name in names]
    n_users = max(max_user for _, _, max_user, _ in read) + 1
    n_items = int(max(items.max() for _, items, _, _ in read)) + 1
    for side, count, column in (("user", n_users, 0), ("item", n_items, 1)):
        _check_dense_ids(root, side, count, np.unique(np.concatenate([ids[column] for ids in read])).size)
    graphs = []
    for name, (users, items, _, lines) in zip(names, read):
        try:
            graph = make_interactions(torch.from_numpy(np.stack([users, items])), None, n_users, n_items)
        except ValueError as error:  # an item listed twice: the message names pair positions, not the file's lines
            raise _repeated_pair_line(root / name, users, items, lines, n_items) or error from None
        graph["user"].raw_id, graph["item"].raw_id = torch.arange(n_users), torch.arange(n_items)
        graphs.append(graph)
    return graphs


def _repeated_pair_line(path: Path, users: np.ndarray, items: np.ndarray, lines: np.ndarray,
                        n_items: int) -> ValueError | None:
    """The error naming the file and the lines of the first (user, item) pair of a LightGCN file listed twice (at
    the line of its second copy); ``None`` when no pair is."""
    _, inverse, counts = np.unique(pair_keys(np.stack([users, items]), n_items), return_inverse=True,
                                   return_counts=True)
    repeated = counts[inverse] > 1
    if not repeated.any():
        return None
    first, second = np.flatnonzero(inverse == inverse[np.flatnonzero(repeated)[0]])[:2]
    return _line_error(path, int(lines[second]), f"{int((counts > 1).sum())} duplicated (user, item) pairs, the "
                       f"first ({users[first]}, {items[first]}) at positions {first} and {second} of the file's "
                       f"pairs (on lines {lines[first]} and {lines[second]}): list each item once per user")


def _check_dense_ids(root: Path, side: str, count: int, used: int) -> None:
    """Refuses ids far sparser than the format's contiguous ones: every table is sized by the largest (a stray
    10^10 asked for 80 GB). The slack admits users listed without items, who hold ids but no pair."""
    if count > 2 * used + 1024:
        raise ValueError(f"{root}: the largest {side} id is {count - 1}, but only {used} {side} ids are used: the "
                         "LightGCN format holds contiguous 0-based ids (remap them, or load the file as csv)")


def load_csv(path: str | os.PathLike, user_col: str, item_col: str, label_col: str | None = None,
             delimiter: str = ",", duplicates: str = "raise", encoding: str = "utf-8") -> HeteroData:
    """A CSV file with a header row and named columns; labels all ones when ``label_col`` is None.

    Labels are float32, or float64 where float32 would round a value (a rating of 3.9999999 is not 4).

    Integer ids are stored as ``raw_id`` long tensors; other ids (e.g. ``"A2SUAM1J3GNN3B"``) as numpy
    string arrays, in the same order as the local ids.

    Args:
        path: the CSV file.
        user_col, item_col, label_col: column names (``label_col`` optional).
        delimiter: the field separator.
        encoding: the file's text encoding (``"latin-1"``, ``"cp1252"``, ...); UTF-8 may start with a byte-order mark.
        duplicates: what to do with a (user, item) pair on several rows (a user who rated an item twice):
            ``"raise"`` (default: ``ValueError`` naming the count and the first pair) or ``"last"`` (keep
            the last row of each pair, e.g. the latest rating in a file sorted by time).

    Raises:
        ValueError: for a file that is not in ``encoding`` (or an unknown encoding), missing columns, an empty file,
            an unknown ``duplicates`` policy, one column named for two roles, or duplicated pairs under
            ``"raise"``; ``FILE, line N: ...`` naming the column for a row without a value in a used column
            (shorter than the header, or an empty cell) or a label that is not a finite number (or is beyond
            float32's range), an id over ``MAX_ID_LENGTH`` characters or one that begins or ends with a non-ASCII space
            (U+00A0, which spreadsheets write: stripped, it could merge two ids) or an invisible character (U+200B); a
            used column named twice in the header; ``FILE, lines N-M: ...`` for a used value holding a line break (a
            quote left open), and a row the csv module cannot read, or a quote still open at the end of the file in
            any column.
    """
    if duplicates not in ("raise", "last"):
        raise ValueError(f"duplicates must be 'raise' or 'last', got {duplicates!r}")
    _check_column_names(user_col, item_col, label_col)
    text = read_text(require_file(Path(path)), encoding, "pass its encoding (encoding='latin-1', 'cp1252', ...; fit "
                     "--encoding) or save it as UTF-8")
    try:
        with io.StringIO(text, newline="") as f:
            reader = csv.DictReader(f, delimiter=delimiter, skipinitialspace=True)  # "user, item" too
            if reader.fieldnames is None or not text.strip():
                raise ValueError(f"{path} is empty: a CSV file starts with a header naming its columns")
            if not any(name.strip() for name in reader.fieldnames):  # a blank first line, taken for an empty header
                raise _line_error(path, 1, "blank, where a CSV file starts with a header naming its columns: remove "
                                           "the blank lines before it")
            reader.fieldnames = [name.strip() for name in reader.fieldnames]  # "user , item": as the values are
            missing = {user_col, item_col, label_col} - {None} - set(reader.fieldnames)
            if missing:
                raise ValueError(f"columns {sorted(cast('set[str]', missing))} not in {path} (has {reader.fieldnames})"
                                 + _delimiter_hint(reader.fieldnames, delimiter))
            _check_used_columns_once(path, reader.fieldnames, (user_col, item_col, label_col))
            numbered = list(_rows_with_lines(reader, text))
            rows = [_csv_row(path, (first, last), row, user_col, item_col, label_col) for first, last, row in numbered]
            _check_quotes_close(path, text, numbered, delimiter)  # in a column not read: the rows' check saw none
    except csv.Error as error:  # e.g. a field over the csv module's size limit: an unclosed quote swallowing lines
        raise ValueError(f"{path}, the row from line {reader.line_num + 1}: not readable as CSV ({error}): an unclosed "
                         "quote?") from None
    if not rows:
        raise ValueError(f"{path} holds no rows")
    users, items, labels = (np.asarray(col) for col in zip(*rows))
    return _from_raw(path, _as_ids(users), _as_ids(items), labels, keep_last=duplicates == "last",
                     line_of=lambda row: numbered[row][0])


_FLOAT32_MAX = float(np.finfo(np.float32).max)
MAX_ID_LENGTH = 1024  # characters of a raw id in a CSV file


def read_text(path: Path, encoding: str, advice: str) -> str:
    """The text of ``path`` in ``encoding``, without the byte-order mark of UTF-8 (it joined the first name: the
    header's first column, or an edges file's first user id). Bytes not in ``encoding`` are a ``ValueError`` naming
    the line, and ``advice``: one bad byte in a UTF-8 file is a line to mend, where reading the file as latin-1
    would garble every other name in it."""
    codec, data = text_codec(encoding), path.read_bytes()
    wide, marked = _wide_unicode(data), True
    if wide is None and not codec.startswith(("utf-16", "utf-32")):
        wide, marked = _unmarked_wide(data), False
    # read as latin-1, its every other character was a NUL; as utf-16-le, the mark joined the first name
    if wide and codec != wide:
        shown = "UTF-8" if codec == "utf-8-sig" else encoding
        why = (f"starts with the byte-order mark of {wide.upper()}" if marked else
               f"has the NUL bytes of ASCII text in {wide.upper()[:6]} without a byte-order mark")
        raise ValueError(f"{path} {why}: it is {wide.upper()} text, not {shown}: read it with the encoding '{wide}' "
                         f"(encoding='{wide}', or the command's --encoding)")
    if codec == "utf-8-sig":  # the mark off first: error.start counts from there
        codec, data = "utf-8", data.removeprefix(codecs.BOM_UTF8)
    try:
        return data.decode(codec)
    except UnicodeError as error:  # a UnicodeDecodeError, or a codec's own (utf-16 without its byte-order mark)
        line = data[:getattr(error, "start", 0)].count(b"\n") + 1
        shown = "UTF-8" if codec == "utf-8" else encoding
        reason = getattr(error, "reason", error)
        raise ValueError(f"{path}, line {line}: not {shown} text ({reason}): {advice}") from None


def _wide_unicode(data: bytes) -> str | None:
    """``utf-32`` or ``utf-16`` where ``data`` starts with its byte-order mark (UTF-32's first, which starts with
    UTF-16's), else ``None``."""
    if data.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        return "utf-32"
    return "utf-16" if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) else None


def _unmarked_wide(data: bytes) -> str | None:
    """The UTF-32 or UTF-16 codec of either byte order where ``data`` looks like such text without a byte-order
    mark: nearly all of its bytes in the places that ASCII characters leave empty are NUL (qa149: UTF-16 was "not
    UTF-8 ...: pass its encoding (--encoding latin-1, ...)", or read as text of NULs). ``None`` else."""
    sample = data[:4096]
    if len(sample) < 4:
        return None
    for codec, step, places in (("utf-32-le", 4, (1, 2, 3)), ("utf-32-be", 4, (0, 1, 2)), ("utf-16-le", 2, (1,)),
                                ("utf-16-be", 2, (0,))):
        if all(sample[place::step].count(0) >= 0.9 * len(sample[place::step]) for place in places):
            return codec
    return None


def text_codec(encoding: str) -> str:
    """Python's codec for ``encoding``; UTF-8 as utf-8-sig, since the byte-order mark that spreadsheets write would
    otherwise join the first column's name."""
    try:
        "".encode(encoding)  # a LookupError for an unknown codec and for one that is not text (base64)
    except LookupError:
        raise ValueError(f"unknown text encoding {encoding!r} (e.g. 'utf-8', 'latin-1', 'cp1252')") from None
    name = codecs.lookup(encoding).name
    return "utf-8-sig" if name == "utf-8" else name


def _delimiter_hint(fieldnames: Sequence[str], delimiter: str) -> str:
    """A hint when the header reads as one column holding another common delimiter (a spreadsheet's ';' export)."""
    found = [mark for mark in ";\t|," if mark != delimiter and mark in fieldnames[0]] if len(fieldnames) == 1 else []
    return f": is the delimiter {found[0]!r}? (delimiter={found[0]!r}; fit --delimiter)" if found else ""


def _check_column_names(user_col: str, item_col: str, label_col: str | None) -> None:
    """Refuses a column that is not named by a string (None was a KeyError of the first row, a number beside a name a
    TypeError of sorting the missing ones), or one named for two roles (user_col == item_col read every row as a
    self-pair, reported as duplicates)."""
    named = {"user_col": user_col, "item_col": item_col, "label_col": label_col}
    unnamed = [f"{key}={value!r}" for key, value in named.items()
               if not isinstance(value, str) and not (key == "label_col" and value is None)]
    if unnamed:
        raise ValueError(f"user_col and item_col (and label_col, unless None) name columns of the header, got "
                         f"{', '.join(unnamed)}")
    used = [column for column in (user_col, item_col, label_col) if column is not None]
    if len(set(used)) < len(used):
        raise ValueError(f"user_col, item_col and label_col must name different columns, got {used}")


def _check_used_columns_once(path: str | os.PathLike, fieldnames: Sequence[str], used: Sequence[str | None]) -> None:
    """Refuses a header naming a used column twice: csv.DictReader would read the last of them without a word."""
    for column in used:
        if column is not None and list(fieldnames).count(column) > 1:
            raise ValueError(f"{path}: the header names column {column!r} twice ({list(fieldnames)}): rename one")


def _check_quotes_close(path: str | os.PathLike, text: str, numbered: list, delimiter: str) -> None:
    """Refuses a quote still open at the end of the file, naming the line it opens on: it takes every later line
    into one value of the last row, and in a column not read (which :func:`_csv_row` does not check) the rows were
    lost without a word (3 of 200 read). Only the last row can hold one; it is read again strictly when a value of it
    holds a line break."""
    if not numbered:
        return
    first, _, row = numbered[-1]
    if not any(value and ("\n" in value or "\r" in value) for value in _row_values(row)):
        return
    with io.StringIO(text, newline="") as f:  # the lines as the csv module counts them
        tail = "".join(f.readlines()[first - 1:])
    try:
        for _ in csv.reader(io.StringIO(tail, newline=""), delimiter=delimiter, strict=True):
            pass
    except csv.Error as error:
        if "unexpected end of data" in str(error):
            raise ValueError(f"{path}, line {first}: a quote opened on this row is still open at the end of the file, "
                             "so every later line was read as one value (double a quote inside a value)") from None


def _row_values(row: dict) -> list:
    """Every field of a ``csv.DictReader`` row: the header's columns' (``None`` where the row is short), then the
    surplus ones, which it keeps under the key ``None``."""
    return [value for key, value in row.items() if key is not None] + (row.get(None) or [])


def _rows_with_lines(reader: csv.DictReader, text: str):
    """``(first line, last line, row)`` of each row of ``reader`` over ``text``: a quoted value may hold line breaks.
    A row of blank fields only (spaces an editor left, a spreadsheet's ",,") is skipped as the csv module skips an
    empty line; the empty lines it skips before a row are not the row's (a duplicate after one was named on it)."""
    empty = [not line for line in re.split(r"\r\n|\r|\n", text)]  # the lines the csv module reads, as it splits
    last = reader.line_num
    for row in reader:
        if any(value is not None and value.strip() for value in _row_values(row)):
            first = last + 1
            while first < reader.line_num and empty[first - 1]:
                first += 1
            yield first, reader.line_num, row
        last = reader.line_num


def _csv_row(path: str | os.PathLike, lines: tuple[int, int], row: dict, user_col: str, item_col: str,
             label_col: str | None) -> tuple[str, str, float]:
    """``(user, item, label)`` of the CSV row on ``lines`` (first, last); the label is 1 without ``label_col``.
    Errors name the row's last line, or both when a used value spans several."""
    number = lines[1]
    for column in (user_col, item_col, label_col):  # '"The 5' opens a quote that takes in every later line
        if column is not None and any(mark in (row[column] or "") for mark in "\r\n"):
            raise ValueError(f"{path}, lines {lines[0]}-{number}: column {column!r} holds a line break: a quote "
                             f"opened on line {lines[0]} runs to line {number} (double a quote inside a value)")
    extra = [value for value in row.get(None) or [] if value.strip()]  # csv.DictReader's key of surplus fields
    if extra:  # "1,10,3,5": a decimal comma, or a shifted column; blank trailing fields are a spreadsheet's habit
        raise _line_error(path, number, f"the row has more fields than the header: {extra} beyond its "
                                        f"{len(row) - 1} columns")
    user, item = _csv_value(path, number, row, user_col), _csv_value(path, number, row, item_col)
    if (user, item) == (user_col, item_col):  # `cat a.csv b.csv`: without a label, b's header was user "user"
        raise _line_error(path, number, f"the row repeats the header ({user_col}, {item_col}): files joined with "
                                        "their headers? Remove it")
    for column, value in ((user_col, user), (item_col, item)):
        if len(value) > MAX_ID_LENGTH:  # numpy keeps a column at its longest id's width: 2,000 rows took 3.5 GB
            raise _line_error(path, number, f"column {column!r}: an id of {len(value):,} characters, over the "
                                            f"{MAX_ID_LENGTH:,} an id may have (a shifted or unclosed field?)")
    if label_col is None:
        return user, item, 1.0
    value = _csv_value(path, number, row, label_col)
    try:  # as the ids are read: '4_5' and non-ASCII digits are numbers to Python alone ('4_5' read as 45)
        label = float(value) if value.isascii() and "_" not in value else math.nan
    except ValueError:
        label = math.nan
    if not math.isfinite(label):  # a NaN or infinite rating is as unusable as 'abc'
        raise _line_error(path, number, f"column {label_col!r}: {value!r} is not a finite number")
    if abs(label) > _FLOAT32_MAX:  # infinite in float32, the labels' usual dtype: no rating is that large
        raise _line_error(path, number, f"column {label_col!r}: {value!r} is beyond the float32 range of labels "
                                        f"(+-{_FLOAT32_MAX:.4g})")
    return user, item, label


_ASCII_SPACE = " \t\n\r\v\f"


def _invisible(char: str) -> bool:
    """A space or a format character (U+200B zero-width space, U+2060 word joiner, U+FEFF): nothing on screen."""
    return char.isspace() or unicodedata.category(char) == "Cf"


def _visible_part(value: str) -> tuple[str, str]:
    """``(value without the invisible characters at its ends, those characters' code points as 'U+00A0, ...')``."""
    start, end = 0, len(value)
    while start < end and _invisible(value[start]):
        start += 1
    while end > start and _invisible(value[end - 1]):
        end -= 1
    ends = value[:start] + value[end:]
    return value[start:end], ", ".join(dict.fromkeys(f"U+{ord(char):04X}" for char in ends))


def stripped_id(value: str) -> str:
    """``value`` without the ASCII blanks at its ends, as every reader of ids (data files, requests) takes it.

    Raises:
        ValueError: where a non-ASCII space or an invisible format character is left at an end: stripped, 'a\xa0'
            (a spreadsheet's no-break space) would merge with user 'a'; kept, it would be another user than the 'a'
            on screen, as would 'a\u200b' (a zero-width space).
    """
    value = value.strip(_ASCII_SPACE)
    visible, code_points = _visible_part(value)
    if visible != value:
        raise ValueError(f"{value!r} begins or ends with a non-ASCII space or an invisible character ({code_points}): "
                         f"remove it, or it would read as {visible!r}")
    return value


def _csv_value(path: str | os.PathLike, number: int, row: dict, column: str) -> str:
    """The value of ``column`` in a CSV row, stripped: present (the row is not shorter than the header) and not
    blank."""
    value = row[column]
    if value is None:  # csv.DictReader's filler for the fields a short row lacks
        raise _line_error(path, number, f"no value in column {column!r}: the row has fewer fields than the header")
    try:
        value = stripped_id(value)  # "1, 2" is user "1" and item "2"
    except ValueError as error:
        raise _line_error(path, number, f"column {column!r}: {error}") from None
    if not value:
        raise _line_error(path, number, f"column {column!r} is empty")
    if "\x00" in value:  # NumPy's strings drop trailing NULs: 'u1\x00' would be stored as, and merged with, 'u1'
        raise _line_error(path, number, f"column {column!r}: {value!r} holds a NUL character")
    return value


def load_dataset(name: str, root: str | os.PathLike | None = None,
                 download_missing: bool = False) -> HeteroData | tuple[HeteroData, HeteroData]:
    """Loads a named dataset of :data:`DATASETS` from ``root`` (see :func:`find_data_root`).

    Returns the graph of ``ml-100k`` (:func:`load_movielens_100k`) or ``bookcrossing``
    (:func:`load_labelled_triples`), or the ``(train, test)`` split of ``gowalla`` or ``ml-1m``
    (:func:`load_lightgcn`). With ``download_missing``, files absent from ``root`` are fetched from the
    public home listed in :data:`DATASETS` (where one is known and the network allows) and checked against
    their md5.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known: {sorted(DATASETS)}")
    base = find_data_root(root)
    if base is None:
        raise FileNotFoundError(f"no data directory: pass root, or set $GRAPHFORGET_DATA (looked for {root!r})")
    for rel, (url, md5) in DATASETS[name].items():
        if not (base / rel).is_file():
            if not (download_missing and url):
                raise FileNotFoundError(f"{base / rel} is missing")
            download(url, base / rel, md5)
    if name == "ml-100k":
        return load_movielens_100k(base / "ml-100k")
    if name == "bookcrossing":
        return load_labelled_triples(base / "bookcrossing" / "ratings_final.txt", binary=True)
    return load_lightgcn(base / name)
