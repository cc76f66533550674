"""What every smear stage shares: reading the next item ahead, and records written atomically."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from scopeflow.io.atomic import write_text

#: FOVs of at most this many pixels are read ahead and written to the store in the
#: background while the next one is computed; larger ones one at a time (bounding a job's
#: memory to about one FOV's arrays).
OVERLAP_MAX_PIXELS = 16 * 2**20


def atomic_json(obj: Mapping, path: str | Path) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str))


def prefetch(fn, items: Sequence, ahead=True):
    """Yield ``fn(item)`` for each item in order; the next item's call runs in a background
    thread while the caller works on the current one (one item in flight) when ``ahead``
    (a bool, or a predicate of the current result: large FOVs are not read ahead, bounding
    memory).

    Exceptions are raised when their item is reached, so earlier items are handled first.
    """
    items = list(items)
    if not items:
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1, thread_name_prefix="scopeflow-read") as pool:
        future = pool.submit(fn, items[0])
        for k in range(len(items)):
            box = [future.result()]
            future = None  # the future holds its result too
            if k + 1 < len(items) and (ahead(box[0]) if callable(ahead) else ahead):
                future = pool.submit(fn, items[k + 1])
            try:
                # the caller holds the only reference: it frees the item when done with it
                yield box.pop()
            except BaseException:
                if future is not None:
                    future.cancel()
                raise
            if k + 1 < len(items) and future is None:
                future = pool.submit(fn, items[k + 1])
