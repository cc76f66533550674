"""Inference back ends: the reordered network, the shipped ONNX exports and their checks."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from scopeflow.errors import ScopeflowError
from scopeflow.models.m2unet import InferenceM2UNet, M2UNet
from scopeflow.models.m2unet_files import DEFAULT_WEIGHTS, onnx_path, pad_to_stride as _pad16
from scopeflow.models.runtime import OnnxRunner, TorchRunner, export_onnx, quantize_int8
from scopeflow.models.torch_check import TorchReference
from scopeflow.models.weights import WeightsError, card_sha256
from scopeflow.provenance import file_sha256
from scopeflow.segment.chunked import segment_image
from scopeflow.segment.unet import UNetPredictor

pytest.importorskip("onnxruntime")


def _real_tile(shared, side=256):
    from scopeflow.io.images import read_gray

    img = read_gray(shared / "octopi_rbc_dpc_m2unet" / "images" / "dpc_1024_00.png")
    z = ((img - img.mean()) / img.std()).astype(np.float32)
    return z[384 : 384 + side, 384 : 384 + side][None, None].copy()


def _trained_net(seed=0):
    torch.manual_seed(seed)
    net = M2UNet(1, 3)
    # non-trivial batch-norm statistics, as after training
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return net.eval()


def test_inference_net_equals_trained_net(torch_one_thread):
    net = _trained_net()
    fused = InferenceM2UNet(net)
    x = torch.randn(2, 1, 96, 160)
    with torch.inference_mode():
        a, b = net(x), fused(x)
    assert a.shape == b.shape == (2, 3, 96, 160)
    assert float((a - b).abs().max()) < 1e-4
    # padding outside the network reproduces M2UNet's own padding of odd shapes
    odd = torch.randn(1, 1, 70, 53)
    with torch.inference_mode():
        ref = net(odd)
        got = fused(torch.from_numpy(_pad16(odd[0, 0].numpy()))[None, None])[..., :70, :53]
    assert float((ref - got).abs().max()) < 1e-4


def test_torch_runner_returns_nchw_logits(torch_one_thread):
    net = _trained_net()
    x = np.random.default_rng(0).normal(size=(1, 1, 64, 96)).astype(np.float32)
    got = TorchRunner(net, torch.device("cpu"))(x)
    with torch.inference_mode():
        ref = net(torch.from_numpy(x)).numpy()
    # channels-last logits handed on as they are make the softmax several times slower
    assert got.flags.c_contiguous and got.dtype == np.float32
    assert np.abs(got - ref).max() < 1e-4


def test_shipped_onnx_matches_torch_on_a_real_tile(shared, torch_one_thread):
    pred = UNetPredictor(threads=1)
    tile = _real_tile(shared)
    with torch.inference_mode():
        ref = pred.net(torch.from_numpy(tile)).numpy()
    runner = OnnxRunner(onnx_path(DEFAULT_WEIGHTS), DEFAULT_WEIGHTS.with_suffix(".md"), pred.sha256, threads=1)
    assert np.abs(runner(tile) - ref).max() <= 1e-4
    int8 = OnnxRunner(onnx_path(DEFAULT_WEIGHTS, "int8"), DEFAULT_WEIGHTS.with_suffix(".md"), pred.sha256,
                      threads=1)
    agree = (int8(tile).argmax(1) == ref.argmax(1)).mean()
    assert agree > 0.97


def test_onnx_files_are_checked(tmp_path, torch_one_thread):
    for name in ("m2unet_rbc_dpc.pt", "m2unet_rbc_dpc.md", "m2unet_rbc_dpc.onnx", "m2unet_rbc_dpc.int8.onnx"):
        shutil.copy(DEFAULT_WEIGHTS.parent / name, tmp_path / name)
    weights = tmp_path / "m2unet_rbc_dpc.pt"
    assert UNetPredictor(weights, threads=1, backend="onnx", precision="int8").runner.path.name.endswith(".int8.onnx")
    # a corrupted INT8 file is refused, naming the file
    q = tmp_path / "m2unet_rbc_dpc.int8.onnx"
    q.write_bytes(q.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(WeightsError, match="sha256 mismatch for ONNX model .*int8.onnx"):
        UNetPredictor(weights, threads=1, backend="onnx", precision="int8")
    # an ONNX file made from other weights is refused even with a matching card line
    other = tmp_path / "other.onnx"
    export_onnx(_trained_net(), other, "0" * 64)
    card = tmp_path / "m2unet_rbc_dpc.md"
    card.write_text(card.read_text() + f"\n- `other.onnx` sha256: {file_sha256(other)}\n")
    with pytest.raises(WeightsError, match="exported from weights with sha256 0000"):
        OnnxRunner(other, card, file_sha256(weights), threads=1)
    # missing file: one line saying what to do
    (tmp_path / "m2unet_rbc_dpc.onnx").unlink()
    with pytest.raises(WeightsError, match="scopeflow export-onnx"):
        UNetPredictor(weights, threads=1, backend="onnx")


def test_export_and_int8_quantization_roundtrip(tmp_path, torch_one_thread):
    net = _trained_net(1)
    fp32 = export_onnx(net, tmp_path / "n.onnx", "a" * 64)
    card = tmp_path / "card.md"
    x = torch.randn(1, 1, 64, 96)
    rng = np.random.default_rng(0)
    q = quantize_int8(fp32, tmp_path / "n.int8.onnx",
                      [rng.normal(size=(1, 1, 64, 64)).astype(np.float32) for _ in range(3)])
    card.write_text(f"`n.onnx` sha256: {file_sha256(fp32)}\n`n.int8.onnx` sha256: {file_sha256(q)}\n")
    with torch.inference_mode():
        ref = net(x).numpy()
    got = OnnxRunner(fp32, card, "a" * 64, threads=1)(x.numpy())
    assert got.shape == ref.shape and np.abs(got - ref).max() <= 1e-4
    got8 = OnnxRunner(q, card, "a" * 64, threads=1)(x.numpy())
    assert got8.shape == ref.shape
    assert np.corrcoef(got8.ravel(), ref.ravel())[0, 1] > 0.9  # quantized, but the same function


def test_backend_and_precision_errors():
    with pytest.raises(ScopeflowError, match="backend must be one of"):
        UNetPredictor(backend="tensorrt")
    with pytest.raises(ScopeflowError, match="precision must be one of"):
        UNetPredictor(precision="int4")
    with pytest.raises(ScopeflowError, match="fp16 needs"):
        UNetPredictor(backend="onnx", precision="fp16")
    with pytest.raises(ScopeflowError, match="int8 needs backend onnx"):
        TorchRunner(_trained_net(), torch.device("cpu"), "int8")
    if not torch.cuda.is_available():
        with pytest.raises(ScopeflowError, match="fp16 needs a CUDA device"):
            UNetPredictor(backend="torch", precision="fp16", device="cpu")


def test_int8_and_onnx_labels_agree_with_fp32_on_real_data(shared, torch_one_thread):
    """Issue 8 must-show: on dpc_1024_00 the fast paths keep the fp32 segmentation."""
    from scopeflow.evaluate import evaluate, to_instances
    from scopeflow.io.images import read_gray

    img = read_gray(shared / "octopi_rbc_dpc_m2unet" / "images" / "dpc_1024_00.png")
    ref = to_instances(read_gray(shared / "octopi_rbc_dpc_m2unet" / "masks" / "dpc_1024_00_mask.png"))
    base = segment_image(img, UNetPredictor(threads=1), chunk=512)
    iou_base = evaluate(base, ref)["binary_iou"]
    for precision, f1_min in (("fp32", 0.999), ("int8", 0.98)):
        labels = segment_image(img, UNetPredictor(threads=1, backend="onnx", precision=precision), chunk=512)
        vs_fp32 = evaluate(labels, base)
        print(precision, vs_fp32["binary_iou"], vs_fp32["f1"], evaluate(labels, ref)["binary_iou"])
        assert vs_fp32["f1"] >= f1_min
        assert evaluate(labels, ref)["binary_iou"] >= iou_base - 0.005


def test_max_cross_equals_grey_dilation():
    from scipy import ndimage as ndi

    from scopeflow.segment.decode import _max_cross

    a = np.random.default_rng(0).integers(0, 50, size=(37, 41)).astype(np.int32)
    cross = ndi.generate_binary_structure(2, 1)
    assert np.array_equal(_max_cross(a), ndi.grey_dilation(a, footprint=cross, mode="constant", cval=0))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_fp32_and_fp16_keep_the_cpu_labels(shared):
    """The torch back end on a GPU, in fp32 and fp16, segments dpc_1024_00 as the CPU does."""
    from scopeflow.evaluate import evaluate
    from scopeflow.io.images import read_gray

    img = read_gray(shared / "octopi_rbc_dpc_m2unet" / "images" / "dpc_1024_00.png")
    base = segment_image(img, UNetPredictor(device="cpu", threads=1), chunk=512)
    for precision in ("fp32", "fp16"):
        pred = UNetPredictor(device="cuda", backend="torch", precision=precision)
        s = evaluate(segment_image(img, pred, chunk=512), base)
        assert s["f1"] >= 0.99 and s["binary_iou"] >= 0.995, (precision, s)


def test_onnx_path_needs_no_torch_in_process(shared):
    """Maps and labels without importing torch: the load-time check runs in a child process."""
    code = (
        "import sys\n"
        "from scopeflow.io.images import read_gray\n"
        "from scopeflow.segment.chunked import segment_image\n"
        "from scopeflow.segment.unet import UNetPredictor\n"
        "p = UNetPredictor(threads=1, backend='onnx')\n"
        f"img = read_gray({str(shared / 'octopi_rbc_dpc_m2unet' / 'images' / 'dpc_1024_00.png')!r})\n"
        "labels = segment_image(img, p, chunk=512)\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "assert p._checked and labels.max() > 500 and p.decode_kw == {'t_body': 0.8}\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_onnx_disagreeing_with_torch_is_refused_before_labels_are_returned(tmp_path, shared, torch_one_thread):
    import zarr

    from scopeflow.segment.chunked import segment_to_zarr

    for name in ("m2unet_rbc_dpc.pt", "m2unet_rbc_dpc.md"):
        shutil.copy(DEFAULT_WEIGHTS.parent / name, tmp_path / name)
    weights = tmp_path / "m2unet_rbc_dpc.pt"
    # an ONNX file claiming to come from these weights, but holding another network
    fake = export_onnx(_trained_net(3), tmp_path / "m2unet_rbc_dpc.onnx", file_sha256(weights), {"head": "3class"})
    card = tmp_path / "m2unet_rbc_dpc.md"
    card.write_text(card.read_text().replace(
        card_sha256(card, "m2unet_rbc_dpc.onnx"), file_sha256(fake)))
    img = _real_tile(shared, 512)[0, 0]
    # a store keeps finished chunks for a resumed run: none may be written before the check
    store = tmp_path / "labels.zarr"
    with pytest.raises(WeightsError, match="disagrees with torch"):
        segment_to_zarr(img, UNetPredictor(weights, threads=1, backend="onnx"), store, chunk=256, resume_key="k")
    arr = zarr.open_array(store, mode="r")
    assert not arr.attrs["scopeflow_segmentation"]["done_cores"] and not np.asarray(arr[:]).any()
    with pytest.raises(WeightsError, match="disagrees with torch on a tile of this image"):
        segment_image(img, UNetPredictor(weights, threads=1, backend="onnx"), chunk=256)
    pred = UNetPredictor(weights, threads=1, backend="onnx")
    pred.prepare(img)
    pred.predict(img)
    with pytest.raises(WeightsError, match="disagrees with torch"):
        pred.verify()
    assert not pred._checked


def test_torch_reference_failure_is_one_line(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a weights file")
    ref = TorchReference(bad, None)
    ref.submit(np.zeros((1, 1, 32, 32), np.float32))
    with pytest.raises(ScopeflowError, match=r"torch reference for the ONNX check failed: .*bad\.pt"):
        ref.result()


def test_torch_reference_child_exits_before_its_result_is_asked(shared, torch_one_thread):
    # the logits (768 KiB) exceed a pipe's buffer: the parent must read them as they come, so
    # the child exits while the parent is still busy instead of blocking until result()
    tile = _real_tile(shared, 256)
    ref = TorchReference(DEFAULT_WEIGHTS, file_sha256(DEFAULT_WEIGHTS))
    ref.submit(tile)
    assert ref.proc.wait(timeout=300) == 0
    got = ref.result()
    with torch.inference_mode():
        want = UNetPredictor(threads=1).net(torch.from_numpy(tile)).numpy()
    assert got.shape == (1, 3, 256, 256)
    assert float(np.abs(got - want).max()) < 1e-5


def test_dropped_torch_reference_stops_its_child():
    ref = TorchReference(DEFAULT_WEIGHTS, None)
    proc = ref.proc
    del ref
    assert proc.wait(timeout=60) != 0  # killed, not left waiting for a tile


def test_shipped_reference_logits_are_torch_on_their_tile(torch_one_thread):
    """The shipped check file: torch's logits of the trained weights on its tile, checked at load."""
    import torch

    from scopeflow.models.m2unet import network_from_weights
    from scopeflow.models.m2unet_files import load_check_tile, load_weights

    loaded = load_weights(DEFAULT_WEIGHTS)
    check = load_check_tile(DEFAULT_WEIGHTS, loaded["sha256"])
    assert check is not None and check["tile"].shape == (1, 1, 128, 128)
    with torch.inference_mode():
        ref = network_from_weights(loaded)(torch.from_numpy(check["tile"])).numpy()
    assert float(np.abs(ref - check["logits"]).max()) <= 1e-5


