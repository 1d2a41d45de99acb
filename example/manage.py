#!/usr/bin/env python
"""The example bank's command line: ``python manage.py demo``, ``runserver``, ``migrate``..."""

import os
import sys
from pathlib import Path

# Run from a checkout without installing: audit_events lives one level up.
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bankproject.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
