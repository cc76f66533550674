"""A core facility's drop folder (issue 15): completeness decided from the data, the file set
tracked per sample, one bad input that stops only itself, dangerous configuration refused,
a full disk survived."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from scopeflow.errors import ScopeflowError
from scopeflow.io import ome_zarr, readiness
from scopeflow.io.sample_sheet import read_sample_sheet

REPO = Path(__file__).resolve().parents[1]


def snakemake(workdir: Path, *args: str, check: bool = True, env: dict | None = None):
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(workdir / "config.yaml"), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    return proc


def write_config(work: Path, **overrides) -> dict:
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    cfg["demo"]["enabled"] = False
    cfg["segment"]["method"] = "classical"  # fast; the drop-folder logic does not depend on it
    cfg["readiness"]["quiet_s"] = 0
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key].update(value)
        else:
            cfg[key] = value
    work.mkdir(parents=True, exist_ok=True)
    (work / "config.yaml").write_text(yaml.safe_dump(cfg))
    return cfg


def per_sample_jobs(workdir: Path, *args: str) -> set[tuple[str, str]]:
    """(rule, sample) of the jobs a dry run would execute."""
    import re

    proc = snakemake(workdir, "-n", "--cores", "2", *args)
    text = proc.stdout + proc.stderr
    jobs = set()
    for block in re.split(r"\n(?=\S*rule )", text):
        m = re.search(r"rule (\w+):", block)
        w = re.search(r"wildcards: .*?sample=([^,\s]+)", block)
        if m and w:
            jobs.add((m.group(1), w.group(1)))
    return jobs


def error_lines(res: Path) -> list[str]:
    text = "".join(p.read_text() for p in (res / "logs").glob("*.log")) if (res / "logs").is_dir() else ""
    assert "Traceback" not in text
    return [line for line in text.splitlines() if " ERROR " in line]


def copy_fovs(src: Path, dst: Path, fovs: list[str], done: bool) -> None:
    """Copy an Octopi acquisition's metadata and the images of some FOVs (as a copy in progress)."""
    (dst / "0").mkdir(parents=True, exist_ok=True)
    for name in ("acquisition parameters.json", "configurations.xml"):
        shutil.copy2(src / name, dst / name)
    shutil.copy2(src / "0" / "coordinates.csv", dst / "0" / "coordinates.csv")
    for fov in fovs:
        for f in (src / "0").glob(f"{fov}_BF_*"):
            shutil.copy2(f, dst / "0" / f.name)
    if done:
        (dst / "0" / "done").write_text("")


# ------------------------------------------------------------------ readiness (library)


def test_octopi_done_marker_decides(tmp_path):
    from scopeflow.simulate import simulate_acquisition

    acq = simulate_acquisition(tmp_path / "acq", ny=1, nx=2, shape=(64, 64), seed=1)
    verdict = readiness.check_ready(acq, quiet_s=1e9)  # just written: only the marker can say ready
    assert verdict.ready and verdict.how == "marker"
    (acq / "1").mkdir()
    shutil.copy(next((acq / "0").glob("*left_half.bmp")), acq / "1")
    verdict = readiness.check_ready(acq, quiet_s=0)
    assert not verdict.ready and "1/" in verdict.reason and "done" in verdict.reason
    (acq / "1" / "done").write_text("")
    assert readiness.check_ready(acq, quiet_s=1e9).ready


def test_squid_hidden_done_marker_counts(tmp_path):
    from scopeflow.simulate import simulate_acquisition

    acq = simulate_acquisition(tmp_path / "acq", ny=1, nx=2, shape=(64, 64), seed=1)
    (acq / "0" / "done").rename(acq / "0" / ".done")  # as current Squid versions write it
    verdict = readiness.check_ready(acq, quiet_s=1e9)
    assert verdict.ready and verdict.how == "marker"


