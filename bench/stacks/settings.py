"""The knobs every stack's launcher reads from the environment (set by ``bench.compare``)."""

from __future__ import annotations

import os

PORT = int(os.environ.get("BENCH_PORT", "8000"))
WORKERS = int(os.environ.get("BENCH_WORKERS", "1"))  # model worker processes (replicas)
MAX_BATCH = int(os.environ.get("BENCH_MAX_BATCH", "64"))  # requests per dynamic batch (texts for BentoML)
MAX_WAIT_MS = float(os.environ.get("BENCH_MAX_WAIT_MS", "10"))  # longest a batch waits to fill
TIMEOUT_S = 60.0  # far above any latency the load reaches: no stack refuses or times out for this reason
