"""Your own data: create_dataset on files of each format, labels, carved test splits, bad input; CoNLL types, topic-only
and NER-only rows in one dataset; the cache key. Real spaCy, the tests' data root, small tmp files. (Reading CoNLL files:
test_conll.)"""
import json
import os
from collections import Counter

import pytest

import conll
import create_ner_dataset as cnd
import data_sources
import ner_tags
import text_prep

# 12 short rows, 2 classes (string labels), entities spaCy finds
TEXTS = ["Apple opens a store in Paris.", "Barack Obama visited Berlin on Monday.", "Google buys a startup in London.",
         "Angela Merkel met Emmanuel Macron in Brussels.", "Microsoft sells Windows in Japan.",
         "The United Nations met in New York.", "Amazon hires workers in Seattle.", "Vladimir Putin spoke in Moscow.",
         "Tesla builds cars in Texas.", "Boris Johnson resigned in London.", "IBM reports profit in Armonk.",
         "Joe Biden travelled to Kyiv."]
LABELS = ["tech", "politics"] * 6


def _no_spacy(*args, **kwargs):
    raise AssertionError("load_spacy was called")


def write_rows(path, rows, fmt=None):
    """rows: a dict of columns; written in the format of path's extension (or fmt)."""
    import pandas as pd

    df = pd.DataFrame(rows)
    fmt = fmt or path.suffix.lstrip(".")
    if fmt == "csv":
        df.to_csv(path, index=False)
    elif fmt == "tsv":
        df.to_csv(path, index=False, sep="\t")
    elif fmt == "json":
        path.write_text(json.dumps(df.to_dict(orient="records")))
    elif fmt == "jsonl":
        df.to_json(path, orient="records", lines=True)
    elif fmt == "parquet":
        df.to_parquet(path)
    return path


def make(tmp_path, source, **kwargs):
    kwargs.setdefault("cache_dir", str(tmp_path / "cache"))
    return cnd.create_dataset(source, show_progress=False, **kwargs)


def all_rows(dd):
    """(raw text, class name) of every row of train and test."""
    names = dd["train"].features["label"].names
    return sorted((t, names[y]) for split in ("train", "test") for t, y in zip(dd[split]["raw_text"], dd[split]["label"]))


# ---------------------------------------------------------------- formats, labels

@pytest.mark.parametrize("ext", ["csv", "tsv", "json", "jsonl", "parquet"])
def test_each_file_format(tmp_path, ext):
    path = write_rows(tmp_path / f"data.{ext}", {"text": TEXTS, "label": LABELS})
    dd, tags = make(tmp_path, str(path))
    assert dd["train"].features["label"].names == ["politics", "tech"]  # string labels, sorted
    assert all_rows(dd) == sorted(zip(TEXTS, LABELS))
    assert tags == ner_tags.build_tag_list()
    for split in ("train", "test"):
        for row in dd[split]:
            assert row["text"] == row["raw_text"]  # not AG News: text used as stored
            assert len(row["words"]) == len(row["ner_tags"]) and ner_tags.is_valid_bio(row["ner_tags"])
            assert all(row["text"][s:s + len(w)] == w for w, s in zip(row["words"], row["word_starts"]))
    assert "B-GPE" in {t for tags_ in dd["train"]["ner_tags"] for t in tags_}


def test_several_files_and_other_columns(tmp_path):
    a = write_rows(tmp_path / "a.jsonl", {"body": TEXTS[:6], "topic": LABELS[:6], "id": range(6)})
    b = write_rows(tmp_path / "b.jsonl", {"body": TEXTS[6:], "topic": LABELS[6:], "id": range(6)})
    dd, _ = make(tmp_path, [str(a), str(b)], text_column="body", label_column="topic")
    assert all_rows(dd) == sorted(zip(TEXTS, LABELS))
    assert dd["train"].column_names == ["text", "raw_text", "label", "words", "word_starts", "ner_tags"]


