"""The data stage's two engines on the same generated 1 GB corpus: local (process pool) vs Dask (LocalCluster).

    .venv/bin/python bench/bench_data_engine.py [--gb 1.0] [--rounds 1] [--out bench/results/data_engine.json]

The corpus is bench_data.py's (English-like text, 1% planted exact and 1% near duplicates, JSON Lines, gzip
and a large plain-text file), written to a temp folder and deleted after. Each round runs the data stage
(near dedup, the same filters as bench_data.py, no contamination check: it runs in this process on both
engines) once per engine, alternating, and records the wall time, MB/s of text read, the peak resident memory
of the whole process tree (this process, the pool's or the cluster's worker processes; sampled every 0.5 s
from /proc), the busy cores, the load average, and whether the two reports agree (all but timings).
The machine may be shared: the load average before and after each run says how busy it was.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_data import MB, TreeMonitor, generate_corpus  # noqa: E402

from llmtui.config import recipe_from_dict  # noqa: E402
from llmtui.data.prepare import prepare_data  # noqa: E402

SOURCES = [{"path": "book.txt"}, {"path": ".", "include": ["*.jsonl", "*.jsonl.gz"]}]  # as bench_data.py


def _config(engine: str, workers: int):
    return recipe_from_dict(
        {
            "data": {
                "sources": SOURCES,
                "dedup": "near",
                "val_fraction": 0.05,
                "workers": workers,
                "contamination_ngram": 0,
                "engine": engine,
                "filters": {"min_words": 20, "max_duplicate_lines": 0.3, "max_symbol_ratio": 0.1},
            }
        }
    ).data


def _loadavg() -> list[float]:
    return [float(v) for v in Path("/proc/loadavg").read_text().split()[:3]]


def run_engine(work: Path, engine: str, workers: int, round_: int) -> tuple[dict, dict]:
    out = work / f"out_{engine}_{round_}"
    load_before = _loadavg()
    with TreeMonitor() as monitor:
        began_cpu, began = monitor.cpu_seconds(), time.perf_counter()
        report = prepare_data(_config(engine, workers), 0, out, work / "corpus").to_json()
        wall = time.perf_counter() - began
        time.sleep(0.6)  # one more sample after the workers end
        cpu = monitor.cpu_seconds() - began_cpu
    shutil.rmtree(out, ignore_errors=True)
    mb = report["bytes_read"] / MB
    row = {
        "engine": engine,
        "round": round_,
        "wall_seconds": round(wall, 2),
        "mb_per_s": round(mb / wall, 2),
        "peak_rss_all_processes_mb": round(monitor.peak_rss / MB),
        "peak_rss_one_process_mb": round(monitor.peak_single / MB),
        "cores_busy": round(cpu / wall, 2),
        "loadavg_before": load_before,
        "loadavg_after": _loadavg(),
        "timings": report["timings"],
    }
    print(json.dumps(row), flush=True)
    return row, report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gb", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=1, help="rounds of (local, dask), alternating")
    parser.add_argument("--workers", type=int, default=0, help="data.workers for both engines (0 = CPU count)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "data_engine.json"))
    args = parser.parse_args()
    workers = args.workers or os.cpu_count() or 1
    work = Path(tempfile.mkdtemp(prefix="llmtui-bench-engine-"))
    result = {
        "benchmark": "data stage: local engine vs Dask engine",
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "note": "shared with other sessions' work: see each run's load average",
        },
    }
    try:
        began = time.perf_counter()
        result["corpus"] = {
            **generate_corpus(work / "corpus", int(args.gb * 1e9)),
            "generation_seconds": round(time.perf_counter() - began, 1),
        }
        import distributed

        result["dask_version"] = distributed.__version__
        result["setup"] = {
            "workers": workers,
            "dask": f"LocalCluster of {workers} worker processes x 1 thread, "
            "started and stopped inside each run (counted); the workers read the files",
            "local": f"process pool of {workers} workers",
            "data": _config("local", workers).model_dump(
                mode="json", include={"dedup", "filters", "contamination_ngram", "engine_partition_mb"}
            ),
        }
        rows, reports = [], {}
        for round_ in range(args.rounds):
            for engine in ("local", "dask") if round_ % 2 == 0 else ("dask", "local"):
                row, report = run_engine(work, engine, workers, round_)
                rows.append(row)
                reports[engine] = {k: v for k, v in report.items() if k != "timings"}
        result["runs"] = rows
        result["median"] = {
            engine: {
                key: statistics.median(r[key] for r in rows if r["engine"] == engine)
                for key in ("wall_seconds", "mb_per_s", "peak_rss_all_processes_mb")
            }
            for engine in ("local", "dask")
        }
        result["reports_identical"] = reports["local"] == reports["dask"]
        result["report"] = {
            k: reports["local"][k]
            for k in ("documents_read", "documents_kept", "exact_duplicates", "near_duplicates", "bytes_read")
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(result["median"]), "identical reports:", result.get("reports_identical"))


if __name__ == "__main__":
    main()
