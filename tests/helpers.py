"""Small helpers shared by the tests."""
import torch

from graphforget.models import MF


def hand_mf(user_rows, item_rows) -> MF:
    """A float64 MF model whose embedding tables are the given rows."""
    user, item = torch.tensor(user_rows, dtype=torch.float64), torch.tensor(item_rows, dtype=torch.float64)
    model = MF(user.size(0), item.size(0), user.size(1)).double()
    with torch.no_grad():
        model.user_emb.weight.copy_(user)
        model.item_emb.weight.copy_(item)
    return model