def test_integer_and_classlabel_labels(tmp_path):
    # integers without names are class names, in numeric order ("2" before "10"); three classes
    labels = [10, 2, 7] * 4
    dd, _ = make(tmp_path, str(write_rows(tmp_path / "ints.csv", {"text": TEXTS, "label": labels})))
    names = dd["train"].features["label"].names
    assert names == ["2", "7", "10"]
    assert all_rows(dd) == sorted(zip(TEXTS, map(str, labels)))
    # a ClassLabel keeps its names, order and ids
    import datasets

    folder = tmp_path / "hub"
    features = datasets.Features({"text": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["zeta", "alpha", "mid"])})
    for split, rows in (("train", slice(0, 9)), ("test", slice(9, 12))):
        datasets.Dataset.from_dict({"text": TEXTS[rows], "label": [0, 1, 2] * 3 if split == "train" else [2, 1, 0]},
                                   features=features).to_parquet(str(folder / f"{split}.parquet"))
    dd, _ = make(tmp_path, str(folder))
    assert dd["train"].features["label"].names == ["zeta", "alpha", "mid"]
    assert dd["test"]["raw_text"] == TEXTS[9:] and list(dd["test"]["label"]) == [2, 1, 0]  # given test split kept


def test_two_classes_and_one_class(tmp_path, monkeypatch):
    two = write_rows(tmp_path / "two.csv", {"text": TEXTS[:4], "label": ["a", "b", "a", "b"]})
    dd, _ = make(tmp_path, str(two), test_fraction=0.5)
    assert dd["train"].features["label"].names == ["a", "b"]
    assert sorted(dd["train"]["label"]) == [0, 1] and sorted(dd["test"]["label"]) == [0, 1]
    monkeypatch.setattr(cnd, "load_spacy", _no_spacy)
    one = write_rows(tmp_path / "one.csv", {"text": TEXTS[:4], "label": ["a"] * 4})
    with pytest.raises(ValueError, match=r"1 class\(es\) \['a'\].*at least 2.*label_column"):
        make(tmp_path, str(one))


# ---------------------------------------------------------------- carved test split

def test_missing_test_split_is_carved_stratified_and_seeded(tmp_path):
    texts = [f"Row {i} about Paris" for i in range(60)]
    labels = ["big"] * 40 + ["small"] * 20
    path = write_rows(tmp_path / "d.csv", {"text": texts, "label": labels})
    a, _ = make(tmp_path, str(path), cache_dir=None)
    b, _ = make(tmp_path, str(path), cache_dir=None)
    assert a["test"]["raw_text"] == b["test"]["raw_text"] and a["train"]["raw_text"] == b["train"]["raw_text"]
    names = a["test"].features["label"].names
    assert Counter(names[y] for y in a["test"]["label"]) == {"big": 8, "small": 4}  # 0.2 of each class
    assert not set(a["test"]["raw_text"]) & set(a["train"]["raw_text"])
    assert len(a["train"]) + len(a["test"]) == 60
    other_seed, _ = make(tmp_path, str(path), cache_dir=None, seed=1)
    assert other_seed["test"]["raw_text"] != a["test"]["raw_text"]
    half, _ = make(tmp_path, str(path), cache_dir=None, test_fraction=0.5)
    assert Counter(names[y] for y in half["test"]["label"]) == {"big": 20, "small": 10}
    # a train row limit leaves the test rows alone
    limited, _ = make(tmp_path, str(path), cache_dir=None, max_train_rows=12)
    assert limited["test"]["raw_text"] == a["test"]["raw_text"] and len(limited["train"]) == 12


def test_carve_test_split_edges():
    train, test = data_sources.carve_test_split(["a", "a", "b", "b", "b"], 0.01, seed=3)
    assert sorted(train + test) == list(range(5)) and len(test) == 2  # at least one row of each class
    train, test = data_sources.carve_test_split(["a", "a", "b", "b"], 0.99, seed=3)
    assert len(train) == 2  # at least one row of each class stays in train
    with pytest.raises(ValueError, match=r"\{'c': 1\}.*fewer than 2 rows"):
        data_sources.carve_test_split(["a", "a", "c"], 0.2)


