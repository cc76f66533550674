"""The workflow's config schema (``workflow/schemas/config.schema.yaml``): where every config
default is written, once.

Parameter objects of the library (e.g. :class:`scopeflow.smear.qc.params.QCParams`) take their
defaults from here, so the library, the workflow and the documentation of a key cannot disagree.
"""

from __future__ import annotations

import copy
from functools import lru_cache
from pathlib import Path

from scopeflow.errors import ScopeflowError

#: The config schema of the workflow this library belongs to (the repository's, beside ``src/``).
SCHEMA_PATH = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"


@lru_cache(maxsize=1)
def _schema() -> dict:
    import yaml

    try:
        text = SCHEMA_PATH.read_text()
    except OSError as exc:
        raise ScopeflowError(
            f"{SCHEMA_PATH}: cannot read the config schema ({exc.strerror}); install scopeflow "
            "from its repository (pip install -e .), which holds workflow/schemas/"
        ) from None
    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def schema_defaults(section: str) -> dict:
    """The ``default`` of every key of the config section ``section`` (e.g. ``"qc"``), as the
    schema writes them (a fresh copy: callers may change it).

    Raises
    ------
    ScopeflowError
        When the schema cannot be read or has no section ``section``.
    """
    props = _schema()["properties"].get(section, {}).get("properties")
    if not props:
        raise ScopeflowError(f"{SCHEMA_PATH}: no config section {section!r} with properties")
    return {key: copy.deepcopy(spec["default"]) for key, spec in props.items()}
