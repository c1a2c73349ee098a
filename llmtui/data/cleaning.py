"""Cleaning steps and filters for one document at a time (run in worker processes).

`Cleaner.clean` applies the recipe's `[data.clean]` steps in a fixed order: mojibake repair (ftfy),
Unicode normalisation, control characters, markup remnants, PII scrubbing, allowed characters,
lowercasing, whitespace. `Cleaner.filter` applies the line filters (C4-style lines, boilerplate lines
counted across the corpus) and the document filters of `[data.filters]`; a dropped document is named by
the recipe key of the filter that dropped it, so reports and errors point at the setting to change.
"""

from __future__ import annotations

import html
import re
import unicodedata
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from llmtui.config.recipe import DataConfig

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_TAG = re.compile(r"<!--.*?-->|<\?.*?\?>|</?[A-Za-z][A-Za-z0-9:-]*(?:\s[^<>]*)?/?>", re.DOTALL)
_ENTITY = re.compile(r"&(?:#\d{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});")
_EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b")
_IPV4 = re.compile(r"\b(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)\b")
_IPV6 = re.compile(r"\b(?:[0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4}\b")
# International or national numbers with separators: +44 20 7946 0958, (555) 123-4567, 555-123-4567.
_PHONE = re.compile(r"(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d{2,4}(?:[ .-]\d{2,4}){1,4}(?![\w-])")
_DATE = re.compile(r"\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{4}")
_ODD_SPACES = re.compile(r"[\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000\f\v]")
_TRAILING_SPACE = re.compile(r"[ \t]+\n")
_MANY_BLANK_LINES = re.compile(r"\n{3,}")
_C4_BAD = re.compile(r"javascript|lorem ipsum|[{}]", re.IGNORECASE)
_TERMINAL = (".", "!", "?", '"', "'", "\u201d", "\u2019", ":", ";", "\u3002")

SKETCH_ROWS, SKETCH_WIDTH = 4, 1 << 21


@dataclass
class Cleaned:
    text: str
    repaired: bool = False
    pii: Counter = field(default_factory=Counter)
    lines_removed: Counter = field(default_factory=Counter)


class Cleaner:
    """The cleaning steps and filters of one recipe's `[data]` section."""

    def __init__(self, config: DataConfig, boilerplate_sketch: np.ndarray | None = None):
        self.config = config
        self.clean_config = config.clean
        self.filters = config.filters
        self.sketch = boilerplate_sketch
        allowed = config.clean.allowed_chars
        self._disallowed = re.compile(f"[^{allowed}]") if allowed else None

    # Cleaning -----------------------------------------------------------------------------------
    def clean(self, text: str, repaired: bool = False) -> Cleaned:
        c = self.clean_config
        if c.fix_encoding:
            import ftfy

            fixed = ftfy.fix_encoding(text)
            if fixed != text:
                text, repaired = fixed, True
        if c.normalize != "none":
            text = unicodedata.normalize(c.normalize.upper(), text)  # type: ignore[arg-type]  # NFC, NFKC: the recipe's choices
        text = text.replace("\r\n", "\n").replace("\r", "\n")
        if c.control_chars:
            text = _CONTROL.sub("", text)
        if c.strip_markup:
            text = _TAG.sub("", text)
            if "&" in text:
                text = _ENTITY.sub(lambda m: html.unescape(m.group(0)), text)
        result = Cleaned(text, repaired)
        if c.scrub_pii:
            result.text = scrub_pii(result.text, c.scrub_pii, result.pii)
        if self._disallowed is not None:
            result.text = self._disallowed.sub("", result.text)
        if self.config.lowercase:
            result.text = result.text.lower()
        if c.whitespace:
            result.text = normalize_whitespace(result.text)
        else:
            result.text = result.text.strip("\n")
        return result

    # Filters ------------------------------------------------------------------------------------
    def filter_lines(self, result: Cleaned) -> None:
        f = self.filters
        if not (f.c4_lines or self.sketch is not None):
            return
        kept = []
        for line in result.text.split("\n"):
            if (
                self.sketch is not None
                and line.strip()
                and sketch_count(self.sketch, line_hash(line)) >= f.boilerplate_min_docs
            ):
                result.lines_removed["filters.boilerplate_min_docs"] += 1
                continue
            if f.c4_lines and line.strip() and not c4_line_ok(line):
                result.lines_removed["filters.c4_lines"] += 1
                continue
            kept.append(line)
        if len(kept) != result.text.count("\n") + 1:
            result.text = "\n".join(kept).strip()
            if self.clean_config.whitespace:
                result.text = _MANY_BLANK_LINES.sub("\n\n", result.text)

    def rejected_by(self, text: str) -> str | None:
        """The recipe key of the first document filter that drops `text`, or None to keep it."""
        f = self.filters
        if len(text) < self.config.min_chars:
            return "min_chars"
        if f.max_chars and len(text) > f.max_chars:
            return "filters.max_chars"
        needs_words = (
            f.min_words or f.max_symbol_ratio or f.min_alpha_words or f.max_top_ngram or f.max_duplicate_ngrams
        )
        words = text.split() if needs_words else []
        if f.min_words and len(words) < f.min_words:
            return "filters.min_words"
        if f.max_symbol_ratio and words:
            symbols = text.count("#") + text.count("...") + text.count("\u2026")
            if symbols / len(words) > f.max_symbol_ratio:
                return "filters.max_symbol_ratio"
        if f.min_alpha_words and words:
            alpha = sum(1 for w in words if any(ch.isalpha() for ch in w))
            if alpha / len(words) < f.min_alpha_words:
                return "filters.min_alpha_words"
        if f.max_duplicate_lines:
            lines = [line for line in text.split("\n") if line.strip()]
            if lines and 1 - len(set(lines)) / len(lines) > f.max_duplicate_lines:
                return "filters.max_duplicate_lines"
        if f.max_top_ngram and len(words) >= 2 and top_ngram_share(words, 2) > f.max_top_ngram:
            return "filters.max_top_ngram"
        if f.max_duplicate_ngrams and len(words) >= 5 and duplicate_ngram_share(words, 5) > f.max_duplicate_ngrams:
            return "filters.max_duplicate_ngrams"
        return None


