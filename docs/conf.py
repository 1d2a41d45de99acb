"""Sphinx configuration: ``sphinx-build -W --keep-going -b html docs docs/_build/html``."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# autodoc imports the app, so Django is set up with the test settings (SQLite in
# memory: nothing is written, no database server is needed).
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
os.environ.setdefault("TEST_DB", "sqlite")
import django  # noqa: E402

django.setup()

project = "audit_events"
author = "audit_events contributors"
copyright = "the audit_events contributors"
release = "0.1.0"

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "myst_parser",
]
source_suffix = {".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build", "_generated", "Thumbs.db", ".DS_Store"]

html_theme = "furo"
html_title = "audit_events"

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_typehints_format = "short"
autodoc_preserve_defaults = True

# Every cross-reference inside these docs must resolve. References to Python's
# and Django's own objects are left unlinked: the docs are built offline
# (no intersphinx inventories), so they are ignored rather than guessed.
nitpicky = True
nitpick_ignore_regex = [
    (r"py:.*", r"(django|datetime|typing|collections|contextlib|uuid|types)(\..*)?"),
    (r"py:.*", r"(audit_events\.\w+\.)?(Any|None|M|_Actor|object|str|int|bool|dict|list|tuple|type)"),
    (r"py:.*", r"(LookupError|Exception)"),
    (r"py:.*", r"(EventQuerySet|audit_events\.models\.EventQuerySet)"),
]

myst_heading_anchors = 3
