"""Synthetic bead movies and isolated spots with known truth, and the Gaussian-spot CRLB.

Forward model (all intensities in photons per pixel, positions in pixels):

* **Motion**: 2-D Brownian motion, each axis steps ``N(0, 2 D dt)`` per frame
  (``D`` in µm²/s converted with the pixel size), plus a constant drift.
* **Profile**: ``"gaussian"``, a pixel-integrated isotropic Gaussian
  (erf differences, exact integration over the pixel square) holding ``photons``
  photons; or ``"ring"``, a brightfield-like bead: a dark Gaussian core of width
  ``sigma_px`` holding ``-photons`` plus a bright Gaussian annulus of radius
  ``ring_radius_px`` holding ``+photons`` (zero net signal), supersampled 4×4 per pixel.
* **Noise**: Poisson shot noise on ``background + signal`` (clipped at 0), plus
  Gaussian read noise (e⁻ rms), then ``gain`` ADU/photon, ``offset`` ADU, rounding and
  clipping to the camera's bit depth (saturation).

Coordinates are (y, x) with the origin at the centre of pixel (0, 0) (as trackpy): pixel
``(i, j)`` covers ``[i-1/2, i+1/2) × [j-1/2, j+1/2)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.special import erf

__all__ = [
    "simulate_movie",
    "simulate_spots",
    "render_frame",
    "crlb_gaussian",
    "gaussian_pixel_weights",
]

_SQRT2 = math.sqrt(2.0)


def gaussian_pixel_weights(centre: np.ndarray, sigma: float, coords: np.ndarray) -> np.ndarray:
    """Fraction of a 1-D Gaussian falling in each unit pixel.

    Parameters
    ----------
    centre : ndarray, shape (n,)
        Gaussian centres (px).
    sigma : float or ndarray (n,)
        Gaussian standard deviation (px).
    coords : ndarray, shape (n, k) or (k,)
        Pixel centre coordinates (px).

    Returns
    -------
    ndarray, shape (n, k)
        ``½[erf((u+½-c)/(√2σ)) - erf((u-½-c)/(√2σ))]``.
    """
    c = np.asarray(centre, dtype=np.float64)[:, None]
    s = np.asarray(sigma, dtype=np.float64)
    s = s[:, None] if s.ndim else s
    u = np.asarray(coords, dtype=np.float64)
    a = (u + 0.5 - c) / (_SQRT2 * s)
    b = (u - 0.5 - c) / (_SQRT2 * s)
    return 0.5 * (erf(a) - erf(b))


def _ring_values(dy: np.ndarray, dx: np.ndarray, sigma: float, radius: float, width: float):
    """Zero-net brightfield bead profile per photon: annulus (+1) minus core (-1), per px²."""
    r2 = dy * dy + dx * dx
    core = np.exp(-r2 / (2 * sigma**2)) / (2 * np.pi * sigma**2)
    r = np.sqrt(r2)
    # normalisation of exp(-(r-R)^2 / 2w^2) over the plane: 2π ∫ r exp(..) dr
    norm = 2 * np.pi * (
        width**2 * np.exp(-(radius**2) / (2 * width**2))
        + radius * width * math.sqrt(np.pi / 2) * (1 + erf(radius / (_SQRT2 * width)))
    )
    ring = np.exp(-((r - radius) ** 2) / (2 * width**2)) / norm
    return ring - core


def render_frame(
    shape: tuple[int, int],
    y: np.ndarray,
    x: np.ndarray,
    photons: np.ndarray,
    *,
    profile: str = "gaussian",
    sigma_px: float | np.ndarray = 1.5,
    ring_radius_px: float | None = None,
    ring_width_px: float | None = None,
    background: float | np.ndarray = 10.0,
) -> np.ndarray:
    """Noise-free expected photons per pixel for beads at ``(y, x)``.

    Parameters
    ----------
    shape : (int, int)
        Frame shape (ny, nx).
    y, x : ndarray (n,)
        Bead centres (px, origin at the centre of pixel (0, 0)).
    photons : ndarray (n,)
        Photons per bead (Gaussian: total; ring: photons in the dark core).
    profile : {"gaussian", "ring"}
        Bead profile.
    sigma_px : float or ndarray (n,)
        Gaussian σ, or the ring's core σ (px).
    ring_radius_px, ring_width_px : float, optional
        Ring radius and its Gaussian half-width (px); default ``2.2 σ`` and ``0.6 σ``.
    background : float or ndarray (ny, nx)
        Background photons per pixel.

    Returns
    -------
    ndarray (ny, nx) float64
        Expected photons per pixel (clipped at 0).
    """
    ny, nx = shape
    img = np.zeros(ny * nx, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64).ravel()
    x = np.asarray(x, dtype=np.float64).ravel()
    ph = np.broadcast_to(np.asarray(photons, dtype=np.float64), y.shape)
    sig = np.broadcast_to(np.asarray(sigma_px, dtype=np.float64), y.shape)
    if y.size:
        smax = float(sig.max())
        if profile == "gaussian":
            r = int(math.ceil(4.5 * smax)) + 1
            off = np.arange(-r, r + 1)
            cy, cx = np.round(y).astype(int), np.round(x).astype(int)
            uy = cy[:, None] + off  # (n, w)
            ux = cx[:, None] + off
            wy = gaussian_pixel_weights(y, sig, uy)
            wx = gaussian_pixel_weights(x, sig, ux)
            vals = ph[:, None, None] * wy[:, :, None] * wx[:, None, :]
        elif profile == "ring":
            rad = 2.2 * sig if ring_radius_px is None else np.broadcast_to(ring_radius_px, y.shape)
            wid = 0.6 * sig if ring_width_px is None else np.broadcast_to(ring_width_px, y.shape)
            r = int(math.ceil(float(np.max(rad + 3.5 * wid)))) + 1
            r = max(r, int(math.ceil(4 * smax)) + 1)
            off = np.arange(-r, r + 1)
            cy, cx = np.round(y).astype(int), np.round(x).astype(int)
            uy = cy[:, None] + off
            ux = cx[:, None] + off
            ss = 4  # supersampling per axis
            sub = (np.arange(ss) + 0.5) / ss - 0.5
            dy = (uy - y[:, None])[:, :, None] + sub  # (n, w, ss)
            dx = (ux - x[:, None])[:, :, None] + sub
            dyy = dy[:, :, None, :, None]
            dxx = dx[:, None, :, None, :]
            vals = _ring_values(
                dyy,
                dxx,
                sig[:, None, None, None, None],
                np.asarray(rad)[:, None, None, None, None],
                np.asarray(wid)[:, None, None, None, None],
            ).mean(axis=(3, 4))
            vals = ph[:, None, None] * vals
        else:
            raise ValueError(f"profile must be 'gaussian' or 'ring', got {profile!r}")
        iy = np.broadcast_to(uy[:, :, None], vals.shape)
        ix = np.broadcast_to(ux[:, None, :], vals.shape)
        ok = (iy >= 0) & (iy < ny) & (ix >= 0) & (ix < nx)
        img += np.bincount((iy[ok] * nx + ix[ok]), weights=vals[ok], minlength=ny * nx)
    img = img.reshape(ny, nx) + background
    return np.clip(img, 0.0, None)


def _digitize(
    mu: np.ndarray,
    rng: np.random.Generator,
    read_noise: float,
    gain: float,
    offset: float,
    bit_depth: int | None,
) -> np.ndarray:
    counts = rng.poisson(mu).astype(np.float64)
    if read_noise > 0:
        counts += rng.normal(0.0, read_noise, size=counts.shape)
    adu = counts * gain + offset
    if bit_depth is None:
        return adu.astype(np.float32)
    if bit_depth not in (8, 16):
        raise ValueError(f"bit_depth must be 8, 16 or None, got {bit_depth}")
    dtype = np.uint8 if bit_depth == 8 else np.uint16
    return np.clip(np.round(adu), 0, np.iinfo(dtype).max).astype(dtype)


def simulate_movie(
    n_frames: int,
    shape: tuple[int, int],
    n_beads: int,
    D_um2_s: float,
    pixel_size_um: float,
    fps: float,
    *,
    profile: str = "gaussian",
    sigma_px: float = 1.5,
    photons: float | tuple[float, float] = 1000.0,
    background: float = 10.0,
    read_noise: float = 1.0,
    gain: float = 1.0,
    offset: float = 0.0,
    drift_um_s: tuple[float, float] = (0.0, 0.0),
    enter_leave: bool = True,
    bit_depth: int | None = 16,
    ring_radius_px: float | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, pd.DataFrame]:
    """Simulate a movie of diffusing beads with known positions.

    Parameters
    ----------
    n_frames : int
        Number of frames.
    shape : (int, int)
        Frame shape (ny, nx) in pixels.
    n_beads : int
        Mean number of beads in the field of view.
    D_um2_s : float
        Diffusion coefficient (µm²/s).
    pixel_size_um : float
        Pixel size (µm/px).
    fps : float
        Frame rate (1/s).
    profile : {"gaussian", "ring"}
        Fluorescent Gaussian spot or brightfield ring (dark core + bright annulus).
    sigma_px : float
        Gaussian σ / ring core σ (px).
    photons : float or (float, float)
        Photons per bead; a pair draws each bead's value log-uniformly in that range.
    background : float
        Background photons per pixel (use ≳ core depth ``photons/(2πσ²)`` for rings).
    read_noise : float
        Gaussian read noise (photo-electrons rms).
    gain, offset : float
        Camera gain (ADU per photon) and offset (ADU).
    drift_um_s : (float, float)
        Constant drift velocity (vy, vx) in µm/s, added to every bead.
    enter_leave : bool
        If True, beads diffuse in a larger periodic domain and enter/leave the field of
        view (each uninterrupted visit of a bead gets its own ``particle`` id); if False,
        beads are reflected at the frame edges and never leave.
    bit_depth : {8, 16, None}
        Output dtype uint8/uint16 (rounded, saturating), or None for float32 ADU.
    ring_radius_px : float, optional
        Ring radius (default ``2.2 σ``).
    seed : int
        Random seed (the movie is a deterministic function of the arguments).

    Returns
    -------
    movie : ndarray (t, y, x)
        uint8/uint16 (or float32) frames.
    truth : pandas.DataFrame
        Columns ``frame, particle, y, x, photons`` (px, origin at the centre of pixel
        (0, 0)) for every bead whose centre lies inside the frame.
    """
    rng = np.random.default_rng(seed)
    ny, nx = shape
    dt = 1.0 / fps
    step = math.sqrt(2.0 * D_um2_s * dt) / pixel_size_um  # px rms per axis per frame
    vy, vx = (v * dt / pixel_size_um for v in drift_um_s)
    if enter_leave:
        margin = int(math.ceil(6 * sigma_px + 4 * step + 4))
    else:
        margin = 0
    lo_y, hi_y = -0.5 - margin, ny - 0.5 + margin
    lo_x, hi_x = -0.5 - margin, nx - 0.5 + margin
    area_ratio = (hi_y - lo_y) * (hi_x - lo_x) / float(ny * nx)
    n_total = max(int(round(n_beads * area_ratio)), 0)
    y = rng.uniform(lo_y, hi_y, n_total)
    x = rng.uniform(lo_x, hi_x, n_total)
    if isinstance(photons, Sequence) and not isinstance(photons, str):
        lo, hi = float(photons[0]), float(photons[1])
        ph = np.exp(rng.uniform(math.log(lo), math.log(hi), n_total))
    else:
        ph = np.full(n_total, float(photons))
    visit = np.zeros(n_total, dtype=np.int64)  # visit counter per bead
    was_inside = np.zeros(n_total, dtype=bool)
    frames, rows = [], []
    dtype_out = None
    for t in range(n_frames):
        if t > 0:
            y = y + rng.normal(0.0, step, n_total)
            x = x + rng.normal(0.0, step, n_total)
            if enter_leave:
                wy = np.floor((y - lo_y) / (hi_y - lo_y))
                wx = np.floor((x - lo_x) / (hi_x - lo_x))
                wrapped = (wy != 0) | (wx != 0)
                y = np.where(wrapped, y - wy * (hi_y - lo_y), y)
                x = np.where(wrapped, x - wx * (hi_x - lo_x), x)
            else:
                y = _reflect(y, lo_y, hi_y)
                x = _reflect(x, lo_x, hi_x)
        yo, xo = y + vy * t, x + vx * t  # drift moves the whole sample
        mu = render_frame(
            shape, yo, xo, ph, profile=profile, sigma_px=sigma_px,
            ring_radius_px=ring_radius_px, background=background,
        )
        frame = _digitize(mu, rng, read_noise, gain, offset, bit_depth)
        dtype_out = frame.dtype
        frames.append(frame)
        inside = (yo >= -0.5) & (yo < ny - 0.5) & (xo >= -0.5) & (xo < nx - 0.5)
        visit += inside & ~was_inside  # a new visit starts when a bead enters the view
        was_inside = inside
        idx = np.flatnonzero(inside)
        rows.append(
            pd.DataFrame(
                {
                    "frame": t,
                    "bead": idx,
                    "seg": visit[idx],
                    "y": yo[idx],
                    "x": xo[idx],
                    "photons": ph[idx],
                }
            )
        )
    movie = np.stack(frames) if frames else np.zeros((0, ny, nx), dtype=dtype_out or np.uint16)
    truth = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(
        columns=["frame", "bead", "seg", "y", "x", "photons"]
    )
    # a particle = one uninterrupted visit of a bead to the field of view
    key = truth["bead"].to_numpy() * (n_frames + 1) + truth["seg"].to_numpy()
    _, particle = np.unique(key, return_inverse=True)
    truth.insert(1, "particle", particle.astype(np.int64))
    truth = truth.drop(columns=["bead", "seg"])
    truth = truth.sort_values(["frame", "particle"], ignore_index=True)
    truth.attrs.update(
        D_um2_s=D_um2_s, pixel_size_um=pixel_size_um, fps=fps, profile=profile,
        sigma_px=sigma_px, background=background, step_px=step,
    )
    return movie, truth


def _reflect(v: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Reflect coordinates into [lo, hi] (any number of bounces)."""
    span = hi - lo
    w = np.mod(v - lo, 2 * span)
    return lo + np.where(w > span, 2 * span - w, w)


