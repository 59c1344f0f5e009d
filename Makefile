# Fresh-machine set-up and the project's entry points. `make demo` and `make test` install
# everything they need (Debian packages, the virtual environment, the editor's npm packages).
SHELL := /bin/bash
PY ?= python3.11
TORCH_INDEX ?=
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip
APT_PACKAGES := espeak-ng libespeak-ng1 ffmpeg sox chromium flite festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts
STAMP_PY := $(VENV)/.stamp-$(shell cat pyproject.toml constraints.txt 2>/dev/null | sha1sum | cut -c1-12)
STAMP_NPM := ui/node_modules/.stamp-$(shell cat ui/package.json ui/package-lock.json 2>/dev/null | sha1sum | cut -c1-12)
# The engine's own example runs until the node library ships workflows/hdtf.yaml.
# The learned HDTF pipeline is the main job once its trained checkpoints are in assets/.
DEMO_WORKFLOW ?= $(if $(wildcard assets/checkpoints/hdtf_flow_video_tiny.pt),workflows/hdtf.yaml,workflows/synth_talk.yaml)

.PHONY: setup system python npm demo lint test test-slow bench clean-cache

setup: system python npm

# Debian packages: installed only when one is missing (apt-get needs root; sudo is used if present).
system:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

python: $(STAMP_PY)
$(STAMP_PY): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# torch first and pinned, so nothing else resolves another version. Which build (CPU or
	# CUDA) pip picks is its configuration's choice; TORCH_INDEX=URL names the index to take it from.
	$(PIP) install -q torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(PIP) install -q -c constraints.txt -e '.[nodes,ui,s3,test]'
	rm -f $(VENV)/.stamp-*; touch $@

npm: $(STAMP_NPM)
$(STAMP_NPM): $(wildcard ui/package.json ui/package-lock.json)
	@if [ -f ui/package.json ]; then cd ui && npm ci --no-audit --no-fund --loglevel=error; fi
	@mkdir -p ui/node_modules; rm -f ui/node_modules/.stamp-*; touch $@

demo: setup
	$(BIN)/graphrun $(DEMO_WORKFLOW)

# Static checks: ruff (rule set documented in pyproject.toml's [tool.ruff.lint]), the layers
# (graphcore / trainers / nodes / ui) as import-linter contracts ([tool.importlinter]) and
# mypy on the engine ([tool.mypy]).
lint: setup
	$(BIN)/ruff check .
	$(BIN)/lint-imports --no-cache --no-logo
	$(BIN)/mypy

test: setup lint
	$(BIN)/python -m pytest -q

test-slow: setup
	$(BIN)/python -m pytest -q -m slow

# Every benchmark the docs cite; each prints its figures as ratios against a baseline measured in
# the same run. engine.py runs scheduler_overhead.py and cache_io.py; cache_verify.py the read-verification overhead.
BENCHMARKS := engine cache_verify nodes hdtf yi audio2head phonetic ip_lap stream_memory
bench: setup
	@for b in $(BENCHMARKS); do echo "== bench/$$b.py"; $(BIN)/python bench/$$b.py || exit 1; done

clean-cache:
	$(BIN)/graphrun cache clear --yes
