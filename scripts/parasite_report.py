"""Snakemake script: parasite gallery and per-FOV parasitemia figure (rule parasite_report)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # noqa: F821

from scopeflow._snakemake import run  # noqa: E402


def main(smk):
    from scopeflow.io.tables import read_table
    from scopeflow.parasites.figures import parasite_figure

    parasite_figure(smk.input.gallery, read_table(smk.input.fovs), read_table(smk.input.sample),
                    smk.output[0], sample=smk.wildcards.sample)


run(main, snakemake)  # noqa: F821
