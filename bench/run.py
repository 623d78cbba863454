"""One benchmark run: in-process ceiling, the service over HTTP, and the PyTorch-eager baseline, measured
with the same load generator (wrk, a separate process) in the same run. Writes bench/results/latest.json,
latest.md and latest.png.

    python -m bench.run [--duration 6] [--repeats 3] [--model-dir models/sentiment-bilstm]
    python -m bench.run --provider cuda --skip-baseline     # on a GPU host: writes cuda-latest.*

Each HTTP figure is the median of ``--repeats`` runs of ``--duration`` seconds; compare only figures from
the same run (the machine is noisy).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.ceiling import SHORT_TEXT, measure, test_reviews, throughput
from model_runtime import Predictor
from model_runtime.contract import SHIPPED_MODEL_DIR

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
CONCURRENCY = (1, 8, 64, 256)
WORKLOADS = {"short": 1, "single": 1, "batch32": 32, "batch64": 64, "explain8": 8}  # name -> texts per request
OVERLOAD = 256  # concurrency of the overload point: 4x the 64 clients of the normal top point
EXPLAIN_FLOOD = 24  # /explain clients with 8 long reviews each, while 8 clients send one-line /predict


@dataclass(frozen=True)
class Profile:
    """What one run measures on a provider: ceiling batch sizes and set-ups, HTTP workloads, service env."""

    batch_sizes: list[int]
    setups: list[tuple[int, int]]  # (inference threads, onnxruntime threads per run)
    max_batch_tokens: int | None
    workloads: dict[str, tuple[int, ...]]
    env: dict[str, str] = field(default_factory=dict)
    results_name: str = "latest"


PROFILES = {
    "cpu": Profile(
        [1, 8, 32, 64, 128],
        [(1, 1), (1, 2), (2, 1)],
        4096,
        {"short": (1,), "single": CONCURRENCY, "batch32": CONCURRENCY},
    ),
    # On a GPU, server-side batching decides everything: big batches, one length group per batch.
    "cuda": Profile(
        [64, 256, 1024, 4096],
        [(1, 1), (2, 1), (4, 1)],
        None,
        {"short": (1,), "single": (64, 256), "batch64": (8, 32, 64, 128)},
        {"SENTIMENT_MAX_BATCH_SIZE": "1024", "SENTIMENT_MAX_BATCH_TOKENS": "0"},
        "cuda-latest",
    ),
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_bodies(reviews: list[str], folder: Path) -> dict[str, Path]:
    """One file of request bodies (one JSON per line) per workload."""
    files = {}
    for name, texts in WORKLOADS.items():
        lines: list[dict[str, str | list[str]]]
        if name == "short":
            lines = [{"text": SHORT_TEXT}]
        elif name == "explain8":
            long_reviews = sorted(reviews, key=len)[-64:]
            lines = [{"texts": [long_reviews[(i + j) % 64] for j in range(texts)]} for i in range(64)]
        elif texts == 1:
            lines = [{"text": r} for r in reviews]
        else:
            lines = [
                {"texts": [reviews[(i + j) % len(reviews)] for j in range(texts)]} for i in range(0, len(reviews), 7)
            ]
        files[name] = folder / f"{name}.jsonl"
        files[name].write_text("".join(json.dumps(line) + "\n" for line in lines))
    return files


def start(
    cmd: list[str], env: dict[str, str], port: int, log: Path | None = None, cwd: Path = ROOT
) -> subprocess.Popen[bytes]:
    """``cmd`` run from ``cwd`` (another commit's tree, say), once its /readyz answers 200."""
    with open(log or os.devnull, "ab") as stderr:
        process = subprocess.Popen(cmd, cwd=cwd, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=stderr)
    started = time.monotonic()
    while time.monotonic() - started < 60:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"{cmd} did not become ready")


def service_env(args: argparse.Namespace, port: int) -> dict[str, str]:
    """The service's settings for a run: its defaults (admission included), the provider's, quiet logs, --env."""
    return {
        "SENTIMENT_MODEL_DIR": str(args.model_dir),
        "SENTIMENT_PORT": str(port),
        "SENTIMENT_PROVIDER": args.provider,
        "SENTIMENT_LOG_LEVEL": "warning",
        **PROFILES[args.provider].env,
        **dict(item.split("=", 1) for item in args.env),
    }


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:  # the baseline's thread pool may still be busy with abandoned requests
        process.kill()
        process.wait(15)


