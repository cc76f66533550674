"""The demo bead movie: simulated diffusing beads with known D, written as a frame folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from scopeflow.io.discover import BEADS_MARKER
from scopeflow.io.atomic import replace, temp_path

__all__ = ["make_demo_movie"]


def make_demo_movie(
    out_dir: str | Path,
    *,
    n_frames: int = 40,
    size: int = 256,
    n_beads: int = 60,
    D_um2_s: float = 0.4,
    pixel_size_um: float = 0.35,
    fps: float = 24.0,
    seed: int = 0,
) -> Path:
    """Write a simulated bead movie with known D: a folder of 16-bit TIFF frames, the
    ``scopeflow_beads.json`` marker (pixel size, fps, simulation parameters) and ``truth.csv``
    (``frame, particle, y, x, photons``; px).

    Fluorescent Gaussian beads (σ 1.5 px, 500–3000 photons, background 20) diffusing in 2-D
    and entering/leaving the field of view (:func:`scopeflow.simulate.beads.simulate_movie`).
    The folder is written under a temporary name and renamed into place.
    """
    import tifffile

    from scopeflow.simulate.beads import simulate_movie

    out = Path(out_dir)
    params = {"n_frames": n_frames, "shape": [size, size], "n_beads": n_beads,
              "D_um2_s": D_um2_s, "pixel_size_um": pixel_size_um, "fps": fps,
              "profile": "gaussian", "sigma_px": 1.5, "photons": [500.0, 3000.0],
              "background": 20.0, "seed": seed}
    movie, truth = simulate_movie(n_frames, (size, size), n_beads, D_um2_s, pixel_size_um, fps,
                                  sigma_px=1.5, photons=(500.0, 3000.0), background=20.0,
                                  seed=seed)
    tmp = temp_path(out)
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    width = max(4, len(str(n_frames - 1)))
    for t, frame in enumerate(movie):
        tifffile.imwrite(tmp / f"frame_{t:0{width}d}.tif", frame)
    truth.to_csv(tmp / "truth.csv", index=False)
    meta = {"pixel_size_um": pixel_size_um, "fps": fps,
            "description": "scopeflow simulated bead movie (scopeflow.track.demo."
                           "make_demo_movie); truth.csv holds the true positions (px)",
            "simulation": params}
    (tmp / BEADS_MARKER).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    replace(tmp, out)
    return out
