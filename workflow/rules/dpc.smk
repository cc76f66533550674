# DPC and quantitative phase, one job per shard of FOVs, written into the sample's OME-Zarr
# (channels dpc, phase). The store itself is created by the ingest rule.

from scopeflow.resources import fov_pixels, stage_mem_mb


rule dpc:
    input:
        fovs=rules.ingest.output.fovs,
        flatfield=rules.ingest.output.flatfield,
    output:
        record=shard_out("dpc.json"),
    params:
        zarr=lambda wc: out(wc.sample, f"{wc.sample}.ome.zarr"),
        phase=config["dpc"]["phase"],
        phase_reg=config["dpc"]["phase_reg"],
        na_illum=config["optics"]["na_illum"],
        fovs_per_job=FOVS_PER_JOB,
    threads: config["dpc"]["threads"]
    resources:
        # peak memory (MB): a base plus bytes per pixel of the largest FOV (scopeflow.resources)
        mem_mb=lambda wc, input: stage_mem_mb("dpc", fov_pixels(input.fovs)),
        runtime=60,  # wall-clock limit (minutes)
    log:
        shard_log("dpc"),
    benchmark:
        shard_bench("dpc")
    conda:
        "../../envs/scopeflow.yaml"
    script:
        "../../scripts/dpc.py"