def wrk(
    port: int, bodies: Path, concurrency: int, duration: float, path: str = "/predict", disjoint: bool = False
) -> dict[str, Any]:
    """One wrk run's figures; ``disjoint``: wrk's threads take disjoint bodies (none sent twice in a run
    shorter than one pass over the file)."""
    out = subprocess.run(
        wrk_command(port, bodies, concurrency, duration, path, disjoint),
        capture_output=True,
        text=True,
        timeout=duration + 60,
        check=True,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def wrk_command(
    port: int, bodies: Path, concurrency: int, duration: float, path: str, disjoint: bool = False
) -> list[str]:
    threads = min(2, concurrency)
    command = [
        "wrk",
        "-s",
        str(ROOT / "bench" / "wrk_predict.lua"),
        "-c",
        str(concurrency),
        "-t",
        str(threads),
        "-d",
        f"{round(duration)}s",
        "--timeout",
        "30s",
        f"http://127.0.0.1:{port}",
        "--",
        str(bodies),
        path,
    ]
    # wrk_predict.lua's third argument: the thread count, by which each thread strides through the bodies
    return [*command, str(threads)] if disjoint else command


def explain_flood(port: int, files: dict[str, Path], duration: float) -> dict[str, Any]:
    """One-line /predict from 8 clients while EXPLAIN_FLOOD clients send /explain with 8 long reviews each,
    both from wrk (which ignores Retry-After): the /predict latency an explanation flood leaves."""
    flood = subprocess.Popen(
        wrk_command(port, files["explain8"], EXPLAIN_FLOOD, duration + 2, "/explain"),
        stdout=subprocess.PIPE,
        text=True,
    )
    time.sleep(1.0)  # the flood is on before the predictions start
    predict = wrk(port, files["short"], 8, duration)
    out, _ = flood.communicate(timeout=duration + 60)
    explain = json.loads(out.strip().splitlines()[-1])
    row = {
        "predict_p50_ms": predict["p50_us"] / 1000,
        "predict_p99_ms": predict["p99_us"] / 1000,
        "predict_requests": predict["requests"],
        "predict_statuses": predict["statuses"],
        "predict_5xx": sum(v for k, v in predict["statuses"].items() if k.startswith("5")),
        "explain_statuses": explain["statuses"],
        "explain_requests": explain["requests"],
    }
    print(
        f"  explain flood: /predict p50 {row['predict_p50_ms']:.1f} ms, p99 {row['predict_p99_ms']:.1f} ms, "
        f"statuses {predict['statuses']}; /explain statuses {explain['statuses']}",
        flush=True,
    )
    return row


def measure_server(
    port: int,
    files: dict[str, Path],
    duration: float,
    repeats: int,
    workloads: dict[str, tuple[int, ...]],
    probe: Callable[[], float] | None = None,
) -> list[dict[str, Any]]:
    """wrk figures per workload and concurrency, and the mean model batch from the service's /metrics.
    ``probe`` (the in-process ceiling's
    best set-up, one pass) runs right after each wrk run, so every row has a ceiling measured under the
    same machine conditions as its own load."""
    rows = []
    for name, concurrencies in workloads.items():
        for concurrency in concurrencies:
            batches_before = server_batches(port)
            runs, nearby = [], []
            for _ in range(repeats):
                runs.append(wrk(port, files[name], concurrency, duration))
                if probe:
                    wait_idle(port)  # wrk has stopped, but the server may still be working off its queue
                    nearby.append(probe())
            batches_after = server_batches(port)
            texts = WORKLOADS[name]
            ok = [sum(v for k, v in r["statuses"].items() if k == "200") for r in runs]
            rates = [o * texts / (r["duration_us"] / 1e6) for o, r in zip(ok, runs, strict=True)]
            row = {
                "workload": name,
                "texts_per_request": texts,
                "concurrency": concurrency,
                "reviews_per_s": statistics.median(rates),
                "p50_ms": statistics.median(r["p50_us"] for r in runs) / 1000,
                "p95_ms": statistics.median(r["p95_us"] for r in runs) / 1000,
                "p99_ms": statistics.median(r["p99_us"] for r in runs) / 1000,
                "requests": sum(r["requests"] for r in runs),
                "errors": sum(r["requests"] for r in runs) - sum(ok) + sum(r["socket_errors"] for r in runs),
                "statuses": [r["statuses"] for r in runs],
                "mean_server_batch": (
                    (batches_after[1] - batches_before[1]) / (batches_after[0] - batches_before[0])
                    if batches_after[0] > batches_before[0]
                    else None
                ),
                "ceiling_nearby": statistics.median(nearby) if nearby else None,
            }
            rows.append(row)
            print(
                f"  {name:8s} c={concurrency:3d}  {row['reviews_per_s']:8.1f} reviews/s  p50 {row['p50_ms']:7.2f} ms"
                f"  p99 {row['p99_ms']:8.2f} ms  errors {row['errors']}  mean model batch "
                f"{row['mean_server_batch'] or float('nan'):.1f}",
                flush=True,
            )
    return rows


def ceiling_probe(
    args: argparse.Namespace, profile: Profile, best: dict[str, Any], texts: list[str]
) -> Callable[[], float]:
    """One pass of the ceiling's best set-up (reviews/s), to run between the HTTP measurements."""
    predictor = Predictor.load(args.model_dir, provider=args.provider, intra_op_threads=best["threads"])
    predictor.warm_up()
    return lambda: throughput(predictor, texts, best["batch_size"], 1, profile.max_batch_tokens, best["workers"])


def wait_idle(port: int, timeout: float = 120) -> None:
    """Until the service has scored nothing new for half a second."""
    deadline, last = time.monotonic() + timeout, -1.0
    while time.monotonic() < deadline:
        scored = server_batches(port)[1]
        if scored == last:
            return
        last = scored
        time.sleep(0.5)


def server_batches(port: int) -> tuple[float, float]:
    """(model batches run, texts in them) so far, from the service's /metrics; zeros for the baseline."""
    metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    values = {}
    if metrics.status_code == 200:
        for line in metrics.text.splitlines():
            name, _, value = line.partition(" ")
            if name in ("sentiment_batch_size_count", "sentiment_batch_size_sum"):
                values[name] = float(value)
    return values.get("sentiment_batch_size_count", 0.0), values.get("sentiment_batch_size_sum", 0.0)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, default=SHIPPED_MODEL_DIR)
    parser.add_argument("--duration", type=float, default=6.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--texts", type=int, default=1000, help="test reviews used by the ceiling and the load")
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument(
        "--only",
        default="",
        help="e.g. single:64,batch32:64 (tuning runs; no ceiling, no baseline, results not written to latest.*)",
    )
    parser.add_argument("--env", action="append", default=[], help="extra SENTIMENT_*=value for the service")
    parser.add_argument("--server-log", type=Path, default=None, help="append the service's log to this file")
    parser.add_argument("--tune-log", type=Path, default=None, help="with --only: append each row as a JSON line")
    parser.add_argument(
        "--provider",
        default="cpu",
        choices=sorted(PROFILES),
        help="onnxruntime provider; cuda measures the GPU profile (big batches) and writes cuda-latest.*",
    )
    args = parser.parse_args()
    profile = PROFILES[args.provider]
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed: apt-get install wrk")
    if args.only:
        tune(args)
        return

    print("ceiling (in-process onnxruntime, tokenize + infer):", flush=True)
    ceiling = measure(
        args.model_dir, args.texts, 3, profile.batch_sizes, profile.setups, args.provider, profile.max_batch_tokens
    )
    reviews = test_reviews(args.texts)
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "cpus": os.cpu_count(),
        "provider": args.provider,
        "duration_s": args.duration,
        "repeats": args.repeats,
        "ceiling": ceiling,
    }
    workloads = profile.workloads
    with tempfile.TemporaryDirectory() as tmp:
        files = write_bodies(reviews, Path(tmp))
        port = free_port()
        env = service_env(args, port)
        t0 = time.monotonic()
        service = start([sys.executable, "-m", "service"], env, port, args.server_log)
        results["service_start_to_ready_s"] = time.monotonic() - t0
        results["service_settings"] = {k: v for k, v in env.items() if k not in {"SENTIMENT_PORT"}}
        print(f"service over HTTP (ready in {results['service_start_to_ready_s']:.2f} s):", flush=True)
        try:
            results["service"] = measure_server(
                port,
                files,
                args.duration,
                args.repeats,
                workloads,
                ceiling_probe(args, profile, ceiling["best"], reviews),
            )
            results["service_rss_mb_after_load"] = rss_mb(service.pid)
            if args.provider == "cpu":
                wait_idle(port)
                results["explain_flood"] = explain_flood(port, files, args.duration)
        finally:
            stop(service)
        if not args.skip_baseline:
            port = free_port()
            print("baseline (PyTorch eager, plain FastAPI, one text per forward):", flush=True)
            baseline = start(
                [
                    sys.executable,
                    "-m",
                    "bench.baseline_server",
                    "--model-dir",
                    str(args.model_dir),
                    "--port",
                    str(port),
                ],
                {},
                port,
            )
            try:
                results["baseline"] = measure_server(port, files, args.duration, args.repeats, workloads)
            finally:
                stop(baseline)
    results["ratios"] = ratios(results)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / profile.results_name
    out.with_suffix(".json").write_text(json.dumps(results, indent=2))
    out.with_suffix(".md").write_text(markdown(results))
    plot(results, out.with_suffix(".png"))
    print(out.with_suffix(".md").read_text())


