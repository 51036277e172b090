"""The interaction graph: one :class:`~torch_geometric.data.HeteroData` for every layer.

Node types ``user`` and ``item`` (``num_nodes`` set), one edge type :data:`EDGE` holding
``edge_index [2, E]`` (local ids) and ``edge_label [E]`` (0/1 float). An optional boolean
``observed [E]`` marks which edges are real interactions: message-passing models propagate over
observed edges only (sampled negatives are supervision, not interactions). Without it every edge
is observed. Everything a method derives from the graph is derived here, in one place (the sparse
adjacency matrix in :mod:`graphforget.data.adjacency`, from :func:`propagation_edges`).
"""
from __future__ import annotations

import copy
import operator
from typing import TypeVar

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import HeteroData
from torch_geometric.utils import degree

from ..config import is_integer_tensor, resolved_device

__all__ = [
    "EDGE", "make_interactions", "num_users", "num_items", "message_passing_edges",
    "propagation_edges", "bipartite_to_homogeneous", "symmetric_edge_weight", "edge_positions", "remove_edges",
    "without_edges", "edge_subgraph", "pairs_with_data", "validate_pairs", "pair_keys", "pairs_of_keys",
    "check_unique_pairs", "check_model_fits", "finite_scores", "pair_scores", "check_interactions", "check_pair_ids",
    "check_pair_tensor", "check_ids_in_range", "check_pairs_in_range", "check_layout", "check_one_edge_type",
    "on_device",
    "node_values",
]

EDGE = ("user", "rates", "item")


def make_interactions(edge_index: Tensor, edge_label: Tensor | None = None, num_users: int | None = None,
                      num_items: int | None = None, observed: Tensor | None = None) -> HeteroData:
    """Builds the interaction graph.

    Args:
        edge_index: ``[2, E]`` integer tensor of (user, item) local ids, each pair at most once.
        edge_label: ``[E]`` labels in {0, 1}, or ratings for :func:`binarize`; all ones (implicit feedback) when
            omitted. Stored as float32, or as float64 when given so (a rating of 3.9999999 stays under 4).
        num_users, num_items: node counts; inferred as ``max id + 1`` when omitted (an empty ``edge_index``
            needs both).
        observed: optional ``[E]`` mask of real interactions, bool or 0/1 (see module docstring).

    Raises:
        ValueError: on a bad shape, a dtype other than an integer one for ``edge_index`` (floats would be
            truncated), negative or out-of-range ids, an ``edge_label`` or ``observed`` of another length than
            ``edge_index``, NaN or infinite labels, an ``observed`` value other than 0/1, a count missing for an
            empty graph, or a (user, item) pair stored more than once (deleting such a pair would remove one copy only:
            aggregate repeated ratings first). See :func:`check_interactions`.
    """
    edge_index = torch.as_tensor(edge_index)
    if edge_index.numel() == 0 and edge_index.is_floating_point():  # [[], []]: no id to be a float, as validate_pairs
        edge_index = edge_index.long()
    check_pair_tensor(edge_index)
    edge_index = _plain(edge_index.long())
    data = HeteroData()
    data["user"].num_nodes = _node_count(edge_index[0], num_users, "num_users")
    data["item"].num_nodes = _node_count(edge_index[1], num_items, "num_items")
    data[EDGE].edge_index = edge_index
    edge_label = torch.as_tensor(torch.ones(edge_index.size(1)) if edge_label is None else edge_label)
    # float64 ratings stay float64, as the loaders keep them: binarize's threshold 4 must see 3.9999999, not its
    # float32 rounding 4.0, and BCE must refuse a label of 0.99999999, not train it as 1
    data[EDGE].edge_label = edge_label if edge_label.dtype == torch.float64 else edge_label.float()
    if observed is not None:
        data[EDGE].observed = _as_mask(observed, "observed")
    check_interactions(data)
    finite = torch.isfinite(data[EDGE].edge_label)
    if not bool(finite.all()):  # an infinite rating had been kept, and binarize called it a like (a QA probe)
        bad = data[EDGE].edge_label[~finite]
        raise ValueError(f"edge_label contains {int((~finite).sum())} values that are not finite numbers, e.g. "
                         f"{float(bad[0])} at position {int((~finite).nonzero()[0, 0])}")
    check_unique_pairs(edge_index, data["item"].num_nodes, "edge_index")
    return data


