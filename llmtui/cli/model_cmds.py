"""`llmtui model ...`: what an architecture costs, before any training (no TensorFlow import)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

model_app = typer.Typer(help="Inspect model architectures and what they cost.", no_args_is_help=True)


def vocab_size_for(recipe, base: Path) -> tuple[int, str]:
    """The run's trained vocabulary size if it exists, else what the recipe implies."""
    tokens = base / recipe.run.out_dir / recipe.run.name / "tokenizer" / "tokens.json"
    if tokens.exists():
        return int(json.loads(tokens.read_text(encoding="utf-8"))["vocab_size"]), f"trained ({tokens})"
    kind = recipe.tokenizer.kind
    if kind == "byte":
        return 260, "byte: 256 bytes + 4 special tokens"
    if kind == "char":
        return 256, "char: estimated (the corpus decides; train the tokenizer for the exact figure)"
    return recipe.tokenizer.vocab_size, f"{kind}: tokenizer.vocab_size"


@model_app.command("summary")
def summary(
    recipe: Annotated[Path, typer.Argument(help="Recipe file (TOML).", show_default=False)],
    set_: Annotated[Optional[list[str]], typer.Option("--set", "-s", metavar="SECTION.KEY=VALUE",
                                                      help="Override a recipe value (repeatable).")] = None,
) -> None:
    """Parameters, FLOPs per token and estimated training memory of the recipe's model, and whether it fits."""
    from llmtui.cli.app import user_errors

    with user_errors():
        from rich.console import Console
        from rich.table import Table

        from llmtui.config import load_recipe
        from llmtui.interop.base import is_pretrained_source, read_base_spec
        from llmtui.models.cost import available_memory_bytes, finetune_cost, preflight_problem

        config = load_recipe(recipe, set_ or [])
        m, t = config.model, config.train
        title = ""
        if config.finetune.base and is_pretrained_source(config.finetune.base, Path.cwd()):
            # A pretrained base: its config.json says what it is; no weight is read.
            spec = read_base_spec(config.finetune.base)
            m, vocab = spec.model_config(config.model.context), spec.vocab_size
            vocab_source = f"the base's config ({spec.family}, {spec.format})"
            title = f" (pretrained base {config.finetune.base}, fine-tuned with {config.finetune.method})"
        else:
            vocab, vocab_source = vocab_size_for(config, Path.cwd())
        cost = finetune_cost(m, t, vocab, config.finetune.method if config.finetune.base else "full")
        available = config.train.max_memory_gb * 1e9 or available_memory_bytes()
        table = Table(title=f"{m.arch}: {m.layers} layers × {m.dim} wide, context {m.context}{title}",
                      show_header=False, title_justify="left")
        table.add_column(style="bold")
        table.add_column(justify="right")
        table.add_column(style="dim")
        table.add_row("vocabulary", f"{vocab:,}", vocab_source)
        table.add_row("parameters", f"{cost.parameters:,}", f"{cost.embedding_parameters:,} in embeddings")
        table.add_row("FLOPs per token", f"{cost.flops_per_token / 1e6:,.1f} M", "training: forward + backward")
        table.add_row("tokens per step", f"{cost.tokens_per_step * t.grad_accum_steps:,}",
                      f"batch {t.batch_size} × context {m.context} × accumulation {t.grad_accum_steps}")
        table.add_row("FLOPs per step", f"{cost.flops_per_token * cost.tokens_per_step * t.grad_accum_steps / 1e12:,.3f} T", "")
        table.add_row("memory: weights", _gb(cost.weights_bytes), "float32 master copy")
        table.add_row("memory: gradients + optimizer", _gb(cost.memory_bytes - cost.weights_bytes - cost.activation_bytes),
                      t.optimizer)
        table.add_row("memory: activations", _gb(cost.activation_bytes), f"batch {t.batch_size}, {t.precision}")
        table.add_row("memory: total (estimate)", _gb(cost.memory_bytes), f"available {_gb(available)}")
        console = Console()
        console.print(table)
        problem = preflight_problem(cost, t, available)
        if problem:
            console.print(f"[red]does not fit:[/] {problem}")
            if title:
                console.print("a pretrained base fits more easily with finetune.method = 'lora', "
                              "train.precision = 'mixed_bfloat16' or a shorter model.context")
            raise typer.Exit(1)
        console.print("[green]fits[/] in the memory available")


def _gb(value: float) -> str:
    return f"{value / 1e9:,.2f} GB" if value >= 1e8 else f"{value / 1e6:,.1f} MB"
