"""Vocabulary training, saving and loading on top of Hugging Face `tokenizers` (and `sentencepiece`).

Every kind is saved as a standard `tokenizer.json` (loadable by `tokenizers.Tokenizer.from_file` and by
transformers' `PreTrainedTokenizerFast`). Special tokens take the first ids in a fixed order.

Normalisation agrees with the data stage: the training text is already in the Unicode form of
`data.clean.normalize` (and lowercased when `data.lowercase` is on), and the saved tokenizer applies the same
normaliser, so prompts typed at generation time are treated like the training text.

The word kind is the classic word-level vocabulary: the text split into words (on whitespace, or the matches
of `tokenizer.word_pattern`), each line break a token of its own (`tokenizer.end_of_line`), the most
frequent words kept up to `vocab_size` and those seen fewer than `min_frequency` times read as `<unk>`.
Decoding joins words with single spaces (the original spacing is not kept).

The unigram kind is trained by `sentencepiece` itself (the reference implementation of the Unigram
language model) and saved twice: `tokenizer.model` (the SentencePiece proto, which keras-hub's
`SentencePieceTokenizer` loads in-graph) and the equivalent `tokenizer.json` built from its pieces and scores.
"""

from __future__ import annotations

import io
import json
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from llmtui.config.recipe import TokenizerConfig
from llmtui.errors import RunFolderError

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<bos>", "<eos>"
SPECIAL_TOKENS = [PAD, UNK, BOS, EOS]
SENTENCEPIECE_FILE = "tokenizer.model"
META_FILE = "llmtui_tokenizer.json"
METASPACE = "\u2581"  # ▁, SentencePiece's visible space
# Whitespace spelled out the same way for Oniguruma (tokenizers) and RE2 (the in-graph twin), whose `\s`
# differ (RE2's is ASCII only): Python's str.split() whitespace, i.e. Unicode White_Space.
WORD_WHITESPACE = r"\t\n\x{0b}\x{0c}\r\x{1c}-\x{1f}\x{85}\p{Z}"
EOL = "\n"


