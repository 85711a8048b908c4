# ssad: `make demo` runs the whole chain on the embedded synthetic default; `make test` runs the tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
MACHINE ?= all
DATA ?= runs/synth-default
RUN ?= runs/$(MACHINE)
# configs/MACHINE.yaml where there is one (all, demo, tiny, ...), else one machine type: configs/one_type.yaml
CONFIG = $(if $(wildcard configs/$(MACHINE).yaml),configs/$(MACHINE).yaml,configs/one_type.yaml --data.machine_types '[$(MACHINE)]')
ARGS ?=
SEED ?= 1

.PHONY: setup broker console-tools demo test test-fast train finetune pretrain eval bench compare quality field-load fuzz lint clean help

help:
	@echo "make setup                create .venv, install ssad and its tools (and when root: the MQTT broker mosquitto,"
	@echo "                          chromium, chromium-driver and postgresql for the console's tests)"
	@echo "make demo                 generate the synthetic default set, train, evaluate, print the AUC/pAUC table"
	@echo "make test                 run the test suite"
	@echo "make test-fast            run the tests not marked slow (no training runs)"
	@echo "make train MACHINE=fan    train configs/one_type.yaml on fan (MACHINE=all: configs/all.yaml) on DATA; ARGS='--trainer.max_epochs 5'"
	@echo "make finetune MACHINE=fan start from runs/all and fine-tune on one machine type"
	@echo "make pretrain             train the shipped encoder on a large synthetic corpus (configs/pretrain.yaml; resumes"
	@echo "                          an interrupted run) and publish its weights into ssad/pretrained/"
	@echo "make eval MACHINE=fan     evaluate runs/MACHINE on DATA into runs/MACHINE/eval"
	@echo "make compare [DATA=ROOT]  train and evaluate every detector, write experiments/results/compare.csv"
	@echo "make bench                speed and memory, beside the DCASE baseline's librosa recipe (experiments/results/bench.md)"
	@echo "make field-load           machines ssad monitor holds in real time over MQTT, and broker/monitor faults (ARGS=--quick: ~2 min)"
	@echo "make quality [DATA=ROOT]  every detector on the synthetic default (seeds 1-3) and \$$SSAD_REAL_DEV sets, or on ROOT"
	@echo "make cold-start           the pretrained encoder on machines it never heard, enrolled from 5/10/20/all clips (experiments/results/cold_start.md)"
	@echo "make fuzz                 hostile WAV files, MQTT payloads, damaged detector folders: 100,000 cases each, and the"
	@echo "                          broker's refusals (experiments/results/security.md; ARGS='--cases 2000 --jobs 3')"
	@echo "make lint                 ruff over ssad, tests and experiments"
	@echo "make clean                remove runs/ (every run, the demo's included) and unfinished result files"
	@echo "make help                 this list"

setup: $(STAMP) broker console-tools

# The MQTT broker `ssad monitor --source mqtt://...` and its tests talk to: the Debian package mosquitto,
# installed with apt when we are root; elsewhere setup says how and goes on.
broker:
	@PATH="$$PATH:/usr/sbin:/usr/local/sbin"; command -v mosquitto >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing the MQTT broker mosquitto with apt"; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto >/dev/null 2>&1 \
	    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto >/dev/null; } \
	    || echo "could not install mosquitto; see README, Live monitoring"; \
	  else \
	    echo "no MQTT broker: install mosquitto for ssad monitor over MQTT (Debian/Ubuntu: sudo apt-get install mosquitto;" \
	      "macOS: brew install mosquitto; elsewhere: the Eclipse Mosquitto download page)"; \
	  fi; }