def test_done_copied_before_the_images_is_not_trusted(tmp_path):
    """cp -r copies in directory order: 'done' and coordinates.csv may arrive before images."""
    from scopeflow.simulate import simulate_acquisition

    full = simulate_acquisition(tmp_path / "full", ny=1, nx=3, shape=(64, 64), seed=1)
    acq = tmp_path / "copy"
    copy_fovs(full, acq, ["0_0_0"], done=True)
    verdict = readiness.check_ready(acq, quiet_s=60)
    assert not verdict.ready and "coordinates.csv lists 3 FOVs but 1 have images" in verdict.reason
    assert readiness.check_ready(acq, quiet_s=60, now=time.time() + 61).ready  # an odd file: quiet decides
    copy_fovs(full, acq, ["0_1_0", "0_2_0"], done=True)
    verdict = readiness.check_ready(acq, quiet_s=60)
    assert verdict.ready and verdict.how == "marker"


def test_quiet_period_without_marker_sees_ctime(tmp_path):
    acq = tmp_path / "plain"
    acq.mkdir()
    f = acq / "a.png"
    f.write_bytes(b"x" * 10)
    os.utime(f, (1e9, 1e9))  # a copy that keeps the source's old mtime (cp -p, rsync -a)
    os.utime(acq, (1e9, 1e9))
    verdict = readiness.check_ready(acq, quiet_s=60)
    assert not verdict.ready and verdict.how == "quiet"  # its ctime is now
    assert readiness.check_ready(acq, quiet_s=60, now=time.time() + 61).ready


def test_squid_zarr_acquisition_complete(tmp_path):
    store = tmp_path / "exp" / "zarr" / "manual" / "fov_0.ome.zarr"
    store.mkdir(parents=True)
    meta = {"zarr_format": 3, "node_type": "group", "attributes": {"_squid": {"acquisition_complete": False}}}
    (store / "zarr.json").write_text(json.dumps(meta))
    verdict = readiness.check_ready(tmp_path / "exp", quiet_s=0)
    assert not verdict.ready and "acquisition_complete" in verdict.reason
    meta["attributes"]["_squid"]["acquisition_complete"] = True
    (store / "zarr.json").write_text(json.dumps(meta))
    verdict = readiness.check_ready(tmp_path / "exp", quiet_s=1e9)
    assert verdict.ready and verdict.how == "marker"


def test_squid_zarr_that_never_completes_fails_naming_its_store(tmp_path):
    """A store without acquisition_complete waits while it changes; unchanged for stalled_s
    (at least twice the time-lapse interval) it fails with one line naming its zarr.json; a
    store Squid marked aborted fails at once."""
    exp = tmp_path / "exp"
    store = exp / "zarr" / "manual" / "fov_0.ome.zarr"
    store.mkdir(parents=True)
    meta = {"zarr_format": 3, "node_type": "group", "attributes": {"_squid": {"acquisition_complete": False}}}
    (store / "zarr.json").write_text(json.dumps(meta))
    now = readiness.newest_change(exp)
    waiting = readiness.check_ready(exp, quiet_s=0, stalled_s=100, now=now + 50)
    assert not waiting.ready and waiting.how == "marker"
    failed = readiness.check_ready(exp, quiet_s=0, stalled_s=100, now=now + 101)
    assert not failed.ready and failed.how == "failed" and "\n" not in failed.reason
    assert f"{store / 'zarr.json'}:" in failed.reason and "stalled_s" in failed.reason
    assert readiness.check_ready(exp, quiet_s=0, now=now + 1e6).how == "marker"  # None: wait for ever
    (exp / "acquisition parameters.json").write_text(json.dumps({"Nt": 3, "dt(s)": 600}))
    now = readiness.newest_change(exp)
    assert readiness.check_ready(exp, quiet_s=0, stalled_s=100, now=now + 1000).how == "marker"
    assert readiness.check_ready(exp, quiet_s=0, stalled_s=100, now=now + 1201).how == "failed"
    meta["attributes"]["_squid"]["aborted"] = True
    (store / "zarr.json").write_text(json.dumps(meta))
    aborted = readiness.check_ready(exp, quiet_s=0, stalled_s=None)
    assert aborted.how == "failed" and f"{store / 'zarr.json'}:" in aborted.reason and "aborted" in aborted.reason