def simulate_spots(
    n_spots: int,
    photons: float,
    *,
    sigma_px: float = 1.5,
    background: float = 10.0,
    size: int = 64,
    read_noise: float = 0.0,
    profile: str = "gaussian",
    seed: int = 0,
) -> tuple[np.ndarray, pd.DataFrame]:
    """Isolated single spots, one per frame, for localisation-accuracy benchmarks.

    Each frame is ``size × size`` with one spot at ``(size/2 + U(-½, ½), size/2 + U(-½, ½))``
    (as in baselines §3), Poisson noise (+ optional read noise), float32 photon counts.

    Parameters
    ----------
    n_spots : int
        Number of frames (one spot each).
    photons : float
        Photons per spot.
    sigma_px : float
        Gaussian σ (px).
    background : float
        Background photons per pixel.
    size : int
        Frame side (px).
    read_noise : float
        Gaussian read noise (e⁻ rms).
    profile : {"gaussian", "ring"}
        Spot profile.
    seed : int
        Random seed.

    Returns
    -------
    stack : ndarray (n_spots, size, size) float32
        Photon counts.
    truth : pandas.DataFrame
        Columns ``frame, y, x, photons`` (px).
    """
    rng = np.random.default_rng(seed)
    c = size // 2
    y = c + rng.uniform(-0.5, 0.5, n_spots)
    x = c + rng.uniform(-0.5, 0.5, n_spots)
    stack = np.empty((n_spots, size, size), dtype=np.float32)
    for i in range(n_spots):
        mu = render_frame(
            (size, size), y[i : i + 1], x[i : i + 1], np.array([photons]),
            profile=profile, sigma_px=sigma_px, background=background,
        )
        stack[i] = _digitize(mu, rng, read_noise, 1.0, 0.0, None)
    truth = pd.DataFrame({"frame": np.arange(n_spots), "y": y, "x": x, "photons": float(photons)})
    return stack, truth


