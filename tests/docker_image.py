"""The Docker engine and the service's image for tests/test_docker.py, made by a process of their own.

    python3 -m tests.docker_image prepare DIR   start an engine whose files live in DIR, load or build the
                                                image, write DIR/status.json; the engine keeps running
    python3 -m tests.docker_image stop DIR      stop what prepare started (the engine, an unfinished build)
                                                and remove DIR

Standard library only: scripts/test.sh starts ``prepare`` on the system's Python as soon as the Debian
packages are in, beside the making of .venv and the fast tiers, names DIR in SENTIMENT_TEST_DOCKER for the
tests, and calls ``stop`` when it ends. A pytest run without it (pytest by hand) makes a DIR itself, starts
``prepare`` as soon as it collects a docker test (conftest.py puts those tests last) and stops it at the end
of the session. Only the first ``prepare`` for a DIR works (it claims DIR/prepare.pid); the tests attach to
its engine by DIR. The engine, its builds and its containers run at the lowest CPU priority (``nice``), so
they take the time the tests leave.

The built image is saved under the user's cache directory, named by the content hash of everything the
build reads (the Dockerfile, its context's files, the base image's recipe); a later run with the same inputs
loads it instead of building it again. One image is kept.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tests import CACHE, ROOT

ENV = "SENTIMENT_TEST_DOCKER"  # the engine's directory, shared by scripts/test.sh, pytest and its workers
BASE_TAG = "local/python-base:3.11"
IMAGE_TAG = "sentiment-service:test"
DEPLOY_DOCKER = ROOT / "deploy" / "docker"  # the GPU image and the base-image helper; the CPU files are at the root
# What `docker build .` reads (the Dockerfile and what .dockerignore lets through, and more: a change
# anywhere here builds the image again).
BUILD_INPUTS = (
    *("Dockerfile", ".dockerignore", "pyproject.toml", "README.md", "model_runtime", "service"),
    *("deploy/docker/install-app.sh", "deploy/docker/local-base-image.sh", "models/sentiment-bilstm"),
)
CLAIM = "prepare.pid"  # the preparing process's id; whoever creates it prepares
STATUS = "status.json"  # written when preparing ended: {"image": tag} or {"unavailable" or "error": why}
LOG = "prepare.log"
_started: list[subprocess.Popen[bytes]] = []  # kept, so that no running child is garbage-collected


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
    """A Docker engine with its own data root, started for one run of the suite."""

    root: Path

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "DOCKER_HOST": f"unix://{self.root / 'docker.sock'}"}

    def start(self) -> None:
        command = ["nice", "-n", "19", "dockerd", "--data-root", str(self.root / "data")]
        command += ["--exec-root", str(self.root / "exec"), "--host", f"unix://{self.root / 'docker.sock'}"]
        command += ["--pidfile", str(self.root / "dockerd.pid"), "--storage-driver", "vfs"]
        with (self.root / "dockerd.log").open("w") as log:  # the daemon keeps its own copy of the descriptor
            daemon = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 30
        while subprocess.run(["docker", "info"], env=self.env, capture_output=True).returncode != 0:
            if daemon.poll() is not None or time.monotonic() > deadline:
                raise EngineUnavailable(
                    f"the Docker engine did not start: {(self.root / 'dockerd.log').read_text()[-500:]}"
                )
            time.sleep(0.2)

    @property
    def figures(self) -> Path:
        """The figures of this run for the docs (copied to test-artifacts/docker), from every test process."""
        return self.root / "figures.json"

    def record(self, **figures: float | bool) -> None:
        with (self.root / "figures.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            recorded = json.loads(self.figures.read_text()) if self.figures.exists() else {}
            self.figures.write_text(json.dumps({**recorded, **figures}, indent=2))

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
            self.record(image_load_seconds=round(time.monotonic() - started, 1), built=False)
            return IMAGE_TAG
        base = ["nice", "-n", "19", str(DEPLOY_DOCKER / "local-base-image.sh"), BASE_TAG]
        made = subprocess.run(base, env=self.env, timeout=900, capture_output=True, text=True)
        assert made.returncode == 0, f"the base image was not made: {made.stdout[-2000:]} {made.stderr[-3000:]}"
        self.record(base_image_seconds=round(time.monotonic() - started, 1))
        started = time.monotonic()
        self.docker("build", "--build-arg", f"BASE_IMAGE={BASE_TAG}", "-t", IMAGE_TAG, str(ROOT), timeout=1500)
        self.record(build_seconds=round(time.monotonic() - started, 1), built=True)
        if build_key() != key:  # a file changed while the image was built: this image is no one's to reuse
            return IMAGE_TAG
        for old in CACHE.glob("image-*.tar"):
            old.unlink()
        staging = saved.with_suffix(".tmp")
        staging.parent.mkdir(parents=True, exist_ok=True)
        self.docker("save", "-o", str(staging), IMAGE_TAG, timeout=600)
        staging.rename(saved)
        return IMAGE_TAG

    def stop(self) -> None:
        """Remove the containers, stop the daemon (SIGTERM, SIGKILL after 30 s)."""
        pid = read_pid(self.root / "dockerd.pid")
        if pid is None:
            return
        subprocess.run("docker ps -aq | xargs -r docker rm -f", shell=True, env=self.env, capture_output=True)
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a child of this process that has exited but was not reaped yet is no longer alive
        return os.waitpid(pid, os.WNOHANG) == (0, 0)
    except ChildProcessError:  # not our child: it exists
        return True


def prepare(root: Path) -> None:
    """Start the engine and make the image, unless another process claimed ``root`` first; the outcome goes
    to root/STATUS."""
    root.mkdir(parents=True, exist_ok=True)
    try:
        claim = os.open(root / CLAIM, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    os.write(claim, str(os.getpid()).encode())
    os.close(claim)
    status: dict[str, object]
    try:
        reason = unavailable()
        if reason is not None:
            raise EngineUnavailable(reason)
        engine = Engine(root)
        engine.start()
        status = {"image": engine.image()}
    except EngineUnavailable as exc:
        status = {"unavailable": str(exc)}
    except BaseException as exc:  # the docker tests fail with it
        status = {"error": f"{type(exc).__name__}: {exc}"}
    staging = root / f"{STATUS}.tmp"
    staging.write_text(json.dumps(status))
    staging.rename(root / STATUS)


def start_preparing(root: Path) -> None:
    """Start ``prepare`` in a process of its own, unless one has started for ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    if (root / CLAIM).exists():
        return
    with (root / LOG).open("a") as log:
        command = [sys.executable, "-m", "tests.docker_image", "prepare", str(root)]
        _started.append(
            subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        )


