"""The command line through Typer's CliRunner, and the promises about start-up."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import tomllib
from typer.testing import CliRunner

from llmtui.cli.app import app
from tests.helpers import run_llmtui, tiny_recipe_dict, write_recipe

runner = CliRunner()


def test_help_lists_the_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("run", "validate", "schema", "generate", "tensorboard"):
        assert command in result.output


def test_the_command_tree_is_the_documented_one_in_order():
    import typer.main

    root = typer.main.get_command(app)
    assert list(root.commands) == [
        "run",
        "validate",
        "schema",
        "tensorboard",
        "tune",
        "ladder",
        "generate",
        "chat",
        "eval",
        "report",
        "compare",
        "finetune",
        "classify",
        "answer",
        "export",
        "import",
        "wizard",
        "web",
        "runs",
        "launch",
        "data",
        "tokenizer",
        "embeddings",
        "model",
    ]
    groups = {name: sorted(root.commands[name].commands) for name in ("data", "tokenizer", "embeddings", "model")}
    assert groups == {
        "data": ["inspect", "preview"],
        "tokenizer": ["encode", "train"],
        "embeddings": ["train"],
        "model": ["summary"],
    }


def test_help_validate_and_schema_do_not_import_tensorflow_or_keras(tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text("[train]\nsteps = 3\n", encoding="utf-8")
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from llmtui.cli.app import app\n"
        "r = CliRunner()\n"
        "for args in (['--help'], ['validate', sys.argv[1]], ['schema']):\n"
        "    assert r.invoke(app, args).exit_code == 0, args\n"
        "heavy = [m for m in ('tensorflow', 'keras', 'jax', 'keras_hub') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code, str(recipe)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_validate_prints_the_resolved_recipe_with_overrides(tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text('[run]\nname = "demo"\n', encoding="utf-8")
    result = runner.invoke(app, ["validate", str(recipe), "--set", "train.steps=7"])
    assert result.exit_code == 0
    assert 'name = "demo"' in result.output and "steps = 7" in result.output
    assert "[generate]" in result.output  # defaults are filled in


def test_bad_recipe_is_one_message_and_exit_code_2(tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text("[train]\nstesp = 3\n", encoding="utf-8")
    for command in ("validate", "run"):
        result = runner.invoke(app, [command, str(recipe)])
        assert result.exit_code == 2
        assert "did you mean 'steps'" in result.stderr
        assert "Traceback" not in result.output + result.stderr


def test_schema_is_json():
    result = runner.invoke(app, ["schema"])
    assert result.exit_code == 0
    assert "train" in json.loads(result.output)["properties"]


def test_missing_source_fails_cleanly(tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text(
        f'[run]\nout_dir = "{tmp_path / "runs"}"\n[data]\nsources = ["{tmp_path / "missing"}"]\n', encoding="utf-8"
    )
    result = runner.invoke(app, ["run", str(recipe)])
    assert result.exit_code == 1
    assert "no such file or folder" in result.stderr and "Traceback" not in result.stderr


def test_generate_without_a_run_fails_cleanly(tmp_path):
    result = runner.invoke(app, ["generate", str(tmp_path / "nope")])
    assert result.exit_code == 1
    assert "no run folder" in result.stderr


def test_run_then_generate_through_the_cli(tmp_path, corpus, monkeypatch):
    monkeypatch.chdir(tmp_path)
    recipe = write_recipe(tmp_path / "tiny.toml", tiny_recipe_dict(corpus, tmp_path / "runs", train={"steps": 20}))
    result = runner.invoke(app, ["run", str(recipe)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output + result.stderr
    for line in ("validation loss", "perplexity", "bits per byte", "tokens/s", "wall time", "run folder"):
        assert line in result.output
    result = runner.invoke(app, ["run", str(recipe)], env={"COLUMNS": "200"})
    assert "skipped (inputs unchanged" in result.output
    result = runner.invoke(app, ["generate", "runs/tiny", "--prompt", "the ", "--max-tokens", "10", "--seed", "3"])
    assert result.exit_code == 0, result.output + result.stderr
    assert result.output.startswith("the ")
    again = runner.invoke(app, ["generate", "tiny", "--prompt", "the ", "--max-tokens", "10", "--seed", "3"])
    assert again.output == result.output  # same seed, same text


def test_a_recipe_without_a_run_name_is_named_after_its_file(tmp_path):
    """In a real process: `llmtui validate` says where the run will go, and two nameless recipes never share
    a folder (a name given with --set still wins)."""
    recipe = tmp_path / "my notes.toml"
    recipe.write_text('[model]\narch = "gru"\n', encoding="utf-8")
    out = run_llmtui("validate", str(recipe), cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    assert 'name = "my-notes"' in out.stdout
    assert (
        f"sets no [run] name: the run is named after the file, so its folder is {Path('runs/my-notes')}" in out.stdout
    )
    assert tomllib.loads(out.stdout)["run"]["name"] == "my-notes"  # the note is a TOML comment
    named = run_llmtui("validate", str(recipe), "--set", "run.name=mine", cwd=tmp_path, timeout=120)
    assert 'name = "mine"' in named.stdout and "named after the file" not in named.stdout
