"""Squid's ZARR_V3 save mode (OME-NGFF 0.5).

Facts (Cephla-Lab/Squid ``control/core/zarr_writer.py``, ``ZarrWriterInfo`` in
``control/core/job_processing.py``, ``build_*_zarr_path`` in ``control/utils.py``,
``docs/zarr-v3-format.md``):

* wells (region names like ``A1``, ``B12``, ``AA3``): ``{exp}/plate.ome.zarr/{row}/{col}/{fov}/``,
  a group whose array ``0`` is 5-D ``(T, C, Z, Y, X)``; plate and well groups carry
  ``ome.plate`` / ``ome.well``;
* other regions: ``{exp}/zarr/{region}/fov_{n}.ome.zarr/`` with the same 5-D array ``0``;
* an optional non-standard 6-D mode (``ZARR_USE_6D_FOV_DIMENSION``):
  ``{exp}/zarr/{region}/acquisition.zarr`` with one ``(FOV, T, C, Z, Y, X)`` array, refused here;
* each FOV group's ``zarr.json`` attributes hold ``ome.multiscales`` (axes t, c, z, y, x),
  ``ome.omero.channels[].label`` (channel names) and a ``_squid`` block: ``structure``
  (``5D-TCZYX`` or ``6D-FTCZYX``), ``pixel_size_um``, ``z_step_um``, ``time_increment_s``,
  ``shape``, ``dtype``, ``acquisition_complete`` (false until the writer is finalized) and
  ``aborted`` (true when the acquisition was aborted).

Only JSON is read to list FOVs; pixels are read plane by plane with zarr-python.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from scopeflow.io.octopi import COORDS_FILE, FOV, AcquisitionError, _read_coordinates
from scopeflow.io.squid.meta import channel_suffix, timepoint_dirs
from scopeflow.io.squid.planes import PlaneRef

__all__ = ["PLATE", "ZARR_DIR", "read_fovs"]

PLATE = "plate.ome.zarr"
ZARR_DIR = "zarr"
SIX_D = "acquisition.zarr"
_FOV_RE = re.compile(r"^fov_(?P<fov>\d+)\.ome\.zarr$")
_ROW_RE = re.compile(r"^[A-Za-z]+$")


def _json(p: Path) -> dict:
    try:
        doc = json.loads(p.read_text())
    except FileNotFoundError:
        raise AcquisitionError(
            f"{p}: missing; the Zarr store is incomplete, copy the complete acquisition folder"
        ) from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise AcquisitionError(
            f"{p}: invalid JSON ({str(exc).splitlines()[0]}); re-copy the store from the microscope"
        ) from None
    if not isinstance(doc, dict):
        raise AcquisitionError(f"{p}: expected a JSON object; re-copy the store")
    return doc


def refuse_6d(where: Path) -> AcquisitionError:
    return AcquisitionError(
        f"{where}: Squid's 6-D Zarr layout (one (FOV, T, C, Z, Y, X) array per region, "
        "ZARR_USE_6D_FOV_DIMENSION) is not read; acquire with ZARR_V3 and 'Use 6D FOV dimension' "
        "off (one OME-NGFF store per FOV), or with OME_TIFF or INDIVIDUAL_IMAGES"
    )


def _fov_groups(path: Path) -> list[tuple[str, int, Path]]:
    """(region, fov, group folder) of every FOV store, wells and other regions."""
    out = []
    plate = path / PLATE
    if plate.is_dir():
        for row in sorted(p for p in plate.iterdir() if p.is_dir() and _ROW_RE.match(p.name)):
            for col in sorted(p for p in row.iterdir() if p.is_dir() and p.name.isdigit()):
                for f in sorted(p for p in col.iterdir() if p.is_dir() and p.name.isdigit()):
                    out.append((f"{row.name}{col.name}", int(f.name), f))
    root = path / ZARR_DIR
    if root.is_dir():
        for region in sorted(p for p in root.iterdir() if p.is_dir()):
            if (region / SIX_D).exists():
                raise refuse_6d(region / SIX_D)
            for f in sorted(p for p in region.iterdir() if p.is_dir() and _FOV_RE.match(p.name)):
                out.append((region.name, int(_FOV_RE.match(f.name).group("fov")), f))
    return out


def read_store_header(group: Path) -> dict:
    """Array path, shape (T, C, Z, Y, X), channels and pixel size of one Squid FOV store.

    Raises
    ------
    AcquisitionError
        Missing/invalid ``zarr.json``, a 6-D store, or ``_squid.acquisition_complete`` not
        true (still being written, or aborted), naming the file.
    """
    meta_path = group / "zarr.json"
    attrs = _json(meta_path).get("attributes") or {}
    squid = attrs.get("_squid")
    if not isinstance(squid, dict):
        raise AcquisitionError(
            f"{meta_path}: no '_squid' attributes with acquisition_complete, so the store's "
            "completeness is unknown; acquire with Squid's ZARR_V3 mode"
        )
    if str(squid.get("structure", "5D-TCZYX")).upper().startswith("6D"):
        raise refuse_6d(meta_path)
    if squid.get("acquisition_complete") is not True:
        why = "the acquisition was aborted" if squid.get("aborted") else "Squid is still writing it"
        raise AcquisitionError(
            f"{meta_path}: _squid.acquisition_complete is not true ({why}); wait for the "
            "acquisition to finish, or remove this store"
        )
    ome = attrs.get("ome") or {}
    ms = (ome.get("multiscales") or [{}])[0]
    ds = (ms.get("datasets") or [{"path": "0"}])[0].get("path", "0")
    axes = [a.get("name") if isinstance(a, dict) else a for a in ms.get("axes", [])]
    if axes and axes != ["t", "c", "z", "y", "x"]:
        raise AcquisitionError(
            f"{meta_path}: axes {axes}, expected t, c, z, y, x (Squid 5-D); re-acquire with Squid"
        )
    arr = group / ds
    shape = _json(arr / "zarr.json").get("shape")
    if not isinstance(shape, list) or len(shape) != 5:
        raise AcquisitionError(
            f"{arr / 'zarr.json'}: array shape {shape}, expected 5-D (T, C, Z, Y, X); "
            "re-acquire with Squid's ZARR_V3 mode"
        )
    omero = (ome.get("omero") or {}).get("channels", [])
    labels = [c.get("label") for c in omero if isinstance(c, dict)]
    if len(labels) != shape[1] or not all(labels):
        labels = [f"Channel {n}" for n in range(shape[1])]
    return {"array": arr, "shape": tuple(int(s) for s in shape), "channels": labels,
            "pixel_size_um": squid.get("pixel_size_um")}


def is_zarr(path: Path) -> bool:
    return (Path(path) / PLATE).is_dir() or (Path(path) / ZARR_DIR).is_dir()


def read_fovs(path: str | Path) -> tuple[list[FOV], dict]:
    """FOVs of a ZARR_V3 acquisition (JSON only; no pixels are read).

    Returns
    -------
    (list of FOV, dict)
        One FOV per ``(t, region, fov, z)`` (``i`` = FOV index, ``j`` = 0, ``k`` = z; the
        region of a well store is its row and column, ``A`` + ``1`` -> ``A1``), ``files`` mapping
        channel file-name forms to :class:`PlaneRef` ``zarr`` references; and
        ``{"pixel_size_um", "channels"}``.

    Raises
    ------
    AcquisitionError
        No FOV store, the 6-D layout, or a bad/incomplete store (naming its ``zarr.json``).
    """
    path = Path(path)
    groups = _fov_groups(path)
    if not groups:
        raise AcquisitionError(
            f"{path}: no Zarr FOV store ({PLATE}/{{row}}/{{col}}/{{fov}} or "
            f"{ZARR_DIR}/{{region}}/fov_{{n}}.ome.zarr); copy the complete acquisition folder"
        )
    coords = {t: _read_coordinates(d / COORDS_FILE) for t, d in timepoint_dirs(path)
              if (d / COORDS_FILE).is_file()}
    fovs: list[FOV] = []
    info: dict = {"pixel_size_um": None, "channels": []}
    for region, n_fov, group in groups:
        head = read_store_header(group)
        nt, nc, nz = head["shape"][:3]
        names = [channel_suffix(c) for c in head["channels"]]
        info["pixel_size_um"] = info["pixel_size_um"] or head["pixel_size_um"]
        info["channels"] += [c for c in names if c not in info["channels"]]
        for t in range(nt):
            for z in range(nz):
                xyz = coords.get(t, {}).get((region, n_fov, 0, z), (None, None, None))
                fovs.append(FOV(t=t, i=n_fov, j=0, k=z, region=region,
                                files={names[c]: PlaneRef(head["array"], "zarr", (t, c, z))
                                       for c in range(nc)},
                                x_mm=xyz[0], y_mm=xyz[1], z_um=xyz[2]))
    fovs.sort(key=lambda v: (v.t, v.region, v.i, v.j, v.k))
    return fovs, info
