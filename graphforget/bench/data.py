"""Where a benchmark's interactions come from: a named dataset or a user's file, with an identity for the keys.

* explicit datasets (``ml-100k``, ``bookcrossing``, ``synthetic``): the IFRU protocol's preparation
  (:func:`~graphforget.protocols.attack.prepare_attack_data`: 5-core, 0/1 labels, 6:2:2 split);
* implicit datasets in the LightGCN line format (``ml-1m``, ``gowalla``: the folders of the data root) and
  files (``--data PATH --format F``): the preparation of ``graphforget fit``
  (:func:`~graphforget.workflow.prepare_split`): the file's own test set when it has one (a tenth of the
  rest for validation), else 8:1:1; implicit interactions get ``negatives`` sampled non-interactions each
  (label 0) for the BCE objective, or none for BPR, which draws its own (then there is no validation set
  and training runs its epochs).

A cell's key holds :meth:`DataSource.identity`: the name, the options and the sha256 of every file read, so
an edited file never reuses a cached cell.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, replace
from pathlib import Path
from typing import cast

from torch_geometric.data import HeteroData

from ..config import check_fields, is_integer
from ..data import EDGE, Split, attack_flip, edge_subgraph, find_data_root, random_split
from ..data.loaders import known_dataset_of
from ..protocols.attack import DATASET_NAMES, AttackData, prepare_attack_data, raw_data_file
from ..runs import sha256_file
from ..workflow import (binary_labels, check_disjoint, check_threshold_has_ratings, data_files, load_file,
                        prepare_split)

__all__ = ["IMPLICIT_DATASETS", "BENCH_DATASETS", "DataSource"]

#: Implicit datasets in the LightGCN format: name -> folder under the data root.
IMPLICIT_DATASETS = {"ml-1m": "ml-1m", "gowalla": "gowalla"}
#: Every dataset the harness knows by name.
BENCH_DATASETS = DATASET_NAMES + tuple(IMPLICIT_DATASETS)


#: A CSV file's reading options and their defaults (of :func:`~graphforget.data.load_csv`).
CSV_DEFAULTS = {"duplicates": "raise", "delimiter": ",", "encoding": "utf-8"}


@dataclass(frozen=True)
class DataSource:
    """A benchmark's data: ``dataset`` by name, or ``path`` read in ``format`` (``dataset="file"``).

    Args:
        dataset: a name of :data:`~graphforget.bench.BENCH_DATASETS`, or ``"file"`` with ``path`` and ``format``.
        root: the data directory of named datasets (``None``: ``$GRAPHFORGET_DATA``, then ``../shared/data``).
        path, format: a data file and its format (:data:`graphforget.workflow.FORMATS`).
        threshold: binarise a file's ratings: label 1 where ``rating >= threshold``.
        user_col, item_col, label_col: a CSV file's columns.
        duplicates, delimiter, encoding: a CSV file's repeated pairs (``"raise"`` or ``"last"``), field separator
            and text encoding (see :func:`~graphforget.data.load_csv`).
        negatives: sampled non-interactions per positive pair; ``None``: 1 for the BCE objective on implicit
            data, 0 for a file with labels (as ``graphforget fit`` reads it) and for BPR, which draws its own
            (:meth:`for_loss`). The explicit datasets (:data:`~graphforget.protocols.attack.DATASET_NAMES`) bring
            their own 0/1 labels and take none: a count above 1 is refused there.
    """
    dataset: str = "ml-100k"
    root: str | None = None
    path: str | None = None
    format: str | None = None
    threshold: float | None = None
    negatives: int | None = None
    user_col: str | None = None
    item_col: str | None = None
    label_col: str | None = None
    duplicates: str = "raise"
    delimiter: str = ","
    encoding: str = "utf-8"

    def __post_init__(self):
        if self.dataset == "file":
            if not (self.path and self.format):
                raise ValueError("DataSource: a file needs both path and format")
        elif self.dataset not in BENCH_DATASETS:
            raise ValueError(f"DataSource.dataset: unknown dataset {self.dataset!r}; known: "
                             f"{', '.join(BENCH_DATASETS)}")
        # Refused here, by name: a NaN count passed the range checks, a NaN threshold failed only at preparation.
        check_fields(self, {
            "threshold": (self.threshold is None or _is_finite_number(self.threshold), "must be None or finite"),
            "negatives": (self.negatives is None or is_integer(self.negatives), "must be None or an integer"),
            "duplicates": (self.duplicates in ("raise", "last"), "must be 'raise' or 'last'"),
        })
        if self.negatives is not None and self.negatives < 0:
            raise ValueError(f"DataSource.negatives: must be >= 0 (got {self.negatives})")
        if self.dataset in DATASET_NAMES and (self.negatives or 0) > 1:
            raise ValueError(f"DataSource.negatives: {self.dataset} brings its own 0/1 labels; sampled negatives are "
                             f"for implicit data (got {self.negatives})")
        self._check_file_options()

    def _check_file_options(self) -> None:
        """Refuses, by name, an option that a named dataset would ignore (a threshold of 3 read ML-100K at 4), and
        a threshold for a file without ratings."""
        if self.dataset == "file":
            check_threshold_has_ratings(cast(str, self.format), self.label_col, self.threshold)  # a file's: given
        ignored: tuple[str, ...] = ("path", "format") if self.dataset != "file" else ()
        if self.dataset in DATASET_NAMES:  # the IFRU protocol's own preparation: ratings >= 4, labels as given
            ignored += ("threshold", "user_col", "item_col", "label_col")
        if self.dataset != "file":
            ignored += tuple(CSV_DEFAULTS)
        if self.root is not None and self.dataset in ("synthetic", "file"):  # ignored, and yet in every cell's key
            raise ValueError(f"DataSource.root: {self.dataset} data reads no data root (got {self.root!r}): "
                             f"{'it is generated' if self.dataset == 'synthetic' else 'path names the file'}")
        for name in ignored:  # set otherwise than by default (None, or the CSV option's)
            if getattr(self, name) != CSV_DEFAULTS.get(name):
                raise ValueError(f"DataSource.{name}: the named dataset {self.dataset} is read from the data root and "
                                 f"prepared without a {name} (got {getattr(self, name)!r}); it is for dataset='file'")

    def for_loss(self, loss: str) -> "DataSource":
        """This source with ``negatives`` resolved for a training loss (``bce`` or ``bpr``).

        Raises:
            ValueError: sampled negatives asked for BPR, which draws its own.
        """
        if self.negatives is None:  # a file's own 0 labels are its negatives: fit samples none either
            return replace(self, negatives=0 if loss == "bpr" or self.labelled_file else 1)
        if loss == "bpr" and self.negatives:
            raise ValueError("DataSource.negatives: BPR draws its own negatives; pass 0 or None "
                             f"(got {self.negatives})")
        return self

    @property
    def labelled_file(self) -> bool:
        """Whether this is a file whose rows carry labels: ratings to binarise, a CSV's label column, triples."""
        return self.dataset == "file" and (self.threshold is not None or self.label_col is not None
                                           or self.format == "triples")

    @property
    def name(self) -> str:
        """The dataset's name, or the file's."""
        return Path(cast(str, self.path)).name if self.dataset == "file" else self.dataset  # a file's: given

    def _location(self) -> tuple[Path, str]:
        """The file (or folder) read and its format, for the implicit datasets and files."""
        if self.dataset == "file":
            return Path(cast(str, self.path)).expanduser(), cast(str, self.format)  # given (__post_init__)
        base = Path(self.root).expanduser() if self.root is not None else find_data_root()
        if base is None:
            raise FileNotFoundError(f"{self.dataset} not found: no data directory (pass root, set "
                                    "$GRAPHFORGET_DATA, or use ../shared/data)")
        folder = base if (base / "train.txt").is_file() else base / IMPLICIT_DATASETS[self.dataset]
        for name in ("train.txt", "test.txt"):  # without its test file, a named dataset was split 8:1:1 silently
            if not (folder / name).is_file():
                raise FileNotFoundError(f"{self.dataset} not found: {folder / name} is missing")
        other = known_dataset_of(folder / "train.txt") if folder == base else None  # a folder given as the dataset's
        if other not in (None, self.dataset):
            raise ValueError(f"{folder / 'train.txt'} is {other}'s, not {self.dataset}'s: give {self.dataset}'s "
                             "folder, or its data root")
        return folder, "lightgcn"

    def identity(self) -> dict:
        """What a cell's key holds of the data: the source, its options and the files' sha256."""
        out = {"dataset": self.dataset, "negatives": self.negatives, "threshold": self.threshold,
               "columns": [self.user_col, self.item_col, self.label_col],
               "csv": {name: getattr(self, name) for name in CSV_DEFAULTS}}
        if self.dataset in DATASET_NAMES:  # a replaced or edited file must not reuse a cell; the same file found
            found = None if self.dataset == "synthetic" else raw_data_file(self.dataset, self.root)  # elsewhere may
            return {**out, "files": {} if found is None else {found.name: sha256_file(found)}}  # (qa182: --root)
        location, format = self._location()
        return {**out, "format": format, "files": {f.name: sha256_file(f) for f in data_files(location, format)}}

    def prepare(self, seed: int, attack_ratio: float = 0.02) -> AttackData:
        """The split, and the training graph with ``attack_ratio`` of its labels flipped (the IFRU attack).

        Raises:
            ValueError: ``negatives`` not resolved (:meth:`for_loss`), or the data's own errors.
        """
        if self.negatives is None:
            raise ValueError("DataSource.negatives: resolve it for the training loss first (for_loss)")
        if self.dataset in DATASET_NAMES:
            return prepare_attack_data(self.dataset, self.root, attack_ratio, seed)
        split, source = self._split(seed)
        attacked, request = attack_flip(split.train, attack_ratio, seed=seed)
        return AttackData(split, attacked, request, source, self.name, attack_ratio)

    def _split(self, seed: int) -> tuple[Split, str]:
        location, format = self._location()
        graph: HeteroData  # load_file's, never None
        graph, test = load_file(location, format, user_col=self.user_col, item_col=self.item_col,
                                label_col=self.label_col, **{name: getattr(self, name) for name in CSV_DEFAULTS})
        # before asking whether the data is implicit: ratings hold no label 0 (without a threshold they were flipped
        # by the attack, which said "binarise first with graphforget.data.binarize", in a stream too)
        graph, test = (None if part is None else binary_labels(part, self.threshold, str(location))
                       for part in (graph, test))
        if self.negatives == 0 and not bool((graph[EDGE].edge_label == 0).any()):
            split = _positives_only(graph, test, seed)
        else:
            split = prepare_split(graph, test, negatives=cast(int, self.negatives), seed=seed,
                                  source=str(location))  # negatives: resolved, checked by prepare
        if not bool((split.test[EDGE].edge_label > 0).any()):  # a file of two rows ran, and its tables were empty
            raise ValueError(f"{location}: the test pairs split off it ({split.test[EDGE].edge_index.size(1)}) hold no "
                             f"interaction, so no figure can be measured: too few interactions "
                             f"({graph[EDGE].edge_index.size(1)} pairs) for a benchmark")
        source = (f"{self.name} from {location} ({format}; {self.negatives} sampled negatives per positive; "
                  f"{split.train[EDGE].edge_index.size(1)} training pairs)")
        return split, source


def _is_finite_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _positives_only(graph: HeteroData, test: HeteroData | None, seed: int) -> Split:
    """Implicit interactions for BPR: the file's test set (else a random tenth) and an empty validation set."""
    if test is None:
        return random_split(graph, (0.9, 0.0, 0.1), seed)
    check_disjoint(graph, test)  # a shared pair would be trained on, masked in the ranking, and a test positive
    none = graph[EDGE].edge_index.new_zeros(graph[EDGE].edge_index.size(1), dtype=bool)
    return Split(graph, edge_subgraph(graph, none), test)
