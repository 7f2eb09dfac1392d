# learnmech — two commands on a fresh machine:
#   make demo   set up .venv and run the main job (the wide-nets study, HTML report)
#   make test   set up .venv if needed and run the test suite
#   make test-vision  the tests on torchvision and timm models, in .venv-vision (~6.5 GB;
#               .ci/run runs it after make test where the disk has room)
#
# torch: on a CPU-only machine we install the pinned CPU build first (TORCH_SPEC), so that
# learnmech's `torch>=2.2` is already satisfied and pip never pulls a multi-GB CUDA build.
# Where `nvidia-smi` exists we let pip pick the default (CUDA) build from PyPI instead.
# Override either way, e.g.  make test TORCH_SPEC="torch==2.5.1".

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HAVE_GPU := $(shell command -v nvidia-smi >/dev/null 2>&1 && echo 1)
ifeq ($(HAVE_GPU),1)
TORCH_SPEC ?= torch>=2.2
else
TORCH_SPEC ?= torch==2.13.0
endif
EXTRAS ?= dev,ray,hf,integrations
MUP_VERSION ?= 1.0.0
SCALE ?= quick
# pytest workers (pytest-xdist): one per core, each on one thread (tests/conftest.py);
# Ray's tests share one worker (--dist loadgroup). JOBS=0 runs the suite in this process.
# The 20 slowest tests are listed at the end (where the suite's time goes).
JOBS ?= auto
PYTEST := $(BIN)/python -m pytest -n $(JOBS) --dist loadgroup --durations=20

# torchvision and timm, in a second environment: PyPI's torchvision for the CPU torch above
# is a CUDA build whose extension does not load beside it, so .venv-vision takes a matching
# pair — on a CPU machine the one this project's machines keep on disk for the architecture
# (x86_64: torch 2.14.1 + torchvision 0.29.1, a CUDA build of ~5.5 GB that runs on the CPU;
# aarch64: 2.9.1 + 0.24.1, a CPU build) — and runs the tests on their models, where a skip
# is an error. Override with VISION_SPEC.
VISION_VENV ?= .venv-vision
ifeq ($(HAVE_GPU),1)
VISION_SPEC ?= torch torchvision
else ifeq ($(shell uname -m),aarch64)
VISION_SPEC ?= torch==2.9.1 torchvision==0.24.1
else
VISION_SPEC ?= torch==2.14.1 torchvision==0.29.1
endif
VISION_TESTS := tests/measure/test_timm_torchvision.py tests/measure/test_real_models.py

.PHONY: demo test test-all test-vision lint bench clean venv

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]"
	# the outside μP oracle for the cross-checks; its metadata pulls torchvision and a CUDA
	# torch, and it needs neither, so it goes in without its dependencies
	$(BIN)/python -m pip install --quiet --no-deps "mup==$(MUP_VERSION)"
ifneq ($(HAVE_GPU),1)
	# no extra may swap the CPU torch for a CUDA build (timm, for one, pulls torchvision
	# and a newer torch): fail here, naming it, rather than ship a multi-GB install
	@$(BIN)/python -c "import torch, sys; v = torch.__version__; sys.exit(0 if v.split('+')[0] == '$(TORCH_SPEC)'.split('==')[-1] or '==' not in '$(TORCH_SPEC)' else 'an extra replaced torch $(TORCH_SPEC) with ' + v)"
endif
	@touch $@

demo: venv
	# exit 1 is the study's verdict (wide-nets fails on purpose: a finding), not an error
	$(BIN)/learnmech run wide-nets --scale $(SCALE) || [ $$? -eq 1 ]

test: venv
	$(PYTEST)

test-all: venv
	$(PYTEST) -m "slow or not slow"

$(VISION_VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VISION_VENV)
	$(VISION_VENV)/bin/python -m pip install --quiet $(VISION_SPEC)
	$(VISION_VENV)/bin/python -m pip install --quiet timm -e ".[dev,hf,integrations]"
	@touch $@

test-vision: $(VISION_VENV)/.installed
	LEARNMECH_REQUIRE_VISION=1 $(VISION_VENV)/bin/python -m pytest -n 0 $(VISION_TESTS)

lint: venv
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

bench: venv
	$(BIN)/python benchmarks/bench_kernels.py
	$(BIN)/python benchmarks/bench_ensemble.py
	$(BIN)/python benchmarks/bench_eigenlearning.py
	$(BIN)/python benchmarks/bench_scaling_fit.py
	$(BIN)/python benchmarks/bench_similarity.py
	$(BIN)/python benchmarks/bench_hessian.py
	$(BIN)/python benchmarks/bench_sharpness_probe.py
	$(BIN)/python benchmarks/bench_parametrize.py

clean:
	rm -rf $(VENV) $(VISION_VENV) .pytest_cache .ruff_cache
