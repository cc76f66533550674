"""One home for learned models: one weights check/loader/writer, an acyclic models package,
segmentation settings with one default each (config schema = library = command line)."""

from __future__ import annotations

import ast
import shutil
import tomllib
from pathlib import Path

import pytest
import yaml

from scopeflow.errors import ScopeflowError
from scopeflow.models.weights import (
    MODELS_DIR,
    WeightsError,
    cached_network,
    load_checkpoint,
    load_network,
    save_weights,
    verify_sha256,
)
from scopeflow.segment.params import CHOICES, SEGMENT_DEFAULTS, SegmentParams

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src" / "scopeflow"


def _imports(path: Path) -> set[str]:
    """scopeflow modules a file imports (at any depth, lazy imports included)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.startswith("scopeflow"):
                out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("scopeflow"))
    return out


def test_models_import_nothing_above_them():
    """models/ is below the stages: it imports only itself and the leaves (errors, provenance, io)."""
    allowed = ("scopeflow.models", "scopeflow.errors", "scopeflow.provenance", "scopeflow.io")
    for path in (SRC / "models").glob("*.py"):
        bad = sorted(m for m in _imports(path) if not m.startswith(allowed))
        assert not bad, f"{path.name} imports {bad}"


def _graph() -> dict[str, set[str]]:
    """scopeflow module -> the scopeflow modules it imports (``from pkg import sub`` counts
    as importing ``pkg`` and ``pkg.sub``)."""
    mods = {}
    for path in SRC.rglob("*.py"):
        parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
        mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path

    def known(name: str) -> str:
        while name not in mods and "." in name:
            name = name.rsplit(".", 1)[0]
        return name

    graph = {}
    for mod, path in mods.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                if node.module.startswith("scopeflow"):
                    deps.add(known(node.module))
                    deps.update(f"{node.module}.{a.name}" for a in node.names
                                if f"{node.module}.{a.name}" in mods)
            elif isinstance(node, ast.Import):
                deps.update(known(a.name) for a in node.names if a.name.startswith("scopeflow"))
        graph[mod] = deps - {mod, "scopeflow"}
    return graph


def _cycle_through(graph: dict[str, set[str]], start: str) -> list[str] | None:
    """An import path from ``start`` back to itself, or None."""
    seen, stack = set(), [(start, [start])]
    while stack:
        mod, trail = stack.pop()
        for dep in graph.get(mod, ()):
            if dep == start:
                return trail + [start]
            if dep not in seen:
                seen.add(dep)
                stack.append((dep, trail + [dep]))
    return None


def test_models_and_segment_are_in_no_import_cycle():
    """No module of models/, segment/ or track/ (their packages included) lies on an import
    cycle, lazy imports inside functions included."""
    graph = _graph()
    mine = [m for m in graph
            if m.startswith(("scopeflow.models", "scopeflow.segment", "scopeflow.track"))]
    assert "scopeflow.models.weights" in mine and "scopeflow.segment.unet" in mine
    assert "scopeflow.track.localize" in mine and "scopeflow.track._fast.gauss" in mine
    for mod in mine:
        cycle = _cycle_through(graph, mod)
        assert cycle is None, "import cycle: " + " -> ".join(cycle)
    # the torch-free files of the U-Net do not import the architecture (torch)
    assert "scopeflow.models.m2unet" not in graph["scopeflow.models.m2unet_files"]
    assert "scopeflow.models.m2unet" not in graph["scopeflow.models.weights"]
    # qc/ checks no file hash through segment/ any more; BeadNet's predictor is below track/
    assert not any(d.startswith("scopeflow.segment") for d in graph["scopeflow.qc.cell_classifier"])
    assert not any(d.startswith("scopeflow.track") for d in graph["scopeflow.models.beadnet"])


def test_one_weights_error_and_one_sha256_pattern_in_the_library():
    classes, patterns = [], []
    for path in SRC.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        classes += [path.name for _ in range(text.count("class WeightsError("))]
        patterns += [path.name for _ in range(text.count("sha256`?\\s*:"))]
    assert classes == ["weights.py"]
    assert patterns == ["weights.py"]


def test_shipped_weights_are_package_data_and_match_their_cards():
    data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert set(data["scopeflow.models"]) >= {"*.pt", "*.md", "*.onnx", "*.npz"}
    shipped = sorted(MODELS_DIR.glob("*.pt"))
    assert {p.name for p in shipped} >= {"m2unet_rbc_dpc.pt", "beadnet.pt", "rbc_quality.pt",
                                          "defocus.pt", "parasites.pt"}
    for p in shipped:
        assert len(verify_sha256(p)) == 64


def test_save_load_roundtrip_and_refusals(tmp_path):
    torch = pytest.importorskip("torch")
    from scopeflow.models.quality import QualityNet

    net = QualityNet(2, (4, 4, 4, 4))
    out = tmp_path / "q.pt"
    sha = save_weights(net, {"kind": "rbc_quality", "in_channels": 2, "widths": [4, 4, 4, 4]}, out)
    assert f"sha256: {sha}" in out.with_suffix(".md").read_text()
    loaded = load_checkpoint(out)
    assert loaded["sha256"] == sha and loaded["meta"]["kind"] == "rbc_quality"
    got, meta, digest = load_network(out, QualityNet.from_meta, kind="rbc_quality")
    assert digest == sha and not got.training
    for a, b in zip(got.state_dict().values(), net.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    # the cache gives the same network back until the file changes
    first, _ = cached_network(out, "rbc_quality", QualityNet.from_meta)
    assert cached_network(out, "rbc_quality", QualityNet.from_meta)[0] is first
    with pytest.raises(WeightsError, match="is not a defocus model"):
        load_network(out, QualityNet.from_meta, kind="defocus")
    with pytest.raises(WeightsError, match="does not fit QualityNet"):
        load_network(out, lambda meta: QualityNet(2, (8, 8, 8, 8)))
    bad = tmp_path / "bad" / "q.pt"
    bad.parent.mkdir()
    shutil.copy(out, bad)
    shutil.copy(out.with_suffix(".md"), bad.with_suffix(".md"))
    with open(bad, "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(WeightsError, match="sha256 mismatch") as err:
        cached_network(bad, "rbc_quality", QualityNet.from_meta)
    assert "\n" not in str(err.value) and str(bad) in str(err.value)
    bad.write_bytes(b"not a torch file")
    with pytest.raises(WeightsError, match="cannot read weights file"):
        load_checkpoint(bad, verify=False)


def test_segment_defaults_match_schema_config_and_cli():
    schema = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
    props = schema["properties"]["segment"]["properties"]
    assert {k: v["default"] for k, v in props.items()} == SEGMENT_DEFAULTS
    assert yaml.safe_load((REPO / "config.yaml").read_text())["segment"] == SEGMENT_DEFAULTS
    for key, spec in props.items():
        if "enum" in spec:
            assert set(spec["enum"]) == set(CHOICES[key])
    # scopeflow segment: the same names and defaults
    from scopeflow.cli import build_parser

    args = build_parser().parse_args(["segment", "in.png", "-o", "out.tif"])
    assert {k: getattr(args, k) for k in SEGMENT_DEFAULTS} == SEGMENT_DEFAULTS


def test_segment_params_from_config_and_errors():
    p = SegmentParams.from_config({"method": "classical", "chunk": 512})
    assert p.method == "classical" and p.chunk == 512 and p.backend == SEGMENT_DEFAULTS["backend"]
    assert p.predictor_kwargs() == {}
    u = SegmentParams.from_config(None)
    assert u.predictor_kwargs(threads=3) == {"device": "auto", "threads": 3, "backend": "onnx",
                                             "precision": "fp32"}
    with pytest.raises(ScopeflowError, match="segment.bakend"):
        SegmentParams.from_config({"bakend": "onnx"})
    with pytest.raises(ScopeflowError, match="segment.backend"):
        SegmentParams.from_config({"backend": "tensorrt"})
    with pytest.raises(ScopeflowError, match="segment.chunk"):
        SegmentParams.from_config({"chunk": 100})


def test_training_helpers(tmp_path):
    import numpy as np

    from scopeflow.models.training import cached_arrays, minibatches, warmup_cosine

    assert warmup_cosine(0, 100, 10) == pytest.approx(0.1)
    assert warmup_cosine(9, 100, 10) == pytest.approx(1.0)
    assert warmup_cosine(10, 100, 10) == pytest.approx(1.0)
    assert warmup_cosine(100, 100, 10, floor=0.01) == pytest.approx(0.01)
    assert [list(b) for b in minibatches(list(range(7)), 3)] == [[0, 1, 2], [3, 4, 5], [6]]
    assert [list(b) for b in minibatches(list(range(7)), 3, min_size=2)] == [[0, 1, 2], [3, 4, 5]]
    calls = []

    def build():
        calls.append(1)
        return {"x": np.arange(4), "y": np.ones(4)}

    cache = tmp_path / "c" / "data.npz"
    first = cached_arrays(cache, ("x", "y"), build)
    again = cached_arrays(cache, ("x", "y"), build)
    assert len(calls) == 1 and cache.is_file()
    assert np.array_equal(first["x"], again["x"]) and np.array_equal(first["y"], again["y"])
    cached_arrays(None, ("x",), build)
    assert len(calls) == 2


def test_run_steps_lowers_a_loss():
    torch = pytest.importorskip("torch")
    from scopeflow.models.training import make_optimizer, run_steps

    torch.manual_seed(0)
    net = torch.nn.Linear(3, 1)
    x = torch.randn(64, 3)
    y = x @ torch.tensor([1.0, -2.0, 0.5]) + 0.3
    opt, sched = make_optimizer(net.parameters(), 0.05, steps=200, schedule="cosine", warmup=10)
    seen = []
    losses = run_steps(net, opt, sched, (None for _ in range(200)),
                       lambda net, _: torch.nn.functional.mse_loss(net(x)[:, 0], y),
                       on_step=lambda loss, ema: seen.append(ema))
    assert len(losses) == len(seen) == 200 and losses[-1] < 0.01 * losses[0]
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError, match="schedule"):
        make_optimizer(net.parameters(), 0.1, steps=10, schedule="step")
