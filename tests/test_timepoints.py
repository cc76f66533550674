"""Time points processed as they complete (issue 18): an acquisition whose first time point is
complete while the next is still being acquired is processed up to there; when the next
completes, the second run executes only that time point's jobs, leaves the finished ones'
outputs untouched, and the tables equal those of a run on the complete acquisition."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from scopeflow.io import readiness
from scopeflow.simulate.squid import simulate_squid_frames, write_layout

from test_workflow import _write_config, snakemake

SIM = dict(regions=("A1", "B2"), n_fovs=2, nz=2, nt=2, shape=(128, 128), seed=4, bits=12)
TABLES = ("cells", "fovs", "sample")


def jobs(work: Path) -> list[tuple[str, dict]]:
    """(rule, wildcards) of every job a dry run would execute."""
    proc = snakemake(work, "-n", "--cores", "2")
    out = []
    for block in re.split(r"\n(?=\S*rule )", proc.stdout + proc.stderr):
        m = re.search(r"rule (\w+):", block)
        if m:
            w = re.search(r"wildcards: ([^\n]*)", block)
            pairs = [kv.split("=", 1) for kv in w.group(1).split(", ")] if w else []
            out.append((m.group(1), {k.strip(): v.strip() for k, v in pairs}))
    return out


def _outputs(res: Path) -> dict[str, int]:
    """mtime (ns) of every file under a sample's results."""
    return {str(p.relative_to(res)): p.stat().st_mtime_ns for p in res.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("timepoints")
    sim = simulate_squid_frames(**SIM)
    # the drop folder: time point 0 complete, time point 1 half acquired (no .done yet)
    acq = write_layout(root / "drop" / "acq", sim, "individual")
    stash = root / "stash"
    stash.mkdir()
    late = sorted((acq / "1").glob("B2_*")) + [acq / "1" / ".done", acq / ".done"]
    for n, f in enumerate(late):
        f.rename(stash / f"{n}_{f.name}")
    assert readiness.complete_timepoints(acq) == ["0"]
    work = root / "work"
    work.mkdir()
    _write_config(work, input_dir=str(root / "drop"), segment={"method": "classical"})
    first = snakemake(work, "--cores", "2")
    res = work / "results" / "acq"
    tables_t0 = {t: pd.read_parquet(res / f"{t}.parquet") for t in TABLES}
    before = _outputs(res)
    for n, f in enumerate(late):  # time point 1 completes (moved back: same files, same mtimes)
        (stash / f"{n}_{f.name}").rename(f)
    planned = jobs(work)
    snakemake(work, "--cores", "2")
    after = _outputs(res)
    # the same acquisition complete from the start, in one run
    full = root / "full"
    write_layout(full / "acq", sim, "individual")
    ref = root / "ref"
    ref.mkdir()
    _write_config(ref, input_dir=str(full), segment={"method": "classical"})
    snakemake(ref, "--cores", "2")
    return {"first": first, "tables_t0": tables_t0, "before": before, "after": after,
            "planned": planned, "res": res, "ref": ref / "results" / "acq"}


def test_first_complete_time_point_is_processed_while_the_next_is_acquired(runs):
    assert "time point(s) 0 complete, processed" in runs["first"].stderr
    fovs = runs["tables_t0"]["fovs"]
    assert len(fovs) == 4 and set(fovs["t"]) == {0}


def test_new_time_point_runs_only_its_own_jobs(runs):
    planned = runs["planned"]
    per_shard = [(r, w) for r, w in planned if r in ("ingest", "dpc", "segment", "measure")]
    assert {r for r, _ in per_shard} == {"ingest", "dpc", "segment", "measure"}
    assert [w["tp"] for r, w in per_shard if r == "ingest"] == [".1"]  # ingest.1/
    shards = {w["shard"] for r, w in per_shard if r != "ingest"}
    assert shards == {"1"}, planned  # t=0 is shard 0 (4 FOVs, 16 per job), t=1 shard 1
    print("second run:", sorted((r, tuple(sorted(w.items()))) for r, w in planned))


def test_finished_time_point_outputs_are_untouched(runs):
    before, after = runs["before"], runs["after"]
    t0 = [k for k in before if k.startswith(("ingest/", "shards/0/", "logs/ingest.log", "logs/dpc.0",
                                              "logs/segment.0", "logs/measure.0"))]
    assert len(t0) >= 8
    assert {k: after[k] for k in t0} == {k: before[k] for k in t0}
    assert {k for k in after if k.startswith("shards/1/")} and not any(k.startswith("shards/1/") for k in before)


def test_tables_equal_a_run_on_the_complete_acquisition(runs):
    for t in TABLES:
        got = pd.read_parquet(runs["res"] / f"{t}.parquet")
        want = pd.read_parquet(runs["ref"] / f"{t}.parquet")
        pd.testing.assert_frame_equal(got, want, obj=t)
    fovs = pd.read_parquet(runs["res"] / "fovs.parquet")
    assert len(fovs) == 8 and sorted(set(fovs["t"])) == [0, 1]


@pytest.mark.parametrize("layout, expect", [
    ("octopi", ["0"]), ("individual", ["0"]), ("multipage", ["0"]), ("ome_tiff", []), ("zarr", []),
])
def test_complete_timepoints_per_layout(tmp_path, layout, expect):
    """The leading time points with their done file, in the layouts with one folder per time
    point; containers (every time point in one file) only complete as a whole."""
    sim = simulate_squid_frames(regions=("A1",), n_fovs=1, nz=1, nt=3, shape=(64, 64), seed=1)
    acq = write_layout(tmp_path / layout, sim, layout)
    if layout in ("octopi", "individual", "zarr"):  # a marker decides (the others: the quiet period)
        assert readiness.check_ready(acq, quiet_s=1e9).ready
    for f in (acq / "1").glob("*done"):
        f.unlink()
    (acq / ".done").unlink(missing_ok=True)
    if layout in ("ome_tiff", "zarr"):  # still being written: not complete, nothing of it is
        (acq / ("ome_tiff" if layout == "ome_tiff" else "plate.ome.zarr")).touch()
    assert readiness.complete_timepoints(acq) == expect
    if layout in ("octopi", "individual"):  # done copied before the images: not complete
        for f in (acq / "0").glob("*.tiff"):  # coordinates.csv lists a FOV without images
            f.unlink()
        assert readiness.complete_timepoints(acq) == []
    files = readiness.file_manifest(acq)
    units = readiness.timepoint_units(files)
    assert units == ["0", "1", "2"]
    per_tp = readiness.timepoint_records({"sample": "s", "kind": "smear_raw", "path": str(acq),
                                          "files": files, "timepoints": units})
    assert [r["timepoint"] for r in per_tp.values()] == [0, 1, 2]
    outside = [f for f in files if not f[0].split("/")[0].isdigit()]
    for t, rec in per_tp.items():
        assert sorted(rec["files"]) == sorted(outside + [f for f in files if f[0].startswith(f"{t}/")])
