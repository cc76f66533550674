"""A job's start-up clock (scopeflow._snakemake.StartupClock): process start to the first read of
data, what the pipeline benchmark prints per rule."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

# audit hooks cannot be removed: each case runs in its own interpreter
PROGRAM = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
from scopeflow._snakemake import StartupClock, READ_EVENT
work = sys.argv[2]
clock = StartupClock(ignore=[work + "/job.log"])
open(work + "/job.log", "w").write("x")          # the job's own log
json.loads(open(work + "/record.json").read())   # a record, not data
open(work + "/fovs.tsv").read()                   # the FOV list, not data
import os; os.listdir(work)                       # a folder
t0 = time.time()
sum(i * i for i in range(2_000_000))              # work before the first read counts as start-up
if sys.argv[3] == "table":
    sys.audit(READ_EVENT, work + "/cells.parquet")  # pyarrow opens files in C++: the library says so
else:
    open(work + "/image.bin", "rb").read()
open(work + "/other.bin", "rb").read()            # only the first read counts
print(json.dumps({"wall": clock.wall, "cpu": clock.cpu, "path": clock.path, "since": time.time() - t0,
                  "line": clock.line("segment")}))
"""


@pytest.mark.parametrize("how", ["open", "table"])
def test_clock_stops_at_the_first_data_read(tmp_path, how):
    for name in ("record.json", "fovs.tsv", "image.bin", "other.bin"):
        (tmp_path / name).write_text("{}" if name.endswith(".json") else "x")
    out = subprocess.run([sys.executable, "-c", PROGRAM, str(SRC), str(tmp_path), how],
                         capture_output=True, text=True, check=True)
    got = json.loads(out.stdout)
    want = tmp_path / ("cells.parquet" if how == "table" else "image.bin")
    assert got["path"] == str(want)
    # the clock runs from the process's start: it includes the busy loop before the read
    assert got["wall"] >= got["since"] > 0
    assert got["cpu"] > 0.05  # the loop's CPU time, at least
    assert got["line"].startswith("start-up segment: ") and str(want) in got["line"]


def test_clock_without_a_read_says_so(tmp_path):
    code = (f"import sys; sys.path.insert(0, {str(SRC)!r}); from scopeflow._snakemake import StartupClock; "
            "print(StartupClock().line('warmup'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "start-up warmup: not measured (no data read seen, or no /proc)"


USAGE = """
import subprocess, sys, time
sys.path.insert(0, sys.argv[1])
from scopeflow._snakemake import process_start, usage_line
subprocess.run([sys.executable, "-c", "sum(i * i for i in range(3_000_000))"], check=True)
print(usage_line("measure", process_start()))
"""


def test_usage_line_counts_finished_children():
    # a sampling monitor misses short children; getrusage(RUSAGE_CHILDREN) does not
    out = subprocess.run([sys.executable, "-c", USAGE, str(SRC)], capture_output=True, text=True, check=True)
    import re

    m = re.fullmatch(r"used measure: ([0-9.]+) s, ([0-9.]+) CPU-s, ([0-9]+) MB peak", out.stdout.strip())
    assert m, out.stdout
    wall, cpu, rss = float(m.group(1)), float(m.group(2)), int(m.group(3))
    child = subprocess.run([sys.executable, "-c", "import resource, time; t = time.process_time(); "
                            "sum(i * i for i in range(3_000_000)); print(time.process_time() - t)"],
                           capture_output=True, text=True, check=True)
    assert cpu >= float(child.stdout) * 0.5  # the child's loop is in the figure
    assert wall > 0 and rss > 0
