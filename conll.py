"""CoNLL-2003 style NER files: read_conll gives (words, tags) sentences, load_ner_files gives them as gold NER rows.

    sentences = read_conll("../shared/data/conll2003/valid.txt")        # [(words, IOB2 tags), ...]
    gold = load_ner_files("../shared/data/conll2003/train.txt")          # NER-only rows (label -1), CoNLL tags

The rows have create_ner_dataset's columns (row_features), so create_ner_dataset.combine_rows can mix them with
topic rows. Importing this module loads neither spaCy, nor a model, nor data.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from create_ner_dataset import row_features
from ner_tags import (CONLL_TYPES, ONTONOTES_TO_CONLL, SPACY_ENTITY_TYPES, _check_ner_types, _kept_types,
                      default_dropped_types, iob1_to_iob2, map_tags)
from text_prep import _keep_word
from errors import InputError, InputFileNotFound

_TAG_RE = re.compile(r"O|[BI]-\S+")


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
    import datasets

    _check_ner_types(ner_types)
    if dropped_types is None:
        dropped_types = default_dropped_types(ner_types)
    kept = set(_kept_types(dropped_types))
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
