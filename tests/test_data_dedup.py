"""Duplicates, splits and contamination: planted cases are found and nothing else is removed."""

from __future__ import annotations

import json
import random

import numpy as np

from llmtui.config import recipe_from_dict
from llmtui.data.dedup import NearDuplicateIndex, minhash_signature
from llmtui.data.prepare import prepare_data, read_split

VOCAB = [f"w{i}" for i in range(3000)]


def words(rng: random.Random, n: int) -> list[str]:
    return [rng.choice(VOCAB) for _ in range(n)]


def write_docs(folder, count=40, seed=0):
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    docs = []
    for i in range(count):
        docs.append(words(rng, 150))
        (folder / f"doc{i:03d}.txt").write_text(" ".join(docs[-1]) + "\n")
    return docs, rng


def config(sources, **data):
    return recipe_from_dict({"data": {"sources": sources, **data}}).data


def all_texts(out, names=("train", "val", "test")):
    return {n: list(read_split(out / f"{n}.jsonl")) for n in names if (out / f"{n}.jsonl").exists()}


def test_signature_similarity_tracks_jaccard():
    rng = random.Random(1)
    base = words(rng, 300)
    close = list(base)
    close[100] = "changed"
    far = words(rng, 300)
    a, b, c = (minhash_signature(" ".join(x), 128) for x in (base, close, far))
    assert np.mean(a == b) > 0.9 and np.mean(a == c) < 0.1
    index = NearDuplicateIndex(0.8, 128)
    assert not index.seen_similar(a) and index.seen_similar(b) and not index.seen_similar(c)


def test_planted_exact_and_near_duplicates_are_found_and_nothing_else(tmp_path):
    src = tmp_path / "src"
    docs, rng = write_docs(src)
    (src / "exact_a.txt").write_text(" ".join(docs[3]) + "\n")
    (src / "exact_b.txt").write_text("  ".join(docs[7]) + "\n\n")  # whitespace differs only
    for k, i in enumerate((5, 11, 20)):
        near = list(docs[i])
        near[30 + k] = "edited"
        near[90] = "another"
        (src / f"near_{k}.txt").write_text(" ".join(near) + "\n")
    related = docs[25][:75] + words(rng, 75)  # half the text shared: similar, not a duplicate
    (src / "related.txt").write_text(" ".join(related) + "\n")
    report = prepare_data(config([str(src)], dedup="near", val_fraction=0.2), 0, tmp_path / "out", tmp_path)
    assert report.documents_read == 46
    assert report.exact_duplicates == 2 and report.near_duplicates == 3
    assert report.documents_kept == 41
    kept = [t for texts in all_texts(tmp_path / "out").values() for t in texts]
    assert sorted(kept) == sorted([" ".join(d) for d in docs] + [" ".join(related)])
    exact_only = prepare_data(config([str(src)], dedup="exact"), 0, tmp_path / "exact", tmp_path)
    assert exact_only.exact_duplicates == 2 and exact_only.near_duplicates == 0
    assert exact_only.documents_kept == 44


def test_report_has_every_field(tmp_path):
    write_docs(tmp_path / "src", count=10)
    report = prepare_data(config(["src"]), 0, tmp_path / "out", tmp_path)
    for key in (
        "documents_read",
        "documents_kept",
        "exact_duplicates",
        "near_duplicates",
        "dropped_by_filter",
        "skipped",
        "repaired_encoding",
        "bytes_read",
        "characters_kept",
        "per_source",
        "document_length_histogram",
        "splits",
        "contamination",
        "timings",
    ):
        assert key in report.to_json()
    assert sum(report.document_length_histogram.values()) == 10
    assert report.per_source["src"]["documents_read"] == 10
    assert json.loads((tmp_path / "out" / "report.json").read_text()) == report.to_json()


def test_test_split_seed_and_document_integrity(tmp_path):
    docs, _ = write_docs(tmp_path / "src", count=60)
    cfg = config(["src"], val_fraction=0.15, test_fraction=0.15, chunk_chars=300)
    report = prepare_data(cfg, 3, tmp_path / "a", tmp_path)
    again = prepare_data(cfg, 3, tmp_path / "b", tmp_path)
    other = prepare_data(cfg, 4, tmp_path / "c", tmp_path)
    assert set(report.splits) == {"train", "val", "test"}
    assert all(report.splits[n].documents > 0 for n in ("train", "val", "test"))
    assert sum(report.splits[n].documents for n in report.splits) == 60
    assert (tmp_path / "a/test.jsonl").read_text() == (tmp_path / "b/test.jsonl").read_text()
    assert (tmp_path / "a/test.jsonl").read_text() != (tmp_path / "c/test.jsonl").read_text()
    assert sum(other.splits[n].documents for n in other.splits) == 60  # another seed, the same documents
    assert {k: v for k, v in report.to_json().items() if k != "timings"} == {
        k: v for k, v in again.to_json().items() if k != "timings"
    }
    # Chunks of one document stay together: each document id appears in exactly one split.
    owners = {}
    for name in ("train", "val", "test"):
        for line in (tmp_path / "a" / f"{name}.jsonl").read_text().splitlines():
            owners.setdefault(json.loads(line)["doc"], set()).add(name)
    assert len(owners) == 60 and all(len(s) == 1 for s in owners.values())
    assert max(len(t) for ts in all_texts(tmp_path / "a").values() for t in ts) <= 300


