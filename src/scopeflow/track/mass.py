"""trackpy-compatible integrated brightness ("mass") of localised beads.

trackpy users filter features by ``minmass``: the sum, over a disc of radius
``diameter // 2`` round the feature, of the band-passed image (Crocker & Grier:
Gaussian blur of σ = 1 px minus a ``diameter``-wide boxcar mean, values below 1 set to 0
for integer images, 1/255 for float ones; dark features are inverted first,
``max - image`` for integer images as trackpy's ``invert_image``). :func:`bead_mass`
computes the same quantity at given positions, so that a scopeflow localisation table can
be filtered with the ``minmass`` a trackpy user already knows.

:func:`bandpass_features` is the feature definition that goes with ``minmass`` (Crocker &
Grier 1996, as trackpy applies it): local maxima of the band-passed image, centroids
refined in that disc, features closer than ``separation`` to a heavier one and within the
edge margin dropped, ``mass > minmass`` kept. ``locate_stack(..., minmass=...)`` takes its
features from there, so that a trackpy user's ``diameter``/``minmass`` select the same
features; the positions are then refined by scopeflow's fit.

Coordinates (y, x) in px, origin at the centre of pixel (0, 0).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["bandpass", "bead_mass", "bandpass_features"]


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


def _disc(r: int) -> tuple[np.ndarray, np.ndarray]:
    off = np.arange(-r, r + 1)
    dy, dx = np.nonzero((off[:, None] ** 2 + off[None, :] ** 2) <= r * r)
    return dy - r, dx - r


def bandpass_features(
    image: np.ndarray,
    diameter: float,
    minmass: float = 0.0,
    *,
    invert: bool = False,
    separation: float | None = None,
    percentile: float = 64.0,
    max_iterations: int = 10,
    shift_thresh: float = 0.6,
) -> dict[str, np.ndarray]:
    """Features of a frame as defined by ``diameter`` and ``minmass`` (Crocker–Grier).

    Parameters
    ----------
    image : ndarray (y, x)
        Raw frame.
    diameter : float
        Feature diameter (px, rounded up to odd): band-pass boxcar and mass disc of radius
        ``r = diameter // 2``.
    minmass : float
        Keep features whose mass (:func:`bead_mass` units) exceeds this.
    invert : bool
        Dark features on a bright background.
    separation : float, optional
        Minimum distance between features (px); default ``diameter + 1``. A local maximum
        must be the largest band-passed value in a square of side ``⌊2 sep / √2⌋``; after
        refinement, of two features closer than ``separation`` the lighter is dropped.
    percentile : float
        A local maximum must exceed this percentile of the non-zero band-passed pixels.
    max_iterations, shift_thresh : int, float
        Centroid refinement: the disc moves by one pixel along an axis while the centroid
        is more than ``shift_thresh`` px off its centre along that axis.

    Returns
    -------
    dict
        ``y, x`` (centroid, px), ``mass`` and ``iy, ix`` (the disc centre, int), sorted by
        decreasing mass. Features within ``max(r, sep // 2 - 1)`` px of an edge are not
        reported (their disc would leave the frame).
    """
    d = _odd(diameter)
    r = d // 2
    sep = float(separation) if separation is not None else float(d + 1)
    bp = bandpass(image, d, invert=invert)
    # on the integer levels of the raw data (8 bits for float frames), as trackpy: the
    # maxima of a quantised image hold plateaus, and its centroids and masses are those
    # a trackpy user's ``minmass`` was chosen on
    img = np.asarray(image)
    levels = float(np.iinfo(img.dtype).max) if np.issubdtype(img.dtype, np.integer) else 255.0
    top = float(bp.max())
    scale = levels / top if top > 0 else 1.0
    bp = np.floor(bp * scale)
    q = bp.astype(np.uint8 if levels <= 255 else np.uint16 if levels <= 65535 else np.float64)
    ny, nx = bp.shape
    empty = {k: np.zeros(0) for k in ("y", "x", "mass")}
    empty.update(iy=np.zeros(0, np.int64), ix=np.zeros(0, np.int64))
    nz = q[q > 0]
    if nz.size == 0:
        return empty
    thr = float(np.percentile(nz, percentile))
    size = max(1, int(2 * sep / np.sqrt(2)))
    peak = (q == ndimage.grey_dilation(q, size=(size, size), mode="constant")) & (q > thr)
    margin = max(r, int(sep) // 2 - 1)
    peak[:margin] = False
    peak[ny - margin:] = False
    peak[:, :margin] = False
    peak[:, nx - margin:] = False
    cy, cx = np.nonzero(peak)
    if len(cy) == 0:
        return empty
    dy, dx = _disc(r)
    y = np.zeros(len(cy))
    x = np.zeros(len(cy))
    m = np.zeros(len(cy))
    todo = np.arange(len(cy))  # features whose disc still moves
    for _ in range(max(1, int(max_iterations))):
        ty, tx = cy[todo], cx[todo]
        v = bp[ty[:, None] + dy[None, :], tx[:, None] + dx[None, :]]
        mt = v.sum(axis=1)
        oy = (v @ dy.astype(np.float64)) / np.maximum(mt, 1e-300)
        ox = (v @ dx.astype(np.float64)) / np.maximum(mt, 1e-300)
        y[todo], x[todo], m[todo] = ty + oy, tx + ox, mt  # the last disc evaluated
        move_y = np.where(oy > shift_thresh, 1, np.where(oy < -shift_thresh, -1, 0))
        move_x = np.where(ox > shift_thresh, 1, np.where(ox < -shift_thresh, -1, 0))
        moving = (move_y != 0) | (move_x != 0)
        if not np.any(moving):
            break
        cy[todo] = np.clip(ty + move_y, r, ny - 1 - r)
        cx[todo] = np.clip(tx + move_x, r, nx - 1 - r)
        todo = todo[moving]
    # of two features closer than the separation the lighter one goes
    if len(y) > 1 and sep > 0:
        from scipy.spatial import cKDTree

        pairs = cKDTree(np.stack([y, x], 1) / sep).query_pairs(1 - 1e-7, output_type="ndarray")
        if len(pairs):
            i, j = pairs[:, 0], pairs[:, 1]
            lose = np.where(m[i] > m[j], j, np.where(m[i] < m[j], i, np.maximum(i, j)))
            keep = np.ones(len(y), bool)
            keep[lose] = False
            y, x, m, cy, cx = y[keep], x[keep], m[keep], cy[keep], cx[keep]
    m = m / scale
    keep = m > minmass
    order = np.argsort(-m[keep], kind="stable")
    return {"y": y[keep][order], "x": x[keep][order], "mass": m[keep][order],
            "iy": cy[keep][order].astype(np.int64), "ix": cx[keep][order].astype(np.int64)}
