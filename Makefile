# Every install step lives here so a fresh clone (and CI) can run `make demo` / `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

# Offline by design: no telemetry, no analytics, no update checks.
export GX_ANALYTICS_ENABLED := False
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1
export PREFECT_LOGGING_LEVEL ?= WARNING

.PHONY: install demo test lint typecheck bench clean up down system-packages

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/careloop demo

test: $(STAMP) system-packages
	$(BIN)/pytest -n 2

# Debian's packages the tests use: the managers' page is tested in headless Chromium (Selenium
# drives it through Debian's chromedriver, the same version; a CJK font makes its screenshots
# readable), and three service instances run behind HAProxy.
SYSTEM_FILES := /usr/bin/chromium /usr/bin/chromedriver /usr/share/fonts/truetype/wqy/wqy-zenhei.ttc /usr/sbin/haproxy
system-packages:
	@for f in $(SYSTEM_FILES); do [ -e $$f ] || missing=1; done; \
	if [ -n "$$missing" ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			chromium chromium-driver fonts-wqy-zenhei haproxy; \
	fi

# Every check runs and says its piece; the target fails if any did.
lint: $(STAMP)
	@status=0; \
	$(BIN)/ruff check . || status=1; \
	$(BIN)/ruff format --check . || status=1; \
	$(BIN)/lint-imports || status=1; \
	exit $$status

typecheck: $(STAMP)
	$(BIN)/mypy careloop flows service segments campaigns feedback cases insights demo inbox warehouse core

# The whole stack for marketing ops: Prefect server, pool, deployments, worker, feedback service.
up: $(STAMP)
	$(BIN)/python -m careloop.stack up

down:
	$(BIN)/python -m careloop.stack down

# Not part of `make test`: builds a 10-million-subscriber warehouse once (about 3 minutes), and
# 90 days and 31 days of the loop's history on it once (benchmarks/year_bench.py: 5-25 minutes,
# 5 GiB and 2 GiB, each with its copy).
bench: $(STAMP)
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) .careloop .pytest_cache .mypy_cache .ruff_cache
