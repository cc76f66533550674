"""Inference back ends for the M2U-Net: torch (eager) and ONNX Runtime (fp32 or INT8).

Every back end maps a float32 batch ``(N, 1, H, W)`` whose H and W are multiples of
16 (:data:`STRIDE`) to float32 logits ``(N, C, H, W)``. They
all run :class:`~scopeflow.models.m2unet.InferenceM2UNet`, the trained network with
its batch norms folded and its decoder reordered (project to the hidden channels,
then upsample by a constant factor 2): the same logits as the trained
:class:`~scopeflow.models.m2unet.M2UNet` up to float rounding, and an ONNX graph
whose ``Resize`` nodes have static scales.

ONNX files ship beside the ``.pt`` weights (``<stem>.onnx``, ``<stem>.int8.onnx``);
each has its own ``<file name> sha256: <hex>`` line in the model card and records
the sha256 of the ``.pt`` it was exported from (metadata key
``scopeflow.source_sha256``). ``scopeflow export-onnx`` remakes them.

The ONNX path does not import torch: :class:`OnnxRunner` needs only ONNX Runtime.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from scopeflow.errors import ScopeflowError
from scopeflow.io.atomic import atomic_path
from scopeflow.models.m2unet_files import STRIDE, onnx_path
from scopeflow.models.weights import WeightsError, verify_sha256

if TYPE_CHECKING:  # torch is imported where it is used: the ONNX path runs without it
    import torch

    from scopeflow.models.m2unet import M2UNet

__all__ = [
    "BACKENDS",
    "PRECISIONS",
    "OnnxRunner",
    "TorchRunner",
    "export_onnx",
    "import_onnxruntime",
    "quantize_int8",
    "write_fp32_onnx",
]

#: Inference back ends.
BACKENDS = ("torch", "onnx")
#: Numerical precisions: fp32 (both back ends), int8 (onnx, CPU), fp16 (torch on CUDA).
PRECISIONS = ("fp32", "int8", "fp16")

#: ONNX metadata key holding the sha256 of the ``.pt`` file an ONNX model was made from.
SOURCE_KEY = "scopeflow.source_sha256"
#: ONNX metadata key holding that file's metadata (JSON: head, channels, decoding, training).
META_KEY = "scopeflow.meta"
#: ONNX opset of the exported graphs.
OPSET = 17


class TorchRunner:
    """Eager torch inference of :class:`InferenceM2UNet`, channels-last.

    Parameters
    ----------
    net : M2UNet
        The trained network (eval mode).
    device : torch.device
        CPU or CUDA.
    precision : {"fp32", "fp16"}
        fp16 (half-precision weights and activations, channels-last) needs CUDA.
    """

    name = "torch"

    def __init__(self, net: M2UNet, device: torch.device, precision: str = "fp32") -> None:
        import torch

        from scopeflow.models.m2unet import InferenceM2UNet

        if precision not in ("fp32", "fp16"):
            raise ScopeflowError(
                f"segment precision {precision!r} is not available with backend torch "
                "(fp32, or fp16 on CUDA; int8 needs backend onnx)"
            )
        if precision == "fp16" and device.type != "cuda":
            raise ScopeflowError("segment precision fp16 needs a CUDA device (segment.device: cuda)")
        self.device = device
        self.precision = precision
        self.dtype = torch.float16 if precision == "fp16" else torch.float32
        self.memory_format = torch.channels_last  # 1.9x faster than NCHW on CPU (model card)
        self.net = InferenceM2UNet(net).to(device=device, dtype=self.dtype, memory_format=self.memory_format)
        self.net.eval()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Logits (N, C, H, W), float32, for a padded float32 batch (N, 1, H, W)."""
        import torch

        t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        t = t.to(device=self.device, dtype=self.dtype).contiguous(memory_format=self.memory_format)
        with torch.inference_mode():
            # NCHW before the copy out: channels-last logits would reach numpy with strides
            # that make the per-pixel softmax several times slower
            return self.net(t).float().contiguous().cpu().numpy()


