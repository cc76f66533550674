"""Bead tracking end to end: the simulated bead demo and real frames through Snakemake, bad
movies, discovery, and the ``scopeflow locate`` / ``scopeflow track`` commands."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
import yaml

from scopeflow.io.discover import BEADS_MARKER, detect_kind
from scopeflow.io.tables import read_provenance

REPO = Path(__file__).resolve().parents[1]
BULK_MPP = 100 / 285  # trackpy walkthrough: 1 µm = 2.85 px
BULK_FPS = 24.0

TRACK_COLUMNS = ["sample", "particle", "frame", "y_px", "x_px", "y_um", "x_um"]


def snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory",
           str(workdir), "--configfile", str(workdir / "config.yaml"), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n"
                             f"{proc.stderr[-6000:]}")
    return proc


def scheduled_rules(workdir: Path, *args: str) -> set[str]:
    """Rules a dry run would execute."""
    proc = snakemake(workdir, "-n", "--cores", "2", *args)
    text = proc.stdout + proc.stderr
    if "Nothing to be done" in text:
        return set()
    table = text.split("Job stats:", 1)[1].split("total", 1)[0]
    return {line.split()[0] for line in table.splitlines()[3:] if line.strip()}


def write_config(work: Path, **sections) -> dict:
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    cfg["readiness"]["quiet_s"] = 0  # movies are made just before the run: process them at once
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key].update(value)
        else:
            cfg[key] = value
    work.mkdir(parents=True, exist_ok=True)
    (work / "config.yaml").write_text(yaml.safe_dump(cfg))
    return cfg


def small_movie(n_frames=30, size=96, n_beads=12, seed=3):
    from scopeflow.simulate.beads import simulate_movie

    return simulate_movie(n_frames, (size, size), n_beads, 0.3, 0.2, 20.0, photons=(800, 2000),
                          background=10.0, seed=seed)


# ------------------------------------------------------------------ the bead demo


@pytest.fixture(scope="module")
def bead_demo(tmp_path_factory):
    """The default config with the smear demo switched off: only demo_beads runs."""
    work = tmp_path_factory.mktemp("beads_demo")
    write_config(work, demo={"samples": 0})
    snakemake(work, "--cores", "2")
    return work


def test_bead_demo_outputs_and_columns(bead_demo):
    res = bead_demo / "results" / "demo_beads"
    for name in ("localizations", "tracks", "diffusion", "msd", "sample"):
        assert (res / f"{name}.parquet").is_file() and (res / f"{name}.csv").is_file(), name
    locs = pd.read_parquet(res / "localizations.parquet")
    assert list(locs.columns[:4]) == ["sample", "frame", "y_px", "x_px"]
    assert {"photons", "background", "ep_px", "snr"} <= set(locs.columns)
    tracks = pd.read_parquet(res / "tracks.parquet")
    assert list(tracks.columns[:7]) == TRACK_COLUMNS
    assert {"t_s", "ep_px", "drift_y_px", "drift_x_px"} <= set(tracks.columns)
    assert (tracks["sample"] == "demo_beads").all()
    np.testing.assert_allclose(tracks["y_um"], tracks["y_px"] * 0.35)
    summary = pd.read_parquet(res / "sample.parquet")
    assert summary["min_length"].iloc[0] == 11  # track.min_length auto = fit_lags 10 + 1
    assert tracks.groupby("particle").size().min() >= 11
    diff = pd.read_parquet(res / "diffusion.parquet")
    assert list(diff.columns[:4]) == ["sample", "particle", "n_frames", "D_um2_s"]
    assert set(diff["particle"]) == set(tracks["particle"])
    msd = pd.read_parquet(res / "msd.parquet")
    assert list(msd.columns[:4]) == ["sample", "lag", "lag_s", "msd_um2"]
    assert msd["lag"].iloc[0] == 1 and msd["lag_s"].iloc[0] == pytest.approx(1 / 24)
    assert len(summary) == 1 and summary["n_tracks"].iloc[0] == tracks["particle"].nunique()
    assert summary["detector"].iloc[0] == "matched_filter"  # track.model: none (default)
    everything = pd.read_parquet(bead_demo / "results" / "bead_samples.parquet")
    pd.testing.assert_frame_equal(everything, summary)
    assert not (bead_demo / "results" / "samples.parquet").exists()  # no smear sample
    assert (res / "report" / "tracks.png").stat().st_size > 20_000
    for rule in ("ingest_beads", "locate_beads", "track_beads", "bead_figure"):
        assert (res / "logs" / f"{rule}.log").is_file()
    for rule in ("ingest_beads", "locate_beads", "track_beads"):
        assert (res / "benchmarks" / f"{rule}.tsv").is_file()
    prov = read_provenance(res / "sample.parquet")
    assert "beadnet" not in prov.get("models", {}) and prov["config_sha256"]  # no network used
    assert prov["locate"]["detector"] == "matched_filter" and prov["locate"]["model_sha256"] is None
    assert prov["movie"]["pixel_size_um"] == 0.35 and prov["movie"]["fps_from"] == "metadata"
    assert prov["track"]["min_length"] == "auto"


def test_bead_demo_store_is_ome_zarr_with_time_axis(bead_demo):
    import zarr

    root = zarr.open_group(str(bead_demo / "results" / "demo_beads" / "demo_beads.ome.zarr"),
                           mode="r")
    ms = root.attrs["ome"]["multiscales"][0]
    assert [a["name"] for a in ms["axes"]] == ["t", "y", "x"]
    scale = ms["datasets"][0]["coordinateTransformations"][0]["scale"]
    assert scale == pytest.approx([1 / 24, 0.35, 0.35])
    assert root["0"].shape == (40, 256, 256) and root["0"].dtype == np.uint16
    attrs = root.attrs["scopeflow"]
    assert attrs["pixel_size_um"] == 0.35 and attrs["fps"] == 24.0 and attrs["n_frames"] == 40
    frames = sorted((bead_demo / "resources" / "demo" / "demo_beads").glob("*.tif"))
    np.testing.assert_array_equal(root["0"][7], tifffile.imread(frames[7]))
    # strict NGFF 0.5: dimension_names, validators, nothing foreign inside, flag beside it
    from scopeflow.io.ngff_validate import foreign_files, validate_store

    store = bead_demo / "results" / "demo_beads" / "demo_beads.ome.zarr"
    assert root["0"].metadata.dimension_names == ("t", "y", "x")
    reports = validate_store(store)
    assert len(reports) == 1 and reports[0].ok, reports
    assert foreign_files(store) == []
    assert json.loads(store.with_name(store.name + ".done").read_text())["n_frames"] == 40


def test_bead_demo_recovers_simulated_diffusion(bead_demo):
    from scopeflow.track.beadnet import match_points

    movie = bead_demo / "resources" / "demo" / "demo_beads"
    sim = json.loads((movie / BEADS_MARKER).read_text())["simulation"]
    summary = pd.read_parquet(bead_demo / "results" / "demo_beads" / "sample.parquet").iloc[0]
    assert summary["D_um2_s"] == pytest.approx(sim["D_um2_s"], rel=0.10)
    assert 0.8 < summary["exponent"] < 1.2
    truth = pd.read_csv(movie / "truth.csv")
    locs = pd.read_parquet(bead_demo / "results" / "demo_beads" / "localizations.parquet")
    t0, l0 = truth[truth.frame == 0], locs[locs.frame == 0]
    i, j = match_points(l0[["y_px", "x_px"]].to_numpy(), t0[["y", "x"]].to_numpy(), 1.0)
    assert len(j) >= 0.9 * len(t0)
    err = l0[["y_px", "x_px"]].to_numpy()[i] - t0[["y", "x"]].to_numpy()[j]
    assert np.sqrt((err**2).mean()) < 0.2  # px


def test_bead_demo_is_discovered_and_second_run_does_nothing(bead_demo):
    assert detect_kind(bead_demo / "resources" / "demo" / "demo_beads") == "beads"
    assert scheduled_rules(bead_demo) == set()


def test_new_bead_movie_runs_only_its_jobs(bead_demo):
    import re

    movie, _ = small_movie(n_frames=3)
    new = bead_demo / "resources" / "demo" / "new_movie"
    new.mkdir()
    try:
        for t, frame in enumerate(movie):
            tifffile.imwrite(new / f"t{t}.tif", frame)
        (new / BEADS_MARKER).write_text('{"pixel_size_um": 0.2, "fps": 20}')
        proc = snakemake(bead_demo, "-n", "--cores", "2")
        jobs = []
        for block in re.split(r"\n(?=\S*rule )", proc.stdout + proc.stderr):
            m = re.search(r"rule (\w+):", block)
            if m:
                w = re.search(r"wildcards: .*?sample=([^,\s]+)", block)
                jobs.append((m.group(1), w.group(1) if w else ""))
        assert {s for _, s in jobs if s} == {"new_movie"}, jobs
        assert {r for r, s in jobs if s} == {"ingest_beads", "locate_beads", "track_beads",
                                             "bead_figure"}
        assert {r for r, s in jobs if not s} == {"summarize_beads", "all"}
    finally:
        shutil.rmtree(new)


def test_linking_parameter_reruns_tracking_not_localisation(bead_demo):
    cfg = yaml.safe_load((bead_demo / "config.yaml").read_text())
    cfg["track"]["search_range_px"] = 4.0
    (bead_demo / "linking.yaml").write_text(yaml.safe_dump(cfg))
    rules = scheduled_rules(bead_demo, "--configfile", str(bead_demo / "linking.yaml"))
    assert rules == {"track_beads", "bead_figure", "summarize_beads", "all"}
    cfg["track"]["model"] = "beadnet"  # the default is none (matched filter)
    (bead_demo / "detector.yaml").write_text(yaml.safe_dump(cfg))
    rules = scheduled_rules(bead_demo, "--configfile", str(bead_demo / "detector.yaml"))
    assert "locate_beads" in rules and "ingest_beads" not in rules and "demo_beads" not in rules


def test_bead_tables_are_reproducible(bead_demo, tmp_path):
    """The library functions called again on the workflow's store give identical tables."""
    from scopeflow.track.stages import locate_movie, track_movie

    res = bead_demo / "results" / "demo_beads"
    t = yaml.safe_load((bead_demo / "config.yaml").read_text())["track"]
    locs = locate_movie(res / "demo_beads.ome.zarr", tmp_path / "l.parquet", sample="demo_beads",
                        model=t["model"], profile=t["profile"], sigma_px=t["sigma_px"],
                        snr_threshold=t["snr_threshold"], prob_threshold=t["prob_threshold"],
                        min_snr=t["min_snr"])
    pd.testing.assert_frame_equal(locs, pd.read_parquet(res / "localizations.parquet"))
    names = ("tracks", "diffusion", "msd", "sample")
    track_movie(tmp_path / "l.parquet", *(tmp_path / f"{n}.parquet" for n in names),
                sample="demo_beads", **{k: t[k] for k in (
                    "search_range_px", "memory", "adaptive_stop_px", "min_length", "drift",
                    "max_lag", "fit_lags")})
    for n in names:
        pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / f"{n}.parquet"),
                                      pd.read_parquet(res / f"{n}.parquet"), obj=n)


