"""Reading and writing single 2-D images (PNG, BMP, TIFF) as float32 in [0, 1] or labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from scopeflow.errors import InputImageError

from scopeflow.discover import IMAGE_SUFFIXES  # noqa: F401 - re-exported


def read_raw(path: str | Path) -> np.ndarray:
    """Read an image file as stored (any dtype, 2-D or with a trailing channel axis).

    Raises
    ------
    InputImageError
        If the file is missing, truncated or not an image, naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise InputImageError(f"{path}: image file not found; check the path")
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            arr = tifffile.imread(path)
        else:
            import imageio.v3 as iio

            arr = iio.imread(path)
    except Exception as exc:  # noqa: BLE001 - every decoder error means the same to the user
        raise InputImageError(
            f"{path}: cannot read image ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'corrupt'}); "
            "the file is truncated or not an image: re-copy or re-export it"
        ) from exc
    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[0] in (3, 4) and arr.shape[-1] not in (3, 4):
        arr = np.moveaxis(arr, 0, -1)
    if arr.ndim not in (2, 3) or arr.size == 0:
        raise InputImageError(f"{path}: expected a 2-D image, got shape {arr.shape}; export single planes")
    return arr


def to_unit_float(arr: np.ndarray) -> np.ndarray:
    """Convert an image to float32 in [0, 1]: uint8 / 255, uint16 / 65535, floats unchanged.

    Other integer types are scaled by 255 when their values fit 8 bits, else by 65535 (camera
    frames stored in wider containers); booleans become 0/1.
    """
    arr = np.asarray(arr)
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer):
        return arr.astype(np.float32, copy=False)
    if arr.dtype == np.uint8:
        scale = 255.0
    elif arr.dtype == np.uint16:
        scale = 65535.0
    else:
        scale = 255.0 if arr.size and arr.max() <= 255 else 65535.0
    out = arr.astype(np.float32)
    out /= np.float32(scale)  # in place: one image-sized array, not two
    return out


def green_plane(arr: np.ndarray, where: str, error: type[InputImageError] = InputImageError) -> np.ndarray:
    """The 2-D plane of a grey or RGB(A) image, as stored: RGB/RGBA give their green channel.

    Parameters
    ----------
    arr : ndarray
        (y, x), (y, x, 1), (y, x, 3) or (y, x, 4) pixels, any dtype.
    where : str
        The file (or plane reference) named in the error.
    error : type
        The error class raised for any other shape.

    Returns
    -------
    ndarray
        (y, x) pixels, dtype unchanged.
    """
    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        arr = arr[..., 1]
    elif arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim != 2 or min(arr.shape) == 0:
        raise error(
            f"{where}: expected a 2-D grey or RGB image, got shape {arr.shape}; re-export the "
            "acquisition as one grey/RGB image per FOV and channel"
        )
    return arr


def read_gray(path: str | Path) -> np.ndarray:
    """Read an image as float32 (y, x) in [0, 1]; RGB/RGBA frames give their green channel.

    The green channel is what Octopi uses for colour-camera brightfield/DPC frames.
    """
    arr = read_raw(path)
    if arr.ndim == 3:
        arr = arr[..., 1] if arr.shape[-1] >= 3 else arr[..., 0]
    return to_unit_float(arr)


def read_labels(path: str | Path) -> np.ndarray:
    """Read a label or mask image as an integer (y, x) array (RGB masks: first channel)."""
    arr = read_raw(path)
    if arr.ndim == 3:
        arr = arr[..., 0]
    return arr


def write_labels_tiff(path: str | Path, labels: np.ndarray, threads: int = 1) -> None:
    """Write a uint32 label TIFF, zlib-compressed at level 1 in strips of 256 rows.

    Level 1 is ~3x faster than the default level and gives files ~10 % larger; the strips
    are compressed by ``threads`` threads.
    """
    import tifffile

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, np.asarray(labels, dtype=np.uint32), compression="zlib",
                     compressionargs={"level": 1}, rowsperstrip=256, maxworkers=max(1, int(threads)))
