# Discovery, validation and path helpers shared by every stage. No rules here.
import functools
import os
import re
import sys
from pathlib import Path

import pandas as pd
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from scopeflow.errors import ScopeflowError
from scopeflow.io import readiness
from scopeflow.io.discover import (
    BEAD_KINDS,
    count_fovs,
    detect_kind,
    safe_sample_name,
    valid_sample_name,
)
from scopeflow.io.sample_sheet import read_sample_sheet


def _coerce(value, schema):
    """Strings from ``--config key='{a: 1}'`` (Snakemake reads nested values as text) to the
    schema's types: integer, number, boolean, null; objects recursively."""
    if isinstance(value, dict) and isinstance(schema.get("properties"), dict):
        return {k: _coerce(v, schema["properties"].get(k, {})) for k, v in value.items()}
    if not isinstance(value, str):
        return value
    types = schema.get("type", [])
    types = [types] if isinstance(types, str) else list(types)
    enum = schema.get("enum")
    if "string" in types and (enum is None or value in enum) and not (
        "null" in types and value.strip().lower() in ("null", "~", "none")
    ):
        return value
    text = value.strip()
    if "null" in types and text.lower() in ("null", "~", "none", ""):
        return None
    if "boolean" in types and text.lower() in ("true", "false", "yes", "no"):
        return text.lower() in ("true", "yes")
    if "integer" in types and re.fullmatch(r"[+-]?\d+", text):
        return int(text)
    if "number" in types:
        try:
            return float(text)
        except ValueError:
            pass
    return value


def _schema(name):
    import yaml

    return yaml.safe_load((Path(workflow.basedir) / "workflow" / "schemas" / name).read_text())


def _first_error(data, schema):
    """(key path, message) of the first schema violation, or None."""
    import jsonschema

    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(data), key=lambda e: list(e.absolute_path))
    if not errors:
        return None
    e = errors[0]
    return ".".join(str(p) for p in e.absolute_path) or "top level", e.message


def _validate(data, schema, what):
    """Validate against a schema (filling defaults); stop with one line naming the key."""
    schema_path = Path(workflow.basedir) / "workflow" / "schemas" / Path(schema).name
    err = _first_error(data, _schema(schema_path.name))
    if err:
        raise WorkflowError(f"{what} key {err[0]}: {err[1]}; see workflow/schemas/{schema_path.name}")
    validate(data, str(schema_path), set_default=True)


config.update(_coerce(dict(config), _schema("config.schema.yaml")))
_validate(config, "config.schema.yaml", "config")
for _key in ("samples", "input_dir", "results_dir"):  # "~/x" means the home folder, as in a shell
    config[_key] = os.path.expanduser(config[_key])
config["demo"]["dir"] = os.path.expanduser(config["demo"]["dir"])


def _results_dir(value):
    """The results folder, refused when outputs would land at the root or inside the inputs."""
    if not str(value).strip():
        raise WorkflowError(
            "config key results_dir: empty; outputs would be written to the root folder. Set a "
            "folder for the outputs, e.g. results_dir: results"
        )
    resolved = Path(value).resolve()
    if resolved == Path(resolved.anchor):
        raise WorkflowError(
            f"config key results_dir: '{value}' is the root of the file system; set a folder "
            "for the outputs, e.g. results_dir: results"
        )
    return os.path.normpath(str(value))


def _inside(child, parent):
    c, p = Path(child).resolve(), Path(parent).resolve()
    return c == p or p in c.parents


RESULTS = _results_dir(config["results_dir"])
DEMO = config["demo"]
QUIET_S = config["readiness"]["quiet_s"]
STALLED_S = config["readiness"]["stalled_s"]
MAIN = workflow.is_main_process  # only the main process plans; cluster jobs read its manifests
# Another run holds this folder's lock (Snakemake takes its own after planning): a manifest
# rewritten now could be older than that run's outputs and its new files would be lost.
OTHER_RUN = MAIN and any(Path(".snakemake", "locks").glob("*.lock"))
if not config["samples"] and _inside(RESULTS, config["input_dir"]):
    raise WorkflowError(
        f"config key results_dir: '{config['results_dir']}' is inside input_dir "
        f"'{config['input_dir']}', so outputs would be discovered as samples; put the results "
        "outside the input folder"
    )

DEMO_BEADS = "demo_beads"  # name of the simulated bead movie sample


def _demo_enabled():
    """demo.enabled, with auto = only when the default input folder is used without a sheet."""
    enabled = DEMO["enabled"]
    if enabled == "auto":
        return not config["samples"] and os.path.normpath(config["input_dir"]) == os.path.normpath(DEMO["dir"])
    return bool(enabled)


