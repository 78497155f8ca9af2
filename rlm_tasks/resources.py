"""The package's own data files (schemas, built-in templates, skills), found with importlib.resources."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def _package_dir(name: str) -> Path:
    # Installed as a regular directory (wheel or editable): Jinja's loader and the
    # caches' tree signatures need a real path, not just a Traversable.
    return Path(str(files("rlm_tasks") / name))


PACKAGE_DIR = _package_dir("")
SCHEMA_DIR = _package_dir("schemas")
TEMPLATE_DIR = _package_dir("templates")
SKILLS_DIR = _package_dir("skills")
STARTER_DIR = _package_dir("starter")  # what `rlm init` writes