def test_too_few_rows_to_carve(tmp_path, monkeypatch):
    monkeypatch.setattr(cnd, "load_spacy", _no_spacy)
    path = write_rows(tmp_path / "d.csv", {"text": TEXTS[:3], "label": ["a", "a", "b"]})
    with pytest.raises(ValueError, match=r"no 'test' split.*'b': 1.*give a test split"):
        make(tmp_path, str(path))


# ---------------------------------------------------------------- bad input: nothing reaches the cache

def _assert_no_cache(tmp_path):
    cache = tmp_path / "cache"
    assert not cache.exists() or not [p for p in cache.iterdir()], list(cache.iterdir())


@pytest.mark.parametrize("ext", ["csv", "jsonl", "parquet"])
def test_missing_or_misspelled_column(tmp_path, monkeypatch, ext):
    monkeypatch.setattr(cnd, "load_spacy", _no_spacy)
    path = write_rows(tmp_path / f"d.{ext}", {"Text": TEXTS, "category": LABELS})
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['text', 'label'\] \(its columns: \['Text', "
                                         r"'category'\]\); did you mean 'text' -> 'Text'\?.*--text-column"):
        make(tmp_path, str(path))
    with pytest.raises(ValueError, match=r"\['categroy'\].*'categroy' -> 'category'\?"):
        make(tmp_path, str(path), text_column="Text", label_column="categroy")
    _assert_no_cache(tmp_path)


def test_empty_files(tmp_path, monkeypatch):
    monkeypatch.setattr(cnd, "load_spacy", _no_spacy)
    for name in ("e.csv", "e.jsonl", "e.parquet"):
        (tmp_path / name).write_bytes(b"")
        with pytest.raises(ValueError, match=rf"{name}' is empty \(0 bytes\)"):
            make(tmp_path, str(tmp_path / name))
    (tmp_path / "header.csv").write_text("text,label\n")
    with pytest.raises(ValueError, match=r"cannot read rows from data file .*header.csv"):
        make(tmp_path, str(tmp_path / "header.csv"))
    _assert_no_cache(tmp_path)


@pytest.mark.parametrize("ext, text, label, match", [
    ("csv", None, "tech", r"d.csv', row 3 .*the text \('text'\) is missing"),   # an empty CSV field
    ("jsonl", None, "tech", r"d.jsonl', row 3 .*the text \('text'\) is missing"),
    ("csv", "Some text", None, r"d.csv', row 3 .*the label \('label'\) is missing or empty"),
    ("jsonl", "Some text", None, r"d.jsonl', row 3 .*the label \('label'\) is missing or empty"),
    ("parquet", "Some text", "  ", r"d.parquet', row 3 .*the label \('label'\) is missing or empty"),
])
def test_row_with_missing_text_or_label(tmp_path, monkeypatch, ext, text, label, match):
    monkeypatch.setattr(cnd, "load_spacy", _no_spacy)
    texts, labels = list(TEXTS), list(LABELS)
    texts[3], labels[3] = text, label
    path = write_rows(tmp_path / f"d.{ext}", {"text": texts, "label": labels})
    with pytest.raises(ValueError, match=match):
        make(tmp_path, str(path))
    _assert_no_cache(tmp_path)


def test_empty_string_text_is_kept(tmp_path):
    texts = list(TEXTS)
    texts[0] = ""
    dd, _ = make(tmp_path, str(write_rows(tmp_path / "d.parquet", {"text": texts, "label": LABELS})))
    rows = [r for split in ("train", "test") for r in dd[split] if r["raw_text"] == ""]
    assert len(rows) == 1 and rows[0]["words"] == [] and rows[0]["ner_tags"] == []


def test_bad_label_values(tmp_path, monkeypatch):
    monkeypatch.setattr(cnd, "load_spacy", _no_spacy)
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in [("a", 1), ("b", "x")]))
    with pytest.raises(ValueError, match=r"mix numbers and strings"):
        make(tmp_path, str(mixed))
    frac = write_rows(tmp_path / "frac.csv", {"text": TEXTS[:4], "label": [0.5, 1, 0, 1]})
    with pytest.raises(ValueError, match=r"row 0: label 0.5 is a fractional number"):
        make(tmp_path, str(frac))
    numbers = write_rows(tmp_path / "numbers.csv", {"text": [1, 2, 3, 4], "label": ["a", "b", "a", "b"]})
    with pytest.raises(ValueError, match=r"'text' holds int values .*--text-column"):
        make(tmp_path, str(numbers))