def check_interactions(graph: HeteroData) -> None:
    """Checks the structure of an interaction graph, e.g. one built by hand rather than by :func:`make_interactions`.

    The node counts are set; ``EDGE`` is the graph's one edge type; ``graph[EDGE].edge_index`` is a ``[2, E]``
    ``torch.int64`` tensor with user ids in ``[0, num_users)`` and item ids in ``[0, num_items)``; ``edge_label``
    is set, and it, ``observed`` and ``edge_weight`` (where present) are ``[E]``, one entry per edge, ``observed`` is
    bool (an integer mask would select edges 0 and 1 as positions) and ``edge_weight`` finite; no tensor of the edges
    requires grad. Cheap: a few passes over the edges, no sort; label values and repeated pairs (a sort) are checked
    by the objective and :func:`check_unique_pairs`.

    Raises:
        ValueError: naming the field at fault; for an out-of-range id, the id, its position and the range.
    """
    check_layout(graph)
    for node_type in ("user", "item"):
        count = graph[node_type].get("num_nodes")
        if count is None:
            raise ValueError(f"graph['{node_type}'].num_nodes is not set: build the graph with make_interactions")
        if int(count) < 0:
            raise ValueError(f"graph['{node_type}'].num_nodes is negative: {int(count)}")
    check_one_edge_type(graph)
    store = graph[EDGE]
    check_pair_tensor(store.edge_index)
    if store.edge_index.dtype != torch.long:  # what PyG's utilities and torch's index ops expect
        raise ValueError(f"graph[{', '.join(map(repr, EDGE))}].edge_index must have dtype torch.int64, got "
                         f"{store.edge_index.dtype}: convert it with .long()")
    for row, (node_type, count) in enumerate((("user", num_users(graph)), ("item", num_items(graph)))):
        check_ids_in_range(store.edge_index[row], count, f"edge_index holds {node_type}", f"[0, num_{node_type}s) = ")
    if "edge_label" not in store:  # every objective reads it
        raise ValueError("the training graph needs an edge_label per edge (1: an interaction, 0: a non-interaction): "
                         "build it with make_interactions")
    _check_edge_attributes(store)  # first: a list has no shape (qa106)
    # a wrong edge_weight had failed in unlearn(), naming a subgraph's edge count (qa104)
    for key in ("edge_label", "observed", "edge_weight"):
        if key in store and tuple(store[key].shape) != (store.edge_index.size(1),):
            raise ValueError(f"{key} must have shape [{store.edge_index.size(1)}], one entry per edge of "
                             f"edge_index, got {list(store[key].shape)}")
    if "observed" in store and store.observed.dtype != torch.bool:
        raise ValueError(f"observed must be a bool mask, got dtype {store.observed.dtype}")
    if "edge_weight" in store and not bool(torch.isfinite(store.edge_weight).all()):
        raise ValueError("edge_weight holds NaN or infinite weights: one finite weight per edge")
    tracked = [key for key, value in store.items() if isinstance(value, Tensor) and value.requires_grad]
    if tracked:  # training wrote gradients into the caller's labels, or failed on its second backward through them
        raise ValueError(f"tensors of the graph's edges require grad: {', '.join(tracked)}; a graph holds data, not "
                         "parameters: pass detached tensors (.detach())")


def _plain(tensor: Tensor) -> Tensor:
    """``tensor`` as a plain ``torch.Tensor``: PyG's ``EdgeIndex`` kept its type through ``.long()`` (and keeps it
    through ``as_subclass``; its own ``as_tensor`` drops it), and IFRU's sparse products refuse it."""
    if type(tensor) is Tensor:
        return tensor
    as_tensor = getattr(tensor, "as_tensor", None)
    return as_tensor() if callable(as_tensor) else tensor.as_subclass(Tensor)


def _check_edge_attributes(store) -> None:
    """Raises ``ValueError`` for an edge attribute that removing edges cannot select with them: a NumPy array or a list
    (``graph[EDGE].ts = df.timestamp.values`` passed train and failed every request inside PyG), or an ``edge_index``
    of a tensor subclass (PyG's ``EdgeIndex``, which IFRU's sparse products refuse)."""
    loose = [key for key, value in store.items() if isinstance(value, (np.ndarray, list, tuple))]
    if loose:
        raise ValueError(f"edge attributes {loose} are not tensors: an edge attribute is selected with the edges "
                         "when a request removes some; store it as one (torch.as_tensor(...))")
    if type(store.edge_index) is not Tensor:
        raise ValueError(f"edge_index is a {type(store.edge_index).__name__}, not a plain tensor: store a plain one "
                         "(EdgeIndex.as_tensor()), or build the graph with make_interactions")


