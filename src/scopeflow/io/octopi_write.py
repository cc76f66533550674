"""Write Octopi acquisition folders (the simulators' output): parameters JSON,
``configurations.xml``, ``coordinates.csv`` and one image per FOV and channel.

The layout is the one :mod:`scopeflow.io.octopi` reads (see :mod:`scopeflow.io.octopi_meta`).
"""

from __future__ import annotations

import csv
import json
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from scopeflow.io.octopi_meta import (
    CONFIG_FILE,
    COORDS_FILE,
    OBJECTIVE_TUBE_LENS_F_MM,
    OBJECTIVES,
    PARAMS_FILE,
    SENSOR_PIXEL_SIZE_UM,
    TUBE_LENS_MM,
)

__all__ = ["write_acquisition"]

# Octopi illumination source codes for the LED-matrix patterns written to configurations.xml.
_ILLUMINATION_SOURCE = {
    "BF_LED_matrix_full": 0,
    "BF_LED_matrix_left_half": 1,
    "BF_LED_matrix_right_half": 2,
}


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
