"""The package's own data files (schemas, built-in templates, skills): real directories beside this module.

Installed as a regular directory (wheel or editable), so Jinja's loader and the caches' tree
signatures get a real path; found from `__file__` rather than importlib.resources, whose
import (zipfile, tempfile, ...) every run would pay for.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
SCHEMA_DIR = PACKAGE_DIR / "schemas"
TEMPLATE_DIR = PACKAGE_DIR / "templates"
SKILLS_DIR = PACKAGE_DIR / "skills"
STARTER_DIR = PACKAGE_DIR / "starter"  # what `rlm init` writes
