"""One simulated acquisition (2 regions x 4 FOVs x 3 z planes x 2 time points, 12-bit data in
uint16) written in the legacy Octopi layout and in Squid's four save modes gives identical cell,
FOV and sample tables, through the library and through Snakemake; broken Squid inputs fail
alone with one line naming the file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scopeflow import smear as pl
from scopeflow.simulate.squid import LAYOUTS, simulate_squid_frames, write_layout

from test_workflow import _write_config, snakemake

TABLES = ("cells", "fovs", "sample")
SIM = dict(regions=("A1", "B2"), n_fovs=4, nz=3, nt=2, shape=(128, 128), seed=5, bits=12)


@pytest.fixture(scope="module")
def acquisitions(tmp_path_factory):
    root = tmp_path_factory.mktemp("layouts")
    sim = simulate_squid_frames(**SIM)
    paths = {lay: write_layout(root / lay, sim, lay) for lay in LAYOUTS}
    return root, sim, paths


def _library_tables(acq: Path, res: Path, **ingest) -> dict[str, pd.DataFrame]:
    pl.ingest("smear_raw", acq, res / "fovs.tsv", res / "ff.npz", **ingest)
    pl.create_store(res / "fovs.tsv", res / "s.ome.zarr")
    pl.write_images(res / "fovs.tsv", res / "ff.npz", res / "s.ome.zarr", res / "dpc.json")
    pl.segment_store(res / "s.ome.zarr", res / "seg.json", method="classical")
    pl.measure_store(res / "s.ome.zarr", res / "seg.json", res / "c.parquet", res / "f.parquet", sample="s")
    pl.merge_tables([res / "c.parquet"], [res / "f.parquet"], res / "s.ome.zarr", res / "cells.parquet",
                    res / "fovs.parquet", res / "sample.parquet", sample="s")
    return {t: pd.read_parquet(res / f"{t}.parquet") for t in TABLES}


def test_every_layout_gives_identical_tables_through_the_library(acquisitions, tmp_path):
    _, sim, paths = acquisitions
    out = {lay: _library_tables(p, tmp_path / lay) for lay, p in paths.items()}
    ref = out["octopi"]
    for lay in LAYOUTS[1:]:
        for t in TABLES:
            pd.testing.assert_frame_equal(ref[t], out[lay][t], obj=f"{lay} {t}")
    fovs = ref["fovs"]
    # 2 regions x 4 FOVs x 2 time points, one plane each (best focus of 3)
    assert len(fovs) == 16 and set(fovs["region"]) == {"A1", "B2"} and set(fovs["t"]) == {0, 1}
    assert (fovs["n_z"] == 3).all() and (fovs["z_selection"] == "best_focus").all()
    assert fovs["fov"].str.match(r"^[01]-(A1|B2)_[0-3]_0_[0-2]$").all()
    assert (fovs["bit_depth"] == 12).all() and fovs["pixel_size_um"].eq(0.333).all()
    truth = [sim["focus"][(r, int(i))] for r, i in zip(fovs["region"], fovs["i"])]
    assert (fovs["k"].to_numpy() == np.asarray(truth)).mean() >= 0.95
    assert fovs["x_mm"].notna().all() and fovs["z_um"].notna().all()
    assert len(ref["cells"]) > 100
    sample = ref["sample"]
    assert list(sample["region"]) == ["", "A1", "B2"]
    assert sample["n_fovs"].tolist() == [16, 8, 8]
    assert sample["n_cells"].iloc[0] == sample["n_cells"].iloc[1:].sum()


def test_best_focus_finds_the_in_focus_plane(tmp_path):
    """>= 95 % of 48 stacks (3 planes 4 um apart, random in-focus plane) through ingest."""
    sim = simulate_squid_frames(regions=("A1", "A2", "B1"), n_fovs=16, nz=3, nt=1, shape=(128, 128),
                                seed=11, bits=12)
    acq = write_layout(tmp_path / "acq", sim, "ome_tiff")
    fovs = pl.ingest("smear_raw", acq, tmp_path / "fovs.tsv", tmp_path / "ff.npz", flatfield=False)
    truth = np.asarray([sim["focus"][(r, int(i))] for r, i in zip(fovs["region"], fovs["i"])])
    hit = float((fovs["k"].to_numpy() == truth).mean())
    print(f"best focus picks the in-focus plane in {hit:.1%} of {len(fovs)} FOVs")
    assert len(fovs) == 48 and hit >= 0.95
    assert set(truth) == {0, 1, 2}  # the in-focus plane is not always the same one


def test_zstack_all_and_index(acquisitions, tmp_path):
    _, _, paths = acquisitions
    every = pl.ingest("smear_raw", paths["zarr"], tmp_path / "a.tsv", tmp_path / "a.npz",
                      flatfield=False, zstack="all")
    assert len(every) == 48 and (every["z_selection"] == "all").all()
    first = pl.ingest("smear_raw", paths["zarr"], tmp_path / "i.tsv", tmp_path / "i.npz",
                      flatfield=False, zstack=2, regions=["B2"])
    assert len(first) == 8 and (first["k"] == 2).all() and (first["region"] == "B2").all()
    assert (first["z_selection"] == "index").all()


# ---------------------------------------------------------------- through Snakemake


def _break_inputs(root: Path, sim: dict) -> None:
    """A truncated OME-TIFF, a Zarr store without acquisition_complete, an unknown save mode."""
    bad = write_layout(root / "bad_ome", sim, "ome_tiff")
    victim = bad / "ome_tiff" / "B2_1.ome.tiff"
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    bad = write_layout(root / "bad_zarr", sim, "zarr")
    meta = bad / "plate.ome.zarr" / "A" / "1" / "2" / "zarr.json"
    doc = json.loads(meta.read_text())
    doc["attributes"]["_squid"]["acquisition_complete"] = False
    meta.write_text(json.dumps(doc))
    odd = root / "bad_mode"
    (odd / "0").mkdir(parents=True)
    (odd / "acquisition parameters.json").write_text(json.dumps({"Nz": 1}))
    (odd / "0" / "A1_0_0.nd2").write_bytes(b"\0" * 64)


@pytest.fixture(scope="module")
def workflow_run(acquisitions):
    root, sim, paths = acquisitions
    _break_inputs(root, sim)
    work = root / "work"
    work.mkdir()
    sheet = work / "samples.tsv"
    rows = [f"{lay}\tsmear_raw\t{p}\t" for lay, p in paths.items()]
    rows.append(f"octopi_B2\tsmear_raw\t{paths['octopi']}\tB2")
    rows += [f"{b}\tsmear_raw\t{root / b}\t" for b in ("bad_ome", "bad_zarr", "bad_mode")]
    sheet.write_text("sample\tkind\tpath\tregions\n" + "\n".join(rows) + "\n")
    _write_config(work, samples=str(sheet), segment={"method": "classical"})
    # tables, not figures; bad_zarr waits for acquisition_complete (planning skips it): no target
    samples = [r.split("\t")[0] for r in rows if not r.startswith("bad_zarr")]
    targets = [f"results/{s}/{t}.parquet" for s in samples for t in TABLES]
    proc = snakemake(work, "--cores", "2", "--keep-going", *targets, check=False)
    return work, proc


def test_every_layout_gives_identical_tables_through_snakemake(workflow_run):
    work, _ = workflow_run
    res = work / "results"
    out = {lay: {t: pd.read_parquet(res / lay / f"{t}.parquet") for t in TABLES} for lay in LAYOUTS}
    for lay in LAYOUTS:
        for t in TABLES:
            df = out[lay][t]
            df["sample"] = "s"  # the sample name differs by construction
            if lay != "octopi":
                pd.testing.assert_frame_equal(out["octopi"][t], df, obj=f"{lay} {t}")
    assert len(out["octopi"]["fovs"]) == 16
    assert list(out["octopi"]["sample"]["region"]) == ["", "A1", "B2"]
    # a sheet row can select regions: the B2 row equals the B2 rows of the whole acquisition
    b2 = pd.read_parquet(res / "octopi_B2" / "fovs.parquet")
    whole = out["octopi"]["fovs"]
    assert set(b2["region"]) == {"B2"} and sorted(b2["fov"]) == sorted(whole.loc[whole["region"] == "B2", "fov"])
    b2_sample = pd.read_parquet(res / "octopi_B2" / "sample.parquet")
    assert list(b2_sample["region"]) == ["", "B2"] and b2_sample["n_fovs"].tolist() == [8, 8]


def test_zarr_without_acquisition_complete_waits_with_one_line(workflow_run):
    """Planning (scopeflow.io.readiness) skips the store until Squid marks it complete; the
    library reader refuses it with the same file named (test_squid_io)."""
    work, proc = workflow_run
    lines = [ln for ln in proc.stderr.splitlines() if "sample bad_zarr" in ln]
    assert len(lines) == 1 and "plate.ome.zarr/A/1/2" in lines[0] and "acquisition_complete" in lines[0]
    assert not (work / "results" / "bad_zarr" / "cells.parquet").exists()


@pytest.mark.parametrize("sample, needle", [
    ("bad_ome", "B2_1.ome.tiff"),
    ("bad_mode", "A1_0_0.nd2"),
])
def test_broken_squid_input_fails_alone_with_one_line(workflow_run, sample, needle):
    work, proc = workflow_run
    assert proc.returncode != 0
    res = work / "results" / sample
    assert not (res / "cells.parquet").exists()
    logs = list((res / "logs").glob("*.log"))
    errors = [line for log in logs for line in log.read_text().splitlines() if " ERROR " in line]
    assert len(errors) == 1, errors
    assert needle in errors[0], errors[0]
    assert "Traceback" not in "".join(log.read_text() for log in logs)


def test_demo_and_cli_write_squid_layouts(tmp_path):
    import yaml

    from scopeflow.cli import main
    from scopeflow.io.squid import read_acquisition

    from test_workflow import REPO

    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    cfg["demo"].update(samples=1, ny=1, nx=2, size=128, layout="ome_tiff", nz=2, nt=2)
    cfg["demo"]["beads"]["enabled"] = False
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    snakemake(tmp_path, "--cores", "1", "resources/demo/demo_smear_1")
    acq = read_acquisition(tmp_path / "resources" / "demo" / "demo_smear_1")
    assert acq.save_mode == "OME_TIFF" and acq.bit_depth == 12
    assert {f.region for f in acq.fovs} == {"A1", "B1"} and len(acq.fovs) == 2 * 2 * 2 * 2

    for layout, mode in (("multipage", "MULTI_PAGE_TIFF"), ("zarr", "ZARR_V3")):
        out = tmp_path / layout
        assert main(["simulate", str(out), "--layout", layout, "--regions", "A1,A2,A3", "--ny", "1",
                     "--nx", "1", "--nz", "2", "--size", "64"]) == 0
        acq = read_acquisition(out)
        assert acq.save_mode == mode and len(acq.fovs) == 3 * 2


def test_objective_from_the_metadata_in_fov_and_sample_tables(acquisitions, tmp_path):
    """The objective named in the metadata ("20x" for 0.333 um pixels) is a FOV and a sample
    column; without it in the metadata the column is empty."""
    root, sim, paths = acquisitions
    out = _library_tables(paths["multipage"], tmp_path / "mp")
    assert (out["fovs"]["objective"] == "20x").all()
    assert (out["sample"]["objective"] == "20x").all()
    bare = write_layout(tmp_path / "bare", sim, "zarr")
    params = json.loads((bare / "acquisition parameters.json").read_text())
    del params["objective"]
    (bare / "acquisition parameters.json").write_text(json.dumps(params))
    fovs = pl.ingest("smear_raw", bare, tmp_path / "b.tsv", tmp_path / "b.npz", flatfield=False)
    assert (fovs["objective"] == "20x").all()  # Squid's acquisition_channels.yaml names it too
    (bare / "acquisition_channels.yaml").unlink()
    fovs = pl.ingest("smear_raw", bare, tmp_path / "c.tsv", tmp_path / "c.npz", flatfield=False)
    assert (fovs["objective"] == "").all()


def test_fluorescence_channel_in_every_layout_gives_the_same_parasitemia(tmp_path):
    """The 405 nm fluorescence channel is read from every layout (individual files and the
    planes of multi-page TIFF, OME-TIFF and Zarr containers): identical spot and parasitemia
    tables."""
    from scopeflow.parasites.stage import parasites_sample

    sim = simulate_squid_frames(regions=("A1", "B1"), n_fovs=2, nz=2, nt=1, shape=(128, 128), seed=8,
                                bits=12, parasites_per_ul=1e6)
    assert sum(sim["rings"].values()) > 0
    out = {}
    for lay in LAYOUTS:
        acq = write_layout(tmp_path / lay, sim, lay)
        res = tmp_path / f"res_{lay}"
        tabs = _library_tables(acq, res, fluorescence_channel="Fluorescence_405_nm_Ex")
        assert (tabs["fovs"]["bit_depth"] == 12).all()  # the MONO16 fluorescence channel does not count
        parasites_sample(res / "s.ome.zarr", res / "cells.parquet", res / "fovs.tsv", res / "spots.parquet",
                         res / "pfovs.parquet", res / "psample.parquet", sample="s")
        out[lay] = {t: pd.read_parquet(res / f"{t}.parquet") for t in ("spots", "pfovs", "psample")}
    ref = out["octopi"]
    assert len(ref["spots"]) > 0 and ref["psample"]["status"].iloc[0] == "ok", ref["psample"].iloc[0].to_dict()
    for lay in LAYOUTS[1:]:
        for t in ref:
            pd.testing.assert_frame_equal(ref[t], out[lay][t], obj=f"{lay} {t}")


def test_zarr_that_never_completes_fails_alone_through_snakemake(tmp_path):
    """readiness.stalled_s: a store whose writer stopped (no acquisition_complete, no change) and
    an aborted one fail with one line naming their zarr.json; the good sample finishes."""
    sim = simulate_squid_frames(regions=("A1",), n_fovs=1, nz=1, nt=1, shape=(128, 128), seed=2, bits=12)
    root = tmp_path / "acq"
    write_layout(root / "good", sim, "zarr")
    for name, extra in (("stalled", {}), ("aborted", {"aborted": True})):
        meta = write_layout(root / name, sim, "zarr") / "plate.ome.zarr" / "A" / "1" / "0" / "zarr.json"
        doc = json.loads(meta.read_text())
        doc["attributes"]["_squid"].update({"acquisition_complete": False, **extra})
        meta.write_text(json.dumps(doc))
    work = tmp_path / "work"
    work.mkdir()
    _write_config(work, input_dir=str(root), segment={"method": "classical"},
                  readiness={"quiet_s": 0, "stalled_s": 0}, parasites={"enabled": False})
    proc = snakemake(work, "--cores", "2", "--keep-going", check=False)
    res = work / "results"
    assert proc.returncode != 0
    assert len(pd.read_parquet(res / "good" / "fovs.parquet")) == 1
    for name, needle in (("stalled", "readiness.stalled_s"), ("aborted", "aborted")):
        assert not (res / name / "cells.parquet").exists()
        logs = list((res / name / "logs").glob("*.log"))
        errors = [ln for log in logs for ln in log.read_text().splitlines() if " ERROR " in ln]
        assert len(errors) == 1, errors
        assert f"{name}/plate.ome.zarr/A/1/0/zarr.json" in errors[0] and needle in errors[0], errors[0]
