"""Bead candidates: score maps, local maxima and the crops around them.

The score map is either a bead-centre probability map from a network or a matched filter:
the frame correlated with the zero-mean bead template (:func:`matched_filter`; for a
Gaussian bead the separable Gaussian-minus-box filter), divided by its white-noise standard
deviation and expressed in units of its robust (MAD) noise, so a threshold on it is an SNR.
Candidates are its local maxima above a threshold (:func:`find_peaks`, non-maximum
suppression); :func:`extract_crops` cuts the ``(2r+1)²`` crops that the cross-correlation
(:mod:`scopeflow.track.refine`) and the fits (:mod:`scopeflow.track.fit`) work on.

Coordinates are (y, x) in pixels with the origin at the centre of pixel (0, 0).
"""

from __future__ import annotations

import functools
import math

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

import scopeflow.track._fast as _fast

__all__ = ["extract_crops", "find_peaks", "matched_filter"]


def matched_filter(image: np.ndarray, template: np.ndarray) -> np.ndarray:
    """Correlate an image with the zero-mean template, in units of the response's noise.

    The image minus its median is zero-padded (no mirrored noise at the edges) and the
    response is divided by its expected standard deviation for white noise (smaller near the
    edges, where part of the template falls outside) times the robust (MAD) noise level.

    Parameters
    ----------
    image : ndarray (y, x)
        Frame (any real dtype).
    template : ndarray (k, k)
        Bead template (its mean is removed, so a smooth background cancels).

    Returns
    -------
    ndarray (y, x) float32
        SNR map whose positive peaks are beads of the template's polarity.
    """
    from scipy.signal import oaconvolve

    img = np.asarray(image, dtype=np.float32)
    img = img - np.float32(np.median(img[::3, ::3]))
    t = np.asarray(template, dtype=np.float64)
    t = (t - t.mean()).astype(np.float32)
    r = oaconvolve(img, t[::-1, ::-1], mode="same").astype(np.float32)
    var = oaconvolve(np.ones_like(img), (t * t)[::-1, ::-1], mode="same")
    return _normalise_response(r, np.sqrt(np.maximum(var, 1e-12)).astype(np.float32))


