# Steward — the two commands: `make run` (start the console) and `make test` (the whole suite).
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
PIP_QUIET := 2>&1 | grep -v -e "is ignored: it is neither" -e "^$$" || true

.PHONY: run test test-scaled web worker beat migrate lint bench clean system-deps

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
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
	@./scripts/system-deps

# --- the scaled configuration: set DATABASE_URL, REDIS_URL, STEWARD_SECRET_KEY and
# STEWARD_MASTER_KEY(_FILE) the same for every process, then start any number of each.
migrate: $(VENV)/.installed
	@$(PY) manage.py migrate
web: $(VENV)/.installed
	@$(PY) manage.py prepare_home
	@$(VENV)/bin/uvicorn console.asgi:application --host $${STEWARD_BIND:-127.0.0.1} \
	  --port $${STEWARD_PORT:-8080} --ws websockets-sansio --lifespan off
worker: $(VENV)/.installed
	@$(VENV)/bin/celery -A console worker -P threads -c $${STEWARD_WORKER_THREADS:-8} -l WARNING
beat: $(VENV)/.installed
	@$(VENV)/bin/celery -A console beat -l WARNING -s $${STEWARD_HOME:-steward-home}/celerybeat-schedule

lint: $(VENV)/.installed
	@$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check . && $(PY) manage.py makemigrations --check --dry-run

clean:
	rm -rf $(VENV) e2e/screenshots .pytest_cache