DEMO_ENABLED = _demo_enabled()


def _demo_samples():
    """The simulated smear demo samples."""
    if not DEMO_ENABLED:
        return []
    return [f"demo_smear_{n}" for n in range(1, DEMO["samples"] + 1)]


def _demo_bead_samples():
    """The simulated bead movie sample (one, or none)."""
    return [DEMO_BEADS] if DEMO_ENABLED and DEMO["beads"]["enabled"] else []


def _demo_path(sample):
    return os.path.normpath(f"{DEMO['dir']}/{sample}")


def _detect_kind(path):
    """Kind of a discovered folder; 'unknown' lets its ingest job fail with a clear message."""
    try:
        return detect_kind(path)
    except ScopeflowError:
        return "unknown"


def _row(sample, kind, path, error=None, pixel_size_um=None, fps=None, regions=None):
    return {"sample": sample, "kind": kind, "path": path, "pixel_size_um": pixel_size_um, "fps": fps,
            "regions": regions, "error": error}


def _sheet_rows(sheet):
    """Rows of the sample sheet; a bad row becomes a sample that fails alone with its error."""
    try:
        rows = read_sample_sheet(sheet)
    except ScopeflowError as exc:
        raise WorkflowError(str(exc)) from None
    schema = _schema("samples.schema.yaml")
    out = []
    for r in rows:
        where = f"{sheet} line {r['line']}"
        values = {k: r[k] for k in ("sample", "kind", "path", "pixel_size_um", "fps", "regions")}
        err = _first_error(values, schema)
        error = None
        if not r["sample"]:
            error = f"{where}: column sample is empty; give the row a sample name or delete the row"
        elif err:
            error = f"{where}: column {err[0]}: {err[1]}; fix the row (see workflow/schemas/samples.schema.yaml)"
        elif not r["path"]:
            error = f"{where}: column path is empty; give the acquisition folder or image file"
        elif not os.path.exists(r["path"]):
            error = (f"{r['path']}: does not exist ({where}); fix the path (relative paths are "
                     "relative to the sheet, ~ is the home folder)")
        out.append(_row(r["sample"] or f"line{r['line']}", r["kind"] or "unknown", r["path"], error,
                        r["pixel_size_um"] if isinstance(r["pixel_size_um"], float) else None,
                        r["fps"] if isinstance(r["fps"], float) else None, r["regions"]) | {"line": r["line"]})
    by_name = {}
    for r in out:
        by_name.setdefault(r["sample"], []).append(r)
    merged = []
    for name, group in by_name.items():
        if len(group) > 1:
            lines = " and ".join(str(g["line"]) for g in group)
            group[0]["error"] = (f"{sheet}: sample name {name!r} is on lines {lines}; sample names "
                                 "must be unique, rename or delete the duplicates")
        merged.append(group[0])
    return merged


def _discover(input_dir):
    rows = []
    root = Path(input_dir)
    if root.is_dir():
        for p in sorted(root.iterdir()):
            if p.is_dir() and not p.name.startswith("."):
                error = None
                if not valid_sample_name(p.name):
                    error = (f"{p}: folder name {p.name!r} cannot be a sample name (letters, digits "
                             "and _ . - only, starting with a letter or digit); rename the folder")
                rows.append(_row(p.name, _detect_kind(p), os.path.normpath(str(p)), error))
    return rows


def _safe_names(rows):
    """Give rows whose name cannot be a path a usable one (their job fails with the error)."""
    taken = {r["sample"] for r in rows if valid_sample_name(r["sample"])}
    for r in rows:
        if not valid_sample_name(r["sample"]):
            r["sample"] = safe_sample_name(r["sample"], taken)
            taken.add(r["sample"])
    return rows


def load_samples():
    """The sample table: sheet rows, or discovered folders, plus the demo samples."""
    rows = _sheet_rows(config["samples"]) if config["samples"] else _discover(config["input_dir"])
    names = {r["sample"] for r in rows}
    demo = [(s, "smear_raw") for s in _demo_samples()] + [(s, "beads") for s in _demo_bead_samples()]
    rows += [_row(s, k, _demo_path(s)) for s, k in demo if s not in names]
    rows = _safe_names(rows)
    for r in rows:
        if r["error"] is None and r["path"] and _inside(RESULTS, r["path"]):
            raise WorkflowError(
                f"config key results_dir: '{config['results_dir']}' is inside the input "
                f"{r['path']} (sample {r['sample']}); put the results outside the inputs"
            )
    df = pd.DataFrame(rows, columns=["sample", "kind", "path", "pixel_size_um", "fps", "regions", "error"])
    df = df.astype(object).where(df.notna(), None)
    return df.set_index("sample", drop=False)


