.PHONY: setup serve test train bench lint

setup:            ## create .venv with every extra (training, serving, tests)
	python3 -m venv .venv && .venv/bin/pip install -e ".[serve,cpu,train,dev,client,ray]"

serve:            ## serve the shipped model on http://127.0.0.1:8000
	./scripts/serve.sh

test:             ## the whole test suite (what CI runs)
	./scripts/test.sh

train:            ## retrain, export, verify and evaluate the shipped model
	.venv/bin/python -m training all

bench:            ## ceiling + service over HTTP + PyTorch baseline -> bench/results/latest.{json,md,png}
	command -v wrk >/dev/null || apt-get install -y --no-install-recommends wrk
	.venv/bin/python -m bench.run

lint:            ## the quality gates the test command runs first
	.venv/bin/ruff check model_runtime service training sentiment_client bench tests
	.venv/bin/ruff format --check model_runtime service training sentiment_client bench tests
	.venv/bin/mypy
	.venv/bin/lint-imports
