"""Benchmark of the data stage on a generated corpus of at least 1 GB (written to a temp folder, deleted after).

    .venv/bin/python bench/bench_data.py [--gb 1.0] [--baseline-mb 64] [--out bench/results/data.json]

Measures, on the same machine and in the same run:
  * baseline: the data stage on a small slice of the corpus with one process (workers = 1), then with the
    default worker pool, to show what the second core adds;
  * the full corpus: read → clean/filter/hash (worker pool) → exact + near dedup → split/write →
    contamination check, then tokenize (a BPE vocabulary trained on a 32 MB sample, the train split
    encoded into a token file);
  * MB/s per stage, the peak resident memory of the whole process tree (sampled every 0.5 s from /proc),
    and how many cores were busy (CPU seconds of all processes / wall seconds).
The corpus is English-like text from a fixed vocabulary with planted exact duplicates (1%), near
duplicates (1%) in documents of about 0.5-15 kB (5 kB on average), in JSON Lines (some gzip-compressed) and one
large plain-text file, so every reader path that matters for speed is exercised.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import random
import resource
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from llmtui.config import recipe_from_dict  # noqa: E402
from llmtui.data.prepare import prepare_data, read_split  # noqa: E402

MB = 1_000_000
_TICKS = os.sysconf("SC_CLK_TCK")


# Corpus ---------------------------------------------------------------------------------------
def _vocabulary(rng: random.Random, size: int = 20000) -> list[str]:
    letters = "etaoinshrdlcumwfgypbvkjxqz"
    weights = [
        12.7,
        9.1,
        8.2,
        7.5,
        7.0,
        6.7,
        6.3,
        6.1,
        6.0,
        4.3,
        4.0,
        2.8,
        2.8,
        2.4,
        2.4,
        2.2,
        2.0,
        2.0,
        1.9,
        1.5,
        1.0,
        0.8,
        0.2,
        0.2,
        0.1,
        0.1,
    ]
    words = {"the", "of", "and", "to", "in", "a", "is", "that", "for", "it", "as", "was", "with", "be", "by"}
    while len(words) < size:
        words.add("".join(rng.choices(letters, weights, k=rng.choice((2, 3, 4, 5, 5, 6, 6, 7, 8, 9, 10)))))
    return sorted(words)


def _document(rng: random.Random, vocab: list[str], cum: list[float]) -> str:
    paragraphs = []
    for _ in range(rng.randint(2, 24)):
        sentences = []
        for _ in range(rng.randint(2, 8)):
            words = rng.choices(vocab, cum_weights=cum, k=rng.randint(6, 24))
            sentences.append(" ".join(words).capitalize() + rng.choice((".", ".", ".", "?", "!")))
        paragraphs.append(" ".join(sentences))
    return "\n\n".join(paragraphs)


def _near_copy(rng: random.Random, text: str, vocab: list[str]) -> str:
    words = text.split(" ")
    for _ in range(max(1, len(words) // 200)):  # about 0.5% of words changed
        words[rng.randrange(len(words))] = rng.choice(vocab)
    return " ".join(words)


def generate_corpus(folder: Path, target_bytes: int, seed: int = 0) -> dict:
    """JSON Lines files of ~100 MB (every 4th gzip-compressed) and one ~100 MB text file; returns counts."""
    rng = random.Random(seed)
    vocab = _vocabulary(rng)
    weights = [1 / (rank + 1) ** 1.05 for rank in range(len(vocab))]  # Zipf-like
    cum, total = [], 0.0
    for w in weights:
        total += w
        cum.append(total)
    folder.mkdir(parents=True, exist_ok=True)
    written = docs = exact = near = 0
    recent: list[str] = []
    file_index = 0
    text_file_bytes = min(100 * MB, target_bytes // 10)
    with open(folder / "book.txt", "w", encoding="utf-8") as book:
        while book.tell() < text_file_bytes:
            book.write(_document(rng, vocab, cum) + "\n\n")
        written += book.tell()
    while written < target_bytes:
        compressed = file_index % 4 == 3
        path = folder / f"part{file_index:03d}.jsonl{'.gz' if compressed else ''}"
        handle = (
            gzip.open(path, "wt", encoding="utf-8", compresslevel=1)
            if compressed
            else open(path, "w", encoding="utf-8")
        )
        with handle:
            size = 0
            while size < 100 * MB and written + size < target_bytes:
                roll = rng.random()
                if roll < 0.01 and recent:
                    text = rng.choice(recent)
                    exact += 1
                elif roll < 0.02 and recent:
                    text = _near_copy(rng, rng.choice(recent), vocab)
                    near += 1
                else:
                    text = _document(rng, vocab, cum)
                    if len(recent) < 2000:
                        recent.append(text)
                    elif rng.random() < 0.05:
                        recent[rng.randrange(len(recent))] = text
                line = json.dumps({"id": docs, "text": text}) + "\n"
                handle.write(line)
                size += len(text.encode("utf-8"))
                docs += 1
        written += size
        file_index += 1
    return {
        "text_bytes": written,
        "jsonl_documents": docs,
        "planted_exact": exact,
        "planted_near": near,
        "files": sorted(p.name for p in folder.iterdir()),
        "disk_bytes": sum(p.stat().st_size for p in folder.iterdir()),
    }


def slice_corpus(source: Path, folder: Path, target_bytes: int) -> None:
    """The first `target_bytes` of text of the first (uncompressed) JSON Lines file."""
    folder.mkdir(parents=True, exist_ok=True)
    size = 0
    with open(source / "part000.jsonl", encoding="utf-8") as src, open(folder / "slice.jsonl", "w") as out:
        for line in src:
            out.write(line)
            size += len(line)
            if size >= target_bytes:
                break


# Measuring ----------------------------------------------------------------------------------------
class TreeMonitor:
    """Samples the resident memory of this process and all its descendants, and the busy share of CPUs."""

    def __init__(self, interval: float = 0.5):
        self.interval = interval
        self.peak_rss = 0
        self.peak_single = 0
        self.cpu_by_pid: dict[int, float] = {}  # largest CPU seconds seen per process of the tree
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._sample()  # a first sample before anyone asks for CPU seconds
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def cpu_seconds(self) -> float:
        """CPU seconds of the whole process tree so far (worker processes included)."""
        return sum(self.cpu_by_pid.values())

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def _sample(self) -> None:
        me = os.getpid()
        parents, rss, cpu = {}, {}, {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/status") as handle:
                    fields = dict(line.split(":", 1) for line in handle if ":" in line)
                parents[int(entry)] = int(fields["PPid"])
                rss[int(entry)] = int(fields.get("VmRSS", "0 kB").split()[0]) * 1024
                with open(f"/proc/{entry}/stat") as handle:
                    stat = handle.read().rsplit(")", 1)[1].split()
                cpu[int(entry)] = (int(stat[11]) + int(stat[12])) / _TICKS
            except (OSError, ValueError, KeyError):
                continue
        tree = {me}
        changed = True
        while changed:
            changed = False
            for pid, parent in parents.items():
                if parent in tree and pid not in tree:
                    tree.add(pid)
                    changed = True
        for pid in tree:
            if pid in cpu:
                self.cpu_by_pid[pid] = max(self.cpu_by_pid.get(pid, 0.0), cpu[pid])
        total = sum(rss.get(pid, 0) for pid in tree)
        self.peak_rss = max(self.peak_rss, total)
        self.peak_single = max([self.peak_single] + [rss.get(pid, 0) for pid in tree])


def cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def busy_cores_sampler():
    """CPU time of all processes on the machine between two calls, per core (from /proc/stat)."""

    def read():
        with open("/proc/stat") as handle:
            values = [int(v) for v in handle.readline().split()[1:]]
        idle = values[3] + values[4]
        return sum(values), idle

    return read


def run_prepare(corpus: Path, out: Path, workers: int, sources: list, cpu_now=None) -> tuple[dict, float, float]:
    cpu_now = cpu_now or cpu_seconds
    config = recipe_from_dict(
        {
            "data": {
                "sources": sources,
                "dedup": "near",
                "val_fraction": 0.05,
                "workers": workers,
                "filters": {"min_words": 20, "max_duplicate_lines": 0.3, "max_symbol_ratio": 0.1},
            }
        }
    ).data
    began_cpu, began = cpu_now(), time.perf_counter()
    report = prepare_data(config, 0, out, corpus).to_json()  # the report as written to data/report.json
    time.sleep(0.5)  # one more sample of the tree after the workers finish
    return report, time.perf_counter() - began - 0.5, cpu_now() - began_cpu


def stage_rates(report: dict, wall: float) -> dict:
    mb = report["bytes_read"] / MB
    t = report["timings"]

    def rate(seconds):
        return round(mb / seconds, 2) if seconds else None

    return {
        "read": {"seconds": t.get("read_s", 0), "mb_per_s": rate(t.get("read_s"))},
        "clean": {
            "cpu_seconds_all_workers": t.get("clean_s", 0),
            "mb_per_s_per_core": rate(t.get("clean_s")),
            "what": "cleaning, filters, exact hash and MinHash signatures, in the worker pool",
        },
        "dedup": {
            "seconds": t.get("dedup_s", 0),
            "mb_per_s": rate(t.get("dedup_s")),
            "what": "exact-hash set and MinHash LSH lookups in the main process",
        },
        "write": {
            "seconds": t.get("write_s", 0),
            "mb_per_s": rate(t.get("write_s")),
            "what": "chunking, split assignment and writing train/val JSON Lines",
        },
        "contamination": {"seconds": t.get("contamination_s", 0), "mb_per_s": rate(t.get("contamination_s"))},
        "whole_data_stage": {"seconds": round(wall, 2), "mb_per_s": rate(wall)},
    }


def tokenize(out: Path, work: Path, limit_mb: float) -> dict:
    from llmtui.config.recipe import TokenizerConfig
    from llmtui.data.tokens import encode_split
    from llmtui.tokenizers import train_tokenizer

    def sample(limit: int = 32 * MB):
        size = 0
        for text in read_split(out / "train.jsonl"):
            yield text
            size += len(text)
            if size >= limit:
                return

    began = time.perf_counter()
    tokenizer = train_tokenizer(TokenizerConfig(kind="bpe", vocab_size=8192), sample())
    trained = time.perf_counter() - began
    split = out / "train.jsonl"
    if limit_mb:  # encode the first `limit_mb` of the train split (the rate is what is measured)
        split = work / "train_head.jsonl"
        with open(out / "train.jsonl", encoding="utf-8") as source, open(split, "w", encoding="utf-8") as head:
            for line in source:
                head.write(line)
                if head.tell() >= limit_mb * MB:
                    break
    train_bytes = split.stat().st_size
    began_cpu, began = cpu_seconds(), time.perf_counter()
    meta = encode_split(tokenizer, split, work / "train.bin")
    seconds = time.perf_counter() - began
    return {
        "vocabulary_training_seconds_on_32mb": round(trained, 2),
        "encode_seconds": round(seconds, 2),
        "tokens": meta["tokens"],
        "text_mb": round(meta["bytes"] / MB, 1),
        "mb_per_s": round(meta["bytes"] / MB / seconds, 2),
        "tokens_per_s": round(meta["tokens"] / seconds),
        "cores_busy": round((cpu_seconds() - began_cpu) / seconds, 2),
        "encoded_split_file_mb": round(train_bytes / MB, 1),
        "token_file_mb": round((work / "train.bin").stat().st_size / MB, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gb", type=float, default=1.0, help="corpus size in GB of text (at least 1 for the record)")
    parser.add_argument(
        "--tokenize-mb", type=float, default=100, help="encode this many MB of the train split (0 = all of it)"
    )
    parser.add_argument(
        "--baseline-mb", type=float, default=32, help="size of the slice for the 1-vs-N worker baseline"
    )
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "data.json"))
    parser.add_argument("--keep", action="store_true", help="keep the temp folder (for debugging)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="llmtui-bench-data-"))
    result: dict = {
        "benchmark": "data stage",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
    }
    try:
        began = time.perf_counter()
        corpus = generate_corpus(work / "corpus", int(args.gb * 1e9))
        result["corpus"] = {**corpus, "generation_seconds": round(time.perf_counter() - began, 1)}
        print(
            f"corpus: {corpus['text_bytes'] / MB:,.0f} MB of text in {len(corpus['files'])} files "
            f"({corpus['disk_bytes'] / MB:,.0f} MB on disk)",
            flush=True,
        )

        slice_corpus(work / "corpus", work / "slice", int(args.baseline_mb * MB))
        baseline = {}
        for workers in (1, 0):
            with TreeMonitor() as slice_monitor:
                report, wall, cpu = run_prepare(
                    work / "slice",
                    work / f"slice_out_{workers}",
                    workers,
                    [{"path": "slice.jsonl"}],
                    slice_monitor.cpu_seconds,
                )
            baseline["one_process" if workers == 1 else "worker_pool"] = {
                "mb": round(report["bytes_read"] / MB, 1),
                "seconds": round(wall, 2),
                "mb_per_s": round(report["bytes_read"] / MB / wall, 2),
                "cores_busy": round(cpu / wall, 2),
            }
            shutil.rmtree(work / f"slice_out_{workers}")
        baseline["speedup"] = round(baseline["one_process"]["seconds"] / baseline["worker_pool"]["seconds"], 2)
        result["baseline_slice"] = baseline
        print(
            f"baseline on {baseline['one_process']['mb']} MB: one process "
            f"{baseline['one_process']['mb_per_s']} MB/s, pool {baseline['worker_pool']['mb_per_s']} MB/s",
            flush=True,
        )

        sources = [{"path": "book.txt"}, {"path": ".", "include": ["*.jsonl", "*.jsonl.gz"]}]
        machine_stat = busy_cores_sampler()
        total_before, idle_before = machine_stat()
        with TreeMonitor() as monitor:
            report, wall, cpu = run_prepare(work / "corpus", work / "out", 0, sources, monitor.cpu_seconds)
            total_after, idle_after = machine_stat()
            tokens = tokenize(work / "out", work, args.tokenize_mb)
        machine_busy = (1 - (idle_after - idle_before) / max(total_after - total_before, 1)) * (os.cpu_count() or 1)
        result["data_stage"] = {
            "bytes_read": report["bytes_read"],
            "documents_read": report["documents_read"],
            "documents_kept": report["documents_kept"],
            "exact_duplicates": report["exact_duplicates"],
            "near_duplicates": report["near_duplicates"],
            "dropped_by_filter": report["dropped_by_filter"],
            "splits": report["splits"],
            "contamination": {k: v for k, v in report["contamination"].items() if not isinstance(v, dict)}
            | {
                k: {kk: vv for kk, vv in v.items() if kk != "samples"}
                for k, v in report["contamination"].items()
                if isinstance(v, dict)
            },
            "timings": report["timings"],
            "wall_seconds": round(wall, 2),
            "cores_busy_our_processes": round(cpu / wall, 2),
            "cores_busy_whole_machine": round(machine_busy, 2),
        }
        result["stages_mb_per_s"] = stage_rates(report, wall)
        result["stages_mb_per_s"]["tokenize"] = tokens
        result["memory"] = {
            "peak_rss_process_tree_mb": round(monitor.peak_rss / MB, 1),
            "peak_rss_single_process_mb": round(monitor.peak_single / MB, 1),
            "ru_maxrss_main_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / MB, 1),
            "under_1_gb": monitor.peak_rss < 1e9,
        }
        print(json.dumps({k: result[k] for k in ("stages_mb_per_s", "memory")}, indent=2), flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"results: {out}")


if __name__ == "__main__":
    main()
