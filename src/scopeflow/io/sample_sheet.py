"""Read a sample sheet as people save them: any common encoding, tab/comma/semicolon, Excel's
empty trailing rows, ``~`` in paths.

The sheet is a table with the columns ``sample``, ``kind``, ``path`` and optionally
``pixel_size_um``, ``fps`` and ``regions`` (see ``workflow/schemas/samples.schema.yaml``). This module only
parses: each row comes back with its line number, and the workflow validates rows one by one
so that a bad row stops only its own sample.

Kept light (standard library only): Snakemake imports it when it builds the workflow.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from scopeflow.errors import ScopeflowError

__all__ = ["REQUIRED_COLUMNS", "OPTIONAL_COLUMNS", "decode_text", "read_sample_sheet"]

REQUIRED_COLUMNS = ("sample", "kind", "path")
OPTIONAL_COLUMNS = ("pixel_size_um", "fps")
_NUMERIC = frozenset(OPTIONAL_COLUMNS)
#: Optional text columns: ``regions`` (the regions/wells of an acquisition to analyse).
TEXT_COLUMNS = ("regions",)


def decode_text(data: bytes, name: str = "file") -> str:
    """Decode a text file saved by Excel, LibreOffice or an editor.

    UTF-8 with or without a byte-order mark, UTF-16 (LE/BE, with a BOM, or without one when
    every other byte is NUL), else Windows-1252 / Latin-1.

    Raises
    ------
    ScopeflowError
        The bytes are none of these (one line naming ``name``).
    """
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8", errors="strict")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise ScopeflowError(f"{name}: broken UTF-16 text ({exc.reason}); save it again as UTF-8") from None
    head = data[:200]
    if len(head) >= 4 and head.count(0) >= len(head) // 3:  # UTF-16 without a BOM
        even_nuls = head[0::2].count(0)
        codec = "utf-16-be" if even_nuls > head[1::2].count(0) else "utf-16-le"
        try:
            return data.decode(codec)
        except UnicodeDecodeError:
            pass
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("cp1252")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _delimiter(header: str, suffix: str) -> str | None:
    """The separator for which the header names the required columns."""
    order = [",", ";", "\t"] if suffix == ".csv" else ["\t", ",", ";"]
    for sep in order:
        names = {c.strip().lower() for c in next(csv.reader([header], delimiter=sep))}
        if set(REQUIRED_COLUMNS) <= names:
            return sep
    return None


def _number(text: str, sep: str):
    """A float from a cell (decimal comma accepted unless the separator is a comma), or the text."""
    t = text.strip()
    if t == "":
        return None
    if sep != ",":
        t = t.replace(",", ".")
    try:
        return float(t)
    except ValueError:
        return text.strip()


def read_sample_sheet(sheet: str | Path) -> list[dict]:
    """Rows of a sample sheet, each with its line number; empty rows and ``#`` comments skipped.

    Parameters
    ----------
    sheet : str or Path
        TSV or CSV file (``~`` expanded). The separator is the one of tab, comma and semicolon
        under which the first line names ``sample``, ``kind`` and ``path`` (CSV files try the
        comma first). Column names are matched without case or surrounding spaces.

    Returns
    -------
    list of dict
        ``{"line", "sample", "kind", "path", "pixel_size_um", "fps", "regions"}`` per row. Text cells are
        stripped; numbers are floats (``0,333`` is read as 0.333 in semicolon/tab sheets), an
        empty cell is None and an unparsable number stays text (the row's validation names it).
        ``path`` is expanded (``~``) and made absolute relative to the sheet's folder; an empty
        path stays ``""``.

    Raises
    ------
    ScopeflowError
        The file is missing or unreadable, or its first line does not name the required
        columns (one line naming the sheet and what to do).
    """
    path = Path(os.path.expanduser(str(sheet)))
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ScopeflowError(
            f"config key samples: sample sheet '{sheet}' does not exist; fix the path, "
            "or set samples to \"\" to discover the folders under input_dir"
        ) from None
    except OSError as exc:
        raise ScopeflowError(f"{sheet}: cannot read the sample sheet ({exc.strerror}); check its permissions") from None
    text = decode_text(data, str(sheet))
    lines = text.splitlines()
    first = next((n for n, ln in enumerate(lines) if ln.strip() and not ln.lstrip().startswith("#")), None)
    if first is None:
        raise ScopeflowError(f"{sheet}: the sample sheet is empty; add a header line sample, kind, path and one row per sample")
    sep = _delimiter(lines[first], path.suffix.lower())
    if sep is None:
        raise ScopeflowError(
            f"{sheet}: the first line does not name the columns {', '.join(REQUIRED_COLUMNS)} "
            "(separated by tabs, commas or semicolons); add that header line"
        )
    reader = csv.reader(io.StringIO("\n".join(lines[first:])), delimiter=sep)
    header = [c.strip().lower() for c in next(reader)]
    base = path.parent
    rows = []
    for offset, cells in enumerate(reader, start=first + 2):
        if not cells or all(c.strip() == "" for c in cells) or cells[0].lstrip().startswith("#"):
            continue
        values = dict(zip(header, cells))
        row = {"line": offset}
        for col in REQUIRED_COLUMNS:
            row[col] = (values.get(col) or "").strip()
        for col in OPTIONAL_COLUMNS:
            row[col] = _number(values.get(col) or "", sep)
        for col in TEXT_COLUMNS:
            row[col] = (values.get(col) or "").strip() or None
        p = row["path"]
        if p:
            p = os.path.expanduser(p)
            row["path"] = p if os.path.isabs(p) else os.path.normpath(os.path.join(base, p))
        rows.append(row)
    return rows
