"""Learned cell-quality and defocus models and their training (the QC rules are in
:mod:`scopeflow.smear.qc`). Submodules are imported on use, not here (they need torch).
"""
