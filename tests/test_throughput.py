"""The issue-20 speed work keeps the numbers: each fast path against its straightforward reference."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.fft as sfft
from scipy import ndimage as ndi

from scopeflow import smear as pipeline
from scopeflow.smear import cell_kernels, stage_common
from scopeflow.smear import dpc as dpc_mod
from scopeflow.smear import flatfield as normalize
from scopeflow.smear.filters import laplace
from scopeflow.smear.qc import focus
from scopeflow.resources import MEMORY_BUDGET, fov_pixels, stage_mem_mb


def _phase_c2c_float64(dpc, ps, wl, na, reg=3e-3):
    """The phase solve as it was: complex128 full-spectrum FFTs and the complex transfer function."""
    d = np.nan_to_num(np.asarray(dpc, np.float64) - 0.5)
    d -= d.mean()
    ny, nx = d.shape
    pad = max(16, max(ny, nx) // 4)
    py, px = min(pad, ny), min(pad, nx)
    fy, fx = sfft.next_fast_len(ny + 2 * py), sfft.next_fast_len(nx + 2 * px)
    dp = dpc_mod._odd_x_pad(d, (py, fy - ny - py), (px, fx - nx - px))
    h = dpc_mod.phase_transfer_function(dp.shape, ps, wl, na)
    phi = np.real(sfft.ifft2(np.conj(h) * sfft.fft2(dp) / (np.abs(h) ** 2 + reg)))[py:py + ny, px:px + nx]
    return phi - phi.mean()


@pytest.mark.parametrize("shape", [(33, 64), (300, 517), (256, 256), (97, 31)])
def test_real_fft_phase_solve_equals_the_complex_one(shape):
    rng = np.random.default_rng(sum(shape))
    dpc = np.clip(0.5 + ndi.gaussian_filter(rng.normal(0, 0.2, shape), 1.5), 0, 1).astype(np.float32)
    want = _phase_c2c_float64(dpc, 0.333, 0.525, 0.4)
    got = dpc_mod.phase_from_dpc(dpc, 0.333, 0.525, 0.4, workers=2)
    assert got.dtype == np.float32 and got.shape == shape
    assert np.abs(got - want).max() <= 2e-6 * max(1.0, np.abs(want).max())


def test_phase_filter_is_cached_and_read_only():
    a = dpc_mod.phase_filter((128, 96), 0.333, 0.525, 0.4, None, 3e-3)
    b = dpc_mod.phase_filter((128, 96), 0.333, 0.525, 0.4, None, 3e-3)
    assert a is b and a.dtype == np.float32 and a.shape == (128, 49) and not a.flags.writeable
    # w = a/(a² + reg) of the sampled transfer function H = i a; the Nyquist column is sampled
    # at +f_nyq (rfftfreq), the full spectrum's at −f_nyq (fftfreq): a is odd, so it flips sign
    h = dpc_mod.phase_transfer_function((128, 96), 0.333, 0.525, 0.4)[:, :49]
    odd = h.imag.astype(np.float64)
    want = odd / (odd * odd + 3e-3)
    want[:, 48] *= -1
    np.testing.assert_allclose(a, want, rtol=1e-5, atol=1e-5)


def test_dpc_octopi_in_place_keeps_inputs_and_values():
    rng = np.random.default_rng(0)
    left = rng.random((40, 50), dtype=np.float32)
    right = rng.random((40, 50), dtype=np.float32)
    right[0, 0] = left[0, 0] = 0.0  # 0/0 -> 0
    ff_l = (0.8 + 0.4 * rng.random((40, 50))).astype(np.float32)
    ff_r = (0.8 + 0.4 * rng.random((40, 50))).astype(np.float32)
    keep = left.copy(), right.copy()
    got = dpc_mod.dpc_octopi(left, right, ff_l, ff_r)
    L, R = left / ff_l, right / ff_r
    with np.errstate(divide="ignore", invalid="ignore"):
        want = np.float32(0.5) + (L - R) / (L + R)
    want = np.clip(want, 0, 1)
    want[np.isnan(want)] = 0
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(left, keep[0])
    np.testing.assert_array_equal(right, keep[1])
    u8 = (left * 255).astype(np.uint8), (right * 255).astype(np.uint8)
    np.testing.assert_array_equal(dpc_mod.dpc_octopi(*u8), dpc_mod.dpc_octopi(u8[0] / np.float32(255), u8[1] / np.float32(255)))


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (5, 1), (64, 33), (257, 300)])
def test_compiled_laplace_equals_scipy(shape):
    img = np.random.default_rng(1).random(shape, dtype=np.float32)
    np.testing.assert_array_equal(laplace(img), ndi.laplace(img))
    np.testing.assert_array_equal(laplace(img.astype(np.float64)), ndi.laplace(img))


def test_intensity_sums_equal_separate_label_sums():
    rng = np.random.default_rng(2)
    labels = ndi.label(ndi.gaussian_filter(rng.random((120, 90)), 2) > 0.5)[0].astype(np.uint32)
    dpc = rng.random((120, 90), dtype=np.float32)
    dpc[::7, ::5] = 1.0  # saturated pixels
    phase = rng.normal(size=(120, 90)).astype(np.float32)
    lap = laplace(dpc)
    groups = cell_kernels.group_labels(labels)
    got = cell_kernels.intensity_sums(groups, dpc, lap, phase)
    idx = groups.present
    for k, values in enumerate((np.abs(dpc - 0.5), lap, lap * lap,
                                ((dpc <= 0) | (dpc >= 1)).astype(np.float64), phase)):
        np.testing.assert_array_equal(got[:, k], cell_kernels.label_sum(values, groups, idx))
    assert (cell_kernels.intensity_sums(groups, dpc, lap, None)[:, 4] == 0).all()


def test_coarse_flatfield_expands_to_the_full_estimate():
    rng = np.random.default_rng(3)
    shape = (300, 410)
    ramp = np.linspace(0.5, 1.0, shape[1], dtype=np.float32)
    imgs = [(ramp * (0.9 + 0.1 * rng.random(shape))).astype(np.float32) for _ in range(3)]
    f = normalize.flatfield_bin_factor(shape)
    coarse = normalize.coarse_flatfield([normalize.bin_image(a, f) for a in imgs], shape, f)
    full = normalize.expand_flatfield(coarse, shape, f, rows=37)  # blocks do not change values
    np.testing.assert_array_equal(full, normalize.expand_flatfield(coarse, shape, f))
    # the one-shot estimate: the whole float64 upsampling at once
    yy = (np.arange(shape[0]) - (f - 1) / 2.0) / f
    xx = (np.arange(shape[1]) - (f - 1) / 2.0) / f
    cy, cx = np.meshgrid(yy, xx, indexing="ij")
    up = ndi.map_coordinates(coarse, [cy, cx], order=1, mode="nearest")
    want = np.maximum(up / up.mean(), 1e-3).astype(np.float32)
    np.testing.assert_allclose(full, want, rtol=1e-6)
    np.testing.assert_array_equal(normalize.estimate_flatfield(imgs), full)


@pytest.mark.parametrize("cache_pixels", [0, 100 * 130])
def test_load_flatfields_reads_coarse_and_full_files(tmp_path, monkeypatch, cache_pixels):
    from scopeflow.smear import stage_dpc

    monkeypatch.setattr(stage_dpc, "FLATFIELD_CACHE_PIXELS", cache_pixels)
    coarse = np.linspace(0.9, 1.1, 12 * 16).reshape(12, 16)
    np.savez(tmp_path / "c.npz", left_coarse=coarse, right_coarse=coarse[::-1],
             shape=np.asarray((100, 130)), bin_factor=np.asarray(8))
    ff = pipeline.load_flatfields(tmp_path / "c.npz")
    # expanded once when the FOV is small enough, else by rows when asked for: the same values
    assert isinstance(ff["left"], np.ndarray if cache_pixels else normalize.FlatfieldRows)
    assert ff["left"].shape == (100, 130) and abs(float(ff["left"][:].mean()) - 1) < 1e-5
    np.testing.assert_array_equal(ff["right"][:], normalize.expand_flatfield(coarse[::-1], (100, 130), 8))
    np.testing.assert_array_equal(ff["right"][37:61], normalize.expand_flatfield(coarse[::-1], (100, 130), 8)[37:61])
    np.savez(tmp_path / "f.npz", left=ff["left"][:], right=ff["right"][:])  # full resolution, as before
    np.testing.assert_array_equal(pipeline.load_flatfields(tmp_path / "f.npz")["left"], ff["left"][:])
    np.savez(tmp_path / "e.npz")
    assert pipeline.load_flatfields(tmp_path / "e.npz") == {}


def test_prefetch_keeps_order_and_raises_at_the_failing_item():
    seen = []

    def fn(x):
        if x == 3:
            raise ValueError("bad 3")
        return x * 10

    with pytest.raises(ValueError, match="bad 3"):
        for v in stage_common.prefetch(fn, range(6)):
            seen.append(v)
    assert seen == [0, 10, 20]
    assert list(stage_common.prefetch(fn, [5, 4], ahead=lambda r: r < 45)) == [50, 40]
    assert list(stage_common.prefetch(fn, [])) == []


def test_fov_table_is_read_without_pandas_with_the_same_values(tmp_path):
    df = pd.DataFrame({"fov": ["001", "0-1_2_0"], "t": [0, 0], "i": [np.nan, 1.0], "x_mm": [0.5, np.nan],
                       "left": ["a.bmp", "b.bmp"], "height": [10, 20], "pixel_size_um": [0.333, 0.333]})
    df.to_csv(tmp_path / "fovs.tsv", sep="\t", index=False)
    rows = pipeline.read_fov_table(tmp_path / "fovs.tsv")
    assert [r["fov"] for r in rows] == ["001", "0-1_2_0"]  # names stay text
    assert rows[0]["t"] == 0 and np.isnan(rows[0]["i"]) and rows[1]["i"] == 1
    assert rows[0]["x_mm"] == 0.5 and np.isnan(rows[1]["x_mm"]) and rows[1]["height"] == 20
    assert pipeline.shard_fovs(tmp_path / "fovs.tsv", 1, 1) == ["0-1_2_0"]


@pytest.mark.parametrize(("shape", "tile"), [((40, 50), 1), ((300, 517), 32), ((128, 128), 128),
                                             ((12, 200), 6), ((5, 9), 2), ((4, 30), 3)])
def test_gaussian_laplace_tile_sums_equal_scipy(shape, tile):
    from scopeflow.smear.filters import gaussian_laplace_tile_sums

    img = np.random.default_rng(sum(shape)).random(shape, dtype=np.float32)
    lap = ndi.gaussian_laplace(img, 1.0)
    ny, nx = shape[0] // tile, shape[1] // tile
    blocks = lap[: ny * tile, : nx * tile].reshape(ny, tile, nx, tile)
    s1, s2 = gaussian_laplace_tile_sums(img, 1.0, tile)
    assert s1.shape == s2.shape == (ny, nx) and s1.dtype == s2.dtype == np.float64
    np.testing.assert_allclose(s1, blocks.sum(axis=(1, 3), dtype=np.float64), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(s2, (blocks * blocks).sum(axis=(1, 3), dtype=np.float64), rtol=1e-12)
    if tile == 1:  # one pixel per block: scipy's float32 values, bit for bit
        np.testing.assert_array_equal(s1, lap.astype(np.float64))


def test_gaussian_weights_are_scipys():
    from scipy.ndimage._filters import _gaussian_kernel1d

    from scopeflow.smear.filters import gaussian_weights

    for sigma in (0.5, 1.0, 1.3, 2.0, 3.7):
        radius = int(4 * sigma + 0.5)
        for order in (0, 2):
            np.testing.assert_array_equal(gaussian_weights(sigma, order, radius),
                                          _gaussian_kernel1d(sigma, order, radius))
    with pytest.raises(ValueError, match="order"):
        gaussian_weights(1.0, 1, 4)


def test_tiled_laplacian_focus_compiled_equals_scipy():
    rng = np.random.default_rng(5)
    img = np.clip(0.5 + ndi.gaussian_filter(rng.normal(0, 0.3, (300, 260)), 1.2), 0, 1).astype(np.float32)
    for tile in (128, 64, 7):
        want = focus.tiled_focus_metrics(img, tile, names=["laplacian_var"])
        got = focus.tiled_focus_metrics(img, tile, names=["laplacian_var"], compiled=True)
        assert got.keys() == want.keys() and np.isnan(got["focus_brenner"])
        assert got["focus_laplacian_var"] == pytest.approx(want["focus_laplacian_var"], rel=1e-12)
    flat = np.full((50, 50), 0.5, np.float32)
    assert focus.tiled_focus_metrics(flat, names=["laplacian_var"], compiled=True)["focus_laplacian_var"] == 0.0


@pytest.mark.parametrize("n", [*range(0, 140), 255, 256, 257, 1000, 8191, 8193, 100003])
def test_pairwise_float32_sums_are_numpys(n):
    from scopeflow.smear import pairwise

    if not pairwise.HAVE_NUMBA:
        pytest.skip("numba not installed")
    v = np.random.default_rng(n).random(n, dtype=np.float32)
    assert np.float32(pairwise.pairwise_f32(v, n, np.float32(0), False)) == np.add.reduce(v, 0)
    m = np.float32(0.3)
    d = v - m
    assert np.float32(pairwise.pairwise_f32(v, n, m, True)) == np.add.reduce(d * d, 0)


@pytest.mark.parametrize("shape", [(1, 1), (7, 3), (300, 517), (1500, 1400)])
def test_var_f32_is_numpys(shape):
    from scopeflow.smear.pairwise import var_f32

    img = np.random.default_rng(sum(shape)).normal(0.5, 0.1, shape).astype(np.float32)
    assert var_f32(img) == float(np.var(img))
    assert var_f32(img.astype(np.float64)) == float(np.var(img.astype(np.float64)))
    assert np.isnan(var_f32(np.zeros((0, 3), np.float32)))


def test_intensity_sums_mean_and_std_are_numpys_float32_ones():
    rng = np.random.default_rng(3)
    labels = ndi.label(ndi.gaussian_filter(rng.random((150, 140)), 2) > 0.45)[0].astype(np.uint32)
    labels[:60, :70] = 7  # one cell of 4200 pixels (pairwise blocks split)
    dpc = rng.random(labels.shape, dtype=np.float32)
    groups = cell_kernels.group_labels(labels)
    got = cell_kernels.intensity_sums(groups, dpc, laplace(dpc), None)
    assert got.shape == (groups.present.size, 7)
    for k, lv in enumerate(groups.present):
        v = dpc[labels == lv]  # raster order
        assert got[k, 5] == np.mean(v) and got[k, 6] == np.std(v), lv


def test_focus_metrics_subset_and_float32_values():
    rng = np.random.default_rng(4)
    img = np.clip(0.5 + ndi.gaussian_filter(rng.normal(0, 0.3, (300, 260)), 1.2), 0, 1).astype(np.float32)
    every = focus.focus_metrics(img)
    only = focus.focus_metrics(img, names=["laplacian_var"])
    assert only["focus_laplacian_var"] == every["focus_laplacian_var"]
    assert all(np.isnan(v) for k, v in only.items() if k != "focus_laplacian_var")
    # float64 tile scores, as the FOV table had them
    img64 = img.astype(np.float64)
    lap = ndi.gaussian_laplace(img64, 1.0)
    t = 128
    scores = np.maximum(focus._tile_means(lap * lap, t) - focus._tile_means(lap, t) ** 2, 0)
    assert every["focus_laplacian_var"] == pytest.approx(float(np.percentile(scores, 90)), rel=1e-5)
    with pytest.raises(ValueError, match="unknown focus metric"):
        focus.focus_metrics(img, names=["sharpness"])


def test_csv_mirror_reads_back_like_pandas_csv(tmp_path):
    from scopeflow.io import tables

    df = pd.DataFrame({"sample": pd.Series(["s", "a,b", None], dtype="string"), "flag": [True, False, True],
                       "n": pd.array([1, None, 3], dtype="Int64"), "v": [0.1, np.nan, 1e-12]})
    tables.write_table(df, tmp_path / "t.parquet", {"k": 1})
    back = pd.read_csv(tmp_path / "t.csv")
    want = pd.read_csv(__import__("io").StringIO(df.to_csv(index=False)))
    for col in df.columns:
        assert back[col].equals(want[col]), col
    assert tables.read_provenance(tmp_path / "t.parquet") == {"k": 1}


def test_mem_mb_follows_the_fov_size(tmp_path):
    for stage, (base, per_px) in MEMORY_BUDGET.items():
        assert stage_mem_mb(stage, 0) == base
        assert stage_mem_mb(stage, 12000**2) >= base + per_px * 12000**2 / 2**20
    pd.DataFrame({"fov": ["a", "b"], "height": [100, 300], "width": [200, 400]}).to_csv(
        tmp_path / "fovs.tsv", sep="\t", index=False)
    assert fov_pixels(tmp_path / "fovs.tsv") == 120000
    import imageio.v3 as iio

    (tmp_path / "acq").mkdir()
    iio.imwrite(tmp_path / "acq" / "x.bmp", np.zeros((30, 50), np.uint8))
    assert fov_pixels(tmp_path / "acq") == 1500
    assert fov_pixels(tmp_path / "nothing") == 3000 * 3000


def test_warm_up_in_processes_reports_every_kind():
    from scopeflow.warmup import warm_up

    if not cell_kernels.HAVE_NUMBA:
        pytest.skip("numba not installed")
    out = warm_up(("smear", "beads"), processes=2)  # one child process per kind
    assert set(out) == {"smear", "beads"} and min(out.values()) >= 0
    with pytest.raises(ValueError, match="unknown warm-up kind"):
        warm_up(("smear", "cells"))


def test_warm_up_runs_the_smear_kernels():
    from scopeflow.warmup import warm_up

    out = warm_up(("smear",))
    assert set(out) <= {"smear"}
    if cell_kernels.HAVE_NUMBA:
        assert out["smear"] >= 0
