"""Shared fixtures: tiny real corpora and recipes written by the tests (no downloads, no ../shared)."""

from __future__ import annotations

import os

# Before anything imports Keras: tests run on TensorFlow unless KERAS_BACKEND says otherwise, quietly.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from llmtui.config import recipe_from_dict  # noqa: E402

WORDS = ("the model reads text and learns to predict the next character of each line "
         "a small network trained on a small corpus still learns which letters follow which").split()


def write_corpus(folder: Path, files: int = 6, lines: int = 40, seed: int = 0) -> Path:
    """A folder of small English-like text files made from a fixed word list."""
    import random

    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(files):
        body = "\n".join(" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 12))) for _ in range(lines))
        (folder / f"doc{i}.txt").write_text(body + "\n", encoding="utf-8")
    return folder


def tiny_recipe_dict(corpus: Path, out_dir: Path, **sections) -> dict:
    recipe = {
        "run": {"name": "tiny", "out_dir": str(out_dir), "seed": 0},
        "data": {"sources": [str(corpus)], "val_fraction": 0.2, "chunk_chars": 400},
        "tokenizer": {"kind": "char"},
        "model": {"arch": "gpt", "layers": 1, "dim": 32, "heads": 2, "context": 16},
        "train": {"steps": 40, "batch_size": 8, "lr": 3e-3, "warmup_steps": 5, "eval_every": 20,
                  "eval_batches": 2, "checkpoint_every": 20, "log_every": 5},
        "eval": {"max_batches": 4},
        "generate": {"prompts": ["the "], "max_tokens": 12},
    }
    for name, values in sections.items():
        recipe.setdefault(name, {}).update(values)
    return recipe


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return write_corpus(tmp_path / "corpus")


@pytest.fixture
def tiny_recipe(corpus: Path, tmp_path: Path):
    return recipe_from_dict(tiny_recipe_dict(corpus, tmp_path / "runs"))


REPOSITORY = Path(__file__).resolve().parents[1]
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
