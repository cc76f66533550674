"""Make the ONNX files that ship beside U-Net weights (``scopeflow export-onnx``).

The fp32 export and the INT8 model calibrated on real DPC tiles are written beside the
``.pt`` file (:func:`scopeflow.models.m2unet_files.onnx_path`); their sha256 lines go into
the model card.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from scopeflow.errors import ScopeflowError
from scopeflow.io.images import image_files
from scopeflow.provenance import file_sha256
from scopeflow.models.m2unet_files import DEFAULT_WEIGHTS, STRIDE, check_tile_path, load_weights, onnx_path, pad_to_stride
from scopeflow.models.runtime import export_onnx, quantize_int8

__all__ = ["calibration_tiles", "export_models"]

def calibration_tiles(paths: Sequence[str | Path], tile: int = 512, per_image: int = 4) -> Iterator[np.ndarray]:
    """Yield network inputs (1, 1, h, w) from DPC images, normalized as the predictor does.

    Parameters
    ----------
    paths : sequence of str or Path
        DPC images or folders of them.
    tile : int, default 512
        Tile edge (px, multiple of 16); smaller images are used whole (padded to 16).
    per_image : int, default 4
        Tiles per image: the corners of the image's tile grid first, then the centre.

    Yields
    ------
    np.ndarray of float32, shape (1, 1, h, w)
        z-scored with the whole image's mean and std (``normalization: zscore_fov``).
    """
    from scopeflow.io.images import read_gray

    for path in image_files(paths):
        img = read_gray(path).astype(np.float64)
        z = ((img - img.mean()) / max(img.std(), 1e-6)).astype(np.float32)
        h, w = z.shape
        if h <= tile or w <= tile:
            yield pad_to_stride(z)[None, None]
            continue
        ys = [0, (h - tile) // STRIDE * STRIDE]
        xs = [0, (w - tile) // STRIDE * STRIDE]
        origins = [(y, x) for y in ys for x in xs] + [((h - tile) // 2 // STRIDE * STRIDE, (w - tile) // 2 // STRIDE * STRIDE)]
        for y, x in origins[: max(1, per_image)]:
            yield z[y : y + tile, x : x + tile][None, None].copy()


def write_check_tile(weights: str | Path | None, image: str | Path | np.ndarray, side: int = 128) -> Path:
    """Write the reference logits of a weights file: torch's output on a fixed tile.

    The tile is the central ``side``² crop (on the 16-px grid) of ``image`` (a DPC image
    in [0, 1], or its file), z-scored with the whole image's mean and std as the predictor
    does. The ``.npz`` (:func:`scopeflow.models.m2unet_files.check_tile_path`: ``tile``,
    ``logits``, ``source_sha256``) lets the ONNX back end be checked against the trained
    network at load time without importing torch
    (:func:`scopeflow.models.m2unet_files.load_check_tile`); its sha256 goes into the model card.

    Returns
    -------
    Path
        The file written.
    """
    import torch

    from scopeflow.io.images import read_gray
    from scopeflow.models.m2unet import network_from_weights

    weights = Path(weights) if weights is not None else DEFAULT_WEIGHTS
    loaded = load_weights(weights)
    img = np.asarray(read_gray(image) if isinstance(image, (str, Path)) else image, dtype=np.float32)
    if img.ndim != 2 or min(img.shape) < side or side % STRIDE:
        raise ScopeflowError(f"check tile: need a 2-D image of at least {side}² px (side a multiple of {STRIDE})")
    mean, std = float(img.mean(dtype=np.float64)), float(img.std(dtype=np.float64))
    y0 = (img.shape[0] - side) // 2 // STRIDE * STRIDE
    x0 = (img.shape[1] - side) // 2 // STRIDE * STRIDE
    tile = ((img[y0 : y0 + side, x0 : x0 + side] - np.float32(mean)) * np.float32(1.0 / max(std, 1e-6)))
    tile = np.ascontiguousarray(tile, dtype=np.float32)[None, None]
    with torch.inference_mode():
        logits = network_from_weights(loaded)(torch.from_numpy(tile)).numpy().astype(np.float32)
    path = check_tile_path(weights)
    np.savez_compressed(path, tile=tile, logits=logits, source_sha256=np.asarray(loaded["sha256"]))
    return path


def export_models(
    weights: str | Path | None,
    calibrate: Sequence[str | Path] = (),
    *,
    int8: bool = True,
) -> dict[Path, str]:
    """Export fp32 ONNX (and INT8 when ``int8``) beside a weights file.

    Parameters
    ----------
    weights : str, Path or None
        ``.pt`` weights with a model card; None = the shipped model.
    calibrate : sequence of str or Path
        DPC images (or folders) for the INT8 calibration; required when ``int8``.
    int8 : bool, default True
        Also write the statically quantized model.

    Returns
    -------
    dict
        ``{path: sha256}`` of the files written (with calibration images also the
        reference logits of :func:`write_check_tile`, on the first image).
    """
    from scopeflow.models.m2unet import network_from_weights

    weights = Path(weights) if weights is not None else DEFAULT_WEIGHTS
    loaded = load_weights(weights)
    fp32 = export_onnx(network_from_weights(loaded), onnx_path(weights, "fp32"), loaded["sha256"], loaded["meta"])
    written = {fp32: file_sha256(fp32)}
    images = image_files(calibrate) if calibrate else []
    if images:  # torch's logits on a tile of the first image: the ONNX check needs no torch then
        check = write_check_tile(weights, images[0])
        written[check] = file_sha256(check)
    if int8:
        tiles = list(calibration_tiles(calibrate))
        if not tiles:
            raise ScopeflowError("INT8 export needs --calibrate DPC images (or pass --no-int8)")
        q = quantize_int8(fp32, onnx_path(weights, "int8"), tiles)
        written[q] = file_sha256(q)
    return written
