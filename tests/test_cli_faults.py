"""Bad input and faults as a user meets them: every error is one clear line (and a hint), the right exit code, no
traceback, and no TensorFlow log lines for errors found before training. Real `llmtui` processes with stderr
captured whole (TensorFlow's own log level left at its default, so its noise would show); property tests of
every recipe field (in-process) and every command-line option (one fresh interpreter trying many values).
"""

from __future__ import annotations

import math
import subprocess
import sys
import typing
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from llmtui.config import recipe_from_dict
from llmtui.config.recipe import Recipe, SourceConfig
from llmtui.errors import RecipeError
from llmtui.runfolder import RunFolder
from tests.helpers import ROOT, llmtui_env, run_llmtui, tiny_recipe_dict, write_corpus, write_recipe

# What TensorFlow and absl print on import or first use (cuda probing, oneDNN notices, C++ log lines).
TF_NOISE = (
    "tensorflow/",
    "oneDNN",
    "cuda",
    "absl",
    "E0000 ",
    "W0000 ",
    "I0000 ",
    "XLA",
    "rebuild TensorFlow",
    "cpu_feature_guard",
)


def run_as_user(cwd: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """`llmtui` with TensorFlow's log level and backend left at their defaults, so any noise would show."""
    return run_llmtui(
        *args,
        cwd=cwd,
        timeout=300,
        env=llmtui_env(**{"TF_CPP_MIN_LOG_LEVEL": None, "KERAS_BACKEND": None, **(env or {})}),
    )


def assert_one_clear_error(out: subprocess.CompletedProcess, code: int, *phrases: str) -> None:
    stderr = out.stderr
    assert out.returncode == code, (out.returncode, stderr[-3000:], out.stdout[-2000:])
    assert "Traceback" not in stderr and "internal error" not in stderr, stderr
    if code == 1:  # usage errors (2) come framed by the command-line parser; others are our one line
        assert stderr.startswith("error: "), stderr
    for noise in TF_NOISE:
        assert noise not in stderr, (noise, stderr)
    for phrase in phrases:
        assert phrase in stderr, (phrase, stderr)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A folder with a corpus and the tiny recipe (relative paths, as a user writes them)."""
    folder = tmp_path_factory.mktemp("faults")
    write_corpus(folder / "corpus")
    write_recipe(folder / "tiny.toml", tiny_recipe_dict(Path("corpus"), Path("runs")))
    return folder


@pytest.mark.parametrize(
    "args, code, phrases",
    [
        (["--set", "train.grad_clip=inf"], 2, ["--set train.grad_clip=inf: train.grad_clip: expected a finite number"]),
        (["--set", "train.steps=true"], 2, ["--set train.steps=true: train.steps: expected a number, got True"]),
        (["--set", "train.lr=nan"], 2, ["train.lr: expected a finite number, got nan"]),
        (["--set", "model.layerz=2"], 2, ["--set model.layerz=2: model.layerz: unknown key; did you mean 'layers'?"]),
        (["--until", "nope"], 2, ["'nope' is not a stage"]),
        (["--set", 'data.sources=["missing_folder"]'], 1, ["missing_folder"]),
        (["--set", "run.out_dir=afile"], 1, ["afile is a file, not a folder"]),
    ],
)
def test_errors_before_training_are_one_clear_line_without_tensorflow_noise(project, args, code, phrases):
    (project / "afile").write_text("not a folder")
    assert_one_clear_error(run_as_user(project, "run", "tiny.toml", "--set", "run.name=faults", *args), code, *phrases)


def test_a_recipe_with_many_problems_shows_the_first_six_and_counts_the_rest(tmp_path):
    (tmp_path / "many.toml").write_text(
        '[run]\nseed = "zero"\n[data]\nval_fraction = 0.9\nlowercase = "maybe"\n[tokenizer]\nkind = "words"\n'
        '[model]\narch = "transformer"\nlayers = 0\ndropout = 2.0\n[train]\nstesp = 3\nlr = "fast"\n',
        encoding="utf-8",
    )
    for command in ("validate", "run"):
        out = run_as_user(tmp_path, command, "many.toml", "--set", "eval.max_batches=-1")
        assert_one_clear_error(
            out,
            2,
            "many.toml: run.seed: expected a whole number, got 'zero'",
            "many.toml: model.layers: 0 is out of range; it must be >= 1",
            "... and 4 more problems",
        )
        listed = [line for line in out.stderr.removeprefix("error: ").splitlines() if line.startswith("many.toml: ")]
        assert len(listed) == 6, out.stderr
        assert "train.lr" not in out.stderr and "eval.max_batches" not in out.stderr  # among the 4 counted


def test_a_bad_keras_backend_is_found_before_the_first_stage(project):
    out = run_as_user(project, "run", "tiny.toml", "--set", "run.name=backend", env={"KERAS_BACKEND": "bogus"})
    assert_one_clear_error(out, 1, "unknown Keras backend 'bogus' (from the KERAS_BACKEND environment variable)")
    assert "▶ data" not in out.stdout


def test_a_locked_run_folder_is_one_clear_error(project):
    folder = RunFolder(project / "runs" / "locked")
    with folder:
        out = run_as_user(project, "run", "tiny.toml", "--set", "run.name=locked")
    assert_one_clear_error(out, 1, "is in use by pid")


def test_a_full_disk_is_one_clear_error(project):
    """/dev/full answers every write with ENOSPC, as a full disk does."""
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full on this system")
    folder = project / "runs" / "full"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "recipe.toml.tmp").symlink_to("/dev/full")  # where the run writes its recipe first
    out = run_as_user(project, "run", "tiny.toml", "--set", "run.name=full")
    assert_one_clear_error(out, 1, "No space left on device", str(folder / "recipe.toml"), "hint: the disk is full")
    assert not (folder / "recipe.toml.tmp").exists() and not (folder / "recipe.toml").exists()


def test_a_dangling_link_in_a_source_folder_is_skipped_and_reported(project, tmp_path):
    corpus = write_corpus(tmp_path / "linked")
    (corpus / "gone.txt").symlink_to(tmp_path / "nowhere.txt")
    out = run_as_user(
        project, "run", "tiny.toml", "--set", "run.name=links", "--set", f"data.sources=['{corpus}']", "--until", "data"
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "gone.txt: not found" in out.stdout
    assert not [noise for noise in TF_NOISE if noise in out.stderr], out.stderr  # the data stage needs no TensorFlow


@pytest.mark.parametrize(
    "option, phrase",
    [
        ("--top-p=0", "0.0 is out of range; it must be > 0.0"),
        ("--temperature=inf", "expected a finite number, got inf"),
        ("--seed=-1", "-1 is out of range; it must be >= 0"),
        ("--beams=65", "65 is out of range; it must be <= 64"),
    ],
)
def test_generate_options_obey_the_recipe_rules(project, option, phrase):
    out = run_as_user(project, "generate", "runs/none", option)
    assert_one_clear_error(out, 2, phrase, "the same rule as the recipe's generate.")


# Every recipe field, each given random values of every type -------------------------------------------------
def _fields(model: type[BaseModel], path: tuple) -> list[tuple]:
    found = []
    for name, info in model.model_fields.items():
        nodes = [info.annotation, *typing.get_args(info.annotation)]
        sections = [n for n in nodes if isinstance(n, type) and issubclass(n, BaseModel)]
        found.append(path + (name,))
        if sections and sections[0] is not SourceConfig:
            found.extend(_fields(sections[0], path + (name,)))
    return found


FIELDS = _fields(Recipe, ()) + [("data", "sources", 0, name) for name in SourceConfig.model_fields]
SCALARS = st.one_of(
    st.integers(-(10**20), 10**20), st.floats(allow_nan=True, allow_infinity=True), st.booleans(), st.text(max_size=20)
)
VALUES = st.one_of(SCALARS, st.lists(SCALARS, max_size=3), st.dictionaries(st.text(max_size=8), SCALARS, max_size=2))


def _nested(path: tuple, value) -> dict:
    data: dict = {}
    node = data
    for index, key in enumerate(path[:-1]):
        child = [{"path": "corpus"}] if path[index + 1] == 0 else {}
        if isinstance(node, list):
            node = node[0]
        node[key] = child
        node = child
    (node[0] if isinstance(node, list) else node)[path[-1]] = value
    return data


def _tree(annotation) -> list:
    found, todo = [], [annotation]
    while todo:
        node = todo.pop()
        found.append(node)
        todo.extend(typing.get_args(node))
    return found


def _has_non_finite(value) -> bool:
    items = value if isinstance(value, list) else list(value.values()) if isinstance(value, dict) else [value]
    return any(isinstance(v, float) and not math.isfinite(v) for v in items)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(FIELDS), VALUES)
def test_every_recipe_field_takes_any_value_or_says_why(path, value):
    try:
        recipe_from_dict(_nested(path, value))
    except RecipeError as exc:
        assert exc.exit_code == 2
        assert str(exc).startswith("recipe: ") and "\n  hint" not in str(exc).split("\n")[0]
        return
    assert not _has_non_finite(value), (path, value)  # inf and nan are never accepted
    if isinstance(value, bool):  # nor a boolean where a number is meant
        section = Recipe
        for key in [k for k in path if not isinstance(k, int)][:-1]:
            section = next(
                n
                for n in _tree(section.model_fields[key].annotation)
                if isinstance(n, type) and issubclass(n, BaseModel)
            )
        tree = _tree(section.model_fields[path[-1]].annotation)
        assert bool in tree or typing.Any in tree or not {int, float} & set(tree), (path, value)


def test_every_command_line_option_takes_any_value_or_says_why(tmp_path):
    """One fresh interpreter runs hypothesis over every option of every command (tests/cli_options_fuzz.py)."""
    out = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "cli_options_fuzz.py"), "150"],
        cwd=tmp_path,
        env=llmtui_env(TF_CPP_MIN_LOG_LEVEL=None),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    assert "all refused or failed cleanly" in out.stdout
    for noise in TF_NOISE:
        assert noise not in out.stderr, (noise, out.stderr[-3000:])
