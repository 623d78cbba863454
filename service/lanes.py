"""The engine's lanes and their budgets: /predict's queue, /analyze's document lane, the jobs' spare-capacity
lane (``Lane``: how the batcher fills batches from each), the explanation lane's budget, and the most one
request may cost on each.
Every budget follows the measured rate (``RateMeter``), so that Retry-After and the work a lane may hold are
what the hardware really achieves."""

from __future__ import annotations

from dataclasses import dataclass

from service.budget import CostBudget, RateMeter
from service.config import Settings

# /analyze's lane: a document's sentences go in slices of DOCUMENT_SLICE texts, at most DOCUMENT_PER_BATCH of
# them in one batch, and DOCUMENT_SHARE of a batch is theirs while they wait (the rest goes to /predict first).
# A slice is also at most DOCUMENT_SLICE_TOKENS (the estimate admission uses): a batch that holds one stays short;
# one batch holding document slices runs at a time, so that the other workers serve /predict. These bounds hold
# while /predict has work (or had some in the batcher's LIVE_WINDOW_S); alone, documents use every worker in
# batches of up to DOCUMENT_ALONE_TOKENS, as jobs do when idle (a /predict that comes then waits one such batch).
DOCUMENT_SLICE, DOCUMENT_PER_BATCH, DOCUMENT_SHARE, DOCUMENT_SLICE_TOKENS = 32, 32, 0.25, 1024.0
DOCUMENT_ALONE_TOKENS = 8192.0
# Jobs' lane: slices of JOB_SLICE texts and JOB_SLICE_TOKENS, a batch of its own only when no live request waits
# (spare capacity), and on one worker at a time while live requests keep coming (the batcher's LIVE_WINDOW_S).
JOB_SLICE, JOB_SLICE_TOKENS = 32, 8192.0


@dataclass(frozen=True)
class Lane:
    """A queue beside the default one: its budget and how its requests share the batches."""

    budget: CostBudget
    slice_texts: int  # a request is cut into slices of at most this many texts, queued one behind the other
    per_batch: int  # at most this many of its texts in one batch
    slice_cost: float = float("inf")  # slices and a batch's share of at most this cost (tokens; one text at least)
    # (the batch's share, per_batch and max_running hold while the first lane is busy: ``Batcher._contended``)
    alone_cost: float = float("inf")  # a batch's share while the first lane is idle
    max_running: int = 0  # at most this many batches holding its texts run at once (0: no limit)
    share: float = 0.0  # of a batch's texts owed to this lane while it has work waiting (0: whatever is left)
    spare_only: bool = False  # runs only when the lanes before it have nothing queued, and while they have had
    # work in the last LIVE_WINDOW_S only when no batch is running at all (every worker when they are idle)


def batch_lanes(s: Settings, rate: RateMeter) -> tuple[CostBudget, dict[str, Lane]]:
    """/predict's budget (the batcher's default lane) and the lanes beside it."""
    queue = CostBudget(lambda: rate.value * s.max_queue_seconds, lambda: rate.value, s.max_queue)
    # Documents are worked off at their share of the rate while /predict is busy: the wait they are told
    # (Retry-After) and the work they may queue follow from it.
    documents = CostBudget(  # a full /analyze (its sentences, then each document whole) always fits
        lambda: rate.value * DOCUMENT_SHARE * s.max_queue_seconds,
        lambda: rate.value * DOCUMENT_SHARE,
        max(s.max_queue, s.max_sentences + s.max_documents),
    )
    jobs = CostBudget(lambda: float("inf"), lambda: rate.value, s.max_queue)  # the job runner bounds its own work
    lanes = {
        "analyze": Lane(
            documents,
            slice_texts=DOCUMENT_SLICE,
            per_batch=DOCUMENT_PER_BATCH,
            share=DOCUMENT_SHARE,
            slice_cost=DOCUMENT_SLICE_TOKENS,
            max_running=1,
            alone_cost=DOCUMENT_ALONE_TOKENS,
        ),
        "jobs": Lane(jobs, JOB_SLICE, JOB_SLICE, JOB_SLICE_TOKENS, spare_only=True, alone_cost=JOB_SLICE_TOKENS),
    }
    return queue, lanes


def explain_budget(s: Settings, lane_rate: RateMeter) -> CostBudget:
    """The explanation lane measures its own rate (it shares the CPU with /predict): its budget, its
    Retry-After (never beyond the budget) and each explanation's deadline follow what it really achieves."""
    return CostBudget(
        lambda: lane_rate.value * s.max_explain_queue_seconds,
        lambda: lane_rate.value,
        s.max_queue,
        s.max_explain_queue_seconds,
    )


def most_per_request(s: Settings, max_tokens: int) -> dict[str, float]:
    """The most one request can cost on each lane: what an estimate from its body's size is capped at."""
    return {
        "predict": s.max_client_batch * (max_tokens + 1),
        "analyze": (s.max_sentences + s.max_documents) * (max_tokens + 1),
        "explain": s.max_explain_texts * (max_tokens + 1) * (s.max_explain_tokens + 1),
    }
