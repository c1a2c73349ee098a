"""The architecture ladder: RNN, LSTM, GRU, GPT and Llama-style models trained on the same data and
tokenizer at a matched budget, compared in bits per byte.

Each rung is a real pipeline run in `runs/<name>/ladder/<arch>/` sharing the run's data and tokenizer (hard
links, as tuning trials do). The budget is matched by parameters or by training FLOPs per token (each
architecture's `model.dim` is chosen to come closest to the recipe's own model), or by wall time (every rung
keeps the recipe's sizes and trains for the same number of seconds). A rung whose recipe is a benchmarked
configuration (`llmtui.tuning.peers`) carries the peer's figure and llmtui's from that benchmark.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

from llmtui.config.loader import recipe_from_dict, recipe_to_dict
from llmtui.config.recipe import ModelConfig, Recipe
from llmtui.errors import LlmtuiError, RecipeError
from llmtui.events import Event, Metrics, TrainingStarted
from llmtui.runfolder import RunFolder, write_json_atomic

ARCHS = ("rnn", "lstm", "gru", "gpt", "llama")
RECURRENT = ("rnn", "lstm", "gru")
MATCHES = ("params", "flops", "time")


@dataclass
class Rung:
    arch: str
    dim: int
    parameters: int
    flops_per_token: float
    curve: list[tuple[int, float]] = field(default_factory=list)  # (step, validation loss)
    steps: int = 0
    seconds: float = 0.0
    val_loss: float | None = None
    bits_per_byte: float | None = None
    peer: dict | None = None  # the benchmark's figures, when this rung is a benchmarked configuration

    def as_dict(self) -> dict:
        keys = (
            "arch",
            "dim",
            "parameters",
            "flops_per_token",
            "steps",
            "seconds",
            "val_loss",
            "bits_per_byte",
            "curve",
        ) + (("peer",) if self.peer else ())
        return {k: getattr(self, k) for k in keys}


def matched_dim(model: ModelConfig, arch: str, target: float, match: str, vocab_size: int, train) -> int:
    """The `model.dim` (a valid one for `arch`) whose parameters or FLOPs per token come closest to `target`."""
    from llmtui.models.cost import estimate_cost

    best, best_gap = model.dim, math.inf
    for dim in range(8, 4 * model.dim + 1, 8):
        try:
            candidate = ModelConfig.model_validate({**model.model_dump(mode="json"), "arch": arch, "dim": dim})
        except ValueError:
            continue  # e.g. not a multiple of heads
        if arch == "llama" and (dim // candidate.heads) % 2:
            continue  # rotary embeddings need an even head size
        cost = estimate_cost(candidate, train, vocab_size)
        value = cost.parameters if match == "params" else cost.flops_per_token
        gap = abs(math.log(value / target))
        if gap < best_gap:
            best, best_gap = dim, gap
    return best


class _Curve:
    """Records validation losses; with a time budget, asks training to stop at the first evaluation after it."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.points: list[tuple[int, float]] = []
        self.started: float | None = None
        self.done = False

    def __call__(self, event: Event) -> None:
        if isinstance(event, TrainingStarted) and self.started is None:
            self.started = time.perf_counter()
        if isinstance(event, Metrics) and event.split == "val":
            self.points.append((event.step, float(event.values["loss"])))
            if self.seconds and self.started is not None and time.perf_counter() - self.started > self.seconds:
                self.done = True

    def finished(self) -> bool:
        """Whether the time budget has ended this rung (what its `StopWhen` asks)."""
        return self.done