class OnnxRunner:
    """ONNX Runtime inference on the CPU (or CUDA when its execution provider exists).

    Parameters
    ----------
    path : str or Path
        ``.onnx`` file; its sha256 must match the ``<file name> sha256:`` line of the
        model card ``card``.
    card : str or Path
        Model card of the ``.pt`` weights this file was exported from.
    source_sha256 : str
        sha256 of that ``.pt`` file; must equal the file's ``scopeflow.source_sha256``
        metadata (an ONNX file from other weights is refused).
    threads : int or None
        Intra-op threads (the job's cores); None = ONNX Runtime's default.
    device : str
        ``"cuda"`` (or ``"cuda:N"``) uses the CUDA execution provider when ONNX Runtime
        has it; anything else the CPU.
    """

    name = "onnx"

    def __init__(
        self,
        path: str | Path,
        card: str | Path,
        source_sha256: str,
        threads: int | None = None,
        device: str = "cpu",
    ) -> None:
        ort = import_onnxruntime()
        path = Path(path)
        if not path.is_file():
            raise WeightsError(
                f"ONNX model {path} not found; make it with `scopeflow export-onnx` or use "
                "segment.backend: torch"
            )
        verify_sha256(path, card, what="ONNX model")
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.inter_op_num_threads = 1
        # no memory pattern: with it the second run of a shape allocates (and page-faults) a new
        # ~1 GB block; without it only the first run does, and steady runs are as fast
        opts.enable_mem_pattern = False
        # idle threads sleep instead of spinning: as fast on a quiet machine, far faster when
        # the cores are shared (benchmarks/inference_settings.py)
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads:
            opts.intra_op_num_threads = int(threads)
        providers = ["CPUExecutionProvider"]
        if str(device).startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        self.session = ort.InferenceSession(str(path), opts, providers=providers)
        meta = self.session.get_modelmeta().custom_metadata_map
        if meta.get(SOURCE_KEY) != source_sha256:
            raise WeightsError(
                f"ONNX model {path} was exported from weights with sha256 {meta.get(SOURCE_KEY)}, "
                f"not from the loaded weights ({source_sha256}); re-export with `scopeflow export-onnx`"
            )
        self.path = path
        self.input_name = self.session.get_inputs()[0].name
        #: the weights' metadata recorded at export (None for files exported without it)
        self.meta: dict | None = json.loads(meta[META_KEY]) if META_KEY in meta else None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Logits (N, C, H, W), float32, for a padded float32 batch (N, 1, H, W)."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        return self.session.run(None, {self.input_name: x})[0]


def import_onnxruntime():
    """The onnxruntime module, or a one-line error saying how to install it."""
    try:
        import onnxruntime
    except ImportError as exc:  # pragma: no cover - onnxruntime is a dependency
        raise ScopeflowError(
            "segment.backend onnx needs the onnxruntime package (pip install onnxruntime)"
        ) from exc
    return onnxruntime


def export_onnx(net: M2UNet, out: str | Path, source_sha256: str, meta: dict | None = None) -> Path:
    """Export a trained M2U-Net as an fp32 ONNX graph with static resize scales.

    Parameters
    ----------
    net : M2UNet
        Trained network.
    out : str or Path
        Output ``.onnx`` file.
    source_sha256 : str
        sha256 of the ``.pt`` file ``net`` was loaded from, stored as the model's
        ``scopeflow.source_sha256`` metadata.
    meta : dict, optional
        That file's metadata, stored as JSON (``scopeflow.meta``): the ONNX path then
        needs neither torch nor the ``.pt`` file to decode.

    Returns
    -------
    Path
        ``out``. Input ``x`` (N, 1, H, W) with H, W multiples of 16 (dynamic), output
        ``logits`` (N, C, H, W).
    """
    import torch

    from scopeflow.models.m2unet import InferenceM2UNet

    model = InferenceM2UNet(net.eval().cpu()).float()
    example = torch.zeros(1, int(net.in_channels), 4 * STRIDE, 4 * STRIDE)
    return write_fp32_onnx(model, example, out, source_sha256, meta)


