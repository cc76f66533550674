"""Bead templates: model profiles (Gaussian, brightfield ring) and templates from the data.

A template is a ``(2r+1)²`` image of one bead centred on the middle pixel. Model profiles
are the pixel-integrated Gaussian (unit sum) and the brightfield ring of
:func:`scopeflow.simulate.beads.render_frame` (``Σ|T| = 1``). A template from the data
(:func:`estimate_template`) averages crops of detected beads aligned at their subpixel
positions by Fourier shifts, symmetrised over the 8 rotations/flips, re-localised by
cross-correlation (:func:`scopeflow.track.refine.refine_xcorr`) and re-averaged.

Coordinates are (y, x) in pixels with the origin at the centre of pixel (0, 0).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
from scipy.special import erf

from scopeflow.track.peaks import _border_median, extract_crops
from scopeflow.track.refine import _centred_freqs, refine_xcorr

__all__ = ["estimate_template", "gaussian_template", "ring_template"]

_SQ2 = math.sqrt(2.0)


def gaussian_template(sigma_px: float, radius: int) -> np.ndarray:
    """Pixel-integrated Gaussian of unit sum on a ``(2r+1)²`` grid, centred on the middle pixel.

    Parameters
    ----------
    sigma_px : float
        Gaussian σ (px).
    radius : int
        Half-size r of the template (px).

    Returns
    -------
    ndarray (2r+1, 2r+1) float64
    """
    u = np.arange(-radius, radius + 1, dtype=np.float64)
    e = 0.5 * (erf((u + 0.5) / (_SQ2 * sigma_px)) - erf((u - 0.5) / (_SQ2 * sigma_px)))
    t = np.outer(e, e)
    return t / t.sum()


def ring_template(
    sigma_px: float,
    radius: int,
    ring_radius_px: float | None = None,
    ring_width_px: float | None = None,
) -> np.ndarray:
    """Brightfield bead model (dark core, bright ring; zero net) normalised to ``Σ|T| = 1``.

    Same profile as :func:`scopeflow.simulate.beads.render_frame` with ``profile="ring"``.
    """
    from scopeflow.simulate.beads import render_frame

    k = 2 * radius + 1
    t = render_frame(
        (k, k), np.array([radius]), np.array([radius]), np.array([1.0]),
        profile="ring", sigma_px=sigma_px, ring_radius_px=ring_radius_px,
        ring_width_px=ring_width_px, background=1.0,
    ) - 1.0
    return t / np.abs(t).sum()


def _symmetrize(t: np.ndarray) -> np.ndarray:
    """Average over the 8 rotations/flips (dihedral group D4) of a square template."""
    acc = np.zeros_like(t)
    for k in range(4):
        r = np.rot90(t, k)
        acc += r + r.T
    return acc / 8.0


def estimate_template(
    frames: Iterable[np.ndarray],
    positions: Iterable[np.ndarray],
    radius: int,
    *,
    iterations: int = 2,
    initial: np.ndarray | None = None,
    upsample: int = 10,
    max_spots: int = 2000,
) -> np.ndarray:
    """Bead template from the data: average of crops aligned at subpixel positions.

    Each crop (``(2r+1)²``, minus its border median, sign-flipped to the common polarity)
    is shifted by Fourier interpolation so that its bead centre falls on the middle pixel;
    the mean is symmetrised over the 8 rotations/flips. With ``initial`` the beads are
    re-localised by cross-correlation with the current template before each average.

    Parameters
    ----------
    frames : iterable of ndarray (y, x)
        Frames.
    positions : iterable of ndarray (n_i, 2)
        Subpixel (y, x) bead positions per frame (px).
    radius : int
        Template half-size r (px).
    iterations : int
        Align/average rounds (with ``initial``).
    initial : ndarray, optional
        Starting template for re-localisation.
    upsample : int
        DFT upsampling of the re-localisation.
    max_spots : int
        Use at most this many beads.

    Returns
    -------
    ndarray (2r+1, 2r+1)
        Template with ``Σ|T| = 1``; bright beads give mostly positive values, dark beads
        mostly negative ones (the sign of the crops' mean central contrast).
    """
    allc, allv, alls = [], [], []
    total = 0
    for img, pos in zip(frames, positions, strict=False):
        pos = np.asarray(pos, dtype=np.float64).reshape(-1, 2)
        if len(pos) == 0:
            continue
        cen = np.round(pos).astype(np.int64)
        crops, valid = extract_crops(img, cen, radius)
        inside = valid.all(axis=(1, 2))
        allc.append(crops[inside])
        allv.append(valid[inside])
        alls.append((pos - cen)[inside])
        total += int(inside.sum())
        if total >= max_spots:
            break
    if not allc or total == 0:
        raise ValueError("estimate_template: no bead fully inside the frames")
    crops = np.concatenate(allc)[:max_spots]
    valid = np.concatenate(allv)[:max_spots]
    sub = np.concatenate(alls)[:max_spots]
    k = 2 * radius + 1
    bg = _border_median(crops, valid)
    d = crops - bg[:, None, None]
    f = _centred_freqs(k)
    tpl = initial
    rounds = max(1, iterations if initial is not None else 1)
    for _ in range(rounds):
        if tpl is not None:
            oy, ox, pol = refine_xcorr(crops, valid, tpl, upsample)
        else:
            oy, ox = sub[:, 0], sub[:, 1]
            c = k // 2
            cen = d[:, c - 1 : c + 2, c - 1 : c + 2].mean(axis=(1, 2))
            pol = np.sign(cen)
            pol[pol == 0] = 1
        # move each bead to the middle: shift by -(oy, ox)
        ph = np.exp(2j * np.pi * (oy[:, None, None] * f[:, None] + ox[:, None, None] * f[None, :]) / k)
        aligned = np.fft.ifft2(np.fft.fft2(d) * ph).real * pol[:, None, None]
        amp = np.abs(aligned).sum(axis=(1, 2))
        good = amp > 0
        mean = (aligned[good] / amp[good, None, None]).mean(axis=0)
        mean = _symmetrize(mean)
        mean -= np.median(np.concatenate([mean[0], mean[-1], mean[:, 0], mean[:, -1]]))
        # common polarity: sign of the majority
        sgn = 1.0 if np.median(pol) >= 0 else -1.0
        tpl = mean * sgn
        tpl = tpl / np.abs(tpl).sum()
    return tpl
