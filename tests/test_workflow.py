"""End-to-end tests of the Snakemake workflow on the simulated demo and on real DPC images."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scopeflow.io import ome_zarr

REPO = Path(__file__).resolve().parents[1]


def snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run the repository's workflow in ``workdir`` (outputs and demo data land there)."""
    cmd = [
        sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(workdir),
        "--configfile", str(workdir / "config.yaml"), *args,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    return proc


def scheduled_jobs(workdir: Path, *args: str) -> list[tuple[str, str]]:
    """(rule, sample-or-'') pairs a dry run would execute."""
    proc = snakemake(workdir, "-n", "--cores", "2", "--printshellcmds", *args)
    text = proc.stdout + proc.stderr
    jobs = []
    for block in re.split(r"\n(?=\S*rule )", text):
        m = re.search(r"rule (\w+):", block)
        if not m:
            continue
        w = re.search(r"wildcards: .*?(?:sample|demo_sample)=([^,\s]+)", block)
        jobs.append((m.group(1), w.group(1) if w else ""))
    return jobs


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """The default config, unchanged, run once with 2 cores."""
    work = tmp_path_factory.mktemp("demo")
    shutil.copy(REPO / "config.yaml", work / "config.yaml")
    snakemake(work, "--cores", "2")
    return work


def test_demo_produces_store_labels_and_tables(demo_run):
    for sample in ("demo_smear_1", "demo_smear_2"):
        res = demo_run / "results" / sample
        store = res / f"{sample}.ome.zarr"
        fovs = ome_zarr.fov_names(store)
        assert len(fovs) == 4
        cells = pd.read_parquet(res / "cells.parquet")
        fov_table = pd.read_parquet(res / "fovs.parquet")
        summary = pd.read_parquet(res / "sample.parquet")
        assert (res / "cells.csv").exists() and (res / "fovs.csv").exists()
        assert len(fov_table) == 4 and summary["n_cells"].iloc[0] == len(cells) > 100
        # cell_id is the cell's value in that FOV's labels/cells
        fov = fovs[0]
        labels = ome_zarr.read_labels(store, fov)
        sub = cells[cells["fov"] == fov]
        assert set(sub["cell_id"]) == set(np.unique(labels[labels > 0]))
        row = sub.iloc[len(sub) // 2]
        ys, xs = np.nonzero(labels == row["cell_id"])
        assert abs(ys.mean() - row["y_px"]) < 1e-6 and abs(xs.mean() - row["x_px"]) < 1e-6
        assert "phase" in ome_zarr.fov_attrs(store, fov)["channels"]
        assert (res / "logs" / "ingest.log").exists()
        for rule in ("dpc", "segment", "measure"):
            assert (res / "logs" / f"{rule}.0.log").exists()
        assert (res / "report" / "overview.png").stat().st_size > 10_000
        # QC: flags on every cell, verdicts on every FOV, the gate in the sample table and qc.json
        import json

        qc = json.loads((res / "qc.json").read_text())
        assert qc["qc_gate"] == summary["qc_gate"].iloc[0] and qc["n_fovs"] == 4
        assert cells["qc_pass"].sum() == summary["n_cells_qc_pass"].iloc[0] == qc["n_cells_qc_pass"] > 0
        assert ((cells["qc_reason"] == "").to_numpy(bool) == cells["qc_pass"].to_numpy(bool)).all()
        assert {"focus_pass", "count_pass", "fov_pass"} <= set(fov_table.columns)
        for fig in ("qc_gallery", "qc_focus_map", "qc_histograms"):
            assert (res / "report" / f"{fig}.png").stat().st_size > 10_000
    # samples.parquet lists the smear samples; the bead demo has its own bead_samples.parquet
    assert len(pd.read_parquet(demo_run / "results" / "samples.parquet")) == 2
    beads = pd.read_parquet(demo_run / "results" / "bead_samples.parquet")
    assert beads["sample"].tolist() == ["demo_beads"] and beads["n_tracks"].iloc[0] > 0


def _assert_stores_valid(results, n_stores):
    """Every store under ``results`` passes ome-zarr-models (strict) and yaozarrs with no
    warning, holds nothing foreign, and has its completion flag beside it."""
    import json

    from scopeflow.io.ngff_validate import foreign_files, validate_store

    stores = sorted(results.glob("*/*.ome.zarr"))
    assert len(stores) == n_stores, stores
    n_groups = 0
    for store in stores:
        reports = validate_store(store)
        n_groups += len(reports)
        bad = [(r.path, r.models_error, r.yaozarrs_error, r.yaozarrs_warnings) for r in reports if not r.ok]
        assert not bad, bad
        assert foreign_files(store) == []
        done = json.loads(store.with_name(store.name + ".done").read_text())
        assert done["store"] == store.name and done["ngff_version"] == "0.5"
    return n_groups


def test_stage_logs_give_each_jobs_start_up(demo_run):
    # process start to the first read of data (scopeflow._snakemake.StartupClock), per job
    res = demo_run / "results" / "demo_smear_1"
    for log, rule in (("segment.0.log", "segment"), ("measure.0.log", "measure"),
                      ("merge_tables.log", "merge_tables"), ("qc_report.log", "qc_report"),
                      ("sample_overview.log", "sample_overview")):
        text = (res / "logs" / log).read_text()
        m = re.search(rf"start-up {rule}: ([0-9.]+) s, ([0-9.]+) CPU-s \(process start to first read of (.+)\)",
                      text)
        assert m, f"{log}: no start-up line"
        assert float(m.group(1)) > 0 and float(m.group(2)) > 0
        assert Path(m.group(3)).is_relative_to(demo_run / "results" / "demo_smear_1"), m.group(3)
        # and what the whole job used (wall from process start, CPU with children, peak RSS)
        m = re.search(rf"used {rule}: ([0-9.]+) s, ([0-9.]+) CPU-s, ([0-9]+) MB peak", text)
        assert m, f"{log}: no 'used' line"
        assert float(m.group(1)) > 0 and float(m.group(2)) > 0 and int(m.group(3)) > 0


def test_demo_stores_pass_the_ngff_validators(demo_run):
    # 2 smear samples x (plate + 4 wells + 4 images + 4 labels groups + 4 label images) + the movie
    assert _assert_stores_valid(demo_run / "results", 3) == 2 * 17 + 1
    # napari opens the slide from its root: the 2 x 2 stage grid of 1024² FOVs, and the labels
    from test_ngff import _napari_layers

    store = demo_run / "results" / "demo_smear_1" / "demo_smear_1.ome.zarr"
    layers = _napari_layers(store)
    assert [k for _, _, k in layers] == ["image", "labels"]
    n_channels = len(ome_zarr.fov_attrs(store, "0-0_0_0")["channels"])  # dpc, phase (+ fluorescence)
    assert tuple(layers[0][0][0].shape) == (n_channels, 2048, 2048)
    assert layers[0][1]["scale"] == pytest.approx([0.333, 0.333])


def test_demo_segmentation_matches_simulator_truth(demo_run):
    from scopeflow.evaluate import evaluate
    from scopeflow.io.images import read_labels

    f1s = []
    for sample in ("demo_smear_1", "demo_smear_2"):
        store = demo_run / "results" / sample / f"{sample}.ome.zarr"
        for fov in ome_zarr.fov_names(store):
            ijk = fov.split("-", 1)[1]
            truth = read_labels(demo_run / "resources" / "demo" / sample / "truth" / f"{ijk}_labels.tif")
            f1s.append(evaluate(ome_zarr.read_labels(store, fov), truth)["f1"])
    assert np.mean(f1s) >= 0.85, f1s


def test_demo_parasitemia_infected_and_skipped_samples(demo_run):
    res = demo_run / "results"
    truth = pd.read_csv(demo_run / "resources" / "demo" / "demo_smear_1" / "truth" / "parasites.csv")
    n_rings = int((truth["kind"] == "ring").sum())
    one = pd.read_parquet(res / "demo_smear_1" / "parasitemia.parquet").iloc[0]
    assert one["status"] == "ok" and one["n_rbc_counted"] > 100
    # the path calls most simulated rings (the simulator's rings are not real parasites: ~80 %)
    assert 0.5 * n_rings <= one["n_parasites"] <= 1.2 * n_rings
    assert one["parasites_per_ul_low"] <= one["parasites_per_ul"] <= one["parasites_per_ul_high"]
    spots = pd.read_parquet(res / "demo_smear_1" / "spots.parquet")
    assert spots["is_parasite"].sum() >= one["n_parasites"] > 0
    store = res / "demo_smear_1" / "demo_smear_1.ome.zarr"
    fov = ome_zarr.fov_names(store)[0]
    assert {"fluorescence_r", "fluorescence_g", "fluorescence_b"} <= set(
        ome_zarr.fov_attrs(store, fov)["channels"])
    two = pd.read_parquet(res / "demo_smear_2" / "parasitemia.parquet").iloc[0]
    assert two["status"].startswith("skipped: no Fluorescence_405_nm_Ex")
    assert "fluorescence_r" not in ome_zarr.fov_attrs(
        res / "demo_smear_2" / "demo_smear_2.ome.zarr", fov)["channels"]
    both = pd.read_parquet(res / "parasitemia.parquet")
    assert both["sample"].tolist() == ["demo_smear_1", "demo_smear_2"]
    assert (res / "demo_smear_1" / "report" / "parasites.png").stat().st_size > 10_000


def test_report_collects_figures_and_tables(demo_run):
    snakemake(demo_run, "--report", "report.html")
    html = (demo_run / "report.html").read_text(errors="replace")
    assert "overview.png" in html and "samples.csv" in html
    assert "qc_gallery.png" in html and "qc_focus_map.png" in html and "qc_histograms.png" in html
    assert "tracks.png" in html and "bead_samples.csv" in html
    assert "parasites.png" in html and "parasitemia.csv" in html


def test_anndata_switch_writes_cells_h5ad(demo_run):
    import h5py
    import yaml

    cfg = yaml.safe_load((demo_run / "config.yaml").read_text())
    assert cfg["tables"]["anndata"] is False  # off by default
    assert "cells_anndata" not in {r for r, _ in scheduled_jobs(demo_run)}
    cfg["tables"]["anndata"] = True
    (demo_run / "anndata.yaml").write_text(yaml.safe_dump(cfg))
    # (mtime triggers only: the dumped config's reordered qc dict would count as new params)
    args = ("--configfile", str(demo_run / "anndata.yaml"), "--rerun-triggers", "mtime")
    jobs = scheduled_jobs(demo_run, *args)
    assert {r for r, _ in jobs} == {"cells_anndata", "all"}  # one job per smear sample, nothing else
    snakemake(demo_run, "--cores", "2", *args)
    res = demo_run / "results" / "demo_smear_1"
    cells = pd.read_parquet(res / "cells.parquet")
    with h5py.File(res / "cells.h5ad", "r") as f:
        assert f["obs"]["_index"].shape == (len(cells),)
        np.testing.assert_array_equal(f["obs"]["area_um2"][:], cells["area_um2"].to_numpy())
        np.testing.assert_array_equal(f["obsm"]["spatial"][:], cells[["x_um", "y_um"]].to_numpy())
    assert (res / "logs" / "cells_anndata.log").exists()


def test_second_run_does_nothing(demo_run):
    assert scheduled_jobs(demo_run) == []


def test_new_acquisition_runs_only_its_jobs(demo_run):
    from scopeflow.simulate import simulate_acquisition

    new = demo_run / "resources" / "demo" / "new_slide"
    simulate_acquisition(new, ny=1, nx=1, shape=(256, 256), seed=5)
    try:
        jobs = scheduled_jobs(demo_run)
        per_sample = {s for r, s in jobs if s}
        assert per_sample == {"new_slide"}, jobs
        assert {r for r, s in jobs if s} == {
            "ingest", "dpc", "segment", "finish_store", "measure", "merge_tables", "sample_overview",
            "qc_report", "parasites", "parasite_report",  # issue 21: parasitemia (skipped without the channel)
        }
        assert {r for r, s in jobs if not s} == {"summarize_samples", "summarize_parasitemia", "all"}
    finally:
        shutil.rmtree(new)


def test_segmentation_parameter_change_reruns_segment_not_dpc(demo_run):
    import yaml

    cfg = yaml.safe_load((demo_run / "config.yaml").read_text())
    cfg["segment"]["chunk"] = 512
    (demo_run / "changed.yaml").write_text(yaml.safe_dump(cfg))
    jobs = scheduled_jobs(demo_run, "--configfile", str(demo_run / "changed.yaml"))
    rules = {r for r, _ in jobs}
    assert "segment" in rules and "measure" in rules
    assert "ingest" not in rules and "dpc" not in rules


def test_backend_switch_reruns_segment_with_the_same_cells(demo_run, tmp_path):
    """segment.backend: torch instead of the default onnx: segment reruns, same cells."""
    import json

    import yaml

    work = tmp_path / "copy"
    shutil.copytree(demo_run, work)  # with .snakemake: parameter changes are detected
    cfg = yaml.safe_load((work / "config.yaml").read_text())
    assert cfg["segment"]["backend"] == "onnx"
    cfg["segment"]["backend"] = "torch"
    (work / "config.yaml").write_text(yaml.safe_dump(cfg))
    target = "results/demo_smear_1/cells.parquet"
    jobs = scheduled_jobs(work, target)
    assert "segment" in {r for r, _ in jobs} and "dpc" not in {r for r, _ in jobs}
    snakemake(work, "--cores", "2", target)
    record = json.loads((work / "results/demo_smear_1/shards/0/segmentation.json").read_text())
    assert record["params"]["backend"] == "torch"
    before = pd.read_parquet(demo_run / target)
    after = pd.read_parquet(work / target)
    assert len(after) == len(before) > 100
    np.testing.assert_array_equal(after["area_px"].to_numpy(), before["area_px"].to_numpy())


def test_fovs_are_sharded_into_jobs(demo_run):
    import yaml

    cfg = yaml.safe_load((demo_run / "config.yaml").read_text())
    cfg["sharding"] = {"fovs_per_job": 3}
    (demo_run / "sharded.yaml").write_text(yaml.safe_dump(cfg))
    jobs = scheduled_jobs(demo_run, "--configfile", str(demo_run / "sharded.yaml"), "--forceall")
    for rule in ("dpc", "segment", "measure"):
        assert sum(1 for r, s in jobs if r == rule and s == "demo_smear_1") == 2  # 4 FOVs / 3
    assert sum(1 for r, s in jobs if r == "ingest") == 2


# ---------------------------------------------------------------- bad input


def _write_config(work: Path, **overrides) -> None:
    import yaml

    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    cfg["demo"]["enabled"] = False
    cfg["readiness"]["quiet_s"] = 0  # inputs are made just before the run: process them at once
    cfg.update(overrides)
    (work / "config.yaml").write_text(yaml.safe_dump(cfg))


@pytest.fixture(scope="module")
def bad_inputs_run(tmp_path_factory):
    from scopeflow.simulate import simulate_acquisition

    work = tmp_path_factory.mktemp("bad")
    acq = work / "acquisitions"
    for name in ("good", "no_right", "truncated", "sizes", "fluor_missing", "fluor_wrong"):
        simulate_acquisition(acq / name, ny=1, nx=2, shape=(256, 256), seed=1)
    from scopeflow.simulate.parasites import add_fluorescence

    for name in ("fluor_missing", "fluor_wrong"):
        add_fluorescence(acq / name, parasites_per_ul=1e5, seed=1)
    sorted((acq / "fluor_missing" / "0").glob("*Fluorescence*"))[1].unlink()
    for f in (acq / "no_right" / "0").glob("*right_half*"):
        f.unlink()
    victim = sorted((acq / "truncated" / "0").glob("*left_half.bmp"))[0]
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    import imageio.v3 as iio

    small = sorted((acq / "sizes" / "0").glob("*right_half.bmp"))[0]
    iio.imwrite(small, np.zeros((128, 128), np.uint8))
    wrong = sorted((acq / "fluor_wrong" / "0").glob("*Fluorescence*"))[0]
    iio.imwrite(wrong, np.zeros((64, 64, 3), np.uint8), extension=".bmp")
    (acq / "empty").mkdir()
    # issue 15: a folder name that cannot be a sample name, and an all-black acquisition
    shutil.copytree(acq / "good", acq / "run{1}")
    simulate_acquisition(acq / "black", ny=1, nx=2, shape=(256, 256), seed=1)
    for f in (acq / "black" / "0").glob("*.bmp"):
        iio.imwrite(f, np.zeros((256, 256), np.uint8))
    _write_config(work, input_dir="acquisitions")
    proc = snakemake(work, "--cores", "2", "--keep-going", check=False)
    return work, proc


@pytest.mark.parametrize(
    "sample, needle",
    [
        ("no_right", "right"),
        ("truncated", "left_half.bmp"),
        ("sizes", "right_half.bmp"),
        ("empty", "empty"),
        ("fluor_missing", "0_1_0_Fluorescence_405_nm_Ex"),
        ("fluor_wrong", "0_0_0_Fluorescence_405_nm_Ex.bmp"),
        ("invalid_run_1", "run{1}"),
        ("black", "black"),
    ],
)
def test_bad_sample_fails_with_one_line_and_nothing_complete(bad_inputs_run, sample, needle):
    work, proc = bad_inputs_run
    assert proc.returncode != 0
    res = work / "results" / sample
    assert not (res / "cells.parquet").exists()
    assert not (res / "ingest" / "fovs.tsv").exists() or not (res / f"{sample}.ome.zarr").exists()
    logs = list((res / "logs").glob("*.log"))
    errors = [line for log in logs for line in log.read_text().splitlines() if " ERROR " in line]
    assert len(errors) == 1, (logs, errors)
    assert needle in errors[0]
    assert "Traceback" not in "".join(log.read_text() for log in logs)


def test_good_sample_finishes_despite_bad_ones(bad_inputs_run):
    work, _ = bad_inputs_run
    assert (work / "results" / "good" / "cells.parquet").exists()
    # no fluorescence channel: parasitemia is skipped, saying so
    row = pd.read_parquet(work / "results" / "good" / "parasitemia.parquet").iloc[0]
    assert row["status"].startswith("skipped:")


def test_unknown_config_key_names_it(tmp_path):
    _write_config(tmp_path)
    proc = snakemake(tmp_path, "-n", "--config", "segmnet=512", check=False)
    assert proc.returncode != 0
    assert "segmnet" in proc.stderr + proc.stdout


def test_wrong_config_type_names_key(tmp_path):
    _write_config(tmp_path, segment={"chunk": "big"})
    proc = snakemake(tmp_path, "-n", check=False)
    assert proc.returncode != 0
    assert "segment.chunk" in proc.stderr + proc.stdout


def test_missing_sample_sheet_names_it(tmp_path):
    _write_config(tmp_path)
    proc = snakemake(tmp_path, "-n", "--config", "samples=my_samples.tsv", check=False)
    assert proc.returncode != 0
    out = proc.stderr + proc.stdout
    assert "my_samples.tsv" in out and "does not exist" in out


def test_sample_sheet_with_real_dpc_images_runs(tmp_path, shared):
    import imageio.v3 as iio
    from test_ngff import write_foreign_v04

    png = shared / "octopi_rbc_dpc_m2unet/images/dpc_1024_00.png"
    # the same DPC image as an NGFF 0.4 store another program (ome-zarr-py) wrote
    ngff = write_foreign_v04(tmp_path / "dpc_1024_00.ome.zarr", iio.imread(png), 0.333)
    sheet = tmp_path / "samples.tsv"
    sheet.write_text(
        "sample\tkind\tpath\tpixel_size_um\n"
        f"octopi_1024\tsmear_dpc\t{png}\t0.333\n"
        f"harness\tsmear_dpc\t{shared / 'octopi_rbc_dpc_harness/images'}\t0.333\n"
        f"ngff_1024\tsmear_dpc\t{ngff}\t\n"
    )
    _write_config(tmp_path)
    snakemake(tmp_path, "--cores", "2", "--config", f"samples={sheet}")
    harness = pd.read_parquet(tmp_path / "results" / "harness" / "fovs.parquet")
    assert len(harness) == 10 and (harness["n_cells"] > 0).all()
    cells = pd.read_parquet(tmp_path / "results" / "octopi_1024" / "cells.parquet")
    assert len(cells) > 100
    # smear_dpc stores: 1, 10 and 1 FOVs (plate + wells + images + labels groups + label images)
    assert _assert_stores_valid(tmp_path / "results", 3) == 2 * (1 + 4 * 1) + (1 + 4 * 10)
    # read through the NGFF reader (pixel size from its own scale): the same cells as the PNG
    from_ngff = pd.read_parquet(tmp_path / "results" / "ngff_1024" / "cells.parquet")
    pd.testing.assert_frame_equal(from_ngff.drop(columns="sample"), cells.drop(columns="sample"))


def test_two_runs_give_identical_tables(tmp_path):
    import yaml

    runs = []
    for name in ("a", "b"):
        work = tmp_path / name
        work.mkdir()
        cfg = yaml.safe_load((REPO / "config.yaml").read_text())
        cfg["demo"].update(samples=1, ny=1, nx=2, size=384)
        cfg["demo"]["beads"]["enabled"] = False  # bead tables: test_workflow_beads.py
        (work / "config.yaml").write_text(yaml.safe_dump(cfg))
        snakemake(work, "--cores", "2")
        runs.append(work / "results" / "demo_smear_1")
    for table in ("cells", "fovs", "sample"):
        pd.testing.assert_frame_equal(
            pd.read_parquet(runs[0] / f"{table}.parquet"), pd.read_parquet(runs[1] / f"{table}.parquet")
        )
    np.testing.assert_array_equal(
        ome_zarr.read_labels(runs[0] / "demo_smear_1.ome.zarr", "0-0_1_0"),
        ome_zarr.read_labels(runs[1] / "demo_smear_1.ome.zarr", "0-0_1_0"),
    )