def normalize_whitespace(text: str) -> str:
    """Unusual spaces (no-break, thin, ideographic…) become plain spaces; trailing spaces and runs of blank
    lines go. Runs of spaces inside a line stay: they are indentation in code and aligned text."""
    text = _ODD_SPACES.sub(" ", text)
    if " \n" in text or "\t\n" in text:
        text = _TRAILING_SPACE.sub("\n", text)
    text = _MANY_BLANK_LINES.sub("\n\n", text)
    return text.strip()


def scrub_pii(text: str, kinds: Sequence[str], counts: Counter) -> str:
    """Replace e-mail addresses, IP addresses and phone numbers by placeholders, counting each kind."""

    def replacer(kind: str, placeholder: str):
        def replace(match: re.Match) -> str:
            counts[kind] += 1
            return placeholder

        return replace

    if "email" in kinds and "@" in text:
        text = _EMAIL.sub(replacer("email", "<EMAIL>"), text)
    if "ip" in kinds:
        text = _IPV4.sub(replacer("ip", "<IP>"), text)
        text = _IPV6.sub(replacer("ip", "<IP>"), text)
    if "phone" in kinds:

        def phone(match: re.Match) -> str:
            digits = sum(ch.isdigit() for ch in match.group(0))
            if not 7 <= digits <= 15 or _DATE.fullmatch(match.group(0)):
                return match.group(0)
            counts["phone"] += 1
            return "<PHONE>"

        text = _PHONE.sub(phone, text)
    return text


def c4_line_ok(line: str) -> bool:
    stripped = line.strip()
    return stripped.endswith(_TERMINAL) and len(stripped.split()) >= 3 and not _C4_BAD.search(stripped)


def top_ngram_share(words: list[str], n: int) -> float:
    """Share of the document's word characters covered by its most frequent word n-gram (Gopher)."""
    grams = Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))
    gram, count = grams.most_common(1)[0]
    if count < 2:
        return 0.0
    total = sum(len(w) for w in words)
    return count * sum(len(w) for w in gram) / max(total, 1)


def duplicate_ngram_share(words: list[str], n: int) -> float:
    """Share of word characters inside n-grams that occur more than once (Gopher), each word counted once."""
    first_seen: dict[tuple[str, ...], int] = {}
    covered = np.zeros(len(words), dtype=bool)
    for i in range(len(words) - n + 1):
        gram = tuple(words[i : i + n])
        j = first_seen.setdefault(gram, i)
        if j != i:
            covered[i : i + n] = True
            covered[j : j + n] = True
    lengths = np.fromiter((len(w) for w in words), dtype=np.int64, count=len(words))
    return float(lengths[covered].sum() / max(lengths.sum(), 1))


# Boilerplate lines: a count-min sketch of how many documents hold each line (fixed memory) -----------
def line_hash(line: str) -> int:
    return zlib.crc32(line.strip().encode("utf-8", errors="surrogatepass")) | (
        zlib.adler32(line.strip().encode("utf-8", errors="surrogatepass")) << 32
    )


def new_sketch() -> np.ndarray:
    return np.zeros((SKETCH_ROWS, SKETCH_WIDTH), dtype=np.uint32)


def _sketch_columns(hashes: np.ndarray) -> np.ndarray:
    hashes = hashes.astype(np.uint64)
    multipliers = np.array(
        [0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0xD6E8FEB86659FD93], dtype=np.uint64
    )[:, None]
    return ((hashes[None, :] * multipliers) >> np.uint64(43)) % np.uint64(SKETCH_WIDTH)  # (rows, n)


def document_line_hashes(text: str) -> np.ndarray:
    """Distinct hashes of a document's non-blank lines (a line counts once per document)."""
    return np.unique(np.fromiter((line_hash(line) for line in text.split("\n") if line.strip()), dtype=np.uint64))


def sketch_add(sketch: np.ndarray, hashes: np.ndarray) -> None:
    if len(hashes):
        columns = _sketch_columns(hashes)
        for row in range(SKETCH_ROWS):
            np.add.at(sketch[row], columns[row], 1)


def sketch_count(sketch: np.ndarray, value: int) -> int:
    columns = _sketch_columns(np.array([value], dtype=np.uint64))[:, 0]
    return int(min(sketch[row, columns[row]] for row in range(SKETCH_ROWS)))
