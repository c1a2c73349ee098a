"""`llmtui export`: a trained model as a .keras file, a keras-hub preset, a TensorFlow SavedModel, a Hugging Face
Transformers folder or a GGUF file (llama.cpp, Ollama)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from llmtui.cli.common import RunArg, user_errors

FORMAT_CHOICES = ("keras", "preset", "savedmodel", "hf", "gguf", "all")
QUANTIZE_CHOICES = ("f32", "f16", "q8_0")


cli = typer.Typer()


@cli.command()
def export(
    run_dir: RunArg,
    format_: Annotated[
        str,
        typer.Option(
            "--format",
            "-f",
            help="keras (model.keras, loads with safe_mode), preset (keras-hub, gpt and llama), "
            "savedmodel (TensorFlow serving), hf (Transformers folder: GPT2LMHeadModel or "
            "LlamaForCausalLM), gguf (llama.cpp/Ollama file and Modelfile) or all.",
        ),
    ] = "keras",
    out: Annotated[
        Path | None,
        typer.Option(help="Output folder (with --format all, one subfolder per format). Default: RUN/export/<format>."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an output folder that is not empty.")] = False,
    quantize: Annotated[
        str,
        typer.Option(help="GGUF tensor type: f32, f16 or q8_0 (llama.cpp's 8-bit blocks); norms and biases stay f32."),
    ] = "f16",
) -> None:
    """Export a run's trained model; each export is loaded back and checked against the model's logits."""
    with user_errors():
        from llmtui.backend import native_stderr_to
        from llmtui.export import export_run
        from llmtui.export.common import ExportError
        from llmtui.runfolder import RunFolder, resolve_run_dir

        if format_ not in FORMAT_CHOICES:  # before loading anything
            raise ExportError(f"unknown export format {format_!r}", hint=f"use one of {', '.join(FORMAT_CHOICES)}")
        if quantize not in QUANTIZE_CHOICES:
            raise ExportError(
                f"unknown GGUF tensor type {quantize!r}", hint=f"use one of {', '.join(QUANTIZE_CHOICES)}"
            )
        run = RunFolder(resolve_run_dir(run_dir))
        with run, native_stderr_to(run.log_file):  # the lock: no run rewrites the model meanwhile
            results, skipped = export_run(run, format_, out, force, quantize)
        for result in results:
            typer.secho(f"{result.format}: {result.path}", bold=True)
            for path in result.files:
                typer.echo(f"  {path.relative_to(result.path)}")
            if result.max_logit_diff is not None:
                typer.echo(
                    f"  checked: loaded back; largest logit difference from the run's model {result.max_logit_diff:.2g}"
                )
            for note in result.notes:
                typer.echo(f"  note: {note}")
            typer.echo("  load it:")
            for line in result.load_code.splitlines():
                typer.echo(f"    {line}")
        for name, why in skipped.items():
            typer.secho(f"{name}: skipped: {why}", fg="yellow")
