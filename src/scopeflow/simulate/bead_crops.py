"""Training crops for BeadNet: every bead appearance, at the network's working scale.

Each crop (square, ``size`` px) holds beads of one appearance
(:data:`scopeflow.simulate.bead_appearance.APPEARANCES`, or the simple Gaussian / dark
Gaussian / ring models of :func:`scopeflow.simulate.beads.render_frame`) with:

* diameter 2–13 px (log-uniform; 25 % of crops mix a second size 1.5–2.6× the first,
  capped at 13 px). Beads larger than 13 px are reduced to this range before inference
  (:func:`scopeflow.models.beadnet.scale_for_diameter`), so the blur relative to the
  diameter is drawn as after such a reduction (PSF σ 0.08 d, then a Gaussian blur of
  0.2–1.0 px over the whole crop);
* brightfield defocus 0.15–2.2 (phase weight; both ring polarities are separate kinds),
  halo 0–0.15, contrast so that the peak is max(2.5, 16/d)–40 noise σ; fluorescent peak
  max(2.5, 16/d)–60 noise σ on 2–300 photons/px (a 2 px bead needs an 8σ peak to differ from
  the noise's own maxima);
* 0 to ~0.35 × the crop's bead capacity (15 % of crops: none), never closer than 1.1
  diameters (beads cut by the crop's edges included);
* uneven illumination (40 % of brightfield crops: smooth field + ramp, up to ±20 %),
  static dirt (30 %: elongated smudges and specks, for beads ≥ 5 px), Poisson noise,
  0–3 e⁻ read noise, 8-bit quantisation (30 % of brightfield crops).

The target is a Gaussian blob (peak 1, σ = clip(0.25 d, 0.6, 1) px) at every bead centre.

Coordinates (y, x) in px, origin at the centre of pixel (0, 0).
"""

from __future__ import annotations

import math

import numpy as np

from scopeflow.simulate.bead_appearance import _dirt, _smooth_field, bead_profile, render_beads

__all__ = ["KINDS", "target_map", "simulate_crop"]

#: appearance kinds of the training crops and their probabilities
KINDS = {
    "brightfield_bright": 0.2, "brightfield_dark": 0.17, "absorbing": 0.1, "airy": 0.1,
    "defocused": 0.13, "gaussian": 0.1, "legacy": 0.2,
}
D_MIN, D_MAX = 2.0, 13.0
_BF = ("brightfield_bright", "brightfield_dark", "absorbing")
_PROFILES: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}


D_REF = 13.0
#: brightfield phase weights and halo amplitudes of the profile bank
DEFOCUS_LEVELS = np.linspace(0.15, 2.2, 10)
HALO_LEVELS = (0.0, 0.05, 0.1, 0.15)


