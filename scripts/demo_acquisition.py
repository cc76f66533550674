"""Snakemake script: simulate one demo Octopi acquisition (rule demo_acquisition)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent / "src"))  # noqa: F821

from scopeflow._snakemake import run  # noqa: E402


def main(smk):
    from scopeflow.io.readiness import file_manifest, timepoint_records, timepoint_units, write_if_changed

    p = smk.params
    if p.layout == "octopi":  # the legacy Octopi grid, one time point, 8-bit BMP
        from scopeflow.simulate import simulate_acquisition

        simulate_acquisition(smk.output[0], ny=p.ny, nx=p.nx, shape=(p.size, p.size), seed=p.seed)
        if p.parasites_per_ul > 0:
            from scopeflow.simulate.parasites import add_fluorescence

            add_fluorescence(smk.output[0], parasites_per_ul=p.parasites_per_ul, seed=p.seed)
    else:  # a Squid save mode: regions x FOVs x z planes x time points, 12-bit in uint16
        from scopeflow.simulate.squid import simulate_squid_acquisition

        simulate_squid_acquisition(smk.output[0], p.layout, regions=list(p.regions), n_fovs=p.ny * p.nx,
                                   nz=p.nz, nt=p.nt, shape=(p.size, p.size), seed=p.seed,
                                   parasites_per_ul=p.parasites_per_ul if p.parasites_per_ul > 0 else None)
    files = file_manifest(smk.output[0])
    record = dict(p.record, files=files, timepoints=timepoint_units(files))
    write_if_changed(record, smk.output.manifest)
    per_tp = timepoint_records(record)
    first = next(iter(per_tp))
    for dest in smk.output.timepoints:  # ingest/inputs.json (first time point), ingest.<t>/inputs.json
        folder = Path(dest).parent.name
        write_if_changed(per_tp[first if folder == "ingest" else folder.split(".", 1)[1]], dest)


run(main, snakemake)  # noqa: F821
