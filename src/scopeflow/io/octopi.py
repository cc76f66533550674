"""Read and write Octopi / Squid multipoint acquisition folders.

An Octopi acquisition folder looks like this (note the space in the JSON file name)::

    <acquisition>/
        acquisition parameters.json   dx(mm), Nx, dy(mm), Ny, dz(um), Nz, dt(s), Nt, objective, ...
        configurations.xml            one <mode Name="BF LED matrix left half" .../> per channel
        0/                            one folder per time point t (digits only)
            coordinates.csv           stage position of every FOV
            {i}_{j}_{k}_{channel}.bmp i = row (y), j = column (x), k = z index
            done                      written by newer versions when the time point is complete

Channel names in file names have their spaces replaced by ``_``, e.g.
``0_1_0_BF_LED_matrix_left_half.bmp``. Newer Octopi/Squid versions prefix a region name,
``{region}_{i}_{j}_{k}_{channel}`` or ``{region}_{fov}_{z}_{channel}``; both are accepted.

Conventions: image arrays are indexed (y, x); the origin of pixel coordinates is the centre of
pixel (0, 0). Stage coordinates from ``coordinates.csv`` are in mm (x, y) and µm (z).
"""

from __future__ import annotations

import csv
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from scopeflow.errors import InputImageError
from scopeflow.io.images import read_image

__all__ = [
    "CONFIG_FILE",
    "FOV",
    "LEFT",
    "OBJECTIVES",
    "PARAMS_FILE",
    "RIGHT",
    "Acquisition",
    "AcquisitionError",
    "iter_pairs",
    "load_channel",
    "load_pair",
    "load_params",
    "na_from_params",
    "pixel_size_from_params",
    "read_acquisition",
    "write_acquisition",
]

PARAMS_FILE = "acquisition parameters.json"
CONFIG_FILE = "configurations.xml"
COORDS_FILE = "coordinates.csv"
LEFT = "BF_LED_matrix_left_half"
RIGHT = "BF_LED_matrix_right_half"

#: Octopi objective table: name -> (magnification, NA); all assume a 180 mm tube-lens focal length.
OBJECTIVES: dict[str, tuple[float, float]] = {
    "2x": (2.0, 0.10),
    "4x": (4.0, 0.13),
    "10x": (10.0, 0.3),
    "20x": (20.0, 0.8),
    "40x": (40.0, 0.95),
    "50x": (50.0, 0.8),
    "60x": (60.0, 1.2),
}
OBJECTIVE_TUBE_LENS_F_MM = 180.0
TUBE_LENS_MM = 50.0
SENSOR_PIXEL_SIZE_UM = 1.85
DEFAULT_WAVELENGTH_UM = 0.525

IMAGE_EXTENSIONS = (".bmp", ".tiff", ".tif", ".png")

# {i}_{j}_{k}_{channel} with an optional {region}_ prefix; the channel starts with a letter.
_GRID_RE = re.compile(
    r"^(?:(?P<region>.+?)_)??(?P<i>\d+)_(?P<j>\d+)_(?P<k>\d+)_(?P<channel>[A-Za-z].*)$"
)
# Squid: {region}_{fov}_{z}_{channel}
_FOVIDX_RE = re.compile(r"^(?P<region>.+?)_(?P<fov>\d+)_(?P<k>\d+)_(?P<channel>[A-Za-z].*)$")

# Octopi illumination source codes for the LED-matrix patterns written to configurations.xml.
_ILLUMINATION_SOURCE = {
    "BF_LED_matrix_full": 0,
    "BF_LED_matrix_left_half": 1,
    "BF_LED_matrix_right_half": 2,
}


class AcquisitionError(InputImageError):
    """An Octopi acquisition folder is missing, incomplete or holds an unreadable file.

    The message is one line: ``<file or folder>: <what is wrong>; <what to do>``.
    It is a :class:`ValueError` (via :class:`scopeflow.errors.ScopeflowError`).
    """


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


# --------------------------------------------------------------------------- metadata helpers


def _objective_entry(params: Mapping) -> dict | None:
    """Objective as a dict {name, magnification, NA, tube_lens_f_mm} or None when absent."""
    obj = params.get("objective")
    if obj is None:
        return None
    if isinstance(obj, str):
        obj = {"name": obj}
    if not isinstance(obj, Mapping):
        return None
    obj = dict(obj)
    name = str(obj.get("name", "")).strip().lower().replace(" ", "")
    table = OBJECTIVES.get(name)
    if obj.get("magnification") is None and table is not None:
        obj["magnification"] = table[0]
    if obj.get("NA") is None and table is not None:
        obj["NA"] = table[1]
    obj.setdefault("tube_lens_f_mm", OBJECTIVE_TUBE_LENS_F_MM)
    return obj