def write_fp32_onnx(model, example, out: str | Path, source_sha256: str, meta: dict | None = None) -> Path:
    """Write a torch module as an fp32 ONNX graph with scopeflow's metadata, atomically.

    Parameters
    ----------
    model : torch.nn.Module
        Network in eval mode on the CPU, taking ``x`` (N, C, H, W) and returning ``logits``.
    example : torch.Tensor
        Input used to trace it; N, H and W are exported as dynamic axes.
    out : str or Path
        Output ``.onnx`` file.
    source_sha256 : str
        sha256 of the ``.pt`` file the weights came from (``scopeflow.source_sha256``).
    meta : dict, optional
        Stored as sorted JSON (``scopeflow.meta``).

    Returns
    -------
    Path
        ``out``.
    """
    import onnx
    import torch

    out = Path(out)
    with atomic_path(out) as tmp:
        torch.onnx.export(
            model, (example,), str(tmp), input_names=["x"], output_names=["logits"],
            dynamic_axes={"x": {0: "n", 2: "h", 3: "w"}, "logits": {0: "n", 2: "h", 3: "w"}},
            opset_version=OPSET, dynamo=False,
        )
        proto = onnx.load(str(tmp))
        values = {SOURCE_KEY: source_sha256, "scopeflow.precision": "fp32"}
        if meta is not None:
            values[META_KEY] = json.dumps(meta, sort_keys=True)
        _set_metadata(proto, values)
        onnx.save(proto, str(tmp))
    return out


def _set_metadata(proto, values: dict[str, str]) -> None:
    keep = [p for p in proto.metadata_props if p.key not in values]
    del proto.metadata_props[:]
    proto.metadata_props.extend(keep)
    for k, v in values.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, str(v)


def quantize_int8(
    fp32_onnx: str | Path,
    out: str | Path,
    calibration: Iterable[np.ndarray],
    *,
    per_channel: bool = True,
    reduce_range: bool = True,
    exclude: Sequence[str] = (),
) -> Path:
    """Static INT8 quantization (QDQ) of an fp32 ONNX model with ONNX Runtime.

    Parameters
    ----------
    fp32_onnx : str or Path
        Model from :func:`export_onnx`.
    out : str or Path
        Output ``.int8.onnx``.
    calibration : iterable of np.ndarray
        Calibration inputs, each float32 (1, 1, H, W) with H, W multiples of 16, already
        normalized the way the predictor feeds the network (z-scored per FOV).
    per_channel : bool, default True
        Per-output-channel weight scales.
    reduce_range : bool, default True
        7-bit weights: avoids the saturation of the u8×s8 multiply-add on CPUs without
        VNNI (AVX2).
    exclude : sequence of str
        ONNX node names kept in fp32.

    Returns
    -------
    Path
        ``out``; its metadata keeps the source sha256 and weights metadata of ``fp32_onnx``.
    """
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    fp32_onnx, out = Path(fp32_onnx), Path(out)
    batches = [{"x": np.ascontiguousarray(c, dtype=np.float32)} for c in calibration]
    if not batches:
        raise ValueError("quantize_int8 needs at least one calibration input")

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(batches)

        def get_next(self) -> Any:
            return next(self._it, None)

    pre = out.with_name(out.name + ".pre.onnx")
    try:
        with atomic_path(out) as tmp:
            quant_pre_process(str(fp32_onnx), str(pre), skip_symbolic_shape=True)
            quantize_static(
                str(pre), str(tmp), _Reader(), quant_format=QuantFormat.QDQ, per_channel=per_channel,
                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, reduce_range=reduce_range,
                nodes_to_exclude=list(exclude),
            )
            source = {p.key: p.value for p in onnx.load(str(fp32_onnx)).metadata_props}
            proto = onnx.load(str(tmp))
            values = {SOURCE_KEY: source.get(SOURCE_KEY, ""), "scopeflow.precision": "int8"}
            if META_KEY in source:
                values[META_KEY] = source[META_KEY]
            _set_metadata(proto, values)
            onnx.save(proto, str(tmp))
    finally:
        pre.unlink(missing_ok=True)
    return out
