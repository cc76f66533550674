"""Snakemake script: chunked segmentation of one shard's FOVs into labels/cells (rule segment)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # noqa: F821

from scopeflow._snakemake import run  # noqa: E402


def main(smk):
    import json

    from scopeflow.smear import segment_store

    p = smk.params
    fovs = json.loads(Path(smk.input.record).read_text())["fovs"]
    kwargs = {}
    if p.method == "unet":
        kwargs = {"device": p.device, "threads": smk.threads, "backend": p.backend,
                  "precision": p.precision}
    segment_store(
        p.zarr, smk.output.record, fovs=fovs, method=p.method, chunk=p.chunk,
        predictor_kwargs=kwargs, threads=smk.threads,
    )


run(main, snakemake)  # noqa: F821
