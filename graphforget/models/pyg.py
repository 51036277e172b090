"""An adapter that runs a PyG link-prediction module as a :class:`~graphforget.models.Recommender`."""
from __future__ import annotations

import copy
import functools
import inspect
from typing import Mapping, cast

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize
from torch_geometric.data import HeteroData
from torch_geometric.nn import ARMAConv, ChebConv, EGConv, MixHopConv, SAGEConv, SGConv, SSGConv
from torch_geometric.nn import norm as pyg_norm
from torch_geometric.nn import Linear as PyGLinear
from torch_geometric.nn.models import LightGCN

from ..config import check_seed, eval_mode, gradients_on, is_integer, random_state_kept, warn_caller
from ..data.adjacency import AdjacencyCache, normalized_adjacency, observed_adjacency, weight_dtype
from ..data.interactions import (EDGE, bipartite_to_homogeneous, check_model_fits, check_unique_pairs,
                                 message_passing_edges, num_items, num_users, propagation_edges)
from ..data.synthetic import path_graph, path_hops
from .base import NODE_TYPES, Recommender, check_edge_label_index
from .propagation import symmetric_spmm

__all__ = ["PyGRecommender"]

class PyGRecommender(Recommender):
    r"""A PyG module over homogeneous node ids behind the :class:`Recommender` contract.

    The module is called as ``module(edge_index, edge_label_index)`` and returns one logit per pair
    (PyG's :class:`~torch_geometric.nn.models.LightGCN` does). Users are nodes ``0..U-1`` and items
    ``U..U+I-1``; ``edge_index`` holds both directions of every observed interaction of the graph
    passed in, and ``edge_label_index`` the pairs with their items offset by ``U``. PyG's LightGCN itself (its
    own class, with normalising layers) is not called: the adapter computes its formula by graphforget's
    propagation (:meth:`lightgcn_embedding`), with the module's table and layer weights:

    .. code-block:: python

        module = torch_geometric.nn.models.LightGCN(num_nodes=U + I, embedding_dim=64, num_layers=2)
        model = PyGRecommender(module, U, I, receptive_field=2)

    Per-node parameters are found by shape: every 2-D parameter with :math:`U + I` rows is a table in
    homogeneous order (node type ``node``); ``node_tables`` names them instead. Every other trainable
    parameter is dense (influence methods update it whole). :meth:`embed` needs the module's
    ``get_embedding(edge_index)`` (PyG's LightGCN has it; the scores must be the dot products of its
    rows); :meth:`~graphforget.models.Recommender.score_all` scores every pair through ``forward``, so it holds
    for any module. ``embedding_dim`` is the widest table's width (set it when ``get_embedding``'s rows have another:
    RecEraser's attention weighs them).

    Args:
        module: the PyG module.
        num_users: number of users :math:`U`.
        num_items: number of items :math:`I`.
        receptive_field: hops a prediction depends on (the module's number of message-passing layers).
        edge_weight: pass the symmetric normalised weights of
            :func:`~graphforget.data.propagation_edges` as ``edge_weight=`` (for a module that does not
            normalise by itself, e.g. built on ``LGConv(normalize=False)``). It makes the model exact on
            k-hop subgraphs (``supports_edge_weight``), so IFRU computes locally. Leave it ``False``
            for a module that normalises by the degrees of the graph it is given. PyG's LightGCN with its
            normalising layers needs neither: the adapter runs it by graphforget's propagation
            (:attr:`lightgcn_propagation`), exact on k-hop subgraphs.
        sparse: pass the graph as a ``[U + I, U + I]`` ``torch.sparse`` CSR adjacency in place of
            ``edge_index`` (its values: the weights with ``edge_weight=True``, else ones), built once per graph
            (:class:`~graphforget.data.AdjacencyCache`). PyG's message-passing layers that accept one
            (``LGConv``, ``GCNConv``, ...) then aggregate by one sparse product instead of a gather and a scatter
            per edge: 3-6x faster training, 3x faster unlearning (see :doc:`/custom_model`). Only for a module
            that does not index ``edge_index`` itself and whose layers aggregate by sum: torch has no second
            derivative of a sparse mean or max (``SAGEConv``'s), which IFRU and SCIF need.
        node_tables: ``{parameter name in the module: node type}`` (``user``, ``item`` or ``node``),
            when the tables cannot be found by shape (``None``: every 2-D parameter of :math:`U + I` rows but the
            weights of linear layers, which multiply features, and frozen ones beside trainable ones, which are
            node features).

    Raises:
        ValueError: when no parameter has :math:`U + I` rows (the module was built for other node
            counts), a named table does not fit its node type, a layer caches its graph (``cached=True``) or, with
            ``edge_weight=True``, normalises by itself (``normalize=True``, or a layer that always does: SGConv,
            ChebConv, ...), or the module's forward takes node features first (``forward(x, edge_index)``, a GNN
            encoder's); when scoring, logits that are no floats or, where autograd records, do not follow the
            module's trainable parameters (a forward under ``torch.no_grad()``).
        TypeError: ``edge_weight`` or ``sparse`` that is no bool, ``node_tables`` that is no mapping.
    """

    def __init__(self, module: nn.Module, num_users: int, num_items: int, receptive_field: int, *,
                 edge_weight: bool = False, sparse: bool = False, node_tables: Mapping[str, str] | None = None):
        super().__init__(num_users, num_items)
        if not isinstance(module, nn.Module):
            raise TypeError(f"PyGRecommender wraps a torch.nn.Module, got {type(module).__name__}")
        if not is_integer(receptive_field) or receptive_field < 0:
            raise ValueError(f"PyGRecommender.receptive_field must be an int >= 0 (the module's number of "
                             f"message-passing layers), got {receptive_field!r}")
        for name, value in (("edge_weight", edge_weight), ("sparse", sparse)):
            if not isinstance(value, bool):  # bool("false") is True
                raise TypeError(f"PyGRecommender.{name} must be True or False, got {value!r}")
        if node_tables is not None and not isinstance(node_tables, Mapping):  # it failed in .items()
            raise TypeError(f"PyGRecommender.node_tables must be a mapping {{parameter name: node type}}, got "
                            f"{type(node_tables).__name__} {node_tables!r}")
        _refuse_cached_layers(module)
        _refuse_encoder_call(module)
        if edge_weight:
            _refuse_missing_edge_weight(module)
            if type(module) is not LightGCN:  # PyG's LightGCN is not called: the adapter propagates for it
                _refuse_normalizing_layers(module)
        self.module = module
        self.receptive_field = int(receptive_field)  # a NumPy integer too, stored as a plain one (checkpoints)
        self.sparse = bool(sparse)
        if self.linear_embedding and receptive_field < cast(LightGCN, module).num_layers:
            raise ValueError(f"PyGRecommender.receptive_field: PyG's LightGCN propagates over {module.num_layers} "
                             f"layers, so its receptive field is at least {module.num_layers}, got {receptive_field}")
        #: Whether the module is PyG's LightGCN with its normalising layers, which the adapter runs by
        #: graphforget's propagation (:meth:`lightgcn_embedding`): with whole-graph weights, exact on k-hop subgraphs.
        self.lightgcn_propagation = self.linear_embedding and all(conv.normalize
                                                                  for conv in cast(LightGCN, module).convs)
        self.supports_edge_weight = bool(edge_weight) or self.lightgcn_propagation
        #: The sparse adjacencies of the graphs the module (or PyG's LightGCN's propagation) ran on; a copy
        #: starts empty.
        self.adjacencies = (AdjacencyCache(build=normalized_adjacency if self.supports_edge_weight
                                           else observed_adjacency) if sparse or self.lightgcn_propagation else None)
        #: Otherwise the edge lists the module runs on, kept as the adjacencies are (and checked once per graph)
        self.edge_lists = None if self.adjacencies is not None else AdjacencyCache(
            build=functools.partial(_edge_lists, weighted=self.supports_edge_weight))
        self.node_tables = _node_tables(module, num_users, num_items, node_tables)
        # the widest: named first, an [n, 1] bias table set it to 1 (qa163)
        self.embedding_dim = max(module.get_parameter(name).size(1) for name in self.node_tables)
        spread = _eval_spread(self)
        if spread:  # its curvature, acceptance test and served scores would be random, each result trusted
            raise ValueError(f"PyGRecommender: {type(module).__name__} scores the same pairs differently on two calls "
                             f"in eval mode (by up to {spread:.3g}): its forward draws at random outside training "
                             "(e.g. F.dropout(x, p) or F.dropout(x, training=True)); make each draw depend on "
                             "self.training (nn.Dropout, F.dropout(x, p, training=self.training))")
        failure = _sparse_failure(self) if sparse and not self.lightgcn_propagation else None  # that one: ours
        if failure:  # said here, before a training of hours: IFRU and SCIF raised only at the first request
            warn_caller(f"PyGRecommender(sparse=True), a sparse adjacency: {failure}; pass sparse=False")

    @property
    def linear_embedding(self) -> bool:  # type: ignore[override]  # Recommender's class default; never set on one
        """Whether the module is PyG's LightGCN (its own class): its embedding is linear in its table."""
        return type(self.module) is LightGCN

    @property
    def scores_by_dot_product(self) -> bool:
        """Whether the module is PyG's LightGCN, whose forward is the dot product of ``get_embedding``'s rows
        (and this class's forward is not overridden): IFRU's curvature products then take their closed form."""
        return type(self).forward is PyGRecommender.forward and self.linear_embedding

    def node_parameters(self) -> dict[str, str]:
        return {f"module.{name}": node_type for name, node_type in self.node_tables.items()}

    def reset_parameters(self, seed: int | None = None) -> None:
        """The module's ``reset_parameters()``; with ``seed``, under ``torch.manual_seed(seed)`` inside
        :func:`torch.random.fork_rng` (the global random state is left as it was), on a float32 copy of the module on
        the CPU whose values are then copied in: a seed draws the same values on every device and in every floating
        dtype, as it does for the library's own tables (drawn in float64, a PyG LightGCN's table was up to 1.08 from
        the float32 one, and a Retrain's result 0.97: qa181)."""
        reset = getattr(self.module, "reset_parameters", None)
        if reset is None:
            raise AttributeError(f"{type(self.module).__name__} has no reset_parameters(): Retrain, SISA and "
                                 "RecEraser re-initialise models with it")
        if seed is None:
            reset()
            return
        check_seed(seed)
        drawn = copy.deepcopy(self.module).to("cpu", torch.float32)  # its floating tensors; the others as they are
        with torch.random.fork_rng(devices=[]):
            torch.random.default_generator.manual_seed(int(seed))  # a NumPy integer: torch wants a Python int
            getattr(drawn, "reset_parameters")()  # the copy's (checked above on the module)
        with torch.no_grad():
            for mine, new in zip(_tensors(self.module), _tensors(drawn)):  # a copy keeps the order and the sharing
                mine.copy_(new)

    def propagation_inputs(self, graph: HeteroData) -> tuple[Tensor, Tensor | None]:
        """The module's ``edge_index`` ``[2, 2E']`` (both directions of the observed edges, items offset
        by ``U``) and ``edge_weight`` (``[2E']`` with ``edge_weight=True``, else ``None``); with ``sparse=True``
        the CSR adjacency ``[U + I, U + I]`` holding them, and ``None``."""
        like = next(self.module.parameters())
        if self.adjacencies is not None:
            return self.adjacencies(graph, like), None
        # built where no adjacency is kept; it holds _edge_lists' pairs
        return cast("tuple[Tensor, Tensor | None]", cast(AdjacencyCache, self.edge_lists)(graph, like))

    def forward(self, graph: HeteroData, edge_label_index: Tensor) -> Tensor:
        self._check_node_counts(graph)
        # Before the offset: a user id past the users would be read as an item, a negative item id as a user.
        check_edge_label_index(edge_label_index, num_users(graph), num_items(graph))
        # int64 before the offset: uint8 item ids + U wrap around (5 + 943 = 180), and PyG reads uint8 as a mask
        edge_label_index = edge_label_index.long()
        if self.lightgcn_propagation:  # PyG's LightGCN's forward: the dot products of its embedding's rows
            return super().forward(graph, edge_label_index)
        edge_index, weight = self.propagation_inputs(graph)
        pairs = torch.stack([edge_label_index[0], edge_label_index[1] + num_users(graph)])
        out = self.module(edge_index, pairs) if weight is None else self.module(edge_index, pairs, edge_weight=weight)
        return self._checked_logits(out, pairs.size(1))

    def _checked_logits(self, out, count: int) -> Tensor:
        """The module's output when it is ``[count]`` floating logits that follow its trainable parameters (where
        autograd records), else a ``ValueError`` naming what it is."""
        name = type(self.module).__name__
        if not isinstance(out, Tensor):  # e.g. (logits, aux_loss): the check below read its shape
            raise ValueError(f"PyGRecommender: {name} returned a {type(out).__name__}; its "
                             "forward(edge_index, edge_label_index) must return one tensor, a logit per pair")
        if out.shape != (count,):
            raise ValueError(f"PyGRecommender: {name} returned a {list(out.shape)} tensor for {count} pairs; its "
                             "forward(edge_index, edge_label_index) must return one logit per pair")
        if not out.is_floating_point():  # integers failed inside torch's losses
            raise ValueError(f"PyGRecommender: {name} returned logits of dtype {out.dtype}; they must be floating")
        # training fitted the L2 term alone; the parameters read last, as every forward passes here
        detached = torch.is_grad_enabled() and not out.requires_grad
        if detached and any(p.requires_grad for p in self.module.parameters()):
            raise ValueError(f"PyGRecommender: {name} returned logits that do not depend on its parameters (a forward "
                             "under torch.no_grad(), or an output detached): nothing could be trained or unlearnt")
        return out

    def embed(self, graph: HeteroData) -> tuple[Tensor, Tensor]:
        """Users ``[U, d]`` and items ``[I, d]``: the module's ``get_embedding(edge_index)`` split (PyG's
        LightGCN's: :meth:`lightgcn_embedding`)."""
        self._check_node_counts(graph)
        if self.lightgcn_propagation:
            return self.lightgcn_embedding(graph).split([num_users(graph), num_items(graph)])
        get_embedding = getattr(self.module, "get_embedding", None)
        if get_embedding is None:
            raise NotImplementedError(f"PyGRecommender.embed needs get_embedding(edge_index, edge_weight=None) "
                                      f"(PyG's LightGCN has it); {type(self.module).__name__} has none")
        edge_index, weight = self.propagation_inputs(graph)
        out = get_embedding(edge_index) if weight is None else get_embedding(edge_index, edge_weight=weight)
        counts = [num_users(graph), num_items(graph)]
        if not isinstance(out, Tensor):  # e.g. (users, items): the adapter splits one [U + I, d] tensor itself
            raise ValueError(f"PyGRecommender: get_embedding returned a {type(out).__name__}, not one tensor of "
                             f"[num_users + num_items = {sum(counts)}, d] rows (users first)")
        if out.dim() != 2 or out.size(0) != sum(counts):
            raise ValueError(f"PyGRecommender: get_embedding returned {list(out.shape)}, not "
                             f"[num_users + num_items = {sum(counts)}, d]")
        return out.split(counts)

    def _check_node_counts(self, graph: HeteroData) -> None:
        """Raises ``ValueError`` when the module's own tables meet a graph of other user and item counts: one of as
        many nodes, split otherwise, read items' rows as users'. A region's tables (an influence method swaps them
        in, with the region's graph) are smaller, and not the model's to check."""
        sizes = {"user": self.num_users, "item": self.num_items, "node": self.num_users + self.num_items}
        tables = {name: cast(Tensor, functools.reduce(getattr, name.split("."), self.module))  # parameters
                  for name in self.node_tables}
        if all(tables[name].size(0) == sizes[kind] for name, kind in self.node_tables.items()):
            check_model_fits(self, graph)

    def lightgcn_embedding(self, graph: HeteroData) -> Tensor:
        r"""PyG's LightGCN's ``get_embedding``, :math:`\sum_k \alpha_k \tilde{\mathbf{A}}^k \mathbf{E}` with its
        table :math:`\mathbf{E}` and layer weights ``alpha``, by graphforget's propagation: the graph's
        normalised adjacency built once and kept (PyG's ``LGConv`` normalises it again in every layer of every
        call), products without a transpose in the backward, and the whole graph's weights on a subgraph that
        carries them, so that IFRU computes on the request's k-hop region. Only for PyG's LightGCN (its own class)
        where an adjacency is kept: with normalising layers, or ``sparse=True`` (else ``embed`` runs the module's)."""
        if not self.linear_embedding:  # it had failed reading the module's embedding table by PyG's name
            raise ValueError(f"PyGRecommender.lightgcn_embedding is PyG's LightGCN's embedding, and the module's "
                             f"class is {type(self.module).__name__}: call embed(graph), which runs its own "
                             "get_embedding")
        if self.adjacencies is None:  # it had failed with "'NoneType' object is not callable"
            raise ValueError("PyGRecommender.lightgcn_embedding: PyG's LightGCN without normalising layers and with "
                             "sparse=False keeps no adjacency to propagate on: call embed(graph), which runs the "
                             "module's own get_embedding")
        x = cast(LightGCN, self.module).embedding.weight  # linear_embedding: PyG's LightGCN
        adjacency, alpha = self.adjacencies(graph, x), cast(Tensor, self.module.alpha).to(x.dtype)  # a buffer
        out = x * alpha[0]
        for weight in alpha[1:]:
            x = symmetric_spmm(adjacency, x)
            out = out + x * weight
        return out

    def config(self) -> dict:
        """The constructor's plain arguments as in effect (not the module: checkpoints go through its state dict):
        ``edge_weight`` is True for PyG's LightGCN, which propagates with the weights whatever was passed."""
        return {**super().config(), "receptive_field": self.receptive_field,
                "edge_weight": self.supports_edge_weight, "sparse": self.sparse}


