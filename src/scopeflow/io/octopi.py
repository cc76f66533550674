"""Read Octopi / Squid multipoint acquisition folders saved as individual images.

The folder layout, file names and metadata are described in :mod:`scopeflow.io.octopi_meta`;
:mod:`scopeflow.io.squid` reads Squid's other save modes into the same :class:`Acquisition`.
Pixels are read by :func:`scopeflow.io.images.read_image` (green channel of RGB frames).

Conventions: image arrays are indexed (y, x); the origin of pixel coordinates is the centre of
pixel (0, 0). Stage coordinates from ``coordinates.csv`` are in mm (x, y) and µm (z).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from scopeflow.io.images import read_image
from scopeflow.io.octopi_meta import (
    CONFIG_FILE,
    COORDS_FILE,
    DEFAULT_WAVELENGTH_UM,
    IMAGE_EXTENSIONS,
    LEFT,
    PARAMS_FILE,
    RIGHT,
    AcquisitionError,
    _parse_image_name,
    _read_coordinates,
    _read_modes,
    _selected_channels,
    load_params,
    na_from_params,
    pixel_size_from_params,
)

__all__ = [
    "FOV",
    "Acquisition",
    "iter_pairs",
    "load_channel",
    "load_pair",
    "read_acquisition",
]


@dataclass
class FOV:
    """One field of view (all channels of one ``t, i, j, k`` position).

    Attributes
    ----------
    t, i, j, k : int
        Time point, row (y index), column (x index) and z index of the FOV.
        For Squid ``{region}_{fov}_{z}`` naming, ``i`` is the FOV index and ``j`` is 0.
    files : dict of str to Path
        Channel file-name suffix (e.g. ``"BF_LED_matrix_left_half"``) -> image file.
    x_mm, y_mm : float or None
        Stage position in mm from ``coordinates.csv`` (None when absent).
    z_um : float or None
        Stage z in µm from ``coordinates.csv`` (None when absent).
    region : str
        Region prefix of the file names (newer Octopi/Squid); ``""`` for the classic layout.
    """

    t: int
    i: int
    j: int
    k: int
    files: dict[str, Path]
    x_mm: float | None = None
    y_mm: float | None = None
    z_um: float | None = None
    region: str = ""

    @property
    def name(self) -> str:
        """Unique FOV name, ``"{t}-{i}_{j}_{k}"`` (``"{t}-{region}_{i}_{j}_{k}"`` with a region)."""
        stem = f"{self.i}_{self.j}_{self.k}"
        if self.region:
            stem = f"{self.region}_{stem}"
        return f"{self.t}-{stem}"

    def expected_file(self, channel: str) -> Path:
        """Path at which the image of ``channel`` is expected (for error messages)."""
        ref = next(iter(self.files.values()), None)
        folder = ref.parent if ref is not None else Path(str(self.t))
        ext = ref.suffix if ref is not None else ".bmp"
        prefix = f"{self.region}_" if self.region else ""
        return folder / f"{prefix}{self.i}_{self.j}_{self.k}_{channel}{ext}"


@dataclass
class Acquisition:
    """A parsed Octopi acquisition folder.

    Attributes
    ----------
    path : Path
        The acquisition folder.
    params : dict
        Content of ``acquisition parameters.json``.
    pixel_size_um : float or None
        Pixel size at the sample in µm (None when neither given nor derivable from ``params``).
    na : float or None
        Objective numerical aperture (None when unknown).
    wavelength_um : float
        Illumination wavelength in µm (not stored by Octopi; default 0.525, green LED).
    channels : list of str
        Channel file-name suffixes present in the image files (``configurations.xml`` order first).
    fovs : list of FOV
        FOVs sorted by (t, region, i, j, k).
    modes : list of dict
        Attributes of the ``<mode>`` elements of ``configurations.xml`` (empty when absent).
    save_mode : str
        Squid save mode that wrote the folder (see :mod:`scopeflow.io.squid`).
    bit_depth : int or None
        Camera bit depth from the channels' pixel format (None when the metadata do not say).
    objective : str
        Objective name from the metadata (e.g. ``"20x"``; "" when unknown).
    """

    path: Path
    params: dict
    pixel_size_um: float | None
    na: float | None
    wavelength_um: float
    channels: list[str]
    fovs: list[FOV]
    modes: list[dict] = field(default_factory=list)
    save_mode: str = "INDIVIDUAL_IMAGES"
    bit_depth: int | None = None
    objective: str = ""

    def fov(self, name: str) -> FOV:
        """Return the FOV called ``name`` (see :attr:`FOV.name`)."""
        for f in self.fovs:
            if f.name == name:
                return f
        raise KeyError(f"{self.path}: no FOV named {name!r}")


def _scan_timepoint(t: int, folder: Path) -> dict[tuple, FOV]:
    """FOVs of one time-point folder keyed by (t, region, i, j, k)."""
    fovs: dict[tuple, FOV] = {}
    ext_rank = {e: n for n, e in enumerate(IMAGE_EXTENSIONS)}
    for p in sorted(folder.iterdir()):
        ext = p.suffix.lower()
        if ext not in ext_rank or not p.is_file():
            continue
        parsed = _parse_image_name(p.stem)
        if parsed is None:
            continue
        region, i, j, k, channel = parsed
        key = (t, region, i, j, k)
        fov = fovs.setdefault(key, FOV(t=t, i=i, j=j, k=k, files={}, region=region))
        old = fov.files.get(channel)
        if old is None or ext_rank[ext] < ext_rank[old.suffix.lower()]:
            fov.files[channel] = p
    return fovs


# --------------------------------------------------------------------------- reader


def read_acquisition(
    path: str | Path,
    pixel_size_um: float | None = None,
    required_channels: Sequence[str] = (LEFT, RIGHT),
    *,
    wavelength_um: float = DEFAULT_WAVELENGTH_UM,
    na: float | None = None,
) -> Acquisition:
    """Parse an Octopi acquisition folder (metadata and file index; no pixels are read).

    Parameters
    ----------
    path : str or Path
        The acquisition folder (holding ``acquisition parameters.json``).
    pixel_size_um : float, optional
        Pixel size at the sample in µm; overrides the value derived from the metadata
        (see :func:`pixel_size_from_params`).
    required_channels : sequence of str
        Channel file-name suffixes every FOV must have (default: the left- and right-half
        LED-matrix images needed for DPC). Pass ``()`` to accept any channels.
    wavelength_um : float
        Illumination wavelength in µm (Octopi does not record it; 0.525 µm = green LED).
    na : float, optional
        Objective NA; overrides the metadata / objective table.

    Returns
    -------
    Acquisition

    Raises
    ------
    AcquisitionError
        The folder does not exist or is not a directory; ``acquisition parameters.json`` is
        missing or invalid; there is no time-point folder or no image; a FOV lacks a required
        channel (the message names the missing file).

    Notes
    -----
    Time-point folders are the sub-folders whose name is only digits (``0/``, ``1/``, ...);
    other sub-folders (e.g. ``truth/``) are ignored. Image files are
    ``[{region}_]{i}_{j}_{k}_{channel}.bmp|tiff|tif|png``. Old Octopi versions scanned in a
    snake pattern and wrote the loop index as ``j`` in ``coordinates.csv`` while the file
    name holds the spatial column; stage coordinates are matched by file-name indices.
    """
    path = Path(path)
    if not path.exists():
        raise AcquisitionError(
            f"{path}: acquisition folder does not exist; check the path in the sample sheet "
            "or config (input_dir)"
        )
    if not path.is_dir():
        raise AcquisitionError(
            f"{path}: is a file, not an Octopi acquisition folder; point to the folder that "
            f"holds '{PARAMS_FILE}'"
        )
    params = load_params(path)

    modes: list[dict] = []
    if (path / CONFIG_FILE).is_file():
        modes = _read_modes(path / CONFIG_FILE)

    tdirs = sorted((int(p.name), p) for p in path.iterdir() if p.is_dir() and p.name.isdigit())
    if not tdirs:
        raise AcquisitionError(
            f"{path}: no time-point folder (0/, 1/, ...) with images; copy the complete "
            "acquisition folder from the microscope"
        )

    fovs: dict[tuple, FOV] = {}
    for t, tdir in tdirs:
        found = _scan_timepoint(t, tdir)
        coords = _read_coordinates(tdir / COORDS_FILE) if (tdir / COORDS_FILE).is_file() else {}
        for fov in found.values():
            for key in (
                (fov.region, fov.i, fov.j, fov.k),
                ("", fov.i, fov.j, fov.k),
                (fov.region, fov.i, fov.j, None),
                ("", fov.i, fov.j, None),
            ):
                if key in coords:
                    fov.x_mm, fov.y_mm, fov.z_um = coords[key]
                    break
        fovs.update(found)
    if not fovs:
        where = ", ".join(str(p) for _, p in tdirs[:3])
        raise AcquisitionError(
            f"{where}: no image files named {{i}}_{{j}}_{{k}}_{{channel}}.bmp|tiff|png found; "
            "copy the images or re-export the acquisition with per-FOV image files "
            "(multi-page TIFF / OME-TIFF / Zarr saving modes are not supported)"
        )

    present = {c for f in fovs.values() for c in f.files}
    order = [c for c in _selected_channels(modes) if c in present]
    channels = order + sorted(present - set(order))

    fov_list = [fovs[k] for k in sorted(fovs)]
    for fov in fov_list:
        missing = [c for c in required_channels if c not in fov.files]
        if missing:
            c = missing[0]
            both = "both " if len(required_channels) == 2 else "the "
            raise AcquisitionError(
                f"{fov.expected_file(c)}: missing {_channel_words(c)} image for FOV "
                f"{fov.i}_{fov.j}_{fov.k} (t={fov.t}); re-export the acquisition with {both}"
                f"{' and '.join(required_channels)} channels "
                f"(found: {', '.join(sorted(fov.files))})"
            )

    if pixel_size_um is None:
        pixel_size_um = pixel_size_from_params(params)
    if na is None:
        na = na_from_params(params)
    return Acquisition(
        path=path,
        params=params,
        pixel_size_um=None if pixel_size_um is None else float(pixel_size_um),
        na=None if na is None else float(na),
        wavelength_um=float(wavelength_um),
        channels=channels,
        fovs=fov_list,
        modes=modes,
    )


def _channel_words(channel: str) -> str:
    if channel == LEFT:
        return "left-half"
    if channel == RIGHT:
        return "right-half"
    return channel


# --------------------------------------------------------------------------- pixels


def load_channel(fov: FOV, channel: str) -> np.ndarray:
    """Load one channel of a FOV as a 2-D float32 image in [0, 1].

    Parameters
    ----------
    fov : FOV
        A FOV from :func:`read_acquisition`.
    channel : str
        Channel file-name suffix, e.g. ``"BF_LED_matrix_left_half"``.

    Returns
    -------
    numpy.ndarray
        float32 (y, x) image: uint8 / 255, uint16 / 65535. RGB/RGBA frames give their green
        channel.

    Raises
    ------
    AcquisitionError
        The channel is missing, or the file is truncated, corrupt or not a 2-D image.
    """
    path = fov.files.get(channel)
    if path is None:
        raise AcquisitionError(
            f"{fov.expected_file(channel)}: missing {channel} image for FOV "
            f"{fov.i}_{fov.j}_{fov.k}; re-export the acquisition with this channel"
        )
    return read_image(path, "green", page=0, error=AcquisitionError,
                      todo="re-copy it from the microscope or remove this FOV")


def load_pair(fov: FOV, left: str = LEFT, right: str = RIGHT) -> tuple[np.ndarray, np.ndarray]:
    """Load the left- and right-half illumination images of a FOV.

    Parameters
    ----------
    fov : FOV
        A FOV from :func:`read_acquisition`.
    left, right : str
        Channel suffixes of the two DPC images.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        float32 (y, x) images in [0, 1] (see :func:`load_channel`).

    Raises
    ------
    AcquisitionError
        Either image is missing or unreadable, or they differ in shape.
    """
    a = load_channel(fov, left)
    b = load_channel(fov, right)
    if a.shape != b.shape:
        raise AcquisitionError(
            f"{fov.files[left]} and {fov.files[right]}: left and right images differ in shape "
            f"({a.shape[0]}x{a.shape[1]} vs {b.shape[0]}x{b.shape[1]} px); both must come "
            "from the same camera ROI, re-export this FOV"
        )
    return a, b


def iter_pairs(acq: Acquisition, fovs: Iterable[FOV] | None = None):
    """Yield ``(fov, left, right)`` for the FOVs of an acquisition (see :func:`load_pair`)."""
    for fov in acq.fovs if fovs is None else fovs:
        left, right = load_pair(fov)
        yield fov, left, right
