# hear_maeast: `make eval` (the main job) and `make test` are the two commands a newcomer needs.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
WORK   ?= work
SHARED ?= ../shared/data
# heareval's predictions runner loads Lightning checkpoints that pickle classes (torch >= 2.6 refuses by default)
export TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD := 1
export TF_CPP_MIN_LOG_LEVEL := 2

.PHONY: install test test-slow test-harnesses eval bench gpu-check clean

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
	$(BIN)/python -m pytest -q --durations=20 tests

# the tests marked heavy (real torch.compile runs, the whole GPU check dry-run on the CPU): minutes each on 2 cores
test-slow: install
	$(BIN)/python -m pytest -q -m heavy tests

# X-ARES, MTEB, s3prl and ONNX (docs/harnesses.md): their extras on top of the install (no pin changes), then their
# tests; X-ARES also needs FFmpeg's libraries (apt-get install ffmpeg, which .ci/run does).
HARNESSES := xares,mteb,s3prl,onnx
$(BIN)/.harnesses: $(BIN)/.installed constraints.txt setup.cfg
	$(BIN)/pip install -q --no-build-isolation -e '.[$(HARNESSES)]' -c constraints.txt
	touch $@

test-harnesses: $(BIN)/.harnesses
	$(BIN)/python -m pytest -q tests/test_harness_onnx.py tests/test_harness_xares.py tests/test_harness_s3prl.py \
		tests/test_harness_mteb.py

eval: install
	$(BIN)/python -m eval.make_eval --work $(WORK) --shared $(SHARED)

bench: install
	$(BIN)/python benchmarks/run_all.py

# One lent GPU, one command: from a plain checkout with the machine's own torch (no install, no network), <= 5 min.
gpu-check:
	PYTHONPATH=. $(PYTHON) benchmarks/gpu.py --check

clean:
	rm -rf $(WORK) .pytest_cache
