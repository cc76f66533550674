"""Quality control: focus metrics, per-cell quality classifiers and defocus estimation.

Rule-based QC of smear samples: :mod:`~scopeflow.qc.cell_features` (per-cell clump, focus and
saturation features), :mod:`~scopeflow.qc.focus` (FOV focus metrics), :mod:`~scopeflow.qc.flags`
(per-cell flags), :mod:`~scopeflow.qc.gates` (FOV verdicts, sample gate),
:mod:`~scopeflow.qc.params` (``qc:`` defaults), :mod:`~scopeflow.qc.figures` (report figures),
:mod:`~scopeflow.qc.usefulness` (scoring QC against reference masks). Submodules are imported
on use, not here (some need torch).
"""
