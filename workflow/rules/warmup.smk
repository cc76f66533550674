# One-off warm-up: compile (or load) the numba kernels into numba's cache before the first
# segment / measure / locate_beads job needs them, so no timed stage job compiles. Its output
# is an `ancient` input of those rules: rerunning it never reruns them. `scopeflow warmup`
# at install time does the same ahead of any run. It runs first (priority), the smear and bead
# kernels in two processes at once.


rule warmup:
    output:
        f"{RESULTS}/logs/warmup/kernels.json",  # a marker beside the logs, not a results folder
    params:
        # the kernels of the kinds of sample this run has
        kinds=[k for k, s in (("smear", SMEAR_SAMPLES), ("beads", BEAD_SAMPLES)) if s],
    threads: 2  # the kinds compiled at once, one process each (capped at --cores)
    # first of all jobs: on a fresh clone it compiles (~15 CPU-s per kind) while no job needs
    # it yet, instead of holding a core that a 2-thread dpc job waits for
    priority: 100
    log:
        f"{RESULTS}/logs/warmup/warmup.log",
    resources:
        mem_mb=1000,  # peak memory of one job (MB)
        runtime=10,  # wall-clock limit (minutes)
    conda:
        "../../envs/scopeflow.yaml"
    script:
        "../../scripts/warmup.py"
