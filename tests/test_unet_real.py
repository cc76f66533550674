"""Shipped M2U-Net weights on the held-out Octopi DPC image dpc_1024_00 (never trained on)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from scopeflow.models.m2unet_files import DEFAULT_WEIGHTS
from scopeflow.segment.unet import UNetPredictor

from scopeflow.evaluate import evaluate as _evaluate


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
    from scopeflow.segment import chunked

    img, ref = dpc_1024
    whole = np.asarray(chunked.segment_image(img, predictor, None, num_workers=1))
    labels = np.asarray(chunked.segment_image(img, predictor, 512, num_workers=1))
    # identical on this image; float32 rounding (~1e-6) could at most flip a pixel
    # whose probability sits on a decode threshold
    assert np.count_nonzero(labels != whole) <= 3
    assert abs(int(labels.max()) - int(whole.max())) <= 1
    scores = _evaluate(labels, ref)
    assert scores["binary_iou"] >= 0.92 and scores["f1"] >= 0.95, scores


def _cli(*args):
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-m", "scopeflow.cli", *map(str, args)],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    return run.stdout


def test_cli_segment_and_evaluate_meet_targets_and_chunk_512_equals_2048(tmp_path):
    """Issue 4 must-show through the commands users run (default back end: ONNX Runtime)."""
    import json

    import tifffile

    root = _shared_data() / "octopi_rbc_dpc_m2unet"
    if not root.is_dir():
        pytest.skip(f"shared data not found at {root}")
    _cli("segment", root / "images/dpc_1024_00.png", "-o", tmp_path / "val.tif", "--threads", 1)
    scores = json.loads(_cli("evaluate", tmp_path / "val.tif", root / "masks/dpc_1024_00_mask.png", "--json"))
    assert scores["binary_iou"] >= 0.92 and scores["f1"] >= 0.95, scores
    for chunk in (512, 2048):
        _cli("segment", root / "images/dpc_2048_00.png", "-o", tmp_path / f"c{chunk}.tif",
             "--chunk", chunk, "--threads", 1)
    a, b = (tifffile.imread(tmp_path / f"c{c}.tif") for c in (512, 2048))
    assert a.max() > 4000
    assert np.array_equal(a, b)  # identical, ids included (not only up to relabelling)
