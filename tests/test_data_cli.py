"""`llmtui data inspect` and `llmtui data preview`, and the data stage run through the pipeline."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from llmtui.cli.app import app
from llmtui.config import recipe_from_dict
from llmtui.pipeline import Pipeline
from tests.helpers import tiny_recipe_dict, write_recipe

runner = CliRunner()


def write_data_recipe(tmp_path, corpus, **data):
    recipe = tiny_recipe_dict(corpus, tmp_path / "runs", data=data)
    return write_recipe(tmp_path / "recipe.toml", recipe), recipe


def test_inspect_after_the_data_stage(tmp_path, corpus):
    (corpus / "dup.txt").write_text((corpus / "doc0.txt").read_text())
    _, recipe = write_data_recipe(tmp_path, corpus, test_fraction=0.2)
    Pipeline(recipe_from_dict(recipe), base_dir=tmp_path).execute(until="data")
    run_dir = tmp_path / "runs" / "tiny"
    assert (run_dir / "data" / "test.jsonl").exists()
    result = runner.invoke(app, ["data", "inspect", str(run_dir)])
    assert result.exit_code == 0, result.output
    for word in ("documents_read", "exact_duplicates", "splits", "per source", "contamination"):
        assert word in result.output
    as_json = runner.invoke(app, ["data", "inspect", str(run_dir), "--json"])
    assert json.loads(as_json.output)["exact_duplicates"] == 1


def test_inspect_without_a_report_is_a_clear_error(tmp_path):
    (tmp_path / "runs" / "empty").mkdir(parents=True)
    result = runner.invoke(app, ["data", "inspect", str(tmp_path / "runs" / "empty")])
    assert result.exit_code == 1
    assert "data report" in result.output and "Traceback" not in result.output


def test_preview_shows_cleaned_samples(tmp_path, corpus, monkeypatch):
    (corpus / "messy.txt").write_text("MESSY text\x07 with caf\u00c3\u00a9 inside\n\n\n\nend")
    path, _ = write_data_recipe(tmp_path, corpus, lowercase=True)
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["data", "preview", str(path), "-n", "20"])
    assert result.exit_code == 0, result.output
    assert "messy text with caf\u00e9 inside" in result.output and "encoding repaired" in result.output
    assert "7 documents read, 7 shown" in result.output


def test_preview_of_a_missing_source_is_one_message(tmp_path, corpus, monkeypatch):
    path, _ = write_data_recipe(tmp_path, corpus)
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["data", "preview", str(path), "--set", "data.sources=['nowhere']"])
    assert result.exit_code == 1
    assert "no such file or folder" in result.output and "Traceback" not in result.output
