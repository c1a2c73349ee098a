"""File formats of the data stage, on files the tests write: text fields, columns, compression, bad input."""

from __future__ import annotations

import bz2
import gzip
import json
import os

import pytest

from llmtui.config import recipe_from_dict
from llmtui.data.prepare import prepare_data, read_split
from llmtui.data.readers import find_texts
from llmtui.errors import DataError, RecipeError


def run(tmp_path, sources, **data):
    config = recipe_from_dict({"data": {"sources": sources, "contamination_ngram": 0, **data}}).data
    report = prepare_data(config, 0, tmp_path / "out", tmp_path)
    texts = [t for split in report.splits for t in read_split(tmp_path / "out" / f"{split}.jsonl")]
    return report, texts


def test_find_texts_paths():
    record = {"meta": {"body": "b"}, "items": [{"t": "x"}, {"t": "y"}, {"u": 1}], "lines": ["l1", "l2"]}
    assert find_texts(record, ["meta", "body"]) == ["b"]
    assert find_texts(record, ["items", "*", "t"]) == ["x", "y"]
    assert find_texts(record, ["items", "1", "t"]) == ["y"]
    assert find_texts(record, ["lines"]) == ["l1\nl2"]
    assert find_texts(record, ["missing"]) == []


def test_jsonl_nested_field_counts_bad_lines(tmp_path):
    lines = [
        '{"meta": {"body": "first document body"}}',
        '{"meta": {}}',
        "not json at all",
        '{"meta": {"body": "second document body"}}',
        "",
    ]
    (tmp_path / "a.jsonl").write_text("\n".join(lines), encoding="utf-8")
    report, texts = run(tmp_path, [{"path": "a.jsonl", "text_field": "meta.body"}])
    assert sorted(texts) == ["first document body", "second document body"]
    reasons = sorted(s["reason"] for s in report.skipped)
    assert reasons == [
        "1 lines that are not valid JSON (first: line 3: Expecting value)",
        "1 records without a text at 'meta.body' (first: line 2)",
    ]


def test_json_records_by_star_path_and_top_level_list(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps({"data": {"rows": [{"text": "row one"}, {"text": "row two"}]}}))
    (tmp_path / "b.json").write_text(json.dumps([{"text": "list item"}, {"other": 1}]))
    report, texts = run(tmp_path, [{"path": "a.json", "text_field": "data.rows.*.text"}, "b.json"])
    assert sorted(texts) == ["list item", "row one", "row two"]
    assert "records without a text" in report.skipped[0]["reason"]


def test_csv_tsv_columns_and_missing_column(tmp_path):
    (tmp_path / "a.csv").write_text('id,body\n1,"a row, with a comma\nand a line break"\n2,second row\n')
    (tmp_path / "b.tsv").write_text("body\tid\ntab separated row\t1\n")
    (tmp_path / "c.csv").write_text("x,y\n1,2\n")
    report, texts = run(tmp_path, [{"path": "*.[ct]sv", "text_field": "body"}])
    assert sorted(texts) == ["a row, with a comma\nand a line break", "second row", "tab separated row"]
    [skip] = report.skipped
    assert skip["path"].endswith("c.csv") and "no column 'body' (columns: x, y)" in skip["reason"]


def test_parquet_column(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"body": ["parquet one", None, "parquet two"], "n": [1, 2, 3]}), tmp_path / "a.parquet")
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 not really")
    report, texts = run(tmp_path, [{"path": "*.parquet", "text_field": "body"}])
    assert sorted(texts) == ["parquet one", "parquet two"]
    assert "bad.parquet" in report.skipped[0]["path"] and "Parquet" in report.skipped[0]["reason"]


def test_compressed_variants_and_corrupt_archive(tmp_path):
    zstandard = pytest.importorskip("zstandard")
    with gzip.open(tmp_path / "a.txt.gz", "wt", encoding="utf-8") as f:
        f.write("gzip compressed text")
    (tmp_path / "b.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(b'{"text": "zstd json line"}\n'))
    (tmp_path / "c.md.bz2").write_bytes(bz2.compress(b"# bzip2 markdown"))
    (tmp_path / "d.txt.gz").write_bytes(b"\x1f\x8b\x08 this is not gzip")
    report, texts = run(tmp_path, [{"path": ".", "include": ["*.gz", "*.zst", "*.bz2"]}])
    assert sorted(texts) == ["# bzip2 markdown", "gzip compressed text", "zstd json line"]
    [skip] = report.skipped
    assert skip["path"].endswith("d.txt.gz") and "corrupt gzip" in skip["reason"]


def test_html_main_text_without_boilerplate(tmp_path):
    body = "".join(
        f"<p>Sentence {i} of the article explains how rivers carve valleys over long ages.</p>" for i in range(8)
    )
    (tmp_path / "page.html").write_text(
        f"<html><body><nav>Home | Blog | Contact</nav><article><h1>Rivers</h1>{body}</article>"
        "<footer>Copyright footer text</footer></body></html>",
        encoding="utf-8",
    )
    (tmp_path / "other.html").write_text("<html><body><p>" + "Another page with words. " * 20 + "</p></body></html>")
    _, texts = run(tmp_path, [{"path": ".", "include": ["*.html"]}])
    [text] = [t for t in texts if "Rivers" in t]
    assert "Sentence 7 of the article" in text and "Copyright footer" not in text and "Contact" not in text


def test_include_exclude_and_big_text_file_streams_in_pieces(tmp_path, monkeypatch):
    import llmtui.data.readers as readers

    monkeypatch.setattr(readers, "TEXT_PIECE_BYTES", 1000)
    folder = tmp_path / "docs"
    (folder / "sub").mkdir(parents=True)
    (folder / "keep.txt").write_text("\n\n".join(f"paragraph {i} " + "word " * 30 for i in range(40)))
    (folder / "sub" / "also.md").write_text("nested markdown file")
    (folder / "skip_me.txt").write_text("excluded file")
    report, texts = run(
        tmp_path, [{"path": "docs", "include": ["*.txt", "*.md"], "exclude": ["skip_*"]}], chunk_chars=5000
    )
    assert "excluded file" not in texts and "nested markdown file" in texts
    assert report.documents_read > 5  # keep.txt (about 7 kB) came in pieces of about 1 kB
    assert sum(t.count("paragraph ") for t in texts) == 40


def test_bad_inputs_are_explained(tmp_path):
    (tmp_path / "ok.txt").write_text("a readable document", encoding="utf-8")
    (tmp_path / "ok2.txt").write_text("another readable document", encoding="utf-8")
    (tmp_path / "binary.txt").write_bytes(bytes(range(256)) * 4)
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "noise.txt").write_bytes(bytes([0x81, 0x01, 0x02, 0x03, 0x04, 0x05]) * 50)
    root = os.geteuid() == 0  # root reads any file: no permission test then
    if not root:
        (tmp_path / "locked.txt").write_text("secret", encoding="utf-8")
        (tmp_path / "locked.txt").chmod(0)
    report, texts = run(tmp_path, ["*.txt"])
    reasons = {s["path"].rsplit("/", 1)[-1]: s["reason"] for s in report.skipped}
    assert sorted(texts) == ["a readable document", "another readable document"]
    assert "binary" in reasons["binary.txt"] and reasons["empty.txt"] == "empty file"
    assert "binary or unknown encoding" in reasons["noise.txt"]
    if not root:
        assert reasons["locked.txt"] == "permission denied"


