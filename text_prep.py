"""Text preparation shared by the training data and predict: AG News cleaning, word splitting, word shapes.

    clean_text(raw)                 # AG News escapes undone: " #39;s" -> "'s", "&lt;b&gt;" -> " ", "\\$" -> "$"
    clean_text_with_spans(raw)      # the same, plus where in `raw` each clean char came from
    split_words(text)               # (words, char offsets): spaCy's English tokenization (word_splitter), BERT-safe
    word_shape(word)                # index into WORD_SHAPES ("lower", "Title", "UPPER", ...) of a word's casing

The silver labels (create_ner_dataset) and the model's predict (multi_task_sentence_transformer) both go through
these, so a word at predict time is the word the labels were made on. Importing this module loads neither spaCy
nor a model: spaCy's English rules are read on the first split_words call without a splitter (a saved model brings
its own, so predict needs no spaCy).
"""
from __future__ import annotations

import html
import re
import unicodedata
from functools import lru_cache

from word_splitter import WordSplitter, english_rules

# ----------------------------------------------------------------------------------------------------------------------
# Cleaning
# ----------------------------------------------------------------------------------------------------------------------
# AG News artefacts (all in the shared data): HTML entities whose "&" was turned into a space (" #39;s", " quot;",
# "AT amp;T", "  #36;46", "storm  #151; even"), proper escaped entities ("&lt;b&gt;"), HTML tags hidden in those
# ("&lt;A HREF=...&gt;KMRT.O&lt;/A&gt;", "&lt;b&gt;", "&lt;p&gt;", "&lt;font ...&gt;"), backslashes standing for line
# breaks ("dwindling\band") and backslash-escaped dollars ("\$55.8bn").

_TAG_NAMES = ("a|abbr|b|big|blockquote|br|center|cite|code|div|em|font|h[1-6]|hr|i|img|li|nobr|ol|p|pre|s|small|span|"
              "strike|strong|sub|sup|table|td|th|tr|tt|u|ul")
# Entity names decoded even when their "&" is missing (numeric ones always are).
_BARE_ENTITY_NAMES = {"quot", "amp", "lt", "gt", "nbsp", "apos", "hellip", "mdash", "ndash", "lsquo", "rsquo",
                      "ldquo", "rdquo", "laquo", "raquo", "middot", "bull", "copy", "reg", "trade", "eacute"}
_CLEAN_RE = re.compile(
    # a known HTML tag, escaped or not; <KMRT.O>-style ticker marks are not tags and stay
    rf"(?P<tag>(?:&lt;|<)/?(?i:{_TAG_NAMES})(?=[\s/>]|&gt;)[^<>]{{0,500}}?(?:&gt;|>))"
    # an entity: "&name;", " name;" (the & became a space) or "name;" not glued to a word
    r"|(?P<ent>(?P<pre>&| |(?<![A-Za-z0-9&#]))(?P<name>#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});)"
    r"|(?P<dollar>\\\$)"
    r"|(?P<backslash>\\)"
)
_SPACES_RE = re.compile(r"\s+")


def _replacement(m) -> str:
    """What one _CLEAN_RE match becomes."""
    if m.lastgroup == "tag" or m.lastgroup == "backslash":
        return " "
    if m.lastgroup == "dollar":
        return "$"
    pre, name = m.group("pre"), m.group("name")
    if pre != "&" and name[0] != "#" and name not in _BARE_ENTITY_NAMES:
        return m.group(0)  # "Rises;", "Lynn;": an ordinary word before a semicolon
    decoded = html.unescape(f"&{name};")  # knows cp1252 for &#128;..&#159; (#151; -> an em dash)
    if decoded == f"&{name};":
        return m.group(0)  # not an entity
    return decoded if keep_word(decoded) else " "


def clean_text(text: str) -> str:
    """Undo AG News escaping: entities (also those missing their "&"), HTML tags, backslash line breaks.

    Tags (a known HTML tag name, e.g. <b>, </A>, <font ...>) and backslashes become spaces, "\\$" becomes "$",
    then whitespace runs collapse to one space and the ends are stripped. Equal to clean_text_with_offsets(text)[0].
    """
    return _SPACES_RE.sub(" ", _CLEAN_RE.sub(_replacement, text)).strip()


