# Everything a newcomer needs: `make demo` and `make test` set up their own virtualenv.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat setup.cfg | cksum | cut -d' ' -f1)
PG_URL ?= postgres://postgres@127.0.0.1:5432/postgres

.PHONY: demo relay-test example-relay test test-sqlite test-postgres test-mariadb test-packaging test-django6 test-prepared test-django-suite test-django-suite-all stress bench-smoke lint arch check-migrations docs bench clean venv

$(STAMP): setup.cfg
	@# mysqlclient (the mariadb test extra) builds from source against Debian's libmariadb-dev.
	@pkg-config --exists libmariadb || pkg-config --exists mysqlclient || \
		{ echo "make venv: installing libmariadb-dev (mysqlclient builds against it)"; \
		  apt-get install -y -qq libmariadb-dev >/dev/null 2>&1 || \
		  { apt-get update -qq && apt-get install -y -qq libmariadb-dev >/dev/null; } || \
		  { echo "make venv: libmariadb-dev is missing and could not be installed (apt-get install libmariadb-dev)"; exit 1; }; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test,dev,example]"
	rm -f $(VENV)/.installed-* && touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	cd example && ../$(PY) manage.py migrate --verbosity 0 && ../$(PY) manage.py demo

# The whole suite on SQLite, then on PostgreSQL and on MariaDB (or MySQL) when each is reachable.
# REQUIRE_POSTGRES=1 and REQUIRE_MARIADB=1 (CI) make an unreachable server a failure.
# Branch coverage of audit_events/ is collected over every run and reported at the end.
COVERAGE := --cov=audit_events --cov-append --cov-report=
# Both cores (pytest-xdist); XDIST= runs the suite in one process.
XDIST ?= -n 2
test: $(STAMP)
	@ran="sqlite"; \
	$(PY) -m coverage erase; \
	TEST_DB=sqlite $(PY) -m pytest $(XDIST) $(COVERAGE) $(PYTEST_ARGS) || exit 1; \
	if $(PY) tests/pg_available.py; then \
		TEST_DB=postgres $(PY) -m pytest $(XDIST) $(COVERAGE) $(PYTEST_ARGS) || exit 1; ran="$$ran postgresql"; \
	elif [ -n "$(REQUIRE_POSTGRES)" ]; then \
		echo "PostgreSQL is required (REQUIRE_POSTGRES=1) but unreachable"; exit 1; \
	else \
		echo "PostgreSQL unreachable: skipped the PostgreSQL run"; \
	fi; \
	if $(PY) tests/mariadb_available.py; then \
		TEST_DB=mariadb $(PY) -m pytest $(XDIST) $(COVERAGE) $(PYTEST_ARGS) || exit 1; ran="$$ran mariadb"; \
	elif [ -n "$(REQUIRE_MARIADB)" ]; then \
		echo "MariaDB is required (REQUIRE_MARIADB=1) but unreachable"; exit 1; \
	else \
		echo "MariaDB unreachable: skipped the MariaDB run"; \
	fi; \
	$(PY) -m coverage report; \
	echo "make test: the suite passed on: $$ran"

test-sqlite: $(STAMP)
	TEST_DB=sqlite $(PY) -m pytest $(XDIST) $(PYTEST_ARGS)

test-postgres: $(STAMP)
	TEST_DB=postgres $(PY) -m pytest $(XDIST) $(PYTEST_ARGS)

test-mariadb: $(STAMP)
	TEST_DB=mariadb $(PY) -m pytest $(XDIST) $(PYTEST_ARGS)

lint: $(STAMP) arch
	$(VENV)/bin/ruff check audit_events tests example bench tools noxfile.py docs/conf.py
	$(VENV)/bin/ruff format --check audit_events tests example bench tools noxfile.py docs/conf.py
	$(VENV)/bin/mypy

# The architecture (docs/architecture.rst): the import contracts of .importlinter (layers, no cycles, who may
# import what), then the two limits of the house, each failing the build: no function of cyclomatic complexity
# over 12 as radon counts it, no module over 350 lines.
arch: $(STAMP)
	$(VENV)/bin/lint-imports .importlinter
	@$(VENV)/bin/radon cc --min C --show-complexity audit_events \
		| awk '/^[^ ]/ {file = $$0; next} {n = $$NF; gsub(/[()]/, "", n); sub(/^ +/, ""); if (n + 0 > 12) print "    " file ": " $$0}' \
		> $(VENV)/arch-complexity.txt; \
	if [ -s $(VENV)/arch-complexity.txt ]; then \
		echo "Functions over complexity 12 (radon cc):"; cat $(VENV)/arch-complexity.txt; exit 1; fi
	@find audit_events -name '*.py' -not -path '*/migrations/*' -exec wc -l {} + \
		| awk '$$2 != "total" && $$1 > 350 {print "    " $$1 " " $$2}' | sort -rn > $(VENV)/arch-size.txt; \
	if [ -s $(VENV)/arch-size.txt ]; then echo "Modules over 350 lines:"; cat $(VENV)/arch-size.txt; exit 1; fi
	@echo "make arch: the import contracts hold; no function over complexity 12, no module over 350 lines"

