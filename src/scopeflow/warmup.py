"""Compile (or load) the numba kernels once per installation, outside any timed job.

The kernels are compiled with ``cache=True``: numba writes them to its cache (``__pycache__``
beside the sources, or ``NUMBA_CACHE_DIR``) the first time they run and every later process
loads them from there. :func:`warm_up` runs every kernel of the smear and bead stages once
on tiny inputs, so that the compilation (~20–45 s of one core) happens here — at install
(``scopeflow warmup``), or in the workflow's one-off ``warmup`` rule, which runs beside the
first jobs that need no kernel — and not inside the first segment/measure/locate jobs.

    python -m scopeflow.warmup
"""

from __future__ import annotations

import time

import numpy as np

__all__ = ["warm_up"]


def _smear() -> None:
    from scopeflow import measure
    import scopeflow.segment.unet_kernels as unet_kernels

    unet_kernels.warm_up()
    labels = np.zeros((12, 12), np.uint32)
    labels[2:6, 2:6] = 1
    labels[6:10, 5:9] = 2
    dpc = np.random.default_rng(0).random((12, 12)).astype(np.float32)
    measure.measure_cells(labels, dpc, dpc - np.float32(0.5), 0.33)


def _beads() -> None:
    from scopeflow.simulate.beads import render_frame
    from scopeflow.track.localize import locate

    y, x = np.array([12.0, 30.0, 44.0]), np.array([14.0, 33.0, 20.0])
    img = render_frame((56, 56), y, x, np.full(3, 3000.0), sigma_px=1.6, background=20.0)
    locate(np.random.default_rng(0).poisson(img).astype(np.float32))


def warm_up(kinds: tuple[str, ...] = ("smear", "beads")) -> dict[str, float]:
    """Run the compiled kernels of the given stage kinds once; seconds per kind.

    The first call after an installation compiles them into numba's cache; later calls
    only load them (about a second).
    """
    from scopeflow._numba import HAVE_NUMBA

    out: dict[str, float] = {}
    if not HAVE_NUMBA:
        return out
    for kind in kinds:
        t0 = time.perf_counter()
        {"smear": _smear, "beads": _beads}[kind]()
        out[kind] = round(time.perf_counter() - t0, 2)
    return out


if __name__ == "__main__":  # pragma: no cover - exercised by the workflow and the CLI
    print(warm_up())
