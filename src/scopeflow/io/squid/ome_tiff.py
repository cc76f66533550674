"""Squid's OME_TIFF save mode.

Facts (Cephla-Lab/Squid ``control/core/utils_ome_tiff_writer.py`` and ``SaveOMETiffJob`` in
``control/core/job_processing.py``): one file per FOV, ``{exp}/ome_tiff/{region}_{fov}.ome.tiff``
(``fov`` zero-padded to ``FILE_ID_PADDING``), created at full size with axes ``TZCYX`` (shape
``Nt, Nz, Nchannels, Y, X``; one page per plane) and filled plane by plane through a memory
map. Its OME-XML gives the channel names and ``PhysicalSizeX/Y`` (µm), ``PhysicalSizeZ``,
``TimeIncrement``; only when the FOV's last plane is written does Squid add one ``Plane``
element per plane (``TheT, TheZ, TheC, PositionX/Y`` in mm, ``PositionZ`` in µm, ``DeltaT``).
So a stack without its Plane table is still being written (or was abandoned). The time-point
folders ``{exp}/{t}/`` still get ``coordinates.csv``.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

from scopeflow.io.octopi import COORDS_FILE, FOV, AcquisitionError, _read_coordinates
from scopeflow.io.squid.meta import channel_suffix, timepoint_dirs
from scopeflow.io.squid.planes import PlaneRef, quiet_tifffile

__all__ = ["FOLDER", "NAME_RE", "read_fovs"]

FOLDER = "ome_tiff"
#: ``{region}_{fov}.ome.tif[f]``
NAME_RE = re.compile(r"^(?P<region>.+)_(?P<fov>\d+)\.ome\.tiff?$", re.IGNORECASE)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _float(v) -> float | None:
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def _bad(f: Path, what: str, exc: Exception | None = None) -> AcquisitionError:
    detail = ""
    if exc is not None:
        detail = f" ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'corrupt'})"
    return AcquisitionError(
        f"{f}: {what}{detail}; re-copy the file from the microscope or remove this FOV"
    )


def read_stack_header(f: Path) -> dict:
    """Shape, channels, pixel size and plane positions of one Squid OME-TIFF (no pixels read).

    Returns
    -------
    dict
        ``shape`` (T, Z, C, Y, X), ``channels`` (names as written), ``pixel_size_um`` (or
        None), ``dtype``, ``planes`` {(t, z, c): {PositionX, PositionY, PositionZ}}.

    Raises
    ------
    AcquisitionError
        Unreadable or truncated file, axes other than TZCYX, or no Plane table (the stack is
        incomplete), naming the file.
    """
    import tifffile

    try:
        with quiet_tifffile(), tifffile.TiffFile(f) as tif:
            xml = tif.ome_metadata
            series = tif.series[0]
            dtype = series.dtype
            n_pages = len(series.pages)
            last = series.pages[-1] if n_pages else None
            spans = zip(last.dataoffsets, last.databytecounts) if last else ()
            end = max((o + c for o, c in spans), default=0)
    except Exception as exc:  # noqa: BLE001 - any parser failure: a bad file
        raise _bad(f, "cannot read OME-TIFF, the file is truncated or corrupt", exc) from None
    if not xml:
        raise _bad(f, "no readable OME-XML: the file is truncated or not a Squid OME-TIFF")
    if end > f.stat().st_size:
        size = f.stat().st_size
        raise _bad(f, f"truncated OME-TIFF ({size} bytes, its last plane ends at byte {end})")
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise _bad(f, "unparseable OME-XML", exc) from None
    pixels = next((e for e in root.iter() if _local(e.tag) == "Pixels"), None)
    if pixels is None:
        raise _bad(f, "OME-XML without a Pixels element")
    size = {a: int(pixels.get(f"Size{a}", "1")) for a in "TZCYX"}
    order = pixels.get("DimensionOrder", "XYCZT")
    if order.upper() != "XYCZT":  # numpy order TZCYX, as Squid writes
        raise _bad(f, f"OME dimension order {order} (Squid writes XYCZT = TZCYX)")
    shape = tuple(size[a] for a in "TZCYX")
    if n_pages != shape[0] * shape[1] * shape[2]:
        raise _bad(f, f"{n_pages} pages for T*Z*C = {shape[0] * shape[1] * shape[2]} planes, truncated")
    channels = [c.get("Name") or f"Channel {n}" for n, c in
                enumerate(e for e in pixels if _local(e.tag) == "Channel")]
    if len(channels) != shape[2]:
        channels = [f"Channel {n}" for n in range(shape[2])]
    planes = {}
    for p in (e for e in pixels if _local(e.tag) == "Plane"):
        key = (int(p.get("TheT", 0)), int(p.get("TheZ", 0)), int(p.get("TheC", 0)))
        planes[key] = {k: _float(p.get(k)) for k in ("PositionX", "PositionY", "PositionZ")}
    if not planes:
        raise AcquisitionError(
            f"{f}: OME-TIFF stack incomplete (no Plane table: Squid writes it when the stack's "
            "last plane is saved); wait for the acquisition to finish, or remove this FOV"
        )
    return {"shape": shape, "channels": channels, "dtype": dtype,
            "pixel_size_um": _float(pixels.get("PhysicalSizeX")), "planes": planes}


def read_fovs(path: str | Path) -> tuple[list[FOV], dict]:
    """FOVs of an OME_TIFF acquisition (headers only; no pixels are read).

    Returns
    -------
    (list of FOV, dict)
        One FOV per ``(t, region, fov, z)`` (``i`` = FOV index, ``j`` = 0, ``k`` = z) whose
        ``files`` map channel file-name forms to :class:`PlaneRef` ``tzc`` references; and
        ``{"pixel_size_um", "channels"}`` from the OME-XML.

    Raises
    ------
    AcquisitionError
        No ``{region}_{fov}.ome.tiff`` in ``ome_tiff/``, or a bad stack (see
        :func:`read_stack_header`), naming the file.
    """
    path = Path(path)
    folder = path / FOLDER
    files = sorted(p for p in folder.iterdir() if p.is_file() and NAME_RE.match(p.name))
    if not files:
        raise AcquisitionError(
            f"{folder}: no {{region}}_{{fov}}.ome.tiff file; copy the complete acquisition folder"
        )
    coords = {t: _read_coordinates(d / COORDS_FILE) for t, d in timepoint_dirs(path)
              if (d / COORDS_FILE).is_file()}
    fovs: list[FOV] = []
    info: dict = {"pixel_size_um": None, "channels": []}
    for f in files:
        m = NAME_RE.match(f.name)
        region, n_fov = m.group("region"), int(m.group("fov"))
        head = read_stack_header(f)
        nt, nz, nc = head["shape"][:3]
        names = [channel_suffix(c) for c in head["channels"]]
        info["pixel_size_um"] = info["pixel_size_um"] or head["pixel_size_um"]
        info["channels"] += [c for c in names if c not in info["channels"]]
        for t in range(nt):
            for z in range(nz):
                xyz = coords.get(t, {}).get((region, n_fov, 0, z))
                if xyz is None:
                    p = head["planes"].get((t, z, 0), {})
                    xyz = (p.get("PositionX"), p.get("PositionY"), p.get("PositionZ"))
                fovs.append(FOV(t=t, i=n_fov, j=0, k=z, region=region,
                                files={names[c]: PlaneRef(f, "tzc", (t, z, c)) for c in range(nc)},
                                x_mm=xyz[0], y_mm=xyz[1], z_um=xyz[2]))
    fovs.sort(key=lambda v: (v.t, v.region, v.i, v.j, v.k))
    return fovs, info
