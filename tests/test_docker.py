"""The container image, built and run for real by a Docker engine that this test starts itself.

Needs `dockerd` (Debian's docker.io), `debootstrap` (for the stand-in base image when no registry is
reachable) and root; otherwise it is skipped with the reason. The base image is cached as a tarball
between runs (deploy/docker/local-base-image.sh). Takes a few minutes: the vfs storage driver copies layers.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import ROOT, artifact_dir

pytestmark = [pytest.mark.docker, pytest.mark.slow]

BASE_TAG = "local/python-base:3.11"
IMAGE_TAG = "sentiment-service:test"
IMAGE_LIMIT_BYTES = 450 * 1000 * 1000
REVIEWS = {
    "An absolute masterpiece. Brilliant acting, a gripping story and a wonderful score; I loved it.": "positive",
    "One of the worst films I have ever seen. Boring, stupid and badly acted. A total waste of time.": "negative",
}


def _engine_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "starting a Docker engine needs root"
    for tool in ("dockerd", "docker", "debootstrap"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (scripts/test.sh installs it with apt-get)"
    return None


@pytest.fixture(scope="module")
def docker_env() -> Iterator[dict[str, str]]:
    reason = _engine_unavailable()
    if reason:
        pytest.skip(reason)
    root = Path(tempfile.mkdtemp(prefix="sentiment-docker-"))
    sock = root / "docker.sock"
    log = (root / "dockerd.log").open("w")
    daemon = subprocess.Popen(
        [
            "dockerd",
            "--data-root",
            str(root / "data"),
            "--exec-root",
            str(root / "exec"),
            "--host",
            f"unix://{sock}",
            "--pidfile",
            str(root / "dockerd.pid"),
            "--storage-driver",
            "vfs",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    env = {**os.environ, "DOCKER_HOST": f"unix://{sock}"}
    try:
        deadline = time.monotonic() + 30
        while subprocess.run(["docker", "info"], env=env, capture_output=True).returncode != 0:
            if daemon.poll() is not None or time.monotonic() > deadline:
                pytest.skip(f"the Docker engine did not start: {(root / 'dockerd.log').read_text()[-500:]}")
            time.sleep(0.2)
        yield env
    finally:
        subprocess.run("docker ps -aq | xargs -r docker rm -f", shell=True, env=env, capture_output=True)
        subprocess.run(["docker", "system", "prune", "-af"], env=env, capture_output=True, timeout=300)
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(30)
        except subprocess.TimeoutExpired:
            daemon.kill()
        log.close()
        shutil.rmtree(root, ignore_errors=True)


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


def docker(env: dict[str, str], *args: str, timeout: float = 120, check: bool = True) -> str:
    done = subprocess.run(["docker", *args], env=env, capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed: {done.stdout[-2000:]} {done.stderr[-3000:]}")
    return done.stdout.strip()


DEPLOY_DOCKER = ROOT / "deploy" / "docker"  # the GPU image and the base-image helper; the CPU files are at the root
FIGURES: dict[str, float] = {}  # written to test-artifacts/docker/figures.json for the README


@pytest.fixture(scope="module")
def image(docker_env: dict[str, str]) -> Iterator[str]:
    started = time.monotonic()
    subprocess.run([str(DEPLOY_DOCKER / "local-base-image.sh"), BASE_TAG], env=docker_env, check=True, timeout=900)
    FIGURES["base_image_seconds"] = round(time.monotonic() - started, 1)
    started = time.monotonic()
    docker(  # as the README says it: the Dockerfile at the root, found by its name
        docker_env,
        "build",
        "--build-arg",
        f"BASE_IMAGE={BASE_TAG}",
        "-t",
        IMAGE_TAG,
        str(ROOT),
        timeout=1500,
    )
    FIGURES["build_seconds"] = round(time.monotonic() - started, 1)
    yield IMAGE_TAG
    (artifact_dir("docker") / "figures.json").write_text(json.dumps(FIGURES, indent=2))


def test_image_is_small_and_has_no_torch(docker_env: dict[str, str], image: str) -> None:
    size = int(docker(docker_env, "image", "inspect", "--format", "{{.Size}}", image))
    FIGURES["image_megabytes"] = round(size / 1e6, 1)
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
    config = json.loads(docker(docker_env, "image", "inspect", "--format", "{{json .Config}}", image))
    assert config["User"] == "app"
    assert "8000/tcp" in config["ExposedPorts"]
    assert config["Cmd"] == ["python", "-m", "service"]
    assert "/readyz" in " ".join(config["Healthcheck"]["Test"])


def test_container_serves_and_drains_on_sigterm(docker_env: dict[str, str], image: str, free_port: int) -> None:
    name = f"sentiment-test-{free_port}"
    docker(docker_env, "run", "-d", "--name", name, "-p", f"127.0.0.1:{free_port}:8000", image)
    base = f"http://127.0.0.1:{free_port}"
    try:
        wait_ready(base, lambda: docker(docker_env, "logs", name, check=False))
        response = httpx.post(f"{base}/predict", json={"texts": list(REVIEWS)}, timeout=10)
        assert response.status_code == 200
        assert [p["label"] for p in response.json()["predictions"]] == list(REVIEWS.values())
        docs = httpx.get(f"{base}/docs", timeout=5)
        assert docs.status_code == 200 and "swagger-ui-bundle.js" in docs.text
        assert httpx.get(f"{base}/model", timeout=5).json()["provider"] == "CPUExecutionProvider"

        deadline = time.monotonic() + 60  # the image's HEALTHCHECK probes /readyz every 10 s
        while docker(docker_env, "inspect", "--format", "{{.State.Health.Status}}", name) != "healthy":
            assert time.monotonic() < deadline, "container never reported healthy"
            time.sleep(1)

        started = time.monotonic()
        docker(docker_env, "stop", "--time", "25", name, timeout=60)  # SIGTERM, SIGKILL after 25 s
        stopped_in = time.monotonic() - started
        FIGURES["sigterm_to_exit_seconds"] = round(stopped_in, 2)
        state = json.loads(docker(docker_env, "inspect", "--format", "{{json .State}}", name))
        assert state["ExitCode"] == 0, docker(docker_env, "logs", name, check=False)
        assert stopped_in < 20
        assert (
            "drained; shutting down"
            in docker(docker_env, "logs", name, check=False)
            + subprocess.run(["docker", "logs", name], env=docker_env, capture_output=True, text=True).stderr
        )
    finally:
        docker(docker_env, "rm", "-f", name, check=False)


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
