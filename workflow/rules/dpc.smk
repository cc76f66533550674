# DPC and quantitative phase for every FOV, written as the sample's OME-Zarr (channels dpc, phase).


rule dpc:
    input:
        fovs=rules.ingest.output.fovs,
        flatfield=rules.ingest.output.flatfield,
    output:
        zarr=directory(out("{sample}", "{sample}.ome.zarr")),
    params:
        dpc=config["dpc"],
        na_illum=config["optics"]["na_illum"],
        chunk=config["segment"]["chunk"],
        config=config,
    resources:
        mem_mb=8000,  # peak memory of one job (MB)
        runtime=60,  # wall-clock limit (minutes)
    log:
        log_path("dpc"),
    benchmark:
        bench_path("dpc")
    conda:
        "../../envs/scopeflow.yaml"
    script:
        "../../scripts/dpc.py"