def test_manifest_is_rewritten_only_when_the_file_set_changes(tmp_path):
    acq = tmp_path / "acq"
    (acq / "0").mkdir(parents=True)
    (acq / "0" / "a.bmp").write_bytes(b"1234")
    (acq / "0" / "done").write_text("")
    (acq / ".DS_Store").write_text("mac")
    files = readiness.file_manifest(acq)
    assert [f[:2] for f in files] == [["0/a.bmp", 4]]  # markers and hidden files left out
    dest = tmp_path / "inputs.json"
    assert readiness.write_if_changed({"files": files}, dest)
    os.utime(dest, (1e9, 1e9))
    assert not readiness.write_if_changed({"files": readiness.file_manifest(acq)}, dest)
    assert dest.stat().st_mtime == 1e9  # unchanged content keeps its mtime: nothing reruns
    (acq / "0" / "b.bmp").write_bytes(b"5")
    assert readiness.write_if_changed({"files": readiness.file_manifest(acq)}, dest)
    (acq / "0" / "a.bmp").write_bytes(b"123")
    with pytest.raises(ScopeflowError, match="a.bmp: changed since the run was planned"):
        readiness.verify_files(acq, files)
    with pytest.raises(ScopeflowError, match="b.bmp: added since"):
        readiness.verify_unchanged(acq, readiness.file_manifest(acq)[:1])


def test_ingest_processes_exactly_the_planned_fovs(tmp_path):
    """A copy landing between planning and ingest: the store's series list is the planned FOVs."""
    from scopeflow.io.discover import count_fovs
    from scopeflow.smear import create_store, ingest
    from scopeflow.simulate import simulate_acquisition

    full = simulate_acquisition(tmp_path / "full", ny=1, nx=4, shape=(128, 128), seed=2)
    acq = tmp_path / "acq"
    copy_fovs(full, acq, ["0_0_0", "0_1_0"], done=False)
    planned = readiness.file_manifest(acq)
    assert count_fovs("smear_raw", acq, files=planned) == 2
    copy_fovs(full, acq, ["0_2_0", "0_3_0"], done=True)  # arrives after planning
    df = ingest("smear_raw", acq, tmp_path / "fovs.tsv", tmp_path / "ff.npz", files=planned)
    create_store(tmp_path / "fovs.tsv", tmp_path / "s.ome.zarr")
    assert list(df["fov"]) == ["0-0_0_0", "0-0_1_0"]
    assert ome_zarr.fov_names(tmp_path / "s.ome.zarr") == ["0-0_0_0", "0-0_1_0"]
    assert count_fovs("smear_raw", acq, files=readiness.file_manifest(acq)) == 4


def test_black_acquisition_and_nan_dpc_are_refused(tmp_path):
    import imageio.v3 as iio
    import tifffile

    from scopeflow.smear import ingest
    from scopeflow.simulate import simulate_acquisition

    acq = simulate_acquisition(tmp_path / "black", ny=1, nx=2, shape=(64, 64), seed=1)
    for f in (acq / "0").glob("*.bmp"):
        iio.imwrite(f, np.zeros((64, 64), np.uint8))
    with pytest.raises(ScopeflowError, match="black.*every image is black"):
        ingest("smear_raw", acq, tmp_path / "a.tsv", tmp_path / "a.npz")
    dpc = np.full((64, 64), 0.5, np.float32)
    dpc[3:5, 7] = np.nan
    tifffile.imwrite(tmp_path / "nan.tif", dpc)
    with pytest.raises(ScopeflowError, match="nan.tif: 2 pixels are NaN"):
        ingest("smear_dpc", tmp_path / "nan.tif", tmp_path / "b.tsv", tmp_path / "b.npz", pixel_size_um=0.3)
    assert not (tmp_path / "a.tsv").exists() and not (tmp_path / "b.tsv").exists()


# ------------------------------------------------------------------ sample sheets


SHEET = [
    ["sample", "kind", "path", "pixel_size_um"],
    ["échantillon_1", "smear_raw", "données/acq 1", "0.333"],
    ["b", "smear_dpc", "~/dpc.png", ""],
]


