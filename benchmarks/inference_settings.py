"""Which CPU inference settings are fastest for the shipped M2U-Net (the model card's choice).

Times, interleaved round by round (A B C ... A B C ...; median per setting), forward passes over the
same pixels of ../shared/data/octopi_rbc_dpc_m2unet/images/dpc_2048_00.png:

* torch eager fp32 (the trained network; the baseline), channels_last, folded + reordered network;
* ONNX Runtime fp32 and INT8 with graph optimizations basic / extended / all, thread spinning on/off;
* window size (1024² vs one 2048² pass) and batch (4 × 1024² in one call).

    python benchmarks/inference_settings.py [--threads 2] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)

    import onnxruntime as ort
    import torch

    from scopeflow.io.images import read_gray
    from scopeflow.models.m2unet import InferenceM2UNet
    from scopeflow.models.m2unet_files import DEFAULT_WEIGHTS, onnx_path
    from scopeflow.segment.unet import UNetPredictor

    torch.set_num_threads(args.threads)
    shared = Path(os.environ.get("SCOPEFLOW_SHARED_DATA", REPO.parent / "shared" / "data"))
    img = read_gray(shared / "octopi_rbc_dpc_m2unet" / "images" / "dpc_2048_00.png")
    z = ((img - img.mean()) / img.std()).astype(np.float32)[None, None]
    tiles = [np.ascontiguousarray(z[..., y : y + 1024, x : x + 1024]) for y in (0, 1024) for x in (0, 1024)]
    batch = np.concatenate(tiles)
    net = UNetPredictor(threads=args.threads).net
    fused = InferenceM2UNet(net)
    cl = InferenceM2UNet(net).to(memory_format=torch.channels_last)

    def torch_tiles(model, fmt=torch.contiguous_format):
        def run():
            with torch.inference_mode():
                for t in tiles:
                    model(torch.from_numpy(t).contiguous(memory_format=fmt))
        return run

    def session(path, level, spin=True):
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = args.threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = level
        if not spin:
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    def ort_tiles(sess):
        return lambda: [sess.run(None, {"x": t}) for t in tiles]

    fp32, int8 = onnx_path(DEFAULT_WEIGHTS), onnx_path(DEFAULT_WEIGHTS, "int8")
    levels = {"basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
              "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
              "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}
    best = session(fp32, levels["all"])
    settings = {
        "torch eager fp32, 4 × 1024²": torch_tiles(net),
        "torch channels_last (folded), 4 × 1024²": torch_tiles(cl, torch.channels_last),
        "torch folded + reordered, 4 × 1024²": torch_tiles(fused),
        **{f"onnx fp32 opt={k}, 4 × 1024²": ort_tiles(session(fp32, v)) for k, v in levels.items()},
        "onnx fp32 opt=all no spinning, 4 × 1024²": ort_tiles(session(fp32, levels["all"], spin=False)),
        "onnx fp32 opt=all, batch 4 × 1024²": lambda: best.run(None, {"x": batch}),
        "onnx fp32 opt=all, one 2048² pass": lambda: best.run(None, {"x": z}),
        "onnx int8 opt=all, 4 × 1024²": ort_tiles(session(int8, levels["all"])),
        "onnx int8 opt=all, one 2048² pass": (lambda s=session(int8, levels["all"]): s.run(None, {"x": z})),
    }
    times: dict[str, list[float]] = {k: [] for k in settings}
    for fn in settings.values():
        fn()  # warm-up
    for _ in range(args.rounds):
        for name, fn in settings.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    mpx = z.size / 1e6
    base = statistics.median(times["torch eager fp32, 4 × 1024²"])
    print(f"threads {args.threads}, {args.rounds} interleaved rounds, {mpx:.1f} Mpx per call (median)")
    for name, ts in times.items():
        t = statistics.median(ts)
        print(f"  {name:44s} {mpx / t:6.2f} Mpx/s  {base / t:5.2f}x eager")


if __name__ == "__main__":
    main()
