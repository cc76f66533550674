# Malaria parasitemia of smear samples: spot candidates in the 405 nm fluorescence channel
# (written into the sample's OME-Zarr at the dpc step), the shipped parasite CNN, and parasites
# per uL over the QC-passing red cells with exact intervals. Samples without the channel get a
# parasitemia table that says "skipped: ..." and nothing else changes.


rule parasites:
    input:
        cells=rules.merge_tables.output.cells,
        fovs=lambda wc: sample_fovs(wc.sample),  # every time point's FOVs
    output:
        spots=out("{sample}", "spots.parquet"),
        fovs=out("{sample}", "parasitemia_fovs.parquet"),
        sample=out("{sample}", "parasitemia.parquet"),
        gallery=out("{sample}", "parasites/gallery.npz"),
    wildcard_constraints:
        sample=SMEAR_RE,
    params:
        zarr=lambda wc: out(wc.sample, f"{wc.sample}.ome.zarr"),
        parasites=config["parasites"],
    resources:
        mem_mb=4000,  # peak memory of one job (MB)
        runtime=60,  # wall-clock limit (minutes)
    log:
        log_path("parasites"),
    benchmark:
        bench_path("parasites")
    conda:
        "../../envs/scopeflow.yaml"
    script:
        "../../scripts/parasites.py"


rule parasite_report:
    input:
        sample=rules.parasites.output.sample,
        fovs=rules.parasites.output.fovs,
        gallery=rules.parasites.output.gallery,
    output:
        report(
            out("{sample}", "report/parasites.png"),
            caption="../report/parasites.rst",
            category="Parasitemia",
            subcategory="{sample}",
            labels={"sample": "{sample}", "figure": "parasites"},
        ),
    wildcard_constraints:
        sample=SMEAR_RE,
    resources:
        mem_mb=2000,  # peak memory of one job (MB)
        runtime=10,  # wall-clock limit (minutes)
    log:
        log_path("parasite_report"),
    conda:
        "../../envs/scopeflow.yaml"
    script:
        "../../scripts/parasite_report.py"


rule summarize_parasitemia:
    input:
        expand(out("{sample}", "parasitemia.parquet"), sample=TARGET_SMEAR),
    output:
        parquet=f"{RESULTS}/parasitemia.parquet",
        csv=report(
            f"{RESULTS}/parasitemia.csv",
            caption="../report/parasitemia.rst",
            category="Summary",
            labels={"table": "parasitemia"},
        ),
    resources:
        mem_mb=1000,  # peak memory of one job (MB)
        runtime=10,  # wall-clock limit (minutes)
    log:
        f"{RESULTS}/logs/summarize_parasitemia.log",
    conda:
        "../../envs/scopeflow.yaml"
    script:
        "../../scripts/summarize_samples.py"
