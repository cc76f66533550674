"""Snakemake script: DPC + phase for every FOV into the sample's OME-Zarr (rule dpc)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # noqa: F821

from scopeflow._snakemake import run  # noqa: E402


def main(smk):
    from scopeflow.pipeline import build_image_store, sample_provenance

    p = smk.params
    build_image_store(
        smk.input.fovs, smk.input.flatfield, smk.output.zarr, sample=smk.wildcards.sample,
        phase=p.dpc["phase"], phase_reg=p.dpc["phase_reg"], na_illum=p.na_illum, chunk=p.chunk,
        provenance=sample_provenance(p.config, [smk.input.fovs], sample=smk.wildcards.sample),
    )


run(main, snakemake)  # noqa: F821
