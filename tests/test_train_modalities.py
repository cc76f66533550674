"""Training on other set-ups: DPC relief along y, Cellpose/Omnipose mask names, label TIFFs."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from scopeflow.cli import build_parser
from scopeflow.segment.train import ORIENT, train
from scopeflow.segment.train_data import CropPool as _Pool
from scopeflow.segment.train_data import pair_images_masks, read_instances

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _ramp_pool(tmp_path):
    """A float image rising along y (×2) and along x (×1), with a dummy label image."""
    yy, xx = np.mgrid[:96, :96].astype(np.float32)
    img = 0.2 + (2 * yy + xx) / 400.0
    lab = np.zeros((96, 96), np.uint16)
    lab[10:20, 10:20], lab[40:60, 50:70] = 1, 2
    tifffile.imwrite(tmp_path / "ramp.tif", img)
    tifffile.imwrite(tmp_path / "ramp_mask.tif", lab)
    return _Pool(pair_images_masks(tmp_path / "ramp.tif", tmp_path / "ramp_mask.tif"))


@pytest.mark.parametrize("orient, kept, flipped", [("dpc_y", 0, 1), ("dpc_x", 1, 0)])
def test_dpc_orientations_keep_the_relief_axis(tmp_path, orient, kept, flipped):
    pool = _ramp_pool(tmp_path)
    rng = np.random.default_rng(0)
    signs = {0: set(), 1: set()}
    for _ in range(40):
        x, _ = pool.sample(rng, 32, augment=True, orient=orient)
        for axis in (0, 1):
            signs[axis].add(int(np.sign(np.gradient(x, axis=axis).mean())))
    assert signs[kept] == {1}  # the relief axis is never reversed
    assert signs[flipped] == {-1, 1}  # the other axis is flipped about half the time


def test_orient_dpc_y_in_api_and_cli(tmp_path):
    assert "dpc_y" in ORIENT
    a = build_parser("train").parse_args(["train", "--images", "i", "--masks", "m",
                                          "--out", "o.pt", "--orient", "dpc_y"])
    assert a.orient == "dpc_y"
    with pytest.raises(ValueError, match="orient"):
        train(tmp_path, tmp_path, tmp_path / "w.pt", orient="diagonal")


def test_cellpose_mask_names_and_label_tiffs(tmp_path):
    """``x.tif`` pairs with ``x_cp_masks.tif``; a uint8 label TIFF keeps its ids."""
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    rng = np.random.default_rng(1)
    lab = np.zeros((64, 64), np.uint8)
    lab[5:20, 5:15], lab[5:20, 15:25], lab[30:50, 30:40] = 1, 2, 7  # 1 and 2 touch
    for name in ("caulo", "ecoli"):
        img = (rng.uniform(0, 1, (64, 64)) * 65535).astype(np.uint16)
        tifffile.imwrite(tmp_path / "images" / f"{name}.tif", img)
        tifffile.imwrite(tmp_path / "masks" / f"{name}_cp_masks.tif", lab)
    pairs = pair_images_masks(tmp_path / "images", tmp_path / "masks")
    assert [(i.name, m.name) for i, m in pairs] == [
        ("caulo.tif", "caulo_cp_masks.tif"), ("ecoli.tif", "ecoli_cp_masks.tif")]
    inst = read_instances(pairs[0][1])
    assert sorted(np.unique(inst)) == [0, 1, 2, 7]  # touching instances stay apart
    res = train(tmp_path / "images", tmp_path / "masks", tmp_path / "w.pt", val_fraction=0,
                steps=2, crop=32, batch_size=2, warmup=1, val_every=2, progress=False,
                orient="dpc_y")
    assert res["steps"] == 2 and np.isfinite(res["history"][-1]["loss"])
