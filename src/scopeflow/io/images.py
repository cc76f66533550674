"""The one image reader: single 2-D images (PNG, BMP, JPEG, TIFF) and planes of containers.

Every caller reads pixels through :func:`read_image` (or :func:`read_raw` for the file as
stored) and states its colour rule explicitly (:data:`COLOURS`):

* ``"green"``: RGB/RGBA give their green channel (what Octopi does for colour-camera
  brightfield/DPC frames); the default of the Octopi/Squid readers, inference and bead movies.
* ``"mean"``: RGB/RGBA give the mean of R, G and B (training images: Octopi PNGs repeat the
  DPC in all three channels).
* ``"grey"``: RGB/RGBA must have identical R, G and B (label or mask images saved as grey RGB);
  the first is returned.
* ``"first"``: the first channel (label images saved as RGB).

A grey + alpha image gives its grey channel and a single-channel (y, x, 1) image its plane
under every rule; planar (c, y, x) RGB is moved to channels-last first. Intensities become
float32 in [0, 1] with one scale rule (:func:`to_unit_float`) where asked (``unit=True``).

Images are indexed (y, x), origin at the centre of pixel (0, 0).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from scopeflow.errors import ImageNotFoundError, InputImageError

#: File-name suffixes read as images (lower case).
IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".bmp", ".jpg", ".jpeg")
#: The colour rules of :func:`to_plane` (see the module docstring).
COLOURS = ("green", "mean", "grey", "first")
_TODO = "re-copy or re-export it"


def decode(path: str | Path, page: int | None = None) -> np.ndarray:
    """Decode an image file as stored (TIFF via tifffile, others via imageio); no checks.

    Parameters
    ----------
    path : str or Path
        The file.
    page : int, optional
        For a TIFF, the page to read (default: all pages, stacked on a leading axis).

    Returns
    -------
    ndarray
        The pixels, dtype unchanged. Decoder errors propagate.
    """
    path = Path(path)
    if path.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        return np.asarray(tifffile.imread(path) if page is None else tifffile.imread(path, key=page))
    import imageio.v3 as iio

    return np.asarray(iio.imread(path))


def _channels_last(arr: np.ndarray) -> np.ndarray:
    """Planar RGB(A) (3|4, y, x) -> (y, x, 3|4); anything else unchanged."""
    if arr.ndim == 3 and arr.shape[0] in (3, 4) and arr.shape[-1] not in (1, 2, 3, 4):
        return np.moveaxis(arr, 0, -1)
    return arr


def _load(source, page: int | None, error: type[InputImageError], todo: str) -> np.ndarray:
    """Pixels of a file or of a plane reference (an object with ``read()``), errors in one line."""
    ref = hasattr(source, "read")  # a plane of a container
    if not ref:
        source = Path(source)
        if not source.is_file():
            raise ImageNotFoundError(f"{source}: image file not found; check the path")
    try:
        arr = source.read() if ref else decode(source, page)
    except error:
        raise
    except Exception as exc:  # noqa: BLE001 - every decoder error means the same to the user
        msg = str(exc).splitlines()[0] if str(exc) else "corrupt"
        raise error(
            f"{source}: cannot read image ({type(exc).__name__}: {msg}); the file is truncated "
            f"or not an image: {todo}"
        ) from None
    return np.asarray(arr)


def read_raw(path: str | Path, *, page: int | None = None) -> np.ndarray:
    """Read an image file as stored (any dtype, 2-D or with a trailing channel axis).

    Parameters
    ----------
    path : str or Path
        The file.
    page : int, optional
        For a TIFF, the page to read (default: all pages).

    Raises
    ------
    InputImageError
        If the file is missing (:class:`~scopeflow.errors.ImageNotFoundError`), truncated or
        not an image, or not 2-D (with or without channels), naming the file.
    """
    arr = _channels_last(_load(path, page, InputImageError, _TODO))
    if arr.ndim not in (2, 3) or arr.size == 0:
        raise InputImageError(f"{path}: expected a 2-D image, got shape {arr.shape}; export single planes")
    return arr


def unit_scale(arr: np.ndarray) -> float:
    """The divisor that maps a stored image to [0, 1] (see :func:`to_unit_float`); 1 for floats."""
    arr = np.asarray(arr)
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer):
        return 1.0
    if arr.dtype == np.uint8:
        return 255.0
    if arr.dtype == np.uint16:
        return 65535.0
    return 255.0 if arr.size and arr.max() <= 255 else 65535.0


def to_unit_float(arr: np.ndarray) -> np.ndarray:
    """Convert an image to float32 in [0, 1]: uint8 / 255, uint16 / 65535, floats unchanged.

    Other integer types are scaled by 255 when their values fit 8 bits, else by 65535 (camera
    frames stored in wider containers); booleans become 0/1.
    """
    arr = np.asarray(arr)
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer):
        return arr.astype(np.float32, copy=False)
    out = arr.astype(np.float32)
    out /= np.float32(unit_scale(arr))  # in place: one image-sized array, not two
    return out


def _one_channel(arr: np.ndarray, colour: str, where: str, error: type[InputImageError]) -> np.ndarray:
    """Reduce the trailing channel axis (1 to 4 entries) of ``arr`` by a colour rule."""
    if arr.shape[-1] in (1, 2):  # grey, grey + alpha
        return arr[..., 0]
    if colour == "green":
        return arr[..., 1]
    if colour == "mean":
        return arr[..., :3].astype(np.float32).mean(-1)
    if colour == "grey":
        rgb = arr[..., :3]
        if not (np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2])):
            raise error(f"{where}: colour image with differing channels; expected a grey image "
                        "(labels and masks: save them grey)")
    return arr[..., 0]


def to_plane(
    arr: np.ndarray,
    colour: str = "green",
    where: str = "image",
    error: type[InputImageError] = InputImageError,
    todo: str = "re-export it as one grey/RGB image per plane",
) -> np.ndarray:
    """The 2-D plane of an image by an explicit colour rule (see :data:`COLOURS`).

    Parameters
    ----------
    arr : ndarray
        (y, x), (y, x, c) with c in 1..4, or planar (3|4, y, x) pixels, any dtype; leading
        length-1 axes are dropped.
    colour : {"green", "mean", "grey", "first"}
        How RGB(A) becomes one plane.
    where : str
        The file (or plane reference) named in errors.
    error : type
        The error class raised.
    todo : str
        What the user should do, ending the error message.

    Returns
    -------
    ndarray
        (y, x) pixels: dtype unchanged, except ``"mean"`` of RGB(A), which is float32.

    Raises
    ------
    InputImageError
        (``error``) for any other shape, or for ``"grey"`` when R, G and B differ.
    """
    if colour not in COLOURS:
        raise ValueError(f"colour rule {colour!r} unknown; use one of {', '.join(COLOURS)}")
    arr = np.asarray(arr)
    while arr.ndim > 2 and arr.shape[0] == 1:
        arr = arr[0]
    arr = _channels_last(arr)
    if arr.ndim == 3 and arr.shape[-1] in (1, 2, 3, 4):
        arr = _one_channel(arr, colour, where, error)
    if arr.ndim != 2 or min(arr.shape) == 0:
        raise error(f"{where}: expected a 2-D grey or RGB image, got shape {arr.shape}; {todo}")
    return arr


def read_image(
    source,
    colour: str = "green",
    *,
    unit: bool = True,
    page: int | None = None,
    error: type[InputImageError] = InputImageError,
    todo: str = _TODO,
) -> np.ndarray:
    """Read one 2-D image: the one reader every caller uses, with an explicit colour rule.

    Parameters
    ----------
    source : str, Path or plane reference
        An image file (PNG/BMP/JPEG/TIFF), or an object with ``read()`` returning the pixels
        of one plane (e.g. :class:`scopeflow.io.squid.planes.PlaneRef`).
    colour : {"green", "mean", "grey", "first"}
        How RGB(A) becomes one plane (:func:`to_plane`).
    unit : bool
        True: float32 in [0, 1] (:func:`to_unit_float`; for ``"mean"`` the mean is taken on the
        stored values, then scaled by the stored type); False: as stored.
    page : int, optional
        For a TIFF, the page to read (default: all pages; a single page then).
    error : type
        Error class for an unreadable or non-2-D image (a missing file always raises
        :class:`~scopeflow.errors.ImageNotFoundError`).
    todo : str
        What the user should do, ending error messages.

    Returns
    -------
    ndarray
        (y, x) pixels.
    """
    arr = _load(source, page, error, todo)
    plane = to_plane(arr, colour, str(source), error, todo)
    if not unit:
        return plane
    if colour == "mean" and plane.dtype != arr.dtype:  # the mean of the stored R, G, B
        scale = unit_scale(arr)
        return plane if scale == 1.0 else plane / np.float32(scale)
    return to_unit_float(plane)


def to_frames(
    arr: np.ndarray,
    colour: str = "green",
    where: str = "movie",
    error: type[InputImageError] = InputImageError,
) -> np.ndarray:
    """The frames (t, y, x) of a movie array by an explicit colour rule (see :func:`to_plane`).

    Parameters
    ----------
    arr : ndarray
        (y, x) or (y, x, c): one frame; (t, y, x) or (t, y, x, c): ``t`` frames. A 3-D array is
        one colour frame when its last axis has 3 or 4 entries and its first more than 4.
    colour : {"green", "mean", "grey", "first"}
        How RGB(A) becomes one plane; grey + alpha (c = 2) gives its grey channel.
    where : str
        The movie named in errors.
    error : type
        The error class raised.

    Returns
    -------
    ndarray
        (t, y, x) frames, dtype unchanged (``"mean"`` of RGB(A): float32).
    """
    arr = np.asarray(arr)
    if arr.ndim == 2 or (arr.ndim == 3 and arr.shape[-1] in (3, 4) and arr.shape[0] > 4):
        return to_plane(arr, colour, where, error)[None]
    if arr.ndim == 4 and arr.shape[-1] in (1, 2, 3, 4):
        arr = _one_channel(arr, colour, where, error)
    if arr.ndim != 3 or arr.size == 0:
        raise error(f"{where}: expected frames (t, y, x), got shape {arr.shape}; export a "
                    "single-channel time series")
    return arr


def read_stack(path: str | Path, colour: str = "green") -> np.ndarray:
    """Read every page of a (multi-page) TIFF, or one image, as frames (t, y, x) as stored.

    A single page holding 3 or 4 samples per pixel is one colour frame (see :func:`to_frames`).

    Raises
    ------
    InputImageError
        Missing (:class:`~scopeflow.errors.ImageNotFoundError`), unreadable or not frames,
        naming the file.
    """
    return to_frames(_load(path, None, InputImageError, _TODO), colour, str(path))


def read_gray(path: str | Path) -> np.ndarray:
    """Read an image as float32 (y, x) in [0, 1]; RGB/RGBA frames give their green channel.

    :func:`read_image` with the ``"green"`` rule, as Octopi uses the green channel of
    colour-camera brightfield/DPC frames.
    """
    return read_image(path, "green")


def image_files(items) -> list[Path]:
    """Image files named by a path or a sequence of paths; a folder gives its images, sorted.

    Parameters
    ----------
    items : str, Path or sequence of them
        Files (taken as they are) and folders (their files with an :data:`IMAGE_SUFFIXES`
        suffix, sorted by name; not recursive).

    Raises
    ------
    ImageNotFoundError
        A path that is neither a file nor a folder (one line naming it).
    """
    if isinstance(items, (str, Path)):
        items = [items]
    out: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            out += sorted(q for q in p.iterdir() if q.suffix.lower() in IMAGE_SUFFIXES)
        elif p.is_file():
            out.append(p)
        else:
            raise ImageNotFoundError(f"no such image file or folder: {p}")
    return out


def read_labels(path: str | Path) -> np.ndarray:
    """Read a label or mask image as an integer (y, x) array (RGB masks: first channel)."""
    return read_image(path, "first", unit=False)


def write_labels_tiff(path: str | Path, labels: np.ndarray, threads: int = 1) -> None:
    """Write a uint32 label TIFF, zlib-compressed at level 1 in strips of 256 rows.

    Level 1 is ~3x faster than the default level and gives files ~10 % larger; the strips
    are compressed by ``threads`` threads.
    """
    import tifffile

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, np.asarray(labels, dtype=np.uint32), compression="zlib",
                     compressionargs={"level": 1}, rowsperstrip=256, maxworkers=max(1, int(threads)))