def test_one_long_document_is_split_by_chunks(tmp_path):
    rng = random.Random(2)
    (tmp_path / "book.txt").write_text("\n".join(" ".join(words(rng, 12)) for _ in range(2000)))
    report = prepare_data(config(["book.txt"], chunk_chars=500, val_fraction=0.1), 0, tmp_path / "out", tmp_path)
    chunks = report.splits["val"].chunks / (report.splits["val"].chunks + report.splits["train"].chunks)
    assert 0.05 < chunks < 0.15


def test_tail_split_holds_out_the_end_of_the_text_in_order(tmp_path):
    """split_by = "tail" (nanoGPT's split): validation is the last val_fraction of the text, test the share
    before it, train the rest, each in reading order."""
    lines = [f"line {i:05d} " + "x" * 30 for i in range(3000)]
    (tmp_path / "book.txt").write_text("\n".join(lines) + "\n")
    data = config(
        ["book.txt"], chunk_chars=500, val_fraction=0.1, test_fraction=0.05, split_by="tail", contamination_ngram=0
    )
    report = prepare_data(data, 0, tmp_path / "out", tmp_path)
    texts = all_texts(tmp_path / "out")
    order = [int(line.split()[1]) for name in ("train", "test", "val") for t in texts[name] for line in t.split("\n")]
    assert order == list(range(3000))  # train, then test, then val: the text in its own order, nothing lost
    total = sum(report.splits[n].characters for n in ("train", "val", "test"))
    assert abs(report.splits["val"].characters / total - 0.10) < 0.01
    assert abs(report.splits["test"].characters / total - 0.05) < 0.01


def test_contamination_counts_overlap_with_val_and_eval_files(tmp_path):
    src = tmp_path / "src"
    docs, rng = write_docs(src, count=30)
    shared = words(rng, 25)
    for k in range(6):  # six otherwise different documents share one passage
        (src / f"shared{k}.txt").write_text(" ".join(words(rng, 60) + shared + words(rng, 60)) + "\n")
    eval_lines = [{"text": " ".join(docs[i][40:70])} for i in range(5)] + [
        {"text": " ".join(words(rng, 40))} for _ in range(3)
    ]
    (tmp_path / "eval.jsonl").write_text("\n".join(json.dumps(e) for e in eval_lines) + "\n")
    report = prepare_data(config(["src"], val_fraction=0.25, eval_files=["eval.jsonl"]), 0, tmp_path / "out", tmp_path)
    texts = all_texts(tmp_path / "out")
    train = "\n".join(texts["train"])
    expected_eval = sum(e["text"] in train for e in eval_lines)
    expected_val = sum(" ".join(shared) in t for t in texts["val"]) if " ".join(shared) in train else 0
    found = report.contamination
    assert found["ngram"] == 13
    assert found["eval:eval.jsonl"]["examples"] == 8
    assert found["val"]["examples"] == len(texts["val"])  # val chunks
    assert found["eval:eval.jsonl"]["contaminated"] == expected_eval >= 1
    assert len(found["eval:eval.jsonl"]["samples"]) == min(expected_eval, 3)
    assert found["val"]["contaminated"] == expected_val
    assert found["train_chunks_overlapping"] >= expected_eval


def test_worker_processes_give_the_same_result(tmp_path):
    write_docs(tmp_path / "src", count=80)
    cfg = config(["src"], dedup="near", workers=2)
    inline = prepare_data(cfg, 0, tmp_path / "inline", tmp_path)
    pooled = prepare_data(cfg, 0, tmp_path / "pooled", tmp_path, parallel_after_bytes=0)
    for name in ("train", "val"):
        assert (tmp_path / "inline" / f"{name}.jsonl").read_text() == (
            tmp_path / "pooled" / f"{name}.jsonl"
        ).read_text()
    drop = ("timings",)
    assert {k: v for k, v in inline.to_json().items() if k not in drop} == {
        k: v for k, v in pooled.to_json().items() if k not in drop
    }


def test_contamination_bitmap_is_sized_to_the_index():
    from llmtui.data.contamination import _bitmap, _bitmap_has

    rng = np.random.default_rng(0)
    small = rng.integers(0, 2**63, size=200, dtype=np.uint64)
    large = rng.integers(0, 2**63, size=200_000, dtype=np.uint64)
    assert _bitmap(small).nbytes <= 1024  # not 16 MB for a small corpus
    assert 200_000 * 32 // 8 <= _bitmap(large).nbytes <= 200_000 * 64 // 8
    for hashes in (small, large):
        bits = _bitmap(hashes)
        assert _bitmap_has(bits, hashes).all()  # every member passes the filter
        others = rng.integers(0, 2**63, size=20_000, dtype=np.uint64)
        assert _bitmap_has(bits, others).mean() < 0.1  # and few others do


def test_contamination_index_files_are_removed_when_the_scan_fails(tmp_path):
    import pytest

    from llmtui.data.contamination import check_contamination

    def failing_train():
        yield "some train text " * 20
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        check_contamination(failing_train(), {"val": ["a b c d e f g h i j k l m n o p"]}, 13, tmp_path, 1, 1 << 20)
    assert list(tmp_path.iterdir()) == []