def check_layout(graph: HeteroData, what: str = "the graph") -> None:
    """Raises ``ValueError`` unless ``graph`` has the node types ``user`` and ``item`` and an ``EDGE`` edge_index,
    naming the types it has and how to build the layout: read through ``graph[EDGE]``, a PyG dataset's graph (``user``
    and ``movie`` nodes) failed with an AttributeError, and PyG added the missing edge type to the caller's graph.
    Something other than a ``HeteroData`` (a model or a tensor in the graph's place) is a ``TypeError``."""
    if not isinstance(graph, HeteroData):  # "'MF' object has no attribute 'node_types'", nine frames deep
        raise TypeError(f"{what} must be a HeteroData interaction graph (graphforget.data.make_interactions), got a "
                        f"{type(graph).__name__}")
    if {"user", "item"} <= set(graph.node_types) and EDGE in graph.edge_types and "edge_index" in graph[EDGE]:
        _check_labels_per_edge(graph, what)
        return
    raise ValueError(f"{what} is not an interaction graph: graphforget reads node types 'user' and 'item' and the "
                     f"edge type {EDGE} with its edge_index and edge_label, and it has node types {graph.node_types} "
                     f"and edge types {graph.edge_types}; build it from the (user, item) pairs with "
                     "graphforget.data.make_interactions (see 'From a PyG graph' in the docs' data page)")


def _check_labels_per_edge(graph: HeteroData, what: str) -> None:
    """Raises ``ValueError`` for a graph whose edge store holds ``edge_label_index``, as a part made by PyG's
    ``RandomLinkSplit`` does: its ``edge_label`` labels those pairs, not ``edge_index``'s, and where the counts
    happened to agree the training edges were read with other pairs' labels (trained as label 0, or scored)."""
    if "edge_label_index" in graph[EDGE]:
        raise ValueError(f"{what} holds edge_label_index (a part made by RandomLinkSplit?): graphforget reads one "
                         "edge_label per pair of edge_index, and these label other pairs. Split with "
                         "graphforget.data.random_split, or build each part with make_interactions(part[EDGE]."
                         "edge_label_index, part[EDGE].edge_label, ...)")


def check_one_edge_type(graph: HeteroData) -> None:
    """Raises ``ValueError`` naming the graph's edge types other than ``EDGE``: a deletion edits ``EDGE`` alone, so a
    pair stored again there (torch_geometric's ``ToUndirected`` adds the reverse type) stayed in every method's
    remaining graph without a word."""
    others = [edge_type for edge_type in graph.edge_types if edge_type != EDGE]
    if others:
        raise ValueError(f"the graph holds edge types other than {EDGE}: {others}; a deletion removes a pair from "
                         f"{EDGE} alone, so its copies there would stay (the models propagate both directions "
                         "themselves): remove them, e.g. do not apply torch_geometric's ToUndirected")


def check_pair_tensor(pairs: Tensor, what: str = "edge_index", width: str = "E") -> None:
    """Raises ``ValueError`` unless ``pairs`` is a ``[2, width]`` tensor of an integer dtype (``what`` names it):
    floats would be truncated, a bool mask read as ids 0/1."""
    if not isinstance(pairs, torch.Tensor):  # a list failed with "'list' object has no attribute 'dim'"
        raise ValueError(f"{what} must be a [2, {width}] integer tensor, got a {type(pairs).__name__}")
    if pairs.layout != torch.strided:  # a sparse one failed in torch's comparisons ("Could not run 'aten::lt.Scalar'")
        raise ValueError(f"{what} must be a dense [2, {width}] integer tensor, got a {pairs.layout} one: .to_dense()")
    if pairs.dim() != 2 or pairs.size(0) != 2:
        rows = pairs.dim() == 2 and pairs.size(1) == 2
        transposed = " (a (user, item) pair a row: transpose it, .t())" if rows else ""
        raise ValueError(f"{what} must have shape [2, {width}], got {list(pairs.shape)}{transposed}")
    if not is_integer_tensor(pairs):
        raise ValueError(f"{what} holds integer (user, item) ids, got dtype {pairs.dtype}")


def check_ids_in_range(ids: Tensor, count: int, what: str, bound: str = "") -> None:
    """Raises ``ValueError`` naming the first id of ``ids`` outside ``[0, count)`` and its position (``what`` starts
    the message, ``bound`` names the range)."""
    # int64 first: a uint8 tensor compared with 256 wrapped it to 0 and refused item 0 of 256, and torch has no
    # min for uint16-64 ids (NumPy's unsigned arrays); min/max first: the mask is built only on failure
    ids = ids.long()
    low, high = torch.stack(torch.aminmax(ids)).tolist() if ids.numel() else (0, -1)  # one wait for a GPU, not two
    if low < 0 or high >= count:
        position = int(((ids < 0) | (ids >= count)).nonzero()[0])
        raise ValueError(f"{what} id {int(ids[position])} at position {position}, outside {bound}[0, {count})")


