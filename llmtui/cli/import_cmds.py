"""`llmtui import`: a pretrained Hugging Face model folder or keras-hub preset as an llmtui run folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from llmtui.cli.common import user_errors

cli = typer.Typer()


@cli.command("import")
def import_model(
    source: Annotated[
        str,
        typer.Argument(
            help="A local Hugging Face model folder (config.json + *.safetensors + tokenizer.json), a keras-hub preset "
            "folder, or an hf://owner/name or kaggle://owner/model/keras/variant handle (downloaded).",
            show_default=False,
        ),
    ],
    name: Annotated[str | None, typer.Option(help="Run name (default: the source folder's name).")] = None,
    out_dir: Annotated[Path, typer.Option(help="Folder of runs.")] = Path("runs"),
    context: Annotated[
        int | None, typer.Option(min=2, help="Training window of the run (default: the base's full length).")
    ] = None,
    backend: Annotated[str, typer.Option(help="Keras backend that converts the weights.")] = "tensorflow",
    force: Annotated[bool, typer.Option("--force", help="Replace a run folder of that name.")] = False,
) -> None:
    """Import a pretrained GPT-2, Llama or Mistral checkpoint as a run: recipe, its own tokenizer (and chat
    template), model/final.keras with the weights mapped into llmtui's gpt or llama blocks, checked against the
    original's logits. The run then works with generate, chat, eval, finetune and export."""
    with user_errors():
        from llmtui.errors import RunFolderError
        from llmtui.interop.base import parameter_count, read_base_spec

        spec = read_base_spec(source)
        run_name = name or (spec.path.name if spec.path else source.rstrip("/").rsplit("/", 1)[-1])
        root = out_dir / run_name
        if root.exists() and any(root.iterdir()) and not force:
            raise RunFolderError(f"{root} already exists", hint="add --force to replace it, or give another --name")
        typer.echo(
            f"{spec.family} ({spec.format}) → {spec.arch}: {spec.model['layers']} layers × "
            f"{spec.model['dim']} wide, vocabulary {spec.vocab_size:,}, {parameter_count(spec):,} parameters"
        )
        import tempfile

        from llmtui.backend import configure_backend, native_stderr_to
        from llmtui.interop.base import import_base

        out_dir.mkdir(parents=True, exist_ok=True)
        # TensorFlow's native messages go to a log, not over the summary.
        with native_stderr_to(Path(tempfile.gettempdir()) / "llmtui-import.log"):
            configure_backend(backend)
            info = import_base(source, root, context, spec=spec)
        typer.secho(f"imported into {root}", bold=True)
        if info["max_logit_diff"] is not None:
            typer.echo(f"  checked: logits within {info['max_logit_diff']:.2g} of the original")
        else:
            typer.echo("  not compared with Transformers' own model (install torch and transformers to check)")
        if info["chat_template"]:
            typer.echo("  the base's chat template is the run's (tokenizer/chat_template.jinja)")
        for note in info["notes"]:
            typer.echo(f"  note: {note}")
        typer.echo(
            f'  next: llmtui generate {root} -p "..."   ·   llmtui export {root} --format gguf   ·   '
            f'[finetune] base = "{root}"'
        )
