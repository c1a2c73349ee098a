"""Vocabularies: char, byte, BPE, WordPiece and Unigram tokenizers, saved as standard tokenizer.json."""

from llmtui.tokenizers.text_tokenizer import SPECIAL_TOKENS, TextTokenizer, train_tokenizer

__all__ = ["SPECIAL_TOKENS", "TextTokenizer", "train_tokenizer"]
