# One-off warm-up: compile (or load) the numba kernels into numba's cache before the first
# segment / measure / locate_beads job needs them, so no timed stage job compiles. Its output
# is an `ancient` input of those rules: rerunning it never reruns them. `scopeflow warmup`
# at install time does the same ahead of any run.


rule warmup:
    output:
        f"{RESULTS}/logs/warmup/kernels.json",  # a marker beside the logs, not a results folder
    log:
        f"{RESULTS}/logs/warmup/warmup.log",
    resources:
        mem_mb=1000,  # peak memory of one job (MB)
        runtime=10,  # wall-clock limit (minutes)
    conda:
        "../../envs/scopeflow.yaml"
    script:
        "../../scripts/warmup.py"
