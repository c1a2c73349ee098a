"""Text generation from a trained model: greedy, temperature, top-k and top-p sampling, beam search, stop
strings, and incremental decoding (key/value cache or carried recurrent state) where the model allows.

The window rule, shared by the cached and the full-window paths so both give the same text: the model
sees at most `context` tokens, the most recent ones. A prompt longer than the context keeps its last
`context` tokens (`Generation.warning` says so). When generated text fills the window, the window restarts
on its last `context - window_shift` tokens (re-prefilled in one pass), so a cache serves `window_shift`
more tokens before the next restart; `window_shift=1` is a strict sliding window (one full pass per token).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from llmtui.generation.search import beam_search, first_stop, log_softmax, sample_next

__all__ = ["Generation", "Generator", "sample_next"]


@dataclass
class Generation:
    """One generated continuation.

    Attributes:
        text: the continuation (without the prompt), cut before the first stop string.
        tokens: the generated token ids (the stop string's tokens included, the EOS not).
        finish: why it ended: "eos", "stop" (a stop string), "max_tokens".
        prompt_tokens: tokens of the prompt (or 1 for an empty prompt, which starts from EOS).
        warning: set when the prompt was longer than the context and only its end was used.
        score: the length-normalised log-probability (beam search only).
    """

    text: str
    tokens: list[int] = field(default_factory=list)
    finish: str = "max_tokens"
    prompt_tokens: int = 0
    warning: str | None = None
    score: float | None = None


class _CachedLogits:
    """Next-token logits for `batch` equal-length token rows through an incremental decoder."""

    def __init__(self, decoder, batch: int):
        self.decoder, self.batch = decoder, batch
        self.state, self.start, self.length = None, -1, 0  # window start and tokens held in the state

    def __call__(self, rows: list[list[int]], start: int, parents: np.ndarray | None = None) -> np.ndarray:
        size = len(rows[0])
        if self.state is not None and start == self.start and size - start == self.length + 1:
            if parents is not None and not np.array_equal(parents, np.arange(self.batch)):
                self.state = self.decoder.take(self.state, _pad(np.asarray(parents), self.batch))
            ids = _pad(np.array([[row[-1]] for row in rows], dtype="int32"), self.batch)  # (B, 1)
            logits, self.state = self.decoder.step(ids, self.state, self.length, 0)
            self.length += 1
        else:  # a new window: prefill it in one pass
            window = np.zeros((self.batch, self.decoder.context), dtype="int32")
            filled = _pad(np.array([row[start:] for row in rows], dtype="int32"), self.batch)
            window[:, : filled.shape[1]] = filled
            logits, self.state = self.decoder.step(
                window, self.decoder.initial_state(self.batch), 0, filled.shape[1] - 1
            )
            self.start, self.length = start, filled.shape[1]
        return logits[: len(rows)]


class _FullWindowLogits:
    """Next-token logits recomputing the whole (right-padded) window with the model itself."""

    def __init__(self, model, context: int, batch: int):
        self.model, self.context, self.batch = model, context, batch
        if not getattr(model, "compiled", False):
            model.compile(jit_compile=True)

    def __call__(self, rows: list[list[int]], start: int, parents: np.ndarray | None = None) -> np.ndarray:
        filled = _pad(np.array([row[start:] for row in rows], dtype="int32"), self.batch)
        window = np.zeros((self.batch, self.context), dtype="int32")
        window[:, : filled.shape[1]] = filled
        logits = np.asarray(self.model.predict_on_batch(window))[:, filled.shape[1] - 1]
        return logits[: len(rows)].astype(np.float32)


def _pad(rows: np.ndarray, batch: int) -> np.ndarray:
    """`rows` with its last row repeated up to `batch` rows (static shapes for the compiled programs)."""
    if len(rows) >= batch:
        return rows
    return np.concatenate([rows, np.repeat(rows[-1:], batch - len(rows), axis=0)])


class Generator:
    """Generates text with a trained model and its tokenizer.

    Args:
        model: the trained Keras model (token ids (B, T) -> logits (B, T, V)).
        tokenizer: its `TextTokenizer`.
        context: the model's context length.
        use_cache: decode incrementally (key/value cache, carried state) where the architecture allows;
            False recomputes the whole window per token. `generate(use_cache=...)` overrides it per call.
        window_shift: tokens dropped from the window's start when generated text fills it (see the
            module docstring); default a quarter of the context.

    Example:
        generator = Generator(model, tokenizer, context=256)
        text = generator.generate("The ", max_tokens=50, temperature=0, stop=["\\n"])
    """

    def __init__(self, model, tokenizer, context: int, use_cache: bool = True, window_shift: int | None = None):
        self.model = model
        self.tokenizer = tokenizer
        self.context = int(context)
        self.use_cache = use_cache
        self.window_shift = max(1, min(window_shift or self.context // 4, self.context))
        self.last_warning: str | None = None
        self._sources: dict = {}
        self._loop: Any = None  # the compiled sampling loop of the cached decoder (batch 1)

    def generate(
        self,
        prompt: str,
        max_tokens: int = 200,
        temperature: float = 0.8,
        top_k: int = 40,
        top_p: float = 1.0,
        seed: int = 0,
        stop_at_eos: bool = True,
        *,
        beams: int = 1,
        stop: Sequence[str] = (),
        use_cache: bool | None = None,
        on_text: Callable[[str], None] | None = None,
    ) -> str:
        """The continuation of `prompt` (without the prompt); see `generate_full` for the arguments."""
        return self.generate_full(
            prompt,
            max_tokens,
            temperature,
            top_k,
            top_p,
            seed,
            stop_at_eos,
            beams=beams,
            stop=stop,
            use_cache=use_cache,
            on_text=on_text,
        ).text

    def generate_full(
        self,
        prompt: str,
        max_tokens: int = 200,
        temperature: float = 0.8,
        top_k: int = 40,
        top_p: float = 1.0,
        seed: int = 0,
        stop_at_eos: bool = True,
        *,
        beams: int = 1,
        stop: Sequence[str] = (),
        use_cache: bool | None = None,
        on_text: Callable[[str], None] | None = None,
    ) -> Generation:
        """Continue `prompt`; returns a `Generation` (text, tokens, why it ended, any warning).

        Args:
            prompt: the text to continue; empty starts from the EOS token.
            max_tokens: at most this many new tokens.
            temperature: 0 is greedy; otherwise logits are divided by it before sampling.
            top_k: sample among the k most likely tokens (0 = all).
            top_p: sample among the most likely tokens whose probabilities add up to top_p (1 = all).
            seed: sampling seed (same seed, same text).
            stop_at_eos: end at the EOS token.
            beams: more than 1 is beam search (temperature, top_k, top_p and seed are then unused).
            stop: strings that end the text; it is cut before the first one found.
            use_cache: override the generator's `use_cache` for this call.
            on_text: called with each new piece of text as it is produced (streaming); the pieces add up to
                `Generation.text`.
        """
        ids = self.tokenizer.encode(prompt) or [self.tokenizer.eos_id]
        warning = None
        if len(ids) > self.context:
            warning = (
                f"the prompt has {len(ids)} tokens but the model's context is {self.context}: only its "
                f"last {self.context} tokens were used"
            )
        self.last_warning = warning
        stops = [s for s in stop if s]
        eos = self.tokenizer.eos_id if stop_at_eos else None
        source = self._source(max(1, beams), self.use_cache if use_cache is None else use_cache)
        if beams > 1:
            result = self._beam_search(ids, source, beams, max_tokens, eos, stops)
        elif isinstance(source, _CachedLogits):
            result = self._sample_compiled(
                ids, source, max_tokens, temperature, top_k, top_p, seed, eos, stops, on_text
            )
        else:
            result = self._sample(ids, source, max_tokens, temperature, top_k, top_p, seed, eos, stops, on_text)
        if beams > 1 and on_text is not None and result.text:
            on_text(result.text)
        result.prompt_tokens, result.warning = len(ids), warning
        return result

    # Internals ---------------------------------------------------------------------------------
    def _source(self, batch: int, use_cache: bool):
        key = (batch, bool(use_cache))
        if key not in self._sources:
            decoder = None
            if use_cache:
                from llmtui.generation.decoder import decoder_for

                decoder = decoder_for(self.model, self.context)
            if decoder is not None:
                self._sources[key] = _CachedLogits(decoder, batch)
            else:
                self._sources[key] = _FullWindowLogits(self.model, self.context, batch)
        source = self._sources[key]
        if isinstance(source, _CachedLogits):
            source.state = None  # a new text: start from a fresh window
        return source

    def _next_start(self, size: int, start: int) -> int:
        """The window's start once there are `size` tokens (see the module docstring)."""
        return start if size - start <= self.context else size - (self.context - self.window_shift)

    def _sample(self, ids, source, max_tokens, temperature, top_k, top_p, seed, eos, stops, on_text) -> Generation:
        rng = np.random.default_rng(seed)
        tokens = list(ids)
        start = max(0, len(tokens) - self.context)
        generated: list[int] = []
        stream = _Stream(self.tokenizer, stops, on_text)
        finish = "max_tokens"
        for _ in range(max_tokens):
            logits = source([tokens], start)[0]
            next_id = sample_next(logits, rng, temperature, top_k, top_p)
            if eos is not None and next_id == eos:
                finish = "eos"
                break
            generated.append(next_id)
            tokens.append(next_id)
            start = self._next_start(len(tokens), start)
            if stream.push(generated):
                finish = "stop"
                break
        text = stream.finish(generated)
        return Generation(text=text, tokens=generated, finish=finish)

    def _sample_compiled(
        self, ids, source, max_tokens, temperature, top_k, top_p, seed, eos, stops, on_text
    ) -> Generation:
        """`_sample` through the cache with the token loop compiled (`loop.CompiledSampling`): the same tokens
        for the same seed, a chunk of tokens per program call instead of one."""
        from llmtui.generation.loop import CHUNK

        self._loop = source.decoder.sampling_loop()
        rng = np.random.default_rng(seed)
        tokens = list(ids)
        start = max(0, len(tokens) - self.context)
        generated: list[int] = []
        stream = _Stream(self.tokenizer, stops, on_text)
        logits = source([tokens], start)  # the prompt's window, prefilled
        while len(generated) < max_tokens:
            count = min(CHUNK, max_tokens - len(generated), self.context - source.length)
            if count == 0:  # the window is full: this token on the host, then the window restarts
                chunk = [sample_next(np.asarray(logits)[0], rng, temperature, top_k, top_p)]
            else:
                uniforms = rng.random(count) if temperature > 0 else np.zeros(0)
                chunk, logits, source.state = self._loop.run(
                    source.state, logits, source.length, count, uniforms, temperature, top_k, top_p
                )
                source.length += count
            for next_id in chunk:
                if eos is not None and next_id == eos:
                    return Generation(text=stream.finish(generated), tokens=generated, finish="eos")
                generated.append(next_id)
                tokens.append(next_id)
                if stream.push(generated):
                    return Generation(text=stream.finish(generated), tokens=generated, finish="stop")
            if count == 0 and len(generated) < max_tokens:
                start = self._next_start(len(tokens), start)
                logits = source([tokens], start)
        return Generation(text=stream.finish(generated), tokens=generated, finish="max_tokens")

    def _beam_search(self, ids, source, beams, max_tokens, eos, stops) -> Generation:
        rows: list[list[int]] = [list(ids)]
        window = {"start": max(0, len(ids) - self.context)}

        def log_probs(parents, tokens):
            nonlocal rows
            if parents is not None:
                rows = [rows[p] + [int(t)] for p, t in zip(parents, tokens)]
                window["start"] = self._next_start(len(rows[0]), window["start"])
            return log_softmax(source(rows, window["start"], parents))

        def stopped(sequence: list[int]) -> bool:
            return first_stop(self.tokenizer.decode(sequence), stops) is not None

        sequence, score = beam_search(log_probs, beams, max_tokens, eos, finished_fn=stopped if stops else None)
        text = self.tokenizer.decode(sequence)
        cut = first_stop(text, stops)
        finish = "max_tokens" if len(sequence) >= max_tokens else "eos"
        if cut is not None:
            text, finish = text[:cut], "stop"
        return Generation(text=text, tokens=sequence, finish=finish, score=score)


