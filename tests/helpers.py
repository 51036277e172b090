"""Small helpers shared by the tests."""
import torch
from torch import nn
from torch_geometric.nn import SAGEConv

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
