"""Realistic bead appearances with known truth: brightfield colloids, Airy and defocused
fluorescent beads, mixed sizes, uneven background and static dirt.

Radial profiles (one per bead kind, diameter and defocus; ``r`` in px from the bead centre):

* ``"brightfield_bright"`` / ``"brightfield_dark"`` – a transparent sphere of radius
  ``a = diameter/2`` seen in brightfield. Weak absorption darkens the bead in proportion to
  its thickness ``t(r) = sqrt(1 - r²/a²)``; defocus ``z`` adds phase contrast, which by the
  transport-of-intensity equation (Teague, JOSA 73:1434, 1983) is ``ΔI/I ∝ -z ∇²t``: for a
  sphere ``∇²t`` is negative inside and strongly positive at the rim, so one sign of defocus
  gives a **bright centre inside a dark ring** (``"brightfield_bright"``, the usual look of
  colloids slightly above focus) and the other a **dark centre inside a bright ring**
  (``"brightfield_dark"``). The image is blurred by a Gaussian PSF (σ ≈ 0.08 d + 0.6 px)
  and gets a faint bright halo at ~1.6 a (out-of-focus diffraction). The movie's defocus
  varies per bead and slowly in time, so the ring changes with z.
* ``"absorbing"`` – the in-focus limit (no phase term): a dark blurred disc with a faint
  halo, as in trackpy's bulk_water example.
* ``"airy"`` – an in-focus fluorescent bead below the resolution: ``(2 J1(v)/v)²`` with
  the first dark ring at ``diameter/2``.
* ``"defocused"`` – a defocused fluorescent bead (geometric optics): a disc of radius
  ``diameter/2`` with a bright rim, blurred.
* ``"gaussian"`` – a pixel-integrated Gaussian spot of σ = ``diameter/4``.

The TIE/absorption/halo mixture is a forward model, not a fit to one camera: the benchmark
``benchmarks/bead_appearances.py`` fits its parameters to the mean radial profile of the
beads of ``trackpy_bulk_water`` and ``trackpy_reference_sequence`` and prints the residual
(:func:`fit_profile_to`), which is how the simulated beads were checked against real ones.

Coordinates (y, x) in px with the origin at the centre of pixel (0, 0), as trackpy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import ndimage, special

from scopeflow.simulate.beads import render_frame

__all__ = [
    "APPEARANCES",
    "bead_profile",
    "render_beads",
    "simulate_appearance_movie",
    "measured_radial_profile",
    "fit_profile_to",
]

#: bead kinds understood by :func:`bead_profile`
APPEARANCES = ("brightfield_bright", "brightfield_dark", "absorbing", "airy", "defocused",
               "gaussian")
#: kinds whose signal is relative to the background (brightfield: the bead modulates light)
_BRIGHTFIELD = ("brightfield_bright", "brightfield_dark", "absorbing")


def _blur_sigma(diameter: float) -> float:
    return 0.08 * diameter + 0.6


def bead_profile(
    kind: str,
    diameter_px: float,
    *,
    defocus: float = 1.0,
    halo: float = 0.06,
    blur_px: float | None = None,
    dr: float = 0.05,
) -> tuple[np.ndarray, np.ndarray]:
    """Radial profile of one bead, normalised to ``max |p| = 1``.

    Parameters
    ----------
    kind : str
        One of :data:`APPEARANCES`.
    diameter_px : float
        Bead diameter d (px): the sphere's diameter (brightfield, absorbing), the diameter
        of the first dark Airy ring (airy), of the defocused disc (defocused), or 4σ
        (gaussian).
    defocus : float
        Brightfield only: phase-contrast weight relative to absorption (≥ 0; 0 = in focus,
        the ``absorbing`` look). The sign of the phase term is set by ``kind``.
    halo : float
        Relative amplitude of the outer bright halo (brightfield kinds).
    blur_px : float, optional
        PSF σ (px); default ``0.08 d + 0.6``.
    dr : float
        Radial sampling step (px) of the returned table.

    Returns
    -------
    r : ndarray (m,)
        Radii (px) from 0 to the profile's support (``≥ 2 d``).
    p : ndarray (m,)
        Profile; positive = brighter than the background. Brightfield kinds: the bright
        centre of ``"brightfield_bright"`` is positive, the absorbing core negative.
    """
    if kind not in APPEARANCES:
        raise ValueError(f"kind must be one of {APPEARANCES}, got {kind!r}")
    d = float(diameter_px)
    if not d > 0:
        raise ValueError(f"diameter_px must be positive, got {diameter_px!r}")
    a = d / 2.0
    s = _blur_sigma(d) if blur_px is None else float(blur_px)
    rmax = 2.0 * d + 4.0 * s + 2.0
    r = np.arange(0.0, rmax + dr, dr)
    if kind == "gaussian":
        sg = d / 4.0
        return r, np.exp(-(r**2) / (2 * sg**2))
    if kind == "airy":
        v = 3.8317059702 * np.maximum(r, 1e-9) / a
        p = (2 * special.j1(v) / v) ** 2
        # the camera blurs the Airy pattern only slightly (pixel size)
        return r, _blur_radial(r, p, 0.35) / 1.0
    # 2-D fields on a fine grid (h px) then the profile along +x
    h = min(0.25, a / 24.0)
    half = int(math.ceil(rmax / h)) + 8
    n = 1 << int(math.ceil(math.log2(2 * half)))
    u = (np.arange(n) - n // 2) * h
    yy, xx = np.meshgrid(u, u, indexing="ij")
    rr = np.hypot(yy, xx)
    if kind == "defocused":
        disc = (rr < a).astype(np.float64)
        rim = np.exp(-((rr - a) ** 2) / (2 * (0.08 * a + 0.3) ** 2))
        field = 0.35 * disc + rim
        img = _blur_fft(field, s / h)
    else:
        t = np.sqrt(np.clip(1.0 - (rr / a) ** 2, 0.0, None))
        absorb = -_blur_fft(t, s / h)
        absorb /= np.abs(absorb).max()
        if kind == "absorbing" or defocus == 0:
            img = absorb
        else:
            # -∇²t blurred, in Fourier space: ∇² → -|k|²
            k = 2 * np.pi * np.fft.fftfreq(n, d=h)
            k2 = k[:, None] ** 2 + k[None, :] ** 2
            ft = np.fft.fft2(np.fft.ifftshift(t)) * np.exp(-0.5 * (s**2) * k2)
            lap = np.fft.fftshift(np.fft.ifft2(-k2 * ft).real)
            phase = -lap / np.abs(lap).max()  # bright centre, dark rim
            if kind == "brightfield_dark":
                phase = -phase
            img = 0.35 * absorb + float(defocus) * phase
        img = img / np.abs(img).max()
        img = img + halo * np.exp(-((rr - 1.6 * a) ** 2) / (2 * (0.3 * a + s) ** 2))
    row = img[n // 2, n // 2:]
    p = np.interp(r, u[n // 2:], row)
    return r, p / np.abs(p).max()


def _blur_fft(field: np.ndarray, sigma_samples: float) -> np.ndarray:
    return ndimage.gaussian_filter(field, sigma_samples, mode="constant")


def _blur_radial(r: np.ndarray, p: np.ndarray, sigma: float) -> np.ndarray:
    """Blur a radial profile by a 2-D Gaussian (via a 2-D grid), back on ``r``."""
    h = max(r[1] - r[0], 0.02)
    n = int(2 * math.ceil(r[-1] / h)) + 1
    u = (np.arange(n) - n // 2) * h
    rr = np.hypot(u[:, None], u[None, :])
    img = np.interp(rr, r, p, right=0.0)
    img = ndimage.gaussian_filter(img, sigma / h, mode="constant")
    out = np.interp(r, u[n // 2:], img[n // 2, n // 2:])
    return out / np.abs(out).max()


def render_beads(
    shape: tuple[int, int],
    y: np.ndarray,
    x: np.ndarray,
    amplitude: np.ndarray,
    profiles: Sequence[tuple[np.ndarray, np.ndarray]],
    which: np.ndarray,
    supersample: int = 3,
) -> np.ndarray:
    """Sum of radial profiles at subpixel centres, averaged over ``supersample²`` points per px.

    Parameters
    ----------
    shape : (int, int)
        Frame shape.
    y, x : ndarray (n,)
        Bead centres (px).
    amplitude : ndarray (n,)
        Peak value of each bead (profile × amplitude).
    profiles : sequence of (r, p)
        Radial profile tables (see :func:`bead_profile`).
    which : ndarray (n,) int
        Index into ``profiles`` of each bead.
    supersample : int
        Sub-pixel samples per axis (pixel integration).

    Returns
    -------
    ndarray (ny, nx) float64
    """
    ny, nx = shape
    img = np.zeros(ny * nx)
    sub = (np.arange(supersample) + 0.5) / supersample - 0.5
    for k, (r, p) in enumerate(profiles):
        sel = np.flatnonzero(np.asarray(which) == k)
        if not len(sel):
            continue
        rad = int(math.ceil(r[-1]))
        off = np.arange(-rad, rad + 1)
        cy = np.round(y[sel]).astype(int)
        cx = np.round(x[sel]).astype(int)
        uy = cy[:, None] + off
        ux = cx[:, None] + off
        dy = (uy - y[sel, None])[:, :, None] + sub
        dx = (ux - x[sel, None])[:, :, None] + sub
        dist = np.sqrt(dy[:, :, None, :, None] ** 2 + dx[:, None, :, None, :] ** 2)
        vals = np.interp(dist, r, p, right=0.0).mean(axis=(3, 4))
        vals *= np.asarray(amplitude)[sel, None, None]
        iy = np.broadcast_to(uy[:, :, None], vals.shape)
        ix = np.broadcast_to(ux[:, None, :], vals.shape)
        ok = (iy >= 0) & (iy < ny) & (ix >= 0) & (ix < nx)
        img += np.bincount(iy[ok] * nx + ix[ok], weights=vals[ok], minlength=ny * nx)
    return img.reshape(ny, nx)


def _smooth_field(rng, shape, scale, amplitude):
    f = ndimage.gaussian_filter(rng.normal(size=shape), scale, mode="wrap")
    f /= max(f.std(), 1e-12)
    return amplitude * f


def _dirt(rng, shape, n, diameter, contrast):
    """Static dirt: irregular elongated smudges and small specks (relative modulation)."""
    ny, nx = shape
    img = np.zeros(shape)
    yy, xx = np.indices(shape)
    for _ in range(n):
        cy, cx = rng.uniform(0, ny), rng.uniform(0, nx)
        if rng.random() < 0.5:  # a speck much smaller than a bead
            s = rng.uniform(0.6, 1.0)
            g = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
            img += rng.choice([-1, 1]) * contrast * rng.uniform(0.5, 1.5) * g
            continue
        for _ in range(3):  # a smudge: three elongated blobs
            th = rng.uniform(0, np.pi)
            sa = rng.uniform(0.6, 1.6) * diameter
            sb = rng.uniform(0.08, 0.2) * diameter
            oy, ox = cy + rng.normal(0, 0.4 * diameter), cx + rng.normal(0, 0.4 * diameter)
            u = (yy - oy) * math.cos(th) + (xx - ox) * math.sin(th)
            v = -(yy - oy) * math.sin(th) + (xx - ox) * math.cos(th)
            g = np.exp(-(u * u) / (2 * sa * sa) - (v * v) / (2 * sb * sb))
            img += rng.choice([-1, 1]) * contrast * rng.uniform(0.3, 0.8) * g
    return img


def simulate_appearance_movie(
    kind: str,
    n_frames: int = 30,
    shape: tuple[int, int] = (256, 256),
    n_beads: int = 30,
    diameter_px: float | Sequence[float] = 20.0,
    *,
    step_px: float = 0.7,
    defocus: tuple[float, float] = (0.6, 1.4),
    contrast: float = 0.15,
    background: float | None = None,
    gain: float | None = None,
    peak_photons: float = 400.0,
    uneven: float = 0.0,
    n_dirt: int = 0,
    bit_depth: int | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, pd.DataFrame]:
    """A movie of diffusing beads of one appearance (or mixed sizes), with truth.

    Beads diffuse (Gaussian steps of ``step_px`` rms per axis per frame) inside the frame
    (reflected at a margin of one diameter) and never overlap (steps that would bring two
    beads closer than 1.2 diameters are refused), so each bead is one true track over the
    whole movie.

    Parameters
    ----------
    kind : str
        Bead appearance (:data:`APPEARANCES`).
    n_frames : int
        Frames.
    shape : (int, int)
        Frame shape (px).
    n_beads : int
        Beads in the field (fewer if they do not fit).
    diameter_px : float or sequence of float
        Bead diameter (px); several values make a mixed-size movie (each bead draws one).
    step_px : float
        Brownian step per axis per frame (px rms).
    defocus : (float, float)
        Brightfield kinds: each bead's phase weight is drawn uniformly in this range and
        drifts by ±10 % over the movie (the ring changes with z).
    contrast : float
        Brightfield: peak |ΔI|/I of a bead.
    background : float, optional
        Background photons per px (brightfield: illumination, default 2000; fluorescent:
        background, default 50).
    gain : float, optional
        ADU per photon; default: brightfield maps the background to 130 ADU (8-bit
        cameras), fluorescent 1.
    peak_photons : float
        Fluorescent kinds: peak photons per px above the background.
    uneven : float
        Relative amplitude of a smooth background variation (plus a linear ramp of the same
        size across the frame); 0 = flat.
    n_dirt : int
        Static dirt objects (smudges and specks that do not move).
    bit_depth : {8, 16, None}
        Output dtype; default 8 for brightfield kinds, 16 for fluorescent ones.
    seed : int
        Random seed.

    Returns
    -------
    movie : ndarray (t, y, x)
        Frames (uint8/uint16).
    truth : pandas.DataFrame
        ``frame, particle, y, x, diameter_px`` (px) for every bead in every frame.
    """
    if kind not in APPEARANCES:
        raise ValueError(f"kind must be one of {APPEARANCES}, got {kind!r}")
    from scipy.spatial import cKDTree

    rng = np.random.default_rng(seed)
    ny, nx = shape
    diams = np.atleast_1d(np.asarray(diameter_px, dtype=np.float64))
    bf = kind in _BRIGHTFIELD
    # place beads without overlap
    ys, xs, ds = [], [], []
    for _ in range(n_beads * 50):
        if len(ys) >= n_beads:
            break
        dd = float(rng.choice(diams))
        m = dd
        yy0, xx0 = rng.uniform(m, ny - 1 - m), rng.uniform(m, nx - 1 - m)
        if ys:
            dist = np.hypot(np.array(ys) - yy0, np.array(xs) - xx0)
            if np.any(dist < 1.4 * np.maximum(np.array(ds), dd)):
                continue
        ys.append(yy0)
        xs.append(xx0)
        ds.append(dd)
    y, x, d = np.array(ys), np.array(xs), np.array(ds)
    n = len(y)
    z0 = rng.uniform(defocus[0], defocus[1], n)
    zdrift = rng.uniform(-0.1, 0.1, n)
    # one profile table per (diameter, defocus level): defocus quantised to 8 levels
    zlev = np.linspace(defocus[0] * 0.9, defocus[1] * 1.1, 8)
    tables: dict[tuple[float, int], int] = {}
    profiles = []

    def table(dd, zi):
        key = (float(dd), int(zi))
        if key not in tables:
            tables[key] = len(profiles)
            profiles.append(bead_profile(kind, dd, defocus=float(zlev[zi])))
        return tables[key]

    if background is None:
        background = 2000.0 if bf else 50.0
    if bf:
        gain = 130.0 / background if gain is None else gain
        bit_depth = 8 if bit_depth is None else bit_depth
    else:
        gain = 1.0 if gain is None else gain
        bit_depth = 16 if bit_depth is None else bit_depth
    illum = np.ones(shape)
    if uneven:
        illum += _smooth_field(rng, shape, max(ny, nx) / 6, uneven)
        ramp = np.linspace(-1, 1, nx)[None, :] * 0.7 + np.linspace(-1, 1, ny)[:, None] * 0.3
        illum += uneven * ramp
    dirt = _dirt(rng, shape, n_dirt, float(diams.mean()), contrast) if n_dirt else 0.0
    rows, frames = [], []
    lo = d  # margin: one diameter
    for t in range(n_frames):
        if t > 0:
            ny_, nx_ = y + rng.normal(0, step_px, n), x + rng.normal(0, step_px, n)
            ny_ = np.clip(ny_, lo, ny - 1 - lo)
            nx_ = np.clip(nx_, lo, nx - 1 - lo)
            pairs = cKDTree(np.stack([ny_, nx_], 1)).query_pairs(1.2 * float(d.max()),
                                                                    output_type="ndarray")
            stay = np.zeros(n, bool)
            for i, j in pairs:
                if math.hypot(ny_[i] - ny_[j], nx_[i] - nx_[j]) < 1.2 * max(d[i], d[j]):
                    stay[i] = stay[j] = True
            y = np.where(stay, y, ny_)
            x = np.where(stay, x, nx_)
        frac = t / max(n_frames - 1, 1)
        z = z0 * (1 + zdrift * frac)
        zi = np.clip(np.searchsorted(zlev, z), 0, len(zlev) - 1)
        which = np.array([table(d[i], zi[i] if bf else 0) for i in range(n)], dtype=int)
        if kind == "gaussian":
            sig = d / 4.0
            mu = render_frame(shape, y, x, peak_photons * 2 * np.pi * sig**2, sigma_px=sig,
                              background=0.0)
        else:
            amp = np.full(n, contrast if bf else peak_photons)
            mu = render_beads(shape, y, x, amp, profiles, which)
        if bf:
            mu = background * illum * (1.0 + dirt + mu)
        else:
            mu = background * illum + peak_photons * dirt / max(contrast, 1e-9) * 0.5 + mu
        counts = rng.poisson(np.clip(mu, 0, None)).astype(np.float64)
        adu = counts * gain
        dtype = np.uint8 if bit_depth == 8 else np.uint16
        frames.append(np.clip(np.round(adu), 0, np.iinfo(dtype).max).astype(dtype))
        rows.append(pd.DataFrame({"frame": t, "particle": np.arange(n), "y": y, "x": x,
                                  "diameter_px": d}))
    truth = pd.concat(rows, ignore_index=True)
    truth.attrs.update(kind=kind, step_px=step_px)
    return np.stack(frames), truth


def measured_radial_profile(
    image: np.ndarray, centres: np.ndarray, r_max: int
) -> tuple[np.ndarray, np.ndarray]:
    """Mean radial profile (1-px bins) of the beads at ``centres``, minus the frame median.

    Parameters
    ----------
    image : ndarray (y, x)
        Frame.
    centres : ndarray (n, 2)
        Bead centres (y, x) in px.
    r_max : int
        Largest radius (px).

    Returns
    -------
    r : ndarray (r_max,)
        Bin centres 0, 1, … (px).
    p : ndarray (r_max,)
        Mean intensity minus the frame median per bin.
    """
    img = np.asarray(image, dtype=np.float64)
    med = float(np.median(img))
    acc = np.zeros(r_max)
    cnt = np.zeros(r_max)
    yy, xx = np.indices((2 * r_max + 1, 2 * r_max + 1))
    for cy, cx in np.asarray(centres, dtype=np.float64):
        iy, ix = int(round(cy)), int(round(cx))
        if min(iy, ix) < r_max or iy + r_max >= img.shape[0] or ix + r_max >= img.shape[1]:
            continue
        crop = img[iy - r_max:iy + r_max + 1, ix - r_max:ix + r_max + 1]
        rr = np.hypot(yy - r_max - (cy - iy), xx - r_max - (cx - ix))
        ri = np.round(rr).astype(int)
        m = ri < r_max
        acc += np.bincount(ri[m], crop[m], r_max)
        cnt += np.bincount(ri[m], None, r_max)
    return np.arange(r_max, dtype=np.float64), acc / np.maximum(cnt, 1) - med


def fit_profile_to(
    measured: np.ndarray,
    kinds: Sequence[str] = ("absorbing", "brightfield_dark", "brightfield_bright"),
    diameters: Sequence[float] | None = None,
) -> dict:
    """Best simulated brightfield profile for a measured one (grid search + least squares).

    The measured profile (1-px bins from r = 0, minus the background) is compared with the
    simulated profile averaged over the same 1-px annuli, for each kind, diameter (default
    4–24 px by 0.5) and defocus (0.25, 0.5, 1, 2); the amplitudes of the bead and of its halo
    (≥ 0) are the least-squares factors.

    Returns
    -------
    dict
        ``kind, diameter_px, defocus, amplitude, halo, rel_rms`` where ``rel_rms`` is the rms
        residual over the bins divided by the measured peak |contrast|.
    """
    m = np.asarray(measured, dtype=np.float64)
    nb = len(m)
    ds = np.arange(4.0, 24.01, 0.5) if diameters is None else np.asarray(diameters, float)
    best = None

    def annuli(r, p):
        idx = np.round(r).astype(int)
        w = r + 1e-9
        ok = idx < nb
        num = np.bincount(idx[ok], p[ok] * w[ok], nb)
        den = np.bincount(idx[ok], w[ok], nb)
        return num / np.maximum(den, 1e-12)

    for kind in kinds:
        for d in ds:
            for z in ((0.0,) if kind == "absorbing" else (0.25, 0.5, 1.0, 2.0)):
                r, p = bead_profile(kind, float(d), defocus=z, halo=0.0)
                a = d / 2.0
                s = _blur_sigma(d)
                h = np.exp(-((r - 1.6 * a) ** 2) / (2 * (0.3 * a + s) ** 2))
                q1, q2 = annuli(r, p), annuli(r, h)
                basis = np.stack([q1, q2], 1)
                coef, *_ = np.linalg.lstsq(basis, m, rcond=None)
                if coef[1] * np.sign(coef[0]) < 0:  # the halo is brighter than the background
                    coef = np.array([float(q1 @ m / max(q1 @ q1, 1e-12)), 0.0])
                res = float(np.sqrt(np.mean((m - basis @ coef) ** 2)) / np.abs(m).max())
                if best is None or res < best["rel_rms"]:
                    best = dict(kind=kind, diameter_px=float(d), defocus=float(z),
                                amplitude=float(coef[0]), halo=float(coef[1] / coef[0]),
                                rel_rms=res)
    return best
