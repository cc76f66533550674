"""The scopeflow command line on small real and simulated inputs."""

import json

import numpy as np
import pytest
import tifffile

from scopeflow.cli import main
from scopeflow.io.images import read_gray


def test_simulate_segment_evaluate_roundtrip(tmp_path, capsys):
    acq = tmp_path / "acq"
    assert main(["simulate", str(acq), "--ny", "1", "--nx", "1", "--size", "256", "--seed", "4"]) == 0
    assert (acq / "acquisition parameters.json").exists()
    left = acq / "0" / "0_0_0_BF_LED_matrix_left_half.bmp"
    right = acq / "0" / "0_0_0_BF_LED_matrix_right_half.bmp"
    from scopeflow.smear.dpc import dpc_octopi

    dpc = dpc_octopi(read_gray(left), read_gray(right))
    tifffile.imwrite(tmp_path / "dpc.tif", dpc)
    out = tmp_path / "labels.tif"
    assert main(["segment", str(tmp_path / "dpc.tif"), "-o", str(out), "--method", "classical"]) == 0
    labels = tifffile.imread(out)
    assert labels.dtype == np.uint32 and labels.shape == (256, 256) and labels.max() > 20
    capsys.readouterr()
    assert main(["evaluate", str(out), str(acq / "truth" / "0_0_0_labels.tif"), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["f1"] > 0.8 and 0 < metrics["binary_iou"] <= 1


def test_segment_real_crop_chunked_equals_whole(tmp_path, shared):
    img = shared / "octopi_rbc_dpc_harness" / "images" / "13_19_0_dpc.png"
    a, b = tmp_path / "a.tif", tmp_path / "b.tif"
    assert main(["segment", str(img), "-o", str(a), "--method", "classical", "--chunk", "256"]) == 0
    assert main(["segment", str(img), "-o", str(b), "--method", "classical", "--chunk", "0"]) == 0
    np.testing.assert_array_equal(tifffile.imread(a), tifffile.imread(b))


def test_segment_bad_file_is_one_line_error(tmp_path, capsys):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    assert main(["segment", str(bad), "-o", str(tmp_path / "x.tif")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "broken.png" in err[0]
    assert not (tmp_path / "x.tif").exists()


def test_chunk_not_multiple_of_16_is_rejected(tmp_path, capsys):
    img = tmp_path / "img.tif"
    tifffile.imwrite(img, np.full((64, 64), 0.5, np.float32))
    with pytest.raises(SystemExit) as exc:
        main(["segment", str(img), "-o", str(tmp_path / "x.tif"), "--chunk", "100"])
    assert exc.value.code == 2
    assert "multiple of 16" in capsys.readouterr().err
