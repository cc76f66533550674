"""The sample and movie stores as the NGFF ecosystem sees them: strict validators
(ome-zarr-models, yaozarrs) and readers (napari-ome-zarr, ome-zarr-py)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from scopeflow import pipeline
from scopeflow.io import ngff_write, ome_zarr
from scopeflow.io.ngff_validate import foreign_files, validate_store

PS = 0.4  # µm / px


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A 2 x 2 stage grid (Octopi names) with one FOV imaged twice (two fields of one well)."""
    d = tmp_path_factory.mktemp("ngff")
    names = ["0-0_0_0", "0-0_1_0", "0-1_0_0", "0-1_1_0", "1-0_0_0"]
    ij = [(0, 0), (0, 1), (1, 0), (1, 1), (0, 0)]
    pd.DataFrame({"fov": names, "i": [i for i, _ in ij], "j": [j for _, j in ij]}).to_csv(
        d / "fovs.tsv", sep="\t", index=False)
    path = d / "s.ome.zarr"
    info = pipeline.create_store(d / "fovs.tsv", path, {"scopeflow_version": "t"}, record=d / "store.json")
    rng = np.random.default_rng(1)
    for n, fov in enumerate(names):
        dpc = rng.random((520, 600), dtype=np.float32)
        ome_zarr.write_image(path, fov, {"dpc": dpc, "phase": dpc * 2}, PS, chunk=256)
        labels = np.zeros((520, 600), np.uint32)
        labels[10:60, 20:90] = n + 1
        labels[100:130, 300:310] = 77
        ome_zarr.write_labels(path, fov, labels, chunk=256)
    return path, info


def test_layout_places_fovs_on_the_stage_grid(store):
    path, info = store
    assert info["fovs"] == {"0-0_0_0": "A/1/0", "0-0_1_0": "A/2/0", "0-1_0_0": "B/1/0",
                            "0-1_1_0": "B/2/0", "1-0_0_0": "A/1/1"}
    assert ome_zarr.fov_names(path) == list(info["fovs"])
    import zarr

    root = zarr.open_group(str(path), mode="r")
    plate = root.attrs["ome"]["plate"]
    assert [r["name"] for r in plate["rows"]] == ["A", "B"]
    assert [c["name"] for c in plate["columns"]] == ["1", "2"]
    assert root["A/1"].attrs["ome"]["well"]["images"] == [{"path": "0"}, {"path": "1"}]
    # Zarr v3 arrays carry dimension_names matching the axes (NGFF 0.5 requires it)
    assert root["A/2/0/0"].metadata.dimension_names == ("c", "y", "x")
    assert root["A/2/0/labels/cells/1"].metadata.dimension_names == ("c", "y", "x")


def test_every_group_passes_the_strict_validators(store):
    path, _ = store
    reports = validate_store(path)
    # plate, 4 wells, 5 images, 5 labels groups, 5 label images
    assert sorted(r.kind for r in reports).count("image") == 5 and len(reports) == 20
    bad = [(r.path, r.models_error, r.yaozarrs_error, r.yaozarrs_warnings) for r in reports if not r.ok]
    assert not bad
    assert foreign_files(path) == []


def test_validators_reject_what_the_old_writer_wrote(tmp_path):
    """The check can fail: arrays without dimension_names are rejected / warned about."""
    import zarr

    path = tmp_path / "bad.ome.zarr"
    ome_zarr.create_sample_store(path, ["a"], {})
    ome_zarr.write_image(path, "a", {"dpc": np.zeros((64, 64), np.float32)}, 1.0)
    arr = zarr.open_group(str(path), mode="r")["A/1/0/0"]
    zarr.create_array(str(path / "A/1/0/0"), shape=arr.shape, chunks=arr.chunks, dtype=arr.dtype,
                      overwrite=True)  # as before issue 19: no dimension_names
    (path / ".snakemake_timestamp").touch()
    image = [r for r in validate_store(path) if r.kind == "image"][0]
    assert image.models_error and "dimension_names" in " ".join(image.yaozarrs_warnings)
    assert foreign_files(path) == [path / ".snakemake_timestamp"]


