"""Side-by-side comparison of runs: facts and metrics per run, and which run is best on each row."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from llmtui.evaluation.report import TASK_METRICS, fmt
from llmtui.evaluation.run_facts import open_run, require_eval_report, run_facts

# (key, label, format, better): better is "low", "high" or None (a fact, not a score).
ROWS = (
    ("arch", "architecture", "text", None),
    ("parameters", "parameters", "int", None),
    ("vocab", "vocabulary", "text", None),
    ("steps", "steps", "int", None),
    ("train_seconds", "training time", "seconds", "low"),
    ("tokens_per_sec", "tokens/s", "rate", "high"),
    ("val_loss", "validation loss", "float", "low"),
    ("perplexity", "perplexity", "score", "low"),
    ("bits_per_byte", "bits per byte", "float", "low"),
    ("accuracy", "next-token accuracy", "percent", "high"),
    ("top5_accuracy", "top-5 accuracy", "percent", "high"),
)


def compare_runs(runs: Sequence[str | Path]) -> dict:
    """Facts and metrics of each run, rows in display order, and the best run of each scored row.

    Returns {"runs": [{"name", "run_dir", <row key>: value, ...}], "rows": [{"key", "label", "better"}],
    "best": {row key: [run names]}} (ties share the best place; a row with fewer than two values has none).
    Raises RunFolderError for a folder that is not a run or has no eval/report.json.
    """
    entries = []
    task_rows: dict[str, tuple[str, str, str]] = {}
    for given in runs:
        folder = open_run(given)
        report = require_eval_report(folder)
        facts = run_facts(folder)
        entry = {
            "name": facts["name"],
            "run_dir": facts["run_dir"],
            "arch": facts["arch"],
            "parameters": facts["parameters"] or report.get("parameters"),
            "vocab": f"{facts['tokenizer']} {facts['vocab_size'] or report.get('vocab_size')}",
            "vocab_kind": facts["tokenizer"],
            "vocab_size": facts["vocab_size"] or report.get("vocab_size"),
            "steps": facts["steps"] if facts["steps"] is not None else report.get("train_steps"),
            "train_seconds": facts["train_seconds"],
            "tokens_per_sec": facts["tokens_per_sec"] or report.get("train_tokens_per_sec"),
            "val_loss": report.get("loss"),
            "perplexity": report.get("perplexity"),
            "bits_per_byte": report.get("bits_per_byte"),
            "accuracy": report.get("accuracy"),
            "top5_accuracy": report.get("top5_accuracy"),
        }
        if report.get("perplexity") is None:  # a task evaluation: its loss and accuracy are not next-token ones
            entry["val_loss"] = entry["accuracy"] = None
        task = report.get("task") or {}
        for key, label, kind in TASK_METRICS.get(task.get("kind") or "", ()):
            row_key = f"task_{key}"
            entry[row_key] = task.get(key)
            task_rows[row_key] = (f"{task['kind']}: {label}", kind, "high")
        entry["task_kind"] = task.get("kind")
        entries.append(entry)
    names = [e["name"] for e in entries]
    if len(set(names)) < len(names):  # two folders with the same name: tell them apart by path
        for entry in entries:
            entry["name"] = entry["run_dir"]
    rows: list[dict[str, Any]] = [
        {"key": key, "label": label, "format": kind, "better": better}
        for key, label, kind, better in ROWS + tuple((key, *row) for key, row in task_rows.items())
    ]
    best = {}
    for row in rows:
        if row["better"] is None:
            continue
        scored = [(e[row["key"]], e["name"]) for e in entries if isinstance(e.get(row["key"]), (int, float))]
        if len(scored) < 2:
            continue
        target = (min if row["better"] == "low" else max)(value for value, _ in scored)
        best[row["key"]] = [name for value, name in scored if value == target]
    return {"runs": entries, "rows": rows, "best": best}


def formatted(entry: dict, row: dict) -> str:
    value = entry.get(row["key"])
    if row["format"] == "text":
        return "-" if value is None else str(value)
    return fmt(value, row["format"])


def comparison_table(result: dict):
    """The comparison as a Rich table: a column per run, the best value of each scored row in bold green
    (`llmtui compare` and the wizard's Compare screen)."""
    from rich.table import Table

    table = Table(title="Runs compared", title_justify="left")
    table.add_column("", style="bold")
    for entry in result["runs"]:
        table.add_column(entry["name"], justify="right")
    for row in result["rows"]:
        if all(entry.get(row["key"]) is None for entry in result["runs"]):
            continue
        best = result["best"].get(row["key"], [])
        arrow = {"low": " ↓", "high": " ↑"}.get(row["better"], "")
        cells = [
            f"[bold green]{formatted(e, row)}[/]" if e["name"] in best else formatted(e, row) for e in result["runs"]
        ]
        table.add_row(row["label"] + arrow, *cells)
    return table