def check_pairs_in_range(pairs: Tensor, num_users: int, num_items: int, what: str, width: str) -> None:
    """:func:`check_pair_tensor`, then :func:`check_ids_in_range` on the users and on the items (``what`` names
    ``pairs``): an item id past the items keys another pair (``user * num_items + item``) or, offset into
    homogeneous ids, scores another node."""
    check_pair_tensor(pairs, what, width)
    check_ids_in_range(pairs[0], num_users, f"{what} holds user")
    check_ids_in_range(pairs[1], num_items, f"{what} holds item")


def _node_count(ids: Tensor, count: int | None, name: str) -> int:
    """``count`` checked, or inferred from ``ids`` as ``max id + 1``."""
    if count is None:
        if not ids.numel():
            raise ValueError(f"edge_index holds no edges: pass num_users and num_items (an empty graph's node "
                             f"counts cannot be inferred), got {name}=None")
        return int(ids.max()) + 1
    try:
        count = operator.index(count)
    except TypeError:
        raise ValueError(f"{name} must be an integer, got {count!r}") from None
    if count < 0:
        raise ValueError(f"{name} must be non-negative, got {count}")
    return count


def _as_mask(mask, name: str) -> Tensor:
    """``mask`` as a bool tensor; a non-bool one must hold only 0 and 1 (casting would read 0.3 as True)."""
    mask = torch.as_tensor(mask)
    if mask.dtype != torch.bool:
        other = mask[(mask != 0) & (mask != 1)]
        if other.numel():
            raise ValueError(f"{name} must be a bool mask or hold only 0 and 1, got {other[0].item():g}")
    return mask.bool()


def node_values(values, index: Tensor):
    """``values[index]`` for a node attribute held as a tensor or a numpy array (string raw ids): numpy reads a
    torch index of one element as the integer it holds (a bool mask ``[True]`` as row 1), so it is given the
    index as a numpy array."""
    if isinstance(values, np.ndarray):
        return values[index.cpu().numpy()]
    return values[index]


def num_users(graph: HeteroData) -> int:
    """The number of users of ``graph`` (``graph["user"].num_nodes``)."""
    return _stored_count(graph, "user")


def num_items(graph: HeteroData) -> int:
    """The number of items of ``graph`` (``graph["item"].num_nodes``)."""
    return _stored_count(graph, "item")


def _stored_count(graph: HeteroData, node: str) -> int:
    """``graph[node].num_nodes``; ``ValueError`` naming the node type where PyG cannot tell it (validation pairs without
    it failed with ``int(None)``'s TypeError in train and every unlearner). A missing node type is not created."""
    count = graph[node].num_nodes if node in graph.node_types else None
    if count is None:
        raise ValueError(f"a graph given here (the training graph, or its validation or test pairs) has no num_nodes "
                         f"for its {node} nodes: set graph[{node!r}].num_nodes (as make_interactions and the splits "
                         "do)")
    return int(count)


def check_model_fits(model, graph: HeteroData, name: str = "graph") -> None:
    """Raises ``ValueError`` when the model's ``num_users``/``num_items`` (where it has them) differ from
    the node counts of ``graph`` (called ``name`` in the message); indexing its embedding tables would otherwise
    fail inside torch. Something other than a module in the model's place is a ``TypeError``.
    """
    if not isinstance(model, torch.nn.Module):  # an UnlearnResult failed with "no attribute 'modules'", deep inside
        raise TypeError(f"the model must be a torch.nn.Module (an UnlearnResult's is result.model), got a "
                        f"{type(model).__name__}")
    for node_type, count in (("user", num_users(graph)), ("item", num_items(graph))):
        size = getattr(model, f"num_{node_type}s", None)
        if size is not None and int(size) != count:
            raise ValueError(f"the model has num_{node_type}s={int(size)} but the {name} has {count} {node_type}s "
                             f"({name}['{node_type}'].num_nodes): build the model for this graph's node counts")


def check_model_on_graph_device(model, graph: HeteroData) -> None:
    """Raises ``ValueError`` naming both devices when the model's parameters are not on the graph's device (it
    would fail inside torch: "Expected all tensors to be on the same device")."""
    param = next(model.parameters(), None) if isinstance(model, torch.nn.Module) else None
    where = graph[EDGE].edge_index.device
    if param is not None and param.device != where:
        raise ValueError(f"the model is on {param.device} and its graph on {where}: a model is scored on its graph's "
                         "device, so move one to the other's (model.to(device), or graph.clone().to(device): PyG's "
                         ".to() moves a graph in place)")