def _normalise_response(r: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Response / its white-noise std, minus the median, in units of the robust noise.

    Median and MAD come from every 3rd pixel along both axes (1/9 of the frame).
    """
    sub = (r[::3, ::3] / std[::3, ::3]).ravel()
    med = np.median(sub)
    mad = np.median(np.abs(sub - med))
    noise = 1.4826 * mad if mad > 0 else (float(sub.std()) or 1.0)
    z = np.divide(r, std, dtype=np.float32)
    z -= np.float32(med)
    z *= np.float32(1.0 / noise)
    return z


def _gaussian_response(image: np.ndarray, sigma_px: float) -> np.ndarray:
    """Matched filter for a Gaussian bead: Gaussian blur minus box mean (separable), SNR units."""
    img = np.asarray(image, dtype=np.float32)
    img = img - np.float32(np.median(img[::3, ::3]))
    g, size = _gauss_box_kernels(float(sigma_px))
    if _fast.HAVE_NUMBA:
        rg = _fast.gauss_minus_box(img, g)
    else:
        c1 = ndimage.correlate1d
        u1 = ndimage.uniform_filter1d
        rg = c1(c1(img, g, 0, mode="constant"), g, 1, mode="constant")
        rg -= u1(u1(img, size, 0, mode="constant"), size, 1, mode="constant")
    return _normalise_response(rg, _gaussian_response_std(img.shape, float(sigma_px)))


@functools.lru_cache(maxsize=16)
def _gauss_box_kernels(sigma_px: float) -> tuple[np.ndarray, int]:
    rad = int(math.ceil(3 * sigma_px))
    u = np.arange(-rad, rad + 1, dtype=np.float64)
    g = np.exp(-(u * u) / (2 * sigma_px**2))
    g /= g.sum()
    return g.astype(np.float32), len(g)


@functools.lru_cache(maxsize=16)
def _gaussian_response_std(shape: tuple[int, int], sigma_px: float) -> np.ndarray:
    """White-noise standard deviation of the Gaussian-minus-box response (edges included).

    Depends only on the frame shape and σ, so it is computed once per movie (cached).
    """
    g32, size = _gauss_box_kernels(sigma_px)
    g = g32.astype(np.float64)
    b = np.full_like(g, 1.0 / size)
    c1 = ndimage.correlate1d
    ny, nx = shape

    def sums(n, k1, k2):
        return c1(np.ones(n), k1 * k2, mode="constant")

    var = (
        np.outer(sums(ny, g, g), sums(nx, g, g))
        - 2 * np.outer(sums(ny, g, b), sums(nx, g, b))
        + np.outer(sums(ny, b, b), sums(nx, b, b))
    )
    out = np.sqrt(np.maximum(var, 1e-12)).astype(np.float32)
    out.setflags(write=False)
    return out


def find_peaks(
    score: np.ndarray,
    threshold: float,
    min_distance: int = 2,
    exclude_border: int = 0,
) -> np.ndarray:
    """Local maxima of a score map above ``threshold`` (non-maximum suppression).

    Parameters
    ----------
    score : ndarray (y, x)
        Probability or SNR map.
    threshold : float
        Minimum score of a peak.
    min_distance : int
        A peak is the maximum of its ``(2 d + 1)²`` neighbourhood.
    exclude_border : int
        Drop peaks closer than this to the frame edge (px).

    Returns
    -------
    ndarray (n, 2) int
        (y, x) integer positions, sorted by decreasing score.
    """
    s = np.asarray(score, dtype=np.float32)
    if _fast.HAVE_NUMBA:
        # compiled scan: only pixels above the threshold get a window check; a plateau
        # gives its first pixel (raster order)
        yx = _fast.local_maxima(s, threshold, int(min_distance))
        if exclude_border > 0 and len(yx):
            e = int(exclude_border)
            ny, nx = s.shape
            inb = (yx[:, 0] >= e) & (yx[:, 0] < ny - e) & (yx[:, 1] >= e) & (yx[:, 1] < nx - e)
            yx = yx[inb]
        if len(yx) > 1:
            yx = yx[np.argsort(-s[yx[:, 0], yx[:, 1]], kind="stable")]
        return yx.astype(np.int64)
    mx = ndimage.maximum_filter(s, size=2 * int(min_distance) + 1, mode="nearest")
    mask = (s == mx) & (s > threshold)
    if exclude_border > 0:
        e = int(exclude_border)
        mask[:e] = mask[-e:] = False
        mask[:, :e] = mask[:, -e:] = False
    yx = np.argwhere(mask)
    if len(yx) > 1:
        # plateaus: keep one pixel per flat maximum
        order = np.argsort(-s[yx[:, 0], yx[:, 1]], kind="stable")
        yx = yx[order]
        tree = cKDTree(yx)
        pairs = tree.query_pairs(1.5, output_type="ndarray")
        if len(pairs):
            drop = np.zeros(len(yx), bool)
            for i, j in pairs:  # few: only exact ties
                if not drop[i] and s[yx[i, 0], yx[i, 1]] == s[yx[j, 0], yx[j, 1]]:
                    drop[j] = True
            yx = yx[~drop]
    return yx.astype(np.int64)


def extract_crops(image: np.ndarray, centers: np.ndarray, radius: int):
    """Vectorised ``(2r+1)²`` crops around integer centres (edge pixels marked invalid).

    Parameters
    ----------
    image : ndarray (y, x)
    centers : ndarray (n, 2) int
        Crop centres (y, x).
    radius : int

    Returns
    -------
    crops : ndarray (n, k, k) float64
        Pixel values (edge-replicated outside the frame).
    valid : ndarray (n, k, k) bool
        True for pixels inside the frame.
    """
    img = np.asarray(image)
    if _fast.HAVE_NUMBA:
        return _fast.extract_crops(img, centers, radius)
    ny, nx = img.shape
    off = np.arange(-radius, radius + 1)
    iy = centers[:, 0, None] + off  # (n, k)
    ix = centers[:, 1, None] + off
    vy = (iy >= 0) & (iy < ny)
    vx = (ix >= 0) & (ix < nx)
    iyc = np.clip(iy, 0, ny - 1)
    ixc = np.clip(ix, 0, nx - 1)
    crops = img[iyc[:, :, None], ixc[:, None, :]].astype(np.float64)
    valid = vy[:, :, None] & vx[:, None, :]
    return crops, valid


def _border_median(crops: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Median of each crop's valid border pixels (local background)."""
    if _fast.HAVE_NUMBA:
        return _fast.border_median(crops, valid)
    n, k, _ = crops.shape
    ring = np.zeros((k, k), bool)
    ring[[0, -1], :] = True
    ring[:, [0, -1]] = True
    vals = crops[:, ring]
    ok = valid[:, ring]
    med = np.median(vals, axis=1)
    part = np.flatnonzero(~ok.all(axis=1))  # crops cut by the frame edge
    for i in part:
        v = vals[i][ok[i]]
        med[i] = np.median(v) if len(v) else np.median(crops[i][valid[i]])
    return med
