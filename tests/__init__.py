"""The test suite. Paths its helpers share live here, importable without any installed package (the Docker
helper, tests/docker_image.py, runs on the system's Python before .venv exists)."""

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# What the suite makes once and reuses while its inputs are unchanged (tiny models, corpora, Docker images)
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "sentiment-service"
