# Chunked segmentation of every FOV's DPC into labels/cells inside the sample's OME-Zarr.
# The JSON record is written last: it marks the labels as complete.


rule segment:
    input:
        zarr=rules.dpc.output.zarr,
    output:
        record=out("{sample}", "segmentation.json"),
    params:
        method=config["segment"]["method"],
        chunk=config["segment"]["chunk"],
        device=config["segment"]["device"],
    threads: config["segment"]["threads"]
    resources:
        mem_mb=8000,  # peak memory of one job (MB)
        runtime=120,  # wall-clock limit (minutes)
    log:
        log_path("segment"),
    benchmark:
        bench_path("segment")
    conda:
        "../../envs/scopeflow.yaml"
    script:
        "../../scripts/segment.py"