def test_onnx_check_uses_shipped_logits_without_a_torch_child(tmp_path, torch_one_thread):
    """With the check file the predictor is checked at load, without a child process; a
    check file from other weights, or one altered after the card was written, is refused."""
    for name in ("m2unet_rbc_dpc.pt", "m2unet_rbc_dpc.md", "m2unet_rbc_dpc.onnx", "m2unet_rbc_dpc.check.npz"):
        shutil.copy(DEFAULT_WEIGHTS.with_name(name), tmp_path / name)
    weights = tmp_path / "m2unet_rbc_dpc.pt"
    pred = UNetPredictor(weights, threads=1, backend="onnx")
    assert pred._reference is None and pred._checked
    check = tmp_path / "m2unet_rbc_dpc.check.npz"
    with np.load(check) as z:
        data = {k: z[k] for k in z.files}
    # logits that ONNX Runtime cannot reproduce: refused at load, naming the shipped tile
    bad = dict(data, logits=data["logits"] + np.float32(1e-3))
    np.savez_compressed(check, **bad)
    card = tmp_path / "m2unet_rbc_dpc.md"
    card.write_text(card.read_text().replace(
        card_sha256(card, check.name), file_sha256(check)))
    with pytest.raises(WeightsError, match="disagrees with torch on the reference tile shipped with the model"):
        UNetPredictor(weights, threads=1, backend="onnx")
    # made from other weights
    np.savez_compressed(check, **dict(data, source_sha256=np.asarray("0" * 64)))
    card.write_text(card.read_text().replace(card_sha256(card, check.name), file_sha256(check)))
    with pytest.raises(WeightsError, match="made from other weights"):
        UNetPredictor(weights, threads=1, backend="onnx")
    # changed without updating the card
    np.savez_compressed(check, **bad)
    with pytest.raises(WeightsError, match="sha256 mismatch for reference logits"):
        UNetPredictor(weights, threads=1, backend="onnx")
