"""Fine-tune: start from a trained run, pick the task and its data (with a preview of the parsed examples and
their labels), and how much of the model to train (full, LoRA, frozen layers) with its trainable parameters.

Reached from Welcome (f). Next come the usual Training, Review, Train and Evaluate steps: the recipe is an
ordinary one with a [finetune] section, the same that `llmtui finetune RECIPE` runs.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from rich.markup import escape
from rich.table import Table
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import Button, Static

from llmtui.runfolder import RunFolder, load_final_model
from llmtui.tui.error_text import describe_error
from llmtui.tui.screens.base import StepScreen
from llmtui.tui.widgets.section_form import SectionForm

INTRO = """[b]Fine-tune a trained run or a pretrained model[/b]  base: a run below, or the folder of a Hugging \
Face model (config.json + *.safetensors) or keras-hub preset (GPT-2, Llama, Mistral). Its vocabulary and \
architecture are kept; this recipe sets the task, the examples and how much of the model trains. [b]domain[/b] \
continues next-token training on the Data step's sources; [b]classification[/b], [b]qa[/b] and \
[b]translation[/b] read examples from train_file (.csv, .tsv, .jsonl); [b]chat[/b] reads conversations (.jsonl)."""
# The example fields each task previews (chat: the conversations' messages field).
TASK_FIELDS = {
    "classification": ("text_field", "label_field"),
    "qa": ("input_field", "target_field"),
    "translation": ("input_field", "target_field"),
    "chat": ("messages_field",),
}
PREVIEW_ROWS = 5


def _mib(count: float) -> str:
    return f"{count / 2**20:,.1f} MiB"


def preview_examples(recipe, base_dir: Path) -> tuple[list[str], list[dict], int, Counter | None]:
    """(fields, first examples, how many, label counts for classification) of the recipe's train_file."""
    from llmtui.finetune.examples import read_examples

    config = recipe.finetune
    fields = [getattr(config, name) for name in TASK_FIELDS[config.task]]
    path = Path(config.train_file).expanduser()
    path = path if path.is_absolute() else base_dir / path
    if config.task == "chat":  # one row per conversation: its turns as "role: text"
        from llmtui.finetune.examples import read_conversations

        conversations = read_conversations(path, config.messages_field)
        rows = [
            {fields[0]: " | ".join(f"{m['role']}: {m['content']}" for m in c[config.messages_field])}
            for c in conversations[:PREVIEW_ROWS]
        ]
        return fields, rows, len(conversations), None
    examples = read_examples(path, fields)
    labels = Counter(example[config.label_field] for example in examples) if config.task == "classification" else None
    return fields, examples[:PREVIEW_ROWS], len(examples), labels


