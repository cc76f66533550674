"""Is an acquisition complete? Decided from the data, and the file set it was processed from.

A drop folder receives acquisitions while the workflow may run. Two questions are answered
here, without reading pixels:

1. **Ready?** :func:`check_ready` returns ``Readiness(ready, reason, how)``. The layout's
   own completion marker decides when there is one (Octopi/Squid write ``done`` into each
   time-point folder when it finishes; Squid's Zarr mode sets ``acquisition_complete`` in the
   ``_squid`` attributes of its stores). Without a marker, the acquisition is ready when
   nothing under it changed (file or folder, mtime or ctime) for ``quiet_s`` seconds. The
   ctime catches copies that keep the source's mtimes (``cp -p``, ``rsync -a``).
   Other layouts plug in with :func:`register_marker_check`.
2. **Which files?** :func:`file_manifest` lists the files (relative name, size in bytes,
   mtime in ns) of an acquisition. The workflow stores it per sample and rewrites it only when
   it changes, so a changed file set (FOVs added to a processed acquisition) reruns exactly
   that sample, and the ingest job processes the files listed there and no others
   (:func:`verify_files`).
3. **Which time points?** An acquisition saved in time-point folders (``{t}/``) is processed
   time point by time point: :func:`complete_timepoints` finds the leading time points that
   are complete while later ones are still being acquired, :func:`timepoint_records` splits a
   manifest into one per time point (its own folder's files and those outside every time-point
   folder). A new time point then adds its own jobs and leaves the finished ones alone.

Kept light (standard library only): Snakemake imports it when it builds the workflow.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from scopeflow.errors import ScopeflowError
from scopeflow.io.atomic import write_text

__all__ = [
    "ALL_TIMEPOINTS",
    "DONE_FILE",
    "IGNORED_NAMES",
    "Readiness",
    "check_ready",
    "complete_timepoints",
    "file_manifest",
    "newest_change",
    "planned_input",
    "planned_timepoint",
    "read_manifest",
    "read_manifest_or_none",
    "register_marker_check",
    "select_timepoints",
    "timepoint_records",
    "timepoint_units",
    "verify_unchanged",
    "verify_files",
    "write_if_changed",
]

#: Octopi writes this empty file into a time-point folder when the time point is complete.
DONE_FILE = "done"
#: Completion markers accepted in a time-point folder: Octopi's ``done`` and the hidden ``.done``
#: that current Squid versions write.
DONE_FILES = (DONE_FILE, ".done")
#: Files that never count as acquisition content (markers and operating-system clutter).
IGNORED_NAMES = frozenset({*DONE_FILES, "Thumbs.db", "desktop.ini"})
_PARAMS_FILE = "acquisition parameters.json"
#: The unit of an input not split into time-point folders (DPC images, a folder without ``{t}/``).
ALL_TIMEPOINTS = "all"


@dataclass(frozen=True)
class Readiness:
    """Whether an acquisition can be processed now.

    Attributes
    ----------
    ready : bool
        True when complete.
    reason : str
        One line saying why (shown when the sample is skipped).
    how : str
        What decided: ``"marker"`` (a completion marker of the layout), ``"quiet"`` (the
        quiet period), ``"missing"`` (the path does not exist) or ``"failed"`` (the
        acquisition will never complete: aborted, or its writer stopped; ``reason`` is then
        the sample's one-line error). A marker check may answer ``"unconfirmed"`` (marker
        present, the data disagree, e.g. fewer images than ``coordinates.csv`` lists):
        :func:`check_ready` then waits for the quiet period; or ``"pending"`` (the layout's
        marker says not yet): :func:`check_ready` waits, and fails the acquisition once
        nothing under it changed for ``stalled_s``.
    """

    ready: bool
    reason: str
    how: str


MarkerCheck = Callable[[Path], "Readiness | None"]
_MARKER_CHECKS: list[MarkerCheck] = []


def register_marker_check(check: MarkerCheck) -> MarkerCheck:
    """Add a layout's completion-marker check (usable as a decorator).

    ``check(path)`` returns None when the layout at ``path`` does not use that marker (the next
    check, and finally the quiet period, decides), else a :class:`Readiness` with
    ``how="marker"``. Checks run in registration order; the first answer wins.
    """
    _MARKER_CHECKS.append(check)
    return check


@register_marker_check
def _octopi_done(path: Path) -> Readiness | None:
    """Octopi/Squid individual-image layout: every time-point folder holds ``done`` (or ``.done``).

    Applies when the folder holds ``acquisition parameters.json`` and at least one time-point
    folder holds ``done`` (older Octopi versions write none: the quiet period decides).
    """
    if not path.is_dir() or not (path / _PARAMS_FILE).is_file():
        return None
    tdirs = sorted((p for p in path.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name))
    done = [t for t in tdirs if any((t / name).is_file() for name in DONE_FILES)]
    if not done or _container_save_mode(path):
        return None
    missing = [t for t in tdirs if t not in done]
    if missing:
        return Readiness(
            False,
            f"time point {missing[0].name}/ has no '{DONE_FILE}' file yet ({len(done)} of {len(tdirs)} "
            f"time points done); if the acquisition was stopped, create it: touch '{missing[0] / DONE_FILE}'",
            "marker",
        )
    short = _fewer_images_than_listed(path, tdirs)
    if short:
        return Readiness(False, short, "unconfirmed")
    return Readiness(True, f"'{DONE_FILE}' in every time-point folder ({len(tdirs)})", "marker")


def _container_save_mode(path: Path) -> bool:
    """Whether Squid wrote the acquisition into containers (multi-page TIFF, OME-TIFF, Zarr).

    Squid writes ``.done`` into their time-point folders too, but a container holds every time
    point and is complete only when the acquisition ends: its own marker, else the quiet
    period, decides.
    """
    from scopeflow.errors import ScopeflowError as _Err
    from scopeflow.io.squid import detect_save_mode

    try:
        return detect_save_mode(path) != "INDIVIDUAL_IMAGES"
    except _Err:
        return False


def _csv_rows(csv_path: Path) -> int:
    import csv

    try:
        with open(csv_path, newline="", encoding="utf-8", errors="replace") as fh:
            rows = [r for r in csv.reader(fh) if r and any(c.strip() for c in r)]
    except OSError:
        return 0
    return max(0, len(rows) - 1)


def _fewer_images_than_listed(path: Path, tdirs: list[Path]) -> str | None:
    """A time point whose ``coordinates.csv`` lists more FOVs than have images, or None.

    Octopi/Squid write ``coordinates.csv`` (one row per FOV and z) when the time point ends, as
    they write ``done``; a copy that brought both before all images (``cp -r`` copies in
    directory order) shows here.
    """
    from collections import Counter

    from scopeflow.errors import ScopeflowError as _Err
    from scopeflow.io.octopi import read_acquisition

    listed = {t.name: _csv_rows(t / "coordinates.csv") for t in tdirs if (t / "coordinates.csv").is_file()}
    if not listed:
        return None
    try:
        per_t = Counter(str(f.t) for f in read_acquisition(path, required_channels=()).fovs)
    except _Err:
        return None
    for t, n in listed.items():
        if per_t.get(t, 0) < n:
            return (f"{t}/coordinates.csv lists {n} FOVs but {per_t.get(t, 0)} have images "
                    "(still being copied?)")
    return None


def _zarr_attributes(meta_file: Path) -> dict:
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(meta, dict):
        return {}
    attrs = meta.get("attributes", meta) if meta_file.name == "zarr.json" else meta
    return attrs if isinstance(attrs, dict) else {}


def _is_array(meta_file: Path) -> bool:
    """Whether a Zarr v3 ``zarr.json`` describes an array (not a group)."""
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and meta.get("node_type") == "array"


@register_marker_check
def _squid_zarr_complete(path: Path) -> Readiness | None:
    """Squid's Zarr saving mode: every store's ``_squid`` attributes say ``acquisition_complete``.

    Applies when some ``zarr.json`` / ``.zattrs`` under ``path`` carries a ``_squid`` block. A
    store marked ``aborted`` fails at once (Squid never completes it); one merely not complete
    is ``"pending"`` (see :func:`check_ready`'s ``stalled_s``).
    """
    if not path.is_dir():
        return None
    blocks = []
    for root, dirs, files in os.walk(path):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in ("zarr.json", ".zattrs"):
            if name in files:
                squid = _zarr_attributes(Path(root) / name).get("_squid")
                if isinstance(squid, dict):
                    blocks.append((Path(root), squid))
        if ".zarray" in files or "zarr.json" in files and _is_array(Path(root) / "zarr.json"):
            dirs[:] = []  # inside an array: chunk folders, no more metadata below
            # (a group with digit-named children, e.g. a plate well's FOVs, is walked on)
    if not blocks:
        return None
    pending = [(p, b) for p, b in blocks if b.get("acquisition_complete") is not True]
    aborted = [p for p, b in pending if b.get("aborted") is True]
    if aborted:
        return Readiness(
            False,
            f"{aborted[0] / 'zarr.json'}: Squid marked this store aborted (_squid.aborted: true), "
            "so it never completes; re-acquire, or remove the sample from the drop folder",
            "failed",
        )
    if pending:
        return Readiness(
            False,
            f"{pending[0][0] / 'zarr.json'}: acquisition_complete is not set yet in its _squid "
            f"attributes ({len(blocks) - len(pending)} of {len(blocks)} stores complete)",
            "pending",
        )
    return Readiness(True, f"acquisition_complete in every Squid store ({len(blocks)})", "marker")


def _walk(path: Path, hidden: bool = False) -> Iterable[tuple[Path, os.stat_result]]:
    """(path, lstat) of ``path`` and of everything under it; hidden names only with ``hidden``."""
    yield path, path.lstat()
    if not path.is_dir():
        return
    for root, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if hidden or not d.startswith("."))
        for name in [*dirs, *sorted(f for f in files if hidden or not f.startswith("."))]:
            p = Path(root) / name
            try:
                yield p, p.lstat()
            except FileNotFoundError:  # removed while listed
                continue


def newest_change(path: str | Path) -> float:
    """Latest mtime or ctime (s since the epoch) of ``path`` and everything under it.

    Hidden files (names starting with ``.``) count too: ``rsync`` writes into them first.
    """
    newest = 0.0
    for _, st in _walk(Path(path), hidden=True):
        newest = max(newest, st.st_mtime, st.st_ctime)
    return newest


def check_ready(path: str | Path, quiet_s: float = 60.0, *, now: float | None = None,
                stalled_s: float | None = None) -> Readiness:
    """Whether the acquisition (or image file/folder) at ``path`` is complete.

    Parameters
    ----------
    path : str or Path
        Acquisition folder, folder of images, or image file.
    quiet_s : float
        Seconds without any change under ``path`` after which an acquisition without a
        completion marker is taken as complete.
    now : float, optional
        Current time (s since the epoch); default :func:`time.time`.
    stalled_s : float, optional
        An acquisition whose own marker says "not complete" (a Squid Zarr store without
        ``acquisition_complete``) and under which nothing changed for this long is failed
        (``how="failed"``, naming the store's ``zarr.json``): its writer stopped (crash, power
        cut) and it will never complete. The wait is at least twice the acquisition's
        time-lapse interval ``dt(s)`` (nothing is written between time points). None: wait
        for ever.

    Returns
    -------
    Readiness
    """
    p = Path(path)
    if not p.exists():
        return Readiness(False, f"{p}: does not exist", "missing")
    now = time.time() if now is None else now
    for check in _MARKER_CHECKS:
        verdict = check(p)
        if verdict is None:
            continue
        if verdict.how == "pending":
            return _pending(p, verdict, now, stalled_s)
        if verdict.how != "unconfirmed":
            return verdict
        # a marker whose data disagree: wait for the quiet period, then trust the marker
        age = now - newest_change(p)
        if age >= quiet_s:
            return Readiness(True, f"marker present, {verdict.reason}, but no change for {age:.0f} s", "quiet")
        return Readiness(False, f"{verdict.reason}; waits for {quiet_s:g} s without changes", "quiet")
    age = now - newest_change(p)
    if age >= quiet_s:
        return Readiness(True, f"no change for {age:.0f} s (quiet period {quiet_s:g} s)", "quiet")
    return Readiness(
        False,
        f"last change {max(age, 0):.0f} s ago and no completion marker; taken as complete after "
        f"{quiet_s:g} s without changes (readiness.quiet_s)",
        "quiet",
    )


def _time_lapse_s(path: Path) -> float:
    """The acquisition's time-lapse interval ``dt(s)`` when it has several time points, else 0."""
    try:
        params = json.loads((path / _PARAMS_FILE).read_text(encoding="utf-8"))
        return float(params.get("dt(s)") or 0) if int(params.get("Nt") or 1) > 1 else 0.0
    except (OSError, ValueError, TypeError, AttributeError):
        return 0.0


def _pending(path: Path, verdict: Readiness, now: float, stalled_s: float | None) -> Readiness:
    """A marker saying "not yet": wait, or fail when nothing changed for ``stalled_s``."""
    if stalled_s is None:
        return Readiness(False, verdict.reason, "marker")
    limit = max(float(stalled_s), 2.0 * _time_lapse_s(path))
    age = now - newest_change(path)
    if age < limit:
        return Readiness(False, f"{verdict.reason}; an error if nothing changes for {limit:g} s "
                                "(readiness.stalled_s)", "marker")
    return Readiness(
        False,
        f"{verdict.reason.split(';')[0].split(' (')[0]} and nothing under the acquisition changed "
        f"for {age:.0f} s (readiness.stalled_s {limit:g} s): Squid stopped writing it (crash or "
        "abort); re-acquire, or remove the sample from the drop folder",
        "failed",
    )


def complete_timepoints(path: str | Path) -> list[str]:
    """The leading time points of an acquisition that are complete while it is not.

    For the layouts with one folder per time point holding that time point's images (Octopi /
    Squid individual images, Squid multi-page TIFF): ``0/``, ``1/``, ... up to the first one
    without Octopi's ``done`` (or Squid's ``.done``), or whose ``coordinates.csv`` lists more
    FOVs than have images (individual images: still being copied). Empty for other layouts
    (a container holds every time point: it is complete when the acquisition is) and when
    nothing is complete.

    Returns
    -------
    list of str
        Time-point folder names, in order.
    """
    from scopeflow.errors import ScopeflowError as _Err
    from scopeflow.io.squid import detect_save_mode

    p = Path(path)
    if not p.is_dir() or not (p / _PARAMS_FILE).is_file():
        return []
    try:
        mode = detect_save_mode(p)
    except _Err:
        return []
    if mode not in ("INDIVIDUAL_IMAGES", "MULTI_PAGE_TIFF"):
        return []
    tdirs = sorted((q for q in p.iterdir() if q.is_dir() and q.name.isdigit()), key=lambda q: int(q.name))
    done = []
    for t in tdirs:
        if not any((t / name).is_file() for name in DONE_FILES):
            break
        if mode == "INDIVIDUAL_IMAGES" and _fewer_images_than_listed(p, [t]):
            break
        done.append(t.name)
    return done


def _tdir(name: str) -> str | None:
    """The time-point folder a manifest name lies in (``"0/a.bmp"`` -> ``"0"``), else None."""
    head, sep, _ = name.partition("/")
    return head if sep and head.isdigit() else None


def timepoint_units(files: Iterable[Iterable]) -> list[str]:
    """Time-point folders holding files of a manifest, sorted by t; ``["all"]`` when none."""
    units = {_tdir(f[0]) for f in files} - {None}
    return sorted(units, key=int) or [ALL_TIMEPOINTS]


def select_timepoints(files: Iterable[Iterable], units: Iterable[str]) -> list[list]:
    """The files outside every time-point folder and those of the time points ``units``."""
    keep = set(units)
    return [list(f) for f in files if _tdir(f[0]) is None or _tdir(f[0]) in keep]


def timepoint_records(record: Mapping) -> dict[str, dict]:
    """Split a sample's manifest record into one record per time point.

    Parameters
    ----------
    record : mapping
        ``{"sample", "kind", "path", "files", "timepoints"}`` (``timepoints`` as
        :func:`timepoint_units` gives; missing = ``["all"]``), or an error record
        (``{"sample", "path", "error"}``).

    Returns
    -------
    dict
        Time point name -> record with the files of that time point (see
        :func:`select_timepoints`) and ``timepoint`` (int, or None for ``"all"``: every
        FOV). An error record gives ``{"all": record}``: the ingest job stops with its error.
    """
    if "files" not in record:
        return {ALL_TIMEPOINTS: dict(record)}
    out = {}
    base = {k: v for k, v in record.items() if k != "timepoints"}
    for unit in record.get("timepoints") or [ALL_TIMEPOINTS]:
        if unit == ALL_TIMEPOINTS:
            out[unit] = dict(base, timepoint=None)
        else:
            out[unit] = dict(base, files=select_timepoints(record["files"], [unit]), timepoint=int(unit))
    return out


def file_manifest(path: str | Path) -> list[list]:
    """The files of an acquisition: ``[relative name, size (bytes), mtime (ns)]``, sorted.

    Hidden files (``.*``, also hidden folders) and :data:`IGNORED_NAMES` are left out. For a
    single file the name is the file's own name. Relative names use ``/``.
    """
    p = Path(path)
    if p.is_file():
        st = p.stat()
        return [[p.name, st.st_size, st.st_mtime_ns]]
    rows = []
    for q, _ in _walk(p):
        if q == p or not q.is_file() or q.name in IGNORED_NAMES:
            continue
        st = q.stat()  # through symbolic links: the image itself
        rows.append([q.relative_to(p).as_posix(), st.st_size, st.st_mtime_ns])
    return sorted(rows)


def manifest_base(path: str | Path) -> Path:
    """Folder the manifest's relative names start from (the file's folder for a file)."""
    p = Path(path)
    return p.parent if p.is_file() else p


def write_if_changed(record: Mapping, dest: str | Path) -> bool:
    """Write ``record`` as JSON to ``dest`` unless it already holds exactly that; True if written.

    An unchanged record keeps its mtime, so Snakemake's mtime trigger fires only when the
    content changed. The write is atomic (temporary file + rename).
    """
    dest = Path(dest)
    text = json.dumps(record, indent=1, sort_keys=True) + "\n"
    try:
        if dest.read_text(encoding="utf-8") == text:
            return False
    except (OSError, UnicodeDecodeError):
        pass
    write_text(dest, text, unique=True)  # several watchers may write it at once
    return True


def read_manifest(path: str | Path) -> dict:
    """The record written by :func:`write_if_changed` (a one-line error when unreadable)."""
    try:
        record = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ScopeflowError(f"{path}: unreadable input manifest ({exc}); delete it and rerun") from exc
    if not isinstance(record, dict):
        raise ScopeflowError(f"{path}: input manifest is not a JSON object; delete it and rerun")
    return record


def read_manifest_or_none(path: str | Path) -> dict | None:
    """The record at ``path``, or None when it is missing or unreadable."""
    try:
        return read_manifest(path)
    except ScopeflowError:
        return None


def verify_files(path: str | Path, files: Iterable[Iterable]) -> set[Path]:
    """Check that the listed files are still there, unchanged; return their paths.

    Parameters
    ----------
    path : str or Path
        The acquisition (see :func:`manifest_base`).
    files : iterable of (name, size, mtime_ns)
        As listed by :func:`file_manifest` when the run was planned.

    Raises
    ------
    ScopeflowError
        A file vanished or changed size or mtime since then (one line naming it).
    """
    base = manifest_base(path)
    out = set()
    for name, size, mtime_ns in files:
        f = base / name
        try:
            st = f.stat()
        except OSError:
            raise ScopeflowError(
                f"{f}: removed since the run was planned; the acquisition is still changing, "
                "rerun when it is complete"
            ) from None
        if st.st_size != size or st.st_mtime_ns != mtime_ns:
            raise ScopeflowError(
                f"{f}: changed since the run was planned ({size} -> {st.st_size} bytes); the "
                "acquisition is still being written, rerun when it is complete"
            )
        out.add(f)
    return out


def planned_timepoint(manifest: str | Path) -> int | None:
    """The time point a time-point manifest (:func:`timepoint_records`) is for; None = all."""
    t = read_manifest(manifest).get("timepoint")
    return None if t is None else int(t)


def planned_input(manifest: str | Path) -> tuple[str, list[list]]:
    """The input path and file list a sample's ingest job must process.

    Raises
    ------
    ScopeflowError
        The error planning recorded for the sample (bad sheet row, missing path, invalid
        name, ...), as its one line.
    """
    record = read_manifest(manifest)
    if record.get("error"):
        raise ScopeflowError(str(record["error"]))
    return str(record["path"]), [list(f) for f in record.get("files", [])]


def verify_unchanged(path: str | Path, files: Iterable[Iterable]) -> None:
    """Check that ``path`` holds exactly the planned files, unchanged (for inputs read whole).

    Raises
    ------
    ScopeflowError
        A file was added, removed or changed since the run was planned (one line naming it).
    """
    files = [list(f) for f in files]
    verify_files(path, files)
    planned = {f[0] for f in files}
    added = [row[0] for row in file_manifest(path) if row[0] not in planned]
    if added:
        raise ScopeflowError(
            f"{manifest_base(path) / added[0]}: added since the run was planned ({len(added)} new "
            "file(s)); the input is still being copied, rerun when it is complete"
        )
