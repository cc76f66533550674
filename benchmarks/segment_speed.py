"""U-Net segmentation throughput: bare forward passes vs the chunked ``scopeflow segment`` path.

Prints, in one run and on the same threads:

1. Mpx/s of a bare whole-image eager forward pass (z-scored input, no decoding);
2. Mpx/s of the full chunked path (``segment_image``: halo tiles, forward, decode, stitching);
3. their ratio (the chunking overhead);
4. ``scopeflow segment`` on a 4096² image as a whole process (start-up, reading, inference,
   decoding, stitching, writing) against bare eager forward passes over its sixteen 1024² tiles.

    python benchmarks/segment_speed.py [--threads 2] [--chunk 1024] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--chunk", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)

    import dask
    import imageio.v3 as iio
    import torch

    from scopeflow.io.images import read_gray
    from scopeflow.segment.chunked import segment_image
    from scopeflow.segment.unet import UNetPredictor

    torch.set_num_threads(args.threads)
    shared = Path(os.environ.get("SCOPEFLOW_SHARED_DATA", REPO.parent / "shared" / "data"))
    image = read_gray(shared / "octopi_rbc_dpc_m2unet" / "images" / "dpc_2048_00.png")
    predictor = UNetPredictor(threads=args.threads)
    net = predictor.net
    z = torch.from_numpy(((image - image.mean()) / image.std()).astype(np.float32))[None, None]

    def bare(x):
        with torch.inference_mode():
            net(x)

    bare(z[..., :256, :256])  # warm-up
    mpx = image.size / 1e6
    t_bare = best_of(lambda: bare(z), args.repeats)
    with dask.config.set(scheduler="threads", num_workers=args.threads):
        t_chunked = best_of(lambda: segment_image(image, predictor, chunk=args.chunk), args.repeats)
    print(f"threads {args.threads}, image 2048², chunk {args.chunk}")
    print(f"bare whole-image forward : {mpx / t_bare:6.2f} Mpx/s ({t_bare:.2f} s)")
    print(f"chunked segment_image    : {mpx / t_chunked:6.2f} Mpx/s ({t_chunked:.2f} s)")
    print(f"ratio chunked / bare     : {t_bare / t_chunked:6.2f}  (target >= 0.70)")

    big = np.tile(np.asarray(iio.imread(shared / "octopi_rbc_dpc_m2unet" / "images" / "dpc_2048_00.png")), (2, 2))
    zb = torch.from_numpy(((big - big.mean()) / big.std()).astype(np.float32))[None, None]

    def tiles():
        for y in range(0, 4096, 1024):
            for x in range(0, 4096, 1024):
                bare(zb[..., y : y + 1024, x : x + 1024])

    t_tiles = best_of(tiles, 1)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "big.png"
        iio.imwrite(src, big)
        cmd = [sys.executable, "-m", "scopeflow.cli", "segment", str(src), "-o", str(Path(tmp) / "l.tif"),
               "--method", "unet", "--chunk", str(args.chunk), "--threads", str(args.threads)]
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        t_cli = time.perf_counter() - t0
    print(f"4096²: eager forward over 16 tiles of 1024²: {t_tiles:.2f} s; "
          f"`scopeflow segment` whole process: {t_cli:.2f} s; speed ratio {t_tiles / t_cli:.2f} (target >= 0.70)")


if __name__ == "__main__":
    main()