def _tensors(module: nn.Module) -> list[Tensor]:
    """The module's parameters, then its buffers."""
    return [*module.parameters(), *module.buffers()]


def _edge_lists(graph: HeteroData, like: Tensor, weighted: bool) -> tuple[Tensor, Tensor | None]:
    """:meth:`PyGRecommender.propagation_inputs` without a CSR adjacency: both directions of the observed edges, and
    their weights where ``weighted``. A pair stored twice is refused, as where an adjacency is built: the module
    passed its messages twice (a graph built by hand)."""
    edges = message_passing_edges(graph)
    check_unique_pairs(edges, num_items(graph), "the graph's observed edges")
    if not weighted:
        return bipartite_to_homogeneous(edges, num_users(graph)), None
    edges, weight = propagation_edges(graph, weight_dtype(like))
    weight = weight.to(like.dtype)
    return bipartite_to_homogeneous(edges, num_users(graph)), torch.cat([weight, weight])


def _probe_graph(model: PyGRecommender) -> HeteroData:
    """The path u0 - i0 - u1 - i1 (as far as the counts allow) on the module's device, which the probes score."""
    hops = min(2, path_hops(model.num_users, model.num_items))
    return path_graph(model.num_users, model.num_items, hops, device=next(model.module.parameters()).device)


