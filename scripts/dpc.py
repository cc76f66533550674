"""Snakemake script: DPC + phase for one shard of FOVs into the sample's OME-Zarr (rule dpc)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # noqa: F821

from scopeflow._snakemake import run  # noqa: E402


def main(smk):
    from scopeflow.smear import shard_fovs, write_images

    p = smk.params
    fovs = shard_fovs(smk.input.fovs, p.chunk, p.fovs_per_job, timepoint=p.timepoint)
    write_images(
        smk.input.fovs, smk.input.flatfield, p.zarr, smk.output.record, fovs=fovs,
        phase=p.phase, phase_reg=p.phase_reg, na_illum=p.na_illum, threads=smk.threads,
    )


run(main, snakemake)  # noqa: F821
