"""Evaluation: how good a segmentation is, and whether QC keeps the right cells.

Modules
-------
metrics
    Binary overlap and instance-matching scores of label images against references
    (IoU, Dice, F1, DSB-style mean AP); re-exported here.
usefulness
    Scores the smear QC flags against reference masks (the cells QC keeps should match a
    reference cell well); imported on use.
"""

from __future__ import annotations

from scopeflow.evaluate.metrics import (
    AP_THRESHOLDS,
    Matching,
    evaluate,
    evaluate_paths,
    match_instances,
    overlap_table,
    to_instances,
)

__all__ = ["AP_THRESHOLDS", "Matching", "evaluate", "evaluate_paths", "match_instances",
           "overlap_table", "to_instances"]
