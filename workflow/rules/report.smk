# Figures for `snakemake --report` and the table of all samples.

from scopeflow.resources import fov_pixels, stage_mem_mb


rule sample_overview:
    input:
        cells=rules.merge_tables.output.cells,
        fovs=rules.merge_tables.output.fovs,
    params:
        zarr=lambda wc: out(wc.sample, f"{wc.sample}.ome.zarr"),
    output:
        report(
            out("{sample}", "report/overview.png"),
            caption="../report/overview.rst",
            category="Samples",
            subcategory="{sample}",
            labels={"sample": "{sample}", "figure": "overview"},
        ),
    resources:
        # peak memory (MB): one FOV's DPC and labels at a time (scopeflow.resources)
        mem_mb=lambda wc: stage_mem_mb("report", fov_pixels(sample_fovs(wc.sample))),
        runtime=10,  # wall-clock limit (minutes)
    log:
        log_path("sample_overview"),
    benchmark:
        bench_path("sample_overview")
    conda:
        "../../envs/scopeflow.yaml"
    script:
        "../../scripts/sample_overview.py"


rule summarize_samples:
    input:
        expand(out("{sample}", "sample.parquet"), sample=TARGET_SMEAR),
    output:
        parquet=f"{RESULTS}/samples.parquet",
        csv=report(
            f"{RESULTS}/samples.csv",
            caption="../report/samples.rst",
            category="Summary",
            labels={"table": "samples"},
        ),
    resources:
        mem_mb=1000,  # peak memory of one job (MB)
        runtime=10,  # wall-clock limit (minutes)
    log:
        f"{RESULTS}/logs/summarize_samples.log",
    conda:
        "../../envs/scopeflow.yaml"
    script:
        "../../scripts/summarize_samples.py"
