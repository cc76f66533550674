"""Peak memory per pixel of the smear stages, against the FOV size and the rules' ``mem_mb``.

Each stage (ingest, dpc, segment, measure) of one shard runs in a fresh child process with the
production code path (``smear_raw``: an Octopi acquisition of 8-bit BMP left/right images,
flatfields, DPC, phase, U-Net, measurements) and its peak RSS is read from the kernel
(``VmHWM`` of ``/proc/self/status``: the child's own high-water mark; ``ru_maxrss`` would
count the benchmark's RSS at the fork). The images are made from a real Octopi DPC image of
../shared/data tiled to the FOV size (left/right = 128 ± 100·(DPC − 0.5)). Cases: 1 and 4 FOVs of 1024² (peak
RSS must not grow with the number of FOVs), one FOV of 4096², and with ``--big`` one FOV
of 12000² (several GB: run it alone).

For every stage it prints the peak RSS (MB), the bytes per pixel of the FOV, and the
``mem_mb`` the workflow's rule asks for a FOV of that size
(:func:`scopeflow.resources.stage_mem_mb`); a peak above it is flagged.

    python benchmarks/memory.py [--big | --only-big] [--stages ingest,dpc] [--threads 2] [--method unet]
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
sys.path.insert(0, str(REPO / "src"))

STAGES = ("ingest", "dpc", "segment", "measure")

STAGE = r"""
import json, resource, sys
sys.path.insert(0, sys.argv[2])
from scopeflow import smear as pipeline
args = json.loads(sys.argv[1])
stage, d = args["stage"], args["dir"]
if stage == "ingest":
    pipeline.ingest("smear_raw", d + "/input", d + "/fovs.tsv", d + "/ff.npz")
    pipeline.create_store(d + "/fovs.tsv", d + "/s.ome.zarr")
elif stage == "dpc":
    pipeline.write_images(d + "/fovs.tsv", d + "/ff.npz", d + "/s.ome.zarr", d + "/dpc.json",
                          threads=args["threads"])
elif stage == "segment":
    pipeline.segment_store(d + "/s.ome.zarr", d + "/seg.json", method=args["method"],
                           chunk=1024, threads=args["threads"],
                           predictor_kwargs={"threads": args["threads"], "backend": "onnx"}
                           if args["method"] == "unet" else {})
elif stage == "measure":
    pipeline.measure_store(d + "/s.ome.zarr", d + "/seg.json", d + "/cells.parquet", d + "/fovs.parquet", sample="s")
try:  # this process's own high-water mark (ru_maxrss would include the parent's RSS at fork)
    with open("/proc/self/status") as fh:
        print(next(int(l.split()[1]) for l in fh if l.startswith("VmHWM:")) / 1024.0)
except OSError:
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0)
"""


def make_case(root: Path, n_fovs: int, size: int, source: np.ndarray) -> Path:
    from scopeflow.io.octopi_write import write_acquisition

    d = root / f"{n_fovs}x{size}"
    reps = -(-size // source.shape[0])
    tiled = np.tile(source.astype(np.float32) / 255.0, (reps, reps))
    frames = {}
    for n in range(n_fovs):
        y = (n * 197) % (tiled.shape[0] - size + 1)
        dpc = tiled[y : y + size, :size] - np.float32(0.5)
        frames[(0, n, 0)] = {
            "BF_LED_matrix_left_half": np.clip(128 + 100 * dpc, 1, 255).astype(np.uint8),
            "BF_LED_matrix_right_half": np.clip(128 - 100 * dpc, 1, 255).astype(np.uint8),
        }
        del dpc
    del tiled
    write_acquisition(d / "input", frames, pixel_size_um=0.333, na=0.4)
    return d


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--method", default="unet")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--big", action="store_true", help="also one FOV of 12000² (several GB)")
    parser.add_argument("--only-big", action="store_true", help="only the 12000² case")
    parser.add_argument("--stages", default=",".join(STAGES),
                        help="comma-separated stages to run, in order (each needs the ones before it)")
    args = parser.parse_args(argv)
    stages = [st for st in STAGES if st in args.stages.split(",")]
    shared = Path(os.environ.get("SCOPEFLOW_SHARED_DATA", REPO.parent / "shared" / "data"))
    import imageio.v3 as iio

    from scopeflow.resources import stage_mem_mb

    source = np.asarray(iio.imread(shared / "octopi_rbc_dpc_m2unet" / "images" / "dpc_2048_00.png"))
    cases = [] if args.only_big else [(1, 1024), (4, 1024), (1, 4096)]
    if args.big or args.only_big:
        cases.append((1, 12000))
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    print(f"peak RSS per stage, {args.method}, {args.threads} threads: MB (bytes per FOV pixel) "
          "[rule mem_mb for this FOV size]")
    print(f"{'case':<14}" + "".join(f"{s:>26}" for s in stages))
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n, size in cases:
            d = make_case(Path(tmp), n, size, source)
            row = []
            for stage in stages:
                payload = json.dumps({"stage": stage, "dir": str(d), "method": args.method,
                                      "threads": args.threads})
                out = subprocess.run([sys.executable, "-c", STAGE, payload, str(REPO / "src")],
                                     capture_output=True, text=True, env=env)
                if out.returncode:
                    sys.exit(f"{stage} on {n} x {size}² failed:\n{out.stderr[-2000:]}")
                row.append(float(out.stdout.strip().splitlines()[-1]))
            results[(n, size)] = row
            cells = []
            for stage, mb in zip(stages, row):
                limit = stage_mem_mb(stage, size * size)
                flag = "!" if mb > limit else " "
                cells.append(f"{mb:7.0f} ({mb * 2**20 / size**2:5.1f} B/px) [{limit:6d}]{flag}")
            print(f"{f'{n} x {size}²':<14}" + "".join(f"{c:>26}" for c in cells), flush=True)
            subprocess.run(["rm", "-rf", str(d)], check=False)
    if (1, 1024) in results and (4, 1024) in results:
        one, many = results[(1, 1024)], results[(4, 1024)]
        print("ratio 4 FOVs / 1 FOV (slide size):  " + ", ".join(f"{b / a:.2f}" for a, b in zip(one, many)))


if __name__ == "__main__":
    main()
