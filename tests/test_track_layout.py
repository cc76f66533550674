"""The beads room (scopeflow.track): one concept per module, small modules, a thin package API."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

from scopeflow.track import localize, params

TRACK = Path(__file__).resolve().parents[1] / "src" / "scopeflow" / "track"


def test_every_track_module_is_under_600_lines():
    sizes = {p.relative_to(TRACK).as_posix(): len(p.read_text(encoding="utf-8").splitlines())
             for p in TRACK.rglob("*.py")}
    assert {"localize.py", "peaks.py", "refine.py", "fit.py", "templates.py", "link.py",
            "motion.py", "stages.py", "movie.py", "_fast/gauss.py"} <= set(sizes)
    big = {k: n for k, n in sizes.items() if n > 600}
    assert not big, f"modules over 600 lines: {big}"


def test_package_init_only_re_exports():
    tree = ast.parse((TRACK / "__init__.py").read_text(encoding="utf-8"))
    logic = [type(n).__name__ for n in tree.body
             if not isinstance(n, (ast.Expr, ast.ImportFrom, ast.Import, ast.Assign))]
    assert not logic, logic
    for sub in ("__init__.py", "_fast/__init__.py"):
        tree = ast.parse((TRACK / sub).read_text(encoding="utf-8"))
        assert not [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef))]


def test_localiser_options_live_in_the_parameter_object():
    sig = inspect.signature(localize.locate_stack)
    assert list(sig.parameters) == ["stack", "model", "params", "progress", "first_frame",
                                    "workers", "changes"]
    assert sig.parameters["params"].annotation in (params.LocateParams, "LocateParams | None")