def _eval_spread(model: PyGRecommender) -> float | None:
    """How far two scorings of the same pairs in eval mode differ, where they differ beyond float rounding (a CUDA
    scatter's order), on a path of 2 users and 2 items; ``None`` where they agree, or where the forward fails (the
    call that fails says so in its own words). The caller's random state is kept, and the caches emptied again."""
    graph = _probe_graph(model)
    pairs = graph[EDGE].edge_index
    try:
        with random_state_kept(model), eval_mode(model), torch.no_grad():
            first, second = model(graph, pairs), model(graph, pairs)
    except Exception:
        return None
    finally:
        for cache in (model.adjacencies, model.edge_lists):
            if cache is not None:
                cache.clear()
    return None if torch.allclose(first, second, rtol=1e-4, atol=1e-6, equal_nan=True) else float(
        (first - second).abs().max())


def _sparse_failure(model: PyGRecommender) -> str | None:
    """What fails of ``model`` given a sparse adjacency, found on a path of 2 users and 2 items: its forward (a
    module that indexes ``edge_index`` itself), or torch's second derivative of its scores, which IFRU and SCIF need;
    ``None`` where neither does. Run on a copy in eval mode (a forward may write its weights), the caller's random
    state kept."""
    name = type(model.module).__name__
    with gradients_on(), random_state_kept(model):  # in the caller's inference_mode() no tensor could be saved
        graph = _probe_graph(model)
        probe = copy.deepcopy(model)
        params = [p for p in probe.parameters() if p.requires_grad]
        try:
            with eval_mode(probe):
                score = probe(graph, graph[EDGE].edge_index).square().sum()
        except Exception as error:  # training would fail so, in torch's words (aten::index on 'SparseCPU')
            said = (str(error).strip().splitlines() or [""])[0].split(". ")[0]  # torch's goes on to list its backends
            return f"{name} failed on one ({type(error).__name__}: {said}): a module that indexes edge_index itself, " \
                   "or a layer that takes no sparse adjacency (ChebConv, ARMAConv), cannot take one"
        try:
            grads = torch.autograd.grad(score, params, create_graph=True, allow_unused=True)
            curved = [g.square().sum() for g in grads if g is not None and g.requires_grad]
            if curved:
                torch.autograd.grad(cast(Tensor, sum(curved)), params, allow_unused=True)  # a Tensor: not empty
        except RuntimeError as error:  # only torch's missing derivative is this probe's to report
            if "derivative for" not in str(error) or "not implemented" not in str(error):
                return None
            return f"torch cannot differentiate {name}'s scores twice on it ({error}), and IFRU and SCIF need it: " \
                   "they will raise. Layers that aggregate by mean or max (SAGEConv) or take a softmax over each " \
                   "node's neighbours (GATConv, TransformerConv) do this"
    return None