check-migrations: $(STAMP)
	$(PY) -m django makemigrations --check --dry-run --settings=tests.settings

docs: $(STAMP)
	$(PY) -m pip install --quiet -e ".[docs]"
	$(PY) -m sphinx -W --keep-going -b html docs docs/_build/html

# The sdist and wheel, twine check, and the wheel installed in a fresh virtualenv.
test-packaging: $(STAMP)
	$(PY) -m pytest -p no:cacheprovider -m packaging tests/test_packaging.py

# Django 6.x on Python 3.12/3.13 from pyenv (the full matrix: `.venv/bin/nox -t tests`).
test-django6: $(STAMP)
	$(VENV)/bin/nox -s "tests(python='3.13', django='6.1', db='postgres')" -- -q -p no:cacheprovider -n 2 -m "not broker and not stress"

# Side by side with plain Django and the peer libraries (each in its own virtualenv
# under .venvs/); writes docs/_generated/benchmark.rst. Not part of `make test`.
bench: $(STAMP)
	$(PY) bench/bench.py

# PostgreSQL through psycopg 3: psycopg preparing (server-side binding), then this app preparing (client-side).
test-prepared: $(STAMP)
	$(VENV)/bin/nox -s prepared -- -q -p no:cacheprovider -n 2 -m "not stress"

# Django's own ORM test suite, without audit_events and with every model registered, compared
# test by test (docs/django-suite.rst). DB=sqlite (default) or postgres; the sources go to .cache/.
DB ?= sqlite
test-django-suite: $(STAMP)
	$(PY) tools/django_suite/run.py --db $(DB) $(DJANGO_SUITE_ARGS)

test-django-suite-all: $(STAMP)
	$(PY) tools/django_suite/run.py --db sqlite $(DJANGO_SUITE_ARGS)
	$(PY) tools/django_suite/run.py --db postgres $(DJANGO_SUITE_ARGS)

# The many-writers harness (tests/test_stress.py) on PostgreSQL, longer than in `make test`:
# STRESS_SECONDS per round, STRESS_ROUNDS random seeds after the fixed one (STRESS_SEED=n repeats one).
stress: $(STAMP)
	STRESS_SECONDS=$${STRESS_SECONDS:-60} STRESS_ROUNDS=$${STRESS_ROUNDS:-5} TEST_DB=postgres \
		$(PY) -m pytest -p no:cacheprovider -s tests/test_stress.py

# The relay end to end (tests/test_relay.py) with 100,000 events per broker: RabbitMQ and NATS JetStream on
# 127.0.0.1, PostgreSQL; prints the throughput and latency figures docs/relay.rst quotes. It also stops and
# starts each broker (rabbitmqctl stop_app/start_app; nats-server killed and started again as it was running):
# run it as a user allowed to, RELAY_RESTART_BROKER=0 to skip that.
relay-test: $(STAMP)
	RELAY_EVENTS=$${RELAY_EVENTS:-100000} RELAY_WAIT=$${RELAY_WAIT:-900} RELAY_RESTART_BROKER=$${RELAY_RESTART_BROKER:-1} TEST_DB=postgres \
		$(PY) -m pytest -p no:cacheprovider -s -k killed tests/test_relay.py

# The example bank's relay, publishing to the RabbitMQ at 127.0.0.1:5672 (guest/guest) until Ctrl-C.
example-relay: $(STAMP)
	cd example && ../$(PY) manage.py migrate --verbosity 0 && ../$(PY) manage.py audit_relay

bench-smoke: $(STAMP)
	BENCH_N=50 BENCH_BULK=200 BENCH_REPS=1 BENCH_HISTORY=10,100 BENCH_LIBS="plain audit_events" \
	BENCH_DOC=bench-out/smoke.rst $(PY) bench/bench.py

clean:
	rm -rf $(VENV) build dist *.egg-info docs/_build .pytest_cache .mypy_cache .ruff_cache .hypothesis .import_linter_cache
