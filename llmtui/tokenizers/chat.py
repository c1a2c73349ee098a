"""The chat template: how a conversation (`messages` with `role` and `content`) becomes text for the model.

One Jinja template per run, the format Hugging Face's `apply_chat_template` reads, so training, `llmtui chat`
and every export (the Transformers folder's `tokenizer_config.json`, the GGUF metadata, the Ollama Modelfile)
render a conversation the same way. A run whose tokenizer folder holds `chat_template.jinja` uses that one;
any other run uses `LINES_TEMPLATE`, which writes each turn as one line: what `llmtui chat` does with a model
trained on plain text (your line, a newline, the model's reply to the end of its line).
"""

from __future__ import annotations

from pathlib import Path

TEMPLATE_FILE = "chat_template.jinja"

# Each message's content on its own line; a generation prompt adds nothing (the reply is the next line).
LINES_TEMPLATE = "{% for message in messages %}{{ message['content'] }}\n{% endfor %}"

# The same conversation layout as Ollama's Go template (a Modelfile's TEMPLATE) for LINES_TEMPLATE.
LINES_OLLAMA_TEMPLATE = "{{- range .Messages }}{{ .Content }}\n{{ end }}"


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
    return environment.from_string(template).render(messages=messages, add_generation_prompt=add_generation_prompt,
                                                   **special_tokens)