# ------------------------------------------------------------------ real frames


def test_sample_sheet_with_real_bead_frames(tmp_path, shared):
    frames = shared / "trackpy_bulk_water" / "frames"
    if not frames.is_dir():
        pytest.skip(f"{frames} not found")
    sheet = tmp_path / "samples.tsv"
    sheet.write_text("sample\tkind\tpath\tpixel_size_um\tfps\n"
                     f"bulk_water\tbeads\t{frames}\t{BULK_MPP!r}\t{BULK_FPS}\n")
    write_config(tmp_path, demo={"enabled": False}, samples=str(sheet))
    snakemake(tmp_path, "--cores", "2")
    res = tmp_path / "results" / "bulk_water"
    summary = pd.read_parquet(res / "sample.parquet").iloc[0]
    # the trackpy walkthrough: A = 4D ≈ 1.60-1.66 µm²/s on these frames
    assert summary["D_um2_s"] == pytest.approx(0.40, rel=0.10)
    assert summary["n_frames"] == 30 and summary["n_tracks"] >= 250
    assert summary["pixel_size_um"] == pytest.approx(BULK_MPP) and summary["fps"] == BULK_FPS
    tracks = pd.read_parquet(res / "tracks.parquet")
    assert list(tracks.columns[:7]) == TRACK_COLUMNS
    assert tracks["frame"].between(0, 29).all()
    assert read_provenance(res / "tracks.parquet")["movie"]["pixel_size_um_from"] == "sheet"


