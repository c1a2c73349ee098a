"""What the current model and training choices cost: parameters, FLOPs per token, memory, duration."""

from __future__ import annotations

from rich.table import Table
from textual.widgets import Static

from llmtui.config.recipe import Recipe
from llmtui.tui.wizard_access import wizard_of

# Share of the device's peak FLOP/s a small model reaches (measured here: ~20% for the quickstart on 2 CPU cores),
# plus what every step costs whatever its size, and the first step's compilation.
ASSUMED_UTILISATION = 0.2
STEP_OVERHEAD_S = 0.01
COMPILE_S = 5.0


def _size(value: float) -> str:
    return f"{value / 1e9:,.2f} GB" if value >= 1e8 else f"{value / 1e6:,.1f} MB"


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def cost_table(recipe: Recipe, base_dir, with_duration: bool = True) -> Table:
    from llmtui.models.cost import (
        available_memory_bytes,
        estimate_cost,
        peak_flops,
        preflight_problem,
        vocab_size_for,
    )

    m, t = recipe.model, recipe.train
    vocab, vocab_source = vocab_size_for(recipe, base_dir)
    cost = estimate_cost(m, t, vocab)
    # Two columns, the note after each value (wrapping rather than cut) so the panel reads at 100×30 too.
    table = Table(
        show_header=False,
        box=None,
        padding=(0, 1, 0, 0),
        title="What it costs",
        title_justify="left",
        title_style="bold",
    )
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")

    def row(label: str, value: str, note: str = "") -> None:
        table.add_row(label, f"{value} [dim]{note}[/]" if note else value)

    row("vocabulary", f"{vocab:,}", "trained" if vocab_source.startswith("trained") else "estimated")
    row("parameters", f"{cost.parameters:,}", f"({cost.embedding_parameters:,} embedding)")
    row("FLOPs/token", f"{cost.flops_per_token / 1e6:,.2f} M", "forward+backward")
    tokens_per_step = cost.tokens_per_step * t.grad_accum_steps
    row("tokens/step", f"{tokens_per_step:,}")
    row("memory", _size(cost.memory_bytes), f"({_size(cost.activation_bytes)} activations)")
    problem = preflight_problem(cost, t, t.max_memory_gb * 1e9 or available_memory_bytes())
    if problem:
        row("[red]does not fit[/]", f"[red]{problem}[/]")
    if with_duration:
        total_flops = cost.flops_per_token * tokens_per_step * t.steps
        measured = _measured_tokens_per_sec(recipe, base_dir)
        if measured:
            seconds = tokens_per_step * t.steps / measured
            basis = f"at {measured:,.0f} tokens/s measured in this run"
        else:
            peak, _ = peak_flops(t, "cpu")
            seconds = COMPILE_S + total_flops / (peak * ASSUMED_UTILISATION) + t.steps * STEP_OVERHEAD_S
            basis = f"rough: {ASSUMED_UTILISATION:.0%} of {peak / 1e9:,.0f} GFLOP/s"
        row("training", f"{total_flops / 1e12:,.2f} TFLOP", f"over {t.steps:,} steps")
        row("duration", f"≈ {_duration(seconds)}")
        row("", f"[dim]{basis}[/]")
    return table


def _measured_tokens_per_sec(recipe: Recipe, base_dir) -> float | None:
    from llmtui.runfolder import RunFolder

    try:
        return float(RunFolder.of_recipe(recipe, base_dir).stage_summary("train")["tokens_per_sec"]) or None
    except (KeyError, TypeError, ValueError):  # no finished training yet
        return None


class CostPanel(Static):
    """Refreshed whenever the recipe changes (cheap arithmetic, no Keras)."""

    def __init__(self, with_duration: bool = True, **kwargs):
        super().__init__("", **kwargs)
        self.with_duration = with_duration

    def on_mount(self) -> None:
        self.update_cost()

    def update_cost(self) -> None:
        state = wizard_of(self).state
        self.update(cost_table(state.recipe, state.base_dir, self.with_duration))
