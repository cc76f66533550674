"""Atomic writes: an output appears under its final name complete, or not at all.

Every writer of a workflow output writes to a temporary name beside the destination and
renames it into place with :func:`os.replace` (atomic on one file system), so a job killed
half-way never leaves a half-written file that looks finished.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_path", "replace", "temp_path", "write_text"]


def temp_path(dest: str | Path, unique: bool = False) -> Path:
    """The temporary name used for ``dest``: hidden, beside it.

    It keeps ``dest``'s suffix, so writers that choose the format from the name
    (``numpy.savez``, matplotlib, ...) write the right format. With ``unique``, the name
    holds this process's id, for files that several processes may write at once; otherwise
    the next write of ``dest`` replaces what a killed one left behind.
    """
    dest = Path(dest)
    pid = f".{os.getpid()}" if unique else ""
    return dest.with_name(f".{dest.name}{pid}.tmp{dest.suffix}")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def replace(tmp: str | Path, dest: str | Path) -> None:
    """Rename a finished file or folder ``tmp`` to ``dest``, replacing what is there.

    A folder already at ``dest`` (e.g. an older Zarr store) is removed first; a file is
    replaced atomically.
    """
    dest = Path(dest)
    if dest.is_dir() and not dest.is_symlink():
        shutil.rmtree(dest)
    os.replace(tmp, dest)


@contextmanager
def atomic_path(dest: str | Path, unique: bool = False) -> Iterator[Path]:
    """Write ``dest`` through a temporary path: renamed into place when the block succeeds.

    Parameters
    ----------
    dest : str or Path
        The final file or folder; its parent folder is created.
    unique : bool
        A temporary name unique to this process (see :func:`temp_path`).

    Yields
    ------
    Path
        The temporary path to write (see :func:`temp_path`); anything left there is removed
        first. If the block raises, it is removed and ``dest`` is left untouched.

    Examples
    --------
    >>> with atomic_path(out / "flatfield.npz") as tmp:  # doctest: +SKIP
    ...     np.savez(tmp, **fields)
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(dest, unique)
    _remove(tmp)
    try:
        yield tmp
        replace(tmp, dest)
    except BaseException:
        _remove(tmp)
        raise


def write_text(dest: str | Path, text: str, encoding: str = "utf-8", unique: bool = False) -> Path:
    """Write ``text`` to ``dest`` atomically (see :func:`atomic_path`); returns ``dest``."""
    with atomic_path(dest, unique) as tmp:
        tmp.write_text(text, encoding=encoding)
    return Path(dest)