def run_ladder(
    recipe: Recipe,
    base_dir: Path | str = ".",
    archs: tuple[str, ...] = ARCHS,
    match: str = "params",
    seconds: float = 0.0,
    on_rung=None,
    references: tuple | None = None,
) -> dict:
    """Train each architecture of `archs` at the matched budget; returns the report (also ladder/report.json).

    `references`: the benchmarked configurations a rung is looked up in (default: `peers.REFERENCES`)."""
    from llmtui.models.cost import estimate_cost
    from llmtui.pipeline import Pipeline
    from llmtui.runcontrol import StopWhen
    from llmtui.tuning.peers import REFERENCES, reference_for
    from llmtui.tuning.study import _interrupted, share_artifacts, study_paths

    unknown = [a for a in archs if a not in ARCHS]
    if unknown or not archs:
        raise RecipeError(f"unknown architecture {', '.join(unknown) or '(none)'}; choose from {', '.join(ARCHS)}")
    if match not in MATCHES:
        raise RecipeError(f"unknown budget {match!r}; match by one of {', '.join(MATCHES)}")
    if match == "time" and seconds <= 0:
        raise RecipeError("a time-matched ladder needs --seconds (training seconds per architecture)")
    base_dir = Path(base_dir)
    root, _ = study_paths(recipe, base_dir)
    Pipeline(recipe, base_dir).execute(until="tokenizer")
    tokens = RunFolder(root).token_meta()
    vocab, bytes_per_token = tokens.vocab_size, tokens.bytes_per_token
    reference = estimate_cost(recipe.model, recipe.train, vocab)
    target = reference.parameters if match == "params" else reference.flops_per_token
    rungs = []
    for arch in archs:
        dim = (
            matched_dim(recipe.model, arch, target, match, vocab, recipe.train) if match != "time" else recipe.model.dim
        )
        data = recipe_to_dict(recipe)
        data["model"].update(arch=arch, dim=dim)
        if arch not in RECURRENT:  # stateful training stays with the recurrent rungs
            data["train"]["stateful"] = False
        data["run"].update(name=arch, out_dir=str(root / "ladder"))
        if match == "time":
            data["train"]["steps"] = 10_000_000
        rung_recipe = recipe_from_dict(data, where=f"ladder rung {arch}")
        cost = estimate_cost(rung_recipe.model, rung_recipe.train, vocab)
        rung = Rung(arch, dim, cost.parameters, cost.flops_per_token)
        RunFolder(root / "ladder" / arch).clear()  # every rung trains afresh: its curve is this run's
        share_artifacts(root, root / "ladder" / arch)
        curve = _Curve(seconds if match == "time" else 0.0)
        pipeline = Pipeline(rung_recipe, base_dir, [curve], StopWhen(curve.finished))
        started = time.perf_counter()
        try:
            summary = pipeline.execute(until="eval")
            rung.val_loss, rung.bits_per_byte = summary["val_loss"], summary["bits_per_byte"]
        except _interrupted():
            if not curve.done:
                raise
            rung.val_loss = curve.points[-1][1]  # the time budget ended training at this evaluation
            rung.bits_per_byte = rung.val_loss / math.log(2) / bytes_per_token
        rung.seconds = round(time.perf_counter() - started, 2)
        rung.curve = curve.points
        rung.steps = curve.points[-1][0] if curve.points else 0
        peer = reference_for(rung_recipe, tokens, REFERENCES if references is None else references)
        if peer is not None:
            rung.peer = peer.describe(arch, rung.val_loss)
        rungs.append(rung)
        if on_rung is not None:
            on_rung(rung)
    report = {
        "match": match,
        "target": target,
        "seconds": seconds if match == "time" else None,
        "reference": {"arch": recipe.model.arch, "dim": recipe.model.dim},
        "rungs": [
            r.as_dict() for r in sorted(rungs, key=lambda r: math.inf if r.bits_per_byte is None else r.bits_per_byte)
        ],
    }
    folder = root / "ladder"
    write_json_atomic(folder / "report.json", report)
    write_curves_png(rungs, folder / "curves.png", bytes_per_token)
    return report


def peer_lines(report: dict) -> list[str]:
    """One line per rung that is a benchmarked configuration: the peer's figure, llmtui's, this rung's."""
    lines = []
    for rung in report["rungs"]:
        peer = rung.get("peer")
        if not peer:
            continue
        spread = peer["peer_val_loss"]
        line = (
            f"{rung['arch']} is {peer['name']} at {peer['steps']} steps: {peer['peer']} validation loss "
            f"{spread['median']:.4f} ({spread['min']:.4f}-{spread['max']:.4f}, {spread['seeds']} seeds)"
        )
        ours = peer.get("llmtui_val_loss")
        if ours:
            line += (
                f", llmtui's {rung['arch']} {ours['median']:.4f} ({ours['min']:.4f}-{ours['max']:.4f}, "
                f"{ours['seeds']} seeds)"
            )
        if rung["val_loss"] is not None:
            line += f"; this rung {rung['val_loss']:.4f}"
        lines.append(f"{line}  [{peer['command']}]")
    return lines


def write_curves_png(rungs: list[Rung], path: Path, bytes_per_token: float, size: tuple[int, int] = (800, 500)) -> None:
    """Validation curves of every rung, in bits per byte, overlaid on one chart (Pillow, no plotting library)."""
    try:
        from PIL import Image, ImageDraw
    except ImportError as exc:
        raise LlmtuiError("the ladder's chart needs Pillow (pip install pillow)") from exc
    width, height = size
    left, right, top, bottom = 70, 130, 20, 50
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    series = [(r.arch, [(s, v / math.log(2) / bytes_per_token) for s, v in r.curve]) for r in rungs if r.curve]
    if not series:
        image.save(path)
        return
    steps = [s for _, pts in series for s, _ in pts]
    values = [v for _, pts in series for _, v in pts]
    x0, x1 = min(steps), max(max(steps), min(steps) + 1)
    y0, y1 = min(values), max(max(values), min(values) + 1e-6)
    pad = (y1 - y0) * 0.05
    y0, y1 = y0 - pad, y1 + pad

    def point(step: float, value: float) -> tuple[float, float]:
        return (
            left + (step - x0) / (x1 - x0) * (width - left - right),
            top + (y1 - value) / (y1 - y0) * (height - top - bottom),
        )

    draw.rectangle([left, top, width - right, height - bottom], outline="black")
    for i in range(5):
        value = y0 + (y1 - y0) * i / 4
        _, y = point(x0, value)
        draw.line([left - 4, y, left, y], fill="black")
        draw.text((5, y - 6), f"{value:.3f}", fill="black")
    for i in range(5):
        step = x0 + (x1 - x0) * i / 4
        x, _ = point(step, y0)
        draw.line([x, height - bottom, x, height - bottom + 4], fill="black")
        draw.text((x - 10, height - bottom + 8), f"{step:.0f}", fill="black")
    draw.text((width // 2 - 60, height - 20), "step  ·  validation bits per byte", fill="black")
    colours = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd"]
    for index, (arch, points) in enumerate(series):
        colour = colours[index % len(colours)]
        xy = [point(s, v) for s, v in points]
        if len(xy) > 1:
            draw.line(xy, fill=colour, width=2)
        for x, y in xy:
            draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=colour)
        legend_y = top + 10 + 18 * index
        draw.line([width - right + 10, legend_y + 6, width - right + 30, legend_y + 6], fill=colour, width=3)
        draw.text((width - right + 35, legend_y), arch, fill="black")
    image.save(path)
