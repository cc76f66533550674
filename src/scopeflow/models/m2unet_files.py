"""The files of an M2U-Net model, without torch: weights, ONNX exports, reference logits.

A trained M2U-Net ships as ``<stem>.pt`` (``{"state_dict", "meta"}``) with its model card
``<stem>.md``; beside it the ONNX exports ``<stem>.onnx`` (fp32) and ``<stem>.int8.onnx``
and the reference logits ``<stem>.check.npz`` (torch's output on a fixed tile, so the ONNX
back end is checked at load time without torch). Each file shipped beside the weights has
its own ``<file name> sha256: <hex>`` line in the card.

Inputs of every M2U-Net back end have a height and width that are multiples of
:data:`STRIDE` (the network down-samples 16×); :func:`pad_to_stride` pads a 2-D array so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from scopeflow.models.weights import MODELS_DIR, WeightsError, card_sha256, load_checkpoint, verify_sha256

__all__ = [
    "DEFAULT_WEIGHTS",
    "STRIDE",
    "check_tile_path",
    "load_check_tile",
    "load_weights",
    "onnx_path",
    "fill_stride_pad",
    "pad_to_stride",
    "stride_padded_empty",
]

#: Down-sampling factor of the M2U-Net: every back end takes inputs whose height and
#: width are multiples of it.
STRIDE = 16
#: The shipped RBC segmenter (trained on Octopi DPC RBC data, see its model card).
DEFAULT_WEIGHTS = MODELS_DIR / "m2unet_rbc_dpc.pt"


def pad_to_stride(a: np.ndarray) -> np.ndarray:
    """Pad a 2-D array at the bottom and right to multiples of 16, as :class:`M2UNet` does.

    Reflect padding, or edge replication when a side is too short to reflect.
    """
    h, w = a.shape
    if not ((-h) % STRIDE or (-w) % STRIDE):
        return a
    out = stride_padded_empty(h, w, a.dtype)
    out[:h, :w] = a
    return fill_stride_pad(out, h, w)


def stride_padded_empty(h: int, w: int, dtype=np.float32) -> np.ndarray:
    """An uninitialised array of the padded shape of an (h, w) image (multiples of 16)."""
    return np.empty((h + (-h) % STRIDE, w + (-w) % STRIDE), dtype)


def fill_stride_pad(out: np.ndarray, h: int, w: int) -> np.ndarray:
    """Fill the padding of ``out`` (rows ``h:``, columns ``w:``) from ``out[:h, :w]`` in place,
    as :func:`pad_to_stride` pads (``numpy.pad``'s reflect, or edge replication when a side
    is too short to reflect); returns ``out``. Writing the image into a padded buffer and
    filling its margins spares ``numpy.pad``'s copy of the whole image."""
    ph, pw = out.shape[0] - h, out.shape[1] - w
    reflect = ph < h and pw < w
    for i in range(ph):  # rows first, then columns over every row: numpy.pad's order
        out[h + i, :w] = out[h - 2 - i if reflect else h - 1, :w]
    for j in range(pw):
        out[:, w + j] = out[:, w - 2 - j if reflect else w - 1]
    return out


def onnx_path(weights: str | Path, precision: str = "fp32") -> Path:
    """The ONNX file that ships beside a ``.pt`` weights file.

    ``m2unet_rbc_dpc.pt`` → ``m2unet_rbc_dpc.onnx`` (fp32) or
    ``m2unet_rbc_dpc.int8.onnx`` (INT8).
    """
    weights = Path(weights)
    if precision == "fp32":
        return weights.with_suffix(".onnx")
    if precision == "int8":
        return weights.with_suffix(".int8.onnx")
    raise ValueError(f"no ONNX file for precision {precision!r} (fp32 or int8)")


def check_tile_path(weights: str | Path) -> Path:
    """The reference-logits file of a weights file: ``<name>.check.npz`` beside it."""
    weights = Path(weights)
    return weights.with_name(weights.stem + ".check.npz")


def load_check_tile(weights: str | Path, weights_sha256: str) -> dict[str, np.ndarray] | None:
    """The shipped reference tile and torch logits of a weights file, or None without them.

    The file (:func:`check_tile_path`, written by
    :func:`scopeflow.models.export.write_check_tile`) holds ``tile`` (float32
    (1, 1, h, w), z-scored), ``logits`` (float32 (1, C, h, w): the trained torch network's on
    that tile) and ``source_sha256`` (the weights they came from). Its sha256 must match the
    ``<file name> sha256:`` line of the model card, and ``source_sha256`` the weights';
    otherwise a one-line :class:`WeightsError`. None when there is no such file, or no line
    for it in the card (weights made without one: the check then runs torch in a child).
    """
    path = check_tile_path(weights)
    card = Path(weights).with_suffix(".md")
    if not path.is_file() or not card.is_file() or card_sha256(card, path.name) is None:
        return None
    verify_sha256(path, card, what="reference logits")
    with np.load(path) as z:
        data = {k: z[k] for k in z.files}
    if str(data.get("source_sha256")) != weights_sha256:
        raise WeightsError(
            f"reference logits {path} were made from other weights (sha256 {data.get('source_sha256')}); "
            "re-export them with `scopeflow export-onnx`"
        )
    return data


def load_weights(path: str | Path, verify: bool = True) -> dict[str, Any]:
    """Load M2U-Net weights after checking their sha256 against the model card.

    Parameters
    ----------
    path : str or Path
        ``.pt`` file holding ``{"state_dict": ..., "meta": {...}}`` (a bare state
        dict is accepted too; then the head is inferred from its shape).
    verify : bool, default True
        Check the file's sha256 against the ``sha256:`` line of the model card
        ``path.with_suffix(".md")``.

    Returns
    -------
    dict
        ``{"state_dict": dict, "meta": dict, "sha256": str or None}`` (the digest when
        verified). ``meta`` has at least ``in_channels``, ``out_channels``, ``head`` and
        ``normalization``.

    Raises
    ------
    WeightsError
        One-line message naming the file: missing file or card, no sha256 line,
        digest mismatch, an unreadable file or not an M2U-Net state dict.
    """
    loaded = load_checkpoint(path, verify=verify)
    sd, meta = loaded["state_dict"], loaded["meta"]
    if "head.weight" not in sd:
        raise WeightsError(f"weights file {path} is not an M2U-Net state dict (no 'head.weight')")
    meta.setdefault("out_channels", int(sd["head.weight"].shape[0]))
    meta.setdefault("in_channels", int(sd["encoder.0.0.weight"].shape[1]))
    meta.setdefault("head", "3class" if meta["out_channels"] == 3 else "1class")
    meta.setdefault("normalization", "zscore_fov")
    return {"state_dict": sd, "meta": meta, "sha256": loaded["sha256"] if verify else None}
