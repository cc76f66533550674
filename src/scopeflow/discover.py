"""Sample discovery when the workflow is built: kinds and FOV counts from file names alone.

Kept light (no scipy, zarr or pandas imports): Snakemake imports it at every start, including
inside each cluster job.
"""

from __future__ import annotations

from pathlib import Path

from scopeflow.errors import InputImageError, ScopeflowError

KINDS = ("smear_raw", "smear_dpc")
IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".bmp", ".jpg", ".jpeg")


def detect_kind(path: str | Path) -> str:
    """Guess a sample's kind from its path.

    A folder holding ``acquisition parameters.json`` is an Octopi acquisition (``smear_raw``);
    an image file, or a folder of image files, is precomputed DPC (``smear_dpc``).

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
    if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES:
        return "smear_dpc"
    if p.is_dir() and any(f.suffix.lower() in IMAGE_SUFFIXES for f in p.iterdir()):
        return "smear_dpc"
    raise ScopeflowError(
        f"{p}: cannot tell the sample kind (no 'acquisition parameters.json' and no images); "
        "add it to a sample sheet with an explicit kind, or remove it from the input folder"
    )


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


def count_fovs(kind: str, path: str | Path) -> int:
    """Number of FOVs of a sample from its file names alone (no pixels read); 1 if unreadable.

    Used to plan shards when the workflow is built; the ingest job validates properly.
    """
    from scopeflow.io.octopi import read_acquisition

    try:
        if kind == "smear_raw":
            return max(1, len(read_acquisition(path, required_channels=()).fovs))
        if kind == "smear_dpc":
            return len(dpc_files(Path(path)))
    except ScopeflowError:
        pass
    return 1
