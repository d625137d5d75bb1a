# Two commands a user needs: `make demo` and `make test`. Both create .venv on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow lint bench clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/rdu-compile examples/mlp/model.py
	$(BIN)/rdu-compile examples/mlp/model.py --inference --pef-name mlp-inference
	$(BIN)/rdu-run examples/mlp/model.py --pef out/mlp/mlp.pef --test
	$(BIN)/rdu-run examples/mlp/model.py --pef out/mlp/mlp.pef --num-epochs 4 --ckpt-dir out/mlp/checkpoints
	$(BIN)/rdu-run examples/mlp/model.py --pef out/mlp-inference/mlp-inference.pef --inference \
		--init-ckpt-path out/mlp/checkpoints/last.pt --results-dir out/mlp/results

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/pyright dialects runtime compiler
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/lit -sv test/
	$(BIN)/pytest -q -n auto --dist worksteal

# The runs marked slow (bench/speed.py --quick end to end), left out of `make test`.
test-slow: $(STAMP)
	$(BIN)/pytest -q -m slow

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pyright

# Every bench/*.py script; each prints its table and merges its own key into bench/results.json.
bench: $(STAMP)
	@set -e; for script in bench/*.py; do \
		echo "== $$script"; PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python $$script; \
	done

clean:
	rm -rf out
