"""Writes the benchmark tables of the docs and the README from the committed harness results.

    python benchmarks/render_docs.py           # rewrite docs/bench_results.inc and the README's table
    python benchmarks/render_docs.py --check   # exit 1 when either is out of date (the tests check it too)

Both come from ``benchmarks/results/bench/*/results.json`` (whose tables are the ``results.md`` beside them),
through :func:`graphforget.bench.report.render_docs`: run a protocol with ``graphforget bench --out
benchmarks/results/bench/NAME``, then this.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from graphforget.bench.report import README_MARKERS, render_docs
from graphforget.io import atomic_write

ROOT = Path(__file__).resolve().parent.parent
BENCH, DOCS, README = ROOT / "benchmarks" / "results" / "bench", ROOT / "docs", ROOT / "README.md"


def with_table(readme: str, table: str) -> str:
    """``readme`` with the text between the markers replaced by ``table``."""
    start, end = README_MARKERS
    if start not in readme or end not in readme:
        raise SystemExit(f"README.md lacks the markers {start!r} ... {end!r}")
    head, rest = readme.split(start, 1)
    return head + start + "\n" + table + end + rest.split(end, 1)[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check that the files are up to date")
    args = parser.parse_args(argv)
    page, table = render_docs(BENCH, DOCS)
    targets = {DOCS / "bench_results.inc": page, README: with_table(README.read_text(), table)}
    stale = [path for path, text in targets.items() if not path.is_file() or path.read_text() != text]
    if args.check:
        for path in stale:
            print(f"{path.relative_to(ROOT)} is out of date: run python benchmarks/render_docs.py", file=sys.stderr)
        return 1 if stale else 0
    for path in stale:
        atomic_write(path, lambda handle, text=targets[path]: handle.write(text), binary=False)
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
