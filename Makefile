# hear_maeast: `make eval` (the main job) and `make test` are the two commands a newcomer needs.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
WORK   ?= work
SHARED ?= ../shared/data
# heareval's predictions runner loads Lightning checkpoints that pickle classes (torch >= 2.6 refuses by default)
export TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD := 1
export TF_CPP_MIN_LOG_LEVEL := 2

.PHONY: install test eval bench clean

# The HEAR 2021 tools cannot be resolved from their own metadata on Python 3.11: see docs/install.md.
$(BIN)/.installed: requirements-eval.txt constraints.txt setup.cfg
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip 'setuptools<81' wheel
	$(BIN)/pip install -q -r requirements-eval.txt -c constraints.txt
	$(BIN)/pip install -q --no-deps pytorch-lightning==1.6.5.post0
	$(BIN)/pip install -q --no-deps --ignore-requires-python heareval==2021.1.3 hearvalidator==2021.0.6
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .
	touch $@

install: $(BIN)/.installed

test: install
	$(BIN)/python -m pytest -q tests

eval: install
	$(BIN)/python -m eval.make_eval --work $(WORK) --shared $(SHARED)

bench: install
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(WORK) .pytest_cache
