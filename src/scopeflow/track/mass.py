"""trackpy-compatible integrated brightness ("mass") of localised beads.

trackpy users filter features by ``minmass``: the sum, over a disc of radius
``diameter // 2`` round the feature, of the band-passed image (Crocker & Grier:
Gaussian blur of σ = 1 px minus a ``diameter``-wide boxcar mean, values below 1 set to 0
for integer images, 1/255 for float ones; dark features are inverted first,
``max - image`` for integer images as trackpy's ``invert_image``). :func:`bead_mass`
computes the same quantity at given positions, so that a scopeflow localisation table can
be filtered with the ``minmass`` a trackpy user already knows.

Coordinates (y, x) in px, origin at the centre of pixel (0, 0).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["bandpass", "bead_mass"]


def _odd(d: float) -> int:
    k = int(round(float(d)))
    return k if k % 2 else k + 1


def bandpass(image: np.ndarray, diameter: float, *, invert: bool = False) -> np.ndarray:
    """Crocker–Grier band-pass of one frame (float64), as trackpy's ``bandpass(img, 1, d)``.

    Parameters
    ----------
    image : ndarray (y, x)
        Raw frame (integer or float).
    diameter : float
        Feature diameter (px; rounded up to an odd integer): the boxcar size.
    invert : bool
        Dark features on a bright background: invert first (integer images:
        ``dtype max - image``; float: ``max - image``).

    Returns
    -------
    ndarray (y, x) float64
        Blurred minus boxcar mean, values below the threshold (1 for integer images,
        1/255 for float ones) set to 0.
    """
    img = np.asarray(image)
    is_int = np.issubdtype(img.dtype, np.integer)
    if invert:
        top = np.iinfo(img.dtype).max if is_int else float(np.max(img))
        img = top - img.astype(np.float64) if not is_int else (top - img).astype(img.dtype)
    f = img.astype(np.float64)
    u = np.arange(-4, 5, dtype=np.float64)
    g = np.exp(-(u * u) / 2.0)
    g /= g.sum()
    low = ndimage.correlate1d(f, g, 0, mode="constant")
    low = ndimage.correlate1d(low, g, 1, mode="constant")
    k = _odd(diameter)
    # the boxcar keeps the image's dtype (integer images: rounded after each axis, as trackpy)
    box = ndimage.uniform_filter1d(img, k, 0, mode="nearest")
    box = ndimage.uniform_filter1d(box, k, 1, mode="nearest")
    res = low - box.astype(np.float64)
    thr = 1.0 if is_int else 1.0 / 255.0
    return np.where(res >= thr, res, 0.0)


def bead_mass(
    image: np.ndarray, y: np.ndarray, x: np.ndarray, diameter: float, *, invert: bool = False
) -> np.ndarray:
    """trackpy ``mass`` of beads at (y, x): band-passed sum over a disc of radius ``d // 2``.

    Parameters
    ----------
    image : ndarray (y, x)
        Raw frame.
    y, x : ndarray (n,)
        Bead centres (px); the disc is centred on the nearest pixel, as trackpy's mask.
    diameter : float
        Feature diameter (px, rounded up to odd).
    invert : bool
        Dark beads (see :func:`bandpass`).

    Returns
    -------
    ndarray (n,)
        Mass (band-passed intensity units); 0 for a disc entirely outside the frame.
    """
    bp = bandpass(image, diameter, invert=invert)
    r = _odd(diameter) // 2
    off = np.arange(-r, r + 1)
    disc = (off[:, None] ** 2 + off[None, :] ** 2) <= r * r
    dy, dx = np.nonzero(disc)
    dy, dx = dy - r, dx - r
    cy = np.round(np.asarray(y, dtype=np.float64)).astype(np.int64)
    cx = np.round(np.asarray(x, dtype=np.float64)).astype(np.int64)
    iy = cy[:, None] + dy[None, :]
    ix = cx[:, None] + dx[None, :]
    ny, nx = bp.shape
    ok = (iy >= 0) & (iy < ny) & (ix >= 0) & (ix < nx)
    vals = bp[np.clip(iy, 0, ny - 1), np.clip(ix, 0, nx - 1)]
    return np.where(ok, vals, 0.0).sum(axis=1)