def finite_scores(scores: Tensor) -> Tensor:
    """``scores`` (a model's output), refused with ``ValueError`` when any is NaN or infinite: a ranking or an
    argmin would place them first without a word."""
    if not bool(torch.isfinite(scores).all()):
        raise ValueError(f"the model's scores hold {int((~torch.isfinite(scores)).sum())} NaN or infinite values: "
                         f"its parameters are non-finite or too large (a diverged training?)")
    return scores


def pair_scores(scores: Tensor, count: int, what: str = "the pairs") -> Tensor:
    """``scores`` when they are ``[count]`` finite logits, one per pair of ``what`` (the Recommender contract), else
    ``ValueError``: a ``[T, 1]`` or ``[1]`` output broadcast against a ``[T]`` one in a distance, and a ``[2, T]`` one
    was averaged in a mean probability, without a word."""
    if scores.shape != (count,):
        raise ValueError(f"the model returned scores of shape {list(scores.shape)} for {what} ({count} pairs): its "
                         f"forward must return one logit per pair, [{count}]")
    return finite_scores(scores)


def on_device(graph: HeteroData, device: torch.device | str) -> HeteroData:
    """``graph`` itself when every tensor of its stores is on ``device``, else a shallow copy of it moved there.

    PyG's ``HeteroData.to`` moves the tensors of the object's own stores and returns that object: called on a
    caller's graph, it replaces the caller's tensors. The stores of a ``copy.copy`` are new dicts holding the same
    tensors, so moving the copy leaves the caller's graph as it was (and tensors already there are shared).
    """
    target = resolved_device(device)
    tensors = (value for store in graph.stores for value in store.values() if isinstance(value, Tensor))
    if all(t.device == target for t in tensors):
        return graph
    return copy.copy(graph).to(target)


def message_passing_edges(graph: HeteroData) -> Tensor:
    """The ``[2, E']`` (user, item) edges that carry messages: the observed ones."""
    store = graph[EDGE]
    mask = _observed_mask(store)
    return store.edge_index if mask is None else store.edge_index[:, mask]


def _observed_mask(store) -> Tensor | None:
    """The store's ``observed`` mask, checked: an integer 0/1 one indexed columns (a LightGCN propagated over its
    first pair seven times, its AUC 0.25 for 0.5), and a scoring model reads it with no other check."""
    mask = store.get("observed")
    if mask is not None and (not isinstance(mask, Tensor) or mask.dtype != torch.bool
                             or mask.shape != (store.edge_index.size(1),)):
        what = f"a {mask.dtype} tensor of shape {tuple(mask.shape)}" if isinstance(mask, Tensor) else repr(mask)
        raise ValueError(f"the graph's observed must be an [E] bool mask (E = {store.edge_index.size(1)} edges), "
                         f"got {what}")
    return mask


def propagation_edges(graph: HeteroData, dtype: torch.dtype = torch.float) -> tuple[Tensor, Tensor]:
    r"""The message-passing edges and their weights in the symmetric normalised adjacency.

    Returns ``(edge_index [2, E'], edge_weight [E'])`` over the observed (user, item) edges. The weight
    is :math:`1/\sqrt{|N_u| |N_i|}`, computed in ``dtype`` (a float64 model's weights rounded to float32
    would be off by about 6e-8), or the edge store's ``edge_weight`` where one is set: the influence
    code sets it to the whole graph's weights, in the model's dtype, when it runs a model on a subgraph
    (k-hop locality). A model passes its parameters' dtype, so that it computes the same weights on both.
    """
    store = graph[EDGE]
    mask = _observed_mask(store)
    edge_index = store.edge_index if mask is None else store.edge_index[:, mask]
    if "edge_weight" in store:
        weight = store.edge_weight
        if not isinstance(weight, Tensor) or weight.shape != (store.edge_index.size(1),) \
                or not bool(torch.isfinite(weight).all()):  # NaN weights scored 19 of 20 pairs NaN, unsaid
            raise ValueError(f"the graph's edge_weight must be [E] finite weights (E = {store.edge_index.size(1)} "
                             "edges), one per edge; it replaces the symmetric normalisation")
        return edge_index, (weight if mask is None else weight[mask])
    return edge_index, symmetric_edge_weight(edge_index, num_users(graph), num_items(graph), dtype)


def bipartite_to_homogeneous(edge_index: Tensor, num_users: int) -> Tensor:
    """``[2, E]`` (user, item) pairs -> ``[2, 2E]`` undirected index with items offset by ``num_users``."""
    user, item = edge_index[0], edge_index[1] + num_users
    return torch.stack([torch.cat([user, item]), torch.cat([item, user])])


