"""The conda environment, pyproject and schemas agree; the config validates with defaults."""

import re
import tomllib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
# PyPI name -> conda-forge name where they differ
CONDA_NAME = {"torch": "pytorch", "dask[distributed]": "dask"}


def _name(req: str) -> str:
    return re.split(r"[<>=!~ ]", req, maxsplit=1)[0].strip().lower()


def test_conda_env_lists_every_dependency():
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    env = yaml.safe_load((REPO / "envs" / "scopeflow.yaml").read_text())
    conda = {_name(d) for d in env["dependencies"] if isinstance(d, str)}
    missing = [d for d in deps if CONDA_NAME.get(_name(d), _name(d)) not in conda]
    assert not missing, f"envs/scopeflow.yaml lacks {missing}"
    assert "distributed" in conda


def test_torch_requirement_is_a_range():
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    torch = [d for d in deps if _name(d) == "torch"]
    assert torch and "==" not in torch[0]


def test_default_config_valid_and_every_schema_field_documented():
    from snakemake.utils import validate

    schema_path = REPO / "workflow" / "schemas" / "config.schema.yaml"
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    validate(config, str(schema_path), set_default=True)

    def walk(node, where):
        for key, sub in node.get("properties", {}).items():
            assert "description" in sub, f"{where}.{key} has no description"
            assert "default" in sub, f"{where}.{key} has no default"
            walk(sub, f"{where}.{key}")

    walk(yaml.safe_load(schema_path.read_text()), "config")


def test_every_rule_has_a_log():
    for smk in (REPO / "workflow" / "rules").glob("*.smk"):
        text = smk.read_text()
        for block in re.split(r"\nrule ", text)[1:]:
            assert "\n    log:" in block, f"{smk.name}: rule {block.split(':')[0]} has no log"


def test_readme_documents_every_table_column():
    from scopeflow.smear import measure
    from scopeflow.track import stages as track

    readme = (REPO / "README.md").read_text()
    for columns in (measure.CELL_COLUMNS, measure.FOV_COLUMNS, measure.SAMPLE_COLUMNS,
                    measure.CELL_QC_COLUMNS, measure.FOV_QC_COLUMNS,
                    track.LOC_COLUMNS, track.TRACK_COLUMNS, track.DIFFUSION_COLUMNS,
                    track.MSD_COLUMNS, track.SAMPLE_COLUMNS):
        for col in columns:
            assert f"`{col}`" in readme, f"README lacks column {col}"
