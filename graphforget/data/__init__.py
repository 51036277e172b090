"""Interactions as PyG ``HeteroData``: loaders, transforms, splits and request samplers."""
from .interactions import (EDGE, bipartite_to_homogeneous, check_interactions, check_layout, check_model_fits,
                           check_one_edge_type, check_pair_ids, check_pair_tensor, check_unique_pairs, on_device,
                           edge_positions, edge_subgraph, make_interactions, message_passing_edges, num_items,
                           pair_keys, pairs_of_keys, pairs_with_data, propagation_edges, num_users, remove_edges,
                           symmetric_edge_weight, validate_pairs, without_edges)
from .adjacency import (AdjacencyCache, AdjacencyPattern, bipartite_adjacency, hold_graph, normalized_adjacency,
                        observed_adjacency)
from .adversarial import adversarial_edges
from .loaders import (DATASETS, download, find_data_root, load_csv, load_dataset, load_labelled_triples,
                      load_lightgcn, load_movielens_100k)
from .requests import attack_flip, random_edges, request_nodes, user_edges
from .synthetic import (GOWALLA_SHAPE, path_graph, path_hops, planted_communities, power_law_exponent,
                        power_law_interactions)
from .transforms import Split, add_negatives, binarize, k_core, random_split, relabel

__all__ = [
    "EDGE", "make_interactions", "num_users", "num_items", "message_passing_edges", "propagation_edges", "bipartite_to_homogeneous",
    "symmetric_edge_weight", "edge_positions", "edge_subgraph", "without_edges", "remove_edges", "validate_pairs",
    "pair_keys", "pairs_of_keys", "pairs_with_data", "check_interactions", "check_unique_pairs", "check_model_fits",
    "check_pair_ids", "check_pair_tensor", "check_layout", "check_one_edge_type", "on_device",
    "AdjacencyCache", "AdjacencyPattern", "bipartite_adjacency", "normalized_adjacency", "observed_adjacency", "hold_graph",
    "DATASETS", "download", "find_data_root", "load_csv", "load_dataset", "load_labelled_triples",
    "load_lightgcn", "load_movielens_100k",
    "attack_flip", "adversarial_edges", "random_edges", "request_nodes", "user_edges", "planted_communities",
    "path_graph", "path_hops", "power_law_interactions", "power_law_exponent", "GOWALLA_SHAPE",
    "Split", "add_negatives", "binarize", "k_core", "random_split", "relabel",
]
