"""The data stage on real files the tests write."""

from __future__ import annotations

import json

import pytest

from llmtui.config import recipe_from_dict
from llmtui.data.builtin import iter_builtin
from llmtui.data.prepare import chunk_text, clean_text, prepare_data, read_split
from llmtui.errors import DataError


def data_config(sources, **kw):
    return recipe_from_dict({"data": {"sources": sources, **kw}}).data


def test_clean_text_normalises():
    raw = "Cafe\u0301  \r\nline\x07 two\t \n\n\n\nend  "
    assert clean_text(raw) == "Caf\u00e9\nline two\n\nend"
    assert clean_text("ABC", lowercase=True) == "abc"


def test_chunk_text_splits_at_line_breaks():
    text = "\n".join(f"line {i:03d}" for i in range(100))  # 100 lines of 8 chars
    chunks = chunk_text(text, 100)
    assert all(len(c) <= 100 for c in chunks)
    assert "\n".join(chunks) == text


def test_prepare_counts_duplicates_skips_and_splits(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(20):
        (src / f"d{i}.txt").write_text(f"document number {i} with some words in it\n", encoding="utf-8")
    (src / "copy.txt").write_text("document number 3   with some words in it\n", encoding="utf-8")  # whitespace dup
    (src / "blob.txt").write_bytes(b"\x00\x01\x02binary")
    (src / "empty.txt").write_bytes(b"")
    (src / "latin1.txt").write_bytes("caf\xe9 au lait".encode("latin-1"))
    (src / "notes.md").write_text("# A markdown note\n\nwith text", encoding="utf-8")
    (src / "picture.png").write_bytes(b"\x89PNG\r\n")  # not a format the readers know: counted, not read
    out = tmp_path / "out"
    report = prepare_data(data_config([str(src)], val_fraction=0.25), seed=0, out_dir=out, base=tmp_path)
    assert report.documents_read == 23  # 20 + copy + notes.md + latin1 (2 skipped)
    assert report.ignored == {"files": 1, "by_type": {"*.png": 1}}
    assert report.exact_duplicates == 1
    assert report.documents_kept == 22
    assert report.repaired_encoding == 1  # the Latin-1 file, read as Windows-1252
    reasons = {s["path"].rsplit("/", 1)[-1]: s["reason"] for s in report.skipped}
    assert set(reasons) == {"blob.txt", "empty.txt"}
    assert "binary" in reasons["blob.txt"] and "empty" in reasons["empty.txt"]
    train, val = list(read_split(out / "train.jsonl")), list(read_split(out / "val.jsonl"))
    assert len(train) + len(val) == 22 and train and val
    assert "caf\u00e9 au lait" in train + val
    assert not set(train) & set(val)
    assert json.loads((out / "report.json").read_text())["documents_kept"] == 22


def test_a_folder_reads_every_supported_format_and_counts_the_rest(tmp_path):
    """30 .txt files, a .jsonl of 20 records, an .html page and a gzipped .md: 52 documents; 3 pictures and a
    file without a suffix are ignored and said so."""
    import gzip

    from llmtui.data.prepare import ignored_line

    src = tmp_path / "src"
    src.mkdir()
    for i in range(30):
        (src / f"d{i:02d}.txt").write_text(f"plain text document number {i} with a few words\n", encoding="utf-8")
    (src / "records.jsonl").write_text(
        "".join(json.dumps({"text": f"record {i} of the jsonl file here"}) + "\n" for i in range(20)), encoding="utf-8"
    )
    (src / "page.html").write_text(
        "<html><body><article><p>An article in a web page with enough words in it "
        "to be kept as the page's main text.</p></article></body></html>",
        encoding="utf-8",
    )
    with gzip.open(src / "notes.md.gz", "wt", encoding="utf-8") as handle:
        handle.write("# Notes\n\ncompressed markdown notes")
    for i in range(3):
        (src / f"shot{i}.png").write_bytes(b"\x89PNG\r\n")
    (src / "LICENSE").write_text("not read: no suffix\n", encoding="utf-8")
    report = prepare_data(data_config([str(src)], val_fraction=0.25), seed=0, out_dir=tmp_path / "o", base=tmp_path)
    assert report.documents_read == 52 and report.skipped == []
    assert report.ignored == {"files": 4, "by_type": {"*.png": 3, "LICENSE": 1}}
    assert ignored_line(report.ignored).startswith("ignored: 4 files, *.png (3), LICENSE (1)")
    only_text = prepare_data(
        data_config([{"path": str(src), "include": ["*.txt"]}], val_fraction=0.25),
        seed=0,
        out_dir=tmp_path / "t",
        base=tmp_path,
    )
    assert only_text.documents_read == 30 and only_text.ignored["files"] == 7  # the jsonl, html, md.gz too


def test_strict_encoding_reports_the_latin1_file(tmp_path):
    (tmp_path / "good.txt").write_text("plain words here\n" * 5, encoding="utf-8")
    (tmp_path / "other.txt").write_text("other words there\n" * 5, encoding="utf-8")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9 au lait".encode("latin-1"))
    config = data_config([{"path": "*.txt", "encoding": "utf-8"}])
    report = prepare_data(config, 0, tmp_path / "o", tmp_path)
    assert report.documents_read == 2 and report.repaired_encoding == 0
    [skip] = report.skipped
    assert skip["path"].endswith("latin1.txt") and "not utf-8 text (invalid byte 0xe9" in skip["reason"]


def test_split_is_reproducible_and_seeded(tmp_path, corpus):
    config = data_config([str(corpus)], chunk_chars=200)
    a = prepare_data(config, 0, tmp_path / "a", tmp_path)
    b = prepare_data(config, 0, tmp_path / "b", tmp_path)
    c = prepare_data(config, 1, tmp_path / "c", tmp_path)
    assert (tmp_path / "a/val.jsonl").read_text() == (tmp_path / "b/val.jsonl").read_text()
    assert (tmp_path / "a/val.jsonl").read_text() != (tmp_path / "c/val.jsonl").read_text()
    assert a.splits == b.splits and c.documents_kept == a.documents_kept


def test_missing_source_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="no such file or folder"):
        prepare_data(data_config(["nowhere/at/all"]), 0, tmp_path / "o", tmp_path)
    with pytest.raises(DataError, match="matches no file"):
        prepare_data(data_config(["*.nothing"]), 0, tmp_path / "o", tmp_path)
    with pytest.raises(DataError, match="unknown builtin corpus"):
        prepare_data(data_config(["builtin:nope"]), 0, tmp_path / "o", tmp_path)


def test_empty_corpus_names_the_filter(tmp_path):
    (tmp_path / "a.txt").write_text("short\n", encoding="utf-8")
    (tmp_path / "b.txt").write_text("tiny\n", encoding="utf-8")
    with pytest.raises(DataError, match="empty after cleaning.*min_chars removed 2"):
        prepare_data(data_config(["*.txt"], min_chars=100), 0, tmp_path / "o", tmp_path)
    assert not (tmp_path / "o" / "train.jsonl").exists()


def test_all_binary_corpus_is_an_error(tmp_path):
    (tmp_path / "x.txt").write_bytes(b"\x00\x00")
    with pytest.raises(DataError, match="no document could be read.*binary"):
        prepare_data(data_config([str(tmp_path / "x.txt")]), 0, tmp_path / "o", tmp_path)


def test_builtin_corpus_is_real_prose():
    docs = []
    for _, text in iter_builtin("python-docs"):
        docs.append(text)
        if len(docs) == 300:
            break
    text = " ".join(docs)
    assert len(text) > 100_000  # the pydoc topics alone are several hundred kB
    assert " the " in text and "function" in text
