"""In-graph twins of our tokenizers, built from keras-hub's tokenizer layers (TensorFlow ops, usable in
tf.data and exported graphs). They give the same ids as `TextTokenizer` on text (tested on a varied sample).

| kind | in-graph route |
| --- | --- |
| bpe | `keras_hub.tokenizers.BytePairTokenizer` with our vocabulary and merges |
| byte | `keras_hub.tokenizers.ByteTokenizer`; our byte ids are the byte values shifted past the special tokens |
| wordpiece | `keras_hub.tokenizers.WordPieceTokenizer` with our vocabulary (BERT splitting, no CJK split) |
| unigram | `keras_hub.tokenizers.SentencePieceTokenizer` on the SentencePiece proto that trained the vocabulary |
| char | no keras-hub layer maps characters onto a learned alphabet: `tf.strings.unicode_split` and a static table |
| word | `tf_text.regex_split` on the saved word expression (RE2), keeping the matches, and a static table |

The same normalisation as the saved `tokenizer.json` runs first (the data stage's Unicode form, then
lowercasing when the data stage lowercased). Two known differences: lowercasing in-graph uses simple
per-character case mapping (`tf.strings.lower`), so the few characters whose lowercase is two characters
(such as "İ") differ; and keras-hub pre-splits a run of spaces at the very end of a text as "  " + " " where
`tokenizers` keeps "   " whole, which changes ids only if BPE learned a merge across such a run (the data
stage strips and squeezes spaces, so its text has none).
"""

from __future__ import annotations

import json
import os
import re

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras_hub  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_text as tf_text  # noqa: E402

from llmtui.tokenizers.text_tokenizer import SPECIAL_TOKENS, UNK, TextTokenizer  # noqa: E402

_SPECIAL_PATTERN = "|".join(re.escape(token) for token in SPECIAL_TOKENS)


class InGraphTokenizer:
    """Strings -> ids with TensorFlow ops only; `tokenize` accepts a scalar or a batch of strings.

    Example:
        tok = in_graph_tokenizer(TextTokenizer.load(RunFolder(run_dir).tokenizer_dir))
        ds = tf.data.Dataset.from_tensor_slices(texts).map(tok.tokenize)
    """

    def __init__(self, tokenizer: TextTokenizer):
        self.kind = tokenizer.kind
        self.lowercase = tokenizer.lowercase
        self.normalization = tokenizer.normalization
        self.unk_id = tokenizer.unk_id
        self.vocab_size = tokenizer.vocab_size
        vocab = tokenizer.backend.get_vocab(with_added_tokens=True)
        self.special_table = _table(SPECIAL_TOKENS, [vocab[t] for t in SPECIAL_TOKENS], default=-1)
        self.layer = _keras_hub_layer(tokenizer, vocab)  # None for char
        if self.kind in ("char", "word"):
            pieces = [t for t in vocab if t not in SPECIAL_TOKENS]
            self.piece_table = _table(
                pieces, [vocab[p] for p in pieces], default=-1 if self.unk_id is None else self.unk_id
            )
        self.word_regex = tokenizer.word_regex
        if self.kind == "word" and not self.word_regex:
            from llmtui.errors import RunFolderError

            raise RunFolderError(
                "this word tokenizer has no word expression in llmtui_tokenizer.json beside it",
                hint="train the tokenizer again: llmtui tokenizer train RECIPE",
            )

    def normalize(self, text):
        if self.normalization != "none":
            text = tf_text.normalize_utf8(text, self.normalization.upper())
        return tf.strings.lower(text, encoding="utf-8") if self.lowercase else text

    def tokenize(self, text):
        """(batch,) strings -> ragged (batch, None) int32 ids; a scalar string -> (None,) ids."""
        text = tf.convert_to_tensor(text, dtype=tf.string)
        scalar = text.shape.rank == 0
        batch = self.normalize(tf.reshape(text, [-1]))
        if self.kind in ("bpe", "wordpiece"):
            ids = self.layer(batch)  # keras-hub splits out special tokens itself
        else:
            ids = self._tokenize_around_specials(batch)
        ids = tf.cast(ids, tf.int32)
        return ids[0] if scalar else ids

    def _layer_on(self, flat):
        """The keras-hub layer on a flat batch that may be empty (which the layers mistake for one string)."""
        padded = tf.concat([flat, tf.constant(["x"])], axis=0)
        return tf.cast(self.layer(padded), tf.int64)[:-1]

    def _tokenize_around_specials(self, batch):
        """Special tokens written in the text become their single ids (as `tokenizers` does); the pieces
        between them go through the kind's own route. (B,) -> pieces (B, P) -> ids (B, P, T) -> (B, T)."""
        pieces = tf_text.regex_split(batch, _SPECIAL_PATTERN, _SPECIAL_PATTERN)  # (B, P)
        flat = pieces.flat_values  # (N,) all pieces of the batch
        special = self.special_table.lookup(flat)  # (N,), -1 where the piece is ordinary text
        is_special = special >= 0
        if self.kind == "char":
            chars = tf.strings.unicode_split(flat, "UTF-8")  # (N, C)
            ordinary = tf.ragged.map_flat_values(self.piece_table.lookup, chars)
        elif self.kind == "word":
            # The split keeps the matches and the gaps between them; a gap never fully matches (else the
            # search would have matched there), so a full match is exactly a word.
            words = tf_text.regex_split(flat, self.word_regex, self.word_regex)  # (N, W)
            words = tf.ragged.boolean_mask(words, tf.strings.regex_full_match(words, self.word_regex))
            ordinary = tf.ragged.map_flat_values(self.piece_table.lookup, words)
        elif self.kind == "byte":
            ordinary = self._layer_on(flat) + len(SPECIAL_TOKENS)  # (N, T) byte values, shifted
        else:  # unigram
            ordinary = self._layer_on(flat)  # (N, T)
        keep = ordinary.with_flat_values(tf.repeat(tf.logical_not(is_special), ordinary.row_lengths()))
        ordinary = tf.ragged.boolean_mask(ordinary, keep)  # a special piece's own split emptied...
        specials = tf.RaggedTensor.from_row_lengths(  # ...and its id put in its place
            tf.boolean_mask(special, is_special), tf.cast(is_special, tf.int64)
        )
        per_piece = tf.concat([ordinary, specials], axis=1)  # (N, T)
        return pieces.with_flat_values(per_piece).merge_dims(1, 2)  # (B, T)


