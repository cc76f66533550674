"""Sample discovery when the workflow is built: kinds and FOV counts from file names alone.

Kept light (no scipy, zarr or pandas imports): Snakemake imports it at every start, including
inside each cluster job.
"""

from __future__ import annotations

import re
from pathlib import Path

from scopeflow.errors import InputImageError, ScopeflowError
from scopeflow.io.images import IMAGE_SUFFIXES
from scopeflow.io.ngff_image import is_ngff, list_images

SMEAR_KINDS = ("smear_raw", "smear_dpc")
BEAD_KINDS = ("beads",)
KINDS = SMEAR_KINDS + BEAD_KINDS
#: A folder holding this file is a bead movie (kind ``beads``); its JSON may give
#: ``pixel_size_um`` and ``fps`` (the bead demo writes it, users may add it by hand).
BEADS_MARKER = "scopeflow_beads.json"


def detect_kind(path: str | Path) -> str:
    """Guess a sample's kind from its path.

    A folder holding ``acquisition parameters.json`` is an Octopi acquisition (``smear_raw``);
    a folder holding ``scopeflow_beads.json`` (:data:`BEADS_MARKER`) is a bead movie
    (``beads``); an image file, an OME-Zarr (NGFF 0.4/0.5 image, plate or collection), or a
    folder of these, is precomputed DPC (``smear_dpc``). Frames alone do not tell a movie from a set of DPC fields of view, so a
    bead movie without the marker file needs ``kind: beads`` in a sample sheet.

    Raises
    ------
    ScopeflowError
        If the path is neither.
    """
    p = Path(path)
    if not p.exists():
        raise ScopeflowError(f"{p}: does not exist; fix the sample's path")
    if p.is_dir() and not any(p.iterdir()):
        raise ScopeflowError(
            f"{p}: folder is empty; copy the acquisition into it or remove it from the input folder"
        )
    if p.is_dir() and (p / "acquisition parameters.json").exists():
        return "smear_raw"
    if p.is_dir() and (p / BEADS_MARKER).is_file():
        return "beads"
    if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES:
        return "smear_dpc"
    if is_ngff(p):
        return "smear_dpc"
    if p.is_dir() and any(f.suffix.lower() in IMAGE_SUFFIXES or is_ngff(f) for f in p.iterdir()):
        return "smear_dpc"
    raise ScopeflowError(
        f"{p}: cannot tell the sample kind (no 'acquisition parameters.json' and no images); "
        "add it to a sample sheet with an explicit kind, or remove it from the input folder"
    )


def read_beads_marker(path: str | Path) -> dict:
    """The metadata of a bead movie folder's ``scopeflow_beads.json`` ({} when absent).

    Raises
    ------
    ScopeflowError
        If the file exists but is not a JSON object.
    """
    import json

    p = Path(path)
    marker = p / BEADS_MARKER if p.is_dir() else p.parent / BEADS_MARKER
    if not marker.is_file():
        return {}
    try:
        meta = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ScopeflowError(f"{marker}: not valid JSON ({exc}); fix or delete it") from exc
    if not isinstance(meta, dict):
        raise ScopeflowError(f"{marker}: expected a JSON object with pixel_size_um and fps")
    return meta


def dpc_files(path: Path) -> list[Path]:
    """The DPC inputs of a ``smear_dpc`` sample: image files and OME-Zarr stores."""
    if path.is_file() or is_ngff(path):
        return [path]
    if not path.is_dir():
        raise InputImageError(f"{path}: DPC input does not exist; fix the path in the sample sheet")
    files = sorted(f for f in path.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES or is_ngff(f))
    if not files:
        raise InputImageError(
            f"{path}: no DPC images (.png/.tif/.tiff/.bmp or OME-Zarr) found; point the sample "
            "at a folder of images"
        )
    return files


def in_manifest(f: Path, path: Path, files) -> bool:
    """Whether a DPC input ``f`` of sample ``path`` is in a manifest's file list: an image file
    by its name, an OME-Zarr store (the sample itself, or a store in its folder) by any of its
    files."""
    names = {n[0] for n in files}
    if not f.is_dir():
        return f.name in names
    return f == path or any(n.startswith(f.name + "/") for n in names)


