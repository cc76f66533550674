# Per-cell measurements with units per shard, merged into the sample's cell, FOV and sample
# tables (Parquet + CSV mirrors); QC flags, FOV verdicts and the sample gate at merge time.

from scopeflow.resources import fov_pixels, stage_mem_mb
from scopeflow.smear.stage_common import OVERLAP_MAX_PIXELS


def measure_mem_mb(sample, threads):
    """Peak memory (MB) of a measure job: the stage's base plus its bytes per pixel for each
    FOV in flight (``threads`` FOVs at once up to OVERLAP_MAX_PIXELS, larger ones one at a time)."""
    px = fov_pixels(sample_fovs(sample))
    return stage_mem_mb("measure", px * (threads if px <= OVERLAP_MAX_PIXELS else 1))


rule measure:
    input:
        record=rules.segment.output.record,
        kernels=ancient(rules.warmup.output[0]),  # numba kernels compiled before this job
    output:
        cells=shard_out("cells.parquet"),
        fovs=shard_out("fovs.parquet"),
    params:
        zarr=lambda wc: out(wc.sample, f"{wc.sample}.ome.zarr"),
        classifier=config["qc"]["classifier"],  # p_good per cell needs the pixels: computed here
        # the QC metric and those asked for (a list, in a fixed order: params compare equal)
        focus_metrics=list(dict.fromkeys([config["qc"]["focus_metric"], *config["qc"]["extra_focus_metrics"]])),
    threads: config["measure"]["threads"]  # FOVs of the shard measured at once
    resources:
        # peak memory (MB): a base plus bytes per pixel of the largest FOV (scopeflow.resources)
        # for each FOV measured at once
        mem_mb=lambda wc, threads: measure_mem_mb(wc.sample, threads),
        runtime=60,  # wall-clock limit (minutes)
    log:
        shard_log("measure"),
    benchmark:
        shard_bench("measure")
    conda:
        "../../envs/scopeflow.yaml"
    script:
        "../../scripts/measure.py"


rule merge_tables:
    input:
        cells=lambda wc: shard_files(wc.sample, "cells.parquet"),
        fovs=lambda wc: shard_files(wc.sample, "fovs.parquet"),
    output:
        cells=out("{sample}", "cells.parquet"),
        fovs=out("{sample}", "fovs.parquet"),
        sample=out("{sample}", "sample.parquet"),
        qc=out("{sample}", "qc.json"),
    wildcard_constraints:
        sample=SMEAR_RE,  # bead samples have their own sample.parquet rule (track.smk)
    params:
        zarr=lambda wc: out(wc.sample, f"{wc.sample}.ome.zarr"),
        qc=config["qc"],  # thresholds relative to the sample: QC runs on the merged tables
    resources:
        mem_mb=4000,  # peak memory of one job (MB)
        runtime=30,  # wall-clock limit (minutes)
    log:
        log_path("merge_tables"),
    benchmark:
        bench_path("merge_tables")
    conda:
        "../../envs/scopeflow.yaml"
    script:
        "../../scripts/merge_tables.py"


# The merged cell table as AnnData (tables.anndata: true): obs = cells, obsm["spatial"] = µm
# centroids, uns = provenance. The Parquet and CSV stay the primary outputs.
rule cells_anndata:
    input:
        cells=rules.merge_tables.output.cells,
    output:
        h5ad=out("{sample}", "cells.h5ad"),
    wildcard_constraints:
        sample=SMEAR_RE,
    resources:
        mem_mb=2000,  # peak memory of one job (MB)
        runtime=10,  # wall-clock limit (minutes)
    log:
        log_path("cells_anndata"),
    conda:
        "../../envs/scopeflow.yaml"
    script:
        "../../scripts/cells_anndata.py"
