"""Every tokenizer kind trains on a small corpus, saves a standard tokenizer.json, round-trips, normalises like
the data stage, and has an in-graph keras-hub twin that gives the same ids; the vocabulary report is checked
against a hand count."""

from __future__ import annotations

import json

import numpy as np
import pytest

from llmtui.config import recipe_from_dict
from llmtui.tokenizers import SPECIAL_TOKENS, TextTokenizer, train_tokenizer
from llmtui.tokenizers.report import vocabulary_report

KINDS = ["char", "byte", "bpe", "wordpiece", "unigram", "word"]
TEXTS = [
    "The quick brown fox jumps over the lazy dog.\nIt was the best of times.",
    "Tokenizers split text into pieces; models learn from the pieces.",
    "Numbers like 3.14 and 2026, symbols like {} [] and café ü too.",
    "Don't stop: it's 10:30 -- we'll go'st on,  twice   spaced.\n\n  Indented line\ttab.",
] * 20

# Varied on purpose: contractions, runs of spaces and newlines, tabs, digits, accents (composed and not),
# CJK, emoji, special tokens written in the text, an empty string, a very long word, mixed case.
SAMPLE = [
    "The quick brown fox jumps over the lazy dog.",
    "Hello,  world!\n\n  tabs\there 3.14159 2026 12345678",
    "café, cafe\u0301 and naïve ü; 日本語のテキスト; emoji 🙂🚀",
    "don't it's we'll I'M go'st O'Brien",
    "special <eos> tokens <bos>in<pad> text <unk>",
    "",
    "   leading spaces and trailing ones   ",
    "a\n\nb\n\n\nc",
    "x" * 150,
    "MiXeD CaSe ÀÉÎ Straße",
    "{} [] () <> @#$%^&*_+=|\\/~`",
]


def config(kind, size=300):
    return recipe_from_dict({"tokenizer": {"kind": kind, "vocab_size": size}}).tokenizer


@pytest.fixture(scope="module")
def trained():
    return {kind: train_tokenizer(config(kind), iter(TEXTS)) for kind in KINDS}


@pytest.mark.parametrize("kind", KINDS)
def test_train_save_load_round_trip(kind, trained, tmp_path):
    tok = trained[kind]
    assert [tok.backend.token_to_id(t) for t in SPECIAL_TOKENS] == [0, 1, 2, 3]
    tok.save(tmp_path)
    from tokenizers import Tokenizer

    assert Tokenizer.from_file(str(tmp_path / "tokenizer.json")).get_vocab_size() == tok.vocab_size
    loaded = TextTokenizer.load(tmp_path)
    assert (loaded.kind, loaded.lowercase, loaded.normalization) == (kind, False, "nfc")
    for sample in TEXTS[:4]:
        ids = loaded.encode(sample)
        assert ids == tok.encode(sample)
        decoded = loaded.decode(ids)
        if kind == "word":  # words joined by single spaces, line breaks kept
            assert decoded == "\n".join(" ".join(line.split()) for line in sample.split("\n"))
        elif kind == "wordpiece":  # WordPiece keeps words, not the spaces between them
            assert decoded.split() == " ".join(sample.replace(".", " . ").split()).split() or decoded.replace(
                " ", ""
            ) == "".join(sample.split())
        else:  # exact for character, byte-level and SentencePiece kinds
            assert decoded == sample


def test_byte_level_kinds_round_trip_any_text(trained):
    for kind in ("byte", "bpe"):
        for sample in SAMPLE:
            if "<" in sample or "\u0301" in sample:  # special tokens are ids, not text; NFC composes
                continue
            assert trained[kind].decode(trained[kind].encode(sample)) == sample


def test_byte_ids_are_byte_values_after_the_special_tokens(trained):
    tok = trained["byte"]
    assert tok.vocab_size == 256 + len(SPECIAL_TOKENS)
    assert tok.encode("A é") == [b + len(SPECIAL_TOKENS) for b in "A é".encode()]


def test_bpe_reaches_its_vocabulary_size_and_compresses(trained):
    tok = trained["bpe"]
    assert 256 < tok.vocab_size <= 300
    assert len(tok.encode(TEXTS[0])) < len(TEXTS[0].encode("utf-8"))


def test_char_vocabulary_is_the_corpus_alphabet():
    tok = train_tokenizer(config("char"), iter(["abcab", "cba!"]))
    assert tok.vocab_size == len(SPECIAL_TOKENS) + 4
    assert tok.encode("z") == [tok.unk_id]  # unseen character -> unknown token
    assert tok.decode(tok.encode("abc!")) == "abc!"


def word_config(**options):
    return recipe_from_dict({"tokenizer": {"kind": "word", "vocab_size": 1000, **options}}).tokenizer


