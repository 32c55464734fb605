# Two entry points for a fresh machine: `make demo` and `make test`.
# Both create .venv/ in the repository root; torch is installed first from TORCH_SPEC
# (the CPU wheel on these machines by default), then the package with its dev extras.
PYTHON ?= python3
TORCH_SPEC ?= torch==2.13.0
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.grepsnet-installed

.PHONY: venv test test-slow demo lint bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

lint: venv
	$(BIN)/ruff check grepsnet_sciml datasets solvers tests examples benchmarks

test: venv lint
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -m "not slow"

test-slow: venv
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -m slow

demo: venv
	OMP_NUM_THREADS=1 $(BIN)/grepsnet demo

# The CPU benchmarks of the core, the generators and the solver stack (tables + JSON in
# benchmarks/results/); `grepsnet bench ns|nbody` run the model comparisons (long).
bench: venv
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/synthetic.py --size quick
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/generate_ns.py
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/generate_particles.py --threads 2
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/solvers.py

clean:
	rm -rf $(VENV) build dist *.egg-info runs
