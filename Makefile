# Two commands do everything from a fresh clone:
#   make demo   the main job (no camera, GPU or download needed)
#   make test   lint + the whole test suite
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test lint venv clean gpu-check

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m streamer.demo

# On a CUDA machine, with the torch it already has (>= 2.11): no venv, nothing installed.
gpu-check:
	PYTHONPATH=. $(PYTHON) -m benchmarks.gpu_check

lint: $(STAMP)
	$(PY) -m ruff check .

test: lint
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) runs .pytest_cache