SAMPLES = load_samples()


def manifest_path(sample):
    """The sample's input manifest: the files (name, size, mtime) its results are made from."""
    return f"{RESULTS}/{sample}/inputs.json"


def manifest_record(sample, files=None, error=None):
    """What the manifest of a sample holds (the demo rules write the same record): for a smear
    sample also its time points (readiness.timepoint_units; "all" = not split)."""
    row = SAMPLES.loc[sample]
    if error is not None:
        return {"sample": sample, "path": row["path"], "error": error}
    record = {"sample": sample, "kind": row["kind"], "path": row["path"], "files": files}
    if row["kind"] not in BEAD_KINDS:
        split = row["kind"] == "smear_raw" and files is not None
        record["timepoints"] = readiness.timepoint_units(files) if split else [readiness.ALL_TIMEPOINTS]
    return record


def _tp(unit, first):
    """The {tp} wildcard of a time point: "" for the sample's first (single-time-point samples
    keep ingest/, logs/ingest.log), ".<t>" for the later ones (ingest.1/, logs/ingest.1.log)."""
    return "" if unit == first else f".{unit}"


def timepoint_manifest(sample, unit, first=None):
    """The manifest of one time point of a smear sample (readiness.timepoint_records): the
    input of that time point's ingest job. ``first``: the sample's first time point (default:
    from its planned manifest)."""
    first = timepoints(sample)[0] if first is None else first
    return f"{RESULTS}/{sample}/ingest{_tp(unit, first)}/inputs.json"


def _write_manifests(sample, record, mpath):
    """Write the sample's manifest and, for a smear sample, one per time point; True if the
    sample's changed."""
    changed = readiness.write_if_changed(record, mpath)
    if SAMPLES.loc[sample]["kind"] not in BEAD_KINDS:
        per_tp = readiness.timepoint_records(record)
        first = next(iter(per_tp))
        for unit, rec in per_tp.items():
            readiness.write_if_changed(rec, timepoint_manifest(sample, unit, first))
    return changed


def _plan(sample):
    """State of a sample: 'ready' (manifest current), 'error' (fails alone), 'demo' (made by
    a rule), 'waiting' (incomplete, skipped). Writes the manifest when it changed. An
    acquisition whose first time points are complete while later ones are still acquired is
    'ready' with those time points only (the next run adds the others' jobs)."""
    row = SAMPLES.loc[sample]
    mpath = manifest_path(sample)
    if not MAIN:  # a cluster job: the main process has planned
        return "ready" if os.path.exists(mpath) else "demo"
    if row["error"] is not None:
        if not OTHER_RUN:
            _write_manifests(sample, manifest_record(sample, error=row["error"]), mpath)
        return "error"
    if sample in _demo_samples() + _demo_bead_samples() and not os.path.exists(row["path"]):
        return "demo"
    verdict = readiness.check_ready(row["path"], QUIET_S, stalled_s=STALLED_S)
    if verdict.how == "failed":  # never completes (aborted, writer stopped): the sample fails alone
        if not OTHER_RUN:
            _write_manifests(sample, manifest_record(sample, error=verdict.reason), mpath)
        return "error"
    units = None
    if not verdict.ready:
        units = readiness.complete_timepoints(row["path"]) if row["kind"] == "smear_raw" else []
        if not units:
            print(f"scopeflow: sample {sample} ({row['path']}) is not complete, skipped: {verdict.reason}; "
                  "the next run picks it up", file=sys.stderr)
            return "waiting"
        print(f"scopeflow: sample {sample}: time point(s) {', '.join(units)} complete, processed; the "
              f"others wait ({verdict.reason})", file=sys.stderr)
    try:
        files = readiness.file_manifest(row["path"])
    except OSError as exc:
        error = f"{exc.filename or row['path']}: cannot list the files ({exc.strerror}); check the permissions"
        _write_manifests(sample, manifest_record(sample, error=error), mpath)
        return "error"
    if units is not None:
        files = readiness.select_timepoints(files, units)
    record = manifest_record(sample, files=files)
    if OTHER_RUN and readiness.read_manifest_or_none(mpath) != record:
        print(f"scopeflow: sample {sample}: new or changed files wait, another snakemake run holds "
              "the lock of this folder (if none runs: snakemake --unlock)", file=sys.stderr)
        return "waiting"
    if _write_manifests(sample, record, mpath):
        print(f"scopeflow: sample {sample}: new or changed input files, (re)processed", file=sys.stderr)
    return "ready"


