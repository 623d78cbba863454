"""The container image, built and run for real by a Docker engine that the suite starts itself.

Needs `dockerd` (Debian's docker.io), `debootstrap` (for the stand-in base image when no registry is
reachable) and root; otherwise it is skipped with the reason. The engine and the image are made in the
background while the rest of the suite runs, and these tests run last (tests/docker_image.py); an image
built before from the same inputs is loaded from its cached tarball instead of built again.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests import docker_image
from tests.docker_image import BASE_TAG, Engine, EngineUnavailable
from tests.support import ROOT, artifact_dir

pytestmark = [pytest.mark.docker, pytest.mark.slow]

IMAGE_LIMIT_BYTES = 300 * 1000 * 1000
REVIEWS = {
    "An absolute masterpiece. Brilliant acting, a gripping story and a wonderful score; I loved it.": "positive",
    "One of the worst films I have ever seen. Boring, stupid and badly acted. A total waste of time.": "negative",
}


@pytest.fixture(scope="module")
def engine_and_image() -> Iterator[tuple[Engine, str]]:
    reason = docker_image.unavailable()
    if reason:
        pytest.skip(reason)
    try:
        engine, image = docker_image.prepared(Path(os.environ[docker_image.ENV]))
    except EngineUnavailable as exc:
        pytest.skip(str(exc))
    yield engine, image
    shutil.copy(engine.figures, artifact_dir("docker") / "figures.json")


@pytest.fixture(scope="module")
def engine(engine_and_image: tuple[Engine, str]) -> Engine:
    return engine_and_image[0]


@pytest.fixture(scope="module")
def docker_env(engine: Engine) -> dict[str, str]:
    return engine.env


@pytest.fixture(scope="module")
def image(engine_and_image: tuple[Engine, str]) -> str:
    return engine_and_image[1]


def wait_ready(base: str, what: Callable[[], str], timeout: float = 60) -> None:
    """Poll /readyz until 200; on time-out fail with ``what()`` (e.g. the container's log)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, what()
        time.sleep(0.25)


def test_image_is_small_and_has_no_torch(engine: Engine, docker_env: dict[str, str], image: str) -> None:
    size = int(engine.docker("image", "inspect", "--format", "{{.Size}}", image))
    engine.record(image_megabytes=round(size / 1e6, 1))
    assert size <= IMAGE_LIMIT_BYTES
    probe = subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            "--entrypoint",
            "python",
            image,
            "-c",
            "import importlib.util as u; print(u.find_spec('torch'), u.find_spec('training'))",
        ],
        env=docker_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert probe.stdout.split() == ["None", "None"], probe.stderr
    config = json.loads(engine.docker("image", "inspect", "--format", "{{json .Config}}", image))
    assert config["User"] == "app"
    assert "8000/tcp" in config["ExposedPorts"]
    assert config["Cmd"] == ["python", "-m", "service"]
    assert "/readyz" in " ".join(config["Healthcheck"]["Test"])


def test_container_serves_and_drains_on_sigterm(
    engine: Engine, docker_env: dict[str, str], image: str, free_port: int
) -> None:
    name = f"sentiment-test-{free_port}"
    engine.docker("run", "-d", "--name", name, "-p", f"127.0.0.1:{free_port}:8000", image)
    base = f"http://127.0.0.1:{free_port}"
    try:
        wait_ready(base, lambda: engine.docker("logs", name, check=False))
        response = httpx.post(f"{base}/predict", json={"texts": list(REVIEWS)}, timeout=10)
        assert response.status_code == 200
        assert [p["label"] for p in response.json()["predictions"]] == list(REVIEWS.values())
        # What loads on first use is in the image too: the sentence splitter, both language detectors.
        document = " ".join(REVIEWS)
        analyzed = httpx.post(f"{base}/analyze", json={"text": document}, timeout=10).json()["documents"][0]
        assert analyzed["label"] == "mixed" and len(analyzed["sentences"]) == 5
        german = httpx.post(f"{base}/predict", json={"text": "Das Essen war schrecklich und der Kellner unhöflich."})
        assert german.json()["predictions"][0]["language"] == {"code": "de", "supported": False}
        explained = httpx.post(f"{base}/explain", json={"text": "A wonderful film."}, timeout=10)
        assert explained.status_code == 200
        docs = httpx.get(f"{base}/docs", timeout=5)
        assert docs.status_code == 200 and "swagger-ui-bundle.js" in docs.text
        assert httpx.get(f"{base}/model", timeout=5).json()["provider"] == "CPUExecutionProvider"

        deadline = time.monotonic() + 60  # the image's HEALTHCHECK probes /readyz every 10 s
        while engine.docker("inspect", "--format", "{{.State.Health.Status}}", name) != "healthy":
            assert time.monotonic() < deadline, "container never reported healthy"
            time.sleep(1)

        started = time.monotonic()
        engine.docker("stop", "--time", "25", name, timeout=60)  # SIGTERM, SIGKILL after 25 s
        stopped_in = time.monotonic() - started
        engine.record(sigterm_to_exit_seconds=round(stopped_in, 2))
        state = json.loads(engine.docker("inspect", "--format", "{{json .State}}", name))
        assert state["ExitCode"] == 0, engine.docker("logs", name, check=False)
        assert stopped_in < 20
        assert (
            "drained; shutting down"
            in engine.docker("logs", name, check=False)
            + subprocess.run(["docker", "logs", name], env=docker_env, capture_output=True, text=True).stderr
        )
    finally:
        engine.docker("rm", "-f", name, check=False)


def test_compose_file_is_valid_and_runs(docker_env: dict[str, str], image: str, free_port: int) -> None:
    compose = shutil.which("docker-compose")
    if compose is None:
        pytest.skip("docker-compose is not installed (scripts/test.sh installs it with apt-get)")
    env = {
        **docker_env,
        "SENTIMENT_IMAGE": image,
        "SENTIMENT_PUBLISH": f"127.0.0.1:{free_port}",
        "BASE_IMAGE": BASE_TAG,
        "COMPOSE_PROJECT_NAME": f"sentimenttest{free_port}",
    }

    def run(*args: str, timeout: int = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run([compose, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)

    config = run("config")
    assert config.returncode == 0, config.stderr
    assert "sentiment-gpu" in run("--profile", "gpu", "config", "--services").stdout
    up = run("up", "-d", "--no-build", "sentiment", timeout=180)
    try:
        assert up.returncode == 0, up.stderr
        wait_ready(f"http://127.0.0.1:{free_port}", lambda: "compose service never became ready")
    finally:
        down = run("down", "--timeout", "25", timeout=120)
    assert down.returncode == 0, down.stderr
