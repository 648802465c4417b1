"""Where labelled texts come from: a Hub id, a local folder in the Hub layout, or data files (CSV, TSV, JSON, parquet).

    kind, src = resolve_source(source)          # ("hub", id), ("folder", path) or ("files", [Path, ...])
    parts = load_parts(kind, src)               # {"train": [(where, Dataset), ...], "test": [...]}
    names, ids = label_names_and_ids(parts, "label")
    train, test = carve_test_split(labels)       # a stratified, seeded test split when the source has none
    rows = stratified_indices(labels, n)         # n rows per class in proportion (row limits)

Also: each source's content fingerprint (source_fingerprint: files' sha256, a Hub dataset's fingerprints), the
checks that name the file and row of a bad text or label, and clean_applies (is this AG News?). create_ner_dataset
builds its datasets from these. Importing this module loads neither `datasets` nor data: that happens in the
functions.
"""
from __future__ import annotations

import difflib
import hashlib
import os
import random
import re
from pathlib import Path

import hub  # hub.hub_reachable(): one quick probe instead of minutes of retries
from errors import InputError, ProjectError
from texts_and_tables import FORMATS, TABLE_FORMATS, format_problem, hf_datasets, is_null, read_table

LOCAL_SOURCE_HINT = ("pass a local folder with train/test files in the Hub layout, or data files; `python main.py "
                     "--fetch-data` (where the Hub is reachable) fills data/ with AG News in that layout")


class DatasetSourceError(ProjectError, OSError):
    """The dataset source could not be loaded (no such folder or file, Hub unreachable or dataset not cached)."""


AG_NEWS_HUB_IDS = ("ag_news", "fancyzhx/ag_news")
TEST_FRACTION = 0.2  # share of each class carved into a test split when the source has none


def _is_local(source: str) -> bool:
    return os.path.isdir(source) or source.startswith((".", "/", "~")) or os.path.isabs(source)