# ------------------------------------------------------------------ bad movies


@pytest.fixture(scope="module")
def bad_beads_run(tmp_path_factory):
    import imageio.v3 as iio

    work = tmp_path_factory.mktemp("bad_beads")
    movie, _ = small_movie()
    tifffile.imwrite(work / "good.tif", movie)  # a multi-page TIFF
    tifffile.imwrite(work / "nocal.tif", movie)  # the good movie, no calibration anywhere
    for name in ("truncated", "sizes"):
        d = work / name
        d.mkdir()
        for t, frame in enumerate(movie[:6]):
            iio.imwrite(d / f"f_{t}.png", frame)
    victim = work / "truncated" / "f_3.png"
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    iio.imwrite(work / "sizes" / "f_4.png", movie[4][:64])
    (work / "empty").mkdir()
    tifffile.imwrite(work / "short.tif", movie[:2])  # issue 15: too few frames for an MSD
    rows = ["sample\tkind\tpath\tpixel_size_um\tfps",
            "short\tbeads\tshort.tif\t0.2\t20",
            "good\tbeads\tgood.tif\t0.2\t20",
            "empty\tbeads\tempty\t0.2\t20",
            "truncated\tbeads\ttruncated\t0.2\t20",
            "sizes\tbeads\tsizes\t0.2\t20",
            "nocal\tbeads\tnocal.tif\t\t"]
    (work / "samples.tsv").write_text("\n".join(rows) + "\n")
    write_config(work, demo={"enabled": False}, samples="samples.tsv", track={"model": "none"})
    proc = snakemake(work, "--cores", "2", "--keep-going", check=False)
    return work, proc


