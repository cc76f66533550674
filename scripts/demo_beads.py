"""Snakemake script: simulate the demo bead movie with known D (rule demo_beads)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # noqa: F821

from scopeflow._snakemake import run  # noqa: E402


def main(smk):
    from scopeflow.io.readiness import file_manifest, write_if_changed
    from scopeflow.track.demo import make_demo_movie

    p = smk.params
    make_demo_movie(
        smk.output[0], n_frames=p.frames, size=p.size, n_beads=p.n_beads, D_um2_s=p.D_um2_s,
        pixel_size_um=p.pixel_size_um, fps=p.fps, seed=p.seed,
    )
    write_if_changed(dict(p.record, files=file_manifest(smk.output[0])), smk.output.manifest)


run(main, snakemake)  # noqa: F821
