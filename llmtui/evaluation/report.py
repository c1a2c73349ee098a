"""The evaluation report of a run: `eval/report.md` and `eval/report.html`, from the run folder's files.

Both pages show the run's key facts, the metrics, the training curves (from the TensorBoard event files),
the loss by position, a confusion matrix for classification tasks, and sample generations (the generate
stage's and those logged during training). The pictures are PNG files in `eval/` beside the pages: the
Markdown page links them relatively, the HTML page embeds them (base64), so it is one self-contained file.

Nothing here needs Keras or TensorFlow, so `llmtui report RUN` redraws the pages at once, e.g. after the
generate stage wrote new samples or a fine-tuning job recorded task metrics.
"""

from __future__ import annotations

import base64
import html
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmtui.evaluation.run_facts import require_eval_report, run_facts
from llmtui.evaluation.tensorboard_logs import read_log_folder
from llmtui.runfolder import RunFolder, write_text_atomic

TASK_KINDS = ("classification", "qa", "translation")
FIGURE_FILES = {
    "curves": "training_curves.png",
    "position": "loss_by_position.png",
    "confusion": "confusion_matrix.png",
}
MAX_TRAINING_SAMPLES = 8


@dataclass
class Figure:
    title: str
    file: str
    png: bytes | None = None
    note: str = ""  # why there is no picture