def _plan_all():
    from scopeflow.errors import os_error_line

    try:
        return {s: _plan(s) for s in SAMPLES["sample"]}
    except OSError as exc:  # results folder not writable, disk full: one line, no traceback
        raise WorkflowError(f"planning the samples: {os_error_line(exc)}") from None


STATE = _plan_all()


def _done_before(sample):
    return os.path.exists(manifest_path(sample)) and os.path.exists(f"{RESULTS}/{sample}/sample.parquet")


def _targeted(sample):
    """A waiting sample keeps its earlier results (nothing reruns) or is left out."""
    return STATE[sample] != "waiting" or _done_before(sample)


# 'unknown' (discovery could not tell) goes the smear way: its ingest job says why it fails
SMEAR_SAMPLES = [s for s, k in zip(SAMPLES["sample"], SAMPLES["kind"]) if k not in BEAD_KINDS]
BEAD_SAMPLES = [s for s, k in zip(SAMPLES["sample"], SAMPLES["kind"]) if k in BEAD_KINDS]
TARGET_SMEAR = [s for s in SMEAR_SAMPLES if _targeted(s)]
TARGET_BEADS = [s for s in BEAD_SAMPLES if _targeted(s)]


def _one_of(names):
    """Regex matching exactly these sample names (none: matches nothing)."""
    return "|".join(map(re.escape, names)) if len(names) else "(?!x)x"


# per-rule wildcard constraints: smear and bead rules share output names (sample.parquet,
# <sample>.ome.zarr.done), each kind's rules only match its own samples
SMEAR_RE = _one_of(SMEAR_SAMPLES)
BEAD_RE = _one_of(BEAD_SAMPLES)

wildcard_constraints:
    sample=_one_of(list(SAMPLES["sample"])),
    demo_sample="demo_smear_[0-9]+",
    shard="[0-9]+",
    tp=r"|\.[0-9]+",  # "" = the first time point, ".1", ".2" ... the later ones


FOVS_PER_JOB = config["sharding"]["fovs_per_job"]


def sample_regions(sample):
    """The regions (wells) a sample sheet selects for a sample, None = all."""
    value = SAMPLES.loc[sample].get("regions")
    if value is None or pd.isna(value) or not str(value).strip():
        return None
    return [r for r in re.split(r"[,;\s]+", str(value).strip()) if r]


DEMO_TIMEPOINTS = ["0"] if DEMO["layout"] == "octopi" else [str(t) for t in range(DEMO["nt"])]


@functools.cache
def timepoints(sample):
    """The time points of a smear sample, each ingested by its own job (in order: each job's FOV
    list starts with the previous one's), from its manifest; the demo's from the config."""
    record = readiness.read_manifest_or_none(manifest_path(sample))
    if record is None and sample in _demo_samples():
        return list(DEMO_TIMEPOINTS)
    if record is None or "files" not in record:
        return [readiness.ALL_TIMEPOINTS]  # an error (its ingest job says it) or not planned
    return list(record.get("timepoints") or [readiness.ALL_TIMEPOINTS])


def last_timepoint(sample):
    return timepoints(sample)[-1]


def _unit_fovs(sample, unit):
    """FOVs of one time point, planned from its manifest (the ingest job processes exactly the
    FOVs listed there, so the plan and the images stored always agree)."""
    row = SAMPLES.loc[sample]
    record = readiness.read_manifest_or_none(timepoint_manifest(sample, unit))
    if record is not None and "files" in record:
        t = record.get("timepoint")
        return count_fovs(row["kind"], row["path"], files=record["files"], regions=sample_regions(sample),
                          zstack=config["zstack"], timepoint=t)
    if sample in _demo_samples():
        n = DEMO["ny"] * DEMO["nx"]
        if DEMO["layout"] != "octopi":  # Squid layouts: every region (one time point per unit)
            n *= len(DEMO["regions"]) * (DEMO["nz"] if str(config["zstack"]) == "all" else 1)
        return n
    return 1