def in_graph_tokenizer(tokenizer: TextTokenizer) -> InGraphTokenizer:
    """The keras-hub (TensorFlow) twin of `tokenizer`."""
    return InGraphTokenizer(tokenizer)


def _keras_hub_layer(tokenizer: TextTokenizer, vocab: dict[str, int]):
    # Force the TensorFlow route even when called eagerly (keras-hub may otherwise use a Python path).
    options = {"_allow_python_workflow": False, "dtype": "int32"}
    if tokenizer.kind == "byte":
        return keras_hub.tokenizers.ByteTokenizer(lowercase=False, normalization_form=None, **options)
    if tokenizer.kind == "bpe":
        model = json.loads(tokenizer.backend.to_str())["model"]
        merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
        return keras_hub.tokenizers.BytePairTokenizer(
            vocabulary=vocab, merges=merges, unsplittable_tokens=SPECIAL_TOKENS, **options
        )
    if tokenizer.kind == "wordpiece":
        by_id = [token for token, _ in sorted(vocab.items(), key=lambda item: item[1])]
        return keras_hub.tokenizers.WordPieceTokenizer(
            vocabulary=by_id,
            lowercase=False,
            strip_accents=False,
            split=True,
            split_on_cjk=False,
            suffix_indicator="##",
            oov_token=UNK,
            special_tokens=SPECIAL_TOKENS,
            special_tokens_in_strings=True,
            **options,
        )
    if tokenizer.kind == "unigram":
        if tokenizer.sentencepiece_proto is None:
            from llmtui.errors import RunFolderError

            raise RunFolderError(
                "this unigram tokenizer has no tokenizer.model (SentencePiece proto) beside it",
                hint="train the tokenizer again: llmtui tokenizer train RECIPE",
            )
        return keras_hub.tokenizers.SentencePieceTokenizer(proto=tokenizer.sentencepiece_proto, **options)
    return None


def _table(keys: list[str], values: list[int], default: int):
    return tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(tf.constant(keys, tf.string), tf.constant(values, tf.int64)),
        default_value=tf.constant(default, tf.int64),
    )
