"""Octopi / Squid acquisitions in every save mode, read into one FOV model.

Squid (Cephla-Lab/Squid, ``FileSavingOption`` in ``software/control/_def.py``) saves an
acquisition in one of four modes; which one is not recorded in the metadata, so it is told from
the folder's layout (:func:`detect_save_mode`):

================== ============================================================ ====================
mode               layout                                                       module
================== ============================================================ ====================
INDIVIDUAL_IMAGES  ``{t}/{region}_{fov}_{z}_{channel}.tiff|bmp`` (and the legacy  :mod:`~scopeflow.io.octopi`
                   Octopi ``{t}/[{region}_]{i}_{j}_{k}_{channel}.bmp``)
MULTI_PAGE_TIFF    ``{t}/{region}_{fov}_stack.tiff``                            :mod:`.multipage`
OME_TIFF           ``ome_tiff/{region}_{fov}.ome.tiff`` (TZCYX)                 :mod:`.ome_tiff`
ZARR_V3            ``plate.ome.zarr/{row}/{col}/{fov}/0`` or                    :mod:`.zarr_v3`
                   ``zarr/{region}/fov_{n}.ome.zarr/0`` (TCZYX)
================== ============================================================ ====================

Every mode gives an :class:`~scopeflow.io.octopi.Acquisition` whose FOVs are ``(t, region,
fov, z)`` planes (``i`` = FOV index or grid row, ``j`` = 0 or grid column, ``k`` = z) with the
channels' images as files or :class:`~scopeflow.io.squid.planes.PlaneRef` plane references;
:func:`~scopeflow.io.squid.planes.read_source` reads either.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from scopeflow.io.octopi import (
    CONFIG_FILE,
    DEFAULT_WAVELENGTH_UM,
    IMAGE_EXTENSIONS,
    LEFT,
    RIGHT,
    Acquisition,
    AcquisitionError,
    _parse_image_name,
    _read_modes,
    _selected_channels,
    load_params,
    na_from_params,
    pixel_size_from_params,
)
from scopeflow.io.octopi import read_acquisition as _read_individual
from scopeflow.io.squid.meta import metadata_bit_depth, objective_name, timepoint_dirs
from scopeflow.io.squid.planes import PlaneRef, read_source

__all__ = [
    "SAVE_MODES",
    "PlaneRef",
    "detect_save_mode",
    "read_acquisition",
    "read_source",
    "select_regions",
]

SAVE_MODES = ("INDIVIDUAL_IMAGES", "MULTI_PAGE_TIFF", "OME_TIFF", "ZARR_V3")


def detect_save_mode(path: str | Path) -> str:
    """Which Squid save mode wrote an acquisition folder, from its layout alone.

    Parameters
    ----------
    path : str or Path
        The acquisition folder (holding ``acquisition parameters.json``).

    Returns
    -------
    str
        One of :data:`SAVE_MODES`. The legacy Octopi layout is ``INDIVIDUAL_IMAGES``.

    Raises
    ------
    AcquisitionError
        The folder matches no save mode (one line naming the folder and what it holds).
    """
    from scopeflow.io.squid import multipage, ome_tiff, zarr_v3

    path = Path(path)
    if not path.is_dir():
        raise AcquisitionError(
            f"{path}: acquisition folder does not exist or is a file; point the sample at the "
            "folder that holds 'acquisition parameters.json'"
        )
    if zarr_v3.is_zarr(path):
        return "ZARR_V3"
    if (path / ome_tiff.FOLDER).is_dir():
        return "OME_TIFF"
    if multipage.is_multipage(path):
        return "MULTI_PAGE_TIFF"
    tdirs = timepoint_dirs(path)
    other = []
    for _, tdir in tdirs:
        for p in sorted(tdir.iterdir()):
            if p.suffix.lower() in IMAGE_EXTENSIONS and _parse_image_name(p.stem) is not None:
                return "INDIVIDUAL_IMAGES"
            if p.is_file() and p.name not in ("coordinates.csv", "done", ".done"):
                other.append(p)
    layouts = ("{t}/{region}_{fov}_{z}_{channel}.tiff|bmp, {t}/{region}_{fov}_stack.tiff, "
               "ome_tiff/{region}_{fov}.ome.tiff or a plate.ome.zarr|zarr/ store")
    if other:
        where, what = other[0], f"this file is none of {layouts}"
    else:
        where, what = path, f"the folder holds none of {layouts}"
    raise AcquisitionError(
        f"{where}: unknown Squid save mode: {what}; save the acquisition with INDIVIDUAL_IMAGES, "
        "MULTI_PAGE_TIFF, OME_TIFF or ZARR_V3"
    )


def select_regions(acq: Acquisition, regions: Sequence[str] | None) -> Acquisition:
    """Keep only the FOVs of ``regions`` (all when None or empty).

    Raises
    ------
    AcquisitionError
        A requested region is not in the acquisition (naming it and the regions there).
    """
    if not regions:
        return acq
    wanted = [str(r).strip() for r in regions if str(r).strip()]
    have = sorted({f.region for f in acq.fovs})
    missing = [r for r in wanted if r not in have]
    if missing:
        raise AcquisitionError(
            f"{acq.path}: region(s) {', '.join(missing)} not in this acquisition (it has "
            f"{', '.join(repr(h) for h in have)}); fix the sample sheet's regions column"
        )
    acq.fovs = [f for f in acq.fovs if f.region in set(wanted)]
    return acq


def _check_channels(acq: Acquisition, required: Sequence[str]) -> None:
    for fov in acq.fovs:
        missing = [c for c in required if c not in fov.files]
        if missing:
            ref = next(iter(fov.files.values()), acq.path)
            raise AcquisitionError(
                f"{getattr(ref, 'path', ref)}: no {missing[0]} image for FOV {fov.region}_{fov.i} "
                f"z={fov.k} t={fov.t}; acquire with the {' and '.join(required)} channels "
                f"(found: {', '.join(sorted(fov.files)) or 'none'})"
            )


def read_acquisition(
    path: str | Path,
    pixel_size_um: float | None = None,
    required_channels: Sequence[str] = (LEFT, RIGHT),
    *,
    wavelength_um: float = DEFAULT_WAVELENGTH_UM,
    na: float | None = None,
    regions: Sequence[str] | None = None,
    timepoints: Sequence[int] | None = None,
) -> Acquisition:
    """Parse an Octopi/Squid acquisition folder in any save mode (metadata only; no pixels).

    Parameters
    ----------
    path : str or Path
        The acquisition folder (holding ``acquisition parameters.json``).
    pixel_size_um : float, optional
        Pixel size at the sample (µm); overrides the metadata.
    required_channels : sequence of str
        Channel file-name forms every FOV must have (default: the DPC halves).
    wavelength_um : float
        Illumination wavelength (µm; not recorded by Squid).
    na : float, optional
        Objective NA; overrides the metadata.
    regions : sequence of str, optional
        Keep only these regions (wells / named regions); default all.
    timepoints : sequence of int, optional
        Keep only these time points; default all. The multi-page TIFF stacks of the other
        time points are not opened (a time point still being written does not matter).

    Returns
    -------
    Acquisition
        With ``save_mode``, ``bit_depth`` (camera pixel format from the metadata, or None) and
        ``objective`` (its name from the metadata, "" when unknown) set. The pixel size comes from ``acquisition parameters.json`` (objective, sensor pixel,
        tube lens), else from the container's metadata (OME ``PhysicalSizeX``, Zarr
        ``_squid.pixel_size_um``).

    Raises
    ------
    AcquisitionError
        Unknown save mode, unreadable or incomplete container, missing channel or region:
        one line naming the file.
    """
    path = Path(path)
    mode = detect_save_mode(path)
    if mode == "INDIVIDUAL_IMAGES":
        # without a region selection the legacy reader names the missing file itself
        acq = _read_individual(path, pixel_size_um, () if regions or timepoints is not None else required_channels,
                               wavelength_um=wavelength_um, na=na)
        meta_ps = None
    else:
        from scopeflow.io.squid import multipage, ome_tiff, zarr_v3

        params = load_params(path)
        modes = _read_modes(path / CONFIG_FILE) if (path / CONFIG_FILE).is_file() else []
        if mode == "MULTI_PAGE_TIFF":
            fovs, info = multipage.read_fovs(path, timepoints), {"pixel_size_um": None, "channels": []}
        elif mode == "OME_TIFF":
            fovs, info = ome_tiff.read_fovs(path)
        else:
            fovs, info = zarr_v3.read_fovs(path)
        present = {c for f in fovs for c in f.files}
        order = [c for c in _selected_channels(modes) + info["channels"] if c in present]
        channels = list(dict.fromkeys(order)) + sorted(present - set(order))
        meta_ps = info["pixel_size_um"]
        ps = pixel_size_um if pixel_size_um is not None else pixel_size_from_params(params)
        na_used = na if na is not None else na_from_params(params)
        acq = Acquisition(
            path=path, params=params,
            pixel_size_um=None if ps is None else float(ps),
            na=None if na_used is None else float(na_used),
            wavelength_um=float(wavelength_um), channels=channels, fovs=fovs, modes=modes,
        )
    if acq.pixel_size_um is None and meta_ps:
        acq.pixel_size_um = float(meta_ps)
    acq.save_mode = mode
    acq.bit_depth = metadata_bit_depth(path, acq.modes, channels=(LEFT, RIGHT))
    acq.objective = objective_name(path, acq.params)
    select_regions(acq, regions)
    if timepoints is not None:
        acq.fovs = [f for f in acq.fovs if f.t in set(timepoints)]
    if not acq.fovs:
        raise AcquisitionError(
            f"{path}: no FOV in this acquisition; copy the complete acquisition folder"
        )
    _check_channels(acq, required_channels)
    return acq
