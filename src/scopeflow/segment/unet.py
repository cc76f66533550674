"""U-Net (M2U-Net) predictor for RBC instance segmentation of Octopi DPC images.

:class:`UNetPredictor` implements the :class:`scopeflow.segment.base.Predictor`
protocol, so :func:`scopeflow.segment.chunked.segment_image` can run it over any
chunking:

* ``prepare(image)`` stores the whole-FOV z-score statistics (mean, std), the
  normalization the network was trained with;
* ``predict(tile)`` returns per-pixel class probabilities (C, h, w): for the
  3-class head background / cell body / cell contour (softmax), for the 1-class
  head the foreground probability (sigmoid);
* ``decode(maps)`` turns the maps into instances (:func:`scopeflow.segment.decode.decode_maps`):
  seeds are connected components of the cell-body map, grown a few pixels into the foreground.

Weights are a ``torch.save``'d dict ``{"state_dict": ..., "meta": {...}}`` read
with ``torch.load(weights_only=True)``; the file's sha256 must match the
``sha256: <hex>`` line of its model card (same path with suffix ``.md``).

With the ONNX back end torch is not imported at all: the weights' metadata comes from
the ONNX file, and the torch logits for the load-time check come from a child process
(:mod:`scopeflow.models.torch_check`; ``import torch`` alone takes ~2 s).
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from scopeflow.errors import ScopeflowError
from scopeflow.models.m2unet_files import (DEFAULT_WEIGHTS, STRIDE, fill_stride_pad, load_check_tile, load_weights,
                                           onnx_path, stride_padded_empty)
from scopeflow.models.runtime import BACKENDS, PRECISIONS, OnnxRunner, TorchRunner, import_onnxruntime
from scopeflow.models.torch_check import TorchReference
from scopeflow.models.weights import WeightsError, verify_sha256
from scopeflow.provenance import file_sha256
from scopeflow.segment.decode import decode_maps

__all__ = ["UNetPredictor"]

_MAX_BATCH_PX = 4 * 1024 * 1024


def _load_kernels() -> None:
    """Load the compiled kernels (numba's cache) ahead of their first use."""
    import scopeflow.segment.unet_kernels as unet_kernels

    unet_kernels.warm_up()


def _resolve_device(device: str, backend: str) -> str:
    """``"cpu"`` or ``"cuda[:N]"``; ``"auto"`` takes CUDA when the back end can use it."""
    if device not in ("auto", "cpu", "cuda") and not str(device).startswith("cuda:"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
    if device != "auto":
        return str(device)
    if backend == "onnx":
        return "cuda" if "CUDAExecutionProvider" in import_onnxruntime().get_available_providers() else "cpu"
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _probabilities(logits: np.ndarray, out: np.ndarray) -> None:
    """Write class probabilities for logits (C, h, w) into ``out`` (C, h, w), float32.

    Softmax over channels when C > 1 (3-class head), sigmoid when C = 1. numpy's
    vectorized float32 ``exp`` makes this ~2.5x faster than a compiled per-pixel loop;
    it releases the GIL, so bands of a window run in parallel threads.
    """
    if logits.shape[0] == 1:
        np.negative(logits, out=out)
        np.exp(out, out=out)
        out += 1.0
        np.reciprocal(out, out=out)
    else:
        np.subtract(logits, logits.max(axis=0), out=out)
        np.exp(out, out=out)
        out /= out.sum(axis=0)


def _splits(length: int, core: int, halo: int) -> list[tuple[int, int, int, int]]:
    """Cut ``[0, length)`` into cores of at most ``core`` (multiples of 16).

    Returns (in_start, in_stop, core_start, core_stop) per piece; the input window
    is the core plus ``halo`` each side, clipped to the range.
    """
    if length <= core + 2 * halo:
        return [(0, length, 0, length)]
    n = -(-length // core)
    per = -(-length // n)
    step = -(-per // STRIDE) * STRIDE
    out = []
    for c0 in range(0, length, step):
        c1 = min(c0 + step, length)
        out.append((max(0, c0 - halo), min(length, c1 + halo), c0, c1))
    return out


def _windows(h: int, w: int, core: int, halo: int) -> list[tuple[tuple, tuple]]:
    """Forward windows of an (h, w) image: ``(ys, xs)`` pairs of :func:`_splits` pieces.

    Either the square grid (cores of at most ``core`` along each axis) or, where it covers
    fewer pixels, bands of full width whose windows are no larger than the square grid's
    largest possible window, ``(core + 2 * halo)²`` (the memory bound): a 3000² image is 2
    windows of 1680 × 3000 (10.1 Mpx, and wider windows run faster per pixel) instead of 4
    of 1680² (11.2 Mpx). Depends only on the image shape and the settings.
    """
    square = [(ys, xs) for ys in _splits(h, core, halo) for xs in _splits(w, core, halo)]
    band = ((core + 2 * halo) ** 2 // w - 2 * halo) // STRIDE * STRIDE  # band core rows
    if band < STRIDE:
        return square
    bands = [(ys, (0, w, 0, w)) for ys in _splits(h, band, halo)]
    area = lambda windows: sum((ys[1] - ys[0]) * (xs[1] - xs[0]) for ys, xs in windows)  # noqa: E731
    return bands if area(bands) < area(square) else square


class UNetPredictor:
    """M2U-Net predictor for the chunked segmentation machinery.

    Parameters
    ----------
    weights : str, Path or None
        Weights file (``.pt``) with a model card beside it (same name, ``.md``)
        carrying ``sha256: <hex>``. None = the shipped model
        :data:`DEFAULT_WEIGHTS`.
    device : {"auto", "cpu", "cuda"}
        Torch device; ``"auto"`` takes CUDA when available.
    threads : int or None
        CPU threads for torch (the job's cores); None leaves torch's setting.
    batch_size : int, default 4
        Sub-tiles per forward pass when a tile is split (fewer if the batch would
        exceed 4 Mpx; CPU inference needs ~0.45 GB per Mpx).
    tile : int, default 2048
        Largest core (pixels, multiple of 16) of one forward pass. Images larger
        than ``tile + 2 * context`` are split into windows with ``context`` pixels
        of halo whose cores are stitched (square ones, or full-width bands no larger
        than ``(tile + 2 * context)²`` where they cover fewer pixels); the result
        matches a whole pass to ~1e-5. The window grid depends only on the image
        shape, never on the chunk size of the machinery. A 2048² window takes ~1 GB
        with onnx, ~2 GB with torch.
    verify : bool, default True
        Check the weights' sha256 against the model card.
    backend : {"torch", "onnx"}, default "torch"
        Inference engine (:mod:`scopeflow.models.runtime`). ``onnx`` runs the ONNX
        export shipped beside the weights with ONNX Runtime (its sha256 checked
        against the model card); on first use it is compared with torch on a
        256² tile of the image (fp32: max |logit difference| <= 1e-4).
    precision : {"fp32", "int8", "fp16"}, default "fp32"
        ``int8``: the statically quantized ONNX model (backend onnx); ``fp16``:
        half precision with backend torch on CUDA.
    **decode_kw
        Overrides of :func:`decode_maps` parameters (``t_body``, ``t_fg``,
        ``min_seed_area``, ``grow``, ``erode``, ``orphan_area``, ``min_area``); defaults come
        from the weights' metadata, then from :func:`decode_maps`.

    Attributes
    ----------
    name : str
        ``"unet"``.
    context : int
        Pixels of image context each side that a map value depends on: 176, a
        multiple of 16 above the network's exact receptive-field radius (167 px
        to the left/top, 151 px to the right/bottom, measured in float64 by
        perturbing the input). Beyond it the maps do not depend on the tile at
        all; what remains is float32 rounding that differs with the tile shape
        (max 1.5e-6 on dpc_1024_00). With the shipped weights a halo of 64 / 96 /
        128 / 160 px leaves differences of 5e-2 / 1e-3 / 9e-5 / 8e-7.
    object_size : int
        96 px: ≈2.7× the largest RBC equivalent diameter (≈36 px at 0.33 µm/px;
        median 27 px) and above the largest reference bounding box (45 px).
    decode_context : int
        112 px: how far beyond an instance the maps can change its decoding. A
        neighbouring seed within ``2 * grow`` pixels competes for the same pixels
        (ties go to the larger raster-order id), so it must be seen whole: up to
        ``2 * 4 + object_size`` = 104 px, rounded up to 16.
    meta : dict
        Metadata stored with the weights (head, normalization, training recipe).

    Notes
    -----
    The network has stride 16 and is not shift-invariant below that: maps
    agree between tilings only when tile origins lie on the image's 16-px grid
    (a tile shifted by 8 px changes probabilities by up to ~0.9). Chunk sizes
    and halos must therefore be multiples of 16 (``context`` and
    ``object_size`` are).

    Decoded labels are identical between tilings except, rarely, a pixel whose
    probability lies within float32 rounding (~1e-6) of a decode threshold:
    ``segment_image`` with chunks 256 and 512 gave labels identical to the
    whole-image pass on dpc_1024_00; splitting a 640×608 tile into 3×3
    sub-tiles flipped 1 pixel.
    """

    name = "unet"
    context = 176
    object_size = 96
    decode_context = 112

    def __init__(
        self,
        weights: str | Path | None = None,
        device: str = "auto",
        threads: int | None = None,
        batch_size: int = 4,
        tile: int = 2048,
        verify: bool = True,
        backend: str = "torch",
        precision: str = "fp32",
        **decode_kw: Any,
    ) -> None:
        self.weights = Path(weights) if weights is not None else DEFAULT_WEIGHTS
        if not self.weights.is_file():
            raise WeightsError(f"weights file not found: {self.weights}")
        self.sha256 = verify_sha256(self.weights) if verify else file_sha256(self.weights)
        if backend not in BACKENDS:
            raise ScopeflowError(f"segment backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        if precision not in PRECISIONS:
            raise ScopeflowError(f"segment precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        if backend == "onnx" and precision == "fp16":
            raise ScopeflowError("segment precision fp16 needs backend torch on a CUDA device")
        if tile < STRIDE or tile % STRIDE:
            raise ValueError(f"tile must be a positive multiple of {STRIDE}, got {tile}")
        unknown = set(decode_kw) - {
            "t_body", "t_fg", "min_seed_area", "grow", "erode", "orphan_area", "min_area",
        }
        if unknown:
            raise TypeError(f"unknown UNetPredictor arguments: {sorted(unknown)}")
        self.backend, self.precision = backend, precision
        self.threads = threads
        self.batch_size = max(1, int(batch_size))
        self.tile = int(tile)
        self._net = None
        self._net_lock = threading.Lock()
        # ONNX: the maps need no torch (the weights' metadata is in the ONNX file); torch's logits
        # for the load-time check come from a child process, started before anything else
        # the shipped reference logits of a fixed tile, when the weights have them: no torch at all
        self._shipped_check = load_check_tile(self.weights, self.sha256) if backend == "onnx" else None
        self._reference: TorchReference | None = None
        if backend == "onnx" and self._shipped_check is None:
            self._reference = TorchReference(self.weights, self.sha256 if verify else None)
        try:
            self.device = _resolve_device(device, backend)
            if backend == "onnx":
                self.runner = OnnxRunner(
                    onnx_path(self.weights, precision), self.weights.with_suffix(".md"), self.sha256,
                    threads=threads, device=self.device,
                )
                meta = self.runner.meta if self.runner.meta is not None else self._load()[1]
            else:
                import torch

                net, meta = self._load()
                self.runner = TorchRunner(net, torch.device(self.device), precision)
        except BaseException:
            if self._reference is not None:
                self._reference.close()
            raise
        #: metadata stored with the weights (head, normalization, training recipe, decoding)
        self.meta: dict = meta
        #: :func:`decode_maps` parameters: the weights' metadata, then the overrides given here
        self.decode_kw: dict = {**meta.get("decode", {}), **decode_kw}
        self._checked = backend == "torch" and precision == "fp32"
        self._check_pending: np.ndarray | None = None  # the tile of a started, unfinished check
        if self._shipped_check is not None:
            # ONNX Runtime against the torch logits shipped with the model: one small pass, now
            self._compare(self.runner(self._shipped_check["tile"]), self._shipped_check["logits"],
                          "the reference tile shipped with the model")
        self.mean: float | None = None
        self.std: float | None = None
        self._kernels: threading.Thread | None = None

    def _load(self) -> tuple[Any, dict]:
        """Import torch and read the (already verified) weights: ``(M2UNet, meta)``; kept as :attr:`net`."""
        with self._net_lock:
            if self._net is None:
                import torch

                from scopeflow.models.m2unet import network_from_weights

                loaded = load_weights(self.weights, verify=False)
                if self.threads is not None:
                    torch.set_num_threads(int(self.threads))
                self._net = (network_from_weights(loaded), loaded["meta"])
            return self._net

    @property
    def net(self):
        """The trained :class:`~scopeflow.models.m2unet.M2UNet` (eval mode, CPU; loaded on first use)."""
        return self._load()[0]

    # -- protocol ---------------------------------------------------------------
    def prepare(self, image: np.ndarray) -> None:
        """Store the z-score statistics (mean, std) of the whole image.

        Parameters
        ----------
        image : np.ndarray, shape (y, x)
            The whole field of view, DPC as float in [0, 1].
        """
        img = np.asarray(image)
        if img.ndim != 2:
            raise ValueError(f"prepare expects a 2-D (y, x) image, got shape {img.shape}")
        if self._kernels is None:
            # load the compiled kernels while the first window is inferred (not earlier: the
            # import holds the GIL, which reading the image needs)
            self._kernels = threading.Thread(target=_load_kernels, name="scopeflow-unet-kernels")
            self._kernels.start()
        vals = img.reshape(-1)
        if not np.isfinite(vals).all():
            vals = vals[np.isfinite(vals)]
        mean = float(vals.sum(dtype=np.float64)) / max(vals.size, 1)
        squares = 0.0
        for i in range(0, vals.size, 1 << 20):  # float64 in blocks: no image-sized temporary
            d = vals[i : i + (1 << 20)].astype(np.float64)
            d -= mean
            squares += float(np.dot(d, d))
        self.mean = mean
        self.std = float(max(np.sqrt(squares / max(vals.size, 1)), 1e-6))

    def predict(self, tile: np.ndarray) -> np.ndarray:
        """Return float32 probability maps (C, h, w) for a tile (h, w).

        Parameters
        ----------
        tile : np.ndarray, shape (h, w)
            Part of the image given to :meth:`prepare`, float in [0, 1].

        Returns
        -------
        np.ndarray of float32, shape (C, h, w)
            C = 3 (background, body, contour; softmax) or 1 (foreground; sigmoid).

        Notes
        -----
        The first call of an unchecked back end (ONNX, INT8, fp16) starts the load-time
        check on the central 256² tile; :meth:`verify` finishes it and must pass before
        the maps are used.
        """
        if self.mean is None or self.std is None:
            raise RuntimeError("UNetPredictor.predict called before prepare(image)")
        t = np.asarray(tile, dtype=np.float32)
        if t.ndim != 2:
            raise ValueError(f"predict expects a 2-D (h, w) tile, got shape {t.shape}")
        h, w = t.shape
        if not self._checked and self._check_pending is None:
            self._check_pending = self._check_tile(t)
            if self._reference is not None:
                self._reference.submit(self._check_pending)
        jobs = _windows(h, w, self.tile, self.context)
        out = None
        # Group equal-shaped windows so they can share a batch.
        groups: dict[tuple[int, int], list] = {}
        for ys, xs in jobs:
            groups.setdefault((ys[1] - ys[0], xs[1] - xs[0]), []).append((ys, xs))
        # a window's probabilities are computed in other threads (in row bands, one per
        # thread) while the next window runs
        bands = max(1, int(self.threads or 1))
        with ThreadPoolExecutor(max_workers=bands, thread_name_prefix="scopeflow-probabilities") as post:
            pending = []
            for (gh, gw), batch_jobs in groups.items():
                # bound memory (~0.45 GB per Mpx of window on CPU): <= 4 Mpx per pass
                nb = max(1, min(self.batch_size, _MAX_BATCH_PX // max(1, gh * gw)))
                for i in range(0, len(batch_jobs), nb):
                    part = batch_jobs[i : i + nb]
                    windows = [self._normalized(t[ys[0] : ys[1], xs[0] : xs[1]]) for ys, xs in part]
                    x = windows[0][None] if len(windows) == 1 else np.stack(windows)
                    logits = self.runner(x[:, None])
                    if out is None:
                        out = np.empty((logits.shape[1], h, w), dtype=np.float32)
                    for (ys, xs), lg in zip(part, logits):
                        y0, y1, x0, x1 = ys[2] - ys[0], ys[3] - ys[0], xs[2] - xs[0], xs[3] - xs[0]
                        step = -(-(y1 - y0) // bands)
                        for b in range(y0, y1, step):
                            e = min(b + step, y1)
                            pending.append(post.submit(
                                _probabilities, lg[:, b:e, x0:x1], out[:, ys[0] + b : ys[0] + e, xs[2] : xs[3]]
                            ))
            for done in pending:
                done.result()
        return out

    def verify(self) -> None:
        """Finish the load-time check of the back end started by the first :meth:`predict`.

        Compares the back end's logits with the trained torch network's on a 256² tile of
        that first image (see :meth:`_check_runner`); a no-op once passed, and for torch
        fp32. :func:`~scopeflow.segment.chunked.segment_image` and :meth:`segment` call it
        after decoding and before returning labels, so the check (torch runs in a child
        process) overlaps with decoding; :func:`~scopeflow.segment.chunked.segment_to_zarr`
        calls it before the first chunk is stored. Callers of :meth:`predict` must call it
        before using the maps.

        Raises
        ------
        WeightsError
            The back end disagrees with torch, or the torch reference could not be computed.
        """
        if self._checked or self._check_pending is None:
            return
        self._check_runner(self._check_pending)
        self._check_pending = None

    def decode(self, maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(labels, seeds)`` (int32, (h, w)) from maps (C, h, w).

        See :func:`decode_maps`; instances larger than ``object_size`` are dropped.
        """
        return decode_maps(maps, max_extent=self.object_size, **self.decode_kw)

    # -- helpers ----------------------------------------------------------------
    def _normalized(self, part: np.ndarray) -> np.ndarray:
        """Z-score a part of the image with the whole image's statistics, padded to multiples of 16.

        NaN pixels read as the image mean (0).
        """
        h, w = part.shape
        out = stride_padded_empty(h, w)
        z = out[:h, :w]
        np.subtract(part, np.float32(self.mean), out=z)
        z *= np.float32(1.0 / self.std)
        if not np.isfinite(z).all():
            np.nan_to_num(z, copy=False, nan=0.0)
        return fill_stride_pad(out, h, w)

    def _check_tile(self, image: np.ndarray, side: int = 256) -> np.ndarray:
        """The central ``side``² tile of the image (on the 16-px grid), normalized, (1, 1, h, w)."""
        h, w = image.shape
        y0 = max(0, (h - side) // 2) // STRIDE * STRIDE
        x0 = max(0, (w - side) // 2) // STRIDE * STRIDE
        return np.ascontiguousarray(self._normalized(image[y0 : y0 + side, x0 : x0 + side])[None, None])

    def _check_runner(self, tile: np.ndarray) -> None:
        """Compare the back end with the trained torch network on a real tile (once).

        fp32 must match within 1e-4 (max abs logit difference); INT8 and fp16 must give
        the same class on at least 97 % of the tile's pixels. With the ONNX back end the
        torch logits come from the :class:`~scopeflow.models.torch_check.TorchReference`
        child process started with the predictor.
        """
        if self._reference is not None:
            try:
                ref = self._reference.result()
            except ScopeflowError as exc:
                raise WeightsError(f"cannot check the {self.backend} model for {self.weights}: {exc}") from exc
            self._reference = None
        else:
            import torch

            with torch.inference_mode():
                ref = self.net(torch.from_numpy(tile)).numpy()
        self._compare(self.runner(tile), ref, "a tile of this image")

    def _compare(self, got: np.ndarray, ref: np.ndarray, where: str) -> None:
        """Accept the back end's logits ``got`` against torch's ``ref`` (or raise)."""
        if got.shape != ref.shape:
            raise WeightsError(
                f"{self.backend} model for {self.weights} gives logits of shape {got.shape} on {where}, "
                f"torch {ref.shape}; re-export it with `scopeflow export-onnx`"
            )
        if self.precision == "fp32":
            diff = float(np.abs(got - ref).max())
            if diff > 1e-4:
                raise WeightsError(
                    f"{self.backend} model for {self.weights} disagrees with torch on {where} "
                    f"(max |logit difference| {diff:.2e} > 1e-4); re-export it with `scopeflow export-onnx`"
                )
        else:
            agree = float((got.argmax(1) == ref.argmax(1)).mean())
            if agree < 0.97:
                raise WeightsError(
                    f"{self.precision} model for {self.weights} gives the fp32 class on only "
                    f"{agree:.1%} of {where} (< 97 %); use precision fp32"
                )
        self._checked = True

    def segment(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Segment a whole image in one go: prepare, predict, decode.

        Parameters
        ----------
        image : np.ndarray, shape (y, x)
            DPC image, float in [0, 1].

        Returns
        -------
        labels, seeds : np.ndarray of int32, shape (y, x)
        """
        self.prepare(image)
        labels = self.decode(self.predict(image))
        self.verify()
        return labels

    def __repr__(self) -> str:
        return (
            f"UNetPredictor(weights={str(self.weights)!r}, head={self.meta.get('head')!r}, "
            f"device={str(self.device)!r}, context={self.context}, object_size={self.object_size})"
        )
