"""A conversation with a run's model: the turns so far, rendered for each reply by the run's chat template (the
one training and every export use), so `llmtui chat` and the wizard's playground talk to a model alike."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmtui.tokenizers.chat import LINES_TEMPLATE, chat_template, render_chat, special_token_names


@dataclass
class ChatSession:
    generator: Any  # llmtui.generation.Generator
    template: str
    special_tokens: dict
    messages: list[dict] = field(default_factory=list)

    @classmethod
    def for_run(cls, generator, tokenizer_dir: Path) -> ChatSession:
        return cls(generator, chat_template(tokenizer_dir), special_token_names(generator.tokenizer))

    @property
    def default_stops(self) -> list[str]:
        """A model trained on plain text replies with one line; a chat template's model ends its turn itself."""
        return ["\n"] if self.template == LINES_TEMPLATE else []

    @property
    def turns(self) -> int:
        return sum(m["role"] == "assistant" for m in self.messages)

    def prompt(self) -> str:
        return render_chat(self.template, self.messages, add_generation_prompt=True, **self.special_tokens)

    def reply(
        self,
        message: str,
        max_tokens: int,
        temperature: float,
        top_k: int,
        top_p: float,
        seed: int,
        beams: int = 1,
        stop: list[str] | None = None,
        use_cache: bool = True,
        on_text: Callable[[str], None] | None = None,
    ) -> str:
        """The model's answer to `message`, streamed to `on_text` piece by piece; both join the conversation."""
        self.messages.append({"role": "user", "content": message})
        try:
            result = self.generator.generate_full(
                self.prompt(),
                max_tokens,
                temperature,
                top_k,
                top_p,
                seed + self.turns,
                beams=beams,
                stop=stop or self.default_stops,
                use_cache=use_cache,
                on_text=on_text,
            )
        except BaseException:
            self.messages.pop()  # a failed turn leaves the conversation as it was
            raise
        text = result.text.strip("\n")
        self.messages.append({"role": "assistant", "content": text})
        return text

    def reset(self) -> None:
        self.messages = []
