# Steward — the two commands: `make run` (start the console) and `make test` (the whole suite).
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
PIP_QUIET := 2>&1 | grep -v -e "is ignored: it is neither" -e "^$$" || true

.PHONY: run test test-scaled web worker beat migrate lint bench clean system-deps

# A venv left half-made (e.g. by a missing venv module) has a python but no pip: make it again.
$(VENV)/.installed: pyproject.toml
	@$(PY) -m pip --version >/dev/null 2>&1 || { \
	  PYTHON=$(PYTHON) ./scripts/system-deps venv && rm -rf $(VENV) && $(PYTHON) -m venv $(VENV); } || { \
	  echo "Could not create $(VENV) with $(PYTHON)." >&2; exit 1; }
	@echo "Installing Python packages into $(VENV) ..."
	@$(PY) -m pip install --disable-pip-version-check -q -e '.[dev]' $(PIP_QUIET)
	@$(PY) -c "import django, celery, channels, paramiko, playwright" || (echo "package install failed" >&2; exit 1)
	@touch $@

## run: start the console (embedded default) at http://127.0.0.1:$${STEWARD_PORT:-8080}/
run: $(VENV)/.installed
	@$(PY) manage.py runconsole

## test: the whole suite on the embedded default (installs OpenSSH and Chromium when missing)
test: $(VENV)/.installed system-deps
	@$(PY) -m pytest -m "not scaled" $(PYTEST_ARGS)

## test-scaled: the whole suite on PostgreSQL + Redis (standard loopback ports)
test-scaled: $(VENV)/.installed system-deps
	@DATABASE_URL=$${STEWARD_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/steward} \
	 REDIS_URL=$${STEWARD_TEST_REDIS_URL:-redis://127.0.0.1:6379/13} \
	 STEWARD_SECRET_KEY=$${STEWARD_SECRET_KEY:-scaled-test-secret-key-0123456789abcdefghijkl} \
	 $(PY) -m pytest $(PYTEST_ARGS)

system-deps:
	@PYTHON=$(PYTHON) ./scripts/system-deps test

# --- the scaled configuration: set DATABASE_URL, REDIS_URL, STEWARD_SECRET_KEY and
# STEWARD_MASTER_KEY(_FILE) the same for every process. `make migrate` once (and after each
# upgrade), then start any number of web and worker processes, and exactly one beat.
## migrate: apply migrations, create the groups, the master key and (first time) the admin
migrate: $(VENV)/.installed
	@$(PY) manage.py prepare_home
## web: one web process (uvicorn); any number, behind a proxy
web: $(VENV)/.installed
	@exec $(VENV)/bin/uvicorn console.asgi:application --host $${STEWARD_BIND:-127.0.0.1} \
	  --port $${STEWARD_PORT:-8080} --ws websockets-sansio --lifespan off --timeout-graceful-shutdown 5
## worker: one Celery worker process (threads pool); any number, on any machine
worker: $(VENV)/.installed
	@exec $(VENV)/bin/celery -A console worker -P threads -c $${STEWARD_WORKER_THREADS:-8} \
	  -n "worker-$$$$@%h" -l WARNING
## beat: the Celery beat scheduler; exactly one for the whole farm
beat: $(VENV)/.installed
	@mkdir -p "$${STEWARD_HOME:-steward-home}"
	@exec $(VENV)/bin/celery -A console beat -l WARNING

lint: $(VENV)/.installed
	@$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check . && $(PY) manage.py makemigrations --check --dry-run

clean:
	rm -rf $(VENV) e2e/screenshots .pytest_cache
