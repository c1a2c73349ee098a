"""Shared fixtures (the helpers they use are in tests/helpers.py), and the guards that keep tests out of the
checkout."""

from __future__ import annotations

import os

# Before anything imports Keras: tests run on TensorFlow unless KERAS_BACKEND says otherwise, quietly.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from llmtui.config import recipe_from_dict  # noqa: E402
from tests.helpers import ROOT, tiny_recipe_dict, write_corpus  # noqa: E402


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return write_corpus(tmp_path / "corpus")


@pytest.fixture
def tiny_recipe(corpus: Path, tmp_path: Path):
    return recipe_from_dict(tiny_recipe_dict(corpus, tmp_path / "runs"))


REPOSITORY = ROOT
# Tool caches that may appear in the checkout while tests run; everything else new there is a test's leftover.
_NOT_CHECKED = {".git", ".venv", "__pycache__", ".pytest_cache", ".hypothesis", ".mypy_cache", ".ruff_cache"}


def repository_files() -> set[str]:
    found = set()
    for folder, subfolders, files in os.walk(REPOSITORY):
        subfolders[:] = [d for d in subfolders if d not in _NOT_CHECKED and not d.endswith(".egg-info")]
        found.update(os.path.relpath(os.path.join(folder, f), REPOSITORY) for f in files)
    return found


@pytest.fixture(scope="session", autouse=True)
def _session_outside_the_repository(tmp_path_factory):
    """Module and session fixtures, too, run in a temporary folder: a relative path never lands in the checkout
    (nor reads what an earlier `llmtui run` left there, such as runs/quickstart)."""
    os.chdir(tmp_path_factory.mktemp("cwd"))
    files = repository_files()
    yield files
    os.chdir(REPOSITORY)


@pytest.fixture(autouse=True)
def _in_own_folder(_session_outside_the_repository, tmp_path, monkeypatch):
    """Each test runs in its own temporary folder and fails if it left files in the repository."""
    monkeypatch.chdir(tmp_path)
    yield
    left = sorted(repository_files() - _session_outside_the_repository)
    if left:
        _session_outside_the_repository.update(left)  # blame only the test that wrote them
        pytest.fail(f"the test left files in the repository: {', '.join(left[:10])}", pytrace=False)


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="also run tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
