"""The one image reader (scopeflow.io.images) and the atomic-write helper (scopeflow.io.atomic)."""

from __future__ import annotations

import numpy as np
import pytest

from scopeflow.errors import ImageNotFoundError, InputImageError
from scopeflow.io.atomic import atomic_path, replace, temp_path, write_text
from scopeflow.io.images import read_image, read_stack, to_frames, to_plane


def _rgb(shape=(6, 7)):
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (*shape, 3), dtype=np.uint8)


def test_colour_rules_on_an_rgb_png(tmp_path):
    import imageio.v3 as iio

    rgb = _rgb()
    iio.imwrite(tmp_path / "rgb.png", rgb)
    green = read_image(tmp_path / "rgb.png", "green")
    assert green.dtype == np.float32
    np.testing.assert_array_equal(green, rgb[..., 1].astype(np.float32) / np.float32(255))
    # "mean": the mean of the stored R, G, B, then scaled by the stored type (training's rule)
    mean = read_image(tmp_path / "rgb.png", "mean")
    expected = (rgb.astype(np.float32).mean(-1) / 255.0).astype(np.float32)
    np.testing.assert_array_equal(mean, expected)
    assert read_image(tmp_path / "rgb.png", "first", unit=False).tolist() == rgb[..., 0].tolist()
    with pytest.raises(InputImageError, match="rgb.png: colour image with differing channels"):
        read_image(tmp_path / "rgb.png", "grey", unit=False)
    grey = np.repeat(rgb[..., :1], 3, axis=2)
    iio.imwrite(tmp_path / "grey.png", grey)
    assert read_image(tmp_path / "grey.png", "grey", unit=False).tolist() == rgb[..., 0].tolist()


def test_plane_shapes():
    a = np.arange(42, dtype=np.uint16).reshape(6, 7)
    for arr in (a, a[None], a[..., None], np.stack([a, a * 0 + 9], -1)):  # grey, (1,y,x), (y,x,1), grey+alpha
        assert to_plane(arr, "green").tolist() == a.tolist()
    planar = np.stack([a * 0, a, a * 0])  # (3, y, x) planar RGB
    assert to_plane(planar, "green").tolist() == a.tolist()
    with pytest.raises(InputImageError, match=r"f.tif: expected a 2-D grey or RGB image.*\(5, 6, 7\); do this"):
        to_plane(np.zeros((5, 6, 7)), "green", "f.tif", todo="do this")
    with pytest.raises(ValueError, match="colour rule 'blue' unknown"):
        to_plane(a, "blue")


def test_frames_of_arrays():
    movie = np.arange(2 * 6 * 5, dtype=np.uint8).reshape(2, 6, 5)
    assert to_frames(movie).shape == (2, 6, 5)
    assert to_frames(movie[0]).shape == (1, 6, 5)
    rgb = np.stack([movie * 0, movie, movie * 0], -1)  # (t, y, x, 3)
    np.testing.assert_array_equal(to_frames(rgb), movie)
    np.testing.assert_array_equal(to_frames(rgb[0]), movie[:1])  # one colour frame (y, x, 3)
    with pytest.raises(InputImageError, match="expected frames"):
        to_frames(np.zeros((2, 3, 4, 5, 6)))


def test_stack_and_pages(tmp_path):
    import tifffile

    movie = np.arange(3 * 8 * 9, dtype=np.uint16).reshape(3, 8, 9)
    tifffile.imwrite(tmp_path / "m.tif", movie, photometric="minisblack")
    np.testing.assert_array_equal(read_stack(tmp_path / "m.tif"), movie)
    page1 = read_image(tmp_path / "m.tif", page=1, unit=False)
    np.testing.assert_array_equal(page1, movie[1])
    np.testing.assert_allclose(read_image(tmp_path / "m.tif", page=2), movie[2] / 65535.0, rtol=1e-6)


def test_missing_and_truncated_files(tmp_path):
    with pytest.raises(ImageNotFoundError, match="nope.png: image file not found") as err:
        read_image(tmp_path / "nope.png")
    assert isinstance(err.value, FileNotFoundError) and isinstance(err.value, InputImageError)
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")

    class MyError(InputImageError):
        pass

    with pytest.raises(MyError, match="bad.png: cannot read image.*truncated.*: fix it$"):
        read_image(tmp_path / "bad.png", error=MyError, todo="fix it")


def test_plane_reference_objects_are_read():
    class Ref:
        def read(self):
            return np.full((4, 5, 3), (1, 200, 3), np.uint8)

        def __str__(self):
            return "container::page:0"

    out = read_image(Ref(), "green", unit=False)
    assert out.shape == (4, 5) and set(out.ravel().tolist()) == {200}


def test_atomic_path_replaces_on_success_only(tmp_path):
    dest = tmp_path / "sub" / "table.npz"
    with atomic_path(dest) as tmp:
        assert tmp.parent == dest.parent and tmp.name.startswith(".") and tmp.suffix == ".npz"
        np.savez(tmp, a=np.arange(3))
        assert not dest.exists()
    assert np.load(dest)["a"].tolist() == [0, 1, 2]
    with pytest.raises(RuntimeError):
        with atomic_path(dest) as tmp:
            np.savez(tmp, a=np.arange(5))
            raise RuntimeError("killed half-way")
    assert np.load(dest)["a"].tolist() == [0, 1, 2]  # the old output is untouched
    assert sorted(p.name for p in dest.parent.iterdir()) == ["table.npz"]  # no temporary left


def test_write_text_and_folders(tmp_path):
    dest = tmp_path / "a.json"
    assert write_text(dest, "{}") == dest and dest.read_text() == "{}"
    write_text(dest, "[1]", unique=True)
    assert dest.read_text() == "[1]" and [p.name for p in tmp_path.iterdir()] == ["a.json"]
    assert temp_path(dest, unique=True) != temp_path(dest)
    store = tmp_path / "movie.ome.zarr"
    for content in ("old", "new"):
        tmp = temp_path(store)
        tmp.mkdir()
        (tmp / "zarr.json").write_text(content)
        replace(tmp, store)  # an existing folder is replaced
    assert (store / "zarr.json").read_text() == "new" and not temp_path(store).exists()


def test_io_is_a_leaf_without_cycles_or_long_modules():
    """io/ imports only itself and scopeflow.errors (lazy imports included), no io module is on
    an import cycle, and none is over 600 lines."""
    import ast
    from pathlib import Path

    io_dir = Path(__file__).resolve().parents[1] / "src" / "scopeflow" / "io"
    mods = {}
    for path in io_dir.rglob("*.py"):
        parts = list(path.relative_to(io_dir.parents[1]).with_suffix("").parts)
        mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {}
    for name, path in mods.items():
        assert len(path.read_text(encoding="utf-8").splitlines()) <= 600, path
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            for t in targets:
                if t.startswith("scopeflow"):
                    assert t.startswith(("scopeflow.io", "scopeflow.errors")), f"{name} imports {t}"
                    if t in mods and t != name:
                        deps.add(t)
        graph[name] = deps

    def reaches(start, goal, seen):
        for d in graph[start]:
            if d == goal or (d not in seen and (seen.add(d) or reaches(d, goal, seen))):
                return True
        return False

    on_cycle = sorted(m for m in graph if reaches(m, m, set()))
    assert not on_cycle, on_cycle
