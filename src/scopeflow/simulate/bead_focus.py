"""Beads diffusing in 3-D through a thin focal slab: localisations with known truth.

Why: in a brightfield or widefield movie of a suspension a bead is detected only while it is
near the focal plane, so tracks start and end as beads drift in and out of focus. Fast beads
cross the depth of field sooner than slow ones, so a filter that keeps only long tracks keeps
mostly the slow beads and the diffusion coefficient it reports is biased low. This module
makes that mechanism, with the truth needed to measure it; it produces localisations (no
images), i.e. what a detector would return.

Forward model (lengths in µm, positions in the output in pixels):

* **Sample**: ``n_total`` beads uniform in a slab of thickness ``thickness_um`` (z, walls
  reflecting) and a periodic (y, x) box a margin larger than the field of view, with the mean
  number in focus and in view per frame equal to ``n_in_focus``.
* **Motion**: free 3-D Brownian motion, each axis steps ``N(0, 2 D dt)`` per frame, each bead
  with its own D. ``D_cv = 0``: monodisperse (every bead ``D_um2_s``); ``D_cv > 0``: D
  log-normal with mean ``D_um2_s`` and coefficient of variation ``D_cv`` (a spread of bead
  sizes, Stokes–Einstein D ∝ 1/r, and of hindrance by the walls).
* **Coverslip** (``coverslip=True``): the sample's floor is a glass wall at ``z = 0`` and the
  focal plane is ``focus_um`` above it. A bead of radius ``r`` (``radius_um`` for the mean D,
  ``∝ 1/D`` by Stokes–Einstein) whose centre is ``h`` above the wall diffuses parallel to it
  with Faxén's ``D∥ = D (1 − 9/16 s + 1/8 s³ − 45/256 s⁴ − 1/16 s⁵)``, ``s = r/h``, and
  normal to it with Brenner's ``D⊥`` in the approximation of Bevan & Prieve (J Chem Phys
  113:1228, 2000), ``D⊥ = D (6δ² + 2rδ) / (6δ² + 9rδ + 2r²)``, ``δ = h − r``; the z step has
  the Itô drift ``dD⊥/dh dt`` so the beads stay uniform in height (no gravity), and each
  frame is integrated in ``substeps`` steps. Beads near the wall are slow in the plane and
  stay long in focus: the "distance to the coverslip" spread of real movies.
* **Detection**: a bead is detected in a frame when ``|z| < depth_um / 2`` (with a coverslip:
  ``|h − focus_um| < depth_um / 2``) and its (y, x) lies in the field of view (pixel centres
  at integers, the frame covers ``[-1/2, n - 1/2)``), and is then missed with probability
  ``miss_rate``; each detection is placed at the true (y, x) plus ``N(0, static_error_um)``
  per axis. The default depth, 2.5 µm for beads of D 0.4 µm²/s at 24 fps, gives 30-frame
  track lengths like those of trackpy_bulk_water (about half the bead-frames in tracks of
  29–30 frames, 15 % in 25–28, 20 % in 11–24).
* **Spurious detections**: ``Poisson(spurious_per_frame)`` per frame, uniform in the view
  (noise peaks, debris), flagged ``bead = -1``.

The reference D: ``target_D`` is the mean D over the detected bead-frames (each bead weighted
by the number of frames it is seen in focus; near a coverslip, its in-plane ``D∥`` in that
frame). It is what "the D of the beads in this sample" means for a movie: in a sample at equilibrium the beads are uniform in z whatever their D, so
the beads in focus in any one frame are a random draw from the whole population and the
bead-frame weighted mean equals, in expectation, the population's number-mean D (a fast bead
enters and leaves focus more often but spends the same fraction of the time in it as a slow
one). An estimator that keeps only beads that stay in focus long is biased against it.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

__all__ = ["simulate_focus_localizations", "target_D"]


def _reflect(v: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Reflect coordinates into [lo, hi] (any number of bounces)."""
    span = hi - lo
    u = np.mod(v - lo, 2 * span)
    return lo + np.where(u > span, 2 * span - u, u)