def test_recipe_rejects_bad_source_options():
    with pytest.raises(RecipeError, match="unknown text encoding"):
        recipe_from_dict({"data": {"sources": [{"path": "a", "encoding": "klingon"}]}})
    with pytest.raises(RecipeError, match="format"):
        recipe_from_dict({"data": {"sources": [{"path": "a", "format": "docx"}]}})


def test_hf_source_without_datasets_is_a_clear_error(tmp_path):
    try:
        import datasets  # noqa: F401

        pytest.skip("datasets is installed; this checks the message for users without it")
    except ImportError:
        pass
    with pytest.raises(DataError, match="needs the 'datasets' package"):
        run(tmp_path, ["hf:wikitext"])


def test_byte_ranges_read_what_the_whole_file_gives(tmp_path, monkeypatch):
    """A file read range by range (as the Dask engine's workers read it) gives the documents of a whole read,
    in order: text pieces cut near each multiple of TEXT_PIECE_BYTES at a blank line, a line break, or inside
    a line without either (never inside a UTF-8 character); JSON Lines by the range a line begins in, with
    the ranges' record problems merged into the file's, line numbers counted over the whole file."""
    import random

    import llmtui.data.readers as readers

    monkeypatch.setattr(readers, "TEXT_PIECE_BYTES", 1000)
    rng = random.Random(4)
    parts = []
    for _ in range(300):
        words = " ".join(f"wörd{rng.randrange(100)}" for _ in range(rng.randrange(1, 60)))
        parts.append(words + rng.choice(["\n\n", "\n", " "]))
    text_file = tmp_path / "a.txt"
    text_file.write_text("".join(parts) + "é" * 1500 + "x" * 1200 + "\n\n\n\n" + "tail")  # a run with no break

    def whole(path, fmt, compression=None):
        problems: list[str] = []
        got = [
            (text, repaired)
            for _, text, repaired in readers.read_file(path, fmt, compression, "text", "auto", problems.append)
        ]
        return got, problems

    def by_ranges(path, fmt, step, compression=None):
        size = readers.gzip_size(path) if compression else path.stat().st_size
        got, merged, lines = [], readers.RecordProblems(), 0
        for start in range(0, size, step):
            problems = readers.RecordProblems()
            got += readers.read_range(path, fmt, "text", "auto", start, start + step, problems, compression)
            merged.merge(problems, lines)
            lines += problems.lines
        return got, merged.reasons()

    expected, _ = whole(text_file, "text")
    assert len(expected) > 10
    assert "".join(t for t, _ in expected).replace("\n", "").replace(" ", "") == text_file.read_text().replace(
        "\n", ""
    ).replace(" ", "")
    for step in (1000, 3000):
        assert by_ranges(text_file, "text", step)[0] == expected

    jsonl = tmp_path / "b.jsonl"
    with open(jsonl, "w", encoding="utf-8") as out:
        for i in range(400):
            out.write(
                "{broken\n" if i in (70, 300) else json.dumps({"text": f"döc {i} " * rng.randrange(1, 20)}) + "\n"
            )
            if i % 50 == 0:
                out.write("\n")
    expected, problems = whole(jsonl, "jsonl")
    assert problems and problems[0].startswith("2 lines that are not valid JSON (first: line 73: ")
    for step in (97, 1000, 7000):
        assert by_ranges(jsonl, "jsonl", step) == (expected, problems)

    # gzip: ranges of the decompressed bytes (their size from the file's trailer) read the same documents
    for path, fmt, step in ((text_file, "text", 3000), (jsonl, "jsonl", 1000)):
        packed = tmp_path / f"{path.name}.gz"
        packed.write_bytes(gzip.compress(path.read_bytes()))
        assert readers.gzip_size(packed) == path.stat().st_size
        assert whole(packed, fmt, "gzip") == whole(path, fmt)
        assert by_ranges(packed, fmt, step, "gzip") == by_ranges(path, fmt, step)
