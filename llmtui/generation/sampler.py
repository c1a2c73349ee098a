"""Text generation from a trained model: greedy, temperature, top-k and top-p sampling.

The model runs on a fixed (1, context) window (right-padded) through one compiled program; causal models
ignore the padding to the right of the last real token.
"""

from __future__ import annotations

import numpy as np


def sample_next(logits: np.ndarray, rng: np.random.Generator, temperature: float, top_k: int, top_p: float) -> int:
    """Pick the next token id from one row of logits."""
    logits = np.asarray(logits, dtype=np.float64)
    if temperature <= 0:
        return int(np.argmax(logits))
    logits = logits / temperature
    if 0 < top_k < logits.size:
        cutoff = np.partition(logits, -top_k)[-top_k]
        logits = np.where(logits < cutoff, -np.inf, logits)
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    if top_p < 1.0:
        order = np.argsort(-probs)
        cumulative = np.cumsum(probs[order])
        keep = order[: int(np.searchsorted(cumulative, top_p) + 1)]
        mask = np.zeros_like(probs)
        mask[keep] = probs[keep]
        probs = mask / mask.sum()
    return int(rng.choice(probs.size, p=probs))


class Generator:
    def __init__(self, model, tokenizer, context: int):
        self.model = model
        self.tokenizer = tokenizer
        self.context = context
        if not getattr(model, "compiled", False):
            model.compile(jit_compile=True)

    def generate(self, prompt: str, max_tokens: int = 200, temperature: float = 0.8, top_k: int = 40,
                 top_p: float = 1.0, seed: int = 0, stop_at_eos: bool = True) -> str:
        """The continuation of `prompt` (without the prompt)."""
        rng = np.random.default_rng(seed)
        ids = self.tokenizer.encode(prompt) or [self.tokenizer.eos_id]
        generated: list[int] = []
        window = np.zeros((1, self.context), dtype=np.int32)
        for _ in range(max_tokens):
            recent = (ids + generated)[-self.context:]
            window[0, : len(recent)] = recent
            window[0, len(recent):] = 0
            logits = np.asarray(self.model.predict_on_batch(window))[0, len(recent) - 1]
            next_id = sample_next(logits, rng, temperature, top_k, top_p)
            if stop_at_eos and next_id == self.tokenizer.eos_id:
                break
            generated.append(next_id)
        return self.tokenizer.decode(generated)
