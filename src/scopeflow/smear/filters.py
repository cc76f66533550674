"""Compiled float32 image filters that give scipy.ndimage's float32 results.

Images are 2-D arrays indexed (y, x); borders are handled as ``mode="reflect"`` in
:mod:`scipy.ndimage` (the edge pixel is repeated: ``d c b a | a b c d``).
"""

from __future__ import annotations

import numpy as np

from scopeflow._numba import HAVE_NUMBA, njit

__all__ = ["gaussian_laplace_tile_sums", "gaussian_weights", "laplace"]


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


@njit(cache=True, nogil=True)
def _log_tile_sums(img, w0, w2, tile, ny, nx):  # pragma: no cover - compiled
    """Per ``tile`` x ``tile`` block (ny x nx of them from the top left) the float64 sums of
    scipy's float32 ``gaussian_laplace`` and of its float32 square."""
    h, w = img.shape
    r = w0.size // 2
    s1 = np.zeros((ny, nx), np.float64)
    s2 = np.zeros((ny, nx), np.float64)
    rows = np.empty(2 * r + 1, np.int64)
    o0 = np.empty(w, np.float64)
    o2 = np.empty(w, np.float64)
    e0 = np.empty(w + 2 * r, np.float64)  # y pass with the order-0 kernel, as float32, extended
    e2 = np.empty(w + 2 * r, np.float64)  # y pass with the order-2 kernel
    t0 = np.empty(w, np.float64)
    t1 = np.empty(w, np.float64)
    ncol = nx * tile
    c1 = np.zeros(ncol, np.float64)  # per column, the sums over the current block row
    c2 = np.zeros(ncol, np.float64)
    for y in range(ny * tile):
        for j in range(-r, r + 1):  # reflect: d c b a | a b c d
            q = y + j
            if q < 0:
                q = -q - 1
            elif q >= h:
                q = 2 * h - q - 1
            rows[j + r] = q
        # scipy's correlate1d of a symmetric kernel: x[0] w[0], then (x[-j] + x[j]) w[-j]
        # for j = r .. 1, in double, rounded to float32
        mid = img[rows[r]]
        for c in range(w):
            v = np.float64(mid[c])
            o0[c] = v * w0[r]
            o2[c] = v * w2[r]
        for j in range(r, 0, -1):
            lo = img[rows[r - j]]
            hi = img[rows[r + j]]
            f0 = w0[r - j]
            f2 = w2[r - j]
            for c in range(w):
                pair = np.float64(lo[c]) + np.float64(hi[c])
                o0[c] += pair * f0
                o2[c] += pair * f2
        for c in range(w):
            e0[r + c] = np.float64(np.float32(o0[c]))
            e2[r + c] = np.float64(np.float32(o2[c]))
        for j in range(1, r + 1):  # the line buffer's reflect extension
            e0[r - j] = e0[r + j - 1]
            e2[r - j] = e2[r + j - 1]
            e0[r + w - 1 + j] = e0[r + w - j]
            e2[r + w - 1 + j] = e2[r + w - j]
        # x pass: order 0 of the order-2 y pass (t0) and order 2 of the order-0 one (t1)
        for c in range(ncol):
            t0[c] = e2[c + r] * w0[r]
            t1[c] = e0[c + r] * w2[r]
        for j in range(r, 0, -1):
            f0 = w0[r - j]
            f2 = w2[r - j]
            for c in range(ncol):
                t0[c] += (e2[c + r - j] + e2[c + r + j]) * f0
                t1[c] += (e0[c + r - j] + e0[c + r + j]) * f2
        for c in range(ncol):  # per column over the block's rows, then per block
            v = np.float32(t0[c]) + np.float32(t1[c])
            c1[c] += np.float64(v)
            c2[c] += np.float64(v * v)
        if (y + 1) % tile == 0:
            ty = y // tile
            for tx in range(nx):
                a1 = 0.0
                a2 = 0.0
                for c in range(tx * tile, (tx + 1) * tile):
                    a1 += c1[c]
                    a2 += c2[c]
                s1[ty, tx] = a1
                s2[ty, tx] = a2
            c1[:] = 0.0
            c2[:] = 0.0
    return s1, s2


def gaussian_laplace_tile_sums(image: np.ndarray, sigma: float, tile: int) -> tuple[np.ndarray, np.ndarray]:
    """Sums of ``scipy.ndimage.gaussian_laplace(image, sigma)`` (float32, reflect borders)
    and of its square over non-overlapping ``tile`` x ``tile`` blocks, in one pass.

    The filtered values are scipy's (the same float32 numbers: each 1-D pass in double,
    rounded to float32, the two second-derivative terms added in float32); the image is
    not materialised. A remainder strip at the bottom / right that does not fill a block
    is left out. scipy computes it without numba, or for an image smaller than the kernel.

    Parameters
    ----------
    image : numpy.ndarray
        2-D (y, x) image; converted to float32 first.
    sigma : float
        Gaussian standard deviation (px), > 0; the kernel radius is scipy's default
        ``int(4 sigma + 0.5)``.
    tile : int
        Block edge (px).

    Returns
    -------
    sums, squares : numpy.ndarray
        float64 (ny, nx) per block: the sum of the filtered values and of their float32 squares.
    """
    img = np.ascontiguousarray(image, dtype=np.float32)
    if img.ndim != 2:
        raise ValueError(f"expected a 2-D (y, x) image, got shape {img.shape}")
    tile = int(tile)
    ny, nx = img.shape[0] // tile, img.shape[1] // tile
    radius = int(4.0 * float(sigma) + 0.5)
    if not HAVE_NUMBA or min(img.shape) <= radius:
        from scipy import ndimage as ndi

        lap = ndi.gaussian_laplace(img, sigma)[: ny * tile, : nx * tile]
        blocks = lap.reshape(ny, tile, nx, tile)
        sq = (lap * lap).reshape(ny, tile, nx, tile)
        return blocks.sum(axis=(1, 3), dtype=np.float64), sq.sum(axis=(1, 3), dtype=np.float64)
    # symmetric kernels: reversed (as gaussian_filter1d passes them to correlate1d) they are
    # the same
    return _log_tile_sums(img, gaussian_weights(sigma, 0, radius), gaussian_weights(sigma, 2, radius),
                          tile, ny, nx)


def gaussian_weights(sigma: float, order: int, radius: int) -> np.ndarray:
    """The 1-D Gaussian kernel (``order`` 0) or its second derivative (``order`` 2) of
    ``scipy.ndimage.gaussian_filter1d``: the same float64 weights, without importing scipy.

    The Gaussian is sampled at the integers ``-radius .. radius`` and normalised to sum 1;
    the second derivative is that times the polynomial ``-1/σ² + x²/σ⁴``.
    """
    if order not in (0, 2):
        raise ValueError(f"order must be 0 or 2, got {order}")
    sigma2 = float(sigma) * float(sigma)
    x = np.arange(-int(radius), int(radius) + 1)
    phi = np.exp(-0.5 / sigma2 * x ** 2)
    phi = phi / phi.sum()
    if order == 0:
        return phi
    a = 1.0 / -sigma2
    # the polynomial by its coefficients (1, x, x²), evaluated as scipy does
    return (x[:, None] ** np.arange(3)).dot(np.array([a, 0.0, a * a])) * phi
