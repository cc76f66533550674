"""Per-FOV OME-Zarr write time: the current writer against the previous one, in the same run.

One FOV of 3000² (channels ``dpc`` and ``phase``, float32, a 4-level 2× mean pyramid, the
``omero`` windows) plus its uint32 ``labels/cells`` with the nearest-neighbour pyramid is
written by

- ``new``: :mod:`scopeflow.io.ome_zarr` (NGFF 0.5 plate, metadata built and validated with the
  ``yaozarrs`` models, arrays with ``dimension_names``);
- ``old``: the writer as it was on a git revision (default ``34406b8``, before issue 19: hand-written
  metadata, no ``dimension_names``), loaded from ``git show REV:src/scopeflow/io/ome_zarr.py``
  into a temporary module;
- ``ome-zarr-py`` (optional, when installed): ``ome_zarr.writer.write_multiscale`` /
  ``write_multiscale_labels`` with the same pyramid levels passed in and the same ``omero``
  windows, a candidate library writer (Zarr v3 / NGFF 0.5 by default).

Rounds alternate the writers; each round writes a fresh store in a temporary folder. Printed:
the median seconds per FOV of each writer and its ratio to ``old`` (the issue's target:
``new`` within 10 %, ratio <= 1.10).

    python benchmarks/ome_zarr_write.py [--size 3000] [--rounds 7] [--rev 34406b8]
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def load_old_writer(rev: str, tmp: Path):
    """The ``io/ome_zarr.py`` of git revision ``rev`` as a standalone module."""
    src = subprocess.run(["git", "-C", str(REPO), "show", f"{rev}:src/scopeflow/io/ome_zarr.py"],
                         check=True, capture_output=True, text=True).stdout
    path = tmp / "ome_zarr_old.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("ome_zarr_old", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def scopeflow_writer(mod):
    def write(store: Path, dpc, phase, labels):
        mod.create_sample_store(store, ["fov"], {"scopeflow_version": "bench"})
        mod.write_image(store, "fov", {"dpc": dpc, "phase": phase}, 0.333, chunk=1024, attrs={"i": 0})
        mod.write_labels(store, "fov", labels, attrs={"method": "bench"})
    return write


def ome_zarr_py_writer():
    """ome-zarr-py's writer with the same levels (mean image pyramid, strided labels)."""
    import zarr
    from ome_zarr.writer import write_multiscale, write_multiscale_labels

    from scopeflow.io.ngff_write import downsample_mean, levels_for

    def write(store: Path, dpc, phase, labels):
        stack = np.stack([dpc, phase])
        n = levels_for(stack.shape[1:])
        levels = [stack]
        for _ in range(1, n):
            levels.append(downsample_mean(levels[-1]))
        root = zarr.open_group(str(store), mode="w")
        axes = [{"name": "c", "type": "channel"}, {"name": "y", "type": "space", "unit": "micrometer"},
                {"name": "x", "type": "space", "unit": "micrometer"}]
        ct = [[{"type": "scale", "scale": [1.0, 0.333 * 2**k, 0.333 * 2**k]}] for k in range(n)]
        write_multiscale(levels, root, axes=axes, coordinate_transformations=ct,
                         storage_options={"chunks": (1, 1024, 1024)})
        lab = [labels[None, :: 2**k, :: 2**k] for k in range(n)]
        write_multiscale_labels(lab, root, name="cells", axes=axes, coordinate_transformations=ct,
                                storage_options={"chunks": (1, 1024, 1024)})
        # the same omero display windows as scopeflow's writers (full-image percentiles)
        windows = [(float(np.percentile(c, 0.5)), float(np.percentile(c, 99.5)), float(c.min()),
                    float(c.max())) for c in stack]
        ome = dict(root.attrs["ome"])
        ome["omero"] = {"channels": [{"label": lab_, "color": "FFFFFF", "window": {
            "start": w[0], "end": w[1], "min": w[2], "max": w[3]}} for lab_, w in zip(("dpc", "phase"), windows)]}
        root.attrs["ome"] = ome
    return write


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=3000)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--rev", default="34406b8", help="git revision of the previous writer")
    args = ap.parse_args()

    from scopeflow.io import ome_zarr as new

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[: args.size, : args.size].astype(np.float32)
    dpc = (0.5 + 0.1 * np.sin(xx / 13) * np.cos(yy / 17)
           + 0.02 * rng.standard_normal((args.size, args.size))).astype(np.float32)
    phase = (np.cos(xx / 29) * np.sin(yy / 31)).astype(np.float32)
    labels = ((yy // 40) * (args.size // 40 + 1) + xx // 40 + 1).astype(np.uint32)
    labels[(yy % 40 < 4) | (xx % 40 < 4)] = 0

    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        writers = {"old": scopeflow_writer(load_old_writer(args.rev, tmp)),
                   "new": scopeflow_writer(new)}
        try:
            writers["ome-zarr-py"] = ome_zarr_py_writer()
        except ImportError:
            pass
        times: dict[str, list[float]] = {k: [] for k in writers}
        for r in range(args.rounds):
            for name, write in writers.items():
                store = tmp / f"{name}_{r}.ome.zarr"
                t0 = time.perf_counter()
                write(store, dpc, phase, labels)
                times[name].append(time.perf_counter() - t0)
                shutil.rmtree(store)
    base = statistics.median(times["old"])
    print(f"OME-Zarr write of one {args.size}² FOV (2 channels + labels, 4 levels), "
          f"{args.rounds} rounds, median s/FOV:")
    for name, t in times.items():
        med = statistics.median(t)
        print(f"  {name:12s} {med:6.3f} s   ratio to old {med / base:5.2f}   "
              f"(rounds: {' '.join(f'{x:.2f}' for x in t)})")


if __name__ == "__main__":
    main()