class TextTokenizer:
    """A trained vocabulary: text <-> ids."""

    def __init__(
        self,
        backend,
        kind: str,
        lowercase: bool = False,
        normalization: str = "nfc",
        sentencepiece_proto: bytes | None = None,
        special_names: dict[str, str | None] | None = None,
        word_regex: str = "",
    ):
        self.backend = backend  # tokenizers.Tokenizer
        self.kind = kind
        self.word_regex = word_regex  # word only: what a token is (line breaks included when they are tokens)
        self.lowercase = lowercase
        self.normalization = normalization  # none | nfc | nfkc
        self.sentencepiece_proto = sentencepiece_proto  # unigram only
        # {pad, unk, bos, eos: the token's name}: ours unless the vocabulary came with a pretrained model, whose
        # own names (GPT-2's <|endoftext|>, Llama's <s> and </s>) it keeps.
        self.special_names = special_names or {"pad": PAD, "unk": UNK, "bos": BOS, "eos": EOS}
        ids: dict[str, Any] = {
            role: None if name is None else backend.token_to_id(name) for role, name in self.special_names.items()
        }
        self.pad_id, self.unk_id, self.bos_id, self.eos_id = ids["pad"], ids.get("unk"), ids["bos"], ids["eos"]

    @property
    def vocab_size(self) -> int:
        return self.backend.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        return self.backend.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        # The fast variant skips character offsets, which nothing here needs.
        return [e.ids for e in self.backend.encode_batch_fast(texts, add_special_tokens=False)]

    def pieces(self, text: str) -> list[tuple[int, str, tuple[int, int]]]:
        """(id, piece, (start, end) character span in `text`) for each token: what `llmtui tokenizer encode` shows."""
        encoding = self.backend.encode(text, add_special_tokens=False)
        return list(zip(encoding.ids, encoding.tokens, encoding.offsets))

    def decode(self, ids: Iterable[int]) -> str:
        return self.backend.decode([int(i) for i in ids], skip_special_tokens=True)

    def token(self, token_id: int) -> str:
        return self.backend.id_to_token(int(token_id))

    def surface_bytes(self, token_id: int) -> bytes:
        """The bytes of text a token stands for (b"" for special tokens): what reports and vector lookups use."""
        piece = self.token(token_id)
        if piece is None or piece in SPECIAL_TOKENS or piece in self.special_names.values():
            return b""
        if self.kind in ("bpe", "byte"):
            return bytes(_BYTE_OF_SYMBOL.get(c, 0) for c in piece)
        if self.kind == "wordpiece" and piece.startswith("##"):
            piece = piece[2:]
        elif self.kind == "unigram":
            piece = piece.replace(METASPACE, " ")
        return piece.encode("utf-8")

    def surface(self, token_id: int) -> str:
        """The text a token stands for; a byte-level piece of a character shows as escapes such as \\xc3."""
        return self.surface_bytes(token_id).decode("utf-8", errors="backslashreplace")

    def is_word_start(self, token_id: int) -> bool:
        """Whether the token begins a word (rather than continuing one): whole words versus pieces."""
        piece = self.token(token_id) or ""
        if self.kind in ("bpe", "byte"):
            return piece.startswith("\u0120")  # Ġ, the byte-level space
        if self.kind == "wordpiece":
            return not piece.startswith("##")
        if self.kind == "unigram":
            return piece.startswith(METASPACE)
        return True

    def save(self, folder: Path) -> list[Path]:
        """Write the tokenizer into `folder`; returns the files written."""
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "tokenizer.json"
        tmp = folder / "tokenizer.json.tmp"
        self.backend.save(str(tmp))
        tmp.replace(path)
        written = [path, folder / META_FILE]
        if self.sentencepiece_proto is not None:
            (folder / SENTENCEPIECE_FILE).write_bytes(self.sentencepiece_proto)
            written.append(folder / SENTENCEPIECE_FILE)
        meta = {
            "kind": self.kind,
            "lowercase": self.lowercase,
            "normalization": self.normalization,
            "special_tokens": SPECIAL_TOKENS,
            "special_names": self.special_names,
        }
        if self.word_regex:
            meta["word_regex"] = self.word_regex
        (folder / META_FILE).write_text(json.dumps(meta) + "\n", encoding="utf-8")
        return written

    @classmethod
    def load(cls, folder: Path) -> TextTokenizer:
        from tokenizers import Tokenizer

        path = folder / "tokenizer.json"
        if not path.exists():
            raise RunFolderError(
                f"no tokenizer at {path}", hint="run the recipe's tokenizer stage first (llmtui run RECIPE)"
            )
        meta_path = folder / META_FILE
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.exists() else {}
            proto_path = folder / SENTENCEPIECE_FILE
            proto = proto_path.read_bytes() if proto_path.exists() else None
            tokenizer = Tokenizer.from_file(str(path))
        except (ValueError, UnicodeDecodeError, Exception) as exc:  # the tokenizers library raises plain Exception
            if isinstance(exc, OSError):
                raise
            raise RunFolderError(
                f"the tokenizer in {folder} is damaged ({type(exc).__name__}: {exc})",
                hint="run the recipe again (llmtui run RECIPE): its tokenizer stage redoes it",
            ) from None
        return cls(
            tokenizer,
            meta.get("kind", "unknown"),
            bool(meta.get("lowercase", False)),
            meta.get("normalization", "nfc"),
            proto,
            meta.get("special_names"),
            meta.get("word_regex", ""),
        )


