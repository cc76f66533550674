"""``scopeflow`` command line: single-file tools beside the Snakemake workflow.

Commands
--------
segment   DPC image -> uint32 label TIFF (chunked, classical or U-Net)
evaluate  predicted vs reference labels/masks -> IoU, Dice, instance F1, AP, count error
simulate  synthetic Octopi acquisition with truth
train     train or fine-tune the U-Net
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from scopeflow import __version__
from scopeflow.errors import ScopeflowError

DEFAULT_METHOD = "classical"


def _chunk(text: str) -> int:
    value = int(text)
    if value < 0 or value % 16:
        raise argparse.ArgumentTypeError(f"{value} is not a multiple of 16 (or 0 for the whole image)")
    return value


def _cmd_segment(args: argparse.Namespace) -> int:
    import dask

    from scopeflow.io.images import read_gray, write_labels_tiff
    from scopeflow.segment import make_predictor
    from scopeflow.segment.chunked import segment_image

    t0 = time.perf_counter()
    image = read_gray(args.image)
    kwargs = {"pixel_size_um": args.pixel_size}
    if args.method == "unet":
        kwargs.update(device=args.device, threads=args.threads)
        if args.weights:
            kwargs["weights"] = args.weights
    predictor = make_predictor(args.method, **kwargs)
    chunk = args.chunk or None
    with dask.config.set(scheduler="threads", num_workers=args.threads):
        labels = segment_image(image, predictor, chunk=chunk)
    write_labels_tiff(args.output, labels)
    print(
        f"{args.image}: {int(labels.max())} cells -> {args.output} "
        f"({args.method}, chunk {chunk or 'whole'}, {time.perf_counter() - t0:.2f} s)"
    )
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from scopeflow.evaluate import evaluate_paths

    metrics = evaluate_paths(args.pred, args.ref)
    if args.json:
        print(json.dumps(metrics, indent=2))
    else:
        for k, v in metrics.items():
            print(f"{k:>18}: {v:.4f}" if isinstance(v, float) else f"{k:>18}: {v}")
    return 0


def _cmd_simulate(args: argparse.Namespace) -> int:
    from scopeflow.simulate import simulate_acquisition

    kwargs = {}
    if args.pixel_size:
        kwargs["pixel_size_um"] = args.pixel_size
    path = simulate_acquisition(
        args.output, ny=args.ny, nx=args.nx, shape=(args.size, args.size), seed=args.seed,
        fmt=args.format, **kwargs,
    )
    print(f"simulated Octopi acquisition ({args.ny}x{args.nx} FOVs of {args.size}^2) -> {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scopeflow", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"scopeflow {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("segment", help="segment one DPC image into a uint32 label TIFF")
    p.add_argument("image", help="DPC image (PNG/TIFF/BMP; 8/16-bit or float, 0.5 = no gradient)")
    p.add_argument("-o", "--output", required=True, help="output label TIFF (uint32)")
    p.add_argument("--method", choices=["classical", "unet"], default=DEFAULT_METHOD)
    p.add_argument("--chunk", type=_chunk, default=1024,
                   help="chunk edge in px, multiple of 16; 0 = whole image (default 1024)")
    p.add_argument("--pixel-size", type=float, default=0.333, help="pixel size in um (default 0.333)")
    p.add_argument("--threads", type=int, default=2, help="threads (default 2)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="U-Net device")
    p.add_argument("--weights", help="U-Net weights (.pt with a model card beside it); default: shipped")
    p.set_defaults(func=_cmd_segment)

    p = sub.add_parser("evaluate", help="score predicted labels/masks against a reference")
    p.add_argument("pred", help="predicted label or binary mask image")
    p.add_argument("ref", help="reference label or binary mask image")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("simulate", help="write a synthetic Octopi acquisition with truth")
    p.add_argument("output", help="acquisition folder to create")
    p.add_argument("--ny", type=int, default=2, help="FOV rows (default 2)")
    p.add_argument("--nx", type=int, default=2, help="FOV columns (default 2)")
    p.add_argument("--size", type=int, default=1024, help="FOV edge in px (default 1024)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--pixel-size", type=float, default=None, help="pixel size in um")
    p.add_argument("--format", choices=["bmp", "tiff"], default="bmp")
    p.set_defaults(func=_cmd_simulate)

    p = sub.add_parser("train", help="train or fine-tune the U-Net (see `scopeflow train -h`)",
                       add_help=False)
    p.set_defaults(func=None)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "train":
        from scopeflow.segment.train import train_main

        return train_main(argv[1:]) or 0
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ScopeflowError, FileNotFoundError) as exc:
        print(f"scopeflow {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
