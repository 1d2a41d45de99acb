"""WSGI entry point of the example bank."""

import os
import sys
from pathlib import Path

from django.core.wsgi import get_wsgi_application

sys.path.insert(1, str(Path(__file__).resolve().parent.parent.parent))  # audit_events, from a checkout
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bankproject.settings")

application = get_wsgi_application()
