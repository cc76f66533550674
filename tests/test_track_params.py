"""Bead-tracking options: one default each, the same names in config, library and CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from scopeflow.cli import build_parser
from scopeflow.track.localize import locate_stack
from scopeflow.track.params import LinkParams, LocateParams

REPO = Path(__file__).resolve().parents[1]
#: track.* keys that are not localiser or linker options (calibration, detector, job threads)
RUN_KEYS = {"pixel_size_um", "fps", "model", "threads"}


def _schema_track() -> dict:
    schema = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
    return schema["properties"]["track"]["properties"]


def test_defaults_are_the_schema_defaults():
    props = _schema_track()
    assert set(props) == RUN_KEYS | set(LocateParams.CONFIG_KEYS) | set(LinkParams.CONFIG_KEYS)
    for cls in (LocateParams, LinkParams):
        d = cls()
        for key in cls.CONFIG_KEYS:
            assert getattr(d, key) == props[key]["default"], f"{cls.__name__}.{key}"
    config = yaml.safe_load((REPO / "config.yaml").read_text())["track"]
    assert LocateParams.from_config(config) == LocateParams()
    assert LinkParams.from_config(config) == LinkParams()


def test_cli_flags_are_the_config_keys_with_their_defaults():
    parser = build_parser()
    for cmd, classes in (("locate", (LocateParams,)), ("track", (LocateParams, LinkParams))):
        args = parser.parse_args([cmd, "movie.tif", "-o", "out.csv"])
        for cls in classes:
            for key in cls.CONFIG_KEYS:
                assert getattr(args, key) == getattr(cls(), key), f"{cmd} {key}"
    args = parser.parse_args(["track", "m.tif", "-o", "o.csv", "--search-range-px", "3.5",
                              "--adaptive-stop-px", "1", "--diameter-px", "9", "--sigma-px",
                              "1.2", "--no-drift"])
    assert (args.search_range_px, args.adaptive_stop_px, args.diameter_px, args.sigma_px,
            args.drift) == (3.5, 1.0, 9.0, 1.2, False)


def test_from_config_and_changes():
    p = LocateParams.from_config({"snr_threshold": 7.0, "model": "none", "search_range_px": 2},
                                 sigma_px=1.1)
    assert (p.snr_threshold, p.sigma_px, p.profile) == (7.0, 1.1, "auto")
    q = LinkParams.from_config({"search_range_px": 2.0, "snr_threshold": 7.0})
    assert q.search_range_px == 2.0 and q.with_changes(memory=0).memory == 0
    assert q.memory == 3  # with_changes returns a copy
    with pytest.raises(TypeError, match="unknown option 'search_range'"):
        LinkParams().with_changes(search_range=4)
    with pytest.raises(ValueError, match="profile must be"):
        LocateParams(profile="blob")
    rec = LocateParams(template=np.ones((3, 3))).record()
    assert "template" not in rec and rec["snr_threshold"] == 5.0


def test_locate_stack_takes_params_or_field_changes():
    rng = np.random.default_rng(0)
    frame = rng.poisson(10.0, (48, 48)).astype(np.float64)
    yy, xx = np.mgrid[:48, :48]
    for y, x in ((12.3, 14.6), (30.2, 33.9)):
        frame += 400 * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * 1.5**2)) / (2 * np.pi * 2.25)
    stack = frame[None]
    a = locate_stack(stack, None, LocateParams(profile="gaussian", sigma_px=1.5), workers=1)
    b = locate_stack(stack, profile="gaussian", sigma_px=1.5, workers=1)
    assert len(a) == 2
    assert a.equals(b)
    with pytest.raises(TypeError, match="unknown option 'sigma'"):
        locate_stack(stack, sigma=1.5)