def test_movie_store_validates(tmp_path):
    path = tmp_path / "m.ome.zarr"
    arr = ngff_write.create_movie(path, (3, 40, 50), "uint16", chunk=32)
    arr[...] = np.arange(3 * 40 * 50, dtype=np.uint16).reshape(3, 40, 50)
    ngff_write.finish_movie(path, name="m", fps=20.0, pixel_size_um=0.3, window=(0, 100), attrs={"n_frames": 3})
    reports = validate_store(path)
    assert len(reports) == 1 and reports[0].ok, reports
    import zarr

    root = zarr.open_group(str(path), mode="r")
    assert root["0"].metadata.dimension_names == ("t", "y", "x")
    ct = root.attrs["ome"]["multiscales"][0]["datasets"][0]["coordinateTransformations"][0]
    assert ct["scale"] == pytest.approx([0.05, 0.3, 0.3])


def _napari_layers(path):
    from napari_ome_zarr import napari_get_reader

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reader = napari_get_reader(str(path))
        assert reader is not None
        return reader(str(path))


def test_napari_reader_opens_a_fov_image_and_labels(store):
    path, _ = store
    layers = _napari_layers(path / ome_zarr.fov_path(path, "0-1_0_0"))
    kinds = [k for _, _, k in layers]
    assert kinds == ["image", "labels"]
    (img, img_meta, _), (lab, lab_meta, _) = layers
    assert [tuple(d.shape) for d in img] == [(2, 520, 600), (2, 260, 300)]
    assert img_meta["channel_axis"] == 0 and img_meta["scale"] == pytest.approx([PS, PS])
    assert img_meta["name"] == ["0-1_0_0: dpc", "0-1_0_0: phase"]
    assert lab_meta["scale"][-2:] == pytest.approx([PS, PS])
    np.testing.assert_array_equal(np.asarray(lab[0]).reshape(520, 600),
                                  ome_zarr.read_labels(path, "0-1_0_0"))
    assert lab[1].shape[-2:] == (260, 300)


def test_napari_reader_opens_the_slide_from_the_root(store):
    path, _ = store
    layers = _napari_layers(path)
    assert [k for _, _, k in layers] == ["image", "labels"]
    (img, meta, _), (lab, _, _) = layers
    assert tuple(img[0].shape) == (2, 2 * 520, 2 * 600)  # the 2 x 2 wells, first field each
    assert meta["scale"] == pytest.approx([PS, PS])
    full = np.asarray(img[0][0])
    np.testing.assert_array_equal(full[520:, :600], np.asarray(ome_zarr.read_channel(path, "0-1_0_0", "dpc")))
    assert np.asarray(lab[0]).reshape(1040, 1200)[520 + 20, 600 + 30] == 4  # FOV 0-1_1_0's cell


def test_ome_zarr_py_reader_finds_images_and_labels(store):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Label, Multiscales, Plate, Reader

    path, _ = store
    nodes = list(Reader(parse_url(str(path / "A/2/0")))())
    assert any(isinstance(s, Multiscales) for s in nodes[0].specs)
    assert nodes[0].data[0].shape == (2, 520, 600)
    labels = [n for n in nodes if any(isinstance(s, Label) for s in n.specs)]
    assert labels and labels[0].data[0].shape == (1, 520, 600)
    root = list(Reader(parse_url(str(path)))())
    assert isinstance(root[0].specs[0], Plate) and root[0].data[0].shape == (2, 1040, 1200)


