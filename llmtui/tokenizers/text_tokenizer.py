"""Vocabulary training, saving and loading on top of Hugging Face `tokenizers`.

Every kind is saved as a standard `tokenizer.json` (loadable by `tokenizers.Tokenizer.from_file` and by
transformers' `PreTrainedTokenizerFast`). Special tokens take the first ids in a fixed order.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Iterable, Iterator

from llmtui.config.recipe import TokenizerConfig
from llmtui.errors import RunFolderError

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<bos>", "<eos>"
SPECIAL_TOKENS = [PAD, UNK, BOS, EOS]


class TextTokenizer:
    """A trained vocabulary: text <-> ids."""

    def __init__(self, backend, kind: str):
        self.backend = backend  # tokenizers.Tokenizer
        self.kind = kind
        self.pad_id = backend.token_to_id(PAD)
        self.unk_id = backend.token_to_id(UNK)
        self.bos_id = backend.token_to_id(BOS)
        self.eos_id = backend.token_to_id(EOS)

    @property
    def vocab_size(self) -> int:
        return self.backend.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        return self.backend.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self.backend.encode_batch(texts, add_special_tokens=False)]

    def decode(self, ids: Iterable[int]) -> str:
        return self.backend.decode([int(i) for i in ids], skip_special_tokens=True)

    def token(self, token_id: int) -> str:
        return self.backend.id_to_token(int(token_id))

    def save(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "tokenizer.json"
        tmp = folder / "tokenizer.json.tmp"
        self.backend.save(str(tmp))
        tmp.replace(path)
        (folder / "llmtui_tokenizer.json").write_text(json.dumps({"kind": self.kind}) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, folder: Path) -> "TextTokenizer":
        from tokenizers import Tokenizer

        path = folder / "tokenizer.json"
        if not path.exists():
            raise RunFolderError(f"no tokenizer at {path}", hint="run the recipe's tokenizer stage first (llmtui run RECIPE)")
        meta_path = folder / "llmtui_tokenizer.json"
        kind = json.loads(meta_path.read_text(encoding="utf-8"))["kind"] if meta_path.exists() else "unknown"
        return cls(Tokenizer.from_file(str(path)), kind)


def train_tokenizer(config: TokenizerConfig, texts: Iterable[str]) -> TextTokenizer:
    """Train a vocabulary of the configured kind on `texts` (the train split)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    if config.kind == "char":
        counts = Counter()
        for text in texts:
            counts.update(text)
        chars = sorted(c for c, n in counts.items() if n >= config.min_frequency)
        vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS)}
        for char in chars:
            vocab.setdefault(char, len(vocab))
        backend = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=UNK))
        backend.decoder = decoders.Fuse()
    elif config.kind == "byte":
        alphabet = pre_tokenizers.ByteLevel.alphabet()
        vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS + sorted(alphabet))}
        backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
        backend.decoder = decoders.ByteLevel()
    elif config.kind == "bpe":
        backend = Tokenizer(models.BPE())
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        backend.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=config.vocab_size, min_frequency=config.min_frequency,
                                      special_tokens=SPECIAL_TOKENS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                      show_progress=False)
        backend.train_from_iterator(_batched(texts), trainer=trainer)
    elif config.kind == "wordpiece":
        backend = Tokenizer(models.WordPiece(unk_token=UNK))
        backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        backend.decoder = decoders.WordPiece()
        trainer = trainers.WordPieceTrainer(vocab_size=config.vocab_size, min_frequency=config.min_frequency,
                                            special_tokens=SPECIAL_TOKENS, show_progress=False)
        backend.train_from_iterator(_batched(texts), trainer=trainer)
    elif config.kind == "unigram":
        backend = Tokenizer(models.Unigram())
        backend.pre_tokenizer = pre_tokenizers.Metaspace()
        backend.decoder = decoders.Metaspace()
        trainer = trainers.UnigramTrainer(vocab_size=config.vocab_size, special_tokens=SPECIAL_TOKENS,
                                          unk_token=UNK, show_progress=False)
        backend.train_from_iterator(_batched(texts), trainer=trainer)
    else:  # the recipe's Literal makes this unreachable; kept for direct library callers
        raise ValueError(f"unknown tokenizer kind {config.kind!r}")
    backend.add_special_tokens(SPECIAL_TOKENS)
    return TextTokenizer(backend, config.kind)


def _batched(texts: Iterable[str], size: int = 1000) -> Iterator[list[str]]:
    batch = []
    for text in texts:
        batch.append(text)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