class FinetuneScreen(StepScreen):
    STEP = "finetune"
    BINDINGS = [Binding("ctrl+r", "preview", "Preview examples"), Binding("ctrl+g", "count", "Count parameters")]

    def body(self) -> ComposeResult:
        yield Static(INTRO, id="ft-intro")
        yield Static("", id="ft-bases")
        yield SectionForm(
            "finetune",
            primary=("base", "task", "train_file", "val_file", "method", "lora_rank", "lora_alpha", "freeze_layers"),
        )
        with Horizontal(classes="buttons"):
            yield Button("Preview examples (ctrl+r)", id="ft-preview-button", compact=True)
            yield Button("Count parameters (ctrl+g)", id="ft-count-button", compact=True)
        yield Static("", id="ft-preview")
        yield Static("", id="ft-params")

    def refresh_view(self) -> None:
        from llmtui.runs import list_runs

        state = self.wizard.state
        finished = [
            r.name
            for r in list_runs(state.base_dir / state.recipe.run.out_dir)
            if r.status == "finished"
            and RunFolder(r.path).final_model_path.is_file()
            and r.name != state.recipe.run.name
        ]
        self.query_one("#ft-bases", Static).update(
            "Trained runs to start from: "
            + (
                ", ".join(f"[b]{escape(n)}[/b]" for n in finished)
                if finished
                else "[yellow]none yet: train one first (Welcome → t)[/]"
            )
            + " · or a pretrained model's folder"
        )

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "ft-preview-button":
            self.action_preview()
        elif event.button.id == "ft-count-button":
            self.action_count()

    def action_preview(self) -> None:
        out = self.query_one("#ft-preview", Static)
        recipe = self.wizard.state.recipe
        if recipe.finetune.task not in TASK_FIELDS:
            out.update("[dim]The domain task reads the Data step's sources: preview them there (ctrl+e).[/]")
            return
        if not recipe.finetune.train_file:
            out.update("[yellow]Set train_file: a .csv, .tsv or .jsonl file of examples.[/]")
            return
        try:
            fields, examples, count, labels = preview_examples(recipe, self.wizard.state.base_dir)
        except Exception as exc:  # a bad file is the person's to fix: its message, not a traceback
            out.update(f"[red]{escape(describe_error(exc))}[/]")
            return
        table = Table(
            title=f"{count:,} examples in {recipe.finetune.train_file} (first {len(examples)})",
            title_justify="left",
            expand=True,
        )
        for field in fields:
            table.add_column(field, overflow="ellipsis", no_wrap=True, ratio=3 if field != fields[-1] else 1)
        for example in examples:
            table.add_row(*(example[field] for field in fields))
        parts: list = [table]
        if labels is not None:
            widest = max(labels.values())
            lines = [
                f"{escape(label):<16} {n:6,} {'█' * max(1, round(24 * n / widest))}"
                for label, n in sorted(labels.items(), key=lambda item: (-item[1], item[0]))
            ]
            parts.append(f"[b]labels[/b] ({len(labels)})\n" + "\n".join(lines))
        from rich.console import Group

        out.update(Group(*parts))
        self.labels = len(labels) if labels is not None else 0

    def action_count(self) -> None:
        recipe = self.wizard.state.recipe
        if recipe.finetune.task == "classification" and not getattr(self, "labels", 0) and not recipe.finetune.labels:
            self.action_preview()  # the head's size needs the label count
        self.query_one("#ft-params", Static).update("[dim]loading the base model…[/]")
        labels = len(recipe.finetune.labels) or getattr(self, "labels", 0) or 2
        self._count(recipe, labels)

    @work(thread=True, exclusive=True, exit_on_error=False, group="finetune-count")
    def _count(self, recipe, labels: int) -> None:
        from llmtui.backend import configure_backend

        try:
            from llmtui.config.loader import load_recipe
            from llmtui.finetune.adapt import adapt_model, parameter_counts, training_memory_bytes
            from llmtui.finetune.pipeline import base_folder

            base = base_folder(recipe, self.wizard.state.base_dir)  # a pretrained base is imported the first time
            base_recipe = load_recipe(base.recipe_path)
            configure_backend(recipe.run.backend)
            model, adapted = adapt_model(
                load_final_model(base),
                recipe.finetune,
                base_recipe.model.arch,
                base_recipe.model.layers,
                labels,
                recipe.run.seed,
            )
            counts = parameter_counts(model)
        except Exception as exc:
            self.app.call_from_thread(self._show_count, f"[red]{escape(describe_error(exc))}[/]")
            return
        share = counts["trainable"] / max(counts["total"], 1)
        method = recipe.finetune.method
        what = {
            "lora": f"LoRA rank {recipe.finetune.lora_rank} on {len(adapted)} layers",
            "freeze": f"{len(adapted)} lower layers frozen",
            "full": "every weight",
        }[method]
        text = (
            f"[b]{counts['trainable']:,}[/b] of {counts['total']:,} parameters trainable ({share:.1%}): {what}"
            f"{'; a head over ' + str(labels) + ' labels' if recipe.finetune.task == 'classification' else ''}\n"
            f"memory: about {_mib(training_memory_bytes(counts))} for weights, gradients and Adam state "
            f"(float32; activations come on top) · base {escape(self.wizard.state.shown(base.root))} "
            f"({base_recipe.model.arch}, {base_recipe.model.layers} layers, {base_recipe.model.dim} wide)"
        )
        self.app.call_from_thread(self._show_count, text)

    def _show_count(self, markup: str) -> None:
        self.query_one("#ft-params", Static).update(markup)

    def on_section_form_changed(self, event: SectionForm.Changed) -> None:  # StepScreen's handler runs too
        base = self.wizard.state.recipe.finetune.base
        if event.valid and base != getattr(self, "_base", None):
            self._base = base
            if self.wizard.document.adopt_base_architecture():  # a new base: the Model step shows its architecture
                self.wizard.recipe_replaced(same_run=True)
        self.query_one("#ft-params", Static).update("[dim]ctrl+g counts the trainable parameters[/]")

    def action_next(self) -> None:
        problems = self.problems()
        if problems:
            self.notify("Fix this first:\n" + "\n".join(problems[:4]), severity="error", title="Invalid field")
            return
        if not self.wizard.state.recipe.finetune.base:
            self.notify("Choose the trained run or pretrained model to start from (base).", severity="error")
            return
        self.wizard.goto_step("training")

    def action_back(self) -> None:
        self.wizard.goto_step("welcome")