@pytest.mark.parametrize("encoding, sep", [
    ("utf-8", "\t"), ("utf-8-sig", ","), ("utf-16", "\t"), ("utf-16-le", ";"), ("latin-1", ";"), ("cp1252", ","),
])
def test_sheet_encodings_separators_and_empty_rows(tmp_path, encoding, sep):
    rows = [list(r) for r in SHEET]
    if sep == ";":
        rows[1][3] = "0,333"  # a European Excel: decimal comma
    text = "\r\n".join(sep.join(r) for r in rows) + "\r\n" + (sep * 3 + "\r\n") * 2  # Excel's empty rows
    name = "samples.csv" if sep != "\t" else "samples.tsv"
    (tmp_path / name).write_bytes(text.encode(encoding))
    got = read_sample_sheet(tmp_path / name)
    assert [r["sample"] for r in got] == ["échantillon_1", "b"]
    assert got[0]["path"] == str(tmp_path / "données" / "acq 1")
    assert got[0]["pixel_size_um"] == pytest.approx(0.333) and got[1]["pixel_size_um"] is None
    assert got[1]["path"] == os.path.join(os.path.expanduser("~"), "dpc.png")
    assert got[1]["line"] == 3


def test_sheet_without_header_names_the_columns(tmp_path):
    (tmp_path / "s.tsv").write_text("a\tb\n1\t2\n")
    with pytest.raises(ScopeflowError, match="s.tsv: the first line does not name the columns sample, kind, path"):
        read_sample_sheet(tmp_path / "s.tsv")


# ------------------------------------------------------------------ the workflow


def test_copy_while_running_never_loses_or_half_processes(tmp_path):
    """2 of 4 FOVs copied, run, the rest and Octopi's 'done' copied, rerun: the partial
    acquisition is skipped, then processed alone, and its tables equal those of the complete
    folder. A copy that stalls past the quiet period is processed as found, then reprocessed
    alone when the rest arrives, with the same final tables."""
    from scopeflow.simulate import simulate_acquisition

    full = simulate_acquisition(tmp_path / "microscope", ny=1, nx=4, shape=(256, 256), seed=2)
    work = tmp_path / "run"
    drop = work / "drop"
    res = work / "results"
    shutil.copytree(full, drop / "reference")  # the complete folder, for comparison
    copy_fovs(full, drop / "octopi", ["0_0_0", "0_1_0"], done=False)  # Octopi writes 'done' last
    simulate_acquisition(drop / "steady", ny=1, nx=1, shape=(192, 192), seed=4)
    write_config(work, input_dir="drop", sharding={"fovs_per_job": 2}, readiness={"quiet_s": 3600})

    first = snakemake(work, "--cores", "2")
    said = first.stdout + first.stderr
    assert "sample octopi" in said and "not complete, skipped" in said
    assert not (res / "octopi").exists()  # never half-processed
    assert (res / "reference" / "sample.parquet").exists() and (res / "steady" / "sample.parquet").exists()

    copy_fovs(full, drop / "octopi", ["0_2_0", "0_3_0"], done=True)
    jobs = per_sample_jobs(work)
    assert {s for _, s in jobs} == {"octopi"}, jobs  # exactly that sample
    snakemake(work, "--cores", "2")
    assert per_sample_jobs(work) == set()

    # a copy without a marker that stalls past the quiet period (0 here) is processed as found
    copy_fovs(full, drop / "stalled", ["0_0_0", "0_1_0"], done=False)
    quiet0 = ("--config", "readiness={quiet_s: 0}")
    snakemake(work, "--cores", "2", *quiet0)
    assert len(pd.read_parquet(res / "stalled" / "fovs.parquet")) == 2
    assert ome_zarr.fov_names(res / "stalled" / "stalled.ome.zarr") == ["0-0_0_0", "0-0_1_0"]
    copy_fovs(full, drop / "stalled", ["0_2_0", "0_3_0"], done=False)
    jobs = per_sample_jobs(work, *quiet0)
    assert {s for _, s in jobs} == {"stalled"}, jobs
    assert {r for r, _ in jobs} >= {"ingest", "dpc", "segment", "measure", "merge_tables"}
    snakemake(work, "--cores", "2", *quiet0)
    assert per_sample_jobs(work, *quiet0) == set()

    for sample in ("octopi", "stalled"):
        fovs = pd.read_parquet(res / sample / "fovs.parquet")
        assert sorted(fovs["fov"]) == ome_zarr.fov_names(res / sample / f"{sample}.ome.zarr")
        assert len(fovs) == 4 and json.loads((res / sample / "qc.json").read_text())["n_fovs"] == 4
        for table in ("cells", "fovs", "sample"):
            pd.testing.assert_frame_equal(
                pd.read_parquet(res / "reference" / f"{table}.parquet").drop(columns="sample"),
                pd.read_parquet(res / sample / f"{table}.parquet").drop(columns="sample"),
            )
    assert len(pd.read_parquet(res / "samples.parquet")) == 4