def pixel_size_from_params(params: Mapping) -> float | None:
    """Pixel size at the sample (µm) from Octopi acquisition parameters.

    ``sensor_pixel_size_um / (magnification * tube_lens_mm / tube_lens_f_mm)`` with defaults
    ``sensor_pixel_size_um = 1.85`` (IMX226), ``tube_lens_mm = 50`` and the objective's
    ``tube_lens_f_mm = 180``. Returns None when the parameters have no objective.

    Parameters
    ----------
    params : mapping
        Content of ``acquisition parameters.json``.

    Returns
    -------
    float or None
        Pixel size in µm.

    Examples
    --------
    >>> round(pixel_size_from_params({"objective": {"name": "20x", "magnification": 20}}), 4)
    0.333
    """
    obj = _objective_entry(params)
    if obj is None or obj.get("magnification") in (None, 0):
        return None
    mag = float(obj["magnification"])
    f_obj = float(obj.get("tube_lens_f_mm") or OBJECTIVE_TUBE_LENS_F_MM)
    tube = float(params.get("tube_lens_mm") or TUBE_LENS_MM)
    sensor = float(params.get("sensor_pixel_size_um") or SENSOR_PIXEL_SIZE_UM)
    return sensor / (mag * tube / f_obj)


def na_from_params(params: Mapping) -> float | None:
    """Objective NA from ``params["objective"]`` (or the Octopi objective table by name)."""
    obj = _objective_entry(params)
    if obj is None or obj.get("NA") is None:
        return None
    return float(obj["NA"])


def _read_modes(xml_path: Path) -> list[dict]:
    """Attributes of every ``<mode>`` element of ``configurations.xml``."""
    try:
        root = ET.parse(xml_path).getroot()
    except (ET.ParseError, OSError) as exc:
        raise AcquisitionError(
            f"{xml_path}: cannot parse XML ({exc}); fix or delete the file "
            "(it is optional, channels are taken from the image file names)"
        ) from None
    return [dict(m.attrib) for m in root.iter("mode")]


def _selected_channels(modes: Sequence[dict]) -> list[str]:
    """Channel file suffixes of the selected modes (all modes when none has ``Selected``)."""
    have_sel = any("Selected" in m for m in modes)
    out = []
    for m in modes:
        if have_sel and str(m.get("Selected", "0")).strip().lower() not in ("1", "true", "yes"):
            continue
        name = m.get("Name")
        if name:
            out.append(name.strip().replace(" ", "_"))
    return out


def _to_float(value) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if np.isfinite(v) else None


def _to_int(value) -> int | None:
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return None


def _read_coordinates(csv_path: Path) -> dict[tuple, tuple]:
    """Stage coordinates keyed by (region, i, j, k) -> (x_mm, y_mm, z_um).

    Tolerates the old columns ``i, j, k, x (mm), y (mm), z (um)`` and the newer
    ``[region,] i, j | fov, z_level, ...`` variants. ``k`` is None in keys when the file has no
    z column. Unparseable files give an empty mapping (coordinates are optional).
    """
    out: dict[tuple, tuple] = {}
    try:
        with open(csv_path, newline="") as fh:
            reader = csv.DictReader(fh)
            if reader.fieldnames is None:
                return out
            for row in reader:
                row = {str(k).strip().lower(): v for k, v in row.items() if k is not None}
                region = str(row.get("region", "") or "").strip()
                if "i" in row and "j" in row:
                    i, j = _to_int(row.get("i")), _to_int(row.get("j"))
                elif "fov" in row:
                    i, j = _to_int(row.get("fov")), 0
                else:
                    continue
                if i is None or j is None:
                    continue
                k = _to_int(row["k"]) if "k" in row else _to_int(row.get("z_level"))
                xyz = (
                    _to_float(row.get("x (mm)")),
                    _to_float(row.get("y (mm)")),
                    _to_float(row.get("z (um)")),
                )
                out[(region, i, j, k)] = xyz
    except (OSError, csv.Error, UnicodeDecodeError):
        return {}
    return out


def _parse_image_name(stem: str) -> tuple[str, int, int, int, str] | None:
    """(region, i, j, k, channel) from a file stem, or None if it is not an Octopi image name."""
    m = _GRID_RE.match(stem)
    if m:
        region = m.group("region") or ""
        return region, int(m.group("i")), int(m.group("j")), int(m.group("k")), m.group("channel")
    m = _FOVIDX_RE.match(stem)
    if m:
        return m.group("region"), int(m.group("fov")), 0, int(m.group("k")), m.group("channel")
    return None


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


