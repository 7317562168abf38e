# Thin layer over `portrait` (toolchain/cli.py). The first target you run creates .venv.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# MediaPipe client environment (issue 11): its own venv, because mediapipe's opencv-contrib-python
# clashes with opencv-python-headless in .venv; toolchain/handoff/client.py calls it by subprocess.
CLIENT := .venv-client
CLIENT_STAMP := $(CLIENT)/.installed
# Browser runtimes for `portrait device-check` (issue 24): web/package-lock.json pins LiteRT.js and
# MediaPipe Tasks Vision; npm ci installs exactly that. Without npm the step says so and is skipped:
# device-check then stops with a clear error and its tests skip (.ci/run installs node, npm, chromium).
WEB_STAMP := web/node_modules/.installed

.PHONY: all setup client-env web export-int8 models test test-fast lint parity bench sim sequences render-report clean demo report

all: export-int8

$(STAMP): requirements.lock pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) on PATH (or make PYTHON=/path/to/python3.11)"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.lock
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	@touch $(STAMP)

setup: $(STAMP)

$(CLIENT_STAMP): requirements-client.lock
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) on PATH (or make PYTHON=/path/to/python3.11)"; exit 1; }
	@test -x $(CLIENT)/bin/python || $(PYTHON) -m venv $(CLIENT)
	$(CLIENT)/bin/python -m pip install -q --upgrade pip
	$(CLIENT)/bin/python -m pip install -q -r requirements-client.lock
	@touch $(CLIENT_STAMP)

client-env: $(CLIENT_STAMP)

$(WEB_STAMP): web/package.json web/package-lock.json
	@if command -v npm >/dev/null; then npm ci --prefix web --no-audit --no-fund && touch $(WEB_STAMP); \
	else echo "npm not found: browser device check NOT installed (apt-get install nodejs npm chromium; then make web)"; fi

web: $(WEB_STAMP)

# ENGINE=ray [WORKERS=N] [ADDRESS=host:port]: the ladder's mixed-float search runs its candidates on Ray
ENGINE  ?= local
# JOBS=N: models exported at once, each in its own process (portrait export --jobs; 1 = one at a time)
JOBS    ?= 2
export-int8: $(STAMP) $(CLIENT_STAMP) $(WEB_STAMP)
	$(BIN)/portrait export --all --jobs $(JOBS) --engine $(ENGINE)$(if $(WORKERS), --workers $(WORKERS))$(if $(ADDRESS), --address $(ADDRESS))

models: $(STAMP)
	$(BIN)/portrait models fetch

test: $(STAMP) $(CLIENT_STAMP) $(WEB_STAMP)
	$(BIN)/python -m pytest -q

# unit tests only: no real models or photos (`shared`), no TF converter or export (`integration`), nothing `slow`
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not shared and not slow and not integration"

# ruff (lint + format check, settings in pyproject.toml) and mypy on the library
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy toolchain

parity: $(STAMP)
	$(BIN)/portrait parity --all

bench: $(STAMP) $(WEB_STAMP)
	$(BIN)/portrait bench --all

# docs/results.md from the record: bundle manifests, export/bench/bench.json, export/eval/*/report.json
report: $(STAMP)
	$(BIN)/portrait report

sim: $(STAMP)
	$(BIN)/portrait sim --out export/sim

sequences: $(STAMP)
	$(BIN)/python -m device_sim.make_sequences

render-report: $(STAMP)
	$(BIN)/python -m experiments.render_panels export/render --quality --bench

demo: $(STAMP)                 # export/demo/index.html: notebook vs ours, 100 % crops, edge figures
	$(BIN)/python -m experiments.demo --out export/demo

clean:
	rm -rf export/out