def write_foreign_v04(path, img, pixel_size_um, channel_label=None):
    """An NGFF 0.4 image (Zarr v2) written by ome-zarr-py, as another program would."""
    import zarr
    from ome_zarr.format import FormatV04
    from ome_zarr.writer import write_multiscale

    axes = [{"name": "y", "type": "space", "unit": "micrometer"},
            {"name": "x", "type": "space", "unit": "micrometer"}]
    data = img
    if channel_label is not None:
        axes = [{"name": "c", "type": "channel"}, *axes]
        data = np.stack([np.zeros_like(img), img])
    root = zarr.open_group(str(path), mode="w", zarr_format=2)
    scale = [[{"type": "scale", "scale": [1.0] * (data.ndim - 2) + [pixel_size_um] * 2}]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        write_multiscale([data], root, axes=axes, coordinate_transformations=scale, fmt=FormatV04())
    if channel_label is not None:
        root.attrs["omero"] = {"channels": [
            {"label": "brightfield", "color": "FFFFFF", "window": {"start": 0, "end": 255, "min": 0, "max": 255}},
            {"label": channel_label, "color": "FFFFFF", "window": {"start": 0, "end": 255, "min": 0, "max": 255}},
        ]}
    return path


def test_smear_dpc_sample_may_be_a_foreign_ngff_04_image(tmp_path):
    from scopeflow.io.discover import detect_kind

    img = (np.random.default_rng(2).random((200, 260)) * 255).astype(np.uint8)
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    write_foreign_v04(inputs / "field7.ome.zarr", img, 0.3, channel_label="DPC")
    assert detect_kind(inputs) == "smear_dpc" and detect_kind(inputs / "field7.ome.zarr") == "smear_dpc"
    df = pipeline.ingest("smear_dpc", inputs, tmp_path / "fovs.tsv", tmp_path / "ff.npz")
    assert df["fov"].tolist() == ["field7"] and df["pixel_size_um"].iloc[0] == pytest.approx(0.3)
    pipeline.create_store(tmp_path / "fovs.tsv", tmp_path / "s.ome.zarr")
    pipeline.write_images(tmp_path / "fovs.tsv", tmp_path / "ff.npz", tmp_path / "s.ome.zarr",
                          tmp_path / "dpc.json", phase=False)
    dpc = np.asarray(ome_zarr.read_channel(tmp_path / "s.ome.zarr", "field7", "dpc"))
    np.testing.assert_allclose(dpc, img / np.float32(255), rtol=1e-6)  # the 'DPC' channel, scaled
    assert ome_zarr.fov_attrs(tmp_path / "s.ome.zarr", "field7")["source"] == [str(inputs / "field7.ome.zarr")]


def test_smear_dpc_sample_may_be_a_scopeflow_plate(store, tmp_path):
    """A scopeflow store read back through the same reader: every field is a FOV."""
    path, info = store
    df = pipeline.ingest("smear_dpc", path, tmp_path / "fovs.tsv", tmp_path / "ff.npz")
    assert df["fov"].tolist() == ["s_" + p.replace("/", "_") for p in
                                  ["A/1/0", "A/1/1", "A/2/0", "B/1/0", "B/2/0"]]
    assert (df["pixel_size_um"] == PS).all()  # from the store's own scale transforms
    from scopeflow.io import ngff_image

    np.testing.assert_array_equal(ngff_image.read_dpc(path / "B/2/0"),
                                  np.asarray(ome_zarr.read_channel(path, "0-1_1_0", "dpc")))


def test_invalid_ngff_input_fails_with_one_line(tmp_path):
    from scopeflow.errors import InputImageError
    from scopeflow.io import ngff_image

    path = write_foreign_v04(tmp_path / "x.ome.zarr", np.zeros((20, 20), np.uint8), 1.0, channel_label="gfp")
    with pytest.raises(InputImageError, match="no channel 'dpc'.*gfp"):
        ngff_image.read_dpc(path)
    import zarr

    root = zarr.open_group(str(path), mode="a")
    ms = root.attrs["multiscales"]
    ms[0]["datasets"][0]["coordinateTransformations"] = []
    root.attrs["multiscales"] = ms
    with pytest.raises(InputImageError, match="not a valid NGFF image"):
        ngff_image.read_dpc(path)
