"""Simulated 405 nm fluorescence of malaria smears: ring-stage parasites and confounders.

Forward model of one FOV, given the red cells' instance labels (e.g. the truth of
:func:`scopeflow.simulate.smear.simulate_fov`), all sizes in µm, intensities as fractions of
the camera's full scale, colour = (R, G, B) planes of the colour camera:

- **background**: uniform ``(0.11, 0.055, 0.02)`` (the empty field of Octopi's crops is about
  (30, 15, 5)/255) plus a weak red-cell autofluorescence ``(0.02, 0.015, 0.008)`` on cell pixels;
- **ring-stage parasites** (truth kind ``ring``): each red cell is infected with probability
  ``parasites_per_ul / rbc_per_ul`` (one parasite per infected cell). A ring of radius
  U(1.1, 1.6) µm and Gaussian width 0.3 µm, with brightness varying along it
  (1 + 0.6·cos(θ − θ₀)), plus a chromatin dot (σ 0.35 µm, 1.5× brighter) on the ring,
  at a random point at most 0.45 of the cell's radius from its centre; peak amplitude
  U(0.6, 1.1), colour (1, 0.62, 0.27) (Octopi's parasite crops: mean R:G:B ≈ 61:38:17,
  rings 8–10 px across at ≈ 0.33 µm/px, cores near saturation);
- **platelets** (``platelet``, ``platelets_per_rbc`` per cell, Poisson): diffuse blobs
  σ U(0.5, 0.9) µm, amplitude U(0.08, 0.35), colour (0.85, 0.9, 0.5), off cells;
- **white-cell nuclei** (``wbc``, ``wbc_per_rbc``): 2–4 lobes of σ 1.2–1.8 µm within 4 µm,
  amplitude U(0.8, 1.6) (saturating), colour (1, 0.9, 0.75), anywhere;
- **debris** (``debris``, ``debris_per_rbc``): 1–4 Gaussians of σ U(0.3, 1.5) µm within 2 µm,
  random colour, amplitude U(0.1, 0.9), anywhere (also on cells);
- **stain speckle** (``speckle``, ``speckle_per_rbc``): point-like dots σ 0.15 µm (before the
  PSF), amplitude U(0.2, 1.0), bluish-white colour (0.7, 0.8, 1.0), anywhere (also on cells);
- **optics and camera**: Gaussian PSF σ = 0.21·λ/NA (λ 0.46 µm), radial vignetting, Poisson
  photon noise (``full_well`` electrons at full scale) and quantisation per plane (``bits``,
  default 8; 12-bit frames are uint16 with the values in the low bits).

Conventions: arrays (y, x); positions in pixels, origin at the centre of pixel (0, 0).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage as ndi

__all__ = [
    "CONFOUNDER_DENSITIES",
    "FLUORESCENCE_CHANNEL",
    "add_fluorescence",
    "simulate_fluorescence",
]

#: Octopi/Squid file suffix of the 405 nm-excited fluorescence frame.
FLUORESCENCE_CHANNEL = "Fluorescence_405_nm_Ex"

_BACKGROUND = np.array([0.11, 0.055, 0.02])
_AUTOFLUOR = np.array([0.02, 0.015, 0.008])
_RING_COLOUR = np.array([1.0, 0.62, 0.27])
#: Ring radius range (µm) and peak amplitude range (fraction of full scale, before the PSF).
RING_RADIUS_UM = (1.1, 1.6)
RING_AMPLITUDE = (0.6, 1.1)
#: Default mean number of each negative object per red cell (Poisson per FOV).
CONFOUNDER_DENSITIES = {"platelets_per_rbc": 0.05, "wbc_per_rbc": 0.0015,
                        "debris_per_rbc": 0.01, "speckle_per_rbc": 0.03}


def _stamp(img: np.ndarray, cy: float, cx: float, half: int, fn) -> None:
    """Add ``fn(dy, dx)`` (float arrays of pixel offsets) around (cy, cx) into img (y, x, 3)."""
    ny, nx = img.shape[:2]
    y0, x0 = int(np.floor(cy)) - half, int(np.floor(cx)) - half
    ys, ye, xs, xe = max(y0, 0), min(y0 + 2 * half + 2, ny), max(x0, 0), min(x0 + 2 * half + 2, nx)
    if ys >= ye or xs >= xe:
        return
    dy = np.arange(ys, ye)[:, None] - cy
    dx = np.arange(xs, xe)[None, :] - cx
    img[ys:ye, xs:xe] += fn(np.broadcast_to(dy, (ye - ys, xe - xs)),
                            np.broadcast_to(dx, (ye - ys, xe - xs)))


def _gauss(colour, amp, sigma):
    c = np.asarray(colour, np.float64) * amp
    return lambda dy, dx: np.exp(-(dy * dy + dx * dx) / (2 * sigma * sigma))[..., None] * c


def simulate_fluorescence(
    labels: np.ndarray,
    pixel_size_um: float,
    seed: int = 0,
    *,
    parasites_per_ul: float = 0.0,
    rbc_per_ul: float = 5e6,
    platelets_per_rbc: float = CONFOUNDER_DENSITIES["platelets_per_rbc"],
    wbc_per_rbc: float = CONFOUNDER_DENSITIES["wbc_per_rbc"],
    debris_per_rbc: float = CONFOUNDER_DENSITIES["debris_per_rbc"],
    speckle_per_rbc: float = CONFOUNDER_DENSITIES["speckle_per_rbc"],
    na: float = 0.4,
    full_well: float = 4000.0,
    vignetting: float = 0.2,
    bits: int = 8,
) -> dict:
    """Fluorescence frame (RGB) of one FOV with parasites and confounders, and its truth.

    Parameters
    ----------
    labels : numpy.ndarray
        (y, x) red-cell instance labels (0 = background).
    pixel_size_um : float
        Pixel size (µm).
    seed : int
        Seed; same inputs and seed give the same frame.
    parasites_per_ul : float
        Parasite density; each cell is infected with probability ``parasites_per_ul /
        rbc_per_ul`` (capped at 1).
    rbc_per_ul : float
        Red cells per µL (5·10⁶).
    platelets_per_rbc, wbc_per_rbc, debris_per_rbc, speckle_per_rbc : float
        Mean number of each confounder per red cell in the FOV (Poisson).
    na : float
        Objective NA (PSF width).
    full_well : float
        Electrons at full scale (shot noise).
    vignetting : float
        Corner falloff of the excitation.
    bits : int
        Camera bit depth: full scale ``2**bits − 1``; 8 gives uint8, more give uint16 with
        the values in the low bits (12-bit: 0–4095). The same seed gives the same scene at
        every depth (only the quantisation differs).

    Returns
    -------
    dict
        ``fluorescence``: uint8 or uint16 (y, x, 3); ``truth``: DataFrame (``kind``, ``y``, ``x``,
        ``cell_id``: the host cell for rings, the label under the object otherwise);
        ``n_cells``: cells in ``labels``.
    """
    lab = np.asarray(labels)
    ny, nx = lab.shape
    ps = float(pixel_size_um)
    rng = np.random.default_rng(seed)
    img = np.zeros((ny, nx, 3), np.float64)
    img += _BACKGROUND
    img += (lab > 0)[..., None] * _AUTOFLUOR
    ids = np.unique(lab[lab > 0])
    n_cells = int(ids.size)
    rows: list[dict] = []
    if n_cells:
        cent = np.asarray(ndi.center_of_mass(np.ones_like(lab), lab, ids)).reshape(-1, 2)
        area = ndi.sum_labels(np.ones_like(lab), lab, ids)
        radius = np.sqrt(area / np.pi)
    p_inf = min(max(float(parasites_per_ul) / float(rbc_per_ul), 0.0), 1.0)
    infected = np.flatnonzero(rng.random(n_cells) < p_inf) if n_cells else np.zeros(0, int)
    for q in infected:
        for _ in range(10):
            r = 0.45 * radius[q] * np.sqrt(rng.random())
            a = rng.uniform(0, 2 * np.pi)
            cy, cx = cent[q, 0] + r * np.sin(a), cent[q, 1] + r * np.cos(a)
            iy, ix = int(round(cy)), int(round(cx))
            if 0 <= iy < ny and 0 <= ix < nx and lab[iy, ix] == ids[q]:
                break
        else:
            continue
        rr = rng.uniform(RING_RADIUS_UM[0], RING_RADIUS_UM[1]) / ps
        w = 0.3 / ps
        th0 = rng.uniform(0, 2 * np.pi)
        amp = rng.uniform(RING_AMPLITUDE[0], RING_AMPLITUDE[1])
        dot_s = 0.35 / ps

        def ring(dy, dx, rr=rr, w=w, th0=th0, amp=amp, dot_s=dot_s):
            rho = np.hypot(dy, dx)
            th = np.arctan2(dy, dx)
            v = np.exp(-((rho - rr) ** 2) / (2 * w * w)) * (1 + 0.6 * np.cos(th - th0)) / 1.6
            ddy, ddx = dy - rr * np.sin(th0), dx - rr * np.cos(th0)
            v = v + 1.5 * np.exp(-(ddy * ddy + ddx * ddx) / (2 * dot_s * dot_s))
            return (amp / 1.5) * v[..., None] * _RING_COLOUR

        _stamp(img, cy, cx, int(np.ceil(rr + 4 * w + 3 * dot_s)) + 1, ring)
        rows.append({"kind": "ring", "y": cy, "x": cx, "cell_id": int(ids[q])})

    def place(n, off_cells=False):
        out = []
        for _ in range(n):
            for _ in range(20):
                y, x = rng.uniform(0, ny - 1), rng.uniform(0, nx - 1)
                if not off_cells or lab[int(round(y)), int(round(x))] == 0:
                    out.append((y, x))
                    break
        return out

    def lab_at(y, x):
        return int(lab[int(round(y)), int(round(x))])

    base = max(n_cells, 1)
    for y, x in place(rng.poisson(platelets_per_rbc * base), off_cells=True):
        s = rng.uniform(0.5, 0.9) / ps
        _stamp(img, y, x, int(4 * s) + 1, _gauss((0.85, 0.9, 0.5), rng.uniform(0.08, 0.35), s))
        rows.append({"kind": "platelet", "y": y, "x": x, "cell_id": lab_at(y, x)})
    for y, x in place(rng.poisson(wbc_per_rbc * base)):
        amp = rng.uniform(0.8, 1.6)
        for _ in range(rng.integers(2, 5)):
            s = rng.uniform(1.2, 1.8) / ps
            oy, ox = rng.normal(0, 1.5 / ps, 2)
            _stamp(img, y + oy, x + ox, int(4 * s) + 1, _gauss((1.0, 0.9, 0.75), amp, s))
        rows.append({"kind": "wbc", "y": y, "x": x, "cell_id": lab_at(y, x)})
    for y, x in place(rng.poisson(debris_per_rbc * base)):
        col = rng.uniform(0.3, 1.0, 3)
        amp = rng.uniform(0.1, 0.9)
        for _ in range(rng.integers(1, 5)):
            s = rng.uniform(0.3, 1.5) / ps
            oy, ox = rng.normal(0, 0.7 / ps, 2)
            _stamp(img, y + oy, x + ox, int(4 * s) + 1, _gauss(col, amp, s))
        rows.append({"kind": "debris", "y": y, "x": x, "cell_id": lab_at(y, x)})
    for y, x in place(rng.poisson(speckle_per_rbc * base)):
        s = 0.15 / ps
        _stamp(img, y, x, int(4 * s) + 2, _gauss((0.7, 0.8, 1.0), rng.uniform(0.2, 1.0), s))
        rows.append({"kind": "speckle", "y": y, "x": x, "cell_id": lab_at(y, x)})

    psf = 0.21 * 0.46 / float(na) / ps
    img = ndi.gaussian_filter(img, (psf, psf, 0))
    yy = (np.arange(ny)[:, None] - (ny - 1) / 2) / (0.5 * ny)
    xx = (np.arange(nx)[None, :] - (nx - 1) / 2) / (0.5 * nx)
    img *= (1.0 - 0.5 * vignetting * (yy * yy + xx * xx))[..., None]
    if np.isfinite(full_well):
        img = rng.poisson(np.clip(img, 0, None) * full_well) / full_well
    top = float(2 ** int(bits) - 1)
    frame = np.clip(np.rint(img * top), 0, top).astype(np.uint8 if bits <= 8 else np.uint16)
    truth = pd.DataFrame(rows, columns=["kind", "y", "x", "cell_id"])
    return {"fluorescence": frame, "truth": truth, "n_cells": n_cells}


def add_fluorescence(
    acquisition: str | Path,
    *,
    parasites_per_ul: float,
    seed: int = 0,
    fmt: str = "bmp",
    **kwargs,
) -> pd.DataFrame:
    """Add a fluorescence frame to every FOV of a simulated acquisition, with truth.

    Reads ``truth/{i}_{j}_{k}_labels.tif`` and the pixel size from ``truth/simulation.json``
    (written by :func:`scopeflow.simulate.acquisition.simulate_acquisition`), writes
    ``0/{i}_{j}_{k}_Fluorescence_405_nm_Ex.{fmt}`` (RGB, uint8) in the Octopi layout, and
    ``truth/parasites.csv`` (``fov``, ``kind``, ``y``, ``x``, ``cell_id``) plus
    ``truth/parasitemia.json`` (density, cells, rings per FOV).

    Parameters
    ----------
    acquisition : str or Path
        Simulated acquisition folder.
    parasites_per_ul : float
        Parasite density (see :func:`simulate_fluorescence`).
    seed : int
        Seed; FOV n uses an independent stream of it.
    fmt : str
        ``bmp`` (Octopi malaria data) or ``tiff`` (needed for ``bits`` > 8).
    **kwargs
        Passed to :func:`simulate_fluorescence`.

    Returns
    -------
    pandas.DataFrame
        The truth table.
    """
    import imageio.v3 as iio
    import tifffile

    if int(kwargs.get("bits", 8)) > 8 and fmt not in ("tif", "tiff"):
        raise ValueError(f"{int(kwargs['bits'])}-bit fluorescence frames need fmt='tiff', "
                         f"not {fmt!r}")
    acq = Path(acquisition)
    meta = json.loads((acq / "truth" / "simulation.json").read_text())
    ps = float(meta["pixel_size_um"])
    tables = []
    per_fov = {}
    for n, name in enumerate(sorted(meta["fovs"])):
        lab = tifffile.imread(acq / "truth" / f"{name}_labels.tif")
        s = int(np.random.SeedSequence([int(seed), 405, n]).generate_state(1)[0])
        sim = simulate_fluorescence(lab, ps, s, parasites_per_ul=parasites_per_ul, **kwargs)
        out = acq / "0" / f"{name}_{FLUORESCENCE_CHANNEL}.{fmt}"
        if fmt in ("tif", "tiff"):
            tifffile.imwrite(out, sim["fluorescence"], photometric="rgb")
        else:
            iio.imwrite(out, sim["fluorescence"], extension=f".{fmt}")
        t = sim["truth"].assign(fov=name)
        tables.append(t)
        per_fov[name] = {"n_cells": sim["n_cells"], "rings": int((t["kind"] == "ring").sum())}
    truth = pd.concat(tables, ignore_index=True)[["fov", "kind", "y", "x", "cell_id"]]
    truth.to_csv(acq / "truth" / "parasites.csv", index=False)
    (acq / "truth" / "parasitemia.json").write_text(json.dumps(
        {"parasites_per_ul": float(parasites_per_ul), "seed": int(seed), "fovs": per_fov,
         "channel": FLUORESCENCE_CHANNEL}, indent=2) + "\n")
    return truth