def test_copy_between_planning_and_ingest_keeps_series_list_and_images_equal(tmp_path):
    """fovs_per_job 1, 2 FOVs planned, 2 more land before the ingest job starts: the run stores
    and measures the 2 planned FOVs (series list = images = tables); the next run redoes the
    sample with all 4, equal to the complete folder."""
    from scopeflow.simulate import simulate_acquisition

    work = tmp_path / "run"
    full = simulate_acquisition(work / "drop" / "reference", ny=1, nx=4, shape=(192, 192), seed=3)
    slide = work / "drop" / "slide"
    copy_fovs(full, slide, ["0_0_0", "0_1_0"], done=False)
    write_config(work, input_dir="drop", sharding={"fovs_per_job": 1})  # quiet period 0: ready
    env = dict(os.environ, SCOPEFLOW_TEST_COPY_AT_INGEST=f"{full}::{slide}",
               PYTHONPATH=os.pathsep.join([str(REPO / "tests" / "faults"), os.environ.get("PYTHONPATH", "")]))
    snakemake(work, "--cores", "2", env=env)
    res = work / "results" / "slide"
    assert len(list((slide / "0").glob("*.bmp"))) == 8  # the copy did land during the run
    assert ome_zarr.fov_names(res / "slide.ome.zarr") == ["0-0_0_0", "0-0_1_0"]
    assert sorted(pd.read_parquet(res / "fovs.parquet")["fov"]) == ["0-0_0_0", "0-0_1_0"]
    assert "2 FOVs arrived after the run was planned" in (res / "logs" / "ingest.log").read_text()
    jobs = per_sample_jobs(work)
    assert {s for _, s in jobs} == {"slide"} and ("dpc", "slide") in jobs, jobs
    snakemake(work, "--cores", "2")
    assert ome_zarr.fov_names(res / "slide.ome.zarr") == [f"0-0_{j}_0" for j in range(4)]
    for table in ("cells", "fovs", "sample"):
        pd.testing.assert_frame_equal(
            pd.read_parquet(work / "results" / "reference" / f"{table}.parquet").drop(columns="sample"),
            pd.read_parquet(res / f"{table}.parquet").drop(columns="sample"),
        )


@pytest.fixture(scope="module")
def bad_sheet_run(tmp_path_factory):
    """One run over a UTF-16, semicolon-separated sheet whose rows are mostly bad."""
    import imageio.v3 as iio
    import tifffile

    from scopeflow.simulate import simulate_acquisition

    work = tmp_path_factory.mktemp("bad_sheet")
    simulate_acquisition(work / "acq" / "good", ny=1, nx=2, shape=(256, 256), seed=1)
    black = simulate_acquisition(work / "acq" / "black", ny=1, nx=2, shape=(256, 256), seed=1)
    for f in (black / "0").glob("*.bmp"):
        iio.imwrite(f, np.zeros((256, 256), np.uint8))
    dpc = np.full((256, 256), 0.5, np.float32)
    dpc[100:110, 50:60] = np.nan
    tifffile.imwrite(work / "nan.tif", dpc)
    rows = [
        "sample;kind;path;pixel_size_um",
        "good;smear_raw;acq/good;",
        "tilde;smear_raw;~/scopeflow_no_such_folder_15/acq;",
        "wrong;smear_raw;acq/no_such;",
        "nokind;;acq/good;",
        "bad name;smear_raw;acq/good;",
        "black;smear_raw;acq/black;",
        "nan_dpc;smear_dpc;nan.tif;0,333",
        ";;;",
        ";;;",
    ]
    (work / "samples.csv").write_bytes(("\r\n".join(rows) + "\r\n").encode("utf-16"))
    write_config(work, samples="samples.csv")
    proc = snakemake(work, "--cores", "2", "--keep-going", check=False)
    return work, proc


