"""The contract between the chunked segmentation machinery and a per-tile predictor.

A predictor turns an image tile into instance labels in three steps, so that the
machinery in :mod:`scopeflow.segment.chunked` can run it over any chunking and get
the same cells:

1. ``prepare(image)`` computes the few *global* statistics a predictor needs from the
   whole field of view (e.g. mean/std for a z-score, a threshold). It is called once per
   image before any tile, so tile results never depend on which tile they came from.
2. ``predict(tile)`` maps a float32 tile (h, w) to float32 maps (C, h, w). A map value at a
   pixel may depend on at most ``context`` pixels of image around it (receptive field).
3. ``decode(maps)`` turns maps into ``(labels, seeds)``: int32 arrays (h, w). ``labels`` are
   instances (0 = background); ``seeds`` marks, for every instance, a small compact core
   region with the same id. Every instance must contain its seed, be at most
   ``object_size`` pixels across, and be decided by maps within that distance.

4. ``verify()`` (optional) is called after ``predict`` and before any labels are returned
   or stored (in memory: once every chunk is decoded, so a slow check of the inference
   engine can run while the chunks decode); it raises when the maps must not be used.

The machinery computes the maps of the whole image once (``predict`` may tile internally but
must not depend on the chunking), gives each output chunk ``object_size + decode_context``
pixels of halo for decoding (``decode_context`` is optional: how far beyond an instance the
maps can change its decoding; without it ``context`` is used), keeps the
instances whose seed starts (first pixel in raster order) inside the chunk's core, and names
each by that pixel's global linear index. Sorting those names gives the final sequential ids,
so labels do not depend on the chunk size.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Predictor(Protocol):
    """Per-tile predictor plugged into :func:`scopeflow.segment.chunked.segment_image`.

    Attributes
    ----------
    name : str
        Short method name recorded in provenance (``"classical"``, ``"unet"``).
    context : int
        Pixels of image context a map value depends on, each side.
    object_size : int
        Largest instance extent in pixels (diameter of the largest cell to keep).
    """

    name: str
    context: int
    object_size: int

    def prepare(self, image: np.ndarray) -> None:
        """Compute global per-image statistics from the whole 2-D image (y, x)."""
        ...

    def predict(self, tile: np.ndarray) -> np.ndarray:
        """Return float32 maps (C, h, w) for a float32 tile (h, w)."""
        ...

    def decode(self, maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(labels, seeds)``, int32 (h, w) each, from maps (C, h, w)."""
        ...