def crlb_gaussian(
    sigma: float,
    photons: float,
    background: float,
    size: int = 15,
    *,
    read_noise: float = 0.0,
    offset: tuple[float, float] = (0.0, 0.0),
    fit: Sequence[str] = ("y", "x", "photons", "background"),
) -> float:
    """Cramér–Rao lower bound on the per-axis position error of a pixel-integrated Gaussian.

    Fisher information ``I_ij = Σ_p (∂μ_p/∂θ_i)(∂μ_p/∂θ_j) / v_p`` over a ``size × size``
    window, with ``v_p = μ_p + read_noise²`` (Poisson, plus Gaussian read noise) and
    ``μ_p = background + photons · E_y(p) E_x(p)``.

    Parameters
    ----------
    sigma : float
        PSF σ (px).
    photons : float
        Photons in the spot.
    background : float
        Background photons per pixel.
    size : int
        Window side (px); 15 or more makes the bound independent of the window for σ ≲ 2.
    read_noise : float
        Read noise (e⁻ rms).
    offset : (float, float)
        Spot position relative to the centre of the window's central pixel (px).
    fit : sequence of str
        Unknown parameters, a subset of ``y, x, photons, background, sigma``; the
        others are taken as known.

    Returns
    -------
    float
        ``sqrt([I⁻¹]_xx)`` in px: the smallest achievable rms error per axis of an
        unbiased estimator.
    """
    c = size // 2
    u = np.arange(size, dtype=np.float64)
    y0, x0 = c + offset[0], c + offset[1]
    ey = gaussian_pixel_weights(np.array([y0]), sigma, u)[0]
    ex = gaussian_pixel_weights(np.array([x0]), sigma, u)[0]
    dey, desy = _gauss_derivs(y0, sigma, u)
    dex, desx = _gauss_derivs(x0, sigma, u)
    mu = background + photons * np.outer(ey, ex)
    d = {
        "y": photons * np.outer(dey, ex),
        "x": photons * np.outer(ey, dex),
        "photons": np.outer(ey, ex),
        "background": np.ones_like(mu),
        "sigma": photons * (np.outer(desy, ex) + np.outer(ey, desx)),
    }
    names = list(fit)
    if "x" not in names:
        raise ValueError("fit must include 'x'")
    J = np.stack([d[n].ravel() for n in names], axis=1)
    v = (mu + read_noise**2).ravel()
    info = J.T @ (J / v[:, None])
    cov = np.linalg.inv(info)
    k = names.index("x")
    return float(math.sqrt(cov[k, k]))


def _gauss_derivs(c: float, sigma: float, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """d/dc and d/dσ of the 1-D pixel-integrated Gaussian weights."""
    a = u + 0.5 - c
    b = u - 0.5 - c
    ga = np.exp(-(a * a) / (2 * sigma**2))
    gb = np.exp(-(b * b) / (2 * sigma**2))
    k = 1.0 / (math.sqrt(2 * math.pi) * sigma)
    d_c = -k * (ga - gb)
    d_s = -k / sigma * (a * ga - b * gb)
    return d_c, d_s
