"""``scopeflow`` command line: single-file tools beside the Snakemake workflow.

Commands
--------
segment   DPC image -> uint32 label TIFF (chunked, classical or U-Net)
evaluate  predicted vs reference labels/masks -> IoU, Dice, instance F1, AP, count error
simulate  synthetic Octopi acquisition with truth
train     train or fine-tune the U-Net
export-onnx  U-Net weights -> ONNX (fp32) + INT8 (calibrated on DPC images) beside them
train-quality  train the per-cell RBC quality ConvNet (good vs bad cells)
train-defocus  train the defocus (|dz|) regressor on simulated smears
locate    bead image / movie -> localisations CSV (BeadNet or matched filter + subpixel fit)
track     bead movie -> tracks CSV (+ ensemble MSD, per-particle diffusion, summary JSON)
train-beadnet  train BeadNet (bead centre maps) on simulated beads
warmup    compile the numba kernels into numba's cache once per installation
parasites  (N, 4, 31, 31) spot crops (.npy) -> p_parasite / is_parasite CSV (shipped classifier)
train-parasites  cross-validate and train the malaria parasite CNN ensemble
fit-parasite-ood  fit the parasite classifier's out-of-distribution reference (cross-validated threshold)
fit-parasite-threshold  set the parasite classifier's operating threshold from simulated negative slides
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from pathlib import Path

from scopeflow import __version__
from scopeflow.errors import ScopeflowError
from scopeflow.segment.params import CHOICES, SEGMENT_DEFAULTS


def _chunk(text: str) -> int:
    value = int(text)
    if value < 0 or value % 16:
        raise argparse.ArgumentTypeError(f"{value} is not a multiple of 16 (or 0 for the whole image)")
    return value


def _min_length(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 2:
        raise argparse.ArgumentTypeError(f"{text!r} is not 'auto' or a number of frames >= 2")
    return value


def _cmd_segment(args: argparse.Namespace) -> int:
    from scopeflow.segment import make_predictor

    t0 = time.perf_counter()
    kwargs = {"pixel_size_um": args.pixel_size}
    if args.method == "unet":
        kwargs.update(device=args.device, threads=args.threads, backend=args.backend,
                      precision=args.precision)
        if args.weights:
            kwargs["weights"] = args.weights
    predictor = make_predictor(args.method, **kwargs)  # first: it loads in the background from here on
    import dask

    from scopeflow.io.images import read_gray, write_labels_tiff
    from scopeflow.segment.chunked import segment_image

    image = read_gray(args.image)
    chunk = args.chunk or None
    with dask.config.set(scheduler="threads", num_workers=args.threads):
        labels = segment_image(image, predictor, chunk=chunk)
    write_labels_tiff(args.output, labels, threads=args.threads)
    print(
        f"{args.image}: {int(labels.max())} cells -> {args.output} "
        f"({args.method}, chunk {chunk or 'whole'}, {time.perf_counter() - t0:.2f} s)"
    )
    return 0


def _cmd_export_onnx(args: argparse.Namespace) -> int:
    from scopeflow.models.export import export_models

    for path, sha in export_models(args.weights, args.calibrate, int8=not args.no_int8).items():
        print(f"`{path.name}` sha256: {sha}   ({path})")
    print("Put these lines into the model card beside the weights.")
    return 0


def _cmd_warmup(args: argparse.Namespace) -> int:
    from scopeflow.warmup import warm_up

    seconds = warm_up(processes=2)
    print("kernels compiled or loaded: " + (", ".join(f"{k} {v:.1f} s" for k, v in seconds.items())
                                            or "numba not installed, nothing to do"))
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
    squid = args.layout != "octopi" or args.regions or args.nz > 1 or args.nt > 1
    if squid:  # regions x FOVs x z x t in a Squid save mode (or legacy names with regions)
        from scopeflow.simulate.squid import simulate_squid_acquisition

        regions = [r for r in (args.regions or "A1,B1").replace(" ", ",").split(",") if r]
        path = simulate_squid_acquisition(
            args.output, args.layout, regions=regions, n_fovs=args.ny * args.nx, nz=args.nz,
            nt=args.nt, shape=(args.size, args.size), seed=args.seed, bits=args.bits, **kwargs,
        )
        print(f"simulated {args.layout} acquisition ({len(regions)} regions x {args.ny * args.nx} FOVs x "
              f"{args.nz} z x {args.nt} t of {args.size}^2, {args.bits}-bit) -> {path}")
        return 0
    path = simulate_acquisition(
        args.output, ny=args.ny, nx=args.nx, shape=(args.size, args.size), seed=args.seed,
        fmt=args.format, **kwargs,
    )
    print(f"simulated Octopi acquisition ({args.ny}x{args.nx} FOVs of {args.size}^2) -> {path}")
    return 0


def _bead_model(args: argparse.Namespace):
    """None (matched filter) or the shipped BeadNet with the requested threads."""
    if args.model == "none":
        return None
    from scopeflow.models.beadnet import BeadNet

    return BeadNet.load(args.weights, threads=args.threads)


def _locate_opts(args: argparse.Namespace) -> dict:
    """Localiser options: the track.* config keys under their own names, plus invert/workers."""
    from scopeflow.track.params import LocateParams

    opts = {k: getattr(args, k) for k in LocateParams.CONFIG_KEYS}
    opts["workers"] = args.threads
    if args.invert is not None:
        opts["invert"] = args.invert == "dark"
    return opts


def _cmd_locate(args: argparse.Namespace) -> int:
    from scopeflow.track.stages import cli_locate

    t0 = time.perf_counter()
    locs = cli_locate(args.input, args.output, model=_bead_model(args), **_locate_opts(args))
    n_frames = int(locs["frame"].max()) + 1 if len(locs) else 0
    print(
        f"{args.input}: {len(locs)} localisations in {n_frames} frame(s) -> {args.output} "
        f"({locs.attrs.get('detector')}, "
        f"bead sigma {locs.attrs.get('sigma_px', float('nan')):.2f} px, "
        f"{time.perf_counter() - t0:.2f} s)"
    )
    return 0


def _cmd_track(args: argparse.Namespace) -> int:
    from scopeflow.track.stages import cli_track
    from scopeflow.track.movie import movie_calibration

    from scopeflow.io.discover import read_beads_marker

    t0 = time.perf_counter()
    meta = read_beads_marker(args.input)  # scopeflow_beads.json beside the frames, if any
    px = args.pixel_size if args.pixel_size is not None else meta.get("pixel_size_um")
    fps = args.fps if args.fps is not None else meta.get("fps")
    if px is None or fps is None:
        # calibration optional: pixels and frames (as trackpy without mpp/fps)
        print(f"note: no {'pixel size' if px is None else ''}"
              f"{' and no ' if px is None and fps is None else ''}"
              f"{'frame rate' if fps is None else ''} given (--pixel-size/--fps or "
              f"scopeflow_beads.json): results in {'px' if px is None else 'um'} and "
              f"{'frames' if fps is None else 's'} (columns named so)", file=sys.stderr)
    cal = movie_calibration(args.input, px if px is not None else 1.0,
                            fps if fps is not None else 1.0)
    cal = {"pixel_size_um": None if px is None else cal["pixel_size_um"],
           "fps": None if fps is None else cal["fps"]}
    from scopeflow.track.params import LinkParams

    opts = _locate_opts(args)
    opts.update({k: getattr(args, k) for k in LinkParams.CONFIG_KEYS})
    res = cli_track(args.input, args.output, cal["pixel_size_um"], cal["fps"],
                    model=_bead_model(args), **opts)
    s = res["summary"]
    stem = Path(args.output).with_suffix("")
    lu, tu = s.get("length_unit", "um"), s.get("time_unit", "s")
    dkey = f"D_{lu}2_{tu}"
    calib = (f"{cal['pixel_size_um']:.4g} um/px" if cal["pixel_size_um"] else "no pixel size") + \
        ", " + (f"{cal['fps']:.4g} fps" if cal["fps"] else "no frame rate")
    print(
        f"{args.input}: {s['n_tracks']} tracks of >= {s['min_length']} frames, "
        f"D = {s[dkey]:.4g} ± {s.get(f'D_se_{lu}2_{tu}', float('nan')):.2g} {lu}^2/{tu} "
        f"(exponent {s['exponent']:.3f}; "
        f"{calib}; beads ~{res['locs'].attrs.get('diameter_px') or float('nan'):.3g} px) -> {args.output}, "
        f"{stem}_msd.csv, {stem}_diffusion.csv, {stem}_summary.json "
        f"({time.perf_counter() - t0:.2f} s)"
    )
    if not s["n_tracks"]:
        print(f"scopeflow track: warning: {args.input}: no track of at least {s['min_length']} frames, so "
              "D is undefined (nan); lower --min-length or check the localisations", file=sys.stderr)
    return 0


def _cmd_parasites(args: argparse.Namespace) -> int:
    import numpy as np

    from scopeflow.io.atomic import atomic_path
    from scopeflow.parasites.classifier import check_crops, load_parasite_model
    from scopeflow.parasites.ood import score_spots

    path = Path(args.crops)
    try:
        crops = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ScopeflowError(f"{path}: cannot read a .npy array ({str(exc).splitlines()[0]})") from None
    try:
        crops = check_crops(crops, str(path))
    except ValueError as exc:
        raise ScopeflowError(str(exc)) from None
    if crops.dtype != np.uint8:
        raise ScopeflowError(f"{path}: crops are {crops.dtype}; expected uint8 (0-255) as Octopi "
                             "writes them")
    model, _ = load_parasite_model(args.weights)
    res = score_spots(crops, model=model, weights=args.weights)
    out = Path(args.output)
    with atomic_path(out) as tmp, open(tmp, "w") as fh:
        fh.write("index,p_parasite,is_parasite,ood\n")
        for i, (p, c, o) in enumerate(zip(res["p_parasite"], res["is_parasite"], res["ood"],
                                          strict=True)):
            fh.write(f"{i},{p:.6f},{int(c)},{int(o)}\n")
    print(f"{path}: {len(crops)} crops, {int(res['is_parasite'].sum())} called parasite "
          f"(threshold {float(model.threshold):.4f}), {int(res['ood'].sum())} flagged OOD -> {out}")
    return 0


def _add_locate_args(p: argparse.ArgumentParser) -> None:
    """Localiser options: one flag per track.* config key (same name, default from LocateParams)."""
    from scopeflow.track.params import LocateParams

    d = LocateParams()
    g = p.add_argument_group("localisation")
    g.add_argument("--model", choices=["none", "beadnet"], default="none",
                   help="candidate detector: none = matched filter (default; faster than "
                        "trackpy.locate), beadnet = shipped U-Net bead-centre map on the frame "
                        "reduced to the beads' scale (ONNX Runtime)")
    g.add_argument("--weights", help="other BeadNet weights (.pt with a model card beside it)")
    g.add_argument("--profile", choices=["auto", "gaussian", "template", "ring"],
                   default=d.profile,
                   help="bead model (default %(default)s; auto: bead size, polarity and radial "
                        "profile estimated from the data, one detection per bead, data template "
                        "or Gaussian fit; gaussian = Gaussian spots of --sigma-px; template = "
                        "averaged from the data; ring = brightfield ring start)")
    g.add_argument("--diameter-px", type=float, default=d.diameter_px, metavar="PX",
                   help="approximate bead diameter in px, as trackpy's diameter (default: "
                        "estimated from the data)")
    g.add_argument("--minmass", type=float, default=d.minmass,
                   help="select features as trackpy.locate(diameter, minmass=...) does "
                        "(band-pass maxima, mass > this), placed by scopeflow's fit "
                        "(default: scopeflow's own detection)")
    g.add_argument("--invert", choices=["dark", "bright"], default=None,
                   help="bead centres darker or brighter than the background (default: "
                        "from the data)")
    g.add_argument("--sigma-px", type=float, default=d.sigma_px, metavar="PX",
                   help="bead sigma in px (default: estimated from the data)")
    g.add_argument("--snr-threshold", type=float, default=d.snr_threshold,
                   help="matched-filter detection threshold in noise units (default %(default)s)")
    g.add_argument("--prob-threshold", type=float, default=d.prob_threshold,
                   help="BeadNet detection probability threshold (default %(default)s)")
    g.add_argument("--min-snr", type=float, default=d.min_snr,
                   help="drop fits with amplitude below this many standard errors "
                        "(default %(default)s)")
    g.add_argument("--threads", type=int, default=None,
                   help="threads: frames in parallel, and ONNX Runtime / torch threads of "
                        "BeadNet (default: all available cores)")


def _segment_train():
    from scopeflow.segment import train

    return train, train.train_main


def _quality_train():
    from scopeflow.qc import train_quality

    return train_quality, train_quality.train_quality_main


def _defocus_train():
    from scopeflow.qc import defocus

    return defocus, defocus.train_defocus_main


def _parasites_train():
    from scopeflow.parasites import train

    return train, train.train_parasites_main


def _beadnet_train():
    from scopeflow.track import beadnet

    return beadnet, beadnet.train_beadnet_main


def _parasites_ood_fit():
    from scopeflow.parasites import ood

    return ood, ood.fit_ood_main


def _parasites_threshold_fit():
    from scopeflow.parasites import threshold

    return threshold, threshold.fit_threshold_main


#: Training commands: what they train, their description, and where their arguments and
#: runner are (``add_arguments(parser)`` and ``runner(args, argv)`` beside the training code).
TRAINING = {
    "train": ("train or fine-tune the U-Net",
              "Train the M2U-Net RBC segmenter on DPC images + masks (paired by file stem).",
              _segment_train),
    "train-quality": ("train the per-cell RBC quality ConvNet",
                      "Build labelled cell crops (U-Net vs reference masks, corrupted contours, "
                      "simulated defocus/overlap) and train the per-cell quality ConvNet.",
                      _quality_train),
    "train-defocus": ("train the defocus regressor on simulated smears",
                      "Simulate DPC + brightfield smears at random defocus and train the |dz| CNN.",
                      _defocus_train),
    "train-parasites": ("train the malaria parasite CNN ensemble",
                        "Cross-validate and train the parasite CNN ensemble on the "
                        "octopi_malaria_spots crops; write weights (+ sha256 line of the model "
                        "card) and a metrics JSON.",
                        _parasites_train),
    "train-beadnet": ("train BeadNet (bead centre maps) on simulated beads",
                      "Train the BeadNet bead detector on simulated bead frames; write weights and "
                      "their model card (sha256, validation figures).",
                      _beadnet_train),
    "fit-parasite-ood": ("fit the parasite classifier's out-of-distribution reference",
                         "Fit the out-of-distribution reference of a parasite classifier bag on "
                         "its training crops (cross-validated threshold), write <stem>.ood.npz, "
                         "record its sha256 in the model card, print the rejection figures.",
                         _parasites_ood_fit),
    "fit-parasite-threshold": ("set the parasite classifier's threshold from negative slides",
                               "Run simulated 0/uL slides through spot detection and the "
                               "classifier; set the operating threshold to the lowest calibrated "
                               "p at which they stay within the false-positive budget "
                               "(Octopi's rule); rewrite the weights, card sha256 and OOD binding.",
                               _parasites_threshold_fit),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The one parser of every ``scopeflow`` command.

    ``command`` (the command about to run) gets its arguments even when they live beside
    code that is slow to import: the training commands' arguments are added only for
    ``command`` (they import torch), the other commands' always.
    """
    parser = argparse.ArgumentParser(prog="scopeflow", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"scopeflow {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("segment", help="segment one DPC image into a uint32 label TIFF")
    p.add_argument("image", help="DPC image (PNG/TIFF/BMP; 8/16-bit or float, 0.5 = no gradient)")
    p.add_argument("-o", "--output", required=True, help="output label TIFF (uint32)")
    seg = SEGMENT_DEFAULTS  # the config's segment.* defaults, same names
    p.add_argument("--method", choices=CHOICES["method"], default=seg["method"],
                   help=f"per-tile predictor (default {seg['method']})")
    p.add_argument("--chunk", type=_chunk, default=seg["chunk"],
                   help=f"chunk edge in px, multiple of 16; 0 = whole image (default {seg['chunk']})")
    p.add_argument("--pixel-size", type=float, default=0.333, help="pixel size in um (default 0.333)")
    p.add_argument("--threads", type=int, default=seg["threads"], help=f"threads (default {seg['threads']})")
    p.add_argument("--device", choices=CHOICES["device"], default=seg["device"],
                   help=f"U-Net device (default {seg['device']})")
    p.add_argument("--weights", help="U-Net weights (.pt with a model card beside it); default: shipped")
    p.add_argument("--backend", choices=CHOICES["backend"], default=seg["backend"],
                   help=f"U-Net inference engine (default {seg['backend']})")
    p.add_argument("--precision", choices=CHOICES["precision"], default=seg["precision"],
                   help="U-Net precision: int8 needs --backend onnx, fp16 a CUDA device "
                        f"(default {seg['precision']})")
    p.set_defaults(func=_cmd_segment)

    p = sub.add_parser(
        "export-onnx", help="export U-Net weights to ONNX (fp32) and a calibrated INT8 model",
        description="Write <stem>.onnx and <stem>.int8.onnx beside a .pt weights file and print "
                    "their sha256 lines for the model card.")
    p.add_argument("--weights", default=None,
                   help="U-Net weights (.pt with a model card beside it); default: shipped")
    p.add_argument("--calibrate", nargs="+", default=[], metavar="DPC_IMAGE",
                   help="DPC images (or folders of them) whose tiles calibrate the INT8 model")
    p.add_argument("--no-int8", action="store_true", help="export fp32 only")
    p.set_defaults(func=_cmd_export_onnx)

    p = sub.add_parser("warmup", help="compile the numba kernels once per installation (run after installing)")
    p.set_defaults(func=_cmd_warmup)

    p = sub.add_parser("evaluate", help="score predicted labels/masks against a reference")
    p.add_argument("pred", help="predicted label or binary mask image")
    p.add_argument("ref", help="reference label or binary mask image")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("simulate", help="write a synthetic Octopi/Squid acquisition with truth")
    p.add_argument("output", help="acquisition folder to create")
    p.add_argument("--ny", type=int, default=2, help="FOV rows (default 2)")
    p.add_argument("--nx", type=int, default=2, help="FOV columns (default 2)")
    p.add_argument("--size", type=int, default=1024, help="FOV edge in px (default 1024)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--pixel-size", type=float, default=None, help="pixel size in um")
    p.add_argument("--format", choices=["bmp", "tiff"], default="bmp",
                   help="image format of the legacy octopi layout without regions (default bmp)")
    p.add_argument("--layout", choices=["octopi", "individual", "multipage", "ome_tiff", "zarr"],
                   default="octopi",
                   help="octopi = legacy Octopi names (default); individual, multipage, ome_tiff, "
                        "zarr = Squid's INDIVIDUAL_IMAGES, MULTI_PAGE_TIFF, OME_TIFF, ZARR_V3 save "
                        "modes (regions x ny*nx FOVs x nz x nt)")
    p.add_argument("--regions", default=None,
                   help="comma-separated regions/wells (default A1,B1 for Squid layouts)")
    p.add_argument("--nz", type=int, default=1, help="z planes per FOV, one in focus (default 1)")
    p.add_argument("--nt", type=int, default=1, help="time points (default 1)")
    p.add_argument("--bits", type=int, default=12,
                   help="camera bit depth of Squid layouts, stored in uint16 (default 12)")
    p.set_defaults(func=_cmd_simulate)

    p = sub.add_parser(
        "locate", help="localise beads in an image, a frame folder or a multi-page TIFF",
        description="Detect beads and fit their subpixel positions in every frame; write a CSV "
                    "with frame, y, x (px, origin at the centre of pixel (0, 0)), photons, "
                    "background, ep_px (localisation error), sigma_px, score, snr, chi2.")
    p.add_argument("input", metavar="IMAGE_OR_STACK",
                   help="image, folder of frames (PNG/TIFF, natural name order; RGB -> green) "
                        "or multi-page TIFF")
    p.add_argument("-o", "--output", required=True, metavar="LOCS.csv", help="output CSV")
    _add_locate_args(p)
    p.set_defaults(func=_cmd_locate)

    p = sub.add_parser(
        "track", help="track beads in a movie: tracks, MSD and diffusion coefficients",
        description="Localise, link (trackpy), remove drift, and fit MSD = 4 D tau + c. Writes "
                    "TRACKS.csv (particle, frame, y, x, y_um, x_um, ...; napari Tracks takes "
                    "particle, frame, y, x) and beside it <stem>_msd.csv (ensemble MSD), "
                    "<stem>_diffusion.csv (per particle D) and <stem>_summary.json.")
    p.add_argument("input", metavar="FRAMES",
                   help="folder of frames (PNG/TIFF, natural name order; RGB -> green) or "
                        "multi-page TIFF")
    p.add_argument("-o", "--output", required=True, metavar="TRACKS.csv",
                   help="output tracks CSV")
    p.add_argument("--pixel-size", type=float, default=None, metavar="UM",
                   help="um per px (default: from scopeflow_beads.json beside the frames; "
                        "none: lengths in px)")
    p.add_argument("--fps", type=float, default=None, metavar="F",
                   help="frames per second (default: from scopeflow_beads.json; none: "
                        "times in frames)")
    from scopeflow.track.params import LinkParams

    d = LinkParams()  # one flag per track.* config key, same name and default
    g = p.add_argument_group("linking and MSD")
    g.add_argument("--search-range-px", type=float, default=d.search_range_px, metavar="PX",
                   help="largest displacement between linked frames in px (default %(default)s)")
    g.add_argument("--memory", type=int, default=d.memory,
                   help="frames a bead may vanish and keep its track (default %(default)s)")
    g.add_argument("--adaptive-stop-px", type=float, default=d.adaptive_stop_px, metavar="PX",
                   help="adaptive search lower bound in px for dense samples (default off)")
    g.add_argument("--min-length", type=_min_length, default=d.min_length,
                   help="keep tracks of at least this many frames; auto: the fitted lags + 1, "
                        "so that short visits of fast beads are not dropped (default %(default)s)")
    g.add_argument("--no-drift", dest="drift", action="store_false", default=d.drift,
                   help="do not subtract the ensemble drift (config track.drift: false)")
    g.add_argument("--max-lag", type=int, default=d.max_lag,
                   help="largest MSD lag in frames (default %(default)s)")
    g.add_argument("--fit-lags", type=int, default=d.fit_lags,
                   help="lags fitted with MSD = 4 D tau + c (default %(default)s)")
    _add_locate_args(p)
    p.set_defaults(func=_cmd_track)

    p = sub.add_parser(
        "parasites", help="score malaria spot crops with the shipped parasite classifier",
        description="Score an (N, 4, 31, 31) uint8 array of spot crops (fluorescence R, G, B + "
                    "DPC, Octopi's layout) and write one CSV row per crop, in order: index, "
                    "p_parasite (calibrated), is_parasite (0/1 at the shipped operating "
                    "threshold), ood (0/1: unlike every training crop, k-NN in the network's features; "
                    "see the model card).")
    p.add_argument("crops", metavar="CROPS.npy", help="uint8 array (N, 4, 31, 31)")
    p.add_argument("-o", "--output", required=True, metavar="SCORES.csv", help="output CSV")
    p.add_argument("--weights", default=None,
                   help="classifier weights (.pt with its model card); default: shipped")
    p.set_defaults(func=_cmd_parasites)

    for name, (what, description, _) in TRAINING.items():
        p = sub.add_parser(name, help=what, description=description)
        if name == command:  # the training code (torch) is imported only for its command
            module, runner = TRAINING[name][2]()
            module.add_arguments(p)
            p.set_defaults(func=runner)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one ``scopeflow`` command (``argv`` without the program name; default
    ``sys.argv[1:]``) and return its exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(argv[0] if argv else None).parse_args(argv)
    try:
        if args.command in TRAINING:  # a trainer records its command line in the model's metadata
            return args.func(args, argv[1:]) or 0
        return args.func(args)
    except ScopeflowError as exc:
        print(f"scopeflow {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # missing file, full disk, permissions: one line naming the path
        from scopeflow.errors import os_error_line

        print(f"scopeflow {args.command}: error: {os_error_line(exc)}", file=sys.stderr)
        return 1


def run() -> None:
    """Console entry point: :func:`main`, then exit with its status.

    The interpreter's last garbage collections at exit traverse every live object, and
    numba's typing and code objects alone take ~0.3 s; frozen (:func:`gc.freeze`), they
    are skipped. The process ends right after, so nothing is kept longer.
    """
    code = main()
    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":
    run()
