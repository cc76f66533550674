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

from scopeflow.smear.fov_table import read_fov_table, shard_fovs
from scopeflow.smear.stage_dpc import create_store, finish_store, load_flatfields, write_images
from scopeflow.smear.stage_ingest import ingest, ingest_rows, read_dpc_image
from scopeflow.smear.stage_measure import measure_store
from scopeflow.smear.stage_segment import segment_store
from scopeflow.smear.stage_tables import merge_tables, sample_provenance

__all__ = ["create_store", "finish_store", "ingest", "ingest_rows", "load_flatfields",
           "measure_store", "merge_tables", "read_dpc_image", "read_fov_table",
           "sample_provenance", "segment_store", "shard_fovs", "write_images"]
