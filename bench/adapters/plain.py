"""Baseline: plain Django, no auditing."""

from . import Adapter

ADAPTER = Adapter()
