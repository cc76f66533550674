"""M2U-Net architecture, weights loading (sha256 check) and the U-Net predictor protocol."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from scopeflow.models.m2unet import M2UNet, count_parameters
from scopeflow.models.m2unet_files import DEFAULT_WEIGHTS, load_weights
from scopeflow.models.weights import WeightsError, write_card_sha256
from scopeflow.provenance import file_sha256
from scopeflow.segment.base import Predictor
from scopeflow.segment.decode import decode_maps
from scopeflow.segment.unet import UNetPredictor, _probabilities, _splits, _windows


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def test_parameter_count_matches_reference():
    assert count_parameters(M2UNet(1, 1)) == 549_284
    assert count_parameters(M2UNet(3, 1)) == 549_870
    net = M2UNet(1, 1)
    assert sum(p.numel() for p in net.encoder.parameters()) == 541_952
    assert sum(p.numel() for p in net.head.parameters()) == 17
    # 3-class head: 16*3 weights + 3 biases instead of 16 + 1
    assert count_parameters(M2UNet(1, 3)) == 549_284 + 34


def test_only_the_head_has_a_bias_and_decoder_is_contractive():
    net = M2UNet(1, 3)
    convs = [(n, m) for n, m in net.named_modules() if isinstance(m, torch.nn.Conv2d)]
    biased = [n for n, m in convs if m.bias is not None]
    assert biased == ["head"]
    # decoder hidden widths = round(0.15 * in): 19, 13, 9, 5
    hidden = [blk.ir.conv[0].out_channels for blk in (net.dec4, net.dec3, net.dec2, net.dec1)]
    assert hidden == [19, 13, 9, 5]


@pytest.mark.parametrize("shape", [(1, 1), (5, 7), (17, 33), (64, 64), (100, 70)])
@pytest.mark.parametrize("c_out", [1, 3])
def test_any_size_round_trip(shape, c_out):
    net = M2UNet(1, c_out).eval()
    with torch.inference_mode():
        y = net(torch.randn(2, 1, *shape))
    assert y.shape == (2, c_out, *shape)
    assert torch.isfinite(y).all()


def test_padding_keeps_the_stride_grid():
    """Cropping an input at the bottom/right does not change outputs far from the cut."""
    torch.manual_seed(0)
    net = M2UNet(1, 3).eval()
    x = torch.randn(1, 1, 160, 160)
    with torch.inference_mode():
        full = net(x)
        part = net(x[..., :150, :150])  # padded to 160 internally
    assert part.shape[-2:] == (150, 150)
    assert torch.allclose(full[..., :16, :16], part[..., :16, :16], atol=1e-3)


@pytest.mark.parametrize("shape", [(40, 37), (1, 20), (20, 1), (32, 30), (5, 5), (17, 33), (48, 64)])
def test_padding_in_place_equals_numpy_pad(shape):
    """The margins filled in place (fill_stride_pad) are numpy.pad's, reflect or edge."""
    from scopeflow.models.m2unet_files import STRIDE, fill_stride_pad, pad_to_stride, stride_padded_empty

    a = np.random.default_rng(0).random(shape).astype(np.float32)
    h, w = shape
    ph, pw = (-h) % STRIDE, (-w) % STRIDE
    want = np.pad(a, ((0, ph), (0, pw)), mode="reflect" if (ph < h and pw < w) else "edge")
    out = stride_padded_empty(h, w)
    out[:h, :w] = a
    assert np.array_equal(fill_stride_pad(out, h, w), want)
    assert np.array_equal(pad_to_stride(a), want)


def _tiny_weights(tmp_path, c_out=3):
    torch.manual_seed(1)
    net = M2UNet(1, c_out)
    path = tmp_path / "tiny.pt"
    meta = {"head": "3class", "out_channels": c_out, "in_channels": 1,
            "normalization": "zscore_fov"}
    torch.save({"state_dict": net.state_dict(), "meta": meta}, path)
    (tmp_path / "tiny.md").write_text(f"# tiny\n\nsha256: {file_sha256(path)}\n")
    return path


