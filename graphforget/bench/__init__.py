"""The benchmark harness: protocols over methods and seeds, each cell cached on disk, intervals over seeds.

``graphforget bench --protocol {attack,adversarial,deletion,stream}`` on the command line, or::

    from graphforget.bench import DataSource, run_bench
    result = run_bench("stream", "ml-100k", "mf", ["ifru", "finetune"], seeds=3, quick=True, out="bench-out")
    result.aggregates        # per method: mean and 95% interval of every figure
    run_bench("deletion", DataSource("file", path="ratings.csv", format="csv", user_col="u", item_col="i"))
"""
from .cache import BENCH_VERSION, Cell, CellCache, cell_key
from .data import BENCH_DATASETS, IMPLICIT_DATASETS, DataSource
from .harness import (ADVERSARIAL_METHODS, DEFAULT_METHODS, BenchResult, aggregate, bench_hparams, parse_params,
                      plan_cells, run_bench)
from .protocols import (DELETION_KINDS, PROTOCOLS, STREAM_ORDERS, Protocol, ProtocolError, deletion_request, measure,
                        stream_positions, stream_requests)
from .report import markdown, write_reports
from .setting import BENCH_METHODS, MethodUnsupported, Setting, Workspace
from .stats import mean_interval, t_quantile

__all__ = ["run_bench", "bench_hparams", "DataSource", "BENCH_DATASETS", "IMPLICIT_DATASETS", "BenchResult",
           "aggregate", "parse_params", "plan_cells", "DEFAULT_METHODS", "ADVERSARIAL_METHODS", "Cell", "CellCache",
           "cell_key", "BENCH_VERSION", "PROTOCOLS", "Protocol", "DELETION_KINDS", "STREAM_ORDERS", "deletion_request",
           "stream_requests", "stream_positions", "measure", "markdown", "write_reports", "Setting", "Workspace",
           "BENCH_METHODS", "mean_interval", "t_quantile", "ProtocolError", "MethodUnsupported"]
