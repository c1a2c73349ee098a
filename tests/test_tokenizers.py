"""Every tokenizer kind trains on a small corpus, saves a standard tokenizer.json and round-trips."""

from __future__ import annotations

import pytest

from llmtui.config import recipe_from_dict
from llmtui.tokenizers import SPECIAL_TOKENS, TextTokenizer, train_tokenizer

TEXTS = [
    "The quick brown fox jumps over the lazy dog.\nIt was the best of times.",
    "Tokenizers split text into pieces; models learn from the pieces.",
    "Numbers like 3.14 and 2026, symbols like {} [] and café ü too.",
] * 20


def config(kind, size=300):
    return recipe_from_dict({"tokenizer": {"kind": kind, "vocab_size": size}}).tokenizer


@pytest.mark.parametrize("kind", ["char", "byte", "bpe", "wordpiece", "unigram"])
def test_train_save_load_round_trip(kind, tmp_path):
    tok = train_tokenizer(config(kind), iter(TEXTS))
    for i, token in enumerate(SPECIAL_TOKENS):
        assert tok.backend.token_to_id(token) is not None
    assert tok.eos_id is not None
    tok.save(tmp_path)
    from tokenizers import Tokenizer

    assert Tokenizer.from_file(str(tmp_path / "tokenizer.json")).get_vocab_size() == tok.vocab_size
    loaded = TextTokenizer.load(tmp_path)
    assert loaded.kind == kind
    sample = TEXTS[2]
    ids = loaded.encode(sample)
    assert ids == tok.encode(sample)
    decoded = loaded.decode(ids)
    if kind in ("char", "byte", "bpe"):
        assert decoded == sample  # exact for character and byte-level kinds
    else:
        assert decoded.split() == sample.split() or decoded.replace(" ", "") == sample.replace(" ", "")


def test_bpe_reaches_its_vocabulary_size_and_compresses():
    tok = train_tokenizer(config("bpe", 300), iter(TEXTS))
    assert 256 < tok.vocab_size <= 300
    assert len(tok.encode(TEXTS[0])) < len(TEXTS[0].encode("utf-8"))


def test_char_vocabulary_is_the_corpus_alphabet():
    tok = train_tokenizer(config("char"), iter(["abcab", "cba!"]))
    assert tok.vocab_size == len(SPECIAL_TOKENS) + 4
    assert tok.encode("z") == [tok.unk_id]  # unseen character -> unknown token
    assert tok.decode(tok.encode("abc!")) == "abc!"
