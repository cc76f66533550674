"""References to one 2-D image plane inside a file, and reading them.

A Squid acquisition saved as individual images has one file per plane; its other save modes
keep many planes in one container (a multi-page TIFF, an OME-TIFF stack, a Zarr array). A
:class:`PlaneRef` names one plane of such a container. Its string form,
``"<path>::<kind>:<i>,<j>,..."``, is what the workflow's FOV list (``ingest/fovs.tsv``) stores;
:func:`read_source` reads either form (a plain image path or a plane reference).

Kinds and their indices:

* ``page``: page ``i`` of a (multi-page) TIFF;
* ``tzc``: plane ``(t, z, c)`` of the first series of an OME-TIFF with axes ``TZCYX``;
* ``zarr``: plane ``(t, c, z)`` of a 5-D ``TCZYX`` Zarr v3 array (the path is the array).

Pixels come back as stored (uint8/uint16 ...), indexed (y, x); RGB frames give their green
channel, as Octopi does for colour-camera brightfield images.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from scopeflow.errors import InputImageError
from scopeflow.io.images import decode, to_plane

__all__ = ["SEP", "KINDS", "PlaneRef", "is_plane_ref", "parse_source", "read_source"]

SEP = "::"
KINDS = ("page", "tzc", "zarr")


@dataclass(frozen=True)
class PlaneRef:
    """One plane of a container file.

    Attributes
    ----------
    path : Path
        The container (TIFF file or Zarr array folder).
    kind : {"page", "tzc", "zarr"}
        How ``index`` addresses the plane (see the module docstring).
    index : tuple of int
        Page number, ``(t, z, c)`` or ``(t, c, z)``.
    """

    path: Path
    kind: str
    index: tuple[int, ...]

    def __str__(self) -> str:
        return f"{self.path}{SEP}{self.kind}:{','.join(str(int(i)) for i in self.index)}"

    @property
    def suffix(self) -> str:
        """File-name suffix of the container (so the ref can stand where a Path did)."""
        return self.path.suffix

    @property
    def parent(self) -> Path:
        return self.path.parent

    def read(self) -> np.ndarray:
        """The plane's pixels as stored (see :func:`read_source`)."""
        return read_source(self)


def parse_source(source: str | Path | PlaneRef) -> Path | PlaneRef:
    """A plain path, or the :class:`PlaneRef` a ``"<path>::<kind>:<indices>"`` string names."""
    if isinstance(source, (PlaneRef, Path)):
        return source
    text = str(source)
    head, sep, tail = text.rpartition(SEP)
    if not sep:
        return Path(text)
    kind, _, idx = tail.partition(":")
    try:
        index = tuple(int(v) for v in idx.split(","))
    except ValueError:
        index = ()
    if kind not in KINDS or not index:
        raise InputImageError(
            f"{text}: not an image path nor a plane reference '<file>::<kind>:<indices>' "
            f"(kinds {', '.join(KINDS)}); re-run the ingest step"
        )
    return PlaneRef(Path(head), kind, index)


def _read_ref(ref: PlaneRef) -> np.ndarray:
    if ref.kind == "zarr":
        import zarr

        arr = zarr.open_array(str(ref.path), mode="r")
        t, c, z = ref.index
        return np.asarray(arr[t, c, z])
    import tifffile

    with tifffile.TiffFile(ref.path) as tif:
        if ref.kind == "page":
            return tif.pages[ref.index[0]].asarray()
        t, z, c = ref.index
        series = tif.series[0]
        full = dict(zip(series.get_axes(False), series.get_shape(False)))  # length-1 axes kept
        page = (t * full.get("Z", 1) + z) * full.get("C", 1) + c
        return series.pages[page].asarray()


@contextmanager
def quiet_tifffile():
    """Silence tifffile's own log messages (a truncated file makes it log errors before it
    raises); the caller reports the failure in one line."""
    logger = logging.getLogger("tifffile")
    level = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        logger.setLevel(level)


def is_plane_ref(source) -> bool:
    """Whether ``source`` is a :class:`PlaneRef` or its string form (not a plain file path)."""
    return isinstance(source, PlaneRef) or (not isinstance(source, Path) and SEP in str(source))


def read_source(source: str | Path | PlaneRef, *, colour: bool = False) -> np.ndarray:
    """Read one image plane, as stored (dtype unchanged), indexed (y, x).

    Parameters
    ----------
    source : str, Path or PlaneRef
        An image file (PNG/BMP/TIFF: its first page), or a plane reference (object or its
        string form, see the module docstring).
    colour : bool
        Keep the colour axis of an RGB/RGBA frame (y, x, 3|4) instead of taking its green
        channel (fluorescence frames of a colour camera).

    Returns
    -------
    numpy.ndarray
        2-D array; RGB/RGBA frames give their green channel (unless ``colour``).

    Raises
    ------
    InputImageError
        The file is missing, truncated or corrupt, or the plane is not 2-D; the message names
        the file.
    """
    src = parse_source(source)
    path = src.path if isinstance(src, PlaneRef) else src
    if not path.exists():
        raise InputImageError(f"{path}: image file not found; check the acquisition folder")
    try:
        if isinstance(src, PlaneRef):
            with quiet_tifffile():
                arr = _read_ref(src)
        else:
            arr = decode(path, page=0)
    except InputImageError:
        raise
    except Exception as exc:  # noqa: BLE001 - every decoder failure means a bad file
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputImageError(
            f"{src}: cannot read image ({type(exc).__name__}: {msg}); the file is truncated "
            "or corrupt, re-copy it from the microscope"
        ) from None
    if colour:
        return np.asarray(arr)
    return to_plane(arr, "green", str(src), todo="re-export the acquisition as one grey/RGB image "
                    "per FOV and channel")
