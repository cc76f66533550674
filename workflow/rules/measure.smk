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
    log:
        log_path("measure"),
    benchmark:
        bench_path("measure")
    conda:
        "../../envs/scopeflow.yaml"
    script:
        "../../scripts/measure.py"
