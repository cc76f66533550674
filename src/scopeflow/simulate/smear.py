"""Physical simulator of Octopi DPC blood-smear acquisitions with known truth.

Forward model (deterministic from a seed):

1. **Phantom.** Red blood cells are biconcave discs with the Evans–Fung thickness profile
   ``h(ρ) = s·sqrt(1 − ρ²)·(C0 + C1 ρ² + C2 ρ⁴)`` (C0 = 0.81, C1 = 7.83, C2 = −4.39 µm for a
   7.82 µm cell; ``s = D/7.82`` scales other diameters), diameter 6.5–8.5 µm, slight
   ellipticity and random rotation. Phase ``φ = 2π/λ · Δn · h`` (Δn ≈ 0.06 → peak ≈ 1.8 rad
   at 0.525 µm). Cells are placed by random sequential addition at a target area fraction;
   most only touch, a few overlap (phases add; the label of an overlapping pixel is the cell
   placed last, the "top" one).
2. **Imaging.** Abbe (partially coherent) imaging of the thin transmission
   ``exp(iφ − μ)``: each illumination half (left: source points with ``f_x > 0``) is a set of
   mutually incoherent plane waves (an LED-matrix-like source filling ``na_illum``); for each
   source point the object spectrum passes the shifted pupil ``P(f + s)`` (radius NA/λ,
   optionally multiplied by an angular-spectrum defocus kernel) and the intensities add.
   This is exact for thin objects (no weak-object approximation).
3. **Camera.** Smooth radial vignetting (centre and strength slightly different per
   channel), Poisson photon noise (``full_well`` electrons at full scale), Gaussian read
   noise, 8-bit quantization.

Conventions: arrays (y, x), origin at the centre of pixel (0, 0); lengths in µm, phase in
radians; spatial frequencies as :func:`numpy.fft.fftfreq` (cycles/µm). The "left" half matches
:mod:`scopeflow.smear.dpc`.
"""

from __future__ import annotations


import numpy as np
import scipy.fft as sfft


__all__ = [
    "EVANS_FUNG_UM",
    "camera",
    "image_halves",
    "rbc_phantom",
    "rbc_thickness",
    "simulate_fov",
    "source_points",
]

#: Evans & Fung (1972) mean RBC shape: diameter D and coefficients C0, C1, C2 (µm).
EVANS_FUNG_UM = {"D": 7.82, "C0": 0.81, "C1": 7.83, "C2": -4.39}

DEFAULTS = {
    "pixel_size_um": 0.333,  # Octopi 20x, 50 mm tube lens, 1.85 µm sensor
    "na": 0.4,
    "wavelength_um": 0.525,  # green LED
    "density": 0.45,
}


def rbc_thickness(rho: np.ndarray, diameter_um: float = EVANS_FUNG_UM["D"]) -> np.ndarray:
    """Evans–Fung RBC thickness (µm) at normalized radius ``rho = r / (D/2)`` (0 outside)."""
    rho = np.asarray(rho, dtype=np.float64)
    r2 = np.clip(rho * rho, 0.0, 1.0)
    s = diameter_um / EVANS_FUNG_UM["D"]
    h = (
        s
        * np.sqrt(1.0 - r2)
        * (EVANS_FUNG_UM["C0"] + EVANS_FUNG_UM["C1"] * r2 + EVANS_FUNG_UM["C2"] * r2 * r2)
    )
    return np.where(rho < 1.0, h, 0.0)


