# Per-cell measurements with units, per-FOV and per-sample summaries (Parquet + CSV mirrors).


rule measure:
    input:
        zarr=rules.dpc.output.zarr,
        record=rules.segment.output.record,
    output:
        cells=out("{sample}", "cells.parquet"),
        fovs=out("{sample}", "fovs.parquet"),
        sample=out("{sample}", "sample.parquet"),
    params:
        config=config,
    resources:
        mem_mb=4000,  # peak memory of one job (MB)
        runtime=60,  # wall-clock limit (minutes)
    log:
        log_path("measure"),
    benchmark:
        bench_path("measure")
    conda:
        "../../envs/scopeflow.yaml"
    script:
        "../../scripts/measure.py"
