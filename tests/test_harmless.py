"""The "harmless" check of the IFRU paper (Figure 4): an empty request changes nothing."""
import torch

from graphforget import BCEObjective, TrainConfig, train
from graphforget.data import EDGE, planted_communities, random_split
from graphforget.models import LightGCN
from graphforget.unlearn import IFRU, SCIF, Retrain, RetrainConfig


def test_empty_request_leaves_original_retrain_ifru_scif_identical(one_thread):
    split = random_split(planted_communities(60, 40, 4, 8, seed=0), seed=0)
    objective, config = BCEObjective(l2=1.0), TrainConfig(epochs=5, patience=0)
    model = LightGCN(60, 40, 8)
    model.reset_parameters(0)
    train(model, split.train, objective, config)
    empty = torch.empty(2, 0, dtype=torch.long)
    pairs = split.test[EDGE].edge_index
    with torch.no_grad():
        original = model(split.train, pairs)
    for unlearner in (Retrain(model, split.train, objective, RetrainConfig(config)), IFRU(model, split.train, objective),
                      SCIF(model, split.train, objective)):
        result = unlearner.unlearn(empty)
        assert result.info == {"empty": True, "trusted": True, "reason": None}
        assert torch.equal(result.graph[EDGE].edge_index, split.train[EDGE].edge_index)
        with torch.no_grad():
            assert torch.equal(result.model(result.graph, pairs), original)
