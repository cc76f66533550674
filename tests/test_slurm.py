"""The workflow on a real SLURM cluster: ``--profile profiles/slurm`` submits every job with sbatch,
polls them to the end, and gives the same tables as a local run.

Needs root and the single-node cluster of ``tests/slurm/setup_single_node.sh`` (CI runs it before
pytest). With ``SCOPEFLOW_SLURM_SETUP=1`` this test brings the cluster up itself when it is down;
without it, a machine with no cluster skips the test with the reason.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SETUP = REPO / "tests" / "slurm" / "setup_single_node.sh"
PLUGIN_REQUIREMENT = "snakemake-executor-plugin-slurm>=2.8,<3"
# both runs together; a status-polling hang fails the test instead of eating the CI budget
RUN_TIMEOUT_S = int(os.environ.get("SCOPEFLOW_SLURM_TIMEOUT", "600"))
TABLES = ("cells", "fovs", "sample")

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def _ok(*cmd: str, timeout: float = 15) -> bool:
    try:
        return subprocess.run(cmd, capture_output=True, timeout=timeout).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _node_state() -> str:
    try:
        out = subprocess.run(
            ["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=15
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout.split("\n", 1)[0].strip() if out.returncode == 0 else ""


def _cluster_up() -> bool:
    return _node_state() in {"idle", "mixed", "allocated", "completing"}


def _accounting_on() -> bool:
    return _ok("sacct", "-n", "-X", "--starttime", "now-1hours")


@pytest.fixture(scope="module")
def slurm_cluster():
    """A running cluster (brought up when SCOPEFLOW_SLURM_SETUP=1); its status-polling command."""
    if os.geteuid() != 0:
        pytest.skip("SLURM test needs root (it runs a single-node cluster on this machine)")
    if shutil.which("apt-get") is None:
        pytest.skip("SLURM test needs apt-get (Debian) to install slurm-wlm")
    if shutil.which("sinfo") is None or not _cluster_up():
        if os.environ.get("SCOPEFLOW_SLURM_SETUP") != "1":
            pytest.skip(
                "no SLURM cluster up: run tests/slurm/setup_single_node.sh "
                "(or set SCOPEFLOW_SLURM_SETUP=1 to let this test start it)"
            )
        proc = subprocess.run(["bash", str(SETUP)], capture_output=True, text=True, timeout=420)
        if proc.returncode != 0 or not _cluster_up():
            pytest.fail(f"{SETUP.name} could not bring SLURM up:\n{proc.stdout}\n{proc.stderr}")
    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        pytest.fail(f"SLURM executor plugin not installed: pip install '{PLUGIN_REQUIREMENT}'")
    # Polling with sacct hangs silently on a cluster without accounting (see profiles/slurm);
    # the cluster of setup_single_node.sh has accounting, so the profile runs as shipped.
    return "sacct" if _accounting_on() else "squeue"


def _small_config(work: Path) -> dict:
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    cfg["demo"].update(size=256, ny=1, nx=1)
    work.mkdir(parents=True, exist_ok=True)
    (work / "config.yaml").write_text(yaml.safe_dump(cfg))
    return cfg


def _snakemake_cmd(work: Path, *args: str) -> list[str]:
    return [
        sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(work),
        "--configfile", str(work / "config.yaml"), *args,
    ]


def _start(work: Path, *args: str, log_name: str) -> tuple[subprocess.Popen, Path]:
    log = work / log_name
    with open(log, "w") as fh:
        proc = subprocess.Popen(
            _snakemake_cmd(work, *args), cwd=work, stdout=fh, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return proc, log


def _stop(proc: subprocess.Popen) -> None:
    """Interrupt a run's process group (the SLURM plugin then scancels its jobs), then kill it."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGINT)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _finish(proc: subprocess.Popen, log: Path, deadline: float, what: str) -> str:
    """Wait for a run until ``deadline``; on timeout interrupt it (the plugin then scancels its
    jobs), scancel whatever it submitted, and fail with the log's tail."""
    try:
        proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        _stop(proc)
        text = log.read_text()
        ids = re.findall(r"submitted with SLURM jobid (\d+)", text)
        if ids:
            subprocess.run(["scancel", *ids], capture_output=True)
        queue = subprocess.run(["squeue", "-a"], capture_output=True, text=True).stdout
        pytest.fail(f"{what} did not finish within {RUN_TIMEOUT_S} s (polling hang?)\n"
                    f"squeue:\n{queue}\nlog tail:\n{text[-4000:]}")
    text = log.read_text()
    if proc.returncode != 0:
        pytest.fail(f"{what} failed ({proc.returncode}):\n{text[-6000:]}")
    return text


