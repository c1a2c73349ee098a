"""`llmtui tokenizer train/encode` and `llmtui embeddings train` through Typer's CliRunner."""

from __future__ import annotations

import json

import pytest
import tomli_w
from typer.testing import CliRunner

from llmtui.cli.app import app
from tests.helpers import tiny_recipe_dict

runner = CliRunner()


@pytest.fixture
def recipe_file(corpus, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "r.toml"
    path.write_text(
        tomli_w.dumps(tiny_recipe_dict(corpus, tmp_path / "runs", tokenizer={"kind": "bpe", "vocab_size": 280})),
        encoding="utf-8",
    )
    return path


def test_help_lists_the_new_command_groups():
    result = runner.invoke(app, ["--help"])
    assert "tokenizer" in result.output and "embeddings" in result.output


def test_tokenizer_train_prints_the_report_and_encode_shows_pieces(recipe_file, tmp_path):
    result = runner.invoke(app, ["tokenizer", "train", str(recipe_file)])
    assert result.exit_code == 0, result.output
    for words in ("bytes per token", "tokens per word", "unknown rate", "most frequent", "longest"):
        assert words in result.output
    report = json.loads((tmp_path / "runs/tiny/tokenizer/report.json").read_text(encoding="utf-8"))
    assert report["kind"] == "bpe" and report["vocab_size"] <= 280

    shown = runner.invoke(app, ["tokenizer", "encode", "tiny", "the model learns"])
    assert shown.exit_code == 0, shown.output
    as_json = runner.invoke(app, ["tokenizer", "encode", "runs/tiny", "the model learns", "--json"])
    data = json.loads(as_json.output)
    from llmtui.tokenizers import TextTokenizer

    tokenizer = TextTokenizer.load(tmp_path / "runs/tiny/tokenizer")
    assert data["ids"] == tokenizer.encode("the model learns")
    assert data["decoded"] == "the model learns"
    assert "ids: " + " ".join(map(str, data["ids"])) in shown.output.replace("\n", " ")


def test_encode_without_a_run_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["tokenizer", "encode", "nothing-here", "text"])
    assert result.exit_code == 1
    assert "error:" in result.output and "Traceback" not in result.output


def test_embeddings_train_writes_glove_vectors_for_the_vocabulary(recipe_file, tmp_path):
    result = runner.invoke(
        app, ["embeddings", "train", str(recipe_file), "--dim", "8", "--epochs", "1", "--workers", "1"]
    )
    assert result.exit_code == 0, result.output
    path = tmp_path / "runs/tiny/embeddings/vectors.txt"
    from llmtui.models.pretrained import read_vectors

    vectors = read_vectors(path)
    assert vectors.format == "glove" and vectors.dim == 8 and vectors.count > 20
    assert "model.pretrained_path=" in result.output.replace("\n", "")
    bad = runner.invoke(app, ["embeddings", "train", str(recipe_file), "--units", "letters"])
    assert bad.exit_code == 1 and "choose tokens or words" in bad.output


def test_tokenizer_train_and_encode_a_word_vocabulary(corpus, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "w.toml"
    path.write_text(
        tomli_w.dumps(
            tiny_recipe_dict(
                corpus, tmp_path / "runs", tokenizer={"kind": "word", "vocab_size": 200, "min_frequency": 2}
            )
        ),
        encoding="utf-8",
    )
    result = runner.invoke(app, ["tokenizer", "train", str(path)])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "runs/tiny/tokenizer/report.json").read_text(encoding="utf-8"))
    assert report["kind"] == "word" and report["vocab_size"] <= 200
    assert report["validation"]["tokens_per_word"] >= 1.0  # a word is one token, each line break one more
    shown = runner.invoke(app, ["tokenizer", "encode", "tiny", "the model\nqwertyuiop", "--json"])
    assert shown.exit_code == 0, shown.output
    data = json.loads(shown.output)
    from llmtui.tokenizers import TextTokenizer

    tokenizer = TextTokenizer.load(tmp_path / "runs/tiny/tokenizer")
    assert data["ids"][-2:] == [tokenizer.backend.token_to_id("\n"), tokenizer.unk_id]