class _Stream:
    """Incremental text for streaming and stop strings: decodes the tokens so far after each new one."""

    def __init__(self, tokenizer, stops: list[str], on_text):
        self.tokenizer, self.stops, self.on_text = tokenizer, stops, on_text
        self.emitted = ""
        self.cut: str | None = None
        # Text that might be the start of a stop string is held back until it is known not to be.
        self.hold = max((len(s) for s in stops), default=1) - 1

    def push(self, generated: list[int]) -> bool:
        """True when a stop string has appeared."""
        if not self.stops and self.on_text is None:
            return False
        text = self.tokenizer.decode(generated)
        cut = first_stop(text, self.stops)
        if cut is not None:
            self.cut = text[:cut]
            return True
        if self.on_text is not None:
            ready = text[: len(text) - self.hold] if self.hold else text
            ready = ready.rstrip("\ufffd")  # an incomplete multi-byte character
            if len(ready) > len(self.emitted) and ready.startswith(self.emitted):
                self.on_text(ready[len(self.emitted) :])
                self.emitted = ready
        return False

    def finish(self, generated: list[int]) -> str:
        text = self.cut if self.cut is not None else self.tokenizer.decode(generated)
        if self.on_text is not None and text.startswith(self.emitted) and len(text) > len(self.emitted):
            self.on_text(text[len(self.emitted) :])
        return text
