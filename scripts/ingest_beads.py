"""Snakemake script: validate a bead movie and copy its frames into an OME-Zarr (t, y, x)
(rule ingest_beads)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # noqa: F821

from scopeflow._snakemake import run  # noqa: E402


def main(smk):
    from scopeflow.io.ome_zarr import mark_complete
    from scopeflow.provenance import make_provenance
    from scopeflow.track.pipeline import ingest_movie

    p = smk.params
    s = smk.wildcards.sample
    attrs = ingest_movie(
        smk.input[0], p.zarr, pixel_size_um=p.pixel_size_um, fps=p.fps,
        default_pixel_size_um=p.default_pixel_size_um, default_fps=p.default_fps,
        provenance=make_provenance(smk.config, inputs=[smk.input[0]], sample=s), sample=s,
    )
    mark_complete(p.zarr, smk.output.done, {"n_frames": attrs["n_frames"]})


run(main, snakemake)  # noqa: F821
