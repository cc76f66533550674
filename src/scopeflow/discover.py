"""Sample discovery when the workflow is built: kinds and FOV counts from file names alone.

Kept light (no scipy, zarr or pandas imports): Snakemake imports it at every start, including
inside each cluster job.
"""

from __future__ import annotations

from pathlib import Path

from scopeflow.errors import InputImageError, ScopeflowError
from scopeflow.io.ngff_image import is_ngff, list_images

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


def dpc_fovs(path: Path) -> list[tuple[str, str]]:
    """(FOV name, image path) of every DPC field of view of a ``smear_dpc`` sample.

    An image file is one FOV named by its stem; an OME-Zarr image is one FOV named by the
    store (without ``.ome.zarr``); each field of an OME-Zarr plate or collection is one FOV
    named ``<store>_<row>_<column>_<field>`` (or ``<store>_<series>``), its path the image group.
    """
    out = []
    for f in dpc_files(path):
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


def count_fovs(kind: str, path: str | Path) -> int:
    """Number of FOVs of a sample from its file names alone (no pixels read); 1 if unreadable.

    Used to plan shards when the workflow is built; the ingest job validates properly.
    """
    from scopeflow.io.octopi import read_acquisition

    try:
        if kind == "smear_raw":
            return max(1, len(read_acquisition(path, required_channels=()).fovs))
        if kind == "smear_dpc":
            return len(dpc_fovs(Path(path)))
    except ScopeflowError:
        pass
    return 1
