# `make demo`: set up .venv (if absent, with the dashboard extra) and run the main job on the
# shipped default spec.
# `make test`: set up .venv (if absent) and run the test suite (the fast tests, ~21 min on 2 cores).
# `make test-slow`: the long numerical checks marked `slow` (~10.5 min on 2 cores; CI runs both).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SPEC ?= specs/vp_8gaussians.yaml

.PHONY: demo test test-slow lint clean

$(BIN)/diffsde: pyproject.toml plugins/cdpm/pyproject.toml examples/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test,dashboard]' -e plugins/cdpm -e examples
	touch $@

demo: $(BIN)/diffsde
	$(BIN)/diffsde validate $(SPEC)
	$(BIN)/diffsde run $(SPEC)
	$(BIN)/diffsde runs

test: $(BIN)/diffsde
	$(BIN)/python -m pytest -q

test-slow: $(BIN)/diffsde
	$(BIN)/python -m pytest -q -m slow

lint: $(BIN)/diffsde
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