@pytest.mark.parametrize("sample, needles", [
    ("empty", ["empty", "no frame images"]),
    ("truncated", ["f_3.png", "cannot read"]),
    ("sizes", ["f_4.png", "(64, 96)"]),
    ("short", ["short.tif", "2 frame(s)", "at least 3 frames"]),
])
def test_bad_movie_fails_with_one_line(bad_beads_run, sample, needles):
    work, proc = bad_beads_run
    assert proc.returncode != 0
    res = work / "results" / sample
    assert not (res / f"{sample}.ome.zarr").exists()
    assert not (res / "localizations.parquet").exists() and not (res / "sample.parquet").exists()
    logs = list((res / "logs").glob("*.log"))
    text = "".join(log.read_text() for log in logs)
    errors = [line for line in text.splitlines() if " ERROR " in line]
    assert len(errors) == 1, (logs, errors)
    for needle in needles:
        assert needle in errors[0], errors[0]
    assert "Traceback" not in text


def test_good_movie_finishes_despite_bad_ones(bad_beads_run):
    work, _ = bad_beads_run
    summary = pd.read_parquet(work / "results" / "good" / "sample.parquet").iloc[0]
    assert summary["n_frames"] == 30 and summary["n_tracks"] > 0
    assert summary["detector"] == "matched_filter"
    assert not (work / "results" / "bead_samples.parquet").exists()  # needs every bead sample