def _refuse_cached_layers(module: nn.Module) -> None:
    """Raises ``ValueError`` naming the layers built with ``cached=True`` (PyG's ``GCNConv``, ``SGConv``, ...): they
    keep the normalised graph of their first call and ignore every later one, so the model would score an edited
    graph (without the request, a k-hop subgraph) on the original."""
    cached = [f"{name} ({type(layer).__name__})" for name, layer in module.named_modules()
              if getattr(layer, "cached", False) is True]
    if cached:
        raise ValueError(f"PyGRecommender: {', '.join(cached)} of {type(module).__name__}: a layer built with "
                         "cached=True keeps the graph of its first call and ignores the edited graphs unlearning runs "
                         "the model on; build it with cached=False")


def _refuse_encoder_call(module: nn.Module) -> None:
    """Raises ``ValueError`` for a module whose forward takes node features first (``forward(x, edge_index)``, PyG's
    GNN encoders): the adapter's ``edge_index`` would be read as features and the scored pairs as the graph, which
    failed inside torch with an index out of range on first use; or that cannot be called with the two graph
    arguments."""
    params = _forward_parameters(module)
    if params is None:  # a forward inspect cannot read (a builtin): left to the output check
        return
    positional = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if positional and positional[0] in ("x", "x_dict"):
        raise ValueError(f"PyGRecommender calls module(edge_index, edge_label_index[, edge_weight=...]) and needs one "
                         f"logit per pair ([P] for P pairs), but {type(module).__name__}.forward("
                         f"{', '.join(positional)}) takes node features first, as an encoder that returns node "
                         "embeddings does: wrap it in a module whose forward(edge_index, edge_label_index) scores the "
                         "pairs, or subclass EmbeddingRecommender and call it in embed() (docs/custom_model.rst)")
    try:  # forward(edge_index, edge_label_index, edge_weight) failed on first use: 'missing 1 required argument'
        inspect.signature(module.forward).bind(None, None)
    except TypeError as error:
        raise ValueError(f"PyGRecommender calls module(edge_index, edge_label_index[, edge_weight=...]), but "
                         f"{type(module).__name__}.forward({', '.join(p.name for p in params)}) cannot be called so "
                         f"({error}): define forward(edge_index, edge_label_index, edge_weight=None)") from None