def train_tokenizer(
    config: TokenizerConfig, texts: Iterable[str], lowercase: bool = False, normalization: str = "nfc"
) -> TextTokenizer:
    """Train a vocabulary of the configured kind on `texts` (the train split, as the data stage wrote it).

    `lowercase` and `normalization` (none, nfc or nfkc) are the data stage's `data.lowercase` and
    `data.clean.normalize`: the saved tokenizer treats new text the same way.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    proto = None
    if config.kind == "char":
        counts: Counter[str] = Counter()
        for text in texts:
            counts.update(text)
        chars = sorted(c for c, n in counts.items() if n >= config.min_frequency)
        vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS)}
        for char in chars:
            vocab.setdefault(char, len(vocab))
        backend = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=UNK))
        backend.decoder = decoders.Fuse()
    elif config.kind == "byte":
        # Id = 4 + byte value, so the in-graph twin is keras-hub's ByteTokenizer shifted past the special tokens.
        symbols = _byte_symbols()
        vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS + symbols)}
        backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
        backend.decoder = decoders.ByteLevel()
    elif config.kind == "bpe":
        backend = Tokenizer(models.BPE())
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        backend.decoder = decoders.ByteLevel()
        trainer: Any = trainers.BpeTrainer(
            vocab_size=config.vocab_size,
            min_frequency=config.min_frequency,
            special_tokens=SPECIAL_TOKENS,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        backend.train_from_iterator(_batched(texts), trainer=trainer)
    elif config.kind == "wordpiece":
        backend = Tokenizer(models.WordPiece(unk_token=UNK))
        backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        backend.decoder = decoders.WordPiece()
        trainer = trainers.WordPieceTrainer(
            vocab_size=config.vocab_size,
            min_frequency=config.min_frequency,
            special_tokens=SPECIAL_TOKENS,
            show_progress=False,
        )
        backend.train_from_iterator(_batched(texts), trainer=trainer)
    elif config.kind == "unigram":
        proto = _train_sentencepiece(config, texts)
        backend = _unigram_from_sentencepiece(proto)
    elif config.kind == "word":
        word_regex = word_regex_of(config)
        backend = Tokenizer(models.WordLevel(vocab={}, unk_token=UNK))
        backend.pre_tokenizer = _word_pre_tokenizer(word_regex)
        backend.decoder = _word_decoder()
        # The normaliser goes on before training: the words are counted as they will be read.
        backend.normalizer = _normalizer(lowercase, normalization)
        trainer = trainers.WordLevelTrainer(
            vocab_size=config.vocab_size,
            min_frequency=config.min_frequency,
            special_tokens=SPECIAL_TOKENS,
            show_progress=False,
        )
        backend.train_from_iterator(_batched(texts), trainer=trainer)
    else:  # the recipe's Literal makes this unreachable; kept for direct library callers
        raise ValueError(f"unknown tokenizer kind {config.kind!r}")
    backend.normalizer = _normalizer(lowercase, normalization, sentencepiece=config.kind == "unigram")
    backend.add_special_tokens(SPECIAL_TOKENS)
    return TextTokenizer(
        backend,
        config.kind,
        lowercase,
        normalization,
        proto,
        word_regex=word_regex_of(config) if config.kind == "word" else "",
    )


def word_regex_of(config: TokenizerConfig) -> str:
    """The regular expression whose matches are the word kind's tokens: the words, then line breaks."""
    words = _unicode_classes(config.word_pattern) if config.word_pattern else f"[^{WORD_WHITESPACE}]+"
    return f"{EOL}|(?:{words})" if config.end_of_line else f"(?:{words})"


# Perl classes spelled as Unicode properties. Oniguruma reads \w, \d and \s as Unicode, RE2 as ASCII only;
# spelled out, both engines (and Python's `re`, which the recipe checks against) mean the same characters.
_CLASS_BODY = {"w": r"\p{L}\p{M}\p{Nd}\p{Pc}", "d": r"\p{Nd}", "s": WORD_WHITESPACE}


def _unicode_classes(pattern: str) -> str:
    """`pattern` with \\w, \\d, \\s (and \\W, \\D, \\S outside brackets) written as Unicode property classes."""
    out, i, in_class = [], 0, False
    while i < len(pattern):
        char = pattern[i]
        if char == "\\" and i + 1 < len(pattern):
            code = pattern[i + 1]
            if code.lower() in _CLASS_BODY and (in_class and code.islower() or not in_class):
                body = _CLASS_BODY[code.lower()]
                out.append(body if in_class else f"[{'^' if code.isupper() else ''}{body}]")
            else:
                out.append(pattern[i : i + 2])
            i += 2
            continue
        if char == "[" and not in_class:
            in_class = True
            out.append(char)
            if pattern[i + 1 : i + 2] == "^":  # a "]" right after "[" or "[^" is a literal
                out.append("^")
                i += 1
            if pattern[i + 1 : i + 2] == "]":
                out.append("]")
                i += 1
        elif char == "]" and in_class:
            in_class = False
            out.append(char)
        else:
            out.append(char)
        i += 1
    return "".join(out)