def test_word_vocabulary_is_the_frequent_words_with_line_breaks_as_tokens():
    texts = ["a a a b b c\nd", "a b"]  # a 4, b 3, c 1, d 1, one line break
    tok = train_tokenizer(word_config(min_frequency=2), iter(texts))
    assert sorted(tok.backend.get_vocab()) == sorted(SPECIAL_TOKENS + ["a", "b"])  # c, d and "\n" seen < 2
    tok = train_tokenizer(word_config(), iter(texts))
    ids = tok.encode("a  c\n\nzebra")
    assert [tok.token(i) for i in ids] == ["a", "c", "\n", "\n", "<unk>"]
    assert tok.decode(ids) == "a c\n\n"  # <unk> is a special token, left out of the text
    assert tok.surface_bytes(tok.backend.token_to_id("\n")) == b"\n"
    ranked = [" ".join([f"w{i}"] * (50 - i)) for i in range(40)]  # w0 the most frequent, w39 the least
    capped = train_tokenizer(word_config(vocab_size=32), iter(ranked))
    assert sorted(capped.backend.get_vocab()) == sorted(SPECIAL_TOKENS + [f"w{i}" for i in range(28)])


def test_word_pattern_and_line_breaks_as_spaces(tmp_path):
    tok = train_tokenizer(word_config(word_pattern=r"\w+|[^\w\s]", end_of_line=False), iter(TEXTS))
    assert [tok.token(i) for i in tok.encode("Don't stop:\nit")] == ["Don", "'", "t", "stop", ":", "it"]
    tok.save(tmp_path)
    loaded = TextTokenizer.load(tmp_path)
    assert loaded.word_regex == tok.word_regex and loaded.encode("it's") == tok.encode("it's")


def test_word_pattern_is_checked_by_the_recipe():
    from llmtui.errors import RecipeError

    with pytest.raises(RecipeError, match="not a valid regular expression"):
        word_config(word_pattern="(")
    with pytest.raises(RecipeError, match="empty string"):
        word_config(word_pattern=r"\w*")


@pytest.mark.parametrize("kind", KINDS)
def test_normalisation_agrees_with_the_data_stage(kind, tmp_path):
    lowered = [t.lower() for t in TEXTS]
    tok = train_tokenizer(config(kind), iter(lowered), lowercase=True)
    assert tok.encode("The CAFÉ") == tok.encode("the café")
    assert tok.encode("cafe\u0301") == tok.encode("café")  # NFC, like the data stage's default
    tok.save(tmp_path)
    loaded = TextTokenizer.load(tmp_path)
    assert loaded.lowercase and loaded.encode("HELLO") == loaded.encode("hello")


def test_nfkc_and_no_normalisation():
    nfkc = train_tokenizer(config("char"), iter(["ﬁ fi 1"]), normalization="nfkc")
    assert nfkc.encode("ﬁ") == nfkc.encode("fi")
    raw = train_tokenizer(config("char"), iter(["e\u0301"]), normalization="none")
    assert raw.encode("e\u0301") == [raw.backend.token_to_id("e"), raw.backend.token_to_id("\u0301")]


def test_unigram_is_sentencepiece_and_saves_its_proto(trained, tmp_path):
    import sentencepiece as spm

    tok = trained["unigram"]
    tok.save(tmp_path)
    processor = spm.SentencePieceProcessor(model_file=str(tmp_path / "tokenizer.model"))
    for sample in TEXTS[:4]:
        assert processor.encode(sample) == tok.encode(sample)


@pytest.mark.parametrize(
    "kind,lowercase",
    [
        *[(kind, False) for kind in KINDS],
        *[(kind, True) for kind in ("char", "byte", "wordpiece", "unigram", "word")],
        pytest.param("bpe", True, marks=pytest.mark.slow),  # keras-hub's in-graph BPE is slow to trace on CPU
    ],
)
def test_in_graph_keras_hub_twin_gives_the_same_ids(kind, lowercase):
    import tensorflow as tf

    from llmtui.tokenizers.in_graph import in_graph_tokenizer

    corpus = [t.lower() for t in TEXTS] if lowercase else TEXTS
    tok = train_tokenizer(config(kind), iter(corpus), lowercase=lowercase)
    twin = in_graph_tokenizer(tok)
    sample = SAMPLE + TEXTS[:4]
    in_graph = tf.function(twin.tokenize)(tf.constant(sample)).to_list()  # in a graph, batched
    for text, ids in zip(sample, in_graph):
        assert ids == tok.encode(text), (kind, text)


