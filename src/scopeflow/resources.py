"""Memory a workflow job needs, from the size of the FOVs it handles (the rules' ``mem_mb``).

Every smear stage holds a bounded number of FOV-sized arrays at a time (one FOV is
processed, at most the next one read and the previous one written while it is small), so
its peak memory is a fixed base (interpreter, libraries, the model) plus a number of bytes
per pixel of its largest FOV. The budgets below are the peaks measured by
``benchmarks/memory.py`` (1024², 4096² and 12000² FOVs) with a margin; the rules ask
SLURM for :func:`stage_mem_mb` of their input instead of one size for every slide.
"""

from __future__ import annotations

import csv
from pathlib import Path

__all__ = ["MEMORY_BUDGET", "fov_pixels", "stage_mem_mb"]

#: stage -> (base MB, bytes per pixel of the largest FOV)
MEMORY_BUDGET: dict[str, tuple[int, float]] = {
    # the planes as stored (a uint8 pair: 2 B/px; uint16 and a z-stack's best plane so far
    # double it) and the reader's copy, binned; 12000² uint8: 712 MB (5.2 B/px)
    "ingest": (600, 12.0),
    # DPC (4 B/px), the phase solve's half spectrum (9) and cached filter (4.5), the phase (4);
    # 12000²: 3259 MB (23.7 B/px with the base)
    "dpc": (700, 24.0),
    # the largest forward window (a FOV up to tile + 2 context = 2400² is one pass: ~1.6 GB in
    # ONNX Runtime) + the FOV arrays; 2400²: 2545 MB one FOV at a time, 2640 MB with the next
    # FOV's network beside the decode; 4096²: 2411 MB; 12000²: 4307 MB (31.4 B/px)
    "segment": (2500, 40.0),
    "measure": (700, 40.0),  # 12000²: 4673 MB (34.0 B/px); 4096²: 769 MB
    "report": (1200, 16.0),  # sample_overview, qc_report: one FOV's DPC and labels
}

#: FOV size assumed when it cannot be known yet (a dry run before ingest): 3000²
DEFAULT_FOV_PIXELS = 3000 * 3000


def stage_mem_mb(stage: str, pixels: int) -> int:
    """``mem_mb`` of a job of ``stage`` whose largest FOV has ``pixels`` pixels."""
    base, per_px = MEMORY_BUDGET[stage]
    return int(base + per_px * max(int(pixels), 0) / 2**20 + 0.999)


def _image_pixels(path: Path) -> int | None:
    """Pixels of an image file from its header only (None when it cannot be read)."""
    try:
        from PIL import Image

        with Image.open(path) as im:
            w, h = im.size
        return int(w) * int(h)
    except Exception:  # noqa: BLE001 - any unreadable file: the ingest job reports it
        return None


def fov_pixels(source: str | Path) -> int:
    """Pixels of the largest FOV of an ingest's ``fovs.tsv``, or of the first image of a
    sample's input (folder or file, read from its header); :data:`DEFAULT_FOV_PIXELS` when
    neither can be read yet."""
    path = Path(source)
    if path.is_file() and path.suffix == ".tsv":
        with open(path, newline="") as fh:
            sizes = [int(float(r["height"])) * int(float(r["width"]))
                     for r in csv.DictReader(fh, delimiter="\t") if r.get("height") and r.get("width")]
        return max(sizes) if sizes else DEFAULT_FOV_PIXELS
    if path.is_file():
        return _image_pixels(path) or DEFAULT_FOV_PIXELS
    if path.is_dir():
        for pattern in ("*.bmp", "*/*.bmp", "*.tif*", "*/*.tif*", "*.png", "*/*.png", "*.jp*g", "*/*.jp*g"):
            for f in sorted(path.glob(pattern))[:1]:
                px = _image_pixels(f)
                if px:
                    return px
    return DEFAULT_FOV_PIXELS
