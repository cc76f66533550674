# Discovery, validation and path helpers shared by every stage. No rules here.
import os
import re
from pathlib import Path

import pandas as pd
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from scopeflow.discover import BEAD_KINDS, SMEAR_KINDS, count_fovs, detect_kind


def _validate(data, schema, what):
    """Validate against a schema (filling defaults); stop with one line naming the key."""
    import jsonschema
    import yaml

    schema_path = Path(workflow.basedir) / "workflow" / "schemas" / Path(schema).name
    validator = jsonschema.Draft202012Validator(yaml.safe_load(schema_path.read_text()))
    errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        e = errors[0]
        where = ".".join(str(p) for p in e.absolute_path) or "top level"
        raise WorkflowError(f"{what} key {where}: {e.message}; see workflow/schemas/{schema_path.name}")
    validate(data, str(schema_path), set_default=True)


_validate(config, "config.schema.yaml", "config")

RESULTS = config["results_dir"].rstrip("/")
DEMO = config["demo"]


DEMO_BEADS = "demo_beads"  # name of the simulated bead movie sample


def _demo_samples():
    """The simulated smear demo samples."""
    if not DEMO["enabled"]:
        return []
    return [f"demo_smear_{n}" for n in range(1, DEMO["samples"] + 1)]


def _demo_bead_samples():
    """The simulated bead movie sample (one, or none)."""
    return [DEMO_BEADS] if DEMO["enabled"] and DEMO["beads"]["enabled"] else []


def _detect_kind(path):
    """Kind of a discovered folder; 'unknown' lets its ingest job fail with a clear message."""
    from scopeflow.errors import ScopeflowError

    try:
        return detect_kind(path)
    except ScopeflowError:
        return "unknown"


def _read_sheet(sheet):
    path = Path(sheet)
    if not path.is_file():
        raise WorkflowError(
            f"config key samples: sample sheet '{sheet}' does not exist; fix the path, "
            "or set samples to \"\" to discover the folders under input_dir"
        )
    sep = "," if path.suffix.lower() == ".csv" else "\t"
    df = pd.read_csv(path, sep=sep, dtype={"sample": str, "kind": str, "path": str, "regions": str}, comment="#")
    df.columns = [c.strip() for c in df.columns]
    missing = {"sample", "kind", "path"} - set(df.columns)
    if missing:
        raise WorkflowError(f"{sheet}: missing column(s) {sorted(missing)}; the sheet needs sample, kind, path")
    for optional in ("pixel_size_um", "fps", "regions"):
        if optional not in df.columns:
            df[optional] = None
    df = df.astype(object).where(df.notna(), None)
    for n, row in enumerate(df.to_dict("records"), start=2):
        _validate(row, "samples.schema.yaml", f"{sheet} line {n}:")
    dups = df["sample"][df["sample"].duplicated()].tolist()
    if dups:
        raise WorkflowError(f"{sheet}: duplicate sample name(s) {dups}; sample names must be unique")
    base = path.parent
    df["path"] = [p if os.path.isabs(p) else os.path.normpath(os.path.join(base, p)) for p in df["path"]]
    return df


def _discover(input_dir):
    rows = []
    root = Path(input_dir)
    if root.is_dir():
        for p in sorted(root.iterdir()):
            if p.is_dir() and not p.name.startswith("."):
                rows.append({"sample": p.name, "kind": _detect_kind(p), "path": str(p),
                             "pixel_size_um": None, "fps": None, "regions": None})
    return pd.DataFrame(rows, columns=["sample", "kind", "path", "pixel_size_um", "fps", "regions"])


