# Ingest: make the demo acquisitions when missing; validate a sample's input, list its FOVs,
# estimate per-channel flatfields and create the sample's (empty) OME-Zarr plate. One job per
# time point (the acquisition's {t}/ folders; inputs not split by time point are one), run in
# order: each lists the previous one's FOVs and its own, and adds its FOVs to the store,
# so a time point that completes later adds its own jobs and leaves the finished ones alone.
# The store is not a Snakemake output (a directory() output would get a .snakemake_timestamp
# inside it): ingest/store.json (first time point), ingest.<t>/store.json (time point t)
# record each step, and <sample>.ome.zarr.done (rule
# finish_store) marks it complete once every FOV's image and labels are in.

from scopeflow.resources import fov_pixels, stage_mem_mb


rule demo_acquisition:
    output:
        directory(f"{os.path.normpath(DEMO['dir'])}/{{demo_sample}}"),
        manifest=manifest_path("{demo_sample}"),  # what planning writes for an existing folder
        timepoints=[timepoint_manifest("{demo_sample}", u, DEMO_TIMEPOINTS[0]) for u in DEMO_TIMEPOINTS],
    params:
        record=lambda wc: manifest_record(wc.demo_sample, files=[]),
        ny=DEMO["ny"],
        nx=DEMO["nx"],
        size=DEMO["size"],
        seed=lambda wc: DEMO["seed"] + int(wc.demo_sample.rsplit("_", 1)[1]),
        layout=DEMO["layout"],
        regions=DEMO["regions"],
        nz=DEMO["nz"],
        nt=DEMO["nt"],
        # demo_smear_1 gets a fluorescence channel with malaria parasites (0: none)
        parasites_per_ul=lambda wc: DEMO["parasites_per_ul"] if wc.demo_sample == "demo_smear_1" else 0.0,
    # every stage waits on the demo: made before the kernel warm-ups (priority 50 and 0)
    priority: 60
    log:
        f"{RESULTS}/logs/demo_acquisition/{{demo_sample}}.log",
    conda:
        "../../envs/scopeflow.yaml"
    script:
        "../../scripts/demo_acquisition.py"


rule ingest:
    input:
        manifest=out("{sample}", "ingest{tp}/inputs.json"),
        previous=previous_timepoint_fovs,
    output:
        fovs=out("{sample}", "ingest{tp}/fovs.tsv"),
        flatfield=out("{sample}", "ingest{tp}/flatfield.npz"),
        store=out("{sample}", "ingest{tp}/store.json"),
    wildcard_constraints:
        sample=SMEAR_RE,  # bead samples have their own <sample>.ome.zarr rule (track.smk)
    params:
        kind=lambda wc: sample_row(wc)["kind"],
        zarr=lambda wc: out(wc.sample, f"{wc.sample}.ome.zarr"),
        pixel_size_um=lambda wc: sample_row(wc)["pixel_size_um"],
        # scalars, not dicts: reordering config keys must not look like a parameter change
        default_pixel_size_um=config["optics"]["pixel_size_um"],
        na=config["optics"]["na"],
        wavelength_um=config["optics"]["wavelength_um"],
        flatfield=config["dpc"]["flatfield"],
        regions=lambda wc: sample_regions(wc.sample),
        zstack=config["zstack"],
        focus_metric=config["qc"]["focus_metric"],
        fluorescence_channel=config["parasites"]["channel"] if config["parasites"]["enabled"] else None,
    resources:
        # peak memory (MB): a base plus bytes per pixel of the largest FOV (scopeflow.resources)
        mem_mb=lambda wc: stage_mem_mb("ingest", fov_pixels(sample_row(wc)["path"])),
        runtime=30,  # wall-clock limit (minutes)
    log:
        f"{RESULTS}/{{sample}}/logs/ingest{{tp}}.log",
    benchmark:
        f"{RESULTS}/{{sample}}/benchmarks/ingest{{tp}}.tsv"
    conda:
        "../../envs/scopeflow.yaml"
    script:
        "../../scripts/ingest.py"
