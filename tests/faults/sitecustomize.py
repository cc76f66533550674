"""Fault injection for tests/test_drop_folder.py: a full disk for chosen paths, and a copy
that lands between planning and ingest.

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

# A copy landing between planning and ingest: with ``SCOPEFLOW_TEST_COPY_AT_INGEST=src::dst``,
# the process of an ingest job copies the files of ``src`` missing in ``dst`` when it starts,
# i.e. after Snakemake planned the run from the files then in ``dst``.
_COPY = os.environ.get("SCOPEFLOW_TEST_COPY_AT_INGEST")

if _COPY:
    import sys

    if any(os.path.basename(a).endswith("ingest.py") for a in sys.argv[:1]):
        import shutil

        _src, _dst = _COPY.split("::")
        for _root, _dirs, _files in os.walk(_src):
            _rel = os.path.relpath(_root, _src)
            os.makedirs(os.path.join(_dst, _rel), exist_ok=True)
            for _name in _files:
                if not os.path.exists(os.path.join(_dst, _rel, _name)):
                    shutil.copy2(os.path.join(_root, _name), os.path.join(_dst, _rel, _name))
