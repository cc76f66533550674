"""The compiled U-Net kernels give exactly what the numpy/scipy reference code gives."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from scopeflow.segment import unet_kernels as kernels
from scopeflow.segment.decode import _decode_masks_reference, decode_maps

pytestmark = pytest.mark.skipif(not kernels.HAVE_NUMBA, reason="numba not available")

CROSS = ndi.generate_binary_structure(2, 1)


def _blobs(rng, shape, level):
    return ndi.gaussian_filter(rng.random(shape), 3) > level


def test_label4_and_erode4_equal_scipy():
    rng = np.random.default_rng(0)
    for trial in range(20):
        mask = rng.random((61, 83)) < rng.uniform(0.2, 0.8)
        got, n = kernels.label4(mask)
        ref, m = ndi.label(mask, structure=CROSS)
        assert n == m and np.array_equal(got, ref), trial  # same ids: raster order of first pixels
        for it in (1, 3):
            assert np.array_equal(kernels.erode4(mask, it), ndi.binary_erosion(mask, CROSS, iterations=it))


@pytest.mark.parametrize("args", [(5, 4, 30, 0, 20), (20, 3, 0, 10, -1), (1, 6, 10, 40, 15), (1, 0, 1, 0, -1)])
def test_decode_masks_equals_reference(args):
    rng = np.random.default_rng(1)
    for trial in range(10):
        fg = _blobs(rng, (120, 150), 0.5)
        body = _blobs(rng, (120, 150), 0.52)
        for b in (body & fg, body):  # seeds inside the foreground, and (other thresholds) not
            got = kernels.decode_masks(fg, b, *args)
            ref = _decode_masks_reference(fg, b, *args)
            assert np.array_equal(got[0], ref[0]) and np.array_equal(got[1], ref[1]), (trial, args)


def test_decode_maps_on_real_maps_equals_reference(shared):
    """The shipped model's maps of dpc_1024_00, both heads' decoding paths."""
    from scopeflow.io.images import read_gray
    from scopeflow.segment.unet import UNetPredictor

    img = read_gray(shared / "octopi_rbc_dpc_m2unet" / "images" / "dpc_1024_00.png")
    pred = UNetPredictor(threads=1, backend="onnx")
    pred.prepare(img)
    maps = pred.predict(img)
    labels, seeds = decode_maps(maps, max_extent=96, t_body=0.8)
    fg, body = (maps[1] + maps[2]) > 0.5, maps[1] > 0.8
    ref = _decode_masks_reference(fg, body, 20, 4, 150, 0, 96)
    assert labels.max() > 500
    assert np.array_equal(labels, ref[0]) and np.array_equal(seeds, ref[1])
    one = (maps[1:2] + maps[2:3])  # a 1-class map: seeds by erosion
    fg1 = one[0] > 0.5
    body1 = ndi.binary_erosion(fg1, CROSS, iterations=4)
    got1 = decode_maps(one, erode=4)
    ref1 = _decode_masks_reference(fg1, body1, 20, 4, 150, 0, -1)
    assert np.array_equal(got1[0], ref1[0]) and np.array_equal(got1[1], ref1[1])
