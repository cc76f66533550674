"""Rule-based per-cell quality flags, with thresholds relative to the sample.

A sample's cells are measured per FOV (in shards); the flags need sample-wide medians, so
they are applied to the merged cell table (:func:`flag_cells`). Each failed check adds its
reason to ``qc_reason`` (semicolon-separated, in the order of :data:`CELL_REASONS`);
``qc_pass`` is True when there is none.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from scopeflow.smear.qc.params import QCParams

__all__ = ["CELL_REASONS", "flag_cells", "sample_median", "join_reasons"]

#: Every cell-level reason and what triggers it (``<key>`` = a ``qc.<key>`` threshold).
CELL_REASONS = {
    "border": "touches the FOV border (exclude_border)",
    "size": "area outside [min_area_ratio, max_area_ratio] x the sample's median area",
    "clump": "solidity < min_solidity or concavity_rel > max_concavity_rel (overlap, doublet, clump)",
    "out_of_focus": "focus_rel_fov < min_focus_rel (blurred relative to its FOV)",
    "debris": "focus_rel_fov > max_focus_rel (sharp specks: dirt, crystals, debris)",
    "low_contrast": "dpc_contrast < min_contrast_rel x the sample median (ghost or empty outline)",
    "saturated": "saturated_fraction > max_saturated_fraction",
    "shape": "axis_ratio < min_axis_ratio (off unless set)",
    "classifier": "p_good < classifier_threshold (with classifier: true)",
    "fov_focus": "its FOV failed the focus check (drop_failed_fovs)",
    "fov_count": "its FOV failed the cell-count check (drop_failed_fovs)",
}


def sample_median(values: pd.Series, interior: pd.Series) -> float:
    """Median of the finite ``values`` of non-border cells (all cells if none is interior);
    NaN when there is no finite value."""
    v = pd.to_numeric(values, errors="coerce").astype("float64")
    sel = v[interior.to_numpy(bool)] if interior.any() else v
    sel = sel[np.isfinite(sel)]
    return float(sel.median()) if len(sel) else float("nan")


def _ratio(values: pd.Series, median: float) -> np.ndarray:
    v = pd.to_numeric(values, errors="coerce").to_numpy(np.float64)
    if not np.isfinite(median) or median <= 0:
        return np.full(v.shape, np.nan)
    return v / median


def join_reasons(masks: Mapping[str, np.ndarray], n: int) -> np.ndarray:
    """Per row, the names of the True masks joined by ';' (empty string when none)."""
    out = np.full(n, "", dtype=object)
    for name, mask in masks.items():
        mask = np.asarray(mask, bool)
        if not mask.any():
            continue
        sep = np.where(out[mask] == "", "", ";")
        out[mask] = out[mask] + sep + name
    return out


def flag_cells(
    cells: pd.DataFrame,
    params: QCParams | Mapping | None = None,
    *,
    fovs: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Add the sample-relative columns and the flags ``qc_pass`` / ``qc_reason``.

    Parameters
    ----------
    cells : pandas.DataFrame
        One sample's merged cell table (columns of :data:`scopeflow.smear.measure.CELL_COLUMNS`,
        optionally ``p_good``).
    params : QCParams or mapping, optional
        ``qc.*`` thresholds (:class:`scopeflow.smear.qc.params.QCParams`; a mapping: its keys
        override the defaults).
    fovs : pandas.DataFrame, optional
        The sample's FOV table with the verdicts ``focus_pass`` and ``count_pass`` (from
        :func:`scopeflow.smear.qc.gates.fov_verdicts`); with ``drop_failed_fovs`` the cells of
        failed FOVs get the reasons ``fov_focus`` / ``fov_count``.

    Returns
    -------
    pandas.DataFrame
        A copy with ``area_rel_sample``, ``contrast_rel_sample``, ``qc_pass`` and
        ``qc_reason``. NaN features never fail a check, except that a NaN ``p_good`` fails
        the classifier check. An empty table gets the columns with no rows.

    Raises
    ------
    ScopeflowError
        With ``classifier: true`` and no ``p_good`` column (the cells were measured without
        the classifier), or for unknown ``qc`` keys.
    """
    from scopeflow.errors import ScopeflowError

    p = QCParams.from_config(params)
    out = cells.copy()
    n = len(out)
    interior = ~out["touches_border"].astype(bool) if n else pd.Series([], dtype=bool)
    area_med = sample_median(out["area_um2"], interior) if n else np.nan
    contrast_med = sample_median(out["dpc_contrast"], interior) if n else np.nan
    out["area_rel_sample"] = _ratio(out["area_um2"], area_med)
    out["contrast_rel_sample"] = _ratio(out["dpc_contrast"], contrast_med)

    def col(name):
        return pd.to_numeric(out[name], errors="coerce").to_numpy(np.float64)

    with np.errstate(invalid="ignore"):
        area_rel = out["area_rel_sample"].to_numpy(np.float64)
        focus_rel = col("focus_rel_fov")
        masks = {
            "border": out["touches_border"].to_numpy(bool) if p.exclude_border else np.zeros(n, bool),
            "size": (area_rel < p.min_area_ratio) | (area_rel > p.max_area_ratio),
            "clump": (col("solidity") < p.min_solidity) | (col("concavity_rel") > p.max_concavity_rel),
            "out_of_focus": focus_rel < p.min_focus_rel,
            "debris": focus_rel > p.max_focus_rel,
            "low_contrast": out["contrast_rel_sample"].to_numpy(np.float64) < p.min_contrast_rel,
            "saturated": col("saturated_fraction") > p.max_saturated_fraction,
            "shape": (col("axis_ratio") < p.min_axis_ratio) if p.min_axis_ratio is not None
            else np.zeros(n, bool),
        }
        if p.classifier:
            if "p_good" not in out.columns:
                raise ScopeflowError(
                    "config key qc.classifier: the cell table has no p_good column (measured "
                    "without the classifier); rerun the measure rule"
                )
            pg = col("p_good")
            masks["classifier"] = ~(pg >= p.classifier_threshold)  # NaN fails
        if p.drop_failed_fovs and fovs is not None and len(fovs) and n:
            verdict = fovs.set_index("fov")
            fov_names = out["fov"].astype(str)
            for reason, column in (("fov_focus", "focus_pass"), ("fov_count", "count_pass")):
                ok = fov_names.map(verdict[column].astype(bool).to_dict())
                masks[reason] = ~ok.fillna(True).to_numpy(bool)
    reason = join_reasons(masks, n)
    out["qc_pass"] = np.asarray(reason == "", dtype=bool)
    out["qc_reason"] = pd.Series(reason, index=out.index, dtype="string")
    return out
