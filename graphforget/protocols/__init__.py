"""Evaluation protocols: each takes prepared data and returns a typed report.

* :mod:`~graphforget.protocols.attack`: the IFRU paper's attack protocol (flipped labels as the request).
"""
from .attack import AUC_KEYS, DATASET_NAMES, AttackData, AttackReport, MethodReport, prepare_attack_data, run_attack

__all__ = ["AUC_KEYS", "DATASET_NAMES", "AttackData", "AttackReport", "MethodReport", "prepare_attack_data",
           "run_attack"]