def _refuse_missing_edge_weight(module: nn.Module) -> None:
    """Raises ``ValueError`` when ``edge_weight=True`` meets a forward that takes no ``edge_weight`` keyword (nor
    ``**kwargs``): it failed on first use with Python's 'unexpected keyword argument'."""
    params = _forward_parameters(module)
    if params is None or any(p.kind == p.VAR_KEYWORD or (p.name == "edge_weight" and p.kind != p.POSITIONAL_ONLY)
                             for p in params):
        return
    raise ValueError(f"PyGRecommender(edge_weight=True) calls module(edge_index, edge_label_index, edge_weight=...), "
                     f"but {type(module).__name__}.forward takes no edge_weight argument: add it, or leave "
                     "edge_weight=False (the module then normalises by itself)")


#: PyG layers that normalise by the degrees of the graph they are given, with no ``normalize`` option to turn it off
#: (and ``EGConv`` with its default ``symnorm`` aggregator: :func:`_normalizes`).
ALWAYS_NORMALIZING = (SGConv, SSGConv, ChebConv, ARMAConv, MixHopConv)


#: PyG's normalisations whose statistics are those of every node of the graph they are given (without ``batch``).
GRAPH_NORMS = (pyg_norm.PairNorm, pyg_norm.GraphNorm, pyg_norm.GraphSizeNorm, pyg_norm.MeanSubtractionNorm)
#: Normalisations over the nodes that read running statistics in eval mode, where IFRU runs the model, when they keep
#: them (PyG's BatchNorm holds a torch one).
RUNNING_NORMS = (pyg_norm.InstanceNorm, nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


def _normalizes(layer: nn.Module) -> bool:
    """Whether ``layer`` normalises by the degrees of the graph it is given (both ends' degrees: a mean over a
    node's neighbours is exact on a k-hop subgraph, which holds every neighbour of the nodes it scores) or by
    statistics over all of its nodes (:data:`GRAPH_NORMS`, a graph-mode ``LayerNorm``, one of :data:`RUNNING_NORMS`
    without running statistics). ``SAGEConv``'s ``normalize`` scales each output row alone."""
    if isinstance(layer, EGConv):
        return "symnorm" in layer.aggregators
    if isinstance(layer, pyg_norm.LayerNorm):
        return layer.mode == "graph"
    if isinstance(layer, RUNNING_NORMS):
        return not layer.track_running_stats
    degree_normalized = getattr(layer, "normalize", False) is True and not isinstance(layer, SAGEConv)
    return degree_normalized or isinstance(layer, ALWAYS_NORMALIZING + GRAPH_NORMS)


def _refuse_normalizing_layers(module: nn.Module) -> None:
    """Raises ``ValueError`` naming the layers that normalise by themselves (``normalize=True``, the default of
    ``LGConv`` and ``GCNConv``, or :func:`_normalizes`) under ``edge_weight=True``: they normalise the
    whole graph's weights again by the degrees of the graph they are given (or its nodes by their statistics), so on a
    k-hop subgraph the model is not the whole graph's, and IFRU's local step would be off without a word. The advice
    is each kind's: a BatchNorm had been told to build its convolutions with normalize=False (qa138)."""
    named = [(name, layer) for name, layer in module.named_modules() if _normalizes(layer)]
    if not named:
        return
    norms = [isinstance(layer, RUNNING_NORMS + GRAPH_NORMS + (pyg_norm.LayerNorm,)) for _, layer in named]
    fixes = (["build the convolutions with normalize=False where they have it (the weights passed are normalised)"]
             * (not all(norms))
             + ["give a batch or instance norm running statistics (track_running_stats=True), normalise each node "
                "alone (LayerNorm(mode='node')) or remove the norm"] * any(norms))
    layers = ", ".join(f"{name} ({type(layer).__name__})" for name, layer in named)
    raise ValueError(f"PyGRecommender(edge_weight=True): {layers} of {type(module).__name__} "
                     f"{'normalises' if len(named) == 1 else 'normalise'} by the degrees of the graph it is given, or "
                     "by statistics over all of its nodes, so the model is not exact on the k-hop subgraphs IFRU "
                     f"computes on: {'; '.join(fixes)}; or leave edge_weight=False (IFRU then computes on the whole "
                     "graph)")


def _forward_parameters(module: nn.Module) -> list[inspect.Parameter] | None:
    """The parameters of ``module.forward``, or ``None`` when inspect cannot read them (a builtin)."""
    try:
        return list(inspect.signature(module.forward).parameters.values())
    except (TypeError, ValueError):
        return None


#: Layers whose weight is never a per-node table, whatever its shape.
LINEAR_LAYERS = (nn.Linear, PyGLinear)


def _tables_by_shape(module: nn.Module, params: dict[str, nn.Parameter], rows: dict[str, int],
                     shapes: str) -> dict[str, str]:
    """The module's ``[U + I, d]`` tables outside linear layers (the trainable ones where any is), refusing what
    shape alone cannot tell: trainable ``[U, k]`` or ``[I, k]`` parameters beside them (per-user or per-item tables,
    e.g. biases, which the influence methods would solve for whole, as shared weights: IFRU moved a forgotten user's
    bias from 0.05 to -0.45 where Retrain leaves 0; a QA probe)."""
    num_users, num_items = rows["user"], rows["item"]
    # A linear layer's weight multiplies features: one of U + I outputs ([U + I, d], a score per node) is no table.
    linear = {f"{owner}.weight".lstrip(".") for owner, layer in module.named_modules()
              if isinstance(layer, LINEAR_LAYERS)}
    candidates = {name: p for name, p in params.items() if p.dim() == 2 and name not in linear}
    found = {name: "node" for name, p in candidates.items() if p.size(0) == rows["node"]}
    split = sorted(name for name, p in candidates.items() if p.requires_grad and p.size(0) in (num_users, num_items))
    name_them = "name its tables with node_tables={name: 'user' | 'item' | 'node'}"
    if any(params[name].requires_grad for name in found):  # a frozen [U + I, f] one is node features, no table
        found = {name: kind for name, kind in found.items() if params[name].requires_grad}
        if split:
            raise ValueError(f"PyGRecommender: {type(module).__name__} has trainable parameters of num_users or "
                             f"num_items rows, {split}, beside its tables of num_users + num_items = {rows['node']} "
                             f"rows, {sorted(found)}: per-user or per-item tables are not found by shape, and the "
                             f"influence methods would solve for them whole, as shared weights: {name_them}")
    elif found and split:  # the tables are a user's and an item's
        raise ValueError(f"PyGRecommender: the only parameters of {type(module).__name__} with num_users + "
                         f"num_items = {rows['node']} rows, {sorted(found)}, are frozen (node features, not "
                         f"tables), beside trainable ones of num_users or num_items rows, {split}: {name_them} (a "
                         "user and an item table are not found by shape)")
    if not candidates:
        raise ValueError(f"PyGRecommender: {type(module).__name__} learns no per-node table (its parameters: "
                         f"{shapes}), which the adapter needs; a model of fixed node features implements the "
                         "Recommender contract itself, with node_parameters() = {} (see docs/custom_model)")
    if not found:
        raise ValueError(
            f"PyGRecommender: no parameter of {type(module).__name__} is a per-node table of "
            f"num_users + num_items = {rows['node']} rows outside a linear layer (its parameters: {shapes}); "
            f"build the module for {rows['node']} nodes (users 0..{num_users - 1}, items {num_users}.."
            f"{rows['node'] - 1}) or name its tables with node_tables={{name: 'user' | 'item' | 'node'}}")
    return found


def _library_layer(layer: nn.Module) -> bool:
    """Whether ``layer`` is a torch or PyG layer (a parametrized one: the layer it wraps), not a container of
    parameters (``ParameterDict``, ``ParameterList``) nor a parametrization, which hold what the user's code puts."""
    cls = type(layer).__bases__[0] if parametrize.is_parametrized(layer) else type(layer)
    return (cls.__module__.startswith(("torch.", "torch_geometric.")) and cls.__module__ != parametrize.__name__
            and not issubclass(cls, (nn.ParameterDict, nn.ParameterList)))


def _node_vectors(module: nn.Module, params: dict[str, nn.Parameter], rows: dict[str, int]) -> list[str]:
    """The trainable vectors (``[n]`` or ``[1, n]``) of ``n`` = ``U``, ``I`` or ``U + I`` entries that the module holds
    itself, not a torch or PyG layer (whose vectors are biases and scales of their features): per-node vectors. IFRU
    solved for a forgotten user's bias whole, as a weight every node shares, and moved it from -0.70 to 1.04 where
    Retrain leaves 0 (a QA probe); held in a ``ParameterDict``, a ``ParameterList`` or as ``[1, U]``, from 1.19 to
    -1.95."""
    library = {f"{owner}.{name}".lstrip(".") for owner, layer in module.named_modules() if _library_layer(layer)
               for name, _ in _own_parameters(layer)}
    sizes = {rows["user"], rows["item"], rows["node"]}
    return sorted(name for name, p in params.items() if p.requires_grad and p.dim() and p.size(-1) == p.numel()
                  and p.numel() in sizes and name not in library)


def _own_parameters(layer: nn.Module):
    """The layer's own parameters, with those behind its parametrizations (``parametrizations.bias.original``)."""
    yield from layer.named_parameters(recurse=False)
    if parametrize.is_parametrized(layer):
        yield from cast(nn.Module, layer.parametrizations).named_parameters(prefix="parametrizations")


def _node_tables(module: nn.Module, num_users: int, num_items: int,
                 given: Mapping[str, str] | None) -> dict[str, str]:
    """The module's per-node tables, ``{parameter name: node type}``, found by shape or checked."""
    params = dict(module.named_parameters())
    lazy = [name for name, p in params.items() if nn.parameter.is_lazy(p)]
    if lazy:  # their shapes are unknown until the module first runs
        raise ValueError(f"PyGRecommender: {type(module).__name__} has lazy (uninitialised) parameters {lazy}: give "
                         "its layers their input sizes, or run it once on the graph before wrapping it")
    rows = {"user": num_users, "item": num_items, "node": num_users + num_items}
    shapes = ", ".join(f"{name} {list(p.shape)}" for name, p in params.items()) or "none"
    vectors = _node_vectors(module, params, rows)
    if vectors:
        raise ValueError(f"PyGRecommender: {type(module).__name__} has trainable vectors of num_users, num_items or "
                         f"num_users + num_items entries, {vectors}: per-node vectors (e.g. biases), which the "
                         "influence methods would solve for whole, as shared weights: hold each as an [n, 1] table "
                         "(nn.Embedding(n, 1)) and name the tables with node_tables={name: 'user' | 'item' | 'node'} "
                         "(features that happen to be that many: implement the Recommender contract, see "
                         "docs/custom_model)")
    if given is None:
        return _tables_by_shape(module, params, rows, shapes)
    if not given:
        raise ValueError("PyGRecommender.node_tables is empty: name at least one per-node table (a model without "
                         "one implements the Recommender contract itself: see docs/custom_model)")
    for name, node_type in given.items():
        if name not in params:
            raise ValueError(f"PyGRecommender.node_tables: {name!r} is not a parameter of {type(module).__name__} "
                             f"(its parameters: {shapes})")
        if node_type not in NODE_TYPES:
            raise ValueError(f"PyGRecommender.node_tables[{name!r}]: node type {node_type!r} is not one of "
                             f"{', '.join(NODE_TYPES)}")
        if params[name].dim() != 2 or params[name].size(0) != rows[node_type]:
            raise ValueError(f"PyGRecommender.node_tables[{name!r}]: a {node_type} table must be "
                             f"[{rows[node_type]}, d], it is {list(params[name].shape)}")
    return dict(given)