def _profile(kind: str, defocus_i: int = 0, halo_i: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Profile of a ``D_REF`` px bead with PSF σ 0.08·d (scale-free: for a diameter d use
    radii × d / D_REF), cached; support trimmed where |p| < 1e-3.

    With the PSF proportional to the diameter the brightfield, absorbing, Airy and
    defocused profiles are functions of r / d only, so one table per (kind, defocus, halo)
    serves every size; the remaining blur (PSF offset, pixel size) is added to the rendered
    crop by a Gaussian filter.
    """
    key = (kind, int(defocus_i), int(halo_i))
    if key not in _PROFILES:
        r, p = bead_profile(kind, D_REF, defocus=float(DEFOCUS_LEVELS[defocus_i]),
                            halo=float(HALO_LEVELS[halo_i]), blur_px=0.08 * D_REF)
        big = np.flatnonzero(np.abs(p) >= 1e-3)
        n = int(big[-1]) + 2 if len(big) else 2
        _PROFILES[key] = (r[:n] / D_REF, p[:n])
    return _PROFILES[key]


def _render(shape, rng, kind, y, x, d, amp, blur_extra):
    """Beads of one kind (profile × amp), per-bead defocus (brightfield), then extra blur."""
    from scipy import ndimage

    if not len(d):
        return np.zeros(shape)
    bf = kind in ("brightfield_bright", "brightfield_dark")
    halo_i = int(rng.integers(0, len(HALO_LEVELS))) if kind in _BF else 0
    zi = rng.integers(0, len(DEFOCUS_LEVELS), len(d)) if bf else np.zeros(len(d), int)
    profs = []
    for i in range(len(d)):
        rr, pp = _profile(kind, int(zi[i]), halo_i)
        profs.append((rr * d[i], pp))
    img = render_beads(shape, y, x, amp, profs, np.arange(len(d)), supersample=1)
    return ndimage.gaussian_filter(img, blur_extra, mode="constant") if blur_extra > 0 else img


def target_map(shape: tuple[int, int], y: np.ndarray, x: np.ndarray,
               sigma: np.ndarray | float) -> np.ndarray:
    """Max over beads of a Gaussian blob (peak 1, σ per bead) at each centre, float32."""
    ny, nx = shape
    t = np.zeros(shape, np.float32)
    sig = np.broadcast_to(np.asarray(sigma, dtype=np.float64), np.shape(y))
    for yi, xi, s in zip(y, x, sig, strict=True):
        r = int(math.ceil(3 * s))
        cy, cx = int(round(yi)), int(round(xi))
        y0, y1 = max(cy - r, 0), min(cy + r + 1, ny)
        x0, x1 = max(cx - r, 0), min(cx + r + 1, nx)
        if y0 >= y1 or x0 >= x1:
            continue
        gy = np.exp(-((np.arange(y0, y1) - yi) ** 2) / (2 * s * s))
        gx = np.exp(-((np.arange(x0, x1) - xi) ** 2) / (2 * s * s))
        np.maximum(t[y0:y1, x0:x1], np.outer(gy, gx), out=t[y0:y1, x0:x1])
    return t


def _place(rng, size: int, diam: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ys, xs, ds = [], [], []
    for _ in range(n * 20):
        if len(ys) >= n:
            break
        d = float(rng.choice(diam))
        yy, xx = rng.uniform(-0.4 * d, size - 1 + 0.4 * d, 2)
        if ys and np.any(np.hypot(np.array(ys) - yy, np.array(xs) - xx)
                         < 1.1 * np.maximum(np.array(ds), d)):
            continue
        ys.append(yy)
        xs.append(xx)
        ds.append(d)
    return np.array(ys), np.array(xs), np.array(ds)


def _legacy(rng, size, y, x, d):
    """Gaussian bright/dark spots and rings of :func:`scopeflow.simulate.beads.render_frame`."""
    from scopeflow.simulate.beads import render_frame

    sub = rng.choice(["bright", "dark", "ring"], p=[0.5, 0.2, 0.3])
    sigma = float(np.clip(d.mean() / 4.0, 0.6, 3.0)) if len(d) else 1.5
    n = len(y)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    if sub == "bright":
        bg = float(np.exp(rng.uniform(np.log(2), np.log(100))))
        lo = max(120.0, 6.0 * math.sqrt(bg) * sigma * 3.0)
        ph = np.exp(rng.uniform(np.log(lo), np.log(max(lo * 1.5, 8000.0)), n))
        mu = render_frame((size, size), y, x, ph, sigma_px=sigma, background=bg)
    else:
        bg = float(np.exp(rng.uniform(np.log(50), np.log(2000))))
        contrast = np.exp(rng.uniform(np.log(0.06), np.log(0.6), n))
        ph = contrast * bg * 2 * np.pi * sigma**2
        tilt = (1.0 + 0.15 * rng.uniform(-1, 1) * (yy / size - 0.5)
                + 0.15 * rng.uniform(-1, 1) * (xx / size - 0.5))
        prof, sign = ("gaussian", -1.0) if sub == "dark" else ("ring", 1.0)
        radius = float(rng.uniform(1.8, 2.8)) * sigma if prof == "ring" else None
        mu = render_frame((size, size), y, x, sign * ph, profile=prof, sigma_px=sigma,
                          ring_radius_px=radius, background=bg * tilt)
    return mu


def simulate_crop(rng: np.random.Generator, size: int = 64):
    """One training crop.

    Returns
    -------
    image : ndarray (size, size) float64
        Raw counts (photons, or 8-bit ADU).
    target : ndarray (size, size) float32
        Centre blobs.
    truth : ndarray (n, 2)
        (y, x) of the beads whose centre lies inside the crop.
    diameters : ndarray (n,)
        Their diameters (px).
    """
    kinds = list(KINDS)
    kind = str(rng.choice(kinds, p=np.array(list(KINDS.values())) / sum(KINDS.values())))
    lo = 3.0 if kind in _BF or kind == "defocused" else D_MIN
    d0 = float(np.exp(rng.uniform(np.log(lo), np.log(D_MAX))))
    diam = np.array([d0])
    if rng.random() < 0.25:
        diam = np.array([d0, min(D_MAX, d0 * rng.uniform(1.5, 2.6))])
    cap = size * size / (np.pi * (0.6 * diam.mean() + 1.0) ** 2)
    n = 0 if rng.random() < 0.15 else int(rng.integers(0, max(2, int(0.35 * cap) + 1)))
    # lowest peak SNR: tiny beads need a higher peak to stand out of the noise's own maxima
    snr_lo = max(2.5, 16.0 / d0)
    y, x, d = _place(rng, size, diam, n)
    shape = (size, size)
    read_noise = float(rng.uniform(0, 3))
    quantise = False
    if kind == "legacy":
        mu = _legacy(rng, size, y, x, d)
    elif kind in _BF:
        bg = float(np.exp(rng.uniform(np.log(200), np.log(6000))))
        noise_rel = 1.0 / math.sqrt(bg)
        contrast = float(np.exp(rng.uniform(np.log(snr_lo), np.log(40)))) * noise_rel
        contrast = min(contrast, 0.6)
        amp = contrast * rng.uniform(0.7, 1.3, len(d))
        beads = _render(shape, rng, kind, y, x, d, amp, float(rng.uniform(0.3, 1.0)))
        illum = np.ones(shape)
        if rng.random() < 0.4:
            u = rng.uniform(0.03, 0.2)
            illum = illum + _smooth_field(rng, shape, size / rng.uniform(1.5, 4), u)
            illum = illum + u * (np.linspace(-1, 1, size)[None, :] * rng.uniform(-1, 1)
                                 + np.linspace(-1, 1, size)[:, None] * rng.uniform(-1, 1))
        dirt = 0.0
        if rng.random() < 0.3 and d0 >= 5:
            dirt = _dirt(rng, shape, int(rng.integers(1, 4)), d0, contrast)
        mu = bg * np.clip(illum, 0.2, None) * (1.0 + dirt + beads)
        quantise = rng.random() < 0.3
        if quantise:
            read_noise = 0.0
    else:
        bg = float(np.exp(rng.uniform(np.log(2), np.log(300))))
        peak = float(np.exp(rng.uniform(np.log(snr_lo), np.log(60)))) * math.sqrt(bg + 4.0)
        amp = peak * rng.uniform(0.6, 1.4, len(d))
        beads = _render(shape, rng, kind, y, x, d, amp, float(rng.uniform(0.2, 0.7)))
        mu = bg * (1.0 + 0.1 * rng.uniform(-1, 1) * np.linspace(-1, 1, size)[None, :]) + beads
        if rng.random() < 0.2 and d0 >= 5:
            mu = mu + 0.5 * peak * np.abs(_dirt(rng, shape, int(rng.integers(1, 3)), d0, 1.0))
    mu = np.broadcast_to(mu, shape)
    img = rng.poisson(np.clip(mu, 0, None)).astype(np.float64)
    if read_noise > 0:
        img += rng.normal(0, read_noise, shape)
    if quantise:
        img = np.clip(np.round(img * 130.0 / max(float(np.median(mu)), 1.0)), 0, 255)
    sig_t = np.clip(0.25 * d, 0.6, 1.0) if len(d) else np.zeros(0)
    inside = (y >= -0.5) & (y < size - 0.5) & (x >= -0.5) & (x < size - 0.5)
    truth = np.stack([y, x], 1)[inside] if len(y) else np.zeros((0, 2))
    return img, target_map(shape, y, x, sig_t), truth, d[inside] if len(d) else np.zeros(0)
