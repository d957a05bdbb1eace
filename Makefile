# Every target creates .venv if needed and installs the project with its test extras.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: demo test test-slow bench clean chromium obd

$(PY):
	python3 -m venv $(VENV)

# pip's output goes to .venv/install.log and is shown only when an install fails.
$(STAMP): pyproject.toml | $(PY)
	@echo "installing into $(VENV) (log: $(VENV)/install.log)"
	@$(PY) -m pip install --upgrade pip > $(VENV)/install.log 2>&1 || (cat $(VENV)/install.log; exit 1)
	@$(PY) -m pip install torch==2.13.0 >> $(VENV)/install.log 2>&1 || (cat $(VENV)/install.log; exit 1)
	@$(PY) -m pip install -e '.[test]' >> $(VENV)/install.log 2>&1 || (cat $(VENV)/install.log; exit 1)
	@touch $(STAMP)

# obp 0.5.7's source distribution holds the Open Bandit Dataset sample and BTS's prior (tests/abtest/test_obd.py,
# bench/obd.py): fetched once from the package index (obp itself is never installed here: its pins need Python < 3.11).
OBP_SDIST := $(VENV)/obp-sdist
export OBP_SDIST_DIR := $(abspath $(OBP_SDIST))/obp-0.5.7
$(OBP_SDIST)/.ready: | $(PY)
	@echo "fetching obp 0.5.7's source distribution (the Open Bandit Dataset sample) into $(OBP_SDIST)"
	@$(PY) -m pip download --no-deps --ignore-requires-python obp==0.5.7 -d $(OBP_SDIST) > $(VENV)/obp-sdist.log 2>&1 \
	  || (cat $(VENV)/obp-sdist.log; exit 1)
	@tar xzf $(OBP_SDIST)/obp-0.5.7.tar.gz -C $(OBP_SDIST)
	@touch $@

obd: $(OBP_SDIST)/.ready

# The HTML report's browser test renders it in Debian's chromium: installed here when missing.
# Without apt-get (or when it fails) one line says so, and that test skips with the reason.
chromium: | $(PY)
	@command -v chromium >/dev/null 2>&1 || { \
	  if ! command -v apt-get >/dev/null 2>&1; then \
	    echo "chromium: no apt-get here, not installed; the HTML browser test will skip"; \
	  else \
	    echo "installing chromium with apt-get (log: $(VENV)/apt.log)"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) > $(VENV)/apt.log 2>&1 \
	      || echo "chromium: apt-get install failed (see $(VENV)/apt.log); the HTML browser test will skip"; \
	  fi; }

demo: $(STAMP)
	$(VENV)/bin/lsvcr demo --out runs/demo --overwrite
	$(PY) bench/update_readme.py --demo runs/demo

# one pytest-xdist worker per core; a test file stays on one worker (its module fixtures are built once)
test: $(STAMP) chromium obd
	$(PY) -m pytest -n auto --dist loadfile

test-slow: $(STAMP) obd
	$(PY) -m pytest -m slow

bench: $(STAMP) obd
	$(PY) bench/run_all.py
	$(PY) bench/update_readme.py

clean:
	rm -rf $(VENV) runs
