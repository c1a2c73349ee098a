"""The data stage on a Dask cluster (data.engine = "dask") gives the local engine's report and files, with
duplicates planted across partitions, the workers reading the files (runs of small files, byte ranges of large
ones) and stopping at the limits as the local reader does; a worker that cannot open a file is one clear error;
the local index's keep rule does not depend on when it merges."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from llmtui.config import recipe_from_dict
from llmtui.data.dedup import NearDuplicateIndex, minhash_signatures
from llmtui.data.prepare import prepare_data

VOCAB = [f"w{i}" for i in range(3000)]


def _words(rng: random.Random, n: int) -> list[str]:
    return [rng.choice(VOCAB) for _ in range(n)]


def _edited(rng: random.Random, words: list[str], count: int) -> list[str]:
    """`words` with `count` of them replaced (each changes 5 of the 5-word shingles)."""
    out = list(words)
    for at in rng.sample(range(len(out)), count):
        out[at] = "edit" + str(rng.randrange(10**6))
    return out


def _planted_corpus(folder) -> dict:
    """Originals first in reading order, their copies at the end: with small partitions every duplicate is in
    another partition than what it duplicates."""
    rng = random.Random(7)
    folder.mkdir(parents=True)
    docs = [_words(rng, 160) for _ in range(40)]
    for i, doc in enumerate(docs):
        (folder / f"a{i:03d}.txt").write_text(" ".join(doc) + "\n")
    copies = {"exact": [3, 17, 33], "near": [5, 11, 29, 36]}
    for k, i in enumerate(copies["exact"]):
        (folder / f"z_exact{k}.txt").write_text("  ".join(docs[i]) + "\n\n")  # whitespace differs only
    for k, i in enumerate(copies["near"]):
        (folder / f"z_near{k}.txt").write_text(" ".join(_edited(rng, docs[i], 1)) + "\n")
    # A chain: b ~ a and c ~ b, c further from a (the keep rule, not connected components, decides c).
    a = docs[20]
    b = _edited(rng, a, 2)
    c = _edited(rng, b, 2)
    (folder / "z_chain_b.txt").write_text(" ".join(b) + "\n")
    (folder / "z_chain_c.txt").write_text(" ".join(c) + "\n")
    (folder / "z_near_of_near.txt").write_text(" ".join(_edited(rng, b, 1)) + "\n")
    (folder / "z_short.txt").write_text("too short\n")  # dropped by data.min_chars
    return copies


@pytest.fixture(scope="module")
def dask_cluster():
    distributed = pytest.importorskip("distributed")
    import logging

    # Threads in this process (cheap), reached over TCP so that a `llmtui` subprocess can use it too.
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=False,
        protocol="tcp",
        host="127.0.0.1",
        dashboard_address=None,
        silence_logs=logging.ERROR,
    ) as cluster:
        yield cluster.scheduler_address


def _data(src, **extra) -> dict:
    return {"sources": [str(src)], "val_fraction": 0.2, "min_chars": 50, **extra}


def _without_timings(report) -> dict:
    """A data report (a `DataReport` or its JSON) without its timings, which differ between runs."""
    as_json = report if isinstance(report, dict) else report.to_json()
    return {k: v for k, v in as_json.items() if k != "timings"}


@pytest.mark.parametrize(
    "extra",
    [
        {"dedup": "near"},
        {
            "dedup": "exact",
            "split_by": "chunk",
            "chunk_chars": 300,
            "filters": {"boilerplate_min_docs": 3},
        },  # the boilerplate pass maps on the cluster too
    ],
)
def test_dask_engine_gives_the_local_report(tmp_path, dask_cluster, extra):
    copies = _planted_corpus(tmp_path / "src")
    local_config = recipe_from_dict({"data": _data(tmp_path / "src", **extra)}).data
    local = prepare_data(local_config, 0, tmp_path / "local", tmp_path)
    # about 2 documents a task: 25 partitions, each duplicate far from its original
    dask_config = local_config.model_copy(
        update={"engine": "dask", "engine_address": dask_cluster, "engine_partition_mb": 0.002}
    )
    distributed = prepare_data(dask_config, 0, tmp_path / "dask", tmp_path)
    assert _without_timings(distributed) == _without_timings(local)
    for name in ("train.jsonl", "val.jsonl"):
        assert (tmp_path / "dask" / name).read_bytes() == (tmp_path / "local" / name).read_bytes()
    assert local.documents_read == 40 + 3 + 4 + 3 + 1
    assert local.dropped_by_filter == {"min_chars": 1}
    assert local.exact_duplicates == len(copies["exact"])
    if extra["dedup"] == "near":
        assert local.near_duplicates >= len(copies["near"]) + 1  # the planted ones and b
    assert distributed.timings["workers"] == 2


def test_the_near_index_keeps_its_rule_across_merges(monkeypatch):
    """A band key names the first kept document that had it, also after the index merged its recent keys into
    the sorted arrays (the rule the cluster engine reproduces)."""
    rng = random.Random(3)
    base = [_words(rng, 120) for _ in range(60)]
    texts = [" ".join(d) for d in base] + [" ".join(_edited(rng, base[i % 60], i % 7)) for i in range(120)]
    signatures = minhash_signatures(texts, 128)

    def verdicts(merge_every: int) -> list[bool]:
        monkeypatch.setattr(NearDuplicateIndex, "MERGE_EVERY", merge_every)
        index = NearDuplicateIndex(0.8, 128)
        return [index.seen_similar(s) for s in signatures]

    once = verdicts(1 << 30)
    assert 20 < sum(once) < 120
    assert verdicts(7) == once


def test_data_engine_through_the_cli(tmp_path, dask_cluster):
    """`llmtui run --until data` with data.engine = "dask" on a running scheduler writes the local engine's
    report; an unreachable scheduler is one error naming the address."""
    import tomli_w

    _planted_corpus(tmp_path / "src")
    recipe = {"run": {"name": "d"}, "data": _data("src", dedup="near")}
    (tmp_path / "r.toml").write_text(tomli_w.dumps(recipe), encoding="utf-8")
    env = {**os.environ, "COLUMNS": "200"}

    def run(*sets: str) -> subprocess.CompletedProcess:
        args = [a for s in sets for a in ("--set", s)]
        return subprocess.run(
            [sys.executable, "-m", "llmtui", "run", "r.toml", "--until", "data", *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    done = run("data.engine=dask", f"data.engine_address={dask_cluster}", "data.engine_partition_mb=0.002")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    report = json.loads((tmp_path / "runs" / "d" / "data" / "report.json").read_text())
    parsed = recipe_from_dict(recipe)
    local = prepare_data(parsed.data, parsed.run.seed, tmp_path / "local", tmp_path)
    assert _without_timings(report) == json.loads(json.dumps(_without_timings(local)))

    bad = run("data.engine=dask", "data.engine_address=tcp://127.0.0.1:9", "run.name=e")
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert "cannot reach the Dask scheduler at 'tcp://127.0.0.1:9'" in bad.stderr
    assert not (tmp_path / "runs" / "e" / "data" / "report.json").exists()


def _split_file(path, rng: random.Random, documents: int) -> None:
    """A split file as the data stage writes it: documents of varied length, some non-ASCII."""
    extra = ["café", "naïve", "日本語", "ünïcödé", "\n"]
    with open(path, "w", encoding="utf-8") as out:
        for _ in range(documents):
            text = " ".join(_words(rng, rng.randrange(1, 60)) + rng.sample(extra, 2))
            out.write(json.dumps({"text": text}) + "\n")


@pytest.mark.parametrize("kind", ["char", "bpe"])
def test_dask_encoding_writes_the_local_token_files(tmp_path, dask_cluster, kind):
    """The tokenizer stage's encoding on the cluster: many small batches in flight on 2 workers, gathered in
    reading order into the same .bin bytes and counts as the local encoder."""
    from llmtui.data.prepare import read_split
    from llmtui.data.tokens import encode_split
    from llmtui.tokenizers import train_tokenizer

    split = tmp_path / "train.jsonl"
    _split_file(split, random.Random(11), 300)
    parsed = recipe_from_dict({"tokenizer": {"kind": kind, "vocab_size": 400}, "data": _data(tmp_path)})
    tokenizer = train_tokenizer(parsed.tokenizer, read_split(split))
    local = encode_split(tokenizer, split, tmp_path / "local.bin", engine=parsed.data)
    dask_config = parsed.data.model_copy(
        update={"engine": "dask", "engine_address": dask_cluster, "engine_partition_mb": 0.0005}
    )  # ~500 characters a task
    distributed = encode_split(tokenizer, split, tmp_path / "dask.bin", engine=dask_config)
    assert distributed == local
    assert (tmp_path / "dask.bin").read_bytes() == (tmp_path / "local.bin").read_bytes()
    # the file is what the tokenizer says, document after document (and not empty, not one batch)
    expected = [i for text in read_split(split) for i in tokenizer.encode(text) + [tokenizer.eos_id]]
    assert local["tokens"] == len(expected) > 4000
    assert np.fromfile(tmp_path / "dask.bin", dtype=local["dtype"]).tolist() == expected
    assert not list(tmp_path.glob("*.tmp"))


def test_tokenizer_stage_on_dask_through_the_cli(tmp_path, dask_cluster):
    """`llmtui run --until tokenizer` with data.engine = "dask" writes the token files a local run writes."""
    import tomli_w

    (tmp_path / "src").mkdir()
    rng = random.Random(5)
    for i in range(30):
        (tmp_path / "src" / f"d{i:02d}.txt").write_text(" ".join(_words(rng, 80)) + "\n")
    recipe = {
        "run": {"name": "local"},
        "data": _data("src"),
        "tokenizer": {"kind": "bpe", "vocab_size": 300},
        "model": {"context": 16},
    }
    (tmp_path / "r.toml").write_text(tomli_w.dumps(recipe), encoding="utf-8")
    env = {**os.environ, "COLUMNS": "200"}

    def run(*sets: str) -> None:
        args = [a for s in sets for a in ("--set", s)]
        done = subprocess.run(
            [sys.executable, "-m", "llmtui", "run", "r.toml", "--until", "tokenizer", *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]

    run()
    run("run.name=dask", "data.engine=dask", f"data.engine_address={dask_cluster}", "data.engine_partition_mb=0.001")
    local, dask = tmp_path / "runs" / "local" / "tokenizer", tmp_path / "runs" / "dask" / "tokenizer"
    for name in ("tokenizer.json", "train.bin", "val.bin", "tokens.json"):
        assert (dask / name).read_bytes() == (local / name).read_bytes(), name
    meta = json.loads((dask / "tokens.json").read_text())
    assert meta["train"]["tokens"] > 1000 and meta["val"]["tokens"] > 100


# The workers read the files themselves ------------------------------------------------------------------------
def _record(words: list[str], **extra) -> str:
    return json.dumps({"text": " ".join(words), **extra}) + "\n"


@pytest.fixture(scope="module")
def mixed_corpus(tmp_path_factory) -> dict:
    """Small text files (the planted corpus), a JSON Lines file of ~120 kB with bad lines in different ranges
    and near copies of its first records at its end, a text file of ~8.5 MB (three ranges of the 4 MB text
    pieces), and a .jsonl.gz of ~60 kB (ranges of its decompressed bytes) with copies of documents read before
    it (in reading order: a*, b, m, p, z*)."""
    import gzip

    folder = tmp_path_factory.mktemp("mixed") / "corpus"
    copies = _planted_corpus(folder)
    rng = random.Random(17)
    records = [_words(rng, 150) for _ in range(110)]
    lines = [_record(r) for r in records]
    lines[29] = "{not json\n"
    lines[49] = json.dumps({"body": "no text field"}) + "\n"
    lines[89] = "[also not json\n"
    lines += [_record(_edited(rng, records[i], 1)) for i in range(10)]  # near copies, ~100 kB later
    (folder / "b_records.jsonl").write_text("".join(lines))
    paragraphs = ["\n".join(" ".join(_words(rng, 12)) for _ in range(rng.randrange(1, 6))) for _ in range(4000)]
    with open(folder / "m_big.txt", "w") as out:
        while out.tell() < 8_500_000:
            out.write("\n\n".join(rng.sample(paragraphs, 200)) + "\n\n")
    a_texts = [(folder / f"a{i:03d}.txt").read_text() for i in (1, 2)]
    with gzip.open(folder / "p_part.jsonl.gz", "wt") as out:
        out.write(_record(records[3]))  # an exact copy of a record in another file
        out.write(_record(a_texts[0].split()))  # an exact copy (up to spaces) of a text file
        out.write(_record(_edited(rng, a_texts[1].split(), 1)))  # a near copy of one
        for _ in range(60):  # ~60 kB: ranges of its decompressed bytes
            out.write(_record(_words(rng, 150)))
        out.write(_record(records[5]))  # an exact copy, in the file's last range
    return {"folder": folder, "copies": copies}


def _same_as_local(tmp_path, data: dict, dask_cluster, partition_mb: float, **dask_changes) -> tuple:
    local_config = recipe_from_dict({"data": data}).data
    local = prepare_data(local_config, 0, tmp_path / "local", tmp_path)
    dask_config = local_config.model_copy(
        update={"engine": "dask", "engine_address": dask_cluster, "engine_partition_mb": partition_mb, **dask_changes}
    )
    distributed = prepare_data(dask_config, 0, tmp_path / "dask", tmp_path)
    assert _without_timings(distributed) == _without_timings(local)
    for name in ("train.jsonl", "val.jsonl"):
        assert (tmp_path / "dask" / name).read_bytes() == (tmp_path / "local" / name).read_bytes()
    assert sorted(p.name for p in (tmp_path / "dask").iterdir()) == ["report.json", "train.jsonl", "val.jsonl"]
    return local, dask_config


def test_workers_read_files_and_ranges_as_the_local_engine(tmp_path, dask_cluster, mixed_corpus):
    """Files read on the workers, the big ones in byte ranges, give the local engine's report and split files:
    the same documents in the same order, the JSON Lines problems merged into one skip for the file (with
    the first bad line's number in the whole file), duplicates found across tasks."""
    from llmtui.data.distributed import DaskEngine, ReadTask
    from llmtui.data.sources import SourceReader

    folder = mixed_corpus["folder"]
    local, dask_config = _same_as_local(
        tmp_path, _data(folder, dedup="near", contamination_ngram=0), dask_cluster, 0.02
    )
    tasks = [
        t for t in DaskEngine(dask_config).read_tasks(SourceReader(dask_config, tmp_path)) if isinstance(t, ReadTask)
    ]
    ranges = [(Path(p.path).name, p.start) for t in tasks for p in t.parts if p.end is not None]
    assert [start for name, start in ranges if name == "m_big.txt"] == [0, 4 << 20, 8 << 20]
    assert len([name for name, _ in ranges if name == "b_records.jsonl"]) >= 5  # ~120 kB in 20 kB ranges
    assert len([name for name, _ in ranges if name == "p_part.jsonl.gz"]) >= 3  # ~60 kB decompressed
    assert len(tasks) < 30  # the small files go together
    assert local.documents_read == 40 + 3 + 4 + 3 + 1 + 117 + 3 + 64  # m_big.txt: 3 pieces of 4 MB
    assert {s["path"].rsplit("/", 1)[-1] for s in local.skipped} == {"b_records.jsonl"}
    reasons = [s["reason"] for s in local.skipped]
    assert reasons[0].startswith("2 lines that are not valid JSON (first: line 30: ")
    assert reasons[1:] == ["1 records without a text at 'text' (first: line 50)"]
    assert local.exact_duplicates == len(mixed_corpus["copies"]["exact"]) + 3
    assert local.near_duplicates >= len(mixed_corpus["copies"]["near"]) + 1 + 10 + 1


@pytest.mark.parametrize("max_documents", [85, 140, 0])
def test_workers_stop_at_the_limits_as_the_local_engine(tmp_path, dask_cluster, mixed_corpus, max_documents):
    """A source's limit and data.max_documents end the reading inside a range or a run of small files, as the
    local reader does: the documents past them, and the problems of a file left unfinished, are not counted.
    A source only the client reads (the builtin corpus) goes between the workers' sources in reading order."""
    folder = mixed_corpus["folder"]
    data = _data(folder, dedup="exact", contamination_ngram=0, max_documents=max_documents)
    data["sources"] = [
        {"path": str(folder / "b_records.jsonl"), "limit": 60},
        {"path": "builtin:python-docs", "limit": 25},
        {"path": str(folder / "b_records.jsonl"), "limit": 30},  # the same file again: a limit of its own
        {"path": str(folder)},
    ]
    local, _ = _same_as_local(tmp_path, data, dask_cluster, 0.02)
    assert local.documents_read == (max_documents or 60 + 25 + 30 + 235)
    assert local.per_source[str(folder / "b_records.jsonl")]["documents_read"] == (60 if max_documents == 85 else 90)
    assert local.per_source["builtin:python-docs"]["documents_read"] == 25
    assert len(local.skipped) == (0 if max_documents else 2)  # only a file read to its end reports problems


def test_a_range_that_is_not_text_ends_its_file_as_locally(tmp_path, dask_cluster):
    """A large text file whose middle piece is binary: the local reader keeps the pieces before it, reports the
    file and reads no further; the workers' ranges give the same (the range after it is left out)."""
    rng = random.Random(9)
    (tmp_path / "src").mkdir()
    paragraphs = [" ".join(_words(rng, 12)) for _ in range(2000)]
    with open(tmp_path / "src" / "big.txt", "wb") as out:
        while out.tell() < 5_000_000:
            out.write(("\n\n".join(rng.sample(paragraphs, 200)) + "\n\n").encode())
        out.write(bytes([0x81, 1, 2, 3, 4, 5, 6, 7]) * 20_000)  # the second piece is binary
        while out.tell() < 8_600_000:
            out.write(("\n\n".join(rng.sample(paragraphs, 200)) + "\n\n").encode())
    (tmp_path / "src" / "small.txt").write_text(" ".join(_words(rng, 100)) + "\n")
    local, _ = _same_as_local(tmp_path, _data(tmp_path / "src", contamination_ngram=0), dask_cluster, 0.02)
    assert local.documents_read == 2  # the first piece of big.txt, and small.txt
    [skip] = local.skipped
    assert skip["path"].endswith("big.txt") and "binary or unknown encoding" in skip["reason"]


def test_a_worker_that_cannot_open_a_file_is_one_clear_error(tmp_path, dask_cluster):
    """The client can read a file the workers cannot (not on a shared filesystem): `llmtui run` stops with
    one message naming the file and the worker, exit 1, no traceback, and leaves no data a later run trusts.
    Here the file is the `llmtui` process's own open descriptor 1000 (/proc/self/fd/1000): the workers (threads
    of this test's process, which closed its copy) do not have it."""
    import tomli_w

    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("needs /proc/self/fd (Linux) to give the client a file the workers do not have")
    (tmp_path / "src").mkdir()
    rng = random.Random(2)
    for i in range(3):
        (tmp_path / "src" / f"d{i}.txt").write_text(" ".join(_words(rng, 80)) + "\n")
    hidden = tmp_path / "only_the_client.txt"
    hidden.write_text(" ".join(_words(rng, 80)) + "\n")
    recipe = {"run": {"name": "d"}, "data": _data("src", dedup="exact")}
    recipe["data"]["sources"] = ["src", "/proc/self/fd/1000"]
    (tmp_path / "r.toml").write_text(tomli_w.dumps(recipe), encoding="utf-8")
    sets = ["data.engine=dask", f"data.engine_address={dask_cluster}"]
    args = [
        sys.executable,
        "-m",
        "llmtui",
        "run",
        "r.toml",
        "--until",
        "data",
        *[a for s in sets for a in ("--set", s)],
    ]
    with open(hidden, "rb") as handle:
        os.dup2(handle.fileno(), 1000)
        try:
            process = subprocess.Popen(
                args,
                cwd=tmp_path,
                env={**os.environ, "COLUMNS": "200"},
                pass_fds=(1000,),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        finally:
            os.close(1000)
    out, err = process.communicate(timeout=300)
    assert process.returncode == 1, out[-2000:] + err[-2000:]
    assert "Traceback" not in err
    assert "the Dask worker tcp://127.0.0.1:" in err and "cannot open /proc/self/fd/1000 (not found)" in err
    assert "same path on every worker" in err
    data = tmp_path / "runs" / "d" / "data"
    assert not [p.name for p in data.iterdir() if p.suffix in (".json", ".jsonl")] if data.exists() else True


def test_web_sources_read_by_the_client_keep_their_place_in_reading_order(tmp_path, dask_cluster):
    """URL sources are fetched by the client (the fetcher's cache and politeness live in one process) and sent
    to the workers, between the sources the workers read themselves: the local report and files still."""
    from tests.test_data_web import Site

    site = Site()
    try:
        copies = _planted_corpus(tmp_path / "src")
        pages = [f"{site.base}/a.html", f"{site.base}/notes.txt"]
        data = _data(tmp_path / "src", dedup="exact", min_chars=20)
        data["sources"] = [pages[0], str(tmp_path / "src"), pages[1]]
        data["web"] = {"cache_dir": str(tmp_path / "cache"), "rate_limit_s": 0.0, "timeout_s": 5, "retries": 0}
        web = recipe_from_dict({"data": data}).data.web
        own_cache = web.model_copy(update={"cache_dir": str(tmp_path / "dask-cache")})  # so both fetch
        local, _ = _same_as_local(tmp_path, data, dask_cluster, 0.002, web=own_cache)
    finally:
        site.server.shutdown()
        site.server.server_close()
    assert [local.per_source[page]["documents_read"] for page in pages] == [1, 1]
    assert local.exact_duplicates == len(copies["exact"])
    assert site.paths().count("/a.html") == 2  # each engine fetched it, the Dask one through its client


def test_a_file_gone_since_it_was_listed_is_skipped_as_locally(tmp_path):
    """A worker that cannot open a file this process cannot open either any more (deleted after the listing) is
    not a shared-filesystem problem: the file is skipped with the reason the local reader gives."""
    from llmtui.data import readers
    from llmtui.data.distributed import FilePart, PartRead, ReadTask, _Accounts
    from llmtui.data.prepare import _Counts
    from llmtui.data.sources import SourceReader

    gone = tmp_path / "gone.txt"
    config = recipe_from_dict({"data": _data(tmp_path)}).data
    reader = SourceReader(config, tmp_path)
    local_reasons: list[str] = []
    list(readers.read_file(gone, "text", None, "text", "auto", local_reasons.append))
    for part in (
        FilePart(str(gone), "text", None, "text", "auto"),
        FilePart(str(gone), "text", None, "text", "auto", 0, 99),
    ):
        task = ReadTask(str(tmp_path), [part], 0)
        worker_saw = PartRead(unreadable=("tcp://127.0.0.1:1", "not found"))
        assert _Accounts(reader, _Counts()).count(task, [worker_saw], np.zeros(0)) == 0
    assert [skip.reason for skip in reader.skips] == local_reasons * 2 == ["not found", "not found"]
