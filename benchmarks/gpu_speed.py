"""U-Net inference on a CUDA GPU: torch eager fp32 against the shipped torch back end in fp32 and fp16.

For each path, in one run: Mpx/s of forward passes (batch 1; numpy in, float32 logits out, so the copies
to and from the GPU are included), the ratio to torch eager fp32 (the trained ``M2UNet`` on the GPU),
the labels' agreement with the CPU torch fp32 labels on dpc_1024_00 (instance F1@0.5, binary IoU), and
the seconds of a whole chunked ``segment_image`` of a 4096² image (decoding runs on the CPU cores).

    python benchmarks/gpu_speed.py [--repeats 10] [--images DIR]

``--images`` holds dpc_1024_00.png and dpc_2048_00.png (default: the shared data's
``octopi_rbc_dpc_m2unet/images``). Exits with a message when no CUDA device is visible.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    shared = Path(os.environ.get("SCOPEFLOW_SHARED_DATA", REPO.parent / "shared" / "data"))
    parser.add_argument("--images", type=Path, default=shared / "octopi_rbc_dpc_m2unet" / "images")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--cudnn-benchmark", action="store_true", help="let cuDNN time its algorithms per shape")
    args = parser.parse_args(argv)

    import dask
    import torch

    if not torch.cuda.is_available():
        print("gpu_speed: no CUDA device visible; nothing measured", file=sys.stderr)
        return 1
    from scopeflow.evaluate import evaluate
    from scopeflow.io.images import read_gray
    from scopeflow.segment.chunked import segment_image
    from scopeflow.segment.unet import UNetPredictor

    dev = torch.device("cuda")
    torch.backends.cudnn.benchmark = args.cudnn_benchmark
    print(f"{torch.cuda.get_device_name(dev)}, torch {torch.__version__}, "
          f"{os.cpu_count()} CPU cores for decoding, cudnn.benchmark {args.cudnn_benchmark}")
    val = read_gray(args.images / "dpc_1024_00.png")
    tile = read_gray(args.images / "dpc_2048_00.png")
    big = np.tile(tile, (2, 2))

    eager_net = UNetPredictor(device="cpu").net.to(dev)

    def eager(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return eager_net(torch.from_numpy(x).to(dev)).float().cpu().numpy()

    eager_pred = UNetPredictor(device="cuda", backend="torch", precision="fp32")
    eager_pred.runner = eager  # the trained M2UNet, eager, in place of the folded network
    paths = {
        "torch eager fp32 (M2UNet)": eager_pred,
        "torch fp32 folded, channels_last": UNetPredictor(device="cuda", backend="torch", precision="fp32"),
        "torch fp16 folded, channels_last": UNetPredictor(device="cuda", backend="torch", precision="fp16"),
    }

    def rate(fn, image: np.ndarray) -> float:
        z = ((image - image.mean()) / image.std()).astype(np.float32)[None, None]
        for _ in range(3):
            fn(z)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(args.repeats):
            fn(z)
        torch.cuda.synchronize()
        return image.size * args.repeats / (time.perf_counter() - t0) / 1e6

    with dask.config.set(scheduler="threads"):
        base = segment_image(val, UNetPredictor(device="cpu"), chunk=1024)  # CPU torch fp32 labels
        print(f"\n{'path':34s} {'2048² Mpx/s':>11s} {'4096² Mpx/s':>11s} {'x eager':>7s} {'IoU':>6s} {'F1':>6s} "
              f"{'4096² segment_image':>19s}")
        ref = None
        for name, pred in paths.items():
            r2, r4 = rate(pred.runner, tile), rate(pred.runner, big)
            ref = ref or r4
            labels = segment_image(val, pred, chunk=1024)
            s = evaluate(labels, base)
            segment_image(big, pred, chunk=1024)  # warm
            t0 = time.perf_counter()
            segment_image(big, pred, chunk=1024)
            t_big = time.perf_counter() - t0
            print(f"{name:34s} {r2:11.1f} {r4:11.1f} {r4 / ref:7.2f} {s['binary_iou']:6.4f} {s['f1']:6.4f} "
                  f"{t_big:17.2f} s")
    print("\nIoU/F1: labels of dpc_1024_00 against the CPU torch fp32 labels; x eager: 4096² forward passes.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
