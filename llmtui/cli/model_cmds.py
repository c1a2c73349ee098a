"""`llmtui model ...`: what an architecture costs, before any training (no TensorFlow import)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from llmtui.cli.common import user_errors

cli = typer.Typer(help="Inspect model architectures and what they cost.", no_args_is_help=True)


@cli.command("summary")
def summary(
    recipe: Annotated[Path, typer.Argument(help="Recipe file (TOML).", show_default=False)],
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", "-s", metavar="SECTION.KEY=VALUE", help="Override a recipe value (repeatable)."),
    ] = None,
    mesh: Annotated[
        str | None,
        typer.Option(
            metavar="DATAxMODEL",
            help="Also show memory per device under model parallelism on this device mesh, "
            "e.g. 2x4 (default: train.mesh when train.distribute = model_parallel).",
        ),
    ] = None,
) -> None:
    """Parameters, FLOPs per token and estimated training memory of the recipe's model, and whether it fits.

    With --mesh (or a model_parallel recipe with train.mesh), also what each device holds when the weights and optimizer state are split over the mesh's model axis and each batch over its data axis.
    """  # noqa: E501  (Typer's rich help keeps a docstring's line breaks: one paragraph, one line)
    with user_errors():
        from rich.console import Console
        from rich.table import Table

        from llmtui.config import load_recipe
        from llmtui.interop.base import is_pretrained_source, read_base_spec
        from llmtui.models.cost import available_memory_bytes, finetune_cost, preflight_problem, vocab_size_for

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
        table = Table(
            title=f"{m.arch}: {m.layers} layers × {m.dim} wide, context {m.context}{title}",
            show_header=False,
            title_justify="left",
        )
        table.add_column(style="bold")
        table.add_column(justify="right")
        table.add_column(style="dim")
        table.add_row("vocabulary", f"{vocab:,}", vocab_source)
        table.add_row("parameters", f"{cost.parameters:,}", f"{cost.embedding_parameters:,} in embeddings")
        table.add_row("FLOPs per token", f"{cost.flops_per_token / 1e6:,.1f} M", "training: forward + backward")
        table.add_row(
            "tokens per step",
            f"{cost.tokens_per_step * t.grad_accum_steps:,}",
            f"batch {t.batch_size} × context {m.context} × accumulation {t.grad_accum_steps}",
        )
        table.add_row(
            "FLOPs per step", f"{cost.flops_per_token * cost.tokens_per_step * t.grad_accum_steps / 1e12:,.3f} T", ""
        )
        table.add_row("memory: weights", _gb(cost.weights_bytes), "float32 master copy")
        table.add_row(
            "memory: gradients + optimizer",
            _gb(cost.memory_bytes - cost.weights_bytes - cost.activation_bytes),
            t.optimizer,
        )
        table.add_row("memory: activations", _gb(cost.activation_bytes), f"batch {t.batch_size}, {t.precision}")
        table.add_row("memory: total (estimate)", _gb(cost.memory_bytes), f"available {_gb(available)}")
        shape = (
            _mesh(mesh) if mesh else ((t.mesh[0], t.mesh[1]) if t.distribute == "model_parallel" and t.mesh else None)
        )
        if shape is not None:
            _add_per_device_rows(table, config, vocab, shape)
        console = Console()
        console.print(table)
        problem = preflight_problem(cost, t, available)
        if problem:
            console.print(f"[red]does not fit:[/] {problem}")
            if title:
                console.print(
                    "a pretrained base fits more easily with finetune.method = 'lora', "
                    "train.precision = 'mixed_bfloat16' or a shorter model.context"
                )
            raise typer.Exit(1)
        console.print("[green]fits[/] in the memory available")


def _mesh(text: str) -> tuple[int, int]:
    from llmtui.errors import RecipeError

    parts = text.lower().replace("×", "x").split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() and int(p) >= 1 for p in parts):
        raise RecipeError(f"--mesh {text} is not DATAxMODEL device counts", hint="e.g. --mesh 2x4 for 8 devices")
    return int(parts[0]), int(parts[1])


def _add_per_device_rows(table, config, vocab: int, shape: tuple[int, int]) -> None:
    """What one device holds on a (data, model) mesh: the layout's arithmetic, checked against it."""
    from llmtui.errors import RecipeError
    from llmtui.models.cost import per_device, weight_shapes
    from llmtui.training.distribute import check_model_parallel_shapes

    if config.model.arch not in ("gpt", "llama"):
        raise RecipeError(f"model parallelism splits gpt and llama models, not {config.model.arch}")
    data, model = shape
    check_model_parallel_shapes(weight_shapes(config.model, vocab), model)
    share = per_device(config.model, config.train, vocab, data, model)
    where = f"mesh {data} x {model} (data x model), {data * model} devices"
    table.add_row("per device: parameters", f"{share.parameters:,}", where)
    table.add_row("per device: weights", _gb(share.weights_bytes), f"split {model} ways, norms replicated")
    table.add_row("per device: gradients + optimizer", _gb(share.optimizer_bytes), "follow their weights' layouts")
    table.add_row("per device: activations", _gb(share.activation_bytes), f"batch split {data} ways (upper bound)")
    table.add_row("per device: total (estimate)", _gb(share.memory_bytes), "")


def _gb(value: float) -> str:
    return f"{value / 1e9:,.2f} GB" if value >= 1e8 else f"{value / 1e6:,.1f} MB"
