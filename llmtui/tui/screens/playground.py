"""Playground: generate text with the trained model and sampling controls, chat with it (multi-turn, the reply
streamed as it is generated, /reset), and for fine-tuned task runs classify, answer or translate."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.markup import escape
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Input, Static

from llmtui.tui.error_text import describe_error
from llmtui.tui.screens.base import StepScreen
from llmtui.tui.widgets.section_form import SectionForm
from llmtui.tui.widgets.text_entry import InTurnInput

if TYPE_CHECKING:  # the chat worker imports it (and the tokenizers) only when a chat starts
    from llmtui.generation.chat import ChatSession


def run_task(run_root) -> dict | None:
    """The task a run was fine-tuned for (data/task.json: classification, qa, translation), else None."""
    from llmtui.errors import RunFolderError
    from llmtui.runfolder import RunFolder

    try:
        task = RunFolder(run_root).task()
    except RunFolderError:  # a damaged task file: the playground offers the language-model tools only
        return None
    return task if isinstance(task, dict) and task.get("kind") not in (None, "domain") else None


def classification_task(run_root) -> dict | None:
    task = run_task(run_root)
    return task if task is not None and task.get("kind") == "classification" else None


# What the task box does for each task kind (a chat run talks in the chat box above).
TASK_ACTIONS = {
    "classification": ("Classify", "text to classify"),
    "qa": ("Answer", "question"),
    "translation": ("Translate", "text to translate"),
}


class PlaygroundScreen(StepScreen):
    STEP = "playground"
    BINDINGS = [Binding("ctrl+g", "generate", "Generate")]
    chat: ChatSession | None = None  # the ChatSession: the conversation so far, rendered by the run's chat template

    def body(self) -> ComposeResult:
        yield Static("", id="model-line")
        with Horizontal(classes="field"):
            yield InTurnInput(placeholder="prompt, then Enter", id="prompt", compact=True)
            yield Button("Generate (ctrl+g)", id="generate", variant="primary", compact=True)
        yield Static("", id="output")
        yield SectionForm(
            "generate",
            primary=("max_tokens", "temperature", "top_k", "top_p", "seed"),
            more_title="Recipe only: prompts, beams, stop and cache of the samples written after training",
        )
        yield Static(
            "[b]Chat[/b]  each message continues the conversation; the reply streams in · /reset starts over",
            classes="heading",
        )
        yield Static("", id="chat-log")
        yield InTurnInput(placeholder="message, then Enter", id="chat-input", compact=True)
        with Vertical(id="classify-box"):
            yield Static("", id="classify-line")
            with Horizontal(classes="field", id="classify-row"):
                yield InTurnInput(placeholder="text to classify, then Enter", id="classify-text", compact=True)
                yield Button("Classify", id="classify", compact=True)
            yield Static("", id="classify-out")

    def recipe_loaded(self) -> None:
        prompts = self.wizard.state.recipe.generate.prompts
        self.query_one("#prompt", Input).value = prompts[0] if prompts else ""

    def refresh_view(self) -> None:
        state = self.wizard.state
        run = state.run
        line = self.query_one("#model-line", Static)
        if run.final_model_path.is_file():
            line.update(f"Model: [b]{escape(state.shown(run.final_model_path))}[/b]")
        else:
            line.update(
                f"[yellow]No trained model in {escape(state.shown(run.root))} yet: train it on the Train step.[/]"
            )
        task = run_task(run.root)
        self.query_one("#classify-row").display = task is not None
        if task is None:
            line_text = (
                "[dim]Classify, answer, translate: for runs fine-tuned on a classification, qa or "
                "translation task (Welcome → f); this run is a language model.[/]"
            )
        else:
            verb, placeholder = TASK_ACTIONS.get(task["kind"], ("Use", "text"))
            labels = (
                f"  labels: {', '.join(map(str, task.get('labels', [])))}" if task["kind"] == "classification" else ""
            )
            line_text = f"[b]{verb}[/b] ({task['kind']}){labels}"
            self.query_one("#classify", Button).label = verb
            self.query_one("#classify-text", Input).placeholder = f"{placeholder}, then Enter"
        self.query_one("#classify-line", Static).update(line_text)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "prompt":
            self.action_generate()
        elif event.input.id == "classify-text":
            self._use_task(event.value)
        elif event.input.id == "chat-input":
            self._send_chat(event.input)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "generate":
            self.action_generate()
        elif event.button.id == "classify":
            self._use_task(self.query_one("#classify-text", Input).value)

    def action_generate(self) -> None:
        if not self._ready_to_generate():
            return
        if classification_task(self.wizard.state.run.root) is not None:
            self.notify("This run is a classifier: classify text below instead.", severity="warning")
            return
        self.query_one("#output", Static).update("[dim]generating…[/]")
        self._generate(self.query_one("#prompt", Input).value)

    @work(thread=True, exclusive=True, exit_on_error=False, group="playground")
    def _generate(self, prompt: str) -> None:
        g = self.wizard.state.recipe.generate
        try:
            generator = self.wizard.results.generator()
            text = generator.generate(
                prompt, max_tokens=g.max_tokens, temperature=g.temperature, top_k=g.top_k, top_p=g.top_p, seed=g.seed
            )
        except Exception as exc:  # shown in the app; the details go to the error log
            self.app.call_from_thread(self._show_output, f"[red]{escape(describe_error(exc))}[/]")
            return
        self.last_output = text
        self.app.call_from_thread(self._show_output, f"[b]{escape(prompt)}[/b]{escape(text)}")

    def _show_output(self, markup: str) -> None:
        self.query_one("#output", Static).update(markup)

    def _ready_to_generate(self) -> bool:
        if self.wizard.controller.running:
            self.notify("Training is running: use the model when it has finished.", severity="warning")
            return False
        if self.problems():
            self.notify("Fix the highlighted sampling settings first.", severity="error")
            return False
        if not self.wizard.state.run.final_model_path.is_file():
            self.notify("No trained model yet: train it on the Train step.", severity="warning")
            return False
        return True

    # Chat -------------------------------------------------------------------------------------------
    def _send_chat(self, field: Input) -> None:
        message = field.value
        if message.strip() == "/reset":
            field.value = ""
            if self.chat is not None:
                self.chat.reset()
            self._show_chat("[dim](conversation cleared)[/]")
            return
        if not message.strip() or not self._ready_to_generate():
            return
        task = run_task(self.wizard.state.run.root)
        if task is not None and task.get("kind") != "chat":
            self.notify("This run is fine-tuned for a task: use the box below.", severity="warning")
            return
        field.value = ""
        self._show_chat("", pending=message)
        self._chat_reply(message)

    @work(thread=True, exclusive=True, exit_on_error=False, group="chat")
    def _chat_reply(self, message: str) -> None:
        from llmtui.generation.chat import ChatSession

        g = self.wizard.state.recipe.generate
        reply: list[str] = []

        def piece(text: str) -> None:  # each decoded piece as it comes: the reply grows on screen
            reply.append(text)
            self.streamed_pieces = len(reply)
            self.app.call_from_thread(self._show_chat, "".join(reply), message)

        try:
            generator = self.wizard.results.generator()
            if self.chat is None or self.chat.generator is not generator:  # a new model: a new conversation
                self.chat = ChatSession.for_run(generator, self.wizard.state.run.tokenizer_dir)
            self.chat.reply(message, g.max_tokens, g.temperature, g.top_k, g.top_p, g.seed, stop=g.stop, on_text=piece)
        except Exception as exc:
            self.app.call_from_thread(self._show_chat, f"[red]{escape(describe_error(exc))}[/]")
            return
        self.app.call_from_thread(self._show_chat, "")

    def _show_chat(self, partial: str, pending: str = "") -> None:
        """The conversation (your messages bold), the message being answered and the reply as it grows."""
        messages = list(self.chat.messages) if self.chat is not None else []
        if pending:
            messages.append({"role": "user", "content": pending})
        shown = [f"[b]> {escape(m['content'])}[/b]" if m["role"] == "user" else escape(m["content"]) for m in messages]
        if partial:
            shown.append(partial if partial.startswith("[") and partial.endswith("[/]") else escape(partial) + "▌")
        self.query_one("#chat-log", Static).update("\n".join(shown[-20:]))

    # Tasks ------------------------------------------------------------------------------------------
    def _use_task(self, text: str) -> None:
        task = run_task(self.wizard.state.run.root)
        if task is None or not text.strip():
            return
        if task["kind"] == "classification":
            self._classify(text)
        else:
            self.query_one("#classify-out", Static).update("[dim]generating…[/]")
            self._answer(text)

    @work(thread=True, exclusive=True, exit_on_error=False, group="classify")
    def _answer(self, text: str) -> None:
        from llmtui.finetune.use import Answerer

        try:
            key = (self.wizard.state.run.root, self.wizard.state.run.final_model_path.stat().st_mtime_ns)
            if getattr(self, "_answerer", (None,))[0] != key:
                self._answerer = (key, Answerer(self.wizard.state.run.root))
            answer = self._answerer[1].answer(text)
        except Exception as exc:
            self.app.call_from_thread(self._show_classes, f"[red]{escape(describe_error(exc))}[/]")
            return
        self.last_output = answer
        self.app.call_from_thread(self._show_classes, f"[b]{escape(text)}[/b] → {escape(answer)}")

    @work(thread=True, exclusive=True, exit_on_error=False, group="classify")
    def _classify(self, text: str) -> None:
        try:
            from llmtui.finetune.use import load_classifier
        except ImportError:
            self.app.call_from_thread(
                self._show_classes, "[yellow]Classification is not available in this installation.[/]"
            )
            return
        try:
            probabilities = load_classifier(self.wizard.state.run.root).predict([text])[0]
        except Exception as exc:
            self.app.call_from_thread(self._show_classes, f"[red]{escape(describe_error(exc))}[/]")
            return
        ranked = sorted(probabilities.items(), key=lambda item: -item[1])
        lines = [f"{escape(str(label)):<20} {prob:6.1%} {'█' * round(prob * 30)}" for label, prob in ranked]
        self.app.call_from_thread(self._show_classes, "\n".join(lines))

    def _show_classes(self, markup: str) -> None:
        self.query_one("#classify-out", Static).update(markup)