def tune(args: argparse.Namespace) -> None:
    """A quick HTTP-only measurement of a few workloads under the given --env settings."""
    workloads: dict[str, tuple[int, ...]] = {}
    for item in args.only.split(","):
        name, concurrency = item.split(":")
        workloads[name] = (*workloads.get(name, ()), int(concurrency))
    reviews = test_reviews(args.texts)
    with tempfile.TemporaryDirectory() as tmp:
        files = write_bodies(reviews, Path(tmp))
        port = free_port()
        env = service_env(args, port)
        print("settings:", " ".join(args.env) or "defaults", flush=True)
        service = start([sys.executable, "-m", "service"], env, port, args.server_log)
        try:
            rows = measure_server(port, files, args.duration, args.repeats, workloads)
        finally:
            stop(service)
    if args.tune_log:
        with args.tune_log.open("a") as log:
            for row in rows:
                log.write(json.dumps({"env": args.env, **row}) + "\n")


def ratios(results: dict[str, Any]) -> list[dict[str, Any]]:
    best = results["ceiling"]["best"]["reviews_per_s"]
    baseline = {(r["workload"], r["concurrency"]): r for r in results.get("baseline", [])}
    rows = []
    for r in results["service"]:
        b = baseline.get((r["workload"], r["concurrency"]))
        rows.append(
            {
                "workload": r["workload"],
                "concurrency": r["concurrency"],
                "service_over_ceiling": r["reviews_per_s"] / best,
                "service_over_nearby_ceiling": (
                    r["reviews_per_s"] / r["ceiling_nearby"] if r.get("ceiling_nearby") else None
                ),
                # None where the baseline finished no request within the run's duration
                "service_over_baseline": r["reviews_per_s"] / b["reviews_per_s"] if b and b["reviews_per_s"] else None,
                "p99_over_p50": r["p99_ms"] / r["p50_ms"] if r["p50_ms"] else None,
            }
        )
    return rows


