"""Snakemake script: chunked segmentation of one shard's FOVs into labels/cells (rule segment)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # noqa: F821

from scopeflow._snakemake import run  # noqa: E402


def main(smk):
    import json

    from scopeflow.pipeline import segment_store
    from scopeflow.segment.params import SegmentParams

    p = smk.params
    fovs = json.loads(Path(smk.input.record).read_text())["fovs"]
    params = SegmentParams(method=p.method, chunk=p.chunk, threads=smk.threads, device=p.device,
                           backend=p.backend, precision=p.precision)
    segment_store(
        p.zarr, smk.output.record, fovs=fovs, method=params.method, chunk=params.chunk,
        predictor_kwargs=params.predictor_kwargs(), threads=params.threads,
    )


run(main, snakemake)  # noqa: F821
