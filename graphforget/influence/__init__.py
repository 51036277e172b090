"""Influence machinery as pure functions: loss terms, k-hop regions, pruning, HVPs, solvers."""
from .contrastive import ContrastiveTerm, has_contrastive_term
from .dot_product import (DotProductOperator, LinearEmbedding, LocalProblem, dot_product_gradient,
                          dot_product_objective, has_linear_dot_product, local_problem)
from .graph import (check_receptive_field, computation_subgraph, homogeneous_graph, homogeneous_index, k_hop_mask,
                    local_terms, node_ids)
from .hvp import GaussNewtonOperator, HessianOperator, NodeRows, objective_function, rows_function, scoring_graph
from .pruning import importance_scores, message_passing_degrees, select_nodes
from .solvers import (SOLVERS, AndersonMixing, ShiftedConjugateGradient, SolveResult, adam_quadratic,
                      conjugate_gradient, direct_solve, lissa, solve)
from .terms import Terms, training_terms

__all__ = [
    "ContrastiveTerm", "has_contrastive_term",
    "DotProductOperator", "LinearEmbedding", "LocalProblem", "dot_product_gradient", "dot_product_objective",
    "has_linear_dot_product", "local_problem", "local_terms", "computation_subgraph", "homogeneous_graph",
    "homogeneous_index", "k_hop_mask", "node_ids", "check_receptive_field",
    "GaussNewtonOperator", "HessianOperator", "NodeRows", "objective_function", "rows_function", "scoring_graph",
    "importance_scores", "message_passing_degrees", "select_nodes", "SOLVERS", "AndersonMixing", "SolveResult",
    "ShiftedConjugateGradient", "adam_quadratic", "conjugate_gradient", "direct_solve", "lissa", "solve", "Terms",
    "training_terms",
]
