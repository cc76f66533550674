"""Segmentation scores on hand-made cases with known IoU / F1 / AP."""

from __future__ import annotations

import time

import numpy as np
import pytest

from scopeflow.evaluate import (
    AP_THRESHOLDS,
    evaluate,
    evaluate_paths,
    match_instances,
    overlap_table,
    to_instances,
)


def _square(shape, y, x, h, w, value=1, out=None):
    img = np.zeros(shape, np.int32) if out is None else out
    img[y : y + h, x : x + w] = value
    return img


def test_ap_thresholds():
    assert np.allclose(AP_THRESHOLDS, np.arange(10) * 0.05 + 0.5)


def test_to_instances_mask_and_labels():
    mask = np.zeros((8, 8), np.uint8)
    mask[1:3, 1:3] = 255
    mask[3:5, 3:5] = 255  # touches the first only diagonally -> separate (4-connectivity)
    lab = to_instances(mask)
    assert lab.max() == 2
    assert to_instances(mask > 0).max() == 2
    labels = np.zeros((8, 8), np.int32)
    labels[0:2, 0:2] = 7
    labels[0:2, 2:4] = 3  # touching label image: ids pass through
    out = to_instances(labels)
    assert set(np.unique(out)) == {0, 3, 7}
    assert to_instances(np.zeros((4, 4))).max() == 0
    with pytest.raises(ValueError):
        to_instances(np.zeros((2, 2, 2)))
    with pytest.raises(ValueError):
        to_instances(np.array([[0.5, 1.0]]))


def test_identity_scores_one():
    lab = np.zeros((64, 64), np.int32)
    for i in range(4):
        _square(lab.shape, 4 + 14 * i, 5, 10, 12, value=10 + i, out=lab)
    s = evaluate(lab, lab)
    for key in ("binary_iou", "dice", "precision", "recall", "f1", "mean_ap", "mean_matched_iou"):
        assert s[key] == pytest.approx(1.0), key
    assert s["n_pred"] == s["n_ref"] == 4
    assert s["count_error"] == 0.0


def test_shifted_square_known_iou_and_ap():
    ref = _square((40, 40), 10, 10, 10, 10)
    pred = _square((40, 40), 10, 12, 10, 10)  # shifted 2 px in x: IoU = 80/120
    s = evaluate(pred, ref)
    assert s["binary_iou"] == pytest.approx(2 / 3)
    assert s["dice"] == pytest.approx(0.8)
    assert s["f1"] == 1.0 and s["precision"] == 1.0 and s["recall"] == 1.0
    assert s["mean_matched_iou"] == pytest.approx(2 / 3)
    # matched at 0.50, 0.55, 0.60, 0.65 (IoU 0.667); at 0.70..0.95 it is 1 FP + 1 FN
    assert s["mean_ap"] == pytest.approx(4 / 10)


def test_merged_cells_count_as_errors():
    ref = _square((30, 40), 5, 5, 10, 10, 1)
    _square(ref.shape, 5, 16, 10, 10, 2, out=ref)  # 1-px gap between the two cells
    pred = _square((30, 40), 5, 5, 10, 21, 1)  # one object covering both (and the gap)
    s = evaluate(pred, ref)
    assert s["n_pred"] == 1 and s["n_ref"] == 2
    assert s["f1"] == 0.0 and s["mean_ap"] == 0.0
    assert s["count_error"] == pytest.approx(-0.5)
    assert np.isnan(s["mean_matched_iou"])


def test_split_cell_matches_once_at_iou_half():
    ref = _square((30, 30), 5, 5, 10, 20)
    pred = _square((30, 30), 5, 5, 10, 10, 1)
    _square(pred.shape, 5, 15, 10, 10, 2, out=pred)  # two halves, IoU 0.5 each with ref
    m = match_instances(pred, ref, 0.5)
    assert m.tp == 1 and m.fp == 1 and m.fn == 0  # one-to-one
    assert m.iou[0] == pytest.approx(0.5)
    s = evaluate(pred, ref)
    assert s["precision"] == pytest.approx(0.5)
    assert s["recall"] == pytest.approx(1.0)
    assert s["f1"] == pytest.approx(2 / 3)
    assert s["mean_ap"] == pytest.approx(1 / 2 / 10)  # only t = 0.50: 1/(1+1+0)
    assert s["binary_iou"] == pytest.approx(1.0)


def test_empty_cases():
    z = np.zeros((10, 10), np.int32)
    s = evaluate(z, z)
    assert s["f1"] == 1.0 and s["binary_iou"] == 1.0 and s["mean_ap"] == 1.0
    assert np.isnan(s["count_error"])
    ref = _square((10, 10), 2, 2, 4, 4)
    s = evaluate(z, ref)
    assert s["precision"] == 0.0 and s["recall"] == 0.0 and s["f1"] == 0.0
    assert s["count_error"] == -1.0 and s["binary_iou"] == 0.0


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="shape"):
        evaluate(np.zeros((4, 4)), np.zeros((4, 5)))


def test_overlap_table_pairs():
    ref = _square((20, 20), 0, 0, 10, 10, 5)
    pred = _square((20, 20), 0, 5, 10, 10, 9)
    t = overlap_table(pred, ref)
    assert t["pair_pred"].tolist() == [9] and t["pair_ref"].tolist() == [5]
    assert t["intersection"].tolist() == [50]
    assert t["iou"][0] == pytest.approx(50 / 150)


def test_many_cells_fast():
    """~4900 cells on a 2048² image score in well under a few seconds."""
    ref = np.zeros((2048, 2048), np.int32)
    pitch, side, k = 29, 25, 0
    for y in range(2, 2048 - pitch, pitch):
        for x in range(2, 2048 - pitch, pitch):
            k += 1
            ref[y : y + side, x : x + side] = k
    pred = np.roll(ref, 1, axis=1) * 3  # shifted by 1 px, other ids
    t0 = time.perf_counter()
    s = evaluate(pred, ref)
    elapsed = time.perf_counter() - t0
    assert s["n_ref"] == k > 4500
    assert s["f1"] == 1.0
    assert s["mean_matched_iou"] == pytest.approx(side * (side - 1) / (side * (side + 1)))
    assert elapsed < 5.0, elapsed


def test_evaluate_paths_png_and_tiff(tmp_path):
    import imageio.v3 as iio
    import tifffile

    ref = np.zeros((32, 32), np.uint8)
    ref[4:12, 4:12] = 255
    ref[16:28, 16:28] = 255
    labels = to_instances(ref).astype(np.uint16)
    iio.imwrite(tmp_path / "ref.png", ref)
    tifffile.imwrite(tmp_path / "pred.tif", labels)
    s = evaluate_paths(tmp_path / "pred.tif", tmp_path / "ref.png")
    assert s["f1"] == 1.0 and s["n_ref"] == 2
    with pytest.raises(FileNotFoundError):
        evaluate_paths(tmp_path / "missing.png", tmp_path / "ref.png")
