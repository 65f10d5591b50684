# `make test` and `make demo` do their own set-up from a fresh clone.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_DIR ?= workdirs/synthetic
STAGE1_DIR ?= workdirs/synthetic_img2img

export CUDA_VISIBLE_DEVICES ?=
export TF_CPP_MIN_LOG_LEVEL ?= 2
# XLA's persistent compilation cache, shared by clones on this machine (safe: keyed by program,
# JAX version and flags); the suite compiles the same tiny models many times.
export JAX_COMPILATION_CACHE_DIR ?= $(HOME)/.cache/seg2vid_jax/jax

.PHONY: install test demo clean

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

# Two workers (one file each at a time): most tests compile and run on one core.
test: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadfile --durations=15

# Trains both stages of the CPU demo (stage 2 11-14 minutes on 2 cores), evaluates them, and
# generates videos from a label map and first frame the model has never seen, then from the
# label map alone (stage 1 draws the first frame), 24 frames long; prints the results table.
demo: $(STAMP)
	$(PY) -m seg2vid_jax.main --config=configs/synthetic.py --workdir=$(DEMO_DIR)
	$(PY) -m seg2vid_jax.main --config=configs/synthetic_img2img.py --workdir=$(STAGE1_DIR)
	$(PY) -m seg2vid_jax.data.synthetic --output_dir=$(DEMO_DIR)/inputs
	$(PY) -m seg2vid_jax.main --config=configs/synthetic.py --workdir=$(DEMO_DIR) \
	    --mode=generate --label_map=$(DEMO_DIR)/inputs/label_map.png \
	    --first_frame=$(DEMO_DIR)/inputs/first_frame.png --num_samples=4
	$(PY) -m seg2vid_jax.main --config=configs/synthetic.py --workdir=$(DEMO_DIR) \
	    --mode=generate --label_map=$(DEMO_DIR)/inputs/label_map.png --num_samples=4 \
	    --num_frames=24 --output_dir=$(DEMO_DIR)/generated_from_label_map \
	    --config.img2img_workdir=$(STAGE1_DIR) \
	    --config.img2img_config=configs/synthetic_img2img.py
	$(PY) -m seg2vid_jax.report --workdir=$(DEMO_DIR)
	@echo "Sample sheets: $(DEMO_DIR)/samples  $(STAGE1_DIR)/samples"
	@echo "Generated:     $(DEMO_DIR)/generated  $(DEMO_DIR)/generated_from_label_map"
	@echo "TensorBoard:   $(VENV)/bin/tensorboard --logdir=workdirs"

clean:
	rm -rf $(VENV) .cache
