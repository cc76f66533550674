"""numba's ``njit`` when numba can be imported, else a decorator that leaves functions as they are.

``SCOPEFLOW_NO_NUMBA=1`` forces the pure-numpy code paths (for tests and debugging); callers
check :data:`HAVE_NUMBA` and use their numpy implementations when it is False.
"""

from __future__ import annotations

import os

try:  # pragma: no cover - exercised when numba is installed
    if os.environ.get("SCOPEFLOW_NO_NUMBA"):
        raise ImportError("disabled by SCOPEFLOW_NO_NUMBA")
    from numba import njit

    HAVE_NUMBA = True
except ImportError:  # pragma: no cover
    HAVE_NUMBA = False

    def njit(*args, **kwargs):  # noqa: D103 - no-op stand-in for numba.njit
        def wrap(f):
            return f

        return wrap(args[0]) if args and callable(args[0]) else wrap

__all__ = ["HAVE_NUMBA", "njit"]
