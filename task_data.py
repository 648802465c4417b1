"""Which tasks a run trains and where each one's labels come from: main.py's TASKS as specs, each task's rows.

    specs = parse_task_specs(["topic", "ner", "bbc=classification:bbc_sport_politics/bbc-text.csv@category"])
    part = load_task_source(source, specs_of_that_source, ...)   # TaskRows: tasks, train / val / test rows
    train = merge_rows([default_train, part.train], tasks)       # words + one column per task + group

A spec is `topic` or `ner` (the default pair: --dataset's label column, and spaCy's silver entities on its texts) or
`NAME=KIND:SOURCE[@COLUMN]`:
  classification  SOURCE a data file / folder (CSV, TSV, JSON, parquet, the Hub layout), COLUMN its label column
                  (default: label); labels as class names or ids, like --dataset.
  multilabel      the same, COLUMN holding several labels per row: a list (JSON / parquet) or names joined by '|'
                  ('sport|politics'; an empty field = none of them).
  tagging         SOURCE a CoNLL file (`word ... TAG` lines, IOB1 or IOB2, any entity types): gold tags, the task's
                  tag set read from the file; or parquet with `words` and `ner_tags` columns (a file, or a folder of
                  them such as main.py --label-dir's output: rows without tags are left out).
Several specs with the same SOURCE (and other columns) make several tasks from one source: each row carries them all.
Every source is split alone: its own test split (the source's, else TEST_FRACTION carved), then validation
(VAL_FRACTION of train), stratified for classification; the rows of a source share one `group` (sampling's unit).
Nothing is read at import time.
"""
import os
from typing import NamedTuple

import numpy as np
import pyarrow.parquet as pq

from conll import read_conll
from data_sources import (
    carve_test_split,
    check_columns,
    check_text_column,
    class_names,
    label_names_and_ids,
    load_parts,
    resolve_source,
)
from errors import InputError
from tasks import KINDS, TaggingTask
from text_prep import clean_text, keep_word, split_words
from texts_and_tables import FORMATS, ending, hf_datasets, is_null, is_unreadable, read_texts

BUILTIN = {"topic": "classification", "ner": "tagging"}  # the default pair and its kinds, read from --dataset
SPEC_FORMAT = "NAME=KIND:SOURCE[@COLUMN] (e.g. bbc=classification:bbc.csv@category, conll=tagging:conll2003/train.txt)"


class TaskSpec(NamedTuple):
    name: str
    kind: str = None        # None for the default pair
    source: str = None
    column: str = None

    @property
    def builtin(self):
        """Whether this is one of the default pair (read from --dataset), not NAME=KIND:SOURCE."""
        return self.source is None

    @property
    def task_class(self):
        return KINDS[self.kind]


class TableColumn(NamedTuple):
    """One column of a data table, as a task kind reads it (Task.from_column): its cells per split, or its class names
    and ids the way --dataset reads a label column."""
    parts: dict  # {split: [(where, datasets.Dataset)]}
    name: str    # the column
    where: str   # the source, for messages

    def values(self):
        """{split: every cell of the column, in order; an empty cell (None, NaN) as None}."""
        return {split: [None if is_null(v) else v for _, ds in ps for v in ds[self.name]]
                for split, ps in self.parts.items()}

    def class_names_and_ids(self):
        """(class names, {split: [ids per part]}): data_sources.label_names_and_ids."""
        return label_names_and_ids(self.parts, self.name)


class TaskSource(NamedTuple):
    """A --tasks spec's source, as a task kind checks it before any work (Task.source_problems)."""
    path: str
    text_column: str
    column: str

    @property
    def exists(self):
        return os.path.exists(self.path)

    def missing(self, hub_id):
        """[the message] when nothing is at path; a name that is no path and has no data-file ending may be a Hub id
        where the kind reads one (hub_id)."""
        looks_local = "/" in self.path or ending(self.path) in FORMATS
        return [] if self.exists or (hub_id and not looks_local) else [f"no file or folder at {self.path}"]

    def class_names(self):
        """The class names of its label column (reads the rows): data_sources.class_names."""
        return class_names(self.path, self.text_column, self.column)


