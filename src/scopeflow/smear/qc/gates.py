"""Per-FOV verdicts (focus, cell count) and the per-sample QC gate.

Both compare each FOV with the sample's median FOV, so they need the merged FOV table of
a sample. A sample with a single FOV is its own median: its ratios are 1 and only the
absolute minimums (a positive focus score, ``min_cells_per_fov``) can fail it.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from scopeflow.smear.qc.flags import join_reasons
from scopeflow.smear.qc.focus import focus_ratio
from scopeflow.smear.qc.params import QCParams

__all__ = ["FOV_REASONS", "fov_verdicts", "sample_gate"]

FOV_REASONS = {
    "focus": "focus score (qc.focus_metric) < min_focus_ratio x the sample's median FOV, or not positive",
    "count": "non-border cells < max(min_cells_per_fov, min_cells_ratio x the sample's median FOV)",
}


def fov_verdicts(fovs: pd.DataFrame, params: QCParams | Mapping | None = None) -> pd.DataFrame:
    """Add ``focus_ratio``, ``focus_pass``, ``count_pass``, ``fov_pass`` and ``fov_qc_reason``.

    Parameters
    ----------
    fovs : pandas.DataFrame
        One sample's FOV table with ``n_cells``, ``n_cells_border`` and the focus column
        ``focus_<qc.focus_metric>``.
    params : QCParams or mapping, optional
        ``qc.*`` thresholds (a mapping: its keys override the defaults).

    Returns
    -------
    pandas.DataFrame
        A copy with the verdict columns. A FOV whose focus score is not positive (a blank
        or constant image) fails ``focus``, whatever the other FOVs; when the sample median
        is not positive every FOV fails it (no ratio of zeros is ever taken).
    """
    p = QCParams.from_config(params)
    out = fovs.copy()
    n = len(out)
    metric = f"focus_{p.focus_metric}"
    if metric not in out.columns:
        from scopeflow.errors import ScopeflowError

        raise ScopeflowError(
            f"config key qc.focus_metric: the FOV table has no {metric} column (measured by an "
            "older version); rerun the measure rule"
        )
    score = pd.to_numeric(out[metric], errors="coerce").to_numpy(np.float64) if n else np.zeros(0)
    ratio = focus_ratio(score)
    with np.errstate(invalid="ignore"):
        focus_ok = (score > 0) & (ratio >= p.min_focus_ratio)
    interior = (out["n_cells"] - out["n_cells_border"]).to_numpy(np.float64) if n else np.zeros(0)
    med = float(np.median(interior)) if n else 0.0
    need = max(float(p.min_cells_per_fov), float(p.min_cells_ratio) * med)
    count_ok = interior >= need
    out["focus_ratio"] = ratio
    out["focus_pass"] = np.asarray(focus_ok, bool)
    out["count_pass"] = np.asarray(count_ok, bool)
    out["fov_pass"] = out["focus_pass"] & out["count_pass"]
    reason = join_reasons({"focus": ~focus_ok, "count": ~count_ok}, n)
    out["fov_qc_reason"] = pd.Series(reason, index=out.index, dtype="string")
    return out


def sample_gate(fovs: pd.DataFrame, cells: pd.DataFrame,
                params: QCParams | Mapping | None = None) -> dict:
    """The sample's QC gate from its FOV verdicts and flagged cells.

    Parameters
    ----------
    fovs : pandas.DataFrame
        Output of :func:`fov_verdicts`.
    cells : pandas.DataFrame
        Output of :func:`scopeflow.smear.qc.flags.flag_cells`.
    params : QCParams or mapping, optional
        ``qc.*`` thresholds (a mapping: its keys override the defaults).

    Returns
    -------
    dict
        ``n_cells_qc_pass``, ``fraction_qc_pass`` (of all cells; NaN without cells),
        ``n_fovs_pass``, ``qc_gate`` ("pass" or "fail") and ``qc_gate_reason``
        (semicolon-separated, empty when it passes), plus ``reason_counts`` (cells per
        reason; a cell can have several).
    """
    p = QCParams.from_config(params)
    n_cells = int(len(cells))
    n_pass = int(cells["qc_pass"].sum()) if n_cells else 0
    frac = n_pass / n_cells if n_cells else float("nan")
    n_fovs = int(len(fovs))
    n_fovs_pass = int(fovs["fov_pass"].sum()) if n_fovs else 0
    reasons = []
    if n_fovs == 0 or n_fovs_pass < p.min_fraction_fovs_pass * n_fovs or n_fovs_pass == 0:
        reasons.append(f"fovs_pass {n_fovs_pass}/{n_fovs} < {p.min_fraction_fovs_pass:g}")
    if not n_cells or frac < p.min_fraction_pass:
        reasons.append(f"fraction_qc_pass {frac:.3f} < {p.min_fraction_pass:g}")
    if n_pass < p.min_cells_pass:
        reasons.append(f"n_cells_qc_pass {n_pass} < {p.min_cells_pass}")
    counts: dict[str, int] = {}
    if n_cells:
        for text in cells["qc_reason"].astype(str):
            for r in filter(None, text.split(";")):
                counts[r] = counts.get(r, 0) + 1
    return {
        "n_cells_qc_pass": n_pass,
        "fraction_qc_pass": frac,
        "n_fovs_pass": n_fovs_pass,
        "qc_gate": "fail" if reasons else "pass",
        "qc_gate_reason": "; ".join(reasons),
        "reason_counts": dict(sorted(counts.items())),
    }
