"""Seconds per 3000×3000 FOV from raw left/right images to tables, split by stage.

Simulates an Octopi acquisition (``--ny`` × ``--nx`` FOVs of ``--size``² px, 8-bit BMP left/right
half-LED images), runs the workflow on it with ``snakemake --cores <threads>`` and the default
configuration (plus ``--config`` overrides), then reads the ``benchmark:`` file of every rule
(wall-clock ``s`` per job) and prints seconds per stage, per FOV, and the whole run's wall time.

    python benchmarks/pipeline_fov.py [--size 3000] [--ny 2] [--nx 2] [--threads 2] [--config segment.backend=torch]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
STAGES = ("ingest", "dpc", "segment", "measure", "merge_tables", "sample_overview", "qc_report")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=3000)
    parser.add_argument("--ny", type=int, default=2)
    parser.add_argument("--nx", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--config", nargs="*", default=[], metavar="KEY=VALUE",
                        help="config overrides, dotted keys (e.g. segment.backend=torch)")
    parser.add_argument("--keep", help="work folder to keep (default: a temporary one)")
    args = parser.parse_args(argv)

    from scopeflow.simulate import simulate_acquisition

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.keep) if args.keep else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        inputs, results = work / "inputs", work / "results"
        t0 = time.perf_counter()
        if not (inputs / "slide").is_dir():
            simulate_acquisition(inputs / "slide", ny=args.ny, nx=args.nx, shape=(args.size, args.size), seed=1)
            print(f"simulated {args.ny * args.nx} FOVs of {args.size}² in {time.perf_counter() - t0:.1f} s")
        config = yaml.safe_load((REPO / "config.yaml").read_text())
        overrides = [f"input_dir={inputs}", f"results_dir={results}", "demo.enabled=false",
                     f"segment.threads={args.threads}", *args.config]
        for item in overrides:
            key, value = item.split("=", 1)
            *parents, leaf = key.split(".")
            node = config
            for k in parents:
                node = node[k]
            node[leaf] = yaml.safe_load(value)
        (work / "config.yaml").write_text(yaml.safe_dump(config))
        cmd = ["snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(REPO),
               "--cores", str(args.threads), "--quiet", "all", "--configfile", str(work / "config.yaml")]
        t0 = time.perf_counter()
        run = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if run.returncode:
            sys.exit(f"snakemake failed:\n{run.stderr[-3000:]}")
        rows = []
        for tsv in sorted((results / "slide" / "benchmarks").glob("*.tsv")):
            rule = tsv.name.split(".")[0]
            rows.append({"stage": rule, "s": float(pd.read_csv(tsv, sep="\t")["s"].sum())})
        table = pd.DataFrame(rows).groupby("stage", sort=False)["s"].sum()
        n = args.ny * args.nx
        order = [s for s in STAGES if s in table.index] + [s for s in table.index if s not in STAGES]
        print(f"\nsnakemake --cores {args.threads} {' '.join(args.config)}: {wall:.1f} s wall for {n} FOVs "
              f"({wall / n:.1f} s per FOV, start-up and scheduling included)")
        print(f"{'stage':16s} {'s total':>8s} {'s / FOV':>8s} {'share':>6s}")
        total = float(table.sum())
        for stage in order:
            print(f"{stage:16s} {table[stage]:8.1f} {table[stage] / n:8.2f} {table[stage] / total:6.1%}")
        print(f"{'sum of jobs':16s} {total:8.1f} {total / n:8.2f}")


if __name__ == "__main__":
    main()
