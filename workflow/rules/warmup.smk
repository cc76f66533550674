# One-off warm-up: compile (or load) the numba kernels into numba's cache before the first
# job that needs them, so no timed stage job compiles. One job per kind of kernel (smear:
# segment and measure; beads: locate_beads), each an `ancient` input of the rules that use
# its kernels: rerunning it never reruns them, and a run without bead samples never compiles
# the bead kernels. On a fresh clone each compiles for ~15 s of one core beside the first
# jobs that need no kernel (demo, ingest, dpc); later runs only load the cache (~1 s).
# `scopeflow warmup` at install time does the same ahead of any run.


rule warmup:
    output:
        f"{RESULTS}/logs/warmup/kernels.json",  # a marker beside the logs, not a results folder
    params:
        kinds=["smear"],
    # started with the first jobs: the smear kernels are ready before the first segment job
    priority: 50
    log:
        f"{RESULTS}/logs/warmup/warmup.log",
    resources:
        mem_mb=1000,  # peak memory of one job (MB)
        runtime=10,  # wall-clock limit (minutes)
    conda:
        "../../envs/scopeflow.yaml"
    script:
        "../../scripts/warmup.py"


rule warmup_beads:
    output:
        f"{RESULTS}/logs/warmup/beads.json",
    params:
        kinds=["beads"],
    log:
        f"{RESULTS}/logs/warmup/warmup_beads.log",
    resources:
        mem_mb=1000,  # peak memory of one job (MB)
        runtime=10,  # wall-clock limit (minutes)
    conda:
        "../../envs/scopeflow.yaml"
    script:
        "../../scripts/warmup.py"
