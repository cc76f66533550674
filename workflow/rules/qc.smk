# QC figures of a smear sample for `snakemake --report`: kept/rejected cell gallery, FOV
# focus map, QC feature histograms with thresholds. The flags themselves are applied in
# merge_tables (measure.smk), where the whole sample is known.

from scopeflow.resources import fov_pixels, stage_mem_mb


rule qc_report:
    input:
        cells=rules.merge_tables.output.cells,
        fovs=rules.merge_tables.output.fovs,
        qc=rules.merge_tables.output.qc,
    params:
        zarr=lambda wc: out(wc.sample, f"{wc.sample}.ome.zarr"),
        qc=config["qc"],
    output:
        gallery=report(
            out("{sample}", "report/qc_gallery.png"),
            caption="../report/qc_gallery.rst",
            category="QC",
            subcategory="{sample}",
            labels={"sample": "{sample}", "figure": "cell gallery"},
        ),
        focus_map=report(
            out("{sample}", "report/qc_focus_map.png"),
            caption="../report/qc_focus_map.rst",
            category="QC",
            subcategory="{sample}",
            labels={"sample": "{sample}", "figure": "focus map"},
        ),
        histograms=report(
            out("{sample}", "report/qc_histograms.png"),
            caption="../report/qc_histograms.rst",
            category="QC",
            subcategory="{sample}",
            labels={"sample": "{sample}", "figure": "QC histograms"},
        ),
    wildcard_constraints:
        sample=SMEAR_RE,
    # the longest of a sample's report jobs starts first; the shorter ones share the other cores
    priority: 1
    resources:
        # peak memory (MB): one FOV's DPC and labels at a time (scopeflow.resources)
        mem_mb=lambda wc: stage_mem_mb("report", fov_pixels(sample_fovs(wc.sample))),
        runtime=10,  # wall-clock limit (minutes)
    log:
        log_path("qc_report"),
    benchmark:
        bench_path("qc_report")
    conda:
        "../../envs/scopeflow.yaml"
    script:
        "../../scripts/qc_report.py"