def dpc_fovs(path: Path, found: list[Path] | None = None) -> list[tuple[str, str]]:
    """(FOV name, image path) of every DPC field of view of a ``smear_dpc`` sample.

    ``found``: the inputs to list (default :func:`dpc_files` of ``path``).

    An image file is one FOV named by its stem; an OME-Zarr image is one FOV named by the
    store (without ``.ome.zarr``); each field of an OME-Zarr plate or collection is one FOV
    named ``<store>_<row>_<column>_<field>`` (or ``<store>_<series>``), its path the image group.
    """
    out = []
    for f in (dpc_files(path) if found is None else found):
        if not is_ngff(f):
            out.append((f.stem, str(f)))
            continue
        stem = f.name.removesuffix(".zarr").removesuffix(".ome")
        for sub in list_images(f):
            name = f"{stem}_{sub.replace('/', '_')}" if sub else stem
            out.append((name, str(f / sub) if sub else str(f)))
    if not out:
        raise InputImageError(f"{path}: no DPC images in this OME-Zarr; it holds no NGFF image")
    return out


def manifest_fovs(acq_fovs, base: str | Path, files) -> list:
    """The FOVs of an acquisition that have at least one image in a manifest's file list.

    Parameters
    ----------
    acq_fovs : sequence of scopeflow.io.octopi.FOV
        FOVs as read from disk; an image may be a plane of a container (a
        :class:`~scopeflow.io.squid.planes.PlaneRef`): its file, or for a Zarr array its folder,
        must be listed.
    base : str or Path
        The acquisition folder the manifest's relative names start from.
    files : iterable of (name, size, mtime_ns)
        See :func:`scopeflow.io.readiness.file_manifest`.
    """
    names = {f[0] for f in files}
    folders = {n.rsplit("/", k)[0] for n in names for k in range(1, n.count("/") + 1)}
    base = Path(base)

    def listed(src) -> bool:
        rel = Path(getattr(src, "path", src)).relative_to(base).as_posix()
        return rel in names or rel in folders

    return [fov for fov in acq_fovs if any(listed(p) for p in fov.files.values())]


def count_fovs(kind: str, path: str | Path, files=None, regions=None, zstack="best_focus",
               timepoint: int | None = None) -> int:
    """Number of FOVs of a sample from its file names and headers alone (no pixels read); 1 if
    unreadable.

    Used to plan shards when the workflow is built; the ingest job validates properly. With
    ``files`` (a manifest's file list, see :mod:`scopeflow.io.readiness`), only the FOVs with
    an image in that list count, as the ingest job processes exactly those. ``regions`` and
    ``zstack`` are the sample's region selection and the z-stack choice (one FOV per stack of z
    planes unless ``zstack`` is ``"all"``). ``timepoint``: count only that time point's FOVs.
    """
    from scopeflow.io.squid import read_acquisition

    try:
        if kind == "smear_raw":
            fovs = read_acquisition(path, required_channels=(), regions=regions,
                                    timepoints=None if timepoint is None else [timepoint]).fovs
            if files is not None:
                fovs = manifest_fovs(fovs, path, files)
            if str(zstack) != "all":
                fovs = list({(f.t, f.region, f.i, f.j): f for f in fovs}.values())
            return max(1, len(fovs))
        if kind == "smear_dpc":
            found = dpc_files(Path(path))
            if files is not None:
                found = [f for f in found if in_manifest(f, Path(path), files)]
            return max(1, len(dpc_fovs(Path(path), found))) if found else 1
    except (ScopeflowError, OSError):
        pass
    return 1


_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def valid_sample_name(name: str) -> bool:
    """Whether ``name`` can be a sample name (letters, digits, ``_ . -``; first a letter or digit).

    The same rule as ``workflow/schemas/samples.schema.yaml``: sample names become folder
    names and Snakemake wildcard values, so braces, spaces and slashes are refused.
    """
    return bool(_NAME_RE.match(str(name)))


def safe_sample_name(name: str, taken: set[str] | frozenset[str] = frozenset()) -> str:
    """A valid, unused stand-in for an invalid name (``run{1}`` -> ``run_1``), for the outputs
    and log of a sample whose job only reports that its name is invalid."""
    base = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(name)).strip("._-") or "sample"
    base = f"invalid_{base}"
    out, n = base, 2
    while out in taken:
        out, n = f"{base}_{n}", n + 1
    return out
