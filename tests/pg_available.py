"""Exit 0 when the test PostgreSQL server answers, 1 otherwise (used by ``make test``)."""

import os
import sys

try:
    import psycopg2

    psycopg2.connect(
        host=os.environ.get("PGHOST", "127.0.0.1"),
        port=os.environ.get("PGPORT", "5432"),
        user=os.environ.get("PGUSER", "postgres"),
        password=os.environ.get("PGPASSWORD", ""),
        dbname="postgres",
        connect_timeout=3,
    ).close()
except Exception as error:  # any failure means "not reachable" here
    print(f"PostgreSQL not reachable: {error}".strip(), file=sys.stderr)
    sys.exit(1)
