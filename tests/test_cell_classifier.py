"""Per-cell quality classifier: crops, label derivation, corruptions, shipped model."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from scopeflow.models.training import roc_auc
from scopeflow.models.weights import WeightsError
from scopeflow.qc.cell_classifier import (
    DEFAULT_WEIGHTS,
    cell_centroids,
    cell_crops,
    load_quality_model,
    predict_crops,
    predict_good,
)
from scopeflow.qc.quality_labels import (
    CORRUPTIONS,
    classify_predictions,
    corrupt_cell,
    real_examples,
    sim_examples,
)
from scopeflow.qc.train_quality import balanced_accuracy


def _disk(shape, cy, cx, r):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def test_centroids_and_crops_geometry():
    lab = np.zeros((100, 120), np.int32)
    lab[_disk(lab.shape, 50, 60, 12)] = 3
    lab[_disk(lab.shape, 2, 3, 8)] = 7  # cut by the corner
    rng = np.random.default_rng(0)
    dpc = (0.5 + 0.05 * rng.standard_normal(lab.shape)).astype(np.float32)
    cent = cell_centroids(lab, np.array([3, 7, 99]))
    np.testing.assert_allclose(cent[0], [50, 60], atol=1e-9)
    assert np.isnan(cent[2]).all()
    crops, found = cell_crops(dpc, lab, np.array([3, 7, 99]), size=48)
    assert crops.shape == (3, 2, 48, 48) and crops.dtype == np.float32
    assert found.tolist() == [True, True, False]
    # own mask centred on the crop centre; the other cell is not in the mask channel
    m = crops[0, 1]
    assert m[24, 24] == 1 and m.sum() == _disk(lab.shape, 50, 60, 12).sum()
    z = crops[0, 0]
    assert abs(z.mean()) < 1e-5 and abs(z.std() - 1) < 1e-4
    # the corner cell: outside the image is 0 in both channels, inside is z-scored
    cy, cx = np.rint(cent[1]).astype(int)
    y0, x0 = cy - 24, cx - 24
    assert np.all(crops[1, :, : -y0, :] == 0) and np.all(crops[1, :, :, : -x0] == 0)
    inside = crops[1, 0, -y0:, -x0:]
    assert abs(inside.mean()) < 1e-5 and abs(inside.std() - 1) < 1e-4
    assert np.all(crops[2] == 0)


def test_classify_predictions_kinds():
    ref = np.zeros((60, 200), np.int32)
    ref[_disk(ref.shape, 30, 20, 10)] = 1  # predicted well -> good
    ref[_disk(ref.shape, 30, 50, 9)] = 2  # 2 and 3 predicted as one -> merged
    ref[_disk(ref.shape, 30, 69, 9)] = 3
    ref[_disk(ref.shape, 30, 110, 12)] = 4  # predicted as two halves -> split
    pred = np.zeros_like(ref)
    pred[_disk(ref.shape, 30, 20, 10)] = 10
    pred[(ref == 2) | (ref == 3)] = 20
    half = ref == 4
    pred[half & (np.arange(200)[None, :] < 110)] = 30
    pred[half & (np.arange(200)[None, :] >= 110)] = 31
    pred[_disk(ref.shape, 30, 170, 8)] = 40  # nothing there -> unmatched
    c = classify_predictions(pred, ref)
    kinds = dict(zip(c["ids"].tolist(), c["kind"].tolist(), strict=True))
    assert kinds == {10: "good", 20: "merged", 30: "split", 31: "split", 40: "unmatched"}
    assert c["good"].tolist() == [True, False, False, False, False]
    assert c["best_iou"][0] == 1.0 and c["ref_id"][0] == 1


@pytest.mark.parametrize("kind", CORRUPTIONS)
def test_corruptions_are_bad_contours(kind):
    lab = np.zeros((112, 112), np.int32)
    lab[_disk(lab.shape, 56, 56, 13)] = 5
    lab[_disk(lab.shape, 56, 83, 13)] = 6  # touching neighbour
    cell = lab == 5
    rng = np.random.default_rng(1)
    for _ in range(5):
        new = corrupt_cell(lab, 5, kind, rng)
        assert new is not None
        c2 = new == 5
        iou = (c2 & cell).sum() / (c2 | cell).sum()
        assert iou <= 0.7
        assert not np.array_equal(new, lab)
    # merging needs a neighbour
    alone = np.where(lab == 5, 5, 0)
    if kind == "merge":
        assert corrupt_cell(alone, 5, kind, rng) is None
    with pytest.raises(ValueError):
        corrupt_cell(lab, 5, "melt", rng)


def test_metrics():
    y = np.array([1, 1, 1, 0, 0])
    ba = balanced_accuracy(y, np.array([0.9, 0.8, 0.2, 0.1, 0.6]))
    assert ba == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert roc_auc(y, np.array([0.9, 0.8, 0.7, 0.1, 0.2])) == 1.0
    assert roc_auc(y, np.array([0.1, 0.2, 0.3, 0.8, 0.9])) == 0.0
    assert roc_auc(y, np.full(5, 0.5)) == 0.5


def test_predict_good_edge_cases():
    empty = predict_good(np.zeros((10, 10)), np.zeros((10, 10), int), np.array([], int))
    assert empty.shape == (0,)
    lab = np.zeros((80, 80), np.int32)
    lab[_disk(lab.shape, 40, 40, 12)] = 1
    lab[_disk(lab.shape, 0, 79, 10)] = 2  # at the corner
    dpc = np.full((80, 80), 0.5, np.float32)  # constant image
    p = predict_good(dpc, lab, np.array([2, 1, 42]))
    assert p.shape == (3,) and np.isfinite(p[:2]).all() and np.isnan(p[2])
    assert ((p[:2] >= 0) & (p[:2] <= 1)).all()


def test_weights_checked(tmp_path):
    net, meta = load_quality_model()
    assert meta["kind"] == "rbc_quality" and meta["crop"] == 48
    n_bytes = DEFAULT_WEIGHTS.stat().st_size
    assert n_bytes < 1_000_000
    w = tmp_path / "q.pt"
    shutil.copy(DEFAULT_WEIGHTS, w)
    shutil.copy(DEFAULT_WEIGHTS.with_suffix(".md"), tmp_path / "q.md")
    load_quality_model(w)
    with open(w, "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(WeightsError, match="sha256 mismatch"):
        load_quality_model(w)


def test_heldout_balanced_accuracy(shared, torch_one_thread):
    """Shipped weights on images never used in training: dpc_1024_00 (U-Net cells vs the
    reference + corrupted contours) and 4 held-back simulated smears (2 in focus, 2 defocused)."""
    from scopeflow.segment.train_data import read_image
    from scopeflow.segment.unet import UNetPredictor

    pred = UNetPredictor(device="cpu", threads=1)
    root = shared / "octopi_rbc_dpc_m2unet"
    img, mask = root / "images" / "dpc_1024_00.png", root / "masks" / "dpc_1024_00_mask.png"
    real = real_examples(img, mask, pred, np.random.default_rng(1000))
    parts = [real] + [sim_examples(s, dz, pred) for s, dz in
                      [(5000, 0.7), (5001, -14.0), (5002, -1.3), (5003, 22.0)]]
    y = np.concatenate([p["y"] for p in parts]).astype(bool)
    x = np.concatenate([p["x"] for p in parts])
    p = predict_crops(x)
    assert (~y).sum() > 500 and y.sum() > 1000
    assert balanced_accuracy(y, p) >= 0.9
    assert roc_auc(y, p) >= 0.95
    # the public API on the real image agrees with the crop path
    from scopeflow.qc.quality_labels import _segment

    dpc = read_image(img)
    lab = _segment(dpc, pred)
    ids = np.unique(lab)[1:]
    pg = predict_good(dpc, lab, ids)
    n = len(ids)
    np.testing.assert_allclose(pg, predict_crops(real["x"][:n]), atol=2e-3)  # float16 cache
