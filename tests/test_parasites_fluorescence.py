"""Fluorescence frames: the camera's true bit depth (12-bit frames in 16-bit files read like 8-bit
ones, same parasitemia) and the fluorescence flatfield."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scopeflow.io.fluorescence import fluorescence_max_value, read_fluorescence

PS = 0.333


def test_max_value_from_metadata_or_data():
    u8 = np.array([[0, 200]], np.uint8)
    low12 = np.array([[0, 3000]], np.uint16)
    top12 = (low12 << 4).astype(np.uint16)
    full16 = np.array([[0, 60001]], np.uint16)
    assert fluorescence_max_value([u8]) == 255
    assert fluorescence_max_value([u8], bit_depth=12) == 255  # another camera's depth
    assert fluorescence_max_value([low12]) == 4095
    assert fluorescence_max_value([low12], bit_depth=12) == 4095
    assert fluorescence_max_value([top12], bit_depth=12) == 65520
    assert fluorescence_max_value([full16]) == 65535
    assert fluorescence_max_value([full16], bit_depth=12) == 65535  # the data do not fit 12 bits


def test_12bit_acquisition_reads_like_8bit(tmp_path):
    from scopeflow.io.octopi import read_acquisition
    from scopeflow.parasites.stage import fluorescence_channels, scan_fluorescence
    from scopeflow.simulate import simulate_acquisition
    from scopeflow.simulate.parasites import add_fluorescence

    planes = {}
    for bits in (8, 12):
        acq = simulate_acquisition(tmp_path / f"b{bits}", ny=1, nx=1, shape=(96, 96), seed=2)
        add_fluorescence(acq, parasites_per_ul=2e5, seed=4, bits=bits,
                         fmt="bmp" if bits == 8 else "tiff")
        files, top = scan_fluorescence(read_acquisition(acq).fovs, shape=(96, 96))
        assert top == 2 ** bits - 1
        planes[bits] = fluorescence_channels(files[0], (96, 96), top)["fluorescence_r"]
        if bits == 12:
            naive = fluorescence_channels(files[0], (96, 96))["fluorescence_r"]
    # the same scene, quantised at 8 or 12 bits: equal to within the 8-bit step
    assert np.abs(planes[12] - planes[8]).max() <= 0.5 / 255 + 0.5 / 4095 + 1e-6
    assert planes[8].max() > 0.2  # above the background (0.11): a signal, not noise
    assert naive.max() < planes[12].max() / 10  # the old 1/65535 scaling: 16x too dim
    with pytest.raises(ValueError, match="tiff"):
        add_fluorescence(tmp_path / "b8", parasites_per_ul=0, bits=12)


def _stage(tmp_path, frame: np.ndarray, top: int | None, flatfield: bool = True) -> pd.Series:
    """The parasites stage on one simulated FOV whose fluorescence frame is ``frame``."""
    from scopeflow.smear.dpc import dpc_octopi
    from scopeflow.io import ome_zarr
    from scopeflow.parasites.stage import parasites_sample
    from scopeflow.simulate.smear import simulate_fov

    sim = simulate_fov((256, 256), seed=5)
    zarr = tmp_path / "s.ome.zarr"
    ome_zarr.create_sample_store(zarr, ["f0"], {})
    f = frame.astype(np.float32) / (top or np.iinfo(frame.dtype).max)
    ch = {"dpc": dpc_octopi(sim["left"] / 255.0, sim["right"] / 255.0).astype(np.float32),
          "fluorescence_r": f[..., 0], "fluorescence_g": f[..., 1], "fluorescence_b": f[..., 2]}
    ome_zarr.write_image(zarr, "f0", ch, PS)
    lab = sim["labels"].astype(np.uint32)
    ome_zarr.write_labels(zarr, "f0", lab)
    pd.DataFrame({"fov": "f0", "cell_id": np.unique(lab[lab > 0]), "qc_pass": True}).to_parquet(
        tmp_path / "cells.parquet")
    pd.DataFrame({"fov": ["f0"], "pixel_size_um": [PS], "fluorescence": ["x.tiff"]}).to_csv(
        tmp_path / "fovs.tsv", sep="\t", index=False)
    out = [tmp_path / f"{k}.parquet" for k in ("spots", "fovs", "sample")]
    return parasites_sample(zarr, tmp_path / "cells.parquet", tmp_path / "fovs.tsv", *out,
                            sample="s", params={"flatfield": flatfield})


def test_12bit_in_16bit_gives_the_8bit_parasitemia(tmp_path, torch_one_thread):
    from scopeflow.simulate.parasites import simulate_fluorescence
    from scopeflow.simulate.smear import simulate_fov

    lab = simulate_fov((256, 256), seed=5)["labels"]
    rows = {}
    for bits in (8, 12):
        fl = simulate_fluorescence(lab, PS, seed=9, parasites_per_ul=5e5, bits=bits)
        rows[bits] = _stage(tmp_path / f"b{bits}", fl["fluorescence"], 2 ** bits - 1)
    n_rings = int((fl["truth"].kind == "ring").sum())
    assert rows[8]["n_parasites"] >= max(1, n_rings // 2)
    assert abs(int(rows[12]["n_parasites"]) - int(rows[8]["n_parasites"])) <= 1
    assert rows[12]["parasites_per_ul"] == pytest.approx(rows[8]["parasites_per_ul"],
                                                         rel=1.01 / max(1, rows[8]["n_parasites"]))
    # read as the container's full scale (the old 1/65535), the 12-bit frame loses them
    dim = _stage(tmp_path / "dim", fl["fluorescence"], None)
    assert dim["n_parasites"] < rows[8]["n_parasites"] / 2


def test_flatfield_removes_the_falloff():
    from scopeflow.parasites.stage import fluorescence_flatfield

    rng = np.random.default_rng(0)
    ny, nx = 256, 320
    yy, xx = np.mgrid[0:ny, 0:nx]
    fall = 1.0 - 0.35 * (((yy - ny / 2) / ny) ** 2 + ((xx - nx / 2) / nx) ** 2) * 4
    frames = []
    for _ in range(5):
        base = np.stack([0.2 * fall, 0.1 * fall, 0.04 * fall], axis=-1)
        for y, x in rng.integers(8, (ny - 8, nx - 8), (30, 2)):  # sparse bright spots
            base[y - 1 : y + 2, x - 1 : x + 2] += 0.6 * fall[y, x]
        frames.append(base + rng.normal(0, 0.003, base.shape))
    ff = fluorescence_flatfield(iter(frames))
    assert ff.shape == (ny, nx, 3)
    np.testing.assert_allclose(ff.mean(axis=(0, 1)), 1.0, atol=1e-3)
    want = fall / fall.mean()
    for c in range(3):
        assert np.abs(ff[8:-8, 8:-8, c] - want[8:-8, 8:-8]).max() < 0.03
    corrected = frames[0] / ff
    assert corrected[..., 0][fall > 0].std() < frames[0][..., 0].std()  # flatter
    # a plane without signal is left as it is
    assert np.all(fluorescence_flatfield([np.zeros((32, 32, 3))]) == 1.0)


def test_read_fluorescence_clips_to_full_scale(tmp_path):
    import tifffile

    a = np.zeros((8, 8), np.uint16)
    a[0, 0], a[0, 1] = 4095, 5000
    tifffile.imwrite(tmp_path / "f.tiff", a)
    f = read_fluorescence(tmp_path / "f.tiff", max_value=4095)
    assert f.shape == (8, 8, 3) and f[0, 0, 0] == 1.0 and f[0, 1, 2] == 1.0
    assert read_fluorescence(tmp_path / "f.tiff")[0, 0, 0] == pytest.approx(4095 / 65535)


def test_downsampled_detection_finds_the_rings_at_full_resolution():
    from scopeflow.parasites.detect import detect_spots
    from scopeflow.simulate.parasites import simulate_fluorescence
    from scopeflow.simulate.smear import simulate_fov

    sim = simulate_fov((320, 320), seed=11)
    fl = simulate_fluorescence(sim["labels"], PS, seed=3, parasites_per_ul=1e6)
    rings = fl["truth"][fl["truth"].kind == "ring"]
    m = 3.0 / PS
    rings = rings[rings.y.between(m, 319 - m) & rings.x.between(m, 319 - m)]
    assert len(rings) >= 4
    full = detect_spots(fl["fluorescence"], PS, labels=sim["labels"])
    for d in (2, 4):
        sp = detect_spots(fl["fluorescence"], PS, labels=sim["labels"], downsample=d)
        dd = np.hypot(rings.y.to_numpy()[:, None] - sp.y.to_numpy()[None],
                      rings.x.to_numpy()[:, None] - sp.x.to_numpy()[None])
        assert (dd.min(axis=1) <= 2.0 / PS).mean() >= 0.9
        # each spot sits on the brightest full-resolution pixel of its d x d block
        lum = fl["fluorescence"].astype(float) @ np.array([0.299, 0.587, 0.114])
        for y, x in zip(sp.y, sp.x, strict=True):
            by, bx = (y // d) * d, (x // d) * d
            assert lum[y, x] == lum[by : by + d, bx : bx + d].max()
        assert set(sp.cell_id) <= set(np.unique(sim["labels"]))
        assert 0.5 * len(full) <= len(sp) <= 1.5 * len(full)
