# Chunked segmentation of each shard's FOVs into labels/cells inside the sample's OME-Zarr.
# The JSON record is written last: it marks the shard's labels as complete.

from scopeflow.resources import fov_pixels, stage_mem_mb


rule segment:
    input:
        record=rules.dpc.output.record,
        kernels=ancient(rules.warmup.output[0]),  # numba kernels compiled before this job
    output:
        record=shard_out("segmentation.json"),
    params:
        zarr=lambda wc: out(wc.sample, f"{wc.sample}.ome.zarr"),
        method=config["segment"]["method"],
        chunk=config["segment"]["chunk"],
        device=config["segment"]["device"],
        backend=config["segment"]["backend"],
        precision=config["segment"]["precision"],
    threads: config["segment"]["threads"]
    resources:
        # peak memory (MB): a base plus bytes per pixel of the largest FOV (scopeflow.resources)
        mem_mb=lambda wc: stage_mem_mb("segment", fov_pixels(out(wc.sample, "ingest/fovs.tsv"))),
        runtime=120,  # wall-clock limit (minutes)
        gpu=1 if config["segment"]["device"] == "cuda" else 0,  # SLURM: --gpus for the U-Net
    log:
        shard_log("segment"),
    benchmark:
        shard_bench("segment")
    conda:
        "../../envs/scopeflow.yaml"
    script:
        "../../scripts/segment.py"
