"""graphforget.data: loaders on the real files, transforms against plain-Python references, samplers."""
from __future__ import annotations

import concurrent.futures
import functools
import hashlib
import logging
import math
import os
import re
import signal
import socket
import struct
import threading
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from graphforget.data import (DATASETS, EDGE, Split, add_negatives, attack_flip, binarize, download, edge_positions,
                              find_data_root, k_core, load_csv, load_dataset, load_labelled_triples, load_lightgcn,
                              load_movielens_100k, make_interactions, num_items, num_users, planted_communities,
                              propagation_edges, random_edges, random_split, relabel, remove_edges, request_nodes,
                              symmetric_edge_weight, user_edges)
from graphforget.data import (AdjacencyCache, AdjacencyPattern, adversarial_edges, bipartite_adjacency, edge_subgraph,
                              hold_graph, message_passing_edges, normalized_adjacency, observed_adjacency,
                              pairs_of_keys, pairs_with_data, without_edges)
from graphforget.data import interactions
from torch_geometric.data import HeteroData
from graphforget.data.interactions import pair_keys
from graphforget.data.loaders import MAX_ID_LENGTH, stripped_id
from graphforget.protocols.attack import prepare_attack_data
from helpers import hand_mf


# --------------------------------------------------------------------------------------------- helpers

def pairs_of(graph) -> list[tuple[int, int]]:
    """The graph's edges as (user, item) tuples of local ids, in storage order."""
    return list(map(tuple, graph[EDGE].edge_index.t().tolist()))


def raw_pairs(graph) -> list[tuple[int, int]]:
    """The graph's edges mapped through ``raw_id``, in storage order."""
    user_raw, item_raw = graph["user"].raw_id.tolist(), graph["item"].raw_id.tolist()
    return [(user_raw[u], item_raw[i]) for u, i in pairs_of(graph)]


def with_raw_ids(graph, user_offset: int = 1000, item_offset: int = 5000):
    """Sets non-trivial raw ids (an affine map of the local ids) so that remapping errors show."""
    graph["user"].raw_id = user_offset + 3 * torch.arange(num_users(graph))
    graph["item"].raw_id = item_offset + 7 * torch.arange(num_items(graph))
    return graph


def k_core_reference(pairs, k: int):
    """Plain-Python iterative k-core of an edge set; returns the kept edges and the number of removal rounds."""
    edges, rounds = set(pairs), 0
    while True:
        deg_u = Counter(u for u, _ in edges)
        deg_i = Counter(i for _, i in edges)
        keep = {(u, i) for u, i in edges if deg_u[u] >= k and deg_i[i] >= k}
        if keep == edges:
            return edges, rounds
        edges, rounds = keep, rounds + 1