def prepared(root: Path) -> tuple[Engine, str]:
    """The engine and the image, once ready (starting ``prepare`` if nothing did). Raises EngineUnavailable
    when no engine can run here."""
    start_preparing(root)
    while not (root / STATUS).exists():
        pid = read_pid(root / CLAIM)
        if pid is not None and not alive(pid) and not (root / STATUS).exists():
            log = (root / LOG).read_text()[-3000:] if (root / LOG).exists() else ""
            raise AssertionError(f"preparing the Docker engine and image ended without an outcome: {log}")
        time.sleep(0.5)
    status = json.loads((root / STATUS).read_text())
    if "unavailable" in status:
        raise EngineUnavailable(status["unavailable"])
    assert "error" not in status, status["error"]
    return Engine(root), status["image"]


def stop(root: Path) -> None:
    """Stop an unfinished ``prepare`` and the engine, and remove ``root`` in the background: the engine's
    layers (full copies with the vfs driver) are gigabytes of small files, tens of seconds to delete, and
    nothing waits for them."""
    pid = read_pid(root / CLAIM)
    if pid is not None and not (root / STATUS).exists() and alive(pid):
        os.killpg(pid, signal.SIGTERM)  # prepare and what it runs (debootstrap, docker build) share its group
    Engine(root).stop()
    if root.exists():
        removing = root.rename(root.with_name(f"{root.name}.removing"))
        subprocess.run(["sh", "-c", 'rm -rf "$0" >/dev/null 2>&1 &', str(removing)], check=True)


if __name__ == "__main__":
    action, directory = sys.argv[1:]
    {"prepare": prepare, "stop": stop}[action](Path(directory))