def rbc_phantom(
    shape: tuple[int, int],
    pixel_size_um: float,
    rng: np.random.Generator,
    *,
    density: float = 0.45,
    diameter_um: tuple[float, float] = (6.5, 8.5),
    ellipticity: float = 0.08,
    overlap_fraction: float = 0.03,
    delta_n: float = 0.06,
    delta_n_sd: float = 0.0,
    max_attempts_per_cell: int = 40,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict]]:
    """Thickness map and instance labels of a random RBC monolayer.

    Parameters
    ----------
    shape : (int, int)
        Image shape (ny, nx).
    pixel_size_um : float
        Pixel size (µm).
    rng : numpy.random.Generator
        Random generator (all randomness comes from it).
    density : float
        Target fraction of the area covered by cells (random sequential addition saturates
        near 0.5; 0.3–0.45 looks like a good monolayer).
    diameter_um : (float, float)
        Uniform range of cell diameters (µm).
    ellipticity : float
        Maximum relative difference of the semi-axes from the mean radius.
    overlap_fraction : float
        Fraction of cells allowed to overlap a neighbour (centre distance down to 0.7 of
        the sum of radii); the other cells may at most touch.
    delta_n, delta_n_sd : float
        Refractive-index difference cell − medium: mean and per-cell standard deviation.
    max_attempts_per_cell : int
        Placement attempts per target cell before giving up.

    Returns
    -------
    thickness : numpy.ndarray
        float32 (y, x) cell thickness in µm (overlaps add).
    opd : numpy.ndarray
        float32 (y, x) optical path difference Σ Δn·h in µm (phase = 2π/λ · opd).
    labels : numpy.ndarray
        uint32 (y, x) instance labels 1..N (0 = background); overlapping pixels belong to the
        cell placed last.
    cells : list of dict
        Per label: ``label, y_px, x_px`` (centre, pixel-centre origin), ``diameter_um``,
        ``semi_axes_px``, ``angle_rad``, ``delta_n``.
    """
    ny, nx = int(shape[0]), int(shape[1])
    d_lo, d_hi = diameter_um
    mean_r_px = 0.25 * (d_lo + d_hi) / pixel_size_um
    margin = 0.5 * d_hi / pixel_size_um
    ext_area = (ny + 2 * margin) * (nx + 2 * margin)
    # expected cell area ~ π r² with r uniform in [r_lo, r_hi]
    r_lo, r_hi = 0.5 * d_lo / pixel_size_um, 0.5 * d_hi / pixel_size_um
    mean_area = np.pi * (r_lo * r_lo + r_lo * r_hi + r_hi * r_hi) / 3.0
    n_target = round(density * ext_area / mean_area)
    del mean_r_px

    cy = np.empty(n_target)
    cx = np.empty(n_target)
    cr = np.empty(n_target)
    n = 0
    attempts = 0
    max_attempts = max_attempts_per_cell * max(n_target, 1)
    while n < n_target and attempts < max_attempts:
        m = min(512, max_attempts - attempts)
        attempts += m
        py = rng.uniform(-margin, ny - 1 + margin, m)
        px = rng.uniform(-margin, nx - 1 + margin, m)
        pr = 0.5 * rng.uniform(d_lo, d_hi, m) / pixel_size_um
        sep = np.where(rng.random(m) < overlap_fraction, rng.uniform(0.7, 0.9, m), 1.0)
        # reject proposals that collide with already placed cells (vectorized) ...
        if n:
            d2 = (py[:, None] - cy[None, :n]) ** 2 + (px[:, None] - cx[None, :n]) ** 2
            lim = sep[:, None] * (pr[:, None] + cr[None, :n])
            ok = ~np.any(d2 < lim * lim, axis=1)
            py, px, pr, sep = py[ok], px[ok], pr[ok], sep[ok]
        # ... then accept the survivors in order, skipping those that hit an earlier survivor
        d2 = (py[:, None] - py[None, :]) ** 2 + (px[:, None] - px[None, :]) ** 2
        lim = np.minimum(sep[:, None], sep[None, :]) * (pr[:, None] + pr[None, :])
        clash = d2 < lim * lim
        taken = np.zeros(len(py), bool)
        for q in range(len(py)):
            if n >= n_target:
                break
            if np.any(clash[q, :q] & taken[:q]):
                continue
            taken[q] = True
            cy[n], cx[n], cr[n] = py[q], px[q], pr[q]
            n += 1

    thickness = np.zeros((ny, nx), np.float32)
    opd = np.zeros((ny, nx), np.float32)
    labels = np.zeros((ny, nx), np.uint32)
    cells: list[dict] = []
    ell = rng.uniform(0.0, ellipticity, n)
    angles = rng.uniform(0.0, np.pi, n)
    dns = np.clip(delta_n + delta_n_sd * rng.standard_normal(n), 0.0, None)
    label = 0
    for q in range(n):
        a = cr[q] * (1.0 + ell[q])
        b = cr[q] * (1.0 - ell[q])
        y0, y1 = int(np.floor(cy[q] - a)) - 1, int(np.ceil(cy[q] + a)) + 2
        x0, x1 = int(np.floor(cx[q] - a)) - 1, int(np.ceil(cx[q] + a)) + 2
        y0c, y1c, x0c, x1c = max(y0, 0), min(y1, ny), max(x0, 0), min(x1, nx)
        if y0c >= y1c or x0c >= x1c:
            continue
        yy = np.arange(y0c, y1c)[:, None] - cy[q]
        xx = np.arange(x0c, x1c)[None, :] - cx[q]
        c, s = np.cos(angles[q]), np.sin(angles[q])
        u = (c * xx + s * yy) / a
        v = (-s * xx + c * yy) / b
        rho = np.sqrt(u * u + v * v)
        inside = rho < 1.0
        if not inside.any():
            continue
        diam_um = 2.0 * cr[q] * pixel_size_um
        label += 1
        h = rbc_thickness(rho, diam_um).astype(np.float32)
        thickness[y0c:y1c, x0c:x1c] += h
        opd[y0c:y1c, x0c:x1c] += np.float32(dns[q]) * h
        labels[y0c:y1c, x0c:x1c][inside] = label
        cells.append(
            {
                "label": label,
                "y_px": float(cy[q]),
                "x_px": float(cx[q]),
                "diameter_um": float(diam_um),
                "semi_axes_px": (float(a), float(b)),
                "angle_rad": float(angles[q]),
                "delta_n": float(dns[q]),
            }
        )
    # cells hidden completely under later cells or cut away: relabel to 1..N
    present = np.unique(labels)
    present = present[present > 0]
    if len(present) != len(cells):
        lut = np.zeros(label + 1, np.uint32)
        lut[present] = np.arange(1, len(present) + 1, dtype=np.uint32)
        labels = lut[labels]
        keep = {int(p) for p in present}
        cells = [dict(cc, label=int(lut[cc["label"]])) for cc in cells if cc["label"] in keep]
    return thickness, opd, labels, cells


