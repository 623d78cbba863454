"""The layers and their import rules (import-linter, [tool.importlinter] in pyproject.toml), and the size
rules for the service and training code."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import ROOT

PACKAGES = ("model_runtime", "service", "training", "sentiment_client", "bench", "tests")
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PYTHONPATH": str(root), "PATH": str(Path(sys.executable).parent)},
    )


@pytest.fixture
def tree_copy(tmp_path: Path) -> Path:
    """The packages and the import rules, copied where a test may break them."""
    for name in PACKAGES:
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__", "results"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_import_rules_hold() -> None:
    done = lint_imports(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        ("model_runtime/contract.py", "import service.config", "Layers"),  # the bottom layer reaching up
        ("model_runtime/predictor.py", "import torch", "no web framework and no torch"),
        ("training/model.py", "import service.engine", "Layers"),  # two middle layers side by side
        ("service/engine.py", "import fastapi", "The engine knows no HTTP"),
        ("training/data.py", "import training.pipeline", "No import circles"),  # pipeline imports data
    ],
)
def test_a_forbidden_import_is_caught(tree_copy: Path, module: str, line: str, broken: str) -> None:
    path = tree_copy / module
    path.write_text(path.read_text() + f"\n{line}  # noqa\n")
    done = lint_imports(tree_copy)
    assert done.returncode != 0
    assert f"{broken}" in done.stdout.split("Broken contracts")[-1], done.stdout


def _functions(tree: ast.AST) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]


# Modules that hold one subject whole and need more than 300 lines for it (split by meaning, not by size).
LONGER = {"training/export.py": 400, "training/evaluate.py": 400, "training/sources.py": 400, "training/train.py": 400}


def test_service_and_training_modules_stay_small() -> None:
    """No module over 300 lines (400 for the few in LONGER) and no function over 60 in the service and
    training code."""
    too_long = []
    folders = ("service", "service/adapters", "training", "model_runtime")
    for path in sorted(p for folder in folders for p in (ROOT / folder).glob("*.py")):
        source = path.read_text()
        limit = LONGER.get(str(path.relative_to(ROOT)), 300)
        if len(source.splitlines()) > limit:
            too_long.append(f"{path.name}: {len(source.splitlines())} lines")
        for fn in _functions(ast.parse(source)):
            length = (fn.end_lineno or fn.lineno) - fn.lineno + 1
            if length > 60:
                too_long.append(f"{path.name}:{fn.name}: {length} lines")
    assert not too_long
