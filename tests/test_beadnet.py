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
