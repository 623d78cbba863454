.PHONY: setup serve test train bench lint

setup:            ## create .venv with every extra (training, serving, tests)
	python3 -m venv .venv && .venv/bin/pip install -e ".[serve,cpu,train,dev]"

serve:            ## serve the shipped model on http://127.0.0.1:8000
	./scripts/serve.sh

test:             ## the whole test suite (what CI runs)
	./scripts/test.sh

train:            ## retrain, export, verify and evaluate the shipped model
	.venv/bin/python -m training all --run-dir runs/imdb-bilstm --model-dir models/imdb-bilstm

lint:
	.venv/bin/ruff check training service tests bench
