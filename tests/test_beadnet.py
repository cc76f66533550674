"""BeadNet weights: sha256-checked loading, prediction, training smoke test."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from scopeflow.models.beadnet import BeadNet, default_weights, normalize_frame
from scopeflow.models.weights import WeightsError
from scopeflow.track.beadnet import train_beadnet, write_model_card


def test_shipped_weights_load_with_sha256():
    w = default_weights()
    assert w.is_file() and w.with_suffix(".md").is_file()
    net = BeadNet.load()
    assert len(net.sha256) == 64 and net.sha256 in w.with_suffix(".md").read_text()
    frame = np.random.default_rng(0).poisson(10, (70, 90)).astype(np.uint16)
    prob = net(frame)
    assert prob.shape == (70, 90) and prob.dtype == np.float32
    assert 0 <= prob.min() and prob.max() <= 1
    assert prob.max() < 0.4  # pure noise: no bead


def test_corrupted_or_unverified_weights_fail(tmp_path):
    w = default_weights()
    bad = tmp_path / "beadnet.pt"
    shutil.copy(w, bad)
    shutil.copy(w.with_suffix(".md"), tmp_path / "beadnet.md")
    BeadNet.load(bad)  # an intact copy loads
    data = bytearray(bad.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="sha256"):
        BeadNet.load(bad)
    (tmp_path / "beadnet.md").unlink()
    with pytest.raises(WeightsError, match="model card"):
        BeadNet.load(bad)
    with pytest.raises(WeightsError, match="not found"):
        BeadNet.load(tmp_path / "missing.pt")


def test_normalize_frame_scale_invariant():
    rng = np.random.default_rng(1)
    f = rng.poisson(50, (64, 64)).astype(np.float64)
    a = normalize_frame(f)
    b = normalize_frame(3.0 * f + 100.0)
    assert np.allclose(a, b, atol=1e-4)
    assert abs(np.median(a)) < 0.05


def test_train_smoke_deterministic(tmp_path):
    m1 = train_beadnet(tmp_path / "a.pt", 2, batch_size=2, crop=32, threads=1, progress=False,
                       eval_frames=0)
    train_beadnet(tmp_path / "b.pt", 2, batch_size=2, crop=32, threads=1, progress=False,
                  eval_frames=0)
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes() or np.allclose(
        *(BeadNet.load(p, verify=False).net.head.weight.detach().numpy()
          for p in (tmp_path / "a.pt", tmp_path / "b.pt")))
    card = write_model_card(tmp_path / "a.pt", m1, "python -m scopeflow.track.beadnet --steps 2")
    net = BeadNet.load(tmp_path / "a.pt")  # the card written makes it loadable
    assert net.sha256 in card.read_text()


def _one_per_bead(locs, truth, n_frames):
    """(fraction of bead-frames with exactly one detection within the bead radius, F1 at r/4)."""
    from scipy.spatial import cKDTree

    one = n = tp_ = n_loc = 0
    for f in range(n_frames):
        t = truth[truth.frame == f]
        ll = locs.loc[locs.frame == f, ["y", "x"]].to_numpy()
        n_loc += len(ll)
        for (y, x), d in zip(t[["y", "x"]].to_numpy(), t["diameter_px"], strict=True):
            n += 1
            k = len(cKDTree(ll).query_ball_point((y, x), d / 2)) if len(ll) else 0
            one += k == 1
            if len(ll) and np.min(np.hypot(ll[:, 0] - y, ll[:, 1] - x)) <= d / 8:
                tp_ += 1
    f1 = 2 * tp_ / max(n + n_loc, 1)
    return one / n, f1


@pytest.mark.parametrize("kind,diameter", [("brightfield_bright", 20.0), ("brightfield_dark", 30.0),
                                           ("gaussian", 6.0)])
def test_shipped_beadnet_one_detection_per_bead(kind, diameter):
    """The shipped weights (sha256 checked) give one centre per bead, rings and spots alike."""
    from scopeflow.simulate.bead_appearance import simulate_appearance_movie
    from scopeflow.track.localize import locate_stack

    net = BeadNet.load()  # sha256 of the .pt (and of the ONNX export it runs) checked
    assert net.sha256 in default_weights().with_suffix(".md").read_text()
    movie, truth = simulate_appearance_movie(kind, 3, (160, 160), 8, diameter, seed=3)
    locs = locate_stack(movie, model=net, workers=1)
    assert locs.attrs["detector"] == "beadnet"
    one, f1 = _one_per_bead(locs, truth, 3)
    assert one >= 0.95 and f1 >= 0.95, (one, f1)


def test_onnx_and_torch_backends_agree_and_reduction_maps_back():
    from scopeflow.models.beadnet import downsample, scale_for_diameter

    assert [scale_for_diameter(d) for d in (None, 3, 11, 12, 20, 30, 40)] == [1, 1, 1, 2, 2, 4, 5]
    img = np.arange(35, dtype=float).reshape(5, 7)
    red = downsample(img, 2)
    assert red.shape == (3, 4) and red[0, 0] == pytest.approx(img[:2, :2].mean())
    frame = np.random.default_rng(2).poisson(100, (96, 120)).astype(np.float64)
    yy, xx = np.indices(frame.shape)
    frame += 400 * np.exp(-((yy - 40.0) ** 2 + (xx - 61.0) ** 2) / (2 * 5.0**2))
    a = BeadNet.load(backend="onnx").predict(frame, 2)
    b = BeadNet.load(backend="torch").predict(frame, 2)
    assert a.shape == (48, 60) and np.abs(a - b).max() < 1e-3
    yx, p = BeadNet.load().candidates(frame, 24.0)
    assert len(yx) == 1 and abs(yx[0, 0] - 40) <= 1 and abs(yx[0, 1] - 61) <= 1 and p[0] > 0.5


def test_onnx_export_checked_against_card(tmp_path):
    w = default_weights()
    for suffix in (".pt", ".md", ".onnx"):
        shutil.copy(w.with_suffix(suffix), tmp_path / f"beadnet{suffix}")
    assert BeadNet.load(tmp_path / "beadnet.pt").backend == "onnx"
    onnx_file = tmp_path / "beadnet.onnx"
    data = bytearray(onnx_file.read_bytes())
    data[-10] ^= 0xFF
    onnx_file.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="sha256"):
        BeadNet.load(tmp_path / "beadnet.pt", backend="onnx")
    assert BeadNet.load(tmp_path / "beadnet.pt", backend="torch").backend == "torch"
