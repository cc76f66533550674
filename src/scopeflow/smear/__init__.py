"""The blood-smear experiment: Octopi/Squid DPC acquisitions to per-cell, per-FOV and
per-sample tables.

Stages on paths (each Snakemake script is one call of these; re-exported here)
-------------------------------------------------------------------------------
stage_ingest
    Validate a sample, list its FOVs (z choice), estimate flatfields: :func:`ingest`,
    :func:`ingest_rows`.
stage_dpc
    The sample's OME-Zarr store, DPC and phase of each FOV into it, completion flag:
    :func:`create_store`, :func:`write_images`, :func:`load_flatfields`, :func:`finish_store`.
stage_segment
    ``labels/cells`` of each FOV (chunked, resumable): :func:`segment_store`.
stage_measure
    Cell and FOV tables of a shard: :func:`measure_store`.
stage_tables
    Shards merged, QC applied, sample summary: :func:`merge_tables`, :func:`sample_provenance`.
fov_table, stage_common
    The FOV list (``fovs.tsv``) every stage reads; read-ahead and atomic records.

Science on arrays
-----------------
flatfield
    Flatfield estimation (coarse, binned) and intensity normalization.
dpc
    DPC from left/right half-LED images and quantitative phase (Tikhonov).
filters
    Compiled float32 image filters (the Laplacian).
cell_kernels
    Per-cell kernels on label images: pixels grouped by id, geometry, intensity sums.
measure
    Per-cell measurements and per-FOV / per-sample summaries; the table columns.
qc
    QC rules: thresholds, focus metrics, z-plane choice, per-cell features, flags, gates.
figures
    Report figures: sample overview, cell gallery, focus map, QC histograms.
"""

from __future__ import annotations

import importlib

#: where each re-exported name lives; a name's module is imported on first use (PEP 562), so a
#: job imports only its own stage (``from scopeflow.smear import segment_store`` does not
#: import the ingest or DPC stages)
_EXPORTS = {
    "read_fov_table": "fov_table", "shard_fovs": "fov_table",
    "create_store": "stage_dpc", "finish_store": "stage_dpc", "load_flatfields": "stage_dpc",
    "write_images": "stage_dpc",
    "ingest": "stage_ingest", "ingest_rows": "stage_ingest", "read_dpc_image": "stage_ingest",
    "measure_store": "stage_measure",
    "segment_store": "stage_segment",
    "merge_tables": "stage_tables", "sample_provenance": "stage_tables",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
