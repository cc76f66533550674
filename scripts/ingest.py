"""Snakemake script: validate a sample's input, list its FOVs, estimate flatfields (rule ingest)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # noqa: F821

from scopeflow._snakemake import run  # noqa: E402


def main(smk):
    from scopeflow.pipeline import ingest

    p = smk.params
    ingest(
        p.kind, smk.input[0], smk.output.fovs, smk.output.flatfield,
        pixel_size_um=p.pixel_size_um, default_pixel_size_um=p.optics["pixel_size_um"],
        na=p.optics["na"], wavelength_um=p.optics["wavelength_um"], flatfield=p.flatfield,
    )


run(main, snakemake)  # noqa: F821
