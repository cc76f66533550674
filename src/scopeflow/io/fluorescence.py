"""Reading fluorescence frames (Octopi/Squid ``Fluorescence_<nm>_nm_Ex`` images).

The 405 nm-excited frame of the Octopi malaria scans is an RGB image from a colour camera;
other setups save a mono frame. Both, 8- or 16-bit, are read as float32 (y, x, 3) in [0, 1]
(uint8 / 255, uint16 / 65535; a mono frame is repeated into the three planes).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from scopeflow.errors import InputImageError
from scopeflow.io.images import read_raw, to_unit_float

__all__ = ["DEFAULT_CHANNEL", "read_fluorescence"]

#: File-name suffix of the 405 nm-excited fluorescence channel (spaces → ``_``).
DEFAULT_CHANNEL = "Fluorescence_405_nm_Ex"


def read_fluorescence(path: str | Path, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Read a fluorescence frame as float32 (y, x, 3) in [0, 1].

    Parameters
    ----------
    path : str or Path
        Image file (BMP, PNG, TIFF): (y, x) mono, (y, x, 3) RGB or (y, x, 4) RGBA (alpha
        dropped); uint8 or uint16. Or one plane of a Squid container (multi-page TIFF,
        OME-TIFF, Zarr), as a :class:`~scopeflow.io.squid.planes.PlaneRef` or its string form.
    shape : (int, int), optional
        Expected (y, x) shape (that of the FOV's brightfield frames).

    Returns
    -------
    numpy.ndarray
        float32 (y, x, 3).

    Raises
    ------
    InputImageError
        Unreadable file, not a mono/RGB image, a float image, or a shape different from
        ``shape`` (one line naming the file).
    """
    from scopeflow.io.squid.planes import is_plane_ref, read_source

    arr = read_source(path, colour=True) if is_plane_ref(path) else read_raw(path)
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
        raise InputImageError(f"{path}: fluorescence frame is {arr.shape[0]}x{arr.shape[1]} px but "
                              f"the FOV's brightfield frames are {shape[0]}x{shape[1]}; is this the "
                              "right channel (config parasites.channel)?")
    f = to_unit_float(arr)
    if f.ndim == 2:
        f = np.repeat(f[:, :, None], 3, axis=2)
    return np.ascontiguousarray(f, dtype=np.float32)
