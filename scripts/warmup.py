"""Snakemake script: compile or load the numba kernels once (rule warmup)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # noqa: F821

from scopeflow._snakemake import run  # noqa: E402


def main(smk):
    import json
    import logging

    from scopeflow.warmup import warm_up

    seconds = warm_up(tuple(smk.params.kinds), processes=smk.threads)
    logging.getLogger("scopeflow").info("kernels ready: %s s", seconds)
    out = Path(smk.output[0])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"seconds": seconds}) + "\n")


run(main, snakemake)  # noqa: F821
