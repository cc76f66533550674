"""Snakemake script: validate a bead movie and copy its frames into an OME-Zarr (t, y, x)
(rule ingest_beads)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # noqa: F821

from scopeflow._snakemake import run  # noqa: E402


def main(smk):
    from scopeflow.io.ome_zarr import mark_complete
    from scopeflow.io.readiness import planned_input, verify_unchanged
    from scopeflow.provenance import make_provenance
    from scopeflow.track.motion import MIN_MSD_FRAMES
    from scopeflow.track.movie import ingest_movie

    p = smk.params
    s = smk.wildcards.sample
    path, files = planned_input(smk.input.manifest)  # the sample's error, if planning found one
    verify_unchanged(path, files)
    attrs = ingest_movie(
        path, p.zarr, pixel_size_um=p.pixel_size_um, fps=p.fps,
        default_pixel_size_um=p.default_pixel_size_um, default_fps=p.default_fps,
        provenance=make_provenance(smk.config, inputs=[path], sample=s), sample=s,
        min_frames=MIN_MSD_FRAMES,  # every movie of the workflow goes on to an MSD fit
    )
    verify_unchanged(path, files)  # a frame added while copying: fail, the next run redoes it
    mark_complete(p.zarr, smk.output.done, {"n_frames": attrs["n_frames"]})


run(main, snakemake)  # noqa: F821