def markdown(results: dict[str, Any]) -> str:
    c = results["ceiling"]
    lines = [
        f"Run {results['date']} on {results['cpus']} CPUs, onnxruntime provider {c['provider']}; HTTP figures "
        f"are medians of {results['repeats']} wrk runs of {results['duration_s']:.0f} s.",
        "",
        f"Ceiling (in-process, tokenize + infer, {c['texts']} test reviews): best "
        f"**{c['best']['reviews_per_s']:.0f} reviews/s** (batch {c['best']['batch_size']}, {c['best']['workers']} "
        f"worker thread(s) x {c['best']['threads']} onnxruntime thread(s)); single short text p50 "
        f"{min(c['single_short_text_ms'].values()):.2f} ms.",
        "",
        "| workers x threads | "
        + " | ".join(f"batch {b}" for b in sorted({r["batch_size"] for r in c["runs"]}))
        + " |",
        "|---|" + "---|" * len({r["batch_size"] for r in c["runs"]}),
    ]
    for setup in dict.fromkeys(r["setup"] for r in c["runs"]):
        rates = [f"{r['reviews_per_s']:.0f}" for r in c["runs"] if r["setup"] == setup]
        lines.append(f"| {setup} | " + " | ".join(rates) + " |")
    baseline = {(r["workload"], r["concurrency"]): r for r in results.get("baseline", [])}
    ratio = {(r["workload"], r["concurrency"]): r for r in results["ratios"]}
    lines += [
        "",
        "÷ ceiling: over the best ceiling above; ÷ ceiling nearby: over the same set-up measured "
        "in process right after each of the row's wrk runs (median), i.e. under the same machine "
        "conditions.",
        "",
        "| workload | concurrency | service reviews/s | p50 ms | p95 ms | p99 ms | errors | mean model "
        "batch | ÷ ceiling | ÷ ceiling nearby | baseline reviews/s | baseline p50 ms | service ÷ baseline |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results["service"]:
        key = (r["workload"], r["concurrency"])
        b, q = baseline.get(key), ratio[key]
        lines.append(
            f"| {r['workload']} ({r['texts_per_request']} text{'s' if r['texts_per_request'] > 1 else ''}) | "
            f"{r['concurrency']} | {r['reviews_per_s']:.0f} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | "
            f"{r['p99_ms']:.1f} | {r['errors']} | "
            + (f"{r['mean_server_batch']:.1f} | " if r.get("mean_server_batch") else "– | ")
            + f"{q['service_over_ceiling']:.2f} | "
            + (
                f"{q['service_over_nearby_ceiling']:.2f} ({r['ceiling_nearby']:.0f}) | "
                if q.get("service_over_nearby_ceiling")
                else "– | "
            )
            + (
                f"{b['reviews_per_s']:.0f} | {b['p50_ms']:.1f} | {q['service_over_baseline']:.2f} |"
                if b and b["reviews_per_s"]
                else f"0 (none finished in {results['duration_s']:.0f} s) | > {results['duration_s'] * 1000:.0f} | ∞ |"
                if b
                else "– | – | – |"
            )
        )
    lines += [
        "",
        f"Service start to /readyz 200: {results['service_start_to_ready_s']:.2f} s; resident memory after "
        f"the load: {results['service_rss_mb_after_load']:.0f} MB.",
        "",
        *overload_lines(results),
    ]
    return "\n".join(lines)


def overload_summary(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Per workload: goodput (200-answered reviews/s) at the overload point over the best below it."""
    rows = []
    for workload in dict.fromkeys(r["workload"] for r in results["service"]):
        mine = [r for r in results["service"] if r["workload"] == workload]
        over = [r for r in mine if r["concurrency"] >= OVERLOAD]
        normal = [r["reviews_per_s"] for r in mine if r["concurrency"] < OVERLOAD]
        if over and normal:
            statuses: dict[str, int] = {}
            for run in over[0]["statuses"]:
                for k, v in run.items():
                    statuses[k] = statuses.get(k, 0) + v
            rows.append(
                {
                    "workload": workload,
                    "concurrency": over[0]["concurrency"],
                    "goodput": over[0]["reviews_per_s"],
                    "best_normal": max(normal),
                    "ratio": over[0]["reviews_per_s"] / max(normal),
                    "statuses": statuses,
                }
            )
    return rows


def overload_lines(results: dict[str, Any]) -> list[str]:
    lines = [
        "Overload (wrk ignores Retry-After) and an explanation flood, same run:",
        "",
        "| workload | clients | goodput reviews/s | best below overload | ratio | answers |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['workload']} | {r['concurrency']} | {r['goodput']:.0f} | {r['best_normal']:.0f} | "
        f"{r['ratio']:.2f} | {r['statuses']} |"
        for r in overload_summary(results)
    ]
    flood = results.get("explain_flood")
    if flood:
        lines += [
            "",
            f"Explain flood ({EXPLAIN_FLOOD} clients x 8 long reviews on /explain, 8 clients of one-line "
            f"/predict): /predict p50 {flood['predict_p50_ms']:.1f} ms, p99 {flood['predict_p99_ms']:.1f} ms, "
            f"{flood['predict_5xx']} answers 5xx of {flood['predict_requests']}; /explain answers "
            f"{flood['explain_statuses']}.",
        ]
    return [*lines, ""]


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for server, style in (("service", "o-"), ("baseline", "s--")):
        for workload in [w for w in WORKLOADS if w != "short"]:
            # rows where no request finished within the run have no latency to plot
            rows = [r for r in results.get(server, []) if r["workload"] == workload and r["reviews_per_s"]]
            if rows:
                ax.plot(
                    [r["reviews_per_s"] for r in rows],
                    [r["p50_ms"] for r in rows],
                    style,
                    label=f"{server}, {workload}",
                )
                for r in rows:
                    ax.annotate(f"c={r['concurrency']}", (r["reviews_per_s"], r["p50_ms"]), fontsize=7)
    ax.axvline(results["ceiling"]["best"]["reviews_per_s"], color="grey", ls=":", label="in-process ceiling")
    ax.set_xlabel("throughput (reviews/s)")
    ax.set_ylabel("p50 latency (ms)")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    ax.set_title("throughput vs latency")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
