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
        mem_mb=lambda wc: stage_mem_mb("segment", fov_pixels(sample_fovs(wc.sample))),
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


# Check that every FOV of the sample's OME-Zarr has its image and labels, then write the
# completion flag <sample>.ome.zarr.done beside the store (never inside it).
rule finish_store:
    input:
        store=lambda wc: sample_store_record(wc.sample),
        records=lambda wc: shard_files(wc.sample, "segmentation.json"),
    output:
        done=out("{sample}", "{sample}.ome.zarr.done"),
    wildcard_constraints:
        sample=SMEAR_RE,  # bead samples: ingest_beads writes the flag (track.smk)
    params:
        zarr=lambda wc: out(wc.sample, f"{wc.sample}.ome.zarr"),
    resources:
        mem_mb=1000,  # peak memory of one job (MB)
        runtime=10,  # wall-clock limit (minutes)
    log:
        log_path("finish_store"),
    conda:
        "../../envs/scopeflow.yaml"
    script:
        "../../scripts/finish_store.py"