def clean_text_with_spans(text: str) -> tuple[str, list[int], list[int]]:
    """`clean_text(text)` plus where each clean char came from: `text[starts[i]:ends[i]]` produced clean char i.

    A char copied unchanged has `ends[i] == starts[i] + 1` and `text[starts[i]] == clean[i]`; a decoded entity spans
    its match ("&#39;" or, when the "&" became a space, "#39;"); a collapsed whitespace run spans the run. The clean span [s, e) maps to the
    tight raw span `text[starts[s]:ends[e - 1]]`, and `clean_text` of that slice gives back `clean[s:e]`.
    """
    pieces, starts, ends, pos = [], [], [], 0
    for m in _CLEAN_RE.finditer(text):
        start, end = m.span()
        if start > pos:
            pieces.append(text[pos:start])
            starts.extend(range(pos, start))
            ends.extend(range(pos + 1, start + 1))
        rep = _replacement(m)
        pieces.append(rep)
        if rep == m.group(0):  # left as is (e.g. "Rises;")
            starts.extend(range(start, end))
            ends.extend(range(start + 1, end + 1))
        else:  # a decoded " #39;" starts at its "#": the space (the lost "&") belongs to no clean char
            src = m.start("name") if m.lastgroup == "ent" and m.group("pre") == " " else start
            starts.extend([src] * len(rep))
            ends.extend([end] * len(rep))
        pos = end
    pieces.append(text[pos:])
    starts.extend(range(pos, len(text)))
    ends.extend(range(pos + 1, len(text) + 1))
    stage1 = "".join(pieces)
    if " ".join(stage1.split()) == stage1:  # (most texts) every whitespace run is one " ", none at the ends: done
        return stage1, starts, ends
    # collapse whitespace runs to one space and strip the ends, composing the maps
    out, out_starts, out_ends, pos = [], [], [], 0
    for m in _SPACES_RE.finditer(stage1):
        start, end = m.span()
        out.append(stage1[pos:start])
        out_starts.extend(starts[pos:start])
        out_ends.extend(ends[pos:start])
        if start > 0 and end < len(stage1):  # inner run -> one space; runs at either end vanish
            out.append(" ")
            out_starts.append(starts[start])
            out_ends.append(ends[end - 1])
        pos = end
    out.append(stage1[pos:])
    out_starts.extend(starts[pos:])
    out_ends.extend(ends[pos:])
    return "".join(out), out_starts, out_ends


def clean_text_with_offsets(text: str) -> tuple[str, list[int]]:
    """`clean_text(text)` plus `offsets`: `offsets[i]` is where in `text` the piece that produced clean char i starts,
    with one extra final entry `len(text)`.

    Rule: clean span [s, e) maps to `text[offsets[s]:offsets[e]]`, which may carry trailing characters that cleaning
    removed (spaces, tags, backslashes; `clean_text` of it gives back `clean[s:e]`). When clean[e-1] was copied
    unchanged, `text[offsets[s]:offsets[e-1] + 1]` is the tight span; when it was decoded (e.g. "Jos #233;" ->
    "José") it is not: use `clean_text_with_spans`, whose `ends[e-1]` is always tight. A decoded char maps to the
    start of its entity, e.g. the "#" of " #39;".
    """
    clean, starts, _ = clean_text_with_spans(text)
    return clean, starts + [len(text)]


# ----------------------------------------------------------------------------------------------------------------------
# Words
# ----------------------------------------------------------------------------------------------------------------------

@lru_cache(maxsize=4096)
def _char_survives_bert(c: str) -> bool:
    """Whether a BERT uncased tokenizer keeps something of char c.

    Mirrors BasicTokenizer/BertNormalizer: drops NUL, U+FFFD, control/format/unassigned/private chars (category C*),
    whitespace, and, after lowercasing and NFD, combining marks (category Mn).
    """
    if c == "\x00" or c == "\ufffd" or c.isspace() or unicodedata.category(c)[0] in "CZ":
        return False
    # strip_accents may run before or after lowercasing: keep c only if it survives both orders
    return all(any(unicodedata.category(x) != "Mn" for x in unicodedata.normalize("NFD", s))
               for s in (c.lower(), unicodedata.normalize("NFD", c).lower()))


_ASCII_DROPPED = "".join(map(chr, range(33))) + "\x7f"  # ASCII whitespace and control chars


def keep_word(word: str) -> bool:
    """A token worth a word: not whitespace and not zero wordpieces under a BERT uncased tokenizer."""
    if word.isascii():
        return bool(word.strip(_ASCII_DROPPED))
    return any(_char_survives_bert(c) for c in word)


@lru_cache(maxsize=1)
def english_splitter():
    """The WordSplitter of spaCy's English rules as installed here (spaCy read once): the words the silver labels and
    the training rows are made of. A saved model splits with the rules it was saved with (its word_rules.json)."""
    return WordSplitter(english_rules())


def split_words(text: str, splitter=None) -> tuple[list[str], list[int]]:
    """Word segmentation: spaCy's English tokenizer (its rules run without spaCy by word_splitter.WordSplitter;
    splitter: a model's own, default english_splitter()), the same filter as the labelled data (keep_word).

    Returns the words and their char offsets in `text`.
    """
    words, starts = [], []
    for token, start in (splitter or english_splitter()).tokens(text):
        if keep_word(token):
            words.append(token)
            starts.append(start)
    return words, starts


# ----------------------------------------------------------------------------------------------------------------------
# Word shapes
# ----------------------------------------------------------------------------------------------------------------------

# Word shapes the NER head sees next to the (uncased) token embedding: spaCy's teacher leans on capitalisation,
# which an uncased wordpiece vocabulary cannot show. 0 is padding / special tokens. They enter through the NER head
# only: the shared encoder reads token ids alone, so it stays exactly the exported sentence transformer.
WORD_SHAPES = ("pad", "lower", "Title", "UPPER", "mIxed", "digit", "other")


@lru_cache(maxsize=1 << 16)  # words repeat: a cached answer is ~10x faster than the character scans (predict)
def word_shape(word):
    """Index into WORD_SHAPES of one word's casing class."""
    if any(c.isdigit() for c in word):
        return 5
    letters = [c for c in word if c.isalpha()]
    if not letters:
        return 6
    if all(c.islower() for c in letters):
        return 1
    if all(c.isupper() for c in letters):
        return 3 if len(letters) > 1 else 2
    if letters[0].isupper() and all(c.islower() for c in letters[1:]):
        return 2
    return 4