def _word_pre_tokenizer(word_regex: str):
    from tokenizers import Regex, pre_tokenizers

    # invert: the matches are the pieces, and what lies between them (spaces) is dropped.
    return pre_tokenizers.Split(Regex(word_regex), behavior="removed", invert=True)


def _word_decoder():
    """Words joined by one space, with no space around a line break: a space before every token, all of them
    fused into one string, then the spaces beside line breaks and the one in front removed."""
    from tokenizers import Regex, decoders

    return decoders.Sequence(
        [
            decoders.Replace(Regex(r"\A"), " "),
            decoders.Fuse(),
            decoders.Replace(Regex(f" ?{EOL} ?"), EOL),
            decoders.Strip(" ", 1, 0),
        ]
    )


def _normalizer(lowercase: bool, normalization: str, sentencepiece: bool = False):
    from tokenizers import normalizers

    forms: dict[str, list[Any]] = {"none": [], "nfc": [normalizers.NFC()], "nfkc": [normalizers.NFKC()]}
    if normalization not in forms:
        raise ValueError(f"unknown Unicode normalization {normalization!r}; use none, nfc or nfkc")
    steps = list(forms[normalization])
    if lowercase:
        steps.append(normalizers.Lowercase())
    if sentencepiece:  # what SentencePiece does itself: a "▁" before the text, and "▁" for every space
        steps += [normalizers.Prepend(METASPACE), normalizers.Replace(" ", METASPACE)]
    return normalizers.Sequence(steps)


def _byte_symbols() -> list[str]:
    """The 256 printable stand-ins of byte-level tokenizers (GPT-2's table), indexed by byte value."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            table[byte] = chr(byte)
        else:
            table[byte] = chr(256 + extra)
            extra += 1
    return [table[b] for b in range(256)]


_BYTE_OF_SYMBOL = {symbol: byte for byte, symbol in enumerate(_byte_symbols())}


def _train_sentencepiece(config: TokenizerConfig, texts: Iterable[str]) -> bytes:
    """A SentencePiece Unigram model proto, trained without any normalisation of its own (the data stage did it)."""
    import sentencepiece as spm

    model = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(texts),
            model_writer=model,
            model_type="unigram",
            vocab_size=config.vocab_size,
            hard_vocab_limit=False,
            character_coverage=1.0,
            normalization_rule_name="identity",
            remove_extra_whitespaces=False,
            add_dummy_prefix=True,
            pad_id=0,
            unk_id=1,
            bos_id=2,
            eos_id=3,
            pad_piece=PAD,
            unk_piece=UNK,
            bos_piece=BOS,
            eos_piece=EOS,
            max_sentence_length=1 << 24,
            input_sentence_size=1_000_000,
            shuffle_input_sentence=True,
            minloglevel=2,
            num_threads=2,
        )
    except RuntimeError as exc:
        from llmtui.errors import LlmtuiError

        raise LlmtuiError(
            f"sentencepiece could not train a unigram vocabulary: {exc}", hint="add text, or lower tokenizer.vocab_size"
        ) from None
    return model.getvalue()


def _unigram_from_sentencepiece(proto: bytes):
    """The `tokenizers` twin of a SentencePiece Unigram proto: same pieces, scores, ids and whitespace handling."""
    from sentencepiece import sentencepiece_model_pb2
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    spec = sentencepiece_model_pb2.ModelProto()  # type: ignore[attr-defined]  # generated protobuf module
    spec.ParseFromString(proto)
    vocab = [(piece.piece, piece.score) for piece in spec.pieces]
    backend = Tokenizer(models.Unigram(vocab, unk_id=SPECIAL_TOKENS.index(UNK), byte_fallback=False))
    # The normaliser already wrote the spaces as "▁"; split before each so pieces never span words.
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement=METASPACE, prepend_scheme="never", split=True)
    backend.decoder = decoders.Metaspace(replacement=METASPACE, prepend_scheme="always", split=True)
    return backend


def _batched(texts: Iterable[str], size: int = 1000) -> Iterator[list[str]]:
    batch = []
    for text in texts:
        batch.append(text)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
