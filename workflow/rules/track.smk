# Bead tracking (samples of kind beads): make the demo movie when missing; copy a movie's frames
# into an OME-Zarr (t, y, x); localise the beads; link them into tracks and measure MSD and
# diffusion; the report figure and the table of all bead samples.


rule demo_beads:
    output:
        directory(f"{os.path.normpath(DEMO['dir'])}/{DEMO_BEADS}"),
        manifest=manifest_path(DEMO_BEADS),  # what planning writes for an existing folder
    params:
        record=lambda wc: manifest_record(DEMO_BEADS, files=[]),
        frames=DEMO["beads"]["frames"],
        size=DEMO["beads"]["size"],
        n_beads=DEMO["beads"]["n_beads"],
        D_um2_s=DEMO["beads"]["D_um2_s"],
        pixel_size_um=DEMO["beads"]["pixel_size_um"],
        fps=DEMO["beads"]["fps"],
        seed=DEMO["seed"],
    resources:
        mem_mb=1000,  # peak memory of one job (MB)
        runtime=10,  # wall-clock limit (minutes)
    log:
        f"{RESULTS}/logs/demo_beads/{DEMO_BEADS}.log",
    conda:
        "../../envs/scopeflow.yaml"
    script:
        "../../scripts/demo_beads.py"


rule ingest_beads:
    input:
        manifest=sample_input,
    output:
        # the store is written under a temporary name and renamed into place, then this flag
        # beside it (a directory() output would get a .snakemake_timestamp inside the store)
        done=out("{sample}", "{sample}.ome.zarr.done"),
    wildcard_constraints:
        sample=BEAD_RE,
    params:
        zarr=lambda wc: out(wc.sample, f"{wc.sample}.ome.zarr"),
        # sheet values (None when empty), then scopeflow_beads.json, then the config fallbacks
        pixel_size_um=lambda wc: sample_value(wc, "pixel_size_um"),
        fps=lambda wc: sample_value(wc, "fps"),
        default_pixel_size_um=config["track"]["pixel_size_um"],
        default_fps=config["track"]["fps"],
    resources:
        mem_mb=2000,  # peak memory of one job (MB): one frame at a time
        runtime=30,  # wall-clock limit (minutes)
    log:
        log_path("ingest_beads"),
    benchmark:
        bench_path("ingest_beads")
    conda:
        "../../envs/scopeflow.yaml"
    script:
        "../../scripts/ingest_beads.py"


rule locate_beads:
    input:
        done=rules.ingest_beads.output.done,
        kernels=ancient(rules.warmup_beads.output[0]),  # numba kernels compiled before this job
    output:
        locs=out("{sample}", "localizations.parquet"),
    wildcard_constraints:
        sample=BEAD_RE,
    params:
        zarr=lambda wc: out(wc.sample, f"{wc.sample}.ome.zarr"),
        model=config["track"]["model"],
        profile=config["track"]["profile"],
        diameter_px=config["track"]["diameter_px"],
        minmass=config["track"]["minmass"],
        sigma_px=config["track"]["sigma_px"],
        snr_threshold=config["track"]["snr_threshold"],
        prob_threshold=config["track"]["prob_threshold"],
        min_snr=config["track"]["min_snr"],
    threads: config["track"]["threads"]
    resources:
        mem_mb=4000,  # peak memory of one job (MB): blocks of 256 frames
        runtime=120,  # wall-clock limit (minutes)
    log:
        log_path("locate_beads"),
    benchmark:
        bench_path("locate_beads")
    conda:
        "../../envs/scopeflow.yaml"
    script:
        "../../scripts/locate_beads.py"


rule track_beads:
    input:
        locs=rules.locate_beads.output.locs,
    output:
        tracks=out("{sample}", "tracks.parquet"),
        diffusion=out("{sample}", "diffusion.parquet"),
        msd=out("{sample}", "msd.parquet"),
        sample=out("{sample}", "sample.parquet"),
    wildcard_constraints:
        sample=BEAD_RE,
    params:
        search_range_px=config["track"]["search_range_px"],
        memory=config["track"]["memory"],
        adaptive_stop_px=config["track"]["adaptive_stop_px"],
        min_length=config["track"]["min_length"],
        drift=config["track"]["drift"],
        max_lag=config["track"]["max_lag"],
        fit_lags=config["track"]["fit_lags"],
    resources:
        mem_mb=4000,  # peak memory of one job (MB)
        runtime=60,  # wall-clock limit (minutes)
    log:
        log_path("track_beads"),
    benchmark:
        bench_path("track_beads")
    conda:
        "../../envs/scopeflow.yaml"
    script:
        "../../scripts/track_beads.py"


rule bead_figure:
    input:
        done=rules.ingest_beads.output.done,
        tracks=rules.track_beads.output.tracks,
        msd=rules.track_beads.output.msd,
        diffusion=rules.track_beads.output.diffusion,
        sample=rules.track_beads.output.sample,
    output:
        report(
            out("{sample}", "report/tracks.png"),
            caption="../report/tracks.rst",
            category="Samples",
            subcategory="{sample}",
            labels={"sample": "{sample}", "figure": "tracks"},
        ),
    wildcard_constraints:
        sample=BEAD_RE,
    params:
        zarr=lambda wc: out(wc.sample, f"{wc.sample}.ome.zarr"),
    resources:
        mem_mb=2000,  # peak memory of one job (MB)
        runtime=10,  # wall-clock limit (minutes)
    log:
        log_path("bead_figure"),
    conda:
        "../../envs/scopeflow.yaml"
    script:
        "../../scripts/bead_figure.py"


rule summarize_beads:
    input:
        expand(out("{sample}", "sample.parquet"), sample=TARGET_BEADS),
    output:
        parquet=f"{RESULTS}/bead_samples.parquet",
        csv=report(
            f"{RESULTS}/bead_samples.csv",
            caption="../report/bead_samples.rst",
            category="Summary",
            labels={"table": "bead_samples"},
        ),
    resources:
        mem_mb=1000,  # peak memory of one job (MB)
        runtime=10,  # wall-clock limit (minutes)
    log:
        f"{RESULTS}/logs/summarize_beads.log",
    conda:
        "../../envs/scopeflow.yaml"
    script:
        "../../scripts/summarize_samples.py"
