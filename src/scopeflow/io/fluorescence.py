"""Reading fluorescence frames (Octopi/Squid ``Fluorescence_<nm>_nm_Ex`` images).

The 405 nm-excited frame of the Octopi malaria scans is an RGB image from a colour camera;
other setups save a mono frame. Both, 8- or 16-bit, are read as float32 (y, x, 3) in [0, 1]
(a mono frame is repeated into the three planes), divided by the camera's true full scale:
``max_value`` when given (a 12-bit camera in a 16-bit container: 4095, or 65520 when shifted
to the top bits; see :func:`fluorescence_max_value`), else the container's (255, 65535).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from scopeflow.errors import InputImageError
from scopeflow.io.images import read_raw, to_unit_float

__all__ = ["DEFAULT_CHANNEL", "check_fluorescence", "fluorescence_max_value", "read_fluorescence",
           "read_fluorescence_raw"]

#: File-name suffix of the 405 nm-excited fluorescence channel (spaces → ``_``).
DEFAULT_CHANNEL = "Fluorescence_405_nm_Ex"


def read_fluorescence_raw(path) -> np.ndarray:
    """A fluorescence frame as stored: an image file, or one plane of a Squid container
    (multi-page TIFF, OME-TIFF, Zarr) given as a :class:`~scopeflow.io.squid.planes.PlaneRef`
    or its string form."""
    from scopeflow.io.squid.planes import is_plane_ref, read_source

    return read_source(path, colour=True) if is_plane_ref(path) else read_raw(path)


def check_fluorescence(arr: np.ndarray, path: str | Path,
                       shape: tuple[int, int] | None = None) -> np.ndarray:
    """Validate a raw fluorescence frame; return it as (y, x) or (y, x, 3), dtype unchanged.

    Raises
    ------
    InputImageError
        Not a mono/RGB(A) image, not uint8/uint16, or a shape different from ``shape`` (one
        line naming the file).
    """
    if arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[..., :3]
    elif arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 3)):
        raise InputImageError(f"{path}: fluorescence frame has shape {arr.shape}; expected a mono "
                              "(y, x) or RGB (y, x, 3) image")
    if arr.dtype not in (np.uint8, np.uint16):
        raise InputImageError(f"{path}: fluorescence frame is {arr.dtype}; expected an 8- or "
                              "16-bit camera image")
    if shape is not None and tuple(arr.shape[:2]) != tuple(shape):
        raise InputImageError(f"{path}: fluorescence frame is {arr.shape[0]}x{arr.shape[1]} px "
                              f"but the FOV's brightfield frames are {shape[0]}x{shape[1]}; is "
                              "this the right channel (config parasites.channel)?")
    return arr


def fluorescence_max_value(frames: Iterable[np.ndarray], bit_depth: int | None = None) -> int:
    """The value a saturated pixel has in an acquisition's fluorescence frames.

    Parameters
    ----------
    frames : iterable of numpy.ndarray
        Raw frames (uint8 or uint16, one dtype).
    bit_depth : int, optional
        Camera bit depth from the acquisition metadata. It is used only when the frames fit
        it (a brightfield camera's depth does not cap a colour camera's 16-bit frames).

    Returns
    -------
    int
        255 for uint8; for uint16 the metadata's (or, without it, the inferred) full scale:
        4095 for 12-bit data in the low bits, 65520 for 12-bit data shifted to the top,
        65535 for full-depth data (:func:`scopeflow.io.squid.meta.true_max`).
    """
    from scopeflow.io.squid.meta import true_max

    dtype, vmax, bits = None, 0, 0
    for f in frames:
        a = np.asarray(f)
        dtype = a.dtype
        vmax = max(vmax, int(a.max()) if a.size else 0)
        bits |= int(np.bitwise_or.reduce(a, axis=None)) if a.size else 0
    if dtype is None:
        return 255
    top = true_max(dtype, bit_depth, vmax, bits)
    if vmax > top:  # the metadata's depth is another camera's: infer this one's
        top = true_max(dtype, None, vmax, bits)
    return int(top)


def read_fluorescence(path: str | Path, shape: tuple[int, int] | None = None,
                      max_value: float | None = None) -> np.ndarray:
    """Read a fluorescence frame as float32 (y, x, 3) in [0, 1].

    Parameters
    ----------
    path : str or Path
        Image file (BMP, PNG, TIFF): (y, x) mono, (y, x, 3) RGB or (y, x, 4) RGBA (alpha
        dropped); uint8 or uint16. Or one plane of a Squid container (see
        :func:`read_fluorescence_raw`).
    shape : (int, int), optional
        Expected (y, x) shape (that of the FOV's brightfield frames).
    max_value : float, optional
        The camera's full scale (:func:`fluorescence_max_value`); None or NaN = the
        container's (255 / 65535).

    Returns
    -------
    numpy.ndarray
        float32 (y, x, 3), values above ``max_value`` clipped to 1.

    Raises
    ------
    InputImageError
        Unreadable file, not a mono/RGB image, a float image, or a shape different from
        ``shape`` (one line naming the file).
    """
    arr = check_fluorescence(read_fluorescence_raw(path), path, shape)
    if max_value is not None and np.isfinite(max_value) and max_value > 0:
        f = np.minimum(arr.astype(np.float32) / np.float32(max_value), np.float32(1.0))
    else:
        f = to_unit_float(arr)
    if f.ndim == 2:
        f = np.repeat(f[:, :, None], 3, axis=2)
    return np.ascontiguousarray(f, dtype=np.float32)
