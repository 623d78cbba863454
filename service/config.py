"""All settings of the service, read from ``SENTIMENT_*`` environment variables (see the README)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from model_runtime.contract import SHIPPED_MODEL_DIR
from model_runtime.documents import MIXED_THRESHOLD

# This service's version (OpenAPI document, Open Inference Protocol server metadata); bumped with the model.


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SENTIMENT_", extra="ignore", frozen=True)

    # Model
    model_dir: Path = Field(SHIPPED_MODEL_DIR, description="model directory: model.onnx, tokenizer.json, card")
    provider: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="execution provider; cuda fails start-up if CUDA cannot run, auto falls back to CPU"
    )
    processes: int = Field(
        1,
        ge=1,
        le=64,
        description="server processes sharing the port, each with its own "
        "model, event loop and queue; more than 1 pays off on many-core and GPU hosts",
    )
    inference_workers: int = Field(
        0,
        ge=0,
        le=64,
        description="batches run in parallel, each on its own "
        "thread; 0 = one per CPU available to this process (affinity and cgroup "
        "quota), or 2 on CUDA",
    )
    intra_op_threads: int = Field(
        0,
        ge=0,
        le=256,
        description="onnxruntime threads per inference; 0 = available CPUs divided by inference workers (at least 1)",
    )
    inter_op_threads: int = Field(1, ge=1, le=64, description="onnxruntime inter-op threads")
    ort_spin: bool = Field(False, description="let onnxruntime threads spin between runs (burns idle CPU)")
    warmup_runs: int = Field(3, ge=0, le=10_000, description="warm-up passes before /readyz turns 200")

    # Batching
    max_batch_size: int = Field(256, ge=1, le=4096, description="most texts per server-side model batch")
    max_wait_ms: float = Field(0.0, ge=0, le=1000, description="how long a batch waits for more requests")
    max_batch_tokens: int = Field(
        4096,
        ge=0,
        description="most padded tokens per model run (0 = no cap); a batch is cut into groups of similar length",
    )
    max_queue: int = Field(16_384, ge=1, description="most texts waiting, whatever their cost; beyond it 429")
    max_queue_seconds: float = Field(
        8.0,
        gt=0,
        description="most work the queue holds, in seconds at the measured rate (tokens/s); a request "
        "that would take it further gets 429 with Retry-After = the expected wait, before its body is parsed "
        "when its Content-Length already tells",
    )
    max_concurrent_requests: int = Field(
        2048,
        ge=1,
        description="most scoring requests in flight at once (a request takes its slot once its body "
        "has arrived and is valid); beyond it 429",
    )
    max_explain_queue_seconds: float = Field(
        15.0, gt=0, description="most work the /explain lane holds (rows x tokens at its measured rate)"
    )
    request_timeout_s: float = Field(30.0, gt=0, description="longest a request waits for its result (503)")

    # Slow and hostile clients (the server answers, then closes the connection)
    header_timeout_s: float = Field(
        10.0, gt=0, le=300, description="longest a client may take to send a request's headers (408)"
    )
    body_timeout_s: float = Field(
        20.0,
        gt=0,
        le=300,
        description="longest a client may take to send a request's body (408); no slot is held meanwhile",
    )
    max_header_bytes: int = Field(
        65_536, ge=1024, le=1 << 24, description="most bytes in a request's line and headers together (431)"
    )
    max_headers: int = Field(100, ge=8, le=10_000, description="most header fields in one request (431)")

    # Input limits
    max_client_batch: int = Field(64, ge=1, le=10_000, description="most texts in one request")
    max_text_chars: int = Field(100_000, ge=1, description="most characters in one text")
    max_explain_texts: int = Field(8, ge=1, le=1000, description="most texts in one /explain request")
    max_explain_tokens: int = Field(
        256,
        ge=1,
        le=4096,
        description="most tokens per text /explain weighs (the last ones); each costs one extra model row",
    )
    max_documents: int = Field(32, ge=1, le=10_000, description="most documents in one /analyze request")
    max_document_chars: int = Field(100_000, ge=1, description="most characters in one /analyze document")
    max_sentences: int = Field(
        1024, ge=1, le=100_000, description="most sentences in one /analyze request, all documents together"
    )
    mixed_threshold: float = Field(
        MIXED_THRESHOLD,
        gt=0.5,
        le=1.0,
        description="/analyze calls a document mixed when one sentence is at least this sure of positive and "
        "another of negative (docs/documents.md: chosen by measurement)",
    )
    unsupported_language: Literal["flag", "refuse"] = Field(
        "flag",
        description="a text in a language the model does not support: scored and flagged, or refused (422 "
        "naming the text on /predict and /v2, that document's error on /analyze)",
    )
    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024, description="largest request body (413 beyond)")

    # Jobs: files too big for one request (docs/jobs.md)
    jobs: bool = Field(True, description="offer /jobs and run jobs in this process")
    jobs_dir: Path = Field(Path("data"), description="where the default SQLite job store lives (a volume)")
    jobs_database_url: str | None = Field(
        None,
        description="the job store: postgresql://user:password@host:port/database, or sqlite:///path; unset, "
        "SQLite in SENTIMENT_JOBS_DIR/jobs.sqlite3",
    )
    jobs_engine: Literal["local", "ray"] = Field(
        "local", description="where a job's rows are scored: this process's engine, or Ray Data (RAY_ADDRESS)"
    )
    jobs_max_upload_bytes: int = Field(
        256 * 1024 * 1024, ge=1024, description="largest job upload, gzip decoded (413 beyond)"
    )
    jobs_max_rows: int = Field(1_000_000, ge=1, description="most rows in one job (413 beyond)")
    jobs_max_queued: int = Field(16, ge=1, description="most jobs queued or running at once (429 beyond)")
    jobs_max_stored_bytes: int = Field(
        2 * 1024**3, ge=1024, description="most bytes of results kept for all jobs together (429 beyond)"
    )
    jobs_lease_s: float = Field(
        60.0, gt=0, description="a job whose process stops renewing its lease this long is taken over by another"
    )
    jobs_retention_s: float = Field(
        86_400.0, gt=0, description="how long a job and its results are kept after it was submitted"
    )

    # Access and server
    api_key: SecretStr | None = Field(
        None, description="if set, /predict and /model need 'Authorization: Bearer <key>'"
    )
    api_keys: SecretStr | None = Field(
        None,
        description="several API keys, comma separated (with SENTIMENT_API_KEY, any of them opens the scoring "
        "routes); each key sees and deletes only its own jobs",
    )
    admin_key: SecretStr | None = Field(
        None,
        description="if set, POST /admin/model (model swap) exists and needs 'Authorization: Bearer <admin "
        "key>'; unset, the route does not exist",
    )
    host: str = Field("127.0.0.1", description="bind address (0.0.0.0 in the container)")
    port: int = Field(8000, ge=0, le=65535)
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="debug also logs texts")
    swap_timeout_s: float = Field(
        120.0,
        gt=0,
        description="with several processes: how long a process started by a model swap may take to be ready "
        "before the swap is undone",
    )
    health_check_timeout_s: float = Field(
        30.0,
        gt=0,
        description="with several processes: a process that does not answer the supervisor this long is "
        "replaced (busy is not hung)",
    )
    shutdown_grace_s: float = Field(20.0, ge=0, description="on SIGTERM, how long in-flight requests may take")

    def keys(self) -> list[str]:
        """Every API key that opens the scoring routes (none: they are open)."""
        keys = [k.strip() for k in (self.api_keys.get_secret_value() if self.api_keys else "").split(",")]
        return [*([self.api_key.get_secret_value()] if self.api_key else []), *(k for k in keys if k)]

    def jobs_url(self) -> str:
        return self.jobs_database_url or f"sqlite:///{self.jobs_dir.resolve() / 'jobs.sqlite3'}"

    @model_validator(mode="after")
    def _a_full_request_fits_the_queue(self) -> Settings:
        if self.max_queue < self.max_client_batch:
            raise ValueError(
                f"SENTIMENT_MAX_QUEUE ({self.max_queue}) must be at least SENTIMENT_MAX_CLIENT_BATCH "
                f"({self.max_client_batch}), or a full request could never be queued"
            )
        return self
