# Quick start: `make demo` and `make test` each set up .venv on their own.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
export OMP_WAIT_POLICY := PASSIVE
STAMP := $(VENV)/.installed

.PHONY: install test demo params bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)

# Re-install only when the project metadata changed (fast when already installed).
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1 2>/dev/null || $(BIN)/pip install -q "torch>=2.4" torchvision
	$(BIN)/pip install -q -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n 2 tests

demo: $(STAMP)
	$(BIN)/monatune demo

params: $(STAMP)
	$(BIN)/monatune params --backbone swin_base_patch4_window7_224 --dense

bench: $(STAMP)
	$(BIN)/python bench/run_all.py --out-dir bench/results

clean:
	rm -rf $(VENV) build dist src/*.egg-info
