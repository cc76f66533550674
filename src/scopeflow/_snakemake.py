"""Glue for the Snakemake scripts in ``scripts/``: logging to the rule's log and one-line errors."""

from __future__ import annotations

import gc
import logging
import sys
from collections.abc import Callable

from scopeflow.errors import ScopeflowError, os_error_line


def run(main: Callable[[object], None], snakemake) -> None:
    """Run ``main(snakemake)`` with logging to ``snakemake.log[0]``.

    A :class:`~scopeflow.errors.ScopeflowError` (bad input the user can fix) or an
    :class:`OSError` (full disk, permissions; :func:`~scopeflow.errors.os_error_line`) is
    written as one ``ERROR:`` line to the log and stderr and the job exits with status 1, so
    Snakemake removes the job's outputs and, with ``--keep-going``, carries on with other
    samples.
    On success the live objects are frozen for the interpreter's exit, as in
    :func:`scopeflow.cli.run` (its final collections would traverse them all).
    """
    log_path = snakemake.log[0] if len(snakemake.log) else None
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
    gc.freeze()
