"""CoNLL-2003 style NER files: read_conll gives (words, tags) sentences, load_ner_files gives them as gold NER rows.

    sentences = read_conll("../shared/data/conll2003/valid.txt")        # [(words, IOB2 tags), ...]
    gold = load_ner_files("../shared/data/conll2003/train.txt")          # NER-only rows (label -1), CoNLL tags

The rows have create_ner_dataset's columns (row_features), so create_ner_dataset.combine_rows can mix them with
topic rows. Importing this module loads neither spaCy, nor a model, nor data.
"""
from __future__ import annotations

import os
import random
import re
from pathlib import Path

from create_ner_dataset import doc_to_words_tags, load_spacy, row_features
from errors import InputError, InputFileNotFound
from metrics import ner_metrics
from ner_tags import (
    CONLL_TYPES,
    ONTONOTES_TO_CONLL,
    SPACY_ENTITY_TYPES,
    check_ner_types,
    default_dropped_types,
    iob1_to_iob2,
    kept_types,
    map_tags,
)
from text_prep import keep_word
from texts_and_tables import hf_datasets

_TAG_RE = re.compile(r"O|[BI]-\S+")


def sentence_texts(path, n=0, min_words=5, sample_seed=0) -> list[str]:
    """A CoNLL file's sentences as texts (words joined by spaces), those of at least min_words words, a seeded sample
    of n of them (0: all, in the file's order; sample_seed fixes the sample whatever a run's seed). Only the words are
    read, never the tags: unlabelled text."""
    sentences = [" ".join(words) for words, _ in read_conll(path) if len(words) >= min_words]
    if n:
        random.Random(sample_seed).shuffle(sentences)
    return sentences[:n] if n else sentences


def read_conll(path) -> list[tuple[list[str], list[str]]]:
    """Read a CoNLL-2003 style file into (words, tags) sentences, tags converted to IOB2.

    One token per line, the word first and the NER tag last (`word POS chunk NER`); blank lines separate
    sentences; `-DOCSTART-` lines are skipped. FileNotFoundError when missing; ValueError (with the line
    number) on a line with fewer than two columns or a tag that is not O/B-T/I-T.
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileNotFound(f"CoNLL file not found: {path} (expected a CoNLL-2003 style file with "
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
                raise InputError(f"{path}:{lineno}: expected 'word ... NER-tag' columns, got {line.rstrip()!r}")
            if not _TAG_RE.fullmatch(cols[-1]):
                raise InputError(f"{path}:{lineno}: bad NER tag {cols[-1]!r} (expected O, B-TYPE or I-TYPE)")
            words.append(cols[0])
            tags.append(cols[-1])
    if words:
        sentences.append((words, iob1_to_iob2(tags)))
    return sentences


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
    datasets = hf_datasets()

    check_ner_types(ner_types)
    if dropped_types is None:
        dropped_types = default_dropped_types(ner_types)
    kept = set(kept_types(dropped_types))
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if not paths:
        raise InputError("no NER files given: pass one or more CoNLL files")
    rows = {"text": [], "raw_text": [], "label": [], "words": [], "word_starts": [], "ner_tags": []}
    for path in paths:
        sentences = read_conll(path)
        if not sentences:
            raise InputError(f"NER file {str(path)!r} holds no sentences (expected 'word ... NER-tag' lines)")
        types = {t[2:] for _, tags in sentences for t in tags if t != "O"}
        if ner_types == "conll" and not types <= set(CONLL_TYPES):
            if not types <= set(SPACY_ENTITY_TYPES):
                raise InputError(f"NER file {str(path)!r} has entity types {sorted(types - set(CONLL_TYPES))} that "
                                 f"are neither CoNLL's {list(CONLL_TYPES)} nor spaCy's {list(SPACY_ENTITY_TYPES)}; "
                                 "rename them to one of these sets")
            mapping = {t: ONTONOTES_TO_CONLL[t] for t in kept if t in ONTONOTES_TO_CONLL}
        elif ner_types == "spacy":
            unknown = sorted(types - set(SPACY_ENTITY_TYPES))
            if unknown:
                hint = (" (CoNLL types: load with ner_types='conll', main.py --ner-types conll)"
                        if set(unknown) <= set(CONLL_TYPES) else "")
                raise InputError(f"NER file {str(path)!r} has entity types {unknown} that spaCy does not predict"
                                 f"{hint}; spaCy's types: {list(SPACY_ENTITY_TYPES)}")
            mapping = {t: t for t in kept}
        else:
            mapping = None
        for words, tags in sentences:
            if mapping is not None:
                tags = map_tags(tags, mapping)
            pairs = [(w, t) for w, t in zip(words, tags) if keep_word(w)]
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


def evaluate_on_conll(model, path, spacy_model="en_core_web_sm", batch_size=64):
    """Entity P/R/F1 per CoNLL type of the model and of its spaCy teacher on the same gold words of a CoNLL file.

    Both are restricted to the model's entity types (a spaCy-typed model's tags are mapped onto CoNLL's; a CoNLL-typed
    model is compared with the spaCy types that map onto its own). Returns {"model": ner_metrics, "spacy": ...,
    "sentences": n, "types": [kept spaCy types]}."""
    from spacy.tokens import Doc  # spaCy: heavy, only when labelling / splitting

    sentences = read_conll(path)
    words = [w for w, _ in sentences]
    gold = [t for _, t in sentences]
    kept = {t[2:] for t in model.tags if t != "O"}  # the types the model was trained on
    model_tags = model.predict_tags(words, batch_size=batch_size)
    if kept <= set(CONLL_TYPES):  # a model trained with --ner-types conll: its tags are CoNLL's already
        kept = {t for t, conll in ONTONOTES_TO_CONLL.items() if conll in kept}  # the spaCy types that map onto them
    else:
        model_tags = [map_tags(t, ONTONOTES_TO_CONLL) for t in model_tags]
    nlp = load_spacy(spacy_model)
    teacher = []
    for doc in nlp.pipe((Doc(nlp.vocab, words=ws) for ws in words), batch_size=256):
        _, starts, tags = doc_to_words_tags(doc, kept)
        by_start = dict(zip(starts, tags))  # tokens the word filter dropped get O
        teacher.append(map_tags([by_start.get(tok.idx, "O") for tok in doc], ONTONOTES_TO_CONLL))
    return {"model": ner_metrics(gold, model_tags), "spacy": ner_metrics(gold, teacher),
            "sentences": len(sentences), "types": sorted(kept)}


def conll_table(results):
    """The side-by-side text table of evaluate_on_conll's result (per type, then micro)."""
    ours, theirs = results["model"], results["spacy"]
    zero = {"precision": 0, "recall": 0, "f1": 0}
    lines = [f"{'type':<8s} {'model P':>8s} {'R':>6s} {'F1':>6s}   {'spaCy P':>8s} {'R':>6s} {'F1':>6s}"]
    for kind in sorted(set(ours["per_type"]) | set(theirs["per_type"])):
        o, s = ours["per_type"].get(kind, zero), theirs["per_type"].get(kind, zero)
        lines.append(f"{kind:<8s} {o['precision']:8.3f} {o['recall']:6.3f} {o['f1']:6.3f}   "
                     f"{s['precision']:8.3f} {s['recall']:6.3f} {s['f1']:6.3f}")
    lines.append(f"{'micro':<8s} {ours['precision']:8.3f} {ours['recall']:6.3f} {ours['f1']:6.3f}   "
                 f"{theirs['precision']:8.3f} {theirs['recall']:6.3f} {theirs['f1']:6.3f}")
    return "\n".join(lines)