def symmetric_edge_weight(edge_index: Tensor, num_users: int, num_items: int, dtype=torch.float) -> Tensor:
    r"""Weights :math:`1/\sqrt{|N_u| |N_i|}` of the symmetric normalised adjacency, one per (user, item) edge."""
    deg_u = degree(edge_index[0], num_users, dtype)
    deg_i = degree(edge_index[1], num_items, dtype)
    return (deg_u[edge_index[0]] * deg_i[edge_index[1]]).clamp(min=1).rsqrt()


#: A ``[2, E]`` pair array: a tensor, or a numpy array (the loaders' before the graph exists).
Pairs = TypeVar("Pairs", Tensor, np.ndarray)


def pair_keys(edge_index: Pairs, num_items: int) -> Pairs:
    """One int64 key ``user * num_items + item`` per (user, item) column of ``edge_index [2, E]``.

    The one place pairs become keys: sorting keys sorts pairs by user, then item (row-major order), and
    set operations on pairs (``torch.isin``, ``torch.unique``, ``searchsorted``) become ones on keys.
    Works on a ``[2, E]`` numpy array too.
    """
    # in int64 whatever the ids' dtype: int32 or uint8 keys wrapped, and distinct pairs were refused as duplicates
    wide = edge_index.long() if isinstance(edge_index, Tensor) else np.asarray(edge_index, dtype=np.int64)
    return wide[0] * num_items + wide[1]


