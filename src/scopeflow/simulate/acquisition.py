"""Write simulated Octopi acquisition folders (raw left/right half-LED frames) with their truth.

The physics of one FOV is :func:`scopeflow.simulate.smear.simulate_fov`; this module lays many FOVs
out as an Octopi acquisition on disk, each from an independent seed.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from scopeflow.io.octopi_meta import LEFT, RIGHT
from scopeflow.io.octopi_write import write_acquisition
from scopeflow.simulate.smear import DEFAULTS, simulate_fov

__all__ = ["fov_seed", "simulate_acquisition"]


def fov_seed(seed: int, i: int, j: int, k: int = 0) -> int:
    """Seed of FOV (i, j, k) derived from an acquisition seed (independent streams)."""
    return int(np.random.SeedSequence([int(seed), int(i), int(j), int(k)]).generate_state(1)[0])


def simulate_acquisition(
    out_dir: str | Path,
    *,
    ny: int = 2,
    nx: int = 2,
    shape: tuple[int, int] = (1024, 1024),
    seed: int = 0,
    pixel_size_um: float = DEFAULTS["pixel_size_um"],
    fmt: str = "bmp",
    **fov_kwargs,
) -> Path:
    """Write a simulated Octopi acquisition folder plus its ground truth.

    Parameters
    ----------
    out_dir : str or Path
        Acquisition folder to create.
    ny, nx : int
        Number of FOV rows (i) and columns (j).
    shape : (int, int)
        FOV shape in pixels.
    seed : int
        Acquisition seed; FOV (i, j) uses :func:`fov_seed` ``(seed, i, j)``.
    pixel_size_um : float
        Pixel size (µm); written so that the metadata gives back this value.
    fmt : str
        Image format of the raw frames (``bmp`` like the Octopi malaria data).
    **fov_kwargs
        Passed to :func:`simulate_fov` (``na``, ``wavelength_um``, ``density``,
        ``defocus_um``, ...). ``na`` is also recorded in the objective metadata.

    Returns
    -------
    Path
        ``out_dir``. Layout: the Octopi folder (``acquisition parameters.json``,
        ``configurations.xml``, ``0/{i}_{j}_0_BF_LED_matrix_{left,right}_half.bmp``,
        ``0/coordinates.csv``, ``0/done``) and ``truth/{i}_{j}_0_labels.tif`` (uint32),
        ``truth/{i}_{j}_0_phase.tif`` (float32, rad), ``truth/simulation.json``.
    """
    import tifffile

    out = Path(out_dir)
    truth = out / "truth"
    truth.mkdir(parents=True, exist_ok=True)
    na = fov_kwargs.get("na", DEFAULTS["na"])
    frames = {}
    meta = {
        "seed": int(seed),
        "shape": list(shape),
        "pixel_size_um": float(pixel_size_um),
        "na": float(na),
        "wavelength_um": float(fov_kwargs.get("wavelength_um", DEFAULTS["wavelength_um"])),
        "fov_kwargs": {k: v for k, v in fov_kwargs.items()},
        "fovs": {},
    }
    for i in range(ny):
        for j in range(nx):
            s = fov_seed(seed, i, j)
            sim = simulate_fov(shape=shape, pixel_size_um=pixel_size_um, seed=s, **fov_kwargs)
            frames[(i, j, 0)] = {LEFT: sim["left"], RIGHT: sim["right"]}
            tifffile.imwrite(truth / f"{i}_{j}_0_labels.tif", sim["labels"], compression="zlib")
            tifffile.imwrite(truth / f"{i}_{j}_0_phase.tif", sim["phase"], compression="zlib")
            meta["fovs"][f"{i}_{j}_0"] = {"seed": s, "n_cells": len(sim["cells"])}
    write_acquisition(
        out,
        frames,
        pixel_size_um=pixel_size_um,
        na=na,
        fmt=fmt,
        experiment_id=f"simulated_seed{seed}",
    )
    (truth / "simulation.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")
    return out
