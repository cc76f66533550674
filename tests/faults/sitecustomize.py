"""Fault injection for tests/test_drop_folder.py: a full disk for chosen paths.

Put this folder first on PYTHONPATH and set ``SCOPEFLOW_TEST_ENOSPC`` to a substring: every
Python process of the run (Snakemake and each job's script) then fails any write to a path
containing it with ``OSError(ENOSPC)``, as a full file system would. Without the variable
nothing is changed.
"""

import builtins
import errno
import io
import os

_TARGET = os.environ.get("SCOPEFLOW_TEST_ENOSPC")

if _TARGET:
    _open = io.open

    def _open_or_full(file, mode="r", *args, **kwargs):
        if isinstance(file, (str, bytes, os.PathLike)) and any(c in mode for c in "wax+"):
            name = os.fsdecode(os.fspath(file))
            if _TARGET in name:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), name)
        return _open(file, mode, *args, **kwargs)

    builtins.open = io.open = _open_or_full
