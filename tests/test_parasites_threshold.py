"""Operating threshold of the parasite classifier from negative slides (Octopi's rule)."""

from __future__ import annotations

import shutil

import numpy as np
from scipy import stats

from scopeflow.parasites.threshold import fp_target_per_5e6_rbc, set_threshold, slide_threshold


def test_fp_target_is_the_poisson_rate_that_keeps_small_slides_within_budget():
    # 50/uL on 1e5 RBC = 1 call allowed; the largest mean with P(X <= 1) >= 0.95 is 0.3554
    r = fp_target_per_5e6_rbc(50.0, slide_rbc=1e5, prob=0.95)
    assert abs(r - 0.35536 * 50) < 0.01
    assert abs(stats.poisson.cdf(1, r * 1e5 / 5e6) - 0.95) < 1e-6
    # 1e6 RBC: 10 calls allowed, a higher rate; 5e4 RBC: 0 calls allowed, mean -ln(0.95)
    assert abs(stats.poisson.cdf(10, fp_target_per_5e6_rbc(50.0, 1e6) / 5) - 0.95) < 1e-6
    assert abs(fp_target_per_5e6_rbc(50.0, 5e4) - (-np.log(0.95)) * 100) < 1e-4
    assert fp_target_per_5e6_rbc(50.0, 1e6) > r > fp_target_per_5e6_rbc(50.0, 5e4)


def test_slide_threshold_keeps_calls_within_target_and_respects_floor():
    rng = np.random.default_rng(0)
    p = rng.uniform(0.05, 1.0, 200)
    n = 1e6  # 5e6 / 1e6: target 10 per 5e6 RBC allows 2 calls
    res = slide_threshold(p, n, 10.0, floor=0.5)
    assert res["allowed_calls"] == 2
    assert res["calls"] == int((p >= res["threshold"]).sum()) <= 2
    top = np.sort(p)[::-1]
    assert top[2] < res["threshold"] <= top[1]  # just above the 3rd highest
    assert res["calls_at_floor"] == int((p >= 0.5).sum())
    # few enough calls above the floor: the floor itself
    res = slide_threshold(np.array([0.3, 0.6]), n, 10.0, floor=0.5)
    assert res["threshold"] == 0.5 and res["calls"] == 1
    # never below the floor even with no negatives at all
    assert slide_threshold(np.zeros(0), n, 10.0, floor=0.88)["threshold"] == 0.88


def test_set_threshold_rewrites_weights_and_rebinds_ood_reference(tmp_path, torch_one_thread):
    from scopeflow.parasites.classifier import DEFAULT_WEIGHTS, load_parasite_model
    from scopeflow.parasites.ood import load_ood_reference, ood_path
    from scopeflow.provenance import file_sha256

    w = tmp_path / "parasites.pt"
    for src in (DEFAULT_WEIGHTS, DEFAULT_WEIGHTS.with_suffix(".md"), ood_path()):
        shutil.copy(src, tmp_path / src.name)
    before, meta0 = load_parasite_model(w)
    crop_thr = float(meta0.get("crop_threshold", float(before.threshold)))
    ref0 = load_ood_reference(w)
    sha = set_threshold(w, 0.9876, {"rule": "test rule", "threshold": np.float64(0.9876)})
    assert sha == file_sha256(w) and sha in (tmp_path / "parasites.md").read_text()
    model, meta = load_parasite_model(w)
    assert abs(float(model.threshold) - 0.9876) < 1e-6
    assert meta["crop_threshold"] == crop_thr and meta["threshold_rule"] == "test rule"
    ref = load_ood_reference(w)  # bound to the new file, same features
    assert str(ref["model_sha256"]) == sha
    np.testing.assert_array_equal(ref["features"], ref0["features"])
    assert float(ref["threshold"]) == float(ref0["threshold"])


def test_negative_cells_keep_the_counted_probabilities(torch_one_thread):
    from scopeflow.parasites.coverage import negative_cell_calls

    a = negative_cell_calls(1, 2, size=256, seed=3, threshold=0.3)
    b = negative_cell_calls(1, 2, size=256, seed=3, threshold=0.3, enrich=8.0)
    for df in (a, b):
        for _, r in df.iterrows():  # counted at any threshold >= 0.05 follows from p_counted
            assert r["counted"] == int((np.asarray(r["p_counted"]) >= 0.3).sum())
            assert np.all(np.asarray(r["p_counted"]) >= 0.05)
    assert list(a["n_cells"]) == list(b["n_cells"])  # same cell layout
    assert b["n_candidates"].sum() > 2 * a["n_candidates"].sum()  # 8x the confounders
