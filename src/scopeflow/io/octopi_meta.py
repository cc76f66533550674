"""Octopi / Squid acquisition metadata: folder layout, file names, parameters and optics.

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
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from scopeflow.errors import InputImageError

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


class AcquisitionError(InputImageError):
    """An Octopi acquisition folder is missing, incomplete or holds an unreadable file.

    The message is one line: ``<file or folder>: <what is wrong>; <what to do>``.
    It is a :class:`ValueError` (via :class:`scopeflow.errors.ScopeflowError`).
    """


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