def resolve_source(source) -> tuple[str, object]:
    """("hub", id), ("folder", path) or ("files", [Path, ...]) for a create_dataset source.

    One path that is a file, or names one by its extension, is a file; a list holds files only (all of one format).
    """
    items = [os.fspath(x) for x in source] if isinstance(source, (list, tuple)) else [os.fspath(source)]
    if not items:
        raise InputError("no data source given: pass a Hub id, a folder in the Hub layout, or data files")
    if len(items) == 1:
        one = items[0]
        if os.path.isdir(one):
            return "folder", one
        if not os.path.isfile(one) and Path(one).suffix.lower() not in FORMATS:
            if _is_local(one):
                raise DatasetSourceError(f"dataset folder {one!r} does not exist; {LOCAL_SOURCE_HINT}.")
            return "hub", one
    files = []
    for item in items:
        if os.path.isdir(item):
            raise InputError(f"{item!r} is a folder: pass one folder alone (Hub layout), or data files only")
        problem = format_problem(item, "a data file", TABLE_FORMATS)
        if problem:
            raise InputError(problem)
        if not os.path.isfile(item):
            raise DatasetSourceError(f"data file {item!r} not found")
        files.append(Path(item))
    formats = {repr(FORMATS[f.suffix.lower()].builder): FORMATS[f.suffix.lower()].name for f in files}
    if len(formats) > 1:
        raise InputError(f"the data files mix formats ({', '.join(sorted(formats.values()))}); pass files of one format "
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


def source_fingerprint(kind: str, src, loaded=None) -> dict:
    """What identifies the source's content: each file's name, size and sha256 (files, or a folder's files), the
    splits' fingerprints for a Hub dataset (loaded when not given)."""
    if kind == "files":
        return {"files": [[str(p.resolve()), p.stat().st_size, _file_digest(p)] for p in src]}
    if kind == "folder":
        root = Path(src).expanduser().resolve()
        files = sorted(p for p in root.rglob("*") if p.is_file() and not any(x.startswith(".") for x in p.relative_to(root).parts))
        return {"path": str(root), "files": [[str(p.relative_to(root)), p.stat().st_size, _file_digest(p)] for p in files]}
    loaded = loaded if loaded is not None else load_source(src)
    return {"hub": src, "splits": {name: split._fingerprint for name, split in sorted(loaded.items())}}


def _cached_on_disk(hub_id: str) -> bool:
    """Whether datasets' cache holds a copy of hub_id (a folder named like datasets names it: owner___name)."""
    datasets = hf_datasets()

    name = hub_id.split("/")[-1]
    cache = Path(datasets.config.HF_DATASETS_CACHE)
    return cache.is_dir() and any(p.name == name or p.name.endswith("___" + name) for p in cache.iterdir())


def unavailable_hub_source(source) -> str | None:
    """Why source cannot be loaded here when it is a Hub id that the Hub cannot serve now (not reachable, or
    offline mode) and datasets' cache has no copy of; None when it can be tried (a local source, a reachable Hub,
    a cached copy). A local source that does not exist raises its DatasetSourceError. Quick: one probe of the Hub
    at most, no download."""
    kind, src = resolve_source(source)  # a missing local file or folder: its own error
    if kind != "hub":
        return None

    if hub.hub_reachable() or _cached_on_disk(src):
        return None
    return "a Hub dataset, but the Hugging Face Hub is not reachable and no cached copy exists"


def load_source(source: str):
    """datasets.load_dataset(source) for a Hub id or a folder, with one-sentence errors that fail in seconds."""
    datasets = hf_datasets()

    if _is_local(source) and not os.path.isdir(source):
        raise DatasetSourceError(f"dataset folder {source!r} does not exist; {LOCAL_SOURCE_HINT}.")
    if not _is_local(source) and not datasets.config.HF_HUB_OFFLINE:
        if not hub.hub_reachable():
            raise DatasetSourceError(f"cannot reach the Hugging Face Hub to load {source!r}; {LOCAL_SOURCE_HINT}, "
                                     "or set HF_HUB_OFFLINE=1 to use a cached copy.")
    try:
        return datasets.load_dataset(source)
    except (OSError, datasets.exceptions.DatasetNotFoundError) as e:
        raise DatasetSourceError(f"cannot load the dataset {source!r} ({type(e).__name__}); {LOCAL_SOURCE_HINT}.") from e
    except ValueError as e:  # e.g. a folder without data files
        raise DatasetSourceError(f"cannot load the dataset {source!r}: {e}; {LOCAL_SOURCE_HINT}.") from e




def load_parts(kind: str, src, loaded=None) -> dict:
    """{"train": [(where, Dataset), ...], "test": [...] if the source has a test split}.

    Files all go to train (a test split is carved later); a Hub dataset or folder gives its train and test splits
    (other splits, e.g. validation, are not used: main.py carves validation from train).
    """
    if kind == "files":
        return {"train": [(f"data file {str(p)!r}", read_table(p)) for p in src]}
    dd = loaded if loaded is not None else load_source(src)
    if "train" not in dd:
        raise InputError(f"dataset {src!r} has no 'train' split (found {sorted(dd)}); expected the Hub layout: "
                         "train.* and optionally test.* files (parquet, CSV, JSON) in the folder")
    return {split: [(f"dataset {src!r}, split {split!r}", dd[split])] for split in ("train", "test") if split in dd}


def check_columns(parts: dict, text_column: str, label_column: str) -> None:
    """ValueError naming the columns that exist when text_column or label_column is missing."""
    for where, ds in (x for ps in parts.values() for x in ps):
        missing = [c for c in (text_column, label_column) if c not in ds.column_names]
        if missing:
            hints = [f"{c!r} -> {close[0]!r}?" for c in missing
                     if (close := difflib.get_close_matches(c, ds.column_names, 1, 0.6))]
            raise InputError(f"{where} lacks column(s) {missing} (its columns: {ds.column_names})"
                             f"{'; did you mean ' + ', '.join(hints) if hints else ''}; expected columns "
                             f"{text_column!r} (string) and {label_column!r} (class name or id): name yours with "
                             "text_column= / label_column= (main.py: --text-column / --label-column)")



def check_text_column(where: str, texts: list, text_column: str) -> int:
    """ValueError on a missing (null) or non-string text; returns how many texts are empty strings."""
    empty = 0
    for row, text in enumerate(texts):
        if is_null(text):
            raise InputError(f"{where}, row {row} (data rows count from 0): the text ({text_column!r}) is missing "
                             "(null or an empty field); fill it in or drop the row")
        if not isinstance(text, str):
            raise InputError(f"{where}, row {row}: column {text_column!r} holds {type(text).__name__} values "
                             f"({text!r}), not text; is text_column (--text-column) the column with the texts?")
        empty += not text.strip()
    return empty


def label_names_and_ids(parts: dict, label_column: str) -> tuple[list[str], dict]:
    """(class names, {split: [ids per part]}).

    A ClassLabel column keeps its names and ids. Otherwise labels are class names: strings as they are, integers
    (and whole floats, e.g. from a CSV with a blank) as their decimal string; names are sorted (numerically for
    integers), ids are positions in that list. ValueError naming the row on a null or empty label, a label outside
    a ClassLabel's ids, a fractional number, or numbers mixed with strings.
    """
    datasets = hf_datasets()

    all_parts = [(split, where, ds) for split, ps in parts.items() for where, ds in ps]
    feature = all_parts[0][2].features[label_column]
    if isinstance(feature, datasets.ClassLabel):
        names, ids = list(feature.names), {}
        for split, where, ds in all_parts:
            if ds.features[label_column] != feature:
                raise InputError(f"{where}: label column {label_column!r} is {ds.features[label_column]}, not the "
                                 f"first part's {feature}; give every split the same class names")
            values = list(ds[label_column])
            for row, y in enumerate(values):
                if not (isinstance(y, int) and 0 <= y < len(names)):
                    raise InputError(f"{where}, row {row}: label {y!r} is outside 0..{len(names) - 1} (the class ids "
                                     f"of {names}); every row needs a topic label: fix or drop it")
            ids.setdefault(split, []).append(values)
        return names, ids
    values = {}
    kinds = {}  # "number" / "text" -> (where, row, value) of its first occurrence
    for split, where, ds in all_parts:
        out = []
        for row, y in enumerate(ds[label_column]):
            if is_null(y) or (isinstance(y, str) and not y.strip()):
                raise InputError(f"{where}, row {row} (data rows count from 0): the label ({label_column!r}) is "
                                 "missing or empty; fill it in or drop the row")
            if isinstance(y, float):
                if not y.is_integer():
                    raise InputError(f"{where}, row {row}: label {y!r} is a fractional number; labels must be class "
                                     "names (strings) or integer class ids")
                y = int(y)
            if isinstance(y, bool):
                y = str(y)
            if not isinstance(y, (int, str)):
                raise InputError(f"{where}, row {row}: label {y!r} ({type(y).__name__}) is neither a class name nor "
                                 "an integer class id")
            kinds.setdefault("number" if isinstance(y, int) else "text", (where, row, y))
            out.append(y)
        values.setdefault(split, []).append(out)
    if len(kinds) > 1:
        (w1, r1, y1), (w2, r2, y2) = kinds["number"], kinds["text"]
        raise InputError(f"labels mix numbers and strings ({w1}, row {r1}: {y1!r}; {w2}, row {r2}: {y2!r}); "
                         "make them all class names (strings) or all integer ids")
    distinct = sorted({y for vs in values.values() for v in vs for y in v})
    names = [str(y) for y in distinct]
    index = {y: i for i, y in enumerate(distinct)}
    return names, {split: [[index[y] for y in v] for v in vs] for split, vs in values.items()}


def class_names(source, text_column="text", label_column="label") -> list[str]:
    """The class names create_dataset would give this source (reads the rows, labels nothing, caches nothing)."""
    kind, src = resolve_source(source)
    parts = load_parts(kind, src)
    check_columns(parts, text_column, label_column)
    return label_names_and_ids(parts, label_column)[0]


# Stratified sampling: one routine (_sample_per_label) draws each class's quota; carve_test_split and
# stratified_indices only decide the quotas. Splits and row picks are part of the cache's content: keep them exact.

def _rows_by_label(labels) -> dict:
    """{label: [row indices, ascending]}."""
    by_label: dict = {}
    for i, label in enumerate(labels):
        by_label.setdefault(label, []).append(i)
    return by_label


def _sample_per_label(by_label: dict, quota: dict, seed_text: str) -> list[int]:
    """Sorted row indices: quota[label] rows drawn from each class without replacement, classes in sorted order, with
    one random.Random(seed_text) for all of them (same inputs, same rows)."""
    rng = random.Random(seed_text)
    chosen = []
    for label in sorted(by_label):
        chosen += rng.sample(by_label[label], quota[label])
    return sorted(chosen)


def carve_test_split(labels, test_fraction=TEST_FRACTION, seed=42) -> tuple[list[int], list[int]]:
    """(train, test) row indices, stratified and seeded: each class gives round(test_fraction * its rows) rows,
    at least 1 and at most all but 1, to test. The same labels, fraction and seed give the same split.
    ValueError when a class has fewer than 2 rows."""
    by_label = _rows_by_label(labels)
    small = {label: len(rows) for label, rows in by_label.items() if len(rows) < 2}
    if small:
        raise InputError(f"class(es) {small} have fewer than 2 rows, too few to carve a stratified test split")
    quota = {label: min(len(rows) - 1, max(1, round(test_fraction * len(rows)))) for label, rows in by_label.items()}
    test = _sample_per_label(by_label, quota, f"{seed}-test")
    test_set = set(test)
    return [i for i in range(len(labels)) if i not in test_set], test


def stratified_indices(labels, n, seed=42) -> list[int]:
    """n row indices (sorted) drawn per label in proportion to the label counts; the same seed gives the same rows.

    n=None or n >= len(labels) gives every row.
    """
    if n is None or n >= len(labels):
        return list(range(len(labels)))
    if n < 0:
        raise InputError(f"row limit must be >= 0, got {n}")
    by_label = _rows_by_label(labels)
    exact = {label: n * len(rows) / len(labels) for label, rows in by_label.items()}
    quota = {label: int(x) for label, x in exact.items()}
    # hand the remaining rows to the largest fractional parts (ties: smaller label first)
    for label in sorted(exact, key=lambda lab: (quota[lab] - exact[lab], lab))[: n - sum(quota.values())]:
        quota[label] += 1
    return _sample_per_label(by_label, quota, f"{seed}")


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
        raise InputError(f"clean must be True, False or 'auto', got {clean!r}")
    if clean != "auto":
        return bool(clean)
    items = list(source) if isinstance(source, (list, tuple)) else [source]
    for item in map(os.fspath, items):
        if item in AG_NEWS_HUB_IDS or any(_norm_name(Path(x).stem) == "agnews" for x in Path(item).parts[-2:]):
            return True
    from tasks import AG_NEWS_LABELS  # the default topic task's classes; tasks loads torch, this module stays light

    return label_names is not None and sorted(label_names) == sorted(AG_NEWS_LABELS)
