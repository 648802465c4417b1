"""conll: reading CoNLL-2003 files (the tests' own, the development copy's where present, bad files) and gold NER-only
rows from them."""
from collections import Counter

import pytest
from conftest import dev_data_path
from synthetic_data import conll_sentences

import conll
import create_ner_dataset as cnd
import ner_tags

VALID = conll_sentences(150, 1)  # what the tests' conll2003/valid.txt holds (synthetic_data.write_data_root)
VALID_ENTITIES = Counter(t[2:] for s in VALID for _, t in s if t.startswith("B-"))


def test_read_conll(conll_valid):
    sentences = conll.read_conll(conll_valid)
    assert sentences == [([w for w, _ in s], [t for _, t in s]) for s in VALID]
    assert all(len(w) == len(t) and ner_tags.is_valid_bio(t) for w, t in sentences)
    entities = Counter(tag[2:] for _, tags in sentences for tag in tags if tag.startswith("B-"))
    assert entities == VALID_ENTITIES and set(entities) == {"LOC", "MISC", "ORG", "PER"}


def test_read_conll_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="CoNLL file not found"):
        conll.read_conll(tmp_path / "missing.txt")
    bad = tmp_path / "bad.txt"
    bad.write_text("-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects\n")
    with pytest.raises(ValueError, match=r"bad.txt:4"):
        conll.read_conll(bad)
    bad.write_text("EU NNP B-NP X-ORG\n")
    with pytest.raises(ValueError, match=r"bad.txt:1: bad NER tag"):
        conll.read_conll(bad)


def test_load_ner_files_conll(conll_valid, tmp_path):
    rows = conll.load_ner_files(conll_valid, ner_types="conll")
    assert rows.num_rows == len(VALID) and set(rows["label"]) == {-1}
    assert cnd.has_topic_label(rows) == [False] * len(VALID) and all(cnd.has_ner_tags(rows))
    allowed = set(ner_tags.build_tag_list(ner_types="conll"))
    entities = Counter()
    for row in rows:
        assert set(row["ner_tags"]) <= allowed and ner_tags.is_valid_bio(row["ner_tags"])
        assert row["text"] == row["raw_text"] == " ".join(row["words"])
        assert all(row["text"][s:s + len(w)] == w for w, s in zip(row["words"], row["word_starts"]))
        entities.update(t[2:] for t in row["ner_tags"] if t.startswith("B-"))
    assert entities == VALID_ENTITIES
    # IOB1 in, IOB2 out; OntoNotes-typed gold mapped onto CoNLL's types; several files
    iob1 = tmp_path / "iob1.txt"
    iob1.write_text("Obama NNP I-NP I-PERSON\nin IN I-PP O\nNew NNP I-NP I-GPE\nYork NNP I-NP I-GPE\n"
                    "on IN O O\nMonday NNP O I-DATE\n\n")
    both = conll.load_ner_files([str(iob1), conll_valid])
    assert both.num_rows == len(VALID) + 1 and both[0]["ner_tags"] == ["B-PER", "O", "B-LOC", "I-LOC", "O", "O"]
    spacy_typed = conll.load_ner_files(str(iob1), ner_types="spacy")
    assert spacy_typed[0]["ner_tags"] == ["B-PERSON", "O", "B-GPE", "I-GPE", "O", "O"]  # DATE dropped by default
    assert set(spacy_typed[0]["ner_tags"]) <= set(ner_tags.build_tag_list())
    with pytest.raises(ValueError, match=r"valid.txt' has entity types \['MISC', 'PER'\] that spaCy.*"
                                         r"ner_types='conll', main.py --ner-types conll"):
        conll.load_ner_files(conll_valid, ner_types="spacy")
    odd = tmp_path / "odd.txt"
    odd.write_text("x NN O B-ANIMAL\n\n")
    with pytest.raises(ValueError, match=r"odd.txt' has entity types \['ANIMAL'\]"):
        conll.load_ner_files(str(odd))


def test_the_development_conll_files_read_as_their_readme_counts():
    """The real CoNLL-2003 files (development data) read to the sentence, token and entity counts their README gives."""
    valid = conll.read_conll(dev_data_path("conll2003/valid.txt"))
    assert len(valid) == 3250 and sum(len(w) for w, _ in valid) == 51362
    assert Counter(t[2:] for _, tags in valid for t in tags if t.startswith("B-")) == {
        "LOC": 1837, "MISC": 922, "ORG": 1341, "PER": 1842}
    rows = conll.load_ner_files(str(dev_data_path("conll2003/train.txt")))
    assert rows.num_rows == 14041
    assert Counter(t[2:] for tags in rows["ner_tags"] for t in tags if t.startswith("B-")) == {
        "LOC": 7140, "MISC": 3438, "ORG": 6321, "PER": 6600}
