# The two commands of the README: `make run` (the whole service) and `make test`; and
# `make bench` (ARGS=--quick for the short run).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):$(PATH)
export PYTHONUNBUFFERED := 1

# Without CELERY_BROKER_URL the service brings its own redis-server (embedded broker).
PROCFILE := $(if $(CELERY_BROKER_URL),Procfile,Procfile.embedded)

.PHONY: run test fuzz lint format bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: requirements.txt constraints.txt | $(BIN)/python
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements.txt requirements-dev.txt $(VENV)/.installed
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

$(VENV)/.installed-bench: requirements.txt bench/requirements.txt $(VENV)/.installed
	$(BIN)/pip install --quiet --disable-pip-version-check -r bench/requirements.txt
	touch $@

# honcho gives the first process (web) the base port and later ones base+100, +200, ...
# Ctrl-C is how the service is stopped: honcho stops every process and exits 130, which is a
# clean stop, not an error. The shell traps SIGINT (a handler, not an ignore, so honcho still
# receives it) to outlive the keypress and turn that 130 into 0.
run: $(VENV)/.installed
	$(BIN)/python manage.py bootstrap
	@trap : INT; $(BIN)/honcho --no-colour start -f $(PROCFILE) -p $${PORT:-8000}; \
		status=$$?; if [ $$status -eq 130 ]; then echo "stagingsvc stopped."; exit 0; fi; \
		exit $$status

test: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest $(PYTEST_ARGS)

# schemathesis against a live gunicorn + celery worker (tests/fuzz): every phase, stateful
# sequences included, until FUZZ_MAX_TIME seconds are spent; no answer may be a 5xx.
FUZZ_MAX_EXAMPLES ?= 100
FUZZ_MAX_TIME ?= 360
fuzz: $(VENV)/.installed-dev
	FUZZ_MAX_EXAMPLES=$(FUZZ_MAX_EXAMPLES) FUZZ_MAX_TIME=$(FUZZ_MAX_TIME) \
		$(BIN)/pytest tests/fuzz -m fuzz -s -q -p no:cacheprovider

# The load generator is Debian's wrk; sudo only when not already root.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
bench: $(VENV)/.installed-bench
	@command -v wrk >/dev/null || { $(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk; }
	BENCH_COMMAND="make bench$(if $(ARGS), ARGS='$(ARGS)')" $(BIN)/python -m bench $(ARGS)

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf var/ .pytest_cache .ruff_cache