def md5(path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


# --------------------------------------------------------------------------------------------- real files

def test_real_files_match_their_md5(data_root):
    for files in DATASETS.values():
        for rel, (_, digest) in files.items():
            assert md5(data_root / rel) == digest, rel


def test_movielens_100k(data_root):
    graph = load_movielens_100k(data_root)
    assert graph[EDGE].edge_index.size(1) == 100_000
    assert (num_users(graph), num_items(graph)) == (943, 1682)
    # Raw ids are 1-based and contiguous in this file, so local id = raw id - 1.
    assert torch.equal(graph["user"].raw_id, torch.arange(1, 944))
    assert torch.equal(graph["item"].raw_id, torch.arange(1, 1683))
    assert set(graph[EDGE].edge_label.unique().tolist()) == {1.0, 2.0, 3.0, 4.0, 5.0}
    # Row by row against the file itself.
    table = np.loadtxt(data_root / "ml-100k" / "u.data", dtype=np.int64)
    assert torch.equal(graph[EDGE].edge_index, torch.from_numpy(table[:, :2].T - 1))
    assert torch.equal(graph[EDGE].edge_label, torch.from_numpy(table[:, 2]).float())
    assert torch.equal(graph[EDGE].timestamp, torch.from_numpy(table[:, 3]))
    # The folder itself or its parent are both accepted.
    assert torch.equal(load_movielens_100k(data_root / "ml-100k")[EDGE].edge_index, graph[EDGE].edge_index)


def test_bookcrossing(data_root):
    graph = load_labelled_triples(data_root / "bookcrossing" / "ratings_final.txt")
    store = graph[EDGE]
    assert store.edge_index.size(1) == 139_746
    assert num_users(graph) == 17_860
    assert set(store.edge_label.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(store.observed, store.edge_label > 0)
    # Message passing sees the rated books only.
    assert torch.equal(propagation_edges(graph)[0], store.edge_index[:, store.edge_label > 0])
    raw = set(raw_pairs(graph))
    with open(data_root / "bookcrossing" / "ratings_final.txt") as f:
        expected = {(int(u), int(i)) for u, i, _ in (line.split() for line in f)}
    assert raw == expected


def test_load_dataset_by_name(data_root):
    ml = load_dataset("ml-100k", data_root)
    assert torch.equal(ml[EDGE].edge_index, load_movielens_100k(data_root)[EDGE].edge_index)
    bx = load_dataset("bookcrossing", data_root)
    assert bx[EDGE].edge_index.size(1) == 139_746
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset("no-such-data", data_root)
    train, test = load_dataset("ml-1m", data_root)
    assert (train[EDGE].edge_index.size(1), test[EDGE].edge_index.size(1)) == (797_758, 202_451)


def test_load_dataset_downloads_a_split_then_loads_it(data_root, tmp_path, monkeypatch):
    """A split dataset with a public home (Gowalla) is fetched into an empty root, checked, and loaded."""
    homes = {rel: ((data_root / rel).as_uri(), md5) for rel, (_, md5) in DATASETS["gowalla"].items()}
    monkeypatch.setitem(DATASETS, "gowalla", homes)
    with pytest.raises(FileNotFoundError, match="train.txt is missing"):
        load_dataset("gowalla", tmp_path)
    train, test = load_dataset("gowalla", tmp_path, download_missing=True)
    assert (train[EDGE].edge_index.size(1), test[EDGE].edge_index.size(1)) == (810_128, 217_242)
    assert (train["user"].num_nodes, train["item"].num_nodes) == (29_858, 40_981)


def _check_lightgcn(root, n_train, n_test, n_users, n_items):
    train, test = load_lightgcn(root)
    assert train[EDGE].edge_index.size(1) == n_train
    assert test[EDGE].edge_index.size(1) == n_test
    for part in (train, test):
        assert (num_users(part), num_items(part)) == (n_users, n_items)
        assert bool((part[EDGE].edge_label == 1).all())
    # First line of train.txt: user 0 and its items, in file order.
    first = [int(t) for t in open(root / "train.txt").readline().split()]
    user0 = train[EDGE].edge_index[:, train[EDGE].edge_index[0] == first[0]]
    assert user0[1].tolist() == first[1:]


def test_gowalla(data_root):
    _check_lightgcn(data_root / "gowalla", 810_128, 217_242, 29_858, 40_981)


def test_movielens_1m(data_root):
    _check_lightgcn(data_root / "ml-1m", 797_758, 202_451, 6_040, 3_706)


def test_find_data_root_rejects_a_mistyped_variable(tmp_path, monkeypatch):
    (tmp_path / "shared" / "data").mkdir(parents=True)
    (tmp_path / "checkout").mkdir()
    monkeypatch.chdir(tmp_path / "checkout")  # ../shared/data exists from here
    typo = tmp_path / "shraed" / "data"
    monkeypatch.setenv("GRAPHFORGET_DATA", str(typo))
    with pytest.raises(FileNotFoundError, match=re.escape(f"$GRAPHFORGET_DATA is set to '{typo}', which is not a directory")):
        find_data_root()
    with pytest.raises(FileNotFoundError, match="GRAPHFORGET_DATA"):
        load_dataset("ml-100k")
    assert find_data_root(tmp_path) == tmp_path  # an existing explicit root does not read the variable
    monkeypatch.delenv("GRAPHFORGET_DATA")  # ../shared/data exists: a mistyped root must not fall back to it either
    for call in (lambda: find_data_root(typo), lambda: load_dataset("ml-100k", typo),
                 lambda: prepare_attack_data("synthetic", typo)):  # synthetic data reads none: it was ignored
        with pytest.raises(FileNotFoundError, match=re.escape(f"data directory not found: {typo}")):
            call()
    monkeypatch.setenv("GRAPHFORGET_DATA", str(tmp_path))
    assert find_data_root() == tmp_path
    for call in (lambda: find_data_root(0.05), lambda: prepare_attack_data("ml-100k", 0.05)):  # the ratio as root
        with pytest.raises(TypeError, match="root must be a data directory .* got a float: 0.05"):
            call()
    with pytest.raises(FileNotFoundError, match="the root given is an empty path"):  # it read $GRAPHFORGET_DATA
        find_data_root("")
    # Unset (or empty): ../shared/data relative to the working directory, else None.
    for unset in (lambda: monkeypatch.delenv("GRAPHFORGET_DATA"), lambda: monkeypatch.setenv("GRAPHFORGET_DATA", "")):
        unset()
        assert find_data_root() == Path.cwd().parent / "shared" / "data"
        monkeypatch.chdir(tmp_path)
        assert find_data_root() is None
        monkeypatch.chdir(tmp_path / "checkout")


def _lightgcn_files(root, train: str, test: str = "0 3\n1 2\n"):
    (root / "train.txt").write_text(train)
    (root / "test.txt").write_text(test)
    return root


def test_lightgcn_loader_names_the_file_and_line_of_a_malformed_line(tmp_path):
    _lightgcn_files(tmp_path, "0 1 2\n1 0 x7 3\n")
    with pytest.raises(ValueError, match=rf"^{re.escape(str(tmp_path / 'train.txt'))}, line 2: 'x7' is not an integer id"):
        load_lightgcn(tmp_path)
    _lightgcn_files(tmp_path, "0 1 2\n\n1 0\n", test="0 3\n1 2.5\n")  # floats are not ids either
    with pytest.raises(ValueError, match=rf"{re.escape(str(tmp_path / 'test.txt'))}, line 2: '2.5' is not an integer id"):
        load_lightgcn(tmp_path)
    _lightgcn_files(tmp_path, "0 1 2\n1 -4\n")
    with pytest.raises(ValueError, match=rf"{re.escape(str(tmp_path / 'train.txt'))}, line 2: negative id -4"):
        load_lightgcn(tmp_path)
    _lightgcn_files(tmp_path, "0 1 2\n1 99999999999999999999\n")  # numpy's OverflowError named no line
    with pytest.raises(ValueError, match=rf"{re.escape(str(tmp_path / 'train.txt'))}, line 2: id 99999999999999999999 "
                                         "is beyond 64-bit integers"):
        load_lightgcn(tmp_path)
    _lightgcn_files(tmp_path, "0 1 2\n1 0\n\n0 3\n")  # the two lines of user 0 were merged without a word (a QA probe)
    with pytest.raises(ValueError, match=rf"{re.escape(str(tmp_path / 'train.txt'))}, line 4: user 0 is listed again "
                                         r"\(first on line 1\): the format has one line a user"):
        load_lightgcn(tmp_path)


def test_lightgcn_loader_reads_ids_as_the_table_loaders_do(tmp_path):
    """int() also takes '1_0' (read as item 10) and non-ASCII digits ('\u0663' read as item 3): both were loaded as
    other ids without a word, where u.data refuses them; an undecodable byte raised a bare UnicodeDecodeError
    naming neither the file nor the line."""
    train = re.escape(str(tmp_path / "train.txt"))
    for token in ("1_0", "\u0663"):
        _lightgcn_files(tmp_path, "0 1\n")
        (tmp_path / "train.txt").write_bytes(f"0 1\n1 {token}\n".encode())
        with pytest.raises(ValueError, match=rf"^{train}, line 2: {re.escape(repr(token))} is not an integer id"):
            load_lightgcn(tmp_path)
    (tmp_path / "train.txt").write_bytes(b"0 1\n1 \xe92\n")
    with pytest.raises(ValueError, match=rf"^{train}, line 2: '.2' is not an integer id"):
        load_lightgcn(tmp_path)
    _lightgcn_files(tmp_path, "0 +1\n1 0\n")  # a sign is still an integer, as int() and u.data read it
    assert pairs_of(load_lightgcn(tmp_path)[0]) == [(0, 1), (1, 0)]


def test_lightgcn_loader_keeps_raw_ids_through_a_split(tmp_path):
    """Every loader keeps the file's ids as raw_id (docs/data.rst): the LightGCN one did not, so a split that
    renumbered the nodes lost the way back to them."""
    _lightgcn_files(tmp_path, "0 1 2\n1 2 3\n2 3 0\n3 0 1\n", "0 0\n")
    train, test = load_lightgcn(tmp_path)
    for graph in (train, test):
        assert graph["user"].raw_id.tolist() == [0, 1, 2, 3] and graph["item"].raw_id.tolist() == [0, 1, 2, 3]
    part = random_split(train, (0.5, 0.5, 0.0), seed=0).train
    edges = part[EDGE].edge_index
    kept = {(int(part["user"].raw_id[u]), int(part["item"].raw_id[i])) for u, i in edges.t().tolist()}
    assert kept <= set(pairs_of(train)) and len(kept) == edges.size(1)


def test_lightgcn_loader_refuses_ids_far_sparser_than_contiguous(tmp_path):
    """Every table is sized by the largest id: one stray 9999999999 asked for 80 GB (a RuntimeError in torch)."""
    _lightgcn_files(tmp_path, "0 1\n9999999999 0\n", test="0 0\n")
    with pytest.raises(ValueError, match=re.escape(f"{tmp_path}: the largest user id is 9999999999, but only 2 user "
                                                   "ids are used: the LightGCN format holds contiguous 0-based ids")):
        load_lightgcn(tmp_path)
    _lightgcn_files(tmp_path, "0 1\n1 1000\n", test="0 0\n")  # gaps within the slack load
    assert num_items(load_lightgcn(tmp_path)[0]) == 1001


def test_lightgcn_loader_rejects_an_empty_file(tmp_path):
    _lightgcn_files(tmp_path, "0 1 2\n1 0\n", test="")
    with pytest.raises(ValueError, match=rf"^{re.escape(str(tmp_path / 'test.txt'))} is empty$"):
        load_lightgcn(tmp_path)
    _lightgcn_files(tmp_path, "\n  \n")
    with pytest.raises(ValueError, match=rf"^{re.escape(str(tmp_path / 'train.txt'))} is empty$"):
        load_lightgcn(tmp_path)
    _lightgcn_files(tmp_path, "0 1\n", test="0\n1\n")
    with pytest.raises(ValueError, match="test.txt holds no \\(user, item\\) pairs"):
        load_lightgcn(tmp_path)


def test_lightgcn_loader_accepts_users_without_items(tmp_path):
    # CRLF, a blank line, and user 2 listed alone (no test items; user 3 has no train items).
    _lightgcn_files(tmp_path, "0 1 2\r\n1 0\r\n\r\n2 3\r\n3\r\n", test="0 3\n1 2\n2\n3 0\n")
    train, test = load_lightgcn(tmp_path)
    assert pairs_of(train) == [(0, 1), (0, 2), (1, 0), (2, 3)]
    assert pairs_of(test) == [(0, 3), (1, 2), (3, 0)]
    assert (num_users(train), num_items(train)) == (num_users(test), num_items(test)) == (4, 4)
    _lightgcn_files(tmp_path, "0 1\n1 0\n4\n", test="0 0\n")  # a user id alone still counts in the id space
    assert num_users(load_lightgcn(tmp_path)[0]) == 5


@pytest.mark.parametrize("text, line, problem", [
    ("1\t2\t3\t4\n1\tx\t3\t4\n", 2, "column 'item': 'x' is not an integer"),
    ("# a comment\n1\t2\t3\t4\n\n1\t2\t3\n", 4, "3 fields, expected 4 (user item rating timestamp)"),
    ("1\t2\t3.5\t4\n", 1, "column 'rating': '3.5' is not an integer"),
    ("1\t2\t3\t4\n1\t9223372036854775808\t3\t4\n", 2, "column 'item': 9223372036854775808 is beyond 64-bit integers"),
    # a column too many on every line (a shifted export) had been read by its first four: qa185
    ("1\t10\t5\t100\t7\n2\t11\t3\t101\t8\n", 1, "5 fields, expected 4 (user item rating timestamp)"),
], ids=["not-an-id", "short-line", "float", "beyond-int64", "wide-table"])
def test_movielens_loader_names_the_file_and_line_of_a_malformed_line(tmp_path, text, line, problem):
    path = tmp_path / "u.data"
    path.write_text(text)
    with pytest.raises(ValueError, match=f"^{re.escape(f'{path}, line {line}: {problem}')}$"):
        load_movielens_100k(tmp_path)


def test_movielens_loader_names_the_line_of_a_non_ascii_digit(tmp_path):
    """'\u0663' (Arabic-Indic 3) matched the line finder's \\d: the error fell back to numpy's, naming no line."""
    path = tmp_path / "u.data"
    path.write_bytes("1\t2\t3\t4\n1\t\u0663\t3\t4\n".encode())
    problem = f"line 2: column 'item': {chr(0x663)!r} is not an integer"
    with pytest.raises(ValueError, match=f"^{re.escape(f'{path}, {problem}')}$"):
        load_movielens_100k(tmp_path)


def test_table_loaders_reject_empty_files_and_short_lines(tmp_path):
    (tmp_path / "u.data").write_text("\n")
    with pytest.raises(ValueError, match=rf"^{re.escape(str(tmp_path / 'u.data'))} is empty$"):
        load_movielens_100k(tmp_path)
    triples = tmp_path / "ratings_final.txt"
    triples.write_text("0\t7\t1\r\n0\t8\r\n")
    with pytest.raises(ValueError, match=f"^{re.escape(f'{triples}, line 2: 2 fields, expected 3 (user item label)')}"):
        load_labelled_triples(triples)
    triples.write_text("9\t0\t7\t1\r\n9\t0\t8\t0\r\n")  # an id column in front: its ids had been read as users
    with pytest.raises(ValueError, match=f"^{re.escape(f'{triples}, line 1: 4 fields, expected 3 (user item label)')}"):
        load_labelled_triples(triples)
    triples.write_text("0\t7\t1\r\n0\t8\t0\r\n0\t9\t-1\r\n")  # still read when well formed
    # label 0 alone is a sampled negative: a -1 (a thumbs-down) is the user's own, which forget must find
    assert load_labelled_triples(triples)[EDGE].observed.tolist() == [True, False, True]


def test_book_crossing_refuses_a_label_other_than_0_or_1_naming_its_line(tmp_path):
    """A Book-Crossing label of 2 (or -1) was read, and the attack protocol failed later by the seed's draw: in the
    flip, in the validation split, or after training in the test split, naming neither the file nor the line. A
    triples file of ratings is still read (``fit --format triples --threshold``)."""
    triples = tmp_path / "bookcrossing" / "ratings_final.txt"
    triples.parent.mkdir()
    for label in (2, -1):
        triples.write_text(f"# a comment\n0\t7\t1\n\n0\t8\t{label}\n3\t8\t{label}\n3\t9\t0\n")
        expected = f"{triples}, line 4: column 'label': {label} is not 0 or 1 (1: an interaction, 0: a sampled " \
                   "negative)"
        for load in (lambda: load_labelled_triples(triples, binary=True),
                     lambda: load_dataset("bookcrossing", tmp_path),
                     lambda: prepare_attack_data("bookcrossing", tmp_path)):
            with pytest.raises(ValueError, match=f"^{re.escape(expected)}; 2 rows in all$"):
                load()
        assert load_labelled_triples(triples)[EDGE].edge_label.tolist() == [1, label, label, 0]


def test_loaders_report_missing_files(tmp_path):
    # both places a u.data is read from (the folder's own is read first; the message named ml-100k/ alone)
    with pytest.raises(FileNotFoundError, match=re.escape(f"no u.data in {tmp_path} nor in {tmp_path / 'ml-100k'}")):
        load_movielens_100k(tmp_path)
    with pytest.raises(FileNotFoundError):
        load_lightgcn(tmp_path)


def test_loaders_given_the_data_file_itself(tmp_path):
    """The path of u.data (or of ML-100K's u1.base, in the same format) was looked for as a folder: 'dataset file
    not found: .../u.data/ml-100k/u.data' for a file that is there; train.txt given to load_lightgcn the same."""
    (tmp_path / "u1.base").write_text("1\t2\t5\t9\n3\t2\t1\t8\n")
    assert raw_pairs(load_movielens_100k(tmp_path / "u1.base")) == [(1, 2), (3, 2)]
    _lightgcn_files(tmp_path, "0 1\n")
    with pytest.raises(NotADirectoryError, match=re.escape(f"{tmp_path / 'train.txt'} is a file: give the folder "
                                                           "holding train.txt and test.txt")):
        load_lightgcn(tmp_path / "train.txt")


# --------------------------------------------------------------------------------------------- CSV, download

def test_load_csv_named_columns(tmp_path):
    path = tmp_path / "ratings.csv"
    path.write_text("ts;user;movie;stars\n"
                    "9;u7;m2;4.5\n"
                    "8;u3;m2;1\n"
                    "7;u7;m9;3\n"
                    "6;u5;m1;5\n")
    graph = load_csv(path, "user", "movie", "stars", delimiter=";")
    assert (num_users(graph), num_items(graph)) == (3, 3)
    users, items = list(graph["user"].raw_id), list(graph["item"].raw_id)
    got = [(users[u], items[i], y) for (u, i), y in zip(pairs_of(graph), graph[EDGE].edge_label.tolist())]
    assert got == [("u7", "m2", 4.5), ("u3", "m2", 1.0), ("u7", "m9", 3.0), ("u5", "m1", 5.0)]
    # Without a label column every row is a positive interaction.
    implicit = load_csv(path, "user", "movie", delimiter=";")
    assert torch.equal(implicit[EDGE].edge_label, torch.ones(4))


def test_load_csv_integer_ids_sort_numerically(tmp_path):
    path = tmp_path / "ratings.csv"
    path.write_text("u,i\n10,3\n9,3\n100,20\n")
    graph = load_csv(path, "u", "i")
    assert torch.equal(graph["user"].raw_id, torch.tensor([9, 10, 100]))
    assert raw_pairs(graph) == [(10, 3), (9, 3), (100, 20)]


@pytest.mark.parametrize("text, line, problem", [
    ("user,item\nu1,i1\nu2\n", 3, "no value in column 'item': the row has fewer fields than the header"),
    ("user,item,rating\nu1,,5\nu2,i2,1\n", 2, "column 'item' is empty"),
    ("user,item,rating\n\nu1,i1,5\n  ,i2,1\n", 4, "column 'user' is empty"),
    ("user,item,rating\nu1,i1,5\nu2,i2,abc\n", 3, "column 'rating': 'abc' is not a finite number"),
    ("user,item,rating\nu1,i1,nan\n", 2, "column 'rating': 'nan' is not a finite number"),
    ("user,item,rating\nu1,i1,\n", 2, "column 'rating' is empty"),
    # A decimal comma: was read as the rating 3, the extra field dropped.
    ("user,item,rating\nu1,i1,3,5\n", 2, "the row has more fields than the header: ['5'] beyond its 3 columns"),
    # Numbers to Python alone, as the ids are not read as integers: '4_5' was the rating 45, a full-width 3 was 3.
    ("user,item,rating\nu1,i1,4_5\n", 2, "column 'rating': '4_5' is not a finite number"),
    ("user,item,rating\nu1,i1,\uff13\n", 2, "column 'rating': '\uff13' is not a finite number"),
    # NumPy's strings drop trailing NULs: 'u1\x00' was stored as, and merged with, 'u1'.
    ("user,item\nu1,i1\nu1\x00,i1\n", 3, "column 'user': 'u1\\x00' holds a NUL character"),
], ids=["short-row", "empty-id", "blank-id", "not-a-number", "nan", "empty-label", "long-row", "underscore",
        "full-width", "nul"])
def test_load_csv_names_the_file_line_and_column_of_a_bad_row(tmp_path, text, line, problem):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    label_col = "rating" if text.startswith("user,item,rating") else None
    with pytest.raises(ValueError, match=f"^{re.escape(f'{path}, line {line}: {problem}')}$"):
        load_csv(path, "user", "item", label_col)


def test_load_csv_refuses_a_label_beyond_float32(tmp_path):
    """Labels are stored as float32: '1e39' passed the finite check in float64 and was stored as inf."""
    path = tmp_path / "big.csv"
    for value in ("1e39", "-4e38"):
        path.write_text(f"user,item,rating\nu1,i1,5\nu2,i1,{value}\n")
        problem = f"line 3: column 'rating': {value!r} is beyond the float32 range of labels"
        with pytest.raises(ValueError, match=f"^{re.escape(f'{path}, {problem}')}"):
            load_csv(path, "user", "item", "rating")
    path.write_text("user,item,rating\nu1,i1,3e38\n")  # within the range: kept
    assert load_csv(path, "user", "item", "rating")[EDGE].edge_label.isfinite().all()


def test_load_csv_refuses_an_unclosed_quote_that_swallows_later_rows(tmp_path):
    """'1000,"The 1000' opened a quote that ran to the end of the file: the 1,999 rows after it became one item id
    and the load went on without a word (2,000 of 3,000 rows lost); in a big file the csv module's own field limit
    raised a raw ``_csv.Error``."""
    path = tmp_path / "quote.csv"
    rows = [f"{u},{u % 50}" for u in range(3000)]
    rows[1000] = '1000,"The 1000'
    path.write_text("user,item\n" + "\n".join(rows) + "\n")
    problem = ("lines 1002-3001: column 'item' holds a line break: a quote opened on line 1002 runs to line 3001 "
               "(double a quote inside a value)")
    with pytest.raises(ValueError, match=f"^{re.escape(f'{path}, {problem}')}$"):
        load_csv(path, "user", "item")
    path.write_text('u,i,r\n1,2,"3\n' + "".join(f"{k},{k},4\n" for k in range(20000)))
    with pytest.raises(ValueError, match=re.escape(f"{path}, the row from line 2: not readable as CSV (field larger "
                                                   "than field limit (131072)): an unclosed quote?")):
        load_csv(path, "u", "i", "r")
    path.write_text('u,i,note\n1,2,"two\nlines"\n3,4,x\n')  # a line break in a column not read is the CSV's own
    assert raw_pairs(load_csv(path, "u", "i")) == [(1, 2), (3, 4)]
    path.write_text('u,i,note\n1,2,x\n3,4,"two\nlines"\n')  # closed on the last row too
    assert raw_pairs(load_csv(path, "u", "i")) == [(1, 2), (3, 4)]
    # open to the end in a column not read: 2 of 200 rows were read, without a word (a QA probe)
    titles = ['"Heat (1995)' if k == 1 else "x" for k in range(200)]
    path.write_text("u,i,title\n" + "".join(f"{k},{k},{title}\n" for k, title in enumerate(titles)))
    with pytest.raises(ValueError, match=re.escape(f"{path}, line 3: a quote opened on this row is still open at the "
                                                   "end of the file, so every later line was read as one value")):
        load_csv(path, "u", "i")


def test_load_csv_refuses_a_column_that_is_not_named(tmp_path):
    """None was a KeyError of the first row; a number beside a name a TypeError of sorting the missing columns."""
    path = tmp_path / "ratings.csv"
    path.write_text("u,i,r\n1,2,5\n")
    for columns, named in ((("u", None), "item_col=None"), (("uid", 1, "r"), "item_col=1")):
        with pytest.raises(ValueError, match=re.escape(f"name columns of the header, got {named}")):
            load_csv(path, *columns)


def test_load_csv_refuses_a_used_column_named_twice_in_the_header(tmp_path):
    """csv.DictReader keeps the last of two columns of one name: 'user' read the third column without a word."""
    path = tmp_path / "twice.csv"
    path.write_text("user,item,user\nu1,i1,u9\n")
    with pytest.raises(ValueError, match=re.escape(f"{path}: the header names column 'user' twice")):
        load_csv(path, "user", "item")
    path.write_text("user,item,x,x\nu1,i1,1,2\n")  # an unused column named twice is not read: no ambiguity
    assert list(load_csv(path, "user", "item")["user"].raw_id) == ["u1"]


def test_load_csv_strips_the_header_names_as_it_strips_values(tmp_path):
    """'user , item' held the column 'user ', not 'user', where the values' spaces were dropped."""
    path = tmp_path / "spaced.csv"
    path.write_text("user , item,rating\nu1 , i1,5\n")
    assert list(load_csv(path, "user", "item", "rating")["user"].raw_id) == ["u1"]
    path.write_text("user,item, user\nu1,i1,u9\n")  # one name once stripped: refused as twice
    with pytest.raises(ValueError, match=re.escape(f"{path}: the header names column 'user' twice")):
        load_csv(path, "user", "item")


def test_stripped_id_names_every_invisible_character_at_both_ends_once():
    """_visible_part strips every invisible character at each end (a space: str.isspace; a format character: Unicode
    category Cf), and the message lists each code point once, in the order they appear."""
    def refusal(value: str) -> str:
        with pytest.raises(ValueError) as caught:
            stripped_id(value)
        return str(caught.value)
    message = refusal("\u00a0\u200b\u00a0a b\u2060\ufeff\u00a0 ")  # the trailing ASCII blank is stripped first
    invisible = [c for c in "\u00a0\u200b\u00a0\u2060\ufeff\u00a0"]
    expected = ", ".join(dict.fromkeys(f"U+{ord(c):04X}" for c in invisible))
    assert expected == "U+00A0, U+200B, U+2060, U+FEFF"
    assert f"({expected}): remove it, or it would read as 'a b'" in message
    assert re.search(r"\(U\+00A0\): remove it, or it would read as 'a'$", refusal("a\u00a0\u00a0\u00a0"))
    assert stripped_id(" a\u00a0\u200bb\t") == "a\u00a0\u200bb"  # inside: kept


@pytest.mark.parametrize("value", ["\u200b", "\u00a0\u2060"])
def test_stripped_id_refuses_an_id_of_invisible_characters_only(value):
    """An id of invisible characters only prints as nothing: refused like one with them at an end."""
    with pytest.raises(ValueError, match=re.escape("remove it, or it would read as ''")):
        stripped_id(value)


def test_load_csv_refuses_an_id_that_a_non_ascii_space_would_merge_with_another(tmp_path):
    """str.strip() also drops U+00A0, which spreadsheets write: users 'a' and 'a\xa0' were read as one user 'a',
    whose training rows and deletion then took both people's interactions."""
    path = tmp_path / "nbsp.csv"
    path.write_text("user,item\na,i1\na\u00a0,i2\n", encoding="utf-8")
    expected = "line 3: column 'user': 'a\\xa0' begins or ends with a non-ASCII space or an invisible character " \
               "(U+00A0): remove it, or it would read as 'a'"
    with pytest.raises(ValueError, match=re.escape(expected)):
        load_csv(path, "user", "item")
    path.write_text("user,item\n\u2003\u00a0b,i1\n", encoding="utf-8")  # each code point once, in order
    with pytest.raises(ValueError, match=re.escape("(U+2003, U+00A0)")):
        load_csv(path, "user", "item")
    path.write_text("user,item\n a\t,\ti1 \na\u00a0b,i2\n", encoding="utf-8")  # ASCII blanks go; inner ones stay
    assert list(load_csv(path, "user", "item")["user"].raw_id) == ["a", "a\u00a0b"]
    # An invisible format character (qa171: a zero-width space kept made 'a\u200b' a user that prints as 'a').
    for invisible in ("\u200b", "\u2060", "\ufeff", "\u200e"):
        path.write_text(f"user,item\na,i1\na{invisible},i2\n", encoding="utf-8")
        with pytest.raises(ValueError, match=re.escape(f"line 3: column 'user': {'a' + invisible!r} begins or ends "
                                                       f"with a non-ASCII space or an invisible character "
                                                       f"(U+{ord(invisible):04X})")):
            load_csv(path, "user", "item")
    path.write_text("user,item\na\u200bb,i1\n", encoding="utf-8")  # inside an id: kept
    assert list(load_csv(path, "user", "item")["user"].raw_id) == ["a\u200bb"]


def first_two_lines_of(text: str, pair: tuple, split) -> list[int]:
    """Hand reference: the 1-based lines of ``text`` whose (user, item) is ``pair`` (the first two)."""
    found = [number for number, line in enumerate(text.splitlines(), start=1)
             if line.strip() and not line.startswith("#") and tuple(split(line)[:2]) == pair]
    return found[:2]


@pytest.mark.parametrize("kind", ["csv", "u.data"])
def test_a_pair_on_three_rows_is_named_at_its_first_two_lines(tmp_path, kind):
    """The duplicate error names the first two copies' lines, as every other duplicate message of the library does
    (make_interactions' and the LightGCN loader's 'at positions first and second'); a mutant naming the last copy
    (line 6, not 4) passed the suite, whose files hold each repeated pair twice only."""
    if kind == "csv":
        text = "user,item\nA,x\nB,y\nA,x\nC,z\nA,x\n"
        path = tmp_path / "r.csv"
        path.write_text(text)
        load = functools.partial(load_csv, path, "user", "item")
        lines = first_two_lines_of(text, ("A", "x"), lambda line: line.split(","))
        pair = "(A, x)"
    else:
        text = "# a comment\n1\t2\t3\t4\n\n5\t6\t1\t1\n1\t2\t4\t5\n7\t8\t1\t1\n1\t2\t5\t6\n"
        path = tmp_path / "u.data"
        path.write_text(text)
        load = functools.partial(load_movielens_100k, tmp_path)
        lines = first_two_lines_of(text, ("1", "2"), lambda line: line.split())
        pair = "(1, 2)"
    assert len(lines) == 2
    with pytest.raises(ValueError, match=re.escape(f"1 (user, item) pairs occur on several rows, the first {pair} "
                                                   f"(raw ids) on lines {lines[0]} and {lines[1]};")):
        load()


def test_movielens_reads_the_folders_own_u_data_before_ml_100k(tmp_path):
    """Documented order (the test of missing files says so, and the FileNotFoundError names both): ``root/u.data``
    first, then ``root/ml-100k/u.data``. A mutant reading ml-100k/ first passed the suite."""
    (tmp_path / "u.data").write_text("1\t2\t5\t9\n3\t4\t1\t8\n")
    (tmp_path / "ml-100k").mkdir()
    (tmp_path / "ml-100k" / "u.data").write_text("10\t20\t5\t9\n")
    assert raw_pairs(load_movielens_100k(tmp_path)) == [(1, 2), (3, 4)]
    (tmp_path / "u.data").unlink()  # then the data root's ml-100k/u.data
    assert raw_pairs(load_movielens_100k(tmp_path)) == [(10, 20)]


def test_unmarked_utf16_with_a_few_non_latin_ids_is_named_as_utf16(tmp_path):
    """UTF-16 without a byte-order mark is named by the NUL bytes of its ASCII characters (docs/data.rst): one id
    beyond U+00FF (the euro sign, bytes AC 20) leaves most, not all, of those bytes NUL. A mutant requiring every one
    of them NUL reported 'not UTF-8 text (invalid start byte): pass its encoding (encoding='latin-1', ...)'."""
    rows = [(f"u{i}", f"i{i % 7}") for i in range(40)] + [("u\u20ac", "i1")]
    text = "user,item\n" + "".join(f"{u},{i}\n" for u, i in rows)
    path = tmp_path / "r.csv"
    path.write_bytes(text.encode("utf-16-le"))
    high = path.read_bytes()[1::2]
    assert 0.9 <= high.count(0) / len(high) < 1  # the case at hand: nearly, not all, NUL
    with pytest.raises(ValueError, match=re.escape(f"{path} has the NUL bytes of ASCII text in UTF-16 without a "
                                                   "byte-order mark: it is UTF-16-LE text, not UTF-8: read it with "
                                                   "the encoding 'utf-16-le'")):
        load_csv(path, "user", "item")
    assert sorted(raw_pairs(load_csv(path, "user", "item", encoding="utf-16-le"))) == sorted(rows)


def test_a_quote_left_open_in_an_unread_column_of_a_cr_file_is_refused(tmp_path):
    """Old Mac line ends (CR alone): a quote opened in a column not read took in every later row (2 of 3 read,
    without a word) once the check looked for LF only; the csv module splits lines on CR as well."""
    path = tmp_path / "r.csv"
    path.write_bytes(b'user,item,note\r1,a,x\r2,b,"open\r3,c,z\r')
    with pytest.raises(ValueError, match=re.escape(f"{path}, line 3: a quote opened on this row is still open at the "
                                                   "end of the file")):
        load_csv(path, "user", "item")
    path.write_bytes(b'user,item,note\r1,a,x\r2,b,"closed\rnote"\r3,c,z\r')  # closed: three rows, as in LF files
    assert raw_pairs(load_csv(path, "user", "item")) == [(1, "a"), (2, "b"), (3, "c")]  # plain integers as such


def test_a_used_value_spanning_cr_line_ends_is_refused_with_its_lines(tmp_path):
    """docs/data.rst: 'A used value that holds a line break is refused with the lines it spans'. CR alone is a line
    break to the csv module; a mutant looking for LF alone read the item 'The 5\\r2,x\\r3,y' as one id."""
    path = tmp_path / "r.csv"
    path.write_bytes(b'user,item\r1,"The 5\r2,x\r3,y"\r')
    with pytest.raises(ValueError, match=re.escape(f"{path}, lines 2-4: column 'item' holds a line break")):
        load_csv(path, "user", "item")


def test_a_quoted_value_after_a_space_keeps_its_delimiter(tmp_path):
    """Spaces after the delimiter are dropped (docs/data.rst), so '1, "a,b", 5' is user 1, item 'a,b', rating 5:
    a mutant reading the space as part of the field split the quoted item and refused the row."""
    path = tmp_path / "r.csv"
    path.write_text('user, item, rating\n1, "a,b", 5\n2, c, 3\n')
    graph = load_csv(path, "user", "item", "rating")
    assert raw_pairs(graph) == [(1, "a,b"), (2, "c")]
    assert graph[("user", "rates", "item")].edge_label.tolist() == [5.0, 3.0]


def test_a_byte_order_mark_is_no_part_of_the_first_id_in_every_format(tmp_path):
    """CSV and edges files dropped the mark that Notepad writes; u.data, triples and LightGCN files failed on it
    ("'\\ufeff1' is not an integer") though the same bytes read as CSV."""
    mark = b"\xef\xbb\xbf"
    (tmp_path / "u.data").write_bytes(mark + b"1\t2\t3\t4\n5\t6\t1\t4\n")
    assert raw_pairs(load_movielens_100k(tmp_path)) == [(1, 2), (5, 6)]
    (tmp_path / "triples.txt").write_bytes(mark + b"1\t2\t1\n5\t6\t0\n")
    assert raw_pairs(load_labelled_triples(tmp_path / "triples.txt")) == [(1, 2), (5, 6)]
    (tmp_path / "triples.txt").write_bytes(mark + b"1\t2\t1\n5\tx\t0\n")  # a malformed line is still named
    with pytest.raises(ValueError, match="triples.txt, line 2"):
        load_labelled_triples(tmp_path / "triples.txt")
    (tmp_path / "triples.txt").write_bytes(mark + b"# user item label\r\n0\t1\t1\r\n0\t2\t7\r\n")  # a comment first
    with pytest.raises(ValueError, match="triples.txt, line 3"):  # was line 2: the mark's line counted as a row
        load_labelled_triples(tmp_path / "triples.txt", binary=True)
    (tmp_path / "train.txt").write_bytes(mark + b"0 1 2\n1 0\n")
    (tmp_path / "test.txt").write_bytes(mark + b"0 0\n1 2\n")
    train, test = load_lightgcn(tmp_path)
    assert train[EDGE].edge_index.tolist() == [[0, 0, 1], [1, 2, 0]] and test[EDGE].edge_index.tolist() == [[0, 1],
                                                                                                           [0, 2]]


def test_load_csv_refuses_an_id_too_long_to_store_and_a_file_that_is_no_regular_file(tmp_path):
    """numpy keeps a column of string ids at its longest id's width: one 100,000-character id in a 2,000-row file
    took 3.5 GB. A pipe (``--data <(zcat x.gz)``) was reported as "not found"."""
    path = tmp_path / "ratings.csv"
    path.write_text("user,item\n" + "u" * MAX_ID_LENGTH + ",i1\nu2,i2\n")
    assert max(map(len, load_csv(path, "user", "item")["user"].raw_id)) == MAX_ID_LENGTH
    path.write_text("user,item\nu1,i1\nu2," + "i" * (MAX_ID_LENGTH + 1) + "\n")
    with pytest.raises(ValueError, match=f"ratings.csv, line 3: column 'item': an id of {MAX_ID_LENGTH + 1:,} "
                                         "characters, over the 1,024"):
        load_csv(path, "user", "item")
    os.mkfifo(tmp_path / "pipe.csv")
    with pytest.raises(ValueError, match="pipe.csv is not a regular file .*: save the dataset file to a file and"):
        load_csv(tmp_path / "pipe.csv", "user", "item")
    with pytest.raises(FileNotFoundError, match="dataset file not found: .*gone.csv"):
        load_csv(tmp_path / "gone.csv", "user", "item")

def test_load_csv_takes_blank_trailing_fields(tmp_path):
    path = tmp_path / "ratings.csv"
    path.write_text("u,i,r\n1,3,5,\n2,3,4, \n")  # a spreadsheet's empty last column
    assert raw_pairs(load_csv(path, "u", "i", "r")) == [(1, 3), (2, 3)]


def test_load_csv_skips_rows_of_blank_fields_as_blank_lines(tmp_path):
    """A line of spaces an editor left stopped the file ("column 'user' is empty") where an empty line is skipped;
    so did a spreadsheet's row of empty cells (a QA probe). A row with one value is still a row."""
    path = tmp_path / "ratings.csv"
    path.write_text("u,i,r\n1,3,5\n  \n,,\n2,3,4\n , ,\t\n")
    assert raw_pairs(load_csv(path, "u", "i", "r")) == [(1, 3), (2, 3)]
    path.write_text("u,i,r\n1,3,5\n  \n,,\n2,3,4\n,,1\n")
    with pytest.raises(ValueError, match="ratings.csv, line 6: column 'u' is empty"):
        load_csv(path, "u", "i", "r")


def test_load_csv_keeps_ids_written_differently_apart(tmp_path):
    path = tmp_path / "ratings.csv"
    path.write_text("u,i\n007,3\n7,3\n99999999999999999999,4\n")  # padded, plain, beyond int64
    graph = load_csv(path, "u", "i")
    assert list(graph["user"].raw_id) == ["007", "7", "99999999999999999999"]  # three users, kept as strings
    assert torch.equal(graph["item"].raw_id, torch.tensor([3, 4]))  # plain integers still sort numerically
    path.write_bytes(b"\xef\xbb\xbfu,i\n1,2\n")  # a spreadsheet's byte-order mark before the header
    assert torch.equal(load_csv(path, "u", "i")["user"].raw_id, torch.tensor([1]))
    path.write_bytes("u,i\nJosé,2\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"ratings.csv, line 2: not UTF-8 text \(invalid continuation byte\): pass"):
        load_csv(path, "u", "i")  # the line: one bad byte is a row to mend, where latin-1 would garble the rest
    rows = "".join(f"Zoë{n},2\n" for n in range(3000)).encode()
    path.write_bytes(b"u,i\n" + rows + "José,2\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"ratings.csv, line 3002: not UTF-8 text"):  # past the reader's first chunk
        load_csv(path, "u", "i")
    path.write_bytes("u,i\nJosé,2\n".encode("latin-1"))
    assert list(load_csv(path, "u", "i", encoding="latin-1")["user"].raw_id) == ["José"]
    with pytest.raises(ValueError, match=r"ratings.csv, line \d+: not utf-16 text .*: pass its encoding"):
        load_csv(path, "u", "i", encoding="utf-16")  # the codec's own error named neither the file nor the option
    for unknown in ("latin-9000", "base64"):  # no such codec; a codec of bytes, not of text
        with pytest.raises(ValueError, match=f"unknown text encoding '{unknown}'"):
            load_csv(path, "u", "i", encoding=unknown)
    path.write_bytes(b"\xef\xbb\xbfu,i\n1,2\n")
    assert torch.equal(load_csv(path, "u", "i", encoding="UTF8")["user"].raw_id, torch.tensor([1]))  # any spelling
    path.write_text("u, i, r\n1, 2, 5\n10 , 3, 4\n")  # spaces around the values (and in the header)
    graph = load_csv(path, "u", "i", "r")
    assert torch.equal(graph["user"].raw_id, torch.tensor([1, 10])) and torch.equal(graph["item"].raw_id,
                                                                                     torch.tensor([2, 3]))


def test_load_csv_errors(tmp_path):
    path = tmp_path / "ratings.csv"
    path.write_text("user,item,rating\n1,2,3\n")
    with pytest.raises(ValueError, match="movie"):
        load_csv(path, "user", "movie")
    with pytest.raises(ValueError, match="stars"):
        load_csv(path, "user", "item", "stars")
    empty = tmp_path / "empty.csv"
    empty.write_text("user,item\n")
    with pytest.raises(ValueError, match="no rows"):
        load_csv(empty, "user", "item")
    with pytest.raises(FileNotFoundError):
        load_csv(tmp_path / "absent.csv", "user", "item")
    empty.write_text("")  # not even a header: it said "columns [...] not in empty.csv (has None)"
    with pytest.raises(ValueError, match="empty.csv is empty: a CSV file starts with a header naming its columns"):
        load_csv(empty, "user", "item")
    with pytest.raises(IsADirectoryError, match="is a folder: give the dataset file"):
        load_csv(tmp_path, "user", "item")


def test_download_file_url_with_md5(tmp_path):
    source = tmp_path / "source.txt"
    source.write_bytes(b"0 1 2\n1 2\n")
    target = tmp_path / "deep" / "dir" / "train.txt"
    out = download(source.as_uri(), target, md5=md5(source))
    assert out == target
    assert target.read_bytes() == source.read_bytes()
    assert sorted(target.parent.iterdir()) == [target]  # no temporary file left
    # Without a checksum it also works (and overwrites).
    source.write_bytes(b"changed\n")
    download(source.as_uri(), target)
    assert target.read_bytes() == b"changed\n"


def test_downloads_of_one_file_at_once_each_publish_it_whole(tmp_path):
    """Two cron jobs on a fresh data folder: a shared temporary name was truncated by the other download, which then
    failed its checksum or its rename (10 of 10 tries of two processes, found by a probe)."""
    source = tmp_path / "source.txt"
    source.write_bytes(bytes(range(256)) * 40_000)  # 10 MB
    target, start = tmp_path / "data" / "train.txt", threading.Barrier(4)

    def fetch():
        start.wait()
        return download(source.as_uri(), target, md5=md5(source))

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        assert [f.result() for f in [pool.submit(fetch) for _ in range(4)]] == [target] * 4
    assert target.read_bytes() == source.read_bytes() and sorted(target.parent.iterdir()) == [target]


def test_a_connection_lost_mid_download_is_named_by_its_url_and_leaves_nothing(tmp_path):
    """The read runs inside atomic_write, which named the file written for an error naming none: a connection reset
    read "Connection reset by peer: '.../train.txt'" (a QA probe)."""
    server = socket.create_server(("127.0.0.1", 0))

    def send_half_then_reset():
        connection, _ = server.accept()
        connection.recv(65536)
        connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n" + b"x" * 5000)
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close with a reset
        connection.close()

    threading.Thread(target=send_half_then_reset, daemon=True).start()
    url, target = f"http://127.0.0.1:{server.getsockname()[1]}/train.txt", tmp_path / "data" / "train.txt"
    with pytest.raises(OSError) as caught:
        download(url, target)
    server.close()
    assert caught.value.filename == url and "train.txt'" not in str(caught.value).replace(url, "")
    assert list(target.parent.iterdir()) == []


def test_download_md5_mismatch_removes_the_file(tmp_path):
    source = tmp_path / "source.txt"
    source.write_bytes(b"payload")
    target = tmp_path / "out" / "file.txt"
    with pytest.raises(ValueError, match="md5 mismatch"):
        download(source.as_uri(), target, md5="0" * 32)
    assert not target.exists()
    assert list(target.parent.iterdir()) == []  # no partial file left behind either


# --------------------------------------------------------------------------------------------- k-core

def test_k_core_against_reference(random_graph):
    # Sparse random graph: removing low-degree nodes cascades over several rounds.
    graph = with_raw_ids(random_graph(60, 40, 330, seed=3))
    label_of = dict(zip(raw_pairs(graph), graph[EDGE].edge_label.tolist()))
    for k in (2, 4, 6):
        core = k_core(graph, k)
        expected, rounds = k_core_reference(raw_pairs(graph), k)
        if k == 6:
            assert rounds >= 2  # the case really exercises the iteration
        got = raw_pairs(core)
        assert len(got) == len(set(got))
        assert set(got) == expected
        assert core[EDGE].edge_label.tolist() == [label_of[p] for p in got]
        _check_core_invariants(core, k)


def _check_core_invariants(core, k):
    ei = core[EDGE].edge_index
    deg_u = torch.bincount(ei[0], minlength=num_users(core))
    deg_i = torch.bincount(ei[1], minlength=num_items(core))
    # Contiguous ids, every node kept has >= k edges.
    assert deg_u.numel() == num_users(core) and deg_i.numel() == num_items(core)
    assert bool((deg_u >= k).all()) and bool((deg_i >= k).all())
    assert core["user"].raw_id.numel() == num_users(core)
    assert core["item"].raw_id.numel() == num_items(core)


def test_k_core_on_bookcrossing(data_root):
    graph = load_labelled_triples(data_root / "bookcrossing")
    core = k_core(graph, 10)
    expected, rounds = k_core_reference(raw_pairs(graph), 10)
    assert rounds > 5
    assert set(raw_pairs(core)) == expected
    assert core[EDGE].edge_index.size(1) == len(expected)
    _check_core_invariants(core, 10)
    # Edge attributes follow their edges.
    assert torch.equal(core[EDGE].observed, core[EDGE].edge_label > 0)


def test_k_core_below_one_is_identity(tiny_graph):
    assert k_core(tiny_graph, 0) is tiny_graph


# --------------------------------------------------------------------------------------------- binarize

def test_binarize(data_root):
    graph = load_movielens_100k(data_root)
    before = graph[EDGE].edge_label.clone()
    binary = binarize(graph, 4)
    assert torch.equal(binary[EDGE].edge_label, (before >= 4).float())
    assert int(binary[EDGE].edge_label.sum()) == 55_375  # ratings >= 4 in u.data
    assert torch.equal(graph[EDGE].edge_label, before)  # input untouched
    assert torch.equal(binary[EDGE].edge_index, graph[EDGE].edge_index)
    assert torch.equal(binary["user"].raw_id, graph["user"].raw_id)
    assert torch.equal(binary[EDGE].timestamp, graph[EDGE].timestamp)


def test_binarize_threshold_hand_case():
    graph = make_interactions(torch.tensor([[0, 0, 1, 1, 2], [0, 1, 0, 1, 1]]), torch.tensor([1., 3.5, 4., 5., 2.]))
    assert binarize(graph, 4)[EDGE].edge_label.tolist() == [0., 0., 1., 1., 0.]
    assert binarize(graph, 3.5)[EDGE].edge_label.tolist() == [0., 1., 1., 1., 0.]
    assert binarize(graph, 5)[EDGE].edge_label.tolist() == [0., 0., 0., 1., 0.]
    with pytest.raises(ValueError, match=r"no label reaches the threshold 5.5 \(the labels run from 1 to 5\)"):
        binarize(graph, 5.5)
    with pytest.raises(ValueError, match="threshold must be a finite number, got True"):
        binarize(graph, True)  # is 1 to Python: every label reached it


def test_a_rating_a_float32_away_from_the_threshold_is_compared_as_written(tmp_path):
    """Labels were float32, and so was the comparison: 3.9999999 reached 4 (it is 4.0 in float32), and 3.5
    reached 3.50000001 (which is 3.5). A file whose ratings float32 holds keeps float32 labels."""
    path = tmp_path / "ratings.csv"
    path.write_text("user,item,rating\nu1,i1,3.9999999\nu1,i2,4\nu2,i1,3.5\nu2,i2,5\n")
    graph = load_csv(path, "user", "item", "rating")
    assert graph[EDGE].edge_label.dtype == torch.float64
    assert binarize(graph, 4)[EDGE].edge_label.tolist() == [0., 1., 0., 1.]
    assert binarize(graph, 3.50000001)[EDGE].edge_label.tolist() == [1., 1., 0., 1.]
    assert binarize(graph, 4)[EDGE].edge_label.dtype == torch.float32
    path.write_text("user,item,rating\nu1,i1,3.5\nu1,i2,4\n")
    graph = load_csv(path, "user", "item", "rating")
    assert graph[EDGE].edge_label.dtype == torch.float32
    assert binarize(graph, 3.50000001)[EDGE].edge_label.tolist() == [0., 1.]


def test_make_interactions_keeps_float64_labels():
    """make_interactions stored every label as float32, as the loaders do not: a rating of 3.9999999 reached
    binarize's threshold 4, and a label of 0.99999999 trained as 1 (BCE refuses it in a float64 graph)."""
    from graphforget import BCEObjective
    edges = torch.tensor([[0, 0, 1, 1], [0, 1, 0, 1]])
    graph = make_interactions(edges, torch.tensor([3.9999999, 5, 1, 2], dtype=torch.float64))
    assert graph[EDGE].edge_label.dtype == torch.float64
    assert binarize(graph, 4)[EDGE].edge_label.tolist() == [0., 1., 0., 0.]
    near_one = make_interactions(edges, np.array([0.99999999, 1, 0, 0]))
    with pytest.raises(ValueError, match=r"BCEObjective needs edge_label in \{0, 1\}, got 1 other labels"):
        BCEObjective().check(near_one)
    for labels in (torch.tensor([1, 1, 0, 0]), [1.0, 1.0, 0.0, 0.0], None):  # other labels: float32, as before
        assert make_interactions(edges, labels)[EDGE].edge_label.dtype == torch.float32


# --------------------------------------------------------------------------------------------- random split

def _parts_raw(split: Split):
    return [raw_pairs(part) for part in (split.train, split.val, split.test)]


def test_random_split_counts_on_a_complete_graph():
    # 15 x 12 complete bipartite graph: every user/item lands in train, so nothing is dropped.
    users, items = torch.meshgrid(torch.arange(15), torch.arange(12), indexing="ij")
    graph = with_raw_ids(make_interactions(torch.stack([users.flatten(), items.flatten()])))
    split = random_split(graph, seed=4)
    sizes = [part[EDGE].edge_index.size(1) for part in (split.train, split.val, split.test)]
    assert sizes == [108, 36, 36]
    parts = _parts_raw(split)
    assert sorted(parts[0] + parts[1] + parts[2]) == sorted(raw_pairs(graph))
    assert "train=108" in repr(split)


def test_random_split_invariants(random_graph):
    graph = with_raw_ids(random_graph(50, 70, 400, seed=1))
    label_of = dict(zip(raw_pairs(graph), graph[EDGE].edge_label.tolist()))
    num_edges = 400
    split = random_split(graph, (0.6, 0.2, 0.2), seed=7)
    train, val, test = split.train, split.val, split.test
    parts = _parts_raw(split)
    n_train, n_val = round(0.6 * num_edges), round(0.2 * num_edges)
    assert len(parts[0]) == n_train  # training rows are never dropped
    assert len(parts[1]) <= n_val and len(parts[2]) <= num_edges - n_train - n_val
    # Disjoint parts, each a subset of the input with the input's labels (raw ids consistent).
    sets = [set(p) for p in parts]
    assert sum(map(len, sets)) == len(set().union(*sets)) == sum(map(len, parts))
    for part, raws in zip((train, val, test), parts):
        assert part[EDGE].edge_label.tolist() == [label_of[p] for p in raws]
        # Every part shares the training id space: its rows only hold users/items of the training part.
        assert (num_users(part), num_items(part)) == (num_users(train), num_items(train))
        pei = part[EDGE].edge_index
        assert pei.min() >= 0 and pei[0].max() < num_users(train) and pei[1].max() < num_items(train)
        assert torch.equal(part["user"].raw_id, train["user"].raw_id)
        assert torch.equal(part["item"].raw_id, train["item"].raw_id)
    # Contiguous ids: every user and item id of the training graph has a training edge.
    ei = train[EDGE].edge_index
    assert ei[0].unique().numel() == num_users(train) and ei[1].unique().numel() == num_items(train)
    # Dropped rows are exactly those whose raw user or item never occurs in train.
    train_users, train_items = {u for u, _ in parts[0]}, {i for _, i in parts[0]}
    dropped = set(label_of) - set().union(*sets)
    assert dropped == {(u, i) for u, i in label_of if (u, i) not in sets[0]
                       and (u not in train_users or i not in train_items)}
    assert len(dropped) > 0  # the case exercises the dropping
    assert len(parts[1]) + len(parts[2]) + len(dropped) == num_edges - n_train


def test_a_split_or_core_of_a_graph_without_raw_ids_keeps_its_ids_as_raw_ids(random_graph):
    """A graph built with make_interactions from PyG ids was renumbered with no way back: a request in those ids was
    accepted and removed another item's edge (a QA probe). The nodes keep their ids in the graph as raw ids."""
    graph = random_graph(50, 70, 400, seed=1)
    pairs = set(zip(*graph[EDGE].edge_index.tolist()))
    split, core = random_split(graph, (0.6, 0.2, 0.2), seed=7), k_core(graph, 6)
    for part in (split.train, split.val, split.test, core):
        assert num_items(part) < 70 and set(raw_pairs(part)) <= pairs
    assert set(raw_pairs(split.train)) | set(raw_pairs(split.val)) | set(raw_pairs(split.test)) < pairs
    core = k_core(make_interactions(torch.tensor([[0, 0, 0, 1, 1], [0, 1, 2, 0, 1]]), None, 2, 3), 2)  # item 2 goes
    assert (num_users(core), num_items(core)) == (2, 2)
    assert core["user"].raw_id.tolist() == core["item"].raw_id.tolist() == [0, 1]


def test_random_split_says_how_many_held_out_pairs_it_dropped(caplog):
    """Validation and test pairs of a user or item without a training edge are dropped (the model has no row for
    them): 300 of Book-Crossing's went without a word."""
    graph = make_interactions(torch.tensor([[0, 0, 1, 2], [0, 1, 0, 2]]), None, 3, 3)  # (2, 2): user 2, item 2 alone
    with caplog.at_level(logging.INFO, logger="graphforget.data.transforms"):
        split = random_split(graph, (0.5, 0.5, 0.0), seed=1)
    lost = 2 - split.val[EDGE].edge_index.size(1)
    assert lost > 0 and f"random_split: dropped {lost} validation and 0 test pairs" in caplog.text


def test_random_split_seeded(random_graph):
    graph = with_raw_ids(random_graph(50, 70, 400, seed=1))
    first, again, other = random_split(graph, seed=7), random_split(graph, seed=7), random_split(graph, seed=8)
    assert _parts_raw(first) == _parts_raw(again)
    assert set(_parts_raw(first)[0]) != set(_parts_raw(other)[0])


def test_random_split_counts_with_uneven_ratios():
    # 11 x 13 complete graph, 143 edges: 0.6 * 143 = 85.8 -> 86 train rows, 0.3 * 143 = 42.9 -> 43 validation rows,
    # the 14 others test rows (validation and test parts of different sizes: neither count is the other's).
    users, items = torch.meshgrid(torch.arange(11), torch.arange(13), indexing="ij")
    graph = make_interactions(torch.stack([users.flatten(), items.flatten()]))
    split = random_split(graph, (0.6, 0.3, 0.1), seed=0)
    assert (num_users(split.train), num_items(split.train)) == (11, 13)  # nobody dropped: the counts are exact
    assert [part[EDGE].edge_index.size(1) for part in (split.train, split.val, split.test)] == [86, 43, 14]


def test_random_split_gives_a_part_of_ratio_zero_no_edge():
    """(0.9, 0.1, 0) on 25 edges: round(22.5) + round(2.5) = 22 + 2, and the 25th edge went to the test part of
    ratio 0, which the split with a file's own test set throws away (one edge in 20 such sizes lost)."""
    for users, items in ((5, 5), (5, 9), (13, 5), (3, 7)):  # 25, 45, 65, 21 edges
        u, i = torch.meshgrid(torch.arange(users), torch.arange(items), indexing="ij")
        graph = make_interactions(torch.stack([u.flatten(), i.flatten()]))
        num_edges = users * items
        for ratios in ((0.9, 0.1, 0.0), (0.7, 0.3, 0.0), (0.9, 0.0, 0.1), (1.0, 0.0, 0.0)):
            for seed in range(3):
                split = random_split(graph, ratios, seed=seed)
                sizes = [part[EDGE].edge_index.size(1) for part in (split.train, split.val, split.test)]
                assert sizes[0] == round(ratios[0] * num_edges)
                assert all(size == 0 for size, ratio in zip(sizes, ratios) if ratio == 0), (ratios, sizes)
                dropped = num_edges - sum(sizes)  # rows of nodes without a training edge, none with 90% in train
                assert dropped == 0 or ratios[0] < 0.9, (ratios, sizes)


@pytest.mark.parametrize("ratios", [(0.5, 0.5), (0.6, 0.3, 0.2), (0.0, 0.5, 0.5), (1.2, -0.1, -0.1),
                                    (math.nan, 0.5, 0.5), (0.6, math.nan, 0.4), 0.6, ("0.6", "0.2", "0.2"),
                                    torch.tensor([0.6, 0.2, 0.2])])
def test_random_split_bad_ratios(tiny_graph, ratios):
    with pytest.raises(ValueError, match="ratios"):
        random_split(tiny_graph, ratios)


def _unchecked_graph(edge_index, users: int, items: int, labels=None) -> HeteroData:
    """A graph built by hand, without make_interactions' checks."""
    graph = HeteroData()
    graph["user"].num_nodes, graph["item"].num_nodes = users, items
    graph[EDGE].edge_index = torch.tensor(edge_index)
    graph[EDGE].edge_label = torch.ones(len(edge_index[0])) if labels is None else torch.tensor(labels)
    return graph


@pytest.mark.parametrize("edge_index, labels, match", [
    ([[0, 1], [0, 3]], None, r"item id 3 at position 1, outside \[0, num_items\) = \[0, 3\)"),  # keyed (2, 0)
    ([[0, -1], [0, 1]], None, "user id -1 at position 1"),  # random_split read garbage ids
    ([[0, 1], [0.0, 1.0]], None, "integer .* ids, got dtype torch.float32"),
    ([[0, 0, 1], [0, 0, 1]], None, "holds 1 duplicated"),  # k_core counted the pair twice
    ([[0, 1], [0, 1]], [1.0, math.nan], "1 edge_label values are NaN")])  # add_negatives carried the NaN
def test_transforms_refuse_a_graph_that_make_interactions_would_refuse(edge_index, labels, match):
    graph = _unchecked_graph(edge_index, 3, 3, labels)
    for transform in (lambda g: k_core(g, 1), lambda g: binarize(g, 0.5), random_split, add_negatives):
        with pytest.raises(ValueError, match=match):
            transform(graph)
    if labels is None and "duplicated" not in match:  # relabel's own: ids (it keeps labels and pairs as given)
        keep = [torch.ones(n, dtype=torch.bool) for n in (3, 3, graph[EDGE].edge_index.size(1))]
        with pytest.raises(ValueError, match=match):  # a negative id came back as garbage
            relabel(graph, *keep)


def test_adjacencies_refuse_ids_out_of_range_and_a_pattern_a_repeated_pair():
    """A user id past the users is an item's node: the matrix joined two items. A repeated pair's pattern entry
    held the sum of two edges' positions: 0.5 where normalized_adjacency has 1."""
    for build in (normalized_adjacency, observed_adjacency, AdjacencyPattern.of):
        for edge_index, match in (([[0, 2], [0, 1]], "user id 2 at position 1"), ([[0, 1], [0, 2]], "item id 2"),
                                  ([[0, -1], [0, 1]], "user id -1")):
            with pytest.raises(ValueError, match=match):
                build(_unchecked_graph(edge_index, 2, 2))
    with pytest.raises(ValueError, match="the graph's observed edges holds 1 duplicated"):
        AdjacencyPattern.of(_unchecked_graph([[0, 1, 0], [0, 1, 0]], 2, 2))
    # The matrices summed a repeated pair's two entries, and every model's scoring propagated it twice
    for build in (normalized_adjacency, observed_adjacency):
        with pytest.raises(ValueError, match=re.escape("edge_index holds 1 duplicated (user, item) pairs, the first "
                                                       "(1, 0) at positions 1 and 2")):
            build(_unchecked_graph([[0, 1, 1], [1, 0, 0]], 2, 2))


def test_random_split_keeps_a_training_edge_of_a_tiny_graph():
    """round(0.4 * 1) = 0: a one-edge graph split (0.4, 0.3, 0.3) came back with no training edge and no node in any
    part, without a word (training then failed far from the cause)."""
    graph = with_raw_ids(make_interactions(torch.tensor([[0], [0]])))
    for ratios in ((0.4, 0.3, 0.3), (0.5, 0.5, 0.0), (0.6, 0.2, 0.2)):
        for seed in range(3):
            split = random_split(graph, ratios, seed=seed)
            assert [part[EDGE].edge_index.size(1) for part in (split.train, split.val, split.test)] == [1, 0, 0]
            assert raw_pairs(split.train) == raw_pairs(graph)
    two = make_interactions(torch.tensor([[0, 1], [0, 1]]))
    assert random_split(two, (0.2, 0.4, 0.4), seed=0).train[EDGE].edge_index.size(1) == 1
    empty = random_split(make_interactions(torch.empty(2, 0, dtype=torch.long), None, 0, 0))
    assert empty.train[EDGE].edge_index.size(1) == 0


# --------------------------------------------------------------------------------------------- negatives

def test_add_negatives():
    graph = planted_communities(num_users=40, num_items=30, num_communities=3, interactions_per_user=6, seed=2)
    graph[EDGE].edge_label = torch.ones(graph[EDGE].edge_index.size(1))  # implicit feedback
    before = graph[EDGE].edge_index.clone()
    num_edges = before.size(1)
    out = add_negatives(graph, ratio=3, seed=5)
    ei, label, observed = out[EDGE].edge_index, out[EDGE].edge_label, out[EDGE].observed
    assert ei.size(1) == 4 * num_edges
    assert torch.equal(ei[:, :num_edges], before) and torch.equal(graph[EDGE].edge_index, before)
    assert torch.equal(label, torch.cat([torch.ones(num_edges), torch.zeros(3 * num_edges)]))
    assert torch.equal(observed, torch.arange(4 * num_edges) < num_edges)
    negatives = pairs_of(out)[num_edges:]
    assert len(set(negatives)) == len(negatives)  # no duplicate negative
    assert not set(negatives) & set(pairs_of(graph))  # no negative is an interaction
    # ``ratio`` negatives per positive of each user.
    assert Counter(u for u, _ in negatives) == Counter({u: 3 * c for u, c in Counter(before[0].tolist()).items()})
    assert pairs_of(add_negatives(graph, 3, seed=5)) == pairs_of(out)
    assert pairs_of(add_negatives(graph, 3, seed=6)) != pairs_of(out)
    with pytest.raises(ValueError, match="ratio"):
        add_negatives(graph, ratio=0)


def _negatives_by_full_rounds(users, n_items, known, gen):
    """The reference: every round checks every drawn pair against every known one (the draws are the same)."""
    items = torch.randint(max(n_items, 1), (users.numel(),), generator=gen)
    while True:
        keys = pair_keys(torch.stack([users, items]), n_items)
        first = torch.zeros_like(keys, dtype=torch.bool)
        first[[keys.tolist().index(key) for key in set(keys.tolist())]] = True
        bad = torch.isin(keys, known) | ~first
        if not bad.any():
            return items
        items[bad] = torch.randint(n_items, (int(bad.sum()),), generator=gen)


@pytest.mark.parametrize("ratio", [1, 2])
def test_add_negatives_draws_what_full_rounds_draw(ratio):
    """Each resampling round checked every drawn pair against every pair of the graph: on ML-1M, where one user has
    1,851 positives among 1,855 free items, add_negatives ran for minutes. The rounds now check only the users that
    drew again (a speed no test times), and must draw the same negatives. User 0 rates items 0-9 of 30: at ratio 2 it
    needs every other item."""
    planted = planted_communities(num_users=40, num_items=30, num_communities=3, interactions_per_user=6, seed=2)
    others = planted[EDGE].edge_index[:, planted[EDGE].edge_index[0] != 0]
    user_0 = torch.stack([torch.zeros(10, dtype=torch.long), torch.arange(10)])
    graph = make_interactions(torch.cat([user_0, others], 1), None, 40, 30)
    out = add_negatives(graph, ratio, seed=3)
    users = graph[EDGE].edge_index[0].repeat(ratio)
    expected = _negatives_by_full_rounds(users, 30, pair_keys(graph[EDGE].edge_index, 30),
                                         torch.Generator().manual_seed(3))
    num_edges = graph[EDGE].edge_index.size(1)
    assert torch.equal(out[EDGE].edge_index[:, num_edges:], torch.stack([users, expected]))
    assert len(set(expected[users == 0].tolist())) == 10 * ratio
    if ratio == 2:
        assert set(expected[users == 0].tolist()) == set(range(10, 30))


def test_add_negatives_keeps_existing_observed_flags(tiny_graph):
    graph = make_interactions(tiny_graph[EDGE].edge_index, tiny_graph[EDGE].edge_label, 4, 8,
                              observed=tiny_graph[EDGE].edge_label > 0)
    out = add_negatives(graph, ratio=1, seed=0)
    assert torch.equal(out[EDGE].observed, torch.cat([graph[EDGE].observed, torch.zeros(6, dtype=torch.bool)]))


def test_add_negatives_samples_per_positive_not_per_labelled_negative(tiny_graph):
    """A file that brings negatives (Book-Crossing's) got ratio more per negative too: 3 pairs per interaction at
    ratio 1. User 0 has 2 positives and 1 negative: 2 sampled at ratio 1, 4 at ratio 2."""
    for ratio in (1, 2):
        graph = make_interactions(tiny_graph[EDGE].edge_index, tiny_graph[EDGE].edge_label, 4, 12)
        added = add_negatives(graph, ratio=ratio, seed=0)[EDGE].edge_index[:, 9:]
        assert torch.equal(torch.bincount(added[0], minlength=4), ratio * torch.tensor([2, 2, 2, 0]))


def test_add_negatives_without_room_raises(tiny_graph):
    # Users 0 and 2 rate 3 of the 5 items, 2 positively: 2 non-edges left, 4 needed at ratio 2 (it used to loop
    # forever).
    assert add_negatives(tiny_graph, ratio=1)[EDGE].edge_index.size(1) == 15  # exactly enough room: 3 + 2 <= 5
    with pytest.raises(ValueError, match="user 0"):
        add_negatives(tiny_graph, ratio=2)
    graph = make_interactions(tiny_graph[EDGE].edge_index, tiny_graph[EDGE].edge_label, 4, 7)
    assert add_negatives(graph, ratio=2)[EDGE].edge_index.size(1) == 21  # exactly enough room: 3 + 4 <= 7
    with pytest.raises(ValueError, match="ratio=3"):
        add_negatives(graph, ratio=3)


def test_edge_cases_of_the_transforms():
    """add_negatives of a graph without items (k_core keeping nothing) failed inside torch's randint; binarize
    labelled a NaN 0; make_interactions took [[], []] for float ids; the planted share of in-community ratings
    is below p_in where a user's draws exhaust the community, as its docstring now says (0.77 at the defaults)."""
    nothing = make_interactions(torch.zeros(2, 0, dtype=torch.long), None, 0, 0)
    assert add_negatives(nothing)[EDGE].edge_index.size(1) == 0
    assert make_interactions([[], []], num_users=2, num_items=2)[EDGE].edge_index.dtype == torch.long
    graph = make_interactions(torch.tensor([[0, 1], [0, 1]]), torch.tensor([5.0, 3.0]), 2, 2)
    graph[EDGE].edge_label[1] = math.nan  # a label edited after the checks
    with pytest.raises(ValueError, match="binarize: 1 edge_label values are NaN"):
        binarize(graph, 4)
    planted = planted_communities(seed=0)
    ei = planted[EDGE].edge_index
    share = float((planted["user"].community[ei[0]] == planted["item"].community[ei[1]]).float().mean())
    assert 0.76 < share < 0.79  # p_in is 0.8; 24,000 ratings, a standard error of 0.003


# --------------------------------------------------------------------------------------------- requests

def test_attack_flip(random_graph):
    graph = random_graph(30, 25, 200, seed=0)
    before_index, before_label = graph[EDGE].edge_index.clone(), graph[EDGE].edge_label.clone()
    for ratio in (0.01, 0.1, 0.37):
        attacked, flipped = attack_flip(graph, ratio, seed=3)
        assert flipped.size(1) == round(ratio * 200)
        positions = edge_positions(graph, flipped)  # raises if not edges or duplicated
        is_flipped = torch.zeros(200, dtype=torch.bool)
        is_flipped[positions] = True
        label = attacked[EDGE].edge_label
        assert torch.equal(label[is_flipped], 1 - before_label[is_flipped])
        assert torch.equal(label[~is_flipped], before_label[~is_flipped])
        assert torch.equal(attacked[EDGE].edge_index, before_index)
    # The input graph is not modified.
    assert torch.equal(graph[EDGE].edge_index, before_index) and torch.equal(graph[EDGE].edge_label, before_label)
    assert torch.equal(attack_flip(graph, 0.1, seed=3)[1], attack_flip(graph, 0.1, seed=3)[1])
    assert not torch.equal(attack_flip(graph, 0.1, seed=3)[1], attack_flip(graph, 0.1, seed=4)[1])
    for bad in (0.0, 1.0, -0.5):
        with pytest.raises(ValueError, match="ratio"):
            attack_flip(graph, bad)


def test_attack_flip_rounds_the_count_and_flips_at_least_one_edge(random_graph):
    graph = random_graph(30, 25, 200, seed=0)
    for ratio, count in ((0.018, 4), (0.0001, 1), (0.0049, 1)):  # 3.6 -> 4, 0.02 -> 1 (at least one), 0.98 -> 1
        attacked, flipped = attack_flip(graph, ratio, seed=1)
        assert flipped.size(1) == count
        assert int((attacked[EDGE].edge_label != graph[EDGE].edge_label).sum()) == count


def test_attack_flip_refuses_a_graph_without_edges():
    """A graph without edges is refused: the count promised at least one flipped edge and none was flipped."""
    empty = make_interactions(torch.empty(2, 0, dtype=torch.long), torch.empty(0), num_users=2, num_items=3)
    with pytest.raises(ValueError, match="attack_flip: the graph has no edges to flip"):
        attack_flip(empty, 0.5)


def _adversarial_reference(user_rows, item_rows, pairs) -> list[tuple[int, int]]:
    """Per user, the lowest-scored item (first on ties) among those the user has no edge with, by loops."""
    seen = {(u, i) for u, i in pairs}
    out = []
    for u, row in enumerate(user_rows):
        free = [(sum(a * b for a, b in zip(row, item_rows[i])), i) for i in range(len(item_rows)) if (u, i) not in seen]
        if free:
            out.append((u, min(free)[1]))
    return out


def test_adversarial_edges_against_a_loop():
    """Each user's least-scored item it has no edge with (any label) is added with label 1; the input is kept."""
    users, items = [[1.0], [-1.0], [0.5]], [[0.5], [0.4], [-0.3], [0.2]]
    pairs = [(0, 2), (0, 1), (1, 0), (2, 0), (2, 1), (2, 2), (2, 3)]  # user 2 has every item: skipped
    graph = make_interactions(torch.tensor(pairs).t(), torch.tensor([1., 0., 1., 0., 1., 1., 0.]), 3, 4)
    before = graph[EDGE].edge_label.clone()
    attacked, request = adversarial_edges(hand_mf(users, items), graph)
    expected = _adversarial_reference(users, items, pairs)
    assert expected == [(0, 3), (1, 1)] and list(map(tuple, request.t().tolist())) == expected
    assert pairs_of(attacked) == pairs + expected
    assert attacked[EDGE].edge_label.tolist() == before.tolist() + [1.0, 1.0]
    assert torch.equal(graph[EDGE].edge_label, before) and graph[EDGE].edge_index.size(1) == len(pairs)
    # A validation or test pair is taken too: user 0's least-scored free item, 3, was a held-out pair of it, which
    # the Original then trained on (ML-100K's MF: 103 of 943 fake edges were validation or test pairs).
    held_out = [(0, 3), (1, 2)]
    request = adversarial_edges(hand_mf(users, items), graph, held_out=torch.tensor(held_out).t())[1]
    expected = _adversarial_reference(users, items, pairs + held_out)
    assert expected == [(0, 0), (1, 1)] and list(map(tuple, request.t().tolist())) == expected


def test_adversarial_edges_refuse_a_model_of_other_sizes_or_with_non_finite_scores():
    """A model with more items than the graph drew fake edges to item ids the graph does not have, and a NaN score
    skipped its users without a word: both are named errors."""
    graph = make_interactions(torch.tensor([[0, 0, 1, 2], [0, 1, 2, 3]]), num_users=3, num_items=4)
    larger = hand_mf([[1.0], [1.0], [1.0]], [[0.5], [0.4], [0.3], [0.2], [-5.0], [-6.0]])  # items 4, 5: lowest
    with pytest.raises(ValueError, match="the model has num_items=6 but the graph has 4 items"):
        adversarial_edges(larger, graph)
    broken = hand_mf([[1.0], [1.0], [1.0]], [[0.5], [float("nan")], [0.3], [0.2]])
    with pytest.raises(ValueError, match="the model's scores hold 3 NaN or infinite values"):
        adversarial_edges(broken, graph)
    model = hand_mf([[1.0], [1.0], [1.0]], [[0.5], [0.4], [0.3], [0.2]])
    for fraction in (True, "0.5", torch.tensor(0.5), 0.0, 1.5):  # True attacked every user; the others failed in Python
        with pytest.raises(ValueError, match=re.escape(f"fraction must be a number in (0, 1], got {fraction!r}")):
            adversarial_edges(model, graph, fraction=fraction)


@pytest.mark.parametrize("held_out, message", [
    (torch.tensor([[-1], [0]]), "held_out holds user id -1 at position 0, outside [0, 3)"),
    (torch.tensor([[0], [7]]), "held_out holds item id 7 at position 0, outside [0, 4)"),
    (torch.tensor([[0.0], [1.0]]), "held_out holds integer (user, item) ids, got dtype torch.float32"),
    (torch.zeros(3, 1, dtype=torch.long), "held_out must have shape [2, H], got [3, 1]"),
    ([[0], [1]], "held_out must be a [2, H] integer tensor, got a list"),
])
def test_adversarial_edges_refuse_held_out_pairs_that_are_no_pairs_of_the_graph(held_out, message):
    """Unchecked, user -1 marked the last user's item 0 taken and moved its fake edge to item 1, without a word;
    the other cases failed inside torch."""
    graph = make_interactions(torch.tensor([[0, 1, 2], [0, 1, 2]]), num_users=3, num_items=4)
    model = hand_mf([[1.0], [1.0], [1.0]], [[0.5], [0.4], [0.3], [0.2]])
    with pytest.raises(ValueError, match=re.escape(message)):
        adversarial_edges(model, graph, held_out=held_out)
    for bad in (0, 2.0, 0.5, True):  # 2.0 failed inside torch's split, 0.5 was "must be positive"
        with pytest.raises(ValueError, match=re.escape(f"batch_size must be an integer >= 1, got {bad!r}")):
            adversarial_edges(model, graph, batch_size=bad)


def test_request_helpers_refuse_ratios_and_requests_of_the_wrong_kind(tiny_graph):
    """A string or tensor ratio failed with Python's or torch's TypeError; request_nodes took float ids as ids, read
    the first two rows of a [3, R] tensor, and failed on a list with an AttributeError."""
    for bad in ("0.5", torch.tensor(0.5), True, None):
        for sample in (random_edges, attack_flip):
            with pytest.raises(ValueError, match=re.escape(f"ratio must be a number in (0, 1), got {bad!r}")):
                sample(tiny_graph, bad)
    for bad, message in ((torch.tensor([[2.0], [1.0]]), "request holds integer (user, item) ids"),
                         (torch.zeros(3, 2, dtype=torch.long), "request must have shape [2, R], got [3, 2]"),
                         ([[2, 0], [1, 1]], "request must be a [2, R] integer tensor, got a list")):
        with pytest.raises(ValueError, match=re.escape(message)):
            request_nodes(bad)


def test_random_edges(random_graph):
    graph = random_graph(30, 25, 200, seed=0)
    request = random_edges(graph, 0.15, seed=1)
    assert request.size(1) == 30
    positions = edge_positions(graph, request)  # every pair is an edge, no duplicates
    assert positions.unique().numel() == 30
    assert torch.equal(random_edges(graph, 0.15, seed=1), request)
    assert not torch.equal(random_edges(graph, 0.15, seed=2), request)
    assert random_edges(graph, 0.001).size(1) == 1  # at least one edge
    # In storage order, as documented: the positions of the drawn edges increase.
    assert bool((edge_positions(graph, random_edges(graph, 0.3, seed=5)).diff() > 0).all())
    with pytest.raises(ValueError):
        random_edges(graph, 1.5)
    # a graph built by hand is checked as attack_flip checks it: an out-of-range user had been drawn into the
    # request, a short or integer observed mask failed inside torch, and a pair stored twice kept one copy when
    # removed (a QA probe)
    wrong = make_interactions(torch.tensor([[0, 0, 1], [0, 1, 1]]), num_users=2, num_items=2)
    wrong[EDGE].edge_index = torch.tensor([[0, 0, 5], [0, 1, 1]])
    for call in (lambda: random_edges(wrong, 0.5), lambda: user_edges(wrong, [0]),
                 lambda: remove_edges(wrong, [[0], [1]])):
        with pytest.raises(ValueError, match=r"edge_index holds user id 5 at position 2, outside \[0, num_users\)"):
            call()
    short = make_interactions(torch.tensor([[0, 0, 1], [0, 1, 1]]), num_users=2, num_items=2)
    short[EDGE].observed = torch.ones(2, dtype=torch.bool)
    with pytest.raises(ValueError, match=r"observed must have shape \[3\], one entry per edge"):
        user_edges(short, [0])
    twice = make_interactions(torch.tensor([[0, 1], [1, 1]]), num_users=2, num_items=2)
    twice[EDGE].edge_index, twice[EDGE].edge_label = torch.tensor([[0, 0, 1], [1, 1, 1]]), torch.ones(3)
    for call in (lambda: remove_edges(twice, torch.tensor([[0], [1]])), lambda: random_edges(twice, 0.9),
                 lambda: user_edges(twice, [0])):  # the draws had held the pair twice, which remove_edges refused
        with pytest.raises(ValueError, match=r"1 duplicated \(user, item\) pairs, the first \(0, 1\)"):
            call()


def test_user_edges(random_graph):
    graph = random_graph(30, 25, 200, seed=0)
    request = user_edges(graph, [4, 17])
    expected = [(u, i) for u, i in pairs_of(graph) if u in (4, 17)]
    assert sorted(map(tuple, request.t().tolist())) == sorted(expected) and len(expected) > 0
    users, items = request_nodes(request)
    assert users.tolist() == [4, 17] and items.tolist() == sorted({i for _, i in expected})
    with pytest.raises(ValueError):
        user_edges(graph, [])
    with pytest.raises(ValueError):
        user_edges(graph, [30])
    with pytest.raises(ValueError):
        user_edges(graph, [-1])


def test_user_edges_names_what_is_wrong_with_the_users(random_graph):
    """[] became an empty float tensor: 'user ids must be integers' where no user was given; a string raised
    torch's TypeError."""
    graph = random_graph(10, 8, 30, seed=0)
    for users in ([], (), np.array([], dtype=np.int64), torch.empty(0, dtype=torch.long)):
        with pytest.raises(ValueError, match="^no users given$"):
            user_edges(graph, users)
    with pytest.raises(ValueError, match="user ids are a tensor, array or list of integers, got a str"):
        user_edges(graph, "3")


# --------------------------------------------------------------------------------------------- positions

def test_edge_positions_against_a_loop(random_graph):
    graph = random_graph(20, 15, 120, seed=2)
    pairs = pairs_of(graph)
    request = torch.tensor([pairs[7], pairs[0], pairs[119], pairs[50]]).t()
    assert edge_positions(graph, request).tolist() == [7, 0, 119, 50]
    assert edge_positions(graph, torch.zeros(2, 0, dtype=torch.long)).numel() == 0
    # Many pairs per user, in random order: positions as a dictionary lookup finds them.
    where = {pair: p for p, pair in enumerate(pairs)}
    picked = torch.randperm(120, generator=torch.Generator().manual_seed(0))[:60].tolist()
    request = torch.tensor([pairs[p] for p in picked]).t()
    assert edge_positions(graph, request).tolist() == [where[pairs[p]] for p in picked]


def test_remove_edges(random_graph):
    graph = random_graph(20, 15, 120, seed=2)
    before = graph[EDGE].edge_index.clone()
    pairs, labels = pairs_of(graph), graph[EDGE].edge_label.tolist()
    gone = {3, 40, 77}
    out = remove_edges(graph, torch.tensor([pairs[p] for p in sorted(gone)]).t())
    keep = [p for p in range(120) if p not in gone]
    assert pairs_of(out) == [pairs[p] for p in keep]
    assert out[EDGE].edge_label.tolist() == [labels[p] for p in keep]
    assert (num_users(out), num_items(out)) == (20, 15)
    assert torch.equal(graph[EDGE].edge_index, before)
    assert pairs_of(remove_edges(graph, torch.zeros(2, 0, dtype=torch.long))) == pairs


@pytest.mark.parametrize("request_, message", [
    (torch.tensor([[0], [99]]), r"1 pairs with unknown ids, the first \(0, 99\) at position 0; the graph's "
                                r"users are 0..19 and its items 0..14"),  # item id out of range
    (torch.tensor([[0, 20], [0, 0]]), r"the first \(20, 0\) at position 1"),  # user id out of range
    (torch.tensor([[-1], [0]]), r"unknown ids, the first \(-1, 0\)"),       # negative id
    ("dup", r"request holds 1 duplicated \(user, item\) pairs, the first .* at positions 0 and 2; ask for each "
            r"pair once"),
    ("absent", "not edges"),
    (torch.zeros(3, 2, dtype=torch.long), "shape"),
    (torch.zeros(4, dtype=torch.long), "shape"),
    (torch.zeros(2, 1), "float"),
    (torch.ones(2, 1, dtype=torch.bool), "dtype torch.bool"),  # used to be read as the ids (1, 1)
    (torch.zeros(2, 1, dtype=torch.float64), "dtype torch.float64"),
    (torch.zeros(2, 1, dtype=torch.long, device="meta"), "meta device"),
])
def test_edge_position_errors(random_graph, request_, message):
    graph = random_graph(20, 15, 120, seed=2)
    pairs = pairs_of(graph)
    if request_ == "dup":
        request_ = torch.tensor([pairs[5], pairs[6], pairs[5]]).t()
    elif request_ == "absent":
        absent = next((u, i) for u in range(20) for i in range(15) if (u, i) not in set(pairs))
        request_ = torch.tensor([pairs[1], absent]).t()
    for fn in (edge_positions, remove_edges):
        with pytest.raises(ValueError, match=message):
            fn(graph, request_)


def test_make_interactions_errors():
    edges = torch.tensor([[0, 1], [0, 1]])
    with pytest.raises(ValueError, match=re.escape("edge_index must have shape [2, E], got [3, 4]")):
        make_interactions(torch.zeros(3, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=re.escape("edge_label must have shape [4], one entry per edge of edge_index, "
                                                   "got [3]")):
        make_interactions(torch.zeros(2, 4, dtype=torch.long), torch.ones(3))
    with pytest.raises(ValueError, match=re.escape("user id -1 at position 1, outside [0, num_users) = [0, 1)")):
        make_interactions(torch.tensor([[0, -1], [0, 0]]))
    with pytest.raises(ValueError, match=re.escape("item id -2 at position 1, outside [0, num_items) = [0, 3)")):
        make_interactions(torch.tensor([[0, 1], [0, -2]]), None, 3, 3)
    with pytest.raises(ValueError, match=re.escape("user id 3 at position 1, outside [0, num_users) = [0, 3)")):
        make_interactions(torch.tensor([[0, 3], [0, 0]]), num_users=3)
    with pytest.raises(ValueError, match="num_users must be non-negative, got -3"):
        make_interactions(edges, num_users=-3)
    with pytest.raises(ValueError, match="num_items must be an integer, got 2.5"):
        make_interactions(edges, num_items=2.5)
    for bad in (math.nan, math.inf):  # an infinite rating was kept, and binarize called it a like (a QA probe)
        with pytest.raises(ValueError, match=rf"edge_label contains 1 values that are not finite numbers, e.g. {bad} "
                                             "at position 1"):
            make_interactions(edges, torch.tensor([1.0, bad]))


@pytest.mark.parametrize("ids", [torch.tensor([[0.5, 1.7], [0.9, 1.2]]), torch.tensor([[True], [False]]),
                                 [[0.0], [1.0]]])
def test_make_interactions_refuses_ids_that_are_not_integers(ids):
    # As requests (validate_pairs): floats would be truncated, a bool mask read as ids 0/1.
    with pytest.raises(ValueError, match=r"^edge_index holds integer \(user, item\) ids, got dtype torch\.(fl|bo)"):
        make_interactions(ids)
    graph = make_interactions(torch.tensor([[0, 1], [0, 2]], dtype=torch.int32))  # any integer dtype is fine
    assert graph[EDGE].edge_index.dtype == torch.long and pairs_of(graph) == [(0, 0), (1, 2)]


def test_make_interactions_checks_the_observed_mask():
    edges, labels = torch.tensor([[0, 1], [0, 1]]), torch.tensor([1., 0.])
    with pytest.raises(ValueError, match=re.escape("observed must have shape [2], one entry per edge of edge_index, "
                                                   "got [5]")):
        make_interactions(edges, labels, observed=torch.ones(5))
    with pytest.raises(ValueError, match="observed must be a bool mask or hold only 0 and 1, got 0.3"):
        make_interactions(edges, labels, observed=torch.tensor([0.3, 0.0]))
    graph = make_interactions(edges, labels, observed=torch.tensor([1., 0.]))  # 0/1 reads as the bool mask
    assert graph[EDGE].observed.tolist() == [True, False]


def test_make_interactions_needs_the_counts_of_an_empty_graph():
    empty = torch.zeros(2, 0, dtype=torch.long)
    with pytest.raises(ValueError, match=r"edge_index holds no edges: pass num_users and num_items"):
        make_interactions(empty)
    with pytest.raises(ValueError, match="got num_items=None"):
        make_interactions(empty, num_users=3)
    graph = make_interactions(empty, num_users=3, num_items=2)
    assert (num_users(graph), num_items(graph), graph[EDGE].edge_label.shape) == (3, 2, (0,))


def _hand_built(**edge_attrs):
    """A hand-built graph of 3 users, 2 items and 3 edges, with ``edge_attrs`` replacing the edge store's."""
    graph = make_interactions(torch.tensor([[0, 1, 2], [0, 1, 1]]), torch.tensor([1., 0., 1.]), 3, 2)
    for key, value in edge_attrs.items():
        graph[EDGE][key] = value
    return graph


@pytest.mark.parametrize("attrs, message", [
    ({"edge_index": torch.tensor([[0., 1., 2.], [0., 1., 1.]])}, "edge_index holds integer (user, item) ids, got "
                                                                 "dtype torch.float32"),
    ({"edge_index": torch.zeros(3, 3, dtype=torch.long)}, "edge_index must have shape [2, E], got [3, 3]"),
    ({"edge_index": torch.tensor([[0, 1, 5], [0, 1, 1]])}, "user id 5 at position 2, outside [0, num_users) = [0, 3)"),
    ({"edge_index": torch.tensor([[0, 1, 2], [0, -1, 1]])}, "item id -1 at position 1, outside [0, num_items) = "
                                                            "[0, 2)"),
    ({"edge_label": torch.ones(2)}, "edge_label must have shape [3], one entry per edge of edge_index, got [2]"),
    ({"observed": torch.ones(3, 1, dtype=torch.bool)}, "observed must have shape [3], one entry per edge of "
                                                       "edge_index, got [3, 1]"),
    ({"observed": torch.tensor([1, 0, 1])}, "observed must be a bool mask, got dtype torch.int64"),
    # training wrote .grad into the caller's labels (SISA: "backward through the graph a second time")
    ({"edge_label": torch.tensor([1., 0., 1.], requires_grad=True)},
     "tensors of the graph's edges require grad: edge_label;"),
    ({"edge_weight": torch.ones(3, requires_grad=True) * 2}, "tensors of the graph's edges require grad: edge_weight;"),
    # an edge_weight failed in unlearn(), naming a subgraph's edge count, or never for MF (qa104)
    ({"edge_weight": torch.ones(5)}, "edge_weight must have shape [3], one entry per edge of edge_index, got [5]"),
    ({"edge_weight": torch.tensor([1.0, math.nan, 1.0])}, "edge_weight holds NaN or infinite weights"),
    ({"edge_weight": [1.0, 1.0, 1.0]}, "edge attributes ['edge_weight'] are not tensors"),  # not "no attribute 'shape'"
])
def test_check_interactions_names_what_is_wrong(attrs, message):
    interactions.check_interactions(_hand_built())  # the valid graph passes
    interactions.check_interactions(_hand_built(observed=torch.tensor([True, False, True])))
    with pytest.raises(ValueError, match=re.escape(message)):
        interactions.check_interactions(_hand_built(**attrs))


def test_check_interactions_needs_node_counts_and_edges():
    from torch_geometric.data import HeteroData
    graph = HeteroData()
    graph[EDGE].edge_index = torch.tensor([[0], [0]])
    layout = ("the graph is not an interaction graph: graphforget reads node types 'user' and 'item' and the edge "
              "type ('user', 'rates', 'item') with its edge_index and edge_label, and it has node types [] and edge "
              "types [('user', 'rates', 'item')]")
    with pytest.raises(ValueError, match=re.escape(layout)):
        interactions.check_interactions(graph)
    assert graph.node_types == []  # checking created no node store
    graph["user"].raw_id, graph["item"].raw_id = torch.arange(1), torch.arange(1)
    with pytest.raises(ValueError, match=re.escape("graph['user'].num_nodes is not set")):
        interactions.check_interactions(graph)
    graph["user"].num_nodes, graph["item"].num_nodes = 1, -1
    with pytest.raises(ValueError, match=re.escape("graph['item'].num_nodes is negative: -1")):
        interactions.check_interactions(graph)
    nodes_only = HeteroData()
    nodes_only["user"].num_nodes = nodes_only["item"].num_nodes = 1
    with pytest.raises(ValueError, match=re.escape("it has node types ['user', 'item'] and edge types []")):
        interactions.check_interactions(nodes_only)
    assert "check_interactions" in interactions.__all__


def test_a_pyg_datasets_graph_is_refused_by_name_and_left_as_it_was():
    """A MovieLens100K-style graph ('user' and 'movie' nodes with features, ('user', 'rates', 'movie') with ratings):
    train, user_edges, random_edges and the test set of evaluate_auc read graph[EDGE] first, failed with an
    AttributeError, and PyG added the missing edge type, and an 'item' node type, to the caller's graph (a QA probe)."""
    from graphforget import BCEObjective, TrainConfig, train
    from graphforget.metrics import evaluate_auc, recall_ndcg_at_k
    from graphforget.models import MF
    from torch_geometric.data import HeteroData
    pyg = HeteroData()
    pyg["user"].x, pyg["movie"].x = torch.randn(4, 3), torch.randn(5, 3)
    pyg["user", "rates", "movie"].edge_index = torch.tensor([[0, 1, 2, 3], [0, 1, 2, 4]])
    pyg["user", "rates", "movie"].rating = torch.tensor([5, 3, 4, 1])
    types = (pyg.node_types, pyg.edge_types)
    ours = make_interactions(torch.tensor([[0, 1], [0, 1]]), torch.tensor([1., 0.]), 4, 5)
    calls = [lambda: train(MF(4, 5, 4), pyg, BCEObjective(), TrainConfig(epochs=1)), lambda: user_edges(pyg, [0]),
             lambda: random_edges(pyg, 0.5), lambda: evaluate_auc(MF(4, 5, 4), ours, pyg),
             # and the graphs these read through graph[EDGE] or its node counts first (a QA probe)
             lambda: attack_flip(pyg, 0.5), lambda: evaluate_auc(MF(4, 5, 4), pyg, ours),
             lambda: recall_ndcg_at_k(MF(4, 5, 4), pyg, ours),
             lambda: train(MF(4, 5, 4), ours, BCEObjective(), TrainConfig(epochs=1), val=pyg)]
    whats = ("the training graph", "the graph", "the graph", "the test set", "the graph", "the training graph",
             "the training graph", "val")
    for what, call in zip(whats, calls):
        found = "it has node types ['user', 'movie'] and edge types [('user', 'rates', 'movie')]"
        with pytest.raises(ValueError, match=f"{re.escape(what)} is not an interaction graph: .*{re.escape(found)}"):
            call()
        assert (pyg.node_types, pyg.edge_types) == types


def test_a_random_link_split_part_is_refused_with_its_labels_named():
    """A part made by PyG's RandomLinkSplit labels its edge_label_index, not its edge_index: where the counts agreed,
    train read 1,000 training interactions as label 0, and evaluate_auc scored training pairs against other pairs'
    labels (a QA probe)."""
    from graphforget import BCEObjective, TrainConfig, train
    from graphforget.metrics import evaluate_auc
    from graphforget.models import MF
    graph = _hand_built()
    graph[EDGE].edge_label_index = graph[EDGE].edge_index.flip(1)  # three labels for three other pairs
    message = "holds edge_label_index (a part made by RandomLinkSplit?): graphforget reads one edge_label per pair"
    for call in (lambda: train(MF(3, 2, 2), graph, BCEObjective(), TrainConfig(epochs=1)),
                 lambda: evaluate_auc(MF(3, 2, 2), _hand_built(), graph),
                 lambda: interactions.check_interactions(graph)):
        with pytest.raises(ValueError, match=re.escape(message)):
            call()


def test_edge_attributes_that_a_request_cannot_select_are_refused_by_name():
    """A timestamp stored as a NumPy array (or a list) passed train and every method's construction, then failed every
    request inside PyG; PyG's EdgeIndex failed IFRU's sparse products on LightGCN (a QA probe). make_interactions stores
    a plain tensor."""
    import numpy as np
    from torch_geometric import EdgeIndex
    for value in (np.arange(3), [0, 1, 2]):
        graph = _hand_built()
        graph[EDGE].ts = value
        with pytest.raises(ValueError, match=re.escape("edge attributes ['ts'] are not tensors")):
            interactions.check_interactions(graph)
    graph = _hand_built()
    graph[EDGE].edge_index = EdgeIndex(graph[EDGE].edge_index)
    with pytest.raises(ValueError, match=re.escape("edge_index is a EdgeIndex, not a plain tensor")):
        interactions.check_interactions(graph)
    built = make_interactions(EdgeIndex(torch.tensor([[0, 1], [1, 0]])), torch.tensor([1., 0.]))
    assert type(built[EDGE].edge_index) is torch.Tensor
    interactions.check_interactions(built)


def test_attack_flip_flips_labels_of_any_dtype_train_takes():
    """Bool labels, which train and every method take, failed inside torch (1 - a bool tensor)."""
    for dtype in (torch.bool, torch.long, torch.float64):
        graph = _hand_built(edge_label=torch.tensor([1, 0, 1]).to(dtype))
        attacked, flipped = attack_flip(graph, 0.5, seed=0)
        changed = attacked[EDGE].edge_label != graph[EDGE].edge_label
        assert attacked[EDGE].edge_label.dtype == dtype and int(changed.sum()) == flipped.size(1) >= 1
        assert torch.equal(attacked[EDGE].edge_index[:, changed], flipped)


def test_a_graph_with_a_reverse_edge_type_is_refused_where_a_deletion_would_keep_its_copies():
    """torch_geometric's ToUndirected adds ('item', 'rev_rates', 'user'): every method and remove_edges took the graph,
    and the remaining graph held each removed pair there still (14 of 14), without a word (found by a probe)."""
    import torch_geometric.transforms as T
    from graphforget import BCEObjective, TrainConfig, train
    from graphforget.models import MF
    from graphforget.unlearn import FineTune
    graph = T.ToUndirected()(_hand_built())
    message = re.escape("the graph holds edge types other than ('user', 'rates', 'item'): [('item', 'rev_rates', "
                        "'user')]; a deletion removes a pair from ('user', 'rates', 'item') alone")
    calls = [lambda: interactions.check_interactions(graph), lambda: remove_edges(graph, torch.tensor([[0], [0]])),
             lambda: edge_subgraph(graph, torch.tensor([1, 2])),
             lambda: train(MF(3, 2, 2), graph, BCEObjective(), TrainConfig(epochs=1)),
             lambda: FineTune(MF(3, 2, 2), graph, BCEObjective())]
    for call in calls:
        with pytest.raises(ValueError, match=message):
            call()
    graph = _hand_built()  # a second user -> item relation as much as the reverse one (from a mutation run)
    graph["user", "clicks", "item"].edge_index = torch.tensor([[0], [1]])
    with pytest.raises(ValueError, match=re.escape("other than ('user', 'rates', 'item'): [('user', 'clicks', "
                                                   "'item')]")):
        remove_edges(graph, torch.tensor([[0], [0]]))


def test_symmetric_edge_weight_against_degrees(tiny_graph):
    weight = symmetric_edge_weight(tiny_graph[EDGE].edge_index, 4, 5)
    deg_u, deg_i = Counter(u for u, _ in pairs_of(tiny_graph)), Counter(i for _, i in pairs_of(tiny_graph))
    expected = [1 / math.sqrt(deg_u[u] * deg_i[i]) for u, i in pairs_of(tiny_graph)]
    assert torch.allclose(weight, torch.tensor(expected))
    # With an ``observed`` mask the degrees count the observed edges only.
    tiny_graph[EDGE].observed = tiny_graph[EDGE].edge_label > 0
    index, weight = propagation_edges(tiny_graph)
    kept = [p for p, y in zip(pairs_of(tiny_graph), tiny_graph[EDGE].edge_label.tolist()) if y > 0]
    deg_u, deg_i = Counter(u for u, _ in kept), Counter(i for _, i in kept)
    assert list(map(tuple, index.t().tolist())) == kept
    assert torch.allclose(weight, torch.tensor([1 / math.sqrt(deg_u[u] * deg_i[i]) for u, i in kept]))


# --------------------------------------------------------------------------------------------- synthetic

def test_planted_communities_carry_signal():
    graph = planted_communities(num_users=200, num_items=120, num_communities=4, interactions_per_user=20, seed=1)
    ei, label = graph[EDGE].edge_index, graph[EDGE].edge_label
    same = graph["user"].community[ei[0]] == graph["item"].community[ei[1]]
    assert ei.size(1) == 200 * 20
    # Each user rates exactly ``interactions_per_user`` distinct items.
    assert len(set(pairs_of(graph))) == ei.size(1)
    assert set(Counter(ei[0].tolist()).values()) == {20}
    rate_in, rate_out = float(label[same].mean()), float(label[~same].mean())
    assert rate_in > 0.75 and rate_out < 0.25 and rate_in > rate_out
    assert 0.7 < float(same.float().mean()) < 0.9  # p_in = 0.8
    again = planted_communities(num_users=200, num_items=120, num_communities=4, interactions_per_user=20, seed=1)
    assert torch.equal(again[EDGE].edge_index, ei) and torch.equal(again[EDGE].edge_label, label)
    with pytest.raises(ValueError, match=r"interactions_per_user \(5\) .* 20 // 4 = 5\)"):
        planted_communities(num_users=10, num_items=20, num_communities=4, interactions_per_user=5)


@pytest.mark.parametrize("field, value, message", [
    ("num_users", 0, "num_users must be a positive int, got 0"),
    ("num_communities", 2.0, "num_communities must be a positive int, got 2.0"),
    ("p_in", 1.5, r"p_in must be a probability in \[0, 1\], got 1.5"),
    ("like_out", float("nan"), r"like_out must be a probability in \[0, 1\], got nan"),
])
def test_planted_communities_refuses_bad_sizes_naming_the_field(field, value, message):
    with pytest.raises(ValueError, match=message):
        planted_communities(**{"num_users": 10, "num_items": 40, "interactions_per_user": 5, field: value})


def test_planted_communities_refuses_out_of_community_draws_with_one_community():
    """p_in = 0 draws every item from other communities, of which one community has none: torch's 'invalid
    multinomial distribution' named neither field."""
    with pytest.raises(ValueError, match=re.escape("p_in = 0 draws every item out of the user's community, but with "
                                                   "num_communities = 1 there is no other")):
        planted_communities(num_users=10, num_items=40, num_communities=1, interactions_per_user=5, p_in=0.0)
    assert planted_communities(num_users=10, num_items=40, num_communities=1, interactions_per_user=5)[EDGE] \
        .edge_index.size(1) == 50


def test_planted_communities_rate_p_in_in_community_and_spread_users_evenly():
    """Few ratings per user from large communities (sampling without replacement barely bends the weights):
    the share of in-community ratings is p_in, and every community gets about a quarter of the users and
    exactly a quarter of the items."""
    graph = planted_communities(num_users=2000, num_items=400, num_communities=4, interactions_per_user=5,
                                p_in=0.5, seed=0)
    ei = graph[EDGE].edge_index
    same = graph["user"].community[ei[0]] == graph["item"].community[ei[1]]
    assert abs(float(same.float().mean()) - 0.5) < 0.03  # 10,000 ratings: a standard error of 0.005
    users = torch.bincount(graph["user"].community, minlength=4)
    assert users.numel() == 4 and int(users.min()) > 400 and int(users.max()) < 600  # 500 each, sd 19
    assert torch.bincount(graph["item"].community).tolist() == [100] * 4


def test_planted_communities_take_the_ends_of_the_probability_range():
    """0 and 1 are probabilities: like_in=1, like_out=0 like exactly the in-community ratings; p_in=1 rates
    only in the community, p_in=0 only outside it."""
    kwargs = {"num_users": 200, "num_items": 120, "num_communities": 4, "interactions_per_user": 20, "seed": 1}
    for extra, share in (({"like_in": 1.0, "like_out": 0.0}, None), ({"p_in": 1.0}, 1.0), ({"p_in": 0.0}, 0.0)):
        graph = planted_communities(**kwargs, **extra)
        ei, label = graph[EDGE].edge_index, graph[EDGE].edge_label
        same = graph["user"].community[ei[0]] == graph["item"].community[ei[1]]
        if share is None:
            assert torch.equal(label, same.float()) and 0 < int(same.sum()) < same.numel()
        else:
            assert float(same.float().mean()) == share


# --------------------------------------------------------------------------------------------- integrity

def test_make_interactions_rejects_duplicate_pairs():
    # (0, 0) at positions 0 and 4, (1, 1) at 1 and 3: two duplicated pairs, the first in storage order (0, 0).
    edge_index = torch.tensor([[0, 1, 2, 1, 0, 2], [0, 1, 2, 1, 0, 3]])
    with pytest.raises(ValueError) as err:
        make_interactions(edge_index, torch.tensor([1., 0., 1., 1., 0., 1.]))
    message = str(err.value)
    assert "2 duplicated (user, item) pairs" in message
    assert "the first (0, 0) at positions 0 and 4" in message
    assert "keep the last rating" in message
    assert make_interactions(edge_index[:, :3])[EDGE].edge_index.size(1) == 3  # distinct pairs are fine
    # The smallest case: two edges, one pair (as a graph and as a request).
    with pytest.raises(ValueError, match=r"1 duplicated \(user, item\) pairs, the first \(0, 1\) at positions 0 and 1"):
        make_interactions(torch.tensor([[0, 0], [1, 1]]))
    with pytest.raises(ValueError, match="request holds 1 duplicated"):
        edge_positions(make_interactions(torch.tensor([[0], [1]])), torch.tensor([[0, 0], [1, 1]]))


def test_raw_loaders_reject_duplicate_pairs_naming_raw_ids_and_lines(tmp_path):
    """The lines of the file, as every other error of a loader names them: they had been counted as data rows, so
    a comment or a CSV header moved them (a pair on CSV lines 3 and 5 was on "data rows 2 and 3")."""
    (tmp_path / "u.data").write_text("# ratings\n196\t242\t3\t881250949\n186\t302\t3\t891717742\n\n"
                                     "196\t242\t5\t881250950\n")
    with pytest.raises(ValueError) as err:
        load_movielens_100k(tmp_path)
    assert (f"{tmp_path / 'u.data'}: 1 (user, item) pairs occur on several rows, the first (196, 242) (raw ids) "
            f"on lines 2 and 5") in str(err.value)
    assert "duplicates='last'" in str(err.value)
    triples = tmp_path / "ratings_final.txt"
    triples.write_text("0\t7\t1\r\n0\t8\t0\r\n3\t8\t1\r\n0\t8\t1\r\n")
    with pytest.raises(ValueError, match=r"ratings_final.txt: 1 \(user, item\) pairs .* the first \(0, 8\) .* "
                                         r"lines 2 and 4"):
        load_labelled_triples(triples)
    (tmp_path / "r.csv").write_text('user,item,note\nA,x,\n\nB,y,"two\nlines"\nA,x,\n')  # a blank line, a note on two
    with pytest.raises(ValueError, match=r"the first \(A, x\) \(raw ids\) on lines 2 and 6"):
        load_csv(tmp_path / "r.csv", "user", "item")
    # empty lines before the rows: each was named at the empty line before it (a QA probe)
    (tmp_path / "r.csv").write_text("user,item,rating\n\nu1,i1,5\nu2,i2,4\n\r\n\ru1,i1,3\n")
    with pytest.raises(ValueError, match=r"the first \(u1, i1\) \(raw ids\) on lines 3 and 7"):
        load_csv(tmp_path / "r.csv", "user", "item", "rating")
    (tmp_path / "r.csv").write_text('user,item,rating\n\nu1,"i1\nx",5\n')
    with pytest.raises(ValueError, match=r"r.csv, lines 3-4: column 'item' holds a line break: a quote opened on "
                                         r"line 3 runs to line 4"):
        load_csv(tmp_path / "r.csv", "user", "item", "rating")


def test_lightgcn_loader_rejects_an_item_listed_twice(tmp_path):
    (tmp_path / "train.txt").write_text("0 1 2 1\n1 0\n")
    (tmp_path / "test.txt").write_text("0 3\n1 2\n")
    with pytest.raises(ValueError, match=r"1 duplicated \(user, item\) pairs, the first \(0, 1\) at positions 0 and 2"):
        load_lightgcn(tmp_path)


def test_lightgcn_loader_names_the_file_and_lines_of_an_item_listed_twice(tmp_path):
    """The message named neither the file (train.txt or test.txt?) nor a line, only positions among the pairs."""
    _lightgcn_files(tmp_path, "0 1 2\n1 0\n2 3 1 2 3\n", test="0 3\n1 2\n")  # user 2 lists item 3 twice on line 3
    with pytest.raises(ValueError, match=rf"^{re.escape(str(tmp_path / 'train.txt'))}, line 3: 1 duplicated \(user, "
                                         r"item\) pairs, the first \(2, 3\) at positions 3 and 6 .*lines 3 and 3"):
        load_lightgcn(tmp_path)  # (a user on two lines is refused as such)
    _lightgcn_files(tmp_path, "0 1 2\n1 0\n", test="0 3\n\n1 2 2\n")  # the test file, a blank line counted
    with pytest.raises(ValueError, match=rf"^{re.escape(str(tmp_path / 'test.txt'))}, line 3: .* the first \(1, 2\) "
                                         r".*lines 3 and 3"):
        load_lightgcn(tmp_path)


def test_load_csv_duplicates_policy(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("user,item,rating\nA,x,1\nB,y,2\nA,x,5\nB,z,4\nB,y,3\n")
    with pytest.raises(ValueError, match=r"2 \(user, item\) pairs occur on several rows, the first \(A, x\)"):
        load_csv(path, "user", "item", "rating")
    graph = load_csv(path, "user", "item", "rating", duplicates="last")
    users, items = graph["user"].raw_id, graph["item"].raw_id
    rows = [(users[u], items[i], y) for (u, i), y in zip(pairs_of(graph), graph[EDGE].edge_label.tolist())]
    assert rows == [("A", "x", 5.0), ("B", "z", 4.0), ("B", "y", 3.0)]  # last rating of each pair, file order
    with pytest.raises(ValueError, match="duplicates must be 'raise' or 'last', got 'first'"):
        load_csv(path, "user", "item", "rating", duplicates="first")


def test_shared_datasets_hold_no_duplicate_pairs(data_root):
    """Measured: every raw file in ../shared/data stores each (user, item) pair once, so the loaders raise
    on nothing there."""
    graphs = [load_dataset("ml-100k", data_root), load_dataset("bookcrossing", data_root)]
    for name in ("gowalla", "ml-1m"):
        graphs.extend(load_lightgcn(data_root / name))
    sizes = [g[EDGE].edge_index.size(1) for g in graphs]
    assert sizes == [100000, 139746, 810128, 217242, 797758, 202451]
    for graph in graphs:
        assert pair_keys(graph[EDGE].edge_index, num_items(graph)).unique().numel() == graph[EDGE].edge_index.size(1)


def test_node_attributes_survive_edge_edits():
    graph = with_raw_ids(planted_communities(num_users=12, num_items=30, num_communities=2,
                                             interactions_per_user=5, seed=0))
    graph[EDGE].edge_label = torch.ones(graph[EDGE].edge_index.size(1))
    user_raw, item_raw = graph["user"].raw_id.clone(), graph["item"].raw_id.clone()
    request = graph[EDGE].edge_index[:, [0, 7]]
    outputs = {"remove_edges": remove_edges(graph, request), "attack_flip": attack_flip(graph, 0.1)[0],
               "add_negatives": add_negatives(graph, 1), "binarize": binarize(graph, 1)}
    for name, out in outputs.items():
        assert torch.equal(out["user"].raw_id, user_raw), name
        assert torch.equal(out["item"].raw_id, item_raw), name
        assert torch.equal(out["user"].community, graph["user"].community), name
    assert raw_pairs(outputs["remove_edges"]) == [p for k, p in enumerate(raw_pairs(graph)) if k not in (0, 7)]
    outputs["remove_edges"]["user"].raw_id = torch.zeros(12, dtype=torch.long)
    assert torch.equal(graph["user"].raw_id, user_raw)  # new stores: the input graph is untouched


def test_string_raw_ids_of_a_single_user_or_pair_are_selected_as_ids(tmp_path):
    """numpy reads a torch index of one element as the integer it holds: a file of one user (a bool mask [True]
    taken as row 1) failed to split with an IndexError, and a part of one pair gave its raw id as a string."""
    path = tmp_path / "one-user.csv"
    path.write_text("user,item\n" + "".join(f"u0,i{k}\n" for k in range(10)))
    graph = load_csv(path, "user", "item")
    kept = relabel(graph, torch.tensor([True]), torch.arange(10) % 2 == 0, graph[EDGE].edge_index[1] % 2 == 0)
    assert kept["user"].raw_id.tolist() == ["u0"] and kept["item"].raw_id.tolist() == ["i0", "i2", "i4", "i6", "i8"]
    split = random_split(graph, (0.8, 0.1, 0.1), seed=0)
    assert split.train["user"].raw_id.tolist() == ["u0"] and num_users(split.train) == 1
    assert interactions.node_values(graph["item"].raw_id, torch.tensor([3])).tolist() == ["i3"]


def test_relabel_selects_every_node_attribute():
    graph = with_raw_ids(planted_communities(num_users=40, num_items=30, num_communities=3,
                                             interactions_per_user=6, seed=2))
    core = k_core(graph, 5)
    assert 0 < num_users(core) < 40 and 0 < num_items(core) < 30
    kept_users = ((core["user"].raw_id - 1000) // 3).tolist()  # raw ids are 1000 + 3 * local id
    kept_items = ((core["item"].raw_id - 5000) // 7).tolist()
    assert core["user"].community.tolist() == graph["user"].community[kept_users].tolist()
    assert core["item"].community.tolist() == graph["item"].community[kept_items].tolist()
    assert set(raw_pairs(core)) <= set(raw_pairs(graph))
    keep_users = torch.arange(40) != 0  # user 0 dropped but its edges kept: would be renumbered to -1
    with pytest.raises(ValueError, match="edge_mask keeps 6 edges of dropped users or items"):
        relabel(graph, keep_users, torch.ones(30, dtype=torch.bool), torch.ones(240, dtype=torch.bool))


def test_request_samplers_skip_sampled_negatives():
    graph = planted_communities(num_users=30, num_items=40, num_communities=2, interactions_per_user=6, seed=3)
    graph[EDGE].edge_label = torch.ones(graph[EDGE].edge_index.size(1))
    labelled = add_negatives(graph, ratio=2, seed=0)  # 180 observed edges, 360 sampled negatives
    observed = set(pairs_of(graph))
    request = random_edges(labelled, 0.1, seed=1)
    assert request.size(1) == 18  # 10% of the 180 observed edges, not of all 540
    assert set(map(tuple, request.t().tolist())) <= observed
    anywhere = random_edges(labelled, 0.1, seed=1, observed_only=False)
    assert anywhere.size(1) == 54 and set(map(tuple, anywhere.t().tolist())) - observed  # negatives drawn
    mine = user_edges(labelled, [4, 9])
    assert sorted(map(tuple, mine.t().tolist())) == sorted(p for p in observed if p[0] in (4, 9))
    assert user_edges(labelled, [4, 9], observed_only=False).size(1) == 3 * mine.size(1)
    none_observed = make_interactions(torch.tensor([[0, 1], [0, 1]]), torch.zeros(2),
                                      observed=torch.zeros(2, dtype=torch.bool))
    with pytest.raises(ValueError, match="no observed edges"):
        random_edges(none_observed, 0.5)


# --------------------------------------------------------------------------------------------- graph minus request

@pytest.mark.parametrize("max_runs", [1024, 0])  # the remaining edges copied as runs, or gathered
def test_without_edges_removes_exactly_the_request_and_keeps_node_attributes(random_graph, monkeypatch, max_runs):
    monkeypatch.setattr(interactions, "MAX_RUNS", max_runs)
    graph = with_raw_ids(random_graph(20, 15, 120, seed=4))
    graph["user"].community = torch.arange(20) % 3
    graph[EDGE].timestamp = 10 * torch.arange(120)
    graph[EDGE].observed = torch.arange(120) % 5 != 0
    graph[EDGE].edge_attr = torch.arange(360.0).view(120, 3)
    keys = ("edge_index", "edge_label", "timestamp", "observed", "edge_attr")
    before = {key: graph[EDGE][key].clone() for key in keys}
    pairs, gone = pairs_of(graph), [77, 3, 0, 40, 41, 119]
    remaining, positions = without_edges(graph, torch.tensor([pairs[p] for p in gone]).t())
    assert positions.tolist() == gone  # request order
    keep = [p for p in range(120) if p not in gone]
    assert pairs_of(remaining) == [pairs[p] for p in keep]  # exactly the others, in their order
    assert raw_pairs(remaining) == [raw_pairs(graph)[p] for p in keep]
    for key in keys[1:]:
        assert remaining[EDGE][key].tolist() == before[key][keep].tolist(), key
    for node_type in ("user", "item"):
        assert remaining[node_type].num_nodes == graph[node_type].num_nodes
        assert torch.equal(remaining[node_type].raw_id, graph[node_type].raw_id)
    assert torch.equal(remaining["user"].community, graph["user"].community)
    assert all(torch.equal(graph[EDGE][key], value) for key, value in before.items())  # input untouched
    # as documented: the node attributes are the graph's own tensors, the edge attributes new ones
    assert remaining["user"].community is graph["user"].community
    assert not any(remaining[EDGE][key].data_ptr() == graph[EDGE][key].data_ptr() for key in keys)
    empty, none = without_edges(graph, torch.zeros(2, 0, dtype=torch.long))
    assert none.numel() == 0 and pairs_of(empty) == pairs and torch.equal(empty["item"].raw_id, graph["item"].raw_id)
    assert pairs_of(remove_edges(graph, torch.tensor([pairs[p] for p in gone]).t())) == pairs_of(remaining)
    with pytest.raises(ValueError, match="not edges"):
        without_edges(remaining, torch.tensor([pairs[3]]).t())  # already removed


def test_edge_views_keep_node_attributes(random_graph):
    from graphforget.influence.graph import computation_subgraph
    from graphforget.unlearn.sharding import split_graph
    graph = with_raw_ids(random_graph(12, 10, 50, seed=5))
    graph["item"].genre = torch.arange(10) % 4
    views = {"edge_subgraph": edge_subgraph(graph, torch.arange(50) % 2 == 0),
             "computation_subgraph": computation_subgraph(graph, torch.tensor([0, 12]), 1),
             "edgeless computation_subgraph": computation_subgraph(graph, torch.tensor([0]), 0),
             "binarize": binarize(graph, 1), "attack_flip": attack_flip(graph, 0.2)[0],
             **{f"shard {s}": g for s, g in enumerate(split_graph(graph, torch.arange(50) % 3, 3))}}
    for name, view in views.items():
        assert (num_users(view), num_items(view)) == (12, 10), name
        assert torch.equal(view["user"].raw_id, graph["user"].raw_id), name
        assert torch.equal(view["item"].raw_id, graph["item"].raw_id), name
        assert torch.equal(view["item"].genre, graph["item"].genre), name
        assert set(raw_pairs(view)) <= set(raw_pairs(graph)), name


def test_edge_subgraph_takes_a_mask_or_positions_and_refuses_what_is_neither(random_graph):
    graph = random_graph(6, 5, 12, seed=3)
    mask = torch.arange(12) % 3 == 0
    by_mask, by_positions = edge_subgraph(graph, mask), edge_subgraph(graph, torch.tensor([9, 0, 6, 3]))
    assert sorted(pairs_of(by_mask)) == sorted(pairs_of(by_positions)) == sorted(
        p for k, p in enumerate(pairs_of(graph)) if k % 3 == 0)
    # an integer 0/1 mask read as positions 0 and 1 kept two edges, each several times, without a word
    with pytest.raises(ValueError, match=r"edge positions repeat \(an integer 0/1 mask reads as positions 0 and 1"):
        edge_subgraph(graph, mask.long())
    for keep, message in [(mask[:-1], r"an edge mask holds one bool per edge, \[12\], got \[11\]"),
                          (torch.tensor([0, 12]), r"edge positions must be in \[0, 12\), got 0..12"),
                          (torch.tensor([-1]), r"edge positions must be in \[0, 12\), got -1..-1"),
                          (torch.tensor([0.0, 1.0]), r"keep is a bool mask or integer positions \[K\], got "
                                                     r"torch.float32 \[2\]")]:
        with pytest.raises(ValueError, match=message):
            edge_subgraph(graph, keep)
    # narrow integer positions failed in index_select, and an empty list was refused as floats
    for dtype in (torch.uint8, torch.int16):
        assert pairs_of(edge_subgraph(graph, torch.tensor([9, 0, 6, 3], dtype=dtype))) == pairs_of(by_positions)
    assert edge_subgraph(graph, [])[EDGE].edge_index.shape == (2, 0)
    with pytest.raises(ValueError, match=r"an edge mask holds one bool per edge, \[12\], got \[0\]"):
        edge_subgraph(graph, np.zeros(0, dtype=bool))  # an empty array keeps its dtype: a mask of the wrong length


def test_a_graph_without_node_counts_is_refused_by_name(random_graph):
    """Validation pairs without num_nodes failed in train and every unlearner with int(None)'s TypeError."""
    graph = random_graph(6, 5, 12, seed=3)
    del graph["item"].num_nodes
    message = re.escape("(the training graph, or its validation or test pairs) has no num_nodes for its item nodes: "
                        "set graph['item'].num_nodes")
    with pytest.warns(UserWarning, match="num_nodes"):  # PyG's, as it tries to infer the count
        with pytest.raises(ValueError, match=message):
            num_items(graph)
    from graphforget.models import MF
    from graphforget.objectives import BCEObjective
    from graphforget.train import TrainConfig, train
    split = random_split(random_graph(6, 5, 12, seed=3), (0.6, 0.2, 0.2), seed=0)
    val = split.val
    del val["user"].num_nodes
    with pytest.warns(UserWarning, match="num_nodes"):
        with pytest.raises(ValueError, match="has no num_nodes for its user nodes"):
            train(MF(num_users(split.train), num_items(split.train), 2), split.train, BCEObjective(),
                  TrainConfig(epochs=1), val)
    bare = HeteroData()
    with pytest.raises(ValueError, match="has no num_nodes for its user nodes"):
        num_users(bare)
    assert bare.node_types == []  # no store created by asking


def test_pair_keys_are_row_major_and_invertible(random_graph):
    graph = random_graph(9, 7, 40, seed=6)
    edge_index = graph[EDGE].edge_index
    keys = pair_keys(edge_index, 7)
    assert keys.tolist() == [u * 7 + i for u, i in pairs_of(graph)]
    assert torch.equal(pairs_of_keys(keys, 7), edge_index)
    assert sorted(pairs_of(graph)) == list(map(tuple, pairs_of_keys(keys.sort().values, 7).t().tolist()))
    assert pair_keys(edge_index.numpy(), 7).tolist() == keys.tolist()  # numpy arrays too
    # int64 keys from any integer ids: in int32 the key of (85899, 17296) of 50,000 items wrapped to (0, 0)'s 0
    far = torch.tensor([[85899], [17296]])
    for ids in (far.int(), far.to(torch.uint32), far.int().numpy()):
        assert pair_keys(ids, 50_000).tolist() == [85899 * 50_000 + 17296]


# --------------------------------------------------------------------------------------------- adjacency

def dense_normalized_adjacency(graph) -> torch.Tensor:
    """``D^-1/2 A D^-1/2`` of the observed edges by loops over the pairs (users first), float64."""
    users = num_users(graph)
    n = users + num_items(graph)
    store = graph[EDGE]
    observed = store.observed.tolist() if "observed" in store else [True] * store.edge_index.size(1)
    edges = [pair for pair, seen in zip(pairs_of(graph), observed) if seen]
    deg = Counter([u for u, _ in edges] + [users + i for _, i in edges])
    adj = torch.zeros(n, n, dtype=torch.float64)
    for u, i in edges:
        adj[u, users + i] = adj[users + i, u] = 1 / math.sqrt(deg[u] * deg[users + i])
    return adj


def test_normalized_adjacency_against_the_dense_formula(random_graph):
    graph = random_graph(9, 7, 30, seed=7)
    graph[EDGE].observed = torch.arange(30) % 4 != 0
    like = torch.zeros(1, dtype=torch.float64)
    adjacency = normalized_adjacency(graph, like)
    assert adjacency.layout == torch.sparse_csr and adjacency.dtype == torch.float64
    torch.testing.assert_close(adjacency.to_dense(), dense_normalized_adjacency(graph))
    # A set edge_weight replaces the normalisation (k-hop subgraphs carry the whole graph's weights).
    graph[EDGE].edge_weight = torch.rand(30, generator=torch.Generator().manual_seed(0))
    dense = normalized_adjacency(graph, like).to_dense()
    for (u, i), w, seen in zip(pairs_of(graph), graph[EDGE].edge_weight.tolist(), graph[EDGE].observed.tolist()):
        assert dense[u, 9 + i] == dense[9 + i, u] == (torch.tensor(w, dtype=torch.float64) if seen else 0)


def test_float64_propagation_weights_are_computed_in_float64(random_graph):
    """For a float64 model, the normalised adjacency, its edge subsets (SGL's views), the k-hop subgraph's carried
    weights (IFRU's locality) and the PyG adapter's edge_weight agree with the float64 formula to 1e-15; computed in
    float32 and cast, they were off by up to 6e-8."""
    from graphforget.influence.hvp import scoring_graph
    from graphforget.influence.terms import Terms
    from graphforget.models import LightGCN, PyGRecommender
    graph = random_graph(9, 7, 30, seed=7)
    exact, like = dense_normalized_adjacency(graph), torch.zeros(1, dtype=torch.float64)
    edges = graph[EDGE].edge_index

    def close(got):
        torch.testing.assert_close(got, exact[edges[0], 9 + edges[1]], rtol=1e-15, atol=0)
    dense = normalized_adjacency(graph, like).to_dense()
    close(dense[edges[0], 9 + edges[1]])
    close(AdjacencyPattern.of(graph).subset(torch.ones(30, dtype=torch.bool), like).to_dense()[edges[0], 9 + edges[1]])
    model = LightGCN(9, 7, embedding_dim=2, num_layers=1).double()
    sub = scoring_graph(model, graph, Terms(edges[:, :1], torch.ones(1)))
    positions = edge_positions(graph, sub[EDGE].edge_index)
    torch.testing.assert_close(sub[EDGE].edge_weight, exact[edges[0], 9 + edges[1]][positions], rtol=1e-15, atol=0)
    adapter = PyGRecommender(_Scorer(), 9, 7, receptive_field=1, edge_weight=True).double()
    _, weight = adapter.propagation_inputs(graph)  # a module of the user's own: edge_weight passed as a tensor
    close(weight[:30])


class _Scorer(torch.nn.Module):
    """The smallest module the PyG adapter wraps: ``forward(edge_index, edge_label_index, edge_weight)``."""

    def __init__(self):
        super().__init__()
        self.embedding = torch.nn.Embedding(16, 2)

    def forward(self, edge_index, edge_label_index, edge_weight=None):
        return (self.embedding(edge_label_index[0]) * self.embedding(edge_label_index[1])).sum(-1)


def test_bipartite_adjacency_by_hand_and_its_weights_one_per_edge():
    """7 weights for 4 edges had built an asymmetric matrix (A[u, i] = 1, A[i, u] = 5), [E, 1] ones a hybrid one."""
    edges, weight = torch.tensor([[0, 1, 1], [0, 0, 1]]), torch.tensor([2.0, 3.0, 5.0])
    dense = torch.zeros(4, 4)
    dense[[0, 1, 1], [2, 2, 3]] = weight
    assert torch.equal(bipartite_adjacency(edges, weight, 2, 2).to_dense(), dense + dense.t())
    for bad, got in ((torch.ones(7), "[7]"), (torch.ones(3, 1), "[3, 1]"), (torch.ones(2), "[2]"),
                     ([1.0] * 3, "a list")):
        with pytest.raises(ValueError, match=re.escape(f"edge_weight must be a [3] tensor, one weight per edge, "
                                                       f"got {got}")):
            bipartite_adjacency(edges, bad, 2, 2)


def test_adjacency_cache_answers_equal_graphs_and_never_a_stale_one(random_graph):
    import copy
    import pickle
    graph = random_graph(9, 7, 30, seed=8)
    like = torch.zeros(1, dtype=torch.float64)
    cache = AdjacencyCache(size=2)
    first = cache(graph, like)
    assert cache(graph, like) is first and len(cache) == 1
    # A new graph with the same edges (a remaining graph, a shard graph rebuilt per call) is served it too.
    assert cache(edge_subgraph(graph, torch.ones(30, dtype=torch.bool)), like) is first
    # Another dtype, another graph, an in-place edit: built anew, and right.
    assert cache(graph, torch.zeros(1)) is not first and len(cache) == 2
    edited = graph.clone()
    assert cache(edited, like) is first
    edited[EDGE].edge_index[1, 0] = (edited[EDGE].edge_index[1, 0] + 1) % 7
    rebuilt = cache(edited, like)
    assert rebuilt is not first
    torch.testing.assert_close(rebuilt.to_dense(), dense_normalized_adjacency(edited))
    edited[EDGE].observed = torch.arange(30) != 3
    torch.testing.assert_close(cache(edited, like).to_dense(), dense_normalized_adjacency(edited))
    assert len(cache) == 2  # the least recently used dropped
    recent = AdjacencyCache(size=2)  # used, not made: a hit keeps an entry (qa96: first in, first out passed)
    graphs = [random_graph(9, 7, 30, seed=s) for s in (1, 2, 3)]
    kept = recent(graphs[0], like)
    recent(graphs[1], like)
    assert recent(graphs[0], like) is kept
    recent(graphs[2], like)  # drops graph 1's
    assert recent(graphs[0], like) is kept
    # Inputs that require gradients are never kept (the matrix stays differentiable in them).
    edited[EDGE].edge_weight = torch.rand(30, dtype=torch.float64, requires_grad=True)
    assert cache(edited, like).requires_grad and len(cache) == 2
    # A copy or a pickle of the holder starts empty, and builds what the cache builds.
    assert len(copy.deepcopy(cache)) == 0 and len(pickle.loads(pickle.dumps(cache))) == 0
    observed = AdjacencyCache(build=observed_adjacency)
    for kept in (observed, copy.deepcopy(observed), pickle.loads(pickle.dumps(observed))):
        ones = torch.zeros(16, 16, dtype=torch.float64)
        for u, i in message_passing_edges(edited).t().tolist():
            ones[u, 9 + i] = ones[9 + i, u] = 1
        assert torch.equal(kept(edited, like).to_dense(), ones) and "build=observed_adjacency" in repr(kept)
    cache.clear()
    assert len(cache) == 0 and "kept=0" in repr(cache)
    for size in (0, 1.5, math.nan):  # 1.5 failed at the first call, in a slice
        with pytest.raises(ValueError, match="AdjacencyCache.size: must be an integer >= 1"):
            AdjacencyCache(size=size)


def test_an_adjacency_pattern_reads_every_edge_subset_as_normalized_adjacency_builds_it(random_graph):
    """Entry for entry (SGL's views are read so): the same rows, columns and values, in float64 too, for subsets
    of the observed edges only (unobserved pairs carry no messages)."""
    graph = random_graph(9, 7, 30, seed=10)
    graph[EDGE].observed = torch.arange(30) % 5 != 0
    pattern = AdjacencyPattern.of(graph)
    edges = message_passing_edges(graph)
    assert torch.equal(pattern.edge_index, edges)
    gen = torch.Generator().manual_seed(0)
    for keep in [torch.rand(edges.size(1), generator=gen) >= ratio for ratio in (0.0, 0.3, 0.9, 1.0)]:
        view = make_interactions(edges[:, keep], num_users=9, num_items=7)
        for like in (None, torch.zeros(1, dtype=torch.float64)):
            got, expected = pattern.subset(keep, like), normalized_adjacency(view, like)
            for part in ("crow_indices", "col_indices", "values"):
                assert torch.equal(getattr(got, part)(), getattr(expected, part)())


def test_an_adjacency_pattern_refuses_a_keep_that_is_not_a_bool_mask_of_its_edges(random_graph):
    """An integer 0/1 mask was read as positions (edges 0 and 1, the rest of the matrix garbage), silently."""
    graph = random_graph(9, 7, 30, seed=10)
    pattern = AdjacencyPattern.of(graph)
    for keep in (torch.ones(30, dtype=torch.long), torch.ones(30), torch.ones(29, dtype=torch.bool)):
        with pytest.raises(ValueError, match=re.escape(f"keep must be a bool mask of shape [30], one entry per "
                                                       f"observed edge, got {keep.dtype} {list(keep.shape)}")):
            pattern.subset(keep)


def test_a_held_graph_skips_the_check_for_its_block_only(random_graph):
    from graphforget.models import LightGCN
    graph = random_graph(9, 7, 30, seed=9)
    model = LightGCN(9, 7, embedding_dim=3, num_layers=1)
    like = torch.zeros(1)
    with hold_graph(model, graph):
        held = model.adjacency(graph, like)
        assert model.adjacency(graph, like) is held
        graph[EDGE].edge_index[1, 0] = (graph[EDGE].edge_index[1, 0] + 1) % 7  # breaks the holder's word
        assert model.adjacency(graph, like) is held  # not checked: the block's promise
        graph[EDGE].edge_index = graph[EDGE].edge_index.clone()  # a new tensor is noticed
        noticed = model.adjacency(graph, like)
        assert noticed is not held
        torch.testing.assert_close(noticed.to_dense().double(), dense_normalized_adjacency(graph))
    graph[EDGE].edge_index[1, 1] = (graph[EDGE].edge_index[1, 1] + 1) % 7
    after = model.adjacency(graph, like)  # after the block every lookup is checked again
    assert after is not noticed
    torch.testing.assert_close(after.to_dense().double(), dense_normalized_adjacency(graph))


def test_attack_flip_refuses_raw_ratings(random_graph):
    graph = random_graph(10, 8, 30, seed=0)
    graph[EDGE].edge_label = torch.randint(1, 6, (30,)).float()
    with pytest.raises(ValueError, match=r"attack_flip flips 0/1 labels, but .*\.binarize\(graph, threshold\)"):
        attack_flip(graph, 0.1)


def test_seeded_functions_refuse_a_seed_that_is_not_an_integer(random_graph):
    graph = random_graph(10, 8, 30, seed=0)
    calls = [lambda seed: random_split(graph, seed=seed), lambda seed: random_edges(graph, 0.5, seed=seed),
             lambda seed: attack_flip(graph, 0.1, seed=seed), lambda seed: add_negatives(graph, 1, seed=seed)]
    for call in calls:
        for seed in (0.5, "0", None, True, -1, 2 ** 32, 2 ** 64):  # torch named no argument for -1 and 2**64
            with pytest.raises(ValueError, match=re.escape(f"seed must be an integer in [0, 2**32), got {seed!r}")):
                call(seed)
    assert torch.equal(random_edges(graph, 0.5, seed=np.int64(3)), random_edges(graph, 0.5, seed=3))


def test_user_edges_and_k_core_refuse_ids_or_cores_that_are_not_integers(random_graph):
    graph = random_graph(10, 8, 30, seed=0)
    with pytest.raises(ValueError, match="user ids must be integers, got dtype torch.float32"):
        user_edges(graph, [1.5])
    for k in (-1, 1.5):
        with pytest.raises(ValueError, match=f"k must be an integer >= 0, got {k}"):
            k_core(graph, k)
    assert k_core(graph, 0) is graph


def test_transforms_name_a_bad_mask_ratio_or_threshold(random_graph):
    graph = random_graph(10, 8, 30, seed=0)
    ones = {"keep_users": torch.ones(10, dtype=torch.bool), "keep_items": torch.ones(8, dtype=torch.bool),
            "edge_mask": torch.ones(30, dtype=torch.bool)}
    for name, bad in [("keep_users", torch.ones(10, dtype=torch.long)), ("keep_items", torch.ones(5, dtype=torch.bool)),
                      ("edge_mask", torch.ones(29, dtype=torch.bool))]:
        with pytest.raises(ValueError, match=rf"{name} must be a bool mask of shape"):
            relabel(graph, **{**ones, name: bad})
    for ratio in (1.5, 0, True):
        with pytest.raises(ValueError, match="ratio must be a positive integer"):
            add_negatives(graph, ratio)
    with pytest.raises(ValueError, match="threshold must be a finite number, got nan"):
        binarize(graph, float("nan"))


def test_pairs_with_data_keeps_the_pairs_whose_user_and_item_keep_an_observed_edge():
    """Against a plain loop; a sampled negative (unobserved) is no data; all pairs kept: the same object."""
    graph = make_interactions(torch.tensor([[0, 0, 1, 2, 3], [0, 1, 1, 2, 3]]), torch.tensor([1., 0., 1., 1., 0.]),
                              num_users=5, num_items=5, observed=torch.tensor([True, True, True, True, False]))
    pairs = make_interactions(torch.tensor([[0, 1, 2, 3, 4, 0, 2], [2, 0, 1, 3, 4, 4, 0]]),
                              torch.tensor([1., 0., 1., 1., 0., 0., 1.]), num_users=5, num_items=5)
    observed = graph[EDGE].edge_index[:, graph[EDGE].observed].tolist()
    users, items = set(observed[0]), set(observed[1])
    expected = [(u, i) for u, i in zip(*pairs[EDGE].edge_index.tolist()) if u in users and i in items]
    kept = pairs_with_data(pairs, graph)
    assert list(zip(*kept[EDGE].edge_index.tolist())) == expected == [(0, 2), (1, 0), (2, 1), (2, 0)]
    assert kept[EDGE].edge_label.tolist() == [1., 0., 1., 1.] and pairs[EDGE].edge_index.size(1) == 7
    inside = make_interactions(torch.tensor([[0, 2], [1, 2]]), num_users=5, num_items=5)
    assert pairs_with_data(inside, graph) is inside


def test_lightgcn_loader_counts_users_and_items_of_the_test_file_too(tmp_path):
    # user 2 and item 3 occur in test.txt only: both files share one id space sized by the larger ids
    _lightgcn_files(tmp_path, "0 1\n1 0\n", test="0 0\n2 3\n")
    train, test = load_lightgcn(tmp_path)
    assert (num_users(train), num_items(train)) == (num_users(test), num_items(test)) == (3, 4)
    assert pairs_of(test) == [(0, 0), (2, 3)]


def test_lightgcn_loader_sparse_id_slack_is_twice_the_used_ids_plus_1024(tmp_path):
    # items used: 0, 1 and the largest; ids 0..N-1 held: refused once N > 2 * 3 + 1024 = 1030
    _lightgcn_files(tmp_path, "0 1\n1 1029\n", test="0 0\n")
    assert num_items(load_lightgcn(tmp_path)[0]) == 1030
    _lightgcn_files(tmp_path, "0 1\n1 1030\n", test="0 0\n")
    with pytest.raises(ValueError, match="the largest item id is 1030, but only 3 item ids are used"):
        load_lightgcn(tmp_path)


def test_load_csv_keeps_padded_and_plain_integer_ids_apart(tmp_path):
    # no id beyond int64 here: "007" and "7" must stay two users by the comparison of the written forms alone
    path = tmp_path / "ratings.csv"
    path.write_text("u,i\n007,3\n7,3\n")
    graph = load_csv(path, "u", "i")
    assert list(graph["user"].raw_id) == ["007", "7"] and pairs_of(graph) == [(0, 0), (1, 0)]


def test_adjacency_cache_keeps_no_matrix_built_from_inputs_that_require_gradients(random_graph):
    graph = random_graph(9, 7, 30, seed=8)
    like = torch.zeros(1, dtype=torch.float64)
    cache = AdjacencyCache(size=2)
    values = torch.rand(30, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    for _ in range(2):  # two leaves of equal values: each call's matrix must differentiate in its own leaf
        weight = values.clone().requires_grad_()
        graph[EDGE].edge_weight = weight
        cache(graph, like).values().sum().backward()
        # each edge weight sits twice in the symmetric matrix: d(sum)/dw = 2
        torch.testing.assert_close(weight.grad, torch.full((30,), 2.0, dtype=torch.float64))
    assert len(cache) == 0


def test_a_repeated_pair_on_a_csv_row_of_several_lines_is_named_by_the_row_s_first_line(tmp_path):
    """Beside test_raw_loaders_reject_duplicate_pairs_naming_raw_ids_and_lines: the first row of the pair holds a
    quoted note over lines 2-3; the row is named by its first line, 2 (as a CSV row's own errors name lines 2-3)."""
    (tmp_path / "r.csv").write_text('user,item,note\nA,x,"two\nlines"\nB,y,\nA,x,\n')
    with pytest.raises(ValueError, match=r"the first \(A, x\) \(raw ids\) on lines 2 and 5;"):
        load_csv(tmp_path / "r.csv", "user", "item")


def test_attack_flip_names_a_bad_ratio_before_looking_at_the_graph():
    """attack_flip checks its ratio first, as random_edges does: on a graph of raw ratings or one without edges, a
    ratio of the wrong kind is the error named (the graph's own error came first when only the count checked it)."""
    ratings = make_interactions(torch.tensor([[0, 1], [0, 1]]), torch.tensor([4., 2.]), 2, 2)
    empty = make_interactions(torch.zeros(2, 0, dtype=torch.long), torch.zeros(0), 2, 2)
    for graph in (ratings, empty):
        for bad, message in (("0.5", "ratio must be a number in (0, 1), got '0.5'"), (1.5, "ratio must be in (0, 1), "
                                                                                            "got 1.5")):
            with pytest.raises(ValueError, match=re.escape(message)):
                attack_flip(graph, bad)


@pytest.mark.parametrize("users, items", [(5, 4), (4, 5), (2, 9), (1, 3), (1, 1)])
@pytest.mark.parametrize("start", ["user", "item"])
def test_a_path_graphs_node_at_place_p_lies_p_less_one_hops_from_its_pair(users, items, start):
    """check_receptive_field reads a depth off the path: its node at place p (from a user: u_k at 2k, i_k at 2k + 1;
    from an item the other way round) must lie max(p - 1, 0) hops from (u0, i0), as far as the counts allow, and the
    nodes off the path out of reach."""
    from graphforget.data import num_items, num_users, path_graph, path_hops
    from graphforget.influence import k_hop_mask

    longest = path_hops(users, items, start)
    # counted by hand (qa96: the test read its reference off path_hops): the path alternates the start's side and
    # the other's, so it holds 2 min(first, second) nodes, one more where the start's side has more
    first, second = (users, items) if start == "user" else (items, users)
    assert longest == 2 * min(first, second) + (first > second) - 2
    graph = path_graph(users, items, longest, start)
    assert (num_users(graph), num_items(graph)) == (users, items) and bool((graph[EDGE].edge_label == 1).all())
    place = torch.full((users + items,), 2 * (users + items))  # off the path: never reached
    first, second = (place[:users], place[users:]) if start == "user" else (place[users:], place[:users])
    ids = torch.arange(longest + 2)
    first[:ids[0::2].numel()], second[:ids[1::2].numel()] = ids[0::2], ids[1::2]
    start_ids = torch.tensor([0, users])
    for reach in range(longest + 2):
        assert torch.equal(k_hop_mask(graph, start_ids, reach), place <= reach + 1), reach
    assert torch.equal(k_hop_mask(graph, start_ids, longest), place < 2 * (users + items))  # the path, whole
    with pytest.raises(ValueError, match=rf"path_graph: hops must be an integer in \[0, {longest}\]"):
        path_graph(users, items, longest + 1, start)


def test_a_compressed_data_file_is_refused_by_name(tmp_path):
    """numpy read a gzip'd triples file by itself, and the lines that errors named were counted in its compressed bytes
    (a repeated pair failed with a StopIteration traceback; a malformed line 161 was named line 1); a gzip'd CSV was
    said not to be UTF-8, with the advice to read it as latin-1 (a QA probe)."""
    import bz2
    import gzip
    import zipfile
    rows = "".join(f"{u}\t{i}\t{(u + i) % 2}\n" for u in range(1, 6) for i in range(1, 4)) + "1\t1\t1\n"  # a repeat
    (tmp_path / "t.txt.gz").write_bytes(gzip.compress(rows.encode()))
    (tmp_path / "c.csv.bz2").write_bytes(bz2.compress(b"user,item\nu1,i1\n"))
    with zipfile.ZipFile(tmp_path / "c.zip", "w") as archive:
        archive.writestr("c.csv", "user,item\nu1,i1\n")
    (tmp_path / "c.csv.xz").write_bytes(b"\xfd7zXZ\x00" + b"\x00" * 10)  # the formats' first bytes
    (tmp_path / "t.txt.zst").write_bytes(b"\x28\xb5\x2f\xfd" + b"\x00" * 10)
    csv = lambda p: load_csv(p, "user", "item")  # noqa: E731
    for name, kind, opener, read in (("t.txt.gz", "gzip", "gunzip -k", load_labelled_triples),
                                     ("c.csv.bz2", "bzip2", "bunzip2 -k", csv), ("c.zip", "zip", "unzip", csv),
                                     ("c.csv.xz", "xz", "unxz -k", csv),
                                     ("t.txt.zst", "zstd", "unzstd", load_labelled_triples)):
        with pytest.raises(ValueError, match=re.escape(f"{tmp_path / name} is {kind}-compressed: decompress it first "
                                                       f"({opener} {name}) and give the dataset file it holds")):
            read(tmp_path / name)


def test_a_csv_file_in_utf16_a_blank_first_line_or_a_repeated_header_is_named(tmp_path):
    """UTF-16 was said not to be UTF-8 with the advice to read it as latin-1, which garbled the header; blank lines
    before the header gave "columns [...] not in FILE (has [])"; and the header of a second file joined with `cat`
    was read, without a label column, as the user "user" rating the item "item" (QA probes)."""
    path = tmp_path / "r.csv"
    for wide in ("utf-16", "utf-32"):  # UTF-32's mark starts with UTF-16's: it was named UTF-16
        path.write_bytes("user,item\nu1,i1\n".encode(wide))
        # an endian codec read the mark as the first name's character (qa100: "has ['\ufeffuser', 'item']")
        for given, shown in (("utf-8", "UTF-8"), ("latin-1", "latin-1"), *((f"{wide}-{e}",) * 2 for e in ("le", "be"))):
            with pytest.raises(ValueError, match=re.escape(
                    f"{path} starts with the byte-order mark of {wide.upper()}: it is {wide.upper()} text, not "
                    f"{shown}: read it with the encoding '{wide}' (encoding='{wide}', or the command's --encoding)")):
                load_csv(path, "user", "item", encoding=given)
        assert load_csv(path, "user", "item", encoding=wide)["user"].raw_id.tolist() == ["u1"]
        for codec in (f"{wide}-le", f"{wide}-be"):  # without the mark (qa149: "not UTF-8 ...: read it as latin-1")
            path.write_bytes("user,item\nu1,i1\n".encode(codec))
            with pytest.raises(ValueError, match=re.escape(
                    f"{path} has the NUL bytes of ASCII text in {wide.upper()} without a byte-order mark: it is "
                    f"{codec.upper()} text, not UTF-8: read it with the encoding '{codec}'")):
                load_csv(path, "user", "item")
            assert load_csv(path, "user", "item", encoding=codec)["user"].raw_id.tolist() == ["u1"]
    for blank in ("\n\n", " \t\n"):  # spaces too: "columns [...] not in FILE (has [''])"
        path.write_text(f"{blank}user,item\nu1,i1\n")
        with pytest.raises(ValueError, match=re.escape(f"{path}, line 1: blank, where a CSV file starts with a")):
            load_csv(path, "user", "item")
    path.write_text("\n \n")
    with pytest.raises(ValueError, match=re.escape(f"{path} is empty")):
        load_csv(path, "user", "item")
    path.write_text("user,item\nu1,i1\nuser,item\nu2,i1\n")
    with pytest.raises(ValueError, match=re.escape(f"{path}, line 3: the row repeats the header (user, item): files "
                                                   "joined with their headers? Remove it")):
        load_csv(path, "user", "item")


# Each test below failed under a one-line mutation that the suite had passed (qa109, mutation testing).
def test_lightgcn_refuses_a_negative_user_id_naming_its_line(tmp_path):
    (tmp_path / "test.txt").write_text("0 3\n1 2\n")
    for train, line in (("0 1 2\n-1 0\n", 2), ("0 1 2\n1 0\n-3\n", 3)):
        (tmp_path / "train.txt").write_text(train)
        with pytest.raises(ValueError, match=re.escape(f"{tmp_path / 'train.txt'}, line {line}: negative id -")):
            load_lightgcn(tmp_path)


def test_delimiter_hint_names_a_comma_when_another_delimiter_was_given(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("user,item,rating\nu1,i1,5\n")
    with pytest.raises(ValueError, match=re.escape("is the delimiter ','? (delimiter=','; fit --delimiter)")):
        load_csv(path, "user", "item", "rating", delimiter=";")


def test_k_core_1_drops_nodes_without_edges():
    graph = make_interactions(torch.tensor([[0, 1], [0, 0]]), None, num_users=3, num_items=2)
    core = k_core(graph, 1)
    assert (num_users(core), num_items(core)) == (2, 1)


def test_random_split_refuses_ratios_summing_to_0_995(tiny_graph):
    with pytest.raises(ValueError, match="ratios"):
        random_split(tiny_graph, (0.6, 0.2, 0.195))


def test_add_negatives_refuses_a_user_one_item_short_instead_of_looping():
    # user 0 rates 3 of 4 items, 2 positively: ratio 1 needs 2 negatives, 1 item is left
    graph = make_interactions(torch.tensor([[0, 0, 0, 1], [0, 1, 2, 3]]), torch.tensor([1., 1., 0., 1.]), 2, 4)

    def hang(*_):
        raise TimeoutError("add_negatives loops forever")
    old = signal.signal(signal.SIGALRM, hang)
    signal.alarm(20)
    try:
        with pytest.raises(ValueError, match=r"user 0 \(needs 2, has 1\)"):
            add_negatives(graph, ratio=1)
        # ratio times the positives: 2 of 5 items, 3 left, 4 needed (qa168: counted once, ratio 2 passed and looped)
        graph = make_interactions(torch.tensor([[0, 0, 1], [0, 1, 4]]), torch.ones(3), 2, 5)
        with pytest.raises(ValueError, match=r"user 0 \(needs 4, has 3\)"):
            add_negatives(graph, ratio=2)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def test_random_edges_rounds_the_count():
    graph = make_interactions(torch.tensor([[0, 0, 1, 1, 2, 2, 3, 3, 4, 4], [0, 1, 0, 1, 0, 1, 0, 1, 0, 1]]))
    assert random_edges(graph, 0.37).size(1) == 4  # round(3.7); attack_flip rounds too


def test_random_edges_draws_its_share_of_the_observed_edges_among_them():
    """Positions into the observed edges taken for positions into all edges drew unobserved ones (qa154)."""
    graph = make_interactions(torch.arange(20).repeat(2, 1), observed=torch.arange(20) % 2 == 1)  # user u, item u
    for seed in range(5):
        request = random_edges(graph, 0.5, seed=seed)
        assert request.size(1) == 5 and bool((request[0] % 2 == 1).all()), request


def test_adversarial_edges_round_the_share_of_users():
    """0.39 of 10 users is 4, as random_edges rounds (a truncation drew 3; qa154)."""
    graph = make_interactions(torch.arange(10).repeat(2, 1))
    model = hand_mf([[float(u)] for u in range(10)], [[1.0]] * 10)
    assert [adversarial_edges(model, graph, fraction=share, seed=0)[1].size(1) for share in (0.39, 0.7)] == [4, 7]


def test_a_request_with_item_id_equal_to_num_items_is_named_unknown(tiny_graph):
    graph = tiny_graph
    with pytest.raises(ValueError, match="unknown ids, the first \\(0, 5\\)"):
        interactions.validate_pairs(graph, torch.tensor([[0], [num_items(graph)]]))


def test_edge_subgraph_refuses_sorted_repeated_positions(tiny_graph):
    with pytest.raises(ValueError, match="edge positions repeat"):
        edge_subgraph(tiny_graph, torch.tensor([0, 0, 1]))


def test_make_interactions_names_a_negative_count_as_its_argument():
    with pytest.raises(ValueError, match="num_users must be non-negative, got -1"):
        make_interactions(torch.zeros(2, 0, dtype=torch.long), None, -1, 3)


def test_a_utf32_be_file_is_named_as_utf32(tmp_path):
    path = tmp_path / "r.csv"
    path.write_bytes(b"\x00\x00\xfe\xff" + "user,item\nu1,i1\n".encode("utf-32-be"))
    with pytest.raises(ValueError, match="starts with the byte-order mark of UTF-32"):
        load_csv(path, "user", "item")


def test_relabel_refuses_an_edge_kept_to_a_dropped_item(tiny_graph):
    graph = tiny_graph
    users = torch.ones(4, dtype=torch.bool)
    items = torch.tensor([False, True, True, True, True])
    with pytest.raises(ValueError, match="edge_mask keeps 2 edges of dropped users or items"):
        relabel(graph, users, items, torch.ones(9, dtype=torch.bool))


def test_add_negatives_drops_per_edge_attributes_such_as_a_timestamp(tiny_graph):
    graph = tiny_graph
    graph[EDGE].timestamp = torch.arange(9)
    out = add_negatives(graph, ratio=1)
    assert "timestamp" not in out[EDGE]


def _three_users():
    users, items = [[1.0], [-1.0], [0.5]], [[0.5], [0.4], [-0.3], [0.2]]
    graph = make_interactions(torch.tensor([[0, 1, 2], [0, 0, 0]]), torch.ones(3), 3, 4,
                              observed=torch.tensor([True, True, True]))
    return hand_mf(users, items), graph


def test_a_tiny_fraction_still_attacks_one_user():
    """Fraction 0.1 of 3 users rounds to 0; the code promises at least one
    (``count = max(1, ...)``), and a share in (0, 1] must attack someone."""
    model, graph = _three_users()
    attacked, request = adversarial_edges(model, graph, fraction=0.1, seed=0)
    assert request.size(1) == 1
    assert attacked[EDGE].edge_index.size(1) == 3 + 1


def test_the_fake_edges_are_observed_and_carry_no_stale_extras():
    """The docstring: "the fake edges appended (label 1, observed)"; extras (timestamps) have no value for them."""
    model, graph = _three_users()
    graph[EDGE].timestamp = torch.tensor([10, 20, 30])
    attacked, request = adversarial_edges(model, graph)
    n = request.size(1)
    assert n == 3  # every user has 3 free items
    assert attacked[EDGE].observed.tolist() == [True] * (3 + n)
    assert attacked[EDGE].edge_label.tolist() == [1.0] * (3 + n)
    assert "timestamp" not in attacked[EDGE]
    assert graph[EDGE].timestamp.tolist() == [10, 20, 30]  # the input keeps its own


def _counting():
    built = []

    def build(graph, like):
        built.append(1)
        return normalized_adjacency(graph, like)
    return built, build


def _dense_reference(edge_index, U, I):
    """D^-1/2 A D^-1/2 by the definition, densely."""
    A = torch.zeros(U + I, U + I, dtype=torch.float64)
    for u, i in edge_index.t().tolist():
        A[u, U + i] = A[U + i, u] = 1.0
    d = A.sum(1)
    inv = torch.where(d > 0, d.rsqrt(), torch.zeros_like(d))
    return inv[:, None] * A * inv[None, :]


def test_clear_drops_what_a_held_graph_found_too():
    """Its docstring says "Drops every kept adjacency (held graphs'
    too)"; a lookup after clear must build again."""
    graph = make_interactions(torch.tensor([[0, 0, 1], [0, 1, 1]]), num_users=2, num_items=2)
    built, build = _counting()
    cache, like = AdjacencyCache(build=build), torch.zeros(1, dtype=torch.float64)
    with cache.holding(graph):
        cache(graph, like)
        assert len(built) == 1
        cache.clear()
        assert len(cache) == 0
        cache(graph, like)
        assert len(built) == 2


def test_an_edit_in_place_after_the_hold_ended_is_seen():
    """Outside ``holding``'s block the content check resumes (its docstring: "each ends
    with its block"), so an edge edited in place afterwards must not be served the stale matrix."""
    U, I = 3, 3
    graph = make_interactions(torch.tensor([[0, 1, 2], [0, 1, 2]]), num_users=U, num_items=I)
    cache, like = AdjacencyCache(), torch.zeros(1, dtype=torch.float64)
    with cache.holding(graph):
        cache(graph, like)
    graph[EDGE].edge_index[1, 2] = 0  # (2, 2) -> (2, 0), in place
    got = cache(graph, like).to_dense()
    assert torch.allclose(got, _dense_reference(graph[EDGE].edge_index, U, I))


def test_the_first_draw_falls_in_community_with_probability_p_in_exactly():
    """The docstring gives the user's own community "a share
    p_in of the first draw". With one item per user the draw is the first one: over 20,000 users of 2 communities of
    2 items, p_in = 0.5 must give an in-community share of 0.5 (binomial sd 0.0035; one item too many in the
    out-of-community weights gives 0.6)."""
    graph = planted_communities(num_users=20000, num_items=4, num_communities=2, interactions_per_user=1, p_in=0.5,
                                seed=0)
    users, items = graph[EDGE].edge_index
    share = (graph["user"].community[users] == graph["item"].community[items]).double().mean().item()
    assert abs(share - 0.5) < 0.02
    graph = planted_communities(num_users=20000, num_items=6, num_communities=3, interactions_per_user=1, p_in=0.2,
                                seed=1)
    users, items = graph[EDGE].edge_index
    share = (graph["user"].community[users] == graph["item"].community[items]).double().mean().item()
    assert abs(share - 0.2) < 0.02