def test_movie_without_calibration_runs_in_px_and_frames(bad_beads_run):
    """Issue 17: no pixel size / frame rate in the sheet, a marker file or the config: the
    workflow tracks in px and frames, names the columns so (as ``scopeflow track``) and says
    it in one log line; the numbers are the calibrated ones divided by the calibration."""
    work, _ = bad_beads_run
    res, good = work / "results" / "nocal", work / "results" / "good"
    row = pd.read_parquet(res / "sample.parquet").iloc[0]
    ref = pd.read_parquet(good / "sample.parquet").iloc[0]
    assert row["length_unit"] == "px" and row["time_unit"] == "frame"
    assert ref["length_unit"] == "um" and ref["time_unit"] == "s"
    assert np.isnan(row["pixel_size_um"]) and np.isnan(row["fps"])
    assert "D_um2_s" not in row.index and row["n_tracks"] == ref["n_tracks"] > 0
    # good.tif is the same movie at 0.2 µm/px and 20 fps
    assert row["D_px2_frame"] == pytest.approx(ref["D_um2_s"] / 0.2**2 / 20, rel=1e-9)
    assert row["D_se_px2_frame"] > 0
    tracks = pd.read_parquet(res / "tracks.parquet")
    assert list(tracks.columns[:5]) == ["sample", "particle", "frame", "y_px", "x_px"]
    assert "y_um" not in tracks.columns and "t_frame" in tracks.columns
    msd = pd.read_parquet(res / "msd.parquet")
    assert list(msd.columns[:4]) == ["sample", "lag", "lag_frame", "msd_px2"]
    assert "D_px2_frame" in pd.read_parquet(res / "diffusion.parquet").columns
    assert (res / "report" / "tracks.png").is_file()
    text = (res / "logs" / "track_beads.log").read_text()
    notes = [line for line in text.splitlines() if "no pixel size and frame rate" in line]
    assert len(notes) == 1 and "px" in notes[0] and "frames" in notes[0]
    assert "no pixel size" not in (good / "logs" / "track_beads.log").read_text()


# ------------------------------------------------------------------ discovery and reading


def test_detect_kind_beads_only_with_marker(tmp_path):
    import imageio.v3 as iio

    movie, _ = small_movie(n_frames=2)
    for name in ("movie", "dpc"):
        (tmp_path / name).mkdir()
        for t, frame in enumerate(movie):
            iio.imwrite(tmp_path / name / f"f_{t}.png", frame)
    (tmp_path / "movie" / BEADS_MARKER).write_text('{"pixel_size_um": 0.2, "fps": 20}')
    assert detect_kind(tmp_path / "movie") == "beads"
    assert detect_kind(tmp_path / "dpc") == "smear_dpc"  # frames alone: still DPC images


def test_frames_in_natural_order_and_rgb_gives_green(tmp_path):
    import imageio.v3 as iio

    from scopeflow.track import read_frames
    from scopeflow.track.movie import frame_files, ingest_movie, read_movie

    for t in (0, 1, 2, 10):
        rgba = np.zeros((8, 9, 4), np.uint8)
        rgba[..., 1] = t  # green = frame number
        rgba[..., 0] = 200
        iio.imwrite(tmp_path / f"frame_{t}.png", rgba)
    assert [f.name for f in frame_files(tmp_path)] == [
        "frame_0.png", "frame_1.png", "frame_2.png", "frame_10.png"]
    assert read_frames(tmp_path)[:, 0, 0].tolist() == [0, 1, 2, 10]
    ingest_movie(tmp_path, tmp_path / "m.ome.zarr", pixel_size_um=0.5, fps=10)
    frames, attrs = read_movie(tmp_path / "m.ome.zarr")
    assert frames.shape == (4, 8, 9) and frames[:, 0, 0].tolist() == [0, 1, 2, 10]
    assert attrs["pixel_size_um_from"] == "sheet"


