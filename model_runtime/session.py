"""onnxruntime sessions: execution providers, thread options, and the CPUs this process may use."""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Literal

import onnxruntime as ort

log = logging.getLogger(__name__)

Provider = Literal["auto", "cpu", "cuda"]
CPU_PROVIDER, CUDA_PROVIDER = "CPUExecutionProvider", "CUDAExecutionProvider"


class ProviderError(RuntimeError):
    """The asked-for execution provider cannot run here."""


def available_cpus() -> int:
    """CPUs this process may really use: its affinity mask, capped by a cgroup v2 CPU quota if set."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            cpus = min(cpus, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return cpus


def session_options(intra_op_threads: int, inter_op_threads: int = 1, spin: bool = False) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = inter_op_threads
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Spinning workers keep a core busy between requests, stealing it from the HTTP event loop.
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    options.log_severity_level = 3
    return options


def create_session(model_path: Path, provider: Provider, options: ort.SessionOptions) -> ort.InferenceSession:
    """An InferenceSession on the asked-for provider; ``cuda`` fails loudly rather than fall back to CPU."""
    if provider in ("cuda", "auto"):
        try:
            return _cuda_session(model_path, options)
        except ProviderError as exc:
            if provider == "cuda":
                raise
            log.info("CUDA not usable (%s); using the CPU provider", exc)
    return ort.InferenceSession(str(model_path), options, providers=[CPU_PROVIDER])


def _cuda_session(model_path: Path, options: ort.SessionOptions) -> ort.InferenceSession:
    available = ort.get_available_providers()
    if CUDA_PROVIDER not in available:
        raise ProviderError(
            f"SENTIMENT_PROVIDER=cuda, but this onnxruntime build has no CUDA provider (available: "
            f"{', '.join(available)}); install onnxruntime-gpu (pip extra 'gpu') on a host with an NVIDIA GPU"
        )
    if hasattr(ort, "preload_dlls"):
        ort.preload_dlls()  # finds CUDA/cuDNN installed as pip packages
    try:
        session = ort.InferenceSession(str(model_path), options, providers=[CUDA_PROVIDER, CPU_PROVIDER])
    except Exception as exc:  # onnxruntime raises plain RuntimeError/Fail subclasses here
        raise ProviderError(f"the CUDA provider failed to start: {exc}".replace("\n", " ")) from exc
    if session.get_providers()[0] != CUDA_PROVIDER:
        raise ProviderError(
            "the CUDA provider could not be initialised (missing CUDA/cuDNN libraries or no GPU visible); "
            f"onnxruntime fell back to {session.get_providers()}"
        )
    return session


def choose_tokenizer_threads(on_gpu: bool) -> None:
    """Whether the tokenizer spreads each batch over all cores (TOKENIZERS_PARALLELISM, if set, wins).

    On CPU, every inference thread has a core already and the tokenizer's pool only adds contention (in
    process, 2 threads x batch 32: 1,030 reviews/s with it, 1,125 without). With CUDA the cores are free
    and tokenizing is the host-side bottleneck (README, Performance on a GPU).
    """
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true" if on_gpu else "false")
