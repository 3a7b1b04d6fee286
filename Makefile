# Shanakht: two commands on a fresh machine.
#   make run   set everything up (venv, Cython build, protobuf generation, models) and serve on ./data
#   make test  set everything up, then run the whole test suite
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
HOST   ?= localhost
PORT   ?= 50051

.PHONY: install run test bench clean

$(STAMP): pyproject.toml setup.py $(wildcard proto/shanakht/v1/*.proto) $(wildcard native/*.pyx)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

install: $(STAMP)

run: install
	$(VENV)/bin/shanakht serve --data-dir ./data --host $(HOST) --port $(PORT)

test: install
	$(PY) -m pytest

bench: install
	$(PY) -m pytest benchmarks --benchmark-enable --write-results

clean:
	rm -rf $(VENV) build *.egg-info native/*.c native/*.so shanakht/v1/*_pb2*.py shanakht/v1/*_pb2*.pyi
