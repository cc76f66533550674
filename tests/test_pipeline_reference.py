"""The stage functions keep the outputs recorded before the issue-20 speed work.

``tests/data/pipeline_reference`` was written by ``tests/data/make_pipeline_reference.py``
with the code before the speed work: labels must be identical (sha256 of the label
image), DPC/phase statistics and every table value equal within float32 tolerance.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scopeflow.smear.qc.focus import DEFAULT_FOCUS_METRIC, FOCUS_METRICS

HERE = Path(__file__).resolve().parent
REF = HERE / "data" / "pipeline_reference"

_spec = importlib.util.spec_from_file_location("make_pipeline_reference", HERE / "data" / "make_pipeline_reference.py")
ref_mod = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ref_mod)

# columns computed from the quantitative phase: a float32 FFT solve instead of a float64 one
PHASE_COLUMNS = ("mean_phase_rad", "phase_integral_rad_um2")


# FOV columns added after the reference was recorded (issue 18: time point, region, z choice, objective,
# camera bit depth and saturation); the reference's columns keep their order and values
ADDED_FOV_COLUMNS = ("t", "region", "n_z", "z_selection", "z_focus_scores", "bit_depth", "objective",
                     "saturated_fraction_raw")


def _compare_tables(got: pd.DataFrame, want: pd.DataFrame, what: str, nan_columns=()) -> None:
    if what.endswith("fovs"):
        assert set(ADDED_FOV_COLUMNS) <= set(got.columns), what
        got = got[[c for c in got.columns if c not in ADDED_FOV_COLUMNS]]
    assert list(got.columns) == list(want.columns), what
    assert len(got) == len(want), what
    for col in nan_columns:  # not computed (focus metrics not asked for)
        assert got[col].isna().all(), f"{what}: {col}"
    for col in [c for c in want.columns if c not in nan_columns]:
        w = want[col]
        g = got[col]
        if pd.api.types.is_numeric_dtype(w) and not pd.api.types.is_bool_dtype(w):
            gv = pd.to_numeric(g, errors="coerce").to_numpy(float)
            wv = w.to_numpy(float)
            if col in PHASE_COLUMNS:
                scale = np.nanmax(np.abs(wv)) if np.isfinite(wv).any() else 1.0
                np.testing.assert_allclose(gv, wv, rtol=1e-4, atol=2e-5 * scale, err_msg=f"{what}: {col}")
            else:
                np.testing.assert_allclose(gv, wv, rtol=2e-5, atol=1e-7, err_msg=f"{what}: {col}")
        else:
            assert g.astype(str).tolist() == w.astype(str).tolist(), f"{what}: {col}"


def _compare_case(got: dict, cells: pd.DataFrame, fovs: pd.DataFrame, kind: str, reference: dict,
                  nan_columns=()) -> None:
    want = reference[kind]
    assert sorted(got["fovs"]) == sorted(want["fovs"])
    for fov, rec in want["fovs"].items():
        g = got["fovs"][fov]
        assert g["labels_sha256"] == rec["labels_sha256"], f"{kind} {fov}: labels changed"
        for ch in ("dpc", "phase"):
            if ch not in rec:
                assert ch not in g
                continue
            tol = 1e-6 if ch == "dpc" else 2e-5 * max(abs(rec[ch]["min"]), abs(rec[ch]["max"]))
            for stat in ("mean", "std", "min", "max"):
                assert g[ch][stat] == pytest.approx(rec[ch][stat], rel=1e-4, abs=tol), f"{kind} {fov} {ch} {stat}"
            np.testing.assert_allclose(g[ch]["corner"], rec[ch]["corner"], atol=max(tol, 2e-6))
    csv = {"keep_default_na": True}
    _compare_tables(cells.reset_index(drop=True), pd.read_csv(REF / f"{kind}_cells.csv", **csv).astype(
        {"sample": str, "fov": str}), f"{kind} cells")
    want_fovs = pd.read_csv(REF / f"{kind}_fovs.csv", **csv).astype({"sample": str, "fov": str})
    _compare_tables(fovs.reset_index(drop=True), want_fovs, f"{kind} fovs", nan_columns)


@pytest.fixture(scope="module")
def reference():
    return json.loads((REF / "reference.json").read_text())


def test_simulated_acquisition_keeps_labels_and_tables(tmp_path, reference):
    acq, sha = ref_mod.simulated_acquisition(tmp_path)
    if sha != reference["smear_raw_inputs_sha256"]:
        pytest.fail("the simulator's frames changed since the reference was recorded: regenerate "
                    "tests/data/pipeline_reference with the previous pipeline code")
    # every focus metric asked for: all the FOV table's values are compared
    got, cells, fovs = ref_mod.run_case(tmp_path, "smear_raw", acq, method="unet", na=None,
                                        focus_metrics=list(FOCUS_METRICS))
    _compare_case(got, cells, fovs, "smear_raw", reference)


def test_real_dpc_image_keeps_labels_and_tables(tmp_path, reference, shared):
    # the default: only the QC focus metric is computed on the full image, the others are NaN
    got, cells, fovs = ref_mod.run_case(tmp_path, "smear_dpc", ref_mod.dpc_source(shared), method="unet", na=0.4)
    _compare_case(got, cells, fovs, "smear_dpc", reference,
                  nan_columns=[f"focus_{m}" for m in FOCUS_METRICS if m != DEFAULT_FOCUS_METRIC])
