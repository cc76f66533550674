"""Glue for the Snakemake scripts in ``scripts/``: logging to the rule's log, one-line errors,
the job's start-up time and the resources it used."""

from __future__ import annotations

import gc
import logging
import os
import resource
import sys
import time
from collections.abc import Callable

from scopeflow.errors import ScopeflowError, os_error_line

#: Audit event the library raises when it reads a table (pyarrow opens files in C++, which
#: raises no ``open`` event): ``sys.audit(READ_EVENT, path)``.
READ_EVENT = "scopeflow.read"

#: Files that are records or settings, not the data a stage works on.
_RECORD_SUFFIXES = (".json", ".tsv", ".yaml", ".yml", ".txt", ".log")

#: Path parts of code, caches and Snakemake's own files.
_SKIP_PARTS = ("__pycache__", "site-packages", "/.snakemake/", "/.cache/")


def process_start() -> float | None:
    """Wall-clock time (``time.time()`` scale, s) at which this process started, or None.

    From ``/proc/self/stat`` (start in clock ticks since boot) and ``/proc/uptime``: 10 ms
    resolution; None where ``/proc`` is absent (not Linux).
    """
    try:
        with open("/proc/self/stat") as fh:
            ticks = int(fh.read().rsplit(")", 1)[1].split()[19])  # field 22, starttime
        with open("/proc/uptime") as fh:
            uptime = float(fh.read().split()[0])
        return time.time() - (uptime - ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return None


class StartupClock:
    """Time from process start to the job's first read of data (its start-up).

    An audit hook (:func:`sys.addaudithook`) notes the first ``open`` of a file that is
    neither a folder, part of the Python installation, this package (code, model weights,
    numba's cache), Snakemake's files, a cache or system folder, nor a small record or setting (``.json``, ``.tsv``,
    ``.yaml``, ``.txt``, ``.log``), and the first :data:`READ_EVENT` (tables): what comes
    before is start-up — the interpreter, Snakemake's script preamble, imports, model loading.

    Attributes
    ----------
    wall : float or None
        Seconds from process start to the first data read (None: no read seen, or no ``/proc``).
    cpu : float or None
        CPU seconds (user + system, all threads) this process had used by then.
    path : str or None
        The file first read.
    """

    def __init__(self, ignore: tuple[str, ...] = ()) -> None:
        self.start = process_start()
        self.wall: float | None = None
        self.cpu: float | None = None
        self.path: str | None = None
        home = os.path.expanduser("~")
        roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.dirname(os.path.abspath(__file__)),
                 os.path.join(home, ".cache"), os.path.join(home, ".config"), os.path.join(home, ".local"),
                 "/proc", "/sys", "/dev", "/etc", "/usr", "/lib", "/opt"}
        self._skip = tuple(os.path.join(os.path.realpath(r), "") for r in roots) + tuple(roots)
        self._ignore = {os.path.abspath(p) for p in ignore}
        sys.addaudithook(self._hook)

    def _hook(self, event: str, args: tuple) -> None:
        if self.wall is not None or (event != "open" and event != READ_EVENT):
            return
        path = args[0] if args else None
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        if not isinstance(path, (str, os.PathLike)):
            return
        path = os.path.abspath(os.fspath(path))
        if (path.endswith(_RECORD_SUFFIXES) or path.startswith(self._skip) or path in self._ignore
                or any(part in path for part in _SKIP_PARTS) or os.path.isdir(path)):
            return
        usage = resource.getrusage(resource.RUSAGE_SELF)
        self.cpu = usage.ru_utime + usage.ru_stime
        self.path = path
        self.wall = time.time() - self.start if self.start is not None else -1.0

    def line(self, rule: str) -> str:
        """The log line the pipeline benchmark reads: ``start-up <rule>: <wall> s, <cpu> CPU-s (...)``."""
        if self.wall is None or self.wall < 0:
            return f"start-up {rule}: not measured (no data read seen, or no /proc)"
        return f"start-up {rule}: {self.wall:.3f} s, {self.cpu:.3f} CPU-s (process start to first read of {self.path})"


def usage_line(rule: str, start: float | None) -> str:
    """The log line the pipeline benchmark reads for a finished job:
    ``used <rule>: <wall> s, <cpu> CPU-s, <rss> MB peak``.

    Wall seconds from process start (:func:`process_start`; ``-1`` without ``/proc``), CPU
    seconds of this process and its finished children (user + system, every thread: exact,
    unlike a sampling monitor's), and the peak resident memory of this process (MB).
    """
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime
    wall = time.time() - start if start is not None else -1.0
    return f"used {rule}: {wall:.3f} s, {cpu:.3f} CPU-s, {own.ru_maxrss / 1024:.0f} MB peak"


def run(main: Callable[[object], None], snakemake) -> None:
    """Run ``main(snakemake)`` with logging to ``snakemake.log[0]``.

    A :class:`~scopeflow.errors.ScopeflowError` (bad input the user can fix) or an
    :class:`OSError` (full disk, permissions; :func:`~scopeflow.errors.os_error_line`) is
    written as one ``ERROR:`` line to the log and stderr and the job exits with status 1, so
    Snakemake removes the job's outputs and, with ``--keep-going``, carries on with other
    samples.
    On success the job's start-up (:class:`StartupClock`) and what it used
    (:func:`usage_line`) are logged, and the live objects
    are frozen for the interpreter's exit, as in :func:`scopeflow.cli.run` (its final
    collections would traverse them all).
    """
    log_path = snakemake.log[0] if len(snakemake.log) else None
    clock = StartupClock(ignore=tuple(str(p) for p in snakemake.log))
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        handlers.append(logging.FileHandler(log_path, mode="w"))
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", handlers=handlers, force=True
    )
    try:
        main(snakemake)
    except (ScopeflowError, OSError) as exc:
        line = os_error_line(exc) if isinstance(exc, OSError) else str(exc)
        try:
            logging.getLogger("scopeflow").error("%s", line)
            for h in handlers:
                h.flush()
        except OSError:  # the log's own disk is full: stderr still gets the line
            print(f"ERROR {line}", file=sys.stderr)
        sys.exit(1)
    rule = getattr(snakemake, "rule", "job")
    logging.getLogger("scopeflow").info("%s", clock.line(rule))
    logging.getLogger("scopeflow").info("%s", usage_line(rule, clock.start))
    gc.freeze()
