"""Small helpers shared by the tests."""
import tempfile
import traceback
from datetime import timedelta
from pathlib import Path
from typing import NamedTuple

import pytest
import torch
import torch.distributed as dist
from torch import nn
from torch_geometric.nn import SAGEConv

from graphforget.distributed import launch, rank_and_size
from graphforget.models import MF


def hand_mf(user_rows, item_rows) -> MF:
    """A float64 MF model whose embedding tables are the given rows."""
    user, item = torch.tensor(user_rows, dtype=torch.float64), torch.tensor(item_rows, dtype=torch.float64)
    model = MF(user.size(0), item.size(0), user.size(1)).double()
    with torch.no_grad():
        model.user_emb.weight.copy_(user)
        model.item_emb.weight.copy_(item)
    return model


def fit_and_unlearn_sisa(graph, objective, config, num_shards: int, request) -> tuple[dict, dict, dict]:
    """SISA with LightGCN shards on ``graph``: the fitted ensemble's state, the unlearned one's and the info.

    Module level, so that :func:`graphforget.distributed.launch` can run it in every rank of a group.
    """
    from graphforget.distributed import my_jobs, rank_and_size
    from graphforget.models import LightGCN
    from graphforget.unlearn import SISA, SISAConfig

    sisa = SISA(LightGCN(graph["user"].num_nodes, graph["item"].num_nodes, 8), graph, objective,
                SISAConfig(config, num_shards=num_shards, seed=1)).fit()
    fitted = {k: v.clone() for k, v in sisa.model.state_dict().items()}
    result = sisa.unlearn(request)
    share = {"world_size": rank_and_size()[1], "rank_0_jobs": my_jobs(num_shards)}
    return fitted, result.model.state_dict(), {**sisa.fit_info, **result.info, **share}


def train_data_parallel(model, graph, objective, config, val) -> tuple[dict, list]:
    """Trains ``model`` with ``config`` (``data_parallel`` set by the caller); its state and loss history.

    Module level, so that :func:`graphforget.distributed.launch` can run it in every rank of a group.
    """
    from graphforget.train import train

    result = train(model, graph, objective, config, val)
    return model.state_dict(), result.history


def data_parallel_gradient(model, graph, objective, positions) -> list:
    """The gradients that one backward of this rank's :func:`~graphforget.distributed.data_parallel_loss`
    leaves on ``model``. Module level, for :func:`graphforget.distributed.launch`."""
    from graphforget.distributed import data_parallel_loss

    loss = data_parallel_loss(model, graph, objective)  # held: the all-reduce hooks die with the wrapper
    loss(positions, 1).backward()
    return [param.grad for param in model.parameters()]


def rank_tensors_averaged() -> list:
    """This rank's tensors ``[1 + r, 10 r]`` and ``4 (r + 1)`` (a 2x2) after
    :func:`~graphforget.distributed.average_across_ranks`. Module level, for :func:`graphforget.distributed.launch`."""
    from graphforget.distributed import average_across_ranks, rank_and_size

    rank = rank_and_size()[0]
    tensors = [torch.tensor([1.0 + rank, 10.0 * rank]), torch.full((2, 2), 4.0 * (rank + 1))]
    average_across_ranks(tensors)
    return tensors


def fake_install(site, package: str, source: str, models: dict[str, str]) -> None:
    """Installs ``package`` (its ``__init__.py`` is ``source``) into the folder ``site`` as pip would, with a
    ``.dist-info`` registering ``models`` (``{name: "module:attribute"}``) under ``graphforget.models``."""
    (site / package).mkdir(parents=True)
    (site / package / "__init__.py").write_text(source)
    meta = site / f"{package}-0.1.dist-info"
    meta.mkdir()
    (meta / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: 0.1\n")
    lines = "".join(f"{name} = {target}\n" for name, target in models.items())
    (meta / "entry_points.txt").write_text(f"[graphforget.models]\n{lines}")


class MeanSAGE(nn.Module):
    """One SAGEConv layer (mean aggregation) over node embeddings, dot-product scores: a PyG model with dense weights
    beside its embedding table."""

    def __init__(self, num_nodes: int, width: int = 4):
        super().__init__()
        self.embedding = nn.Embedding(num_nodes, width)
        self.conv = SAGEConv(width, width)

    def reset_parameters(self):
        self.embedding.reset_parameters()
        self.conv.reset_parameters()

    def forward(self, edge_index, edge_label_index, edge_weight=None):
        x = self.conv(self.embedding.weight, edge_index)
        return (x[edge_label_index[0]] * x[edge_label_index[1]]).sum(-1)


class CaseFailed(NamedTuple):
    """A case of :func:`launch_each` that raised: the tracebacks of the ranks where it did."""
    text: str


def launch_each(cases: dict, world_size: int = 2, timeout: float = 60) -> dict:
    """Runs each case ``name: (fn, *args)`` as :func:`~graphforget.distributed.launch` would, in one launch: the
    processes start once (importing torch and PyG takes about 6 s each on a 2-core machine), and each case gets a
    process group of its own, so that a case leaving its group broken (a rank waiting for one that failed) cannot
    reach the next. Returns ``{name: rank 0's value}``, or :class:`CaseFailed` where a case raised on some rank."""
    with tempfile.TemporaryDirectory(prefix="graphforget-cases-") as folder:
        launch(_run_each, world_size, folder, cases, timeout, timeout=timeout)
        ranks = [torch.load(Path(folder, f"outcomes-{rank}.pt"), weights_only=False) for rank in range(world_size)]
    outcomes = {}
    for name in cases:
        failures = [rank[name].text for rank in ranks if isinstance(rank[name], CaseFailed)]
        outcomes[name] = CaseFailed("\n".join(failures)) if failures else ranks[0][name]
    return outcomes


def case_value(outcomes: dict, name: str):
    """``outcomes[name]`` of :func:`launch_each`; the test fails with the ranks' tracebacks where the case raised."""
    if isinstance(outcomes[name], CaseFailed):
        pytest.fail(f"case {name} raised:\n{outcomes[name].text}")
    return outcomes[name]


def _run_each(folder: str, cases: dict, timeout: float) -> None:
    """Every case of :func:`launch_each` on this rank, each in a new group; the outcomes go to a file per rank."""
    rank, size = rank_and_size()
    outcomes = {}
    for index, (name, (fn, *args)) in enumerate(cases.items()):
        if index:
            dist.destroy_process_group()
            dist.init_process_group("gloo", init_method=f"file://{folder}/rendezvous-{index}", rank=rank,
                                    world_size=size, timeout=timedelta(seconds=timeout))
        try:
            value = fn(*args)
            outcomes[name] = value if rank == 0 else None
        except Exception:
            outcomes[name] = CaseFailed(f"rank {rank}: {traceback.format_exc()}")
    torch.save(outcomes, Path(folder, f"outcomes-{rank}.pt"))
