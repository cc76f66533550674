"""The segment stage against the bare U-Net on the same FOVs, in alternating rounds.

Each round runs, in fresh child processes one after the other:

* ``segment``: :func:`scopeflow.smear.segment_store` (ONNX fp32, the config defaults) over the
  FOVs of a scratch sample store, as the workflow's segment job does (reading, the network in
  its windows, decoding, writing labels and pyramid); the time from the call to its return;
* ``bare``: the U-Net alone, ONNX Runtime fp32 on each whole FOV (z-scored, padded to 16),
  the forward passes only (as ``benchmarks/pipeline_fov.py`` measures the bare network).

It prints per FOV the median wall and CPU seconds (the whole process's CPU, all threads) of
each, and their ratio. On a shared machine the wall figures follow the other processes' load;
compare within one run.

    python benchmarks/segment_store_speed.py --store RESULTS/slide/slide.ome.zarr [--fovs 8] [--rounds 3]
        [--threads 2] [--src OTHER_CHECKOUT/src]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
kind, store, threads = sys.argv[2], sys.argv[3], int(sys.argv[4])
import numpy as np
from scopeflow.io import ome_zarr
fovs = ome_zarr.fov_names(store)
if kind == "segment":
    from scopeflow.smear import segment_store
    from scopeflow.segment.params import SegmentParams
    p = SegmentParams(threads=threads)
    t0, c0 = time.perf_counter(), time.process_time()
    segment_store(store, Path(store).with_suffix(".json"), fovs=fovs, method=p.method, chunk=p.chunk,
                  predictor_kwargs=p.predictor_kwargs(), threads=p.threads)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
else:
    from scopeflow.models.m2unet_files import pad_to_stride
    from scopeflow.segment.unet import UNetPredictor
    net = UNetPredictor(threads=threads, backend="onnx")
    wall = cpu = 0.0
    for fov in fovs:
        img = np.asarray(ome_zarr.read_channel(store, fov, "dpc"))
        z = pad_to_stride((img - np.float32(img.mean())) / np.float32(img.std()))[None, None]
        t0, c0 = time.perf_counter(), time.process_time()
        net.runner(z)
        wall, cpu = wall + time.perf_counter() - t0, cpu + time.process_time() - c0
print(json.dumps({"wall": wall / len(fovs), "cpu": cpu / len(fovs)}))
"""


def scratch_store(source: Path, n: int, root: Path) -> Path:
    """A sample store with the ``dpc`` channel of the first ``n`` FOVs of ``source``."""
    from scopeflow.io import ome_zarr

    names = ome_zarr.fov_names(source)[:n]
    path = root / "s.ome.zarr"
    ome_zarr.create_sample_store(path, names, {})
    for fov in names:
        ps = float(ome_zarr.fov_attrs(source, fov)["pixel_size_um"])
        ome_zarr.write_image(path, fov, {"dpc": ome_zarr.read_channel(source, fov, "dpc")[...]}, ps)
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", type=Path, required=True, help="a sample OME-Zarr with DPC FOVs")
    parser.add_argument("--fovs", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--src", type=Path, default=REPO / "src",
                        help="the scopeflow source tree to time (e.g. an older checkout's src)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO / "src"))
    results: dict[str, list[dict]] = {"segment": [], "bare": []}
    with tempfile.TemporaryDirectory() as tmp:
        store = scratch_store(args.store, args.fovs, Path(tmp))
        for _ in range(args.rounds):
            for kind in results:
                for labels in store.glob("*/*/*/labels"):
                    shutil.rmtree(labels)
                out = subprocess.run([sys.executable, "-c", CHILD, str(args.src), kind, str(store),
                                      str(args.threads)], capture_output=True, text=True, check=True)
                results[kind].append(json.loads(out.stdout.strip().splitlines()[-1]))
    med = {k: (statistics.median(r["wall"] for r in v), statistics.median(r["cpu"] for r in v))
           for k, v in results.items()}
    print(f"{args.fovs} FOVs, {args.rounds} rounds, {args.threads} threads (medians per FOV)")
    for k, (w, c) in med.items():
        runs = ", ".join(f"{r['wall']:.2f}/{r['cpu']:.2f}" for r in results[k])
        print(f"  {k:8s} {w:6.3f} s  {c:6.3f} CPU-s   (rounds wall/CPU: {runs})")
    print(f"  segment / bare: wall {med['segment'][0] / med['bare'][0]:.2f}x, "
          f"CPU {med['segment'][1] / med['bare'][1]:.2f}x")


if __name__ == "__main__":
    main()
