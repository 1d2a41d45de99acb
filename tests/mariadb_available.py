"""Exit 0 when the test MariaDB (or MySQL) server answers, 1 otherwise (used by ``make test``)."""

import os
import sys

try:
    import MySQLdb

    MySQLdb.connect(
        host=os.environ.get("MYSQL_HOST", "127.0.0.1"),
        port=int(os.environ.get("MYSQL_PORT", "3306")),
        user=os.environ.get("MYSQL_USER", "root"),
        password=os.environ.get("MYSQL_PASSWORD", ""),
        connect_timeout=3,
    ).close()
except Exception as error:  # any failure means "not reachable" here
    print(f"MariaDB not reachable: {error}".strip(), file=sys.stderr)
    sys.exit(1)