def _slurm_jobs(run_id: str, status_command: str) -> pd.DataFrame:
    """The jobs SLURM itself recorded under the run's job name."""
    fields = ["JobID", "JobName", "State", "Elapsed", "AllocCPUS", "ReqMem", "Comment"]
    if status_command == "sacct":
        out = subprocess.run(
            ["sacct", "-X", "-P", "-n", "--name", run_id, "--starttime", "now-1days",
             "-o", ",".join(fields)], capture_output=True, text=True, timeout=30, check=True,
        ).stdout
    else:
        out = subprocess.run(
            ["squeue", "-h", "--states=all", "--name", run_id, "-o", "%i|%j|%T|%M|%C|%m|%k"],
            capture_output=True, text=True, timeout=30, check=True,
        ).stdout
    rows = [line.split("|", len(fields) - 1) for line in out.splitlines() if line.strip()]
    return pd.DataFrame(rows, columns=fields)


def test_demo_on_slurm_matches_local_run(slurm_cluster, tmp_path, capsys):
    status_command = slurm_cluster
    cfg = _small_config(tmp_path / "slurm")
    _small_config(tmp_path / "local")
    t0 = time.monotonic()
    deadline = t0 + RUN_TIMEOUT_S

    # The local reference runs alongside (the SLURM run spends most of its time waiting).
    local, local_log = _start(tmp_path / "local", "--cores", "2", log_name="local.log")
    slurm, slurm_log = _start(
        tmp_path / "slurm",
        # the README's command: without `--workflow-profile none`, profiles/default (picked up
        # next to the Snakefile) would override the SLURM profile key by key
        "--profile", str(REPO / "profiles" / "slurm"), "--workflow-profile", "none",
        # test-only overrides: poll every few seconds (the profile's 20 s suit real jobs), fail fast
        "--slurm-init-seconds-before-status-checks", "1",
        "--seconds-between-status-checks", "2",
        "--latency-wait", "5",
        "--retries", "0",
        # the profile's default (sacct) unless this cluster has no accounting
        *(["--slurm-status-command", "squeue"] if status_command == "squeue" else []),
        log_name="slurm.log",
    )
    try:
        text = _finish(slurm, slurm_log, deadline, "snakemake --profile profiles/slurm")
        t_slurm = time.monotonic() - t0
        _finish(local, local_log, deadline, "local snakemake --cores 2")
    finally:
        _stop(slurm)
        _stop(local)
    t_total = time.monotonic() - t0

    # (d) every job that ran, except local rules, went through sbatch, and SLURM recorded it
    run_id = re.search(r"SLURM run ID: (\S+)", text).group(1)
    submitted = dict(  # SLURM job id -> rule_<name> (the plugin's log folder)
        re.findall(r"submitted with SLURM jobid (\d+) \(log: \S*?/(rule_\w+|group_\w+)", text)
    )
    finished = re.findall(r"Finished jobid: \d+ \(Rule: (\w+)\)", text)
    local_rules = set(re.findall(r"^localrule (\w+):", text, flags=re.M))
    remote_finished = [r for r in finished if r not in local_rules]
    assert submitted, text[-3000:]
    assert len(submitted) == len(remote_finished), (submitted, finished)
    assert {v.removeprefix("rule_") for v in submitted.values()} == set(remote_finished)

    jobs = _slurm_jobs(run_id, status_command)
    jobs["rule"] = jobs["JobID"].map(submitted).str.removeprefix("rule_")
    summary = (
        f"SLURM run {run_id}: {len(jobs)} jobs via {status_command}, workflow {t_slurm:.0f} s "
        f"(with the local reference alongside: {t_total:.0f} s)\n"
        + jobs[["JobID", "rule", "State", "Elapsed", "AllocCPUS", "ReqMem", "Comment"]].to_string(
            index=False
        )
    )
    with capsys.disabled():  # into the CI log even without -s
        print("\n" + summary)
    assert set(jobs["JobID"]) == set(submitted), summary
    assert (jobs["State"] == "COMPLETED").all(), summary
    seg = jobs[jobs["rule"] == "segment"]
    # a rule's threads become --cpus-per-task
    assert (seg["AllocCPUS"].astype(int) == cfg["segment"]["threads"]).all(), summary

    # (c) the same tables as the local run
    results = tmp_path / "local" / "results"
    samples = sorted(p.name for p in results.iterdir() if (p / "cells.parquet").exists())
    assert samples == ["demo_smear_1", "demo_smear_2"]
    for sample in samples:
        for table in TABLES:
            on_slurm = pd.read_parquet(tmp_path / "slurm" / "results" / sample / f"{table}.parquet")
            local_df = pd.read_parquet(tmp_path / "local" / "results" / sample / f"{table}.parquet")
            assert len(on_slurm) > 0, (sample, table)
            pd.testing.assert_frame_equal(on_slurm, local_df, obj=f"{sample}/{table}.parquet")
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "slurm" / "results" / "samples.parquet"),
        pd.read_parquet(tmp_path / "local" / "results" / "samples.parquet"),
    )
