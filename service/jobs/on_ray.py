"""A job's rows scored on Ray Data (``SENTIMENT_JOBS_ENGINE=ray``): the same actors as ``python -m
sentiment_bulk --engine ray`` (``model_runtime.batch.BatchScorer``, each loading the model directory once),
joining the cluster ``RAY_ADDRESS`` names or starting a local Ray. On a cluster, the model directory must be
readable at the same path on every node (as for sentiment_bulk); the rows travel with the job, from the
job store. Needs the ``ray`` extra."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

BATCH_ROWS = 64  # rows per actor call
_started = threading.Lock()


def _ray() -> Any:
    import ray

    with _started:
        if not ray.is_initialized():
            ray.init(
                address=os.environ.get("RAY_ADDRESS"),
                include_dashboard=False,
                log_to_driver=False,
                ignore_reinit_error=True,
            )
    return ray


def scored_in_order(
    texts: list[tuple[int, str]], model_dir: Path, task: str, max_sentences: int, mixed_threshold: float
) -> Iterator[tuple[int, dict[str, Any]]]:
    """(index, result) for each (index, text), in the order given, as Ray Data hands them back."""
    if not texts:
        return
    ray = _ray()
    from model_runtime.batch import BatchScorer

    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True
    actors = max(1, int(ray.cluster_resources().get("CPU", 1)))
    items = [{"index": index, "text": text} for index, text in texts]
    scored = ray.data.from_items(items).map_batches(
        BatchScorer,
        fn_constructor_kwargs={
            "model_dir": str(model_dir),
            "task": task,
            "max_sentences": max_sentences,
            "mixed_threshold": mixed_threshold,
        },
        batch_size=BATCH_ROWS,
        batch_format="numpy",
        concurrency=actors,
        num_cpus=1,
    )
    for batch in scored.iter_batches(batch_size=BATCH_ROWS, batch_format="numpy"):
        for index, result in zip(np.asarray(batch["index"]).tolist(), batch["result"], strict=True):
            yield int(index), json.loads(str(result))
