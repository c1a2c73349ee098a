"""Peers' measured figures for the configurations llmtui was benchmarked on, shown beside ladder rungs.

A rung whose recipe is one of these configurations (the same model, training settings, tokenizer and the
same text split into the same number of tokens) is reported with the peer's figure and llmtui's own from
the benchmark, so a user sees at once whether their run lands where the benchmark did. The figures are
copied from `bench/results/quality.json` (a test checks that they agree); `command` reproduces them.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llmtui.runfolder import TokenMeta


@dataclass(frozen=True)
class PeerReference:
    name: str
    peer: str
    archs: tuple[str, ...]
    settings: dict[str, Any]  # "section.key" -> the value the rung's recipe must have
    tokens: dict[str, int]  # the train and val token counts of the benchmark's split
    peer_val_losses: tuple[float, ...]  # one per seed, nats per token
    llmtui_val_losses: dict[str, tuple[float, ...]] = field(default_factory=dict)  # arch -> one per seed
    command: str = ""
    # arch -> more settings a rung of that arch must have (a setting other architectures ignore)
    arch_settings: dict[str, dict[str, Any]] = field(default_factory=dict)

    def matches(self, recipe, tokens: TokenMeta) -> bool:
        """Whether `recipe` (a rung's) with its split's token meta (tokens.json) is this configuration."""
        if recipe.model.arch not in self.archs:
            return False
        for dotted, wanted in {**self.settings, **self.arch_settings.get(recipe.model.arch, {})}.items():
            section, key = dotted.split(".")
            value = getattr(getattr(recipe, section), key)
            if isinstance(wanted, float) or isinstance(value, float):
                if abs(float(value) - float(wanted)) > 1e-12 * max(1.0, abs(float(wanted))):
                    return False
            elif value != wanted:
                return False
        return all(_split_tokens(tokens, split) == count for split, count in self.tokens.items())

    def describe(self, arch: str, val_loss: float | None) -> dict:
        """The figures shown beside a rung of `arch` that reached `val_loss`."""
        ours = self.llmtui_val_losses.get(arch, ())
        peer = _spread(self.peer_val_losses)
        report = {
            "name": self.name,
            "peer": self.peer,
            "steps": self.settings.get("train.steps"),
            "peer_val_loss": peer,
            "llmtui_val_loss": _spread(ours) if ours else None,
            "command": self.command,
        }
        if val_loss is not None:
            report["this_rung_minus_peer"] = round(val_loss - peer["median"], 4)
        return report


def _spread(values: tuple[float, ...]) -> dict:
    return {
        "median": round(statistics.median(values), 4),
        "min": round(min(values), 4),
        "max": round(max(values), 4),
        "seeds": len(values),
    }


# nanoGPT's "baby GPT" on the characters of tinyshakespeare (bench/bench_quality_gpt.py).
NANOGPT_BABY = PeerReference(
    name="nanoGPT's baby GPT",
    peer="nanoGPT train.py",
    archs=("gpt", "llama"),
    settings={
        "tokenizer.kind": "char",
        "data.split_by": "tail",
        "data.val_fraction": 0.1,
        "model.layers": 4,
        "model.heads": 4,
        "model.dim": 128,
        "model.context": 64,
        "model.dropout": 0.0,
        "model.attention_dropout": 0.0,
        "model.embedding_dropout": 0.0,
        "model.mlp_ratio": 4.0,
        "train.steps": 2000,
        "train.batch_size": 12,
        "train.grad_accum_steps": 1,
        "train.optimizer": "adamw",
        "train.lr": 1e-3,
        "train.beta1": 0.9,
        "train.beta2": 0.99,
        "train.weight_decay": 0.1,
        "train.grad_clip": 1.0,
        "train.schedule": "cosine",
        "train.warmup_steps": 100,
        "train.min_lr_ratio": 0.1,
        "train.label_smoothing": 0.0,
    },
    tokens={"train": 1002959, "val": 112399},
    peer_val_losses=(1.9216, 1.8972, 1.8985),  # seeds 1337, 1338, 1339
    llmtui_val_losses={"gpt": (1.9152, 1.9141, 1.9135), "llama": (1.6793, 1.6882, 1.6928)},  # run.seed 1, 2, 3
    command="python bench/bench_quality_gpt.py --seeds 1,2,3",
    arch_settings={"gpt": {"model.bias": False}},  # nanoGPT's default; llama never has biases
)

REFERENCES: tuple[PeerReference, ...] = (NANOGPT_BABY,)


def reference_for(
    recipe, tokens: TokenMeta, references: tuple[PeerReference, ...] = REFERENCES
) -> PeerReference | None:
    """The benchmarked configuration `recipe` is, if any."""
    return next((ref for ref in references if ref.matches(recipe, tokens)), None)


def _split_tokens(tokens: TokenMeta, split: str) -> int | None:
    counts = getattr(tokens, split, None)
    return counts.tokens if counts is not None else None