def pairs_of_keys(keys: Tensor, num_items: int) -> Tensor:
    """The ``[2, K]`` (user, item) pairs of :func:`pair_keys`' keys ``[K]`` (its inverse)."""
    return torch.stack([keys // num_items, keys % num_items])


#: What :func:`check_unique_pairs` tells the owner of a graph with a repeated pair.
STORE_ONCE = ("each pair must be stored once (deleting it would leave the other copy): aggregate them first, "
              "e.g. keep the last rating")


def check_unique_pairs(edge_index: Tensor, num_items: int, what: str = "the graph", advice: str = STORE_ONCE) -> None:
    """Raises ``ValueError`` when a (user, item) pair occurs more than once in ``edge_index [2, E]``.

    The message names the number of duplicated pairs and the first one in storage order.

    Args:
        edge_index: ``[2, E]`` (user, item) local ids.
        num_items: the item count (for the pair key).
        what: how the message names ``edge_index``.
        advice: what the message asks for.
    """
    if edge_index.size(1) < 2:
        return
    _, inverse, counts = torch.unique(pair_keys(edge_index, num_items), return_inverse=True, return_counts=True)
    repeated = counts > 1
    if not bool(repeated.any()):
        return
    first = int(repeated[inverse].nonzero()[0])
    user, item = edge_index[:, first].tolist()
    copies = (inverse == inverse[first]).nonzero().flatten()[:2].tolist()
    raise ValueError(f"{what} holds {int(repeated.sum())} duplicated (user, item) pairs, the first ({user}, {item}) "
                     f"at positions {copies[0]} and {copies[1]}; {advice}")


def as_pairs(pairs, what: str, width: str) -> Tensor:
    """``pairs`` (a tensor, or a nested list or array of ids) as a ``[2, width]`` integer tensor (``what`` names it in
    the errors of :func:`check_pair_tensor`): an empty list is long (torch makes it float), and a list or array of
    shape ``[2, 2]`` is refused as ambiguous (two (user, item) pairs, or users and items?)."""
    given = pairs
    try:
        pairs = torch.as_tensor(pairs)
    except (TypeError, ValueError, RuntimeError) as error:  # None, a string, a tuple of tensors, ragged lists
        raise ValueError(f"{what} is a [2, {width}] tensor (or nested list) of (user, item) ids, got a "
                         f"{type(pairs).__name__} ({error})") from None
    if not torch.is_tensor(given) and pairs.numel() == 0:  # [[], []]: no ids, so torch's default float dtype
        pairs = pairs.long()
    if not torch.is_tensor(given) and pairs.shape == (2, 2):  # [(0, 68), (0, 40)] forgot (0, 0) and (68, 40)
        raise ValueError(f"{what} given as a {type(given).__name__} of shape [2, 2] is ambiguous (two (user, item) "
                         f"pairs, or a row of users and one of items?): give a [2, {width}] tensor, "
                         "torch.tensor(pairs).t() for a list of (user, item) pairs")
    check_pair_tensor(pairs, what, width)
    return pairs


def validate_pairs(graph: HeteroData, pairs: Tensor) -> Tensor:
    """Checks a ``[2, R]`` (user, item) request against the graph's node ranges; returns it as long.

    Raises:
        ValueError: for a bad shape, a dtype other than an integer one (a bool mask would be read as ids
            0/1, floats would be truncated), a tensor on the ``meta`` device (no values), unknown ids or
            duplicated pairs; a list or array of shape ``[2, 2]`` (two (user, item) pairs, or users and items?).
    """
    pairs = as_pairs(pairs, "a request", "R")
    if pairs.is_meta:
        raise ValueError("a request on the meta device holds no ids: build it on the CPU or the graph's device")
    pairs = pairs.long()
    check_pair_ids(pairs, graph, "request")
    check_unique_pairs(pairs, num_items(graph), "request", "ask for each pair once")
    return pairs


def check_pair_ids(pairs: Tensor, graph: HeteroData, what: str) -> None:
    """Raises ``ValueError`` when a ``[2, P]`` (user, item) pair holds an id outside the graph's node ranges,
    naming the first such pair, its position and the ranges (``what`` names ``pairs`` in the message)."""
    users, items = num_users(graph), num_items(graph)
    pairs = pairs.long()  # unsigned ids: torch compares no uint16-64 tensor with a number
    unknown = (pairs[0] < 0) | (pairs[0] >= users) | (pairs[1] < 0) | (pairs[1] >= items)
    if bool(unknown.any()):
        first = int(unknown.nonzero()[0])
        user, item = pairs[:, first].tolist()
        raise ValueError(f"{what} holds {int(unknown.sum())} pairs with unknown ids, the first ({user}, {item}) at "
                         f"position {first}; the graph's users are 0..{users - 1} and its items 0..{items - 1}")


#: :func:`without_edges` copies the remaining edges as the runs between at most this many removed ones, beyond
#: which it gathers: each run is one more slice to concatenate (1000 runs measured faster than the gather on 2e6
#: and 2e7 pairs: 0.045 s against 0.076 s, 0.33 s against 0.88 s).
MAX_RUNS = 1024


def edge_positions(graph: HeteroData, pairs: Tensor) -> Tensor:
    """Positions in ``graph[EDGE].edge_index`` of the ``[2, R]`` (user, item) pairs.

    Raises:
        ValueError: on unknown ids, duplicates, or pairs that are not edges of the graph.
    """
    pairs = validate_pairs(graph, pairs)
    edge_index = graph[EDGE].edge_index
    # Only the edges of the requested users can match: sort those, not the whole graph (a request
    # is usually small, the graph large).
    requested_user = torch.zeros(num_users(graph), dtype=torch.bool, device=edge_index.device)
    requested_user[pairs[0].to(edge_index.device)] = True
    candidates = requested_user[edge_index[0]].nonzero().flatten()
    sorted_keys, order = pair_keys(edge_index[:, candidates], num_items(graph)).sort()
    wanted = pair_keys(pairs, num_items(graph)).to(sorted_keys.device)
    slot = torch.searchsorted(sorted_keys, wanted).clamp(max=max(len(sorted_keys) - 1, 0))
    found = sorted_keys[slot] == wanted if len(sorted_keys) else torch.zeros_like(wanted, dtype=torch.bool)
    if not bool(found.all()):
        missing = pairs[:, ~found.cpu()][:, :5].t().tolist()
        raise ValueError(f"{int((~found).sum())} requested pairs are not edges of the graph, e.g. {missing}")
    return candidates[order[slot]]


def edge_subgraph(graph: HeteroData, keep: Tensor) -> HeteroData:
    """A new graph with the same nodes and the edges selected by ``keep`` (mask or positions).

    Every node attribute (``num_nodes``, ``raw_id``, ...) is kept as it is, and every per-edge attribute
    of :data:`EDGE` is selected with the edges (PyG's :meth:`~torch_geometric.data.HeteroData.edge_subgraph`).
    The stores are new objects: assigning to the result's attributes leaves ``graph`` untouched.

    Raises:
        ValueError: a mask of another length than the edges, positions out of range or repeated (an integer 0/1
            mask reads as positions 0 and 1: pass it as ``bool``), ``keep`` of neither kind, or a graph of other
            edge types too (:func:`check_one_edge_type`: their copies of the edges left out would stay).
    """
    check_one_edge_type(graph)
    given, keep, count = keep, torch.as_tensor(keep), graph[EDGE].edge_index.size(1)
    if isinstance(given, (list, tuple)) and keep.numel() == 0:  # []: no positions, so torch's default float dtype
        keep = keep.long()  # (an empty array keeps its dtype: an empty bool mask is a mask, of the wrong length)
    if keep.dtype == torch.bool:
        if keep.shape != (count,):
            raise ValueError(f"an edge mask holds one bool per edge, [{count}], got {list(keep.shape)}")
    elif is_integer_tensor(keep) and keep.dim() == 1:
        keep = keep.long()  # uint8 positions failed in index_select, and compared with count wrapped around
        if keep.numel() and (keep.min() < 0 or keep.max() >= count):
            raise ValueError(f"edge positions must be in [0, {count}), got {int(keep.min())}..{int(keep.max())}")
        increasing = keep.numel() < 2 or bool((keep[1:] > keep[:-1]).all())  # as nonzero() gives them: no sort
        if not increasing and keep.unique().numel() < keep.numel():
            raise ValueError("edge positions repeat (an integer 0/1 mask reads as positions 0 and 1: pass a bool mask)")
    else:
        raise ValueError(f"keep is a bool mask or integer positions [K], got {keep.dtype} {list(keep.shape)}")
    return graph.edge_subgraph({EDGE: keep})


def pairs_with_data(pairs: HeteroData, graph: HeteroData) -> HeteroData:
    """The edges of ``pairs`` (validation or test pairs) whose user and item both keep a message-passing
    (observed) edge in ``graph``: the pairs that a model trained on ``graph`` has data to score by.

    Returns ``pairs`` itself when every pair qualifies, else a new graph (:func:`edge_subgraph`).
    """
    user, item = message_passing_edges(graph)
    edge_index = pairs[EDGE].edge_index
    keep = (degree(user, num_users(graph))[edge_index[0]] > 0) & (degree(item, num_items(graph))[edge_index[1]] > 0)
    return pairs if bool(keep.all()) else edge_subgraph(pairs, keep)


def without_edges(graph: HeteroData, pairs: Tensor) -> tuple[HeteroData, Tensor]:
    """The graph minus a request: every unlearning method's remaining graph comes from here.

    Args:
        graph: the interactions.
        pairs: ``[2, R]`` (user, item) edges of ``graph`` to remove, each at most once.

    Returns:
        ``(remaining, positions)``: ``remaining`` holds the same nodes with every node attribute
        (``num_nodes``, ``raw_id``, ...; ``graph``'s tensors themselves, not copies) and every other edge, in its
        order, with its per-edge attributes (:func:`edge_subgraph`; new tensors); ``positions [R]`` index the
        pairs in ``graph[EDGE].edge_index``, in request order. ``graph`` is not modified.

    Raises:
        ValueError: on a badly shaped or typed request, unknown ids, duplicates, or pairs that are not
            edges of ``graph`` (see :func:`edge_positions`), or a graph of other edge types too
            (:func:`check_one_edge_type`).
    """
    check_one_edge_type(graph)
    positions = edge_positions(graph, pairs)
    if positions.numel() <= MAX_RUNS:
        return _kept_runs(graph, positions), positions
    edge_index = graph[EDGE].edge_index
    keep = torch.ones(edge_index.size(1), dtype=torch.bool, device=edge_index.device)
    keep[positions] = False
    # Positions rather than the mask: PyG then gathers with index_select, faster on every edge of a large graph.
    return edge_subgraph(graph, keep.nonzero().flatten()), positions


def _kept_runs(graph: HeteroData, positions: Tensor) -> HeteroData:
    """:func:`edge_subgraph` of every edge but ``positions``, each per-edge attribute copied as the runs of
    edges between them: contiguous copies instead of a gather over every edge."""
    cuts = positions.sort().values.tolist()
    starts, ends = [0] + [c + 1 for c in cuts], cuts + [graph[EDGE].edge_index.size(1)]
    runs = [(start, end - start) for start, end in zip(starts, ends) if end > start]
    data = copy.copy(graph)  # as PyG's edge_subgraph: new stores, the same node attributes
    store, new_store = graph[EDGE], data[EDGE]
    for key, value in store.items():
        if store.is_edge_attr(key):
            dim = graph.__cat_dim__(key, value, store)
            new_store[key] = (torch.cat([value.narrow(dim, start, size) for start, size in runs], dim) if runs
                              else value.narrow(dim, 0, 0).clone())
    return data


def remove_edges(graph: HeteroData, pairs: Tensor) -> HeteroData:
    """A new graph without the ``[2, R]`` (user, item) pairs: :func:`without_edges`' remaining graph.

    Raises:
        ValueError: as :func:`without_edges`, and for a graph that fails :func:`check_interactions` or stores a pair
            twice (one copy of it had stayed in the remaining graph; the methods check their graph once, and call
            :func:`without_edges` itself).
    """
    check_interactions(graph)
    check_unique_pairs(graph[EDGE].edge_index, num_items(graph))
    return without_edges(graph, pairs)[0]