def test_bad_sources(tmp_path, monkeypatch):
    monkeypatch.setattr(cnd, "load_spacy", _no_spacy)
    good = write_rows(tmp_path / "a.csv", {"text": TEXTS, "label": LABELS})
    (tmp_path / "a.txt").write_text("text,label\nx,y\n")
    with pytest.raises(ValueError, match=r"holds texts only, no label column; .* reads \.csv, \.tsv, \.json, "
                                         r"\.jsonl, \.parquet"):
        make(tmp_path, str(tmp_path / "a.txt"))
    other = write_rows(tmp_path / "b.jsonl", {"text": TEXTS, "label": LABELS})
    with pytest.raises(ValueError, match=r"mix formats \(CSV, JSON lines\); pass files of one format"):
        make(tmp_path, [str(good), str(other)])
    with pytest.raises(data_sources.DatasetSourceError, match=r"data file '.*missing.csv' not found"):
        make(tmp_path, str(tmp_path / "missing.csv"))
    with pytest.raises(ValueError, match=r"test_fraction must be between 0 and 1"):
        make(tmp_path, str(good), test_fraction=1.0)
    with pytest.raises(ValueError, match=r"ner_types must be one of"):
        make(tmp_path, str(good), ner_types="ontonotes")
    with pytest.raises(ValueError, match=r"clean must be True, False or 'auto'"):
        make(tmp_path, str(good), clean="yes")
    _assert_no_cache(tmp_path)


# ---------------------------------------------------------------- AG News cleaning: where it belongs only

def test_cleaning_only_for_ag_news(tmp_path, ag_news_dir, bbc_csv):
    escaped = ["Regulators Let Cingular Buy AT #38;T Wireless", "a record \\$55.8bn as oil"]
    assert data_sources.clean_applies(ag_news_dir) and data_sources.clean_applies("ag_news")
    assert data_sources.clean_applies("fancyzhx/ag_news")
    assert data_sources.clean_applies("/data/AG-News/train.csv")
    assert not data_sources.clean_applies(bbc_csv, label_names=["Politics", "Sports"])
    assert data_sources.clean_applies("x.csv", label_names=["Sports", "World", "Sci/Tech", "Business"])
    assert not data_sources.clean_applies(ag_news_dir, clean=False) and data_sources.clean_applies("x.csv", clean=True)
    user = write_rows(tmp_path / "mine.csv", {"text": escaped * 2, "label": ["a", "b"] * 2})
    dd, _ = make(tmp_path, str(user), test_fraction=0.5)
    assert sorted(list(dd["train"]["text"]) + list(dd["test"]["text"])) == sorted(escaped * 2)  # left alone
    forced, _ = make(tmp_path, str(user), test_fraction=0.5, clean=True)
    assert "AT&T" in " ".join(list(forced["train"]["text"]) + list(forced["test"]["text"]))
    # AG News's class names switch it on (here as strings in a CSV)
    ag_like = write_rows(tmp_path / "news.csv", {"text": escaped * 4,
                                                 "label": ["World", "Sports", "Business", "Sci/Tech"] * 2})
    dd, _ = make(tmp_path, str(ag_like), test_fraction=0.5, max_test_rows=0)
    assert all(t == text_prep.clean_text(r) for t, r in zip(dd["train"]["text"], dd["train"]["raw_text"]))
    assert any(t != r for t, r in zip(dd["train"]["text"], dd["train"]["raw_text"]))