def load_params(path: str | Path) -> dict:
    """``acquisition parameters.json`` of an Octopi/Squid acquisition folder, or a one-line error."""
    params_path = Path(path) / PARAMS_FILE
    if not params_path.is_file():
        raise AcquisitionError(
            f"{params_path}: missing '{PARAMS_FILE}', so {path} is not an Octopi acquisition "
            "folder; copy the complete acquisition folder from the microscope"
        )
    try:
        params = json.loads(params_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AcquisitionError(
            f"{params_path}: invalid JSON ({str(exc).splitlines()[0]}); re-copy the file "
            "from the microscope"
        ) from None
    if not isinstance(params, dict):
        raise AcquisitionError(f"{params_path}: expected a JSON object; re-copy the file")
    return params


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


# --------------------------------------------------------------------------- writer


def _choose_objective(pixel_size_um: float, objective: str | Mapping | None) -> dict:
    """Objective dict whose nominal pixel size is closest to ``pixel_size_um``."""
    if isinstance(objective, Mapping):
        obj = dict(objective)
        name = str(obj.get("name", "")).lower()
        tab = OBJECTIVES.get(name, (None, None))
        obj.setdefault("magnification", tab[0])
        obj.setdefault("NA", tab[1])
        obj.setdefault("tube_lens_f_mm", OBJECTIVE_TUBE_LENS_F_MM)
        if obj["magnification"] is None:
            raise ValueError(f"objective {objective!r} needs a 'magnification'")
        return obj
    if objective is None:
        nominal = {
            n: SENSOR_PIXEL_SIZE_UM / (m * TUBE_LENS_MM / OBJECTIVE_TUBE_LENS_F_MM)
            for n, (m, _) in OBJECTIVES.items()
        }
        objective = min(nominal, key=lambda n: abs(np.log(nominal[n] / pixel_size_um)))
    name = str(objective).lower()
    if name not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; use one of {sorted(OBJECTIVES)}")
    mag, na = OBJECTIVES[name]
    return {
        "name": name,
        "magnification": mag,
        "NA": na,
        "tube_lens_f_mm": OBJECTIVE_TUBE_LENS_F_MM,
    }


def _configurations_xml(channels: Sequence[str], pixel_format: str) -> str:
    root = ET.Element("modes")
    for n, ch in enumerate(channels, start=1):
        ET.SubElement(
            root,
            "mode",
            {
                "ID": str(n),
                "Name": ch.replace("_", " "),
                "ExposureTime": "12.0",
                "AnalogGain": "0.0",
                "IlluminationSource": str(_ILLUMINATION_SOURCE.get(ch, 0)),
                "IlluminationIntensity": "50.0",
                "CameraSN": "",
                "ZOffset": "0.0",
                "PixelFormat": pixel_format,
                "Selected": "1",
            },
        )
    ET.indent(root)
    return ET.tostring(root, encoding="unicode") + "\n"


def write_acquisition(
    out_dir: str | Path,
    frames: Mapping[tuple[int, int, int], Mapping[str, np.ndarray]],
    *,
    pixel_size_um: float = 0.333,
    objective: str | Mapping | None = None,
    na: float | None = None,
    fmt: str = "bmp",
    coordinates: bool = True,
    experiment_id: str | None = None,
    dz_um: float = 1.5,
    stage_origin_mm: tuple[float, float] = (0.0, 0.0),
) -> Path:
    """Write images as an Octopi acquisition folder (single time point ``0/``).

    Parameters
    ----------
    out_dir : str or Path
        Acquisition folder to create (parents are created; existing files are overwritten).
    frames : mapping
        ``{(i, j, k): {channel: image}}`` with 2-D uint8 (or uint16, TIFF only) images indexed
        (y, x); ``i`` is the row (y), ``j`` the column (x), ``k`` the z index.
    pixel_size_um : float
        Pixel size at the sample in µm. The objective's magnification is chosen from the
        Octopi table (unless given) and ``sensor_pixel_size_um`` is set so that
        :func:`pixel_size_from_params` returns exactly this value (to float precision).
    objective : str or mapping, optional
        Objective name (``"20x"``) or dict {name, magnification, NA, tube_lens_f_mm};
        default: the table objective closest to ``pixel_size_um`` with a 1.85 µm sensor.
    na : float, optional
        NA to record (overrides the objective table), e.g. the NA used by a simulator.
    fmt : {"bmp", "tiff", "tif", "png"}
        Image file format; uint16 images need ``"tiff"`` or ``"png"``.
    coordinates : bool
        Write ``0/coordinates.csv`` (stage positions of adjacent, non-overlapping tiles).
    experiment_id : str, optional
        Recorded as ``"experiment_ID"`` in the JSON (Octopi puts it in the folder name).
    dz_um : float
        z step recorded as ``dz(um)``.
    stage_origin_mm : (float, float)
        Stage (x, y) of FOV (0, 0) in mm.

    Returns
    -------
    Path
        ``out_dir``.
    """
    out = Path(out_dir)
    fmt = fmt.lower().lstrip(".")
    if fmt not in ("bmp", "tiff", "tif", "png"):
        raise ValueError(f"fmt must be bmp, tiff, tif or png, not {fmt!r}")
    if not frames:
        raise ValueError("frames is empty: nothing to write")
    obj = _choose_objective(float(pixel_size_um), objective)
    if na is not None:
        obj["NA"] = float(na)
    mag = float(obj["magnification"])
    f_obj = float(obj["tube_lens_f_mm"])
    sensor = float(pixel_size_um) * mag * TUBE_LENS_MM / f_obj

    keys = sorted(frames)
    channels: list[str] = []
    shape = None
    dtype = None
    for key in keys:
        for ch, img in frames[key].items():
            if ch not in channels:
                channels.append(ch)
            img = np.asarray(img)
            if img.ndim != 2:
                raise ValueError(f"frame {key} {ch}: expected a 2-D image, got {img.shape}")
            shape = shape or img.shape
            dtype = dtype or img.dtype
            if img.dtype not in (np.uint8, np.uint16):
                raise ValueError(f"frame {key} {ch}: expected uint8 or uint16, got {img.dtype}")
            if img.dtype == np.uint16 and fmt == "bmp":
                raise ValueError(f"frame {key} {ch}: uint16 images need fmt='tiff' or 'png'")
    ny_img, nx_img = shape
    n_i = max(k[0] for k in keys) + 1
    n_j = max(k[1] for k in keys) + 1
    n_k = max(k[2] for k in keys) + 1
    dx_mm = nx_img * pixel_size_um / 1000.0
    dy_mm = ny_img * pixel_size_um / 1000.0

    params = {
        "dx(mm)": dx_mm,
        "Nx": n_j,
        "dy(mm)": dy_mm,
        "Ny": n_i,
        "dz(um)": float(dz_um),
        "Nz": n_k,
        "dt(s)": 0.0,
        "Nt": 1,
        "with AF": False,
        "with reflection AF": False,
        "objective": {
            "name": obj.get("name", f"{mag:g}x"),
            "magnification": mag,
            "NA": float(obj["NA"]) if obj.get("NA") is not None else None,
            "tube_lens_f_mm": f_obj,
        },
        "sensor_pixel_size_um": sensor,
        "tube_lens_mm": TUBE_LENS_MM,
    }
    if experiment_id is not None:
        params["experiment_ID"] = str(experiment_id)

    tdir = out / "0"
    tdir.mkdir(parents=True, exist_ok=True)
    (out / PARAMS_FILE).write_text(json.dumps(params, indent=2) + "\n")
    pixel_format = "MONO8" if dtype == np.uint8 else "MONO16"
    (out / CONFIG_FILE).write_text(_configurations_xml(channels, pixel_format))

    import imageio.v3 as iio
    import tifffile

    for i, j, k in keys:
        for ch, img in frames[(i, j, k)].items():
            p = tdir / f"{i}_{j}_{k}_{ch}.{fmt}"
            if fmt in ("tiff", "tif"):
                tifffile.imwrite(p, np.asarray(img))
            else:
                iio.imwrite(p, np.asarray(img), extension=f".{fmt}")

    if coordinates:
        x0, y0 = stage_origin_mm
        with open(tdir / COORDS_FILE, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["i", "j", "k", "x (mm)", "y (mm)", "z (um)"])
            for i, j, k in keys:
                w.writerow(
                    [
                        i,
                        j,
                        k,
                        round(x0 + j * dx_mm, 6),
                        round(y0 + i * dy_mm, 6),
                        round(k * dz_um, 4),
                    ]
                )
    (tdir / "done").write_text("")
    return out


def iter_pairs(acq: Acquisition, fovs: Iterable[FOV] | None = None):
    """Yield ``(fov, left, right)`` for the FOVs of an acquisition (see :func:`load_pair`)."""
    for fov in acq.fovs if fovs is None else fovs:
        left, right = load_pair(fov)
        yield fov, left, right