class TaskRows(NamedTuple):
    """One source's tasks and its train / validation / test rows (dicts of lists: words + one column per task)."""
    tasks: list
    train: dict
    val: dict
    test: dict


def parse_task_spec(spec):
    """A TaskSpec from main.py's form; InputError naming the form for anything else."""
    if not isinstance(spec, str) or not spec.strip():
        raise InputError(f"--tasks: empty task; each is topic, ner or {SPEC_FORMAT}")
    spec = spec.strip()
    if "=" not in spec:
        if spec not in BUILTIN:
            raise InputError(f"--tasks: {spec!r} is neither topic, ner nor {SPEC_FORMAT}")
        return TaskSpec(spec)
    name, rest = spec.split("=", 1)
    kind, _, source = rest.partition(":")
    if kind not in KINDS:
        raise InputError(f"--tasks {spec}: unknown kind {kind!r}; kinds: {', '.join(KINDS)} (form: {SPEC_FORMAT})")
    source, _, column = source.partition("@")
    if not source:
        raise InputError(f"--tasks {spec}: no data source; form: {SPEC_FORMAT}")
    KINDS[kind].check_column(spec, column)
    if not name.isidentifier():
        raise InputError(f"--tasks {spec}: task name {name!r} must be an identifier (letters, digits, _)")
    return TaskSpec(name, kind, source, column or KINDS[kind].default_column)


def parse_task_specs(specs):
    """TaskSpecs of main.py's TASKS, refused when empty or when two share a name or (source, column)."""
    parsed = [parse_task_spec(s) for s in specs]
    if not parsed:
        raise InputError("--tasks: give at least one task (the default: topic ner)")
    names = [p.name for p in parsed]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise InputError(f"--tasks: two tasks are named {dupes[0]!r}; give each task its own name")
    where = [(p.source, p.column) for p in parsed if not p.builtin]
    twice = sorted({w for w in where if where.count(w) > 1}, key=str)
    if twice:
        raise InputError(f"--tasks: two tasks read column {twice[0][1]!r} of {twice[0][0]}; one task per column")
    return parsed


def parse_task_weights(text):
    """{task: weight} from 'ner=3,topic=1' (tasks not named weigh 1); InputError naming the form otherwise."""
    if isinstance(text, dict):
        return dict(text)
    weights = {}
    for item in (x.strip() for x in str(text).split(",") if x.strip()):
        name, _, value = item.partition("=")
        try:
            weights[name.strip()] = float(value)
        except ValueError:
            raise InputError(f"--task-weights: {item!r} is not NAME=WEIGHT (e.g. --task-weights ner=3,topic=1)") \
                from None
        if not weights[name.strip()] >= 0:
            raise InputError(f"--task-weights: {item!r}: a weight must be a number >= 0")
    return weights


def resolve_spec(spec, resolve):
    """The spec string with its SOURCE passed through resolve (main.py: the data-root lookup); others unchanged."""
    try:
        parsed = parse_task_spec(spec)
    except InputError:
        return spec  # reported by the checks
    if parsed.builtin:
        return spec
    resolved = resolve(parsed.source)
    return f"{parsed.name}={parsed.kind}:{resolved}" + (f"@{parsed.column}" if "@" in spec else "")


def spec_problems(specs, text_column="text"):
    """[message] for specs that cannot be loaded, before any work: a missing source file (a name that is neither a
    file nor a folder may be a Hub id, except for tagging and names with a data-file suffix), and a classification
    source without its text or label column or with unusable labels (data_sources.class_names reads the rows)."""
    problems = []
    for s in specs:
        if not s.builtin:
            source = TaskSource(s.source, text_column, s.column)
            problems += [f"--tasks {s.name}: {m}" for m in s.task_class.source_problems(source)]
    return problems