# ------------------------------------------------------------------ CLI


def test_cli_locate_multipage_tiff(tmp_path, capsys):
    from scopeflow.cli import main

    movie, truth = small_movie()
    tifffile.imwrite(tmp_path / "movie.tif", movie)
    out = tmp_path / "out" / "locs.csv"
    assert main(["locate", str(tmp_path / "movie.tif"), "-o", str(out), "--model", "none"]) == 0
    assert "localisations in 30 frame(s)" in capsys.readouterr().out
    locs = pd.read_csv(out)
    assert list(locs.columns[:3]) == ["frame", "y", "x"]
    assert sorted(locs["frame"].unique()) == list(range(30))
    assert abs(len(locs) - len(truth)) <= 0.1 * len(truth)


def test_cli_track_reads_calibration_from_marker(tmp_path, capsys):
    from scopeflow.cli import main

    movie, _ = small_movie(n_frames=40, size=128, n_beads=25)
    folder = tmp_path / "movie"
    folder.mkdir()
    for t, frame in enumerate(movie):
        tifffile.imwrite(folder / f"t{t}.tif", frame)
    (folder / BEADS_MARKER).write_text(json.dumps({"pixel_size_um": 0.2, "fps": 20.0}))
    out = tmp_path / "tracks.csv"
    assert main(["track", str(folder), "-o", str(out), "--model", "none"]) == 0
    printed = capsys.readouterr().out
    assert "0.2 um/px, 20 fps" in printed
    tracks = pd.read_csv(out)
    assert list(tracks.columns[:6]) == ["particle", "frame", "y", "x", "y_um", "x_um"]
    for suffix in ("_msd.csv", "_diffusion.csv", "_summary.json"):
        assert (tmp_path / f"tracks{suffix}").is_file()
    summary = json.loads((tmp_path / "tracks_summary.json").read_text())
    assert summary["D_um2_s"] == pytest.approx(0.3, rel=0.25)  # 25 beads, 40 frames


def test_cli_track_without_calibration_tracks_in_px_and_frames(tmp_path, capsys):
    """Issue 17: calibration is optional; without it results are in px and frames (as
    trackpy without mpp/fps), the column names say so and one note line says why."""
    from scopeflow.cli import main

    movie, _ = small_movie(n_frames=40, size=128, n_beads=25)
    tifffile.imwrite(tmp_path / "movie.tif", movie, photometric="minisblack")
    out = tmp_path / "t.csv"
    assert main(["track", str(tmp_path / "movie.tif"), "-o", str(out)]) == 0
    cap = capsys.readouterr()
    err = cap.err.strip().splitlines()
    assert len(err) == 1 and "px" in err[0] and "frames" in err[0]
    assert "px^2/frame" in cap.out
    tracks = pd.read_csv(out)
    assert "y_um" not in tracks.columns and list(tracks.columns[:4]) == ["particle", "frame",
                                                                         "y", "x"]
    msd = pd.read_csv(tmp_path / "t_msd.csv")
    assert {"lag_frame", "msd_px2"} <= set(msd.columns) and "msd_um2" not in msd.columns
    diff = pd.read_csv(tmp_path / "t_diffusion.csv")
    assert "D_px2_frame" in diff.columns
    summary = json.loads((tmp_path / "t_summary.json").read_text())
    assert summary["length_unit"] == "px" and summary["time_unit"] == "frame"
    # same movie as test_cli_track_reads_calibration_from_marker: D = 0.3 um^2/s at
    # 0.2 um/px and 20 fps is 0.3 / 0.2**2 / 20 = 0.375 px^2/frame
    assert summary["D_px2_frame"] == pytest.approx(0.375, rel=0.25)


def test_cli_locate_broken_frame_is_one_line_error(tmp_path, capsys):
    from scopeflow.cli import main

    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    assert main(["locate", str(bad), "-o", str(tmp_path / "l.csv"), "--model", "none"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "broken.png" in err[0]
    assert not (tmp_path / "l.csv").exists()