# Numbers ----------------------------------------------------------------------------------------
def fmt(value, kind: str = "float") -> str:
    """A metric for display: '-' when missing."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if kind == "percent":
        return f"{100 * value:.2f}%"
    if kind == "int":
        return f"{int(value):,}"
    if kind == "seconds":
        minutes, seconds = divmod(float(value), 60)
        return f"{int(minutes)} min {seconds:.1f} s" if minutes else f"{seconds:.1f} s"
    if kind == "rate":
        return f"{value:,.0f}"
    if kind == "score":
        return f"{value:.2f}"
    return f"{value:.4f}"


LM_METRICS = (  # (key, label, format)
    ("loss", "loss (nats/token)", "float"),
    ("perplexity", "perplexity", "score"),
    ("bits_per_byte", "bits per byte", "float"),
    ("accuracy", "next-token accuracy", "percent"),
    ("top5_accuracy", "top-5 accuracy", "percent"),
    ("tokens", "tokens scored", "int"),
    ("uniform_loss", "uniform baseline loss ln(V)", "float"),
)

TASK_METRICS: dict[str, tuple[tuple[str, str, str], ...]] = {  # kind -> (key, label, format)
    "classification": (("accuracy", "accuracy", "percent"), ("macro_f1", "macro-F1", "float")),
    "qa": (("exact_match", "exact match", "percent"), ("f1", "token F1", "float")),
    "translation": (("bleu", "BLEU (0-100)", "score"), ("chrf", "chrF (0-100)", "score")),
    "chat": (("perplexity", "assistant-turn perplexity", "score"), ("accuracy", "assistant-turn accuracy", "percent")),
}


def metric_table(report: Mapping[str, Any]) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """Column names (validation, then each --data file) and rows (label, formatted values) of a report."""
    columns = [("validation", report)] + [(name, values) for name, values in (report.get("files") or {}).items()]
    if len(columns) == 1 and all(report.get(k) is None for k in ("perplexity", "bits_per_byte", "top5_accuracy")):
        # a task evaluation (classification, QA): its loss is not a next-token loss, its scores are the task's
        return ["validation"], [("loss", [fmt(report.get("loss"))])] if report.get("loss") is not None else []
    rows = [(label, [fmt(section.get(key), kind) for _, section in columns]) for key, label, kind in LM_METRICS]
    rows = [(label, values) for label, values in rows if any(v != "-" for v in values)]  # e.g. no bpb for a task
    return [name for name, _ in columns], rows


def task_rows(task: dict) -> list[tuple[str, str]]:
    return [(label, fmt(task.get(key), kind)) for key, label, kind in TASK_METRICS.get(task.get("kind") or "", ())]


FINETUNE_SPLITS = (("domain_val", "domain validation"), ("base_val", "base validation (forgetting)"))
MAX_ANSWERS = 10


def finetune_rows(finetune: dict) -> list[list[str]]:
    """Perplexity before and after fine-tuning (a domain fine-tune's `finetune` section), one row per split."""
    rows = []
    for key, label in FINETUNE_SPLITS:
        split = finetune.get(key) or {}
        before, after = (split.get(when, {}).get("perplexity") for when in ("before", "after"))
        rows.append([label, fmt(before, "score"), fmt(after, "score")])
    return rows


def answer_rows(answers: list[dict]) -> list[list[str]]:
    """The first task answers (input, reference, prediction) a QA or translation evaluation kept."""
    return [
        [str(a.get("input", "")), str(a.get("target", "")), str(a.get("prediction", ""))] for a in answers[:MAX_ANSWERS]
    ]


def facts_rows(facts: dict) -> list[tuple[str, str]]:
    arch = facts.get("arch") or "-"
    shape = f"{arch}, {facts.get('layers')} layers × {facts.get('dim')} wide"
    if facts.get("heads"):
        shape += f", {facts['heads']} heads"
    shape += f", context {facts.get('context')}"
    training = (
        f"{fmt(facts.get('steps'), 'int')} steps (of {fmt(facts.get('planned_steps'), 'int')}) × batch "
        f"{facts.get('batch_size')}, {facts.get('optimizer')} lr {facts.get('lr')} ({facts.get('schedule')})"
    )
    if facts.get("stopped_early"):
        training += ", stopped early"
    return [
        ("run", facts.get("run_dir") or "-"),
        ("model", shape),
        ("embedding", f"{facts.get('embedding')}, dropout {facts.get('dropout')}"),
        ("parameters", fmt(facts.get("parameters"), "int")),
        ("tokenizer", f"{facts.get('tokenizer')}, {fmt(facts.get('vocab_size'), 'int')} tokens"),
        (
            "data",
            (
                f"{fmt(facts.get('train_tokens'), 'int')} training tokens, "
                f"{fmt(facts.get('val_tokens'), 'int')} validation tokens"
            ),
        ),
        ("training", training),
        ("tokens seen", fmt(facts.get("tokens_seen"), "int")),
        ("training time", fmt(facts.get("train_seconds"), "seconds")),
        ("tokens per second", fmt(facts.get("tokens_per_sec"), "rate")),
        ("backend", f"{facts.get('backend')}, {facts.get('precision')}"),
    ]


# Report data ------------------------------------------------------------------------------------
def _figures(run: RunFolder, report: Mapping[str, Any]) -> list[Figure]:
    from llmtui.evaluation import plots

    train, val = read_log_folder(run.scalar_log_dir("train")), read_log_folder(run.scalar_log_dir("val"))
    figures = []
    curves = Figure("Training curves", FIGURE_FILES["curves"])
    if train.scalars.get("loss") or val.scalars.get("loss"):
        curves.png = plots.training_curves_png(
            train.scalars.get("loss", []), val.scalars.get("loss", []), train.scalars.get("lr", [])
        )
    else:
        curves.note = f"no training logs in {run.logs_dir}"
    figures.append(curves)
    series = {"validation": report["loss_by_position"]} if report.get("loss_by_position") else {}
    for name, values in (report.get("files") or {}).items():
        if values.get("loss_by_position"):
            series[Path(name).name] = values["loss_by_position"]
    if series:  # a task evaluation (classification, QA) has none
        figures.append(
            Figure("Loss by position in the context", FIGURE_FILES["position"], plots.loss_by_position_png(series))
        )
    task = report.get("task") or {}
    if task.get("kind") == "classification" and task.get("confusion_matrix"):
        figures.append(
            Figure(
                "Confusion matrix",
                FIGURE_FILES["confusion"],
                plots.confusion_matrix_png(task["confusion_matrix"], task["labels"]),
            )
        )
    return figures


def _training_samples(run: RunFolder) -> list[tuple[int, str]]:
    samples = read_log_folder(run.scalar_log_dir("val")).texts.get("sample", [])
    if len(samples) > MAX_TRAINING_SAMPLES:  # the first, the last and evenly spaced ones between
        step = (len(samples) - 1) / (MAX_TRAINING_SAMPLES - 1)
        samples = [samples[round(i * step)] for i in range(MAX_TRAINING_SAMPLES)]
    return samples


# Pages ------------------------------------------------------------------------------------------
def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(_md_cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    return lines + [""]


def _md_fence(text: str) -> list[str]:
    fence = "```"
    while fence in text:
        fence += "`"
    return [fence + "text", text, fence, ""]


def render_markdown(
    facts: dict,
    report: Mapping[str, Any],
    figures: list[Figure],
    samples: list[dict],
    training_samples: list[tuple[int, str]],
) -> str:
    lines = [
        f"# Evaluation report: {facts['name']}",
        "",
        f"Written {time.strftime('%Y-%m-%d %H:%M:%S %z')}.",
        "",
        "## Run",
        "",
    ]
    lines += _md_table(["", ""], [[k, v] for k, v in facts_rows(facts)])
    columns, rows = metric_table(report)
    lines += ["## Metrics", ""]
    lines += _md_table(["metric"] + columns, [[label] + values for label, values in rows])
    task = report.get("task")
    if task:
        lines += [f"## Task: {task.get('kind')}", ""]
        lines += _md_table(["metric", "value"], [[k, v] for k, v in task_rows(task)])
        if task.get("kind") == "classification":
            lines += _md_table(
                ["label", "precision", "recall", "F1", "support"],
                [
                    [label, fmt(c["precision"]), fmt(c["recall"]), fmt(c["f1"]), str(c["support"])]
                    for label, c in task.get("per_class", {}).items()
                ],
            )
            lines += ["Confusion matrix (rows: true label, columns: predicted):", ""]
            lines += _md_table(
                ["true \\ predicted"] + task["labels"],
                [[label] + [str(n) for n in row] for label, row in zip(task["labels"], task["confusion_matrix"])],
            )
    if report.get("finetune"):
        lines += [f"## Fine-tuning ({report['finetune'].get('method')} from {report['finetune'].get('base')})", ""]
        lines += _md_table(["perplexity on", "before", "after"], finetune_rows(report["finetune"]))
    if report.get("answers"):
        lines += ["## Task answers", ""]
        lines += _md_table(["input", "reference", "prediction"], answer_rows(report["answers"]))
    if report.get("harness"):
        lines += ["## Benchmarks (lm-evaluation-harness)", ""]
        lines += _md_table(
            ["task", "metric", "value"],
            [
                [task, key, fmt(value, "float")]
                for task, metrics in report["harness"].items()
                for key, value in metrics.items()
            ],
        )
    lines += ["## Plots", ""]
    for figure in figures:
        lines += [f"### {figure.title}", ""]
        lines += [f"![{figure.title}]({figure.file})", ""] if figure.png else [f"_{figure.note}_", ""]
    lines += ["## Samples", ""]
    if samples:
        for sample in samples:
            lines += [f"Prompt `{_md_cell(sample.get('prompt', ''))}`:", ""]
            lines += _md_fence(sample.get("prompt", "") + sample.get("text", ""))
    else:
        lines += ["_no generated samples yet (the generate stage writes them: llmtui run RECIPE)_", ""]
    if training_samples:
        lines += ["### During training", ""]
        for step, text in training_samples:
            lines += [f"Step {step}:", ""] + _md_fence(text)
    return "\n".join(lines).rstrip() + "\n"


_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 70rem; margin: 2rem auto;
       padding: 0 1rem; color: #222; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.6rem; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
th { background: #f3f3f3; }
pre { background: #f6f6f6; padding: 0.6rem; white-space: pre-wrap; border-radius: 4px; }
img { max-width: 100%; }
.note { color: #777; font-style: italic; }
"""


NUMERIC = ' class="num"'


def _html_table(header: list[str] | None, rows: list[list[str]], numeric_from: int = 1) -> str:
    e = html.escape
    out = ["<table>"]
    if header:
        out.append("<tr>" + "".join(f"<th>{e(str(h))}</th>" for h in header) + "</tr>")
    for row in rows:
        cells = [
            f"<th>{e(str(c))}</th>" if i == 0 else f"<td{NUMERIC if i >= numeric_from else ''}>{e(str(c))}</td>"
            for i, c in enumerate(row)
        ]
        out.append("<tr>" + "".join(cells) + "</tr>")
    return "\n".join(out + ["</table>"])


def render_html(
    facts: dict,
    report: Mapping[str, Any],
    figures: list[Figure],
    samples: list[dict],
    training_samples: list[tuple[int, str]],
) -> str:
    e = html.escape
    parts = [
        f"<h1>Evaluation report: {e(facts['name'])}</h1>",
        f'<p class="note">Written {e(time.strftime("%Y-%m-%d %H:%M:%S %z"))}.</p>',
        "<h2>Run</h2>",
        _html_table(None, [[k, v] for k, v in facts_rows(facts)], numeric_from=99),
    ]
    columns, rows = metric_table(report)
    parts += ["<h2>Metrics</h2>", _html_table(["metric"] + columns, [[label] + values for label, values in rows])]
    task = report.get("task")
    if task:
        parts += [
            f"<h2>Task: {e(str(task.get('kind')))}</h2>",
            _html_table(["metric", "value"], [[k, v] for k, v in task_rows(task)]),
        ]
        if task.get("kind") == "classification":
            parts.append(
                _html_table(
                    ["label", "precision", "recall", "F1", "support"],
                    [
                        [label, fmt(c["precision"]), fmt(c["recall"]), fmt(c["f1"]), str(c["support"])]
                        for label, c in task.get("per_class", {}).items()
                    ],
                )
            )
    if report.get("finetune"):
        finetune = report["finetune"]
        parts += [
            f"<h2>Fine-tuning ({e(str(finetune.get('method')))} from {e(str(finetune.get('base')))})</h2>",
            _html_table(["perplexity on", "before", "after"], finetune_rows(finetune)),
        ]
    if report.get("answers"):
        parts += [
            "<h2>Task answers</h2>",
            _html_table(["input", "reference", "prediction"], answer_rows(report["answers"]), numeric_from=99),
        ]
    parts.append("<h2>Plots</h2>")
    for figure in figures:
        parts.append(f"<h3>{e(figure.title)}</h3>")
        if figure.png:
            data = base64.b64encode(figure.png).decode("ascii")
            parts.append(f'<img alt="{e(figure.title)}" src="data:image/png;base64,{data}">')
        else:
            parts.append(f'<p class="note">{e(figure.note)}</p>')
    parts.append("<h2>Samples</h2>")
    if samples:
        for sample in samples:
            parts += [
                f"<p>Prompt <code>{e(sample.get('prompt', ''))}</code>:</p>",
                f"<pre>{e(sample.get('prompt', '') + sample.get('text', ''))}</pre>",
            ]
    else:
        parts.append('<p class="note">no generated samples yet (the generate stage writes them)</p>')
    if training_samples:
        parts.append("<h3>During training</h3>")
        for step, text in training_samples:
            parts += [f"<p>Step {step}:</p>", f"<pre>{e(text)}</pre>"]
    body = "\n".join(parts)
    return (
        f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>llmtui report: {e(facts['name'])}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n{body}\n"
        f"</body>\n</html>\n"
    )


# Public -----------------------------------------------------------------------------------------
def write_report(run: RunFolder | str | Path) -> dict[str, Path]:
    """(Re)write eval/report.md, eval/report.html and their PNG pictures from what the run folder holds.

    Needs eval/report.json (RunFolderError otherwise, saying how to make it). Returns the written paths.
    """
    run = run if isinstance(run, RunFolder) else RunFolder(run)
    report = require_eval_report(run)
    facts = run_facts(run)
    figures = _figures(run, report)
    samples = run.samples()
    training_samples = _training_samples(run)
    folder = run.eval_dir
    written: dict[str, Path] = {}
    for figure in figures:
        if figure.png:
            path = folder / figure.file
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_bytes(figure.png)
            tmp.replace(path)
            written[figure.file] = path
    for stale in set(FIGURE_FILES.values()) - set(written):  # pictures of an earlier report that no longer apply
        (folder / stale).unlink(missing_ok=True)
    write_text_atomic(folder / "report.md", render_markdown(facts, report, figures, samples, training_samples))
    write_text_atomic(folder / "report.html", render_html(facts, report, figures, samples, training_samples))
    written["report.md"], written["report.html"] = folder / "report.md", folder / "report.html"
    return written


def record_task_metrics(run: RunFolder | str | Path, metrics: dict, redraw: bool = True) -> dict:
    """Store a task's metrics (a dict from `llmtui.evaluation.tasks`) as `task` in eval/report.json and,
    unless `redraw` is False, rewrite the report pages. Returns the updated report."""
    from llmtui.evaluation.run_eval import model_digest

    if metrics.get("kind") not in TASK_KINDS:
        raise ValueError(f"task metrics need a kind in {TASK_KINDS}, not {metrics.get('kind')!r}")
    run = run if isinstance(run, RunFolder) else RunFolder(run)
    report: dict = dict(run.eval_report() or {"model_digest": model_digest(run)})
    report["task"] = metrics
    run.write_eval_report(report)
    if redraw:
        write_report(run)
    return report