def test_weights_load_with_sha256_check(tmp_path):
    path = _tiny_weights(tmp_path)
    loaded = load_weights(path)
    assert loaded["meta"]["out_channels"] == 3
    pred = UNetPredictor(path, device="cpu")
    assert isinstance(pred, Predictor)
    assert pred.context % 16 == 0 and pred.object_size > 0


def test_corrupted_weights_fail_with_one_line_error(tmp_path):
    path = _tiny_weights(tmp_path)
    bad_dir = tmp_path / "bad"
    bad_dir.mkdir()
    bad = bad_dir / "tiny.pt"
    shutil.copy(path, bad)
    shutil.copy(path.with_suffix(".md"), bad.with_suffix(".md"))
    data = bytearray(bad.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad.write_bytes(bytes(data))
    with pytest.raises(WeightsError) as err:
        UNetPredictor(bad, device="cpu")
    msg = str(err.value)
    assert "\n" not in msg and str(bad) in msg and "sha256" in msg


def test_missing_card_is_an_error(tmp_path):
    path = _tiny_weights(tmp_path)
    path.with_suffix(".md").unlink()
    with pytest.raises(WeightsError, match="model card"):
        load_weights(path)
    assert load_weights(path, verify=False)["meta"]["out_channels"] == 3


def test_shipped_weights_match_their_card():
    if not DEFAULT_WEIGHTS.is_file():
        pytest.skip(f"shipped weights not present: {DEFAULT_WEIGHTS}")
    loaded = load_weights(DEFAULT_WEIGHTS)
    assert loaded["meta"]["normalization"] == "zscore_fov"
    assert loaded["meta"]["out_channels"] in (1, 3)


def test_predict_and_decode_follow_the_protocol(tmp_path):
    pred = UNetPredictor(_tiny_weights(tmp_path), device="cpu")
    img = np.random.default_rng(0).random((80, 96), dtype=np.float32)
    with pytest.raises(RuntimeError):
        pred.predict(img)
    pred.prepare(img)
    maps = pred.predict(img[:50, :70])
    assert maps.shape == (3, 50, 70) and maps.dtype == np.float32
    assert np.allclose(maps.sum(0), 1, atol=1e-5)
    labels, seeds = pred.decode(maps)
    assert labels.dtype == np.int32 and seeds.dtype == np.int32


def test_decode_separates_touching_cells_and_seeds_lie_inside():
    # two touching discs: body cores apart, contour rings in between
    yy, xx = np.mgrid[:60, :90]
    maps = np.zeros((3, 60, 90), np.float32)
    maps[0] = 1
    for cx in (30, 54):
        d = np.hypot(yy - 30, xx - cx)
        maps[:, d <= 12] = np.array([0, 0, 1], np.float32)[:, None]
        maps[:, d <= 10] = np.array([0, 1, 0], np.float32)[:, None]
    labels, seeds = decode_maps(maps, max_extent=96)
    assert labels.max() == 2 and len(np.unique(labels)) == 3
    for i in (1, 2):
        assert np.all(labels[seeds == i] == i) and (seeds == i).any()
    # 1-class analogue: the eroded foreground splits a narrow neck
    fg = (maps[1] + maps[2])[None]
    lab1, seeds1 = decode_maps(fg, erode=3, max_extent=96)
    assert lab1.max() >= 1 and np.all(lab1[seeds1 > 0] == seeds1[seeds1 > 0])


def test_subtiled_predict_matches_whole_pass(tmp_path, shared):
    """Splitting a tile into halo'd sub-tiles (context px) leaves the maps unchanged."""
    import imageio.v3 as iio

    weights = DEFAULT_WEIGHTS if DEFAULT_WEIGHTS.is_file() else _tiny_weights(tmp_path)
    path = shared / "octopi_rbc_dpc_m2unet/images/dpc_1024_00.png"
    img = iio.imread(path).astype(np.float32) / 255
    img = img[:640, :608]
    whole = UNetPredictor(weights, device="cpu", tile=1024)
    split = UNetPredictor(weights, device="cpu", tile=256, batch_size=4)  # 3 x 3 sub-tiles
    whole.prepare(img)
    split.prepare(img)
    a, b = whole.predict(img), split.predict(img)
    assert np.abs(a - b).max() < 1e-5  # only float32 rounding differs beyond the context
    la, lb = whole.decode(a)[0], split.decode(b)[0]
    # a pixel whose probability sits within rounding of a threshold may flip
    assert np.count_nonzero(la != lb) <= 3
    assert abs(int(la.max()) - int(lb.max())) <= 1


@pytest.mark.parametrize("shape", [(3000, 3000), (4096, 4096), (2448, 3264), (6000, 2000), (12000, 12000),
                                   (2400, 2400), (700, 9000)])
def test_forward_windows_cover_the_image_within_the_memory_bound(shape):
    h, w = shape
    core, halo = 2048, 176
    windows = _windows(h, w, core, halo)
    cover = np.zeros(shape, np.uint8)
    for (y0, y1, cy0, cy1), (x0, x1, cx0, cx1) in windows:
        cover[cy0:cy1, cx0:cx1] += 1
        # a window is its core plus the halo, clipped to the image, and never larger than the
        # square grid's largest window
        assert (y0, y1, x0, x1) == (max(0, cy0 - halo), min(h, cy1 + halo), max(0, cx0 - halo), min(w, cx1 + halo))
        assert (y1 - y0) * (x1 - x0) <= (core + 2 * halo) ** 2
    assert (cover == 1).all()  # the cores tile the image: every pixel predicted once
    # never more pixels through the network than the square grid of cores
    square = sum((y1 - y0) * (x1 - x0) for y0, y1, *_ in _splits(h, core, halo) for x0, x1, *_ in _splits(w, core, halo))
    assert sum((y1 - y0) * (x1 - x0) for (y0, y1, *_), (x0, x1, *_) in windows) <= square


def test_a_3000_px_field_is_two_full_width_bands():
    # 2 windows of ~1680 x 3000 (10.1 Mpx), not 4 of 1680² (11.2 Mpx); 4096² keeps the square grid
    windows = _windows(3000, 3000, 2048, 176)
    assert [(ys[1] - ys[0], xs[1] - xs[0]) for ys, xs in windows] == [(1680, 3000), (1672, 3000)]
    assert len(_windows(4096, 4096, 2048, 176)) == 4
    assert all(xs[1] - xs[0] == 2224 for _, xs in _windows(4096, 4096, 2048, 176))


def test_probabilities_are_softmax_and_sigmoid():
    rng = np.random.default_rng(2)
    logits = (rng.normal(size=(3, 40, 50)) * 8).astype(np.float32)
    out = np.empty((3, 60, 70), np.float32)[:, 5:45, 10:60]  # a strided view, as in predict
    _probabilities(logits, out)
    e = np.exp(logits.astype(np.float64) - logits.max(axis=0))
    assert np.abs(out - e / e.sum(axis=0)).max() < 1e-6
    one = np.empty((1, 40, 50), np.float32)
    _probabilities(logits[:1], one)
    assert np.abs(one[0] - 1 / (1 + np.exp(-logits[0].astype(np.float64)))).max() < 1e-6


def test_write_card_sha256_replaces_only_that_line(tmp_path):
    weights = tmp_path / "w.pt"
    card = tmp_path / "w.md"
    card.write_text("# w\n\ntext\n\nsha256: " + "0" * 64 + "\n\nmore\n", encoding="utf-8")
    write_card_sha256(weights, "a" * 64, "unused")
    assert card.read_text(encoding="utf-8") == "# w\n\ntext\n\nsha256: " + "a" * 64 + "\n\nmore\n"
    card.unlink()
    write_card_sha256(weights, "b" * 64, "A new card.")
    assert card.read_text(encoding="utf-8") == "# w\n\nA new card.\n\nsha256: " + "b" * 64 + "\n"
