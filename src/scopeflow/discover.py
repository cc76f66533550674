"""Sample discovery when the workflow is built: kinds and FOV counts from file names alone.

Kept light (no scipy, zarr or pandas imports): Snakemake imports it at every start, including
inside each cluster job.
"""

from __future__ import annotations

from pathlib import Path

from scopeflow.errors import InputImageError, ScopeflowError

SMEAR_KINDS = ("smear_raw", "smear_dpc")
BEAD_KINDS = ("beads",)
KINDS = SMEAR_KINDS + BEAD_KINDS
IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".bmp", ".jpg", ".jpeg")
#: A folder holding this file is a bead movie (kind ``beads``); its JSON may give
#: ``pixel_size_um`` and ``fps`` (the bead demo writes it, users may add it by hand).
BEADS_MARKER = "scopeflow_beads.json"


def detect_kind(path: str | Path) -> str:
    """Guess a sample's kind from its path.

    A folder holding ``acquisition parameters.json`` is an Octopi acquisition (``smear_raw``);
    a folder holding ``scopeflow_beads.json`` (:data:`BEADS_MARKER`) is a bead movie
    (``beads``); an image file, or a folder of image files, is precomputed DPC
    (``smear_dpc``). Frames alone do not tell a movie from a set of DPC fields of view, so a
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
    if p.is_dir() and any(f.suffix.lower() in IMAGE_SUFFIXES for f in p.iterdir()):
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
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise InputImageError(f"{path}: DPC input does not exist; fix the path in the sample sheet")
    files = sorted(f for f in path.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InputImageError(
            f"{path}: no DPC images (.png/.tif/.tiff/.bmp) found; point the sample at a folder of images"
        )
    return files


def count_fovs(kind: str, path: str | Path, regions=None, zstack="best_focus") -> int:
    """Number of FOVs of a sample from its file names and headers alone (no pixels read); 1 if
    unreadable.

    Used to plan shards when the workflow is built; the ingest job validates properly.
    ``regions`` and ``zstack`` are the sample's region selection and the z-stack choice
    (one FOV per stack unless ``zstack`` is ``"all"``).
    """
    try:
        if kind == "smear_raw":
            return max(1, count_acquisition_fovs(path, regions, zstack))
        if kind == "smear_dpc":
            return len(dpc_files(Path(path)))
    except ScopeflowError:
        pass
    return 1


def count_acquisition_fovs(path: str | Path, regions=None, zstack="best_focus") -> int:
    """FOVs an Octopi/Squid acquisition gives in any save mode: its (t, region, position)
    stacks, or every plane with ``zstack="all"``."""
    from scopeflow.io.squid import read_acquisition

    acq = read_acquisition(path, required_channels=(), regions=regions)
    if str(zstack) == "all":
        return len(acq.fovs)
    return len({(f.t, f.region, f.i, f.j) for f in acq.fovs})
