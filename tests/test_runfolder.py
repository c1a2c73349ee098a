"""The run folder's typed files: round trips, compatibility with what earlier versions wrote, one clear error
naming the file when one is missing or damaged, and the import rules that keep the run folder the one owner
of its layout (no Keras needed: these run in a second)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from llmtui.config.recipe import DataConfig
from llmtui.data.prepare import prepare_data
from llmtui.errors import RunFolderError
from llmtui.runfolder import (
    DataReport,
    RunFolder,
    SplitCounts,
    SplitTokens,
    TokenMeta,
    load_final_model,
    read_token_meta,
    write_data_report,
    write_token_meta,
)
from tests.helpers import write_corpus

PACKAGE = Path(__file__).resolve().parents[1] / "llmtui"


def test_token_meta_round_trip_and_the_file_earlier_versions_wrote(tmp_path):
    meta = TokenMeta(
        vocab_size=300, kind="bpe", train=SplitTokens(1000, 3900, "uint16"), val=SplitTokens(100, 410, "uint16")
    )
    write_token_meta(tmp_path, meta)
    assert read_token_meta(tmp_path) == meta
    # The very dict the tokenizer stage has always written, key for key.
    assert json.loads((tmp_path / "tokens.json").read_text()) == {
        "vocab_size": 300,
        "kind": "bpe",
        "train": {"tokens": 1000, "bytes": 3900, "dtype": "uint16"},
        "val": {"tokens": 100, "bytes": 410, "dtype": "uint16"},
    }
    assert meta.bytes_per_token == pytest.approx(4.1)
    # A task fine-tune (or an imported model) records no token streams: the meta reads, its splits do not.
    write_token_meta(tmp_path, TokenMeta(vocab_size=50, kind="char"))
    bare = read_token_meta(tmp_path)
    assert bare.vocab_size == 50 and bare.train is None
    with pytest.raises(RunFolderError, match="no encoded 'val' split"):
        _ = bare.bytes_per_token


def test_data_report_round_trip_keeps_unknown_keys(tmp_path):
    report = DataReport(
        documents_read=3,
        documents_kept=2,
        exact_duplicates=1,
        characters_kept=120,
        splits={"train": SplitCounts(1, 3, 100), "val": SplitCounts(1, 1, 20)},
        dropped_by_filter={"filters.min_chars": 1},
        contamination=None,
        extra={"added_later": [1, 2]},
    )
    write_data_report(tmp_path, report)
    assert DataReport.from_json(json.loads((tmp_path / "report.json").read_text()), tmp_path) == report
    assert report.summary() == {
        "documents_read": 3,
        "documents_kept": 2,
        "exact_duplicates": 1,
        "near_duplicates": 0,
        "characters_kept": 120,
    }


def test_the_data_stage_writes_the_record_it_returns(tmp_path):
    write_corpus(tmp_path / "corpus", files=4, lines=10)
    run = RunFolder(tmp_path / "run")
    report = prepare_data(DataConfig(sources=[str(tmp_path / "corpus")], val_fraction=0.25), 0, run.data_dir, tmp_path)
    assert run.data_report() == report and report.documents_kept == 4
    written = json.loads(run.data_report_path.read_text())
    # The keys scripts read keep their names and order, and nothing else is added.
    assert list(written)[:4] == ["documents_read", "documents_kept", "exact_duplicates", "near_duplicates"]
    assert set(written) == {
        "documents_read",
        "documents_kept",
        "exact_duplicates",
        "near_duplicates",
        "dropped_by_filter",
        "lines_removed",
        "skipped",
        "ignored",
        "repaired_encoding",
        "pii_scrubbed",
        "bytes_read",
        "characters_kept",
        "splits",
        "per_source",
        "document_length_histogram",
        "contamination",
        "web",
        "timings",
    }
    assert written["splits"]["train"]["chunks"] == report.splits["train"].chunks > 0
    assert all(run.split_path(name).is_file() for name in report.splits)


def test_a_fine_tuned_task_data_report_reads_with_its_own_keys(tmp_path):
    run = RunFolder(tmp_path)
    run.data_dir.mkdir()
    run.data_report_path.write_text(json.dumps({"task": "classification", "train_examples": 8, "val_examples": 2}))
    report = run.data_report()
    assert report.documents_kept == 0 and report.extra == {
        "task": "classification",
        "train_examples": 8,
        "val_examples": 2,
    }


def test_eval_report_round_trip_and_required(tmp_path):
    run = RunFolder(tmp_path)
    assert run.eval_report() is None
    with pytest.raises(RunFolderError, match="no evaluation report"):
        run.require_eval_report()
    run.write_eval_report({"loss": 1.5, "perplexity": 4.48, "files": {"a.txt": {"loss": 2.0}}})
    assert (
        run.eval_report()
        == run.require_eval_report()
        == {"loss": 1.5, "perplexity": 4.48, "files": {"a.txt": {"loss": 2.0}}}
    )


DAMAGE = {
    "truncated": '{"vocab_size": 3',
    "a list": "[1, 2]",
    "not UTF-8": b"\xff\xfe{}",
    "wrong types": '{"vocab_size": "many", "splits": 3, "train": {"tokens": "x"}}',
}


def _damage(path: Path, how: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    content = DAMAGE[how]
    path.write_bytes(content if isinstance(content, bytes) else content.encode())


@pytest.mark.parametrize("how", list(DAMAGE))
@pytest.mark.parametrize(
    "reader", ["token meta", "data report", "evaluation report", "task description", "vocabulary report"]
)
def test_a_damaged_file_is_one_clear_error_naming_it(tmp_path, how, reader):
    run = RunFolder(tmp_path)
    path, read = {
        "token meta": (run.token_meta_path, run.token_meta),
        "data report": (run.data_report_path, run.data_report),
        "evaluation report": (run.eval_report_path, run.require_eval_report),
        "task description": (run.task_path, run.task),
        "vocabulary report": (run.vocabulary_report_path, run.require_vocabulary_report),
    }[reader]
    _damage(path, how)
    if how == "wrong types" and reader not in ("token meta", "data report"):
        assert isinstance(read(), dict)  # free-form records: any JSON object reads
        return
    with pytest.raises(RunFolderError) as caught:
        read()
    assert str(path) in caught.value.message and caught.value.hint
    # The readers that only show facts hide a damaged file instead.
    if reader == "evaluation report":
        assert run.eval_report() is None
    if reader == "vocabulary report":
        assert run.vocabulary_report() is None


def test_a_missing_required_file_names_it(tmp_path):
    run = RunFolder(tmp_path)
    for read, path in ((run.token_meta, run.token_meta_path), (run.data_report, run.data_report_path)):
        with pytest.raises(RunFolderError, match="is missing") as caught:
            read()
        assert str(path) in caught.value.message
    assert run.task() is None  # a run that was not fine-tuned for a task has none
    assert run.architecture() == {} and run.samples() == [] and run.stage_summary("train") == {}
    with pytest.raises(RunFolderError, match="has no trained model"):
        load_final_model(run)


def test_a_damaged_manifest_reads_as_empty(tmp_path):
    run = RunFolder(tmp_path)
    run.manifest_path.write_text('{"stages": {"train": [1]}, "format": 2')
    assert run.read_manifest() == {"stages": {}}
    run.manifest_path.write_text(
        json.dumps({"format": 2, "stages": {"train": [1], "model": {"summary": {"parameters": 7}}}})
    )
    assert run.stage_summary("train") == {} and run.stage_summary("model") == {"parameters": 7}


def test_data_inspect_on_a_damaged_report_says_which_file(tmp_path):
    run = RunFolder(tmp_path / "run")
    _damage(run.data_report_path, "truncated")
    result = subprocess.run(
        [sys.executable, "-m", "llmtui", "data", "inspect", str(run.root)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode != 0
    assert str(run.data_report_path) in result.stderr and "not valid JSON" in result.stderr
    assert "Traceback" not in result.stderr


def _imports(path: Path) -> set[str]:
    """Every llmtui module a file imports, at module level or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name.startswith("llmtui")}


