"""Data: the text sources, cleaning and filters, a preview of cleaned samples, and the data report."""

from __future__ import annotations

from rich.markup import escape
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import Button, Input, Label, ListItem, ListView, Static

from llmtui.tui.dialogs.path_dialog import PathDialog
from llmtui.tui.screens.base import StepScreen
from llmtui.tui.widgets.section_form import SectionForm
from llmtui.tui.widgets.text_entry import InTurnInput


class DataScreen(StepScreen):
    STEP = "data"
    BINDINGS = [Binding("ctrl+e", "preview", "Preview")]

    def body(self) -> ComposeResult:
        yield Static(
            "[b]Sources[/b]  a file, folder, glob, http(s) URL, hf:<dataset> or builtin:python-docs", classes="heading"
        )
        yield ListView(id="sources")
        with Horizontal(classes="buttons"):
            yield InTurnInput(placeholder="add a path or URL, then Enter", id="new-source", compact=True)
            yield Button("Browse…", id="browse", compact=True)
            yield Button("Built-in corpus", id="builtin", compact=True)
            yield Button("Remove", id="remove", compact=True)
        yield Static("", classes="form-error", id="sources-error")
        yield SectionForm(
            "data",
            primary=("val_fraction", "test_fraction", "lowercase", "dedup", "max_documents", "chunk_chars"),
            skip=("sources",),
        )
        with Horizontal(classes="buttons"):
            yield Button("Preview cleaned samples (ctrl+e)", id="preview", compact=True)
        yield Static("", id="preview-out")
        yield Static("", id="report")

    # Sources -----------------------------------------------------------------------------------
    def recipe_loaded(self) -> None:
        self._show_sources()

    def _show_sources(self) -> None:
        view = self.query_one("#sources", ListView)
        view.clear()
        for source in self.wizard.state.recipe.data.sources:
            view.append(ListItem(Label(source.path, markup=False)))

    def _set_sources(self, sources: list) -> None:
        errors = self.wizard.state.try_update("data", {"sources": sources})
        message = self.query_one("#sources-error", Static)
        message.update("\n".join(f"{k}: {v}" for k, v in errors.items()))
        message.display = bool(errors)
        if not errors:
            self.wizard.recipe_edited()
            self._show_sources()

    def _add_source(self, path: str | None) -> None:
        if path:
            current = [s.model_dump(mode="json") for s in self.wizard.state.recipe.data.sources]
            self._set_sources(current + [path])

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "new-source":
            self._add_source(event.value.strip())
            event.input.value = ""

    def on_button_pressed(self, event: Button.Pressed) -> None:
        button = event.button.id
        if button == "browse":
            self.app.push_screen(PathDialog("Add a file or folder of text", "path"), self._add_source)
        elif button == "builtin":
            self._add_source("builtin:python-docs")
        elif button == "remove":
            index = self.query_one("#sources", ListView).index
            current = [s.model_dump(mode="json") for s in self.wizard.state.recipe.data.sources]
            if index is None or not 0 <= index < len(current):
                self.notify("Select a source first (↑/↓ in the list).", severity="warning")
            elif len(current) == 1:
                self.notify("A recipe needs at least one source: add another first.", severity="warning")
            else:
                del current[index]
                self._set_sources(current)
        elif button == "preview":
            self.action_preview()

    # Preview and report ------------------------------------------------------------------------
    def action_preview(self) -> None:
        self.query_one("#preview-out", Static).update("[dim]reading and cleaning the first documents…[/]")
        self._preview()

    @work(thread=True, exclusive=True, exit_on_error=False, group="preview")
    def _preview(self) -> None:
        from llmtui.data.prepare import preview_data
        from llmtui.errors import LlmtuiError

        state = self.wizard.state
        try:
            result = preview_data(state.recipe.data, state.base_dir, 3)
        except LlmtuiError as exc:
            self.app.call_from_thread(self._show_preview, f"[red]{exc}[/]")
            return
        lines = []
        for sample in result["samples"]:
            text = escape(sample["text"][:300])
            lines.append(
                f"[b]{sample['characters']:,} characters[/b] · {sample['source']}\n{text}"
                + (" …" if sample["characters"] > 300 else "")
            )
        dropped = ", ".join(f"{k} {v}" for k, v in result["dropped_by_filter"].items()) or "none"
        lines.append(
            f"[dim]{result['documents_read']} documents read, {len(result['samples'])} shown; "
            f"dropped by filters: {dropped}; exact duplicates: {result['exact_duplicates']}[/]"
        )
        lines += [f"[yellow]skipped {escape(s['path'])}: {escape(s['reason'])}[/]" for s in result["skipped"][:5]]
        from llmtui.data.prepare import ignored_line

        ignored = ignored_line(result["ignored"])
        if ignored:
            lines.append(f"[yellow]{escape(ignored)}[/]")
        self.app.call_from_thread(self._show_preview, "\n\n".join(lines))

    def _show_preview(self, text: str) -> None:
        self.query_one("#preview-out", Static).update(text)

    def refresh_view(self) -> None:
        from llmtui.errors import RunFolderError

        report_view = self.query_one("#report", Static)
        try:
            report = self.wizard.state.run.data_report()
        except RunFolderError:  # not prepared yet (or damaged: the next run redoes it)
            report_view.update(
                "[dim]The data report appears here once the data stage has run "
                "(Vocabulary → Train vocabulary, or Train).[/]"
            )
            return
        splits = ", ".join(f"{name} {counts.chunks:,} chunks" for name, counts in report.splits.items())
        report_view.update(
            f"[b]Data report[/b]  {report.documents_kept:,} of {report.documents_read:,} documents kept, "
            f"{report.characters_kept:,} characters; exact duplicates {report.exact_duplicates:,}, "
            f"near {report.near_duplicates:,}; {splits}"
        )
