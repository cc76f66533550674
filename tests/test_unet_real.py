"""Shipped M2U-Net weights on the held-out Octopi DPC image dpc_1024_00 (never trained on)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from scopeflow.segment.unet import DEFAULT_WEIGHTS, UNetPredictor

try:
    from scopeflow.evaluate import evaluate
except ImportError:  # pragma: no cover - fallback while evaluate.py is absent
    evaluate = None


def _evaluate(pred: np.ndarray, ref_mask: np.ndarray) -> dict:
    if evaluate is not None:
        return evaluate(pred, ref_mask)
    from skimage.measure import label

    ref = label(ref_mask > 0, connectivity=1)
    fp, fr = pred > 0, ref > 0
    iou = (fp & fr).sum() / (fp | fr).sum()
    tp = 0
    both = fp & fr
    pairs, inter = np.unique(np.stack([pred[both], ref[both]]), axis=1, return_counts=True)
    ap, ar = np.bincount(pred.ravel()), np.bincount(ref.ravel())
    for (p, r), n in zip(pairs.T, inter):
        tp += n / (ap[p] + ar[r] - n) > 0.5
    n_pred, n_ref = len(np.unique(pred)) - 1, ref.max()
    return {"binary_iou": iou, "f1": 2 * tp / (n_pred + n_ref)}


def _shared_data() -> Path:
    """Env SCOPEFLOW_SHARED_DATA, else <repo>/../shared/data (as in conftest.py)."""
    repo = Path(__file__).resolve().parents[1]
    return Path(os.environ.get("SCOPEFLOW_SHARED_DATA", repo.parent / "shared" / "data"))


@pytest.fixture(scope="module")
def dpc_1024():
    root = _shared_data() / "octopi_rbc_dpc_m2unet"
    if not root.is_dir():
        pytest.skip(f"shared data not found at {root} (set SCOPEFLOW_SHARED_DATA)")
    if not DEFAULT_WEIGHTS.is_file():
        pytest.skip(f"shipped weights not present: {DEFAULT_WEIGHTS}")
    import imageio.v3 as iio

    img = iio.imread(root / "images/dpc_1024_00.png").astype(np.float32) / 255
    ref = iio.imread(root / "masks/dpc_1024_00_mask.png")
    return img, ref


@pytest.fixture(scope="module")
def predictor():
    old = torch.get_num_threads()
    pred = UNetPredictor(device="cpu", threads=2)
    yield pred
    torch.set_num_threads(old)


def test_shipped_weights_reach_targets_on_dpc_1024(dpc_1024, predictor):
    img, ref = dpc_1024
    labels, seeds = predictor.segment(img)
    scores = _evaluate(labels, ref)
    assert scores["binary_iou"] >= 0.92, scores
    assert scores["f1"] >= 0.95, scores
    ids = np.unique(labels[labels > 0])
    assert np.array_equal(ids, np.unique(seeds[seeds > 0]))  # every instance has its seed


def test_chunked_segmentation_matches_whole_image(dpc_1024, predictor):
    chunked = pytest.importorskip("scopeflow.segment.chunked")
    img, ref = dpc_1024
    whole = np.asarray(chunked.segment_image(img, predictor, None, num_workers=1))
    labels = np.asarray(chunked.segment_image(img, predictor, 512, num_workers=1))
    # identical on this image; float32 rounding (~1e-6) could at most flip a pixel
    # whose probability sits on a decode threshold
    assert np.count_nonzero(labels != whole) <= 3
    assert abs(int(labels.max()) - int(whole.max())) <= 1
    scores = _evaluate(labels, ref)
    assert scores["binary_iou"] >= 0.92 and scores["f1"] >= 0.95, scores