def source_points(
    wavelength_um: float,
    na: float,
    na_illum: float | None = None,
    n_rings: int = 4,
    edge: float = 0.98,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Quadrature of the left and right half-disk sources (LED-ring-like point sets).

    The half disk of radius ``na_illum/λ`` is sampled on ``n_rings`` rings at radii
    ``m/n_rings · edge`` (m = 1..n_rings) with about equal spacing along each ring
    (3, 6, 9, ... points per half ring) and trapezoidal weights in radius (the outermost ring
    counts half). Having a ring close to the source edge matters: the low-frequency phase
    response of DPC comes from the source points near the pupil edge.

    Parameters
    ----------
    wavelength_um, na : float
        Wavelength (µm) and objective NA.
    na_illum : float, optional
        Illumination NA (default ``na``).
    n_rings : int
        Number of rings (4 → 30 points per half).
    edge : float
        Radius of the outer ring relative to the source radius (< 1 keeps it in the pupil).

    Returns
    -------
    (left, right, weights) : (numpy.ndarray, numpy.ndarray, numpy.ndarray)
        (n, 2) spatial frequencies (s_y, s_x) in cycles/µm (left: s_x > 0, right = mirror
        image) and (n,) weights summing to 1. No point lies on s_x = 0.
    """
    na_illum = na if na_illum is None else float(na_illum)
    rad = na_illum / wavelength_um
    n_rings = max(1, int(n_rings))
    dr = edge / n_rings
    pts, wts = [], []
    for m in range(1, n_rings + 1):
        rm = m * dr
        n = max(1, round(np.pi * rm / dr))
        theta = -0.5 * np.pi + (np.arange(n) + 0.5) * np.pi / n
        w = rm * dr * (0.5 if m == n_rings and n_rings > 1 else 1.0)
        pts.append(np.stack([rm * np.sin(theta), rm * np.cos(theta)], axis=1))
        wts.append(np.full(n, w / n))
    left = np.concatenate(pts) * rad
    weights = np.concatenate(wts)
    right = left * np.array([1.0, -1.0])
    return left, right, weights / weights.sum()


def image_halves(
    phase: np.ndarray,
    pixel_size_um: float,
    wavelength_um: float,
    na: float,
    *,
    absorption: np.ndarray | None = None,
    na_illum: float | None = None,
    defocus_um: float = 0.0,
    n_medium: float = 1.0,
    source_rings: int = 4,
) -> tuple[np.ndarray, np.ndarray]:
    """Left- and right-half illumination intensities of a thin object (Abbe imaging).

    Parameters
    ----------
    phase : numpy.ndarray
        Object phase (y, x) in radians.
    pixel_size_um, wavelength_um, na : float
        Pixel size at the sample (µm), wavelength (µm) and objective NA. The pupil must fit in
        the frequency grid: ``na / wavelength_um < 1 / (2 * pixel_size_um)``.
    absorption : numpy.ndarray, optional
        Amplitude attenuation μ (transmission ``exp(iφ − μ)``).
    na_illum : float, optional
        Illumination NA (default ``na``, σ = 1).
    defocus_um : float
        Defocus Δz (µm); the field is propagated by the angular-spectrum kernel
        ``exp(2πi Δz (sqrt((n/λ)² − |f|²) − n/λ))`` before the pupil.
    n_medium : float
        Refractive index of the immersion/propagation medium for the defocus kernel.
    source_rings : int
        Number of rings of the source quadrature (see :func:`source_points`).

    Returns
    -------
    (left, right) : (numpy.ndarray, numpy.ndarray)
        float32 intensities normalized to 1 for an empty field.

    Notes
    -----
    The field for source point ``s`` has spectrum ``T(f')·P(f'+s)`` up to a tilt phase that
    does not change the intensity. Only the pupil-sized block of the spectrum is transformed
    (zero-padded 1-D inverse FFTs), which changes the field by a unit-modulus phase ramp only.
    """
    ny, nx = phase.shape
    cut = na / wavelength_um
    if cut >= 0.5 / pixel_size_um:
        raise ValueError(
            f"pupil radius NA/λ = {cut:.3f} cycles/µm exceeds the Nyquist frequency "
            f"{0.5 / pixel_size_um:.3f}; simulate at a smaller pixel size and bin down"
        )
    field = np.exp(1j * np.asarray(phase, np.float64))
    if absorption is not None:
        field *= np.exp(-np.asarray(absorption, np.float64))
    spec = sfft.fftshift(sfft.fft2(field.astype(np.complex64), workers=1))
    dfy, dfx = 1.0 / (ny * pixel_size_um), 1.0 / (nx * pixel_size_um)
    cy, cx = ny // 2, nx // 2
    hy, hx = int(np.ceil(cut / dfy)) + 2, int(np.ceil(cut / dfx)) + 2
    bh, bw = 2 * hy + 1, 2 * hx + 1
    # zero margin so every pupil block is a plain slice (frequencies beyond Nyquist = 0)
    padded = np.zeros((ny + 2 * bh, nx + 2 * bw), np.complex64)
    padded[bh : bh + ny, bw : bw + nx] = spec
    spec = padded
    k0 = n_medium / wavelength_um
    out = []
    left_pts, right_pts, weights = source_points(wavelength_um, na, na_illum, source_rings)
    for pts in (left_pts, right_pts):
        acc = np.zeros((ny, nx), np.float32)
        w_bright = 0.0
        for (sy, sx), w in zip(pts, weights, strict=True):
            # the pupil P(f' + s) is centred on f' = -s
            iy = cy + round(-sy / dfy)
            ix = cx + round(-sx / dfx)
            fy = (np.arange(iy - hy, iy + hy + 1) - cy) * dfy + sy
            fx = (np.arange(ix - hx, ix + hx + 1) - cx) * dfx + sx
            q2 = fy[:, None] ** 2 + fx[None, :] ** 2
            # weight folded into the pupil: sum_s w_s |u_s|^2 = sum_s |sqrt(w_s) u_s|^2
            pupil = (q2 <= cut * cut) * np.complex64(np.sqrt(w))
            if defocus_um:
                kz = np.sqrt(np.maximum(k0 * k0 - q2, 0.0)) - k0
                pupil *= np.exp(2j * np.pi * defocus_um * kz).astype(np.complex64)
            block = spec[iy - hy + bh : iy + hy + 1 + bh, ix - hx + bw : ix + hx + 1 + bw]
            u = sfft.ifft(block * pupil, n=ny, axis=0, workers=1)
            u = sfft.ifft(u, n=nx, axis=1, workers=1)
            mag2 = np.abs(u)
            mag2 *= mag2
            acc += mag2
            w_bright += w if sy * sy + sx * sx <= cut * cut else 0.0
        out.append((acc / max(w_bright, 1e-12)).astype(np.float32))
    return out[0], out[1]


def _vignetting(shape, rng, strength, centre_shift) -> np.ndarray:
    """Smooth radial falloff 1 − a·(r/r_max)², centre displaced by ``centre_shift`` (frac)."""
    ny, nx = shape
    oy = (ny - 1) / 2 + rng.uniform(-0.05, 0.05) * ny
    ox = (nx - 1) / 2 + centre_shift * nx + rng.uniform(-0.03, 0.03) * nx
    yy = (np.arange(ny)[:, None] - oy) / (0.5 * ny)
    xx = (np.arange(nx)[None, :] - ox) / (0.5 * nx)
    a = strength * rng.uniform(0.85, 1.15)
    return (1.0 - 0.5 * a * (yy * yy + xx * xx)).astype(np.float32)


def camera(
    intensity: np.ndarray,
    rng: np.random.Generator,
    *,
    flatfield: np.ndarray | None = None,
    brightness: float = 0.6,
    full_well: float = 5000.0,
    read_noise_e: float = 3.0,
    bits: int = 8,
) -> np.ndarray:
    """Camera frame: ``brightness·flatfield·I`` of full scale, Poisson + read noise.

    Parameters
    ----------
    intensity : numpy.ndarray
        Relative intensity (1 = empty field).
    rng : numpy.random.Generator
        Noise generator.
    flatfield : numpy.ndarray, optional
        Multiplicative illumination/vignetting map.
    brightness : float
        Empty-field level as a fraction of full scale (255).
    full_well : float
        Electrons at full scale (shot noise: SNR = sqrt(electrons)); ``inf`` = no noise.
    read_noise_e : float
        Gaussian read noise (electrons rms).
    bits : int
        ADC bit depth: full scale is ``2**bits - 1``; 8 bits give uint8, more give uint16 with
        the values in the low bits (12-bit: 0..4095).

    Returns
    -------
    numpy.ndarray
        uint8 frame (``bits`` <= 8) or uint16 frame.
    """
    signal = np.asarray(intensity, np.float64) * brightness
    if flatfield is not None:
        signal = signal * flatfield
    if np.isfinite(full_well):
        electrons = rng.poisson(np.clip(signal, 0, None) * full_well).astype(np.float64)
        if read_noise_e:
            electrons += rng.normal(0.0, read_noise_e, electrons.shape)
        signal = electrons / full_well
    top = float(2 ** int(bits) - 1)
    return np.clip(np.rint(signal * top), 0, top).astype(np.uint8 if bits <= 8 else np.uint16)


def simulate_fov(
    shape: tuple[int, int] = (1024, 1024),
    pixel_size_um: float = DEFAULTS["pixel_size_um"],
    seed: int = 0,
    density: float = DEFAULTS["density"],
    na: float = DEFAULTS["na"],
    wavelength_um: float = DEFAULTS["wavelength_um"],
    defocus_um: float = 0.0,
    *,
    na_illum: float | None = None,
    diameter_um: tuple[float, float] = (6.5, 8.5),
    delta_n: float = 0.06,
    delta_n_sd: float = 0.004,
    absorption_per_um: float = 0.01,
    overlap_fraction: float = 0.03,
    brightness: float = 0.6,
    vignetting: float = 0.25,
    full_well: float = 5000.0,
    read_noise_e: float = 3.0,
    source_rings: int = 4,
    n_medium: float = 1.0,
) -> dict:
    """Simulate one Octopi DPC field of view of an RBC monolayer with known truth.

    Parameters
    ----------
    shape : (int, int)
        Image shape (ny, nx) in pixels.
    pixel_size_um : float
        Pixel size at the sample (µm); default 0.333 (Octopi 20x).
    seed : int
        Seed; the same seed and parameters give identical arrays.
    density : float
        Target area fraction covered by cells.
    na : float
        Objective NA (default 0.4; NA/λ must be below the Nyquist frequency 1/(2·pixel)).
    wavelength_um : float
        Illumination wavelength (µm), default 0.525 (green LED).
    defocus_um : float
        Defocus of the sample (µm), angular-spectrum propagation before the pupil.
    na_illum : float, optional
        Illumination NA of each half-disk source (default ``na``).
    diameter_um : (float, float)
        RBC diameter range (µm).
    delta_n, delta_n_sd : float
        Refractive-index difference cell − medium (mean and per-cell sd).
    absorption_per_um : float
        Amplitude attenuation per µm of cell thickness (small; DPC cancels it to first order).
    overlap_fraction : float
        Fraction of cells allowed to overlap a neighbour.
    brightness, vignetting, full_well, read_noise_e : float
        Camera: empty-field level (fraction of 255), peak vignetting falloff at the corners
        (≈ ``vignetting``), electrons at full scale, read noise (e⁻ rms).
    source_rings : int
        Rings of the source quadrature (4: 30 points per half; see :func:`source_points`).
    n_medium : float
        Medium refractive index used by the defocus kernel.

    Returns
    -------
    dict
        ``left``, ``right``: uint8 (y, x) camera frames; ``phase``: float32 true phase (rad);
        ``labels``: uint32 instance labels 1..N; ``thickness``: float32 (µm);
        ``ff_left``, ``ff_right``: float32 true flatfields (mean 1); ``cells``: list of dict.
    """
    rng = np.random.default_rng(seed)
    thickness, opd, labels, cells = rbc_phantom(
        shape,
        pixel_size_um,
        rng,
        density=density,
        diameter_um=diameter_um,
        overlap_fraction=overlap_fraction,
        delta_n=delta_n,
        delta_n_sd=delta_n_sd,
    )
    phase = (np.float32(2.0 * np.pi / wavelength_um) * opd).astype(np.float32)
    absorption = absorption_per_um * thickness if absorption_per_um else None
    left_i, right_i = image_halves(
        phase,
        pixel_size_um,
        wavelength_um,
        na,
        absorption=absorption,
        na_illum=na_illum,
        defocus_um=defocus_um,
        n_medium=n_medium,
        source_rings=source_rings,
    )
    ff_l = _vignetting(shape, rng, vignetting, -0.04)
    ff_r = _vignetting(shape, rng, vignetting, +0.04)
    left = camera(
        left_i,
        rng,
        flatfield=ff_l,
        brightness=brightness,
        full_well=full_well,
        read_noise_e=read_noise_e,
    )
    right = camera(
        right_i,
        rng,
        flatfield=ff_r,
        brightness=brightness,
        full_well=full_well,
        read_noise_e=read_noise_e,
    )
    return {
        "left": left,
        "right": right,
        "phase": phase,
        "labels": labels,
        "thickness": thickness,
        "ff_left": (ff_l / ff_l.mean()).astype(np.float32),
        "ff_right": (ff_r / ff_r.mean()).astype(np.float32),
        "cells": cells,
    }
