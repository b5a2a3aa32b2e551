# Two entry points: `make demo` (main job) and `make test` (creates .venv if missing, installs, runs pytest).
VENV ?= .venv
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE := 1
export HF_HUB_DISABLE_TELEMETRY := 1
export GRADIO_ANALYTICS_ENABLED := False
export TOKENIZERS_PARALLELISM := false

.PHONY: install test demo bench clean space space-bundle reader reader-capo reader-positions

$(VENV)/.installed: setup.cfg pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	# torch first and pinned: an unpinned torch would pull a multi-GB build from the index
	$(PY) -m pip install -q --disable-pip-version-check torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q --disable-pip-version-check -e ".[dev]"
	touch $@

install: $(VENV)/.installed

# system packages the tests need (Chromium for the headless-browser test; skipped with a reason if apt fails)
test: install
	bash scripts/install_test_deps.sh
	$(PY) -m pytest -q tests

demo: install
	$(PY) -m resadapt_hf.demo --out demo_out

bench: install
	$(PY) benchmarks/processor_speed.py

# retrain the shipped tiny reader (about 40 min on 2 cores; only when the reader task changes)
reader: install
	$(PY) scripts/train_reader.py

# CAPO through the real path against the tiny reader: 3 seeds + ablation, evaluated at matched budgets
reader-capo: install
	$(PY) benchmarks/reader_capo.py

# does the reader use the per-chunk temporal positions? fine-tunes a copy on "which quarter?" (about 25 min)
reader-positions: install
	$(PY) benchmarks/reader_positions.py

# the Gradio Space locally: the trained tiny reader + its learned allocator, offline (http://127.0.0.1:7860)
space: install
	$(PY) space/app.py

# a self-contained Space folder (app, requirements, card, the package copied in), ready to upload
SPACE_OUT ?= build/space
space-bundle:
	rm -rf $(SPACE_OUT) && mkdir -p $(SPACE_OUT)
	cp space/app.py space/answerers.py space/examples.py space/views.py space/requirements.txt space/README.md $(SPACE_OUT)/
	cp -r resadapt_hf $(SPACE_OUT)/resadapt_hf
	for d in processing modeling hub_card; do rm -rf $(SPACE_OUT)/resadapt_hf/$$d; cp -rL $$d $(SPACE_OUT)/resadapt_hf/$$d; done
	find $(SPACE_OUT) -name __pycache__ -prune -exec rm -rf {} +
	@echo "Space folder ready: $(SPACE_OUT) (upload: hf upload <user>/<space> $(SPACE_OUT) . --repo-type space)"

clean:
	rm -rf demo_out .pytest_cache
