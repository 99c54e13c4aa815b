# Two commands from a fresh clone: `make train` and `make test`.
# Both create .venv on first use, install the exact versions of requirements.lock, then zoo itself (editable,
# without resolving anything again), and reinstall only when pyproject.toml or the lock changes.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
LOCK := requirements.lock

.PHONY: train test lint lock clean

$(STAMP): pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r $(LOCK)
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	$(PY) -m pip check
	touch $(STAMP)

# Train LeNet-5 on the embedded MNIST digits, then evaluate the best checkpoint it wrote.
train: $(STAMP)
	$(PY) train.py
	$(PY) eval.py ckpt_path=outputs/latest/checkpoints/best.ckpt

# One intra-op thread per test worker: two workers fill two cores without oversubscribing them.
test: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) -m pytest -n 2 --durations=25

lint: $(STAMP)
	$(PY) -m ruff check .

# Rewrite the lock from what .venv holds now (after `$(PY) -m pip install -U -e ".[all,dev]"`, say).
lock:
	{ sed -n '/^#/p' $(LOCK); $(PY) -m pip freeze --all --exclude-editable --exclude pip --exclude zoo-models; } > $(LOCK).new
	mv $(LOCK).new $(LOCK)

clean:
	rm -rf $(VENV) outputs multirun