# ---------------------------------------------------------------- BBC: long texts, string labels, category column

def test_bbc_csv(tmp_path, bbc_csv):
    with pytest.raises(ValueError, match=r"\['label'\] \(its columns: \['category', 'text'\]\)"):
        make(tmp_path, bbc_csv)
    dd, tags = make(tmp_path, bbc_csv, label_column="category", max_train_rows=16, max_test_rows=8)
    assert dd["train"].features["label"].names == ["Politics", "Sports"]
    assert len(dd["train"]) == 16 and len(dd["test"]) == 8
    assert sorted(Counter(dd["test"]["label"]).values()) in ([3, 5], [4, 4])  # both classes, in proportion
    for row in dd["train"]:
        assert row["text"] == row["raw_text"]  # no AG News cleaning on a user CSV
        assert len(row["words"]) >= 60 and len(row["words"]) == len(row["ner_tags"])
        assert all(row["text"][s:s + len(w)] == w for w, s in zip(row["words"], row["word_starts"]))
    # the whole carved test split is 0.2 of each class (seeded)
    import pandas as pd

    labels = list(pd.read_csv(bbc_csv)["category"])
    _, test_idx = data_sources.carve_test_split([sorted(set(labels)).index(y) for y in labels],
                                                data_sources.TEST_FRACTION, 42)
    assert Counter(labels[i] for i in test_idx) == {c: round(0.2 * labels.count(c)) for c in set(labels)}


def test_texts_longer_than_spacy_max_length(monkeypatch):
    nlp = cnd.load_spacy()
    text = ("Barack Obama met Angela Merkel in Berlin. " * 40).strip()
    whole = cnd.label_texts([text], nlp)[0]
    monkeypatch.setattr(nlp, "max_length", 100)  # spaCy would refuse the text: it is labelled in pieces
    with pytest.raises(ValueError, match="E088"):
        nlp(text)
    pieces = cnd.label_texts([text, "", "Paris"], nlp)
    words, starts, tags = pieces[0]
    assert (words, starts) == whole[:2]
    assert all(text[s:s + len(w)] == w for w, s in zip(words, starts)) and ner_tags.is_valid_bio(tags)
    assert tags.count("B-PERSON") >= 70 and pieces[1] == ([], [], []) and pieces[2][0] == ["Paris"]


# ---------------------------------------------------------------- CoNLL types, topic-only and NER-only rows

def test_conll_tag_list_and_silver_conll_types():
    assert ner_tags.build_tag_list(ner_types="conll") == ["O", "B-LOC", "I-LOC", "B-MISC", "I-MISC", "B-ORG",
                                                          "I-ORG", "B-PER", "I-PER"]
    assert ner_tags.build_tag_list(("DATE",), ner_types="conll") == ner_tags.build_tag_list(ner_types="conll")
    with pytest.raises(ValueError, match="ner_types must be one of"):
        ner_tags.build_tag_list(ner_types="CoNLL")
    nlp = cnd.load_spacy()
    text = "Barack Obama met German officials at the Eiffel Tower in Paris on Monday."
    words, _, tags = cnd.label_texts([text], nlp, ner_types="conll")[0]
    got = dict(zip(words, tags))
    assert (got["Barack"], got["Obama"], got["Paris"], got["German"], got["Monday"]) == (
        "B-PER", "I-PER", "B-LOC", "B-MISC", "O")
    assert set(tags) <= set(ner_tags.CONLL_TAGS) and ner_tags.is_valid_bio(tags)


