"""Snakemake script: validate one time point of a sample's input, list its FOVs (after the
previous time point's), estimate its flatfields and create or extend the sample's OME-Zarr
(rule ingest)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # noqa: F821

from scopeflow._snakemake import run  # noqa: E402


def main(smk):
    from scopeflow.io.readiness import planned_input, planned_timepoint
    from scopeflow.smear import create_store, ingest_rows, sample_provenance

    p = smk.params
    path, files = planned_input(smk.input.manifest)  # the sample's error, if planning found one
    t = planned_timepoint(smk.input.manifest)
    previous = smk.input.previous[0] if smk.input.previous else None
    ingest_rows(
        p.kind, path, smk.output.fovs, smk.output.flatfield,
        pixel_size_um=p.pixel_size_um, default_pixel_size_um=p.default_pixel_size_um,
        na=p.na, wavelength_um=p.wavelength_um, flatfield=p.flatfield, files=files,
        fluorescence_channel=p.fluorescence_channel,
        regions=p.regions, zstack=p.zstack, focus_metric=p.focus_metric,
        timepoints=None if t is None else [t], previous_fovs=previous,
    )
    create_store(smk.output.fovs, p.zarr,
                 sample_provenance(smk.config, [path], sample=smk.wildcards.sample),
                 record=smk.output.store, extend=previous is not None)


run(main, snakemake)  # noqa: F821
