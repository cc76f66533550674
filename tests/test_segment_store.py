"""The segment stage over several FOVs: the network of one FOV overlaps the decoding and writing
of the previous one, and the labels are those of each FOV segmented on its own."""

from __future__ import annotations

import json

import numpy as np
import pytest

from scopeflow.io import ome_zarr
from scopeflow.segment.chunked import ZARR_ATTR, labels_complete, predict_maps, segment_image
from scopeflow.segment.classical import ClassicalPredictor
from scopeflow.simulate.smear import simulate_fov
from scopeflow.smear import stage_segment
from scopeflow.smear.stage_segment import segment_store

PIXEL_UM = 0.333


def _dpc(seed: int, gain: float) -> np.ndarray:
    """A simulated DPC FOV (float32 in [0, 1]) whose contrast differs with ``gain``: the
    classical predictor's threshold comes from ``prepare`` of each whole FOV."""
    fov = simulate_fov((512, 544), PIXEL_UM, seed=seed)
    left, right = fov["left"].astype(np.float32), fov["right"].astype(np.float32)
    dpc = (left - right) / np.maximum(left + right, 1.0)
    return np.clip(0.5 + gain * dpc, 0, 1).astype(np.float32)


@pytest.fixture(scope="module")
def images():
    return {f"0-0_{k}_0": _dpc(seed, gain) for k, (seed, gain) in enumerate([(1, 0.5), (2, 1.5), (3, 0.9)])}


def _store(tmp_path, images):
    path = tmp_path / "s.ome.zarr"
    ome_zarr.create_sample_store(path, list(images), {})
    for fov, dpc in images.items():
        ome_zarr.write_image(path, fov, {"dpc": dpc}, PIXEL_UM)
    return path


@pytest.mark.parametrize("overlap", [True, False])
def test_every_fov_gets_the_labels_it_gets_alone(tmp_path, images, monkeypatch, overlap):
    if not overlap:  # every FOV "too large": one at a time, streamed chunk by chunk
        monkeypatch.setattr(stage_segment, "OVERLAP_MAX_PIXELS", 0)
    path = _store(tmp_path, images)
    record = segment_store(path, tmp_path / "seg.json", method="classical", chunk=128, threads=2)
    assert json.loads((tmp_path / "seg.json").read_text())["fovs"] == record["fovs"]
    assert list(record["fovs"]) == list(images)
    for fov, dpc in images.items():
        want = segment_image(dpc, ClassicalPredictor(PIXEL_UM), 128, num_workers=1)
        got = ome_zarr.read_labels(path, fov)
        assert want.max() > 20  # cells were found
        np.testing.assert_array_equal(got, want)
        assert record["fovs"][fov] == int(want.max())
        np.testing.assert_array_equal(ome_zarr.read_labels(path, fov, level=1), want[::2, ::2])


def test_a_rerun_reuses_complete_labels_without_the_network(tmp_path, images, monkeypatch):
    path = _store(tmp_path, images)
    first = segment_store(path, tmp_path / "a.json", method="classical", chunk=128)
    calls = []
    monkeypatch.setattr(ClassicalPredictor, "predict",
                        lambda self, tile: calls.append(tile.shape) or pytest.fail("predicted again"))
    again = segment_store(path, tmp_path / "b.json", method="classical", chunk=128)
    assert again["fovs"] == first["fovs"] and not calls


def test_labels_complete_follows_the_record(tmp_path, images):
    path = _store(tmp_path, images)
    fov, dpc = next(iter(images.items()))
    predictor = ClassicalPredictor(PIXEL_UM)
    target = ome_zarr.labels_array(path, fov, "cells", attrs={})
    assert not labels_complete(target, predictor, 128, "k")
    maps = predict_maps(dpc, predictor)
    assert maps.shape == (1, *dpc.shape) and maps.dtype == np.float32
    from scopeflow.segment.chunked import segment_to_zarr

    segment_to_zarr(dpc, predictor, target, chunk=128, resume_key="k", in_memory=True, maps=maps)
    assert target.attrs[ZARR_ATTR]["state"] == "complete"
    assert labels_complete(target, predictor, 128, "k")
    assert not labels_complete(target, predictor, 128, "other key")
    assert not labels_complete(target, predictor, 256, "k")
    assert not labels_complete(target, predictor, 128, None)
    np.testing.assert_array_equal(target[0], segment_image(dpc, ClassicalPredictor(PIXEL_UM), 64))


def test_an_error_in_one_fov_is_raised_and_no_record_is_written(tmp_path, images, monkeypatch):
    path = _store(tmp_path, images)
    bad = list(images)[1]
    real = stage_segment._Labels._finish

    def finish(self, fov, *args):
        if fov == bad:
            raise RuntimeError(f"decoding {fov} failed")
        return real(self, fov, *args)

    monkeypatch.setattr(stage_segment._Labels, "_finish", finish)
    with pytest.raises(RuntimeError, match=f"decoding {bad} failed"):
        segment_store(path, tmp_path / "seg.json", method="classical", chunk=128)
    assert not (tmp_path / "seg.json").exists()
