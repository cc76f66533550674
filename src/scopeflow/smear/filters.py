"""Compiled float32 image filters that give scipy.ndimage's float32 results.

Images are 2-D arrays indexed (y, x); borders are handled as ``mode="reflect"`` in
:mod:`scipy.ndimage` (the edge pixel is repeated: ``d c b a | a b c d``).
"""

from __future__ import annotations

import numpy as np

from scopeflow._numba import HAVE_NUMBA, njit

__all__ = ["laplace"]


@njit(cache=True, nogil=True)
def _laplace_f32(img, out):  # pragma: no cover - compiled
    h, w = img.shape
    for r in range(h):
        rp = r - 1 if r > 0 else 0
        rn = r + 1 if r < h - 1 else h - 1
        for c in range(w):
            cp = c - 1 if c > 0 else 0
            cn = c + 1 if c < w - 1 else w - 1
            x = np.float64(img[r, c])
            # each axis as scipy's correlate1d: double arithmetic, rounded to float32, then
            # the two float32 results added in float32
            ay = np.float32(x * -2.0 + (np.float64(img[rn, c]) + np.float64(img[rp, c])))
            ax = np.float32(x * -2.0 + (np.float64(img[r, cn]) + np.float64(img[r, cp])))
            out[r, c] = ay + ax


def laplace(image: np.ndarray) -> np.ndarray:
    """Discrete Laplacian ``[1, −2, 1]`` along y plus along x, as float32.

    The same values as ``scipy.ndimage.laplace(image.astype(np.float32))`` (reflect
    borders), in one compiled pass instead of two filter passes and a temporary (scipy's
    code is used without numba).

    Parameters
    ----------
    image : numpy.ndarray
        2-D (y, x) image; converted to float32 first.

    Returns
    -------
    numpy.ndarray
        float32, same shape.
    """
    img = np.ascontiguousarray(image, dtype=np.float32)
    if img.ndim != 2:
        raise ValueError(f"laplace expects a 2-D (y, x) image, got shape {img.shape}")
    if not HAVE_NUMBA or img.size == 0:
        from scipy import ndimage as ndi

        return ndi.laplace(img)
    out = np.empty_like(img)
    _laplace_f32(img, out)
    return out