@functools.cache
def shard_plan(sample):
    """(time point, shard within it) of each of the sample's shards 0, 1, ...: the shards of
    each time point follow those of the previous one, so a new time point adds shards and
    leaves the numbers (and outputs) of the finished ones alone."""
    plan = []
    for unit in timepoints(sample):
        n = max(1, -(-_unit_fovs(sample, unit) // FOVS_PER_JOB))
        plan += [(unit, k) for k in range(n)]
    return plan


def n_shards(sample):
    """Jobs a sample's FOVs are split into (see shard_plan)."""
    return len(shard_plan(sample))


def shard_unit(wildcards):
    """(time point, shard within it) of a shard job."""
    return shard_plan(wildcards.sample)[int(wildcards.shard)]


def ingest_out(sample, unit, name):
    """An output of a time point's ingest job (ingest.smk): ingest/<name> for the first time
    point, ingest.<t>/<name> for the others."""
    return f"{RESULTS}/{sample}/ingest{_tp(unit, timepoints(sample)[0])}/{name}"


def unit_of(wildcards):
    """The time point of an ingest job, from its {tp} wildcard."""
    return timepoints(wildcards.sample)[0] if not wildcards.tp else wildcards.tp[1:]


def sample_fovs(sample):
    """The sample's FOV list: that of its last time point's ingest job (it lists them all)."""
    return ingest_out(sample, last_timepoint(sample), "fovs.tsv")


def previous_timepoint_fovs(wildcards):
    """The FOV list of the time point before this one (none for the first)."""
    units = timepoints(wildcards.sample)
    unit = unit_of(wildcards)
    k = units.index(unit) if unit in units else 0
    return [ingest_out(wildcards.sample, units[k - 1], "fovs.tsv")] if k > 0 else []


def sample_store_record(sample):
    """The record of the sample's store with every time point's FOVs (the last ingest job's)."""
    return ingest_out(sample, last_timepoint(sample), "store.json")


def shard_out(name):
    return f"{RESULTS}/{{sample}}/shards/{{shard}}/{name}"


def shard_log(rule_name):
    return f"{RESULTS}/{{sample}}/logs/{rule_name}.{{shard}}.log"


def shard_bench(rule_name):
    return f"{RESULTS}/{{sample}}/benchmarks/{rule_name}.{{shard}}.tsv"


def shard_files(sample, name):
    return [f"{RESULTS}/{sample}/shards/{k}/{name}" for k in range(n_shards(sample))]


def out(sample, name):
    """Path of a per-sample output."""
    return f"{RESULTS}/{sample}/{name}"


def log_path(rule_name):
    return f"{RESULTS}/{{sample}}/logs/{rule_name}.log"


def bench_path(rule_name):
    return f"{RESULTS}/{{sample}}/benchmarks/{rule_name}.tsv"


def sample_row(wildcards):
    return SAMPLES.loc[wildcards.sample]


def sample_value(wildcards, key):
    """A sample-sheet value, None when empty (never NaN: params must compare equal across runs)."""
    value = sample_row(wildcards).get(key)
    return None if value is None or pd.isna(value) else value


def sample_input(wildcards):
    """The sample's input manifest (its files' names, sizes and mtimes; rewritten only when they
    change): a per-sample input, so new samples do not invalidate old ones and files added to a
    processed acquisition rerun exactly that sample."""
    return manifest_path(wildcards.sample)


def sample_outputs(sample):
    return [
        out(sample, f"{sample}.ome.zarr.done"),  # the store is complete (flag beside it)
        out(sample, "cells.parquet"),
        out(sample, "fovs.parquet"),
        out(sample, "sample.parquet"),
        out(sample, "report/overview.png"),
        out(sample, "qc.json"),
        out(sample, "report/qc_gallery.png"),
        out(sample, "report/qc_focus_map.png"),
        out(sample, "report/qc_histograms.png"),
    ] + parasite_outputs(sample) + ([out(sample, "cells.h5ad")] if config["tables"]["anndata"] else [])


def parasite_outputs(sample):
    """Parasitemia outputs of a smear sample (workflow/rules/parasites.smk), if enabled."""
    if not config["parasites"]["enabled"]:
        return []
    return [
        out(sample, "spots.parquet"),
        out(sample, "parasitemia.parquet"),
        out(sample, "parasitemia_fovs.parquet"),
        out(sample, "report/parasites.png"),
    ]


def bead_outputs(sample):
    return [
        out(sample, f"{sample}.ome.zarr.done"),  # the store is complete (flag beside it)
        out(sample, "localizations.parquet"),
        out(sample, "tracks.parquet"),
        out(sample, "diffusion.parquet"),
        out(sample, "msd.parquet"),
        out(sample, "sample.parquet"),
        out(sample, "report/tracks.png"),
    ]


def all_outputs():
    files = [o for s in TARGET_SMEAR for o in sample_outputs(s)]
    if TARGET_SMEAR:
        files.append(f"{RESULTS}/samples.parquet")
        if config["parasites"]["enabled"]:
            files.append(f"{RESULTS}/parasitemia.parquet")
    files += [o for s in TARGET_BEADS for o in bead_outputs(s)]
    if TARGET_BEADS:
        files.append(f"{RESULTS}/bead_samples.parquet")
    return files
