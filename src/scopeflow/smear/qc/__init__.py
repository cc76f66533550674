"""Rule-based quality control of smear samples.

Modules
-------
params
    The ``qc:`` thresholds: defaults from the config schema, checked (:func:`params.qc_params`).
focus
    FOV focus metrics (tiled, robust to sparse fields).
best_focus
    The plane of a z-stack to analyse (``zstack``).
cell_features
    Per-cell features the rules use: contacts with other cells, convexity, saturated pixels.
flags
    Per-cell flags (``qc_pass``, ``qc_reason``).
gates
    FOV verdicts and the sample gate.

Submodules are imported on use, not here.
"""
