# The two commands: `make run` (the whole service on this machine) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run demo test browser simulator lint bench load check clean lock lock-upgrade messages

# The exact versions the tests passed with: requirements-dev.lock (requirements.lock, its
# runtime part, is what the Docker image installs). `make lock` / `make lock-upgrade` write both
# from the ranges in pyproject.toml.
$(STAMP): pyproject.toml requirements-dev.lock
	$(PYTHON) -c 'import sys; sys.exit("Python 3.11+ is required") if sys.version_info < (3, 11) else None'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.lock
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

LOCK_OPTIONS := --quiet --strip-extras --no-emit-find-links --no-emit-index-url

## lock-upgrade: move every pin to the newest version pyproject.toml allows
lock-upgrade: LOCK_OPTIONS += --upgrade
lock-upgrade: lock

## lock: pin what pyproject.toml declares, keeping the pins it still allows
lock:
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet 'pip-tools>=7.4'
	$(PY) -m piptools compile $(LOCK_OPTIONS) -o requirements.lock pyproject.toml
	$(PY) -m piptools compile $(LOCK_OPTIONS) --extra dev -o requirements-dev.lock pyproject.toml

## run: API + dashboard + admin on http://127.0.0.1:8000 with a real Celery worker (SQLite, embedded broker)
run: $(STAMP)
	$(PY) -m app run

## demo: the same, paying through the bundled offline aamarPay simulator (no internet needed)
demo: $(STAMP)
	$(PY) -m app run --simulator

## simulator: only the aamarPay sandbox simulator, on http://127.0.0.1:8001
simulator: $(STAMP)
	$(PY) -m simulator --port 8001

## test: the whole suite (SQLite + embedded broker by default; MariaDB + Redis with TEST_DATABASE_URL / TEST_REDIS_URL)
test: $(STAMP) browser
	$(PY) -m pytest

## browser: the browser tests use the system's Chromium, else Playwright's own build
browser: $(STAMP)
	@if [ -n "$$CHROMIUM_PATH" ] || command -v chromium >/dev/null 2>&1; then :; \
	else $(PY) -m playwright install chromium; fi

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy app simulator

## bench: word counting vs wc -w and the naive docx loop, upload memory and early refusal
bench: $(STAMP)
	$(PY) -m bench

## load: the load test against a local production-like stack (MariaDB + Redis on 127.0.0.1; README "Performance")
load: $(STAMP)
	$(PY) -m bench.load

## messages: extract the pages' and e-mails' strings (babel.cfg) and merge them into app/locales/*/LC_MESSAGES/messages.po
messages: $(STAMP)
	$(VENV)/bin/pybabel extract -F babel.cfg -k N_ -k tr:2 -k ntr:2,3 --no-location --sort-output \
		--project=wordcount-service -o app/locales/messages.pot .
	$(VENV)/bin/pybabel update -i app/locales/messages.pot -d app/locales -D messages \
		--ignore-obsolete

check: $(STAMP)
	$(PY) -m app check

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
