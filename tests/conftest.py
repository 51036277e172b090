"""Shared fixtures: the real-data root (or a skip), tiny seeded graphs, an installed package's model."""
from __future__ import annotations

import sys

import pytest
import torch

from graphforget.data import find_data_root, make_interactions, planted_communities
from graphforget.models import MODELS
from helpers import fake_install


@pytest.fixture(scope="session")
def data_root():
    """The shared data folder (``$GRAPHFORGET_DATA`` or ``../shared/data``); skips the test when absent."""
    root = find_data_root()
    if root is None:
        pytest.skip("real data not found: set $GRAPHFORGET_DATA or run from a checkout with ../shared/data")
    return root


@pytest.fixture
def tiny_graph():
    """A hand-made graph: 4 users, 5 items, 9 labelled edges (user 3 and item 4 have a single edge)."""
    edge_index = torch.tensor([[0, 0, 0, 1, 1, 2, 2, 2, 3],
                               [0, 1, 2, 1, 3, 0, 2, 3, 4]])
    edge_label = torch.tensor([1., 0., 1., 1., 1., 0., 1., 1., 0.])
    return make_interactions(edge_index, edge_label, num_users=4, num_items=5)


@pytest.fixture
def small_planted():
    """A small seeded graph with planted communities: 60 users x 40 items, 8 labelled edges per user."""
    return planted_communities(num_users=60, num_items=40, num_communities=4, interactions_per_user=8, seed=0)


@pytest.fixture
def random_graph():
    """A factory of random graphs: ``random_graph(U, I, E, seed)`` -> E distinct pairs, random 0/1 labels."""
    def make(num_users: int, num_items: int, num_edges: int, seed: int = 0):
        gen = torch.Generator().manual_seed(seed)
        keys = torch.randperm(num_users * num_items, generator=gen)[:num_edges]
        edge_index = torch.stack([keys // num_items, keys % num_items])
        label = torch.randint(2, (num_edges,), generator=gen).float()
        return make_interactions(edge_index, label, num_users, num_items)
    return make


@pytest.fixture
def one_thread():
    """One torch thread for the test (restored after): small-tensor work on a busy 2-core machine runs
    many times faster, and bit-identity with single-threaded worker processes needs it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


PLUGIN = """
from torch_geometric.nn.models import LightGCN

from graphforget.models import PyGRecommender


def pyg_lightgcn(num_users, num_items, embedding_dim, num_layers):
    return PyGRecommender(LightGCN(num_users + num_items, embedding_dim, num_layers), num_users, num_items,
                          receptive_field=num_layers, sparse=True)
"""


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """An installed package (a ``.dist-info`` on ``sys.path``) registering PyG's LightGCN as ``pyg_lightgcn``
    under the entry-point group ``graphforget.models``."""
    root = tmp_path / "site"
    fake_install(root, "gf_plugin_demo", PLUGIN, {"pyg_lightgcn": "gf_plugin_demo:pyg_lightgcn"})
    monkeypatch.syspath_prepend(str(root))
    yield root
    MODELS.pop("pyg_lightgcn", None)
    sys.modules.pop("gf_plugin_demo", None)
