"""Training loop: loss goes down, resume continues, pairing and targets."""

from __future__ import annotations

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from scopeflow.errors import ScopeflowError
from scopeflow.models.m2unet_files import load_weights
from scopeflow.cli import main as cli_main
from scopeflow.segment.train import train
from scopeflow.segment.train_data import make_target, pair_images_masks
from scopeflow.segment.unet import UNetPredictor


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _synthetic(folder, name="cells", size=128, seed=0):
    """A DPC-like image of discs (relief = x-gradient of a dome) and its 0/255 mask."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    phase = np.zeros((size, size), np.float32)
    labels = np.zeros((size, size), np.int32)
    k = 0
    for cy in range(12, size - 8, 26):
        for cx in range(12, size - 8, 26):
            k += 1
            y0, x0 = cy + rng.uniform(-2, 2), cx + rng.uniform(-2, 2)
            r2 = (yy - y0) ** 2 + (xx - x0) ** 2
            inside = r2 < 11**2
            phase += np.where(inside, np.sqrt(np.clip(121 - r2, 0, None)), 0)
            labels[inside] = k
    dpc = 0.5 + 0.03 * np.gradient(phase, axis=1) + rng.normal(0, 0.01, phase.shape)
    img = (np.clip(dpc, 0, 1) * 255).astype(np.uint8)
    from skimage.segmentation import find_boundaries

    mask = ((labels > 0) & ~find_boundaries(labels, mode="inner", connectivity=1)) * 255
    (folder / "images").mkdir(exist_ok=True)
    (folder / "masks").mkdir(exist_ok=True)
    iio.imwrite(folder / "images" / f"{name}_dpc.png", img)
    iio.imwrite(folder / "masks" / f"{name}_mask.png", mask.astype(np.uint8))
    return folder / "images", folder / "masks"


def test_few_steps_lower_the_loss(tmp_path):
    imgs, masks = _synthetic(tmp_path)
    res = train(imgs, masks, tmp_path / "w.pt", val_fraction=0, steps=30, crop=64, batch_size=4,
                lr=1e-2, warmup=3, val_every=10, augment=False, progress=False, seed=0)
    losses = [h["loss"] for h in res["history"]]
    assert [h["step"] for h in res["history"]] == [10, 20, 30]
    assert losses[-1] < 0.8 * losses[0]
    meta = load_weights(tmp_path / "w.pt")["meta"]  # card with sha256 written beside it
    assert meta["head"] == "3class" and meta["normalization"] == "zscore_fov"


def test_resume_continues_from_checkpoint_step(tmp_path):
    imgs, masks = _synthetic(tmp_path)
    kw = dict(val_fraction=0, crop=64, batch_size=2, lr=5e-3, warmup=2, val_every=4,
              progress=False, seed=3, head="1class")
    train(imgs, masks, tmp_path / "full.pt", steps=8, **kw)
    first = train(imgs, masks, tmp_path / "part.pt", steps=8, stop_after=4, **kw)
    assert first["steps"] == 4
    ck = torch.load(tmp_path / "part.ckpt", weights_only=True)
    assert ck["step"] == 4
    res = train(imgs, masks, tmp_path / "part.pt", steps=8, resume=tmp_path / "part.ckpt", **kw)
    assert res["steps"] == 8
    assert [h["step"] for h in res["history"]] == [4, 8]
    # same RNG streams and optimizer state: the resumed run equals the uninterrupted one
    a = torch.load(tmp_path / "full.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "part.pt", weights_only=True)["state_dict"]
    for k in a:
        assert torch.allclose(a[k].float(), b[k].float(), atol=1e-5), k


def test_trained_weights_plug_into_the_predictor_and_cli(tmp_path):
    imgs, masks = _synthetic(tmp_path)
    _synthetic(tmp_path, name="val", seed=1)
    out = tmp_path / "cli.pt"
    rc = cli_main(["train", "--images", str(imgs / "cells_dpc.png"), "--masks", str(masks),
                     "--val-images", str(imgs / "val_dpc.png"), "--val-masks", str(masks),
                     "--out", str(out), "--steps", "4", "--crop", "64", "--batch-size", "2",
                     "--val-every", "2", "--no-progress", "--freeze", "encoder"])
    assert rc == 0
    ck = torch.load(out.with_suffix(".ckpt"), weights_only=True)
    assert ck["step"] == 4 and len(ck["val"]) == 2 and "f1" in ck["best_row"]
    assert "scopeflow train --images" in load_weights(out)["meta"]["train"]["command"]
    pred = UNetPredictor(out, device="cpu")
    img = iio.imread(imgs / "val_dpc.png").astype(np.float32) / 255
    labels, seeds = pred.segment(img)
    assert labels.shape == img.shape
    # fine-tuning from these weights with a frozen encoder keeps the encoder unchanged
    ft = tmp_path / "ft.pt"
    train(imgs, masks, ft, val_fraction=0, steps=2, crop=64, batch_size=2, progress=False,
          init_weights=out, freeze="encoder")
    a, b = (load_weights(p)["state_dict"] for p in (out, ft))
    assert torch.equal(a["encoder.5.conv.0.weight"], b["encoder.5.conv.0.weight"])
    assert not torch.equal(a["head.weight"], b["head.weight"])


def test_pairing_by_stem(tmp_path):
    for name in ("10_20_0_dpc.png", "dpc_2048_00.png"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "m").mkdir()
    for name in ("10_20_0_mask.png", "dpc_2048_00_mask.png", "extra_mask.png"):
        (tmp_path / "m" / name).write_bytes(b"")
    images = [tmp_path / "10_20_0_dpc.png", tmp_path / "dpc_2048_00.png"]
    pairs = pair_images_masks(images, tmp_path / "m")
    assert [(a.name, b.name) for a, b in pairs] == [
        ("10_20_0_dpc.png", "10_20_0_mask.png"), ("dpc_2048_00.png", "dpc_2048_00_mask.png")]
    (tmp_path / "lonely.png").write_bytes(b"")
    with pytest.raises(ScopeflowError, match="lonely"):
        pair_images_masks(tmp_path / "lonely.png", tmp_path / "m")


def test_three_class_target_rings():
    labels = np.zeros((12, 20), np.int32)
    labels[2:10, 2:9] = 1
    labels[2:10, 10:18] = 2  # separated by a 1-px background line
    t = make_target(labels, "3class", contour_width=1)
    assert set(np.unique(t)) == {0, 1, 2}
    assert t[5, 9] == 0 and t[5, 8] == 2 and t[5, 10] == 2 and t[5, 5] == 1
    assert (make_target(labels, "3class", contour_width=2) == 2).sum() > (t == 2).sum()
    assert make_target(labels, "1class").dtype == np.float32
