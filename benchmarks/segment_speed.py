"""U-Net segmentation speed: inference paths, chunking overhead, and a whole `scopeflow segment` run.

Prints, in one run on the same threads (these machines are noisy: compare ratios, not seconds):

1. a matmul peak (GFLOP/s, fp32) and the network's cost (FLOP per pixel, counted from its
   convolutions);
2. per inference path (torch eager fp32 = the trained ``M2UNet`` as is, the baseline; torch with
   folded batch norms and the reordered decoder; ONNX Runtime fp32; ONNX Runtime INT8): Mpx/s of
   batch-1 1024² forward passes (median of repeats), the ratio to torch eager fp32, the achieved
   GFLOP/s and its fraction of the matmul peak, and binary IoU / instance F1@0.5 of the decoded
   labels of ../shared/data/octopi_rbc_dpc_m2unet/images/dpc_1024_00.png against the torch fp32
   labels;
3. the chunking overhead on dpc_2048_00 (2048²): a bare whole-image forward pass vs the full
   chunked ``segment_image`` path (maps, decoding per chunk, stitching), same back end;
4. ``scopeflow segment`` on a 4096² DPC image as a whole process (start-up, reading, checks,
   inference, decoding, stitching, writing) against bare eager fp32 forward passes over its
   sixteen 1024² tiles, in interleaved rounds (the median ratio is the figure).

    python benchmarks/segment_speed.py [--threads 2] [--chunk 1024] [--repeats 5] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def timed(fn, repeats: int) -> float:
    """Median wall time (s) of ``repeats`` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def matmul_peak_gflops(threads: int, n: int = 2048, repeats: int = 5) -> float:
    """fp32 matmul throughput (GFLOP/s) of ``threads`` torch threads."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    t = timed(lambda: a @ b, repeats)
    return 2 * n**3 / t / 1e9


def flop_per_pixel(net) -> float:
    """Multiply-adds × 2 of every convolution of ``net`` per input pixel (1024² input)."""
    import torch

    total = 0

    def hook(mod, inp, out):
        nonlocal total
        k = mod.kernel_size[0] * mod.kernel_size[1] * mod.in_channels // mod.groups
        total += 2 * k * out.numel()

    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    with torch.inference_mode():
        net(torch.zeros(1, 1, 1024, 1024))
    for h in handles:
        h.remove()
    return total / 1024**2


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--chunk", type=int, default=1024, help="chunk of the chunked paths (default: config's 1024)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the 4096² comparison")
    args = parser.parse_args(argv)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)

    import dask
    import imageio.v3 as iio
    import torch

    from scopeflow.evaluate import evaluate
    from scopeflow.io.images import read_gray
    from scopeflow.segment.chunked import segment_image
    from scopeflow.segment.unet import UNetPredictor

    torch.set_num_threads(args.threads)
    shared = Path(os.environ.get("SCOPEFLOW_SHARED_DATA", REPO.parent / "shared" / "data"))
    images = shared / "octopi_rbc_dpc_m2unet" / "images"
    peak = matmul_peak_gflops(args.threads)
    eager = UNetPredictor(threads=args.threads)  # torch fp32: the trained M2UNet, eager
    fpp = flop_per_pixel(eager.net)
    print(f"threads {args.threads}; matmul peak {peak:.0f} GFLOP/s; M2U-Net {fpp / 1e3:.1f} kFLOP per pixel "
          f"(arithmetic floor {peak * 1e9 / fpp / 1e6:.1f} Mpx/s)")

    val = read_gray(images / "dpc_1024_00.png")
    z = ((val - val.mean()) / val.std()).astype(np.float32)[None, None]
    paths = {
        "torch eager fp32 (M2UNet)": None,
        "torch fp32 folded+reordered": UNetPredictor(threads=args.threads, backend="torch"),
        "onnx fp32": UNetPredictor(threads=args.threads, backend="onnx", precision="fp32"),
        "onnx int8": UNetPredictor(threads=args.threads, backend="onnx", precision="int8"),
    }

    def forward_eager(x):
        with torch.inference_mode():
            eager.net(torch.from_numpy(x))

    with dask.config.set(scheduler="threads", num_workers=args.threads):
        base = segment_image(val, eager, chunk=args.chunk)
        print(f"\n{'path':30s} {'Mpx/s':>6s} {'x eager':>7s} {'GFLOP/s':>7s} {'% peak':>6s} "
              f"{'IoU':>6s} {'F1':>6s}   (1024² batch 1; IoU/F1 vs torch fp32 labels on dpc_1024_00)")
        t_eager = None
        for name, pred in paths.items():
            fwd = (lambda: forward_eager(z)) if pred is None else (lambda p=pred: p.runner(z))
            t = timed(fwd, args.repeats)
            t_eager = t_eager or t
            labels = base if pred is None else segment_image(val, pred, chunk=args.chunk)
            s = evaluate(labels, base)
            mpx = z.size / 1e6 / t
            print(f"{name:30s} {mpx:6.2f} {t_eager / t:7.2f} {mpx * fpp / 1e3:7.1f} "
                  f"{100 * mpx * fpp / 1e3 / peak:6.1f} {s['binary_iou']:6.4f} {s['f1']:6.4f}")

        # chunking overhead (issue 4): bare whole-image forward vs the chunked path, same back end
        image = read_gray(images / "dpc_2048_00.png")
        zi = ((image - image.mean()) / image.std()).astype(np.float32)[None, None]
        print("\nchunking overhead on 2048², same back end:")
        for name, pred in (("torch eager", eager), ("onnx fp32", paths["onnx fp32"]),
                           ("onnx int8", paths["onnx int8"])):
            fwd = (lambda: forward_eager(zi)) if name == "torch eager" else (lambda p=pred: p.runner(zi))
            t_bare = timed(fwd, max(1, args.repeats // 2))
            for chunk in sorted({args.chunk, 2048}):
                t_chunked = timed(lambda p=pred, c=chunk: segment_image(image, p, chunk=c), max(1, args.repeats // 2))
                target = " (target >= 0.70: the default path)" if name == "onnx fp32" else ""
                print(f"  {name:12s} bare forward {image.size / 1e6 / t_bare:5.2f} Mpx/s, chunked segment_image "
                      f"(chunk {chunk}) {image.size / 1e6 / t_chunked:5.2f} Mpx/s, ratio {t_bare / t_chunked:4.2f}"
                      + target)

    # whole process on 4096² (issues 4 and 8)
    big = np.tile(np.asarray(iio.imread(images / "dpc_2048_00.png")), (2, 2))
    zb = ((big - big.mean()) / big.std()).astype(np.float32)[None, None]

    def tiles():
        for y in range(0, 4096, 1024):
            for x in range(0, 4096, 1024):
                forward_eager(np.ascontiguousarray(zb[..., y : y + 1024, x : x + 1024]))

    def cli(src: Path, out: Path, backend: str, precision: str) -> float:
        cmd = [sys.executable, "-m", "scopeflow.cli", "segment", str(src), "-o", str(out),
               "--method", "unet", "--chunk", str(args.chunk), "--threads", str(args.threads),
               "--backend", backend, "--precision", precision]
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        return time.perf_counter() - t0

    print(f"\n4096²: eager fp32 forward passes over its 16 tiles of 1024² vs `scopeflow segment` "
          f"(whole process), {args.rounds} rounds, interleaved:")
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "big.png", Path(tmp) / "l.tif"
        iio.imwrite(src, big)
        ratios = []
        for r in range(args.rounds):
            t_tiles = timed(tiles, 1)
            t_cli = cli(src, out, "onnx", "fp32")
            ratios.append(t_tiles / t_cli)
            print(f"  round {r + 1}: eager tiles {t_tiles:5.2f} s, `scopeflow segment` (default onnx fp32) "
                  f"{t_cli:5.2f} s: {ratios[-1]:4.2f}x")
        print(f"  median speed-up {statistics.median(ratios):4.2f}x (min {min(ratios):4.2f}x; target >= 2.5)")
        for backend, precision in (("onnx", "int8"), ("torch", "fp32")):
            t_cli = cli(src, out, backend, precision)
            print(f"  `--backend {backend} --precision {precision}`: {t_cli:5.2f} s, "
                  f"{t_tiles / t_cli:4.2f}x the last eager tiles")


if __name__ == "__main__":
    main()