@pytest.mark.parametrize("sample, needles", [
    ("tilde", [os.path.expanduser("~/scopeflow_no_such_folder_15/acq"), "does not exist"]),
    ("wrong", ["acq/no_such", "does not exist", "line 4"]),
    ("nokind", ["samples.csv line 5", "column kind"]),
    ("invalid_bad_name", ["samples.csv line 6", "'bad name'"]),
    ("black", ["acq/black", "black"]),
    ("nan_dpc", ["nan.tif", "NaN"]),
])
def test_bad_sheet_row_stops_only_its_sample(bad_sheet_run, sample, needles):
    work, proc = bad_sheet_run
    assert proc.returncode != 0
    res = work / "results" / sample
    errors = error_lines(res)
    assert len(errors) == 1, errors
    for needle in needles:
        assert needle in errors[0], errors[0]
    for name in ("cells.parquet", "fovs.parquet", "sample.parquet", "qc.json", "ingest/fovs.tsv"):
        assert not (res / name).exists()
    assert "Traceback" not in proc.stderr


def test_good_row_finishes_despite_bad_rows(bad_sheet_run):
    work, _ = bad_sheet_run
    assert len(pd.read_parquet(work / "results" / "good" / "fovs.parquet")) == 2
    made = {p.name for p in (work / "results").iterdir() if p.is_dir() and p.name != "logs"}
    assert made == {"good", "tilde", "wrong", "nokind", "invalid_bad_name", "black", "nan_dpc"}  # no empty rows
    assert not (work / "resources").exists()  # a sheet is given: no demo