# What `ssad serve`'s tests and its acceptance check drive: headless Chromium with its driver (selenium), and a
# PostgreSQL server the history tests start a throwaway cluster of; Debian packages, installed with apt as root.
CONSOLE_PACKAGES = $(if $(shell command -v chromium),,chromium) \
	$(if $(shell command -v chromedriver),,chromium-driver) \
	$(if $(wildcard /usr/lib/postgresql/*/bin/initdb),,postgresql)
console-tools:
	@missing="$(strip $(CONSOLE_PACKAGES))"; [ -z "$$missing" ] || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing $$missing with apt (the console's browser tests and PostgreSQL history tests)"; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null 2>&1 \
	    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; } \
	    || echo "could not install $$missing; see README, Operator's console"; \
	  else \
	    echo "missing $$missing: the console's browser tests and the PostgreSQL history tests skip without them" \
	      "(Debian/Ubuntu: sudo apt-get install chromium chromium-driver postgresql; macOS: brew install" \
	      "chromium chromedriver postgresql)"; \
	  fi; }

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev,console]'
	@touch $(STAMP)

$(DATA)/.done: | setup
	$(BIN)/ssad synth --out $(DATA) --preset default --seed $(SEED)
	@touch $@

demo: setup
	rm -rf runs/demo
	$(BIN)/ssad synth --out runs/demo/data --preset default --seed $(SEED)
	$(BIN)/ssad fit --config configs/demo.yaml --data.root runs/demo/data --trainer.default_root_dir runs/demo/train
	$(BIN)/ssad evaluate --run runs/demo/train --data runs/demo/data --out runs/demo/eval
	@cat runs/demo/eval/results.md

test: setup
	WANDB_MODE=disabled $(BIN)/pytest -q

test-fast: setup
	WANDB_MODE=disabled $(BIN)/pytest -q -m "not slow"

train: setup $(if $(filter runs/synth-default,$(DATA)),$(DATA)/.done)
	$(BIN)/ssad fit --config $(CONFIG) --data.root $(DATA) --trainer.default_root_dir $(RUN) $(ARGS)

finetune: setup $(if $(filter runs/synth-default,$(DATA)),$(DATA)/.done)
	$(BIN)/ssad fit --config configs/finetune.yaml --data.root $(DATA) --data.machine_types '[$(MACHINE)]' \
		--model.init_from runs/all --trainer.default_root_dir runs/$(MACHINE)-finetuned $(ARGS)

# Resumes runs/pretrain when it holds a checkpoint; PRETRAIN_ARGS go to `ssad fit` (e.g. --trainer.max_epochs 2).
PRETRAIN_RUN ?= runs/pretrain
PRETRAIN_ARGS ?=
pretrain: setup
	@start=$$(date +%s); \
	$(BIN)/ssad fit --config configs/pretrain.yaml --trainer.default_root_dir $(PRETRAIN_RUN) \
		$(if $(wildcard $(PRETRAIN_RUN)/checkpoints/last.ckpt),--ckpt_path last) $(PRETRAIN_ARGS) && \
	$(BIN)/ssad pretrained publish $(PRETRAIN_RUN) --config configs/pretrain.yaml --training-seconds $$(( $$(date +%s) - start ))

eval: setup $(if $(filter runs/synth-default,$(DATA)),$(DATA)/.done)
	$(BIN)/ssad evaluate --run $(RUN) --data $(DATA) --out $(RUN)/eval

compare: setup
	$(BIN)/python experiments/compare.py $(if $(filter-out runs/synth-default,$(DATA)),--data $(DATA))

$(VENV)/.bench-installed: $(STAMP)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev,console,bench]'
	@touch $@

bench: setup $(VENV)/.bench-installed
	$(BIN)/python experiments/bench.py $(ARGS)

quality: setup
	$(BIN)/python experiments/quality.py $(if $(filter-out runs/synth-default,$(DATA)),--data $(DATA)) $(ARGS)

.PHONY: cold-start
cold-start: setup
	$(BIN)/python experiments/cold_start.py $(ARGS)

field-load: setup
	$(BIN)/python experiments/field_load.py $(ARGS)

fuzz: setup
	$(BIN)/python experiments/fuzz.py $(ARGS)

lint: setup
	$(BIN)/ruff check ssad tests experiments

clean:
	rm -rf runs experiments/results/*.tmp