def sources(specs):
    """{source: [its specs]} of the non-default specs, in order."""
    out = {}
    for s in specs:
        if not s.builtin:
            out.setdefault(s.source, []).append(s)
    return out


def _split(n, labels, test_fraction, val_fraction, seed, has_test):
    """(train, val, test) row indices; stratified by labels when given."""
    def carve(idx, fraction, salt):
        if labels is not None:
            keep, out = carve_test_split([labels[i] for i in idx], fraction, seed + salt)
            return [idx[k] for k in keep], [idx[k] for k in out]
        order = np.random.default_rng([seed, salt]).permutation(len(idx)).tolist()
        k = max(1, int(round(fraction * len(idx))))
        return [idx[i] for i in sorted(order[k:])], [idx[i] for i in sorted(order[:k])]

    everything = list(range(n))
    rest, test = (everything, []) if has_test else carve(everything, test_fraction, 1)
    train, val = carve(rest, val_fraction, 2)
    if not train or not val:
        raise InputError(f"a task source of {n} rows is too small to split into train / validation / test; add rows")
    return train, val, test


def _words(texts, clean):
    return [split_words(clean_text(t) if clean else t)[0] for t in texts]


def load_task_source(source, specs, text_column="text", clean=False, test_fraction=0.2, val_fraction=0.1, seed=42,
                     group=1):
    """TaskRows for the tasks read from one source (a CoNLL file for tagging, a labelled data source otherwise)."""
    readers = {s.task_class.reader for s in specs}
    if len(readers) > 1 or (readers == {"tagged"} and len(specs) > 1):
        raise InputError(f"--tasks: {source} is read by {', '.join(s.name for s in specs)} as "
                         f"{' and as '.join(sorted(readers))} data; one task per tagged file, one kind of source per file")
    return READERS[readers.pop()](source, specs, text_column, clean, test_fraction, val_fraction, seed, group)


def _load_table_tasks(source, specs, text_column, clean, test_fraction, val_fraction, seed, group):
    """TaskRows of the tasks reading columns of one data table."""
    kind, src = resolve_source(source)
    parts = load_parts(kind, src)
    for s in specs:
        check_columns(parts, text_column, s.column)
    by_split = {split: {"texts": [], "columns": {}} for split in parts}
    tasks = []
    for s in specs:
        task, values = s.task_class.from_column(s.name, TableColumn(parts, s.column, source))
        for split, column in values.items():
            by_split[split]["columns"][s.name] = column
        tasks.append(task)
    for split, ps in parts.items():
        for where, ds in ps:
            texts = list(ds[text_column])
            check_text_column(where, texts, text_column)
            by_split[split]["texts"] += texts
    first = next((t for t in tasks if t.stratifies), None)
    train_all = by_split["train"]
    labels = train_all["columns"][first.name] if first else None
    train_idx, val_idx, test_idx = _split(len(train_all["texts"]), labels, test_fraction, val_fraction, seed,
                                          has_test="test" in by_split)
    test_source = by_split.get("test", train_all)
    test_idx = test_idx if "test" not in by_split else list(range(len(test_source["texts"])))

    def rows(part, idx):
        out = {"words": _words([part["texts"][i] for i in idx], clean)}
        out.update({n: [values[i] for i in idx] for n, values in part["columns"].items()})
        out["group"] = [group] * len(idx)
        return out

    train = rows(train_all, train_idx)
    for task in tasks:
        task.fit(train[task.name])  # what the training rows decide (e.g. a scale), never the validation / test rows'
    return TaskRows(tasks, train, rows(train_all, val_idx), rows(test_source, test_idx))


