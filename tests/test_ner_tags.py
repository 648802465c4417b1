"""ner_tags: the fixed tag lists, BIO checks, IOB1 -> IOB2, the OntoNotes -> CoNLL type map (against the tests' CoNLL
data)."""
import conll
import ner_tags


def test_tag_list_is_fixed():
    tags = ner_tags.build_tag_list()
    assert tags == ner_tags.build_tag_list(tuple(reversed(ner_tags.DEFAULT_DROPPED_TYPES)))
    assert tags == ner_tags.build_tag_list(list(ner_tags.DEFAULT_DROPPED_TYPES))
    assert tags[0] == "O"
    kept = ["EVENT", "GPE", "LANGUAGE", "LOC", "ORG", "PERSON", "PRODUCT", "WORK_OF_ART"]
    assert tags[1:] == [f"{p}-{t}" for t in kept for p in "BI"]
    assert len(ner_tags.build_tag_list(())) == 1 + 2 * 18
    assert ner_tags.build_tag_list(ner_tags.SPACY_ENTITY_TYPES) == ["O"]


def test_is_valid_bio():
    assert ner_tags.is_valid_bio([]) and ner_tags.is_valid_bio(["O", "B-X", "I-X", "B-X", "B-Y", "I-Y"])
    for bad in (["I-X"], ["B-X", "I-Y"], ["O", "I-X"], ["B-"], ["X"], ["B_X"]):
        assert not ner_tags.is_valid_bio(bad)


def test_iob1_to_iob2(tmp_path):
    iob1 = ["I-PER", "I-PER", "O", "I-LOC", "B-LOC", "I-LOC", "I-ORG", "O", "I-MISC"]
    iob2 = ["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-LOC", "B-ORG", "O", "B-MISC"]
    assert not ner_tags.is_valid_bio(iob1)
    assert ner_tags.iob1_to_iob2(iob1) == iob2 and ner_tags.iob1_to_iob2(iob2) == iob2
    f = tmp_path / "iob1.txt"
    f.write_text("\n".join(f"w{i} NN I-NP {t}" for i, t in enumerate(iob1)) + "\n\n")
    assert conll.read_conll(f) == [([f"w{i}" for i in range(len(iob1))], iob2)]


def test_ontonotes_mapping(conll_valid):
    conll_types = {t[2:] for _, tags in conll.read_conll(conll_valid) for t in tags if t != "O"}
    assert set(ner_tags.ONTONOTES_TO_CONLL.values()) <= conll_types  # onto types the CoNLL file really has
    assert set(ner_tags.ONTONOTES_TO_CONLL) <= set(ner_tags.SPACY_ENTITY_TYPES)
    kept = {t[2:] for t in ner_tags.build_tag_list() if t != "O"}
    assert kept <= set(ner_tags.ONTONOTES_TO_CONLL)  # every type the model learns is scored on CoNLL, none dropped
    assert [ner_tags.ONTONOTES_TO_CONLL[t] for t in ("PERSON", "ORG", "GPE", "LOC")] == ["PER", "ORG", "LOC", "LOC"]
    tags = ["B-PERSON", "I-PERSON", "O", "B-DATE", "I-DATE", "B-GPE", "B-FAC", "I-FAC", "B-MONEY", "B-NORP"]
    assert ner_tags.map_tags(tags, ner_tags.ONTONOTES_TO_CONLL) == [
        "B-PER", "I-PER", "O", "O", "O", "B-LOC", "B-LOC", "I-LOC", "O", "B-MISC"]
    # an I- whose B- mapped to nothing starts a new entity
    assert ner_tags.map_tags(["B-X", "I-X"], {"X": "A"}) == ["B-A", "I-A"]
    assert ner_tags.map_tags(["B-DATE", "I-PERSON"], ner_tags.ONTONOTES_TO_CONLL) == ["O", "B-PER"]
