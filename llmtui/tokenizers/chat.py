"""The chat template: how a conversation (`messages` with `role` and `content`) becomes text for the model.

One Jinja template per run, the format Hugging Face's `apply_chat_template` reads, so training, `llmtui chat`
and every export (the Transformers folder's `tokenizer_config.json`, the GGUF metadata, the Ollama Modelfile)
render a conversation the same way. A run whose tokenizer folder holds `chat_template.jinja` uses that one
(a `chat` fine-tune writes it: `CHAT_TEMPLATE` unless the base or the recipe brings its own); any other run
uses `LINES_TEMPLATE`, which writes each turn as one line: what `llmtui chat` does with a model trained on
plain text (your line, a newline, the model's reply to the end of its line).
"""

from __future__ import annotations

from pathlib import Path

TEMPLATE_FILE = "chat_template.jinja"

# Each message's content on its own line; a generation prompt adds nothing (the reply is the next line).
LINES_TEMPLATE = "{% for message in messages %}{{ message['content'] }}\n{% endfor %}"

# The same conversation layout as Ollama's Go template (a Modelfile's TEMPLATE) for LINES_TEMPLATE.
LINES_OLLAMA_TEMPLATE = "{{- range .Messages }}{{ .Content }}\n{{ end }}"


# llmtui's chat layout: a role line, the content, the end-of-text token after each turn; the generation prompt
# opens the assistant's turn, which the model ends with the end-of-text token.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}{{ eos_token }}\n"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
ROLES = ("system", "user", "assistant")


def chat_template(tokenizer_dir: Path) -> str:
    """The run's chat template: `tokenizer_dir/chat_template.jinja`, or `LINES_TEMPLATE` when it has none."""
    path = tokenizer_dir / TEMPLATE_FILE
    return path.read_text(encoding="utf-8") if path.is_file() else LINES_TEMPLATE


def render_chat(template: str, messages: list[dict], add_generation_prompt: bool = False, **special_tokens) -> str:
    """`messages` rendered by `template` in a sandbox (as Transformers renders chat templates).

    `special_tokens` are the names the template may use (bos_token, eos_token, ...).
    """
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    environment = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    return environment.from_string(template).render(
        messages=messages, add_generation_prompt=add_generation_prompt, **special_tokens
    )


def special_token_names(tokenizer) -> dict:
    """The names a chat template may use for the tokenizer's special tokens (bos_token, eos_token, ...)."""
    return {f"{role}_token": name for role, name in tokenizer.special_names.items() if name is not None}


def assistant_spans(template: str, messages: list[dict], **special_tokens) -> tuple[str, list[tuple[int, int]]]:
    """(the whole conversation rendered, the character spans the assistant writes).

    Each assistant span runs from the end of the conversation so far with the generation prompt to the end of
    the conversation through that turn, so it holds the reply and whatever the template closes a turn with
    (the end-of-text token): what the model must learn to produce, and to stop.
    """
    text = render_chat(template, messages, **special_tokens)
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prompt = render_chat(template, messages[:i], add_generation_prompt=True, **special_tokens)
        through = render_chat(template, messages[: i + 1], **special_tokens)
        if not (text.startswith(through) and through.startswith(prompt)):
            from llmtui.errors import LlmtuiError

            raise LlmtuiError(
                "the chat template does not render a conversation as the conversation before it "
                "plus the new turn, so the assistant's tokens cannot be found",
                hint="use a template whose output for messages[:i] is a prefix of that for messages",
            )
        spans.append((len(prompt), len(through)))
    return text, spans
