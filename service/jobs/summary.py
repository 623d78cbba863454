"""What a finished job's results amount to, for people to look at (the page draws it): how many rows per label
and per language, how sure the model was (a histogram of the winning probability), the most negative and the
most positive rows (of those labelled so) with the start of their text, the rows that failed and, for
documents, the share read as mixed. Made once, when the job finishes, from its committed results and its
upload."""

from __future__ import annotations

import heapq
import json
from collections import Counter
from typing import Any

from service.jobs.files import Layout, rows
from service.jobs.store import Job, JobStore

TOP = 5  # rows in each of the most negative and most positive lists
BINS = 10  # confidence histogram bins over [0, 1]
SNIPPET = 200  # characters of a row's text shown in the summary


def summarise(store: JobStore, job: Job, data: bytes, layout: Layout) -> dict[str, Any]:
    labels: Counter[str] = Counter()
    languages: Counter[str] = Counter()
    confidence = [0] * BINS
    extremes: dict[str, list[tuple[float, int]]] = {"negative": [], "positive": []}
    failed = 0
    for block in store.results(job.id):
        for line in block.splitlines():
            result = json.loads(line)
            if "error" in result:
                failed += 1
                continue
            labels[result["label"]] += 1
            language = result.get("language") or {}
            languages[language.get("code") or "unknown"] += 1
            probabilities: dict[str, float] = result["probabilities"]
            confidence[min(BINS - 1, int(max(probabilities.values()) * BINS))] += 1
            for side, top in extremes.items():
                if result["label"] == side:
                    heapq.heappush(top, (probabilities[side], result["row"]))
                    if len(top) > TOP:
                        heapq.heappop(top)
    wanted = {row for top in extremes.values() for _, row in top}
    texts = {row.index: (row.text or "", row.id) for row in rows(data, layout) if row.index in wanted}
    scored = sum(labels.values())
    summary: dict[str, Any] = {
        "rows": scored + failed,
        "scored": scored,
        "failed": failed,
        "labels": dict(labels.most_common()),
        "languages": dict(languages.most_common()),
        "confidence": {"bins": [round(i / BINS, 2) for i in range(BINS + 1)], "counts": confidence},
    }
    for side, top in extremes.items():
        summary[f"most_{side}"] = [
            {"row": row, "id": texts[row][1], "probability": round(p, 4), "text": texts[row][0][:SNIPPET]}
            for p, row in sorted(top, reverse=True)
        ]
    if job.task == "analyze":
        summary["mixed_share"] = labels.get("mixed", 0) / scored if scored else 0.0
    return summary