def load_samples():
    """The sample table: sheet rows, or discovered folders, plus the demo samples."""
    if config["samples"]:
        df = _read_sheet(config["samples"])
    else:
        df = _discover(config["input_dir"])
    demo_kinds = [(s, "smear_raw") for s in _demo_samples()] + [
        (s, "beads") for s in _demo_bead_samples()
    ]
    demo_rows = [
        {"sample": s, "kind": k, "path": f"{DEMO['dir'].rstrip('/')}/{s}", "pixel_size_um": None, "fps": None,
         "regions": None}
        for s, k in demo_kinds
        if s not in set(df["sample"])
    ]
    if demo_rows:
        df = pd.concat([df, pd.DataFrame(demo_rows)], ignore_index=True)
    return df.set_index("sample", drop=False)


SAMPLES = load_samples()
# 'unknown' (discovery could not tell) goes the smear way: its ingest job says why it fails
SMEAR_SAMPLES = [s for s, k in zip(SAMPLES["sample"], SAMPLES["kind"]) if k in SMEAR_KINDS or k == "unknown"]
BEAD_SAMPLES = [s for s, k in zip(SAMPLES["sample"], SAMPLES["kind"]) if k in BEAD_KINDS]


def _one_of(names):
    """Regex matching exactly these sample names (none: matches nothing)."""
    return "|".join(map(re.escape, names)) if len(names) else "(?!x)x"


# per-rule wildcard constraints: smear and bead rules share output names (sample.parquet,
# <sample>.ome.zarr), each kind's rules only match its own samples
SMEAR_RE = _one_of(SMEAR_SAMPLES)
BEAD_RE = _one_of(BEAD_SAMPLES)

wildcard_constraints:
    sample=_one_of(list(SAMPLES["sample"])),
    demo_sample="demo_smear_[0-9]+",
    shard="[0-9]+",


FOVS_PER_JOB = config["sharding"]["fovs_per_job"]


def sample_regions(sample):
    """The regions (wells) a sample sheet selects for a sample, None = all."""
    value = SAMPLES.loc[sample].get("regions")
    if value is None or pd.isna(value) or not str(value).strip():
        return None
    return [r for r in re.split(r"[,;\s]+", str(value).strip()) if r]


def n_shards(sample):
    """Jobs a sample's FOVs are split into (planned from file names when the DAG is built)."""
    row = SAMPLES.loc[sample]
    if sample in _demo_samples() and not Path(row["path"]).exists():
        n = DEMO["ny"] * DEMO["nx"]
        if DEMO["layout"] != "octopi":  # Squid layouts: every region and time point
            n *= len(DEMO["regions"]) * DEMO["nt"] * (DEMO["nz"] if str(config["zstack"]) == "all" else 1)
    else:
        n = count_fovs(row["kind"], row["path"], sample_regions(sample), config["zstack"])
    return max(1, -(-n // FOVS_PER_JOB))


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
    """The sample's acquisition folder / DPC file(s) / bead movie: a per-sample input, so new
    samples do not invalidate old ones."""
    return sample_row(wildcards)["path"]


def sample_outputs(sample):
    return [
        out(sample, f"{sample}.ome.zarr"),
        out(sample, "cells.parquet"),
        out(sample, "fovs.parquet"),
        out(sample, "sample.parquet"),
        out(sample, "report/overview.png"),
        out(sample, "qc.json"),
        out(sample, "report/qc_gallery.png"),
        out(sample, "report/qc_focus_map.png"),
        out(sample, "report/qc_histograms.png"),
    ]


def bead_outputs(sample):
    return [
        out(sample, f"{sample}.ome.zarr"),
        out(sample, "localizations.parquet"),
        out(sample, "tracks.parquet"),
        out(sample, "diffusion.parquet"),
        out(sample, "msd.parquet"),
        out(sample, "sample.parquet"),
        out(sample, "report/tracks.png"),
    ]


def all_outputs():
    files = [o for s in SMEAR_SAMPLES for o in sample_outputs(s)]
    if SMEAR_SAMPLES:
        files.append(f"{RESULTS}/samples.parquet")
    files += [o for s in BEAD_SAMPLES for o in bead_outputs(s)]
    if BEAD_SAMPLES:
        files.append(f"{RESULTS}/bead_samples.parquet")
    return files
