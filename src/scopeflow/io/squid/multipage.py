"""Squid's MULTI_PAGE_TIFF save mode.

Facts (Cephla-Lab/Squid ``control/core/job_processing.py``, ``SaveImageJob.save_image``): each
time point folder ``{exp}/{t}/`` holds one file per FOV, ``{region}_{fov}_stack.tiff``
(``fov`` zero-padded to ``FILE_ID_PADDING``, 0 by default), to which every image of the FOV is
appended as one page, z level by z level, channel by channel. Each page's ImageDescription is a
JSON object ``{"z_level", "channel", "channel_index", "region_id", "fov", "x_mm", "y_mm",
"z_mm", "time"[, "z_piezo (um)"]}`` and its PageName tag (285) the channel name. The time
point folder also holds ``coordinates.csv`` and, once complete, a done file.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from scopeflow.io.octopi import COORDS_FILE, FOV, AcquisitionError, _read_coordinates
from scopeflow.io.squid.meta import channel_suffix, timepoint_dirs
from scopeflow.io.squid.planes import PlaneRef, quiet_tifffile

__all__ = ["STACK_RE", "is_multipage", "read_fovs"]

#: ``{region}_{fov}_stack.tif[f]``
STACK_RE = re.compile(r"^(?P<region>.+)_(?P<fov>\d+)_stack\.tiff?$", re.IGNORECASE)


def _stack_files(tdir: Path) -> list[Path]:
    return sorted(p for p in tdir.iterdir() if p.is_file() and STACK_RE.match(p.name))


def is_multipage(path: Path) -> bool:
    """Whether any time-point folder holds a ``{region}_{fov}_stack.tiff``."""
    return any(_stack_files(tdir) for _, tdir in timepoint_dirs(path))


def _page_meta(tif, n: int, path: Path) -> dict:
    page = tif.pages[n]
    try:
        meta = json.loads(page.description)
    except (TypeError, ValueError):
        meta = None
    if not isinstance(meta, dict) or "channel" not in meta or "z_level" not in meta:
        name = page.tags.get(285)
        raise AcquisitionError(
            f"{path}: page {n} has no Squid JSON description with 'channel' and 'z_level'"
            f"{f' (PageName {name.value!r})' if name is not None else ''}; this is not a Squid "
            "multi-page TIFF, re-export the acquisition with Squid"
        )
    return meta


def read_fovs(path: str | Path, timepoints=None) -> list[FOV]:
    """FOVs of a MULTI_PAGE_TIFF acquisition (file index only; no pixels are read), of the
    time points ``timepoints`` only when given.

    Returns
    -------
    list of FOV
        One per ``(t, region, fov, z)``; ``i`` = FOV index, ``j`` = 0, ``k`` = z level;
        ``files`` maps the channel's file-name form to a :class:`PlaneRef` of kind ``page``.
        Stage positions from ``{t}/coordinates.csv`` (else from the pages' JSON).

    Raises
    ------
    AcquisitionError
        A stack file is unreadable or a page lacks the Squid description (naming the file).
    """
    import tifffile

    fovs: dict[tuple, FOV] = {}
    for t, tdir in timepoint_dirs(Path(path)):
        if timepoints is not None and t not in set(timepoints):
            continue
        coords = _read_coordinates(tdir / COORDS_FILE) if (tdir / COORDS_FILE).is_file() else {}
        for f in _stack_files(tdir):
            m = STACK_RE.match(f.name)
            region, n_fov = m.group("region"), int(m.group("fov"))
            try:
                with quiet_tifffile(), tifffile.TiffFile(f) as tif:
                    metas = [_page_meta(tif, n, f) for n in range(len(tif.pages))]
            except AcquisitionError:
                raise
            except Exception as exc:  # noqa: BLE001 - any parser failure: a bad file
                raise AcquisitionError(
                    f"{f}: cannot read multi-page TIFF ({type(exc).__name__}: "
                    f"{str(exc).splitlines()[0] if str(exc) else 'corrupt'}); the file is "
                    "truncated or corrupt, re-copy it from the microscope"
                ) from None
            for n, meta in enumerate(metas):
                k = int(meta["z_level"])
                key = (t, region, n_fov, 0, k)
                fov = fovs.get(key)
                if fov is None:
                    xyz = coords.get((region, n_fov, 0, k)) or coords.get(("", n_fov, 0, k))
                    if xyz is None:
                        z_mm = meta.get("z_mm")
                        xyz = (meta.get("x_mm"), meta.get("y_mm"),
                               None if z_mm is None else float(z_mm) * 1000.0)
                    fov = fovs[key] = FOV(t=t, i=n_fov, j=0, k=k, files={}, region=region,
                                          x_mm=xyz[0], y_mm=xyz[1], z_um=xyz[2])
                fov.files[channel_suffix(meta["channel"])] = PlaneRef(f, "page", (n,))
    return [fovs[k] for k in sorted(fovs)]