def test_in_graph_word_twin_with_a_word_pattern():
    import tensorflow as tf

    from llmtui.tokenizers.in_graph import in_graph_tokenizer

    tok = train_tokenizer(word_config(word_pattern=r"\w+|[^\w\s]"), iter(TEXTS))
    sample = SAMPLE + TEXTS[:4]
    in_graph = tf.function(in_graph_tokenizer(tok).tokenize)(tf.constant(sample)).to_list()
    for text, ids in zip(sample, in_graph):
        assert ids == tok.encode(text), text


def test_in_graph_twin_runs_in_tf_data_one_string_at_a_time(trained):
    import tensorflow as tf

    from llmtui.tokenizers.in_graph import in_graph_tokenizer

    tok = trained["unigram"]
    dataset = tf.data.Dataset.from_tensor_slices(SAMPLE).map(in_graph_tokenizer(tok).tokenize)
    assert [row.numpy().tolist() for row in dataset] == [tok.encode(text) for text in SAMPLE]


def test_vocabulary_report_matches_a_hand_count():
    tok = train_tokenizer(config("char"), iter(["ab ab", "éa"]))
    train_counts = np.bincount([i for t in ["ab ab", "éa"] for i in tok.encode(t)], minlength=tok.vocab_size)
    report = vocabulary_report(tok, ["ab é", "zz"], train_counts)
    v = report["validation"]
    # "ab é": a, b, ' ', é = 4 tokens, 5 bytes, 2 words; "zz": 2 unknown tokens, 2 bytes, 1 word.
    assert (v["tokens"], v["unknown_tokens"], v["bytes"], v["words"], v["characters"]) == (6, 2, 7, 3, 6)
    assert v["unknown_rate"] == pytest.approx(2 / 6)
    assert v["bytes_per_token"] == pytest.approx(7 / 6)
    assert v["tokens_per_word"] == pytest.approx(6 / 3)
    assert report["vocab_size"] == len(SPECIAL_TOKENS) + 4
    # Train counts: a 3, b 2, ' ' 1, é 1 (of 7).
    first = report["most_frequent"][0]
    assert (first["text"], first["count"], first["share"]) == ("a", 3, pytest.approx(3 / 7, abs=1e-6))
    assert [e["text"] for e in report["most_frequent"]] == ["a", "b", " ", "é"]
    assert report["longest"][0]["text"] == "é" and report["longest"][0]["bytes"] == 2
    assert report["unused_tokens"] == 0


def test_report_shows_pieces_as_text(trained):
    report = vocabulary_report(trained["bpe"], TEXTS[:4])
    texts = [e["text"] for e in report["longest"]]
    assert all("Ġ" not in t for t in texts)  # byte-level symbols shown as the text they stand for
    assert report["validation"]["unknown_rate"] == 0.0


def test_pipeline_tokenizer_stage_writes_the_report(tiny_recipe, tmp_path):
    from llmtui.events import EventRecorder, Message
    from llmtui.pipeline import Pipeline

    recorder = EventRecorder()
    pipeline = Pipeline(tiny_recipe, base_dir=tmp_path, sinks=[recorder])
    pipeline.execute(until="tokenizer")
    report = json.loads((pipeline.run.tokenizer_dir / "report.json").read_text(encoding="utf-8"))
    meta = json.loads((pipeline.run.tokenizer_dir / "tokens.json").read_text(encoding="utf-8"))
    assert report["vocab_size"] == meta["vocab_size"]
    assert report["counts_from"] == "train" and report["most_frequent"][0]["count"] > 0
    assert 0 <= report["validation"]["unknown_rate"] < 0.05
    assert any("bytes/token" in e.text for e in recorder.of_type(Message))


@pytest.mark.parametrize("kind", ["char", "byte", "bpe", "wordpiece", "unigram", "word"])
def test_transformers_fast_tokenizer_loads_the_saved_file(kind, tmp_path):
    """The saved tokenizer.json is the standard format: transformers gives the same ids and text."""
    transformers = pytest.importorskip("transformers")
    texts = ["The quick brown fox jumps over the lazy dog. It's 3.14, café ü!"] * 30 + [
        "Tokenizers split text; models learn."
    ] * 30
    tok = train_tokenizer(recipe_from_dict({"tokenizer": {"kind": kind, "vocab_size": 300}}).tokenizer, iter(texts))
    tok.save(tmp_path)
    fast = transformers.PreTrainedTokenizerFast(tokenizer_file=str(tmp_path / "tokenizer.json"))
    sample = "The lazy café fox's 3.14 learns models!"
    ids = fast(sample, add_special_tokens=False)["input_ids"]
    assert ids == tok.encode(sample)
    assert fast.decode(ids, skip_special_tokens=True) == tok.decode(ids)