def _load_tagged_task(path, specs, text_column, clean, test_fraction, val_fraction, seed, group):
    """TaskRows of the one tagging task of a CoNLL file (or parquet of words and ner_tags)."""
    (spec,) = specs
    sentences = _read_tagged_parquet(path) if _is_parquet_source(path) else read_conll(path)
    if not sentences:
        raise InputError(f"--tasks {spec.name}: {path} holds no sentences (expected 'word ... TAG' lines)")
    words, tags = [], []
    for ws, ts in sentences:  # words a BERT uncased tokenizer turns into nothing are dropped, as everywhere
        pairs = [(w, t) for w, t in zip(ws, ts) if keep_word(w)]
        words.append([w for w, _ in pairs])
        tags.append([t for _, t in pairs])
    types = sorted({t[2:] for row in tags for t in row if t != "O"})
    task = TaggingTask(spec.name, ["O"] + [f"{p}-{t}" for t in types for p in "BI"], column=spec.name)
    train_idx, val_idx, test_idx = _split(len(words), None, test_fraction, val_fraction, seed, has_test=False)

    def rows(idx):
        return {"words": [words[i] for i in idx], spec.name: [tags[i] for i in idx], "group": [group] * len(idx)}

    return TaskRows([task], rows(train_idx), rows(val_idx), rows(test_idx))


def _is_parquet_source(path):
    return path.lower().endswith(".parquet") or (os.path.isdir(path) and any(
        f.endswith(".parquet") for f in os.listdir(path)))


def _read_tagged_parquet(path):
    """[(words, tags)] of a parquet file's (or a folder of them, in name order) words and ner_tags columns, rows whose
    ner_tags is null (--label-dir's error rows) left out."""
    files = [path] if os.path.isfile(path) else sorted(
        os.path.join(path, f) for f in os.listdir(path) if f.endswith(".parquet") and not f.startswith("."))
    sentences = []
    for f in files:
        columns = pq.read_schema(f).names
        if not {"words", "ner_tags"} <= set(columns):
            raise InputError(f"{f}: a tagging source in parquet needs the columns words and ner_tags (main.py "
                             f"--label-dir writes them); it has {columns}")
        table = pq.read_table(f, columns=["words", "ner_tags"]).to_pydict()
        sentences += [(w, t) for w, t in zip(table["words"], table["ner_tags"]) if t is not None]
    return sentences


READERS = {"table": _load_table_tasks, "tagged": _load_tagged_task}  # Task.reader -> how its source is read


def merge_rows(parts, tasks):
    """One datasets.Dataset of the parts' rows (each a Dataset or dict of lists) with words, every task's column (a
    row without a task's column gets its 'no label' value) and group (0 where a part has none)."""
    datasets = hf_datasets()

    columns = {"words": [], "group": []}
    columns.update({t.column: [] for t in tasks})
    for part in parts:
        names = part.column_names if hasattr(part, "column_names") else list(part)
        n = len(part["words"])
        columns["words"] += list(part["words"])
        columns["group"] += list(part["group"]) if "group" in names else [0] * n
        for t in tasks:
            columns[t.column] += list(part[t.column]) if t.column in names else [t.missing] * n
    return datasets.Dataset.from_dict(columns)


def load_distil_texts(paths, text_column="text", clean=False, group=0):
    """Training rows of unlabelled text for distillation (main.py --distil-texts): {"words", "group"} per non-empty
    text of the files (.txt a text per line, .csv / .jsonl the text_column), split into words as predict() splits
    them; no task's labels, so they learn only from the teachers' outputs. InputError naming the file and row when a
    row has no readable text."""
    texts = []
    for path in paths:
        for row, text, error in read_texts(path, text_column):
            if error is None and is_unreadable(text):
                error = "text is not valid UTF-8"
            if error is not None:
                raise InputError(f"--distil-texts {path}, row {row}: {error}; fix or remove the row")
            if text.strip():
                texts.append(text)
    if not texts:
        raise InputError(f"--distil-texts {', '.join(map(str, paths))}: no text in the file(s)")
    return distil_rows(texts, clean, group)


def distil_rows(texts, clean=False, group=0):
    """Training rows of unlabelled texts: {"words", "group"}, split into words as predict() splits them."""
    return {"words": _words(texts, clean), "group": [group] * len(texts)}