def test_topic_only_and_ner_only_rows_in_one_dataset(tmp_path, conll_valid):
    path = write_rows(tmp_path / "d.csv", {"text": TEXTS, "label": LABELS})
    dd, tags = make(tmp_path, str(path), ner_types="conll")
    assert tags == ner_tags.build_tag_list(ner_types="conll")
    assert {t for row in dd["train"]["ner_tags"] for t in row} <= set(tags)
    topic_only = cnd.without_task(dd["train"], "ner")
    ner_only = conll.load_ner_files(conll_valid).select(range(20))
    both = dd["test"]  # rows with both labels
    rows = cnd.combine_rows(topic_only, ner_only, both)
    n_topic, n_both = len(topic_only), len(both)
    assert rows.num_rows == n_topic + 20 + n_both
    assert rows.features == dd["train"].features and rows.features["label"].names == ["politics", "tech"]
    assert cnd.has_topic_label(rows) == [True] * n_topic + [False] * 20 + [True] * n_both
    assert cnd.has_ner_tags(rows) == [False] * n_topic + [True] * 20 + [True] * n_both
    assert rows[0]["ner_tags"] is None and rows[0]["words"] == dd["train"][0]["words"]  # words stay, tags do not
    assert rows[n_topic]["label"] == -1 and rows[n_topic]["ner_tags"] == ner_only[0]["ner_tags"]
    assert {t for row in rows["ner_tags"] if row is not None for t in row} <= set(tags)
    no_topic = cnd.without_task(dd["test"], "topic")
    assert set(no_topic["label"]) == {-1} and no_topic["ner_tags"] == dd["test"]["ner_tags"]
    # rows of another label set do not mix
    other = write_rows(tmp_path / "o.csv", {"text": TEXTS, "label": ["x", "y", "z"] * 4})
    dd_other, _ = make(tmp_path, str(other))
    with pytest.raises(ValueError, match=r"part 1 has classes \['x', 'y', 'z'\].*\['politics', 'tech'\]"):
        cnd.combine_rows(topic_only, dd_other["train"])
    with pytest.raises(ValueError, match=r"part 0 has columns"):
        cnd.combine_rows(ner_only.remove_columns("raw_text"))


# ---------------------------------------------------------------- cache key

def test_cache_key_has_every_setting(tmp_path):
    path = write_rows(tmp_path / "d.csv", {"text": TEXTS, "label": LABELS, "other": LABELS})
    key = cnd.dataset_cache_key(str(path))
    assert key == cnd.dataset_cache_key(str(path))
    others = [cnd.dataset_cache_key(str(path), text_column="other", label_column="text"),
              cnd.dataset_cache_key(str(path), label_column="other"),
              cnd.dataset_cache_key(str(path), test_fraction=0.3),
              cnd.dataset_cache_key(str(path), ner_types="conll"),
              cnd.dataset_cache_key(str(path), clean=True),
              cnd.dataset_cache_key(str(path), clean=False)]
    # same name, size and mtime, other bytes: the content hash changes the key
    stat = os.stat(path)
    data = path.read_bytes()
    path.write_bytes(data.replace(b"Paris", b"Rome!"))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert os.stat(path).st_size == stat.st_size
    others.append(cnd.dataset_cache_key(str(path)))
    assert len({key, *others}) == len(others) + 1
    # the key names the cache folder create_dataset writes (and reads back without spaCy)
    dd, _ = make(tmp_path, str(path), label_column="other")
    assert (tmp_path / "cache" / others[1]).exists() is False  # the bytes changed since others[1] was computed
    written = cnd.dataset_cache_key(str(path), label_column="other")
    meta = json.loads((tmp_path / "cache" / written / "meta.json").read_text())
    assert meta["settings"]["label_column"] == "other" and meta["settings"]["clean_applied"] is False
    assert len(meta["settings"]["source_fingerprint"]["files"][0][2]) == 64  # sha256 of the file
