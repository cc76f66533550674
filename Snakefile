# scopeflow: raw microscope acquisitions -> per-cell, per-FOV and per-sample tables (blood smears)
# and trajectories, MSD and diffusion coefficients (bead movies).
# Thin entry point: configuration, validation and sample discovery live in workflow/rules/common.smk,
# one .smk per stage. Run `snakemake --cores all` (bundled demo) or see README.md.
import sys

from snakemake.utils import min_version

min_version("9.17")  # 9.10-9.16 start more jobs than --cores allows (snakemake#3913)
sys.path.insert(0, f"{workflow.basedir}/src")  # the workflow always uses its own library


configfile: "config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/warmup.smk"
include: "workflow/rules/ingest.smk"
include: "workflow/rules/dpc.smk"
include: "workflow/rules/segment.smk"
include: "workflow/rules/measure.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/qc.smk"
include: "workflow/rules/parasites.smk"
include: "workflow/rules/track.smk"


rule all:
    input:
        all_outputs(),
    default_target: True
