"""The dpc and ingest jobs work on blocks of rows (bounded memory) with the values of the whole-image
computations: each block-wise path against its one-shot reference."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.fft as sfft
from scipy import ndimage as ndi

from scopeflow.smear import dpc as dpc_mod
from scopeflow.smear import flatfield


def _phase_one_shot(dpc, ps, wl, na, reg=3e-3):
    """The float32 solve on the whole padded image: one rfft2, the cached filter, one irfft2."""
    d = np.nan_to_num(dpc - np.float32(0.5), nan=0.0)
    d -= np.float32(d.mean(dtype=np.float64))
    ny, nx = d.shape
    pad = max(16, max(ny, nx) // 4)
    py, px = min(pad, ny), min(pad, nx)
    fy, fx = sfft.next_fast_len(ny + 2 * py), sfft.next_fast_len(nx + 2 * px)
    dp = dpc_mod._odd_x_pad(d, (py, fy - ny - py), (px, fx - nx - px))
    w = dpc_mod.phase_filter((fy, fx), ps, wl, na, None, reg)
    phi = sfft.irfft2(sfft.rfft2(dp) * (-1j * w), s=(fy, fx))[py:py + ny, px:px + nx]
    return phi - phi.mean()


@pytest.mark.parametrize("shape", [(40, 70), (301, 517), (9, 5)])
def test_phase_from_dpc_in_blocks_equals_the_whole_padded_solve(shape):
    rng = np.random.default_rng(sum(shape))
    dpc = np.clip(0.5 + ndi.gaussian_filter(rng.normal(0, 0.2, shape), 1.5), 0, 1).astype(np.float32)
    dpc[0, 1] = np.nan  # NaN counts as no gradient
    want = _phase_one_shot(dpc, 0.333, 0.525, 0.4)
    got = dpc_mod.phase_from_dpc(dpc, 0.333, 0.525, 0.4, workers=2)
    assert got.dtype == np.float32 and got.shape == shape
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6 * max(1.0, np.abs(want).max()))
    assert np.isnan(dpc[0, 1])  # the caller's image is not changed


@pytest.mark.parametrize("py, px", [((3, 4), (0, 5)), ((12, 14), (9, 1)), ((25, 0), (2, 20))])
def test_odd_x_pad_mirrors_rows_and_flips_padded_columns(py, px):
    d = np.random.default_rng(5).random((11, 7), dtype=np.float32)
    got = dpc_mod._odd_x_pad(d, py, px)
    want = np.pad(d, (py, px), mode="symmetric")  # repeated mirroring when wider than the image
    want[:, : px[0]] *= -1
    want[:, want.shape[1] - px[1]:] *= -1
    np.testing.assert_array_equal(got, want)


def test_dpc_in_row_blocks_with_lazy_flatfields_equals_full_arrays():
    rng = np.random.default_rng(6)
    shape = (203, 150)
    left = rng.integers(0, 256, shape, dtype=np.uint8)
    right = rng.integers(0, 256, shape, dtype=np.uint8)
    left[3, 4] = right[3, 4] = 0  # 0/0 -> 0
    f = flatfield.flatfield_bin_factor(shape)
    coarse = 0.9 + 0.2 * rng.random((-(-shape[0] // f), -(-shape[1] // f)))
    lazy_l = flatfield.FlatfieldRows(coarse, shape, f)
    lazy_r = flatfield.FlatfieldRows(coarse[::-1], shape, f)
    full_l, full_r = lazy_l[:], lazy_r[:]
    np.testing.assert_array_equal(full_l, flatfield.expand_flatfield(coarse, shape, f))
    got = dpc_mod.dpc_octopi(left, right, lazy_l, lazy_r, rows=7)
    L, R = left / np.float32(255) / full_l, right / np.float32(255) / full_r
    with np.errstate(divide="ignore", invalid="ignore"):
        want = np.clip(np.float32(0.5) + (L - R) / (L + R), 0, 1)
    want[np.isnan(want)] = 0
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got, dpc_mod.dpc_octopi(left, right, full_l, full_r))
    with pytest.raises(ValueError, match="contiguous"):
        lazy_l[::2]


@pytest.mark.parametrize("dtype, top", [(np.uint8, 255), (np.uint16, 4095), (np.int32, 70000)])
@pytest.mark.parametrize("shape, f", [((300, 410), 3), ((257, 300), 23), ((5, 3), 2), ((7, 7), 7)])
def test_bin_image_sums_integers_exactly_like_the_edge_padded_mean(shape, f, dtype, top):
    img = np.random.default_rng(7).integers(0, top + 1, shape).astype(dtype)
    img[-1] = top  # the largest sums the accumulator must hold
    ny, nx = shape
    padded = np.pad(img.astype(np.float64), ((0, -ny % f), (0, -nx % f)), mode="edge")
    want = padded.reshape(padded.shape[0] // f, f, padded.shape[1] // f, f).mean(axis=(1, 3))
    got = flatfield.bin_image(img, f, float(top))
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want / top, rtol=1e-7)
    np.testing.assert_allclose(flatfield.bin_image(img.astype(np.float32), f), want, rtol=1e-7)


def test_flatfield_mean_equals_the_mean_of_the_expansion():
    rng = np.random.default_rng(8)
    for shape in [(300, 410), (13, 1000), (64, 64)]:
        f = flatfield.flatfield_bin_factor(shape)
        coarse = 0.5 + rng.random((-(-shape[0] // f), -(-shape[1] // f)))
        exp = flatfield._Expansion(coarse, shape, f)
        assert flatfield.flatfield_mean(coarse, shape, f) == pytest.approx(exp.rows(0, shape[0]).mean(), rel=1e-12)
    with pytest.raises(ValueError, match="no positive signal"):
        flatfield.flatfield_mean(np.zeros((4, 4)), (40, 40), 10)


@pytest.mark.parametrize("shape, sigma", [((131, 131), 8.15), ((10, 7), 5.0), ((3, 40), 12.0), ((64, 48), 0.3), ((5, 5), 0.0)])
def test_gaussian_reflect_equals_scipy(shape, sigma):
    img = np.random.default_rng(9).random(shape)
    want = ndi.gaussian_filter(img, sigma, mode="reflect")
    np.testing.assert_allclose(flatfield.gaussian_reflect(img, sigma), want, rtol=0, atol=1e-14)