@pytest.mark.parametrize("value, needle", [("", "empty"), ("/", "root"), ("drop/out", "inside input_dir")])
def test_dangerous_results_dir_is_refused(tmp_path, value, needle):
    (tmp_path / "drop").mkdir()
    write_config(tmp_path, input_dir="drop", results_dir=value)
    proc = snakemake(tmp_path, "-n", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "config key results_dir" in out and needle in out
    assert "Traceback" not in out


def test_nested_config_on_the_command_line_and_demo_only_when_asked(tmp_path):
    from scopeflow.simulate import simulate_acquisition

    simulate_acquisition(tmp_path / "drop" / "slide", ny=1, nx=3, shape=(128, 128), seed=1)
    cfg = write_config(tmp_path, input_dir="drop")
    cfg["demo"]["enabled"] = "auto"
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    jobs = per_sample_jobs(tmp_path)
    assert {s for _, s in jobs} == {"slide"}  # another input_dir: no demo
    proc = snakemake(tmp_path, "-n", "--cores", "2", "--config", "sharding={fovs_per_job: 1}",
                     "readiness={quiet_s: 0}")
    out = proc.stdout + proc.stderr
    assert "not of type" not in out
    table = out.split("Job stats:", 1)[1]
    assert any(line.split()[:2] == ["dpc", "3"] for line in table.splitlines() if line.strip())


def test_full_disk_during_a_run_then_rerun_gives_the_undisturbed_tables(tmp_path):
    """ENOSPC while a DPC job writes its FOV's chunks: one ERROR line naming the path, nothing
    marked complete; after space is freed, the rerun's tables equal an undisturbed run's."""
    runs = {}
    for name in ("undisturbed", "full"):
        work = tmp_path / name
        cfg = write_config(work, sharding={"fovs_per_job": 1})
        cfg["demo"].update(enabled=True, samples=1, ny=1, nx=2, size=256)
        cfg["demo"]["beads"]["enabled"] = False
        (work / "config.yaml").write_text(yaml.safe_dump(cfg))
        runs[name] = work
    snakemake(runs["undisturbed"], "--cores", "2")
    env = dict(os.environ, SCOPEFLOW_TEST_ENOSPC="demo_smear_1.ome.zarr/A/2/0/0/",
               PYTHONPATH=os.pathsep.join([str(REPO / "tests" / "faults"), os.environ.get("PYTHONPATH", "")]))
    full = runs["full"]
    proc = snakemake(full, "--cores", "2", check=False, env=env)
    res = full / "results" / "demo_smear_1"
    assert proc.returncode != 0
    errors = [line for line in (res / "logs" / "dpc.1.log").read_text().splitlines() if " ERROR " in line]
    assert len(errors) == 1 and "No space left on device [ENOSPC]" in errors[0], errors
    assert "demo_smear_1.ome.zarr/A/2/0/0/" in errors[0] and "free space" in errors[0]
    assert not (res / "shards" / "1" / "dpc.json").exists() and not (res / "cells.parquet").exists()
    snakemake(full, "--cores", "2")  # space freed
    for table in ("cells", "fovs", "sample"):
        pd.testing.assert_frame_equal(
            pd.read_parquet(runs["undisturbed"] / "results" / "demo_smear_1" / f"{table}.parquet"),
            pd.read_parquet(res / f"{table}.parquet"),
        )


def test_track_on_too_few_frames_is_one_line_error(tmp_path, capsys):
    import tifffile

    from scopeflow.cli import main

    frames = np.random.default_rng(0).poisson(10, (2, 64, 64)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "short.tif", frames)
    code = main(["track", str(tmp_path / "short.tif"), "-o", str(tmp_path / "t.csv"),
                 "--pixel-size", "0.2", "--fps", "20"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1, err
    assert "short.tif: 2 frame(s)" in err[0] and "at least 3 frames" in err[0]
    assert not (tmp_path / "t.csv").exists()


def test_os_error_is_one_line_naming_the_path():
    import errno

    from scopeflow.errors import os_error_line

    line = os_error_line(OSError(errno.ENOSPC, "No space left on device", "/data/x.zarr/c/0"))
    assert line.startswith("/data/x.zarr/c/0: No space left on device [ENOSPC]; free space")
    assert "\n" not in line


def test_nan_focus_never_passes_the_fov_check():
    from scopeflow.smear.qc.gates import fov_verdicts

    fovs = pd.DataFrame({"fov": ["a", "b", "c"], "n_cells": [50, 50, 50], "n_cells_border": [5, 5, 5],
                         "focus_laplacian_var": [1.0, np.nan, 1.1]})
    out = fov_verdicts(fovs)
    assert out["focus_pass"].tolist() == [True, False, True]
    assert not out["fov_pass"].iloc[1]


def test_tilde_in_the_sheet_setting_and_rows_is_the_home_folder(tmp_path):
    from scopeflow.simulate import simulate_acquisition

    home = tmp_path / "home"
    simulate_acquisition(home / "data" / "slide", ny=1, nx=2, shape=(128, 128), seed=1)
    (home / "sheet.tsv").write_text("sample\tkind\tpath\nslide\tsmear_raw\t~/data/slide\n")
    work = tmp_path / "work"
    write_config(work, samples="~/sheet.tsv")
    proc = snakemake(work, "-n", "--cores", "2", env=dict(os.environ, HOME=str(home)))
    assert "rule ingest:" in proc.stdout + proc.stderr
    record = json.loads((work / "results" / "slide" / "inputs.json").read_text())
    assert record["path"] == str(home / "data" / "slide") and len(record["files"]) > 4


def test_manifest_is_not_rewritten_while_another_run_holds_the_lock(tmp_path):
    """A cron run starting while a long run works must not rewrite a manifest the long run's
    outputs would then post-date (its new files would never be processed)."""
    from scopeflow.simulate import simulate_acquisition

    simulate_acquisition(tmp_path / "drop" / "slide", ny=1, nx=2, shape=(128, 128), seed=1)
    write_config(tmp_path, input_dir="drop")
    locks = tmp_path / ".snakemake" / "locks"
    locks.mkdir(parents=True)
    (locks / "0.input.lock").write_text("")
    proc = snakemake(tmp_path, "-n", "--cores", "2")
    assert "another snakemake run holds the lock" in proc.stdout + proc.stderr
    assert not (tmp_path / "results" / "slide" / "inputs.json").exists()
    (locks / "0.input.lock").unlink()
    snakemake(tmp_path, "-n", "--cores", "2")
    assert (tmp_path / "results" / "slide" / "inputs.json").exists()
