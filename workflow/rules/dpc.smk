# DPC and quantitative phase, one job per shard of FOVs (the shards of each time point follow
# those of the previous one), written into the sample's OME-Zarr (channels dpc, phase). The
# store itself is created by the ingest rule.

from scopeflow.resources import fov_pixels, stage_mem_mb


rule dpc:
    input:
        # the shard's time point: its FOV list, flatfields and store (one ingest job's outputs)
        fovs=lambda wc: ingest_out(wc.sample, shard_unit(wc)[0], "fovs.tsv"),
        flatfield=lambda wc: ingest_out(wc.sample, shard_unit(wc)[0], "flatfield.npz"),
        store=lambda wc: ingest_out(wc.sample, shard_unit(wc)[0], "store.json"),
    output:
        record=shard_out("dpc.json"),
    params:
        zarr=lambda wc: out(wc.sample, f"{wc.sample}.ome.zarr"),
        phase=config["dpc"]["phase"],
        phase_reg=config["dpc"]["phase_reg"],
        na_illum=config["optics"]["na_illum"],
        fovs_per_job=FOVS_PER_JOB,
        # (time point, shard within it): FOVs chunk*fovs_per_job... of that time point
        timepoint=lambda wc: None if shard_unit(wc)[0] == "all" else int(shard_unit(wc)[0]),
        chunk=lambda wc: shard_unit(wc)[1],
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
