"""Peak memory of the smear stages against slide size and image size.

Each stage (ingest, dpc, segment, measure) of one shard runs in a fresh child process and its
peak RSS is read from the kernel (``ru_maxrss``). Cases: 1 vs 16 FOVs of 1024², and one FOV of
1024² vs 4096². Inputs are real Octopi DPC images (../shared/data, tiled to 4096²) handled as a
``smear_dpc`` sample, so every stage but the left/right flatfield is the production path.

    python benchmarks/memory.py [--method classical] [--threads 2]

Peak RSS must not grow with the number of FOVs (FOVs are processed one after another); with the
image size it grows with the FOV's own arrays (image, labels), not with the slide.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]

STAGE = r"""
import json, resource, sys
from scopeflow import pipeline
args = json.loads(sys.argv[1])
stage, d = args["stage"], args["dir"]
if stage == "ingest":
    pipeline.ingest("smear_dpc", d + "/input", d + "/fovs.tsv", d + "/ff.npz", pixel_size_um=0.333)
    pipeline.create_store(d + "/fovs.tsv", d + "/s.ome.zarr")
elif stage == "dpc":
    pipeline.write_images(d + "/fovs.tsv", d + "/ff.npz", d + "/s.ome.zarr", d + "/dpc.json", na_illum=None)
elif stage == "segment":
    pipeline.segment_store(d + "/s.ome.zarr", d + "/seg.json", method=args["method"],
                           chunk=1024, threads=args["threads"],
                           predictor_kwargs={"threads": args["threads"]} if args["method"] == "unet" else {})
elif stage == "measure":
    pipeline.measure_store(d + "/s.ome.zarr", d + "/seg.json", d + "/cells.parquet", d + "/fovs.parquet", sample="s")
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0)
"""


def make_case(root: Path, n_fovs: int, size: int, source: np.ndarray) -> Path:
    import imageio.v3 as iio

    d = root / f"{n_fovs}x{size}"
    (d / "input").mkdir(parents=True)
    reps = -(-size // source.shape[0])
    tiled = np.tile(source, (reps, reps))
    for n in range(n_fovs):
        y = (n * 197) % (tiled.shape[0] - size + 1)
        iio.imwrite(d / "input" / f"fov_{n:03d}.png", tiled[y : y + size, :size])
    return d


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--method", default="classical")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    shared = Path(os.environ.get("SCOPEFLOW_SHARED_DATA", REPO.parent / "shared" / "data"))
    import imageio.v3 as iio

    source = np.asarray(iio.imread(shared / "octopi_rbc_dpc_m2unet" / "images" / "dpc_2048_00.png"))
    cases = [(1, 1024), (16, 1024), (1, 4096)]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    print(f"peak RSS (MB) per stage, {args.method}, {args.threads} threads")
    print(f"{'case':<14}" + "".join(f"{s:>10}" for s in ("ingest", "dpc", "segment", "measure")))
    with tempfile.TemporaryDirectory() as tmp:
        results = {}
        for n, size in cases:
            d = make_case(Path(tmp), n, size, source)
            row = []
            for stage in ("ingest", "dpc", "segment", "measure"):
                payload = json.dumps({"stage": stage, "dir": str(d), "method": args.method,
                                      "threads": args.threads})
                out = subprocess.run([sys.executable, "-c", STAGE, payload], capture_output=True,
                                     text=True, env=env, check=True)
                row.append(float(out.stdout.strip().splitlines()[-1]))
            results[(n, size)] = row
            print(f"{f'{n} x {size}²':<14}" + "".join(f"{v:>10.0f}" for v in row), flush=True)
    one, many, big = results[(1, 1024)], results[(16, 1024)], results[(1, 4096)]
    print("ratio 16 FOVs / 1 FOV (slide size): " + ", ".join(f"{b / a:.2f}" for a, b in zip(one, many)))
    print("ratio 4096² / 1024² (image size):   " + ", ".join(f"{b / a:.2f}" for a, b in zip(one, big)))


if __name__ == "__main__":
    main()
