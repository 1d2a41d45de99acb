"""Models whose history django-simple-history and django-reversion keep (tests/test_import.py).

Not in AUDIT_EVENTS["MODELS"] of tests/settings.py: the import tests register them with
override_settings once the peers' history is written, as a project switching would.
"""
