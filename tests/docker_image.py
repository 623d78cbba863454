"""The Docker engine and the service's image for tests/test_docker.py, made in the background.

conftest.py starts ``prepare`` in a thread as soon as the suite knows it will run a docker test, and puts
those tests last: the engine starts, the stand-in base image is built (or loaded from its cached tarball)
and the image is built while the tests that need no Docker run. The engine and its containers run at the
lowest CPU priority (``nice``), so the build takes the time other tests leave.

The built image is saved under the user's cache directory, named by the content hash of everything the
build reads (the Dockerfile, its context's files, the base image's recipe); a later run with the same
inputs loads it instead of building it again. One image is kept.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tests.support import CACHE, ROOT

BASE_TAG = "local/python-base:3.11"
IMAGE_TAG = "sentiment-service:test"
DEPLOY_DOCKER = ROOT / "deploy" / "docker"  # the GPU image and the base-image helper; the CPU files are at the root
# What `docker build .` reads (the Dockerfile and what .dockerignore lets through, and more: a change
# anywhere here builds the image again).
BUILD_INPUTS = (
    *("Dockerfile", ".dockerignore", "pyproject.toml", "README.md", "model_runtime", "service"),
    *("deploy/docker/install-app.sh", "deploy/docker/local-base-image.sh", "models/sentiment-bilstm"),
)


def unavailable() -> str | None:
    """Why no Docker engine can be started here (None: it can)."""
    if os.geteuid() != 0:
        return "starting a Docker engine needs root"
    for tool in ("dockerd", "docker", "debootstrap"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (scripts/test.sh installs it with apt-get)"
    return None


def build_key() -> str:
    digest = hashlib.sha256()
    for name in BUILD_INPUTS:
        path = ROOT / name
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            if "__pycache__" not in file.parts:
                digest.update(file.relative_to(ROOT).as_posix().encode() + b"\0" + file.read_bytes())
    return digest.hexdigest()[:16]


class EngineUnavailable(RuntimeError):
    """The Docker engine could not start here (the docker tests skip with this reason)."""


@dataclass
class Engine:
    """A Docker engine started for this test session, with its own data root."""

    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="sentiment-docker-")))
    daemon: subprocess.Popen[bytes] | None = None
    figures: dict[str, float | bool] = field(default_factory=dict)  # for the README (test-artifacts/docker)

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "DOCKER_HOST": f"unix://{self.root / 'docker.sock'}"}

    def start(self) -> None:
        command = ["nice", "-n", "19", "dockerd", "--data-root", str(self.root / "data")]
        command += ["--exec-root", str(self.root / "exec"), "--host", f"unix://{self.root / 'docker.sock'}"]
        command += ["--pidfile", str(self.root / "dockerd.pid"), "--storage-driver", "vfs"]
        with (self.root / "dockerd.log").open("w") as log:  # the daemon keeps its own copy of the descriptor
            self.daemon = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 30
        while subprocess.run(["docker", "info"], env=self.env, capture_output=True).returncode != 0:
            if self.daemon.poll() is not None or time.monotonic() > deadline:
                raise EngineUnavailable(
                    f"the Docker engine did not start: {(self.root / 'dockerd.log').read_text()[-500:]}"
                )
            time.sleep(0.2)

    def docker(self, *args: str, timeout: float = 120, check: bool = True) -> str:
        done = subprocess.run(["docker", *args], env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} failed: {done.stdout[-2000:]} {done.stderr[-3000:]}")
        return done.stdout.strip()

    def image(self) -> str:
        """The service's image: loaded when this content was built before, else built (as the README says it:
        the Dockerfile at the root, found by its name) and saved for the next run."""
        key = build_key()
        saved = CACHE / f"image-{key}.tar"
        started = time.monotonic()
        if saved.is_file():
            self.docker("load", "-q", "-i", str(saved), timeout=600)
            self.figures["image_load_seconds"] = round(time.monotonic() - started, 1)
            self.figures["built"] = False
            return IMAGE_TAG
        base = ["nice", "-n", "19", str(DEPLOY_DOCKER / "local-base-image.sh"), BASE_TAG]
        made = subprocess.run(base, env=self.env, timeout=900, capture_output=True, text=True)
        assert made.returncode == 0, f"the base image was not made: {made.stdout[-2000:]} {made.stderr[-3000:]}"
        self.figures["base_image_seconds"] = round(time.monotonic() - started, 1)
        started = time.monotonic()
        self.docker("build", "--build-arg", f"BASE_IMAGE={BASE_TAG}", "-t", IMAGE_TAG, str(ROOT), timeout=1500)
        self.figures["build_seconds"] = round(time.monotonic() - started, 1)
        self.figures["built"] = True
        if build_key() != key:  # a file changed while the image was built: this image is no one's to reuse
            return IMAGE_TAG
        for old in CACHE.glob("image-*.tar"):
            old.unlink()
        staging = saved.with_suffix(".tmp")
        self.docker("save", "-o", str(staging), IMAGE_TAG, timeout=600)
        staging.rename(saved)
        return IMAGE_TAG

    def stop(self) -> None:
        if self.daemon is None:
            return
        subprocess.run("docker ps -aq | xargs -r docker rm -f", shell=True, env=self.env, capture_output=True)
        subprocess.run(["docker", "system", "prune", "-af"], env=self.env, capture_output=True, timeout=300)
        self.daemon.send_signal(signal.SIGTERM)
        try:
            self.daemon.wait(30)
        except subprocess.TimeoutExpired:
            self.daemon.kill()
        shutil.rmtree(self.root, ignore_errors=True)


def prepare() -> tuple[Engine, str]:
    """Start an engine and make the image (run in the background by conftest.py)."""
    engine = Engine()
    try:
        engine.start()
        return engine, engine.image()
    except BaseException:
        engine.stop()
        raise


_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="docker-image")
_prepared: Future[tuple[Engine, str]] | None = None


def start_in_background() -> None:
    global _prepared
    if _prepared is None and unavailable() is None:
        _prepared = _pool.submit(prepare)


def prepared() -> tuple[Engine, str]:
    """The engine and image (waiting for the background work; started now when nothing started it)."""
    start_in_background()
    assert _prepared is not None
    return _prepared.result()


def stop_in_background_work() -> None:
    """At the end of the session: stop the engine if one was started."""
    if _prepared is not None:
        try:
            engine, _ = _prepared.result()
        except Exception:  # its error was reported by the tests that needed it
            return
        engine.stop()