def _module(path: Path) -> str:
    return ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")


def test_only_the_entry_points_import_the_pipeline():
    """The run folder owns the model loading and the layout: evaluation, export, generation, fine-tuned use, the
    TUI's screens and widgets never reach back into the pipeline that made the run."""
    callers = {_module(path) for path in PACKAGE.rglob("*.py") if "llmtui.pipeline" in _imports(path)}
    allowed = {"llmtui.finetune.pipeline"}  # the stages of a fine-tune build on the pipeline's
    assert {c for c in callers if not c.startswith(("llmtui.cli.", "llmtui.tuning.")) and c not in allowed} == set()


def test_widgets_do_not_import_commands_and_the_run_folder_imports_no_ui():
    for path in (PACKAGE / "tui" / "widgets").rglob("*.py"):
        assert not {m for m in _imports(path) if m.startswith("llmtui.cli")}, path
    assert not {
        m for m in _imports(PACKAGE / "runfolder.py") if m.startswith(("llmtui.tui", "llmtui.cli", "llmtui.pipeline"))
    }


def test_a_staged_path_is_named_where_the_commit_puts_it(tmp_path):
    """Messages name a stage's outputs where they will be: not in .staging/, which the commit empties."""
    from llmtui.runfolder import StageTransaction

    run = RunFolder(tmp_path / "run")
    run.root.mkdir()
    manifest = run.read_manifest()
    with StageTransaction(run, manifest, "eval", [], ["eval"]) as transaction:
        page = run.eval_dir / "report.html"
        assert ".staging" in page.parts
        page.parent.mkdir(parents=True, exist_ok=True)
        page.write_text("<html></html>", encoding="utf-8")
        assert run.final_path(page) == run.root / "eval" / "report.html"
        transaction.commit([page], [], {})
    assert (run.root / "eval" / "report.html").is_file()
    assert run.final_path(run.root / "eval" / "report.html") == run.root / "eval" / "report.html"
