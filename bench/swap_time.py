"""How long a model swap takes, idle and under load, with 1 and 2 processes (docs/operations.md).

    python -m bench.swap_time [--ref 4827689] [--model-dir models/sentiment-bilstm-3.0.0]

For each case a real server starts on ``--model-dir``; ``POST /admin/model`` then asks for a copy of it whose
card says another version. A prober opens a new connection every 50 ms (so every process is asked) and
records which version answered; under load 16 clients post /predict and 2 post /explain meanwhile. Reported:
the swap's answer and its time, the time until the last answer from the old version (``converged_s``: every
process serves the new one; ``null`` when old answers still came at the end), and the requests that failed.
With ``--ref`` the same cases run on this service as it was at that commit (a git worktree), in the same run.
Writes bench/results/swap-time.{json,md}.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from bench.compare import at_commit
from bench.run import RESULTS, ROOT, free_port, start, stop

KEY = "bench-admin-key"
NEW_VERSION = "0.0.0-swapped"
PREDICT_BODY = {"texts": ["A fine film.", "Dull and far too long.", "The meeting is at 3 pm.", "I loved it."] * 2}
EXPLAIN_BODY = {"texts": [" ".join(["the acting was wonderful but the ending was awful"] * 20)] * 4}
QUIET_S = 8  # the swap has converged when only the new version answered this long
WATCH_S = 45  # after the swap's answer, at most this long
GIVE_UP_S = 180


def swapped_copy(model_dir: Path, folder: Path) -> Path:
    """``model_dir`` copied with another version in its card: the swap's target."""
    target = folder / "swapped"
    shutil.copytree(model_dir, target)
    card = json.loads((target / "model_card.json").read_text())
    card["version"] = NEW_VERSION
    (target / "model_card.json").write_text(json.dumps(card))
    return target


@contextlib.contextmanager
def server(root: Path, model_dir: Path, processes: int) -> Iterator[str]:
    port = free_port()
    env = {
        "SENTIMENT_MODEL_DIR": str(model_dir),
        "SENTIMENT_PORT": str(port),
        "SENTIMENT_PROCESSES": str(processes),
        "SENTIMENT_ADMIN_KEY": KEY,
        "SENTIMENT_LOG_LEVEL": "warning",
    }
    process = start([sys.executable, "-m", "service"], env, port, cwd=root)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(process)


def one_case(base: str, target: Path, loaded: bool) -> dict[str, Any]:
    """Swap to ``target`` while probing (and, when ``loaded``, loading) the server."""
    finished = threading.Event()
    seen: list[tuple[float, str]] = []  # (time the answer came, version)
    failed: Counter[str] = Counter()

    def probe() -> None:
        while not finished.is_set():
            try:
                answer = httpx.post(f"{base}/predict", json={"text": "fine"}, headers={"Connection": "close"})
            except httpx.TransportError as exc:
                failed[f"probe {type(exc).__name__}"] += 1
                continue
            if answer.status_code == 200:
                seen.append((time.monotonic(), answer.json()["model"]["version"]))
            else:
                failed[f"probe {answer.status_code}"] += 1
            time.sleep(0.05)

    def load(path: str, body: dict[str, Any]) -> None:
        with httpx.Client(base_url=base, timeout=120) as http:
            while not finished.is_set():
                try:
                    answer = http.post(path, json=body)
                except httpx.TransportError as exc:
                    failed[f"{path} {type(exc).__name__}"] += 1
                    continue
                if answer.status_code == 200 and path == "/predict":
                    seen.append((time.monotonic(), answer.json()["model"]["version"]))
                elif answer.status_code != 200:
                    failed[f"{path} {answer.status_code}"] += 1

    threads = [threading.Thread(target=probe)]
    if loaded:
        threads += [threading.Thread(target=load, args=("/predict", PREDICT_BODY)) for _ in range(16)]
        threads += [threading.Thread(target=load, args=("/explain", EXPLAIN_BODY)) for _ in range(2)]
    for t in threads:
        t.start()
    time.sleep(3)  # the load reaches its steady state first
    started = time.monotonic()
    answer = httpx.post(
        f"{base}/admin/model",
        json={"model_dir": str(target)},
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=GIVE_UP_S,
    )
    answered = time.monotonic() - started
    # Watch until only the new version has answered for QUIET_S (or WATCH_S after the answer has passed).
    end = time.monotonic() + WATCH_S
    while time.monotonic() < end:
        time.sleep(0.25)
        now = time.monotonic()
        recent = [v for t, v in seen if t > now - QUIET_S]
        if now - started > QUIET_S and recent and all(v == NEW_VERSION for v in recent):
            break
    finished.set()
    for t in threads:
        t.join(150)
    after = [(t, v) for t, v in seen if t > started]
    old_times = [t for t, v in after if v != NEW_VERSION]
    final = [v for t, v in after if t > after[-1][0] - QUIET_S] if after else []
    converged = bool(final) and all(v == NEW_VERSION for v in final)
    return {
        "status": answer.status_code,
        "answer": answer.json().get("status") or answer.json().get("error", {}).get("code"),
        "answered_s": round(answered, 2),
        "converged_s": round((max(old_times) - started) if old_times else 0.0, 2) if converged else None,
        "answers_after": dict(Counter(v for _, v in after)),
        "failed": dict(failed),
    }


def markdown(rows: list[dict[str, Any]], command: str) -> str:
    lines = [
        f"Run {time.strftime('%Y-%m-%d %H:%M')} on this machine: `{command}`",
        "",
        "| code | processes | load | answer | answered (s) | every process on the new model (s) | failed requests |",
        "|---|---:|---|---|---:|---:|---|",
    ]
    for r in rows:
        converged = "never (old answers to the end)" if r["converged_s"] is None else f"{r['converged_s']:.1f}"
        failed = ", ".join(f"{k}: {v}" for k, v in r["failed"].items()) or "0"
        lines.append(
            f"| {r['code']} | {r['processes']} | {r['load']} | {r['status']} {r['answer']} | {r['answered_s']:.1f} "
            f"| {converged} | {failed} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, default=ROOT / "models" / "sentiment-bilstm-3.0.0")
    parser.add_argument("--ref", default="", help="also measure this service at this git commit (before/after)")
    parser.add_argument("--out", default="swap-time")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as folder, contextlib.ExitStack() as context:
        target = swapped_copy(args.model_dir.resolve(), Path(folder))
        roots = [("now", ROOT)]
        if args.ref:
            roots.append((f"@ {args.ref}", context.enter_context(at_commit(args.ref)).root))
        for processes in (1, 2):
            for loaded in (False, True):
                for code, root in roots:
                    with server(root, args.model_dir.resolve(), processes) as base:
                        row = one_case(base, target, loaded)
                    row.update(code=code, processes=processes, load="16 predict + 2 explain" if loaded else "idle")
                    print(json.dumps(row), flush=True)
                    rows.append(row)
    command = "python -m bench.swap_time" + (f" --ref {args.ref}" if args.ref else "")
    (RESULTS / f"{args.out}.json").write_text(json.dumps(rows, indent=2))
    (RESULTS / f"{args.out}.md").write_text(markdown(rows, command))
    print(markdown(rows, command))


if __name__ == "__main__":
    main()
