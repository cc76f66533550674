"""Compile (or load) the numba kernels once per installation, outside any timed job.

The kernels are compiled with ``cache=True``: numba writes them to its cache (``__pycache__``
beside the sources, or ``NUMBA_CACHE_DIR``) the first time they run and every later process
loads them from there. :func:`warm_up` runs every kernel of the smear and bead stages once
on tiny inputs, so that the compilation (~20–45 s of one core) happens here — at install
(``scopeflow warmup``), or in the workflow's one-off ``warmup`` rule, which runs beside the
first jobs that need no kernel — and not inside the first segment/measure/locate jobs.

    python -m scopeflow.warmup [smear] [beads]
"""

from __future__ import annotations

import time

import numpy as np

__all__ = ["KINDS", "warm_up"]

#: The kernel kinds :func:`warm_up` knows.
KINDS = ("smear", "beads")


def _smear() -> None:
    import scopeflow.segment.unet_kernels as unet_kernels
    from scopeflow.smear import measure
    from scopeflow.smear.qc.focus import tiled_focus_metrics

    unet_kernels.warm_up()
    labels = np.zeros((12, 12), np.uint32)
    labels[2:6, 2:6] = 1
    labels[6:10, 5:9] = 2
    dpc = np.random.default_rng(0).random((12, 12)).astype(np.float32)
    measure.measure_cells(labels, dpc, dpc - np.float32(0.5), 0.33)
    measure.fov_focus(dpc)  # the measure stage's FOV scores
    tiled_focus_metrics(dpc, 6, names=["laplacian_var"], compiled=True)


def _beads() -> None:
    from scopeflow.simulate.beads import render_frame
    from scopeflow.track.localize import locate

    y, x = np.array([12.0, 30.0, 44.0]), np.array([14.0, 33.0, 20.0])
    img = render_frame((56, 56), y, x, np.full(3, 3000.0), sigma_px=1.6, background=20.0)
    locate(np.random.default_rng(0).poisson(img).astype(np.float32))


def warm_up(kinds: tuple[str, ...] = KINDS, processes: int = 1) -> dict[str, float]:
    """Run the compiled kernels of the given stage kinds once; seconds per kind.

    The first call after an installation compiles them into numba's cache; later calls
    only load them (about a second). With ``processes`` > 1 the kinds are compiled at the
    same time, each in its own Python process (``python -m scopeflow.warmup <kind>``;
    numba compiles in one thread): on a fresh clone the smear and bead kernels take about
    as long as each other, so two processes halve the wall time of the first run's warm-up.

    Parameters
    ----------
    kinds : tuple of str
        Any of :data:`KINDS`: ``"smear"`` (segment and measure kernels), ``"beads"`` (bead
        localisation).
    processes : int
        Kinds compiled at once.

    Returns
    -------
    dict
        Wall seconds per kind (empty without numba).
    """
    from scopeflow._numba import HAVE_NUMBA

    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise ValueError(f"unknown warm-up kind(s) {unknown}; use {', '.join(KINDS)}")
    out: dict[str, float] = {}
    if not HAVE_NUMBA:
        return out
    kinds = tuple(dict.fromkeys(kinds))
    if processes > 1 and len(kinds) > 1:
        return _in_processes(kinds, processes)
    for kind in kinds:
        t0 = time.perf_counter()
        {"smear": _smear, "beads": _beads}[kind]()
        out[kind] = round(time.perf_counter() - t0, 2)
    return out


def _in_processes(kinds: tuple[str, ...], processes: int) -> dict[str, float]:
    """:func:`warm_up` of each kind in a child process, ``processes`` at a time; a child's
    failure is raised with its last lines of output."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    src = str(Path(__file__).resolve().parents[1])  # this scopeflow, whatever sys.path says
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)}
    out: dict[str, float] = {}
    todo = list(kinds)
    while todo:
        batch, todo = todo[:processes], todo[processes:]
        running = [(k, subprocess.Popen([sys.executable, "-m", "scopeflow.warmup", k], env=env,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
                   for k in batch]
        for kind, proc in running:
            text, _ = proc.communicate()
            if proc.returncode:
                raise RuntimeError(f"warm-up of the {kind} kernels failed: {text.strip()[-2000:]}")
            out.update(json.loads(text.strip().splitlines()[-1]))
    return out


if __name__ == "__main__":  # pragma: no cover - exercised by the workflow and the CLI
    import json
    import sys

    print(json.dumps(warm_up(tuple(sys.argv[1:]) or KINDS)))
