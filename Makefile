# The two commands of the README's quick start: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TORCH_WHEEL := $(wildcard /opt/wheels/torch-2.13.0*.whl)

.PHONY: demo test bench lint clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	@# PyTorch is only a reference for the tests and a peer for bench/: installed from the
	@# local CPU wheel when the machine has it, skipped otherwise.
	$(if $(TORCH_WHEEL),$(PY) -m pip install --quiet $(TORCH_WHEEL) || true,)
	touch $@

demo: $(VENV)/.installed
	$(PY) examples/autograd_tour.py
	$(PY) examples/train_mlp.py

test: $(VENV)/.installed
	$(PY) -m pytest -q

bench: $(VENV)/.installed
	$(PY) -m bench

lint: $(VENV)/.installed
	$(PY) -m ruff check tracegrad compiler runtime tests bench examples

clean:
	rm -rf $(VENV) build *.egg-info
