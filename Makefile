# Two commands from a fresh clone: `make train` and `make test`.
# Both create .venv on first use and reinstall only when pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: train test lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e ".[dev,sweeps,export]"
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

clean:
	rm -rf $(VENV) outputs multirun