def _wall_factors(h: np.ndarray, r: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hindrance near a wall: ``D∥/D``, ``D⊥/D`` and ``d(D⊥/D)/dh`` (1/µm) at height ``h``."""
    s = np.clip(r / h, 0.0, 1.0)
    par = 1 - 9 / 16 * s + s**3 / 8 - 45 / 256 * s**4 - s**5 / 16
    d = np.maximum(h - r, 0.0)
    num = 6 * d**2 + 2 * r * d
    den = 6 * d**2 + 9 * r * d + 2 * r**2
    perp = num / den
    dperp = ((12 * d + 2 * r) * den - num * (12 * d + 9 * r)) / den**2
    return par, perp, dperp


def simulate_focus_localizations(
    n_frames: int,
    *,
    shape: tuple[int, int] = (424, 640),
    n_in_focus: float = 300.0,
    D_um2_s: float = 0.4,
    D_cv: float = 0.0,
    pixel_size_um: float = 100 / 285,
    fps: float = 24.0,
    depth_um: float = 2.5,
    thickness_um: float = 20.0,
    coverslip: bool = False,
    focus_um: float = 2.0,
    radius_um: float = 0.5,
    substeps: int = 4,
    static_error_um: float = 0.03,
    miss_rate: float = 0.0,
    spurious_per_frame: float = 0.0,
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Localisations of beads diffusing in 3-D, detected only while in focus.

    Parameters
    ----------
    n_frames : int
        Frames.
    shape : (int, int)
        Field of view (ny, nx) in pixels.
    n_in_focus : float
        Mean number of beads in focus and in view per frame.
    D_um2_s : float
        Mean (bulk) diffusion coefficient of the beads (µm²/s).
    D_cv : float
        Coefficient of variation of the bulk D across beads (0: monodisperse; D log-normal).
    pixel_size_um : float
        Pixel size (µm/px).
    fps : float
        Frame rate (1/s).
    depth_um : float
        Depth of field: detected while within ``depth_um / 2`` of the focal plane (µm).
    thickness_um : float
        Sample thickness (µm, > ``depth_um``; the walls reflect).
    coverslip : bool
        Focus ``focus_um`` above the sample's floor, with hindered diffusion near it (see the
        module docstring); False: focal plane in the middle of the sample, free diffusion.
    focus_um : float
        Height of the focal plane above the floor (µm; ``coverslip=True``).
    radius_um : float
        Radius of a bead of D ``D_um2_s`` (µm; ``coverslip=True``).
    substeps : int
        Integration steps per frame (``coverslip=True``).
    static_error_um : float
        Localisation error per axis (µm, Gaussian).
    miss_rate : float
        Probability that a bead in focus is not detected in a frame.
    spurious_per_frame : float
        Mean number of spurious detections per frame (uniform in the view).
    seed : int
        Random seed (the output is a deterministic function of the arguments).

    Returns
    -------
    locs : pandas.DataFrame
        ``frame, y, x, bead`` (px; origin at the centre of pixel (0, 0)); ``bead`` is the
        true bead's id, -1 for a spurious detection. Sorted by frame.
    truth : pandas.DataFrame
        One row per detected bead-frame: ``frame, bead, y, x, z_um, D_um2_s`` (true
        positions, px and µm; ``z_um`` from the focal plane; ``D_um2_s`` the bead's in-plane
        D in that frame). ``truth.attrs`` holds the arguments and ``target_D``
        (:func:`target_D`).
    """
    if not thickness_um > depth_um > 0:
        raise ValueError(f"need thickness_um > depth_um > 0, got {thickness_um}, {depth_um}")
    if coverslip and not depth_um / 2 < focus_um < thickness_um - depth_um / 2:
        raise ValueError(f"focus_um must leave the depth of field inside the sample, got "
                         f"{focus_um}")
    rng = np.random.default_rng(seed)
    ny, nx = shape
    dt = 1.0 / fps
    step_max = math.sqrt(2.0 * D_um2_s * (1 + 5 * D_cv) * dt) / pixel_size_um
    margin = int(math.ceil(10 * step_max + 5))
    lo_y, hi_y = -0.5 - margin, ny - 0.5 + margin
    lo_x, hi_x = -0.5 - margin, nx - 0.5 + margin
    area_ratio = (hi_y - lo_y) * (hi_x - lo_x) / float(ny * nx)
    n_total = int(round(n_in_focus * area_ratio * thickness_um / depth_um))
    if D_cv > 0:
        s2 = math.log1p(D_cv**2)
        D = D_um2_s * np.exp(rng.normal(-s2 / 2, math.sqrt(s2), n_total))
    else:
        D = np.full(n_total, float(D_um2_s))
    y = rng.uniform(lo_y, hi_y, n_total)
    x = rng.uniform(lo_x, hi_x, n_total)
    if coverslip:
        r = radius_um * D_um2_s / D
        z = rng.uniform(r, thickness_um)  # height of the centre above the floor
        z0, n_sub = focus_um, int(substeps)
    else:
        r = np.zeros(n_total)
        z = rng.uniform(-thickness_um / 2, thickness_um / 2, n_total)
        z0, n_sub = 0.0, 1
    h = dt / n_sub
    rows, spur = [], []
    d_par = D
    for t in range(n_frames):
        if t > 0:
            dy = np.zeros(n_total)
            dx = np.zeros(n_total)
            for _ in range(n_sub):
                if coverslip:
                    par, perp, dperp = _wall_factors(z, r)
                    dz = D * dperp * h + np.sqrt(2 * D * perp * h) * rng.normal(0, 1, n_total)
                    sd = np.sqrt(2 * D * par * h)
                    z = r + np.abs(z + dz - r)  # reflect at contact
                    z = np.where(z > thickness_um, 2 * thickness_um - z, z)
                else:
                    sd = np.sqrt(2 * D * h)
                    z = _reflect(z + sd * rng.normal(0, 1, n_total), -thickness_um / 2,
                                 thickness_um / 2)
                dy += sd * rng.normal(0, 1, n_total)
                dx += sd * rng.normal(0, 1, n_total)
            y = lo_y + np.mod(y + dy / pixel_size_um - lo_y, hi_y - lo_y)
            x = lo_x + np.mod(x + dx / pixel_size_um - lo_x, hi_x - lo_x)
        if coverslip:
            d_par = D * _wall_factors(z, r)[0]
        seen = ((np.abs(z - z0) < depth_um / 2) & (y >= -0.5) & (y < ny - 0.5) & (x >= -0.5)
                & (x < nx - 0.5))
        if miss_rate > 0:
            seen &= rng.random(n_total) >= miss_rate
        idx = np.flatnonzero(seen)
        rows.append(pd.DataFrame({"frame": t, "bead": idx, "y": y[idx], "x": x[idx],
                                  "z_um": z[idx] - z0, "D_um2_s": d_par[idx]}))
        k = rng.poisson(spurious_per_frame) if spurious_per_frame > 0 else 0
        spur.append(pd.DataFrame({"frame": t, "y": rng.uniform(-0.5, ny - 0.5, k),
                                  "x": rng.uniform(-0.5, nx - 0.5, k), "bead": -1}))
    truth = pd.concat(rows, ignore_index=True)
    err = static_error_um / pixel_size_um
    det = truth[["frame", "y", "x", "bead"]].assign(
        y=truth["y"] + rng.normal(0.0, err, len(truth)),
        x=truth["x"] + rng.normal(0.0, err, len(truth)))
    locs = pd.concat([det, *spur], ignore_index=True)
    locs = locs.sort_values("frame", kind="stable", ignore_index=True)
    locs["bead"] = locs["bead"].astype(np.int64)
    truth.attrs.update(
        D_um2_s=D_um2_s, D_cv=D_cv, pixel_size_um=pixel_size_um, fps=fps, depth_um=depth_um,
        thickness_um=thickness_um, coverslip=coverslip, focus_um=focus_um,
        static_error_um=static_error_um, n_beads=n_total, target_D=target_D(truth))
    return locs, truth


def target_D(truth: pd.DataFrame) -> float:
    """The reference D of a simulated movie: mean D over its detected bead-frames (µm²/s).

    Each bead counts once per frame it is seen in focus; at equilibrium this is, in
    expectation, the number-mean D of all beads in the sample (see the module docstring).
    """
    return float(truth["D_um2_s"].mean()) if len(truth) else float("nan")
