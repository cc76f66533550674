"""Whole-pipeline throughput against the bare U-Net, and every stage against its floor, in one run.

Simulates an Octopi acquisition (``--ny`` × ``--nx`` FOVs of ``--size``² px, 8-bit BMP
left/right half-LED images; default 16 FOVs of 3000² in one sample = one shard of the
default ``sharding.fovs_per_job``), runs the workflow on it with ``snakemake --cores
<threads>`` and the default configuration (plus ``--config`` overrides), reads the
``benchmark:`` file of every job, then measures on the same data, in the same run:

* the bare U-Net: ONNX Runtime fp32 forward passes over each whole FOV (z-scored, padded to
  multiples of 16; no reading, decoding or writing), as Mpx/s;
* each stage's floor, what the stage physically has to do, per FOV:

  - job start: a Python process importing numpy and the libraries the floor's own work below
    uses (:data:`FLOOR_IMPORTS`: imageio to read a BMP, zarr to write a store and zstd to read
    one, ONNX Runtime for the network, matplotlib to save a figure, pyarrow to write a table),
    divided among the FOVs of the job;
  - ingest: reading each BMP pair once;
  - dpc: reading the pair, the float32 DPC formula, one float32 rfft2/irfft2 pair of the padded
    image with ``--threads`` workers, the Zarr write of both channels with the pyramid;
  - segment: reading the DPC, the bare U-Net on the whole FOV, writing the uint32 labels to Zarr;
  - measure: reading DPC, phase and labels, one label pass of bincounts, one float32 Laplacian;
  - merge_tables: reading the shard tables and writing the sample's with pyarrow (Parquet + CSV);
  - sample_overview / qc_report: reading the tables and one FOV, saving figures of the same
    sizes (matplotlib, empty axes);
  - parasites: reading the cell table's ``qc_pass`` column (the parasitemia denominator)
    and writing the stage's three tables as the run wrote them (pyarrow, Parquet + CSV);
    when the FOVs have a fluorescence channel also, per FOV, reading its three
    fluorescence planes once, their grey combination and one float32 Laplacian of Gaussian
    at the middle spot scale (1 µm), the spot finder's minimal pass. An acquisition without
    the channel (the simulated one) leaves the stage only the tables: that is its floor.

It prints end-to-end Mpx/s (the run's wall time, start-up and scheduling included), the bare
U-Net Mpx/s and their ratio, how busy the cores were, the jobs' timeline, the machine's load
average, each job's start-up (process start to its first read of data, logged by the job) and
per stage its s/FOV beside its floor and their ratio; the same in CPU seconds (each job logs its
own and its children's, ``used <rule>: … CPU-s``; the floors' from ``getrusage``), whose ratios
hold when the machine is shared and wall seconds are not comparable from one minute to the next.

    python benchmarks/pipeline_fov.py [--size 3000] [--ny 4] [--nx 4] [--threads 2]
        [--inputs DIR] [--config segment.backend=torch]

``--inputs`` keeps the simulated acquisition between runs (simulating 16 FOVs of 3000² takes
minutes).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

STAGES = ("ingest", "dpc", "segment", "measure", "merge_tables", "sample_overview", "qc_report", "parasites")
#: stages run once per sample; the others once per shard
PER_SAMPLE = {"warmup", "ingest", "merge_tables", "sample_overview", "qc_report", "parasites"}


class Clock:
    """Wall and CPU seconds (this process's threads and its finished children) of a block."""

    def __enter__(self):
        self.t0, self.c0 = time.perf_counter(), self._cpu()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.t0
        self.cpu = self._cpu() - self.c0

    @staticmethod
    def _cpu() -> float:
        import resource

        own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def median_time(fn, repeats: int = 3) -> tuple[float, float]:
    """Median wall and CPU seconds of ``repeats`` calls."""
    walls, cpus = [], []
    for _ in range(repeats):
        with Clock() as c:
            fn()
        walls.append(c.wall)
        cpus.append(c.cpu)
    return statistics.median(walls), statistics.median(cpus)


#: the third-party libraries each stage's floor work uses (beside numpy): a job doing that work
#: must at least start Python and import them
FLOOR_IMPORTS = {
    "ingest": "imageio.v3",
    "dpc": "imageio.v3, scipy.fft, zarr",
    "segment": "onnxruntime, zarr",
    "measure": "numcodecs.zstd",  # scopeflow's stores are read without zarr (io.zarr_plain)
    "merge_tables": "pyarrow.parquet, pyarrow.csv",
    "sample_overview": "matplotlib.pyplot, pyarrow.parquet",
    "qc_report": "matplotlib.pyplot, pyarrow.parquet",
    "parasites": "pyarrow.parquet, pyarrow.csv",
}


def job_start_floor(imports: str = "") -> tuple[float, float]:
    """Wall and CPU time of a Python process that imports numpy and ``imports`` (what a job
    doing that work costs at least)."""
    code = "import matplotlib; matplotlib.use('Agg'); " if "matplotlib" in imports else ""
    code += "import numpy" + (f", {imports}" if imports else "")
    return median_time(lambda: subprocess.run([sys.executable, "-c", code], check=True), 5)


def job_startups(logs: Path) -> dict[str, tuple[float, float]]:
    """Start-up of each job (wall s, CPU s; summed over a rule's jobs) from the
    ``start-up <rule>: <s> s, <cpu> CPU-s`` lines of the jobs' logs (scopeflow._snakemake)."""
    out: dict[str, tuple[float, float]] = {}
    for log in sorted(logs.glob("*.log")):
        for m in re.finditer(r"start-up (\w+): ([0-9.]+) s, ([0-9.]+) CPU-s", log.read_text()):
            w, c = out.get(m.group(1), (0.0, 0.0))
            out[m.group(1)] = (w + float(m.group(2)), c + float(m.group(3)))
    return out


def job_usage(logs: Path) -> dict[str, float]:
    """CPU seconds of each rule's jobs (summed; the process and its finished children, exact)
    from the ``used <rule>: <s> s, <cpu> CPU-s, <MB> MB peak`` lines of the jobs' logs."""
    out: dict[str, float] = {}
    for log in sorted(logs.glob("*.log")):
        for m in re.finditer(r"used (\w+): [0-9.]+ s, ([0-9.]+) CPU-s", log.read_text()):
            out[m.group(1)] = out.get(m.group(1), 0.0) + float(m.group(2))
    return out


def floors(results: Path, sample: str, threads: int, fovs_tsv: Path, n_floor: int) -> tuple[dict, tuple]:
    """Per-FOV floor work of each stage (wall s, CPU s; medians over the first ``n_floor``
    FOVs) and the bare U-Net's (Mpx/s, CPU s per FOV), on the run's data."""
    import imageio.v3 as iio
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pyarrow as pa
    import pyarrow.compute  # noqa: F401 - pa.compute
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq
    import scipy.fft as sfft
    import zarr
    from scipy import ndimage as ndi

    from scopeflow.io import ome_zarr
    from scopeflow.models.m2unet_files import pad_to_stride as _pad16
    from scopeflow.segment.unet import UNetPredictor
    from scopeflow.smear import read_fov_table

    rows = read_fov_table(fovs_tsv)
    store = results / sample / f"{sample}.ome.zarr"
    out: dict[str, list[tuple[float, float]]] = {k: [] for k in ("ingest", "dpc", "segment", "measure")}
    net = UNetPredictor(threads=threads, backend="onnx")  # its load-time check is not timed
    unet_s = []
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp) / "s.ome.zarr"
        ome_zarr.create_sample_store(scratch, [r["fov"] for r in rows], {})
        for row in rows[: max(1, n_floor)]:
            with Clock() as c:
                left, right = iio.imread(row["left"]), iio.imread(row["right"])
            out["ingest"].append((c.wall, c.cpu))

            c = Clock().__enter__()
            left, right = iio.imread(row["left"]), iio.imread(row["right"])
            L = left.astype(np.float32)
            R = right.astype(np.float32)
            dpc = np.float32(0.5) + (L - R) / (L + R)
            del L, R
            ny, nx = dpc.shape
            pad = max(16, max(ny, nx) // 4)
            fy, fx = sfft.next_fast_len(ny + 2 * pad), sfft.next_fast_len(nx + 2 * pad)
            padded = np.zeros((fy, fx), np.float32)
            padded[pad:pad + ny, pad:pad + nx] = dpc
            spec = sfft.rfft2(padded, workers=threads)
            phase = sfft.irfft2(spec, s=(fy, fx), workers=threads)[pad:pad + ny, pad:pad + nx]
            ome_zarr.write_image(scratch, row["fov"], {"dpc": dpc, "phase": np.ascontiguousarray(phase)},
                                 float(row["pixel_size_um"]))
            c.__exit__()
            out["dpc"].append((c.wall, c.cpu))
            del spec, padded, phase

            c = Clock().__enter__()
            img = np.asarray(ome_zarr.read_channel(store, row["fov"], "dpc"))
            z = _pad16((img - np.float32(img.mean())) / np.float32(img.std()))[None, None]
            with Clock() as u:
                logits = net.runner(z)
            unet_s.append((u.wall, u.cpu))
            labels = logits[0].argmax(0).astype(np.uint32)[:ny, :nx]
            arr = zarr.open_array(str(Path(tmp) / f"labels_{row['fov']}"), mode="w", shape=labels.shape,
                                  chunks=(1024, 1024), dtype="uint32")
            arr[...] = labels
            c.__exit__()
            out["segment"].append((c.wall, c.cpu))
            del logits, z

            c = Clock().__enter__()
            d = np.asarray(ome_zarr.read_channel(store, row["fov"], "dpc"))
            ph = np.asarray(ome_zarr.read_channel(store, row["fov"], "phase"))
            lab = ome_zarr.read_labels(store, row["fov"]).ravel()
            n = int(lab.max()) + 1
            for w in (None, d.ravel(), ph.ravel()):
                np.bincount(lab, weights=w, minlength=n)
            ndi.laplace(d)
            c.__exit__()
            out["measure"].append((c.wall, c.cpu))
    per_fov = {k: (statistics.median(w for w, _ in v), statistics.median(u for _, u in v)) for k, v in out.items()}
    n_fovs = len(rows)

    def merge():
        parts = sorted((results / sample / "shards").glob("*/cells.parquet"))
        table = pa.concat_tables([pq.read_table(p) for p in parts])
        with tempfile.TemporaryDirectory() as tmp:
            pq.write_table(table, Path(tmp) / "c.parquet")
            pcsv.write_csv(table, Path(tmp) / "c.csv")

    def figures(n_figs, shapes):
        pq.read_table(results / sample / "cells.parquet")
        np.asarray(ome_zarr.read_channel(store, rows[0]["fov"], "dpc"))
        with tempfile.TemporaryDirectory() as tmp:
            for k, (size, grid) in enumerate(shapes[:n_figs]):
                fig, _ = plt.subplots(*grid, figsize=size)
                fig.savefig(Path(tmp) / f"{k}.png", dpi=90)
                plt.close(fig)

    def per(wc):
        return wc[0] / n_fovs, wc[1] / n_fovs

    def parasites():
        cells = pq.read_table(results / sample / "cells.parquet", columns=["qc_pass"])
        pa.compute.sum(cells.column("qc_pass"))
        channels = [c for c in ome_zarr.fov_attrs(store, rows[0]["fov"])["channels"] if c.startswith("fluorescence")]
        for row in rows if channels else []:
            planes = [np.asarray(ome_zarr.read_channel(store, row["fov"], c), np.float32) for c in channels]
            grey = (np.float32(0.299) * planes[0] + np.float32(0.587) * planes[1] + np.float32(0.114) * planes[2]
                    if len(planes) == 3 else planes[0])
            ndi.gaussian_laplace(grey, 1.0 / float(row["pixel_size_um"]))
        with tempfile.TemporaryDirectory() as tmp:
            for name in ("spots", "parasitemia_fovs", "parasitemia"):
                table = pq.read_table(results / sample / f"{name}.parquet")
                pq.write_table(table, Path(tmp) / f"{name}.parquet")
                pcsv.write_csv(table, Path(tmp) / f"{name}.csv")

    per_fov["merge_tables"] = per(median_time(merge))
    per_fov["parasites"] = per(median_time(parasites))
    per_fov["sample_overview"] = per(median_time(lambda: figures(1, [((18, 4.5), (1, 4))])))
    per_fov["qc_report"] = per(median_time(lambda: figures(3, [((16, 8.8), (4, 8)), ((7, 5.5), (1, 1)),
                                                               ((15, 10.2), (3, 3))])))
    px = rows[0]["height"] * rows[0]["width"]
    unet = (statistics.median(w for w, _ in unet_s), statistics.median(u for _, u in unet_s))
    return per_fov, (px / 1e6 / unet[0], unet[1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=3000)
    parser.add_argument("--ny", type=int, default=4)
    parser.add_argument("--nx", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--config", nargs="*", default=[], metavar="KEY=VALUE",
                        help="config overrides, dotted keys (e.g. segment.backend=torch)")
    parser.add_argument("--inputs", help="folder keeping the simulated acquisition between runs")
    parser.add_argument("--floor-fovs", type=int, default=4, help="FOVs the per-FOV floors are measured on (medians)")
    args = parser.parse_args(argv)

    import pandas as pd
    import yaml

    from scopeflow.simulate import simulate_acquisition

    n = args.ny * args.nx
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        inputs = Path(args.inputs) if args.inputs else work / "inputs"
        results = work / "results"
        t0 = time.perf_counter()
        if not (inputs / "slide").is_dir():
            simulate_acquisition(inputs / "slide", ny=args.ny, nx=args.nx, shape=(args.size, args.size), seed=1)
            print(f"simulated {n} FOVs of {args.size}² in {time.perf_counter() - t0:.1f} s")
        config = yaml.safe_load((REPO / "config.yaml").read_text())
        overrides = [f"input_dir={inputs}", f"results_dir={results}", "demo.enabled=false",
                     f"segment.threads={args.threads}", f"dpc.threads={args.threads}",
                     f"sharding.fovs_per_job={n}", *args.config]
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
        load_before = os.getloadavg()
        t0, started = time.perf_counter(), time.time()
        run = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        load_after = os.getloadavg()
        if run.returncode:
            sys.exit(f"snakemake failed:\n{run.stderr[-3000:]}")
        seconds: dict[str, float] = {}
        cpu: dict[str, float] = {}
        jobs: dict[str, int] = {}
        timeline = []  # (start, end, job): seconds since snakemake started
        for tsv in sorted((results / "slide" / "benchmarks").glob("*.tsv")):
            rule = tsv.name.split(".")[0]
            bench = pd.read_csv(tsv, sep="\t")
            seconds[rule] = seconds.get(rule, 0.0) + float(bench["s"].sum())
            cpu[rule] = cpu.get(rule, 0.0) + float(pd.to_numeric(bench["cpu_time"], errors="coerce").fillna(0).sum())
            jobs[rule] = jobs.get(rule, 0) + 1
            end = tsv.stat().st_mtime - started
            timeline.append((end - float(bench["s"].sum()), end, tsv.name[: -len(".tsv")]))
        # the jobs' own figures (exact) replace Snakemake's sampled cpu_time where logged
        cpu.update({rule: c for rule, c in job_usage(results / "slide" / "logs").items() if rule in cpu})
        startup = job_startups(results / "slide" / "logs")
        start, start_cpu = job_start_floor()
        starts = {stage: job_start_floor(imports) for stage, imports in FLOOR_IMPORTS.items()}
        floor, (unet_mpx, unet_cpu) = floors(results, "slide", args.threads,
                                             results / "slide" / "ingest" / "fovs.tsv", args.floor_fovs)

    mpx = n * args.size**2 / 1e6
    e2e = mpx / wall
    total_cpu = sum(cpu.values())
    print(f"\nsnakemake --cores {args.threads} {' '.join(args.config)}: {n} FOVs of {args.size}² in one shard, "
          f"{wall:.1f} s wall ({wall / n:.2f} s per FOV, start-up and scheduling included)")
    print(f"end-to-end {e2e:.2f} Mpx/s; bare U-Net (ONNX fp32, whole FOV, {args.threads} threads) "
          f"{unet_mpx:.2f} Mpx/s; ratio {e2e / unet_mpx:.3f}")
    print(f"CPU: jobs {total_cpu / n:.2f} CPU-s per FOV, bare U-Net {unet_cpu:.2f} CPU-s per FOV; "
          f"network share {unet_cpu * n / total_cpu:.3f} (independent of the machine's load)")
    print(f"cores busy {total_cpu / (wall * args.threads):.0%} of the run ({total_cpu:.0f} CPU-s in "
          f"{wall:.1f} s on {args.threads})")
    print("timeline (s since snakemake started; start-end job): "
          + ", ".join(f"{a:.1f}-{b:.1f} {job}" for a, b, job in sorted(timeline)))
    print(f"load average (1 min) {load_before[0]:.1f} before the run, {load_after[0]:.1f} after it, "
          f"{os.getloadavg()[0]:.1f} after the floors; {os.cpu_count()} CPUs")
    print(f"job start floor (python -c 'import numpy'): {start:.2f} s, {start_cpu:.2f} CPU-s per job; "
          "with the libraries each floor uses: " + ", ".join(f"{stage} {w:.2f} s / {c:.2f} CPU-s"
                                                          for stage, (w, c) in starts.items()))
    print("per-job start-up (process start to the first read of data, from the jobs' logs): "
          + ", ".join(f"{rule} {w:.2f} s / {c:.2f} CPU-s" for rule, (w, c) in startup.items()))
    print(f"\n{'stage':16s} {'jobs':>4s} {'s/FOV':>7s} {'floor':>7s} {'x floor':>7s} "
          f"{'CPU-s/FOV':>9s} {'floor':>7s} {'x floor':>7s}")
    for stage in [s for s in STAGES if s in seconds] + [s for s in seconds if s not in STAGES]:
        fw, fc = floor.get(stage, (0.0, 0.0))
        sw, sc = starts.get(stage, (start, start_cpu))
        fw += sw * jobs[stage] / n
        fc += sc * jobs[stage] / n
        w, c = seconds[stage] / n, cpu[stage] / n
        print(f"{stage:16s} {jobs[stage]:4d} {w:7.3f} {fw:7.3f} {w / fw:7.2f} {c:9.3f} {fc:7.3f} {c / fc:7.2f}")
    print(f"{'sum of jobs':16s} {sum(jobs.values()):4d} {sum(seconds.values()) / n:7.3f} {'':>7s} {'':>7s} "
          f"{total_cpu / n:9.3f}")


if __name__ == "__main__":
    main()
