"""Snakemake script: spots, parasite calls and parasitemia tables of one sample (rule parasites)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # noqa: F821

from scopeflow._snakemake import run  # noqa: E402


def main(smk):
    from scopeflow.io.ome_zarr import store_attrs
    from scopeflow.parasites.stage import parasites_sample

    o = smk.output
    parasites_sample(
        smk.params.zarr, smk.input.cells, smk.input.fovs, o.spots, o.fovs, o.sample,
        sample=smk.wildcards.sample, params=smk.params.parasites, out_gallery=o.gallery,
        provenance=store_attrs(smk.params.zarr).get("scopeflow", {}),
    )


run(main, snakemake)  # noqa: F821
